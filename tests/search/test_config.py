"""SearchConfig: YAML in, strict validation, and an error naming the field for every bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from evonorm_search.search import ConfigError, SearchConfig
from evonorm_search.store import Objective

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

MINIMAL = "name: tiny\n"


def test_defaults_describe_the_papers_three_architectures_on_digits():
    config = SearchConfig.from_yaml(MINIMAL)
    assert config.mode == "evolution" and config.data.name == "digits"
    assert [a.kind for a in config.architectures] == ["resnet", "mobilenetv2", "efficientnet"]
    assert config.rejection.stability.threshold == 1e8
    assert config.rejection.quality.threshold == 0.2
    assert config.objectives_spec() == [
        Objective("accuracy_resnet", "max", 0.0, "accuracy"),
        Objective("accuracy_mobilenetv2", "max", 0.0, "accuracy"),
        Objective("accuracy_efficientnet", "max", 0.0, "accuracy"),
    ]
    assert config.input_shape() == (1, 2, 10)


def test_a_full_config_round_trips_through_yaml_and_json():
    text = """
name: s-series
seed: 3
mode: random
budget: 50
population: 10
tournament: 4
mutations: [replace_op, insert_node]
space:
  ops: [add, mul, div, sigmoid, std, mean]
  axes: [group, instance]
  leaves: [x, v1]
  constants: [1.0, 2]
  max_ops: 6
  seed_layers: [evonorm_s0]
groups: 8
eps: 1e-3
architectures:
  - {kind: resnet, width: 8, blocks: [1]}
  - {kind: resnet, name: wide_resnet, width: 16, blocks: [1, 1]}
data: {name: mnist1d, samples: 500}
training: {optimizer: adamw, lr: 3e-3, steps: 200, batch_size: 32, warmup_steps: 10}
rejection:
  stability: {threshold: 1e6, steps: 4}
  quality: {threshold: 0.3, steps: 50}
