"""Minimum error rate training (MERT) of the decoder's log-linear weights.

The decoder picks the translation e of a source sentence f that maximises
``sum_i w_i h_i(e, f)``. MERT (Och 2003, "Minimum Error Rate Training in
Statistical Machine Translation", ACL) chooses the weights w that maximise
corpus BLEU (Papineni et al. 2002) of the decoder's 1-best translations of a
development set. BLEU is a step function of w, so it has no useful gradient;
Och's insight is that along any line through weight space it can be
maximised *exactly*:

1. **Lines.** Move the weights along a direction d: ``w + gamma * d``. The
   score of an n-best entry with feature vector h becomes
   ``h.w + gamma * h.d``, a line in gamma with intercept ``h.w`` and slope
   ``h.d``.
2. **Upper envelope.** For each sentence, the decoder's choice at gamma is
   the line on top there. Sorted by slope, the lines on top form the upper
   envelope; between two of its breakpoints the chosen hypothesis stays the
   same. A line is on the envelope exactly when the point (slope, intercept)
   lies on the upper convex hull of all the points (the usual point-line
   duality; de Berg et al., *Computational Geometry*, 3rd ed., sec. 11.4).
   We find the hulls of all sentences at once, in slope order, by quickhull
   (Eddy 1977, "A new convex hull algorithm for planar sets", ACM TOMS 3(4)):
   split every hull edge found so far at the point farthest above it, until
   no point is above any edge. Each round is a few numpy passes over all
   n-best entries of the dev set, which is what makes a line search take
   milliseconds instead of a Python loop over every entry.
3. **Sweep.** Every breakpoint changes one sentence's hypothesis and so
   changes the corpus BLEU statistics by a known difference. Sorting the
   breakpoints of all sentences and adding up the differences gives the
   statistics, hence the BLEU, of every gamma interval; the line search
   returns the middle of the best interval (Och 2003, sec. 6).
4. **Directions.** The optimiser repeats line searches along every feature
   axis and along random directions (Cer, Jurafsky & Manning 2008,
   "Regularization and Search for Minimum Error Rate Training", WMT), from
   the current weights and from random starting points (Bertoldi, Haddow &
   Fouet 2009, "Improved Minimum Error Rate Training in Moses", PBML 91),
   until no line search improves BLEU by more than a tolerance.
5. **Outer loop.** The n-best lists only cover what the decoder produced
   under the old weights, so :func:`tune` decodes again with the optimised
   weights, merges the new n-best lists into a pool with all earlier ones
   (Och 2003, sec. 7) and optimises again, until the weights stop changing or
   the decoder produces nothing new.

Conventions, stated once:

* BLEU is on sacreBLEU's 0-100 scale, computed from summed sufficient
  statistics against one tokenised reference, with no smoothing: 0 when any
  n-gram precision is 0.
* Weights are normalised to L1 norm 1 after every move, as Moses does:
  multiplying all weights by a positive number changes no decision, so
  this only fixes the scale. When some features are fixed at a non-zero
  weight, those fixed weights set the scale and nothing is normalised.
* Ties: among n-best entries with equal scores, the one listed first wins
  (the decoder's own order, then the order in which entries entered the
  pool). Among gamma intervals with equal BLEU the one nearest the current
  weights (gamma = 0) wins, so a line search never moves without reason.
  Intervals narrower than ``MIN_INTERVAL_WIDTH`` are never chosen: there the
  1-best is decided by rounding, and a weight vector inside such a sliver
  would not carry over to new n-best lists.
* An unbounded best interval (the first or the last) has no middle; the
  line search steps ``UNBOUNDED_STEP`` beyond its finite end, one unit of
  L1-normalised weight (a direction is also scaled to L1 norm 1).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from mtcompare.errors import MtcError
from mtcompare.fileio import atomic_open
from mtcompare.progress import format_duration

logger = logging.getLogger(__name__)

MAX_ORDER = 4  # BLEU-4 (Papineni et al. 2002)
# Columns of a BLEU statistics vector: clipped matches of n = 1..4, n-gram
# totals of n = 1..4, hypothesis length, reference length.
MATCHES = slice(0, MAX_ORDER)
TOTALS = slice(MAX_ORDER, 2 * MAX_ORDER)
HYPOTHESIS_LENGTH = 2 * MAX_ORDER
REFERENCE_LENGTH = 2 * MAX_ORDER + 1
STATISTICS_SIZE = 2 * MAX_ORDER + 2

# gamma intervals narrower than this are never chosen (see "Ties" above)
MIN_INTERVAL_WIDTH = 1e-9
# how far past its finite end a line search goes into an unbounded interval
UNBOUNDED_STEP = 1.0

STATE_FILE = "history.json"
STATE_FORMAT = "mtcompare-mert-1"

NBestEntry = tuple[Sequence[str], np.ndarray]
DecodeNBest = Callable[[np.ndarray], Sequence[Sequence[NBestEntry]]]


# --------------------------------------------------------------------------
# BLEU from sufficient statistics
# --------------------------------------------------------------------------


def ngram_counts(tokens: Sequence[str]) -> Counter[tuple[str, ...]]:
    """Counts of every n-gram of ``tokens`` for n = 1..4, keyed by the n-gram."""
    counts: Counter[tuple[str, ...]] = Counter()
    for order in range(1, MAX_ORDER + 1):
        # zipping the tokens with themselves shifted by 1..order-1 gives the n-grams
        counts.update(zip(*(tokens[shift:] for shift in range(order))))
    return counts


def bleu_statistics(hypothesis: Sequence[str], reference: Sequence[str]) -> np.ndarray:
    """The BLEU sufficient statistics of one hypothesis against one reference.

    Returns an int64 vector of ``STATISTICS_SIZE``: clipped n-gram matches for
    n = 1..4, n-gram totals for n = 1..4, hypothesis length, reference length.
    """
    return _statistics_against(hypothesis, ngram_counts(reference), len(reference))


def _statistics_against(
    hypothesis: Sequence[str],
    reference_counts: Counter[tuple[str, ...]],
    reference_length: int,
) -> np.ndarray:
    matches = [0] * MAX_ORDER
    for ngram, count in ngram_counts(hypothesis).items():
        # a Counter answers 0 for an n-gram the reference lacks
        matches[len(ngram) - 1] += min(count, reference_counts[ngram])
    totals = [max(len(hypothesis) - order + 1, 0) for order in range(1, MAX_ORDER + 1)]
    return np.array(
        matches + totals + [len(hypothesis), reference_length], dtype=np.int64
    )


def bleu_from_statistics(statistics: np.ndarray) -> np.ndarray:
    """Corpus BLEU (0-100) of summed statistics, for every row of ``statistics``.

    ``statistics`` has shape (..., STATISTICS_SIZE); the result has shape
    (...). BLEU is the geometric mean of the four n-gram precisions times the
    brevity penalty ``min(1, exp(1 - reference length / hypothesis length))``,
    and 0 when any precision is 0 (sacreBLEU with ``smooth_method="none"``).
    """
    statistics = np.asarray(statistics, dtype=np.float64)
    matches = statistics[..., MATCHES]
    totals = statistics[..., TOTALS]
    hypothesis_length = statistics[..., HYPOTHESIS_LENGTH]
    reference_length = statistics[..., REFERENCE_LENGTH]
    scorable = (matches > 0).all(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_precision = np.log(matches) - np.log(totals)  # -inf where nothing matches
        log_brevity = np.minimum(0.0, 1.0 - reference_length / hypothesis_length)
        log_bleu = log_precision.mean(axis=-1) + log_brevity
    return np.where(scorable, 100.0 * np.exp(np.where(scorable, log_bleu, 0.0)), 0.0)


# --------------------------------------------------------------------------
# N-best lists as flat arrays
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class SentenceLayout:
    """Where each sentence's rows are in the flat n-best arrays."""

    starts: np.ndarray  # sentences + 1: rows of sentence s are starts[s]:starts[s + 1]
    sentence_ids: np.ndarray  # entries: the sentence of each row
    positions: np.ndarray  # entries: the row's place within its sentence

    @classmethod
    def from_starts(cls, starts: Sequence[int] | np.ndarray) -> SentenceLayout:
        starts = np.asarray(starts, dtype=np.int64)
        counts = np.diff(starts)
        if len(starts) < 2 or starts[0] != 0 or (counts <= 0).any():
            raise MtcError(
                "sentence starts must run upwards from 0 and give every sentence at least "
                f"one n-best entry, got {starts.tolist()[:10]}"
            )
        sentence_ids = np.repeat(np.arange(len(counts)), counts)
        return cls(starts, sentence_ids, np.arange(starts[-1]) - starts[sentence_ids])

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.starts)


