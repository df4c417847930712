"""Configuration of proxy tasks: the data set, the proxy architectures and the training recipe.

Strict pydantic models (unknown keys, wrong types and out-of-range values are errors that name the
field), shared by the search configuration, the workers and the API. They live here, beside the code
that reads them, so `proxies` never imports `search`.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, cast, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    SerializationInfo,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema

# Family of each kind, filled once the families below exist (the base class's schema waits for it).
_FAMILY_OF_KIND: dict[str, type[ArchitectureConfig]] = {}

# The kinds, by family: each family is one config model below, and each kind one row of
# `proxies.architectures.ARCHITECTURES` (its builder, the spatial dims it takes, the package it needs).
ConvolutionalKind = Literal["resnet", "mobilenetv2", "efficientnet"]
TransformerKind = Literal["transformer", "vit"]
ArchitectureKind = Literal[ConvolutionalKind, TransformerKind, "python", "torchvision", "timm"]
# Where a transformer's norms sit: before each sublayer, after each residual add, around each
# sublayer (Peri-LN), or after the add in the first quarter of the blocks and before later (Mix-LN).
Placement = Literal["pre", "post", "peri", "mix"]

CONVOLUTIONAL_KINDS: tuple[str, ...] = get_args(ConvolutionalKind)
TRANSFORMER_KINDS: tuple[str, ...] = get_args(TransformerKind)
# Keyword arguments a user model's constructor gets from the data or the search, never from `kwargs`.
_SET_BY_THE_SEARCH = ("num_classes", "in_channels", "in_chans", "norm_act", "norm_layer", "act_layer")


class StrictModel(BaseModel):
    """No unknown keys, no silent type coercion ("5" is not 5), no NaN or infinity, immutable once validated."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class ArchitectureConfig(StrictModel):
    """One proxy network; every norm-activation slot holds the candidate. The base of the families.

    `ArchitectureConfig(kind=..., ...)`, `ArchitectureConfig.model_validate(...)` and a field typed
    `ArchitectureConfig` all validate through the discriminated union on `kind` (`Architecture`), so
    each family's fields are checked on their own and an instance is always of the kind's family.
    """

    # Only this class validates through the union; the families validate as plain models.
    _UNION_BASE: ClassVar[bool] = True

    kind: str
    name: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]{0,31}$")

    def __new__(cls, *args: Any, **data: Any) -> ArchitectureConfig:
        if not cls.__dict__.get("_UNION_BASE"):
            return super().__new__(cls)
        kind = data.get("kind")
        family = _FAMILY_OF_KIND.get(kind) if isinstance(kind, str) else None
        if family is None:  # no or an unknown kind: the union's own error names the kinds it takes
            return _ARCHITECTURE_ADAPTER.validate_python(data)
        # Python then runs the family's __init__ on it, which validates `data` as that family.
        return super().__new__(family)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        # While the base class itself is being built the families do not exist yet: its own schema then.
        if cls.__dict__.get("_UNION_BASE") and _FAMILY_OF_KIND:
            return handler.generate_schema(Architecture)
        return handler(source)

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Self:
        if cls.__dict__.get("_UNION_BASE"):
            # The union's member for the kind: a subclass of this class, so an instance of it.
            return cast(Self, _ARCHITECTURE_ADAPTER.validate_python(obj, **kwargs))
        return super().model_validate(obj, **kwargs)

    @property
    def label(self) -> str:
        """The name objectives and evaluations use: `name`, else `kind`."""
        return self.name or self.kind


class _FamilyFields(ArchitectureConfig):
    """A built-in family. Configs dumped before the families were split carry the other family's fields
    at their defaults: those are dropped; a changed one is a mistake worth naming."""

    FAMILY: ClassVar[str]
    FAMILY_FIELDS: ClassVar[tuple[str, ...]]

    @model_validator(mode="before")
    @classmethod
    def _drop_the_other_familys_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        other = TransformerArchitecture if cls is ConvolutionalArchitecture else ConvolutionalArchitecture
        defaults = {f: other.model_fields[f].get_default(call_default_factory=True) for f in other.FAMILY_FIELDS}
        if changed := [f for f in other.FAMILY_FIELDS if f in data and data[f] != defaults[f]]:
            raise ValueError(
                f"{', '.join(changed)} only apply to {other.FAMILY} kinds, not to kind {data.get('kind')!r}"
            )
        return {key: value for key, value in data.items() if key not in defaults}


