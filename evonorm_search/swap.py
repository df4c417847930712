"""Put a found layer into an existing model: `swap_norm_act` replaces each norm and the activation after it.

Which activation follows which norm is read from the model's data flow, traced with torch.fx, not from the
order modules were registered in. A norm is paired with an activation when the norm's output has exactly one
user and that user (after any `nn.Identity` calls) is an activation of the table below, taking the norm's
output as its input. The activation is then removed where it is applied:

- an activation module called at that one place only becomes `nn.Identity` (MobileNetV2's Conv-BN-ReLU6);
- an activation module called at other places as well (torchvision ResNet's one `self.relu`, also applied
  after the residual add), or a function or method call (`F.relu(x)`, `x.relu()`), is removed from the code
  of the module that makes the call: that module is replaced by its fx `GraphModule` with the call erased.
  Its submodules, parameters and buffers keep their names, so untouched `state_dict` keys do not change;
  hooks registered on that module itself are not carried over.

A norm without such an activation (its output feeds an add, several users, a dropout, or nothing traced) is
replaced alone. When the whole model cannot be traced, each submodule is traced on its own, from the top
down, taking the largest subtrees that trace; a norm called from code that could not be traced is replaced
alone, with a `note` saying so and a warning. Nothing is changed when any step fails.

LayerNorm and RMSNorm over one axis (a transformer's (N, L, C) hidden states, ConvNeXt's (N, H, W, C)) are
norm slots too: the layer, written for (N, C, *spatial) inputs, is applied through `ChannelsLast`, the view
with the last axis moved to the second, as the transformer proxies' slots apply it (`proxies.transformers`).
"""

from __future__ import annotations

import inspect
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from .ir import Graph
from .layer import as_graph
from .module import NormAct

__all__ = [
    "ACTIVATIONS",
    "NORMS",
    "Activation",
    "ChannelsLast",
    "NormKind",
    "Replacement",
    "SwapError",
    "swap_norm_act",
]


class SwapError(ValueError):
    """The model cannot be rewritten as asked; the model is left unchanged."""


# -- the tables ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NormKind:
    """A norm module class that is replaced (matched by its exact module path and name, so the package
    defining it need not be installed), and where it keeps its channel count and group count.

    Some classes apply an activation themselves (timm's BatchNormAct2d: norm, dropout, activation): they name
    those submodules; that activation is the one removed, and the class is kept when its dropout is not an
    nn.Identity or its activation is not one of the table's.

    `last_axis` classes (LayerNorm, RMSNorm) normalise the last axis of their input; they are replaced when
    that is all they normalise (`channels_attr` holds one size), by the layer over `ChannelsLast`'s view."""

    type_name: str
    channels_attr: str = "num_features"
    groups_attr: str | None = None
    inner_activation_attr: str | None = None
    inner_dropout_attr: str | None = None
    last_axis: bool = False

    @property
    def name(self) -> str:
        return self.type_name.rpartition(".")[2]

    def channels(self, norm: nn.Module) -> int:
        size = getattr(norm, self.channels_attr)
        return int(size[0]) if self.last_axis else int(size)

    def covers(self, norm: nn.Module) -> bool:
        """Whether the layer can take this norm's place (one axis, for `last_axis` classes)."""
        return not self.last_axis or len(getattr(norm, self.channels_attr)) == 1


