"""The statistics that decide claims, on small inputs whose answers are known by hand."""

from __future__ import annotations

import pytest

from evonorm_search import statistics as st


def test_kendall_tau_of_equal_and_reversed_rankings():
    same = st.kendall_tau([1, 2, 3, 4, 5, 6], [10, 20, 30, 40, 50, 60])
    assert same.value == pytest.approx(1.0) and same.low == pytest.approx(1.0) and same.high == pytest.approx(1.0)
    assert st.kendall_tau([1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]).value == pytest.approx(-1.0)


def test_kendall_tau_of_one_swapped_pair_and_its_interval():
    # 6 items, one discordant pair of 15: tau = (14 - 1) / 15.
    tau = st.kendall_tau([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 6, 5], seed=3)
    assert tau.value == pytest.approx(13 / 15)
    assert tau.low is not None and tau.high is not None and tau.low <= tau.value <= tau.high <= 1.0


def test_the_difference_of_two_taus_on_the_same_items():
    reference = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    # One list ranks the reference exactly, the other backwards: 1 - (-1), and every resample agrees.
    apart = st.kendall_tau_difference(reference, reference[::-1], reference, seed=1)
    assert apart.value == pytest.approx(2.0) and apart.low > 1.5 and apart.high == pytest.approx(2.0)
    # The same list twice: no difference in any resample.
    same = st.kendall_tau_difference([3, 1, 2, 5, 4, 7, 6, 9, 8, 10], [3, 1, 2, 5, 4, 7, 6, 9, 8, 10], reference)
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0)
    # Two noisy lists: the point is the difference of the two taus, inside its own interval.
    noisy, noisier = [2, 1, 3, 4, 6, 5, 7, 8, 10, 9], [4, 1, 2, 3, 9, 5, 10, 6, 7, 8]
    difference = st.kendall_tau_difference(noisy, noisier, reference, seed=2)
    expected = st.kendall_tau(noisy, reference).value - st.kendall_tau(noisier, reference).value
    assert difference.value == pytest.approx(expected) and difference.low <= expected <= difference.high
    assert difference.low < difference.high
    with pytest.raises(ValueError, match="equal length"):
        st.kendall_tau_difference([1, 2, 3], [1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 3"):
        st.kendall_tau_difference([1, 2], [2, 1], [1, 2])


def test_kendall_tau_refuses_unequal_or_tiny_inputs():
    with pytest.raises(ValueError, match="equal length"):
        st.kendall_tau([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 3"):
        st.kendall_tau([1, 2], [1, 2])


def test_eight_seeds_all_ahead_are_above_with_the_exact_wilcoxon_p():
    a = [0.9, 0.8, 0.85, 0.7, 0.95, 0.6, 0.75, 0.88]
    b = [x - d for x, d in zip(a, [0.1, 0.2, 0.05, 0.3, 0.15, 0.25, 0.12, 0.08], strict=True)]
    result = st.paired_comparison(a, b)
    assert result.p_value == pytest.approx(2 / 2**8)  # the exact two-sided p of 8 positive ranks
    assert result.verdict == "above" and result.wins == 8
    assert result.median_difference.value == pytest.approx(0.135)
    assert 0 < result.median_difference.low <= 0.135 <= result.median_difference.high
    assert "is above" in result.text("evolution", "random")


def test_five_seeds_cannot_decide_nor_give_an_interval():
    result = st.paired_comparison([1, 2, 3, 4, 5], [0, 1, 2, 3, 4])
    assert result.p_value == pytest.approx(2 / 2**5) and result.verdict == "not established"
    assert result.median_difference.low is None and "no interval" in result.median_difference.text()


def test_mixed_differences_are_not_established_and_all_behind_is_below():
    mixed = st.paired_comparison([1, 0, 1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 1, 0, 1])
    assert mixed.verdict == "not established" and mixed.p_value == pytest.approx(1.0)
    behind = st.paired_comparison([0.0] * 8, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    assert behind.verdict == "below" and behind.wins == 0


def test_identical_arms_have_no_test_and_bad_arms_are_refused():
    same = st.paired_comparison([0.5] * 8, [0.5] * 8)
    assert same.p_value is None and same.verdict == "not established" and "every difference 0" in same.text("a", "b")
    with pytest.raises(ValueError, match="one value per seed"):
        st.paired_comparison([1, 2], [1])
    with pytest.raises(ValueError, match="finite"):
        st.paired_comparison([float("nan")] * 8, [0.0] * 8)


def test_share_at_least_counts_ties_as_reaching():
    assert st.share_at_least([0.5, 0.7, 0.9, 0.3], 0.7) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        st.share_at_least([], 0.5)


def test_the_control_rule_names_each_violation():
    scores = {"bn_relu": 0.9, "gn_relu": 0.6, "identity": 0.2, "tanh": 0.65}
    ok, bad = st.control_rule(scores, ["identity", "tanh"], ["bn_relu", "gn_relu"])
    assert not ok and bad == ["tanh (0.650) >= gn_relu (0.600)"]
    assert st.control_rule(scores, ["identity"], ["bn_relu", "gn_relu"]) == (True, [])
