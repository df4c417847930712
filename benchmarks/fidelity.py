"""Proxy fidelity: does the proxy score rank layers the way the target task does?

For a search configuration (default `examples/quick.yaml`), every layer of a fixed set is scored twice:
by the proxies (what the search records: `config.proxy_spec()`, the search's seed, no rejection) and by
the target task (`config.target_spec(seed)` over the validation seeds: deeper and wider networks,
longer SGD training, the test split no search reads). The layer set is the library, the controls that
do not normalize (identity, relu, x * exp(v1), x + relu(x), tanh(x), and the baselines without their
statistic: relu(v1 * x + v0), x * sigmoid(v1 * x)) and random candidates of the search space that pass
the cheap rejections (static, duplicate, numeric, stability). The tables mark every layer that
aggregates over no axis ("no statistic": the controls, dyt, derf) apart from the normalizers.

Reported: per layer the proxy score and the target mean and std; Kendall's tau between the two over all
layers with a bootstrap 95% interval (layers resampled); the control rule (every control below each
of bn_relu, gn_relu, evonorm_b0 and evonorm_s0, on the proxies and on the target). Proxy variants
(`VARIANTS`: other depths, optimizers, steps, data) are scored against the same target, so the table
shows the settings tried and which one predicts the target best at what cost.

Target and proxy scores are saved beside the table in the score cache (`scores-<machine>.json`,
`evonorm_search.search.score_cache`: keyed on every setting with its defaults, the data, the seeds, the
package version and the training code, each entry with the machine that computed it);
`--reuse-target` and `--reuse-proxies` serve them from that file instead of training again (the tables
say how many, and which machines computed them). `fidelity-<machine>.json` is the record of the runs
before that cache, left as they wrote it and never read. "The choice" table states the rule that picks
the default among the variants and checks each against it.

    python benchmarks/fidelity.py                  # the full run (tens of minutes on 2 cores)
    python benchmarks/fidelity.py --reuse-target --reuse-proxies --search-winners   # with the searches' best
    python benchmarks/fidelity.py --smoke          # a tiny end-to-end run (the test suite's)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine_slug, markdown_table, one_line, write_result

from evonorm_search import library, parse
from evonorm_search import statistics as decide
from evonorm_search.proxies.config import TRANSFORMER_KINDS
from evonorm_search.search import SearchConfig
from evonorm_search.search.controller import build_checks
from evonorm_search.search.evaluator import EvaluationTask, evaluate_task
from evonorm_search.search.pool import ProcessPoolEvaluator
from evonorm_search.search.rejection import DuplicateIndex
from evonorm_search.search.score_cache import CachedScores, ScoreCache, ScoreCacheError, cached_scores
from evonorm_search.search.score_cache import describe_machine as describe_machine_record
from evonorm_search.search.scoring import LayerToScore
from evonorm_search.search.space import random_graph

QUICK = Path(__file__).resolve().parent.parent / "examples" / "quick.yaml"
BASELINES = ("bn_relu", "gn_relu", "evonorm_b0", "evonorm_s0")  # quick.yaml's (benchmarks/search.py's)
CONTROLS = {
    "identity": "x",
    "relu": "relu(x)",
    "scale": "x * exp(v1)",
    "x_plus_relu": "x + relu(x)",
    "tanh": "tanh(x)",
    # The baselines without their statistic, so a baseline that beats the controls is seen to do it by
    # normalizing and not by its affine parameters or its gate: bn_relu and gn_relu, and evonorm_s0.
    "affine_relu": "relu(v1 * x + v0)",
    "swish": "x * sigmoid(v1 * x)",
}
NO_STATISTIC = "no statistic"

# Proxy settings tried against the same target: name -> overrides of the search configuration.
# `default` is the configuration as given (examples/quick.yaml: blocks [1, 1], 200 SGD steps of 64).
_SGD = {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine", "grad_clip": None,
        "device": "cpu", "threads": 1}  # fmt: skip
_SMALL = [
    {"kind": "resnet", "width": 8, "blocks": [1, 1]},
    {"kind": "mobilenetv2", "width": 8, "blocks": [1, 1], "expansion": 3},
    {"kind": "efficientnet", "width": 8, "blocks": [1, 1], "expansion": 3},
]


def _archs(blocks: list[int], width: int = 8) -> list[dict]:
    return [{**a, "width": width, "blocks": blocks} for a in _SMALL]


def _sgd(steps: int, batch_size: int, lr: float = 0.1) -> dict:
    return {**_SGD, "lr": lr, "warmup_steps": steps // 10, "steps": steps, "batch_size": batch_size}


FORMER = "blocks [1, 1], 100 steps of 128"
VARIANTS: dict[str, dict] = {
    "default": {},
    # The proxies before depth was measured: as deep as they were cheap; searches found their blind spot
    # (piecewise-linear layers without a statistic that train fast when shallow and fail when deep).
    FORMER: {"architectures": _SMALL, "training": _sgd(100, 128)},
    "blocks [1, 1], 200 steps of 128": {"architectures": _SMALL, "training": _sgd(200, 128)},
    # Learning rates: normalized networks are invariant to their weights' scale, so a high one might
    # separate them further; it does not (lr 0.4 also lets tanh past gn_relu).
    "lr 0.05": {"training": _sgd(200, 64, lr=0.05)},
    "lr 0.2": {"training": _sgd(200, 64, lr=0.2)},
    "lr 0.4": {"training": _sgd(200, 64, lr=0.4)},
    # Depth: the target is 3x deeper than the [1, 1] proxies, and layers that do not normalize fail with depth
    # (but deeper proxies cost more and leave the target less than 3x their norm-activation slots).
    "blocks [2, 2], 100 steps of 128": {"architectures": _archs([2, 2]), "training": _sgd(100, 128)},
    "blocks [2, 2], 200 steps of 64": {"architectures": _archs([2, 2])},
    "blocks [3, 3, 2], 100 steps of 128": {"architectures": _archs([3, 3, 2]), "training": _sgd(100, 128)},
    "adamw": {"training": {**_sgd(200, 64, lr=0.003), "optimizer": "adamw"}},
    # The proxies before this benchmark existed: 8x8 digits, AdamW, gradient clipping.
    "digits (the first default)": {
        "architectures": _SMALL,
        "data": {"name": "digits", "validation_fraction": 0.25},
        "training": {
            "optimizer": "adamw",
            "lr": 0.003,
            "weight_decay": 5e-4,
            "schedule": "cosine",
            "steps": 120,
            "batch_size": 32,
            "device": "cpu",
            "threads": 1,
        },
    },
}


# Transformer proxy settings on MNIST-1D (examples/transformer-mnist1d.yaml: patches of 4, pre- and
# post-norm encoders of width 32 and depth 4, 200 AdamW steps of 64). Settings measured at depth 2 name
# their encoders, so their rows stay what was measured whatever the default becomes.
_ADAMW = {"optimizer": "adamw", "lr": 0.003, "weight_decay": 0.01, "schedule": "cosine", "warmup_steps": 20,
          "steps": 200, "batch_size": 64, "device": "cpu", "threads": 1}  # fmt: skip


def _encoders(depth: int = 4, width: int = 32, patch_size: int = 4, placements=("pre", "post")) -> list[dict]:
    return [{"kind": "transformer", "name": p, "placement": p, "width": width, "heads": 4, "depth": depth,
             "mlp_ratio": 2, "patch_size": patch_size} for p in placements]  # fmt: skip


MNIST1D_VARIANTS: dict[str, dict] = {
    "default": {},
    # Half as deep: half the cost, and its ranking predicts the target's less well.
    "depth 2": {"architectures": _encoders(depth=2)},
    # Associative recall (one token per position, the answer needs attention; the proxies before
    # MNIST-1D): learnt late and suddenly, so 200 steps leave every layer between 0.35 and 0.40.
    "recall, depth 2": {"architectures": _encoders(depth=2, patch_size=1),
                        "data": {"name": "recall", "samples": 4000, "validation_fraction": 0.25}},
    "depth 2, lr 0.001": {"architectures": _encoders(depth=2), "training": {**_ADAMW, "lr": 0.001}},
    "depth 2, lr 0.01": {"architectures": _encoders(depth=2), "training": {**_ADAMW, "lr": 0.01}},
    "depth 2, 400 steps of 64": {"architectures": _encoders(depth=2),
                                 "training": {**_ADAMW, "steps": 400, "warmup_steps": 40}},
}  # fmt: skip


# Transformer proxy settings on recall (examples/transformer.yaml: one token per pair, one pre-norm encoder
# of width 32 and depth 6, 150 AdamW steps of 64 at lr 0.03). Every other setting names its encoders and
# training in full, so its row stays what was measured whatever the default becomes. The first default
# was a pre- and a post-norm encoder at lr 0.02, the second the pre-norm encoder at depth 4 and lr 0.03;
# the rest move from them in placement, depth, learning rate (the target's) and steps. Depth 6 replaced
# depth 4 when the searches' winners joined the layer set (fidelity-winners-transformer-cpu2.md).
_RECALL_ADAMW = {**_ADAMW, "lr": 0.02, "steps": 150, "warmup_steps": 25}


def _recall_proxies(placements=("pre", "post"), depth: int = 4, lr: float = 0.02, steps: int = 150) -> dict:
    return {"architectures": _encoders(depth=depth, patch_size=1, placements=placements),
            "training": {**_RECALL_ADAMW, "lr": lr, "steps": steps, "warmup_steps": steps // 6}}  # fmt: skip


TRANSFORMER_VARIANTS: dict[str, dict] = {
    "default": {},
    "pre and post, lr 0.02 (the first default)": _recall_proxies(),
    "pre only, depth 4, lr 0.03 (the second default)": _recall_proxies(("pre",), depth=4, lr=0.03),
    "pre and peri, lr 0.02": _recall_proxies(("pre", "peri")),
    "pre only, lr 0.02": _recall_proxies(("pre",)),
    "pre and post, depth 2, lr 0.02": _recall_proxies(depth=2),
    "pre and post, lr 0.03": _recall_proxies(lr=0.03),
    "pre and post, lr 0.02, 300 steps": _recall_proxies(steps=300),
    "pre only, depth 6, lr 0.02": _recall_proxies(("pre",), depth=6),
}


# Target settings tried (transformers): overrides of the validation section, scored on the baselines and
# the controls only. A target on which no baseline beats the controls cannot rank normalization layers,
# whatever the proxies do; on the default one the identity leads. Deeper, faster-learning, longer-trained
# and image targets, each one step from the default.
_TARGET_ADAMW = {"optimizer": "adamw", "lr": 0.003, "weight_decay": 0.01, "schedule": "cosine", "warmup_steps": 50,
                 "steps": 500, "batch_size": 64, "device": "cpu", "threads": 1}  # fmt: skip


# Recall targets: associative recall (one token per (key, value) pair, then the query; answering needs
# attention) on one pre-norm encoder of width 64 and depth 8 trained fast (AdamW at a high learning
# rate): the regime where LayerNorm and RMSNorm are known to matter. Chance is 1 / recall_values = 0.125.
# Each setting moves one thing from the first: the learning rate, the steps, the pairs (room at the
# top), the depth. `fidelity.py --targets-only` scores them on the baselines and controls and picks one.
def _recall(pairs: int = 6, depth: int = 8, lr: float = 0.02, steps: int = 300) -> dict:
    encoder = {**_encoders(depth=depth, width=64, patch_size=1)[0], "name": "pre"}
    return {
        "architectures": [encoder],
        "data": {"name": "recall", "samples": 8000, "test_samples": 2000, "recall_pairs": pairs},
        "training": {**_TARGET_ADAMW, "lr": lr, "steps": steps, "warmup_steps": max(25, steps // 6)},
    }


RECALL_TARGETS: dict[str, dict] = {
    "recall, lr 0.02": _recall(),
    "recall, lr 0.03": _recall(lr=0.03),
    "recall, lr 0.02, 150 steps": _recall(steps=150),
    "recall, depth 4, lr 0.03": _recall(depth=4, lr=0.03),
    "recall, 12 pairs, lr 0.02": _recall(pairs=12),
    "recall, 12 pairs, lr 0.03": _recall(pairs=12, lr=0.03),
    "recall, 12 pairs, lr 0.02, 600 steps": _recall(pairs=12, steps=600),
}
TARGET_VARIANTS: dict[str, dict] = {
    "depth 12": {"architectures": _encoders(depth=12, width=64)},
    "depth 12, lr 0.01, pre-norm": {"architectures": _encoders(depth=12, width=64)[:1],
                                    "training": {**_TARGET_ADAMW, "lr": 0.01}},
    "2,000 steps": {"training": {**_TARGET_ADAMW, "steps": 2000, "warmup_steps": 100}},
    "ViT on digits": {"architectures": [{**a, "kind": "vit", "patch_size": 2} for a in _encoders(depth=6, width=64)],
                      "data": {"name": "digits"}},
    **RECALL_TARGETS,
}  # fmt: skip


@dataclass(frozen=True)
class Family:
    """What a kind of network is measured with: its proxy settings, the one the layer table sets beside
    the default, the results file's name and title, the search benchmark's results name, and the
    baseline a search's best layer must come within one std of."""

    variants: dict[str, dict]
    target_variants: dict[str, dict]
    former: str | None
    result: str
    title: str
    search: str
    reference: str
    # The choice rule: the target's least multiple of a setting's norm-activation slots and training
    # examples, and whether the control rule on the proxies must hold, said in `rule`.
    min_slots: float
    min_examples: float
    needs_control_rule: bool
    rule: str