class ConvolutionalArchitecture(_FamilyFields):
    """ResNet, MobileNetV2 and EfficientNet proxies (`proxies.models`).

    `width` is the first stage's channel count (doubling per stage), `blocks` the number of blocks per
    stage (so its length is the number of stages), `expansion` the inverted-bottleneck ratio
    (MobileNetV2 and EfficientNet), `kernel_size` the depthwise kernel (EfficientNet).
    """

    FAMILY: ClassVar[str] = "convolutional"
    FAMILY_FIELDS: ClassVar[tuple[str, ...]] = ("blocks", "expansion", "kernel_size")

    kind: ConvolutionalKind
    width: int = Field(default=16, ge=1, le=1024)
    blocks: list[int] = Field(default_factory=lambda: [1, 1], min_length=1, max_length=6)
    expansion: int = Field(default=4, ge=1, le=8)
    kernel_size: int = Field(default=3, ge=1, le=7)

    @field_validator("blocks")
    @classmethod
    def _positive_blocks(cls, blocks: list[int]) -> list[int]:
        if any(b < 1 for b in blocks):
            raise ValueError(f"every stage needs at least one block, got {blocks}")
        return blocks

    @field_validator("kernel_size")
    @classmethod
    def _odd_kernel(cls, k: int) -> int:
        if k % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same padding), got {k}")
        return k


class TransformerArchitecture(_FamilyFields):
    """Transformer encoders (`transformer` on sequences, `vit` on images; `proxies.transformers`).

    `width` is the hidden size, `depth` the number of encoder blocks, `heads` the attention heads (they
    divide `width`), `mlp_ratio` the MLP's hidden size over `width`, `placement` where the norms sit,
    `patch_size` the positions (per side for images) one token covers; None: 4 for sequences, 2 for images.
    """

    FAMILY: ClassVar[str] = "transformer"
    FAMILY_FIELDS: ClassVar[tuple[str, ...]] = ("depth", "heads", "mlp_ratio", "placement", "patch_size")

    kind: TransformerKind
    width: int = Field(default=16, ge=1, le=1024)
    depth: int = Field(default=2, ge=1, le=48)
    heads: int = Field(default=2, ge=1, le=64)
    mlp_ratio: int = Field(default=2, ge=1, le=8)
    placement: Placement = "pre"
    patch_size: int | None = Field(default=None, ge=1, le=64)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TransformerArchitecture:
        if self.width % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide width ({self.width})")
        return self

    @property
    def tokens_per_patch_side(self) -> int:
        """The patch size: `patch_size`, else 4 for sequences and 2 for images."""
        if self.patch_size is not None:
            return self.patch_size
        return 4 if self.kind == "transformer" else 2


def _no_search_set_keys(kwargs: dict[str, Any]) -> dict[str, Any]:
    if taken := sorted(set(kwargs) & set(_SET_BY_THE_SEARCH)):
        raise ValueError(
            f"{', '.join(taken)} must not be in kwargs: the number of classes and input channels come from "
            "the data, the norm-activation layer from the search"
        )
    return kwargs


class PythonArchitecture(ArchitectureConfig):
    """Your own model: `factory` ("package.module:function") called with `kwargs`.

    A factory with a `norm_act` parameter gets the candidate (a callable channels -> nn.Module, as timm's
    `norm_layer`); otherwise every norm of the model it returns, and the activation after it, become the
    candidate through `swap_norm_act`. Parameters named `num_classes` and `in_channels` get the data's.
    The module is imported where the model is built: its directory must be on the Python path (the
    command line puts the config file's directory there).
    """

    kind: Literal["python"]
    factory: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
    kwargs: dict[str, Any] = Field(default_factory=dict)

    _check_kwargs = field_validator("kwargs")(_no_search_set_keys)


