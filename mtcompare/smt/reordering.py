"""The lexicalised reordering model: how a phrase pair tends to be placed.

Moses' ``msd-bidirectional-fe`` model with word-based orientation (Tillmann
2004; Koehn et al. 2005, "Edinburgh system description for the 2005 IWSLT
speech translation evaluation"; Koehn 2010, "Statistical Machine Translation",
section 5.4.2). For each phrase pair (f, e) it gives the probability of three
*orientations* of the pair with respect to the phrase translated before it
(backward) and the phrase translated after it (forward): monotone, swap and
discontinuous. So the table holds six probabilities per pair, in the order

    backward: mono swap discontinuous    forward: mono swap discontinuous

conditioned on both f and e ("fe").

Training, word-based. For an extracted occurrence with source span
[s_start, s_end) and target span [t_start, t_end) (ends exclusive) in a
sentence pair with word alignment A, the orientation is read off the
alignment points diagonally next to the pair's corners:

                monotone point              swap point
    backward    (s_start - 1, t_start - 1)  (s_end, t_start - 1)
    forward     (s_end, t_end)              (s_start - 1, t_end)

The corner before the first words, (-1, -1), and the corner after the last
words, (source length, target length), count as alignment points, so a pair
that starts both sentences is backward-monotone and one that ends both is
forward-monotone. The orientation is monotone when only the monotone point is
aligned, swap when only the swap point is, and discontinuous otherwise. The
textbook only names the two single cases; when both points are aligned (the
neighbouring target word is linked to source words on both sides of the
pair) the orientation is discontinuous, as in Moses' phrase extraction.

Estimation. Orientations are counted per distinct phrase pair over all
occurrences in the corpus, and smoothed towards the orientation distribution
of the whole corpus, p(o) (Koehn 2010, section 5.4.2):

    p(o | f, e) = (count(o, f, e) + sigma * p(o)) / (count(f, e) + sigma)

separately for backward and forward, so each direction's three probabilities
sum to one. sigma = 0.5 is the default smoothing constant of Moses'
``train-model.perl -reordering-smooth``. That option's documentation says
that a constant followed by "u" ("0.5u") makes the smoothing "based on
actual counts", which we read as the corpus distribution above; a bare "0.5"
then adds the constant to each orientation count alike (p(o) = 1/3 with
sigma = 1.5 in the formula). We follow the textbook's corpus distribution. An
orientation that occurs nowhere in the corpus has p(o) = 0 and so gets
probability 0 for every pair; on any real corpus all three occur.

Decoding, phrase-based. The decoder knows no word alignment inside its
hypotheses, only which source span each phrase covers, so there the
orientation compares a phrase's source span with the previous phrase's
(``phrase_orientation``): monotone when it starts where the previous one
ended, swap when it ends where the previous one started, discontinuous
otherwise. This is Moses' "wbe" model: word-based extraction, phrase-based
decoding.

File format (Moses): ``src ||| tgt ||| p1 p2 p3 p4 p5 p6``, probabilities
not logs, the lines of one source phrase together.
"""

from __future__ import annotations

import itertools
import logging
import time
from array import array
from pathlib import Path
from typing import TYPE_CHECKING, Collection, Iterable, Iterator, Sequence

import numpy as np

from mtcompare.errors import MtcError
from mtcompare.fileio import atomic_open_text

if TYPE_CHECKING:
    from mtcompare.smt.phrases import Phrase, PhraseTable

logger = logging.getLogger(__name__)

MONOTONE, SWAP, DISCONTINUOUS = 0, 1, 2
ORIENTATIONS = 3  # orientations per direction
SCORES = 2 * ORIENTATIONS  # backward then forward
# sigma, the default of Moses' train-model.perl -reordering-smooth
SMOOTHING = 0.5


# ---------------------------------------------------------------- orientations


