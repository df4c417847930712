"""The benchmark scripts cannot rot: each runs end to end at tiny sizes and writes its tables (to a
temporary folder, through EVONORM_RESULTS_DIR). These are runs of the scripts, not measurements: no
figure they print is checked against a target here."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY_SEARCH = """\
name: tiny
seed: 1
budget: 4
population: 2
tournament: 2
architectures:
  - {kind: resnet, width: 4, blocks: [1]}
data: {name: synthetic, samples: 64, synthetic_shape: [1, 4, 4], synthetic_classes: 2}
training: {steps: 10, batch_size: 8, device: cpu, threads: 1, eval_batch_size: 64}
rejection: {quality: {enabled: false}}
"""


def run_script(
    name: str,
    *args: str,
    results: Path,
    timeout: float = 600,
    report: str | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Run a benchmark script and return the results file it wrote (`report`, default the script's name)."""
    environment = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    environment |= {"EVONORM_RESULTS_DIR": str(results), "EVONORM_MACHINE": "smoke", **(env or {})}
    out = subprocess.run(
        [sys.executable, "-W", "ignore", str(BENCHMARKS / name), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    stem = report or name.removesuffix(".py")
    return (results / f"{stem}-smoke.md").read_text()


def load_script(name: str):
    """A benchmark script imported as a module (its `main` is not run), to test its functions directly."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name.removesuffix('.py')}", BENCHMARKS / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.postgres
def test_the_store_benchmark_writes_its_table(tmp_path, postgres_database_url):
    server = postgres_database_url.render_as_string(hide_password=False)  # it creates a database of its own there
    report = run_script("store.py", "--candidates", "300", "--repeats", "3", "--postgres", server, results=tmp_path)
    assert "reads at 300 candidates" in report
    assert "| SQLite (WAL) | status summary |" in report and "| PostgreSQL" in report


@pytest.mark.postgres
def test_the_bulk_fill_leaves_postgresql_with_statistics_for_its_rows(postgres_url):
    """As autovacuum would after a bulk of inserts: the planner sees the rows the fill wrote (reltuples is
    -1 for a table never analyzed)."""
    from evonorm_search import store as st

    bench = load_script("store.py")
    with st.open_store(postgres_url) as opened:
        bench.fill(opened, 120, seed=1)
        with opened.engine.connect() as connection:
            seen = connection.exec_driver_sql(
                "SELECT reltuples FROM pg_class WHERE relname = 'candidates' AND relnamespace = current_schema()::regnamespace"
            ).scalar_one()
    assert seen == 120


def test_the_api_benchmark_writes_its_table(tmp_path):
    report = run_script(
        "api.py",
        "--candidates",
        "300",
        "--seconds",
        "0.5",
        "--warmup",
        "0.2",
        "--rounds",
        "2",
        "--threads-seconds",
        "0.3",
        "--database-threads",
        "1,2",
        results=tmp_path,
    )
    assert "| SQLite (WAL) | status of the search |" in report
    assert "| SQLite (WAL) | Pareto front, 3 objectives |" in report
    assert "### SQLite (WAL): database threads" in report
    assert "| 1 |" in report and "| 2 (default) |" in report


def test_the_parser_benchmark_writes_its_table(tmp_path):
    report = run_script("parser.py", "--repeats", "1", results=tmp_path)
    assert "Median of 1 runs of `es.parse` per input" in report
    assert "| evonorm_s0 (valid) | 138 |" in report and "graph, 7 nodes |" in report
    assert "DSLError: program is larger than 1000000 bytes |" in report
    assert "DSLError: unknown function 'sigmod'; did you mean 'sigmoid'? |" in report


def test_the_compile_benchmark_writes_its_tables(tmp_path):
    pytest.importorskip("triton.backends.nvidia", reason="Triton's CUDA backend (Linux wheels) compiles here")
    report = run_script("compile.py", "--layers", "relu", "--candidates", "1", results=tmp_path)
    assert "Target `cuda:90`" in report and "## Library layers" in report
    assert "| relu | float32 | 3 |" in report and "| relu | bfloat16 | 3 |" in report
    assert "Cold compile of a new candidate, all its kernels: median" in report


def test_the_roofline_benchmark_writes_its_table(tmp_path):
    pytest.importorskip("triton.backends.nvidia", reason="Triton's CUDA backend (Linux wheels) compiles here")
    args = ("--layers", "gn_relu,bn_relu", "--shapes", "4x64x8x8", "--dtypes", "float32", "--no-time")
    report = run_script("roofline.py", *args, results=tmp_path)
    assert "| max regs (cuda:90) | spill bytes |" in report
    # GroupNorm's group of 2 x 64 fits: single-pass both ways, at the minimum traffic.
    assert "| gn_relu | 4x64x8x8 | float32 | single / single / single | 1 / 2 / 1 | 8 / 12 / 8 | 8 / 12 / 8 |" in report
    assert "| bn_relu | 4x64x8x8 | float32 | split+split / split+split / split |" in report
    assert "No kernel spills at these shapes." in report and "no times" in report


def test_the_roofline_benchmark_compares_single_pass_budgets(tmp_path):
    pytest.importorskip("triton.backends.nvidia", reason="Triton's CUDA backend (Linux wheels) compiles here")
    args = ("--layers", "gn_relu", "--shapes", "2x64x16x16", "--dtypes", "float32", "--no-time")
    report = run_script("roofline.py", *args, "--budgets", "1024:256,4096:4096", results=tmp_path)
    # A group of 2 x 256 = 512 values: single-pass forward under both budgets, backward only under the larger
    # (split below it: 2 x 32 groups are too few programs for the fused plan).
    assert "| 1024:256 | gn_relu | 2x64x16x16 | float32 | single / split / single |" in report
    assert "| 4096:4096 | gn_relu | 2x64x16x16 | float32 | single / single / single |" in report
    assert re.search(
        r"Verdict per budget and dtype: 1024:256 float32 (no spills|spills); 4096:4096 float32 (no spills|spills)\.",
        report,
    )


def test_the_roofline_benchmark_compares_cluster_limits_and_channels_last_caps(tmp_path):
    pytest.importorskip("triton.backends.nvidia", reason="Triton's CUDA backend (Linux wheels) compiles here")
    from evonorm_search.compiler import runtime

    if not runtime.clusters_compile(90):
        pytest.skip("this Triton cannot split a tile across a cluster")
    args = ("--layers", "gn_relu", "--shapes", "2x128x64x64", "--dtypes", "float32", "--no-time")
    report = run_script("roofline.py", *args, "--clusters", "1,2", "--channels-last", results=tmp_path)
    # A group of 4 x 4,096 = 16,384 values: past one CTA's backward budget (8,192), within two CTAs'.
    assert "| 1 CTA | gn_relu | 2x128x64x64 | float32 | single / split / single |" in report
    assert "| 2 CTAs | gn_relu | 2x128x64x64 | float32 | single / single / single |" in report
    assert "bwd_train_w0 4x4096/32w x2 CTAs" in report and "Triton compiles them" in report
    assert "Verdict per cluster limit and dtype: 1 CTA float32 no spills; 2 CTAs float32 no spills." in report
    # Channels-last: the cap of 8,192 / 4,096 a CTA puts that group on 2 CTAs forward and 4 backward.
    assert "| capped | gn_relu | 2x128x64x64 | float32 | single / single / single |" in report
    assert "fwd_train_w0 4x4096/32w x2 CTAs" in report and "bwd_train_w0 4x4096/32w x4 CTAs" in report
    assert "| as (N, C, S) | gn_relu | 2x128x64x64 | float32 |" in report
    assert "Verdict per setting and dtype: as (N, C, S) float32" in report


def test_the_roofline_benchmark_rejects_bad_arguments(tmp_path):
    for args, message in (
        (("--layers", "batchnorm"), "unknown layer(s)"),
        (("--shapes", "64"), "N x C"),
        (("--budgets", "16384"), "FORWARD:BACKWARD"),
        (("--budgets", "16384:3000"), "powers of two"),
        (("--clusters", "3"), "1, 2, 4 or 8"),
        (("--clusters", "two"), "number of CTAs"),
    ):
        out = subprocess.run(
            [sys.executable, "-W", "ignore", str(BENCHMARKS / "roofline.py"), *args, "--output", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 2 and message in out.stderr, out.stderr[-2000:]
    assert not list(tmp_path.glob("roofline-*.md"))


@pytest.mark.slow
def test_the_search_benchmark_writes_its_sections(tmp_path):
    report = run_script("search.py", "--smoke", results=tmp_path, timeout=900)
    for section in (
        "## 1. Rejection funnel",
        "## 2. Evolution against random search",
        "## 3. Baselines and controls on the target task",
        "## 4. `evonorm-search run examples/quick.yaml`",
    ):
        assert section in report
    assert "median best validated score" in report and "top-10 that normalize" in report
    assert "| x_plus_relu | control | no statistic |" in report and "| gn_relu | baseline | group |" in report
    assert "| affine_relu | control | no statistic |" in report and "| swish | control | no statistic |" in report
    assert re.search(
        r"Target scores of the \d+ layers re-trained: \d+ distinct layers trained in this run, \d+ served from", report
    )
    assert (tmp_path / "search-smoke.png").stat().st_size > 0
    # The fidelity benchmark scores the layers these searches selected beside its own set (--search-winners),
    # into a file of its own under a label.
    winners = run_script(
        "fidelity.py", "--smoke", "--search-winners", "--skip-placement", "--target-variants", "", "--label", "run",
        results=tmp_path, report="fidelity-winners-run",
    )  # fmt: skip
    assert "with the layers searches select" in winners and "## Verdict (the configuration as given)" in winners
    # Each selected layer not already in the set joins it, under its search's name.
    selected = re.findall(r"^\| \d+ \| (search_\w+) \| search \|", winners, re.MULTILINE)
    assert set(selected) <= {"search_evolution_0", "search_random_0"}
    # The timed run names the checkout it ran from (a fresh clone shows its tracked files as committed).
    assert re.search(
        r"From the checkout at \S+, commit [0-9a-f]{12}, (with uncommitted changes|its tracked files as committed)\.",
        report,
    )


def test_the_ladder_benchmark_compares_four_arms_on_the_confirmation_split(tmp_path):
    # 600 training examples per search: about 12 rung-0 runs of the smoke proxy (48 examples each).
    report = run_script("ladder.py", "--smoke", "--compute", "600", results=tmp_path, report="search-ladder")
    for section in (
        "## Arms on the confirmation split",
        "## Baselines and controls on the confirmation split",
        "## Paired comparisons over search seeds",
        "## Fidelity among the layers the searches selected",
        "## Every answer",
    ):
        assert section in report
    arms = re.findall(r"^\| (evolution|random)(?: \+ ladder|, no ladder) \| 2 \|", report, flags=re.MULTILINE)
    assert len(arms) == 4  # every arm answered on both search seeds
    # Equal compute: each search stops at the bound, past it by at most one rung-0 run and one promotion's
    # target seed (48 examples each at smoke sizes), so random search proposes more candidates than evolution.
    assert "every search bounded by 600 training examples" in report
    assert re.search(r"The ladder's promotions came after a median of \d+ rung-0 results", report)
    compute = re.findall(
        r"^\| (?:evolution|random)[^|]*\|(?:[^|]*\|){4} [\d,]+ \[([\d,]+), ([\d,]+)\] \|$", report, flags=re.MULTILINE
    )
    assert len(compute) == 4
    assert all(500 <= int(low.replace(",", "")) <= int(high.replace(",", "")) <= 600 + 2 * 48 for low, high in compute)
    assert "confirmed mean" in report and "| gn_relu | baseline |" in report and "| evonorm_s0 | baseline |" in report
    assert "| x_plus_relu | control |" in report and "| identity | control |" in report
    assert "fewer than 8" in report.lower() or "too few values" in report
    assert "rung 1 and the confirmation split" in report
    raw = json.loads((tmp_path / "search-ladder-smoke.json").read_text())
    assert len(raw["runs"]) == 4 and all(run["picks"] for run in raw["runs"])


def test_the_ladder_benchmark_runs_evolution_alone_and_refuses_unknown_modes(tmp_path):
    report = run_script(
        "ladder.py", "--smoke", "--compute", "600", "--modes", "evolution", results=tmp_path, report="search-ladder"
    )
    assert report.startswith("# The fidelity ladder: evolution searches alone")
    arms = re.findall(r"^\| ((?:evolution|random)(?: \+ ladder|, no ladder)) \| 2 \|", report, flags=re.MULTILINE)
    assert arms == ["evolution + ladder", "evolution, no ladder"]
    assert "random" not in report.split("## Paired comparisons")[1].split("## Fidelity")[0]
    raw = json.loads((tmp_path / "search-ladder-smoke.json").read_text())
    assert {run["mode"] for run in raw["runs"]} == {"evolution"} and len(raw["runs"]) == 2
    # The fidelity section recomputed from the raw file, with the paired difference of the two taus.
    again = subprocess.run(
        [sys.executable, str(BENCHMARKS / "ladder.py"), "--reanalyse", str(tmp_path / "search-ladder-smoke.json")],
        env={**os.environ, "EVONORM_RESULTS_DIR": str(tmp_path), "EVONORM_MACHINE": "smoke"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    recomputed = (tmp_path / "search-ladder-tau-smoke.md").read_text()
    fidelity = report.split("## Fidelity among the layers the searches selected")[1].split("## ")[0].strip()
    assert recomputed.split("## Fidelity among the layers the searches selected")[1].strip() == fidelity
    for modes in ("evolution,evolution", "anneal", ""):
        refused = subprocess.run(
            [sys.executable, str(BENCHMARKS / "ladder.py"), "--smoke", "--modes", modes],
            env={**os.environ, "EVONORM_RESULTS_DIR": str(tmp_path / "refused")},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert refused.returncode == 2 and "--modes takes distinct modes" in refused.stderr
        assert not (tmp_path / "refused").exists()


@pytest.mark.xdist_group("ray")
def test_the_scaling_benchmark_writes_its_tables(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_SEARCH)
    report = run_script(
        "scaling.py",
        "--config",
        str(config),
        "--tasks",
        "2",
        "--overhead-pairs",
        "2",
        "--rounds",
        "1",
        "--workers",
        "1,2",
        "--smoke",
        results=tmp_path,
    )
    assert "## Overhead per evaluation" in report and "## Scaling" in report
    assert "| 2 |" in report
    assert "Median of 2 paired runs" in report and "bootstrap 95% interval of the median" in report
    assert "| 1 | " in report and "| in-process |" in report and "| Ray |" in report  # the order alternates


def test_the_scaling_benchmark_refuses_fewer_than_five_pairs(tmp_path):
    out = subprocess.run(
        [sys.executable, "-W", "ignore", str(BENCHMARKS / "scaling.py"), "--overhead-pairs", "3"],
        env={**os.environ, "EVONORM_RESULTS_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2 and "must be at least 5" in out.stderr, out.stderr[-2000:]
    assert not list(tmp_path.glob("scaling-*.md"))


def test_the_fidelity_benchmark_writes_its_tables(tmp_path):
    report = run_script("fidelity.py", "--smoke", results=tmp_path)
    assert "## Proxy settings tried against the target" in report
    assert re.search(r"Kendall tau \(proxy score against target mean, (\d+) layers\)", report)
    # The controls, the baselines without their statistic among them, and dyt and derf are marked apart
    # from the normalizers.
    for control in ("identity", "x_plus_relu", "tanh", "affine_relu", "swish"):
        assert f"| {control} | control | no statistic |" in report
    for layer in ("dyt", "derf"):
        assert f"| {layer} | library | no statistic |" in report
    assert "| gn_relu | library | group |" in report and "| evonorm_b0 | library | batch, instance |" in report
    assert "0 served from `scores-smoke.json`" in report
    # A second run with --reuse-target trains no target layer again, and says which machine trained them.
    again = run_script("fidelity.py", "--smoke", "--reuse-target", results=tmp_path)
    layers = int(re.search(r"against target mean, (\d+) layers", again).group(1))
    assert f"0 of {layers} layers trained in this run" in again
    assert re.search(rf"{layers} served from `scores-smoke.json` .*, computed on .+ cores, Python", again)


def test_the_fidelity_benchmark_refuses_a_corrupt_score_cache(tmp_path):
    (tmp_path / "scores-smoke.json").write_text('{"format": 1, "entr', encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-W", "ignore", str(BENCHMARKS / "fidelity.py"), "--smoke"],
        env={**os.environ, "EVONORM_RESULTS_DIR": str(tmp_path), "EVONORM_MACHINE": "smoke"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "scores-smoke.json cannot be read: it is not JSON" in out.stderr
    assert (tmp_path / "scores-smoke.json").read_text(encoding="utf-8") == '{"format": 1, "entr'
    assert not list(tmp_path.glob("fidelity-*"))


def test_the_fidelity_benchmark_measures_transformers_and_their_placements(tmp_path):
    config = str(BENCHMARKS.parent / "examples" / "transformer.yaml")
    report = run_script(
        "fidelity.py", "--smoke", "--config", config, results=tmp_path, timeout=900, report="fidelity-transformer"
    )
    assert "Baselines: layernorm_channel, rmsnorm, dyt" in report
    assert "| batch" not in report and "bn_relu" not in report  # a batch-free space leaves BatchNorm out
    assert "## Placement on the target task" in report
    # One table per placement setting (the target, a tenth of its learning rate, three times its warmup),
    # each with every layer under every placement, and a summary row per setting and placement.
    placement = report[report.index("## Placement on the target task") : report.index("## Target settings tried")]
    headings = re.findall(r"^### (target|learning rate / 10|warmup x3) \(lr ([\d.e-]+), warmup (\d+) of (\d+)", placement,
                          re.MULTILINE)  # fmt: skip
    assert [h[0] for h in headings] == ["target", "learning rate / 10", "warmup x3"], placement
    (_, lr, warmup, steps), (_, low_lr, low_warmup, _), (_, _, long_warmup, _) = headings
    assert float(low_lr) == pytest.approx(float(lr) / 10) and low_warmup == warmup
    assert int(long_warmup) == min(int(steps) // 2, 3 * int(warmup))
    assert placement.count("| layer | kind | statistic | pre | post | peri | mix |") == 3
    assert len(re.findall(r"^\| derf \| layer \| no statistic \|", placement, re.MULTILINE)) == 3
    rows = re.findall(r"\| rmsnorm \| layer \| channel \|(.*)\|\n", placement)
    assert len(rows) == 3 and all(len(re.findall(r"\d\.\d{3} ± \d\.\d{3}", row)) == 4 for row in rows), placement
    for placement_name in ("pre", "post", "peri", "mix"):
        assert len(re.findall(rf"^- {placement_name}: \S+ > ", placement, re.MULTILINE)) == 3
    summary = re.findall(r"^\| (target|learning rate / 10|warmup x3) \| (pre|post|peri|mix) \|(.*)\| ([+-]\d\.\d{3}) \| "
                         r"(yes|\*\*no\*\*) \|$", placement, re.MULTILINE)  # fmt: skip
    assert len(summary) == 12, placement
    for *_, margin, verdict in summary:  # the verdict is the margin's sign
        assert (verdict == "yes") == (float(margin) > 0)
    # The baselines and controls on the default target and on each target setting (the smoke run has one).
    assert "## Target settings tried" in report and "| layer | kind | statistic | default | depth 2 |" in report
    setting = re.search(r"^\| depth 2 \| (.*) \|$", report, re.MULTILINE)
    assert (
        setting is not None and "depth 2" in setting.group(1) and re.search(r"(yes|no \(\d+ pairs\))", setting.group(1))
    )
    targets = report[report.index("## Target settings tried") :]
    row = re.search(r"^\| identity \| control \| no statistic \|(.*)\|$", targets, re.MULTILINE)
    assert row is not None and len(re.findall(r"\d\.\d{3} ± \d\.\d{3}", row.group(1))) == 2, targets


def test_the_fidelity_benchmark_chooses_a_target_from_the_baselines_and_controls_alone(tmp_path):
    config = str(BENCHMARKS.parent / "examples" / "transformer.yaml")
    report = run_script(
        "fidelity.py", "--smoke", "--targets-only", "--config", config, "--target-variants", "default;depth 2",
        "--layer", "dyt_alpha1 = tanh(v1 * x)", "--label", "dyt", "--first-seed", "5000", results=tmp_path,
        report="fidelity-transformer-targets-dyt",
    )  # fmt: skip
    assert "## Proxy settings tried" not in report and "## Placement" not in report  # no proxy trained
    assert "target seeds [5000, 5001]." in report  # --first-seed: seeds no choice has read
    # The extra layer against each normalizer, paired by seed, on each setting.
    paired = report[report.index("## The further layers against the normalizers, paired by seed") :]
    for setting in ("default", "depth 2"):
        for baseline in ("layernorm_channel", "rmsnorm"):
            assert re.search(
                rf"^- {setting}: \*\*dyt_alpha1\*\* against \*\*{baseline}\*\*: dyt_alpha1 - {baseline} over 2 paired "
                r"seeds: median difference .*(Wilcoxon signed-rank p = [\d.e-]+|no test \(every difference 0\)): ",
                paired, re.MULTILINE,
            ), paired  # fmt: skip
    assert "22 layer scores trained in this run, 0 served" in report  # 10 layers and the extra one, 2 settings
    assert re.search(
        r"^\| dyt_alpha1 \| layer \| no statistic \| \d\.\d{3} ± \d\.\d{3} \| \d\.\d{3} ± ", report, re.MULTILINE
    )
    choice = report[report.index("## The choice of target") :]
    for setting in ("default", "depth 2"):
        row = re.search(
            rf"^\| {setting} \| (yes|no) \| ([+-]\d\.\d{{3}}) \| (\d\.\d{{3}}) \| (yes|no) \| - \| (?:\d+|all served from the cache) \| (yes|no) \|$",
            choice, re.MULTILINE,
        )  # fmt: skip
        assert row is not None, choice
        # The rule's parts decide the verdict: a margin within the spread never qualifies.
        assert (row.group(1) == "yes") == (float(row.group(2)) > float(row.group(3)))
        assert row.group(5) == ("yes" if row.group(1) == row.group(4) == "yes" else "no")
    assert "**Chosen: " in choice or "**No setting meets the rule.**" in choice


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--targets-only", "--layer", "broken = tanh(x"], "--layer 'broken = tanh(x'"),
        (["--targets-only", "--layer", "no_such_layer"], "--layer 'no_such_layer'"),
        (["--layer", "dyt"], "--layer needs --targets-only"),
        (
            ["--targets-only", "--label", "Bad/label"],
            "--label 'Bad/label' needs --targets-only or --search-winners and lower-case",
        ),
        (["--label", "ok"], "--label 'ok' needs --targets-only or --search-winners"),
        (["--first-seed", "5000"], "--first-seed needs --targets-only"),
        (["--targets-only", "--first-seed", "999"], "--first-seed 999: seeds 999-1001 must be >= 0 and miss"),
        (["--placement-settings", "target;lr x100"], "unknown placement settings ['lr x100']"),
        (["--placement-settings", "warmup x3", "--skip-placement"], "contradict each other"),
    ],
)
def test_the_fidelity_benchmark_refuses_options_it_cannot_honour(tmp_path, args, message):
    config = str(BENCHMARKS.parent / "examples" / "transformer.yaml")
    out = subprocess.run(
        [sys.executable, "-W", "ignore", str(BENCHMARKS / "fidelity.py"), "--smoke", "--config", config, *args],
        env={**os.environ, "EVONORM_RESULTS_DIR": str(tmp_path), "EVONORM_MACHINE": "smoke"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert not list(tmp_path.glob("fidelity-*"))


def test_the_target_choice_rule_on_scores_it_must_accept_and_refuse():
    fidelity = load_script("fidelity.py")
    config = fidelity.SearchConfig.from_yaml(BENCHMARKS.parent / "examples" / "transformer.yaml")
    layers = [
        layer for layer in fidelity.layer_set(config, 0, 0) if layer.label in {*config.baselines, *fidelity.CONTROLS}
    ]

    def run(scores: dict[str, list[float]]):
        found = []
        for layer in layers:
            seeds = scores.get(layer.label, [0.12, 0.13])
            runs = [{"accuracies": {"pre": s}, "error": None} for s in seeds]
            found.append({"mean": sum(seeds) / len(seeds), "std": abs(seeds[0] - seeds[1]), "runs": runs})
        return fidelity.TargetRun(config, layers, found, 0.0, 0)

    separated = fidelity.target_verdict(config, run({"layernorm_channel": [0.90, 0.92], "rmsnorm": [0.70, 0.74]}))
    assert separated.qualifies and separated.worst_margin == pytest.approx(0.70 - 0.13)
    # Above every control on every seed, but by less than the normalizers' own noise: refused.
    noisy = fidelity.target_verdict(config, run({"layernorm_channel": [0.90, 0.92], "rmsnorm": [0.20, 0.80]}))
    assert noisy.worst_margin > 0 and noisy.spread == pytest.approx(0.60) and not noisy.qualifies
    # One control seed above one normalizer seed: refused, whatever the means say.
    overlap = run({"layernorm_channel": [0.90, 0.92], "rmsnorm": [0.30, 0.95], "tanh": [0.10, 0.35]})
    assert not fidelity.target_verdict(config, overlap).normalizers_above_controls
    # Every normalizer saturated and tied: no room at the top to rank good layers.
    saturated = fidelity.target_verdict(config, run({"layernorm_channel": [1.0, 0.999], "rmsnorm": [0.999, 1.0]}))
    assert saturated.normalizers_above_controls and not saturated.room_at_the_top and not saturated.qualifies


def test_the_fidelity_benchmark_rejects_an_unknown_target_setting(tmp_path):
    config = str(BENCHMARKS.parent / "examples" / "transformer.yaml")
    out = subprocess.run(
        [sys.executable, "-W", "ignore", str(BENCHMARKS / "fidelity.py"), "--smoke", "--config", config,
         "--target-variants", "depth 99"],
        env={**os.environ, "EVONORM_RESULTS_DIR": str(tmp_path), "EVONORM_MACHINE": "smoke"},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 2 and "unknown target variants ['depth 99']" in out.stderr, out.stderr[-2000:]
    assert not list(tmp_path.glob("fidelity-*"))


def test_the_abuse_probe_writes_its_table(tmp_path):
    report = run_script(
        "abuse.py", "--clients", "3", "--seconds", "1", "--levels", "4", "--runs", "1", results=tmp_path
    )
    assert "| defaults (rate limit on) | 1 | 3 |" in report and "| rate limit off | 1 | 3 |" in report
    assert "/healthz probes" in report and "- rate limit off: /healthz p99 median" in report


def test_the_soak_benchmark_writes_its_table(tmp_path):
    report = run_script(
        "soak.py", "--candidates", "6", "--baseline-at", "2", "--sample-every", "2", results=tmp_path, timeout=300
    )
    assert "Resident memory at candidate 2:" in report and "at candidate 6:" in report
    assert "| candidate | RSS MB | layers | linecache |" in report


def test_the_soak_benchmark_on_triton_keeps_its_caches_within_their_caps(tmp_path):
    report = run_script(
        "soak.py",
        *("--backend", "triton", "--candidates", "4", "--baseline-at", "1", "--sample-every", "1"),
        results=tmp_path,
        report="soak-triton",
        env={"TRITON_INTERPRET": "1", "EVONORM_LAYER_CACHE_SIZE": "2", "EVONORM_COMPILE_LOG_SIZE": "5"},
        timeout=600,
    )
    assert "EVONORM_LAYER_CACHE_SIZE=2, " in report and "Triton kernels run by its interpreter" in report
    rows = [line.split("|")[1:7] for line in report.splitlines() if line.startswith("| ") and "candidate" not in line]
    layers = {int(row[0]): (int(row[2]), int(row[3]), int(row[4])) for row in rows if row[0].strip().isdigit()}
    assert layers[1][0] == 1 and layers[4] == (2, 2, 5)  # layers, their linecache entries, the log: at their caps


def test_the_gpu_check_dry_run_checks_its_plan_and_refuses_to_run_without_cuda(tmp_path):
    report = run_script("gpu_check.py", "--dry-run", results=tmp_path, timeout=300)
    for step in ("GPU-marked tests", "kernel benchmark", "quick search on cuda"):
        assert f"| {step} | not run (dry run) |" in report
    assert "-m gpu" in report and "--gpus 0.25" in report
    import torch

    if not torch.cuda.is_available():
        env = {**os.environ, "EVONORM_RESULTS_DIR": str(tmp_path / "real")}
        refused = subprocess.run(
            [sys.executable, str(BENCHMARKS / "gpu_check.py")], env=env, capture_output=True, text=True, timeout=300
        )
        assert refused.returncode == 2 and "no CUDA device here" in refused.stderr
        assert not (tmp_path / "real").exists()


def test_the_cpu_step_benchmark_writes_its_sections(tmp_path):
    report = run_script(
        "cpu_step.py",
        *("--smoke", "--rounds", "2", "--steps", "2", "--random", "2", "--repeats", "3", "--no-compile"),
        *("--layers", "bn_relu,evonorm_s0"),
        results=tmp_path,
        report="cpu-step",
    )
    for section in ("## Library layers against native modules", "## Random candidates", "## Memory held", "## Levers"):
        assert section in report
    assert (
        "| bn_relu | BatchNorm, ReLU, affine |" in report and "| evonorm_s0 | the formula in eager PyTorch |" in report
    )
    assert "analytic-backward Function" in report and "torch.var_mean" in report


def test_the_cpu_step_benchmark_refuses_too_few_rounds_and_unknown_layers(tmp_path):
    for args, message in ((["--rounds", "3"], "at least 7"), (["--smoke", "--layers", "dyt"], "no native counterpart")):
        out = subprocess.run(
            [sys.executable, str(BENCHMARKS / "cpu_step.py"), *args],
            env={**os.environ, "EVONORM_RESULTS_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode != 0 and message in out.stdout + out.stderr


@pytest.mark.postgres
def test_the_paper_scale_benchmark_writes_its_tables(tmp_path, postgres_database_url):
    server = postgres_database_url.render_as_string(hide_password=False)  # it creates a database of its own there
    args = ["--budget", "30", "--workers", "4,12", "--window", "15", "--time-factor", "0.002", "--check-workers", "0,1"]
    args += ["--selection-population", "20", "--selection-proposals", "3", "--postgres", server, "--label", "tiny"]
    args += ["--index-keys", "300,600"]
    report = run_script("paper_scale.py", *args, results=tmp_path, report="paper-scale-tiny")
    assert not list(tmp_path.glob("paper-scale-smoke.md"))  # the label names the file, beside earlier runs
    assert "## Throughput" in report and "## Where the controller's time goes" in report
    assert "No cache serves any figure" in report
    assert (
        "| SQLite (WAL) | 4 | 0 | controller | 30 |" in report and "| PostgreSQL | 12 | 1 | controller | 30 |" in report
    )
    # The check pool's own table: one row per run with a pool, what it found done and its CPU.
    pool_table = report.split("## The check pool")[1].split("## ")[0]
    pool_rows = [
        line for line in pool_table.splitlines() if line.startswith("| SQLite") or line.startswith("| Postgre")
    ]
    assert len(pool_rows) == 4 and all(" | 1 | " in row and " of 30 (" in row for row in pool_rows)
    # The extrapolation to a pool with cores to spare: rows for the runs with a pool only.
    spare = report.split("With a check pool and cores to spare for it")[1].split("## ")[0]
    spare_rows = [line for line in spare.splitlines() if line.startswith(("| SQLite", "| PostgreSQL"))]
    assert "pool cores needed" in spare and len(spare_rows) == 4
    assert all(row.split("|")[3].strip() == "1" for row in spare_rows)  # the check workers column
    # The duplicate index's memory, exact and bounded, at each count asked for.
    index_table = report.split("## The duplicate index at a million candidates")[1]
    assert "| 300 |" in index_table and "| 600 |" in index_table
    assert "## Growth with the candidates stored" in report and "| 20 |" in report
    # Group commits: the outcomes per outcome transaction and the candidates per transaction of proposals.
    assert "outcomes per outcome txn p50 / max" in report and "candidates per proposal txn p50 / max" in report
    # The statements the outcome groups sent per outcome: counted on the write engine, a handful per group.
    throughput = report.split("## Throughput")[1].split("\n\n")[1].splitlines()
    column = throughput[0].split(" | ").index("statements per outcome")
    counts = [float(row.split(" | ")[column]) for row in throughput[2:]]
    assert len(counts) == 8 and all(0 < n < 12 for n in counts)  # 2 backends x 2 sizes x 2 pool settings


def test_the_paper_scale_benchmark_pairs_the_check_pool_settings_over_rounds(tmp_path):
    args = ["--budget", "24", "--workers", "4", "--time-factor", "0.002", "--check-workers", "0,1", "--rounds", "2"]
    args += ["--backends", "sqlite", "--selection-population", "20", "--selection-proposals", "3", "--index-keys", ""]
    report = run_script("paper_scale.py", *args, results=tmp_path, report="paper-scale")
    # Every run names its round; the paired table compares the pool with the first setting over both rounds.
    assert "| SQLite (WAL) | 4 | 0 | controller | 1 | 24 |" in report
    assert "| SQLite (WAL) | 4 | 1 | controller | 2 | 24 |" in report
    paired = report.split("## Settings paired over rounds")[1].split("## ")[0]
    row = next(
        line
        for line in paired.splitlines()
        if line.startswith("| SQLite (WAL) | 4 | 1 check workers vs 0 check workers |")
    )
    assert " of 2 |" in row
    assert "## The duplicate index at a million candidates" not in report  # --index-keys '' leaves it out


def test_the_paper_scale_benchmark_pairs_this_checkout_with_another(tmp_path):
    other = tmp_path / "earlier"
    shutil.copytree(BENCHMARKS.parent / "evonorm_search", other / "evonorm_search")
    args = ["--budget", "16", "--workers", "4", "--time-factor", "0.002", "--rounds", "2", "--against", str(other)]
    args += ["--backends", "sqlite", "--selection-population", "20", "--selection-proposals", "3", "--index-keys", ""]
    report = run_script("paper_scale.py", *args, results=tmp_path / "results", report="paper-scale")
    # Each run names the checkout it imported (the script refuses a child that imported another one).
    throughput = report.split("## Throughput")[1].split("## ")[0]
    assert throughput.count("| SQLite (WAL) | 4 | earlier (not a git checkout) | 0 |") == 2
    assert throughput.count("| SQLite (WAL) | 4 | ") == 4
    paired = report.split("## Settings paired over rounds")[1].split("## ")[0]
    row = next(line for line in paired.splitlines() if line.startswith("| SQLite (WAL) | 4 | "))
    assert row.split(" | ")[2].endswith(" vs earlier (not a git checkout)") and " of 2 |" in row
    # Resuming a search filled in bulk, paired the same way (each run fills its own database).
    args = ["--budget", "12", "--workers", "4", "--time-factor", "0.002", "--rounds", "2", "--against", str(other)]
    args += ["--stored", "200", "--stored-only", "--backends", "sqlite", "--index-keys", ""]
    args += ["--selection-population", "20", "--selection-proposals", "3", "--label", "stored"]
    report = run_script("paper_scale.py", *args, results=tmp_path / "results", report="paper-scale-stored")
    paired = report.split("## Settings paired over rounds")[1].split("## ")[0]
    row = next(line for line in paired.splitlines() if line.startswith("| SQLite (WAL) | 4 resuming 200 | "))
    assert " vs earlier (not a git checkout) |" in row and " of 2 |" in row
    resumed = report.split("## The controller on a search that already holds many candidates")[1].split("## ")[0]
    assert resumed.count("| SQLite (WAL) | 4 | earlier (not a git checkout) | 200 |") == 2
    refused = subprocess.run(
        [sys.executable, str(BENCHMARKS / "paper_scale.py"), "--against", str(tmp_path / "nowhere")],
        env={**os.environ, "EVONORM_RESULTS_DIR": str(tmp_path / "refused")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "not a checkout of this project" in refused.stderr


def test_the_paper_scale_benchmark_resumes_a_search_filled_in_bulk(tmp_path):
    args = ["--budget", "20", "--workers", "4,6", "--time-factor", "0.002", "--stored", "300", "--stored-only"]
    args += ["--backends", "sqlite", "--selection-population", "20", "--selection-proposals", "3", "--index-keys", ""]
    report = run_script("paper_scale.py", *args, results=tmp_path, report="paper-scale")
    section = report.split("## The controller on a search that already holds many candidates")[1].split("## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| SQLite (WAL) |")]
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    assert [c[:3] for c in cells] == [["SQLite (WAL)", w, "300"] for w in ("4", "6")]  # each --workers resumes
    assert all(c[6] == "20" for c in cells)  # 20 new candidates after 300 stored
    assert all(float(c[3]) > 0 and float(c[4]) > 0 for c in cells)  # resumed after loading them, memory measured
    for workers in (4, 6):  # the tables show the resumed runs
        assert f"| SQLite (WAL) | {workers} | 0 | controller | 20 |" in report


def test_the_paper_scale_benchmark_pairs_the_probes_on_the_controller_with_the_probes_on_the_workers(tmp_path):
    args = ["--budget", "24", "--workers", "4", "--time-factor", "0.002", "--probes", "controller,workers"]
    args += ["--rounds", "2", "--stored", "150", "--probe-sample", "12", "--backends", "sqlite", "--index-keys", ""]
    args += ["--selection-population", "20", "--selection-proposals", "3"]
    report = run_script("paper_scale.py", *args, results=tmp_path, report="paper-scale")
    # The real probes measured on both kinds of layers the runs propose, as the simulated workers play them.
    probes = report.split("## The probes on the workers")[1].split("## ")[0]
    rows = {line.split(" | ")[0].strip("| "): line for line in probes.splitlines() if line.startswith("| ")}
    assert {"random", "mutants"} <= set(rows) and all(" | 12 | " in rows[k] for k in ("random", "mutants"))
    assert re.search(r"\| \d+ of \d+ \(\d+\.\d%\) \| [\d.]+ / [\d.]+ \|", rows["random"])
    # Fresh and resumed runs, each setting in both rounds, paired.
    throughput = report.split("## Throughput")[1].split("## ")[0]
    for where in ("controller", "workers"):
        assert "| SQLite (WAL) | 4 | 0 | " + where + " | 1 | 24 |" in throughput
        assert "| SQLite (WAL) | 4 | 0 | " + where + " | 2 | 24 |" in throughput
    paired = report.split("## Settings paired over rounds")[1].split("## ")[0]
    vs = "probes on the workers vs probes on the controller"
    assert f"| SQLite (WAL) | 4 | {vs} |" in paired and f"| SQLite (WAL) | 4 resuming 150 | {vs} |" in paired
    # Another checkout that has the setting runs with the probes on the workers too, paired with this one.
    other = tmp_path / "earlier"
    shutil.copytree(BENCHMARKS.parent / "evonorm_search", other / "evonorm_search")
    args = ["--budget", "12", "--workers", "4", "--time-factor", "0.002", "--rounds", "2", "--against", str(other)]
    args += ["--probes", "workers", "--probe-sample", "10", "--backends", "sqlite", "--index-keys", ""]
    args += ["--selection-population", "20", "--selection-proposals", "3", "--label", "against"]
    report = run_script("paper_scale.py", *args, results=tmp_path / "against", report="paper-scale-against")
    throughput = report.split("## Throughput")[1].split("## ")[0]
    assert throughput.count("| SQLite (WAL) | 4 | earlier (not a git checkout) | 0 | workers |") == 2
    earlier = tmp_path / "before-probe-sites" / "evonorm_search"  # a checkout from before the setting
    earlier.mkdir(parents=True)
    (earlier / "__init__.py").write_text("")
    (earlier / "enums.py").write_text("class CandidateStatus: ...\n")
    for bad, message in (
        (["--probes", "worker"], "each of controller, workers at most once"),
        (["--probes", "workers", "--against", str(earlier.parent)], "leave --probes out"),
    ):
        out = subprocess.run(
            [sys.executable, str(BENCHMARKS / "paper_scale.py"), *bad],
            env={**os.environ, "EVONORM_RESULTS_DIR": str(tmp_path / "refused")},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 2 and message in out.stderr


def test_the_paper_scale_benchmark_refuses_a_label_that_is_not_a_file_name_part(tmp_path):
    out = subprocess.run(
        [sys.executable, "-W", "ignore", str(BENCHMARKS / "paper_scale.py"), "--label", "../Bad label"],
        env={**os.environ, "EVONORM_RESULTS_DIR": str(tmp_path), "EVONORM_MACHINE": "smoke"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "--label '../Bad label': use lower-case letters" in out.stderr, out.stderr[-2000:]
    assert not list(tmp_path.iterdir())


def test_the_own_task_benchmark_writes_its_tables(tmp_path):
    report = run_script("own_task.py", "--smoke", results=tmp_path, report="own-task", timeout=300)
    assert "no cache served any figure" in report
    assert "## Step time: DSL layer against native BatchNorm and ReLU" in report
    for package in ("torchvision", "timm"):
        # Rows for both DSL layers where the package imports, else a line saying why it does not.
        measured = all(f"| {package} resnet18 | {layer} | " in report for layer in ("bn_relu", "evonorm_s0"))
        assert measured or f"- {package} resnet18: not importable: " in report, package
    assert "## Data loading per epoch, per data kind" in report
    for kind in ("imagefolder", "arrays", "python", "mnist1d", "torchvision (FakeData)"):
        assert re.search(rf"^\| {re.escape(kind)} \|", report, re.MULTILINE), kind
    # The folder streamed reads the same examples as held in memory, the whole epoch through its loader.
    folder, streamed = (
        re.search(rf"^\| {re.escape(kind)} \| 1x8x8 \| ([\d,]+ / [\d,]+) \|.*\| ([\d,]+) \|$", report, re.MULTILINE)
        for kind in ("imagefolder", "imagefolder, streamed (2 loader workers)")
    )
    assert folder is not None and streamed is not None, report
    assert folder.group(1) == streamed.group(1)


def test_the_timed_run_reports_a_ladders_validated_front(tmp_path):
    """`search.py --quick-run-only --set 'fidelities=...'`: after the timed run, when the proxy rung ended
    and the validated front beside the validated baselines, read from the run's store."""
    from evonorm_search.store import open_store
    from tests.search.conftest import run_to_end
    from tests.search.test_baselines import small_config

    db = f"sqlite:///{tmp_path / 'run.db'}"
    config = small_config(budget=4, fidelities={"eta": 3, "max_promotions": 1, "seeds": 1})
    with open_store(db) as store:
        search_id, final = run_to_end(store, config)
    assert search_id == 1 and final.state == "completed"
    answer = load_script("search.py").validated_answer(db)
    ended, finished = map(int, re.search(r"ended (\d+) s after .* finished at (\d+) s", answer).groups())
    assert ended <= finished
    rows = re.findall(r"^\| (candidate \d+|gn_relu|relu) \| (layer|baseline) \| 1 \| (\d\.\d{3}) ± ", answer, re.M)
    assert len(rows) == 3 and rows[0][:2] == (rows[0][0], "layer") and rows[0][0].startswith("candidate"), answer
    assert {(name, role) for name, role, _ in rows[1:]} == {("gn_relu", "baseline"), ("relu", "baseline")}, answer
    table = [line for line in answer.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(rows) and all(line.count(" | ") == 4 for line in table), answer  # a row per line
    assert (
        load_script("_common.py").one_line("t1 = x * x\ny = t1 / rms(t1, batch)\n")
        == "t1 = x * x; y = t1 / rms(t1, batch)"
    )
    without = f"sqlite:///{tmp_path / 'plain.db'}"
    with open_store(without) as store:
        run_to_end(store, small_config(budget=2))
    assert load_script("search.py").validated_answer(without) == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "seed=1"], "--set and --label go with --quick-run-only"),
        (["--quick-run-only", "--label", "Bad Label"], "--label must be lower-case letters, digits and dashes"),
    ],
)
def test_the_timed_run_refuses_misplaced_or_bad_options(tmp_path, args, message):
    out = subprocess.run(
        [sys.executable, "-W", "ignore", str(BENCHMARKS / "search.py"), *args],
        env={**os.environ, "EVONORM_RESULTS_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2 and message in out.stderr, out.stderr[-2000:]
    assert not list(tmp_path.glob("*.md"))


@pytest.mark.xdist_group("ray")
def test_the_ray_scale_benchmark_reports_what_went_through_ray(tmp_path):
    report = run_script("ray_scale.py", "--smoke", "--skip-postgres", results=tmp_path, timeout=600, report="ray-scale")
    measured = dict(re.findall(r"^\| ([^|]+?) \| ([^|]+?) \|$", report, flags=re.MULTILINE))
    assert measured["nodes x concurrent calls per node"] == "2 x 20 = 40"
    assert int(measured["most evaluations in flight at once"]) == 40  # the controller filled the cluster
    assert measured["lost (submitted, never came back, not cancelled)"] == "0"
    assert measured["errors from Ray / failed candidates"] == "0 / 0"
    assert measured["candidates left queued or running"] == "0"
    kills, rerun = map(
        int, measured["actors killed with calls in flight / their calls run again and back"].split(" / ")
    )
    assert kills == 2 and rerun >= 1
    assert re.fullmatch(
        r"\d+ ms / \d+ ms / \d+ ms \([\d,]+ calls\)",
        measured["Ray's overhead per evaluation, actor alive: p50 / p99 / max"],
    )


def test_the_ray_scale_benchmark_refuses_bad_sizes(tmp_path):
    out = subprocess.run(
        [sys.executable, "-W", "ignore", str(BENCHMARKS / "ray_scale.py"), "--nodes", "4", "--in-flight", "2"],
        env={**os.environ, "EVONORM_RESULTS_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2 and "--in-flight at least --nodes" in out.stderr, out.stderr[-2000:]


@pytest.mark.postgres
def test_the_api_under_search_benchmark_measures_reads_and_event_delay(tmp_path, postgres_database_url):
    server = postgres_database_url.render_as_string(hide_password=False)  # it creates a database of its own there
    report = run_script(
        "api_under_search.py", "--smoke", "--postgres", server, results=tmp_path, timeout=600, report="api-under-search"
    )
    rows = re.findall(
        r"^\| (status|pareto front|candidates page) \| (\d+) \| (\d+) \| \d+ / \d+ / \d+ ms \|$", report, re.M
    )
    assert [r[0] for r in rows] == ["status", "pareto front", "candidates page"], report
    assert all(int(requests) > 0 and errors == "0" for _, requests, errors in rows), report
    assert "5 streams opened, 0 refused" in report
    lag = re.search(r"over ([\d,]+) events: (\d+) / (\d+) / (\d+) ms", report)
    assert lag and int(lag.group(1).replace(",", "")) > 0 and int(lag.group(2)) >= 0, report
    assert re.search(r"The controller finished [\d,]+ candidates", report)