@dataclass
class NBestLists:
    """The n-best lists of a dev set as flat arrays, one sentence after the other.

    The entries of sentence s are rows ``sentence_starts[s]:sentence_starts[s + 1]``;
    every sentence has at least one entry.
    """

    features: np.ndarray  # entries x features, float64
    statistics: np.ndarray  # entries x STATISTICS_SIZE, int64 BLEU statistics
    sentence_starts: np.ndarray  # sentences + 1, int64
    layout: SentenceLayout = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float64)
        self.statistics = np.asarray(self.statistics, dtype=np.int64)
        self.sentence_starts = np.asarray(self.sentence_starts, dtype=np.int64)
        entries = len(self.features)
        if self.features.ndim != 2 or self.statistics.shape != (
            entries,
            STATISTICS_SIZE,
        ):
            raise MtcError(
                f"n-best arrays disagree: features {self.features.shape}, statistics "
                f"{self.statistics.shape}; give entries x features and entries x {STATISTICS_SIZE}"
            )
        if self.sentence_starts[-1:].tolist() != [entries]:
            raise MtcError(
                f"sentence_starts must end at the number of entries, {entries:,}"
            )
        self.layout = SentenceLayout.from_starts(self.sentence_starts)

    @property
    def sentence_ids(self) -> np.ndarray:
        return self.layout.sentence_ids

    @property
    def sentence_count(self) -> int:
        return len(self.sentence_starts) - 1

    @property
    def feature_count(self) -> int:
        return self.features.shape[1]

    @classmethod
    def from_lists(
        cls,
        nbest_lists: Sequence[Sequence[NBestEntry]],
        references: Sequence[Sequence[str]],
    ) -> NBestLists:
        """Flatten per-sentence lists of (tokens, feature vector), keeping every entry."""
        if len(nbest_lists) != len(references):
            raise MtcError(
                f"{len(nbest_lists):,} n-best lists for {len(references):,} references; "
                "give one n-best list per dev sentence"
            )
        features, statistics, starts = [], [], [0]
        for sentence, (entries, reference) in enumerate(zip(nbest_lists, references)):
            if not entries:
                raise MtcError(
                    f"the n-best list of dev sentence {sentence + 1} is empty"
                )
            reference_counts = ngram_counts(reference)
            for tokens, vector in entries:
                features.append(np.asarray(vector, dtype=np.float64))
                statistics.append(
                    _statistics_against(tokens, reference_counts, len(reference))
                )
            starts.append(len(features))
        return cls(np.stack(features), np.stack(statistics), np.array(starts))


def one_best(nbest: NBestLists, weights: np.ndarray) -> np.ndarray:
    """Row of the highest-scoring entry of every sentence (the first of equals)."""
    scores = nbest.features @ np.asarray(weights, dtype=np.float64)  # entries
    return _one_best_by_score(nbest, scores)


def _one_best_by_score(nbest: NBestLists, scores: np.ndarray) -> np.ndarray:
    best_scores = np.maximum.reduceat(scores, nbest.sentence_starts[:-1])  # sentences
    is_best = scores == best_scores[nbest.sentence_ids]
    return _first_in_each_group(np.flatnonzero(is_best), nbest.sentence_ids)


def bleu_at(nbest: NBestLists, weights: np.ndarray) -> float:
    """Corpus BLEU of the entries that ``weights`` put on top."""
    return _bleu_of_rows(nbest, one_best(nbest, weights))


def _bleu_of_rows(nbest: NBestLists, rows: np.ndarray) -> float:
    return float(bleu_from_statistics(nbest.statistics[rows].sum(axis=0)))


def _first_in_each_group(positions: np.ndarray, group_of: np.ndarray) -> np.ndarray:
    """The first of ``positions`` (ascending) in each group, ``group_of[position]``."""
    groups = group_of[positions]
    first = np.ones(len(positions), dtype=bool)
    first[1:] = groups[1:] != groups[:-1]
    return positions[first]


