"""Phrase extraction and scoring: the phrase table of a phrase-based SMT system.

Extraction (Koehn, Och & Marcu 2003, section 3.1; Koehn 2010, "Statistical
Machine Translation", section 5.2.3, figure 5.5). A phrase pair is a source
span and a target span that are *consistent* with the word alignment: at least
one alignment point lies inside the pair, and no word inside either span is
aligned to a word outside the other span. For every source span the smallest
target span covering its alignment points is found; if it is consistent, it
is output together with every widening of it over unaligned target words at
its edges. Unaligned source words at the edges are covered because every
source span is tried. Both spans are at most ``max_length`` words long.

Scoring (Koehn, Och & Marcu 2003, sections 3.1 and 3.3; as in Moses). Each
extracted occurrence counts once, and

    phi(t | s) = count(s, t) / count(s)        phi(s | t) = count(s, t) / count(t)

or, with ``smoothing="kneser-ney"``, these relative frequencies discounted as
in :mod:`mtcompare.smt.smoothing`.

The lexical weight checks how well the words of a pair translate each other:

    lex(t | s, a) = prod_j  1 / |{i : (i, j) in a}|  *  sum_{(i, j) in a} w(t_j | s_i)

with w(t_j | NULL) for a target word aligned to nothing, and lex(s | t, a)
the same the other way round. The word translation table w comes from the
alignment links by relative frequency, unaligned words counted against NULL.
When one phrase pair was extracted with different internal alignments, its
lexical weights use the most frequent one (on a tie, the one that occurs
first in the corpus), which is also the alignment stored with the pair.

The table stores probabilities, not logs, in the Moses order
phi(s|t), lex(s|t), phi(t|s), lex(t|s). Each source phrase's translations are
ordered best first by phi(t|s), ties broken by lex(t|s), then by the order
they were given in; ``prune`` keeps the first n of that order.

``build_phrase_and_reordering_tables`` also finds the word-based orientation
of every occurrence in the same extraction pass and estimates the lexicalised
reordering model of ``mtcompare.smt.reordering`` for the pairs the phrase
table keeps.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import io
import logging
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Collection, Iterator, Sequence

import numpy as np

from mtcompare.errors import MtcError
from mtcompare.fileio import atomic_open_text
from mtcompare.progress import progress
from mtcompare.smt.reordering import (
    ORIENTATIONS,
    SCORES,
    ReorderingTable,
    orientation_distribution,
    smoothed_probabilities,
    word_orientations,
)
from mtcompare.smt.smoothing import smoothed_phrase_probabilities

logger = logging.getLogger(__name__)

Phrase = tuple[str, ...]
PhraseAlignment = tuple[tuple[int, int], ...]
# Word translation tables keyed by (source word, target word); None is NULL.
LexicalTable = dict[tuple[str | None, str | None], float]


@dataclass(frozen=True, slots=True)
class PhraseEntry:
    """One translation of a source phrase, scored as in a Moses phrase table."""

    target: Phrase
    # phi(src|tgt), lex(src|tgt), phi(tgt|src), lex(tgt|src): probabilities
    scores: tuple[float, float, float, float]
    # links inside the pair, (source index, target index) relative to the phrases
    alignment: PhraseAlignment
    # count(tgt), count(src), count(src, tgt), as in the Moses counts field
    counts: tuple[int, int, int]


def _rank_key(entry: PhraseEntry) -> tuple[float, float]:
    """Best first: higher phi(tgt|src), then higher lex(tgt|src)."""
    return (-entry.scores[2], -entry.scores[3])


@dataclass
class PhraseTable:
    """Source phrase -> its translations, best first (see the module docstring).

    The lists are sorted when the table is made; treat the table as read-only
    afterwards, apart from ``prune``.
    """

    entries: dict[Phrase, list[PhraseEntry]] = field(default_factory=dict)
    max_source_length: int = field(init=False)

    def __post_init__(self) -> None:
        for translations in self.entries.values():
            if len(translations) > 1:
                translations.sort(key=_rank_key)
        self.max_source_length = max(map(len, self.entries), default=0)

    def __getitem__(self, source: Phrase) -> list[PhraseEntry]:
        return self.entries.get(tuple(source), [])

    def get(self, source: Phrase) -> list[PhraseEntry]:
        """The translations of ``source``, best first; [] if it is unknown."""
        return self.entries.get(tuple(source), [])

    def __contains__(self, source: object) -> bool:
        return source in self.entries

    def __len__(self) -> int:
        """The number of (source phrase, target phrase) pairs."""
        return sum(len(translations) for translations in self.entries.values())

    def prune(self, n: int) -> None:
        """Keep the best ``n`` translations of each source phrase."""
        if n < 1:
            raise ValueError(f"a phrase table keeps at least 1 translation, not {n}")
        for source, translations in self.entries.items():
            if len(translations) > n:
                self.entries[source] = translations[:n]

    def write_moses(self, path: str | Path) -> None:
        """Write the Moses text format, gzipped if ``path`` ends in ``.gz``.

        ``src ||| tgt ||| s1 s2 s3 s4 ||| 0-0 1-1 ||| c_tgt c_src c_pair``,
        source phrases in code-point order of their text, each one's
        translations best first. Scores are written exactly (``repr``).
        """
        start = time.monotonic()
        writer = _MosesWriter()
        with atomic_open_text(path) as stream:
            for source_text, source in sorted((" ".join(s), s) for s in self.entries):
                stream.write(writer.lines(source_text, self.entries[source]))
        logger.info(
            "wrote %s phrase-table entries to %s in %.1f s",
            f"{len(self):,}",
            path,
            time.monotonic() - start,
        )

    def alias(self, source: Phrase, known: Phrase) -> None:
        """Give ``source`` the translations of the ``known`` source phrase."""
        self.entries[source] = self.entries[known]
        self.max_source_length = max(self.max_source_length, len(source))

    def update(self, other: "PhraseTable") -> None:
        """Add the source phrases of ``other`` with their translations.

        A source phrase in both tables gets ``other``'s translations.
        """
        self.entries.update(other.entries)
        self.max_source_length = max(self.max_source_length, other.max_source_length)

    @classmethod
    def read_moses(
        cls,
        path: str | Path,
        limit: int | None = None,
        sources: Collection[Phrase] | None = None,
    ) -> "PhraseTable":
        """Read a Moses text phrase table (gzipped if it ends in ``.gz``).

        Keeps at most ``limit`` translations per source phrase, the best ones.
        Fields after the counts (Moses' key-value and sparse fields) are
        ignored; the alignment and counts fields may be missing or empty.
        A malformed line raises :class:`MtcError` naming ``path:line``.

        ``sources``, source phrases as token tuples (the keys of ``entries``),
        keeps only their lines, as Moses' filter-model-given-input.pl does for
        a test set. Every other line is skipped once its source field is split
        off: its target, scores and alignment are not decoded or checked, so
        only a line without any ``|||`` is an error there.
        """
        start = time.monotonic()
        path = Path(path)
        lines = table_lines(path, sources)
        reader = _MosesReader()
        entries: dict[Phrase, list[PhraseEntry]] = {}
        with _garbage_collection_paused():
            for line_number, line in lines:
                if line.strip():
                    source, entry = reader.parse(line, f"{path}:{line_number}")
                    entries.setdefault(source, []).append(entry)
            del reader
            table = cls(entries)
        if limit is not None:
            table.prune(limit)
        requested = "" if sources is None else f" (of {len(sources):,} requested)"
        logger.info(
            "read %s phrase-table entries for %s source phrases%s from %s in %.1f s",
            f"{len(table):,}",
            f"{len(table.entries):,}",
            requested,
            path,
            time.monotonic() - start,
        )
        return table


# ---------------------------------------------------------------- extraction


def extract_phrases(
    source: Sequence[str],
    target: Sequence[str],
    alignment: set[tuple[int, int]],
    max_length: int = 7,
) -> list[tuple[int, int, int, int]]:
    """All phrase pairs consistent with ``alignment``, as spans with exclusive ends.

    Returns ``(src_start, src_end, tgt_start, tgt_end)`` tuples, grouped by
    source span in order of source start, then source end.
    """
    source_length, target_length = len(source), len(target)
    targets_of_source: list[list[int]] = [[] for _ in range(source_length)]
    lowest_source = [source_length] * target_length  # per target word
    highest_source = [-1] * target_length
    for source_index, target_index in alignment:
        if not (
            0 <= source_index < source_length and 0 <= target_index < target_length
        ):
            raise ValueError(
                f"alignment point {(source_index, target_index)} is outside a "
                f"{source_length}x{target_length} sentence pair"
            )
        targets_of_source[source_index].append(target_index)
        lowest_source[target_index] = min(lowest_source[target_index], source_index)
        highest_source[target_index] = max(highest_source[target_index], source_index)
    target_aligned = [highest >= 0 for highest in highest_source]

    phrases: list[tuple[int, int, int, int]] = []
    for source_start in range(source_length):
        target_low, target_high = target_length, -1  # smallest covering target span
        for source_last in range(
            source_start, min(source_start + max_length, source_length)
        ):
            for target_index in targets_of_source[source_last]:
                target_low = min(target_low, target_index)
                target_high = max(target_high, target_index)
            if target_high < 0:
                continue  # no alignment point in the source span yet
            if target_high - target_low >= max_length:
                break  # the target span only grows as the source span does
            if not _is_consistent(
                target_low,
                target_high,
                source_start,
                source_last,
                lowest_source,
                highest_source,
            ):
                continue
            _add_with_unaligned_edges(
                phrases,
                source_start,
                source_last + 1,
                target_low,
                target_high + 1,
                target_aligned,
                max_length,
            )
    return phrases


def _is_consistent(
    target_low: int,
    target_high: int,
    source_start: int,
    source_last: int,
    lowest_source: list[int],
    highest_source: list[int],
) -> bool:
    """No target word in [low, high] is aligned outside [source_start, source_last]."""
    for target_index in range(target_low, target_high + 1):
        if highest_source[target_index] >= 0 and (
            lowest_source[target_index] < source_start
            or highest_source[target_index] > source_last
        ):
            return False
    return True


def _add_with_unaligned_edges(
    phrases: list[tuple[int, int, int, int]],
    source_start: int,
    source_end: int,
    target_start: int,
    target_end: int,
    target_aligned: list[bool],
    max_length: int,
) -> None:
    """Add the pair and its widenings over unaligned target words at either edge."""
    target_length = len(target_aligned)
    low_limit = target_start
    while low_limit > 0 and not target_aligned[low_limit - 1]:
        low_limit -= 1
    high_limit = target_end
    while high_limit < target_length and not target_aligned[high_limit]:
        high_limit += 1
    for start in range(target_start, low_limit - 1, -1):
        for end in range(target_end, min(high_limit, start + max_length) + 1):
            phrases.append((source_start, source_end, start, end))


# ---------------------------------------------------------------- scoring


def lexical_table(
    source_corpus: Sequence[Sequence[str]],
    target_corpus: Sequence[Sequence[str]],
    alignments: Sequence[set[tuple[int, int]]],
) -> tuple[LexicalTable, LexicalTable]:
    """Word translation probabilities from alignment links (Koehn, Och & Marcu 2003).

    Returns ``(direct, inverse)``, both keyed by ``(source word, target word)``:
    ``direct[s, t] = w(t | s)`` and ``inverse[s, t] = w(s | t)``, by relative
    frequency of links. A word aligned to nothing counts as linked to NULL
    (``None``), as in Moses: ``direct[None, t] = w(t | NULL)``, and
    ``direct[s, None] = w(NULL | s)``, so each w(. | s) sums to one.
    """
    link_counts: Counter[tuple[str | None, str | None]] = Counter()
    for source, target, alignment in zip(source_corpus, target_corpus, alignments):
        link_counts.update((source[i], target[j]) for i, j in alignment)
        aligned_source = {i for i, _ in alignment}
        aligned_target = {j for _, j in alignment}
        link_counts.update(
            (word, None) for i, word in enumerate(source) if i not in aligned_source
        )
        link_counts.update(
            (None, word) for j, word in enumerate(target) if j not in aligned_target
        )

    source_totals: Counter[str | None] = Counter()
    target_totals: Counter[str | None] = Counter()
    for (source_word, target_word), count in link_counts.items():
        source_totals[source_word] += count
        target_totals[target_word] += count
    direct: LexicalTable = {
        pair: count / source_totals[pair[0]] for pair, count in link_counts.items()
    }
    inverse: LexicalTable = {
        pair: count / target_totals[pair[1]] for pair, count in link_counts.items()
    }
    logger.info(
        "lexical table: %s word pairs (NULL included) from %s alignment links",
        f"{len(link_counts):,}",
        f"{sum(map(len, alignments)):,}",
    )
    return direct, inverse


def build_phrase_table(
    source_corpus: Sequence[Sequence[str]],
    target_corpus: Sequence[Sequence[str]],
    alignments: Sequence[set[tuple[int, int]]],
    max_length: int = 7,
    limit: int | None = 20,
    smoothing: str = "none",
) -> PhraseTable:
    """Extract and score all phrase pairs; keep the best ``limit`` per source phrase.

    ``limit=None`` keeps every pair. Pruning happens after scoring, so counts
    and probabilities are those of the full extraction. ``smoothing`` is
    "none" (relative frequencies) or "kneser-ney" (see
    :mod:`mtcompare.smt.smoothing`).
    """
    phrase_table, _ = _build_tables(
        source_corpus, target_corpus, alignments, max_length, limit, smoothing,
        reordering=False,
    )
    return phrase_table


def build_phrase_and_reordering_tables(
    source_corpus: Sequence[Sequence[str]],
    target_corpus: Sequence[Sequence[str]],
    alignments: Sequence[set[tuple[int, int]]],
    max_length: int = 7,
    limit: int | None = 20,
    smoothing: str = "none",
) -> tuple[PhraseTable, ReorderingTable]:
    """``build_phrase_table`` plus the msd-bidirectional-fe reordering table.

    Orientations are counted in the same extraction pass and smoothed with
    the orientation distribution of all occurrences; the reordering table
    holds exactly the pairs the (pruned) phrase table keeps.
    """
    return _build_tables(
        source_corpus, target_corpus, alignments, max_length, limit, smoothing,
        reordering=True,
    )


def _build_tables(
    source_corpus: Sequence[Sequence[str]],
    target_corpus: Sequence[Sequence[str]],
    alignments: Sequence[set[tuple[int, int]]],
    max_length: int,
    limit: int | None,
    smoothing: str,
    reordering: bool,
) -> tuple[PhraseTable, ReorderingTable]:
    """The phrase table and, if ``reordering`` is set, the reordering table.

    Without ``reordering`` no orientations are found and the reordering
    table is empty.
    """
    if not len(source_corpus) == len(target_corpus) == len(alignments):
        raise ValueError(
            f"corpora and alignments differ in length ({len(source_corpus)}, "
            f"{len(target_corpus)}, {len(alignments)})"
        )
    # the steps below build millions of tuples that form no reference cycles
    with _garbage_collection_paused():
        direct_lexicon, inverse_lexicon = lexical_table(
            source_corpus, target_corpus, alignments
        )
        vocabulary, occurrences = _extract_corpus(
            source_corpus, target_corpus, alignments, max_length, reordering
        )
        if not len(occurrences.source_ids):
            raise MtcError(
                f"no phrase pairs could be extracted from {len(source_corpus):,} sentence "
                "pairs (the word alignment links no words); train on more pairs"
            )

        start = time.monotonic()
        pairs = _count_pairs(occurrences, vocabulary)
        del occurrences
        lexical_weights = _lexical_weights(
            pairs, vocabulary, direct_lexicon, inverse_lexicon
        )
        probabilities = smoothed_phrase_probabilities(
            pairs.source_ids, pairs.target_ids, pairs.counts, smoothing
        )
        kept = _kept_pairs(pairs, probabilities, lexical_weights, limit)
        reordering_table = ReorderingTable()
        if reordering:
            reordering_table = _make_reordering_table(pairs, vocabulary, kept)
            pairs.orientation_counts = None  # free them before the phrase table is made
        table = _make_table(pairs, vocabulary, probabilities, lexical_weights, kept)
    logger.info(
        "scored %s phrase pairs for %s source phrases in %.1f s; kept %s "
        "phrase-table entries (limit %s per source phrase)",
        f"{len(pairs.counts):,}",
        f"{len(vocabulary.source_phrases):,}",
        time.monotonic() - start,
        f"{len(table):,}",
        limit,
    )
    return table, reordering_table


@dataclass
class _PhraseVocabulary:
    """Each distinct phrase and internal alignment once; its list index is its id."""

    source_phrases: list[Phrase]
    target_phrases: list[Phrase]
    alignments: list[PhraseAlignment]


@dataclass
class _Occurrences:
    """One entry per extracted phrase pair occurrence, as vocabulary ids.

    The orientation arrays (MONOTONE, SWAP, DISCONTINUOUS of reordering.py)
    stay empty unless orientations were asked for.
    """

    source_ids: array
    target_ids: array
    alignment_ids: array
    backward_orientations: array = field(default_factory=lambda: array("b"))
    forward_orientations: array = field(default_factory=lambda: array("b"))


def _extract_corpus(
    source_corpus: Sequence[Sequence[str]],
    target_corpus: Sequence[Sequence[str]],
    alignments: Sequence[set[tuple[int, int]]],
    max_length: int,
    orientations: bool = False,
) -> tuple[_PhraseVocabulary, _Occurrences]:
    """Run ``extract_phrases`` on every sentence pair, interning what it finds.

    With ``orientations``, also record each occurrence's word-based backward
    and forward orientation.
    """
    start = time.monotonic()
    source_index: dict[Phrase, int] = {}
    target_index: dict[Phrase, int] = {}
    alignment_index: dict[PhraseAlignment, int] = {}
    occurrences = _Occurrences(array("i"), array("i"), array("i"))
    sentence_pairs = zip(source_corpus, target_corpus, alignments)
    for source, target, alignment in progress(
        sentence_pairs, total=len(source_corpus), desc="phrase extraction", unit="pairs"
    ):
        spans = extract_phrases(source, target, alignment, max_length)  # checks links
        if orientations:
            backward, forward = word_orientations(
                spans, alignment, len(source), len(target)
            )
            occurrences.backward_orientations.frombytes(backward.tobytes())
            occurrences.forward_orientations.frombytes(forward.tobytes())
        targets_of_source: list[list[int]] = [[] for _ in source]
        for source_position, target_position in sorted(alignment):
            targets_of_source[source_position].append(target_position)
        for source_start, source_end, target_start, target_end in spans:
            source_phrase = tuple(source[source_start:source_end])
            target_phrase = tuple(target[target_start:target_end])
            inside = tuple(
                (source_position - source_start, target_position - target_start)
                for source_position in range(source_start, source_end)
                for target_position in targets_of_source[source_position]
            )
            occurrences.source_ids.append(
                source_index.setdefault(source_phrase, len(source_index))
            )
            occurrences.target_ids.append(
                target_index.setdefault(target_phrase, len(target_index))
            )
            occurrences.alignment_ids.append(
                alignment_index.setdefault(inside, len(alignment_index))
            )
    seconds = time.monotonic() - start
    logger.info(
        "extracted %s phrase-pair occurrences from %s sentence pairs in %.1f s, "
        "%s sentence pairs/s",
        f"{len(occurrences.source_ids):,}",
        f"{len(source_corpus):,}",
        seconds,
        f"{len(source_corpus) / max(seconds, 1e-9):,.0f}",
    )
    vocabulary = _PhraseVocabulary(
        list(source_index), list(target_index), list(alignment_index)
    )
    return vocabulary, occurrences


@dataclass
class _PairCounts:
    """Distinct phrase pairs with their counts and most frequent alignment."""

    source_ids: np.ndarray  # (n_pairs,) int64
    target_ids: np.ndarray  # (n_pairs,) int64
    alignment_ids: np.ndarray  # (n_pairs,) int64
    counts: np.ndarray  # (n_pairs,) count(src, tgt)
    source_counts: np.ndarray  # (n_pairs,) count(src) of the pair's source
    target_counts: np.ndarray  # (n_pairs,) count(tgt) of the pair's target
    # (n_pairs, 6) int32 backward mono, swap, discontinuous, then forward; None
    # when the occurrences carry no orientations
    orientation_counts: np.ndarray | None = None


def _count_pairs(
    occurrences: _Occurrences, vocabulary: _PhraseVocabulary
) -> _PairCounts:
    """Count occurrences per (pair, alignment), then per pair, source and target.

    Pairs come out in order of ``source_id * n_targets + target_id``; their
    orientations are counted too when the occurrences have them.
    """
    base = max(len(vocabulary.target_phrases), 1)
    source_ids = np.frombuffer(occurrences.source_ids, dtype=np.intc).astype(np.int64)
    target_ids = np.frombuffer(occurrences.target_ids, dtype=np.intc)
    pair_keys = source_ids * base + target_ids  # (n_occurrences,) int64
    del source_ids
    alignment_ids = np.frombuffer(occurrences.alignment_ids, dtype=np.intc)

    # runs of equal (pair, alignment), sorted by pair then by alignment id
    order = np.lexsort((alignment_ids, pair_keys))
    sorted_keys = pair_keys[order]
    del pair_keys
    run_pairs, run_alignments, run_counts = _runs(sorted_keys, alignment_ids[order])
    orientation_counts = None
    if len(occurrences.backward_orientations):
        orientation_counts = _count_orientations(sorted_keys, order, occurrences)
    del sorted_keys, order

    # each pair's best run: the most frequent; on a tie the lowest alignment id (the
    # alignment met first in the corpus), as lexsort is stable and runs are in id order
    by_count = np.lexsort((-run_counts, run_pairs))  # (n_runs,)
    pair_of_run = run_pairs[by_count]
    first_of_pair = np.ones(len(by_count), dtype=bool)
    first_of_pair[1:] = pair_of_run[1:] != pair_of_run[:-1]
    best_runs = by_count[first_of_pair]  # (n_pairs,)
    pair_of_sorted_run = np.cumsum(first_of_pair) - 1  # (n_runs,) 0, 0, 1, 2, 2, ...
    pair_counts = np.bincount(pair_of_sorted_run, weights=run_counts[by_count])
    pair_counts = pair_counts.astype(np.int64)  # (n_pairs,)

    source_ids, target_ids = run_pairs[best_runs] // base, run_pairs[best_runs] % base
    source_totals = np.bincount(
        source_ids, weights=pair_counts, minlength=len(vocabulary.source_phrases)
    ).astype(np.int64)
    target_totals = np.bincount(
        target_ids, weights=pair_counts, minlength=len(vocabulary.target_phrases)
    ).astype(np.int64)
    return _PairCounts(
        source_ids,
        target_ids,
        run_alignments[best_runs],
        pair_counts,
        source_totals[source_ids],
        target_totals[target_ids],
        orientation_counts,
    )


def _count_orientations(
    sorted_keys: np.ndarray, order: np.ndarray, occurrences: _Occurrences
) -> np.ndarray:
    """(n_pairs, 6) int32: each pair's backward then forward orientation counts.

    ``sorted_keys`` are the occurrences' pair keys in ascending ``order``, so
    a pair's rank among the distinct keys is its row.
    """
    new_pair = np.ones(len(sorted_keys), dtype=bool)
    new_pair[1:] = sorted_keys[1:] != sorted_keys[:-1]
    pair_of_occurrence = np.cumsum(new_pair, dtype=np.int32) - 1  # (n_occurrences,)
    del new_pair
    n_pairs = int(pair_of_occurrence[-1]) + 1 if len(pair_of_occurrence) else 0
    counts = np.zeros((n_pairs, SCORES), dtype=np.int32)
    directions = (occurrences.backward_orientations, occurrences.forward_orientations)
    for direction, orientations in enumerate(directions):
        orientation_of_occurrence = np.frombuffer(orientations, dtype=np.int8)[order]
        for orientation in range(ORIENTATIONS):  # MONOTONE, SWAP, DISCONTINUOUS
            counts[:, ORIENTATIONS * direction + orientation] = np.bincount(
                pair_of_occurrence[orientation_of_occurrence == orientation],
                minlength=n_pairs,
            )
    return counts


def _runs(
    keys: np.ndarray, alignment_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Collapse sorted (key, alignment) rows into distinct rows and their counts."""
    new_run = np.ones(len(keys), dtype=bool)
    new_run[1:] = (keys[1:] != keys[:-1]) | (alignment_ids[1:] != alignment_ids[:-1])
    run_starts = np.flatnonzero(new_run)
    run_counts = np.diff(np.append(run_starts, len(keys)))
    return keys[run_starts], alignment_ids[run_starts], run_counts


def _lexical_weights(
    pairs: _PairCounts,
    vocabulary: _PhraseVocabulary,
    direct_lexicon: LexicalTable,
    inverse_lexicon: LexicalTable,
) -> tuple[np.ndarray, np.ndarray]:
    """lex(src|tgt) and lex(tgt|src) of every pair under its best alignment."""
    # w(s|t) keyed (given word, predicted word), like direct_lexicon
    inverse_by_target = {(t, s): weight for (s, t), weight in inverse_lexicon.items()}
    link_groups: dict[tuple[int, int, int], tuple[_AlignedTo, _AlignedTo]] = {}
    inverse_weights, direct_weights = array("d"), array("d")
    for source_id, target_id, alignment_id in _rows(
        pairs.source_ids, pairs.target_ids, pairs.alignment_ids
    ):
        source_phrase = vocabulary.source_phrases[source_id]
        target_phrase = vocabulary.target_phrases[target_id]
        shape = (alignment_id, len(source_phrase), len(target_phrase))
        groups = link_groups.get(shape)
        if groups is None:
            groups = link_groups[shape] = _aligned_positions(
                vocabulary.alignments[alignment_id], *shape[1:]
            )
        targets_of_source, sources_of_target = groups
        inverse_weights.append(
            _lexical_weight(
                source_phrase, target_phrase, targets_of_source, inverse_by_target
            )
        )
        direct_weights.append(
            _lexical_weight(
                target_phrase, source_phrase, sources_of_target, direct_lexicon
            )
        )
    return np.frombuffer(inverse_weights), np.frombuffer(direct_weights)


# For each word of one phrase, the positions in the other phrase it is linked to.
_AlignedTo = tuple[tuple[int, ...], ...]


def _aligned_positions(
    alignment: PhraseAlignment, source_length: int, target_length: int
) -> tuple[_AlignedTo, _AlignedTo]:
    """(targets linked to each source word, sources linked to each target word)."""
    targets_of_source: list[list[int]] = [[] for _ in range(source_length)]
    sources_of_target: list[list[int]] = [[] for _ in range(target_length)]
    for source_index, target_index in alignment:
        targets_of_source[source_index].append(target_index)
        sources_of_target[target_index].append(source_index)
    return tuple(map(tuple, targets_of_source)), tuple(map(tuple, sources_of_target))


def _lexical_weight(
    predicted: Phrase, given: Phrase, aligned_to: _AlignedTo, lexicon: LexicalTable
) -> float:
    """prod over predicted words of the mean w(word | linked given word).

    ``lexicon`` is keyed ``(given word, predicted word)``; a predicted word
    linked to nothing uses w(word | NULL), the key ``(None, word)``.
    """
    weight = 1.0
    for word, positions in zip(predicted, aligned_to):
        if len(positions) == 1:
            weight *= lexicon[given[positions[0]], word]
        elif not positions:
            weight *= lexicon[None, word]
        else:
            total = sum(lexicon[given[position], word] for position in positions)
            weight *= total / len(positions)
    return weight


def _kept_pairs(
    pairs: _PairCounts,
    probabilities: tuple[np.ndarray, np.ndarray],
    lexical_weights: tuple[np.ndarray, np.ndarray],
    limit: int | None,
) -> np.ndarray:
    """Rows of the best ``limit`` pairs of each source, grouped by source, best first.

    This is the order PhraseTable keeps its translations in.
    """
    _, direct_weights = lexical_weights
    _, direct_probabilities = probabilities  # (n_pairs,) phi(tgt|src)
    order = np.lexsort((-direct_weights, -direct_probabilities, pairs.source_ids))
    if limit is not None:
        order = order[_rank_within_groups(pairs.source_ids[order]) < limit]
    return order


def _make_reordering_table(
    pairs: _PairCounts, vocabulary: _PhraseVocabulary, kept: np.ndarray
) -> ReorderingTable:
    """Smoothed orientation probabilities of the ``kept`` pairs.

    The orientation distribution p(o) is that of all occurrences, kept or not.
    """
    start = time.monotonic()
    counts = pairs.orientation_counts
    distribution = orientation_distribution(counts)
    probabilities = smoothed_probabilities(counts[kept], distribution)
    source_ids = pairs.source_ids[kept]  # (n_kept,) grouped by source
    group_starts = np.flatnonzero(np.diff(source_ids, prepend=-1))  # (n_groups,)
    group_ends = np.append(group_starts[1:], len(source_ids))
    targets = [vocabulary.target_phrases[i] for i in pairs.target_ids[kept].tolist()]
    groups = (
        (vocabulary.source_phrases[source_id], tuple(targets[start:end]))
        for source_id, start, end in zip(
            source_ids[group_starts].tolist(),
            group_starts.tolist(),
            group_ends.tolist(),
        )
    )
    table = ReorderingTable.from_groups(groups, probabilities)
    logger.info(
        "reordering table: %s phrase pairs in %.1f s; orientations over all "
        "occurrences mono/swap/discontinuous %.3f/%.3f/%.3f backward, "
        "%.3f/%.3f/%.3f forward",
        f"{len(table):,}",
        time.monotonic() - start,
        *distribution,
    )
    return table


def _make_table(
    pairs: _PairCounts,
    vocabulary: _PhraseVocabulary,
    probabilities: tuple[np.ndarray, np.ndarray],
    lexical_weights: tuple[np.ndarray, np.ndarray],
    kept: np.ndarray,
) -> PhraseTable:
    """Turn the ``kept`` rows of the scored pairs into PhraseEntry lists, in order."""
    inverse_weights, direct_weights = lexical_weights
    inverse_probabilities, direct_probabilities = probabilities  # phi(s|t), phi(t|s)
    columns = (
        pairs.source_ids,
        pairs.target_ids,
        pairs.alignment_ids,
        inverse_probabilities,
        inverse_weights,
        direct_probabilities,
        direct_weights,
        pairs.target_counts,
        pairs.source_counts,
        pairs.counts,
    )

    entries: dict[Phrase, list[PhraseEntry]] = {}
    shared_counts: dict[tuple, tuple] = {}  # most pairs share a few count triples
    previous_source = -1
    translations: list[PhraseEntry] = []
    for row in _selected_rows(kept, *columns):
        source_id, target_id, alignment_id = row[:3]
        if source_id != previous_source:
            translations = entries[vocabulary.source_phrases[source_id]] = []
            previous_source = source_id
        counts = row[7:]
        translations.append(
            PhraseEntry(
                vocabulary.target_phrases[target_id],
                row[3:7],
                vocabulary.alignments[alignment_id],
                shared_counts.setdefault(counts, counts),
            )
        )
    return PhraseTable(entries)


def _rank_within_groups(group_ids: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal ids (ids must be grouped)."""
    starts = np.ones(len(group_ids), dtype=bool)
    starts[1:] = group_ids[1:] != group_ids[:-1]
    positions = np.arange(len(group_ids))
    return positions - np.maximum.accumulate(np.where(starts, positions, 0))


def _rows(*columns: np.ndarray, block: int = 1 << 16) -> Iterator[tuple]:
    """Rows of equal-length numpy columns as Python values, converted in blocks."""
    for start in range(0, len(columns[0]), block):
        yield from zip(*(column[start : start + block].tolist() for column in columns))


def _selected_rows(
    selection: np.ndarray, *columns: np.ndarray, block: int = 1 << 16
) -> Iterator[tuple]:
    """Rows ``selection`` of the columns, in that order, gathered block by block.

    Gathering a block at a time, not whole columns, keeps the memory peak of
    building a table of millions of pairs low.
    """
    for start in range(0, len(selection), block):
        rows = selection[start : start + block]
        yield from zip(*(column[rows].tolist() for column in columns))


# ---------------------------------------------------------------- Moses format


class _MosesWriter:
    """Formats Moses lines, formatting each distinct alignment only once."""

    def __init__(self) -> None:
        self._alignment_texts: dict[PhraseAlignment, str] = {}

    def lines(self, source_text: str, translations: list[PhraseEntry]) -> str:
        """The lines of one source phrase's translations, joined."""
        lines = []
        for entry in translations:
            links = self._alignment_texts.get(entry.alignment)
            if links is None:
                links = " ".join(f"{i}-{j}" for i, j in entry.alignment)
                self._alignment_texts[entry.alignment] = links
            inverse_phrase, inverse_lexical, direct_phrase, direct_lexical = (
                entry.scores
            )
            target_count, source_count, pair_count = entry.counts
            lines.append(
                f"{source_text} ||| {' '.join(entry.target)} ||| "
                f"{inverse_phrase!r} {inverse_lexical!r} {direct_phrase!r} "
                f"{direct_lexical!r} ||| {links} ||| "
                f"{target_count} {source_count} {pair_count}\n"
            )
        return "".join(lines)


class _MosesReader:
    """Parses Moses lines, keeping one copy of each repeated phrase and alignment.

    Fields are cached by their raw text, spaces included, so the common case
    of a phrase, alignment or counts field seen before costs one dict lookup.
    """

    def __init__(self) -> None:
        self._last_source: tuple[str, Phrase] = ("", ())
        self._targets: dict[str, Phrase] = {}
        # alignment text -> (alignment, its largest source index, largest target index)
        self._alignments: dict[str, tuple[PhraseAlignment, int, int]] = {}
        self._counts: dict[str, tuple[int, int, int]] = {}

    def parse(self, line: str, where: str) -> tuple[Phrase, PhraseEntry]:
        """The source phrase and entry of one line; MtcError naming ``where``."""
        fields = line.split("|||")
        if len(fields) < 3:
            raise MtcError(
                f"{where}: expected 'source ||| target ||| 4 scores [||| alignment "
                f"[||| counts]]', found {len(fields)} field(s); "
                "is this a Moses phrase table?"
            )
        source, target = self._source(fields[0]), self._target(fields[1])
        if not source or not target:
            raise MtcError(f"{where}: empty source or target phrase")
        scores = _parse_scores(fields[2], where)
        alignment = self._alignment(
            fields[3] if len(fields) > 3 else "", source, target, where
        )
        counts_text = fields[4] if len(fields) > 4 else ""
        counts = self._counts.get(counts_text)
        if counts is None:
            counts = self._counts[counts_text] = _parse_counts(counts_text, where)
        return source, PhraseEntry(target, scores, alignment, counts)

    def _source(self, text: str) -> Phrase:
        # a Moses table lists all translations of a source phrase together
        if text != self._last_source[0]:
            self._last_source = (text, tuple(text.split()))
        return self._last_source[1]

    def _target(self, text: str) -> Phrase:
        phrase = self._targets.get(text)
        if phrase is None:
            phrase = self._targets[text] = tuple(text.split())
        return phrase

    def _alignment(
        self, text: str, source: Phrase, target: Phrase, where: str
    ) -> PhraseAlignment:
        cached = self._alignments.get(text)
        if cached is None or cached[1] >= len(source) or cached[2] >= len(target):
            alignment = _parse_alignment(text, source, target, where)
            cached = self._alignments[text] = (
                alignment,
                max((i for i, _ in alignment), default=-1),
                max((j for _, j in alignment), default=-1),
            )
        return cached[0]


def _parse_scores(text: str, where: str) -> tuple[float, float, float, float]:
    try:
        scores = tuple(map(float, text.split()))
    except ValueError:
        scores = ()
    if len(scores) != 4:
        raise MtcError(f"{where}: expected 4 numbers as scores, found {text.strip()!r}")
    return scores  # type: ignore[return-value]


def _parse_counts(text: str, where: str) -> tuple[int, int, int]:
    """c_tgt c_src c_pair; a table without counts gets (0, 0, 0)."""
    parts = text.split()
    if not parts:
        return (0, 0, 0)
    try:
        counts = tuple(map(int, parts))
    except ValueError:
        counts = ()
    if len(counts) != 3:
        raise MtcError(
            f"{where}: expected 3 integers as counts, found {text.strip()!r}"
        )
    return counts  # type: ignore[return-value]


def _parse_alignment(
    text: str, source: Phrase, target: Phrase, where: str
) -> PhraseAlignment:
    links = []
    for link in text.split():
        source_text, dash, target_text = link.partition("-")
        if not (dash and source_text.isdecimal() and target_text.isdecimal()):
            raise MtcError(f"{where}: alignment point {link!r} is not of the form i-j")
        source_index, target_index = int(source_text), int(target_text)
        if source_index >= len(source) or target_index >= len(target):
            raise MtcError(
                f"{where}: alignment point {link!r} is outside the "
                f"{len(source)}x{len(target)} phrase pair"
            )
        links.append((source_index, target_index))
    return tuple(links)


@contextlib.contextmanager
def _garbage_collection_paused() -> Iterator[None]:
    """Pause Python's cycle collector while millions of tuples are built.

    Each full collection walks every object made so far and, since phrase
    tuples form no cycles, frees nothing; left on, these walks make up
    about 40% of the time spent reading a table.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def table_lines(
    path: Path, sources: Collection[Phrase] | None
) -> Iterator[tuple[int, str]]:
    """(line number, line) of a Moses table, only those of ``sources`` if given."""
    if sources is None:
        return _read_text_lines(path)
    return _lines_of_sources(path, _as_set(sources))


def _read_text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its end) for a UTF-8 file, gzipped or not."""
    with _open_binary(path) as stream:
        for line_number, line in enumerate(stream, start=1):
            yield line_number, _decode_line(line, path, line_number)


def _lines_of_sources(
    path: Path, sources: set[Phrase] | frozenset[Phrase]
) -> Iterator[tuple[int, str]]:
    """The lines of ``_read_text_lines`` whose source phrase is in ``sources``.

    Only the bytes before the first ``|||`` of a line are looked at, and only
    when they differ from the previous line's, as the lines of one source
    phrase are usually adjacent. A line without ``|||`` is passed on, so that
    the parser reports it.
    """
    with _open_binary(path) as stream:
        source_prefix = None  # the previous line's bytes up to and with its "|||"
        keep = False
        for line_number, line in enumerate(stream, start=1):
            if source_prefix is None or not line.startswith(source_prefix):
                end = line.find(b"|||")
                if end < 0:
                    source_prefix = None
                    keep = bool(line.strip())
                else:
                    source_prefix = line[: end + 3]
                    field = _decode_line(line[:end], path, line_number)
                    keep = tuple(field.split()) in sources
            if keep:
                yield line_number, _decode_line(line, path, line_number)


def _as_set(phrases: Collection[Phrase]) -> set[Phrase] | frozenset[Phrase]:
    if isinstance(phrases, (set, frozenset)):
        return phrases
    return set(phrases)


def _decode_line(line: bytes, path: Path, line_number: int) -> str:
    try:
        return line.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise MtcError(
            f"{path}:{line_number}: not valid UTF-8; "
            "convert the file to UTF-8, e.g. with iconv"
        ) from None


@contextlib.contextmanager
def _open_binary(path: Path) -> Iterator[IO[bytes]]:
    """A binary stream of the file, decompressed for a ``.gz`` name."""
    try:
        with open(path, "rb") as raw:
            # gzip's own line iteration is slow; a buffered reader on top is not
            if path.suffix == ".gz":
                yield io.BufferedReader(gzip.GzipFile(fileobj=raw), 1 << 20)
            else:
                yield raw
    except (OSError, EOFError) as error:
        raise MtcError(f"{path}: cannot read ({error})") from None