"""
    config = SearchConfig.from_yaml(text)
    assert config.eps == 1e-3 and config.training.lr == 3e-3  # YAML 1.1 would read these as strings
    assert config.space.constants == [1.0, 2.0]
    space = config.build_space()
    assert space.ops == ("add", "mul", "div", "sigmoid", "std", "mean") and space.batch_free
    assert [o.name for o in config.objectives_spec()] == ["accuracy_resnet", "accuracy_wide_resnet"]
    assert SearchConfig.from_yaml(config.to_yaml()) == config
    assert SearchConfig.model_validate(config.model_dump(mode="json")) == config
    spec = config.evaluation_spec()
    assert spec.groups == 8 and spec.quality.steps == 50 and spec.data.name == "mnist1d"


def test_loads_from_a_path_and_never_takes_text_for_a_file_name(tmp_path):
    path = tmp_path / "search.yaml"
    path.write_text("name: from-file\nbudget: 7\n")
    assert SearchConfig.from_yaml(path).budget == 7
    with pytest.raises(ConfigError, match=r"got the single value '.*'; to read a file, pass a pathlib\.Path"):
        SearchConfig.from_yaml(str(path))  # text: a YAML string, not the file it names
    with pytest.raises(ConfigError, match="expected a mapping of settings, got list"):
        SearchConfig.from_yaml("- name: x\n")
    with pytest.raises(ConfigError, match="no such file"):
        SearchConfig.from_yaml(tmp_path / "absent.yaml")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(ConfigError, match="cannot read"):
        SearchConfig.from_yaml(tmp_path / "binary.yaml")


# Every config in examples/ with its number of proxy architectures.
EXAMPLE_ARCHITECTURES = {
    "quick.yaml": 3,
    "paper.yaml": 3,
    "transformer.yaml": 1,
    "transformer-mnist1d.yaml": 2,
    "own-model.yaml": 2,
    "torchvision.yaml": 2,
}


@pytest.mark.parametrize(("name", "architectures"), EXAMPLE_ARCHITECTURES.items())
def test_the_shipped_examples_are_valid(name, architectures):
    config = SearchConfig.from_yaml(EXAMPLES / name)
    assert config.budget >= 1 and len(config.architectures) == architectures


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        ("budget: 5", "name", "Field required"),
        ("name: x\nbudgett: 5", "budgett", "Extra inputs are not permitted"),
        ("name: x\nbudget: '5'", "budget", "valid integer"),
        ("name: x\nbudget: 0", "budget", "greater than or equal to 1"),
        ("name: x\nmode: grid", "mode", "unknown strategy (mode) 'grid'; known: evolution, random"),
        ("name: 'bad name!'", "name", "should match pattern"),
        ("name: x\npopulation: 4\ntournament: 5", "<root>", "tournament (5) cannot exceed population (4)"),
        ("name: x\nmutations: [swap]", "mutations.0", "unknown mutation 'swap'; known: replace_op"),
        ("name: x\nmutations: [insert_node, insert_node]", "mutations", "listed once"),
        ("name: x\nspace: {ops: [add, conv]}", "space.ops", "unknown op(s) ['conv']"),
        ("name: x\nspace: {axes: [time]}", "space.axes", "unknown axis/axes ['time']"),
        ("name: x\nspace: {leaves: [v1]}", "space", "the leaves must include x"),
        ("name: x\nspace: {min_ops: 5, max_ops: 3}", "space", "need 1 <= min_ops <= max_ops"),
        ("name: x\nspace: {seed_layers: [nope]}", "space.seed_layers", "unknown library layer(s) ['nope']"),
        (
            "name: x\nspace: {axes: [group, instance], seed_layers: [evonorm_b0]}",
            "space",
            "seed layer evonorm_b0 lies outside the space: axis batch is not in the space",
        ),
        ("name: x\narchitectures: []", "architectures", "at least 1 item"),
        ("name: x\narchitectures: [{kind: resnet}, {kind: resnet}]", "architectures", "names must be unique"),
        ("name: x\narchitectures: [{kind: resnet, dropout: 3}]", "architectures.0.dropout", "Extra inputs"),
        ("name: x\narchitectures: [{kind: resnet, depth: 3}]", "architectures.0", "depth only apply to transformer"),
        ("name: x\narchitectures: [{kind: vit, width: 6, heads: 4}]", "architectures.0", "heads (4) must divide"),
        ("name: x\narchitectures: [{kind: vit, placement: side}]", "architectures.0.placement", "'peri' or 'mix'"),
        ("name: x\ndata: {name: cifar10}", "data.path", "Field required"),
        ("name: x\ndata: {name: mnist1d, confirm_fraction: 0.5}", "data", "'confirm_fraction' applies to the data"),
        ("name: x\ndata: {name: imagenet}", "data", "unknown data set 'imagenet'; known: arrays, cifar10"),
        ("name: x\ndata: {name: imagefolder, path: d, size: [0]}", "data.size", "every side must be positive"),
        ("name: x\ntraining: {lr: -1}", "training.lr", "greater than 0"),
        ("name: x\ntraining: {lr: .nan}", "training.lr", "finite number"),
        ("name: x\ntraining: {steps: 50}", "<root>", "rejection.quality.steps (100) exceeds training.steps (50)"),
        ("name: x\nrejection: {stability: {threshold: 0}}", "rejection.stability.threshold", "greater than 0"),
        ("name: x\nrejection: {quality: {threshold: 1.5}}", "rejection.quality.threshold", "less than or equal to 1"),
        ("name: x\neps: -1e-5", "eps", "greater than or equal to 0"),
        ("name: x\ngroups: true", "groups", "valid integer"),
    ],
)
def test_every_bad_value_names_its_field(text, field, fragment):
    with pytest.raises(ConfigError) as info:
        SearchConfig.from_yaml(text)
    assert any(f == field or (field == "<root>" and f == "") for f, _ in info.value.problems), info.value.problems
    assert fragment in str(info.value)
    assert "errors.pydantic.dev" not in str(info.value)


def test_several_problems_are_reported_together():
    with pytest.raises(ConfigError) as info:
        SearchConfig.from_yaml("name: x\nbudget: -1\ntraining: {lr: 0, optimizer: rmsprop}")
    fields = {f for f, _ in info.value.problems}
    assert {"budget", "training.lr", "training.optimizer"} <= fields


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name: x\nbudget: [1", "line 2"),
        ("name: x\nname: y", "duplicate key 'name' (line 2, column 1)"),
        ("name: x\n  budget: 3", "line 2"),
        ("- name: x", "expected a mapping of settings, got list"),
        ("", "expected a mapping of settings, got NoneType"),
        ("name: !!python/object:os.system x", "could not determine a constructor"),
    ],
)
def test_malformed_yaml_is_a_config_error_with_a_position(text, fragment):
    with pytest.raises(ConfigError, match="invalid search configuration") as info:
        SearchConfig.from_yaml(text)
    assert fragment in str(info.value)


def test_a_plan_cost_objective_is_minimised_against_its_reference():
    config = SearchConfig.from_yaml("name: x\nobjectives: {cost: plan, cost_reference: 32}")
    assert config.objectives_spec()[-1] == Objective("cost", "min", 32.0, "cost")
    with pytest.raises(ConfigError, match="cost_reference"):
        SearchConfig.from_yaml("name: x\nobjectives: {cost: plan, cost_reference: 0}")


def test_every_shipped_example_is_checked():
    """A new example file must join EXAMPLE_ARCHITECTURES, so that its validity is tested."""
    assert {p.name for p in EXAMPLES.glob("*.yaml")} == set(EXAMPLE_ARCHITECTURES)
