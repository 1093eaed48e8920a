"""Speed of mtcompare's IBM Model 1 and stack decoder against NLTK's, in one run.

    python3 bench/smt_vs_nltk.py [--prepared PREP] [--model MODEL]
                                 [--pairs 5000] [--sentences 20] [--processes 2]

Issue 3 asks for two ratios, measured here in one process on the same input:

1. *IBM Model 1.* One EM iteration (Brown et al. 1993, sec. 4.1) of
   ``mtcompare.smt.align.train_ibm1`` against one of
   ``nltk.translate.IBMModel1`` on the first ``--pairs`` training pairs, both
   estimating t(target word | source word) (NLTK's ``AlignedSent(words,
   mots)`` translates from ``mots`` to ``words``, so ``words`` is the target
   side). Each side's one-off work (vocabularies, indexing; for NLTK also the
   uniform table and the Viterbi alignment pass its constructor always runs)
   is timed apart from the iteration. Ours runs three times and its median
   counts, since one iteration takes a fraction of a second.

   The two tables are then checked against a third, plain-Python
   implementation of one EM iteration written from the formulas. The two
   programs differ in two conventions, so their tables after one iteration
   differ too; the reference reproduces each under its own conventions:

   * the starting table: ours is uniform over the target words that co-occur
     with each source word, NLTK's uniform over the whole target vocabulary
     (which makes every posterior of the first E-step 1/(l+1));
   * a target word that occurs k times in a sentence: ours adds k posteriors
     to its counts (Brown et al. 1993, eq. 12), NLTK's E-step normalises by a
     total kept per word type, so the k occurrences together add as much as
     one occurrence would.

2. *Stack decoding.* Our ``Decoder`` against ``nltk.translate.StackDecoder``
   on the first ``--sentences`` test sentences, with one phrase table: the
   model's entries for the n-grams of those sentences, at most
   ``option_limit`` per source phrase. NLTK scores a phrase with a single
   log-probability, so each entry gets the weighted sum our log-linear model
   gives it (four phrase-table log scores and the phrase penalty); NLTK's
   word penalty, distortion factor and beam threshold are set to the
   equivalents of ours (distortion weight w gives factor exp(-w), a beam of
   10 in log score gives NLTK's threshold factor exp(-10)); the language model
   is our n-gram scorer behind the two methods StackDecoder calls
   (``probability`` and ``probability_change``), times the LM weight, with a
   cache. NLTK has no distortion limit, so ours runs without one too (the
   limit is set to the longest sentence); a row with the model's configured
   limit is given for information. The remaining differences are NLTK's:
   no hypothesis recombination, no ``</s>`` probability at the end, no
   distortion cost for the first phrase. NLTK cannot copy a word the table
   lacks, so such words get a copy entry scored as our decoder scores its
   copies (the unknown-word penalty).

Last, for information, the trained model translates the whole raw test set
as ``mtcompare translate`` does (``SMTTranslator``, two processes, tuned
weights and reordering table when the model has them).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import statistics
import sys
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from nltk.translate import AlignedSent, IBMModel1, PhraseTable as NltkPhraseTable
from nltk.translate import StackDecoder
from sacrebleu.metrics import BLEU

from mtcompare.config import config_from_dict
from mtcompare.data.prepare import load_manifest
from mtcompare.errors import MtcError
from mtcompare.fileio import read_lines
from mtcompare.smt.align import IBMModel1 as OurIBMModel1, train_ibm1
from mtcompare.smt.decoder import (
    PROBABILITY_FLOOR,
    UNKNOWN_WORD_PENALTY,
    Decoder,
    DecoderConfig,
    DecoderWeights,
)
from mtcompare.smt.lm import BOS, NGramLanguageModel
from mtcompare.smt.model import SMTConfig, SMTTranslator
from mtcompare.smt.phrases import Phrase, PhraseTable

logger = logging.getLogger("bench.smt_vs_nltk")

REPOSITORY = Path(__file__).resolve().parent.parent
DEFAULT_PREPARED = REPOSITORY / "runs/exp/prep"
DEFAULT_MODEL = REPOSITORY / "runs/exp/smt"
OUR_IBM1_RUNS = 3  # our iteration is short: the median of this many runs counts
# frequency ranks of the source words whose best t(f | e) is shown, with NULL's
EXAMPLE_RANKS = (0, 20, 200)


# ---------------------------------------------------------------- IBM Model 1


@dataclass
class IBM1Timing:
    """Seconds of one-off work and of one EM iteration, for one implementation."""

    setup_seconds: float
    iteration_seconds: float


@dataclass
class TableCheck:
    """How far two t(f | e) tables are apart over the co-occurring pairs."""

    pairs: int
    max_difference: float


@dataclass
class IBM1Result:
    pairs: int
    direction: str
    ours: IBM1Timing
    nltk: IBM1Timing
    ours_vs_nltk: TableCheck
    ours_vs_reference: TableCheck
    nltk_vs_reference: TableCheck
    examples: list[tuple[str, str, float, float]]  # (e, f, ours, NLTK's)


def benchmark_ibm1(
    source: list[list[str]], target: list[list[str]], direction: str
) -> IBM1Result:
    """Time one EM iteration of both implementations and compare their tables.

    ``direction`` names the language pair in log lines and the report, e.g.
    ``"es->en"``.
    """
    ours, our_timing = _time_our_ibm1(source, target, direction)
    nltk, nltk_timing = _time_nltk_ibm1(source, target)

    logger.info("reference EM iterations in plain Python, each side's conventions")
    our_reference = reference_ibm1_iteration(
        source, target, initial=cooccurrence_uniform(source, target),
        count_each_occurrence=True,
    )
    vocabulary_size = len({word for sentence in target for word in sentence})
    nltk_reference = reference_ibm1_iteration(
        source, target, initial=lambda _e, _f: 1 / vocabulary_size,
        count_each_occurrence=False,
    )

    our_table = _our_table(ours)
    nltk_table = _nltk_table(nltk, our_table)
    return IBM1Result(
        pairs=len(source),
        direction=direction,
        ours=our_timing,
        nltk=nltk_timing,
        ours_vs_nltk=compare_tables(our_table, nltk_table),
        ours_vs_reference=compare_tables(our_table, our_reference),
        nltk_vs_reference=compare_tables(nltk_table, nltk_reference),
        examples=_examples(source, our_table, nltk_table),
    )


class _RecordCollector(logging.Handler):
    """Keeps the log records of one logger, to read the timings it reports."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def seconds_of(self, message_start: str, argument: int) -> list[float]:
        """The ``argument``-th argument of every record whose message starts so."""
        return [
            float(record.args[argument])
            for record in self.records
            if isinstance(record.msg, str) and record.msg.startswith(message_start)
        ]


