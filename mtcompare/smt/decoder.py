"""Phrase-based stack decoding with future-cost estimation.

The decoder searches for the target sentence e that maximises a log-linear
score sum_i w_i h_i(e, f) over a segmentation of the source f into phrases,
each translated by a phrase-table entry, in some order. The features h_i:

* the four phrase-table scores, as natural logs (Moses order
  phi(f|e), lex(f|e), phi(e|f), lex(e|f));
* the language model's natural-log probability of the target words,
  including the final ``</s>``;
* distance-based distortion, -|start of this phrase - end of the previous|;
* the lexicalised msd-bidirectional-fe reordering model (Koehn et al. 2005;
  Koehn 2010, sec. 5.4.2): six features, the natural log of
  p(orientation | phrase pair) for the orientation of each phrase with
  respect to the previous one (backward) and of the next one with respect to
  it (forward), each orientation (monotone, swap, discontinuous) its own
  feature; the sentence start acts as a phrase ending before word 0 and the
  sentence end as a phrase starting after the last word;
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
   With ``pop_limit`` set, stacks are filled by *cube pruning* instead
   (Chiang 2007; Huang & Chiang 2007): only the ``pop_limit`` most promising
   (hypothesis, option) pairs per stack, by a context-free estimate, get
   scored exactly; see :meth:`_Search.run_cube_pruning`. On the Bible,
   a pop limit of 500 scores 2.7 times as many sentences per CPU second as
   the full expansion, at a slightly better model score.
6. The best complete hypothesis, after adding the LM score of ``</s>`` and
   the last phrase's forward reordering score, is followed back to the start.

*N-best lists* (Koehn 2010, sec. 9.1.2, as in Moses). When n-best output is
asked for, a hypothesis that loses a recombination is kept as an *arc* of the
winner: another way into the same search state, with a lower score. A path
through the search graph picks one way into each state it passes. The best
path takes the winner everywhere; every other path is reached from a better
one by one *detour*: at one state on it, take an arc instead, and from there
follow the arc's own best path back to the start. Its score is the better
path's minus (winner score - arc score). Paths are popped best first from a
priority queue; a path may only make detours further back than its own last
detour, so each path is generated once. With ``distinct`` only the best path
of each word sequence is kept. Each entry's feature vector is recomputed
from its phrases, so the n-best list states what MERT needs:
``sum(weights * features) == score``.
"""

from __future__ import annotations

import heapq
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
from mtcompare.smt.reordering import phrase_orientation

if TYPE_CHECKING:
    from mtcompare.smt.phrases import PhraseTable
    from mtcompare.smt.reordering import ReorderingTable

logger = logging.getLogger(__name__)

# Moses' UnknownWordPenalty: the feature value of a copied unknown word.
UNKNOWN_WORD_PENALTY = -100.0
# Entries the decoder's LM score caches may hold (about 200 bytes each).
LM_CACHE_SIZE = 2_000_000
# Phrase-table and reordering probabilities are floored before taking logs.
PROBABILITY_FLOOR = 1e-20
# The reordering model of a phrase pair the reordering table lacks (and of a
# copied unknown word): every orientation equally likely.
UNIFORM_ORIENTATION = (1 / 3,) * 6

# The order of the feature vector of an n-best entry, and of the weights.
FEATURE_NAMES = (
    "LM",
    "Distortion",
    "WordPenalty",
    "PhrasePenalty",
    "TM_phi(s|t)",
    "TM_lex(s|t)",
    "TM_phi(t|s)",
    "TM_lex(t|s)",
    "LR_backward_monotone",
    "LR_backward_swap",
    "LR_backward_discontinuous",
    "LR_forward_monotone",
    "LR_forward_swap",
    "LR_forward_discontinuous",
    "UnknownWord",
)
# Moses' names for the groups of features in its n-best lists.
_MOSES_GROUPS = (
    ("LM0", 0, 1),
    ("Distortion0", 1, 2),
    ("WordPenalty0", 2, 3),
    ("PhrasePenalty0", 3, 4),
    ("TranslationModel0", 4, 8),
    ("LexicalReordering0", 8, 14),
    ("UnknownWordPenalty0", 14, 15),
)


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
    backward: tuple[float, float, float]  # weighted log p(orientation) w.r.t. the previous
    forward: tuple[float, float, float]  # weighted log p(orientation of the next phrase)
    phrase_logs: tuple[float, ...]  # the 4 phrase-table features; () for a copied word
    reordering_logs: tuple[float, ...]  # the 6 reordering features' log probabilities


