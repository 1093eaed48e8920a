"""N-gram language model with interpolated modified Kneser–Ney smoothing.

The model estimates P(word | history) from the target side of the training
corpus. Every sentence is padded as ``<s> w1 ... wk </s>``; ``<s>`` is only
ever a history, never predicted, and ``</s>`` is predicted like a word.

Estimation follows Kneser & Ney (1995), "Improved backing-off for M-gram
language modeling", in the interpolated, modified form of Chen & Goodman
(1998), "An empirical study of smoothing techniques for language modeling"
(TR-10-98), the same recipe KenLM's ``lmplz`` implements:

1. *Adjusted counts.* The highest order uses raw counts. A lower-order
   n-gram uses its *continuation count*, the number of distinct words seen
   immediately to its left (Chen & Goodman, section 3.4): "francisco" is
   frequent but follows only "san", so it is a poor guess in a new context.
   An n-gram that starts with ``<s>`` has no left neighbour and keeps its raw
   count.
2. *Discounts.* For each order, from the counts of counts n1..n4 of the
   adjusted counts (Chen & Goodman, eq. 26)::

       Y  = n1 / (n1 + 2 n2)
       D1 = 1 - 2 Y n2 / n1,  D2 = 2 - 3 Y n3 / n2,  D3+ = 3 - 4 Y n4 / n3

   Each discount must lie in (0, k) for the count k it applies to. On a tiny
   corpus some counts of counts are zero or the formulas leave that range;
   then one warning is logged and the order falls back to a single absolute
   discount D = Y for all counts (Ney, Essen & Kneser 1994) when 0 < Y < 1,
   and to D = 0.5 otherwise.
3. *Interpolation.* With c the adjusted count and D(c) its discount::

       P(w | h) = (c(h w) - D(c(h w))) / c(h .)  +  gamma(h) P(w | h')
       gamma(h) = (D1 N1(h .) + D2 N2(h .) + D3+ N3+(h .)) / c(h .)

   where h' drops the oldest word of h and N_k(h .) counts the words seen
   after h with adjusted count k. The unigram distribution is interpolated
   with the uniform distribution over the vocabulary (every word but
   ``<s>``, counting ``<unk>``), so ``<unk>`` gets the finite probability
   gamma() / |V|. A history never seen passes its words on unchanged.

Because the model is interpolated, P(w | h) for a word never seen after h is
exactly gamma(h) P(w | h'). Stored in backoff form, with log10 P for every
seen n-gram and log10 gamma(h) as the backoff weight of every history, the
ARPA file reproduces the interpolated probabilities exactly.

Logarithms: the model stores log10 values, as ARPA files do; every public
scoring method returns natural logarithms, the unit the decoder's log-linear
model adds up.
"""

from __future__ import annotations

import gzip
import logging
import math
import time
import zlib
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterable, Iterator, Sequence

from mtcompare.errors import MtcError
from mtcompare.fileio import atomic_open_text

logger = logging.getLogger(__name__)

BOS = "<s>"
EOS = "</s>"
UNK = "<unk>"
LN10 = math.log(10.0)
FALLBACK_DISCOUNT = 0.5

NGram = tuple[str, ...]
LMState = tuple[str, ...]
Discounts = tuple[float, float, float]