def _collecting(logger_name: str) -> _RecordCollector:
    collector = _RecordCollector()
    logging.getLogger(logger_name).addHandler(collector)
    return collector


def _time_our_ibm1(
    source: list[list[str]], target: list[list[str]], direction: str
) -> tuple[OurIBMModel1, IBM1Timing]:
    """``train_ibm1(iterations=1)``, run ``OUR_IBM1_RUNS`` times.

    The iteration's seconds are those ``train_ibm1`` logs for its EM step;
    the rest of the call (vocabularies, encoding, indexing the co-occurring
    pairs) is its one-off work.
    """
    collector = _collecting("mtcompare.smt.align")
    totals = []
    try:
        for _ in range(OUR_IBM1_RUNS):
            start = time.perf_counter()
            model = train_ibm1(source, target, iterations=1, direction=direction)
            totals.append(time.perf_counter() - start)
    finally:
        logging.getLogger("mtcompare.smt.align").removeHandler(collector)
    # "IBM Model 1 %s iteration %d/%d: %s pairs in %.1f s, ..." has the seconds
    # 5th; the record holds them unrounded
    iterations = collector.seconds_of("IBM Model 1 %s iteration", 4)
    if len(iterations) != OUR_IBM1_RUNS:
        raise RuntimeError("train_ibm1 no longer logs its iteration time")
    setups = [total - iteration for total, iteration in zip(totals, iterations)]
    return model, IBM1Timing(statistics.median(setups), statistics.median(iterations))