# --------------------------------------------------------------------------
# Upper envelopes of score lines
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class SlopeOrder:
    """Entries sorted by (sentence, slope), with the start of each run of equal slopes.

    It depends only on the slopes, so the optimiser computes it once per
    feature axis (where the slopes are that feature's values) and reuses it.
    """

    order: np.ndarray  # entries: row numbers in (sentence, slope) order
    run_starts: (
        np.ndarray
    )  # runs: position in ``order`` where a run of equal slopes begins


def sort_by_slope(slopes: np.ndarray, layout: SentenceLayout) -> SlopeOrder:
    """Sort every sentence's rows by slope.

    The slopes go into a sentences x longest-list grid padded with +inf and
    each grid row is sorted on its own, which is several times faster than
    one sort of all entries by (sentence, slope). Equal slopes come in no
    particular order; :func:`_highest_of_each_slope` settles their ties.
    """
    counts = layout.counts
    grid = np.full((len(counts), counts.max()), np.inf)  # sentences x longest list
    grid[layout.sentence_ids, layout.positions] = slopes
    within = np.argsort(grid, axis=1)  # sentences x longest list; padding last
    order = (within + layout.starts[:-1, None])[within < counts[:, None]]
    sorted_slopes = slopes[order]
    new_run = np.ones(len(order), dtype=bool)
    new_run[1:] = sorted_slopes[1:] != sorted_slopes[:-1]
    new_run[layout.starts[:-1]] = True
    return SlopeOrder(order, np.flatnonzero(new_run))


@dataclass(frozen=True)
class Envelopes:
    """The upper envelope of every sentence's score lines, left to right.

    Line k is on top of its sentence from ``starts[k]`` to the start of the
    next line of the same sentence (or to +infinity).
    """

    rows: np.ndarray  # lines: n-best row of each line on an envelope
    sentence_ids: np.ndarray  # lines
    starts: (
        np.ndarray
    )  # lines: gamma from which it is on top; -inf for a sentence's first line


def upper_envelopes(
    intercepts: np.ndarray,
    slopes: np.ndarray,
    sentence_starts: Sequence[int] | np.ndarray,
) -> Envelopes:
    """For each sentence, the lines ``intercepts + gamma * slopes`` that are on top somewhere.

    The rows of sentence s are ``sentence_starts[s]:sentence_starts[s + 1]``.
    A line that is on top only at a single gamma (where it passes through a
    breakpoint of two others) is not part of the envelope; of identical
    lines, the first row is.
    """
    layout = SentenceLayout.from_starts(sentence_starts)
    intercepts = np.asarray(intercepts, dtype=np.float64)
    slopes = np.asarray(slopes, dtype=np.float64)
    return _envelopes(intercepts, slopes, layout, sort_by_slope(slopes, layout))


