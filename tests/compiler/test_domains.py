"""The kernel-domain tables (`compiler/domains.py`) against the IR, and a throwaway domain row planned by the
runtime without a change of its code.

A row of `DOMAINS` says what one program covers (its channels and positions) and its launch grid; the
runtime derives blocks, chunking, grids, single-pass and fusion choices from it, and codegen the
kernel's program ids. The coverage check below names each gap: a `Domain` without a row, a row naming
no `Domain`, a domain an axis completes in that does not hold the axis's reduced dims whole, a grid the
kernels would not index by.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest
import torch

from evonorm_search.compiler import codegen, domains, lower, runtime
from evonorm_search.compiler.domains import COMBINE_PROGRAMS, DOMAINS, STATISTIC_SIZES, DomainDef
from evonorm_search.ir import AXES, AxisDef
from evonorm_search.ir.vocabulary import CombineStrategy, Dim, Domain

# The grid counts along axes 1 and 2 that a kernel's program ids follow (codegen's preamble): a program
# covering one block of positions counts those on axis 1 and loops over all of C; any other counts its
# channels (groups or blocks) on axis 1 and its chunks of S on axis 2.
CHANNEL_PROGRAMS = {"C": "1", "CG": "G", "BLOCK_C": "C/BLOCK_C"}
POSITION_PROGRAMS = {"S": "1", "CHUNK": "S/CHUNK"}


def _kernel_grid(row: DomainDef) -> tuple[str, str] | None:
    if row.positions == "BLOCK_S":
        return ("S/BLOCK_S", "1") if row.channels == "C" else None
    return CHANNEL_PROGRAMS[row.channels], POSITION_PROGRAMS[row.positions]


def _holds_whole(row: DomainDef, axis: AxisDef) -> bool:
    """Whether every program of `row` holds whole the dims `axis` reduces over: all of S, and all of C
    (or, for a statistic per group, a group's channels)."""
    per_group = "G" in axis.stat_size
    channels_whole = row.channels == "C" or (row.channels == "CG" and per_group)
    return (Dim.S not in axis.reduced or row.positions == "S") and (Dim.C not in axis.reduced or channels_whole)


def domain_gaps(names: list[str], axes: dict[str, AxisDef], table: dict[str, DomainDef]) -> list[str]:
    """One line per domain of the IR without a row, per row naming no domain, and per inconsistent row."""
    names = [str(d) for d in names]
    gaps = [f"domain {d!r} has no row in compiler.domains.DOMAINS" for d in names if d not in table]
    gaps += [f"DOMAINS has a row {d!r} that names no Domain of the IR" for d in table if d not in names]
    for name, row in table.items():
        if row.name != name:
            gaps.append(f"DOMAINS[{name!r}] is the row of {row.name!r}")
        if row.grid != _kernel_grid(row):
            gaps.append(f"domain {name!r}: grid {row.grid} is not the one its kernels index ({_kernel_grid(row)})")
    for axis in axes.values():
        for d in sorted(map(str, axis.complete_in)):
            if d not in table:
                gaps.append(f"axis {axis.name!r} completes in domain {d!r}, which has no row")
            elif not _holds_whole(table[d], axis):
                gaps.append(f"axis {axis.name!r} completes in domain {d!r}, whose programs do not hold its reduction")
    return gaps


def test_every_domain_has_a_row_and_every_row_a_domain_that_its_kernels_index():
    assert domain_gaps(list(Domain), AXES, DOMAINS) == []
    assert set(lower.FUSED_DOMAINS) <= DOMAINS.keys()


def test_a_missing_extra_or_inconsistent_row_is_reported_with_the_domain():
    without_group = {name: row for name, row in DOMAINS.items() if name != "group"}
    assert domain_gaps(list(Domain), AXES, without_group) == [
        "domain 'group' has no row in compiler.domains.DOMAINS",
        "axis 'group' completes in domain 'group', which has no row",
        "axis 'instance' completes in domain 'group', which has no row",
    ]
    extra = DomainDef(name="extra", channels="BLOCK_C", positions="S", grid=("C/BLOCK_C", "1"))
    assert domain_gaps(list(Domain), AXES, {**DOMAINS, "extra": extra}) == [
        "DOMAINS has a row 'extra' that names no Domain of the IR"
    ]
    bad = {
        **DOMAINS,
        "sample": dataclasses.replace(DOMAINS["sample"], channels="BLOCK_C", grid=("1", "1")),
        "tiles": dataclasses.replace(DOMAINS["tiles"], grid=("C/BLOCK_C", "1")),
    }
    assert domain_gaps(list(Domain), AXES, bad) == [
        "domain 'tiles': grid ('C/BLOCK_C', '1') is not the one its kernels index (('C/BLOCK_C', 'S/CHUNK'))",
        "domain 'sample': grid ('1', '1') is not the one its kernels index (('C/BLOCK_C', '1'))",
        "axis 'layer' completes in domain 'sample', whose programs do not hold its reduction",
    ]


def test_every_row_uses_only_the_tables_vocabulary():
    counts, sizes = set(typing.get_args(domains.Count)), set(typing.get_args(domains.Size))
    for row in DOMAINS.values():
        assert row.channels in typing.get_args(domains.Channels) and row.positions in typing.get_args(domains.Positions)
        assert set(row.grid) <= counts
    assert all(set(factors) <= sizes for factors in STATISTIC_SIZES.values())
    assert all(set(factors) <= counts for factors in COMBINE_PROGRAMS.values())
    assert set(codegen.COUNTS) == counts  # codegen writes every count the tables use
    geo = runtime.Geometry(torch.empty(2, 8, 5, 6), 4, 1e-5, 0.1)
    assert {name: geo.count(name, "tiles", 4, 8) for name in sorted(counts)} == {
        "1": 1,
        "C/BLOCK_C": 2,
        "G": 4,
        "N": 2,
        "S/BLOCK_S": 4,
        "S/CHUNK": geo.chunking("tiles")[1],
    }


def test_the_statistic_sizes_are_the_axis_rows_and_the_combines_every_strategy():
    assert STATISTIC_SIZES.keys() == {*AXES, "sum"}
    for axis, row in AXES.items():
        assert " * ".join(STATISTIC_SIZES[axis]) == row.stat_size, axis
    assert STATISTIC_SIZES["sum"] == ("C",)  # a parameter gradient: one sum per channel
    assert COMBINE_PROGRAMS.keys() == set(CombineStrategy)


def test_the_runtime_and_codegen_name_no_domain():
    """Every rule of a domain is a column of its row: no code branches on a domain's name."""
    compiler = Path(runtime.__file__).parent
    for module in ("runtime.py", "codegen.py"):
        text = (compiler / module).read_text()
        named = [d for d in Domain if re.search(rf"[\"']{d}[\"']|Domain\.{d.name}\b", text)]
        assert named == [], f"{module} names the domain(s) {named}"


# -- a throwaway domain: one row, planned by the runtime as it stands ---------------------------------------

SHAPES = [(2, 8, 40, 40), (64, 256, 56, 56), (64, 2048, 7, 7), (3, 40, 7), (16384, 4096)]


def _x(shape, last: bool) -> torch.Tensor:
    x = torch.empty(shape, device="meta")
    return x.movedim(1, -1).contiguous().movedim(-1, 1) if last else x


def _plan(geo: runtime.Geometry, domain: str, monkeypatch) -> dict:
    """What the runtime plans for one domain: blocks, chunking, grids, the choice and the launches."""
    starts: list = []
    monkeypatch.setattr(geo, "_start", lambda kernel, grid, args, kwargs, key: starts.append((grid, args, kwargs)))
    plans = {
        "blocks": [geo.blocks(domain, single) for single in (False, True)],
        "chunking": [geo.chunking(domain, single) for single in (False, True)],
        "grid": geo.grid(domain, *geo.blocks(domain)[:2]),
        "partials": geo.partials(domain, 2).numel(),
        "single": [dataclasses.replace(geo.single_pass(domain, b), key=None) for b in (False, True)],
        "plan_of": [geo.plan_of(domain, b) for b in (False, True)],
        "fuse": geo.fuse(domain),
    }
    geo.launch(_plan, domain)
    geo.launch(_plan, domain, single=True)
    geo.combine(_plan, domain, tuple(COMBINE_PROGRAMS))
    plans["launches"] = starts
    return plans


@pytest.mark.parametrize("tuning", ["gpu", "interpreter"])
def test_a_copied_domain_row_is_planned_as_its_original(tuning, monkeypatch):
    """A row added to the table (here a copy of `group` under a new name) plans every shape as the row
    it copies, with no change of the runtime."""
    monkeypatch.setitem(DOMAINS, "group_copy", dataclasses.replace(DOMAINS["group"], name="group_copy"))
    monkeypatch.setitem(runtime._CLUSTERS, 90, None)
    settings = {"gpu": {"sms": 132, "arch": 90, "tuning": runtime.Tuning()}, "interpreter": {}}[tuning]
    for shape in SHAPES:
        for last in (False, True) if len(shape) > 2 else (False,):
            for backward in (False, True):
                geo = runtime.Geometry(_x(shape, last), 8, 1e-5, 0.1, backward=backward, **settings)
                assert _plan(geo, "group_copy", monkeypatch) == _plan(geo, "group", monkeypatch), (shape, last)


def test_a_new_domain_row_is_planned_without_a_change_of_the_runtime(monkeypatch):
    """A domain no kernel uses yet: one group's channels over a chunk of S (grid N x G x S/CHUNK). The
    runtime blocks, chunks, grids and sizes its partials from the row alone."""
    row = DomainDef(name="group_chunks", channels="CG", positions="CHUNK", grid=("G", "S/CHUNK"), capped=True)
    monkeypatch.setitem(DOMAINS, "group_chunks", row)
    starts: list = []
    # N=2, C=8, S=1,600, G=2 (CG=4): a tile of 4 channels x 512 positions; the 4 (sample, group) programs
    # split S into min(4 x 132 SMs / 4, 1,600 / 512) = 4 chunks of 512 positions.
    geo = runtime.Geometry(torch.empty(2, 8, 40, 40, device="meta"), 2, 1e-5, 0.1, sms=132, tuning=runtime.Tuning())
    monkeypatch.setattr(geo, "_start", lambda kernel, grid, args, kwargs, key: starts.append((grid, args, kwargs)))
    assert geo.blocks("group_chunks") == (4, 512, 4)
    assert geo.chunking("group_chunks") == (512, 4)
    assert geo.grid("group_chunks", 4, 512) == (2, 2, 4)
    assert geo.partials("group_chunks", 2).numel() == 2 * 2 * 4 * 8
    geo.launch(test_a_new_domain_row_is_planned_without_a_change_of_the_runtime, "group_chunks")
    ((grid, args, kwargs),) = starts
    assert grid == (2, 2, 4) and args == (2, 8, 1600, 2, 4, 512, 4)
    assert (kwargs["BLOCK_C"], kwargs["BLOCK_S"], kwargs["num_warps"]) == (4, 512, 4)
    # Its single-pass tile holds a group's channels and all of S: 4 x 2,048 fits one CTA's 16,384 elements.
    single = geo.single_pass("group_chunks", False)
    assert (single.block_c, single.block_s, single.ctas, single.runs) == (4, 2048, 1, True)
    # Capped like `group`: wider than `Tuning.max_group_channels`, it neither runs single-pass nor fuses.
    with_cap = runtime.Geometry(
        torch.empty(2, 8, 40, 40, device="meta"), 2, 1e-5, 0.1, sms=132, tuning=runtime.Tuning(max_group_channels=2)
    )
    assert with_cap.plan_of("group_chunks", False) == "split"
