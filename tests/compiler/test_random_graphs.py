"""210 random graphs of the default search space on the Triton kernels against the reference module.

Cases are drawn once, deterministically, and checked in chunks (so xdist spreads them): all ops, all
axes, nested aggregations, 2-D to 5-D inputs, float64 and float32, training and eval, fused and split
stages, and small blocks (several channel blocks, chunks and loop steps per program) for a third of
them. `test_the_cases_cover_the_space` makes sure the draw keeps covering all of that.
"""

from __future__ import annotations

import random

import pytest
import torch

from evonorm_search.compiler import tuning
from evonorm_search.ir import AGGREGATIONS, AXES, ELEMENTWISE
from evonorm_search.search.space import SearchSpace, random_graph

from .helpers import Case, check, random_shape

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

GRAPHS = 210
CHUNKS = 12
SMALL_BLOCKS = {"block_c": 2, "block_s": 2, "chunk": 4, "combine_block": 2, "tile": 4}


def _draw() -> list[tuple[Case, bool]]:
    rng = random.Random(20260511)
    single = random.Random(20261129)  # its own stream: the graphs and shapes drawn stay as they were
    space = SearchSpace()
    cases = []
    for i in range(GRAPHS):
        graph = random_graph(space, rng)
        shape = random_shape(rng, rank=2 + i % 4)
        training = rng.random() < 0.6
        fusion = rng.choice(("always", "never"))
        if fusion == "always" and single.random() < 0.5:
            fusion = "single"  # single-pass kernels where the domain fits, else the fused ones
        case = Case(
            graph,
            shape,
            torch.float64 if i % 3 else torch.float32,
            training=training,
            fusion=fusion,
            groups=2,
            seed=i,
        )
        cases.append((case, rng.random() < 1 / 3))
    return cases


CASES = _draw()


def _nesting(case: Case) -> int:
    """The most aggregations on one path from the input to the output."""
    depth: list[int] = []
    for node in case.layer.nodes:
        below = max((depth[a] for a in node.args), default=0)
        depth.append(below + (1 if node.axis is not None else 0))
    return max(depth)


def test_the_cases_cover_the_space():
    ops = {n.op for case, _ in CASES for n in case.layer.nodes}
    axes = {n.axis for case, _ in CASES for n in case.layer.nodes if n.axis}
    assert set(ELEMENTWISE + AGGREGATIONS) <= ops
    assert set(AXES) == axes
    assert sum(_nesting(case) >= 2 for case, _ in CASES) >= 25
    assert {len(case.shape) for case, _ in CASES} == {2, 3, 4, 5}
    assert {(case.dtype, case.training, case.fusion) for case, _ in CASES} == {
        (d, t, f) for d in (torch.float32, torch.float64) for t in (True, False) for f in ("single", "always", "never")
    }
    assert 40 <= sum(small for _, small in CASES) <= 120


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_random_graphs_match_the_reference(chunk):
    failures = []
    for case, small in CASES[chunk::CHUNKS]:
        with tuning(**(SMALL_BLOCKS if small else {})):
            problems = check(case)
        if problems:
            failures.append(f"{case.label()} small_blocks={small}: {problems}")
    assert failures == []