def word_orientations(
    spans: Sequence[tuple[int, int, int, int]],
    alignment: Collection[tuple[int, int]],
    source_length: int,
    target_length: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Backward and forward orientation of each phrase pair of one sentence pair.

    ``spans`` are ``(src_start, src_end, tgt_start, tgt_end)`` with exclusive
    ends, as ``extract_phrases`` returns them; ``alignment`` holds the
    sentence's (source, target) links. Returns two (n_spans,) int8 arrays of
    MONOTONE, SWAP or DISCONTINUOUS (see the module docstring).
    """
    # linked[(i + 1) * width + j + 1] is 1 if (i, j) is aligned: an alignment
    # matrix, flattened, with a row and column before the sentence (their
    # corner is the point (-1, -1)) and after it (the point at the far corner)
    width = target_length + 2
    linked = np.zeros((source_length + 2) * width, dtype=np.intp)
    if alignment:
        points = np.fromiter(
            itertools.chain.from_iterable(alignment),
            dtype=np.intp,
            count=2 * len(alignment),
        )
        sources, targets = points[0::2], points[1::2]  # (n_links,) each
        if min(sources.min(), targets.min()) < 0 or (
            sources.max() >= source_length or targets.max() >= target_length
        ):
            raise ValueError(
                f"an alignment point is outside a {source_length}x{target_length} "
                "sentence pair"
            )
        linked[(sources + 1) * width + targets + 1] = 1
    linked[0] = linked[-1] = 1

    span_ends = np.fromiter(
        itertools.chain.from_iterable(spans), dtype=np.intp, count=4 * len(spans)
    )
    source_start, source_end = span_ends[0::4], span_ends[1::4]  # (n_spans,) each
    target_start, target_end = span_ends[2::4], span_ends[3::4]
    row_before = source_start * width  # the row of source position s_start - 1
    row_after = (source_end + 1) * width  # the row of source position s_end
    # column t + 1 holds target position t, so target_start is t_start - 1's
    backward = _ORIENTATION_OF_POINTS[
        2 * linked[row_before + target_start] + linked[row_after + target_start]
    ]
    forward = _ORIENTATION_OF_POINTS[
        2 * linked[row_after + target_end + 1] + linked[row_before + target_end + 1]
    ]
    return backward, forward


# indexed by 2 * (monotone point aligned) + (swap point aligned)
_ORIENTATION_OF_POINTS = np.array(
    [DISCONTINUOUS, SWAP, MONOTONE, DISCONTINUOUS], dtype=np.int8
)


def phrase_orientation(
    previous_start: int, previous_end: int, start: int, end: int
) -> int:
    """Orientation of source span [start, end) after [previous_start, previous_end).

    For the decoder: MONOTONE if the span starts where the previous one ended,
    SWAP if it ends where the previous one started, else DISCONTINUOUS. The
    first phrase of a sentence follows the empty span (0, 0). For the forward
    score of a hypothesis's last phrase at the end of a sentence of n words,
    ask for the orientation of the empty span (n, n) after it.
    """
    if start == previous_end:
        return MONOTONE
    if end == previous_start:
        return SWAP
    return DISCONTINUOUS


# ---------------------------------------------------------------- estimation


def orientation_distribution(counts: np.ndarray) -> np.ndarray:
    """p(o) over the whole corpus: (6,), each direction's three summing to one.

    ``counts`` is (n_pairs, 6), the orientation counts of every pair. With no
    counts at all the distribution is uniform.
    """
    totals = counts.sum(axis=0, dtype=np.float64).reshape(2, ORIENTATIONS)
    occurrences = totals.sum(axis=1, keepdims=True)  # (2, 1)
    if not occurrences.all():
        return np.full(SCORES, 1 / ORIENTATIONS)
    return (totals / occurrences).reshape(SCORES)


def smoothed_probabilities(
    counts: np.ndarray, distribution: np.ndarray, smoothing: float = SMOOTHING
) -> np.ndarray:
    """p(o | f, e) = (count(o, f, e) + sigma p(o)) / (count(f, e) + sigma).

    ``counts`` is (n_pairs, 6) as in ``orientation_distribution``, which
    gives ``distribution``; returns (n_pairs, 6) float64.
    """
    by_direction = counts.reshape(-1, 2, ORIENTATIONS).astype(np.float64)
    pair_counts = by_direction.sum(axis=2, keepdims=True)  # (n_pairs, 2, 1)
    prior = distribution.reshape(1, 2, ORIENTATIONS)
    probabilities = (by_direction + smoothing * prior) / (pair_counts + smoothing)
    return probabilities.reshape(-1, SCORES)


# ---------------------------------------------------------------- the table


class ReorderingTable:
    """(source phrase, target phrase) -> the six orientation probabilities.

    Built for millions of pairs, so the probabilities live in one (n, 6)
    numpy array and each source phrase keeps only its target phrases and the
    row where their probabilities start.
    """

    def __init__(self) -> None:
        # source -> (its target phrases, the row of the first one's probabilities);
        # plain tuples, as millions of them are made
        self._targets: dict[Phrase, tuple[tuple[Phrase, ...], int]] = {}
        self._probabilities = np.zeros((0, SCORES))  # (n_rows, 6)

    @classmethod
    def from_groups(
        cls,
        groups: Iterable[tuple[Phrase, tuple[Phrase, ...]]],
        probabilities: np.ndarray,
    ) -> "ReorderingTable":
        """Each source phrase with its distinct target phrases, pairs in row order.

        The n-th pair listed, counting through all groups, has the six
        ``probabilities[n]``. A source phrase listed twice, or pairs that do
        not match the rows, raise ValueError.
        """
        table = cls()
        row = 0
        for source, targets in groups:
            if source in table._targets:
                raise ValueError(f"source phrase {' '.join(source)!r} is listed twice")
            table._targets[source] = (targets, row)
            row += len(targets)
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if probabilities.shape != (row, SCORES):
            raise ValueError(
                f"{row} phrase pairs need probabilities of shape ({row}, {SCORES}), "
                f"not {probabilities.shape}"
            )
        table._probabilities = probabilities
        return table

    def get(self, source: Phrase, target: Phrase) -> tuple[float, ...] | None:
        """The six probabilities of the pair, or None if the table lacks it."""
        group = self._targets.get(tuple(source))
        if group is None:
            return None
        targets, first_row = group
        try:
            position = targets.index(tuple(target))
        except ValueError:
            return None
        return tuple(self._probabilities[first_row + position].tolist())

    def __len__(self) -> int:
        """The number of (source phrase, target phrase) pairs."""
        return sum(len(targets) for targets, _ in self._targets.values())

    def __contains__(self, source: object) -> bool:
        return source in self._targets

    def items(self) -> Iterator[tuple[Phrase, Phrase, tuple[float, ...]]]:
        """(source, target, probabilities) of every pair, a source's pairs together."""
        for source, (targets, first_row) in self._targets.items():
            rows = self._probabilities[first_row : first_row + len(targets)].tolist()
            for target, probabilities in zip(targets, rows):
                yield source, target, tuple(probabilities)

    def prune_to(self, phrase_table: PhraseTable) -> None:
        """Keep only the pairs that ``phrase_table`` has (e.g. after its pruning)."""
        kept_rows: list[int] = []
        kept: dict[Phrase, tuple[tuple[Phrase, ...], int]] = {}
        for source, (targets, first_row) in self._targets.items():
            translations = {entry.target for entry in phrase_table.get(source)}
            positions = [
                position
                for position, target in enumerate(targets)
                if target in translations
            ]
            if positions:
                kept_targets = tuple(targets[position] for position in positions)
                kept[source] = (kept_targets, len(kept_rows))
                kept_rows.extend(first_row + position for position in positions)
        self._targets = kept
        self._probabilities = self._probabilities[np.array(kept_rows, dtype=np.intp)]

    def alias(self, source: Phrase, known: Phrase) -> None:
        """Give ``source`` the orientation probabilities of ``known``'s pairs."""
        if known in self._targets:
            self._targets[source] = self._targets[known]

    def update(self, other: "ReorderingTable") -> None:
        """Add the pairs of ``other``; a source phrase in both gets ``other``'s.

        For adding the entries of new source phrases, as a translator that
        reads the table for each batch of input does; the rows a replaced
        source phrase had stay in memory unused.
        """
        offset = len(self._probabilities)
        for source, (targets, first_row) in other._targets.items():
            self._targets[source] = (targets, first_row + offset)
        self._probabilities = np.concatenate(
            [self._probabilities, other._probabilities]
        )

    # ------------------------------------------------------------ Moses format

    def write_moses(self, path: str | Path) -> None:
        """Write ``src ||| tgt ||| p1 ... p6`` lines, gzipped if ``path`` ends in .gz.

        Source phrases in code-point order of their text, each one's targets
        in table order; probabilities written exactly (``repr``).
        """
        start = time.monotonic()
        scores_text = _ScoresText()
        with atomic_open_text(path) as stream:
            for source_text, source in sorted((" ".join(s), s) for s in self._targets):
                targets, first_row = self._targets[source]
                rows = self._probabilities[first_row : first_row + len(targets)]
                stream.write(
                    "".join(
                        f"{source_text} ||| {' '.join(target)} ||| "
                        f"{scores_text(probabilities)}\n"
                        for target, probabilities in zip(targets, rows.tolist())
                    )
                )
        logger.info(
            "wrote %s reordering-table entries to %s in %.1f s",
            f"{len(self):,}",
            path,
            time.monotonic() - start,
        )

    @classmethod
    def read_moses(
        cls, path: str | Path, sources: Collection[Phrase] | None = None
    ) -> "ReorderingTable":
        """Read a Moses msd-bidirectional-fe table (gzipped if it ends in .gz).

        ``sources``, source phrases as token tuples, keeps only their lines,
        as Moses' filter-model-given-input.pl does for a test set; other lines
        are skipped unparsed. Fields after the probabilities are ignored. A
        damaged line, or a source phrase whose lines are not together, raises
        :class:`MtcError` naming ``path:line``.
        """
        # phrases.py builds reordering tables with this module, so its file
        # helpers are imported when first needed rather than at import time
        from mtcompare.smt.phrases import _garbage_collection_paused, table_lines

        start = time.monotonic()
        path = Path(path)
        lines = table_lines(path, sources)
        with _garbage_collection_paused():
            groups, probabilities = _read_groups(lines, path)
            table = cls.from_groups(
                groups.items(),
                np.frombuffer(probabilities, dtype=np.float64).reshape(-1, SCORES),
            )
        requested = "" if sources is None else f" (of {len(sources):,} requested)"
        logger.info(
            "read %s reordering-table entries for %s source phrases%s from %s "
            "in %.1f s",
            f"{len(table):,}",
            f"{len(table._targets):,}",
            requested,
            path,
            time.monotonic() - start,
        )
        return table


# at most this many distinct rows of probabilities are cached as text
_SCORE_TEXTS_CACHED = 100_000


class _ScoresText:
    """Formats six probabilities exactly, each distinct row only once.

    Most pairs occur once or twice in a corpus, so a few thousand rows of
    probabilities recur millions of times, and ``repr`` of six floats costs
    far more than a dict lookup. The cache is emptied when it grows large.
    """

    def __init__(self) -> None:
        self._texts: dict[tuple[float, ...], str] = {}

    def __call__(self, probabilities: list[float]) -> str:
        row = tuple(probabilities)
        text = self._texts.get(row)
        if text is None:
            if len(self._texts) >= _SCORE_TEXTS_CACHED:
                self._texts.clear()
            text = self._texts[row] = " ".join(map(repr, row))
        return text


def _read_groups(
    lines: Iterable[tuple[int, str]], path: Path
) -> tuple[dict[Phrase, tuple[Phrase, ...]], array]:
    """Each source phrase's target phrases, and all probabilities in line order."""
    groups: dict[Phrase, tuple[Phrase, ...]] = {}
    probabilities = array("d")
    source_now: Phrase | None = None
    targets_now: dict[Phrase, None] = {}  # the current source's targets, in order
    scores_of_text: dict[str, list[float]] = {}  # few rows recur often, see _ScoresText
    for line_number, line in lines:
        if not line.strip():
            continue
        where = f"{path}:{line_number}"
        source, target, scores_text = _split_line(line, where)
        scores = scores_of_text.get(scores_text)
        if scores is None:
            scores = _parse_scores(scores_text, where)
            if len(scores_of_text) < _SCORE_TEXTS_CACHED:
                scores_of_text[scores_text] = scores
        if source != source_now:
            if source_now is not None:
                groups[source_now] = tuple(targets_now)
            if source in groups:
                raise MtcError(
                    f"{where}: the lines of source phrase {' '.join(source)!r} are "
                    "not together; sort the table, e.g. with LC_ALL=C sort"
                )
            source_now, targets_now = source, {}
        if target in targets_now:
            raise MtcError(
                f"{where}: the pair {' '.join(source)!r} ||| {' '.join(target)!r} "
                "is listed twice"
            )
        targets_now[target] = None
        probabilities.extend(scores)
    if source_now is not None:
        groups[source_now] = tuple(targets_now)
    return groups, probabilities


def _split_line(line: str, where: str) -> tuple[Phrase, Phrase, str]:
    """Source, target and the probabilities' text; MtcError naming ``where``."""
    fields = line.split("|||")
    if len(fields) < 3:
        raise MtcError(
            f"{where}: expected 'source ||| target ||| 6 probabilities', found "
            f"{len(fields)} field(s); is this a Moses reordering table?"
        )
    source, target = tuple(fields[0].split()), tuple(fields[1].split())
    if not source or not target:
        raise MtcError(f"{where}: empty source or target phrase")
    return source, target, fields[2]


def _parse_scores(text: str, where: str) -> list[float]:
    """Six probabilities, each from 0 to 1; MtcError naming ``where``."""
    try:
        scores = [float(number) for number in text.split()]
    except ValueError:
        scores = []
    if len(scores) != SCORES or not all(0.0 <= p <= 1.0 for p in scores):
        raise MtcError(
            f"{where}: expected 6 probabilities (numbers from 0 to 1), found "
            f"{text.strip()!r}"
        )
    return scores