CONVOLUTIONAL = Family(
    VARIANTS, {}, FORMER, "fidelity", "Proxy fidelity: proxy scores against the target task", "search", "gn_relu",
    min_slots=3, min_examples=5, needs_control_rule=True,
    rule="A proxy setting qualifies when the target keeps at least 3x its norm-activation slots and 5x its "
    "training examples and every control stays below every baseline (the table above)",
)  # fmt: skip
TRANSFORMER_MNIST1D = Family(
    MNIST1D_VARIANTS,
    TARGET_VARIANTS,
    None,
    "fidelity-transformer-mnist1d",
    "Proxy fidelity for transformers on MNIST-1D: proxy scores against the target task, and placement",
    "search-transformer-mnist1d",
    "rmsnorm",
    min_slots=1.01, min_examples=2, needs_control_rule=False,
    rule="A proxy setting qualifies when the target is deeper (more norm-activation slots than the proxies) and "
    "sees at least 2x its training examples. The control rule cannot decide here: on the target itself the "
    "identity, relu(x) and x + relu(x) score above baselines (the layer table), so no proxy that ranks like "
    "the target keeps every control below every baseline",
)  # fmt: skip
TRANSFORMER = Family(
    TRANSFORMER_VARIANTS,
    RECALL_TARGETS,
    None,
    "fidelity-transformer",
    "Proxy fidelity for transformers on recall: proxy scores against the target task, and placement",
    "search-transformer",
    "rmsnorm",
    min_slots=1.01, min_examples=2, needs_control_rule=True,
    rule="A proxy setting qualifies when the target is deeper (more norm-activation slots than the proxies), "
    "sees at least 2x its training examples, and every control stays below every baseline on the proxies",
)  # fmt: skip
TRANSFORMER_FAMILIES = (TRANSFORMER, TRANSFORMER_MNIST1D)
PLACEMENTS = ("pre", "post", "peri", "mix")


def family_of(config: SearchConfig) -> Family:
    """Convolutional, or a transformer family by the proxies' data: recall (examples/transformer.yaml) or
    MNIST-1D (examples/transformer-mnist1d.yaml, the measurements before recall)."""
    if not any(a.kind in TRANSFORMER_KINDS for a in config.architectures):
        return CONVOLUTIONAL
    return TRANSFORMER_MNIST1D if config.data.name == "mnist1d" else TRANSFORMER