# Exact classes only: a subclass may add behaviour of its own, so subclasses of the torch norms not listed
# here are left in place and named in a warning.
NORMS: tuple[NormKind, ...] = (
    NormKind("torch.nn.modules.batchnorm.BatchNorm1d"),
    NormKind("torch.nn.modules.batchnorm.BatchNorm2d"),
    NormKind("torch.nn.modules.batchnorm.BatchNorm3d"),
    NormKind("torch.nn.modules.batchnorm.SyncBatchNorm"),
    NormKind("torch.nn.modules.normalization.GroupNorm", "num_channels", "num_groups"),
    NormKind("torch.nn.modules.normalization.LayerNorm", "normalized_shape", last_axis=True),
    NormKind("torch.nn.modules.normalization.RMSNorm", "normalized_shape", last_axis=True),
    NormKind("timm.layers.norm_act.BatchNormAct2d", inner_activation_attr="act", inner_dropout_attr="drop"),
    NormKind("timm.layers.norm_act.SyncBatchNormAct", inner_activation_attr="act", inner_dropout_attr="drop"),
    NormKind("timm.layers.norm_act.GroupNormAct", "num_channels", "num_groups", "act", "drop"),
)
_NORMS_BY_TYPE = {kind.type_name: kind for kind in NORMS}
_NORM_BASES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.RMSNorm)


@dataclass(frozen=True)
class Activation:
    """An elementwise activation without parameters, as a module type, functions and tensor methods."""

    name: str
    module: type[nn.Module]
    functions: tuple[Callable, ...] = ()
    methods: tuple[str, ...] = ()


ACTIVATIONS: tuple[Activation, ...] = (
    Activation("ReLU", nn.ReLU, (F.relu, F.relu_, torch.relu, torch.relu_), ("relu", "relu_")),
    Activation("ReLU6", nn.ReLU6, (F.relu6,)),
    Activation("SiLU", nn.SiLU, (F.silu,)),
    Activation("GELU", nn.GELU, (F.gelu,)),
    Activation("Hardswish", nn.Hardswish, (F.hardswish,)),
    Activation("Hardsigmoid", nn.Hardsigmoid, (F.hardsigmoid,)),
    Activation("LeakyReLU", nn.LeakyReLU, (F.leaky_relu, F.leaky_relu_)),
    Activation("ELU", nn.ELU, (F.elu, F.elu_)),
    Activation("SELU", nn.SELU, (F.selu, torch.selu, torch.selu_)),
    Activation("CELU", nn.CELU, (F.celu, torch.celu, torch.celu_)),
    Activation("Mish", nn.Mish, (F.mish,)),
    Activation("Softplus", nn.Softplus, (F.softplus,)),
    Activation("Tanh", nn.Tanh, (torch.tanh, torch.tanh_, F.tanh), ("tanh", "tanh_")),
    Activation("Sigmoid", nn.Sigmoid, (torch.sigmoid, torch.sigmoid_, F.sigmoid), ("sigmoid", "sigmoid_")),
)


def _type_name(module: nn.Module) -> str:
    return f"{type(module).__module__}.{type(module).__qualname__}"


def _norm_kind(module: nn.Module) -> NormKind | None:
    """The table entry of `module`, or None when it is not replaced (not a norm, or a norm-activation class
    whose own dropout or activation could not be taken out with it)."""
    kind = _NORMS_BY_TYPE.get(_type_name(module))
    if kind is None or not kind.covers(module):
        return None
    if kind.inner_activation_attr is None:
        return kind
    dropout = getattr(module, kind.inner_dropout_attr or "", None)
    if dropout is not None and type(dropout) is not nn.Identity:
        return None
    act = getattr(module, kind.inner_activation_attr, None)
    return kind if type(act) is nn.Identity or _activation_module(act) is not None else None


def _activation_module(module: object) -> Activation | None:
    return next((act for act in ACTIVATIONS if type(module) is act.module), None)


def _inner_activation(norm: nn.Module, kind: NormKind) -> Activation | None:
    """The activation a norm-activation class applies itself (None: none, or a plain norm)."""
    return _activation_module(getattr(norm, kind.inner_activation_attr)) if kind.inner_activation_attr else None


# -- the description returned ----------------------------------------------------------------------


