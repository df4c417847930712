"""`layers`, `check` and `export --layer`: the layer language from the command line."""

from __future__ import annotations

import difflib
import re
import subprocess
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from .. import library
from ..compiler import CompilerError, compile_ahead
from ..compiler.ahead import parse_target, ptxas_path
from ..export import export_module
from ..ir import DSLError, Graph, parse
from ..symbolic import FormulaTooLarge, canonical_form, canonical_hash, latex
from .app import app, console, fail
from .common import WorkingDirOption, candidate_layer
from .config_check import check_search_config


@app.command("layers")
def layers_command() -> None:
    """List the layer library with formulas."""
    table = Table(title="evonorm-search layer library", show_lines=False)
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("DSL", no_wrap=True)
    table.add_column("what it is", ratio=1)
    for name in library.names():
        table.add_row(name, library.get(name).to_text(), library.description(name))
    # Formulas must never be cut: lay the table out at least this wide even in narrow terminals.
    Console(width=max(console.width, 150)).print(table)


def read_program(source: str) -> str:
    """Text of FILE, or of standard input for '-'."""
    if source == "-":
        return sys.stdin.read()
    path = Path(source)
    if not path.is_file():
        raise fail(f"no such file: {source}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise fail(f"{source} is not UTF-8 text (byte {e.start})") from None


def parse_or_fail(text: str, origin: str) -> Graph:
    try:
        return parse(text)
    except DSLError as e:
        raise fail(f"{origin}:{e.line}:{e.column}: {e.message}") from None


@app.command("check")
def check_command(
    source: str = typer.Argument(..., metavar="FILE|-", help="DSL file, - for stdin, or a search config (.yaml)"),
    target: str = typer.Option(
        None,
        "--target",
        metavar="cuda:CC",
        help="also compile every Triton kernel of the layer for this GPU (e.g. cuda:90), no GPU needed",
    ),
    working_dir: WorkingDirOption = None,
) -> None:
    """Validate a layer; print its canonical text, canonical form, LaTeX and hash. A YAML file is a search
    config: build every architecture on one batch of its data, count the slots and estimate the cost."""
    if source.endswith((".yaml", ".yml")):
        if target is not None:
            raise fail("--target applies to a layer, not to a search config")
        check_search_config(Path(source), working_dir)
        return
    if working_dir is not None:
        raise fail("--working-dir applies to a search config, not to a layer")
    if target is not None:
        check_target(target)  # a bad target is a usage error before anything is read or compiled
    graph = parse_or_fail(read_program(source), "<stdin>" if source == "-" else source)
    _describe(graph)
    if target is not None:
        _compile_for(graph, target)


def _describe(graph: Graph) -> None:
    console.print("[bold]valid layer[/]", highlight=False)
    console.print(f"nodes:      {len(graph)}", highlight=False)
    console.print(f"parameters: {', '.join(graph.parameters) or '-'}", highlight=False)
    console.print(f"axes:       {', '.join(sorted(graph.axes)) or '-'}", highlight=False)
    console.print("text:", highlight=False)
    console.print("    " + graph.to_text().replace("\n", "\n    "), highlight=False, markup=False)
    console.print(f"canonical:  {canonical_form(graph)}", highlight=False, markup=False)
    try:
        formula = latex(graph)
    except FormulaTooLarge as e:
        formula = f"(none: {e})"
    console.print(f"latex:      {formula}", highlight=False, markup=False)
    console.print(f"hash:       {canonical_hash(graph)}", highlight=False)


def check_target(target: str) -> None:
    """Refuse (exit 2) a target Triton's CUDA backend cannot compile for: not of the form cuda:CC, or a
    compute capability its assembler (ptxas) does not know, which would abort the compiler mid-way."""
    try:
        capability = int(parse_target(target).arch)
    except CompilerError as e:
        undotted = target.replace(".", "", 1)  # cuda:9.0, written as the CUDA documentation writes it
        suggestion = f" (did you mean {undotted}?)" if undotted.startswith("cuda:") and undotted[5:].isdigit() else ""
        raise fail(f"does not compile for {target}: {e}{suggestion}") from None
    known = ptxas_capabilities(capability)
    if known is None or capability in known:  # without the CUDA backend, compile_ahead says what is missing
        return
    names = [f"cuda:{c}" for c in sorted(known)]
    raise fail(
        f"no compute capability {capability} for Triton's CUDA backend{_closest_target(target, names)}; "
        f"it compiles for {', '.join(names)}"
    )


def _closest_target(target: str, names: list[str]) -> str:
    """` (did you mean cuda:CC?)`: cuda:12 most likely means 12.0 (cuda:120), so a capability that starts
    with the digits given comes first, then the closest spelling."""
    close = [n for n in names if n.startswith(target)] or difflib.get_close_matches(target, names, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def ptxas_capabilities(capability: int) -> set[int] | None:
    """The compute capabilities the ptxas Triton would use for `capability` accepts (`--gpu-name`
    values its help lists), or None when Triton's CUDA backend or its ptxas is missing."""
    try:
        path = ptxas_path(capability)
        # Triton's own ptxas (or the one TRITON_PTXAS_PATH names), never text from the user.
        listed = subprocess.run(  # noqa: S603
            [path, "--help"], capture_output=True, text=True, timeout=60, check=False
        ).stdout
    except (ImportError, OSError, RuntimeError, subprocess.SubprocessError):
        return None
    return {int(number) for number in re.findall(r"'sm_(\d+)[a-z]?'", listed)} or None


def _compile_for(graph: Graph, target: str) -> None:
    """Every kernel of the layer through Triton's compiler for `target`, float32 and bfloat16."""
    import torch

    table = Table(title=f"kernels for {target}")
    for column in ("dtype", "launcher", "kernel", "warps", "shared bytes", "cubin bytes", "seconds"):
        table.add_column(
            column, justify="right" if column in ("warps", "shared bytes", "cubin bytes", "seconds") else "left"
        )
    total = 0.0
    for dtype in (torch.float32, torch.bfloat16):
        try:
            report = compile_ahead(graph, target=target, dtype=dtype, shape=(8, 64, 16, 16), groups=8)
        except CompilerError as e:
            raise fail(f"does not compile for {target} ({str(dtype).replace('torch.', '')}): {e}") from None
        total += report.total_seconds
        for k in report.kernels:
            table.add_row(
                report.dtype,
                k.mode,
                k.kernel,
                str(k.num_warps),
                f"{k.shared_bytes:,}",
                f"{k.binary_bytes:,}",
                f"{k.seconds:.2f}",
            )
    Console(width=max(console.width, 110)).print(table)  # kernel names are never cut
    console.print(f"[bold]compiles for {target}[/] (all kernels, {total:.1f} s)", highlight=False)


def resolve_layer(layer: str) -> Graph:
    """A library name, or a DSL file."""
    if layer in library.names():
        return library.get(layer)
    if Path(layer).is_file() or layer == "-":
        return parse_or_fail(read_program(layer), layer)
    close = difflib.get_close_matches(layer, library.names(), n=1)
    suggestion = f" (did you mean {close[0]!r}?)" if close else ""
    raise fail(f"{layer!r} is neither a library layer ({', '.join(library.names())}) nor a file{suggestion}")


def layer_provenance(layer: str) -> dict[str, str]:
    """Where `--layer` comes from, as far as it is known: a library layer, a file, or standard input."""
    if layer in library.names():
        return {"source": "library", "layer": layer}
    if layer == "-":
        return {"source": "stdin"}
    return {"source": "file", "file": layer}


def write_output(source: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(source)
        return
    out.write_text(source, encoding="utf-8")
    console.print(f"wrote {out}", highlight=False)


def class_name_for(layer: str) -> str:
    stem = Path(layer).stem if not layer.isidentifier() else layer
    words = [w for w in stem.replace("-", "_").split("_") if w]
    name = "".join(w[:1].upper() + w[1:] for w in words)
    return name if name.isidentifier() else "EvoNormLayer"


@app.command("export")
def export_command(
    layer: str = typer.Option(None, "--layer", help="library layer name or DSL file"),
    candidate: int = typer.Option(None, "--candidate", metavar="ID", help="a candidate of a search, from the database"),
    db: str = typer.Option(None, "--db", metavar="URL", help="the database of --candidate (default: the embedded one)"),
    out: Path = typer.Option(None, "-o", "--output", help="write here instead of stdout"),
    class_name: str = typer.Option(None, "--class-name", help="name of the generated class"),
) -> None:
    """Export a layer (library, file, or search candidate) as a standalone PyTorch module (needs only torch)."""
    if (layer is None) == (candidate is None):
        raise fail("give one of --layer NAME|FILE or --candidate ID")
    if candidate is not None:
        stored = candidate_layer(candidate, db)
        graph, default_name, provenance = stored.graph, stored.class_name, stored.provenance
    elif db is not None:
        raise fail("--db applies to --candidate only")
    else:
        graph, default_name, provenance = resolve_layer(layer), class_name_for(layer), layer_provenance(layer)
    name = class_name or default_name
    try:
        source = export_module(graph, class_name=name, provenance=provenance)
    except ValueError as e:
        raise fail(str(e)) from None
    write_output(source, out)