# --------------------------------------------------------------------------------------------------
# The layer set
# --------------------------------------------------------------------------------------------------


def random_survivors(config: SearchConfig, count: int, seed: int, known: list[LayerToScore]) -> list[LayerToScore]:
    """`count` random graphs of the search space that pass the cheap rejections and duplicate no known layer."""
    space = config.build_space()
    index = DuplicateIndex()
    chain = build_checks(config, index)
    for i, layer in enumerate(known):
        facts = chain.run(layer.graph).facts
        index.add(-1 - i, facts.canonical_hash, facts.fingerprint)
    rng = random.Random(seed)
    found: list[LayerToScore] = []
    for i in range(200_000):
        if len(found) == count:
            return found
        graph = random_graph(space, rng)
        verdict = chain.run(graph)
        if verdict.rejection is None:
            index.add(i, verdict.facts.canonical_hash, verdict.facts.fingerprint)
            found.append(LayerToScore(graph, f"random_{len(found)}"))
    raise RuntimeError(f"only {len(found)} of {count} random candidates survived the cheap rejections")


def layer_set(config: SearchConfig, n_random: int, seed: int, winners: str | None = None) -> list[LayerToScore]:
    """The library layers the search space can express (a batch-free space leaves BatchNorm out), the
    controls, `n_random` random survivors and, with `winners` (the search benchmark's results name), the
    searches' best layers."""
    axes = set(config.build_space().axes)
    named = [LayerToScore(library.get(name), name) for name in library.names()
             if name not in ("identity", "relu") and library.get(name).axes <= axes]  # fmt: skip
    named += [LayerToScore(parse(text), name) for name, text in CONTROLS.items()]
    layers = named + random_survivors(config, n_random, seed, named)
    return layers + (search_winners(layers, winners) if winners else [])


def search_winners(known: list[LayerToScore], name: str = "search") -> list[LayerToScore]:
    """The best layers of the search benchmark's runs (`<name>-<machine>.json`): the layers a search
    actually selects, which random draws seldom resemble."""
    path = RESULTS / f"{name}-{machine_slug()}.json"
    if not path.is_file():
        raise SystemExit(f"--search-winners needs {path} (run benchmarks/search.py first)")
    seen = {layer.dsl for layer in known}
    found = []
    for run in json.loads(path.read_text(encoding="utf-8"))["runs"]:
        validated = run.get("validated") or {}
        graph = parse(validated["layer"]) if validated.get("layer") else None
        if graph is not None and graph.to_text() not in seen:
            seen.add(graph.to_text())
            found.append(LayerToScore(graph, f"search_{run['mode']}_{run['seed']}"))
    return found


# --------------------------------------------------------------------------------------------------
# Scoring, with the target's scores cached on disk
# --------------------------------------------------------------------------------------------------


def score_cache() -> ScoreCache:
    """The scores this machine's runs of the benchmarks trained (benchmarks/search.py reads it too)."""
    return ScoreCache(RESULTS / f"scores-{machine_slug()}.json")


def scores_through_cache(layers, specs, evaluator, reuse: bool, on_run=None) -> CachedScores:
    """Scores of `layers` under `specs`, served from the cache where it holds them (with `reuse`); a cache
    file that cannot be read stops the script with what to do, before anything trains."""
    try:
        return cached_scores(score_cache(), layers, specs, evaluator, reuse=reuse, on_run=on_run)
    except ScoreCacheError as e:
        raise SystemExit(str(e)) from None


def score_target(config, layers, seeds, evaluator, reuse: bool, what: str = "target") -> CachedScores:
    """Target scores per layer, with how many came from the cache."""
    specs = [config.target_spec(s) for s in seeds]
    return scores_through_cache(layers, specs, evaluator, reuse, on_run=_progress(what))


def _progress(what: str):
    started = time.perf_counter()

    def report(layer: LayerToScore, run) -> None:
        status = f"{run.score:.3f}" if run.error is None else f"error: {run.error[:80]}"
        print(f"  [{time.perf_counter() - started:6.0f}s] {what} {layer.label} seed {run.seed}: {status}", flush=True)

    return report


def variant_config(config: SearchConfig, overrides: dict) -> SearchConfig:
    return SearchConfig.from_mapping({**config.model_dump(mode="json"), **overrides})


# --------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------


def kendall_tau(proxy: list[float], target: list[float], seed: int) -> tuple[float, float, float]:
    """Kendall's tau-b and a bootstrap 95% interval (`evonorm_search.statistics`)."""
    tau = decide.kendall_tau(proxy, target, seed=seed)
    assert tau.low is not None and tau.high is not None  # the bootstrap always gives kendall_tau an interval
    return tau.value, tau.low, tau.high


def control_rule(scores: dict[str, float], baselines: Iterable[str]) -> tuple[bool, list[str]]:
    """Every control below every baseline (the configuration's); the violations as text."""
    return decide.control_rule(scores, CONTROLS, baselines)


def summarize(config: SearchConfig, layers, run: ProxyRun, target: list[dict], seed: int) -> str:
    """One line per variant for the log: tau and the control rule's violations on the proxies."""
    tau, low, high = kendall_tau(run.means, [t["mean"] or 0.0 for t in target], seed)
    ok, bad = control_rule(dict(zip([layer.label for layer in layers], run.means, strict=True)), config.baselines)
    return f"tau {tau:.3f} [{low:.3f}, {high:.3f}]; controls below baselines: {'yes' if ok else '; '.join(bad)}"


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxyRun:
    """One proxy setting's scores (LayerScore.to_json per layer), the seconds the layers trained in this
    run took, and how many layers the cache served."""

    scores: list[dict]
    seconds: float
    cached: int

    @property
    def means(self) -> list[float]:
        return [s["mean"] if s["mean"] is not None else 0.0 for s in self.scores]


def proxy_scores(config: SearchConfig, layers, evaluator, reuse: bool) -> ProxyRun:
    """Proxy scores under one setting; with `reuse`, layers already scored under it come from the cache."""
    found = scores_through_cache(layers, [config.proxy_spec()], evaluator, reuse)
    return ProxyRun(found.scores, found.seconds, found.served)


def run(args: argparse.Namespace) -> Path:
    config = SearchConfig.from_yaml(Path(args.config))
    if args.smoke:
        config = smoke_config(config)
    family = family_of(config)
    seeds = config.validation.seed_list(args.seeds)
    layers = layer_set(config, args.random, args.seed, family.search if args.search_winners else None)
    print(f"{len(layers)} layers; target seeds {seeds}", flush=True)
    with ProcessPoolEvaluator(args.workers) as evaluator:
        target = score_target(config, layers, seeds, evaluator, args.reuse_target)
        chosen = ["default"] if args.smoke else (args.variants or list(family.variants))
        variants = {name: variant_config(config, family.variants[name]) for name in chosen}
        results = {}
        for name, variant in variants.items():
            results[name] = proxy_scores(variant, layers, evaluator, args.reuse_proxies)
            print(f"{name}: {summarize(config, layers, results[name], target.scores, args.seed)}", flush=True)
        placement = None
        if family in TRANSFORMER_FAMILIES and not args.skip_placement:
            chosen_layers = placement_layers(config, layers)
            settings = placement_setting_configs(config, args.placement_settings or list(PLACEMENT_SETTINGS))
            by_setting = placement_by_setting(config, settings, chosen_layers, seeds, evaluator, args.reuse_target,
                                              layers, target.scores)  # fmt: skip
            placement = (chosen_layers, by_setting)
        targets = None
        available = target_settings(family, args.smoke)
        names = list(available) if args.target_variants is None else args.target_variants
        if names:
            targets = target_variant_scores(config, layers, target.scores, seeds, evaluator, args.reuse_target,
                                            {name: available[name] for name in names})  # fmt: skip
    report = Report(config, family, layers, seeds, target, variants, results, placement, targets)
    return write_report(args, report)


