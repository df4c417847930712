"""`SearchConfig`: the one configuration of a search, loaded from YAML by the CLI, the API and workers.

Strict pydantic v2 models: unknown keys, wrong types ("5" for 5) and out-of-range values are errors.
`SearchConfig.from_yaml` turns every problem (YAML syntax, duplicate keys, validation) into one
`ConfigError` whose message names each field and its problem, so nothing is silently ignored.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, Field, ValidationError, field_validator, model_validator

from .. import library
from ..enums import ProbeSite
from ..ir import AGGREGATIONS, AXES, ELEMENTWISE, DSLError, Graph, parse
from ..proxies.architectures import check_spatial_dims
from ..proxies.config import (
    BASE_DIR_CONTEXT,
    Architecture,
    ConvolutionalArchitecture,
    DataConfig,
    DataPath,
    PythonArchitecture,
    StrictModel,
    TrainingConfig,
)
from ..proxies.data import declared_spatial_dims, input_spec
from ..store import Objective
from .mutation import DEFAULT_MUTATIONS, MUTATIONS
from .objectives import objective_specs
from .space import DEFAULT_CONSTANTS, DEFAULT_LEAVES, SearchSpace, SpaceError
from .strategies import STRATEGIES, StrategyKind

DEFAULT_BASELINES = ("bn_relu", "gn_relu", "evonorm_b0", "evonorm_s0")


def resolve_layer(name: str) -> Graph:
    """A library layer by name, or a layer read from a `.dsl` file; ValueError saying which it tried."""
    if name in library.names():
        return library.get(name)
    path = Path(name)
    if path.suffix == ".dsl" or "/" in name:
        if not path.is_file():
            raise ValueError(f"layer {name!r}: no such file")
        try:
            return parse(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"layer {name!r}: cannot read it: {e}") from None
        except DSLError as e:
            raise ValueError(f"layer {name!r}: {e}") from None
    raise ValueError(
        f"unknown layer {name!r}{did_you_mean(name, library.names())}: neither a library layer "
        f"({', '.join(library.names())}) nor a .dsl file"
    )


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'CLOSEST'?)` for a misspelt name, or nothing when no choice is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def registered(what: str, name: str, registry: Collection[str]) -> str:
    """`name` when it is a key of `registry`; else ValueError listing the keys, with the closest as a hint."""
    if name in registry:
        return name
    close = difflib.get_close_matches(name, list(registry), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown {what} {name!r}{hint}; known: {', '.join(registry)}")


# A key of mutation.MUTATIONS, checked item by item so an error names its position (`mutations.2`).
MutationName = Annotated[str, AfterValidator(lambda name: registered("mutation", name, MUTATIONS))]


class ConfigError(ValueError):
    """A search configuration that cannot be used; `problems` lists (field, problem) pairs."""

    def __init__(self, problems: list[tuple[str, str]], origin: str = "search configuration"):
        self.problems = problems
        lines = [f"  {field or '<root>'}: {problem}" for field, problem in problems]
        super().__init__(f"invalid {origin}:\n" + "\n".join(lines))


# --------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------


class SpaceConfig(StrictModel):
    """The search space: ops, axes, leaves and constants candidates may use, and their size.

    `null` for ops or axes means every one the op table knows. `seed_layers` are library layers that
    open the initial population (each must fit the space).
    """

    ops: list[str] | None = None
    axes: list[str] | None = None
    leaves: list[str] = Field(default_factory=lambda: list(DEFAULT_LEAVES))
    constants: list[float] = Field(default_factory=lambda: list(DEFAULT_CONSTANTS))
    min_ops: int = Field(default=1, ge=1, le=256)
    max_ops: int = Field(default=12, ge=1, le=256)
    seed_layers: list[str] = Field(default_factory=list)

    @field_validator("ops")
    @classmethod
    def _known_ops(cls, ops: list[str] | None) -> list[str] | None:
        known = ELEMENTWISE + AGGREGATIONS
        if ops is not None and (unknown := [o for o in ops if o not in known]):
            raise ValueError(f"unknown op(s) {unknown}; known: {', '.join(known)}")
        return ops

    @field_validator("axes")
    @classmethod
    def _known_axes(cls, axes: list[str] | None) -> list[str] | None:
        if axes is not None and (unknown := [a for a in axes if a not in AXES]):
            raise ValueError(f"unknown axis/axes {unknown}; known: {', '.join(AXES)}")
        return axes

    @field_validator("seed_layers")
    @classmethod
    def _library_layers(cls, names: list[str]) -> list[str]:
        if unknown := [n for n in names if n not in library.names()]:
            raise ValueError(f"unknown library layer(s) {unknown}; known: {', '.join(library.names())}")
        return names

    @model_validator(mode="after")
    def _space_is_usable(self) -> SpaceConfig:
        try:
            space = self.build()
        except SpaceError as e:
            raise ValueError(str(e)) from None
        for name in self.seed_layers:
            if problems := space.violations(library.get(name)):
                raise ValueError(f"seed layer {name} lies outside the space: {'; '.join(problems)}")
        return self

    def build(self) -> SearchSpace:
        defaults = SearchSpace()
        return SearchSpace(
            ops=tuple(self.ops) if self.ops is not None else defaults.ops,
            axes=tuple(self.axes) if self.axes is not None else defaults.axes,
            leaves=tuple(self.leaves),
            constants=tuple(float(c) for c in self.constants),
            min_ops=self.min_ops,
            max_ops=self.max_ops,
        )


class StabilityConfig(StrictModel):
    """Reject layers whose worst-case input-gradient norm, found by `steps` of ascent, exceeds `threshold`."""

    enabled: bool = True
    threshold: float = Field(default=1e8, gt=0.0)
    steps: int = Field(default=10, ge=1, le=1000)
    step_size: float = Field(default=0.5, gt=0.0, le=100.0)


class QualityConfig(StrictModel):
    """Reject layers below `threshold` validation accuracy after `steps` training steps on any architecture."""

    enabled: bool = True
    threshold: float = Field(default=0.2, ge=0.0, le=1.0)
    steps: int = Field(default=100, ge=1)


class RejectionConfig(StrictModel):
    """Which rejection protocols run (static checks always do), cheapest first."""

    duplicates: bool = True
    fingerprint: bool = True
    numeric: bool = True
    stability: StabilityConfig = Field(default_factory=StabilityConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    # Where the numeric and stability probes run. `controller` (the default) rejects a layer before it is
    # stored as running; `workers` runs them first in the worker body, so a controller driving a cluster
    # spends its CPU on proposals and writes (the probes are most of its checks' time:
    # benchmarks/results/paper-scale-probes-stored-cpu2.md). Each layer gets the same verdict either way.
    probes: ProbeSite = Field(default=ProbeSite.CONTROLLER, strict=False)  # from YAML and stored JSON: its value


class ProbeSpec(StrictModel):
    """The probes a worker runs before training when `rejection.probes` is `workers`: the numeric check and
    the stability ascent, on the probe input of the data's spatial dims and with the search's seed, as
    the controller runs them (`rejection.cheap_rejections`), so a layer gets the same verdict on either."""

    numeric: bool
    stability: StabilityConfig
    spatial_dims: int = Field(ge=0, le=2)
    seed: int


class ObjectivesConfig(StrictModel):
    """Which objectives a search optimises (the rows of `search.objectives.OBJECTIVE_KINDS` read it).
    Accuracy on every architecture always is one; `cost: plan` adds the compiled plan's cost
    (`float(evonorm_search.compiler.plan_cost(graph))`: bytes moved per element by one training step,
    forward and backward; lower is better)."""

    cost: Literal["none", "plan"] = "none"
    # Hypervolume reference of the cost: steps moving more bytes per element add no hypervolume.
    cost_reference: float = Field(default=64.0, gt=0.0)


def _default_proxy_architectures() -> list[Architecture]:
    return [
        ConvolutionalArchitecture(kind="resnet"),
        ConvolutionalArchitecture(kind="mobilenetv2"),
        ConvolutionalArchitecture(kind="efficientnet"),
    ]


def _default_target_architectures() -> list[Architecture]:
    return [
        ConvolutionalArchitecture(kind="resnet", width=12, blocks=[3, 3, 2]),
        ConvolutionalArchitecture(kind="mobilenetv2", width=12, blocks=[3, 3, 2], expansion=3),
        ConvolutionalArchitecture(kind="efficientnet", width=12, blocks=[3, 3, 2], expansion=3, kernel_size=5),
    ]


def _default_target_training() -> TrainingConfig:
    # No clipping: it would rescue layers that do not normalize and blur what the target measures.
    return TrainingConfig(
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        weight_decay=5e-4,
        schedule="cosine",
        warmup_steps=25,
        steps=500,
        batch_size=128,
        grad_clip=None,
        device="auto",
    )


class ValidationConfig(StrictModel):
    """The target task: the evaluation the proxies stand for and `validate` re-trains layers on.

    Deeper and wider networks than the proxies, trained longer with SGD and momentum, scored on the data
    set's test split, which no search ever reads (`proxies.data`), over `seeds` fresh seeds
    (`first_seed`, `first_seed + 1`, ...), which must differ from the search's own seed.
    """

    architectures: list[Architecture] = Field(
        default_factory=_default_target_architectures, min_length=1, max_length=16
    )
    data: DataConfig = Field(default_factory=lambda: DataConfig(name="mnist1d", samples=4000, test_samples=1000))
    training: TrainingConfig = Field(default_factory=_default_target_training)
    seeds: int = Field(default=3, ge=1, le=1000)
    first_seed: int = Field(default=1000, ge=0, le=2**31 - 1001)

    @field_validator("architectures")
    @classmethod
    def _unique_labels(cls, archs: list[Architecture]) -> list[Architecture]:
        return _unique_architecture_labels(archs)

    def seed_list(self, count: int | None = None) -> list[int]:
        """The validation seeds: `count` (default `seeds`) consecutive ones from `first_seed`."""
        return list(range(self.first_seed, self.first_seed + (self.seeds if count is None else count)))


def _unique_architecture_labels(archs: list[Architecture]) -> list[Architecture]:
    labels = [a.label for a in archs]
    if dupes := sorted({x for x in labels if labels.count(x) > 1}):
        raise ValueError(f"architecture names must be unique; give 'name' to tell {dupes} apart")
    return archs


class FidelityConfig(StrictModel):
    """The fidelity ladder (`search/ladder.py`): rung 0 is the proxies, the last rung the target task of
    `validation:`. With `min_results` set, each time a proxy result arrives from the `min_results`-th on,
    the candidates in the top `1/eta` of rung 0 (by non-dominated rank) that were not promoted yet train
    on the target task for `seeds` seeds (default: the validation section's), until `max_promotions` have
    been. When the search proposes no more, the top `ceil(n / eta)` of rung 0 not promoted yet go up,
    within `max_promotions`. The baselines train on the target task too, once."""

    eta: int = Field(default=3, ge=2, le=100)
    max_promotions: int = Field(default=3, ge=1, le=100_000)
    # None (the default): promote only when rung 0 ends. Promoting from the first results spends the
    # promotions on the random layers a search starts from: at 6 results, both of `max_promotions: 2` went
    # to such layers and the answers scored 0.254 against 0.970 for the end of the rung
    # (benchmarks/results/search-ladder-cpu2.md).
    min_results: int | None = Field(default=None, ge=1, le=100_000)
    seeds: int | None = Field(default=None, ge=1, le=100)


class WorkersConfig(StrictModel):
    """How evaluations use the cluster: GPUs each one reserves, and how long a worker process lives.

    `gpus_per_evaluation` applies when evaluations train on a GPU: `training.device: cuda`, or `auto` on
    a cluster that has GPUs (a CPU-only cluster trains on CPU). Fractions share a GPU (0.25: four small
    proxies per GPU); above 1 it must be whole (Ray's rule). `max_calls` recycles a worker process after
    that many evaluations (0: never), so whatever a process accumulates is returned to the system.
    """

    gpus_per_evaluation: float = Field(default=1.0, gt=0.0, le=64.0)
    max_calls: int = Field(default=100, ge=0, le=1_000_000)

    @field_validator("gpus_per_evaluation")
    @classmethod
    def _whole_above_one(cls, gpus: float) -> float:
        if gpus > 1 and gpus != int(gpus):
            raise ValueError(f"above 1 must be a whole number of GPUs (Ray's rule), got {gpus!r}")
        return gpus


class EvaluationSpec(StrictModel):
    """The part of the configuration a worker needs to evaluate one candidate (picklable, small).

    `split` says which data the run sees: `search` (the proxies: train on the search's training split,
    score on its validation split), `target` (the target task: the whole search part for training,
    the test split for scoring) or `confirm` (the target task scored on the confirmation split, which
    only a final confirmation reads: docs/splits.md)."""

    seed: int
    groups: int
    eps: float
    backend: Literal["auto", "torch", "eager", "triton"]
    architectures: list[Architecture]
    data: DataConfig
    training: TrainingConfig
    quality: QualityConfig
    objectives: ObjectivesConfig  # which objectives the worker computes
    split: Literal["search", "target", "confirm"] = "search"
    probes: ProbeSpec | None = None  # the probes to run before training (`rejection.probes: workers`)


# --------------------------------------------------------------------------------------------------
# The configuration
# --------------------------------------------------------------------------------------------------


class SearchConfig(StrictModel):
    """Everything a search needs. `budget` counts candidates proposed, rejected ones included;
    `compute_budget`, when set, bounds the search by training examples as well (whichever ends first)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    mode: str = "evolution"  # a key of strategies.STRATEGIES
    budget: int = Field(default=100, ge=1, le=100_000_000)
    # Training examples (ladder.py's unit) the search's own candidates may use: rung 0 and the ladder's
    # target runs together. The baselines' runs are the ladder's fixed overhead, counted apart. The search
    # proposes no new candidate once the spent and the in-flight examples reach it; work already queued
    # (the target runs of promoted candidates) finishes, so it may end above it by that much.
    compute_budget: int | None = Field(default=None, ge=1, le=10**15)
    population: int = Field(default=32, ge=2, le=1_000_000)
    tournament: int = Field(default=8, ge=1)
    # Keys of mutation.MUTATIONS; the default is the paper's edits (`normalize_node` is opt-in).
    mutations: list[MutationName] = Field(default_factory=lambda: list(DEFAULT_MUTATIONS), min_length=1)
    space: SpaceConfig = Field(default_factory=SpaceConfig)
    groups: int = Field(default=4, ge=1, le=4096)
    eps: float = Field(default=1e-5, ge=0.0, le=1.0)
    backend: Literal["auto", "torch", "eager", "triton"] = "auto"
    architectures: list[Architecture] = Field(
        default_factory=_default_proxy_architectures,
        min_length=1,
        max_length=16,
    )
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    rejection: RejectionConfig = Field(default_factory=RejectionConfig)
    objectives: ObjectivesConfig = Field(default_factory=ObjectivesConfig)
    # Reference layers evaluated under the same proxies when a search starts (outside its budget and
    # population): library names or paths of .dsl files.
    baselines: list[str] = Field(default_factory=lambda: list(DEFAULT_BASELINES), max_length=64)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    # The fidelity ladder: promote the best candidates to the target task during the search (None: off).
    fidelities: FidelityConfig | None = None

    workers: WorkersConfig = Field(default_factory=WorkersConfig)
    # A folder of the user's code (the modules its `python` factories import) that Ray ships to every
    # worker (`runtime_env` `working_dir`); relative to this file's folder. `run --working-dir` overrides.
    code: DataPath | None = None

    @field_validator("architectures")
    @classmethod
    def _unique_labels(cls, archs: list[Architecture]) -> list[Architecture]:
        return _unique_architecture_labels(archs)

    @field_validator("baselines")
    @classmethod
    def _known_baselines(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError(f"each baseline may be listed once, got {names}")
        for name in names:
            resolve_layer(name)  # raises ValueError naming the problem
        return names

    @field_validator("mode")
    @classmethod
    def _known_strategy(cls, mode: str) -> str:
        return registered("strategy (mode)", mode, STRATEGIES)

    @field_validator("mutations")
    @classmethod
    def _unique_mutations(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError(f"each mutation may be listed once, got {names}")
        return names

    @model_validator(mode="after")
    def _consistent(self) -> SearchConfig:
        if self.tournament > self.population:
            raise ValueError(f"tournament ({self.tournament}) cannot exceed population ({self.population})")
        quality = self.rejection.quality
        if quality.enabled and quality.steps > self.training.steps:
            raise ValueError(
                f"rejection.quality.steps ({quality.steps}) exceeds training.steps ({self.training.steps})"
            )
        if self.seed in self.validation.seed_list():
            raise ValueError(
                f"validation seeds {self.validation.seed_list()} must not include the search's seed ({self.seed}): "
                f"validation re-trains with seeds the search never used; change validation.first_seed"
            )
        # Checked where the data's inputs are known without reading files or running the user's code
        # (a config from the API is validated before anything is read); else when the data is loaded.
        if (spatial_dims := declared_spatial_dims(self.data)) is not None:
            for arch in self.architectures:
                check_spatial_dims(arch, spatial_dims)
        return self

    # -- derived views ---------------------------------------------------------------------------

    def build_space(self) -> SearchSpace:
        return self.space.build()

    def strategy(self) -> StrategyKind:
        """The strategy `mode` names: what it needs and how it proposes."""
        return STRATEGIES[self.mode]

    def objectives_spec(self) -> list[Objective]:
        """The objectives in order (`search.objectives`): accuracy per architecture (maximised,
        reference 0), then the cost (minimised) when asked for."""
        return objective_specs(self.objectives, [a.label for a in self.architectures])

    def python_factories(self) -> list[str]:
        """The `factory` of every `kind: python` architecture, proxies and target task, in order."""
        architectures = [*self.architectures, *self.validation.architectures]
        return [a.factory for a in architectures if isinstance(a, PythonArchitecture)]

    def evaluation_spec(self) -> EvaluationSpec:
        return EvaluationSpec(
            seed=self.seed,
            groups=self.groups,
            eps=self.eps,
            backend=self.backend,
            architectures=list(self.architectures),
            data=self.data,
            training=self.training,
            quality=self.rejection.quality,
            objectives=self.objectives,
            probes=self.probe_spec(),
        )

    def probe_spec(self) -> ProbeSpec | None:
        """The probes the workers run, when the config puts them there and any is on."""
        rejection = self.rejection
        if rejection.probes is not ProbeSite.WORKERS or not (rejection.numeric or rejection.stability.enabled):
            return None
        spatial_dims = self.input_shape()[1]
        return ProbeSpec(
            numeric=rejection.numeric, stability=rejection.stability, spatial_dims=spatial_dims, seed=self.seed
        )

    def proxy_spec(self, seed: int | None = None) -> EvaluationSpec:
        """What the search records for a layer, without the quality rejection or the probes (`evaluate`, and the
        baselines a search evaluates); `seed` replaces the search's seed (weights and batches)."""
        spec = self.evaluation_spec()
        quality = spec.quality.model_copy(update={"enabled": False})
        return spec.model_copy(update={"quality": quality, "seed": self.seed if seed is None else seed, "probes": None})

    def ladder_seeds(self) -> list[int]:
        """The target seeds a promoted candidate (and each baseline) trains on."""
        assert self.fidelities is not None, "ladder_seeds of a search without a ladder"
        return self.validation.seed_list(self.fidelities.seeds)

    def target_spec(self, seed: int) -> EvaluationSpec:
        """The target task with one validation seed (`validate`): the validation section's networks,
        data and training, scored on the test split, no rejection."""
        target = self.validation
        return EvaluationSpec(
            seed=seed,
            groups=self.groups,
            eps=self.eps,
            backend=self.backend,
            architectures=list(target.architectures),
            data=target.data,
            training=target.training,
            quality=QualityConfig(enabled=False, steps=1),
            objectives=ObjectivesConfig(),  # the target task scores accuracy only
            split="target",
        )

    def confirmation_spec(self, seed: int) -> EvaluationSpec:
        """The target task scored on the confirmation split: the figure no choice has read."""
        return self.target_spec(seed).model_copy(update={"split": "confirm"})

    def input_shape(self) -> tuple[int, int, int]:
        """(channels, spatial dims, classes) of the configured data."""
        return input_spec(self.data)

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, source: str | Path) -> SearchConfig:
        """Load from YAML text (a str) or from a file (a Path). A str is never taken for a file name, so text
        from a request can never make the server read one of its files. Relative data paths in a file are
        resolved against the file's folder, so the config reads the same files from any directory."""
        text, origin = _read_source(source)
        data = _parse_yaml(text, origin)
        if isinstance(source, str) and isinstance(data, str):
            # Likely a file name given as a str: say how to read a file instead of only "got str".
            problem = f"expected YAML text of a mapping of settings, got the single value {data[:200]!r}"
            raise ConfigError([("", problem + "; to read a file, pass a pathlib.Path")], origin)
        base_dir = source.resolve().parent if isinstance(source, Path) else None
        return cls.from_mapping(data, origin=origin, base_dir=base_dir)

    @classmethod
    def from_mapping(
        cls, data: Any, *, origin: str = "search configuration", base_dir: Path | None = None
    ) -> SearchConfig:
        """Validate a mapping of settings. Relative data paths are made absolute against `base_dir` (the
        config file's folder), else against the working directory (`proxies.config.resolve_path`)."""
        if not isinstance(data, dict):
            raise ConfigError([("", f"expected a mapping of settings, got {type(data).__name__}")], origin)
        context = {BASE_DIR_CONTEXT: str(base_dir)} if base_dir is not None else None
        try:
            return cls.model_validate(data, context=context)
        except ValidationError as e:
            raise ConfigError(_problems(e, cls), origin) from None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _problems(error: ValidationError, model: type[BaseModel]) -> list[tuple[str, str]]:
    out = []
    for item in error.errors(include_url=False):
        location = _without_tags(model, item["loc"])
        field = ".".join(str(part) for part in location)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":  # a misspelt field: name the one it most likely meant
            name = str(location[-1])
            message += did_you_mean(name, _fields_at(model, location[:-1]))
        out.append((field, message))
    return out


def _without_tags(model: type[BaseModel], path: Sequence[int | str]) -> list[int | str]:
    """A pydantic error location without the tags of tagged unions (`architectures.0.resnet.width` is
    `architectures.0.width`): the field named as the config file spells it."""
    models, out = {model}, []
    for part in path:
        tagged = {m for m in models if isinstance(part, str) and part not in m.model_fields and _has_tag(m, part)}
        if tagged and len(models) > 1:
            models = tagged
            continue
        out.append(part)
        fields = [m.model_fields[part] for m in models if isinstance(part, str) and part in m.model_fields]
        if fields:
            models = {inner for f in fields for inner in _models_in(f.annotation)}
    return out


def _has_tag(model: type[BaseModel], tag: str) -> bool:
    """Whether `tag` is a value of one of the model's Literal fields (a tagged union's discriminator)."""
    return any(
        get_origin(f.annotation) is Literal and tag in get_args(f.annotation) for f in model.model_fields.values()
    )


def _fields_at(model: type[BaseModel], path: Sequence[int | str]) -> set[str]:
    """The field names a mapping at `path` (a pydantic error location) may hold: list indices and the
    tags of tagged unions are skipped; where the path leaves the models, none."""
    models = {model}
    for part in path:
        fields = [m.model_fields[part] for m in models if isinstance(part, str) and part in m.model_fields]
        if fields:
            models = {inner for f in fields for inner in _models_in(f.annotation)}
    return {name for m in models for name in m.model_fields}


def _models_in(annotation: Any) -> set[type[BaseModel]]:
    """The pydantic models inside a type annotation (`X | None`, `list[X]`, `Annotated[A | B, ...]`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {annotation}
    return {inner for arg in get_args(annotation) for inner in _models_in(arg)}


def _read_source(source: str | Path) -> tuple[str, str]:
    if not isinstance(source, Path):
        if not isinstance(source, str):
            raise ConfigError([("", f"expected YAML text or a path, got {type(source).__name__}")])
        return source, "search configuration"
    path = Path(source)
    if not path.is_file():
        raise ConfigError([("", f"no such file: {path}")], str(path))
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([("", f"cannot read {path}: {e}")], str(path)) from None


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML with two fixes: duplicate keys are errors, and `1e-3` is a float (YAML 1.1 says string)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {mark.line + 1}, column {mark.column + 1})", mark
            )
        seen[key] = loader.construct_object(value_node, deep=True)
    return seen


_FLOAT = re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d[\d_]*)?[eE][-+]?\d+$|^[-+]?(?:\d[\d_]*)?\.\d[\d_]*$|^[-+]?\d[\d_]*\.$")
_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def parse_config_yaml(text: str, origin: str = "search configuration") -> Any:
    """YAML text as Python values (a ConfigError with line and column where it does not parse), for callers
    that look at a config's mapping before validating it (the API's allow-lists)."""
    return _parse_yaml(text, origin)


def _parse_yaml(text: str, origin: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506  (_StrictLoader is a SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigError([("", f"{where}{e.problem or e}")], origin) from None
    except yaml.YAMLError as e:
        raise ConfigError([("", f"malformed YAML: {e}")], origin) from None