class TorchvisionArchitecture(ArchitectureConfig):
    """A torchvision classification model by name (`model: resnet18`), built with `kwargs`, the data's
    classes and input channels (the first convolution is replaced when they are not 3), then swapped."""

    kind: Literal["torchvision"]
    model: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kwargs: dict[str, Any] = Field(default_factory=dict)

    _check_kwargs = field_validator("kwargs")(_no_search_set_keys)


class TimmArchitecture(ArchitectureConfig):
    """A timm model by name (`timm.create_model(model, num_classes=..., in_chans=..., **kwargs)`), swapped."""

    kind: Literal["timm"]
    model: str = Field(pattern=r"^[A-Za-z0-9_.]+$")
    kwargs: dict[str, Any] = Field(default_factory=dict)

    _check_kwargs = field_validator("kwargs")(_no_search_set_keys)


# The union every architecture field validates through: the model follows `kind`.
Architecture = Annotated[
    ConvolutionalArchitecture
    | TransformerArchitecture
    | PythonArchitecture
    | TorchvisionArchitecture
    | TimmArchitecture,
    Field(discriminator="kind"),
]
_ARCHITECTURE_ADAPTER: TypeAdapter[ArchitectureConfig] = TypeAdapter(
    Architecture, config=ConfigDict(title="ArchitectureConfig")
)
_FAMILY_OF_KIND.update(
    {
        kind: family
        for family in get_args(get_args(Architecture)[0])
        for kind in get_args(family.model_fields["kind"].annotation)
    }
)


class DataConfig(StrictModel):
    """Which proxy data set, and how to split it: the base of one config model per data set.

    `name` picks the data set's row of `proxies.data.DATASETS` and with it the model that validates the
    rest of the mapping, so each data set's fields are checked on their own. `DataConfig(name=..., ...)`
    builds that model, and a field annotated `DataConfig` validates a mapping the same way (a
    discriminated union on `name` that also takes rows registered later). `validation_fraction` of the
    search part is held out and scored; every data set also has a test split that only the target task
    reads (`proxies.data`). `max_train_samples` subsamples the search's training split for speed.
    """

    name: str = "digits"
    validation_fraction: float = Field(default=0.25, gt=0.0, lt=1.0)
    max_train_samples: int | None = Field(default=None, ge=10)
    seed: int = Field(default=0, ge=0)

    def __new__(cls, *args: Any, **data: Any) -> DataConfig:
        # `DataConfig(name="digits", ...)` builds the named data set's own model, validated as a field
        # annotated `DataConfig` would be (errors are ValidationErrors naming the field).
        if cls is DataConfig:
            return data_config_adapter().validate_python(data)
        return super().__new__(cls)

    def __init__(self, /, **data: Any) -> None:
        # Python calls __init__ on what __new__ returned: a model built by `DataConfig(...)` is complete.
        if not hasattr(self, "__pydantic_fields_set__"):
            super().__init__(**data)

    # Tells pydantic this __init__ only validates, as BaseModel's does, so validation builds models
    # directly (keeping its context, which resolves relative paths) instead of calling it.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        # Each data set's model validates as itself, and so does the base while its own class is built;
        # only a field annotated with the complete base dispatches on `name`.
        if source is not globals().get("DataConfig") or not cls.__dict__.get("__pydantic_complete__"):
            return handler(source)
        # The JSON schema (the API's documentation) lists the data sets registered by now.
        choices = {name: handler.generate_schema(model) for name, model in DATA_CONFIGS.items()}
        documented = core_schema.tagged_union_schema(choices, discriminator="name") if choices else None
        return core_schema.with_info_plain_validator_function(
            _validate_data_config,
            json_schema_input_schema=documented or core_schema.any_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(_dump_data_config, info_arg=True),
        )

    def given_statistics(self) -> tuple[list[float], list[float]] | None:
        """Per-channel (mean, std) to normalise with; None: computed on the training part."""
        return None