@dataclass(frozen=True)
class Replacement:
    """One norm replaced by the layer.

    `activation` is the table name of the activation removed after it (None: the norm was replaced alone);
    `activation_module` the path of that activation when it was a module: it became `nn.Identity`, or it was
    the norm's own submodule (timm's norm-activation classes) and went with it, or, when `rewritten` is set,
    the call to it was erased from the code of the module at `rewritten`, now its fx GraphModule. `groups` is
    the group count given to the layer (a GroupNorm's `num_groups` unless the caller passed `groups`);
    `note` says why a norm was replaced alone when the activation after it could not be looked for or
    removed (empty otherwise).
    """

    path: str
    norm: str
    num_features: int
    activation: str | None = None
    activation_module: str | None = None
    rewritten: str | None = None
    groups: int | None = None
    note: str = ""


# -- tracing ---------------------------------------------------------------------------------------


@dataclass
class _Traced:
    """A traced subtree: its path in the model and its graph (node targets relative to that path)."""

    path: str
    graph: fx.Graph

    def absolute(self, relative: str) -> str:
        return _join(self.path, relative)


@dataclass
class _Forest:
    traced: list[_Traced] = field(default_factory=list)
    untraced: dict[str, str] = field(default_factory=dict)  # module path -> why its forward did not trace


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