# --------------------------------------------------------------------------------------------------
# Target settings: does a normalization layer beat the controls on the target at all?
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetRun:
    """One target setting: its configuration, the scores of the baselines and controls (in `layers`
    order), the seconds the layers trained in this run took, and how many the cache served."""

    config: SearchConfig
    layers: list[LayerToScore]
    scores: list[dict]
    seconds: float
    cached: int

    @property
    def means(self) -> dict[str, float]:
        return {layer.label: s["mean"] or 0.0 for layer, s in zip(self.layers, self.scores, strict=True)}


def target_settings(family: Family, smoke: bool) -> dict[str, dict]:
    """The family's target settings; the smoke run's tiny one where the family has any."""
    return SMOKE_TARGET_VARIANTS if smoke and family.target_variants else family.target_variants


def target_variant_config(config: SearchConfig, overrides: dict) -> SearchConfig:
    """The configuration with its validation section changed by `overrides` (training merged key by key)."""
    validation = config.validation.model_dump(mode="json")
    merged = {**validation, **overrides}
    if "training" in overrides:
        merged["training"] = {**validation["training"], **overrides["training"]}
    return variant_config(config, {"validation": merged})


def score_setting(variant: SearchConfig, name: str, layers, seeds, evaluator, reuse: bool) -> TargetRun:
    """`layers` on one target setting (`variant`'s validation section), through the score cache."""
    scores = score_target(variant, layers, seeds, evaluator, reuse, what=f"target {name}")
    return TargetRun(variant, layers, scores.scores, scores.seconds, scores.served)


def target_variant_scores(
    config, layers, target, seeds, evaluator, reuse: bool, variants: dict[str, dict]
) -> dict[str, TargetRun]:
    """The baselines and the controls on the default target (its own scores) and on each setting."""
    wanted = [layer for layer in layers if layer.label in {*config.baselines, *CONTROLS}]
    by_dsl = {layer.dsl: score for layer, score in zip(layers, target, strict=True)}
    found = {"default": TargetRun(config, wanted, [by_dsl[layer.dsl] for layer in wanted], 0.0, len(wanted))}
    for name, overrides in variants.items():
        found[name] = score_setting(target_variant_config(config, overrides), name, wanted, seeds, evaluator, reuse)
        ok, _ = control_rule(found[name].means, config.baselines)
        print(f"target {name}: controls below every baseline: {'yes' if ok else 'no'}", flush=True)
    return found


def run_targets_only(args: argparse.Namespace) -> Path:
    """Choose a target: the baselines and controls on each target setting asked for (the configuration's
    own target only where it is named `default`), nothing else trained; the choice rule decides."""
    config = SearchConfig.from_yaml(Path(args.config))
    if args.smoke:
        config = smoke_config(config)
    if args.first_seed is not None:  # seeds no choice has read: every score of this run is new
        config = target_variant_config(config, {"first_seed": args.first_seed})
    family, seeds = family_of(config), config.validation.seed_list(args.seeds)
    wanted = {*config.baselines, *CONTROLS}
    layers = [layer for layer in layer_set(config, 0, args.seed) if layer.label in wanted]
    layers += [extra_layer(text) for text in args.layer]
    available = target_settings(family, args.smoke)
    names = args.target_variants if args.target_variants is not None else list(available)
    runs: dict[str, TargetRun] = {}
    with ProcessPoolEvaluator(args.workers) as evaluator:
        for name in names:
            variant = config if name == "default" else target_variant_config(config, available[name])
            runs[name] = score_setting(variant, name, layers, seeds, evaluator, args.reuse_target)
    served = sum(run.cached for run in runs.values())
    trained = sum(len(run.layers) - run.cached for run in runs.values())
    header = (
        "## Settings\n\n"
        f"- Configuration: `{config.name}`; baselines {', '.join(config.baselines)}; controls "
        f"{', '.join(CONTROLS)}; target seeds {seeds}.\n"
        f"- {trained} layer scores trained in this run, {served} served from `{score_cache().path.name}` (the "
        f"score cache: same settings, data, seeds, package version and training code); {args.workers} worker "
        f"process{'es' if args.workers != 1 else ''}, 1 thread each.\n"
        f"- Load average (1 min) at the end: {os.getloadavg()[0]:.2f}; seconds are wall time under that load."
    )
    sections = [header, target_section(config, runs), target_choice_section(config, runs)]
    if args.layer:
        extra = [extra_layer(text).label for text in args.layer]
        sections.append(paired_section(config, runs, extra))
    body = "\n\n".join(sections)
    name = f"{family.result}-targets" + (f"-{args.label}" if args.label else "")
    return write_result(name, "Choosing the target task: baselines and controls per setting", body)


def paired_section(config: SearchConfig, runs: dict[str, TargetRun], extra: list[str]) -> str:
    """Each `--layer` against each normalizing baseline, paired by seed on every setting: the median
    difference with its interval and the Wilcoxon signed-rank test that decides "above" or "below"."""
    lines = []
    for name, run in runs.items():
        by_label = {layer.label: score for layer, score in zip(run.layers, run.scores, strict=True)}
        for label in extra:
            for baseline in normalizing_baselines(config, run.layers):
                ours, theirs = per_seed(by_label[label]), per_seed(by_label[baseline])
                shared = sorted(set(ours) & set(theirs))
                if len(shared) < 2:
                    lines.append(f"- {name}: **{label}** against **{baseline}**: {len(shared)} shared seed(s), no test")
                    continue
                found = decide.paired_comparison([ours[s] for s in shared], [theirs[s] for s in shared])
                lines.append(f"- {name}: **{label}** against **{baseline}**: {found.text(label, baseline)}.")
    return (
        "## The further layers against the normalizers, paired by seed\n\n"
        "Each seed trains both layers on the same data and initial draw; a layer is above a baseline only "
        "where the Wilcoxon signed-rank test over the seeds gives p < 0.05 (two-sided; with fewer than 6 "
        "seeds no difference can reach it). Seeds that failed for either layer are left out of its pairs.\n\n"
        + "\n".join(lines)
    )


def per_seed(score: dict) -> dict[int, float]:
    """A layer's score by seed (the mean over the setting's architectures), failed seeds left out."""
    return {r["seed"]: run_score(r) for r in score["runs"] if r["error"] is None}


def run_score(run: dict) -> float:
    """One seed's score: the mean accuracy over the setting's architectures."""
    return float(np.mean(list(run["accuracies"].values())))


def extra_layer(text: str) -> LayerToScore:
    """`--layer`: a library name, or LABEL=DSL (the first `=` ends the label)."""
    if "=" not in text:
        return LayerToScore(library.get(text), text)
    label, dsl = (part.strip() for part in text.split("=", 1))
    return LayerToScore(parse(dsl), label)


def seed_scores(score: dict) -> list[float]:
    """A layer's score per seed (its mean over the setting's architectures), failed seeds left out."""
    return [run_score(r) for r in score["runs"] if r["error"] is None]


def target_cost(config: SearchConfig) -> float | None:
    """Tokens times blocks trained per layer and seed, in millions: what a setting costs whatever the load
    (the sequence of a recall example is its pairs plus the query); None for data that is not recall."""
    v = config.validation
    if v.data.name != "recall":
        return None
    tokens = v.training.steps * v.training.batch_size * (v.data.recall_pairs + 1)
    return sum(tokens * a.depth for a in v.architectures) / 1e6


@dataclass(frozen=True)
class TargetVerdict:
    """The choice rule on one target setting."""

    normalizers_above_controls: bool  # every normalizer seed above every control seed, by more than their spread
    room_at_the_top: bool  # the best normalizer below 0.98, or the normalizers' order beyond their spread
    worst_margin: float  # the smallest (normalizer seed - control seed); negative where a control wins a seed
    spread: float  # the normalizers' largest std over seeds: a margin below it is within their noise
    cost: float | None

    @property
    def qualifies(self) -> bool:
        return self.normalizers_above_controls and self.room_at_the_top


