"""Phrase-based stack decoding with future-cost estimation.

The decoder searches for the target sentence e that maximises a log-linear
score sum_i w_i h_i(e, f) over a segmentation of the source f into phrases,
each translated by a phrase-table entry, in some order. The features h_i:

* the four phrase-table scores, as natural logs (Moses order
  phi(f|e), lex(f|e), phi(e|f), lex(e|f));
* the language model's natural-log probability of the target words,
  including the final ``</s>``;
* distance-based distortion, -|start of this phrase - end of the previous|;
* a word penalty of -1 per target word and a phrase penalty of +1 per
  phrase (with Moses' default weights -1 and 0.2 both reward length);
* an unknown-word penalty of -100 for each source word copied through
  because the phrase table has no translation for it.

The search is the beam search of Koehn (2004), "Pharaoh: a beam search
decoder for phrase-based statistical machine translation models", described
in Koehn, *Statistical Machine Translation* (2010), chapter 6:

1. *Translation options.* For every source span the phrase table knows,
   up to ``option_limit`` entries, ranked by their phrase features plus a
   language-model estimate without context. A single word without any entry
   is copied through as its own translation. Options are computed once per
   source phrase and cached.
2. *Future cost.* For each span, the best option score (with its LM
   estimate), improved by dynamic programming over ways to split the span
   (Koehn 2010, sec. 6.3.2). The future cost of a partial translation is the
   sum over its maximal uncovered runs; it is added to the hypothesis score
   when hypotheses that cover different words compete in one stack.
3. *Stacks.* Hypotheses (coverage bitmask, end of the last phrase, LM state,
   score, back pointer, the phrase's target words) live in stack k when they
   cover k source words. Stacks are expanded in order; each hypothesis is
   extended by every option whose span is uncovered and allowed by the
   distortion limit. A jump may span at most ``distortion_limit`` words, and
   a phrase that leaves a gap behind must end within ``distortion_limit``
   words of that gap, so the decoder can always come back to it
   (Koehn 2010, sec. 6.3.3).
4. *Recombination.* Two hypotheses with the same coverage, the same last end
   and the same LM state have the same future; only the better survives
   (Koehn 2010, sec. 6.3.1).
5. *Pruning.* A stack keeps its ``stack_size`` best hypotheses by score plus
   future cost (histogram pruning) and drops those more than
   ``beam_threshold`` below its best (threshold pruning, sec. 6.3.4).
   Both are also applied while a stack fills, so a hypothesis that could not
   survive is never stored.
6. The best complete hypothesis, after adding the LM score of ``</s>``, is
   followed back to the start.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Sequence

from mtcompare.errors import MtcError
from mtcompare.progress import progress
from mtcompare.smt.lm import EOS, LMState, NGramLanguageModel

if TYPE_CHECKING:
    from mtcompare.smt.phrases import PhraseTable

logger = logging.getLogger(__name__)

# Moses' UnknownWordPenalty: the feature value of a copied unknown word.
UNKNOWN_WORD_PENALTY = -100.0
# Phrase-table probabilities are floored before taking logs.
PROBABILITY_FLOOR = 1e-20


class Option(NamedTuple):
    """One translation of a source span, with everything that is known before
    the search: the weighted features that need no context and the parts of
    the LM score that do not depend on the words before the phrase."""

    target: tuple[str, ...]
    static_score: float  # weighted phrase features, penalties
    lm_estimate: float  # LM log prob without context, for the future cost
    lm_head: tuple[str, ...]  # the first n-1 words, whose LM score needs context
    lm_tail_score: float  # LM log prob of the later words, given the head
    lm_tail_state: LMState | None  # LM state after the phrase; None if it needs context


# A hypothesis: (score + future cost, score, coverage, last end, LM state,
# previous hypothesis, target words of its last phrase).
Hypothesis = tuple
NO_HYPOTHESIS: Hypothesis = ()


@dataclass
class DecoderWeights:
    """Log-linear feature weights; the defaults are Moses' untuned ones."""

    language_model: float = 0.5
    phrase: tuple[float, float, float, float] = (0.2, 0.2, 0.2, 0.2)
    distortion: float = 0.3
    word_penalty: float = -1.0
    phrase_penalty: float = 0.2
    unknown_word: float = 1.0


