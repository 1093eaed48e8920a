"""Word alignment with the HMM alignment model, trained by EM with forward-backward.

The HMM alignment model (Vogel, Ney & Tillmann 1996, "HMM-Based Word Alignment
in Statistical Translation") keeps the translation table t(f | e) of IBM
Model 1 but replaces its uniform choice of source position with a first-order
Markov chain: the source position a_j of target word f_j depends on the jump
a_j - a_{j-1} from the position of the previous target word. Neighbouring words
tend to translate neighbouring words, so short forward jumps get most of the
probability, an order IBM Model 1 cannot see.

Empty word. As in Och & Ney (2003), "A Systematic Comparison of Various
Statistical Alignment Models", section 2.1.1, a target word aligns to NULL (the
empty word) with a fixed probability p0, and a NULL state remembers the real
position it was entered from, so the next word jumps from there. A source
sentence of length I has the real states 1 .. I and the NULL states
NULL_0 .. NULL_I, position 0 being the sentence start: Och & Ney's I NULL
states plus one for a sentence whose first word aligns to NULL. From previous
position i' (0 .. I):

    p(a_j = i       | i') = (1 - p0) * c(i - i') / sum_{k=1..I} c(k - i')
    p(a_j = NULL_i' | i') = p0

A real state emits t(f_j | e_i), a NULL state t(f_j | NULL). The first target
word jumps from the start position 0, so a monotone sentence begins with the
+1 jump it continues with. p0 is set, not trained (Och & Ney treat it as a
parameter to tune); 0.2 is our default.

Jump widths. c(d) is one weight per width d = -max_jump .. max_jump; a longer
jump uses the weight of +-max_jump, so every far position gets that weight and
a row of the jump matrix is still a distribution over all I positions.
Training starts from c uniform, which makes the first E-step that of IBM
Model 1 with NULL probability p0, and from the t of a trained IBM Model 1, as
in the training schemes of Och & Ney (2003): Model 1 iterations, then HMM
iterations.

EM. The E-step is the forward-backward algorithm (Rabiner 1989, "A Tutorial on
Hidden Markov Models", section III), with the forward values of each target
position scaled to sum to one (Rabiner, section V.A); the product of the
scales is P(f | e). The state posteriors are expected counts for t, normalised
per source word as in IBM Model 1. The expected real jumps n(I, i' -> i) give
c; as c is normalised per row (I, i'), the M-step has no closed form: it must
maximise

    Q(c) = sum_d N(d) log c(d) - sum_rows M(row) log Z_row(c)

with N(d) the expected jumps of width d, M(row) the expected real jumps out of
that row and Z_row(c) = sum_{i=1..I} c(i - i'). The minorise-maximise update
(Hunter & Lange 2004, "A Tutorial on MM Algorithms", bounding log Z by its
tangent)

    c(d) <- N(d) / sum_rows [M(row) * m(row, d) / Z_row(c)]

where m(row, d) counts the positions of the row with width d, raises Q at
every step, so the training is a generalised EM (Dempster, Laird & Rubin 1977)
and never lowers the likelihood.

Vectorisation. The sentence pairs are sorted by source length I, then by
target length, longest first, and cut into batches of one source length. All
sentences of a batch share one jump matrix (I + 1 x I), and the sentences that
still have a j-th target word are a prefix of the batch, so each recursion
step is one matrix product for the whole batch. The transitions out of real
state i and out of NULL_i are the same, so the forward values are summed by
position before the product and the backward values are kept per position:
the NULL states cost a column, not a second matrix. A batch's links are stored
step-major: step j holds one row of I + 1 links (NULL first, as IBM Model 1's
links) for each of its sentences.

Alignment is the Viterbi path, the max-product version of the forward pass
with a back-pointer per state; ties go to the earlier position and to NULL.

Floors. t of a pair never seen together is 0, so emissions are floored at
``EMISSION_FLOOR``: a sentence with words unseen in training keeps a nonzero
probability and such a word is placed by the jump model alone. Jump weights
are floored at ``JUMP_WEIGHT_FLOOR`` so a width the training made unlikely
stays possible in new sentences. A floor acts only where a probability falls
below it, so it can break EM's monotonicity only by the tiny mass it adds.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from mtcompare.errors import MtcError
from mtcompare.progress import progress

if TYPE_CHECKING:
    from mtcompare.smt.align import IBMModel1

logger = logging.getLogger(__name__)

# p0, set rather than trained (see the module docstring); our choice, not the papers'
NULL_PROBABILITY = 0.2
# jumps longer than this share one weight; 10 covers the clause-level reordering
# of the Spanish-English Bible, where jumps beyond 5 already get under 1% each
MAX_JUMP = 10
EMISSION_FLOOR = 1e-10
JUMP_WEIGHT_FLOOR = 1e-12

# A batch holds at most this many links (target tokens x (source positions + 1)),
# so its forward and backward arrays stay near 16 MB each.
LINKS_PER_BATCH = 1 << 21

# The jump-width M-step iterates its minorise-maximise update until the weights
# change by less than this (relative), or for at most this many steps.
JUMP_UPDATE_TOLERANCE = 1e-12
JUMP_UPDATE_MAX_STEPS = 1000


@dataclass(eq=False)
class HMMModel:
    """A trained HMM alignment model: t(target | source), jump weights, p0.

    ``translation`` is the table t in IBM Model 1's sparse form.
    ``jump_weights[d + max_jump]`` is c(d) for jump width d, widths beyond
    ``max_jump`` clipped to it. Source positions count from 1 here, 0 being
    the sentence start; alignment links count from 0 as everywhere else.
    """

    translation: IBMModel1
    jump_weights: np.ndarray  # (2 * max_jump + 1,) float64, sums to 1
    null_probability: float

    @property
    def max_jump(self) -> int:
        return (len(self.jump_weights) - 1) // 2

    def probability(self, source_word: str | None, target_word: str) -> float:
        """t(target_word | source_word); ``None`` is the NULL word; 0 if unseen."""
        return self.translation.probability(source_word, target_word)

    def jump_matrix(self, source_length: int) -> np.ndarray:
        """(I + 1, I): row i' (0 = start), column i - 1: c(i - i') / sum_k c(k - i')."""
        return _jump_matrix(self.jump_weights, source_length, self.max_jump)

    def transition_probability(
        self, previous: int, position: int | None, source_length: int
    ) -> float:
        """p(a_j = position | previous real position), ``None`` meaning NULL.

        Positions count from 1; ``previous`` 0 is the sentence start.
        """
        if position is None:
            return self.null_probability
        jumps = self.jump_matrix(source_length)
        return (1 - self.null_probability) * float(jumps[previous, position - 1])

    def alignment_posteriors(
        self, source: Sequence[str], target: Sequence[str]
    ) -> np.ndarray:
        """(J, I + 1): P(a_j = i | e, f), column 0 NULL, column i source word i."""
        batch, emissions = self._single_pair(source, target)
        result = _forward_backward(
            batch, emissions, self.jump_matrix(len(source)), self.null_probability
        )
        return result.link_posteriors.reshape(len(target), len(source) + 1)

    def log_likelihood(self, source: Sequence[str], target: Sequence[str]) -> float:
        """log P(f | e) under the model (natural log; no sentence-length term)."""
        batch, emissions = self._single_pair(source, target)
        result = _forward_backward(
            batch, emissions, self.jump_matrix(len(source)), self.null_probability
        )
        return float(result.log_likelihoods[0])

    def viterbi_alignment(
        self, source: Sequence[str], target: Sequence[str]
    ) -> set[tuple[int, int]]:
        """Links (source index, target index) of the most probable alignment path."""
        return viterbi_alignments(self, [source], [target])[0]

    def _single_pair(
        self, source: Sequence[str], target: Sequence[str]
    ) -> tuple[_Batch, np.ndarray]:
        if not source or not target:
            raise ValueError("the HMM needs a non-empty source and target sentence")
        (batch,) = _make_batches([source], [target], self.translation)
        keys = batch.link_keys(self.translation.key_base)
        return batch, _emission_probabilities(self.translation, keys)


def train_hmm(
    source: Sequence[Sequence[str]],
    target: Sequence[Sequence[str]],
    iterations: int = 5,
    *,
    initial: IBMModel1,
    null_probability: float = NULL_PROBABILITY,
    max_jump: int = MAX_JUMP,
    direction: str = "source->target",
) -> HMMModel:
    """Train the HMM by ``iterations`` rounds of EM, t starting from ``initial``.

    ``initial`` is an IBM Model 1 trained on the same corpus and direction.
    Pairs with an empty side have no alignment to learn from and are skipped.
    ``direction`` only names the model in log lines, e.g. ``"es->en"``.
    """
    _check_parallel(source, target)
    if not 0 < null_probability < 1:
        raise MtcError(
            f"null_probability is {null_probability}; give a value in (0, 1)"
        )
    if max_jump < 1:
        raise MtcError(f"max_jump is {max_jump}; give a jump width of at least 1")

    start = time.monotonic()
    corpus = _IndexedCorpus.build(source, target, initial)
    logger.info(
        "HMM %s: %s sentence pairs in %s batches, %s links indexed in %.1f s",
        direction,
        f"{corpus.n_sentences:,}",
        f"{len(corpus.batches):,}",
        f"{len(corpus.pair_ids):,}",
        time.monotonic() - start,
    )

    key_base = initial.key_base
    source_of_pair = initial.pair_keys // key_base  # (n_pairs,)
    n_sources = len(initial.source_vocab)
    probabilities = initial.pair_probabilities.copy()
    jump_weights = np.full(2 * max_jump + 1, 1 / (2 * max_jump + 1))
    for iteration in progress(
        range(1, iterations + 1),
        total=iterations,
        desc=f"HMM {direction}",
        unit="iterations",
    ):
        start = time.monotonic()
        counts, jump_statistics, log_likelihood = _expected_counts(
            corpus, probabilities, jump_weights, null_probability
        )
        probabilities = _normalise_per_source(
            counts, source_of_pair, n_sources, probabilities
        )
        jump_weights = _reestimate_jump_weights(jump_weights, jump_statistics)
        logger.info(
            "HMM %s iteration %d/%d: %s pairs in %.1f s, perplexity %.1f, "
            "jump weight c(+1) %.2f",
            direction,
            iteration,
            iterations,
            f"{corpus.n_sentences:,}",
            time.monotonic() - start,
            math.exp(-log_likelihood / max(corpus.target_tokens, 1)),
            jump_weights[max_jump + 1],
        )
    translation = dataclasses.replace(initial, pair_probabilities=probabilities)
    return HMMModel(translation, jump_weights, null_probability)


def viterbi_alignments(
    model: HMMModel,
    source: Sequence[Sequence[str]],
    target: Sequence[Sequence[str]],
) -> list[set[tuple[int, int]]]:
    """The Viterbi alignment of every pair; a pair with an empty side gets none."""
    _check_parallel(source, target)
    alignments: list[set[tuple[int, int]]] = [set() for _ in source]
    key_base = model.translation.key_base
    for batch in _make_batches(source, target, model.translation):
        emissions = _emission_probabilities(
            model.translation, batch.link_keys(key_base)
        )
        best = _viterbi(
            batch,
            emissions,
            model.jump_matrix(batch.source_length),
            model.null_probability,
        )  # (n_sentences, J_max), 0 = NULL
        for row, (sentence, length) in enumerate(
            zip(batch.sentences.tolist(), batch.target_lengths.tolist())
        ):
            alignments[sentence] = {
                (position - 1, j)
                for j, position in enumerate(best[row, :length].tolist())
                if position > 0
            }
    return alignments


# ---------------------------------------------------------------- batches


def _check_parallel(
    source: Sequence[Sequence[str]], target: Sequence[Sequence[str]]
) -> None:
    """align.py's check, imported at call time: align.py imports this module."""
    from mtcompare.smt.align import _check_parallel as check

    check(source, target)


@dataclass
class _Batch:
    """Sentence pairs of one source length I, longest target first.

    Step j (target position j, from 0) covers the first ``active[j]``
    sentences, those with more than j target words. Its links are
    ``active[j]`` rows of I + 1 links each (NULL first) at
    ``step_starts[j]`` .. ``step_starts[j + 1]`` of the batch's link array.
    """

    sentences: np.ndarray  # (n_sentences,) index of each pair in the corpus
    source_ids: np.ndarray  # (n_sentences, I + 1) int64, column 0 NULL (id 0)
    target_ids: np.ndarray  # (n_sentences, J_max) int64, -1 past a sentence's end
    target_lengths: np.ndarray  # (n_sentences,) int64, non-increasing
    active: np.ndarray  # (J_max,) sentences with a target word at step j
    step_starts: np.ndarray  # (J_max + 1,) where each step's links begin

    @property
    def source_length(self) -> int:
        return self.source_ids.shape[1] - 1

    @property
    def n_links(self) -> int:
        return int(self.step_starts[-1])

    def link_keys(self, key_base: int) -> np.ndarray:
        """(n_links,) every link's pair key, ``source_id * key_base + target_id``."""
        return np.concatenate(
            [
                (self.source_ids[:n] * key_base + self.target_ids[:n, j, None]).ravel()
                for j, n in enumerate(self.active.tolist())
            ]
        )

    def ending_at(self, step: int) -> slice:
        """The rows of the sentences whose last target word is at ``step``."""
        first = int(self.active[step + 1]) if step + 1 < len(self.active) else 0
        return slice(first, int(self.active[step]))

    def steps(self, links: np.ndarray) -> list[np.ndarray]:
        """Views of a per-link array, one (active[j], I + 1) block per step."""
        width = self.source_length + 1
        return [
            links[start:end].reshape(-1, width)
            for start, end in zip(
                self.step_starts[:-1].tolist(), self.step_starts[1:].tolist()
            )
        ]


def _make_batches(
    source: Sequence[Sequence[str]],
    target: Sequence[Sequence[str]],
    translation: IBMModel1,
) -> list[_Batch]:
    """Batches of equal source length covering every pair with two non-empty sides.

    A word missing from a vocabulary gets the id ``len(vocab)``, which is in no
    pair key (see ``IBMModel1.key_base``), so its t is 0.
    """
    source_lengths = np.array([len(sentence) for sentence in source], dtype=np.int64)
    target_lengths = np.array([len(sentence) for sentence in target], dtype=np.int64)
    usable = np.flatnonzero((source_lengths > 0) & (target_lengths > 0))
    # by source length, then target length descending
    order = usable[np.lexsort((-target_lengths[usable], source_lengths[usable]))]
    sorted_source_lengths = source_lengths[order]
    links = target_lengths[order] * (sorted_source_lengths + 1)  # (n_usable,)
    boundaries = _batch_boundaries(sorted_source_lengths, links, LINKS_PER_BATCH)
    return [
        _encode_batch(order[first:last], source, target, translation)
        for first, last in zip(boundaries[:-1], boundaries[1:])
    ]


def _batch_boundaries(
    source_lengths: np.ndarray, links: np.ndarray, budget: int
) -> list[int]:
    """Cut points of sorted pairs: a new batch at each new source length or budget."""
    boundaries = [0]
    running = 0
    previous_length = None
    for index, (length, size) in enumerate(
        zip(source_lengths.tolist(), links.tolist())
    ):
        if index and (length != previous_length or running + size > budget):
            boundaries.append(index)
            running = 0
        running += size
        previous_length = length
    if len(source_lengths):
        boundaries.append(len(source_lengths))
    return boundaries


def _encode_batch(
    sentences: np.ndarray,
    source: Sequence[Sequence[str]],
    target: Sequence[Sequence[str]],
    translation: IBMModel1,
) -> _Batch:
    """The pairs ``sentences`` (one source length, longest target first) as ids."""
    source_vocab, target_vocab = translation.source_vocab, translation.target_vocab
    unknown_source, unknown_target = len(source_vocab), len(target_vocab)
    source_ids = np.array(
        [
            [0, *(source_vocab.get(word, unknown_source) for word in source[index])]
            for index in sentences.tolist()
        ],
        dtype=np.int64,
    )  # (n_sentences, I + 1)
    target_lengths = np.array([len(target[index]) for index in sentences.tolist()])
    longest = int(target_lengths[0])
    inside = np.arange(longest) < target_lengths[:, None]  # (n_sentences, J_max)
    target_ids = np.full(inside.shape, -1, dtype=np.int64)
    target_ids[inside] = [
        target_vocab.get(word, unknown_target)
        for index in sentences.tolist()
        for word in target[index]
    ]
    active = inside.sum(axis=0)  # (J_max,)
    step_starts = np.concatenate([[0], np.cumsum(active * source_ids.shape[1])])
    return _Batch(
        sentences, source_ids, target_ids, target_lengths, active, step_starts
    )


@dataclass
class _IndexedCorpus:
    """The training batches and, for every link of every batch, its pair id.

    The links of batch b are ``pair_ids[link_starts[b] : link_starts[b + 1]]``.
    """

    batches: list[_Batch]
    pair_ids: np.ndarray  # (n_links,) int32 or int64, index into the pair table
    link_starts: np.ndarray  # (n_batches + 1,)

    @property
    def n_sentences(self) -> int:
        return sum(len(batch.sentences) for batch in self.batches)

    @property
    def target_tokens(self) -> int:
        return sum(int(batch.target_lengths.sum()) for batch in self.batches)

    @classmethod
    def build(
        cls,
        source: Sequence[Sequence[str]],
        target: Sequence[Sequence[str]],
        translation: IBMModel1,
    ) -> "_IndexedCorpus":
        """Index the corpus ``translation`` was trained on, where every link's
        pair of words co-occurred."""
        batches = _make_batches(source, target, translation)
        link_starts = np.concatenate(
            [[0], np.cumsum([batch.n_links for batch in batches], dtype=np.int64)]
        )
        id_type = np.int32 if len(translation.pair_keys) < 2**31 else np.int64
        pair_ids = np.empty(int(link_starts[-1]), dtype=id_type)
        for batch, first, last in zip(batches, link_starts[:-1], link_starts[1:]):
            keys = batch.link_keys(translation.key_base)
            positions, found = _find_pairs(translation.pair_keys, keys)
            if not found.all():
                raise ValueError(
                    "the initial IBM Model 1 was trained on another corpus: "
                    "some word pairs of this one never co-occurred in it"
                )
            pair_ids[first:last] = positions
        return cls(batches, pair_ids, link_starts)


def _emission_probabilities(translation: IBMModel1, keys: np.ndarray) -> np.ndarray:
    """t for each pair key, floored at ``EMISSION_FLOOR`` (unseen pairs have t = 0)."""
    positions, found = _find_pairs(translation.pair_keys, keys)
    probabilities = np.where(found, translation.pair_probabilities[positions], 0.0)
    return np.maximum(probabilities, EMISSION_FLOOR)


def _find_pairs(
    pair_keys: np.ndarray, keys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each key, its index in the sorted ``pair_keys`` and whether it is there.

    The keys are searched in sorted order: on millions of keys that is several
    times faster than searching them as they come, which jumps about the table
    and misses the cache. A stable sort is the faster one here, as the keys of
    one link row are already in order.
    """
    if len(pair_keys) == 0:
        return np.zeros(len(keys), dtype=np.int64), np.zeros(len(keys), dtype=bool)
    order = np.argsort(keys, kind="stable")
    positions = np.empty(len(keys), dtype=np.int64)
    positions[order] = np.searchsorted(pair_keys, keys[order])
    np.minimum(positions, len(pair_keys) - 1, out=positions)
    return positions, pair_keys[positions] == keys


# ---------------------------------------------------------------- jumps


def _jump_buckets(source_length: int, max_jump: int) -> np.ndarray:
    """(I + 1, I): the index into the jump weights of the jump i' -> i."""
    previous = np.arange(source_length + 1)[:, None]
    position = np.arange(1, source_length + 1)[None, :]
    return np.clip(position - previous, -max_jump, max_jump) + max_jump


def _jump_matrix(
    jump_weights: np.ndarray, source_length: int, max_jump: int
) -> np.ndarray:
    """(I + 1, I) row-stochastic: p(i | i') among real positions, row 0 the start."""
    unnormalised = jump_weights[_jump_buckets(source_length, max_jump)]
    return unnormalised / unnormalised.sum(axis=1, keepdims=True)


@dataclass
class _JumpStatistics:
    """Expected real jumps of one E-step, as the jump-width M-step needs them."""

    width_counts: np.ndarray  # (2 * max_jump + 1,) N(d)
    row_totals: dict[int, np.ndarray]  # I -> (I + 1,) M(I, i'), real jumps out of i'

    @classmethod
    def empty(cls, max_jump: int) -> "_JumpStatistics":
        return cls(np.zeros(2 * max_jump + 1), {})

    def add(self, jump_counts: np.ndarray) -> None:
        """Add the (I + 1, I) expected jump counts of one batch."""
        source_length = jump_counts.shape[1]
        max_jump = (len(self.width_counts) - 1) // 2
        buckets = _jump_buckets(source_length, max_jump)
        self.width_counts += np.bincount(
            buckets.ravel(),
            weights=jump_counts.ravel(),
            minlength=len(self.width_counts),
        )
        row_totals = jump_counts.sum(axis=1)  # (I + 1,)
        if source_length in self.row_totals:
            self.row_totals[source_length] += row_totals
        else:
            self.row_totals[source_length] = row_totals


def _reestimate_jump_weights(
    jump_weights: np.ndarray, statistics: _JumpStatistics
) -> np.ndarray:
    """M-step for c: minorise-maximise steps on Q(c) (see the module docstring)."""
    max_jump = (len(jump_weights) - 1) // 2
    lengths = sorted(statistics.row_totals)
    if not lengths:
        return jump_weights
    # (n_rows, n_widths) m(row, d): positions of row (I, i') reached with width d
    multiplicities = np.concatenate(
        [_width_multiplicities(length, max_jump) for length in lengths]
    )
    row_totals = np.concatenate([statistics.row_totals[length] for length in lengths])
    weights = jump_weights
    for _ in range(JUMP_UPDATE_MAX_STEPS):
        normalisers = multiplicities @ weights  # (n_rows,) Z_row(c)
        denominators = (row_totals / normalisers) @ multiplicities  # (n_widths,)
        reachable = denominators > 0  # widths no row of the corpus can take keep c
        updated = weights.copy()
        updated[reachable] = (
            statistics.width_counts[reachable] / denominators[reachable]
        )
        updated = np.maximum(updated / updated.sum(), JUMP_WEIGHT_FLOOR)
        updated /= updated.sum()
        change = np.max(np.abs(updated - weights) / weights)
        weights = updated
        if change < JUMP_UPDATE_TOLERANCE:
            break
    return weights


def _width_multiplicities(source_length: int, max_jump: int) -> np.ndarray:
    """(I + 1, 2 * max_jump + 1): how many positions of row i' have each width."""
    buckets = _jump_buckets(source_length, max_jump)  # (I + 1, I)
    rows = np.repeat(np.arange(source_length + 1), source_length)
    flat = rows * (2 * max_jump + 1) + buckets.ravel()
    counts = np.bincount(flat, minlength=(source_length + 1) * (2 * max_jump + 1))
    return counts.reshape(source_length + 1, 2 * max_jump + 1).astype(np.float64)


# ---------------------------------------------------------------- EM


def _expected_counts(
    corpus: _IndexedCorpus,
    probabilities: np.ndarray,
    jump_weights: np.ndarray,
    null_probability: float,
) -> tuple[np.ndarray, _JumpStatistics, float]:
    """E-step: expected pair counts, jump statistics and the corpus log-likelihood."""
    max_jump = (len(jump_weights) - 1) // 2
    link_posteriors = np.empty(len(corpus.pair_ids))  # (n_links,)
    statistics = _JumpStatistics.empty(max_jump)
    log_likelihood = 0.0
    for batch, first, last in zip(
        corpus.batches, corpus.link_starts[:-1], corpus.link_starts[1:]
    ):
        emissions = np.maximum(
            probabilities[corpus.pair_ids[first:last]], EMISSION_FLOOR
        )
        jumps = _jump_matrix(jump_weights, batch.source_length, max_jump)
        result = _forward_backward(batch, emissions, jumps, null_probability)
        link_posteriors[first:last] = result.link_posteriors
        statistics.add(result.jump_counts)
        log_likelihood += float(result.log_likelihoods.sum())
    counts = np.bincount(
        corpus.pair_ids, weights=link_posteriors, minlength=len(probabilities)
    )
    return counts, statistics, log_likelihood


def _normalise_per_source(
    counts: np.ndarray,
    source_of_pair: np.ndarray,
    n_sources: int,
    previous: np.ndarray,
) -> np.ndarray:
    """M-step for t: count(f, e) / sum_f' count(f', e); a source word with no
    count (it occurs only in skipped pairs) keeps its previous t."""
    totals = np.bincount(source_of_pair, weights=counts, minlength=n_sources)
    pair_totals = totals[source_of_pair]  # (n_pairs,)
    return np.divide(counts, pair_totals, out=previous.copy(), where=pair_totals > 0)


@dataclass
class _BatchExpectations:
    """What the E-step takes from one batch."""

    link_posteriors: np.ndarray  # (n_links,) P(a_j = i | e, f), step-major as the links
    jump_counts: np.ndarray  # (I + 1, I) expected real jumps i' -> i
    log_likelihoods: np.ndarray  # (n_sentences,) log P(f | e)


def _forward_backward(
    batch: _Batch, emissions: np.ndarray, jumps: np.ndarray, null_probability: float
) -> _BatchExpectations:
    """Scaled forward-backward over one batch (Rabiner 1989, sections III and V.A).

    ``emissions`` holds t for every link of the batch, step-major; ``jumps``
    is the (I + 1, I) jump matrix of the batch's source length.
    """
    steps = batch.steps(emissions)  # per step (n_j, I + 1), column 0 NULL
    forward = _forward(steps, jumps, null_probability)

    link_posteriors = np.empty(len(emissions))
    posterior_steps = batch.steps(link_posteriors)
    jump_counts = np.zeros_like(jumps)
    source_length = jumps.shape[1]
    # backward values by position 0 .. I; 1 after a sentence's last word
    backward = np.ones((len(steps[-1]), source_length + 1))
    for j in range(len(steps) - 1, -1, -1):
        emission, scale = steps[j], forward.scales[j][:, None]  # scale (n_j, 1)
        n = len(emission)
        posterior_steps[j][:, 1:] = forward.real[j] * backward[:, 1:]
        posterior_steps[j][:, 0] = (forward.null[j] * backward).sum(axis=1)

        # (n_j, I): (1 - p0) t(f_j | e_i) beta_j(i) / s_j, the real half of a step
        real_onward = (1 - null_probability) * emission[:, 1:] * backward[:, 1:]
        real_onward /= scale
        # xi(i' -> i) summed over the batch; times the jump probability below
        jump_counts += forward.previous[j].T @ real_onward
        if j == 0:
            break
        stay_null = null_probability * emission[:, :1] / scale  # (n_j, 1)
        earlier = np.ones((len(steps[j - 1]), source_length + 1))
        earlier[:n] = real_onward @ jumps.T + stay_null * backward
        backward = earlier
    jump_counts *= jumps
    return _BatchExpectations(link_posteriors, jump_counts, forward.log_likelihoods)


@dataclass
class _Forward:
    """Scaled forward values of one batch, one array per step j."""

    previous: list[np.ndarray]  # (n_j, I + 1) forward mass by position before step j
    real: list[np.ndarray]  # (n_j, I) real states 1 .. I
    null: list[np.ndarray]  # (n_j, I + 1) NULL states, by the position they remember
    scales: list[np.ndarray]  # (n_j,) s_j, the sum before scaling
    log_likelihoods: np.ndarray  # (n_sentences,) sum_j log s_j


def _forward(
    steps: list[np.ndarray], jumps: np.ndarray, null_probability: float
) -> _Forward:
    """The forward recursion, scaled so each step's values sum to one."""
    source_length = jumps.shape[1]
    n_sentences = len(steps[0])
    result = _Forward([], [], [], [], np.zeros(n_sentences))
    # before the first word all mass is at the start position 0
    previous = np.zeros((n_sentences, source_length + 1))
    previous[:, 0] = 1.0
    for emission in steps:
        n = len(emission)
        previous = previous[:n]
        # (n, I): sum_i' previous(i') p(i | i'), times (1 - p0) t(f_j | e_i)
        real = (previous @ jumps) * ((1 - null_probability) * emission[:, 1:])
        null = previous * (null_probability * emission[:, :1])  # (n, I + 1)
        scale = real.sum(axis=1) + null.sum(axis=1)  # (n,)
        real /= scale[:, None]
        null /= scale[:, None]
        result.previous.append(previous)
        result.real.append(real)
        result.null.append(null)
        result.scales.append(scale)
        result.log_likelihoods[:n] += np.log(scale)
        previous = null.copy()
        previous[:, 1:] += real
    return result


# ---------------------------------------------------------------- Viterbi


def _viterbi(
    batch: _Batch, emissions: np.ndarray, jumps: np.ndarray, null_probability: float
) -> np.ndarray:
    """(n_sentences, J_max) the best path's state per target word: 0 NULL, i real.

    Scores are log probabilities by position, as in ``_forward``: at each
    step a position holds the better of its real state and its NULL state.
    """
    steps = batch.steps(np.log(emissions))  # per step (n_j, I + 1)
    with np.errstate(divide="ignore"):
        log_jumps = np.log(jumps)  # (I + 1, I)
    log_real, log_null = math.log(1 - null_probability), math.log(null_probability)
    source_length = jumps.shape[1]
    n_sentences = len(steps[0])

    best_previous: list[np.ndarray] = []  # per step (n_j, I): best i' for real state i
    real_wins: list[np.ndarray] = []  # per step (n_j, I + 1): real state beats NULL
    final_position = np.zeros(n_sentences, dtype=np.int64)
    scores = np.full((n_sentences, source_length + 1), -np.inf)
    scores[:, 0] = 0.0
    for j, log_emission in enumerate(steps):
        n = len(log_emission)
        scores = scores[:n]
        candidates = scores[:, :, None] + log_jumps[None, :, :]  # (n, I + 1, I)
        from_position = candidates.argmax(axis=1)  # (n, I)
        real = np.take_along_axis(candidates, from_position[:, None, :], axis=1)[:, 0]
        real += log_real + log_emission[:, 1:]
        null = scores + (log_null + log_emission[:, :1])  # (n, I + 1)
        wins = np.zeros((n, source_length + 1), dtype=bool)
        wins[:, 1:] = real > null[:, 1:]
        scores = null
        scores[:, 1:] = np.where(wins[:, 1:], real, null[:, 1:])
        best_previous.append(from_position)
        real_wins.append(wins)
        ending = batch.ending_at(j)
        final_position[ending] = scores[ending].argmax(axis=1)

    return _backtrace(batch, best_previous, real_wins, final_position)


def _backtrace(
    batch: _Batch,
    best_previous: list[np.ndarray],
    real_wins: list[np.ndarray],
    final_position: np.ndarray,
) -> np.ndarray:
    """Follow the back-pointers from each sentence's best final state."""
    n_sentences = len(final_position)
    path = np.zeros((n_sentences, len(best_previous)), dtype=np.int64)
    position = np.zeros(n_sentences, dtype=np.int64)  # position of the state at step j
    is_real = np.zeros(n_sentences, dtype=bool)
    for j in range(len(best_previous) - 1, -1, -1):
        n = int(batch.active[j])
        rows = np.arange(n)
        ending = batch.ending_at(j)
        position[ending] = final_position[ending]
        is_real[ending] = real_wins[j][rows[ending], position[ending]]
        path[:n, j] = np.where(is_real[:n], position[:n], 0)
        if j == 0:
            break
        # a real state came from its back-pointer, a NULL state from its own position
        pointer = best_previous[j][rows, np.maximum(position[:n] - 1, 0)]
        position[:n] = np.where(is_real[:n], pointer, position[:n])
        is_real[:n] = real_wins[j - 1][rows, position[:n]]
    return path