def _time_nltk_ibm1(
    source: list[list[str]], target: list[list[str]]
) -> tuple[IBMModel1, IBM1Timing]:
    """NLTK's constructor with 0 iterations (its one-off work), then one ``train``.

    ``IBMModel1(bitext, 1)`` is the same two steps with the alignment pass
    after the iteration instead of before it.
    """
    logger.info("NLTK IBMModel1 on %s pairs", f"{len(source):,}")
    start = time.perf_counter()
    bitext = [AlignedSent(f, e) for e, f in zip(source, target)]
    model = IBMModel1(bitext, 0)
    setup = time.perf_counter() - start
    start = time.perf_counter()
    model.train(bitext)
    iteration = time.perf_counter() - start
    logger.info("NLTK IBMModel1: setup %.1f s, one EM iteration %.1f s",
                setup, iteration)
    return model, IBM1Timing(setup, iteration)


def cooccurrence_uniform(
    source: Sequence[Sequence[str]], target: Sequence[Sequence[str]]
) -> Callable[[str | None, str], float]:
    """t(f | e) = 1 / (number of target words seen in a pair with e); None is NULL."""
    partners: dict[str | None, set[str]] = defaultdict(set)
    for source_sentence, target_sentence in zip(source, target):
        words = set(target_sentence)
        for source_word in {None, *source_sentence}:
            partners[source_word] |= words
    sizes = {source_word: len(words) for source_word, words in partners.items()}
    return lambda source_word, _target_word: 1 / sizes[source_word]


def reference_ibm1_iteration(
    source: Sequence[Sequence[str]],
    target: Sequence[Sequence[str]],
    initial: Callable[[str | None, str], float],
    count_each_occurrence: bool,
) -> dict[tuple[str | None, str], float]:
    """One EM iteration of IBM Model 1 from the formulas, word by word.

    E-step: each target word f of a pair adds t(f | e_i) / sum_i' t(f | e_i')
    to count(e_i, f) for each source position i, NULL included; with
    ``count_each_occurrence`` false a word repeated in the target sentence is
    counted once (NLTK's convention). M-step: t(f | e) = count(e, f) /
    sum_f' count(e, f'). Returns t keyed by (e, f), e None for NULL.
    """
    counts: dict[tuple[str | None, str], float] = defaultdict(float)
    totals: dict[str | None, float] = defaultdict(float)
    for source_sentence, target_sentence in zip(source, target):
        positions = [None, *source_sentence]
        words = target_sentence if count_each_occurrence else set(target_sentence)
        for target_word in words:
            weights = [initial(source_word, target_word) for source_word in positions]
            normaliser = sum(weights)
            for source_word, weight in zip(positions, weights):
                counts[source_word, target_word] += weight / normaliser
                totals[source_word] += weight / normaliser
    return {pair: count / totals[pair[0]] for pair, count in counts.items()}