@dataclass
class DecoderConfig:
    """Search settings. ``distortion_limit`` 0 decodes monotonically."""

    stack_size: int = 50
    beam_threshold: float = 10.0
    distortion_limit: int = 6
    option_limit: int = 20
    weights: DecoderWeights = field(default_factory=DecoderWeights)

    def __post_init__(self) -> None:
        if isinstance(self.weights, dict):
            weights = dict(self.weights)
            weights["phrase"] = tuple(weights.get("phrase", (0.2,) * 4))
            self.weights = DecoderWeights(**weights)
        problems = [
            f"{name} must be at least {low}, got {value}"
            for name, value, low in (
                ("stack_size", self.stack_size, 1),
                ("option_limit", self.option_limit, 1),
                ("distortion_limit", self.distortion_limit, 0),
            )
            if value < low
        ]
        if self.beam_threshold <= 0:
            problems.append(
                f"beam_threshold must be positive, got {self.beam_threshold}"
            )
        if len(self.weights.phrase) != 4:
            problems.append(
                f"weights.phrase needs 4 weights, got {len(self.weights.phrase)}"
            )
        if problems:
            raise MtcError("decoder settings: " + "; ".join(problems))


@dataclass
class Translation:
    """A decoded sentence: target words, model score, and the phrases used
    as (source start, source end, target words), in target order."""

    words: list[str]
    score: float
    phrases: list[tuple[int, int, tuple[str, ...]]]


class Decoder:
    """A phrase-based stack decoder over a phrase table and a language model."""

    def __init__(
        self,
        phrase_table: PhraseTable,
        language_model: NGramLanguageModel,
        config: DecoderConfig | None = None,
    ) -> None:
        self.phrase_table = phrase_table
        self.language_model = language_model
        self.config = config or DecoderConfig()
        self._options_by_source: dict[tuple[str, ...], list[Option]] = {}

    # -- public API -------------------------------------------------------------

    def decode(self, tokens: Sequence[str]) -> list[str]:
        """The best translation of one tokenised sentence."""
        return self.search(tokens).words

    def search(self, tokens: Sequence[str]) -> Translation:
        """The best translation with its score and phrase segmentation."""
        tokens = tuple(tokens)
        if not tokens:
            return Translation([], 0.0, [])
        options = self._span_options(tokens)
        future_cost = _future_cost_table(len(tokens), options, self.config.weights)
        search = _Search(self, tokens, options, future_cost)
        return search.run()

    def decode_corpus(
        self, sentences: Sequence[Sequence[str]], processes: int = 2
    ) -> list[list[str]]:
        """Decode many sentences, in ``processes`` forked workers, in input order."""
        start = time.monotonic()
        if processes <= 1 or len(sentences) < 2:
            results = [
                self.decode(tokens)
                for tokens in progress(
                    sentences, len(sentences), "decoding", "sentences"
                )
            ]
        else:
            results = self._decode_in_workers(sentences, processes)
        elapsed = max(time.monotonic() - start, 1e-9)
        words = sum(len(tokens) for tokens in sentences)
        logger.info(
            "decoded %s sentences (%s source words) in %.1f s with %d process(es): "
            "%.2f sentences/s, %.0f words/s",
            f"{len(sentences):,}",
            f"{words:,}",
            elapsed,
            max(processes, 1),
            len(sentences) / elapsed,
            words / elapsed,
        )
        return results

    # -- translation options ----------------------------------------------------

    def _span_options(
        self, tokens: tuple[str, ...]
    ) -> dict[tuple[int, int], list[Option]]:
        """Options for every span with a translation; unknown single words copied."""
        longest = max(self.phrase_table.max_source_length, 1)
        options: dict[tuple[int, int], list[Option]] = {}
        for start in range(len(tokens)):
            for end in range(start + 1, min(start + longest, len(tokens)) + 1):
                found = self._options_for(tokens[start:end])
                if found:
                    options[(start, end)] = found
            if (start, start + 1) not in options:
                options[(start, start + 1)] = [self._copy_option(tokens[start])]
        return options

    def _options_for(self, source: tuple[str, ...]) -> list[Option]:
        cached = self._options_by_source.get(source)
        if cached is not None:
            return cached
        weights = self.config.weights
        scored = []
        for entry in self.phrase_table.get(source):
            features = sum(
                weight * math.log(max(probability, PROBABILITY_FLOOR))
                for weight, probability in zip(weights.phrase, entry.scores)
            )
            static = (
                features
                - weights.word_penalty * len(entry.target)
                + weights.phrase_penalty
            )
            scored.append(self._make_option(entry.target, static))
        lm_weight = weights.language_model
        scored.sort(
            key=lambda option: option.static_score + lm_weight * option.lm_estimate,
            reverse=True,
        )
        options = scored[: self.config.option_limit]
        self._options_by_source[source] = options
        return options

    def _copy_option(self, word: str) -> Option:
        weights = self.config.weights
        static = (
            weights.unknown_word * UNKNOWN_WORD_PENALTY
            - weights.word_penalty
            + weights.phrase_penalty
        )
        return self._make_option((word,), static)

    def _make_option(self, target: tuple[str, ...], static_score: float) -> Option:
        """Split the LM score: words from position n-1 on see only phrase words."""
        language_model = self.language_model
        lm_estimate = language_model.score_words((), target)[0]
        head_length = language_model.order - 1
        head = target[:head_length]
        if len(target) <= head_length:
            return Option(target, static_score, lm_estimate, head, 0.0, None)
        tail_score, tail_state = language_model.score_words(head, target[head_length:])
        return Option(target, static_score, lm_estimate, head, tail_score, tail_state)

    def _decode_in_workers(
        self, sentences: Sequence[Sequence[str]], processes: int
    ) -> list[list[str]]:
        global _worker_decoder
        _worker_decoder = self
        try:
            context = multiprocessing.get_context("fork")
            # Workers ignore Ctrl-C: the parent gets it, and leaving the
            # with-block terminates them, instead of every worker dying with
            # its own KeyboardInterrupt while the parent waits for results.
            with context.Pool(processes, initializer=_ignore_interrupts) as pool:
                decoded = pool.imap(_decode_in_worker, sentences, chunksize=2)
                return list(progress(decoded, len(sentences), "decoding", "sentences"))
        finally:
            _worker_decoder = None