# A hypothesis: (score + future cost, score, coverage, start and end of its
# last phrase, LM state, previous hypothesis, option of its last phrase, and
# for n-best lists the hypotheses it recombined, else None).
Hypothesis = tuple
NO_HYPOTHESIS: Hypothesis = ()
NO_REORDERING = (0.0, 0.0, 0.0)


@dataclass
class DecoderWeights:
    """Log-linear feature weights; the defaults are Moses' untuned ones."""

    language_model: float = 0.5
    phrase: tuple[float, float, float, float] = (0.2, 0.2, 0.2, 0.2)
    distortion: float = 0.3
    word_penalty: float = -1.0
    phrase_penalty: float = 0.2
    unknown_word: float = 1.0
    reordering: tuple[float, ...] = (0.3,) * 6

    def vector(self) -> list[float]:
        """The weights in the order of ``FEATURE_NAMES``."""
        return [
            self.language_model,
            self.distortion,
            self.word_penalty,
            self.phrase_penalty,
            *self.phrase,
            *self.reordering,
            self.unknown_word,
        ]

    @classmethod
    def from_vector(cls, values: Sequence[float]) -> "DecoderWeights":
        """The inverse of :meth:`vector`."""
        if len(values) != len(FEATURE_NAMES):
            raise ValueError(
                f"{len(FEATURE_NAMES)} weights needed, got {len(values)}"
            )
        values = [float(value) for value in values]
        return cls(
            language_model=values[0],
            distortion=values[1],
            word_penalty=values[2],
            phrase_penalty=values[3],
            phrase=tuple(values[4:8]),
            reordering=tuple(values[8:14]),
            unknown_word=values[14],
        )


@dataclass
class DecoderConfig:
    """Search settings. ``distortion_limit`` 0 decodes monotonically."""

    stack_size: int = 50
    beam_threshold: float = 10.0
    distortion_limit: int = 6
    option_limit: int = 20
    weights: DecoderWeights = field(default_factory=DecoderWeights)
    # 0: expand every hypothesis with every option; N > 0: cube pruning,
    # at most N candidates scored per stack
    pop_limit: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.weights, dict):
            weights = dict(self.weights)
            for name in ("phrase", "reordering"):
                if name in weights:
                    weights[name] = tuple(weights[name])
            self.weights = DecoderWeights(**weights)
        problems = [
            f"{name} must be at least {low}, got {value}"
            for name, value, low in (
                ("stack_size", self.stack_size, 1),
                ("option_limit", self.option_limit, 1),
                ("distortion_limit", self.distortion_limit, 0),
                ("pop_limit", self.pop_limit, 0),
            )
            if value < low
        ]
        if self.beam_threshold <= 0:
            problems.append(
                f"beam_threshold must be positive, got {self.beam_threshold}"
            )
        for name, size in (("phrase", 4), ("reordering", 6)):
            given = len(getattr(self.weights, name))
            if given != size:
                problems.append(f"weights.{name} needs {size} weights, got {given}")
        if problems:
            raise MtcError("decoder settings: " + "; ".join(problems))


@dataclass
class Translation:
    """A decoded sentence: target words, model score, the phrases used as
    (source start, source end, target words) in target order, and, for
    n-best entries, the feature vector in the order of ``FEATURE_NAMES``."""

    words: list[str]
    score: float
    phrases: list[tuple[int, int, tuple[str, ...]]]
    features: tuple[float, ...] = ()


def format_trace(translation: Translation) -> str:
    """The phrase segmentation as Moses' ``-t`` shows it: ``the red car |0-1| ...``,
    each target phrase followed by its source span (first and last word)."""
    return " ".join(
        f"{' '.join(target)} |{start}-{end - 1}|".lstrip()
        for start, end, target in translation.phrases
    )


