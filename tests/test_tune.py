"""Tests for MERT: BLEU statistics, upper envelopes, the exact line search, the
optimiser and the outer tuning loop with a simulated decoder."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import sacrebleu

import mtcompare.smt.tune as tune_module
from mtcompare.errors import MtcError
from mtcompare.smt.tune import (
    HypothesisPool,
    NBestLists,
    OptimiserConfig,
    bleu_at,
    bleu_from_statistics,
    bleu_statistics,
    line_search,
    normalise_weights,
    one_best,
    optimise_weights,
    tune,
    upper_envelopes,
)

VOCABULARY = "the a cat dog sat on mat and ran far".split()


def random_sentence(
    rng: np.random.Generator, low: int = 6, high: int = 13
) -> list[str]:
    return list(rng.choice(VOCABULARY, size=int(rng.integers(low, high))))


def corrupt(rng: np.random.Generator, tokens: list[str], edits: int) -> list[str]:
    """``tokens`` with ``edits`` random substitutions, deletions or insertions."""
    tokens = list(tokens)
    for _ in range(edits):
        kind = rng.integers(3)
        where = int(rng.integers(len(tokens)))
        if kind == 0:
            tokens[where] = str(rng.choice(VOCABULARY))
        elif kind == 1 and len(tokens) > 1:
            del tokens[where]
        else:
            tokens.insert(where, str(rng.choice(VOCABULARY)))
    return tokens


def sacre(hypotheses: list[list[str]], references: list[list[str]]) -> float:
    return sacrebleu.corpus_bleu(
        [" ".join(h) for h in hypotheses],
        [[" ".join(r) for r in references]],
        tokenize="none",
        smooth_method="none",
    ).score


# --------------------------------------------------------------------------
# BLEU statistics
# --------------------------------------------------------------------------


def test_bleu_statistics_by_hand() -> None:
    # hypothesis "the the the cat" against "the cat sat":
    # 1-grams: "the" x3 clipped to 1, "cat" 1 -> 2 of 4
    # 2-grams: "the the" x2, "the cat" -> 1 of 3; 3-grams 0 of 2; 4-grams 0 of 1
    statistics = bleu_statistics("the the the cat".split(), "the cat sat".split())
    assert statistics.tolist() == [2, 1, 0, 0, 4, 3, 2, 1, 4, 3]
    assert bleu_from_statistics(statistics) == 0.0  # a zero precision


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_corpus_bleu_matches_sacrebleu(seed: int) -> None:
    rng = np.random.default_rng(seed)
    references = [random_sentence(rng, 1, 15) for _ in range(40)]
    hypotheses = [
        corrupt(rng, reference, int(rng.integers(0, 5))) for reference in references
    ]
    summed = sum(bleu_statistics(h, r) for h, r in zip(hypotheses, references))
    expected = sacre(hypotheses, references)
    assert expected > 0  # the case is not trivial
    assert bleu_from_statistics(summed) == pytest.approx(expected, abs=1e-9)


def test_corpus_bleu_is_zero_like_sacrebleu_without_four_gram_matches() -> None:
    references = [["a", "b", "c", "d", "e"]]
    hypotheses = [["a", "b", "c", "x", "e"]]  # no 4-gram matches
    summed = bleu_statistics(hypotheses[0], references[0])
    assert sacre(hypotheses, references) == 0.0
    assert bleu_from_statistics(summed) == 0.0


def test_bleu_of_the_reference_is_100_and_brevity_penalty_applies() -> None:
    reference = "a b c d e f g h".split()
    assert bleu_from_statistics(bleu_statistics(reference, reference)) == pytest.approx(
        100.0
    )
    # the first 6 of 8 words: every precision 1, brevity penalty exp(1 - 8/6)
    short = bleu_from_statistics(bleu_statistics(reference[:6], reference))
    assert short == pytest.approx(100 * math.exp(1 - 8 / 6))


# --------------------------------------------------------------------------
# Upper envelopes
# --------------------------------------------------------------------------


def test_upper_envelope_of_hand_worked_lines() -> None:
    # Sentence 0, lines intercept + slope * gamma:
    #   row 0  F:  2 - 3g    row 1  A:  1 - g     row 2  B:  0
    #   row 3  D: -0.5       row 4  C: -1 + g     row 5  E: -3 + 2g
    #   row 6  H: -5 + 0.5g  row 7  A again (identical to row 1)
    # F meets A at g = 0.5, A meets C at g = 1 (where B touches them but is
    # never strictly on top), C meets E at g = 2. D lies under B; H under all.
    # Sentence 1: rows 8 (0 + g) and 9 (1 + 0g): row 9 until g = 1, then row 8.
    intercepts = [2, 1, 0, -0.5, -1, -3, -5, 1, 0, 1]
    slopes = [-3, -1, 0, 0, 1, 2, 0.5, -1, 1, 0]
    envelopes = upper_envelopes(intercepts, slopes, [0, 8, 10])
    assert envelopes.rows.tolist() == [0, 1, 4, 5, 9, 8]
    assert envelopes.sentence_ids.tolist() == [0, 0, 0, 0, 1, 1]
    assert envelopes.starts.tolist() == [-np.inf, 0.5, 1.0, 2.0, -np.inf, 1.0]


def test_upper_envelope_agrees_with_the_top_line_at_random_points() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        sizes = rng.integers(1, 12, size=4)
        starts = np.append(0, np.cumsum(sizes))
        # integer coefficients make ties and parallel lines common
        intercepts = rng.integers(-4, 5, size=starts[-1]).astype(float)
        slopes = rng.integers(-3, 4, size=starts[-1]).astype(float)
        envelopes = upper_envelopes(intercepts, slopes, starts)
        for gamma in rng.uniform(-10, 10, size=30):
            for sentence in range(4):
                rows = np.arange(starts[sentence], starts[sentence + 1])
                scores = intercepts[rows] + gamma * slopes[rows]
                mine = envelopes.sentence_ids == sentence
                on_top = envelopes.rows[mine][
                    np.searchsorted(envelopes.starts[mine], gamma) - 1
                ]
                assert intercepts[on_top] + gamma * slopes[on_top] == pytest.approx(
                    scores.max()
                )


# --------------------------------------------------------------------------
# The line search
# --------------------------------------------------------------------------


def two_sentence_case(
    lines: list[list[tuple[str, tuple[float, float]]]], references: list[str]
):
    """N-best lists whose features (f0, f1) make, with weights (1, 0) and
    direction (0, 1), score lines f0 + gamma * f1."""
    nbest = [
        [(text.split(), np.array(features, dtype=float)) for text, features in entries]
        for entries in lines
    ]
    return NBestLists.from_lists(nbest, [reference.split() for reference in references])


WEIGHTS, DIRECTION = np.array([1.0, 0.0]), np.array([0.0, 1.0])


def test_line_search_finds_a_bounded_optimum_by_hand() -> None:
    # Sentence 1: the perfect "a b c d e" scores 3 (flat), "a b c d x" scores g:
    #   perfect while g < 3.
    # Sentence 2: the perfect "p q r s t" scores g, "p q r s y" scores 1:
    #   perfect while g > 1.
    # Both perfect (BLEU 100) exactly on (1, 3); the middle is g = 2.
    nbest = two_sentence_case(
        [
            [("a b c d e", (3, 0)), ("a b c d x", (0, 1))],
            [("p q r s t", (0, 1)), ("p q r s y", (1, 0))],
        ],
        ["a b c d e", "p q r s t"],
    )
    result = line_search(nbest, WEIGHTS, DIRECTION)
    assert result.interval == (1.0, 3.0)
    assert result.gamma == 2.0
    assert result.bleu == pytest.approx(100.0)
    assert bleu_at(nbest, WEIGHTS) < 100.0  # at g = 0 sentence 2 is wrong


def test_line_search_finds_an_unbounded_optimum_by_hand() -> None:
    # Sentence 1 (reference "a b c d e"): "a b c d x" scores 1, perfect scores g:
    #   perfect for g > 1.
    # Sentence 2 (reference "p q r s t u v"): perfect scores -g, "p q r z t u v" 1:
    #   perfect for g < -1.
    # (-inf, -1): s1 wrong at the end: 4/5 3/4 2/3 1/2; s2 perfect 7/7 6/6 5/5 4/4
    #   -> 11/12 9/10 7/8 5/6, lengths 12 = 12: BLEU = 100 * (3465/5760)^(1/4)
    # (-1, 1): s1 as above, s2 wrong in the middle 6/7 4/6 2/5 0/4
    #   -> 10/12 7/10 4/8 1/6: BLEU = 100 * (280/5760)^(1/4)
    # (1, inf): s1 perfect 5/5 4/4 3/3 2/2 with s2 wrong -> 11/12 8/10 5/8 2/6:
    #   BLEU = 100 * (440/2880)^(1/4)
    # The best is (-inf, -1); one unit past its end is g = -2.
    nbest = two_sentence_case(
        [
            [("a b c d x", (1, 0)), ("a b c d e", (0, 1))],
            [("p q r s t u v", (0, -1)), ("p q r z t u v", (1, 0))],
        ],
        ["a b c d e", "p q r s t u v"],
    )
    result = line_search(nbest, WEIGHTS, DIRECTION)
    assert result.interval == (-np.inf, -1.0)
    assert result.gamma == -2.0
    assert result.bleu == pytest.approx(100 * (3465 / 5760) ** 0.25)
    assert bleu_at(nbest, WEIGHTS) == pytest.approx(100 * (280 / 5760) ** 0.25)
    assert bleu_at(nbest, WEIGHTS + 5 * DIRECTION) == pytest.approx(
        100 * (440 / 2880) ** 0.25
    )


def test_line_search_keeps_nonnegative_weights_at_or_above_zero() -> None:
    # The unbounded case above: the best interval (-inf, -1) needs weight 1
    # (= gamma) negative. Keeping weight 1 >= 0 limits gamma to [0, inf); the
    # best feasible interval is then (1, inf), BLEU 100 * (440/2880)^(1/4),
    # and the step goes one unit past its end, to g = 2.
    nbest = two_sentence_case(
        [
            [("a b c d x", (1, 0)), ("a b c d e", (0, 1))],
            [("p q r s t u v", (0, -1)), ("p q r z t u v", (1, 0))],
        ],
        ["a b c d e", "p q r s t u v"],
    )
    nonnegative = np.array([False, True])
    result = line_search(nbest, WEIGHTS, DIRECTION, nonnegative)
    assert result.interval == (1.0, np.inf)
    assert result.gamma == 2.0
    assert result.bleu == pytest.approx(100 * (440 / 2880) ** 0.25)
    # along (0, -1) weight 1 = -gamma, so only gamma <= 0 is feasible: the
    # same best interval, seen from the other side, ends at 0 or below
    backwards = line_search(nbest, WEIGHTS, -DIRECTION, nonnegative)
    assert backwards.gamma <= 0.0 and backwards.interval[1] <= 0.0
    assert (WEIGHTS - backwards.gamma * DIRECTION)[1] >= 0


def test_optimiser_respects_nonnegative_features() -> None:
    rng = np.random.default_rng(4)
    references = [random_sentence(rng) for _ in range(30)]
    lists = []
    for reference in references:
        entries = [(corrupt(rng, reference, int(rng.integers(0, 4))), rng.normal(size=3))
                   for _ in range(8)]
        lists.append(entries)
    nbest = NBestLists.from_lists(lists, references)
    free = optimise_weights(nbest, np.array([0.3, 0.3, 0.4]), seed=1)
    mask = np.array([True, True, False])
    kept = optimise_weights(nbest, np.array([0.3, 0.3, 0.4]), nonnegative=mask, seed=1)
    assert (kept.weights[mask] >= 0).all()
    assert (free.weights[mask] < 0).any()  # the constraint had something to do


def test_line_search_prefers_the_tied_interval_nearest_the_current_weights() -> None:
    # Both sentences wrong by their last word when not perfect, so one perfect
    # sentence and one wrong one give the same statistics either way:
    #   s1 (a b c d e): perfect for g > 1; s2 (p q r s t): perfect for g < -2.
    # (-inf, -2) and (1, inf) tie; (1, inf) is nearer g = 0, so g = 1 + 1.
    nbest = two_sentence_case(
        [
            [("a b c d x", (1, 0)), ("a b c d e", (0, 1))],
            [("p q r s t", (-1, -1)), ("p q r s y", (1, 0))],
        ],
        ["a b c d e", "p q r s t"],
    )
    result = line_search(nbest, WEIGHTS, DIRECTION)
    assert bleu_at(nbest, WEIGHTS - 3 * DIRECTION) == pytest.approx(result.bleu)
    assert result.interval == (1.0, np.inf)
    assert result.gamma == 2.0


def random_nbest(
    rng: np.random.Generator, sentences: int, features: int, most: int = 6
):
    references = [random_sentence(rng, 8, 13) for _ in range(sentences)]
    nbest = [
        [
            (
                corrupt(rng, reference, int(rng.integers(0, 4))),
                rng.normal(size=features),
            )
            for _ in range(int(rng.integers(1, most + 1)))
        ]
        for reference in references
    ]
    return NBestLists.from_lists(nbest, references)


def arrangement_maximum(
    nbest: NBestLists, weights: np.ndarray, direction: np.ndarray
) -> float:
    """Brute force: BLEU between every pair of successive crossings of any two lines."""
    intercepts, slopes = nbest.features @ weights, nbest.features @ direction
    crossings = []
    for sentence in range(nbest.sentence_count):
        rows = range(
            nbest.sentence_starts[sentence], nbest.sentence_starts[sentence + 1]
        )
        for i in rows:
            for j in rows:
                if slopes[i] != slopes[j]:
                    crossings.append(
                        (intercepts[i] - intercepts[j]) / (slopes[j] - slopes[i])
                    )
    points = np.unique(crossings)
    if len(points) == 0:
        probes = [0.0]
    else:
        probes = [points[0] - 1, points[-1] + 1, *((points[1:] + points[:-1]) / 2)]
    return max(bleu_at(nbest, weights + gamma * direction) for gamma in probes)


@pytest.mark.parametrize("seed", range(8))
def test_line_search_equals_brute_force_on_random_nbest_lists(seed: int) -> None:
    rng = np.random.default_rng(seed)
    nbest = random_nbest(rng, sentences=4, features=3)
    for _ in range(5):
        weights, direction = rng.normal(size=3), rng.normal(size=3)
        result = line_search(nbest, weights, direction)
        assert result.bleu == pytest.approx(
            arrangement_maximum(nbest, weights, direction), abs=1e-9
        )
        # the returned point really has that BLEU, and lies in the returned interval
        assert bleu_at(nbest, weights + result.gamma * direction) == pytest.approx(
            result.bleu
        )
        assert result.interval[0] < result.gamma < result.interval[1]
        grid = [
            bleu_at(nbest, weights + gamma * direction)
            for gamma in np.linspace(-20, 20, 2001)
        ]
        assert max(grid) <= result.bleu + 1e-9
        assert result.bleu >= bleu_at(nbest, weights) - 1e-9


# --------------------------------------------------------------------------
# The optimiser
# --------------------------------------------------------------------------


def oracle_world(
    rng: np.random.Generator, sentences: int, candidates: int, hidden: np.ndarray
):
    """Per sentence, the reference itself plus corrupted copies, with random
    features; the reference's features are shifted along ``hidden`` so that
    the weights ``hidden`` score it highest by a margin of 0.5."""
    references, worlds, oracles = [], [], []
    for _ in range(sentences):
        reference = random_sentence(rng)
        entries = [
            (
                corrupt(rng, reference, int(rng.integers(1, 4))),
                rng.normal(size=len(hidden)),
            )
            for _ in range(candidates - 1)
        ]
        oracle_at = int(rng.integers(candidates))
        oracle_features = rng.normal(size=len(hidden))
        gap = (
            max(features @ hidden for _, features in entries)
            - oracle_features @ hidden
            + 0.5
        )
        oracle_features = oracle_features + max(gap, 0.0) * hidden / (hidden @ hidden)
        entries.insert(oracle_at, (list(reference), oracle_features))
        references.append(reference)
        worlds.append(entries)
        oracles.append(oracle_at)
    return references, worlds, oracles


def test_optimiser_recovers_weights_that_pick_the_oracles() -> None:
    rng = np.random.default_rng(11)
    hidden = np.array([0.6, -0.3, 0.2, 0.5])
    references, worlds, oracles = oracle_world(
        rng, sentences=25, candidates=15, hidden=hidden
    )
    nbest = NBestLists.from_lists(worlds, references)
    oracle_rows = nbest.sentence_starts[:-1] + np.array(oracles)
    start = np.array([0.25, 0.25, 0.25, 0.25])
    assert bleu_at(nbest, start) < 90  # the starting weights pick many wrong hypotheses

    result = optimise_weights(nbest, start, seed=1)
    assert result.bleu == pytest.approx(100.0)
    assert one_best(nbest, result.weights).tolist() == oracle_rows.tolist()
    assert np.abs(result.weights).sum() == pytest.approx(1.0)
    assert result.start_bleu == pytest.approx(bleu_at(nbest, start))


def test_optimiser_is_repeatable_and_never_worse_than_its_start() -> None:
    rng = np.random.default_rng(3)
    nbest = random_nbest(rng, sentences=30, features=5, most=12)
    start = rng.normal(size=5)
    config = OptimiserConfig(random_restarts=2, random_directions=2)
    first = optimise_weights(nbest, start, config=config, seed=7)
    second = optimise_weights(nbest, start, config=config, seed=7)
    assert first.weights.tolist() == second.weights.tolist()
    assert first.bleu >= bleu_at(nbest, start)
    assert first.bleu == pytest.approx(bleu_at(nbest, first.weights))
    # no single line search along an axis improves the result any more
    for axis in range(5):
        direction = np.eye(5)[axis]
        assert (
            line_search(nbest, first.weights, direction).bleu
            <= first.bleu + config.tolerance
        )


def test_random_restarts_escape_local_optima_of_coordinate_ascent() -> None:
    # Without random directions the climb from the given weights uses no
    # randomness, so restarts can only add better end points: never worse,
    # and on most of these small worlds strictly better.
    better = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        nbest = random_nbest(rng, sentences=30, features=4, most=12)
        start = rng.normal(size=4)
        alone = optimise_weights(nbest, start, config=OptimiserConfig(0, 0))
        restarted = optimise_weights(
            nbest, start, config=OptimiserConfig(8, 0), seed=seed
        )
        assert restarted.bleu >= alone.bleu
        better += restarted.bleu > alone.bleu
    assert better >= 3


def test_optimiser_keeps_fixed_weights() -> None:
    rng = np.random.default_rng(4)
    nbest = random_nbest(rng, sentences=20, features=4, most=10)
    start = np.array([0.5, -0.2, 0.7, 0.1])
    fixed = np.array([False, True, False, False])
    result = optimise_weights(
        nbest, start, fixed=fixed, config=OptimiserConfig(random_restarts=2)
    )
    assert result.weights[1] == -0.2  # fixed, and it sets the scale: no normalising
    assert result.bleu >= bleu_at(nbest, start)


def test_normalise_weights() -> None:
    assert normalise_weights(np.array([2.0, -1.0, 1.0])).tolist() == [0.5, -0.25, 0.25]
    fixed = np.array([True, False, False])
    assert normalise_weights(np.array([2.0, -1.0, 1.0]), fixed).tolist() == [
        2.0,
        -1.0,
        1.0,
    ]
    # a fixed weight of 0 does not care about the scale
    fixed_zero = normalise_weights(np.array([0.0, -1.0, 3.0]), fixed)
    assert fixed_zero.tolist() == [0.0, -0.25, 0.75]


# --------------------------------------------------------------------------
# The pool
# --------------------------------------------------------------------------


def test_pool_merges_identical_entries_only_once(tmp_path) -> None:
    pool = HypothesisPool([["a", "b"], ["c"]], feature_count=2)
    first = [
        [(["a", "b"], np.array([1.0, 2.0])), (["a"], np.array([0.0, 1.0]))],
        [(["c"], np.array([3.0, 3.0]))],
    ]
    assert pool.add(first) == 3
    again = [
        [(["a", "b"], np.array([1.0, 2.0])), (["a", "b"], np.array([1.0, 2.5]))],
        [(["c"], np.array([3.0, 3.0])), (["a", "b"], np.array([1.0, 2.0]))],
    ]
    # new: "a b" with other features in sentence 1; "a b" in sentence 2
    assert pool.add(again) == 2
    lists = pool.nbest_lists()
    assert lists.sentence_starts.tolist() == [0, 3, 5]
    assert lists.features[:, 1].tolist() == [2.0, 1.0, 2.5, 3.0, 2.0]

    pool.save(tmp_path / "pool.npz")
    loaded = HypothesisPool.load(
        tmp_path / "pool.npz", [["a", "b"], ["c"]], feature_count=2
    )
    assert loaded.add(again) == 0
    assert loaded.nbest_lists().statistics.tolist() == lists.statistics.tolist()


# --------------------------------------------------------------------------
# The outer loop with a simulated decoder
# --------------------------------------------------------------------------


class HiddenWorld:
    """A decoder stand-in: per sentence a fixed set of candidate translations
    with feature vectors; decoding returns the top ``size`` under the weights."""

    def __init__(
        self, seed: int = 21, sentences: int = 20, candidates: int = 40
    ) -> None:
        rng = np.random.default_rng(seed)
        self.hidden = np.array([0.5, -0.4, 0.3, 0.6])
        self.references, self.worlds, self.oracles = oracle_world(
            rng, sentences, candidates, self.hidden
        )
        self.size = 6
        self.calls = 0

    def __call__(self, weights: np.ndarray):
        self.calls += 1
        nbest = []
        for entries in self.worlds:
            scores = np.array([features @ weights for _, features in entries])
            ranking = np.argsort(-scores, kind="stable")[: self.size]
            nbest.append([(list(entries[i][0]), entries[i][1].copy()) for i in ranking])
        return nbest


INITIAL = [0.1, 0.4, -0.3, 0.2]
NAMES = ["LM", "WordPenalty", "TM", "Distortion"]


def comparable(history) -> list[tuple]:
    return [
        (
            r.iteration,
            r.weights,
            r.dev_bleu,
            r.pool_size,
            r.new_entries,
            r.optimised_weights,
            r.optimised_bleu,
        )
        for r in history
    ]


def test_tune_converges_on_a_hidden_world() -> None:
    world = HiddenWorld()
    result = tune(
        world, world.references, NAMES, INITIAL, max_iterations=15, nbest_size=6, seed=3
    )
    history = result.history
    assert len(history) < 15 and "max_iterations" not in result.stop_reason
    assert history[0].weights == tuple(np.array(INITIAL) / np.abs(INITIAL).sum())
    assert history[0].pool_size == 6 * 20
    # the pool only grows, by exactly the new entries
    for before, after in zip(history, history[1:]):
        assert after.pool_size == before.pool_size + after.new_entries
        assert after.weights == before.optimised_weights
    assert result.bleu == max(record.dev_bleu for record in history)
    # the world has weights that put every reference first, and MERT finds them
    assert history[0].dev_bleu < 70
    assert result.bleu == pytest.approx(100.0)
    # the decoded BLEU is the BLEU of what the world's decoder puts first
    decoded = world(result.weights)
    hypotheses = [entries[0][0] for entries in decoded]
    assert result.bleu == pytest.approx(sacre(hypotheses, world.references))
    assert result.weights_by_name()["LM"] == result.weights[0]


def test_tune_returns_the_decoded_weights_of_the_best_iteration_not_the_last() -> None:
    # Reference "a b c d e". The first decoding, with weights (0.6, 0.4), puts
    # "a b c d x" (features (1, 0), score 0.6; BLEU 100 * (4/5 3/4 2/3 1/2)^(1/4))
    # above the reference itself (features (0, 1), score 0.4). The optimiser then
    # moves the weights so that the reference wins on the pool. The decoder has
    # a search error from then on: it puts "a x c y e" (no 2-gram matches,
    # BLEU 0) first whatever the weights. So the last iteration is the worst,
    # and the result must be the weights decoded in iteration 1.
    references = [["a", "b", "c", "d", "e"]]
    close = (["a", "b", "c", "d", "x"], np.array([1.0, 0.0]))
    perfect = (["a", "b", "c", "d", "e"], np.array([0.0, 1.0]))
    wrong = (["a", "x", "c", "y", "e"], np.array([0.0, 0.0]))
    calls = []

    def decode_nbest(weights):
        calls.append(weights)
        return [[close, perfect]] if len(calls) == 1 else [[wrong, perfect]]

    result = tune(decode_nbest, references, ["f", "g"], [0.6, 0.4], max_iterations=5)
    first_bleu = 100 * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25
    assert [record.dev_bleu for record in result.history] == [
        pytest.approx(first_bleu),
        0.0,
    ]
    assert result.history[0].optimised_bleu == pytest.approx(100.0)
    assert result.best_iteration == 1 and result.bleu == pytest.approx(first_bleu)
    assert result.weights.tolist() == [0.6, 0.4]


def test_tune_is_repeatable_with_a_seed() -> None:
    first = tune(
        HiddenWorld(),
        HiddenWorld().references,
        NAMES,
        INITIAL,
        max_iterations=6,
        nbest_size=6,
        seed=5,
    )
    second = tune(
        HiddenWorld(),
        HiddenWorld().references,
        NAMES,
        INITIAL,
        max_iterations=6,
        nbest_size=6,
        seed=5,
    )
    assert comparable(first.history) == comparable(second.history)
    assert first.weights.tolist() == second.weights.tolist()


class Interrupted(Exception):
    pass


def test_tune_resumes_from_state_dir_with_the_same_result(tmp_path) -> None:
    uninterrupted = tune(
        HiddenWorld(),
        HiddenWorld().references,
        NAMES,
        INITIAL,
        max_iterations=8,
        nbest_size=6,
        seed=2,
    )
    assert (
        len(uninterrupted.history) >= 3
    )  # so that the interruption falls inside the run

    world = HiddenWorld()

    def dies_on_third_call(weights):
        if world.calls == 2:
            raise Interrupted
        return world(weights)

    with pytest.raises(Interrupted):
        tune(
            dies_on_third_call,
            world.references,
            NAMES,
            INITIAL,
            max_iterations=8,
            nbest_size=6,
            seed=2,
            state_dir=tmp_path,
        )
    saved = json.loads((tmp_path / "history.json").read_text())
    assert len(saved["iterations"]) == 2
    assert sorted(p.name for p in tmp_path.glob("pool-*.npz")) == ["pool-002.npz"]

    resumed_world = HiddenWorld()
    resumed = tune(
        resumed_world,
        resumed_world.references,
        NAMES,
        INITIAL,
        max_iterations=8,
        nbest_size=6,
        seed=2,
        state_dir=tmp_path,
    )
    assert resumed_world.calls == len(uninterrupted.history) - 2
    assert comparable(resumed.history) == comparable(uninterrupted.history)
    assert resumed.weights.tolist() == uninterrupted.weights.tolist()
    assert resumed.stop_reason == uninterrupted.stop_reason

    def must_not_decode(weights):
        raise AssertionError("a finished run decodes nothing more")

    finished = tune(
        must_not_decode,
        world.references,
        NAMES,
        INITIAL,
        max_iterations=8,
        nbest_size=6,
        seed=2,
        state_dir=tmp_path,
    )
    assert comparable(finished.history) == comparable(uninterrupted.history)


def test_an_interruption_between_the_two_state_files_loses_one_iteration_only(
    tmp_path, monkeypatch
) -> None:
    # The pool of iteration 2 is written, then the run dies before the history
    # that names it: the state on disk is still that of iteration 1.
    real_atomic_open = tune_module.atomic_open
    history_writes = []

    @contextlib.contextmanager
    def dies_writing_second_history(path, mode="w"):
        if Path(path).name == "history.json":
            history_writes.append(path)
            if len(history_writes) == 2:
                raise Interrupted
        with real_atomic_open(path, mode) as stream:
            yield stream

    monkeypatch.setattr(tune_module, "atomic_open", dies_writing_second_history)
    world = HiddenWorld()
    with pytest.raises(Interrupted):
        tune(
            world,
            world.references,
            NAMES,
            INITIAL,
            max_iterations=8,
            nbest_size=6,
            seed=2,
            state_dir=tmp_path,
        )
    monkeypatch.undo()
    assert len(json.loads((tmp_path / "history.json").read_text())["iterations"]) == 1
    assert sorted(p.name for p in tmp_path.glob("pool-*.npz")) == [
        "pool-001.npz",
        "pool-002.npz",
    ]

    uninterrupted = tune(
        HiddenWorld(),
        world.references,
        NAMES,
        INITIAL,
        max_iterations=8,
        nbest_size=6,
        seed=2,
    )
    resumed = tune(
        HiddenWorld(),
        world.references,
        NAMES,
        INITIAL,
        max_iterations=8,
        nbest_size=6,
        seed=2,
        state_dir=tmp_path,
    )
    assert comparable(resumed.history) == comparable(uninterrupted.history)
    last_pool = f"pool-{len(resumed.history):03d}.npz"
    assert [p.name for p in tmp_path.glob("pool-*.npz")] == [last_pool]


def test_tune_refuses_a_state_dir_of_another_run(tmp_path) -> None:
    world = HiddenWorld()
    tune(
        world,
        world.references,
        NAMES,
        INITIAL,
        max_iterations=1,
        nbest_size=6,
        seed=2,
        state_dir=tmp_path,
    )
    with pytest.raises(MtcError, match="different seed"):
        tune(
            world,
            world.references,
            NAMES,
            INITIAL,
            max_iterations=2,
            nbest_size=6,
            seed=9,
            state_dir=tmp_path,
        )
    (tmp_path / "history.json").write_text("{not json")
    with pytest.raises(MtcError, match="not a MERT state file"):
        tune(
            world,
            world.references,
            NAMES,
            INITIAL,
            max_iterations=2,
            nbest_size=6,
            seed=2,
            state_dir=tmp_path,
        )


def test_tune_keeps_fixed_features() -> None:
    world = HiddenWorld()
    result = tune(
        world,
        world.references,
        NAMES,
        INITIAL,
        max_iterations=4,
        nbest_size=6,
        fixed_features=["TM"],
    )
    for record in result.history:
        assert record.weights[2] == -0.3 and record.optimised_weights[2] == -0.3


def test_tune_reports_bad_decoder_output_and_arguments() -> None:
    world = HiddenWorld()
    with pytest.raises(MtcError, match="20 dev sentences"):
        tune(
            lambda w: world(w)[:-1], world.references, NAMES, INITIAL, max_iterations=2
        )
    with pytest.raises(MtcError, match="dev sentence 1, entry 1"):
        tune(
            lambda w: [[(t, f[:3]) for t, f in e] for e in world(w)],
            world.references,
            NAMES,
            INITIAL,
            max_iterations=2,
        )
    with pytest.raises(MtcError, match="empty n-best list for dev sentence 20"):
        tune(
            lambda w: world(w)[:-1] + [[]],
            world.references,
            NAMES,
            INITIAL,
            max_iterations=2,
        )
    with pytest.raises(MtcError, match="one per"):
        tune(world, world.references, NAMES, INITIAL[:3])
    with pytest.raises(MtcError, match="valid names"):
        tune(world, world.references, NAMES, INITIAL, fixed_features=["LM0"])
    with pytest.raises(MtcError, match="random_restarts"):
        OptimiserConfig(random_restarts=-1)
