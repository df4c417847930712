"""Export: standalone source that needs only torch and reproduces NormAct exactly after
load_state_dict, in train and eval mode, with gradients, in an interpreter without evonorm_search."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap

import pytest
import torch

import evonorm_search as es
from evonorm_search.search import SearchSpace, random_graph

# Runs in a fresh interpreter where importing evonorm_search fails.
RUNNER = textwrap.dedent(
    """
    import importlib.util, json, sys
    sys.modules["evonorm_search"] = None  # any import of the project now raises ImportError
    try:
        import evonorm_search
    except ImportError:
        pass
    else:
        raise SystemExit("the project is importable: the test would prove nothing")
    import torch

    def run(case):
        spec = importlib.util.spec_from_file_location(case["class_name"], case["module"])
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        cls = getattr(mod, case["class_name"])
        data = torch.load(case["inputs"])
        results = {"doc": mod.__doc__, "class_doc": cls.__doc__, "provenance": mod.PROVENANCE}
        results["repr"] = repr(cls(case["channels"], groups=case["groups"]))
        for variant in ("eager", "script"):
            layer = cls(case["channels"], groups=case["groups"], eps=case["eps"], momentum=case["momentum"]).double()
            layer.load_state_dict(data["state"])
            if variant == "script":
                layer = torch.jit.script(layer)
            outs = []
            for x, training in zip(data["xs"], data["modes"]):
                layer.train(training)
                x = x.clone().requires_grad_(True)
                y = layer(x)
                y.backward(data["upstream"])
                grads = {n: None if p.grad is None else p.grad.clone() for n, p in layer.named_parameters()}
                for p in layer.parameters():
                    p.grad = None
                outs.append({"y": y.detach(), "gx": x.grad, "grads": grads})
            results[variant] = {"outs": outs, "state": {k: v.clone() for k, v in layer.state_dict().items()}}
        torch.save(results, case["output"])

    for case in json.load(open(sys.argv[1])):
        run(case)
    """
)

CHANNELS, GROUPS = 6, 3


def _reference_run(layer: es.NormAct, xs, modes, upstream):
    outs = []
    for x, training in zip(xs, modes, strict=True):
        layer.train(training)
        x = x.clone().requires_grad_(True)
        y = layer(x)
        y.backward(upstream)
        grads = {n: None if p.grad is None else p.grad.clone() for n, p in layer.named_parameters()}
        outs.append({"y": y.detach(), "gx": x.grad, "grads": grads})
        layer.zero_grad(set_to_none=True)
    return outs


def _export_cases():
    rng = random.Random(99)
    graphs = [(name, es.library.get(name)) for name in es.library.names()]
    graphs += [(f"random{i}", random_graph(SearchSpace(max_ops=9), rng)) for i in range(25)]
    return graphs


def _assert_gradient_close(have: torch.Tensor | None, want: torch.Tensor | None, variant: str, tol: float, msg) -> None:
    """Eager: identical, NaN for NaN. TorchScript fuses a singular product (0 * inf, where sqrt or log
    meets an exact zero) in another order, so NaN and a number may trade places there (a parameter's
    sum over such a point is NaN in one and finite in the other): the scripted gradient must match
    wherever both are finite."""
    if variant == "eager" or have is None or want is None:
        torch.testing.assert_close(have, want, rtol=tol, atol=tol, equal_nan=True, msg=msg)
        return
    finite = torch.isfinite(have) & torch.isfinite(want)
    torch.testing.assert_close(have[finite], want[finite], rtol=tol, atol=tol, msg=msg)


def test_exported_modules_reproduce_normact_without_the_project(tmp_path):
    runs = []
    for name, graph in _export_cases():
        torch.manual_seed(len(runs))
        layer = es.NormAct(graph, CHANNELS, groups=GROUPS, eps=1e-4, momentum=0.2, backend="torch").double()
        with torch.no_grad():
            for p in layer.parameters():
                p.copy_(torch.rand(CHANNELS, dtype=torch.float64) + 0.5)
        xs = [torch.randn(4, CHANNELS, 3, 2, dtype=torch.float64) for _ in range(3)]
        modes = [True, True, False]
        upstream = torch.randn(4, CHANNELS, 3, 2, dtype=torch.float64)
        start_state = {k: v.clone() for k, v in layer.state_dict().items()}
        expected = _reference_run(layer, xs, modes, upstream)
        class_name = "".join(w.capitalize() for w in name.split("_"))
        module_path = tmp_path / f"{name}.py"
        module_path.write_text(es.export_module(graph, class_name=class_name))
        inputs = tmp_path / f"{name}.inputs.pt"
        torch.save({"state": start_state, "xs": xs, "modes": modes, "upstream": upstream}, inputs)
        case = {
            "module": str(module_path), "class_name": class_name, "inputs": str(inputs),
            "output": str(tmp_path / f"{name}.out.pt"), "channels": CHANNELS, "groups": GROUPS,
            "eps": 1e-4, "momentum": 0.2,
        }  # fmt: skip
        runs.append((name, graph, layer, expected, case))
    # One fresh interpreter runs every case: it cannot import the project, which is what matters.
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps([case for *_, case in runs]))
    proc = subprocess.run([sys.executable, str(script), str(cases)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name, graph, layer, expected, case in runs:
        got = torch.load(case["output"], weights_only=False)
        assert graph.to_text().splitlines()[-1] in got["doc"]
        assert es.latex(graph) in got["doc"]
        for line in graph.to_text().splitlines():
            assert line in got["class_doc"], (name, line)  # the whole program, never a `t1` left undefined
        assert got["provenance"]["dsl"] == graph.to_text()
        assert got["provenance"]["canonical_hash"] == es.canonical_hash(graph)
        assert f"{CHANNELS}, groups={GROUPS}" in got["repr"], got["repr"]
        for variant in ("eager", "script"):
            # Eager export runs the reference's own code: bit-identical. TorchScript may fuse and
            # reorder float operations, so it gets a few ulps.
            tol = 0.0 if variant == "eager" else 1e-12
            for want, have in zip(expected, got[variant]["outs"], strict=True):
                msg = lambda m, name=name, variant=variant: f"{name} ({variant}): {m}"  # noqa: E731
                torch.testing.assert_close(have["y"], want["y"], rtol=tol, atol=tol, equal_nan=True, msg=msg)
                _assert_gradient_close(have["gx"], want["gx"], variant, tol, msg)
                assert have["grads"].keys() == want["grads"].keys()
                for k, want_grad in want["grads"].items():
                    if want_grad is None:
                        assert have["grads"][k] is None, (name, k)
                    else:
                        _assert_gradient_close(have["grads"][k], want_grad, variant, tol, msg)
            state = got[variant]["state"]
            assert list(state) == list(layer.state_dict())
            for k, v in layer.state_dict().items():
                torch.testing.assert_close(state[k], v, rtol=tol, atol=tol, equal_nan=True, msg=msg)


def test_export_validates_the_class_name():
    for bad in ("", "1abc", "class", "with space", None):
        with pytest.raises(ValueError, match="class_name must be a Python identifier"):
            es.export_module("evonorm_s0", class_name=bad)  # type: ignore[arg-type]


def test_exported_source_is_readable_and_self_describing():
    src = es.export_module("evonorm_s0", class_name="EvoNormS0")
    compile(src, "exported.py", "exec")
    assert "import evonorm_search" not in src and "from evonorm_search" not in src
    assert "y = x * sigmoid(v1 * x) / std(x, group)" in src or "x * sigmoid(v1 * x) / std(x, group)" in src
    assert r"\sigma\left(v_{1} x\right)" in src
    assert "class EvoNormS0(nn.Module):" in src
    assert es.canonical_hash(es.library.get("evonorm_s0")) in src


def exported_namespace(source: str) -> dict:
    namespace: dict = {}
    exec(compile(source, "exported.py", "exec"), namespace)  # the project's own output
    return namespace


def test_the_docstrings_define_every_intermediate_they_name():
    src = es.export_module("gn_silu", class_name="GnSilu")
    namespace = exported_namespace(src)
    for doc in (namespace["__doc__"], namespace["GnSilu"].__doc__):
        assert "t1 = v1 * (x - mean(x, group)) / std(x, group) + v0" in doc
        assert "y = t1 * sigmoid(t1)" in doc


def test_a_library_export_records_what_is_known_and_nothing_invented():
    graph = es.library.get("evonorm_s0")
    namespace = exported_namespace(es.export_module("evonorm_s0", class_name="EvoNormS0"))
    provenance = namespace["PROVENANCE"]
    assert provenance == {
        "exported_by": f"evonorm-search {es.__version__}",
        "source": "library",
        "layer": "evonorm_s0",
        "dsl": graph.to_text(),
        "canonical_form": es.canonical_form(graph),
        "canonical_hash": es.canonical_hash(graph),
    }
    assert "source: library" in namespace["__doc__"] and "layer: evonorm_s0" in namespace["__doc__"]

    # A graph handed over alone: where it came from is not known, so no source is claimed.
    bare = exported_namespace(es.export_module(graph, class_name="Layer"))["PROVENANCE"]
    assert "source" not in bare and bare["dsl"] == graph.to_text()


def test_the_provenance_given_is_recorded_in_the_constant_and_the_docstring():
    given = {"source": "candidate", "search": 3, "candidate": 42, "objectives": {"accuracy_resnet": 0.8125}}
    namespace = exported_namespace(es.export_module("relu", class_name="Found", provenance=given))
    assert {k: namespace["PROVENANCE"][k] for k in given} == given
    doc = namespace["__doc__"]
    assert "search: 3" in doc and "candidate: 42" in doc and "0.8125" in doc


def test_the_repr_shows_channels_groups_and_settings():
    namespace = exported_namespace(es.export_module("gn_relu", class_name="GnRelu"))
    layer = namespace["GnRelu"](64, groups=8, eps=1e-3)
    assert repr(layer) == "GnRelu(64, groups=8, eps=0.001, momentum=0.1, affine=True)"
