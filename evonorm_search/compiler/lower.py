"""Pass 3, lowering: how each aggregation axis is reduced, and which kernels run each pass.

A kernel program covers a *domain* of the (N, C, S) input and loops over it in [BLOCK_C, BLOCK_S]
tiles, S being the contiguous dimension of (N, C, *spatial) storage. Each domain is a row of
`domains.DOMAINS` (its `channels`, `positions` and `grid` columns are the table below), which the
runtime plans launches from and codegen indexes programs by:

| domain     | one program covers                 | grid                      | loop over |
| ---------- | ---------------------------------- | ------------------------- | --------- |
| `tiles`    | a block of channels x a chunk of S | N x C/BLOCK_C x S/CHUNK   | S         |
| `instance` | a block of channels x all of S     | N x C/BLOCK_C             | S         |
| `group`    | one group's channels x all of S    | N x G                     | S         |
| `sample`   | all channels x all of S            | N                         | S         |
| `channel`  | all channels x a block of S        | N x S/BLOCK_S             | C         |

A reduction is *complete* in a domain when every program holds whole reduction groups (an
`instance` statistic in an `instance` or `group` program); its statistic then stays in registers
and a later pass can run in the same kernel, as a second loop over the same (cache-hot) domain.
Otherwise each program writes *partials* (moments or sums per sample, chunk and channel) and a small
combine kernel merges them: across programs in parallel, never one program walking N x S alone.

A fused stage also has a *single-pass* form: when every program's domain extent fits in one tile
(`runtime.Geometry.single_pass`: a per-dtype budget of elements held in registers), the kernel loads its
tile once, computes the statistics, applies everything after them and writes its outputs; each input
element is read from memory once. Parameter gradients (`sum` over the batch) never complete inside a
program, but nothing later in the layer reads them, so a fused or single-pass stage writes their
partials as it goes and a combine kernel after it adds them up (no atomics).

Per axis (the compiler columns of its row in `ir.ops.AXES`: `complete_in`, `combine`):
- `batch`: partials of every (sample, chunk); the combine gives each channel block its own program,
  which reads all rows of its channels (cross-program reduction), and updates running estimates.
- `layer`: complete in `sample` programs; else partials and one combine program per sample.
- `group`: complete in `group` programs; else partials and one combine program per (sample, group).
- `instance`: complete in `instance`/`group`/`sample` programs; else partials, one combine program per
  (sample, channel block).
- `channel`: always complete: passes that reduce over channels run in `channel` programs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import AXES
from ..ir.vocabulary import Domain
from .schedule import ReductionKind, Schedule

FUSED_DOMAINS = (Domain.INSTANCE, Domain.GROUP, Domain.CHANNEL, Domain.SAMPLE)  # preference order when several fit


@dataclass(frozen=True)
class Kernel:
    """One pass kernel: runs `phases` (pass indices) in order over `domain`."""

    name: str
    domain: Domain
    phases: tuple[int, ...]
    complete: tuple[int, ...]  # reductions finished inside the kernel (statistics written too)
    emitted: tuple[int, ...]  # reductions written as partials for a combine kernel
    single: bool = False  # one tile holds the whole domain: every input element is loaded once


@dataclass(frozen=True)
class Combine:
    """Merges the partials of `reductions` written by a kernel over `domain`."""

    name: str
    domain: Domain
    reductions: tuple[int, ...]


Step = Kernel | Combine


@dataclass(frozen=True)
class Stage:
    """A run of passes: always runnable as split steps; `fused` when one kernel can hold them all, and
    `single` for the same kernel when the domain fits in one tile (one read of every input)."""

    passes: tuple[int, ...]
    split: tuple[Step, ...]
    fused: tuple[Step, ...] = ()
    fused_domain: Domain | None = None
    single: tuple[Step, ...] = ()


@dataclass(frozen=True)
class Plan:
    prefix: str
    schedule: Schedule
    stages: tuple[Stage, ...]

    @property
    def kernels(self) -> list[Step]:
        steps: list[Step] = []
        for stage in self.stages:
            steps += [*stage.split, *stage.fused, *stage.single]
        return steps


def _axis(schedule: Schedule, rid: int) -> str:
    return schedule.reductions[rid].axis


def _completes(schedule: Schedule, rid: int, domain: Domain) -> bool:
    reduction = schedule.reductions[rid]
    return domain in AXES[reduction.axis].complete_in and reduction.kind is not ReductionKind.SUM


def _emittable(schedule: Schedule, rid: int, domain: Domain) -> bool:
    return _completes(schedule, rid, domain) or AXES[_axis(schedule, rid)].combine is not None


def _fusable(schedule: Schedule, rid: int, domain: Domain) -> bool:
    """Whether a fused kernel over `domain` can run a later pass after reduction `rid`: its statistic is
    complete in the program, or it is a parameter gradient (read by no later pass; partials suffice)."""
    return _completes(schedule, rid, domain) or schedule.reductions[rid].kind is ReductionKind.SUM


def _steps(
    prefix: str, schedule: Schedule, passes: tuple[int, ...], domain: Domain, *, single: bool = False
) -> tuple[Step, ...]:
    """One kernel running `passes` over `domain`, then a combine for what it could not complete."""
    reductions = [r for p in passes for r in schedule.passes[p].reductions]
    complete = tuple(r for r in reductions if _completes(schedule, r, domain))
    emitted = tuple(r for r in reductions if r not in complete)
    tag = "w" if single else ("f" if len(passes) > 1 else "p")
    name = f"{prefix}_{tag}{passes[0]}"
    steps: list[Step] = [Kernel(name, domain, passes, complete, emitted, single)]
    if emitted:
        steps.append(Combine(f"{prefix}_c{passes[0]}{tag}", domain, emitted))
    return tuple(steps)


def _split_domain(schedule: Schedule, p: int) -> Domain:
    """Where a pass runs on its own: over tiles, unless a reduction of it never splits (its axis has no
    combine strategy: `channel`), when it runs in the one domain that completes it."""
    for r in schedule.passes[p].reductions:
        row = AXES[_axis(schedule, r)]
        if row.combine is None and schedule.reductions[r].kind is not ReductionKind.SUM:
            (domain,) = row.complete_in
            return domain
    return Domain.TILES


def _fused_run(schedule: Schedule, start: int) -> tuple[int, Domain] | None:
    """The longest run of passes from `start` that one program domain can hold, and that domain."""
    best: tuple[int, Domain] | None = None
    last = len(schedule.passes) - 1
    for domain in FUSED_DOMAINS:
        end = start
        while end < last and all(_fusable(schedule, r, domain) for r in schedule.passes[end].reductions):
            end += 1
        while end > start and not all(_emittable(schedule, r, domain) for r in schedule.passes[end].reductions):
            end -= 1
        if end > start and (best is None or end > best[0]):
            best = (end, domain)
    return best


def plan(schedule: Schedule, prefix: str) -> Plan:
    """Group the passes into stages; each stage has split steps and, where possible, a fused kernel."""
    stages: list[Stage] = []
    p = 0
    while p < len(schedule.passes):
        run = _fused_run(schedule, p)
        if run is None:
            stages.append(Stage((p,), _steps(prefix, schedule, (p,), _split_domain(schedule, p))))
            p += 1
            continue
        end, domain = run
        passes = tuple(range(p, end + 1))
        split: tuple[Step, ...] = ()
        for q in passes:
            split += _steps(prefix, schedule, (q,), _split_domain(schedule, q))
        fused = _steps(prefix, schedule, passes, domain)
        single = _steps(prefix, schedule, passes, domain, single=True)
        stages.append(Stage(passes, split, fused, domain, single))
        p = end + 1
    return Plan(prefix, schedule, tuple(stages))
