"""Users' own models as proxies: a Python factory, a torchvision model, a timm model.

Each is built with the data's classes and input channels, then every norm slot holds the candidate: a
factory that takes `norm_act` gets it (a callable channels -> module, as timm's `norm_layer`); every other
model is swapped (`swap_norm_act`: each norm and the activation after it). Whatever stops a model from
being a proxy is an `ArchitectureError` that names the factory or model and the cause, raised when the
model is built: by `evonorm-search check` and the workers, before any candidate trains on it.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..swap import SwapError, swap_norm_act
from .config import ArchitectureConfig, PythonArchitecture, TimmArchitecture, TorchvisionArchitecture
from .models import CandidateNorm, count_slots

# The argument a factory takes the candidate by, and those it takes the data's sizes by.
NORM_ACT_ARGUMENT = "norm_act"
CLASSES_ARGUMENT = "num_classes"
CHANNELS_ARGUMENT = "in_channels"


class ArchitectureError(ValueError):
    """A user's model cannot be a proxy; the message names the factory or model and the cause."""


def import_optional(package: str, needed_by: str) -> ModuleType:
    """`package`, or an ArchitectureError saying it could not be imported and why.

    An import can fail with more than ImportError: PyPI's Linux torchvision wheels are CUDA builds, and
    beside a CPU-only torch importing one raises RuntimeError (operator torchvision::nms does not exist)."""
    try:
        return importlib.import_module(package)
    except Exception as e:  # ImportError, and whatever a broken install raises while importing
        hint = " (pip install 'evonorm-search[models]')" if isinstance(e, ModuleNotFoundError) else ""
        raise ArchitectureError(
            f"{needed_by} needs {package}, which could not be imported{hint}: {type(e).__name__}: {e}"
        ) from e


# -- kind: python -----------------------------------------------------------------------------------


