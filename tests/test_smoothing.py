"""Kneser-Ney phrase-table smoothing, against values worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from mtcompare.smt.phrases import build_phrase_table
from mtcompare.smt.smoothing import smoothed_phrase_probabilities

# Phrase pairs (source id, target id, count). Counts of counts: n1 = 3
# (pairs 0-1, 1-1, 2-2), n2 = 1 (pair 0-0), n3 = 1 (pair 1-0), n4 = 1 (pair 2-0).
SOURCES = np.array([0, 0, 1, 1, 2, 2])
TARGETS = np.array([0, 1, 0, 1, 0, 2])
COUNTS = np.array([2, 1, 3, 1, 4, 1])


def test_relative_frequencies_without_smoothing() -> None:
    inverse, direct = smoothed_phrase_probabilities(SOURCES, TARGETS, COUNTS, "none")
    # c(s) = 3, 4, 5; c(t) = 9, 2, 1
    assert direct == pytest.approx([2 / 3, 1 / 3, 3 / 4, 1 / 4, 4 / 5, 1 / 5])
    assert inverse == pytest.approx([2 / 9, 1 / 2, 3 / 9, 1 / 2, 4 / 9, 1.0])


def test_kneser_ney_worked_by_hand() -> None:
    # Y = n1 / (n1 + 2 n2) = 3/5; D1 = 1 - 2Y n2/n1 = 3/5, D2 = 2 - 3Y n3/n2 = 1/5,
    # D3+ = 3 - 4Y n4/n3 = 3/5
    d1, d2, d3 = 3 / 5, 1 / 5, 3 / 5
    # direct, phi(t|s): c(s) = 3, 4, 5; lower order p(t) = N1+(., t) / 6 =
    # 3/6, 2/6, 1/6; gamma(0) = (D2 + D1) / 3, gamma(1) = (D3 + D1) / 4,
    # gamma(2) = (D3 + D1) / 5
    g0, g1, g2 = (d2 + d1) / 3, (d3 + d1) / 4, (d3 + d1) / 5
    direct_by_hand = [
        (2 - d2) / 3 + g0 * 3 / 6,
        (1 - d1) / 3 + g0 * 2 / 6,
        (3 - d3) / 4 + g1 * 3 / 6,
        (1 - d1) / 4 + g1 * 2 / 6,
        (4 - d3) / 5 + g2 * 3 / 6,
        (1 - d1) / 5 + g2 * 1 / 6,
    ]
    # inverse, phi(s|t): c(t) = 9, 2, 1; p(s) = N1+(s, .) / 6 = 2/6 each;
    # gamma(t=0) = (D2 + D3 + D3) / 9, gamma(1) = 2 D1 / 2, gamma(2) = D1 / 1
    h0, h1, h2 = (d2 + d3 + d3) / 9, 2 * d1 / 2, d1 / 1
    inverse_by_hand = [
        (2 - d2) / 9 + h0 * 2 / 6,
        (1 - d1) / 2 + h1 * 2 / 6,
        (3 - d3) / 9 + h0 * 2 / 6,
        (1 - d1) / 2 + h1 * 2 / 6,
        (4 - d3) / 9 + h0 * 2 / 6,
        (1 - d1) / 1 + h2 * 2 / 6,
    ]
    inverse, direct = smoothed_phrase_probabilities(
        SOURCES, TARGETS, COUNTS, "kneser-ney"
    )
    assert direct == pytest.approx(direct_by_hand, abs=1e-12)
    assert inverse == pytest.approx(inverse_by_hand, abs=1e-12)


def _random_pairs(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    keys = np.unique(rng.integers(0, 40 * 30, size=400))
    counts = rng.geometric(0.45, size=len(keys))  # mostly 1s and 2s, as in real tables
    return keys // 30, keys % 30, counts


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kneser_ney_sums_to_one_over_all_phrases(seed: int) -> None:
    sources, targets, counts = _random_pairs(seed)
    inverse, direct = smoothed_phrase_probabilities(sources, targets, counts, "kneser-ney")
    # seen pairs get (c - D(c)) / c(s) + gamma(s) p(t); every unseen target gets
    # gamma(s) p(t), with p summing to one over all targets
    n_pairs = len(counts)
    discounts = np.array([_discount(counts, count) for count in counts])
    for given, predicted, probabilities in (
        (sources, targets, direct),
        (targets, sources, inverse),
    ):
        continuation = np.bincount(predicted) / n_pairs  # p(.) over all phrases
        assert continuation.sum() == pytest.approx(1.0)
        for phrase in np.unique(given):
            rows = given == phrase
            gamma = discounts[rows].sum() / counts[rows].sum()
            seen = probabilities[rows].sum()
            unseen = gamma * (1 - continuation[predicted[rows]].sum())
            assert seen + unseen == pytest.approx(1.0, abs=1e-12)
            assert 0 < seen <= 1


def _discount(counts: np.ndarray, count: int) -> float:
    n1, n2, n3, n4 = (np.count_nonzero(counts == k) for k in (1, 2, 3, 4))
    y = n1 / (n1 + 2 * n2)
    return (0, 1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)[
        min(count, 3)
    ]


def test_phrase_table_with_kneser_ney_discounts_frequent_pairs_less() -> None:
    # "casa" -> "house" three times, -> "home" once: the singleton loses
    # relatively more of its probability than the frequent pair
    source = [["casa"]] * 4 + [["perro"]] * 2 + [["gato"]] * 3
    target = [["house"]] * 3 + [["home"]] + [["dog"]] * 2 + [["cat"]] * 3
    alignments = [{(0, 0)}] * 9
    plain = build_phrase_table(source, target, alignments, limit=None)
    smooth = build_phrase_table(source, target, alignments, limit=None,
                                smoothing="kneser-ney")
    ratio = {
        entry.target: smooth_entry.scores[2] / entry.scores[2]
        for entry, smooth_entry in zip(plain[("casa",)], smooth[("casa",)])
    }
    assert ratio[("home",)] < ratio[("house",)] < 1.0
    assert [e.target for e in smooth[("casa",)]] == [("house",), ("home",)]