_worker_decoder: Decoder | None = None


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _decode_in_worker(tokens: Sequence[str]) -> list[str]:
    assert _worker_decoder is not None, "worker started without a decoder"
    return _worker_decoder.decode(tokens)


def _future_cost_table(
    length: int, options: dict[tuple[int, int], list[Option]], weights: DecoderWeights
) -> list[list[float]]:
    """future_cost[start][end]: best estimated score of translating the span."""
    lm_weight = weights.language_model
    future_cost = [[-math.inf] * (length + 1) for _ in range(length + 1)]
    for (start, end), span_options in options.items():
        future_cost[start][end] = max(
            option.static_score + lm_weight * option.lm_estimate
            for option in span_options
        )
    for span_length in range(2, length + 1):
        for start in range(length - span_length + 1):
            end = start + span_length
            best = future_cost[start][end]
            for middle in range(start + 1, end):
                split = future_cost[start][middle] + future_cost[middle][end]
                if split > best:
                    best = split
            future_cost[start][end] = best
    return future_cost


class _Search:
    """The stacks of one sentence; ``run`` expands them in order."""

    def __init__(
        self,
        decoder: Decoder,
        tokens: tuple[str, ...],
        options: dict[tuple[int, int], list[Option]],
        future_cost: list[list[float]],
    ) -> None:
        self.decoder = decoder
        self.config = decoder.config
        self.language_model = decoder.language_model
        self.length = len(tokens)
        self.span_cost = future_cost
        # spans_from[start]: (end, bitmask, options), shortest span first
        self.spans_from: list[list[tuple[int, int, list[Option]]]] = [
            [] for _ in range(self.length)
        ]
        for (start, end), span_options in sorted(options.items()):
            mask = ((1 << (end - start)) - 1) << start
            self.spans_from[start].append((end, mask, span_options))
        self.stacks: list[dict[tuple, Hypothesis]] = [
            {} for _ in range(self.length + 1)
        ]
        self.floors = [-math.inf] * (self.length + 1)
        self.future_by_coverage: dict[int, float] = {}
        # LM scores given a state: of a phrase's head, and of single words
        self.head_cache: dict[
            tuple[LMState, tuple[str, ...]], tuple[float, LMState]
        ] = {}
        self.word_cache: dict[tuple[LMState, str], tuple[float, LMState]] = {}

    def run(self) -> Translation:
        state = self.language_model.initial_state()
        initial = (self.future_of(0), 0.0, 0, 0, state, NO_HYPOTHESIS, ())
        self.stacks[0][(0, 0, state)] = initial
        for covered in range(self.length):
            for hypothesis in self.pruned(covered):
                self.expand(hypothesis, covered)
        return self.best_translation()

    def future_of(self, coverage: int) -> float:
        """Sum of the future cost of every maximal uncovered run of words."""
        cached = self.future_by_coverage.get(coverage)
        if cached is not None:
            return cached
        total = 0.0
        position = 0
        length = self.length
        while position < length:
            if coverage >> position & 1:
                position += 1
                continue
            run_end = position
            while run_end < length and not coverage >> run_end & 1:
                run_end += 1
            total += self.span_cost[position][run_end]
            position = run_end
        self.future_by_coverage[coverage] = total
        return total

    def pruned(self, covered: int) -> list[Hypothesis]:
        """The stack's best hypotheses within the beam, best first."""
        hypotheses = sorted(
            self.stacks[covered].values(), key=_by_estimate, reverse=True
        )
        if not hypotheses:
            return []
        floor = hypotheses[0][0] - self.config.beam_threshold
        kept = [h for h in hypotheses[: self.config.stack_size] if h[0] >= floor]
        self.stacks[covered] = {}
        return kept

    def expand(self, hypothesis: Hypothesis, covered: int) -> None:
        """Add every allowed extension of ``hypothesis`` to its stack."""
        _, score, coverage, last_end, lm_state, _, _ = hypothesis
        limit = self.config.distortion_limit
        distortion_weight = self.config.weights.distortion
        lm_weight = self.config.weights.language_model
        first_gap = (~coverage & (coverage + 1)).bit_length() - 1
        lowest = max(first_gap, last_end - limit)
        highest = min(self.length, last_end + limit + 1)
        if limit == 0:
            lowest = highest = first_gap
            highest += 1
        head_cache = self.head_cache
        for start in range(lowest, highest):
            if coverage >> start & 1:
                continue
            base = score - distortion_weight * abs(start - last_end)
            for end, mask, span_options in self.spans_from[start]:
                if coverage & mask:
                    break
                if start != first_gap and end - first_gap > limit:
                    break
                new_coverage = coverage | mask
                future = self.future_of(new_coverage)
                stack_index = covered + end - start
                stack = self.stacks[stack_index]
                floor = self.floors[stack_index]
                for target, static, _, head, tail_score, tail_state in span_options:
                    lm_key = (lm_state, head)
                    head_result = head_cache.get(lm_key)
                    if head_result is None:
                        head_result = self.score_head(lm_state, head)
                        head_cache[lm_key] = head_result
                    head_score, new_state = head_result
                    if tail_state is not None:
                        new_state = tail_state
                    new_score = base + static + lm_weight * (head_score + tail_score)
                    estimate = new_score + future
                    if estimate < floor:
                        continue
                    key = (new_coverage, end, new_state)
                    existing = stack.get(key)
                    if existing is not None and existing[1] >= new_score:
                        continue
                    stack[key] = (
                        estimate,
                        new_score,
                        new_coverage,
                        end,
                        new_state,
                        hypothesis,
                        target,
                    )
                if len(stack) > 2 * self.config.stack_size:
                    self.shrink(stack_index)

    def score_head(
        self, state: LMState, head: tuple[str, ...]
    ) -> tuple[float, LMState]:
        """LM log prob of the first n-1 words of a phrase after ``state``, word by
        word through a cache: the second word's context no longer holds the
        oldest word of ``state``, so many hypotheses share it."""
        word_cache = self.word_cache
        total = 0.0
        for word in head:
            key = (state, word)
            result = word_cache.get(key)
            if result is None:
                result = self.language_model.score(state, word)
                word_cache[key] = result
            total += result[0]
            state = result[1]
        return total, state

    def shrink(self, stack_index: int) -> None:
        """Prune a filling stack and raise its floor: what falls below can't survive."""
        stack = self.stacks[stack_index]
        size = self.config.stack_size
        ranked = sorted(stack.items(), key=lambda item: item[1][0], reverse=True)[:size]
        self.stacks[stack_index] = dict(ranked)
        self.floors[stack_index] = max(
            ranked[-1][1][0], ranked[0][1][0] - self.config.beam_threshold
        )

    def best_translation(self) -> Translation:
        """Add ``</s>`` to each complete hypothesis; follow the best one back."""
        lm_weight = self.config.weights.language_model
        best: Hypothesis = NO_HYPOTHESIS
        best_score = -math.inf
        for hypothesis in self.stacks[self.length].values():
            final = (
                hypothesis[1]
                + lm_weight * self.language_model.score(hypothesis[4], EOS)[0]
            )
            if final > best_score:
                best, best_score = hypothesis, final
        if best is NO_HYPOTHESIS:
            raise RuntimeError("stack decoding ended without a complete hypothesis")
        phrases = []
        while best[5] is not NO_HYPOTHESIS:
            previous = best[5]
            span = best[2] & ~previous[2]
            start = (span & -span).bit_length() - 1
            phrases.append((start, best[3], best[6]))
            best = previous
        phrases.reverse()
        words = [word for _, _, target in phrases for word in target]
        return Translation(words, best_score, phrases)


def _by_estimate(hypothesis: Hypothesis) -> float:
    return hypothesis[0]