def _envelopes(
    intercepts: np.ndarray,
    slopes: np.ndarray,
    layout: SentenceLayout,
    slope_order: SlopeOrder,
) -> Envelopes:
    candidates = _highest_of_each_slope(intercepts, slope_order)  # rows, in slope order
    x, y, ids = (
        slopes[candidates],
        intercepts[candidates],
        layout.sentence_ids[candidates],
    )
    on_hull = _upper_hull(x, y, ids)

    x, y, ids = x[on_hull], y[on_hull], ids[on_hull]
    starts = np.full(len(x), -np.inf)
    same_sentence = ids[1:] == ids[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        # where the next line of the envelope overtakes the previous one
        crossings = (y[:-1] - y[1:]) / (x[1:] - x[:-1])
    starts[1:][same_sentence] = crossings[same_sentence]
    return Envelopes(candidates[on_hull], ids, starts)


def _highest_of_each_slope(
    intercepts: np.ndarray, slope_order: SlopeOrder
) -> np.ndarray:
    """Of lines with equal slope only the highest can be on top; of equals, the first row."""
    order, run_starts = slope_order.order, slope_order.run_starts
    if len(run_starts) == len(order):  # all slopes differ: nothing to choose
        return order
    sorted_intercepts = intercepts[order]
    run_highest = np.maximum.reduceat(sorted_intercepts, run_starts)  # runs
    run_of = np.repeat(
        np.arange(len(run_starts)), np.diff(np.append(run_starts, len(order)))
    )
    highest_rows = np.where(sorted_intercepts == run_highest[run_of], order, len(order))
    return np.minimum.reduceat(highest_rows, run_starts)


def _upper_hull(x: np.ndarray, y: np.ndarray, sentence_ids: np.ndarray) -> np.ndarray:
    """Mask of the points on the upper convex hull of each sentence (quickhull).

    The points are sorted by sentence, then by strictly increasing x. A
    sentence's leftmost, rightmost and (leftmost) highest points are on its
    hull; each round, in every gap between two hull points found so far, the
    point farthest above the chord joining them joins the hull, and points on
    or below the chord are dropped for good. A round never mixes sentences,
    because every sentence begins and ends with a hull point.
    """
    boundary = np.ones(len(x), dtype=bool)
    boundary[1:] = sentence_ids[1:] != sentence_ids[:-1]
    on_hull = boundary | np.roll(boundary, -1)  # first and last of each sentence
    sentence_highest = np.maximum.reduceat(y, np.flatnonzero(boundary))  # sentences
    highest = np.flatnonzero(y == sentence_highest[np.cumsum(boundary) - 1])
    on_hull[_first_in_each_group(highest, sentence_ids)] = True
    alive = np.arange(len(x))  # points not yet ruled out
    while not on_hull[alive].all():
        hull_here = on_hull[alive]
        positions = np.arange(len(alive))
        left = np.maximum.accumulate(np.where(hull_here, positions, 0))
        right = np.minimum.accumulate(np.where(hull_here, positions, len(alive))[::-1])[
            ::-1
        ]
        px, py = x[alive], y[alive]
        left_x, left_y = px[left], py[left]
        # twice the area of triangle (left, right, point): > 0 when above the chord
        height = (px[right] - left_x) * (py - left_y) - (py[right] - left_y) * (
            px - left_x
        )
        above = ~hull_here & (height > 0)

        above_positions = np.flatnonzero(above)
        if len(above_positions):
            gap = left[above_positions]
            gap_starts = np.flatnonzero(np.append(True, gap[1:] != gap[:-1]))
            gap_highest = np.maximum.reduceat(height[above_positions], gap_starts)
            gap_of = np.repeat(gap_highest, np.diff(np.append(gap_starts, len(gap))))
            farthest = above_positions[height[above_positions] == gap_of]
            on_hull[alive[_first_in_each_group(farthest, left)]] = True
        alive = alive[hull_here | above]
    return on_hull


# --------------------------------------------------------------------------
# The exact line search
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class LineSearchResult:
    """The best point on the line ``weights + gamma * direction``."""

    gamma: float
    bleu: float  # corpus BLEU of the 1-best at that gamma
    interval: tuple[float, float]  # the gamma interval of that BLEU (may be unbounded)


def line_search(
    nbest: NBestLists,
    weights: np.ndarray,
    direction: np.ndarray,
    nonnegative: np.ndarray | None = None,
) -> LineSearchResult:
    """Maximise corpus BLEU exactly along ``weights + gamma * direction`` (Och 2003, sec. 6).

    ``nonnegative`` (a boolean mask) limits gamma to where those weights stay >= 0.
    """
    weights = np.asarray(weights, dtype=np.float64)
    direction = np.asarray(direction, dtype=np.float64)
    intercepts = nbest.features @ weights  # entries
    slopes = nbest.features @ direction  # entries
    bounds = feasible_gammas(weights, direction, nonnegative)
    return _line_search(nbest, intercepts, slopes, None, bounds)


def feasible_gammas(
    weights: np.ndarray, direction: np.ndarray, nonnegative: np.ndarray | None
) -> tuple[float, float]:
    """The gamma range in which ``weights + gamma * direction`` keeps the
    ``nonnegative`` weights at or above zero (the whole line without a mask)."""
    low, high = -math.inf, math.inf
    if nonnegative is None:
        return low, high
    for weight, step in zip(weights[nonnegative], direction[nonnegative]):
        if step > 0:
            low = max(low, -weight / step)
        elif step < 0:
            high = min(high, -weight / step)
    return low, high


def _line_search(
    nbest: NBestLists,
    intercepts: np.ndarray,
    slopes: np.ndarray,
    slope_order: SlopeOrder | None,
    bounds: tuple[float, float] = (-math.inf, math.inf),
) -> LineSearchResult:
    if slope_order is None:
        slope_order = sort_by_slope(slopes, nbest.layout)
    envelopes = _envelopes(intercepts, slopes, nbest.layout, slope_order)
    lower, upper, statistics = _interval_statistics(envelopes, nbest.statistics)
    return _best_interval(lower, upper, bleu_from_statistics(statistics), bounds)


def _interval_statistics(
    envelopes: Envelopes, statistics: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Corpus statistics on every interval between the merged breakpoints of all sentences.

    Returns the lower and upper ends of the intervals, left to right, and
    their statistics (intervals x STATISTICS_SIZE).
    """
    line_statistics = statistics[envelopes.rows]  # lines x STATISTICS_SIZE
    ids = envelopes.sentence_ids
    first = np.append(
        True, ids[1:] != ids[:-1]
    )  # each sentence's line at gamma -> -infinity
    leftmost = line_statistics[first].sum(axis=0)

    # at each breakpoint one sentence trades the line before for the line after
    changes = line_statistics[1:][~first[1:]] - line_statistics[:-1][~first[1:]]
    breakpoints = envelopes.starts[~first]
    order = np.argsort(breakpoints, kind="stable")
    breakpoints, changes = breakpoints[order], changes[order]

    interval_statistics = np.vstack([leftmost, leftmost + np.cumsum(changes, axis=0)])
    lower = np.append(-np.inf, breakpoints)
    upper = np.append(breakpoints, np.inf)
    return lower, upper, interval_statistics


def _best_interval(
    lower: np.ndarray,
    upper: np.ndarray,
    bleu: np.ndarray,
    bounds: tuple[float, float] = (-math.inf, math.inf),
) -> LineSearchResult:
    """The interval of highest BLEU within ``bounds``; of equals, the one nearest gamma = 0.

    Intervals are cut to ``bounds`` first; gamma = 0 is always inside them
    (the current weights are feasible), so some interval always remains.
    """
    lower, upper = np.maximum(lower, bounds[0]), np.minimum(upper, bounds[1])
    eligible = (upper - lower) > MIN_INTERVAL_WIDTH  # the unbounded ends always are
    if not eligible.any():  # a feasible range narrower than any interval: stay
        eligible = (lower <= 0) & (upper >= 0)
    best_bleu = bleu[eligible].max()
    distance = np.where(lower > 0, lower, np.where(upper < 0, -upper, 0.0))
    ties = np.flatnonzero(eligible & (bleu == best_bleu))
    chosen = ties[np.argmin(distance[ties])]
    low, high = float(lower[chosen]), float(upper[chosen])
    return LineSearchResult(_point_inside(low, high), float(best_bleu), (low, high))


def _point_inside(low: float, high: float) -> float:
    """The middle of a bounded interval; ``UNBOUNDED_STEP`` past the end of an unbounded one."""
    if math.isinf(low) and math.isinf(high):
        return 0.0
    if math.isinf(low):
        return high - UNBOUNDED_STEP
    if math.isinf(high):
        return low + UNBOUNDED_STEP
    return (low + high) / 2


# --------------------------------------------------------------------------
# The optimiser: line searches along axes and random directions
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class OptimiserConfig:
    """How hard :func:`optimise_weights` searches."""

    random_restarts: int = 5  # random starting points besides the given weights
    random_directions: int = 5  # per round, besides one line search per free feature
    tolerance: float = 1e-6  # BLEU points a move must gain to count as an improvement

    def __post_init__(self) -> None:
        problems = []
        if self.random_restarts < 0:
            problems.append(f"random_restarts must be >= 0, got {self.random_restarts}")
        if self.random_directions < 0:
            problems.append(
                f"random_directions must be >= 0, got {self.random_directions}"
            )
        if not self.tolerance >= 0:
            problems.append(f"tolerance must be >= 0 BLEU points, got {self.tolerance}")
        if problems:
            raise MtcError("invalid MERT optimiser settings: " + "; ".join(problems))


@dataclass(frozen=True)
class OptimisationResult:
    """What :func:`optimise_weights` found on a fixed set of n-best lists."""

    weights: np.ndarray
    bleu: float  # corpus BLEU of the n-best entries the weights put on top
    start_bleu: float  # the same for the given starting weights
    line_searches: int
    seconds: float


def normalise_weights(
    weights: np.ndarray, fixed: np.ndarray | None = None
) -> np.ndarray:
    """Scale ``weights`` to L1 norm 1, unless a fixed feature's non-zero weight sets the scale."""
    weights = np.asarray(weights, dtype=np.float64)
    norm = np.abs(weights).sum()
    if norm == 0 or (fixed is not None and (weights[fixed] != 0).any()):
        return weights.copy()
    return weights / norm


def optimise_weights(
    nbest: NBestLists,
    initial_weights: np.ndarray,
    *,
    fixed: np.ndarray | None = None,
    nonnegative: np.ndarray | None = None,
    config: OptimiserConfig = OptimiserConfig(),
    seed: int | Sequence[int] = 0,
) -> OptimisationResult:
    """The weights of highest corpus BLEU on ``nbest`` that the search finds.

    Climbs from ``initial_weights`` and from ``config.random_restarts`` random
    points (free weights uniform in [-1, 1]) and returns the best end point;
    the given weights win ties. ``fixed`` is a boolean mask of features whose
    weights never change, ``nonnegative`` one of features whose weights stay
    at or above zero (random starts draw those from [0, 1]). Randomness comes
    from ``numpy.random.default_rng(seed)``.
    """
    began = time.monotonic()
    initial = np.asarray(initial_weights, dtype=np.float64)
    if initial.shape != (nbest.feature_count,):
        raise MtcError(
            f"{initial.size} initial weights for {nbest.feature_count} features; "
            "give one per feature"
        )
    fixed = (
        np.zeros(len(initial), dtype=bool)
        if fixed is None
        else np.asarray(fixed, dtype=bool)
    )
    nonnegative = (
        np.zeros(len(initial), dtype=bool)
        if nonnegative is None
        else np.asarray(nonnegative, dtype=bool)
    )
    if (initial[nonnegative] < 0).any():
        raise MtcError(
            "initial weights break their own constraint: features kept non-negative "
            "start negative; start from weights at or above zero"
        )
    rng = np.random.default_rng(seed)
    climber = _HillClimber(nbest, fixed, config, rng, nonnegative)
    starts = [normalise_weights(initial, fixed)]
    starts += [
        _random_start(initial, fixed, rng, nonnegative)
        for _ in range(config.random_restarts)
    ]

    best_weights, best_bleu = starts[0], -1.0
    start_bleu = bleu_at(nbest, starts[0])
    for number, start in enumerate(starts, start=1):
        weights, bleu = climber.climb(start)
        logger.debug(
            "MERT start %d/%d: pool BLEU %.4f -> %.4f",
            number,
            len(starts),
            bleu_at(nbest, start),
            bleu,
        )
        if bleu > best_bleu:
            best_weights, best_bleu = weights, bleu
    seconds = time.monotonic() - began
    logger.info(
        "optimised %d weights on %s n-best entries of %s sentences: BLEU %.2f -> %.2f, "
        "%d starts, %s line searches in %.1f s (%.0f line searches/s)",
        int((~fixed).sum()),
        f"{len(nbest.features):,}",
        f"{nbest.sentence_count:,}",
        start_bleu,
        best_bleu,
        len(starts),
        f"{climber.line_searches:,}",
        seconds,
        climber.line_searches / max(seconds, 1e-9),
    )
    return OptimisationResult(
        best_weights, best_bleu, start_bleu, climber.line_searches, seconds
    )


def _random_start(
    initial: np.ndarray,
    fixed: np.ndarray,
    rng: np.random.Generator,
    nonnegative: np.ndarray,
) -> np.ndarray:
    start = initial.copy()
    start[~fixed] = rng.uniform(-1.0, 1.0, size=int((~fixed).sum()))
    start[nonnegative & ~fixed] = np.abs(start[nonnegative & ~fixed])
    return normalise_weights(start, fixed)


class _HillClimber:
    """Line searches from a point until none of them improves BLEU.

    A round tries every free feature axis, then ``random_directions`` random
    directions (drawn afresh each round), and moves at once along each one
    that improves BLEU by more than the tolerance. Och (2003) and Moses move
    only along the best direction of a round; moving at once needs fewer line
    searches per move. Either way the climb ends where no axis and none of
    the round's random directions improves BLEU.
    """

    def __init__(
        self,
        nbest: NBestLists,
        fixed: np.ndarray,
        config: OptimiserConfig,
        rng: np.random.Generator,
        nonnegative: np.ndarray | None = None,
    ) -> None:
        self.nbest = nbest
        self.fixed = fixed
        self.nonnegative = nonnegative
        self.config = config
        self.rng = rng
        self.line_searches = 0
        self._axis_orders: dict[int, SlopeOrder] = {}

    def climb(self, start: np.ndarray) -> tuple[np.ndarray, float]:
        weights = start
        intercepts = self.nbest.features @ weights  # entries
        bleu = _bleu_of_rows(self.nbest, _one_best_by_score(self.nbest, intercepts))
        improved = True
        while improved:
            improved = False
            for direction, slopes, slope_order in self._directions():
                bounds = feasible_gammas(weights, direction, self.nonnegative)
                result = _line_search(
                    self.nbest, intercepts, slopes, slope_order, bounds
                )
                self.line_searches += 1
                if result.bleu <= bleu + self.config.tolerance:
                    continue
                moved = normalise_weights(
                    weights + result.gamma * direction, self.fixed
                )
                moved_intercepts = self.nbest.features @ moved  # entries
                moved_bleu = _bleu_of_rows(
                    self.nbest, _one_best_by_score(self.nbest, moved_intercepts)
                )
                if moved_bleu <= bleu + self.config.tolerance:
                    # the interval was so narrow that rounding moved the 1-best
                    continue
                weights, intercepts, bleu = moved, moved_intercepts, moved_bleu
                improved = True
        return weights, bleu

    def _directions(self) -> Iterator[tuple[np.ndarray, np.ndarray, SlopeOrder | None]]:
        """(direction, slope of every entry, their sort order when known) for one round."""
        free = np.flatnonzero(~self.fixed)
        if len(free) == 0:
            return
        for axis in free:
            direction = np.zeros(len(self.fixed))
            direction[axis] = 1.0
            slopes = self.nbest.features[:, axis]
            if axis not in self._axis_orders:
                self._axis_orders[axis] = sort_by_slope(slopes, self.nbest.layout)
            yield direction, slopes, self._axis_orders[axis]
        for _ in range(self.config.random_directions):
            direction = np.zeros(len(self.fixed))
            direction[free] = self.rng.standard_normal(
                len(free)
            )  # Gaussian: every direction equally likely
            direction /= np.abs(direction).sum()
            yield direction, self.nbest.features @ direction, None


# --------------------------------------------------------------------------
# The pool of n-best entries of all iterations
# --------------------------------------------------------------------------


class HypothesisPool:
    """Every distinct n-best entry the decoder produced in any iteration, per dev sentence.

    An entry is the same as an earlier one when its words and its feature
    vector are identical; it is then not added again. Entries are identified
    by a 128-bit digest of both, so a saved pool needs no words.
    """

    def __init__(self, references: Sequence[Sequence[str]], feature_count: int) -> None:
        self.references = [list(reference) for reference in references]
        self.feature_count = feature_count
        self._reference_counts = [
            ngram_counts(reference) for reference in self.references
        ]
        self._seen: list[set[bytes]] = [set() for _ in self.references]
        self._digests: list[bytes] = []
        self._features = np.zeros((0, feature_count))
        self._statistics = np.zeros((0, STATISTICS_SIZE), dtype=np.int64)
        self._sentence_ids = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._digests)

    def add(self, nbest_lists: Sequence[Sequence[NBestEntry]]) -> int:
        """Add the entries not seen before; returns how many were new."""
        features, statistics, sentence_ids = [], [], []
        for sentence, entries in enumerate(nbest_lists):
            for tokens, vector in entries:
                digest = _entry_digest(tokens, vector)
                if digest in self._seen[sentence]:
                    continue
                self._seen[sentence].add(digest)
                self._digests.append(digest)
                features.append(vector)
                statistics.append(self.statistics_of(sentence, tokens))
                sentence_ids.append(sentence)
        if features:
            self._features = np.vstack([self._features, np.stack(features)])
            self._statistics = np.vstack([self._statistics, np.stack(statistics)])
            self._sentence_ids = np.append(self._sentence_ids, sentence_ids)
        return len(features)

    def statistics_of(self, sentence: int, tokens: Sequence[str]) -> np.ndarray:
        """BLEU statistics of ``tokens`` against the reference of ``sentence``."""
        reference_length = len(self.references[sentence])
        return _statistics_against(
            tokens, self._reference_counts[sentence], reference_length
        )

    def nbest_lists(self) -> NBestLists:
        """The pool sentence by sentence; within a sentence, in the order entries arrived."""
        order = np.argsort(self._sentence_ids, kind="stable")
        counts = np.bincount(self._sentence_ids, minlength=len(self.references))
        starts = np.append(0, np.cumsum(counts))
        return NBestLists(self._features[order], self._statistics[order], starts)

    def save(self, path: Path) -> None:
        """Write the pool atomically as a .npz file."""
        digests = np.frombuffer(b"".join(self._digests), dtype=np.uint8).reshape(-1, 16)
        with atomic_open(path, "wb") as stream:
            np.savez(
                stream,
                features=self._features,
                statistics=self._statistics,
                sentence_ids=self._sentence_ids,
                digests=digests,
            )

    @classmethod
    def load(
        cls, path: Path, references: Sequence[Sequence[str]], feature_count: int
    ) -> HypothesisPool:
        """Read a pool written by :meth:`save` for the same references."""
        try:
            with np.load(path, allow_pickle=False) as arrays:
                features, statistics = arrays["features"], arrays["statistics"]
                sentence_ids, digests = arrays["sentence_ids"], arrays["digests"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise MtcError(
                f"{path}: not a MERT pool file ({error}); delete the state directory "
                "to start the tuning afresh"
            ) from None
        entries = len(sentence_ids)
        if (
            features.shape != (entries, feature_count)
            or statistics.shape != (entries, STATISTICS_SIZE)
            or digests.shape != (entries, 16)
            or (sentence_ids >= len(references)).any()
        ):
            raise MtcError(
                f"{path}: the pool does not fit {feature_count} features and "
                f"{len(references):,} dev sentences; use the state directory of this run"
            )
        pool = cls(references, feature_count)
        pool._features, pool._statistics, pool._sentence_ids = (
            features,
            statistics,
            sentence_ids,
        )
        pool._digests = [row.tobytes() for row in digests]
        for sentence, digest in zip(sentence_ids, pool._digests):
            pool._seen[sentence].add(digest)
        return pool


def _entry_digest(tokens: Sequence[str], vector: np.ndarray) -> bytes:
    words = " ".join(tokens).encode("utf-8")
    values = np.asarray(vector, dtype="<f8").tobytes()
    return hashlib.blake2b(words + b"\0" + values, digest_size=16).digest()


# --------------------------------------------------------------------------
# The outer loop: decode, merge, optimise
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class IterationRecord:
    """One iteration of :func:`tune`."""

    iteration: int  # from 1
    weights: tuple[float, ...]  # the weights the decoder ran with
    dev_bleu: float  # BLEU of the decoder's 1-best translations under them
    pool_size: int  # entries in the pool after merging this iteration's n-best lists
    new_entries: int  # of which new in this iteration
    optimised_weights: tuple[float, ...]  # the optimiser's result on the pool
    optimised_bleu: float  # their BLEU on the pool
    decode_seconds: float
    seconds: float  # decoding plus merging and optimising


@dataclass(frozen=True)
class TuningResult:
    """The outcome of :func:`tune`."""

    feature_names: list[str]
    weights: np.ndarray  # the decoded weights of highest dev BLEU
    bleu: float  # that dev BLEU
    best_iteration: int
    stop_reason: str
    history: list[IterationRecord]

    def weights_by_name(self) -> dict[str, float]:
        return dict(zip(self.feature_names, map(float, self.weights)))


def tune(
    decode_nbest: DecodeNBest,
    references: Sequence[Sequence[str] | str],
    feature_names: Sequence[str],
    initial_weights: Sequence[float] | np.ndarray,
    *,
    max_iterations: int = 25,
    nbest_size: int = 100,
    seed: int = 0,
    state_dir: str | Path | None = None,
    fixed_features: Sequence[str] = (),
    nonnegative_features: Sequence[str] = (),
    optimiser: OptimiserConfig = OptimiserConfig(),
    weight_tolerance: float = 1e-5,
) -> TuningResult:
    """Tune the log-linear weights of a decoder by MERT on a dev set.

    ``decode_nbest(weights)`` translates the dev set with ``weights`` (in the
    order of ``feature_names``) and returns, per dev sentence and best first,
    up to ``nbest_size`` entries ``(tokens, feature vector)``; longer lists
    are cut. ``references`` are the tokenised references (a string is split
    on spaces). The first iteration decodes with ``initial_weights``
    normalised; each later one with the weights optimised on the pool of all
    n-best entries so far. Tuning stops when no new entry entered the pool,
    when the optimised weights differ from the decoded ones by at most
    ``weight_tolerance`` in every feature, or after ``max_iterations``.
    Features named in ``fixed_features`` keep their initial weight; those in
    ``nonnegative_features`` keep weights at or above zero. Without such
    constraints, weights that look best on the n-best pool can be absurd
    for the search: a negative distortion weight rewards every jump, and the
    next iteration decodes word salad.

    With ``state_dir``, every finished iteration is saved there atomically
    (``history.json`` and the pool ``pool-NNN.npz`` it names); a later call
    with the same arguments continues after the last finished iteration and
    gives the result an uninterrupted run would have given (each iteration's
    optimiser draws from ``default_rng((seed, iteration))``). Only
    ``max_iterations`` may differ on resuming.
    """
    feature_names = list(feature_names)
    if isinstance(fixed_features, str):
        fixed_features = [fixed_features]
    references = [_as_tokens(reference) for reference in references]
    initial = np.asarray(initial_weights, dtype=np.float64)
    fixed = _fixed_mask(feature_names, fixed_features)
    nonnegative = _fixed_mask(feature_names, nonnegative_features)
    _check_tuning_arguments(
        references, feature_names, initial, max_iterations, nbest_size
    )
    settings = _settings(
        references,
        feature_names,
        initial,
        fixed_features,
        nbest_size,
        seed,
        optimiser,
        weight_tolerance,
        nonnegative_features,
    )
    state_dir = Path(state_dir) if state_dir is not None else None

    pool, history = _load_state(state_dir, settings, references, len(feature_names))
    if history:
        weights = np.array(history[-1].optimised_weights)
    else:
        weights = normalise_weights(initial, fixed)
    logger.info(
        "MERT of %d weights (%d fixed) on %s dev sentences, n-best %d, at most %d "
        "iterations, seed %d",
        len(feature_names),
        int(fixed.sum()),
        f"{len(references):,}",
        nbest_size,
        max_iterations,
        seed,
    )

    stop_reason = (
        _stop_reason(history[-1], max_iterations, weight_tolerance) if history else None
    )
    while stop_reason is None:
        record = _tuning_iteration(
            len(history) + 1,
            weights,
            decode_nbest,
            pool,
            nbest_size,
            fixed,
            optimiser,
            seed,
            nonnegative,
        )
        history.append(record)
        if state_dir is not None:
            _save_state(state_dir, settings, pool, history)
        _log_iteration(history, max_iterations)
        stop_reason = _stop_reason(record, max_iterations, weight_tolerance)
        weights = np.array(record.optimised_weights)

    best = max(history, key=lambda record: record.dev_bleu)  # the first of equals
    logger.info(
        "MERT stopped after iteration %d: %s; best dev BLEU %.2f at iteration %d",
        len(history),
        stop_reason,
        best.dev_bleu,
        best.iteration,
    )
    return TuningResult(
        feature_names,
        np.array(best.weights),
        best.dev_bleu,
        best.iteration,
        stop_reason,
        history,
    )


def _as_tokens(reference: Sequence[str] | str) -> list[str]:
    return reference.split() if isinstance(reference, str) else list(reference)


def _fixed_mask(feature_names: list[str], fixed_features: Sequence[str]) -> np.ndarray:
    unknown = [name for name in fixed_features if name not in feature_names]
    if unknown:
        raise MtcError(
            f"fixed_features names unknown features {unknown}; "
            f"valid names: {', '.join(feature_names)}"
        )
    return np.array([name in fixed_features for name in feature_names], dtype=bool)


def _check_tuning_arguments(
    references: list[list[str]],
    feature_names: list[str],
    initial: np.ndarray,
    max_iterations: int,
    nbest_size: int,
) -> None:
    if not references:
        raise MtcError(
            "the dev set is empty: MERT needs at least one reference sentence"
        )
    if len(set(feature_names)) != len(feature_names) or not feature_names:
        raise MtcError(
            f"feature_names must be distinct and not empty, got {feature_names}"
        )
    if initial.shape != (len(feature_names),) or not np.isfinite(initial).all():
        raise MtcError(
            f"initial_weights must be {len(feature_names)} finite numbers, one per "
            f"feature ({', '.join(feature_names)}), got {initial.tolist()}"
        )
    if max_iterations < 1 or nbest_size < 1:
        raise MtcError(
            f"max_iterations and nbest_size must be >= 1, got {max_iterations} "
            f"and {nbest_size}"
        )


def _tuning_iteration(
    iteration: int,
    weights: np.ndarray,
    decode_nbest: DecodeNBest,
    pool: HypothesisPool,
    nbest_size: int,
    fixed: np.ndarray,
    optimiser: OptimiserConfig,
    seed: int,
    nonnegative: np.ndarray | None = None,
) -> IterationRecord:
    """Decode with ``weights``, merge the n-best lists into ``pool``, optimise on the pool."""
    began = time.monotonic()
    nbest_lists = _checked_nbest(decode_nbest(weights.copy()), pool, nbest_size)
    decoded = time.monotonic()
    one_best_statistics = [
        pool.statistics_of(sentence, entries[0][0])
        for sentence, entries in enumerate(nbest_lists)
    ]  # the decoder's own 1-best: its first entry
    dev_bleu = float(bleu_from_statistics(np.sum(one_best_statistics, axis=0)))
    new_entries = pool.add(nbest_lists)

    lists = pool.nbest_lists()
    if new_entries:
        result = optimise_weights(
            lists,
            weights,
            fixed=fixed,
            nonnegative=nonnegative,
            config=optimiser,
            seed=(seed, iteration),
        )
        optimised, optimised_bleu = result.weights, result.bleu
    else:  # the pool is what it was: optimising again would find nothing new
        optimised, optimised_bleu = weights, bleu_at(lists, weights)
    return IterationRecord(
        iteration=iteration,
        weights=tuple(map(float, weights)),
        dev_bleu=dev_bleu,
        pool_size=len(pool),
        new_entries=new_entries,
        optimised_weights=tuple(map(float, optimised)),
        optimised_bleu=float(optimised_bleu),
        decode_seconds=decoded - began,
        seconds=time.monotonic() - began,
    )


def _checked_nbest(
    nbest_lists: Sequence[Sequence[NBestEntry]], pool: HypothesisPool, nbest_size: int
) -> list[list[tuple[list[str], np.ndarray]]]:
    """The decoder's n-best lists, cut to ``nbest_size``, with feature vectors as float arrays."""
    if len(nbest_lists) != len(pool.references):
        raise MtcError(
            f"decode_nbest returned {len(nbest_lists):,} n-best lists for "
            f"{len(pool.references):,} dev sentences; return one list per sentence"
        )
    checked = []
    for sentence, entries in enumerate(nbest_lists, start=1):
        if not entries:
            raise MtcError(
                f"decode_nbest returned an empty n-best list for dev sentence {sentence}; "
                "every sentence needs at least its 1-best"
            )
        if len(entries) > nbest_size:
            logger.debug(
                "dev sentence %d: %d n-best entries cut to %d",
                sentence,
                len(entries),
                nbest_size,
            )
        sentence_entries = []
        for rank, (tokens, vector) in enumerate(entries[:nbest_size], start=1):
            vector = np.asarray(vector, dtype=np.float64)
            if vector.shape != (pool.feature_count,) or not np.isfinite(vector).all():
                raise MtcError(
                    f"decode_nbest: dev sentence {sentence}, entry {rank} has feature "
                    f"vector {vector.tolist()}; give {pool.feature_count} finite values "
                    "in the order of feature_names"
                )
            sentence_entries.append((list(tokens), vector))
        checked.append(sentence_entries)
    return checked


def _stop_reason(
    record: IterationRecord, max_iterations: int, weight_tolerance: float
) -> str | None:
    if record.new_entries == 0:
        return "no new n-best entries entered the pool"
    change = np.abs(np.subtract(record.optimised_weights, record.weights)).max()
    if change <= weight_tolerance:
        return f"the weights changed by at most {weight_tolerance:g}"
    if record.iteration >= max_iterations:
        return f"reached max_iterations ({max_iterations})"
    return None


def _log_iteration(history: list[IterationRecord], max_iterations: int) -> None:
    record = history[-1]
    best = max(history, key=lambda item: item.dev_bleu)
    mean_seconds = sum(item.seconds for item in history) / len(history)
    remaining = max_iterations - record.iteration
    logger.info(
        "MERT iteration %d/%d: dev BLEU %.2f (best %.2f, iteration %d), pool %s entries "
        "(+%s new), optimised pool BLEU %.2f; decoding %.1f s, merging and optimising %.1f s%s",
        record.iteration,
        max_iterations,
        record.dev_bleu,
        best.dev_bleu,
        best.iteration,
        f"{record.pool_size:,}",
        f"{record.new_entries:,}",
        record.optimised_bleu,
        record.decode_seconds,
        record.seconds - record.decode_seconds,
        (
            f", ETA at most {format_duration(remaining * mean_seconds)}"
            if remaining
            else ""
        ),
    )


# --------------------------------------------------------------------------
# Saving and resuming
# --------------------------------------------------------------------------


def _settings(
    references: list[list[str]],
    feature_names: list[str],
    initial: np.ndarray,
    fixed_features: Sequence[str],
    nbest_size: int,
    seed: int,
    optimiser: OptimiserConfig,
    weight_tolerance: float,
    nonnegative_features: Sequence[str] = (),
) -> dict:
    """Everything that changes the course of a tuning run, as it reads back from JSON."""
    reference_text = "\n".join(" ".join(reference) for reference in references)
    settings = {
        "feature_names": feature_names,
        "initial_weights": initial.tolist(),
        "fixed_features": list(fixed_features),
        "nbest_size": nbest_size,
        "seed": seed,
        "optimiser": asdict(optimiser),
        "weight_tolerance": weight_tolerance,
        "nonnegative_features": list(nonnegative_features),
        "references_sha256": hashlib.sha256(reference_text.encode("utf-8")).hexdigest(),
    }
    return json.loads(json.dumps(settings))


def _save_state(
    state_dir: Path,
    settings: dict,
    pool: HypothesisPool,
    history: list[IterationRecord],
) -> None:
    """Write the pool, then the history that names it; then drop older pools.

    An interruption between the two writes leaves the previous history and
    its pool file in place, so the state on disk is always one finished
    iteration.
    """
    pool_file = f"pool-{len(history):03d}.npz"
    pool.save(state_dir / pool_file)
    state = {
        "format": STATE_FORMAT,
        "settings": settings,
        "pool_file": pool_file,
        "iterations": [asdict(record) for record in history],
    }
    with atomic_open(state_dir / STATE_FILE) as stream:
        json.dump(state, stream, indent=1)
        stream.write("\n")
    for old in state_dir.glob("pool-*.npz"):
        if old.name != pool_file:
            old.unlink()


def _load_state(
    state_dir: Path | None,
    settings: dict,
    references: list[list[str]],
    feature_count: int,
) -> tuple[HypothesisPool, list[IterationRecord]]:
    """The saved pool and history in ``state_dir``, or an empty start when there are none."""
    if state_dir is None or not (state_dir / STATE_FILE).exists():
        return HypothesisPool(references, feature_count), []
    path = state_dir / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        if state.get("format") != STATE_FORMAT:
            raise ValueError(
                f"format {state.get('format')!r}, expected {STATE_FORMAT!r}"
            )
        saved_settings, pool_file = state["settings"], state["pool_file"]
        history = [
            IterationRecord(
                **{
                    **item,
                    "weights": tuple(item["weights"]),
                    "optimised_weights": tuple(item["optimised_weights"]),
                }
            )
            for item in state["iterations"]
        ]
        for record in history:
            if not (len(record.weights) == len(record.optimised_weights) == feature_count):
                raise ValueError(f"iteration {record.iteration} has the wrong number of weights")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise MtcError(
            f"{path}: not a MERT state file ({error}); delete {state_dir} to start "
            "afresh"
        ) from None
    different = [key for key in settings if saved_settings.get(key) != settings[key]]
    if different:
        raise MtcError(
            f"{path}: written by a tuning run with different {', '.join(different)}; "
            "resume with the same settings or use another state_dir"
        )
    pool = HypothesisPool.load(state_dir / pool_file, references, feature_count)
    logger.info(
        "resuming MERT from %s: %d finished iterations, pool of %s entries",
        state_dir,
        len(history),
        f"{len(pool):,}",
    )
    return pool, history
