"""The statistics that decide a claim: rank agreement, paired tests over seeds, intervals, control rules.

Every claim the project makes about layers or searches goes through these functions, so they say the
same thing everywhere (benchmarks, reports, the search's own answer):

- `kendall_tau`: Kendall's tau-b between two score lists with a bootstrap interval (items resampled).
- `kendall_tau_difference`: how much better one score list ranks a reference than another does, on the
  same items, with a paired bootstrap interval (items resampled together): whether one fidelity ranks
  better than another is decided by that interval, not by two overlapping intervals.
- `paired_comparison`: a difference between two arms measured on the same seeds. The verdict is
  "above" or "below" only when the Wilcoxon signed-rank test says so at `alpha`, with a bootstrap
  interval of the median difference (pairs resampled) beside it; with fewer than `MIN_PAIRS_FOR_INTERVAL`
  pairs no interval is given (the resampled medians of five runs are just those runs' values).
- `share_at_least`: the share of runs at or above a reference value.
- `control_rule`: every control (a layer that does not normalize) below every baseline.

scipy.stats does the work; this module fixes the choices (two-sided tests, percentile intervals,
resample counts, seeds) once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
RESAMPLES = 2000
# Below this many pairs a bootstrap of the median has too few distinct resamples to be an interval.
MIN_PAIRS_FOR_INTERVAL = 8
NOT_ESTABLISHED = "not established"


@dataclass(frozen=True)
class Interval:
    """A point estimate with a 95% interval (None where there is too little data for one)."""

    value: float
    low: float | None
    high: float | None

    def text(self, digits: int = 3) -> str:
        if self.low is None or self.high is None:
            return f"{self.value:.{digits}f} (no interval: too few values)"
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def kendall_tau(x: Sequence[float], y: Sequence[float], *, seed: int = 0) -> Interval:
    """Kendall's tau-b of two equally long score lists, with a percentile bootstrap 95% interval."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"expected two score lists of equal length, got {len(a)} and {len(b)}")
    if len(a) < 3:
        raise ValueError(f"Kendall's tau needs at least 3 items, got {len(a)}")
    tau = float(stats.kendalltau(a, b).statistic)

    def statistic(index: np.ndarray) -> float:
        i = index.astype(int)
        value = stats.kendalltau(a[i], b[i]).statistic
        return 0.0 if math.isnan(value) else float(value)  # a resample of ties only ranks nothing

    result = stats.bootstrap(
        (np.arange(len(a)),), statistic, n_resamples=RESAMPLES, method="percentile", random_state=seed, vectorized=False
    )
    return Interval(tau, float(result.confidence_interval.low), float(result.confidence_interval.high))


def kendall_tau_difference(
    first: Sequence[float], second: Sequence[float], reference: Sequence[float], *, seed: int = 0
) -> Interval:
    """tau(first, reference) - tau(second, reference) over the same items, with a percentile bootstrap 95%
    interval of the difference (each resample draws items once for both taus, so their shared noise cancels)."""
    a, b, y = (np.asarray(v, dtype=float) for v in (first, second, reference))
    if not (a.shape == b.shape == y.shape) or a.ndim != 1:
        raise ValueError(f"expected three score lists of equal length, got {len(a)}, {len(b)} and {len(y)}")
    if len(a) < 3:
        raise ValueError(f"Kendall's tau needs at least 3 items, got {len(a)}")

    def tau(x: np.ndarray, z: np.ndarray) -> float:
        value = stats.kendalltau(x, z).statistic
        return 0.0 if math.isnan(value) else float(value)  # a resample of ties only ranks nothing

    def statistic(index: np.ndarray) -> float:
        i = index.astype(int)
        return tau(a[i], y[i]) - tau(b[i], y[i])

    result = stats.bootstrap(
        (np.arange(len(a)),), statistic, n_resamples=RESAMPLES, method="percentile", random_state=seed, vectorized=False
    )
    return Interval(
        tau(a, y) - tau(b, y), float(result.confidence_interval.low), float(result.confidence_interval.high)
    )


def median_interval(values: Sequence[float], *, seed: int = 0) -> Interval:
    """The median with a percentile bootstrap 95% interval (none below `MIN_PAIRS_FOR_INTERVAL` values)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("the median of no values")
    median = float(np.median(data))
    if data.size < MIN_PAIRS_FOR_INTERVAL:
        return Interval(median, None, None)
    if np.all(data == data[0]):
        return Interval(median, median, median)
    result = stats.bootstrap((data,), np.median, n_resamples=RESAMPLES, method="percentile", random_state=seed)
    return Interval(median, float(result.confidence_interval.low), float(result.confidence_interval.high))


@dataclass(frozen=True)
class PairedComparison:
    """Arm A against arm B on the same seeds: differences A - B, their median with an interval, the
    Wilcoxon signed-rank p-value (two-sided) and the verdict it allows."""

    differences: tuple[float, ...]
    median_difference: Interval
    p_value: float | None  # None: every difference is zero (nothing to test)
    wins: int  # pairs where A > B
    verdict: str  # "above", "below" or "not established"

    def text(self, a: str, b: str) -> str:
        p = "no test (every difference 0)" if self.p_value is None else f"Wilcoxon signed-rank p = {self.p_value:.3g}"
        outcome = f"{a} is {self.verdict} {b}" if self.verdict != NOT_ESTABLISHED else "no difference is established"
        return (
            f"{a} - {b} over {len(self.differences)} paired seeds: median difference "
            f"{self.median_difference.text()}, {a} ahead on {self.wins}; {p}: {outcome}"
        )


def paired_comparison(
    a: Sequence[float], b: Sequence[float], *, alpha: float = ALPHA, seed: int = 0
) -> PairedComparison:
    """Compare two arms measured on the same seeds (a[i] and b[i] share seed i)."""
    if len(a) != len(b):
        raise ValueError(f"paired arms need one value per seed each, got {len(a)} and {len(b)}")
    if not a:
        raise ValueError("a paired comparison of no seeds")
    differences = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if not np.all(np.isfinite(differences)):
        raise ValueError("a paired comparison needs finite scores on every seed")
    p_value = None if np.all(differences == 0) else float(stats.wilcoxon(differences, zero_method="wilcox").pvalue)
    median = median_interval(differences.tolist(), seed=seed)
    verdict = NOT_ESTABLISHED
    if p_value is not None and p_value < alpha and median.value != 0:
        verdict = "above" if median.value > 0 else "below"
    return PairedComparison(tuple(differences.tolist()), median, p_value, int(np.sum(differences > 0)), verdict)


def share_at_least(values: Iterable[float], reference: float) -> float:
    """The share of values at or above `reference`."""
    data = list(values)
    if not data:
        raise ValueError("the share of no values")
    return sum(v >= reference for v in data) / len(data)


def control_rule(
    scores: Mapping[str, float], controls: Iterable[str], baselines: Iterable[str]
) -> tuple[bool, list[str]]:
    """Every control scores below every baseline; the violations as text ("c (0.5) >= b (0.4)")."""
    baseline_names = list(baselines)
    violations = [
        f"{c} ({scores[c]:.3f}) >= {b} ({scores[b]:.3f})"
        for c in controls
        for b in baseline_names
        if not scores[c] < scores[b]
    ]
    return not violations, violations
