"""Configuration of proxy tasks: the data set, the proxy architectures and the training recipe.

Strict pydantic models (unknown keys, wrong types and out-of-range values are errors that name the
field), shared by the search configuration, the workers and the API. They live here, beside the code
that reads them, so `proxies` never imports `search`.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Self, cast, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    TypeAdapter,
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
DataName = Literal["digits", "mnist1d", "cifar10", "synthetic", "recall"]
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
    """Which proxy data set, and how to split it.

    `digits` (scikit-learn's bundled 8x8 digits) needs nothing; `mnist1d` is generated locally;
    `cifar10` reads the standard python-pickle batches from `path`; `synthetic` is a small learnable
    task for tests; `recall` is associative recall generated locally (a sequence task that needs
    attention: find the value stored under the queried key). `validation_fraction` of the search part is
    held out and scored; every data set also has a test split that only the target task reads
    (`proxies.data`). `max_train_samples` subsamples the search's training split for speed.
    """

    name: DataName = "digits"
    path: str | None = None
    validation_fraction: float = Field(default=0.25, gt=0.0, lt=1.0)
    max_train_samples: int | None = Field(default=None, ge=10)
    seed: int = Field(default=0, ge=0)
    # mnist1d, recall and synthetic only: how many examples to generate for searches, and for the test
    # split that only the target task reads (generated from a stream of its own).
    samples: int = Field(default=4000, ge=20, le=1_000_000)
    test_samples: int = Field(default=1000, ge=20, le=1_000_000)
    # The confirmation split, which only a final confirmation reads (`proxies.data`): generated from a
    # third stream for mnist1d, recall and synthetic; carved from the fixed test split of digits and
    # cifar10 (that fraction of each class, the target task scoring on the rest; 0: no confirmation split).
    confirm_samples: int = Field(default=1000, ge=20, le=1_000_000)
    confirm_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    # recall only: the (key, value) pairs an example stores (its sequence is pairs + 1 tokens long), and
    # how many keys and values there are. More pairs make the task harder (room at the top for a target).
    recall_pairs: int = Field(default=6, ge=1, le=256)
    recall_keys: int = Field(default=16, ge=1, le=1024)
    recall_values: int = Field(default=8, ge=2, le=1024)
    # synthetic only: the input's shape (channels, length) or (channels, height, width), and the classes.
    synthetic_shape: list[int] = Field(default_factory=lambda: [1, 8, 8], min_length=2, max_length=3)
    synthetic_classes: int = Field(default=4, ge=2, le=100)

    @field_validator("synthetic_shape")
    @classmethod
    def _positive_shape(cls, shape: list[int]) -> list[int]:
        if any(s < 1 for s in shape):
            raise ValueError(f"every dimension must be positive, got {shape}")
        return shape

    @model_validator(mode="after")
    def _path_for_cifar(self) -> DataConfig:
        if self.name == "cifar10" and not self.path:
            raise ValueError("cifar10 needs 'path': a directory holding data_batch_1..5 (cifar-10-batches-py)")
        if self.name != "cifar10" and self.path is not None:
            raise ValueError(f"'path' applies to cifar10 only; the {self.name} data set needs no files")
        if self.recall_pairs > self.recall_keys:
            raise ValueError(
                f"recall_pairs ({self.recall_pairs}) must not exceed recall_keys ({self.recall_keys}): "
                "the keys of an example are distinct"
            )
        if self.confirm_fraction and self.name not in ("digits", "cifar10"):
            raise ValueError(
                f"'confirm_fraction' applies to data sets with a fixed test split (digits, cifar10); {self.name} "
                "generates its confirmation split from a stream of its own ('confirm_samples')"
            )
        return self


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