# Data set name -> its config model; `proxies.data.register_dataset` adds a row's model here.
DATA_CONFIGS: dict[str, type[DataConfig]] = {}
DEFAULT_DATA_NAME = "digits"
# Fields of the flat DataConfig every data set once shared, with their defaults. Stored and dumped
# configurations carry them all; one left at its default is dropped where the data set has no such
# field, one changed is an error naming it (it would have been ignored).
_SHARED_FIELD_DEFAULTS: dict[str, Any] = {
    "path": None,
    "samples": 4000,
    "test_samples": 1000,
    "confirm_samples": 1000,
    "confirm_fraction": 0.0,
    "recall_pairs": 6,
    "recall_keys": 16,
    "recall_values": 8,
    "synthetic_shape": [1, 8, 8],
    "synthetic_classes": 4,
}
# The fields of data sets that can stream through a DataLoader instead of being held in memory as tensors.
STREAMING_FIELDS = ("in_memory", "in_memory_limit_mib", "loader_workers")
# The validation context's key for the folder relative data paths are resolved against (the config file's).
BASE_DIR_CONTEXT = "base_dir"


def data_config_model(name: object) -> type[DataConfig]:
    """The config model of the data set `name`; a ValueError listing the known names otherwise."""
    model = DATA_CONFIGS.get(name) if isinstance(name, str) else None
    if model is None:
        known = ", ".join(sorted(DATA_CONFIGS))
        raise ValueError(f"unknown data set {name!r}; known: {known}")
    return model


@functools.cache
def data_config_adapter() -> TypeAdapter[DataConfig]:
    # Annotated: a TypeAdapter of a model class would use that class's own validator, not the dispatch.
    return TypeAdapter(Annotated[DataConfig, Field(description="a data set's config, by its `name`")])


def _without_unused_shared_fields(data: dict[str, Any], name: str, model: type[DataConfig]) -> dict[str, Any]:
    """`data` less the once-shared fields its data set lacks; a ValueError naming one that was changed."""
    foreign = [key for key in _SHARED_FIELD_DEFAULTS if key in data and key not in model.model_fields]
    for key in foreign:
        if data[key] != _SHARED_FIELD_DEFAULTS[key]:
            takers = sorted(other_name for other_name, other in DATA_CONFIGS.items() if key in other.model_fields)
            raise ValueError(f"'{key}' applies to the data sets {', '.join(takers)}, not to {name!r}")
    return {k: v for k, v in data.items() if k not in foreign}


def _validate_data_config(value: Any, info: ValidationInfo) -> DataConfig:
    if isinstance(value, DataConfig) and type(value) is not DataConfig:
        return value
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping with a data set 'name', got {type(value).__name__}")
    name = value.get("name", DEFAULT_DATA_NAME)
    model = data_config_model(name)
    if foreign := [key for key in STREAMING_FIELDS if key in value and key not in model.model_fields]:
        takers = sorted(other_name for other_name, other in DATA_CONFIGS.items() if foreign[0] in other.model_fields)
        raise ValueError(
            f"'{foreign[0]}' applies to the data sets that can stream ({', '.join(takers)}), not to {name!r}: "
            "it is always held in memory"
        )
    return model.model_validate(_without_unused_shared_fields(value, name, model), context=info.context)


def _dump_data_config(value: DataConfig, info: SerializationInfo) -> Any:
    return value.model_dump(mode=info.mode, exclude_none=info.exclude_none, by_alias=info.by_alias)


def resolve_path(path: str, info: ValidationInfo) -> str:
    """An absolute path: `~` expanded, a relative one joined to the config file's folder (the validation
    context's `base_dir`) or else to the working directory, so another working directory or a Ray
    worker reads the same file."""
    expanded = Path(os.path.expanduser(path))  # an unknown ~user stays as written (pathlib would raise)
    if not expanded.is_absolute():
        base = (info.context or {}).get(BASE_DIR_CONTEXT)
        expanded = Path(base) / expanded if base is not None else Path.cwd() / expanded
    return os.path.normpath(expanded)


# A file or folder a data set reads: made absolute when validated, checked against EVONORM_DATA_ROOTS
# behind the API (`proxies.data.path_fields` finds the fields of this type).
DATA_PATH = AfterValidator(resolve_path)
DataPath = Annotated[str, DATA_PATH]


class GeneratedData(DataConfig):
    """A data set generated locally: each split from its own random stream under `seed` (`proxies.data`).
    `samples` examples for searches, `test_samples` for the test split only the target task reads,
    `confirm_samples` for the confirmation split only a final confirmation reads."""

    samples: int = Field(default=4000, ge=20, le=1_000_000)
    test_samples: int = Field(default=1000, ge=20, le=1_000_000)
    confirm_samples: int = Field(default=1000, ge=20, le=1_000_000)