def normalizing_baselines(config: SearchConfig, layers: list[LayerToScore]) -> list[str]:
    """The baselines that aggregate over some axis (dyt and derf do not: they are not normalizers)."""
    axes = {layer.label: layer.graph.axes for layer in layers}
    return [b for b in config.baselines if axes[b]]


def target_verdict(config: SearchConfig, run: TargetRun) -> TargetVerdict:
    by_label = {layer.label: (layer, score) for layer, score in zip(run.layers, run.scores, strict=True)}
    normalizers = normalizing_baselines(config, run.layers)
    control_best = max(max(seed_scores(by_label[c][1]), default=0.0) for c in CONTROLS)
    lows = {n: min(seed_scores(by_label[n][1]), default=0.0) for n in normalizers}
    margin = min(lows.values()) - control_best
    means = {n: by_label[n][1]["mean"] or 0.0 for n in normalizers}
    stds = {n: by_label[n][1]["std"] or 0.0 for n in normalizers}
    apart = any(
        abs(means[a] - means[b]) > stds[a] + stds[b] for i, a in enumerate(normalizers) for b in normalizers[i + 1 :]
    )
    spread = max(stds.values())
    return TargetVerdict(margin > spread, max(means.values()) < 0.98 or apart, margin, spread, target_cost(run.config))


def seconds_per_trained_layer(run: TargetRun) -> str:
    """Training seconds per layer this run trained; the cache keeps scores, not times."""
    trained = len(run.layers) - run.cached
    return f"{run.seconds / trained:.0f}" if trained else "all served from the cache"


def target_choice_section(config: SearchConfig, runs: dict[str, TargetRun]) -> str:
    """Each setting against the choice rule, and the cheapest setting that meets it."""
    verdicts = {name: target_verdict(config, run) for name, run in runs.items()}
    rows = [
        [name, "yes" if v.normalizers_above_controls else "no", f"{v.worst_margin:+.3f}", f"{v.spread:.3f}",
         "yes" if v.room_at_the_top else "no", "-" if v.cost is None else f"{v.cost:.2f}",
         seconds_per_trained_layer(runs[name]),
         "yes" if v.qualifies else "no"]
        for name, v in verdicts.items()
    ]  # fmt: skip
    qualified = [n for n, v in verdicts.items() if v.qualifies]
    costed = [n for n in qualified if verdicts[n].cost is not None]
    chosen = min(costed, key=lambda n: verdicts[n].cost or 0.0) if costed else (qualified[0] if qualified else None)
    normalizers = ", ".join(normalizing_baselines(config, next(iter(runs.values())).layers))
    outcome = (
        f"**Chosen: {chosen}**, the cheapest setting that meets the rule." if chosen
        else "**No setting meets the rule.**"
    )  # fmt: skip
    return (
        "## The choice of target\n\n"
        f"A setting qualifies when every seed of each normalizer ({normalizers}) scores above every seed of "
        "every control by more than the normalizers' spread (the margin: the lowest normalizer seed less the "
        "highest control seed; the spread: the largest std of a normalizer over seeds; a margin inside that noise "
        "could vanish with the next seed), and the "
        "normalizers leave room at the top to rank good layers (the best below 0.98, or two normalizers apart "
        "by more than the sum of their stds). Among those the cheapest wins, by the tokens times blocks one "
        "layer trains per seed (millions; independent of the machine's load). Seconds per layer: the setting's "
        "training time in this run over the layers it trained, summed over seeds, under the load above.\n\n"
        + markdown_table(
            [
                "setting",
                "normalizers above every control, every seed, beyond their spread",
                "margin",
                "spread",
                "room at the top",
                "token-blocks (M)",
                "seconds per layer",
                "qualifies",
            ],
            rows,
        )
        + f"\n\n{outcome}"
    )


def describe_target(config: SearchConfig) -> str:
    v, t = config.validation, config.validation.training
    return (
        f"{v.data.name}; " + ", ".join(describe_architecture(a) for a in v.architectures)
        + f"; {t.optimizer} lr {t.lr}, {t.steps} steps"
    )  # fmt: skip


def target_section(config: SearchConfig, runs: dict[str, TargetRun]) -> str:
    """Per target setting: its settings, the best baseline and the best control, the control rule, the
    cost; then each baseline and control under every setting (mean ± std over the target seeds)."""
    summary, names = [], list(runs)
    for name, run in runs.items():
        means = run.means
        ok, bad = control_rule(means, config.baselines)
        best_baseline = max(config.baselines, key=lambda b: means[b])
        best_control = max(CONTROLS, key=lambda c: means[c])
        summary.append([
            name, describe_target(run.config), f"{best_baseline} {means[best_baseline]:.3f}",
            f"{best_control} {means[best_control]:.3f}", "yes" if ok else f"no ({len(bad)} pairs)",
            f"{run.seconds:.0f}", f"{run.cached} of {len(run.layers)}",
        ])  # fmt: skip
    layers = next(iter(runs.values())).layers
    rows = []
    for i, layer in enumerate(layers):
        cells = [f"{fmt(runs[n].scores[i]['mean'])} ± {fmt(runs[n].scores[i]['std'])}" for n in names]
        kind = "control" if layer.label in CONTROLS else "baseline" if layer.label in config.baselines else "layer"
        rows.append([layer.label, kind, statistic(layer), *cells])
    return (
        "## Target settings tried\n\nWhether a normalization layer beats the controls on the target at all: "
        "a target where no baseline does cannot rank normalization layers, whatever the proxies do. Each "
        "setting is described in full in the target column; the baselines and controls train with the "
        "target's seeds. `default` is the configuration's own target.\n\n"
        + markdown_table(
            [
                "setting",
                "target",
                "best baseline",
                "best control",
                "controls below baselines",
                "seconds (trained in this run)",
                "served from the cache",
            ],
            summary,
        )
        + "\n\n"
        + markdown_table(["layer", "kind", "statistic", *names], rows)
    )


# --------------------------------------------------------------------------------------------------
# Placement (transformers): the baselines under pre, post, peri and mix on the target task
# --------------------------------------------------------------------------------------------------


def placement_layers(config: SearchConfig, layers: list[LayerToScore]) -> list[LayerToScore]:
    """The baselines, derf, the controls and any searches' winners: where the norms sit changes what they do."""
    wanted = {*config.baselines, "derf", *CONTROLS}
    return [layer for layer in layers if layer.label in wanted or layer.label.startswith("search_")]


def placement_config(config: SearchConfig, placement: str) -> SearchConfig:
    """The target task with its first encoder under one placement (its name is the placement)."""
    arch = config.validation.architectures[0].model_dump(mode="json")
    return target_variant_config(config, {"architectures": [{**arch, "name": placement, "placement": placement}]})