def format_nbest_line(sentence_id: int, text: str, translation: Translation,
                      weights: DecoderWeights) -> str:
    """One line of a Moses n-best list: ``id ||| text ||| features ||| total``."""
    groups = " ".join(
        f"{name}= " + " ".join(f"{value:.6g}" for value in translation.features[low:high])
        for name, low, high in _MOSES_GROUPS
    )
    total = sum(w * h for w, h in zip(weights.vector(), translation.features))
    return f"{sentence_id} ||| {text} ||| {groups} ||| {total:.6g}"


class Decoder:
    """A phrase-based stack decoder over a phrase table, a language model and,
    optionally, a lexicalised reordering table."""

    def __init__(
        self,
        phrase_table: PhraseTable,
        language_model: NGramLanguageModel,
        config: DecoderConfig | None = None,
        reordering_table: ReorderingTable | None = None,
    ) -> None:
        self.phrase_table = phrase_table
        self.language_model = language_model
        self.config = config or DecoderConfig()
        self.reordering_table = reordering_table
        self._options_by_source: dict[tuple[str, ...], list[Option]] = {}
        self._head_cache: dict[tuple[LMState, tuple[str, ...]], tuple[float, LMState]] = {}
        self._word_cache: dict[tuple[LMState, str], tuple[float, LMState]] = {}

    # -- public API -------------------------------------------------------------

    def set_weights(self, weights: DecoderWeights) -> None:
        """Use other feature weights (as tuning does); cached options are dropped."""
        self.config.weights = weights
        self._options_by_source.clear()

    def decode(self, tokens: Sequence[str]) -> list[str]:
        """The best translation of one tokenised sentence."""
        return self.search(tokens).words

    def search(self, tokens: Sequence[str]) -> Translation:
        """The best translation with its score and phrase segmentation."""
        return self.nbest(tokens, 1)[0]

    def nbest(
        self, tokens: Sequence[str], size: int, distinct: bool = True
    ) -> list[Translation]:
        """The ``size`` best translations, best first, with feature vectors.

        ``size`` 1 runs the plain search and gives the 1-best, also with its
        features. With ``distinct`` each word sequence appears once.
        """
        tokens = tuple(tokens)
        if not tokens:
            return [Translation([], 0.0, [], (0.0,) * len(FEATURE_NAMES))]
        options = self._span_options(tokens)
        future_cost = _future_cost_table(len(tokens), options, self.config.weights)
        search = _Search(self, tokens, options, future_cost, keep_arcs=size > 1)
        search.run()
        return [
            Translation(
                [word for _, _, option in path for word in option.target],
                score,
                [(start, end, option.target) for start, end, option in path],
                self._path_features(tokens, path),
            )
            for score, path in search.best_paths(size, distinct)
        ]

    def decode_corpus(
        self, sentences: Sequence[Sequence[str]], processes: int = 2
    ) -> list[list[str]]:
        """Decode many sentences, in ``processes`` forked workers, in input order."""
        results = self.nbest_corpus(sentences, 1, processes)
        return [translations[0].words for translations in results]

    def nbest_corpus(
        self,
        sentences: Sequence[Sequence[str]],
        size: int,
        processes: int = 2,
        distinct: bool = True,
    ) -> list[list[Translation]]:
        """``nbest`` for many sentences, in worker processes, in input order."""
        start = time.monotonic()
        task = (self, size, distinct)
        if processes <= 1 or len(sentences) < 2:
            results = [
                _decode_task(task, tokens)
                for tokens in progress(sentences, len(sentences), "decoding", "sentences")
            ]
        else:
            results = self._decode_in_workers(sentences, processes, size, distinct)
        elapsed = max(time.monotonic() - start, 1e-9)
        words = sum(len(tokens) for tokens in sentences)
        logger.info(
            "decoded %s sentences (%s source words, %s-best) in %.1f s with %d "
            "process(es): %.2f sentences/s, %.0f words/s",
            f"{len(sentences):,}",
            f"{words:,}",
            size,
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
            phrase_logs = tuple(
                math.log(max(probability, PROBABILITY_FLOOR))
                for probability in entry.scores
            )
            static = (
                sum(weight * value for weight, value in zip(weights.phrase, phrase_logs))
                - weights.word_penalty * len(entry.target)
                + weights.phrase_penalty
            )
            reordering = None
            if self.reordering_table is not None:
                reordering = self.reordering_table.get(source, entry.target)
            scored.append(
                self._make_option(
                    entry.target, static, phrase_logs, reordering or UNIFORM_ORIENTATION
                )
            )
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
        return self._make_option((word,), static, (), UNIFORM_ORIENTATION)

    def _make_option(
        self,
        target: tuple[str, ...],
        static_score: float,
        phrase_logs: tuple[float, ...],
        reordering: Sequence[float],
    ) -> Option:
        """Split the LM score: words from position n-1 on see only phrase words."""
        reordering_logs = tuple(
            math.log(max(probability, PROBABILITY_FLOOR)) for probability in reordering
        )
        if self.reordering_table is None:
            backward = forward = NO_REORDERING
        else:
            weighted = [
                weight * value
                for weight, value in zip(self.config.weights.reordering, reordering_logs)
            ]
            backward, forward = tuple(weighted[:3]), tuple(weighted[3:])
        language_model = self.language_model
        lm_estimate = language_model.score_words((), target)[0]
        head_length = language_model.order - 1
        head = target[:head_length]
        tail_score, tail_state = 0.0, None
        if len(target) > head_length:
            tail_score, tail_state = language_model.score_words(
                head, target[head_length:]
            )
        return Option(
            target, static_score, lm_estimate, head, tail_score, tail_state,
            backward, forward, phrase_logs, reordering_logs,
        )

    def lm_caches(self) -> tuple[dict, dict]:
        """The LM score caches, emptied when they grow past ``LM_CACHE_SIZE``.

        Common words after common contexts recur from sentence to sentence,
        so most LM lookups of a corpus are answered from here.
        """
        if len(self._head_cache) + len(self._word_cache) > LM_CACHE_SIZE:
            self._head_cache.clear()
            self._word_cache.clear()
        return self._head_cache, self._word_cache

    # -- features of a path ------------------------------------------------------

    def _path_features(
        self, tokens: tuple[str, ...], path: list[tuple[int, int, Option]]
    ) -> tuple[float, ...]:
        """The feature vector of a derivation, in the order of ``FEATURE_NAMES``,
        computed from its phrases alone (independently of the search's sums)."""
        features = [0.0] * len(FEATURE_NAMES)
        words = [word for _, _, option in path for word in option.target]
        features[0] = self.language_model.sentence_logprob(words)
        features[2] = -len(words)
        features[3] = len(path)
        previous_start = previous_end = 0
        previous_option: Option | None = None
        for start, end, option in path:
            features[1] -= abs(start - previous_end)
            if option.phrase_logs:
                for index, value in enumerate(option.phrase_logs):
                    features[4 + index] += value
            else:
                features[14] += UNKNOWN_WORD_PENALTY
            self._add_reordering(
                features, previous_option, option,
                phrase_orientation(previous_start, previous_end, start, end),
            )
            previous_start, previous_end, previous_option = start, end, option
        if path:
            at_end = phrase_orientation(
                previous_start, previous_end, len(tokens), len(tokens) + 1
            )
            self._add_reordering(features, previous_option, None, at_end)
        return tuple(features)

    def _add_reordering(
        self,
        features: list[float],
        previous: Option | None,
        option: Option | None,
        orientation: int,
    ) -> None:
        if self.reordering_table is None:
            return
        if option is not None:
            features[8 + orientation] += option.reordering_logs[orientation]
        if previous is not None:
            features[11 + orientation] += previous.reordering_logs[3 + orientation]

    # -- worker processes ---------------------------------------------------------

    def _decode_in_workers(
        self,
        sentences: Sequence[Sequence[str]],
        processes: int,
        size: int,
        distinct: bool,
    ) -> list[list[Translation]]:
        global _worker_task
        _worker_task = (self, size, distinct)
        try:
            context = multiprocessing.get_context("fork")
            # Workers ignore Ctrl-C: the parent gets it, and leaving the
            # with-block terminates them, instead of every worker dying with
            # its own KeyboardInterrupt while the parent waits for results.
            with context.Pool(processes, initializer=_ignore_interrupts) as pool:
                decoded = pool.imap(_decode_in_worker, sentences, chunksize=2)
                return list(progress(decoded, len(sentences), "decoding", "sentences"))
        finally:
            _worker_task = None


_worker_task: tuple[Decoder, int, bool] | None = None


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _decode_task(task: tuple[Decoder, int, bool], tokens: Sequence[str]) -> list[Translation]:
    decoder, size, distinct = task
    return decoder.nbest(tokens, size, distinct)


def _decode_in_worker(tokens: Sequence[str]) -> list[Translation]:
    assert _worker_task is not None, "worker started without a decoder"
    return _decode_task(_worker_task, tokens)


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


# The option before the first phrase: no words, no forward reordering score.
START_OPTION = Option((), 0.0, 0.0, (), 0.0, None, NO_REORDERING, NO_REORDERING, (), ())


class _Search:
    """The stacks of one sentence; ``run`` expands them in order."""

    def __init__(
        self,
        decoder: Decoder,
        tokens: tuple[str, ...],
        options: dict[tuple[int, int], list[Option]],
        future_cost: list[list[float]],
        keep_arcs: bool = False,
    ) -> None:
        self.decoder = decoder
        self.config = decoder.config
        self.language_model = decoder.language_model
        self.use_reordering = decoder.reordering_table is not None
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
        self.options = options
        self.columns: dict[tuple[int, int], list[float]] = {}  # see column_estimates
        # LM scores given a state, of a phrase's head and of single words,
        # shared by all the sentences a decoder translates
        self.head_cache, self.word_cache = decoder.lm_caches()
        # for n-best lists every hypothesis keeps those it recombined (its arcs)
        self.keep_arcs = keep_arcs

    def run(self) -> None:
        state = self.language_model.initial_state()
        initial = (
            self.future_of(0), 0.0, 0, 0, 0, state, NO_HYPOTHESIS, START_OPTION,
            [] if self.keep_arcs else None,
        )
        self.stacks[0][(0, 0, state)] = initial
        if self.config.pop_limit:
            self.run_cube_pruning()
            return
        for covered in range(self.length):
            for hypothesis in self.pruned(covered):
                self.expand(hypothesis, covered)

    # -- cube pruning ----------------------------------------------------------------

    def run_cube_pruning(self) -> None:
        """Fill each stack from cubes of (hypothesis, option) pairs, best first.

        Cube pruning (Chiang 2007, "Hierarchical phrase-based translation",
        sec. 5.2; Huang & Chiang 2007, "Forest rescoring", ACL; Moses'
        cube-pruning search). The pruned hypotheses of a stack are grouped
        by coverage; every group and every source span it may translate next
        form an *edge*: the group's hypotheses allowed to take that span
        (best first) against the span's options (best first, by their
        context-free score). An edge's cell (i, j) is estimated, without
        the LM's context, as hypothesis i's score plus option j's. Filling
        stack k pops the best-estimated cell of all edges into it, scores it
        exactly (LM context, reordering, distortion) and adds it to the
        stack, then pushes the cell's neighbours (i+1, j) and (i, j+1);
        after ``pop_limit`` pops the stack is full. Far fewer candidates get
        their LM score than in the full expansion, at the price of missing
        those whose estimate was poor but whose exact score would be good.
        """
        edges_into: list[list[tuple]] = [[] for _ in range(self.length + 1)]
        for covered in range(self.length):
            if covered:
                self.fill_from_edges(covered, edges_into[covered])
                edges_into[covered] = []
            self.add_edges(self.pruned(covered), covered, edges_into)
        self.fill_from_edges(self.length, edges_into[self.length])

    def add_edges(
        self, hypotheses: list[Hypothesis], covered: int, edges_into: list[list[tuple]]
    ) -> None:
        """Edges from the groups of ``hypotheses`` with equal coverage to every
        span each group may translate next, filed under the stack they fill."""
        limit = self.config.distortion_limit
        distortion_weight = self.config.weights.distortion
        groups: dict[int, list[Hypothesis]] = {}
        for hypothesis in hypotheses:  # best first, so every group is too
            groups.setdefault(hypothesis[2], []).append(hypothesis)
        for coverage, group in groups.items():
            first_gap = (~coverage & (coverage + 1)).bit_length() - 1
            for start in range(first_gap, self.length):
                if coverage >> start & 1:
                    continue
                if limit == 0 and start != first_gap:
                    break
                allowed = [h for h in group if limit == 0 or abs(start - h[4]) <= limit]
                if not allowed:
                    continue
                # a row's part of a cell's estimate: the score after the jump
                rows = [h[1] - distortion_weight * abs(start - h[4]) for h in allowed]
                for end, mask, span_options in self.spans_from[start]:
                    if coverage & mask:
                        break
                    if start != first_gap and end - first_gap > limit:
                        break
                    future = self.future_of(coverage | mask)
                    edges_into[covered + end - start].append(
                        (allowed, rows, span_options, self.column_estimates(start, end),
                         start, end, mask, future)
                    )

    def column_estimates(self, start: int, end: int) -> list[float]:
        """A column's part of a cell's estimate: each option's context-free score."""
        found = self.columns.get((start, end))
        if found is None:
            lm_weight = self.config.weights.language_model
            found = self.columns[(start, end)] = [
                option.static_score + lm_weight * option.lm_estimate
                for option in self.options[(start, end)]
            ]
        return found

    def fill_from_edges(self, stack_index: int, edges: list[tuple]) -> None:
        """Pop up to ``pop_limit`` cells of ``edges``, best estimate first, into the stack.

        A cell's estimate is its row's score after the jump plus its column's
        context-free option score plus the edge's future cost; each popped
        cell is scored exactly by :meth:`add_extension`.
        """
        queue: list[tuple[float, int, int, int]] = [
            (-(edge[1][0] + edge[3][0] + edge[7]), number, 0, 0)
            for number, edge in enumerate(edges)
        ]
        heapq.heapify(queue)
        seen = {(number, 0, 0) for number in range(len(edges))}
        pops = self.config.pop_limit
        add_extension = self.add_extension
        while queue and pops:
            pops -= 1
            _, number, row, column = heapq.heappop(queue)
            hypotheses, rows, span_options, columns, start, end, mask, future = edges[number]
            add_extension(
                hypotheses[row], start, end, mask, span_options[column], stack_index, future
            )
            # the cell's neighbours: the next hypothesis, the next option
            for next_row, next_column in ((row + 1, column), (row, column + 1)):
                cell = (number, next_row, next_column)
                if next_row < len(rows) and next_column < len(columns) and cell not in seen:
                    seen.add(cell)
                    estimate = rows[next_row] + columns[next_column] + future
                    heapq.heappush(queue, (-estimate, *cell))

    def add_extension(
        self,
        hypothesis: Hypothesis,
        start: int,
        end: int,
        mask: int,
        option: Option,
        stack_index: int,
        future: float,
    ) -> None:
        """Score ``hypothesis`` extended by ``option`` on [start, end) exactly and
        add it to its stack, with recombination and threshold pruning: one cell
        of :meth:`fill_from_edges`, the same sums as the loop of :meth:`expand`."""
        _, score, coverage, last_start, last_end, lm_state, _, last_option, _ = hypothesis
        (_, static, _, head, tail_score, tail_state, backward, forward, _, _) = option
        weights = self.config.weights
        lm_weight = weights.language_model
        orientation = phrase_orientation(last_start, last_end, start, end)
        partial = (
            score
            - weights.distortion * abs(start - last_end)
            + last_option.forward[orientation]
            + static
            + backward[orientation]
            + lm_weight * tail_score
        )
        floor = self.floors[stack_index]
        if partial + future < floor and lm_weight >= 0:
            return  # the head's LM log probability is at most 0: it cannot reach the stack
        lm_key = (lm_state, head)
        head_result = self.head_cache.get(lm_key)
        if head_result is None:
            head_result = self.head_cache[lm_key] = self.score_head(lm_state, head)
        head_score, new_state = head_result
        if tail_state is not None:
            new_state = tail_state
        new_score = partial + lm_weight * head_score
        estimate = new_score + future
        if estimate < floor:
            return
        if estimate - self.config.beam_threshold > floor:
            self.floors[stack_index] = estimate - self.config.beam_threshold
        new_coverage = coverage | mask
        if self.use_reordering:
            key = (new_coverage, end, new_state, start, forward)
        else:
            key = (new_coverage, end, new_state)
        stack = self.stacks[stack_index]
        existing = stack.get(key)
        if existing is not None and existing[1] >= new_score:
            if self.keep_arcs:  # the loser stays as another way into the winner's state
                existing[8].append((estimate, new_score, new_coverage, start, end,
                                    new_state, hypothesis, option, None))
            return
        stack[key] = new = (
            estimate, new_score, new_coverage, start, end, new_state, hypothesis, option,
            [] if self.keep_arcs else None,
        )
        if existing is not None and self.keep_arcs:
            recombine(existing, new)

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
        _, score, coverage, last_start, last_end, lm_state, _, last_option, _ = hypothesis
        limit = self.config.distortion_limit
        distortion_weight = self.config.weights.distortion
        lm_weight = self.config.weights.language_model
        use_reordering = self.use_reordering
        keep_arcs = self.keep_arcs
        previous_forward = last_option.forward
        first_gap = (~coverage & (coverage + 1)).bit_length() - 1
        lowest = max(first_gap, last_end - limit)
        highest = min(self.length, last_end + limit + 1)
        if limit == 0:
            lowest = highest = first_gap
            highest += 1
        head_cache = self.head_cache
        threshold = self.config.beam_threshold
        for start in range(lowest, highest):
            if coverage >> start & 1:
                continue
            base = score - distortion_weight * abs(start - last_end)
            for end, mask, span_options in self.spans_from[start]:
                if coverage & mask:
                    break
                if start != first_gap and end - first_gap > limit:
                    break
                orientation = phrase_orientation(last_start, last_end, start, end)
                span_base = base + previous_forward[orientation]
                new_coverage = coverage | mask
                future = self.future_of(new_coverage)
                stack_index = covered + end - start
                stack = self.stacks[stack_index]
                floor = self.floors[stack_index]
                for option in span_options:
                    (_, static, _, head, tail_score, tail_state, backward, forward,
                     _, _) = option
                    partial = (
                        span_base + static + backward[orientation] + lm_weight * tail_score
                    )
                    if partial + future < floor and lm_weight >= 0:
                        # the head's LM score is a log probability, at most 0:
                        # this option cannot reach the stack, so skip scoring it
                        continue
                    lm_key = (lm_state, head)
                    head_result = head_cache.get(lm_key)
                    if head_result is None:
                        head_result = self.score_head(lm_state, head)
                        head_cache[lm_key] = head_result
                    head_score, new_state = head_result
                    if tail_state is not None:
                        new_state = tail_state
                    new_score = partial + lm_weight * head_score
                    estimate = new_score + future
                    if estimate < floor:
                        continue
                    if estimate - threshold > floor:
                        # threshold pruning, applied while the stack fills:
                        # nothing this far below a hypothesis in it survives
                        floor = self.floors[stack_index] = estimate - threshold
                    if use_reordering:
                        key = (new_coverage, end, new_state, start, forward)
                    else:
                        key = (new_coverage, end, new_state)
                    existing = stack.get(key)
                    if existing is not None and existing[1] >= new_score:
                        if keep_arcs:
                            existing[8].append((
                                estimate, new_score, new_coverage, start, end,
                                new_state, hypothesis, option, None,
                            ))
                        continue
                    stack[key] = new = (
                        estimate, new_score, new_coverage, start, end,
                        new_state, hypothesis, option, [] if keep_arcs else None,
                    )
                    if existing is not None and keep_arcs:
                        recombine(existing, new)
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
            self.floors[stack_index],
            ranked[-1][1][0],
            ranked[0][1][0] - self.config.beam_threshold,
        )

    # -- complete translations ----------------------------------------------------

    def final_bonus(self, hypothesis: Hypothesis) -> float:
        """Weighted LM score of ``</s>`` and the last phrase's forward reordering."""
        weights = self.config.weights
        at_end = phrase_orientation(
            hypothesis[3], hypothesis[4], self.length, self.length + 1
        )
        return (
            weights.language_model
            * self.language_model.score(hypothesis[5], EOS)[0]
            + hypothesis[7].forward[at_end]
        )

    def best_paths(
        self, size: int, distinct: bool
    ) -> list[tuple[float, list[tuple[int, int, Option]]]]:
        """Up to ``size`` (score, phrases) paths, best first (see the module notes)."""
        finals = [
            (hypothesis[1] + self.final_bonus(hypothesis), hypothesis)
            for hypothesis in self.stacks[self.length].values()
        ]
        if not finals:
            raise RuntimeError("stack decoding ended without a complete hypothesis")
        if size == 1 or not self.keep_arcs:
            total, best = max(finals, key=lambda pair: pair[0])
            return [(total, _phrases_of(_chain_from([best])))]

        # Heap entries: (-score, tie-break, base chain, index, rank). The path
        # is the base chain's first ``index`` hypotheses, then the arc of rank
        # ``rank`` into the state at ``index``, then that arc's best path back.
        # A popped path pushes its next sibling (rank + 1) and, at each later
        # index, its own best detour (rank 0), so the queue grows by about
        # the path length per pop instead of by every arc.
        sorted_arcs: dict[int, list[Hypothesis]] = {}  # id(winner) -> arcs, best first

        def arcs_of(winner: Hypothesis) -> list[Hypothesis]:
            found = sorted_arcs.get(id(winner))
            if found is None:
                found = sorted_arcs[id(winner)] = sorted(winner[8] or (), key=_by_score,
                                                         reverse=True)
            return found

        queue: list[tuple] = []
        order = 0
        for total, final in finals:
            queue.append((-total, order, [final], 0, -1))
            order += 1
        heapq.heapify(queue)
        results: list[tuple[float, list[tuple[int, int, Option]]]] = []
        seen: set[tuple[str, ...]] = set()
        # duplicates of one word sequence are skipped, and a short list must
        # still be the start of a longer one: pop generously
        pops_left = max(2000, 20 * size)
        while queue and len(results) < size and pops_left > 0:
            pops_left -= 1
            negative_total, _, base, index, rank = heapq.heappop(queue)
            total = -negative_total
            if rank < 0:
                chain = _chain_from(base)
            else:
                winner = base[index]
                siblings = arcs_of(winner)
                chain = _chain_from(base[:index] + [siblings[rank]])
                if rank + 1 < len(siblings):
                    sibling_total = total - siblings[rank][1] + siblings[rank + 1][1]
                    heapq.heappush(
                        queue, (-sibling_total, order, base, index, rank + 1)
                    )
                    order += 1
            phrases = _phrases_of(chain)
            words = tuple(word for _, _, option in phrases for word in option.target)
            if not (distinct and words in seen):
                seen.add(words)
                results.append((total, phrases))
            for later in range(index + 1 if rank >= 0 else 0, len(chain)):
                best_detour = arcs_of(chain[later])
                if best_detour:
                    detour_total = total - chain[later][1] + best_detour[0][1]
                    heapq.heappush(queue, (-detour_total, order, chain, later, 0))
                    order += 1
        return results


def recombine(old: Hypothesis, new: Hypothesis) -> None:
    """``new`` beat ``old`` in recombination: old and its arcs become new's."""
    new[8].append(old)
    new[8].extend(old[8])


def _chain_from(chosen: list[Hypothesis]) -> list[Hypothesis]:
    """The hypotheses of a path from its end back to (not including) the start:
    those chosen, then the back pointers of the last one chosen."""
    chain = list(chosen)
    previous = chain[-1][6]
    while previous[6] is not NO_HYPOTHESIS:
        chain.append(previous)
        previous = previous[6]
    return chain


def _phrases_of(chain: list[Hypothesis]) -> list[tuple[int, int, Option]]:
    """(source start, source end, option) of each phrase, in target order."""
    return [(hypothesis[3], hypothesis[4], hypothesis[7]) for hypothesis in reversed(chain)]


def _by_estimate(hypothesis: Hypothesis) -> float:
    return hypothesis[0]


def _by_score(hypothesis: Hypothesis) -> float:
    return hypothesis[1]
