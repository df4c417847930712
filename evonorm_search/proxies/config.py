"""Configuration of proxy tasks: the data set, the proxy architectures and the training recipe.

Strict pydantic models (unknown keys, wrong types and out-of-range values are errors that name the
field), shared by the search configuration, the workers and the API. They live here, beside the code
that reads them, so `proxies` never imports `search`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ArchitectureKind = Literal["resnet", "mobilenetv2", "efficientnet", "transformer", "vit"]
DataName = Literal["digits", "mnist1d", "cifar10", "synthetic", "recall"]
# Where a transformer's norms sit: before each sublayer, after each residual add, around each
# sublayer (Peri-LN), or after the add in the first quarter of the blocks and before later (Mix-LN).
Placement = Literal["pre", "post", "peri", "mix"]

CONVOLUTIONAL_KINDS = ("resnet", "mobilenetv2", "efficientnet")
TRANSFORMER_KINDS = ("transformer", "vit")
# The inputs each kind takes, by spatial dims: transformers read sequences, ViTs images.
SPATIAL_DIMS_OF_KIND = {
    "resnet": (1, 2),
    "mobilenetv2": (1, 2),
    "efficientnet": (1, 2),
    "transformer": (1,),
    "vit": (2,),
}
_KIND_HINT = {1: "use kind 'transformer' for sequences", 2: "use kind 'vit' for images"}
# Settings that only one family reads; setting one on the other family is a mistake worth naming.
_CONVOLUTIONAL_FIELDS = ("blocks", "expansion", "kernel_size")
_TRANSFORMER_FIELDS = ("depth", "heads", "mlp_ratio", "placement", "patch_size")


class StrictModel(BaseModel):
    """No unknown keys, no silent type coercion ("5" is not 5), no NaN or infinity, immutable once validated."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class ArchitectureConfig(StrictModel):
    """One small proxy network; every norm-activation slot holds the candidate layer.

    Convolutional kinds: `width` is the first stage's channel count (doubling per stage), `blocks` the
    number of blocks per stage (so its length is the number of stages), `expansion` the
    inverted-bottleneck ratio (MobileNetV2 and EfficientNet), `kernel_size` the depthwise kernel
    (EfficientNet).

    Transformer kinds (`transformer` on sequences, `vit` on images): `width` is the hidden size,
    `depth` the number of encoder blocks, `heads` the attention heads (they divide `width`),
    `mlp_ratio` the MLP's hidden size over `width`, `placement` where the norms sit, `patch_size`
    the positions (per side for images) one token covers; None: 4 for sequences, 2 for images.
    """

    kind: ArchitectureKind
    name: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]{0,31}$")
    width: int = Field(default=16, ge=1, le=1024)
    blocks: list[int] = Field(default_factory=lambda: [1, 1], min_length=1, max_length=6)
    expansion: int = Field(default=4, ge=1, le=8)
    kernel_size: int = Field(default=3, ge=1, le=7)
    depth: int = Field(default=2, ge=1, le=48)
    heads: int = Field(default=2, ge=1, le=64)
    mlp_ratio: int = Field(default=2, ge=1, le=8)
    placement: Placement = "pre"
    patch_size: int | None = Field(default=None, ge=1, le=64)

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

    @model_validator(mode="after")
    def _settings_fit_the_kind(self) -> ArchitectureConfig:
        transformer = self.kind in TRANSFORMER_KINDS
        foreign = _CONVOLUTIONAL_FIELDS if transformer else _TRANSFORMER_FIELDS
        # A field left at its default is fine (dumped configs carry every field); a changed one is not.
        if changed := [
            f for f in foreign if getattr(self, f) != type(self).model_fields[f].get_default(call_default_factory=True)
        ]:
            family = "convolutional" if transformer else "transformer"
            raise ValueError(f"{', '.join(changed)} only apply to {family} kinds, not to kind {self.kind!r}")
        if transformer and self.width % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide width ({self.width})")
        return self

    @property
    def label(self) -> str:
        """The name objectives and evaluations use: `name`, else `kind`."""
        return self.name or self.kind

    def check_spatial_dims(self, spatial_dims: int) -> None:
        """Raise a ValueError naming the kind when it cannot take inputs with `spatial_dims` spatial dims."""
        if spatial_dims not in SPATIAL_DIMS_OF_KIND[self.kind]:
            hint = _KIND_HINT.get(spatial_dims, "")
            taken = " or ".join(f"{d}-D" for d in SPATIAL_DIMS_OF_KIND[self.kind])
            raise ValueError(
                f"architecture {self.label!r} (kind {self.kind}) takes {taken} inputs, the data has "
                f"{spatial_dims} spatial dim(s)" + (f"; {hint}" if hint else "")
            )

    @property
    def tokens_per_patch_side(self) -> int:
        """The patch size a transformer kind uses: `patch_size`, else 4 for sequences and 2 for images."""
        if self.patch_size is not None:
            return self.patch_size
        return 4 if self.kind == "transformer" else 2


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