# Placement settings: the target's training changed one thing at a time, to show where each placement
# fails and what moves the failure. The literature's two claims: post-norm needs a low learning rate or a
# long warmup (Xiong et al. 2020), and pre-norm trains at rates where post-norm does not.
PLACEMENT_SETTINGS: dict[str, Callable[[Any], dict]] = {
    "target": lambda training: {},
    "learning rate / 10": lambda training: {"lr": training.lr / 10},
    "warmup x3": lambda training: {"warmup_steps": min(training.steps // 2, 3 * training.warmup_steps)},
}


def placement_setting_configs(config: SearchConfig, names: Iterable[str]) -> dict[str, SearchConfig]:
    """The target with its training changed by each named placement setting (the target's own: `config`)."""
    found = {}
    for name in names:
        overrides = PLACEMENT_SETTINGS[name](config.validation.training)
        found[name] = target_variant_config(config, {"training": overrides}) if overrides else config
    return found


def placement_training(config: SearchConfig, name: str):
    """The target's training under one placement setting (for its description)."""
    training = config.validation.training
    return training.model_copy(update=PLACEMENT_SETTINGS[name](training))


def placement_scores(config, layers, seeds, evaluator, reuse: bool, target_layers, target) -> dict[str, list[dict]]:
    """Per placement, target scores of `layers` (in their order): read from the target's own runs where the
    target has an encoder with that placement and otherwise the first one's settings (same seeds, same
    training), trained (and cached per placement and layer like the target's) for the others. `config` may
    be a placement setting: its target runs are then its own (`target` None)."""
    target_by_dsl = {} if target is None else dict(zip([t.dsl for t in target_layers], target, strict=True))
    found = {}
    for placement in PLACEMENTS:
        if target is not None and (label := target_architecture(config, placement)) is not None:
            found[placement] = [architecture_score(target_by_dsl[layer.dsl], label) for layer in layers]
            continue
        variant = placement_config(config, placement)
        found[placement] = score_target(variant, layers, seeds, evaluator, reuse, what=f"placement {placement}").scores
    return found


def placement_by_setting(config, settings: dict[str, SearchConfig], layers, seeds, evaluator, reuse: bool,
                         target_layers, target) -> dict[str, dict[str, list[dict]]]:  # fmt: skip
    """`placement_scores` under each placement setting; the target setting reuses the target's runs."""
    return {
        name: placement_scores(
            variant, layers, seeds, evaluator, reuse, target_layers, target if variant is config else None
        )
        for name, variant in settings.items()
    }


def target_architecture(config: SearchConfig, placement: str) -> str | None:
    """The label of the target's encoder that is its first one under `placement`, if it has one."""
    first = config.validation.architectures[0].model_dump(exclude={"name", "placement"})
    for arch in config.validation.architectures:
        if arch.placement == placement and arch.model_dump(exclude={"name", "placement"}) == first:
            return arch.label
    return None


def architecture_score(score: dict, label: str) -> dict:
    """One architecture's mean and sample std over a layer's seeds, from its cached runs."""
    values = [run["accuracies"][label] for run in score["runs"] if run["error"] is None]
    return {
        "mean": float(np.mean(values)) if values else None,
        "std": float(np.std(values, ddof=1)) if len(values) > 1 else (0.0 if values else None),
    }


def placement_section(
    config: SearchConfig, layers: list[LayerToScore], by_setting: dict[str, dict[str, list[dict]]]
) -> str:
    """Where each placement fails: a summary over the placement settings (do the normalizers beat every
    control under each placement?), then one table per setting: a row per layer, a column per placement
    (mean ± std over the target seeds), and each placement's order."""
    arch = config.validation.architectures[0]
    parts = [
        f"## Placement on the target task\n\nThe target's first encoder (width {arch.width}, depth {arch.depth}, "
        f"{arch.heads} heads) with the norms at each placement: pre (before each sublayer), post (after each "
        "residual add), peri (before each sublayer and on its output before the add), mix (post-norm in the first "
        "quarter of the blocks, pre-norm after). Test accuracy, mean ± std over the target seeds. Each setting "
        "changes one thing in the target's training: "
        + "; ".join(f"{name}: {describe_training(placement_training(config, name))}" for name in by_setting)
        + ".",
        placement_summary(config, layers, by_setting),
    ]
    for name, placement in by_setting.items():
        parts.append(placement_table(name, config, layers, placement))
    return "\n\n".join(parts)


def describe_training(training) -> str:
    return f"lr {training.lr:g}, warmup {training.warmup_steps} of {training.steps} steps"


def placement_summary(config: SearchConfig, layers: list[LayerToScore], by_setting) -> str:
    """Per setting and placement: the normalizers' means, the best control, and the margin (the lowest
    normalizer mean less the best control mean): a placement fails where the normalizers do not train
    above what no normalization reaches."""
    normalizers = normalizing_baselines(config, layers)
    rows = []
    for name, placement in by_setting.items():
        for p in PLACEMENTS:
            means = {layer.label: placement[p][i]["mean"] or 0.0 for i, layer in enumerate(layers)}
            controls = {label: mean for label, mean in means.items() if label in CONTROLS}
            best_control = max(controls, key=controls.__getitem__)
            margin = min(means[n] for n in normalizers) - controls[best_control]
            rows.append([name, p, *(fmt(means[n]) for n in normalizers),
                         f"{best_control} {fmt(controls[best_control])}", f"{margin:+.3f}",
                         "yes" if margin > 0 else "**no**"])  # fmt: skip
    return "### Where each placement fails\n\n" + markdown_table(
        ["setting", "placement", *normalizers, "best control", "margin", "normalizers above every control"], rows
    )


def placement_table(name: str, config: SearchConfig, layers: list[LayerToScore], placement) -> str:
    rows = []
    for i, layer in enumerate(layers):
        cells = [f"{fmt(placement[p][i]['mean'])} ± {fmt(placement[p][i]['std'])}" for p in PLACEMENTS]
        rows.append([layer.label, "control" if layer.label in CONTROLS else "layer", statistic(layer), *cells])
    orders = []
    for p in PLACEMENTS:
        ranked = sorted(range(len(layers)), key=lambda i, p=p: -(placement[p][i]["mean"] or 0.0))
        orders.append(f"- {p}: " + " > ".join(layers[i].label for i in ranked))
    return (
        f"### {name} ({describe_training(placement_training(config, name))})\n\n"
        + markdown_table(["layer", "kind", "statistic", *PLACEMENTS], rows)
        + "\n\nOrder by mean under each placement:\n\n"
        + "\n".join(orders)
    )


def smoke_config(config: SearchConfig) -> SearchConfig:
    tiny_train = {"optimizer": "sgd", "lr": 0.05, "steps": 3, "batch_size": 16, "device": "cpu", "threads": 1}
    tiny_data = {"name": "synthetic", "samples": 60, "test_samples": 30, "synthetic_shape": [1, 8]}
    tiny_arch: list[dict] = [{"kind": "resnet", "width": 4, "blocks": [1]}]
    if family_of(config) in TRANSFORMER_FAMILIES:  # the smoke run keeps the family: its placement table too
        tiny_arch = [{"kind": "transformer", "name": p, "placement": p, "width": 8, "heads": 2, "depth": 1,
                      "mlp_ratio": 2, "patch_size": 4} for p in ("pre", "post")]  # fmt: skip
    mapping = config.model_dump(mode="json")
    mapping.update(
        architectures=tiny_arch,
        data=tiny_data,
        training=tiny_train,
        rejection={**mapping["rejection"], "quality": {"enabled": False, "threshold": 0.0, "steps": 1}},
        validation={**mapping["validation"], "architectures": tiny_arch, "data": tiny_data, "training": tiny_train},
    )
    return SearchConfig.from_mapping(mapping)


# The smoke run's one target setting: the smoke target one block deeper.
SMOKE_TARGET_VARIANTS: dict[str, dict] = {
    "depth 2": {"architectures": [{"kind": "transformer", "name": p, "placement": p, "width": 8, "heads": 2,
                                   "depth": 2, "mlp_ratio": 2, "patch_size": 4} for p in ("pre", "post")]},
}  # fmt: skip


def _slots(config: SearchConfig, architectures) -> dict[str, int]:
    from evonorm_search.proxies import build_model, count_slots

    channels, dims, classes = config.input_shape()
    return {
        a.label: count_slots(
            build_model(a, library.get("gn_relu"), in_channels=channels, classes=classes, spatial_dims=dims,
                        groups=config.groups, eps=config.eps, backend="torch", seed=0)
        )
        for a in architectures
    }  # fmt: skip


@dataclass(frozen=True)
class Report:
    """Everything a run measured, for the results file."""

    config: SearchConfig
    family: Family
    layers: list[LayerToScore]
    seeds: list[int]
    target: CachedScores
    variants: dict[str, SearchConfig]
    results: dict[str, ProxyRun]
    # (layers, per placement setting the scores per placement)
    placement: tuple[list[LayerToScore], dict[str, dict[str, list[dict]]]] | None = None
    targets: dict[str, TargetRun] | None = None  # per target setting, `default` first


def write_report(args, r: Report) -> Path:
    config, baselines = r.config, r.config.baselines
    target_mean = [t["mean"] if t["mean"] is not None else 0.0 for t in r.target.scores]
    labels = [layer.label for layer in r.layers]
    sections = [settings_section(config, r.seeds, r.target, args.workers)]
    variant_rows = []
    for name, proxy_run in r.results.items():
        proxy = proxy_run.means
        tau, low, high = kendall_tau(proxy, target_mean, args.seed)
        ok_proxy, bad_proxy = control_rule(dict(zip(labels, proxy, strict=True)), baselines)
        ok_target, _ = control_rule(dict(zip(labels, target_mean, strict=True)), baselines)
        variant_rows.append([name, describe_variant(r.variants[name]), f"{tau:.3f} [{low:.3f}, {high:.3f}]",
                             "yes" if ok_proxy else f"no: {first_violation(bad_proxy)}",
                             "yes" if ok_target else "no", f"{proxy_run.seconds:.0f}",
                             f"{proxy_run.cached} of {len(r.layers)}"])  # fmt: skip
    sections.append(
        "## Proxy settings tried against the target\n\n"
        f"Baselines: {', '.join(baselines)}; controls: {', '.join(CONTROLS)}.\n\n"
        + markdown_table(
            [
                "variant",
                "proxies",
                "Kendall tau [95% bootstrap]",
                "controls below baselines (proxy)",
                "(target)",
                "seconds (layers trained in this run)",
                "served from the cache",
            ],
            variant_rows,
        )
    )
    taus = {name: kendall_tau(run.means, target_mean, args.seed)[0] for name, run in r.results.items()}
    if not args.smoke:
        rules = {name: control_rule(dict(zip(labels, run.means, strict=True)), baselines)[0]
                 for name, run in r.results.items()}  # fmt: skip
        interval = kendall_tau(r.results["default"].means, target_mean, args.seed)[1:]
        sections.append(choice_section(config, r.variants, taus, rules, interval))
    former = r.results.get(r.family.former) if r.family.former else None
    sections.append(layer_section(r.layers, r.results["default"], r.target.scores, former))
    if r.placement:
        sections.append(placement_section(config, *r.placement))
    if r.targets:
        sections.append(target_section(config, r.targets))
    proxy = r.results["default"].means
    tau, low, high = kendall_tau(proxy, target_mean, args.seed)
    ok_p, bad_p = control_rule(dict(zip(labels, proxy, strict=True)), baselines)
    ok_t, bad_t = control_rule(dict(zip(labels, target_mean, strict=True)), baselines)
    verdict = [
        f"Kendall tau (proxy score against target mean, {len(r.layers)} layers): **{tau:.3f}** "
        f"(bootstrap 95% interval {low:.3f} to {high:.3f}); target >= 0.6: {'meets' if tau >= 0.6 else 'misses'}.",
        f"Controls below every baseline on the proxies: {'yes' if ok_p else 'no: ' + '; '.join(bad_p)}.",
        f"Controls below every baseline on the target: {'yes' if ok_t else 'no: ' + '; '.join(bad_t)}.",
    ]
    sections.append("## Verdict (the configuration as given)\n\n" + "\n".join(f"- {v}" for v in verdict))
    name, title = r.family.result, r.family.title
    if args.search_winners:
        name, title = name.replace("fidelity", "fidelity-winners"), title + ", with the layers searches select"
        name += f"-{args.label}" if args.label else ""
    return write_result(name, title, "\n\n".join(sections))


def examples_ratio(config: SearchConfig, proxy: SearchConfig) -> float:
    target = config.validation.training
    return (target.steps * target.batch_size) / (proxy.training.steps * proxy.training.batch_size)


def slot_ratio(config: SearchConfig, proxy: SearchConfig) -> float:
    """The smallest target / proxy ratio of norm-activation slots over the architectures."""
    target = _slots(config, config.validation.architectures)
    ours = _slots(proxy, proxy.architectures)
    return min(t / p for t, p in zip(target.values(), ours.values(), strict=False))


def seconds_per_layer(proxy: SearchConfig, name: str = "gn_relu") -> float:
    """One library layer (the search's seed) through every proxy of a setting, in this process: the
    cost a search pays per trained candidate."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        started = time.perf_counter()
        evaluate_task(EvaluationTask(0, 0, library.get(name).to_dict(), proxy.proxy_spec()))
        return time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)


def choice_section(config: SearchConfig, variants: dict[str, SearchConfig], taus: dict, rules: dict,
                   interval: tuple[float, float]) -> str:  # fmt: skip
    """Why the default: every setting's tau beside what the family's rule asks of a proxy (how much
    deeper the target is and how many more examples it sees) and its cost per layer."""
    family = family_of(config)
    rows = []
    for name, variant in variants.items():
        slots, examples = slot_ratio(config, variant), examples_ratio(config, variant)
        tie = "yes" if interval[0] <= taus[name] <= interval[1] else "no"
        qualifies = slots >= family.min_slots and examples >= family.min_examples
        qualifies &= rules[name] or not family.needs_control_rule
        rows.append([name, f"{taus[name]:.3f}", tie, f"{slots:.1f}x", f"{examples:.1f}x",
                     "yes" if qualifies else "no", f"{seconds_per_layer(variant, family.reference):.1f}"])  # fmt: skip
    return (
        f"## The choice\n\n{family.rule}; "
        "among those, the highest tau at a cost a 10-minute search affords wins. A tau inside the default's "
        "bootstrap interval, here and on the harder layer set with the searches' winners (`fidelity.py "
        "--search-winners`), is a tie, and a tie keeps the default: changing the proxies needs a difference "
        f"this benchmark can see. Seconds per layer: {family.reference} "
        f"through every proxy in one process, one thread, load {os.getloadavg()[0]:.1f}.\n\n"
        + markdown_table(
            [
                "variant",
                "tau",
                "inside the default's interval",
                "target / proxy slots",
                "target / proxy examples",
                "qualifies",
                "seconds per layer",
            ],
            rows,
        )
    )


def first_violation(violations: list[str]) -> str:
    more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
    return violations[0] + more


def describe_architecture(arch) -> str:
    if arch.kind in TRANSFORMER_KINDS:
        return f"{arch.label} w{arch.width} depth {arch.depth} {arch.placement}-norm patch {arch.patch_size}"
    return f"{arch.label} w{arch.width} {arch.blocks}"


def describe_variant(config: SearchConfig) -> str:
    archs = ", ".join(describe_architecture(a) for a in config.architectures)
    t = config.training
    return f"{config.data.name}; {archs}; {t.optimizer} lr {t.lr}, {t.steps} steps, batch {t.batch_size}"


def settings_section(config: SearchConfig, seeds, target: CachedScores, workers: int) -> str:
    v = config.validation
    proxy_slots, target_slots = _slots(config, config.architectures), _slots(config, v.architectures)
    t = v.training
    lines = [
        f"Configuration: `{config.name}`; proxies: {describe_variant(config)}; norm-activation slots per proxy "
        f"{proxy_slots}.",
        f"Target task: {v.data.name} (train on the search part, score on its test split of "
        f"{v.data.test_samples if v.data.name in ('mnist1d', 'synthetic', 'recall') else 'fixed'} examples); "
        + ", ".join(describe_architecture(a) for a in v.architectures)
        + f" (slots {target_slots}); {t.optimizer} lr {t.lr}"
        + (f" momentum {t.momentum}" if t.optimizer == "sgd" else f" weight decay {t.weight_decay}")
        + f", {t.steps} steps, "
        f"batch {t.batch_size}, seeds {seeds} (the search's seed is {config.seed}).",
        "Ratios: target slots / proxy slots per architecture "
        + ", ".join(
            f"{t_label} {t_slots / p_slots:.1f}x"
            for (t_label, t_slots), p_slots in zip(target_slots.items(), proxy_slots.values(), strict=False)
        )
        + f"; training examples (steps x batch) target / proxy {examples_ratio(config, config):.1f}x "
        f"({t.steps} x {t.batch_size} against {config.training.steps} x {config.training.batch_size}).",
        f"Target scores: {target.trained} of {len(target.scores)} layers trained in this run "
        f"({target.seconds / 60:.1f} minutes, {workers} worker process{'es' if workers != 1 else ''}, 1 thread each); "
        + served_from_cache(target),
        f"Load average during the run (1 min) at the end: {os.getloadavg()[0]:.2f}.",
    ]
    return "## Settings\n\n" + "\n".join(f"- {line}" for line in lines)


def served_from_cache(scores: CachedScores) -> str:
    """How many scores the cache served and which machines computed them (scores differ across machines)."""
    text = f"{scores.served} served from `{score_cache().path.name}` (scores this machine's benchmark runs trained "
    text += "under the same settings, data, seeds, package version and training code)"
    machines = sorted({describe_machine_record(m) for m in scores.served_by})
    return text + (f", computed on {'; '.join(machines)}." if machines else ".")


def layer_kind(label: str) -> str:
    if label in CONTROLS:
        return "control"
    if label.startswith("random_"):
        return "random"
    return "search" if label.startswith("search_") else "library"


def statistic(layer: LayerToScore) -> str:
    """The axes a layer aggregates over, or "no statistic": dyt and derf are neither normalizers nor controls."""
    return ", ".join(sorted(layer.graph.axes)) or NO_STATISTIC


def layer_section(layers: list[LayerToScore], proxy: ProxyRun, target: list[dict], former: ProxyRun | None) -> str:
    """Per layer: the default proxies' score (and the former proxies', where that variant ran) and the target."""
    rows = []
    order = sorted(range(len(layers)), key=lambda i: -(target[i]["mean"] or 0.0))
    for rank, i in enumerate(order, 1):
        score = proxy.scores[i]
        rows.append([rank, layers[i].label, layer_kind(layers[i].label), statistic(layers[i]),
                     f"`{one_line(score['layer'])}`", fmt(score["mean"]),
                     *([fmt(former.scores[i]["mean"])] if former else []),
                     f"{fmt(target[i]['mean'])} ± {fmt(target[i]['std'])}"])  # fmt: skip
    header = ["rank", "layer", "kind", "statistic", "DSL", "proxy score", *([f"({FORMER})"] if former else []),
              "target mean ± std"]  # fmt: skip
    return (
        "## Layers (default proxies), by target mean\n\n"
        f"The statistic column names the axes a layer aggregates over; `{NO_STATISTIC}` marks the layers that "
        "normalize nothing (the controls, and library layers such as dyt and derf).\n\n" + markdown_table(header, rows)
    )


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(QUICK))
    parser.add_argument("--random", type=int, default=12, help="random survivors of the cheap rejections")
    parser.add_argument("--seeds", type=int, default=None, help="target seeds (default: the config's)")
    parser.add_argument(
        "--first-seed", type=int, default=None,
        help="with --targets-only: target seeds from this one (default: the validation section's first_seed); "
        "seeds that overlap the configuration's validation seeds are refused, so a confirmation reads none a "
        "choice has read",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="draws the random layers and the bootstrap")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reuse-target", action="store_true", help="serve target scores from the JSON cache")
    parser.add_argument(
        "--reuse-proxies", action="store_true", help="serve proxy scores (per setting and layer) from the JSON cache"
    )
    parser.add_argument(
        "--search-winners", action="store_true", help="add the best layers of benchmarks/search.py's runs"
    )
    parser.add_argument(
        "--variants", type=lambda text: text.split(";"), default=None,
        help="semicolon-separated proxy settings to score (default: all of the configuration's family: "
        f"{', '.join(VARIANTS)} for convolutional networks, {', '.join(TRANSFORMER_VARIANTS)} for transformers on "
        f"recall, {', '.join(MNIST1D_VARIANTS)} on MNIST-1D)",
    )  # fmt: skip
    parser.add_argument(
        "--target-variants", type=lambda text: [t for t in text.split(";") if t], default=None,
        help="semicolon-separated target settings to score the baselines and controls on ('' for none; "
        f"default: all of the family's: {', '.join(RECALL_TARGETS)} for transformers on recall, also "
        f"{', '.join(t for t in TARGET_VARIANTS if t not in RECALL_TARGETS)} on MNIST-1D, none for "
        "convolutional networks)",
    )  # fmt: skip
    parser.add_argument(
        "--targets-only", action="store_true",
        help="only choose a target: the baselines and controls on the target settings (--target-variants; "
        "'default' names the configuration's own target), no proxies",
    )  # fmt: skip
    parser.add_argument(
        "--skip-placement", action="store_true", help="transformers: leave the placement table out (it trains most)"
    )
    parser.add_argument(
        "--placement-settings", type=lambda text: [t for t in text.split(";") if t], default=None,
        help=f"transformers: the placement table's settings, ';'-separated (default: all: "
        f"{'; '.join(PLACEMENT_SETTINGS)}); the target's own comes first whether named or not",
    )  # fmt: skip
    parser.add_argument(
        "--layer", action="append", default=[], metavar="NAME|LABEL=DSL",
        help="with --targets-only: a further layer scored beside the baselines and controls (a library name or "
        "LABEL=DSL; repeat for several), e.g. an initialisation of dyt",
    )  # fmt: skip
    parser.add_argument(
        "--label",
        default="",
        help="with --targets-only: the results file is <family>-targets-LABEL-<machine>.md; with --search-winners: "
        "fidelity-winners-<family>-LABEL-<machine>.md",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny networks and data: the test suite's run")
    args = parser.parse_args(argv)
    if args.layer and not args.targets_only:
        parser.error("--layer needs --targets-only")
    config = SearchConfig.from_yaml(Path(args.config))
    if args.first_seed is not None:
        if not args.targets_only:
            parser.error("--first-seed needs --targets-only")
        validation = config.validation
        used = set(validation.seed_list())
        asked = range(args.first_seed, args.first_seed + (args.seeds or validation.seeds))
        if args.first_seed < 0 or used & set(asked):
            parser.error(
                f"--first-seed {args.first_seed}: seeds {asked.start}-{asked.stop - 1} must be >= 0 and miss the "
                f"configuration's validation seeds {sorted(used)}, which searches and benchmarks read"
            )
    if args.label and not ((args.targets_only or args.search_winners) and re.fullmatch(r"[a-z0-9-]+", args.label)):
        parser.error(
            f"--label {args.label!r} needs --targets-only or --search-winners and lower-case letters, digits and "
            "hyphens"
        )
    for text in args.layer:
        try:
            extra_layer(text)
        except Exception as e:  # a name the library lacks, or DSL that does not parse: said before anything trains
            parser.error(f"--layer {text!r}: {e}")
    family = family_of(config)
    known = family.variants
    if args.variants and not set(args.variants) <= set(known):
        parser.error(f"unknown variants {sorted(set(args.variants) - set(known))}; known: {', '.join(known)}")
    targets = {**target_settings(family, args.smoke), **({"default": {}} if args.targets_only else {})}
    if args.target_variants and not set(args.target_variants) <= set(targets):
        unknown = sorted(set(args.target_variants) - set(targets))
        parser.error(f"unknown target variants {unknown}; known: {', '.join(targets) or 'none for this family'}")
    if args.placement_settings is not None:
        if unknown := sorted(set(args.placement_settings) - set(PLACEMENT_SETTINGS)):
            parser.error(f"unknown placement settings {unknown}; known: {'; '.join(PLACEMENT_SETTINGS)}")
        if args.skip_placement:
            parser.error("--placement-settings and --skip-placement contradict each other")
        args.placement_settings = ["target", *(name for name in args.placement_settings if name != "target")]
    if args.variants and "default" not in args.variants:
        args.variants.insert(0, "default")  # the layer table and the verdict are the default's
    if args.smoke:
        args.random, args.seeds, args.workers = 2, 2, 1
    path = run_targets_only(args) if args.targets_only else run(args)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
