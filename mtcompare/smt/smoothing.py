"""Phrase-table smoothing: Kneser-Ney discounting of the phrase translation
probabilities (Foster, Kuhn & Johnson 2006, "Phrasetable Smoothing for
Statistical Machine Translation", section 3.3; Moses' ``score --KneserNey``).

Relative frequencies overrate pairs seen once: on a corpus the size of the
Bible most phrase pairs are singletons, and phi(t | s) = 1 for a source
phrase seen once says nothing about how reliable it is. Kneser-Ney
smoothing takes a discount D(c) from every pair count c and gives the mass
to a lower-order distribution that counts in how many distinct pairs a
phrase takes part, with the three discounts of modified Kneser-Ney (Chen &
Goodman 1998, eq. 26) estimated from the counts of counts of phrase pairs::

    phi(t | s) = (c(s, t) - D(c(s, t))) / c(s)  +  gamma(s) * p(t)
    gamma(s)   = (D1 N1(s, .) + D2 N2(s, .) + D3+ N3+(s, .)) / c(s)
    p(t)       = N1+(., t) / N1+(., .)

where Nk(s, .) is the number of distinct targets seen k times with s, and
N1+(., t) the number of distinct sources seen with t. phi(s | t) is the same
with the roles swapped. Summed over every target phrase (seen with s or
not) phi(t | s) is one; over the targets seen with s it is less, the rest
being the mass kept for translations never extracted.
"""

from __future__ import annotations

import logging

import numpy as np

from mtcompare.smt.lm import modified_kneser_ney_discounts

logger = logging.getLogger(__name__)

PHRASE_SMOOTHING = ("none", "kneser-ney")


def smoothed_phrase_probabilities(
    source_ids: np.ndarray,
    target_ids: np.ndarray,
    counts: np.ndarray,
    smoothing: str,
) -> tuple[np.ndarray, np.ndarray]:
    """(phi(s | t), phi(t | s)) of each distinct pair, smoothed as asked.

    ``source_ids``, ``target_ids`` and ``counts`` have one entry per distinct
    phrase pair (ids are small non-negative integers, counts at least one).
    """
    counts = counts.astype(np.float64)
    if smoothing == "none":
        source_totals = np.bincount(source_ids, weights=counts)[source_ids]
        target_totals = np.bincount(target_ids, weights=counts)[target_ids]
        return counts / target_totals, counts / source_totals
    if smoothing != "kneser-ney":
        raise ValueError(f"unknown phrase smoothing {smoothing!r}")
    discount_of = _discount_per_pair(counts)  # (n_pairs,)
    inverse = _kneser_ney(target_ids, source_ids, counts, discount_of)
    direct = _kneser_ney(source_ids, target_ids, counts, discount_of)
    return inverse, direct


def _discount_per_pair(counts: np.ndarray) -> np.ndarray:
    """D1, D2 or D3+ for each pair's count, from the counts of counts."""
    n1, n2, n3, n4 = (int(np.count_nonzero(counts == k)) for k in (1, 2, 3, 4))
    discounts = modified_kneser_ney_discounts(n1, n2, n3, n4)
    if discounts is None:
        # too few pairs to estimate three discounts: one absolute discount, as
        # the language model does (Ney, Essen & Kneser 1994)
        y = n1 / (n1 + 2 * n2) if n1 + n2 > 0 else 0.0
        single = y if 0 < y < 1 else 0.5
        logger.warning(
            "phrase pairs' counts of counts n1=%d n2=%d n3=%d n4=%d give no valid "
            "modified Kneser-Ney discounts (corpus too small); using D=%.4g for all",
            n1, n2, n3, n4, single,
        )
        discounts = (single, single, single)
    logger.info("phrase-table Kneser-Ney discounts D1 %.4f, D2 %.4f, D3+ %.4f",
                *discounts)
    table = np.array([0.0, *discounts])
    return table[np.minimum(counts, 3).astype(np.int64)]


def _kneser_ney(
    given_ids: np.ndarray,
    predicted_ids: np.ndarray,
    counts: np.ndarray,
    discount_of: np.ndarray,
) -> np.ndarray:
    """phi(predicted | given) for each pair, per the module docstring."""
    given_totals = np.bincount(given_ids, weights=counts)  # c(given)
    # gamma numerator: the discount mass each given phrase gives away
    freed = np.bincount(given_ids, weights=discount_of)
    gamma = freed[given_ids] / given_totals[given_ids]  # (n_pairs,)
    # lower order: in how many distinct pairs each predicted phrase takes part
    continuation = np.bincount(predicted_ids).astype(np.float64)
    lower_order = continuation[predicted_ids] / len(counts)  # (n_pairs,)
    return (counts - discount_of) / given_totals[given_ids] + gamma * lower_order