class Mnist1dData(GeneratedData):
    """MNIST-1D generated locally (Greydanus, 2020): 40-point 1-D strokes of ten digits."""

    name: Literal["mnist1d"]


class RecallData(GeneratedData):
    """Associative recall generated locally: a sequence task that needs attention (find the value stored
    under the queried key). `recall_pairs` (key, value) pairs per example (its sequence is pairs + 1
    tokens long) out of `recall_keys` keys and `recall_values` values; more pairs are harder."""

    name: Literal["recall"]
    recall_pairs: int = Field(default=6, ge=1, le=256)
    recall_keys: int = Field(default=16, ge=1, le=1024)
    recall_values: int = Field(default=8, ge=2, le=1024)

    @model_validator(mode="after")
    def _distinct_keys(self) -> RecallData:
        if self.recall_pairs > self.recall_keys:
            raise ValueError(
                f"recall_pairs ({self.recall_pairs}) must not exceed recall_keys ({self.recall_keys}): "
                "the keys of an example are distinct"
            )
        return self


class SyntheticData(GeneratedData):
    """A small learnable task for tests: `synthetic_shape` is the input's (channels, length) or (channels,
    height, width), `synthetic_classes` the classes."""

    name: Literal["synthetic"]
    synthetic_shape: list[int] = Field(default_factory=lambda: [1, 8, 8], min_length=2, max_length=3)
    synthetic_classes: int = Field(default=4, ge=2, le=100)

    @field_validator("synthetic_shape")
    @classmethod
    def _positive_shape(cls, shape: list[int]) -> list[int]:
        if any(s < 1 for s in shape):
            raise ValueError(f"every dimension must be positive, got {shape}")
        return shape


class FixedTestData(DataConfig):
    """A data set with a fixed test split: `confirm_fraction` of each of its classes is carved from it,
    with a fixed seed, as the confirmation split (the target task scoring on the rest; 0: none)."""

    confirm_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)


class DigitsData(FixedTestData):
    """scikit-learn's bundled 8x8 digits: needs nothing."""

    name: Literal["digits"] = "digits"


class Cifar10Data(FixedTestData):
    """CIFAR-10 from the standard python-pickle batches in `path` (cifar-10-batches-py)."""

    name: Literal["cifar10"]
    path: DataPath  # a directory holding data_batch_1..5 and test_batch (cifar-10-batches-py)


class StreamingData(DataConfig):
    """Where a data set's examples live while a proxy trains. `in_memory: true` decodes every example once
    and holds them as tensors; `false` streams them: the training split through a DataLoader with
    `loader_workers` worker processes (0: read in the training process), each batch decoded when drawn;
    `auto` (the default) holds the data in memory when its estimated decoded size (float32, every example
    of the search part and the test split) is at most `in_memory_limit_mib` MiB, else streams it."""

    in_memory: Literal["auto"] | bool = "auto"
    in_memory_limit_mib: int = Field(default=1024, ge=1, le=1_048_576)
    loader_workers: int = Field(default=2, ge=0, le=64)

    @field_validator("in_memory", mode="before")
    @classmethod
    def _known_choice(cls, value: Any) -> Any:
        if not (isinstance(value, bool) or value == "auto"):
            raise ValueError(f"in_memory must be auto, true or false, got {value!r}")
        return value

    @property
    def in_memory_limit_bytes(self) -> int:
        return self.in_memory_limit_mib * 2**20


class FileData(FixedTestData):
    """A data set read from the user's files. Without a test split of its own, `test_fraction` of each
    class is carved from the data, with a fixed seed, as the test split."""

    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)


class ImageNormalisation(StrictModel):
    """Per-channel mean and std on the [0, 1] pixel scale (torchvision's convention)."""

    mean: list[float] = Field(min_length=1, max_length=4)
    std: list[float] = Field(min_length=1, max_length=4)

    @model_validator(mode="after")
    def _matching_positive(self) -> ImageNormalisation:
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean and std need one value per channel, got {len(self.mean)} and {len(self.std)}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"every std must be positive, got {self.std}")
        return self