def _our_table(model: OurIBMModel1) -> dict[tuple[str | None, str], float]:
    """Our sparse table as t keyed by (e, f), e None for NULL."""
    source_words = sorted(model.source_vocab, key=model.source_vocab.__getitem__)
    target_words = sorted(model.target_vocab, key=model.target_vocab.__getitem__)
    source_words[0] = None  # id 0 is the NULL word
    key_base = model.key_base
    return {
        (source_words[key // key_base], target_words[key % key_base]): probability
        for key, probability in zip(
            model.pair_keys.tolist(), model.pair_probabilities.tolist()
        )
    }


def _nltk_table(
    model: IBMModel1, pairs: dict[tuple[str | None, str], float]
) -> dict[tuple[str | None, str], float]:
    """NLTK's ``translation_table[f][e]`` for the given (e, f) pairs; nan if missing."""
    table = model.translation_table
    return {
        (source_word, target_word): (
            table[target_word].get(source_word, math.nan)
            if target_word in table
            else math.nan
        )
        for source_word, target_word in pairs
    }


def compare_tables(
    first: dict[tuple[str | None, str], float],
    second: dict[tuple[str | None, str], float],
) -> TableCheck:
    """Largest |t1 - t2| over the pairs of ``first``; inf if ``second`` lacks one."""
    largest = 0.0
    for pair, value in first.items():
        other = second.get(pair, math.nan)
        difference = abs(value - other)
        largest = max(largest, difference if not math.isnan(difference) else math.inf)
    if len(second) != len(first):
        largest = math.inf
    return TableCheck(len(first), largest)


def _examples(
    source: list[list[str]],
    ours: dict[tuple[str | None, str], float],
    nltk: dict[tuple[str | None, str], float],
) -> list[tuple[str, str, float, float]]:
    """For NULL and source words of ``EXAMPLE_RANKS``, their most likely target word."""
    frequency: dict[str, int] = defaultdict(int)
    for sentence in source:
        for word in sentence:
            frequency[word] += 1
    frequent = sorted(frequency, key=lambda word: (-frequency[word], word))
    chosen: list[str | None] = [None] + [
        frequent[rank] for rank in EXAMPLE_RANKS if rank < len(frequent)
    ]
    best: dict[str | None, tuple[str, float]] = {}
    for (source_word, target_word), probability in ours.items():
        if source_word in chosen and probability > best.get(source_word, ("", -1.0))[1]:
            best[source_word] = (target_word, probability)
    return [
        (
            "NULL" if word is None else word,
            best[word][0],
            best[word][1],
            nltk[word, best[word][0]],
        )
        for word in chosen
    ]


# ---------------------------------------------------------------- decoding


@dataclass
class DecodingRun:
    """One decoder on the benchmark sentences."""

    name: str
    seconds: float  # wall clock
    cpu_seconds: float  # of this process, steadier than wall clock on a shared machine
    outputs: list[list[str]]

    def sentences_per_second(self) -> float:
        return len(self.outputs) / max(self.seconds, 1e-9)


@dataclass
class DecoderResult:
    sentences: int
    source_words: int
    table_entries: int
    source_phrases: int
    unknown_words: int
    ours: DecodingRun
    ours_configured_limit: DecodingRun
    configured_limit: int
    nltk: DecodingRun
    identical_outputs: int
    bleu: dict[str, float]
    bleu_signature: str


class NltkLanguageModel:
    """Our n-gram scorer behind the interface ``nltk.translate.StackDecoder`` calls.

    ``probability(phrase)`` is the weighted log probability of a phrase
    without context (for NLTK's future cost); ``probability_change(hypothesis,
    phrase)`` that of appending ``phrase`` to the hypothesis' words, whose
    last n-1 words it collects by walking the hypothesis' back pointers
    (``previous`` and ``trg_phrase``). Scores are cached per (context, phrase),
    as our decoder caches its LM scores.
    """

    def __init__(self, language_model: NGramLanguageModel, weight: float) -> None:
        self.language_model = language_model
        self.weight = weight
        self.context_size = language_model.order - 1
        self._cache: dict[tuple[tuple[str, ...], tuple[str, ...]], float] = {}

    def probability(self, phrase: tuple[str, ...]) -> float:
        return self._score((), tuple(phrase))

    def probability_change(self, hypothesis, phrase: tuple[str, ...]) -> float:
        return self._score(self._context(hypothesis), tuple(phrase))

    def _context(self, hypothesis) -> tuple[str, ...]:
        """The last n-1 words of the hypothesis, after ``<s>`` if it has fewer."""
        words: list[str] = []
        while hypothesis.previous is not None and len(words) < self.context_size:
            words[:0] = hypothesis.trg_phrase
            hypothesis = hypothesis.previous
        if hypothesis.previous is None:
            words.insert(0, BOS)
        if self.context_size == 0:
            return ()
        return tuple(words[-self.context_size :])

    def _score(self, context: tuple[str, ...], phrase: tuple[str, ...]) -> float:
        key = (context, phrase)
        cached = self._cache.get(key)
        if cached is None:
            cached = self.weight * self.language_model.score_words(context, phrase)[0]
            self._cache[key] = cached
        return cached


def benchmark_decoders(
    model_dir: Path,
    sentences: list[list[str]],
    references: list[list[str]],
    max_phrase_length: int,
    configured: DecoderConfig,
) -> DecoderResult:
    """Both decoders on ``sentences`` with one phrase table and one LM."""
    phrase_table = PhraseTable.read_moses(
        model_dir / "phrase-table.gz",
        limit=configured.option_limit,
        sources=_ngrams(sentences, max_phrase_length),
    )
    language_model = NGramLanguageModel.read_arpa(model_dir / "lm.arpa.gz")
    weights = configured.weights
    longest = max(map(len, sentences))
    unlimited = DecoderConfig(
        stack_size=configured.stack_size,
        beam_threshold=configured.beam_threshold,
        distortion_limit=longest,
        option_limit=configured.option_limit,
        weights=weights,
        pop_limit=configured.pop_limit,
    )
    ours = _run_ours(
        f"ours, pop limit {configured.pop_limit}", phrase_table, language_model,
        unlimited, sentences,
    )
    ours_configured = _run_ours(
        f"ours, pop limit {configured.pop_limit}, distortion limit "
        f"{configured.distortion_limit}",
        phrase_table, language_model, configured, sentences,
    )

    nltk_table, unknown_words = nltk_phrase_table(phrase_table, sentences, weights)
    nltk_decoder = StackDecoder(
        nltk_table, NltkLanguageModel(language_model, weights.language_model)
    )
    nltk_decoder.stack_size = configured.stack_size
    nltk_decoder.beam_threshold = math.exp(-configured.beam_threshold)
    nltk_decoder.distortion_factor = math.exp(-weights.distortion)
    nltk_decoder.word_penalty = weights.word_penalty
    nltk = _run_nltk(nltk_decoder, sentences)

    bleu = BLEU(tokenize="none")
    scores = {
        run.name: bleu.corpus_score(
            [" ".join(words) for words in run.outputs],
            [[" ".join(words) for words in references]],
        ).score
        for run in (ours, ours_configured, nltk)
    }
    return DecoderResult(
        sentences=len(sentences),
        source_words=sum(map(len, sentences)),
        table_entries=len(phrase_table),
        source_phrases=len(phrase_table.entries),
        unknown_words=unknown_words,
        ours=ours,
        ours_configured_limit=ours_configured,
        configured_limit=configured.distortion_limit,
        nltk=nltk,
        identical_outputs=sum(a == b for a, b in zip(ours.outputs, nltk.outputs)),
        bleu=scores,
        bleu_signature=str(bleu.get_signature()),
    )


def _ngrams(sentences: list[list[str]], longest: int) -> set[Phrase]:
    return {
        tuple(sentence[start:end])
        for sentence in sentences
        for start in range(len(sentence))
        for end in range(start + 1, min(start + longest, len(sentence)) + 1)
    }


def nltk_phrase_table(
    phrase_table: PhraseTable, sentences: list[list[str]], weights: DecoderWeights
) -> tuple[NltkPhraseTable, int]:
    """NLTK's table with one log score per entry: the weighted sum ours uses.

    That is sum_i w_i log phi_i over the four phrase-table scores plus the
    phrase penalty weight; a word of ``sentences`` without a one-word entry
    gets a copy of itself scored as our decoder's copies. Returns the table
    and the number of such copy entries.
    """
    table = NltkPhraseTable()
    for source, entries in phrase_table.entries.items():
        for entry in entries:
            log_score = weights.phrase_penalty + sum(
                weight * math.log(max(probability, PROBABILITY_FLOOR))
                for weight, probability in zip(weights.phrase, entry.scores)
            )
            table.add(source, entry.target, log_score)
    copy_score = weights.unknown_word * UNKNOWN_WORD_PENALTY + weights.phrase_penalty
    unknown = {word for sentence in sentences for word in sentence} - {
        source[0] for source in phrase_table.entries if len(source) == 1
    }
    for word in unknown:
        table.add((word,), (word,), copy_score)
    return table, len(unknown)


def _run_ours(
    name: str,
    phrase_table: PhraseTable,
    language_model: NGramLanguageModel,
    config: DecoderConfig,
    sentences: list[list[str]],
) -> DecodingRun:
    decoder = Decoder(phrase_table, language_model, config, reordering_table=None)
    start, cpu_start = time.perf_counter(), time.process_time()
    outputs = [decoder.decode(sentence) for sentence in sentences]
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    logger.info("%s: %d sentences in %.2f s", name, len(sentences), seconds)
    return DecodingRun(name, seconds, cpu_seconds, outputs)


def _run_nltk(decoder: StackDecoder, sentences: list[list[str]]) -> DecodingRun:
    outputs = []
    start, cpu_start = time.perf_counter(), time.process_time()
    for number, sentence in enumerate(sentences, 1):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an untranslatable sentence is a bug here
            outputs.append(decoder.translate(sentence))
        logger.info(
            "NLTK StackDecoder: %d/%d sentences, %.1f s",
            number, len(sentences), time.perf_counter() - start,
        )
    return DecodingRun(
        "NLTK StackDecoder",
        time.perf_counter() - start,
        time.process_time() - cpu_start,
        outputs,
    )


# ---------------------------------------------------------------- the test set


@dataclass
class TestSetResult:
    sentences: int
    load_seconds: float
    translate_seconds: float
    decode_seconds: float
    translate_cpu_seconds: float  # this process and its decoding workers
    processes: int


def translate_test_set(
    model_dir: Path, lines: list[str], processes: int
) -> TestSetResult:
    """The raw test set through ``SMTTranslator``, as ``mtcompare translate`` does."""
    collector = _collecting("mtcompare.smt.decoder")
    try:
        start = time.perf_counter()
        translator = SMTTranslator.load(
            model_dir, processes=processes, config=_older_model_config(model_dir)
        )
        loaded, cpu_start = time.perf_counter(), _cpu_seconds_with_workers()
        translator.translate(lines)
        done, cpu_done = time.perf_counter(), _cpu_seconds_with_workers()
    finally:
        logging.getLogger("mtcompare.smt.decoder").removeHandler(collector)
    # "decoded %s sentences (...) in %.1f s with %d process(es): ..." has it 4th
    decode_seconds = sum(collector.seconds_of("decoded %s sentences", 3))
    return TestSetResult(
        len(lines), loaded - start, done - loaded, decode_seconds,
        cpu_done - cpu_start, processes,
    )


def _cpu_seconds_with_workers() -> float:
    """User + system CPU seconds of this process and of its finished children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _older_model_config(model_dir: Path) -> SMTConfig | None:
    """For a model trained before lexicalised reordering existed, its settings
    with distance-based reordering; None (the model's own) for any other.

    Such a model's config.json names no ``reordering`` and it has no
    reordering table, which the current default setting would require.
    """
    values = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if "reordering" in values or (model_dir / "reordering-table.gz").is_file():
        return None
    logger.info("%s predates reordering tables: translating with distance-based "
                "reordering only", model_dir)
    return config_from_dict(SMTConfig, {**values, "reordering": "distance"},
                            where=str(model_dir / "config.json"))


# ---------------------------------------------------------------- report


def format_report(
    command: str,
    load: str,
    ibm1: IBM1Result,
    decoding: DecoderResult,
    test_set: TestSetResult,
) -> str:
    """The figures as Markdown tables with a line of context each."""
    lines = [f"command: {command}", f"load average at start: {load}", ""]
    lines += _ibm1_lines(ibm1) + [""] + _decoding_lines(decoding) + [""]
    lines += _test_set_lines(test_set)
    return "\n".join(lines)


def _ibm1_lines(ibm1: IBM1Result) -> list[str]:
    ours, nltk = ibm1.ours, ibm1.nltk
    iteration_ratio = _ratio(nltk.iteration_seconds, ours.iteration_seconds)
    total_ratio = _ratio(
        nltk.setup_seconds + nltk.iteration_seconds,
        ours.setup_seconds + ours.iteration_seconds,
    )
    examples = "; ".join(
        f"t({target} | {source}) ours {our_value:.4f} NLTK {nltk_value:.4f}"
        for source, target, our_value, nltk_value in ibm1.examples
    )
    return [
        f"IBM Model 1 {ibm1.direction}, one EM iteration on the first "
        f"{ibm1.pairs:,} training pairs, t(target word | source word)",
        "| implementation | one-off setup (s) | one EM iteration (s) |",
        "|---|---:|---:|",
        f"| mtcompare train_ibm1 (median of {OUR_IBM1_RUNS}) | "
        f"{ours.setup_seconds:.3f} | {ours.iteration_seconds:.3f} |",
        f"| NLTK IBMModel1 | {nltk.setup_seconds:.2f} | {nltk.iteration_seconds:.2f} |",
        f"ratio, one EM iteration: {iteration_ratio}; setup + one iteration: "
        f"{total_ratio}",
        "tables after one iteration, max |difference| over "
        f"{ibm1.ours_vs_nltk.pairs:,} co-occurring pairs:",
        f"  ours vs NLTK: {ibm1.ours_vs_nltk.max_difference:.3g}",
        "  ours vs plain-Python reference (uniform over co-occurring words, each "
        f"occurrence counted): {ibm1.ours_vs_reference.max_difference:.3g}",
        "  NLTK vs plain-Python reference (uniform over the vocabulary, repeated "
        f"target words counted once): {ibm1.nltk_vs_reference.max_difference:.3g}",
        f"  examples: {examples}",
    ]


def _decoding_lines(decoding: DecoderResult) -> list[str]:
    ours, limited, nltk = decoding.ours, decoding.ours_configured_limit, decoding.nltk
    lines = [
        f"Stack decoding, the first {decoding.sentences} test sentences "
        f"({decoding.source_words:,} source words), one process each; phrase table "
        f"{decoding.table_entries:,} entries for {decoding.source_phrases:,} source "
        f"phrases, {decoding.unknown_words} copy entries for NLTK",
        "| decoder | seconds | CPU seconds | sentences/s | "
        "BLEU (tokenised, these sentences) |",
        "|---|---:|---:|---:|---:|",
    ]
    for run in (ours, limited, nltk):
        lines.append(
            f"| {run.name} | {run.seconds:.2f} | {run.cpu_seconds:.2f} | "
            f"{run.sentences_per_second():.2f} | {decoding.bleu[run.name]:.2f} |"
        )
    return lines + [
        "ratio, sentences/s, wall clock (CPU time): ours without distortion limit "
        f"vs NLTK {_ratio(nltk.seconds, ours.seconds)} "
        f"({_ratio(nltk.cpu_seconds, ours.cpu_seconds)}); ours with limit "
        f"{decoding.configured_limit} vs NLTK {_ratio(nltk.seconds, limited.seconds)} "
        f"({_ratio(nltk.cpu_seconds, limited.cpu_seconds)})",
        f"identical outputs (ours without limit, NLTK): "
        f"{decoding.identical_outputs}/{decoding.sentences}; "
        f"BLEU signature {decoding.bleu_signature}",
    ]


def _test_set_lines(test_set: TestSetResult) -> list[str]:
    count = test_set.sentences
    return [
        f"Whole test set through SMTTranslator ({count:,} raw lines, "
        f"{test_set.processes} processes): load {test_set.load_seconds:.1f} s, "
        f"translate {test_set.translate_seconds:.1f} s "
        f"({count / max(test_set.translate_seconds, 1e-9):.2f} sentences/s), "
        f"of which decoding {test_set.decode_seconds:.1f} s "
        f"({count / max(test_set.decode_seconds, 1e-9):.2f} sentences/s); "
        f"translating took {test_set.translate_cpu_seconds:.1f} CPU seconds "
        f"({count / max(test_set.translate_cpu_seconds, 1e-9):.2f} sentences per "
        "CPU second)",
    ]


def _ratio(slow: float, fast: float) -> str:
    return f"{slow / max(fast, 1e-9):,.0f}x"


# ---------------------------------------------------------------- main


def _read_tokenised(path: Path, count: int | None = None) -> list[list[str]]:
    if not path.is_file():
        raise MtcError(
            f"{path}: missing; run 'mtcompare prepare' to make the directory"
        )
    lines = read_lines(path)
    return [line.split() for line in lines[:count]]


def _model_settings(model_dir: Path) -> tuple[int, DecoderConfig]:
    """(max_phrase_length, decoder settings with the untuned weights) of a model."""
    for name in ("model.json", "phrase-table.gz", "lm.arpa.gz", "config.json"):
        if not (model_dir / name).is_file():
            raise MtcError(
                f"{model_dir}: no {name}, so no complete SMT model; train one with "
                "'mtcompare train smt' or pass another with --model"
            )
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    weights = dict(config.get("weights", {}))
    weights.pop("reordering", None)  # no reordering model in the comparison
    decoder_config = DecoderConfig(
        stack_size=config.get("stack_size", 50),
        beam_threshold=config.get("beam_threshold", 10.0),
        distortion_limit=config.get("distortion_limit", 6),
        option_limit=config.get("phrase_limit", 20),
        weights=weights,
        pop_limit=config.get("pop_limit", 500),
    )
    return int(config.get("max_phrase_length", 7)), decoder_config


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="IBM Model 1 and stack decoding: mtcompare against NLTK"
    )
    parser.add_argument("--prepared", type=Path, default=DEFAULT_PREPARED,
                        help="prepared directory (default: %(default)s)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help="trained SMT model directory (default: %(default)s)")
    parser.add_argument("--pairs", type=int, default=5000,
                        help="training pairs for IBM Model 1 (default: %(default)s)")
    parser.add_argument("--sentences", type=int, default=20,
                        help="test sentences both decoders translate "
                        "(default: %(default)s)")
    parser.add_argument("--processes", type=int, default=2,
                        help="processes for the whole test set (default: %(default)s)")
    args = parser.parse_args(argv)
    for name in ("pairs", "sentences", "processes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    command = " ".join(["python3", *sys.argv]) if argv is None else " ".join(argv)
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    try:
        manifest = load_manifest(args.prepared)
        src, tgt = manifest["src_lang"], manifest["tgt_lang"]
        max_phrase_length, decoder_config = _model_settings(args.model)
        source = _read_tokenised(args.prepared / f"train.tok.{src}", args.pairs)
        target = _read_tokenised(args.prepared / f"train.tok.{tgt}", args.pairs)
        test_source = _read_tokenised(args.prepared / f"test.tok.{src}")
        test_target = _read_tokenised(args.prepared / f"test.tok.{tgt}")
        raw_test = read_lines(args.prepared / f"test.{src}")

        ibm1 = benchmark_ibm1(source, target, f"{src}->{tgt}")
        decoding = benchmark_decoders(
            args.model,
            test_source[: args.sentences],
            test_target[: args.sentences],
            max_phrase_length,
            decoder_config,
        )
        test_set = translate_test_set(args.model, raw_test, args.processes)
    except MtcError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_report(command, load, ibm1, decoding, test_set))
    return 0


if __name__ == "__main__":
    sys.exit(main())