class NGramLanguageModel:
    """A backoff n-gram model: log10 probabilities and log10 backoff weights.

    ``entries`` maps every n-gram of the model to ``(log10 P(w | h),
    log10 backoff weight)``; the weight is 0.0 for n-grams that are no
    history of a longer one. ``discounts`` holds (D1, D2, D3+) per order
    when the model was estimated here, and is empty when read from ARPA.
    """

    def __init__(
        self,
        order: int,
        entries: dict[NGram, tuple[float, float]],
        discounts: Sequence[Discounts] = (),
    ) -> None:
        if (UNK,) not in entries:
            raise MtcError(f"the language model has no {UNK} unigram; re-estimate it")
        self.order = order
        self.entries = entries
        self.discounts = list(discounts)
        self.vocabulary = frozenset(ngram[0] for ngram in entries if len(ngram) == 1)
        self.histories = frozenset(ngram[:-1] for ngram in entries if len(ngram) > 1)
        # what ``score`` reads: per n-gram (natural-log P, natural-log backoff,
        # is it the history of a longer n-gram), in one lookup
        self._scores = {
            ngram: (log_prob * LN10, backoff * LN10, ngram in self.histories)
            for ngram, (log_prob, backoff) in entries.items()
        }

    # -- scoring --------------------------------------------------------------

    def initial_state(self) -> LMState:
        """The state before the first word of a sentence."""
        return (BOS,)

    def score(self, state: LMState, word: str) -> tuple[float, LMState]:
        """Natural-log P(word | state) and the state after ``word``.

        ``state`` holds at most the last n-1 words. The returned state is the
        longest suffix that is the history of some n-gram in the model, so
        two hypotheses whose futures the model cannot tell apart share a
        state (this is what makes hypothesis recombination work).
        """
        if word not in self.vocabulary:
            word = UNK
        scores = self._scores
        ngram = state + (word,)
        entry = scores.get(ngram)
        backoff = 0.0
        while entry is None:
            # back off: the history's weight, then one word less of history
            history = scores.get(ngram[:-1])
            if history is not None:
                backoff += history[1]
            ngram = ngram[1:]
            entry = scores.get(ngram)
        # The next state is a suffix of the n-gram found (a longer suffix of
        # state + word is no n-gram of the model, so no history either).
        if len(ngram) >= self.order:
            ngram = ngram[1:]
        while ngram:
            suffix = scores.get(ngram)
            if suffix is not None and suffix[2]:
                break
            ngram = ngram[1:]
        return entry[0] + backoff, ngram

    def score_words(
        self, state: LMState, words: Sequence[str]
    ) -> tuple[float, LMState]:
        """Natural-log probability of ``words`` after ``state``, and the new state."""
        total = 0.0
        for word in words:
            log_prob, state = self.score(state, word)
            total += log_prob
        return total, state

    def sentence_logprob(self, tokens: Sequence[str]) -> float:
        """Natural-log probability of ``<s> tokens </s>`` (``</s>`` included)."""
        total, state = self.score_words(self.initial_state(), tokens)
        return total + self.score(state, EOS)[0]

    def perplexity(self, lines: Iterable[Sequence[str] | str]) -> float:
        """Perplexity over sentences (token lists or space-separated lines).

        Every token and each sentence's ``</s>`` counts; unknown words are
        scored as ``<unk>`` and included, as KenLM's "including OOVs".
        """
        total = 0.0
        predicted = 0
        for line in lines:
            tokens = line.split() if isinstance(line, str) else line
            total += self.sentence_logprob(tokens)
            predicted += len(tokens) + 1
        if predicted == 0:
            raise MtcError(
                "perplexity of an empty text is undefined; give at least one line"
            )
        return math.exp(-total / predicted)

    # -- ARPA -----------------------------------------------------------------

    def write_arpa(self, path: str | Path) -> None:
        """Write the model as an ARPA file (gzip-compressed if ``path`` ends in .gz)."""
        by_order: dict[int, list[NGram]] = defaultdict(list)
        for ngram in self.entries:
            by_order[len(ngram)].append(ngram)
        with atomic_open_text(path) as stream:
            stream.write("\\data\\\n")
            for order in range(1, self.order + 1):
                stream.write(f"ngram {order}={len(by_order[order])}\n")
            for order in range(1, self.order + 1):
                stream.write(f"\n\\{order}-grams:\n")
                for ngram in by_order[order]:
                    log_prob, backoff = self.entries[ngram]
                    line = f"{log_prob!r}\t{' '.join(ngram)}"
                    if order < self.order:
                        line += f"\t{backoff!r}"
                    stream.write(line + "\n")
            stream.write("\n\\end\\\n")
        logger.info(
            "wrote %s: %s n-grams of order %d",
            path,
            f"{len(self.entries):,}",
            self.order,
        )

    @classmethod
    def read_arpa(cls, path: str | Path) -> "NGramLanguageModel":
        """Read an ARPA file written by this module, KenLM or SRILM."""
        path = Path(path)
        start = time.monotonic()
        entries: dict[NGram, tuple[float, float]] = {}
        order = 0
        section = 0
        with _open_text_for_reading(path) as stream:
            for number, raw in enumerate(stream, start=1):
                line = raw.strip()
                if not line or line.startswith("ngram ") or line == "\\data\\":
                    continue
                if line == "\\end\\":
                    break
                if line.startswith("\\") and line.endswith("-grams:"):
                    section = _parse_section(line, path, number)
                    order = max(order, section)
                    continue
                entries.update([_parse_ngram_line(line, section, path, number)])
        if order == 0:
            raise MtcError(f"{path}: no n-gram sections found; is this an ARPA file?")
        model = cls(order, entries)
        logger.info(
            "read %s: %s n-grams of order %d in %.1f s",
            path,
            f"{len(entries):,}",
            order,
            time.monotonic() - start,
        )
        return model