class ImageData(FileData, StreamingData):
    """Images read as `mode` grayscale (1 channel) or RGB (3), resized to `size` (one side, or [height,
    width]; None: all must share a size), scaled to [0, 1] and normalised with `normalise` (None: the
    per-channel statistics of the training part, as for every data set)."""

    mode: Literal["grayscale", "rgb"] = "rgb"
    size: list[int] | None = Field(default=None, min_length=1, max_length=2)
    normalise: ImageNormalisation | None = None

    @field_validator("size")
    @classmethod
    def _positive_size(cls, size: list[int] | None) -> list[int] | None:
        if size is not None and any(s < 1 for s in size):
            raise ValueError(f"every side must be positive, got {size}")
        return size

    @model_validator(mode="after")
    def _statistics_per_channel(self) -> ImageData:
        if self.normalise is not None and len(self.normalise.mean) != self.channels:
            raise ValueError(f"normalise needs {self.channels} values per statistic for mode {self.mode!r}")
        return self

    @property
    def channels(self) -> int:
        return 1 if self.mode == "grayscale" else 3

    def given_statistics(self) -> tuple[list[float], list[float]] | None:
        return None if self.normalise is None else (self.normalise.mean, self.normalise.std)


class ImageFolderData(ImageData):
    """A directory of images at `path`, one subfolder per class (its name is the label; classes sorted by
    name). With `train/` and `test/` subfolders, those are the search part and the test split; otherwise
    `test_fraction` of each class is the test split."""

    name: Literal["imagefolder"]
    path: DataPath


class ArraysData(FileData):
    """Arrays in an `.npz` (numpy) or `.pt` (a dict of tensors, read with torch.load(weights_only=True))
    file at `path`: `x` (N, C, *spatial) and integer labels `y` (N,); optionally `x_test`, `y_test` as
    the test split (else `test_fraction` of each class is carved)."""

    name: Literal["arrays"]
    path: DataPath

    @field_validator("path")
    @classmethod
    def _known_suffix(cls, path: str) -> str:
        if Path(path).suffix not in (".npz", ".pt"):
            raise ValueError(f"path must name an .npz or .pt file, got {path!r}")
        return path


FACTORY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"


class PythonData(FixedTestData, StreamingData):
    """Data from the user's code: `factory` ("package.module:function") is called with `kwargs` and returns
    (x_train, y_train, x_test, y_test) as arrays or tensors, or (train, test) torch Datasets of
    (input, label) pairs. It is imported when the data is loaded, never when the config is validated."""

    name: Literal["python"]
    factory: str = Field(pattern=FACTORY_PATTERN)
    kwargs: dict[str, Any] = Field(default_factory=dict)


class TorchvisionData(ImageData):
    """A torchvision data set class by name (`dataset`: MNIST, CIFAR10, FakeData, ...) read from the local
    `root`, never downloaded (download=False). `kwargs` go to the class; its train=True and train=False
    parts are the search part and the test split (a class without `train`, such as FakeData, is split by
    `test_fraction`). Images are read as in `imagefolder` (`mode`, `size`, `normalise`)."""

    name: Literal["torchvision"]
    dataset: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    root: DataPath
    kwargs: dict[str, Any] = Field(default_factory=dict)


class TrainingConfig(StrictModel):
    """The proxy training recipe: seeded, cosine-scheduled, identical for every candidate."""

    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(default=0.05, gt=0.0, le=10.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=5e-4, ge=0.0, le=1.0)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = Field(default=0, ge=0)
    steps: int = Field(default=300, ge=1, le=10_000_000)
    batch_size: int = Field(default=64, ge=2, le=65536)
    eval_batch_size: int = Field(default=512, ge=1, le=65536)
    grad_clip: float | None = Field(default=5.0, gt=0.0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Threads for intra-op parallelism on CPU; None leaves PyTorch's default.
    threads: int | None = Field(default=None, ge=1, le=1024)

    @model_validator(mode="after")
    def _warmup_within_steps(self) -> TrainingConfig:
        if self.warmup_steps >= self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be below steps ({self.steps})")
        return self
