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

The lexical weight checks how well the words of a pair translate each other:

    lex(t | s, a) = prod_j  1 / |{i : (i, j) in a}|  *  sum_{(i, j) in a} w(t_j | s_i)

with w(t_j | NULL) for a target word aligned to nothing, and lex(s | t, a)
the same the other way round. The word translation table w comes from the
alignment links by relative frequency, unaligned words counted against NULL.
When one phrase pair was extracted with different internal alignments, its
lexical weights use the most frequent one (ties: the one seen first), which
is also the alignment stored with the pair.

The table stores probabilities, not logs, in the Moses order
phi(s|t), lex(s|t), phi(t|s), lex(t|s). Each source phrase's translations are
ordered best first by phi(t|s), ties broken by lex(t|s), then by the order
they were given in; ``prune`` keeps the first n of that order.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator, Sequence

import numpy as np

from mtcompare.errors import MtcError
from mtcompare.fileio import atomic_open
from mtcompare.progress import progress

logger = logging.getLogger(__name__)

Phrase = tuple[str, ...]
PhraseAlignment = tuple[tuple[int, int], ...]
# Word translation tables keyed by (source word, target word); None is NULL.
LexicalTable = dict[tuple[str | None, str | None], float]

FIELD_SEPARATOR = " ||| "


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

    @property
    def direct_probability(self) -> float:
        """phi(tgt | src)."""
        return self.scores[2]

    @property
    def direct_lexical_weight(self) -> float:
        """lex(tgt | src)."""
        return self.scores[3]


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
        with _open_for_writing(Path(path)) as stream:
            for source_text, source in sorted((" ".join(s), s) for s in self.entries):
                for entry in self.entries[source]:
                    stream.write(_moses_line(source_text, entry))
        logger.info(
            "wrote %s phrase-table entries to %s in %.1f s",
            f"{len(self):,}", path, time.monotonic() - start,
        )

    @classmethod
    def read_moses(cls, path: str | Path, limit: int | None = None) -> "PhraseTable":
        """Read a Moses text phrase table (gzipped if it ends in ``.gz``).

        Keeps at most ``limit`` translations per source phrase, the best ones.
        Fields after the counts (Moses' key-value and sparse fields) are
        ignored; the alignment and counts fields may be missing or empty.
        A malformed line raises :class:`MtcError` naming ``path:line``.
        """
        start = time.monotonic()
        entries: dict[Phrase, list[PhraseEntry]] = {}
        shared: dict[tuple, tuple] = {}  # one copy of each repeated target/alignment
        for line_number, line in _read_text_lines(Path(path)):
            if not line.strip():
                continue
            source, entry = _parse_moses_line(line, f"{path}:{line_number}")
            entry = PhraseEntry(
                shared.setdefault(entry.target, entry.target),
                entry.scores,
                shared.setdefault(entry.alignment, entry.alignment),
                entry.counts,
            )
            entries.setdefault(source, []).append(entry)
        table = cls(entries)
        if limit is not None:
            table.prune(limit)
        logger.info(
            "read %s phrase-table entries for %s source phrases from %s in %.1f s",
            f"{len(table):,}", f"{len(table.entries):,}", path, time.monotonic() - start,
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

    Returns ``(src_start, src_end, tgt_start, tgt_end)`` tuples, ordered by
    source start, source end, then target start and end.
    """
    source_length, target_length = len(source), len(target)
    targets_of_source: list[list[int]] = [[] for _ in range(source_length)]
    lowest_source = [source_length] * target_length  # per target word
    highest_source = [-1] * target_length
    for source_index, target_index in alignment:
        if not (0 <= source_index < source_length and 0 <= target_index < target_length):
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
        for source_last in range(source_start, min(source_start + max_length, source_length)):
            for target_index in targets_of_source[source_last]:
                target_low = min(target_low, target_index)
                target_high = max(target_high, target_index)
            if target_high < 0:
                continue  # no alignment point in the source span yet
            if target_high - target_low >= max_length:
                break  # the target span only grows as the source span does
            if not _is_consistent(
                target_low, target_high, source_start, source_last,
                lowest_source, highest_source,
            ):
                continue
            _add_with_unaligned_edges(
                phrases, source_start, source_last + 1, target_low, target_high + 1,
                target_aligned, max_length,
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
    ``direct[s, t] = w(t | s)`` and ``inverse[s, t] = w(s | t)``. A target word
    aligned to nothing counts as aligned to NULL, ``direct[None, t] = w(t | NULL)``;
    likewise ``inverse[s, None] = w(s | NULL)`` for unaligned source words.
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
    direct: LexicalTable = {}
    inverse: LexicalTable = {}
    for pair, count in link_counts.items():
        source_word, target_word = pair
        if target_word is not None:
            direct[pair] = count / source_totals[source_word]
        if source_word is not None:
            inverse[pair] = count / target_totals[target_word]
    logger.info(
        "lexical table: %s word pairs from %s alignment links",
        f"{len(link_counts):,}", f"{sum(link_counts.values()):,}",
    )
    return direct, inverse


def build_phrase_table(
    source_corpus: Sequence[Sequence[str]],
    target_corpus: Sequence[Sequence[str]],
    alignments: Sequence[set[tuple[int, int]]],
    max_length: int = 7,
    limit: int | None = 20,
) -> PhraseTable:
    """Extract and score all phrase pairs; keep the best ``limit`` per source phrase."""
    if not len(source_corpus) == len(target_corpus) == len(alignments):
        raise ValueError(
            f"corpora and alignments differ in length ({len(source_corpus)}, "
            f"{len(target_corpus)}, {len(alignments)})"
        )
    direct_lexicon, inverse_lexicon = lexical_table(source_corpus, target_corpus, alignments)

    start = time.monotonic()
    extracted = _extract_corpus(source_corpus, target_corpus, alignments, max_length)
    seconds = time.monotonic() - start
    logger.info(
        "extracted %s phrase-pair occurrences from %s sentence pairs in %.1f s, "
        "%s pairs/s",
        f"{len(extracted.source_ids):,}", f"{len(source_corpus):,}", seconds,
        f"{len(source_corpus) / max(seconds, 1e-9):,.0f}",
    )

    start = time.monotonic()
    pairs = _count_pairs(extracted)
    del extracted.source_ids, extracted.target_ids, extracted.alignment_ids
    lexical_weights = _lexical_weights(pairs, extracted, direct_lexicon, inverse_lexicon)
    table = _make_table(pairs, extracted, lexical_weights, limit)
    logger.info(
        "scored %s phrase pairs (%s source phrases) in %.1f s; kept %s with limit %s",
        f"{len(pairs.counts):,}", f"{len(extracted.source_phrases):,}",
        time.monotonic() - start, f"{len(table):,}", limit,
    )
    return table


@dataclass
class _ExtractedPhrases:
    """Every extracted occurrence as ids of interned phrases and alignments."""

    source_phrases: list[Phrase]
    target_phrases: list[Phrase]
    alignments: list[PhraseAlignment]
    source_ids: array  # one entry per occurrence
    target_ids: array
    alignment_ids: array


def _extract_corpus(
    source_corpus: Sequence[Sequence[str]],
    target_corpus: Sequence[Sequence[str]],
    alignments: Sequence[set[tuple[int, int]]],
    max_length: int,
) -> _ExtractedPhrases:
    """Run ``extract_phrases`` on every sentence pair, interning what it finds."""
    source_index: dict[Phrase, int] = {}
    target_index: dict[Phrase, int] = {}
    alignment_index: dict[PhraseAlignment, int] = {}
    source_ids, target_ids, alignment_ids = array("q"), array("q"), array("q")
    sentence_pairs = zip(source_corpus, target_corpus, alignments)
    for source, target, alignment in progress(
        sentence_pairs, total=len(source_corpus), desc="phrase extraction", unit="pairs"
    ):
        targets_of_source: list[list[int]] = [[] for _ in source]
        for source_position, target_position in sorted(alignment):
            targets_of_source[source_position].append(target_position)
        for source_start, source_end, target_start, target_end in extract_phrases(
            source, target, alignment, max_length
        ):
            source_phrase = tuple(source[source_start:source_end])
            target_phrase = tuple(target[target_start:target_end])
            inside = tuple(
                (source_position - source_start, target_position - target_start)
                for source_position in range(source_start, source_end)
                for target_position in targets_of_source[source_position]
            )
            source_ids.append(source_index.setdefault(source_phrase, len(source_index)))
            target_ids.append(target_index.setdefault(target_phrase, len(target_index)))
            alignment_ids.append(alignment_index.setdefault(inside, len(alignment_index)))
    return _ExtractedPhrases(
        list(source_index), list(target_index), list(alignment_index),
        source_ids, target_ids, alignment_ids,
    )


@dataclass
class _PairCounts:
    """Distinct phrase pairs, sorted by source id, with counts and best alignment."""

    source_ids: np.ndarray  # (n_pairs,)
    target_ids: np.ndarray  # (n_pairs,)
    alignment_ids: np.ndarray  # (n_pairs,) most frequent internal alignment
    counts: np.ndarray  # (n_pairs,) count(src, tgt)
    source_counts: np.ndarray  # (n_pairs,) count(src)
    target_counts: np.ndarray  # (n_pairs,) count(tgt)


def _count_pairs(extracted: _ExtractedPhrases) -> _PairCounts:
    """Count occurrences per (pair, alignment), then per pair, source and target."""
    source_ids = np.frombuffer(extracted.source_ids, dtype=np.int64)
    target_ids = np.frombuffer(extracted.target_ids, dtype=np.int64)
    alignment_ids = np.frombuffer(extracted.alignment_ids, dtype=np.int64)
    pair_keys = source_ids * max(len(extracted.target_phrases), 1) + target_ids

    # (pair, alignment) runs: sorted by pair, then alignment id (first seen first)
    order = np.lexsort((alignment_ids, pair_keys))
    sorted_pairs, sorted_alignments = pair_keys[order], alignment_ids[order]
    new_run = np.ones(len(order), dtype=bool)
    new_run[1:] = (sorted_pairs[1:] != sorted_pairs[:-1]) | (
        sorted_alignments[1:] != sorted_alignments[:-1]
    )
    run_starts = np.flatnonzero(new_run)
    run_pairs, run_alignments = sorted_pairs[run_starts], sorted_alignments[run_starts]
    run_counts = np.diff(np.append(run_starts, len(order)))  # (n_runs,)

    # per pair: its most frequent run; a stable sort keeps the first-seen one on ties
    by_count = np.lexsort((-run_counts, run_pairs))
    first_of_pair = np.ones(len(by_count), dtype=bool)
    first_of_pair[1:] = run_pairs[by_count][1:] != run_pairs[by_count][:-1]
    best_runs = by_count[first_of_pair]  # (n_pairs,)
    pair_starts = np.flatnonzero(first_of_pair)
    pair_counts = np.add.reduceat(run_counts[by_count], pair_starts) if len(by_count) else (
        np.zeros(0, dtype=np.int64)
    )

    base = max(len(extracted.target_phrases), 1)
    pair_sources, pair_targets = run_pairs[best_runs] // base, run_pairs[best_runs] % base
    source_totals = np.bincount(pair_sources, weights=pair_counts,
                                minlength=len(extracted.source_phrases))
    target_totals = np.bincount(pair_targets, weights=pair_counts,
                                minlength=len(extracted.target_phrases))
    return _PairCounts(
        pair_sources, pair_targets, run_alignments[best_runs], pair_counts,
        source_totals[pair_sources].astype(np.int64),
        target_totals[pair_targets].astype(np.int64),
    )


def _lexical_weights(
    pairs: _PairCounts,
    extracted: _ExtractedPhrases,
    direct_lexicon: LexicalTable,
    inverse_lexicon: LexicalTable,
) -> tuple[list[float], list[float]]:
    """lex(src|tgt) and lex(tgt|src) of every pair under its best alignment."""
    inverse_weights, direct_weights = [], []
    for source_id, target_id, alignment_id in zip(
        pairs.source_ids.tolist(), pairs.target_ids.tolist(), pairs.alignment_ids.tolist()
    ):
        source_phrase = extracted.source_phrases[source_id]
        target_phrase = extracted.target_phrases[target_id]
        alignment = extracted.alignments[alignment_id]
        inverse_weights.append(
            _lexical_weight(source_phrase, target_phrase, alignment, inverse_lexicon, True)
        )
        direct_weights.append(
            _lexical_weight(source_phrase, target_phrase, alignment, direct_lexicon, False)
        )
    return inverse_weights, direct_weights


def _lexical_weight(
    source_phrase: Phrase,
    target_phrase: Phrase,
    alignment: PhraseAlignment,
    lexicon: LexicalTable,
    inverse: bool,
) -> float:
    """lex(tgt|src) from w(t|s), or with ``inverse`` lex(src|tgt) from w(s|t).

    The predicted side's words each contribute the mean of w over the words
    they are aligned to, or w given NULL when aligned to nothing.
    """
    predicted = source_phrase if inverse else target_phrase
    aligned_to: list[list[int]] = [[] for _ in predicted]
    for source_index, target_index in alignment:
        if inverse:
            aligned_to[source_index].append(target_index)
        else:
            aligned_to[target_index].append(source_index)

    weight = 1.0
    for index, word in enumerate(predicted):
        givens = aligned_to[index]
        if inverse:
            keys = [(word, target_phrase[j]) for j in givens] or [(word, None)]
        else:
            keys = [(source_phrase[i], word) for i in givens] or [(None, word)]
        weight *= sum(lexicon[key] for key in keys) / len(keys)
    return weight


def _make_table(
    pairs: _PairCounts,
    extracted: _ExtractedPhrases,
    lexical_weights: tuple[list[float], list[float]],
    limit: int | None,
) -> PhraseTable:
    """Turn scored pairs into PhraseEntry lists, keeping the best ``limit`` of each."""
    inverse_weights, direct_weights = lexical_weights
    counts = pairs.counts.astype(np.float64)
    inverse_probabilities = (counts / pairs.target_counts).tolist()
    direct_probabilities = (counts / pairs.source_counts).tolist()

    # pairs are sorted by source id; rank inside each source as PhraseTable does
    order = np.lexsort((
        -np.array(direct_weights), -np.array(direct_probabilities), pairs.source_ids,
    )).tolist()
    source_ids, target_ids = pairs.source_ids.tolist(), pairs.target_ids.tolist()
    alignment_ids = pairs.alignment_ids.tolist()
    pair_counts = pairs.counts.tolist()
    source_counts, target_counts = pairs.source_counts.tolist(), pairs.target_counts.tolist()

    entries: dict[Phrase, list[PhraseEntry]] = {}
    for pair in order:
        source = extracted.source_phrases[source_ids[pair]]
        translations = entries.setdefault(source, [])
        if limit is not None and len(translations) >= limit:
            continue
        translations.append(
            PhraseEntry(
                extracted.target_phrases[target_ids[pair]],
                (
                    inverse_probabilities[pair], inverse_weights[pair],
                    direct_probabilities[pair], direct_weights[pair],
                ),
                extracted.alignments[alignment_ids[pair]],
                (target_counts[pair], source_counts[pair], pair_counts[pair]),
            )
        )
    return PhraseTable(entries)


# ---------------------------------------------------------------- Moses format


def _moses_line(source_text: str, entry: PhraseEntry) -> str:
    scores = " ".join(repr(score) for score in entry.scores)
    links = " ".join(f"{i}-{j}" for i, j in entry.alignment)
    counts = " ".join(str(count) for count in entry.counts)
    return FIELD_SEPARATOR.join(
        (source_text, " ".join(entry.target), scores, links, counts)
    ) + "\n"


def _parse_moses_line(line: str, where: str) -> tuple[Phrase, PhraseEntry]:
    fields = [part.strip() for part in line.split("|||")]
    if len(fields) < 3:
        raise MtcError(
            f"{where}: expected 'source ||| target ||| 4 scores [||| alignment "
            f"[||| counts]]', found {len(fields)} field(s); is this a Moses phrase table?"
        )
    source, target = tuple(fields[0].split()), tuple(fields[1].split())
    if not source or not target:
        raise MtcError(f"{where}: empty source or target phrase")
    scores = _parse_numbers(fields[2], float, 4, "scores", where)
    alignment = _parse_alignment(fields[3] if len(fields) > 3 else "", source, target, where)
    counts = (
        _parse_numbers(fields[4], int, 3, "counts", where)
        if len(fields) > 4 and fields[4]
        else (0, 0, 0)
    )
    return source, PhraseEntry(target, scores, alignment, counts)


def _parse_numbers(text: str, kind: type, expected: int, name: str, where: str) -> tuple:
    parts = text.split()
    try:
        numbers = tuple(kind(part) for part in parts)
    except ValueError:
        numbers = ()
    if len(parts) != expected or len(numbers) != expected:
        noun = "numbers" if kind is float else "integers"
        raise MtcError(f"{where}: expected {expected} {noun} as {name}, found {text!r}")
    return numbers


def _parse_alignment(text: str, source: Phrase, target: Phrase, where: str) -> PhraseAlignment:
    links = []
    for link in text.split():
        source_text, dash, target_text = link.partition("-")
        if not (dash and source_text.isdigit() and target_text.isdigit()):
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
def _open_for_writing(path: Path) -> Iterator[IO[str]]:
    """A text stream onto ``path`` (atomic), gzip-compressed for a ``.gz`` name."""
    if path.suffix != ".gz":
        with atomic_open(path, "w") as stream:
            yield stream
        return
    with atomic_open(path, "wb") as raw:
        # level 6 is zlib's default trade-off; gzip's own default 9 is far slower
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as compressed:
            with io.TextIOWrapper(compressed, encoding="utf-8", newline="\n") as stream:
                yield stream


def _read_text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its end) for a UTF-8 file, gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as stream:
            for line_number, raw in enumerate(stream, start=1):
                try:
                    yield line_number, raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError:
                    raise MtcError(
                        f"{path}:{line_number}: not valid UTF-8; "
                        "convert the file to UTF-8, e.g. with iconv"
                    ) from None
    except (OSError, EOFError) as error:
        raise MtcError(f"{path}: cannot read ({error})") from None