def train_kneser_ney(
    sentences: Iterable[Sequence[str]], order: int = 3
) -> NGramLanguageModel:
    """Estimate an interpolated modified Kneser–Ney model of the given order."""
    if not 1 <= order <= 9:
        raise MtcError(f"language model order {order} is not supported; use 1 to 9")
    start = time.monotonic()
    sentences = list(sentences)
    raw_counts, tokens = _count_ngrams(sentences, order)
    if not sentences:
        raise MtcError(
            "no sentences to estimate a language model from; give a text with at "
            "least one line"
        )
    adjusted = _adjusted_counts(raw_counts, order)
    discounts = [_discounts_for_order(adjusted[n], n) for n in range(1, order + 1)]
    entries = _interpolate(adjusted, discounts, order)
    model = NGramLanguageModel(order, entries, discounts)
    elapsed = time.monotonic() - start
    logger.info(
        "estimated a %d-gram Kneser-Ney model on %s tokens: %s n-grams in %.1f s "
        "(%s tokens/s)",
        order,
        f"{tokens:,}",
        f"{len(entries):,}",
        elapsed,
        f"{tokens / max(elapsed, 1e-9):,.0f}",
    )
    return model


def modified_kneser_ney_discounts(
    n1: int, n2: int, n3: int, n4: int
) -> Discounts | None:
    """(D1, D2, D3+) from counts of counts (Chen & Goodman 1998, eq. 26), or None.

    None means the counts of counts give no valid discounts: a count of
    counts is zero or a discount falls outside (0, k).
    """
    if min(n1, n2, n3) == 0:
        return None
    y = n1 / (n1 + 2 * n2)
    discounts = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    if all(0 < discount < k for k, discount in enumerate(discounts, start=1)):
        return discounts
    return None


# -- estimation steps ----------------------------------------------------------


def _count_ngrams(
    sentences: Iterable[Sequence[str]], order: int
) -> tuple[list[Counter[NGram]], int]:
    """Raw counts of every n-gram of order 1..order in the padded sentences."""
    counts: list[Counter[NGram]] = [Counter() for _ in range(order + 1)]
    tokens = 0
    for sentence in sentences:
        padded = (BOS, *sentence, EOS)
        tokens += len(padded) - 1
        for n in range(1, order + 1):
            counter = counts[n]
            for i in range(len(padded) - n + 1):
                counter[padded[i : i + n]] += 1
    return counts, tokens


def _adjusted_counts(
    raw_counts: list[Counter[NGram]], order: int
) -> list[Counter[NGram]]:
    """Raw counts at the top order and for n-grams starting with <s>; continuation
    counts (distinct left neighbours) everywhere else (Chen & Goodman, sec. 3.4)."""
    adjusted: list[Counter[NGram]] = [Counter() for _ in range(order + 1)]
    adjusted[order] = raw_counts[order]
    for n in range(order - 1, 0, -1):
        continuation: Counter[NGram] = Counter()
        for longer in raw_counts[n + 1]:
            continuation[longer[1:]] += 1
        for ngram, count in raw_counts[n].items():
            if ngram[0] == BOS:
                continuation[ngram] = count
        adjusted[n] = continuation
    adjusted[1].pop((BOS,), None)  # <s> is a history only, never predicted
    return adjusted