def load_factory(arch: PythonArchitecture) -> Callable[..., Any]:
    """The function `arch.factory` names ("package.module:function"), imported now."""
    module_name, _, attribute = arch.factory.partition(":")
    where = f"factory {arch.factory!r}"
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # the user's module may raise anything while it is imported
        raise ArchitectureError(
            f"{where}: module {module_name!r} cannot be imported ({type(e).__name__}: {e}); put its directory "
            "on PYTHONPATH, or the config beside it (the command line adds the config's directory)"
        ) from e
    factory: Any = module
    for part in attribute.split("."):
        if not hasattr(factory, part):
            raise ArchitectureError(f"{where}: module {module_name!r} has no attribute {attribute!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise ArchitectureError(f"{where}: {attribute!r} is a {type(factory).__name__}, not a callable")
    return factory


def _named_parameters(factory: Callable[..., Any]) -> set[str]:
    """The parameters `factory` takes by name (not **kwargs: a catch-all may not expect them)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature take nothing of ours
        return set()
    return {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def python_model(arch: PythonArchitecture, dims: int, in_channels: int, classes: int, norm: CandidateNorm) -> nn.Module:
    """The model `arch.factory(**arch.kwargs)` returns, its norm slots holding the candidate."""
    factory = load_factory(arch)
    accepted = _named_parameters(factory)
    from_the_data = {CLASSES_ARGUMENT: classes, CHANNELS_ARGUMENT: in_channels}
    kwargs = {**arch.kwargs, **{k: v for k, v in from_the_data.items() if k in accepted}}
    injected = NORM_ACT_ARGUMENT in accepted
    if injected:
        kwargs[NORM_ACT_ARGUMENT] = norm
    where = f"factory {arch.factory!r}"
    try:
        model = factory(**kwargs)
    except Exception as e:  # the user's code may raise anything
        raise ArchitectureError(f"{where} raised {type(e).__name__}: {e}") from e
    if not isinstance(model, nn.Module):
        raise ArchitectureError(f"{where} returned a {type(model).__name__}, not a torch.nn.Module")
    if injected:
        if count_slots(model) == 0:
            raise ArchitectureError(f"{where} takes {NORM_ACT_ARGUMENT!r} but the model it built never called it")
        return model
    return swapped(model, norm, where)


def swapped(model: nn.Module, norm: CandidateNorm, where: str) -> nn.Module:
    """`model` with every norm it has, and the activation after it, replaced by the candidate."""
    try:
        with warnings.catch_warnings():  # a norm replaced alone is fine for a proxy; no slot is not
            warnings.simplefilter("ignore")
            replaced = swap_norm_act(model, norm.layer, **norm.settings())
    except SwapError as e:
        raise ArchitectureError(f"{where}: the candidate cannot be swapped in: {e}") from e
    if not replaced:
        raise ArchitectureError(
            f"{where}: the model has no norm slot (no BatchNorm, GroupNorm, LayerNorm or RMSNorm to replace); "
            f"build it with norms, or take the candidate through a {NORM_ACT_ARGUMENT!r} argument"
        )
    return model


# -- kinds: torchvision and timm ------------------------------------------------------------------------


def with_input_channels(model: nn.Module, channels: int, where: str) -> nn.Module:
    """`model` with its first convolution taking `channels` channels (a fresh one when it takes others)."""
    first = next(((path, m) for path, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        raise ArchitectureError(f"{where}: no Conv2d to take the data's {channels} input channels")
    path, conv = first
    if conv.in_channels == channels:
        return model
    if conv.groups != 1:
        raise ArchitectureError(
            f"{where}: its first convolution {path!r} is grouped; it cannot take {channels} channels"
        )
    replacement = nn.Conv2d(
        channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]  # a tuple, as Conv2d stores it
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    parent_path, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent_path), name, replacement)
    return model


def torchvision_model(
    arch: TorchvisionArchitecture, dims: int, in_channels: int, classes: int, norm: CandidateNorm
) -> nn.Module:
    """torchvision's `arch.model` (random weights unless `kwargs` ask for others), swapped."""
    where = f"torchvision model {arch.model!r}"
    models = import_optional("torchvision", where).models
    try:
        builder = models.get_model_builder(arch.model)
    except ValueError as e:
        raise ArchitectureError(f"{where}: {e}") from e
    try:
        model = builder(num_classes=classes, **arch.kwargs)
    except Exception as e:  # bad kwargs surface as TypeError or ValueError from the builder
        raise ArchitectureError(f"{where} could not be built: {type(e).__name__}: {e}") from e
    return swapped(with_input_channels(model, in_channels, where), norm, where)


def timm_model(arch: TimmArchitecture, dims: int, in_channels: int, classes: int, norm: CandidateNorm) -> nn.Module:
    """timm's `arch.model` (random weights), built for the data's classes and channels, swapped."""
    where = f"timm model {arch.model!r}"
    timm = import_optional("timm", where)
    try:
        model = timm.create_model(
            arch.model, pretrained=False, num_classes=classes, in_chans=in_channels, **arch.kwargs
        )
    except Exception as e:  # an unknown name is a RuntimeError, bad kwargs a TypeError
        raise ArchitectureError(f"{where} could not be built: {type(e).__name__}: {e}") from e
    return swapped(model, norm, where)


def describe(arch: ArchitectureConfig) -> str:
    """How refusals name a model: a user's by its factory or its library and name, a proxy by its label."""
    if isinstance(arch, PythonArchitecture):
        return f"factory {arch.factory!r}"
    if isinstance(arch, TorchvisionArchitecture | TimmArchitecture):
        return f"{arch.kind} model {arch.model!r}"
    return f"architecture {arch.label!r}"


def check_forward(model: nn.Module, arch: ArchitectureConfig, example: torch.Tensor, classes: int) -> torch.Tensor:
    """One forward of `example`; an ArchitectureError naming the model when it rejects the data's shape
    or does not return one logit per class for each example."""
    try:
        logits = model(example)
    except Exception as e:  # shape errors are RuntimeError, but a user's forward may raise anything
        raise ArchitectureError(
            f"{describe(arch)}: the model rejects the data's input shape {tuple(example.shape)}: "
            f"{type(e).__name__}: {e}".splitlines()[0]
        ) from e
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (example.shape[0], classes):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ArchitectureError(
            f"{describe(arch)}: the model returns {shape} for a batch of {example.shape[0]}, not "
            f"({example.shape[0]}, {classes}): one logit per class"
        )
    return logits