class _NormLeafTracer(fx.Tracer):
    """fx's default tracer, also keeping every norm a leaf (one call node each), those of the table and others."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return (
            isinstance(m, _NORM_BASES) or _norm_kind(m) is not None or super().is_leaf_module(m, module_qualified_name)
        )


def _trace_forest(module: nn.Module, path: str, forest: _Forest) -> None:
    """Trace `module`; where that fails, trace its children instead (its own forward stays untraced).

    Leaves (norms, torch's own layers) are not traced on their own: what matters is the code calling them."""
    tracer = _NormLeafTracer()
    if path and tracer.is_leaf_module(module, path):
        return
    try:
        graph = tracer.trace(module)
    except Exception as e:  # fx raises many kinds (TraceError, TypeError, NotImplementedError, ...)
        forest.untraced[path] = f"{type(e).__name__}: {e}".splitlines()[0]
        for name, child in module.named_children():
            _trace_forest(child, _join(path, name), forest)
        return
    forest.traced.append(_Traced(path, graph))


# -- finding the pairs ------------------------------------------------------------------------------


def _activation_of(node: fx.Node, modules: dict[str, nn.Module], traced: _Traced) -> Activation | None:
    """The activation `node` applies, or None when it is anything else."""
    if node.op == "call_module":
        return _activation_module(modules.get(traced.absolute(str(node.target))))
    for act in ACTIVATIONS:
        if node.op == "call_function" and any(node.target is f for f in act.functions):
            return act
        if node.op == "call_method" and node.target in act.methods:
            return act
    return None


def _is_identity_call(node: fx.Node, modules: dict[str, nn.Module], traced: _Traced) -> bool:
    return node.op == "call_module" and type(modules.get(traced.absolute(str(node.target)))) is nn.Identity


def _next_call(norm_node: fx.Node, modules: dict[str, nn.Module], traced: _Traced) -> fx.Node | None:
    """The one node applied to the norm's output, passing over nn.Identity calls; None if there are several."""
    current = norm_node
    while len(current.users) == 1:
        (user,) = current.users
        if not user.args or user.args[0] is not current or _uses(user, current, skip_first=True):
            return None
        if not _is_identity_call(user, modules, traced):
            return user
        current = user
    return None


def _following_activation(
    norm_node: fx.Node, modules: dict[str, nn.Module], traced: _Traced
) -> tuple[fx.Node, Activation] | None:
    """The activation applied to the norm's output, when it is its only user."""
    user = _next_call(norm_node, modules, traced)
    act = _activation_of(user, modules, traced) if user is not None else None
    return (user, act) if user is not None and act is not None else None


def _uses(node: fx.Node, value: fx.Node, *, skip_first: bool) -> bool:
    """Whether `node` takes `value` anywhere in its arguments (besides the first, with skip_first)."""
    found: list[fx.Node] = []
    args = node.args[1:] if skip_first else node.args

    def collect(n: fx.Node) -> fx.Node:
        found.append(n)
        return n

    fx.node.map_arg((args, node.kwargs), collect)
    return value in found


def _stack(node: fx.Node) -> list[tuple[str, str]]:
    """(call key, module path) of the modules being called when `node` was created, outermost first.

    The key tells calls apart: fx names the k-th further call of a module `path@k`."""
    return [(key, qualified) for key, (qualified, _) in node.meta.get("nn_module_stack", {}).items()]


@dataclass
class _Usage:
    """Per module path (absolute): how many times it is called, and how many nodes its calls create."""

    calls: Counter[str] = field(default_factory=Counter)
    nodes: Counter[str] = field(default_factory=Counter)

    def count(self, forest: _Forest) -> None:
        for traced in forest.traced:
            seen: set[str] = set()
            for node in traced.graph.nodes:
                for key, qualified in _stack(node):
                    self.nodes[traced.absolute(qualified)] += 1
                    if key not in seen:
                        seen.add(key)
                        self.calls[traced.absolute(qualified)] += 1


@dataclass
class _Pair:
    act: Activation
    act_module: str | None  # the activation module called (a table one, or a module wrapping only the call)
    owner: str  # path of the module whose code calls it, or applies the activation function


def _pair(act_node: fx.Node, act: Activation, traced: _Traced, usage: _Usage) -> _Pair:
    stack = [traced.absolute(qualified) for _, qualified in _stack(act_node)]
    wraps_only_this = bool(stack) and act_node.op != "call_module" and usage.nodes[stack[-1]] == usage.calls[stack[-1]]
    if act_node.op == "call_module" or wraps_only_this:
        act_module, stack = stack[-1], stack[:-1]
    else:
        act_module = None
    return _Pair(act, act_module, stack[-1] if stack else traced.path)


@dataclass
class _Plan:
    replacements: dict[str, Replacement]
    identities: set[str]  # activation modules that become nn.Identity (every path of each)
    rewrites: dict[str, list[tuple[str, str | None]]]  # owner -> (norm, activation module), relative to the owner


def _module_paths(model: nn.Module) -> dict[int, list[str]]:
    paths: dict[int, list[str]] = defaultdict(list)
    for path, module in model.named_modules(remove_duplicate=False):
        paths[id(module)].append(path)
    return paths


def _inside(path: str, root: str) -> bool:
    return root == "" or path == root or path.startswith(root + ".")


def _relative(path: str, root: str) -> str:
    return path[len(root) + 1 :] if root else path


class _Planner:
    """Decides, before anything changes, what each norm's replacement removes and how."""

    def __init__(self, model: nn.Module, forest: _Forest, group_override: int | None):
        self.forest = forest
        self.group_override = group_override
        self.modules = dict(model.named_modules())
        self.object_paths = _module_paths(model)
        self.usage = _Usage()
        self.usage.count(forest)
        self.identities: set[str] = set()
        self.rewrites: dict[str, list[tuple[str, str | None]]] = defaultdict(list)

    def plan(self) -> _Plan:
        sites = self._norm_sites()
        replacements = {
            path: self._replacement(path, norm, sites.get(path, []))
            for path, norm in self.modules.items()
            if _norm_kind(norm) is not None
        }
        return _Plan(replacements, self.identities, dict(self.rewrites))

    def _norm_sites(self) -> dict[str, list[_Pair | None]]:
        sites: dict[str, list[_Pair | None]] = defaultdict(list)
        for traced in self.forest.traced:
            for node in traced.graph.nodes:
                target = traced.absolute(str(node.target)) if node.op == "call_module" else None
                if target is None or _norm_kind(self.modules[target]) is None:
                    continue
                found = _following_activation(node, self.modules, traced)
                sites[target].append(_pair(*found, traced, self.usage) if found else None)
        return sites

    def _replacement(self, path: str, norm: nn.Module, sites: list[_Pair | None]) -> Replacement:
        kind = _norm_kind(norm)
        assert kind is not None
        groups = getattr(norm, kind.groups_attr) if kind.groups_attr else None
        base = Replacement(
            path=path,
            norm=kind.name,
            num_features=kind.channels(norm),
            groups=self.group_override if self.group_override is not None else groups,
        )
        inner = _inner_activation(norm, kind)
        if inner is not None:  # the activation goes with the module that applies it
            return _with(base, activation=inner.name, activation_module=_join(path, kind.inner_activation_attr or ""))
        if len(sites) != 1 or not self._all_traced(norm):
            return _with(base, note=self._why_unpaired(path, len(sites)))
        pair = sites[0]
        if pair is None:
            return base
        found = _with(base, activation=pair.act.name, activation_module=pair.act_module)
        if pair.act_module is not None and self._sole_use(pair.act_module):
            self.identities.update(self.object_paths[id(self.modules[pair.act_module])])
            return found
        if not _inside(path, pair.owner) or path == pair.owner:
            return _with(base, note=f"the {pair.act.name} after it is applied inside {pair.owner!r}: replaced alone")
        if pair.owner == "":
            raise SwapError(
                f"the {pair.act.name} after {path!r} is applied by the model's own forward, which cannot be "
                "rewritten in place; wrap the model first (e.g. nn.Sequential(model)) and swap in the wrapper"
            )
        act_relative = _relative(pair.act_module, pair.owner) if pair.act_module else None
        self.rewrites[pair.owner].append((_relative(path, pair.owner), act_relative))
        return _with(found, rewritten=pair.owner)

    def _all_traced(self, module: nn.Module) -> bool:
        """Whether every path of `module` lies in a traced subtree, so no untraced code can call it."""
        return all(any(_inside(p, t.path) for t in self.forest.traced) for p in self.object_paths[id(module)])

    def _sole_use(self, path: str) -> bool:
        return self.usage.calls[path] == 1 and self._all_traced(self.modules[path])

    def _why_unpaired(self, path: str, sites: int) -> str:
        if sites > 1:
            return f"called at {sites} places: replaced alone"
        untraced = [p for p in self.forest.untraced if _inside(path, p)]
        if untraced:
            owner = max(untraced, key=len)
            where = repr(owner) if owner else "the model"
            return f"not traced (the forward of {where}: {self.forest.untraced[owner]}): replaced alone"
        return "never called in the traced forward: replaced alone"


def _with(base: Replacement, **changes) -> Replacement:
    return Replacement(**{**base.__dict__, **changes})


# -- rewriting a module's code ---------------------------------------------------------------------


class _OwnerTracer(fx.Tracer):
    """Traces one module keeping every submodule a leaf, except those on the way to the norms named."""

    def __init__(self, inline: frozenset[str] = frozenset()):  # no argument: how unpickling rebuilds one
        super().__init__()
        self.inline = inline

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name not in self.inline


def _ancestors(relative_path: str) -> set[str]:
    parts = relative_path.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def _rewritten(owner: nn.Module, owner_path: str, sites: list[tuple[str, str | None]]) -> fx.GraphModule:
    """`owner` as a GraphModule whose code no longer applies the activation after each norm named.

    `sites` holds (norm, activation module or None for a function call), both relative to the owner."""
    graph = _OwnerTracer(frozenset().union(*(_ancestors(norm) for norm, _ in sites))).trace(owner)
    modules = dict(owner.named_modules())
    traced = _Traced("", graph)
    for norm_path, act_path in sites:
        nodes = [n for n in graph.nodes if n.op == "call_module" and n.target == norm_path]
        act_node = _next_call(nodes[0], modules, traced) if len(nodes) == 1 else None
        if act_node is None or not _is_the_activation(act_node, act_path, modules, traced):
            raise SwapError(f"tracing {owner_path!r} on its own did not find the activation after {norm_path!r}")
        act_input = act_node.args[0]
        if not isinstance(act_input, fx.Node):  # an activation of a traced value: its input is a node
            raise SwapError(f"the activation after {norm_path!r} does not take a traced value")
        act_node.replace_all_uses_with(act_input)
        graph.erase_node(act_node)
    graph.lint()
    module = fx.GraphModule(owner, graph, class_name=type(owner).__name__)
    _carry_over(owner, module)
    module.train(owner.training)
    return module


def _is_the_activation(node: fx.Node, act_path: str | None, modules: dict, traced: _Traced) -> bool:
    if act_path is not None:
        return node.op == "call_module" and node.target == act_path
    return node.op != "call_module" and _activation_of(node, modules, traced) is not None


def _carry_over(original: nn.Module, rewritten: nn.Module) -> None:
    """Attach what the GraphModule left out: modules, parameters and buffers its code does not use, and plain
    public attributes (ResNet's `block.stride`, `block.downsample = None`) that other code may read."""
    for name, value in vars(original).items():
        if not name.startswith("_") and name not in vars(rewritten):
            setattr(rewritten, name, value)
    for name, child in original.named_children():
        target = rewritten._modules.get(name)
        if target is None:
            rewritten.add_module(name, child)
        elif target is not child:
            _carry_over(child, target)
    for name, param in original._parameters.items():
        if name not in rewritten._parameters and not hasattr(rewritten, name):
            rewritten.register_parameter(name, param)
    for name, buffer in original._buffers.items():
        if name not in rewritten._buffers and not hasattr(rewritten, name):
            persistent = name not in original._non_persistent_buffers_set
            rewritten.register_buffer(name, buffer, persistent=persistent)


# -- applying, all or nothing ----------------------------------------------------------------------


class _Edits:
    """Sets submodules by path and can put every replaced one back."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.undo: list[tuple[nn.Module, str, nn.Module | None]] = []

    def set(self, path: str, module: nn.Module) -> None:
        parent_path, _, name = path.rpartition(".")
        parent = self.model.get_submodule(parent_path)
        self.undo.append((parent, name, parent._modules[name]))
        parent._modules[name] = module  # keeps the slot's place in the parent's order (state_dict order)

    def rollback(self) -> None:
        for parent, name, module in reversed(self.undo):
            parent._modules[name] = module


def _layer_factory(layer: object) -> tuple[Callable[..., nn.Module], bool]:
    """A constructor `(num_features, **kwargs) -> module` and whether it takes a `groups` argument."""
    if isinstance(layer, type) and issubclass(layer, nn.Module):
        params = inspect.signature(layer).parameters
        takes_groups = "groups" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
        return layer, takes_groups
    if isinstance(layer, nn.Module):
        raise TypeError(
            f"pass the layer itself (a Graph, DSL text, a library name or a module class), not a {type(layer).__name__} "
            "instance: one module is built per replaced norm"
        )
    if not isinstance(layer, Graph | str):
        raise TypeError(f"expected a Graph, DSL text, a library name or a module class, got {type(layer).__name__}")
    graph = as_graph(layer)  # DSLError for text that is neither a library name nor valid DSL

    def build(num_features: int, **kwargs) -> nn.Module:
        return NormAct(graph, num_features, **kwargs)

    return build, True


class ChannelsLast(nn.Module):
    """A layer written for (N, C, *spatial) inputs in the place of a norm over the last axis (LayerNorm,
    RMSNorm): it sees the view with that axis moved to the second (no copy), so a transformer's (N, L, C)
    hidden states reach it as (N, C, L), the view the transformer proxies' norm slots hand their layer."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.movedim(-1, 1)).movedim(1, -1)


def _built(norm: nn.Module, factory: Callable[..., nn.Module], kwargs: dict) -> nn.Module:
    layer = factory(kwargs.pop("num_features"), **kwargs)
    kind = _norm_kind(norm)
    if kind is not None and kind.last_axis:
        layer = ChannelsLast(layer)
    like = next((t for t in (*norm.parameters(), *norm.buffers()) if t.is_floating_point()), None)
    if like is not None:
        layer = layer.to(device=like.device, dtype=like.dtype)
    layer.train(norm.training)
    return layer


def _kept_norms(model: nn.Module) -> list[str]:
    """The norms the table does not cover (subclasses, InstanceNorm, ...), as `path (class)`."""
    return [
        f"{path} ({type(m).__name__})"
        for path, m in model.named_modules()
        if isinstance(m, _NORM_BASES) and _norm_kind(m) is None
    ]


def _warn(plan: _Plan, kept: list[str]) -> None:
    alone = [f"{r.path} ({r.note})" for r in plan.replacements.values() if r.note]
    if alone:
        warnings.warn(f"swap_norm_act: {'; '.join(alone)}", stacklevel=3)
    if kept:
        warnings.warn(
            f"swap_norm_act: these norms are not of a class it replaces and stay as they are: {', '.join(kept)}",
            stacklevel=3,
        )


def _iter_norms(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for path, module in model.named_modules():
        if _norm_kind(module) is not None:
            yield path, module


def swap_norm_act(model: nn.Module, layer: Graph | str | type[nn.Module], **normact_kwargs) -> list[Replacement]:
    """Replace every BatchNorm/GroupNorm/LayerNorm/RMSNorm of `model`, and the activation right after it, by
    `layer`, in place (a LayerNorm or RMSNorm through `ChannelsLast`).

    `layer` is a Graph, DSL text or library name (each norm becomes a `NormAct` of it) or a module class such
    as one written by `export_module`, built as `layer(num_features, **normact_kwargs)`. A GroupNorm's
    `num_groups` is passed as `groups` unless `groups` is given. The new modules take the device, dtype and
    train/eval mode of the norms they replace. Returns one `Replacement` per norm, in module order; an empty
    list when the model has no norm. Raises (changing nothing) on a bad `layer`, bad `normact_kwargs`, or an
    activation applied by the top-level module's own forward (wrap the model to swap it).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if "num_features" in normact_kwargs:
        raise TypeError("num_features comes from each norm replaced; do not pass it")
    factory, takes_groups = _layer_factory(layer)
    group_override = normact_kwargs.get("groups")
    forest = _Forest()
    _trace_forest(model, "", forest)
    plan = _Planner(model, forest, group_override).plan()
    if not takes_groups:  # a class without a `groups` argument gets none, and the description says so
        plan.replacements = {path: _with(r, groups=None) for path, r in plan.replacements.items()}
    object_paths = _module_paths(model)
    kept = _kept_norms(model)  # before the swap: the new layers may hold norms of their own
    if not plan.replacements:
        _warn(plan, kept)
        return []
    new_layers: dict[str, nn.Module] = {}
    for path, norm in _iter_norms(model):
        kwargs = dict(normact_kwargs, num_features=plan.replacements[path].num_features)
        if takes_groups and plan.replacements[path].groups is not None:
            kwargs["groups"] = plan.replacements[path].groups
        new_layers.update(dict.fromkeys(object_paths[id(norm)], _built(norm, factory, kwargs)))
    _apply(model, plan, new_layers)
    _warn(plan, kept)
    return list(plan.replacements.values())


def _apply(model: nn.Module, plan: _Plan, new_layers: dict[str, nn.Module]) -> None:
    edits = _Edits(model)
    try:
        for path, new in new_layers.items():
            edits.set(path, new)
        for path in sorted(plan.identities):
            edits.set(path, nn.Identity())
        # Deepest first: a rewritten owner inside another is then traced as already rewritten.
        for owner_path in sorted(plan.rewrites, key=lambda p: p.count("."), reverse=True):
            owner = model.get_submodule(owner_path)
            edits.set(owner_path, _rewritten(owner, owner_path, plan.rewrites[owner_path]))
    except Exception:
        edits.rollback()
        raise