def _discounts_for_order(counts: Counter[NGram], n: int) -> Discounts:
    counts_of_counts = Counter(count for count in counts.values() if count <= 4)
    n1, n2, n3, n4 = (counts_of_counts[k] for k in (1, 2, 3, 4))
    discounts = modified_kneser_ney_discounts(n1, n2, n3, n4)
    if discounts is not None:
        return discounts
    y = n1 / (n1 + 2 * n2) if n1 + n2 > 0 else 0.0
    single = y if 0 < y < 1 else FALLBACK_DISCOUNT
    logger.warning(
        "order %d: counts of counts n1=%d n2=%d n3=%d n4=%d give no valid modified "
        "Kneser-Ney discounts (corpus too small); using one absolute discount "
        "D=%.4g for all counts",
        n,
        n1,
        n2,
        n3,
        n4,
        single,
    )
    return (single, single, single)


def _interpolate(
    adjusted: list[Counter[NGram]], discounts: list[Discounts], order: int
) -> dict[NGram, tuple[float, float]]:
    """Interpolated probabilities, lowest order first; backoff weights = gamma(h)."""
    vocabulary = {ngram[0] for ngram in adjusted[1]} | {UNK}
    uniform = 1.0 / len(vocabulary)
    probability: dict[NGram, float] = {}
    gamma: dict[NGram, float] = {}
    for n in range(1, order + 1):
        discount_of = (0.0, *discounts[n - 1])
        totals: dict[NGram, float] = defaultdict(float)
        mass: dict[NGram, float] = defaultdict(float)
        for ngram, count in adjusted[n].items():
            totals[ngram[:-1]] += count
            mass[ngram[:-1]] += discount_of[min(count, 3)]
        for history, total in totals.items():
            gamma[history] = mass[history] / total
        for ngram, count in adjusted[n].items():
            history = ngram[:-1]
            lower = uniform if n == 1 else probability[ngram[1:]]
            discounted = count - discount_of[min(count, 3)]
            probability[ngram] = discounted / totals[history] + gamma[history] * lower
    if (UNK,) not in probability:
        probability[(UNK,)] = gamma[()] * uniform
    entries: dict[NGram, tuple[float, float]] = {(BOS,): (0.0, 0.0)}
    for ngram, prob in probability.items():
        entries[ngram] = (math.log10(prob), 0.0)
    for history, weight in gamma.items():
        if history:
            entries[history] = (entries[history][0], math.log10(weight))
    return entries


# -- ARPA parsing --------------------------------------------------------------


def _parse_section(line: str, path: Path, number: int) -> int:
    try:
        return int(line[1 : -len("-grams:")])
    except ValueError:
        raise MtcError(f"{path}:{number}: bad section header {line!r}") from None


def _parse_ngram_line(
    line: str, section: int, path: Path, number: int
) -> tuple[NGram, tuple[float, float]]:
    fields = line.split()
    if section == 0 or len(fields) not in (section + 1, section + 2):
        raise MtcError(
            f"{path}:{number}: expected a log10 probability, {section} word(s) and an "
            f"optional backoff weight, found {line[:80]!r}"
        )
    try:
        log_prob = float(fields[0])
        backoff = float(fields[section + 1]) if len(fields) == section + 2 else 0.0
    except ValueError:
        raise MtcError(f"{path}:{number}: not a number in {line[:80]!r}") from None
    return tuple(fields[1 : section + 1]), (log_prob, backoff)


@contextmanager
def _open_text_for_reading(path: Path) -> Iterator[IO[str]]:
    try:
        if path.suffix == ".gz":
            stream: IO[str] = gzip.open(path, "rt", encoding="utf-8")
        else:
            stream = open(path, encoding="utf-8")
    except OSError as error:
        raise MtcError(
            f"{path}: cannot read the language model ({error.strerror})"
        ) from None
    with stream:
        try:
            yield stream
        except (OSError, EOFError, UnicodeDecodeError, zlib.error) as error:
            # raised while the caller reads: not gzip, truncated, not UTF-8
            raise MtcError(f"{path}: not a readable ARPA file ({error})") from None
