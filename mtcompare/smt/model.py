"""Training a phrase-based SMT system and translating with it.

``train_smt`` runs the classic Moses pipeline (Koehn, *Statistical Machine
Translation*, 2010, chapters 4-6 and 9) on a prepared directory:

1. word alignment in both directions: IBM Model 1 (Brown et al. 1993), then
   by default the HMM alignment model (Vogel et al. 1996), each followed by
   its Viterbi word alignment;
2. symmetrisation of the two alignments (Och & Ney 2003; by default
   grow-diag-final-and, Koehn et al. 2003);
3. phrase extraction and scoring into a Moses phrase table (phrase
   probabilities smoothed by Kneser-Ney discounting, Foster et al. 2006), and
   with it the lexicalised msd-bidirectional-fe reordering table (Koehn et
   al. 2005);
4. an interpolated modified Kneser–Ney 5-gram language model on the target
   side;
5. tuning of the feature weights by MERT (Och 2003) on the prepared dev set,
   unless ``tune`` is off: see :mod:`mtcompare.smt.tune`.

Every stage writes its file atomically, and a file that already exists is
reused, so an interrupted training resumes where it stopped (tuning resumes
from its last finished iteration). ``model.json`` is written last; its
presence means the model directory is complete::

    config.json                 the SMTConfig (a re-run must use the same one)
    aligned.{symmetrization}    symmetrised alignments, "i-j" per link
    phrase-table.gz             Moses format
    reordering-table.gz         Moses format, msd-bidirectional-fe
    lm.arpa.gz                  ARPA, log10
    source-vocabulary.tsv       training source words and counts, for the
                                stand-ins of unknown words
    weights.json                tuned weights and the tuning history
    tuning/                     MERT's state, for resuming
    preprocess.{lang}.json      copied from the prepared directory
    model.json                  {"kind": "smt", "seconds": {stage: s}, ...}

``SMTTranslator`` loads such a directory and translates raw lines: the shared
preprocessor tokenises and truecases, the phrase-table and reordering-table
entries of the input's source phrases are read (only those, as Moses filters
a table for its test set; an unknown word of a known stem borrows that
word's entries, see :mod:`mtcompare.smt.unknown_words`), the stack decoder
translates with the tuned
weights (in worker processes for more than a few lines), the target
preprocessor recases and detokenises. Lines longer than ``max_input_length``
tokens are decoded in chunks of that length, so no input can make decoding
run out of time or memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from mtcompare.config import config_from_dict
from mtcompare.data.prepare import prepared_languages
from mtcompare.data.tokenize import Preprocessor
from mtcompare.errors import MtcError
from mtcompare.fileio import atomic_open, read_lines, write_lines, write_text
from mtcompare.smt.align import ALIGNMENT_MODELS, align_both_ways, format_links
from mtcompare.smt.decoder import (
    Decoder,
    DecoderConfig,
    DecoderWeights,
    FEATURE_NAMES,
    Translation,
    format_nbest_line,
    format_trace,
)
from mtcompare.smt.lm import NGramLanguageModel, train_kneser_ney
from mtcompare.smt.phrases import (
    Phrase,
    PhraseTable,
    build_phrase_and_reordering_tables,
    build_phrase_table,
)
from mtcompare.smt.reordering import ReorderingTable
from mtcompare.smt.smoothing import PHRASE_SMOOTHING
from mtcompare.smt.symmetrize import HEURISTICS
from mtcompare.smt.unknown_words import StandIns
from mtcompare.translator import MODEL_INFO, NBestEntry, read_model_info, write_model_info

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
PHRASE_TABLE_FILE = "phrase-table.gz"
LM_FILE = "lm.arpa.gz"
REORDERING_TABLE_FILE = "reordering-table.gz"
SOURCE_VOCABULARY_FILE = "source-vocabulary.tsv"  # for unknown words' stand-ins
WEIGHTS_FILE = "weights.json"
TUNING_DIR = "tuning"
TUNING_FINISHED = "finished"
REORDERING_MODELS = ("distance", "msd-bidirectional-fe")
# MERT keeps these weights at or above zero: log probabilities (LM, phrase
# and reordering tables) and the distortion penalty, which rewards jumps
# when its weight is negative. Without this a weight vector that is best on
# the n-best pool can make the next decoding reorder at random.
NONNEGATIVE_FEATURES = tuple(
    name for name in FEATURE_NAMES
    if name == "LM" or name == "Distortion" or name.startswith(("TM_", "LR_"))
)
# What a config.json written before these settings existed was trained with.
LEGACY_SETTINGS = {
    "alignment_model": "ibm1",
    "reordering": "distance",
    "tune": False,
    "phrase_smoothing": "none",
    "unknown_word_stand_ins": False,
}
# Settings that only tuning reads: changing them keeps the trained tables.
TUNING_SETTINGS = ("tune", "tune_nbest", "tune_iterations", "tune_seed", "tune_sentences")
# Settings that only translation reads: a re-run may change them too.
TRANSLATION_SETTINGS = ("unknown_word_stand_ins",)
# Decode in worker processes only when there are enough lines to pay for them.
MIN_LINES_FOR_WORKERS = 8


@dataclass
class SMTConfig:
    """Settings of the SMT pipeline, its decoder and its tuning."""

    max_phrase_length: int = 7
    alignment_model: str = "hmm"
    ibm1_iterations: int = 5
    hmm_iterations: int = 5
    lm_order: int = 5
    symmetrization: str = "grow-diag-final-and"
    reordering: str = "msd-bidirectional-fe"
    phrase_limit: int = 20
    phrase_smoothing: str = "kneser-ney"  # or none (Foster et al. 2006)
    unknown_word_stand_ins: bool = True  # see mtcompare.smt.unknown_words
    distortion_limit: int = 6
    stack_size: int = 50
    beam_threshold: float = 10.0
    pop_limit: int = 500  # cube pruning; 0 expands every hypothesis fully
    max_input_length: int = 100
    weights: DecoderWeights = field(default_factory=DecoderWeights)
    tune: bool = True
    tune_nbest: int = 100
    tune_iterations: int = 10
    tune_seed: int = 1
    tune_sentences: int = 0  # dev sentences MERT uses; 0 = all

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise one MtcError listing every setting out of its range."""
        problems = [
            f"{name} must be at least {low}, got {getattr(self, name)}"
            for name, low in (
                ("max_phrase_length", 1),
                ("ibm1_iterations", 1),
                ("hmm_iterations", 1),
                ("lm_order", 1),
                ("phrase_limit", 1),
                ("distortion_limit", 0),
                ("stack_size", 1),
                ("pop_limit", 0),
                ("max_input_length", 1),
                ("tune_nbest", 1),
                ("tune_iterations", 1),
                ("tune_sentences", 0),
            )
            if getattr(self, name) < low
        ]
        if self.lm_order > 9:
            problems.append(f"lm_order must be at most 9, got {self.lm_order}")
        if not (math.isfinite(self.beam_threshold) and self.beam_threshold > 0):
            problems.append(
                f"beam_threshold must be a positive number, got {self.beam_threshold}"
            )
        weights = self.weights.vector() if isinstance(self.weights, DecoderWeights) else []
        if not all(isinstance(w, (int, float)) and math.isfinite(w) for w in weights):
            problems.append(f"weights must be finite numbers, got {self.weights}")
        for name, valid in (
            ("symmetrization", HEURISTICS),
            ("alignment_model", ALIGNMENT_MODELS),
            ("reordering", REORDERING_MODELS),
            ("phrase_smoothing", PHRASE_SMOOTHING),
        ):
            if getattr(self, name) not in valid:
                problems.append(
                    f"{name} {getattr(self, name)!r} is unknown; valid: {', '.join(valid)}"
                )
        if problems:
            raise MtcError("SMT configuration: " + "; ".join(problems))

    def decoder_config(self) -> DecoderConfig:
        return DecoderConfig(
            stack_size=self.stack_size,
            beam_threshold=self.beam_threshold,
            distortion_limit=self.distortion_limit,
            option_limit=self.phrase_limit,
            weights=self.weights,
            pop_limit=self.pop_limit,
        )


def train_smt(
    prepared_dir: Path, out_dir: Path, config: SMTConfig | None = None,
    processes: int = 2,
) -> None:
    """Train every SMT component from ``prepared_dir`` into ``out_dir``, then
    tune the weights on its dev set (unless ``config.tune`` is off)."""
    config = config or SMTConfig()
    prepared_dir, out_dir = Path(prepared_dir), Path(out_dir)
    started = time.monotonic()
    src_lang, tgt_lang = prepared_languages(prepared_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_or_check_config(out_dir, config)
    logger.info(
        "training SMT %s->%s into %s with %s", src_lang, tgt_lang, out_dir, config
    )
    seconds = _read_stage_seconds(out_dir)

    source = _read_tokenized(prepared_dir / f"train.tok.{src_lang}")
    target = _read_tokenized(prepared_dir / f"train.tok.{tgt_lang}")
    if len(source) != len(target):
        raise MtcError(
            f"{prepared_dir}: train.tok.{src_lang} has {len(source):,} lines but "
            f"train.tok.{tgt_lang} has {len(target):,}; run 'mtcompare prepare' again"
        )
    if not any(s and t for s, t in zip(source, target)):
        raise MtcError(
            f"{prepared_dir}/train.tok.{src_lang}: no training pairs with words on both "
            "sides; prepare a corpus with training data"
        )
    _check_training_data(out_dir, prepared_dir, (src_lang, tgt_lang), source, target)
    (out_dir / MODEL_INFO).unlink(missing_ok=True)  # incomplete until rewritten

    phrase_table_path = out_dir / PHRASE_TABLE_FILE
    reordering_path = out_dir / REORDERING_TABLE_FILE
    wants_reordering = config.reordering == "msd-bidirectional-fe"
    if not _reuse(phrase_table_path) or (wants_reordering and not _reuse(reordering_path)):
        with _timed(seconds, "alignment", out_dir):
            alignments = _symmetrized_alignments(
                source, target, config, out_dir, (src_lang, tgt_lang)
            )
        with _timed(seconds, "phrase_tables", out_dir):
            _build_tables(source, target, alignments, config, out_dir)
        del alignments

    vocabulary_path = out_dir / SOURCE_VOCABULARY_FILE
    if config.unknown_word_stand_ins and not _reuse(vocabulary_path):
        StandIns.from_corpus(source).save(vocabulary_path)

    lm_path = out_dir / LM_FILE
    if not _reuse(lm_path):
        with _timed(seconds, "language_model", out_dir):
            _train_language_model(target, config, lm_path)
    train_pairs = len(source)
    del source, target

    for lang in (src_lang, tgt_lang):
        _copy_file(
            prepared_dir / f"preprocess.{lang}.json",
            out_dir / f"preprocess.{lang}.json",
        )
    if config.tune and not (out_dir / WEIGHTS_FILE).is_file():
        with _timed(seconds, "tuning", out_dir):
            tune_smt(out_dir, prepared_dir, processes=processes, config=config)
    _write_smt_model_info(
        out_dir, src_lang, tgt_lang, prepared_dir, config, seconds, train_pairs
    )
    logger.info(
        "SMT model complete in %s (%.0f s in this run; stages: %s)",
        out_dir,
        time.monotonic() - started,
        ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items()),
    )


def tune_smt(
    model_dir: Path,
    prepared_dir: Path,
    processes: int = 2,
    config: SMTConfig | None = None,
) -> dict:
    """Tune a model's weights by MERT on ``prepared_dir``'s dev set.

    Tuning starts from the configured (untuned) weights. Its state is kept in
    ``MODEL/tuning/`` after every iteration, so an interrupted tuning resumes;
    a tuning on another dev set, or with other tuning settings, starts anew.
    Writes ``weights.json`` (best weights, untuned and tuned dev BLEU, the
    history) and returns its record.
    """
    from mtcompare.smt.tune import tune

    model_dir, prepared_dir = Path(model_dir), Path(prepared_dir)
    config = config or _read_config(model_dir / CONFIG_FILE)
    src_lang, tgt_lang = prepared_languages(prepared_dir)
    if (model_dir / MODEL_INFO).is_file():
        info = read_model_info(model_dir)
        if (info.get("src_lang"), info.get("tgt_lang")) != (src_lang, tgt_lang):
            raise MtcError(
                f"{model_dir} translates {info.get('src_lang')}->{info.get('tgt_lang')} "
                f"but {prepared_dir} is {src_lang}->{tgt_lang}; tune on a dev set of "
                "the model's language pair"
            )
    translator = SMTTranslator.from_files(
        model_dir, (src_lang, tgt_lang), processes=processes, tuned=False, config=config
    )
    sources, references = _tuning_set(prepared_dir, src_lang, tgt_lang, config)
    translator.read_tables_for(sources)
    decoder = translator.decoder
    started = time.monotonic()

    # MERT keeps the weights at L1 norm 1; the decoder gets them at the norm
    # of the configured weights, which changes no decision but keeps the
    # beam threshold (in score units) pruning as much as it does untuned.
    initial = np.asarray(config.weights.vector())
    scale = float(np.abs(initial).sum())
    kept_nonnegative = np.isin(FEATURE_NAMES, NONNEGATIVE_FEATURES)
    if (initial[kept_nonnegative] < 0).any():
        logger.warning(
            "tuning starts the negative weights of %s at 0: MERT keeps them "
            "non-negative",
            ", ".join(np.asarray(FEATURE_NAMES)[kept_nonnegative & (initial < 0)]),
        )
        initial = np.where(kept_nonnegative, np.maximum(initial, 0.0), initial)

    def decode_nbest(weights: np.ndarray) -> list[list[tuple[list[str], np.ndarray]]]:
        decoder.set_weights(DecoderWeights.from_vector(weights * scale))
        lists = decoder.nbest_corpus(sources, config.tune_nbest, processes=processes)
        return [
            [(entry.words, np.asarray(entry.features)) for entry in entries]
            for entries in lists
        ]

    state_dir = model_dir / TUNING_DIR
    _start_tuning_state(state_dir, prepared_dir, sources, references, config)
    result = tune(
        decode_nbest,
        references,
        FEATURE_NAMES,
        initial,
        max_iterations=config.tune_iterations,
        nbest_size=config.tune_nbest,
        seed=config.tune_seed,
        state_dir=state_dir,
        nonnegative_features=NONNEGATIVE_FEATURES,
    )
    best = DecoderWeights.from_vector(result.weights * scale)
    record = {
        "weights": dataclasses.asdict(best),
        "dev_bleu_untuned": result.history[0].dev_bleu,
        "dev_bleu": result.bleu,
        "best_iteration": result.best_iteration,
        "stop_reason": result.stop_reason,
        "dev_sentences": len(sources),
        "prepared": str(prepared_dir),
        "seconds": round(time.monotonic() - started, 1),
        "history": [
            {
                "iteration": entry.iteration,
                "dev_bleu": entry.dev_bleu,
                "pool_size": entry.pool_size,
                "new_entries": entry.new_entries,
                "optimised_bleu": entry.optimised_bleu,
                "seconds": round(entry.seconds, 1),
                "weights": dict(zip(FEATURE_NAMES, (float(w) * scale for w in entry.weights))),
            }
            for entry in result.history
        ],
    }
    write_text(model_dir / WEIGHTS_FILE, json.dumps(record, indent=2) + "\n")
    write_text(state_dir / TUNING_FINISHED, "the tuning in this directory finished\n")
    logger.info(
        "tuned on %s dev sentences in %.0f s: dev BLEU (tokenised) %.2f -> %.2f",
        f"{len(sources):,}",
        record["seconds"],
        record["dev_bleu_untuned"],
        record["dev_bleu"],
    )
    return record


def retune_smt(
    model_dir: Path, prepared_dir: Path, processes: int = 2,
    config: SMTConfig | None = None,
) -> dict:
    """``mtcompare tune``: tune a complete model again (or finish its tuning)."""
    model_dir = Path(model_dir)
    if not (model_dir / MODEL_INFO).is_file():
        raise MtcError(
            f"{model_dir}: not a complete SMT model (no {MODEL_INFO}); run "
            "'mtcompare train smt' first (it resumes an interrupted training)"
        )
    info = read_model_info(model_dir)
    if info.get("kind") != "smt":
        raise MtcError(f"{model_dir}: a {info.get('kind')} model; only SMT models tune")
    config = config or _read_config(model_dir / CONFIG_FILE)
    if (model_dir / TUNING_DIR / TUNING_FINISHED).is_file():
        # a finished tuning starts anew; an interrupted one resumes
        shutil.rmtree(model_dir / TUNING_DIR, ignore_errors=True)
    record = tune_smt(model_dir, prepared_dir, processes, config)
    write_text(model_dir / CONFIG_FILE, json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    seconds = {**info.get("seconds", {}), "tuning": record["seconds"]}
    _write_smt_model_info(
        model_dir, info["src_lang"], info["tgt_lang"], Path(info.get("prepared", prepared_dir)),
        config, seconds, int(info.get("train_pairs", 0)),
    )
    return record


def _tuning_set(
    prepared_dir: Path, src_lang: str, tgt_lang: str, config: SMTConfig
) -> tuple[list[list[str]], list[list[str]]]:
    """Tokenised dev sources and references MERT tunes on.

    Pairs with an empty side, or a source longer than ``max_input_length``
    (which translation would cut into chunks), are left out.
    """
    sources = _read_tokenized(prepared_dir / f"dev.tok.{src_lang}")
    references = _read_tokenized(prepared_dir / f"dev.tok.{tgt_lang}")
    if len(sources) != len(references):
        raise MtcError(
            f"{prepared_dir}: dev.tok.{src_lang} and dev.tok.{tgt_lang} differ in "
            "length; run 'mtcompare prepare' again"
        )
    pairs = [
        (source, reference)
        for source, reference in zip(sources, references)
        if source and reference and len(source) <= config.max_input_length
    ]
    if config.tune_sentences:
        pairs = pairs[: config.tune_sentences]
    if not pairs:
        raise MtcError(
            f"{prepared_dir}: no dev pairs to tune on; prepare a corpus with a dev "
            "set, or train with --no-tune"
        )
    return [source for source, _ in pairs], [reference for _, reference in pairs]


def _start_tuning_state(
    state_dir: Path,
    prepared_dir: Path,
    sources: list[list[str]],
    references: list[list[str]],
    config: SMTConfig,
) -> None:
    """Keep MERT's saved state only if it was made on this dev set and settings."""
    digest = hashlib.sha1()
    for line in sources + references:
        digest.update(" ".join(line).encode("utf-8") + b"\n")
    identity = {
        "nonnegative_features": list(NONNEGATIVE_FEATURES),
        "dev_sha1": digest.hexdigest(),
        "settings": {
            name: getattr(config, name)
            for name in TUNING_SETTINGS
            if name != "tune_iterations"  # more iterations continue a tuning
        },
        "weights": dataclasses.asdict(config.weights),
    }
    identity = json.loads(json.dumps(identity))
    marker = state_dir / "dev-set.json"
    if marker.is_file():
        try:
            stored = json.loads(marker.read_text(encoding="utf-8"))
        except ValueError:
            stored = None
        if stored == identity:
            logger.info("resuming the tuning saved in %s", state_dir)
            return
    if state_dir.exists():
        logger.info("%s holds another tuning; starting anew", state_dir)
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True)
    write_text(marker, json.dumps(identity, indent=2) + "\n")


def _write_smt_model_info(
    out_dir: Path,
    src_lang: str,
    tgt_lang: str,
    prepared_dir: Path,
    config: SMTConfig,
    seconds: dict[str, float],
    train_pairs: int,
) -> None:
    files = [MODEL_INFO, CONFIG_FILE, PHRASE_TABLE_FILE, LM_FILE,
             f"preprocess.{src_lang}.json", f"preprocess.{tgt_lang}.json"]
    if config.reordering == "msd-bidirectional-fe":
        files.append(REORDERING_TABLE_FILE)
    if config.unknown_word_stand_ins:
        files.append(SOURCE_VOCABULARY_FILE)
    if (out_dir / WEIGHTS_FILE).is_file():
        files.append(WEIGHTS_FILE)
    write_model_info(
        out_dir,
        "smt",
        src_lang=src_lang,
        tgt_lang=tgt_lang,
        train_pairs=train_pairs,
        prepared=str(prepared_dir),
        tuned=(out_dir / WEIGHTS_FILE).is_file(),
        seconds={name: round(value, 1) for name, value in seconds.items()},
        # what translation reads; the alignment and tuning state are kept only
        # for resuming
        translation_files=files,
    )


class SMTTranslator:
    """Raw source lines in, raw target lines out, through the stack decoder.

    The phrase and reordering tables are read lazily. Each call to
    :meth:`translate` collects the source n-grams of its input (up to
    ``max_phrase_length`` words, the longest phrase training extracts), and
    reads from the tables only the entries of those that no earlier call
    asked for, in one pass, as Moses' filter-model-given-input.pl does for a
    test set. The decoder looks up no other phrase, so its translations are
    those it would make with the whole tables, and one sentence no longer
    waits for millions of entries to be built.
    """

    name = "smt"

    def __init__(
        self,
        model_dir: Path,
        language_model: NGramLanguageModel,
        source_preprocessor: Preprocessor,
        target_preprocessor: Preprocessor,
        config: SMTConfig,
        weights: DecoderWeights,
        processes: int = 2,
        stand_ins: StandIns | None = None,
    ) -> None:
        self.phrase_table_path = Path(model_dir) / PHRASE_TABLE_FILE
        self.phrase_table = PhraseTable()  # the entries read so far
        self.reordering_table_path: Path | None = None
        self.reordering_table: ReorderingTable | None = None
        if config.reordering == "msd-bidirectional-fe":
            self.reordering_table_path = Path(model_dir) / REORDERING_TABLE_FILE
            self.reordering_table = ReorderingTable()
        # every source phrase the tables have been read for, found in them or not
        self._phrases_read: set[Phrase] = set()
        decoder_config = config.decoder_config()
        decoder_config.weights = weights
        self.decoder = Decoder(
            self.phrase_table, language_model, decoder_config, self.reordering_table
        )
        self.source_preprocessor = source_preprocessor
        self.target_preprocessor = target_preprocessor
        self.config = config
        self.processes = processes
        self.stand_ins = stand_ins  # None: unknown words are copied

    @classmethod
    def load(
        cls,
        model_dir: Path,
        processes: int = 2,
        tuned: bool = True,
        config: SMTConfig | None = None,
    ) -> "SMTTranslator":
        """Load a model directory written by :func:`train_smt`.

        Reads everything but the phrase and reordering tables, which
        ``translate`` reads for its input. The weights are the tuned ones of
        ``weights.json`` when it exists and ``tuned`` is true, otherwise the
        configured ones. ``config`` (tuning's) replaces ``config.json``.
        """
        model_dir = Path(model_dir)
        info_path = model_dir / MODEL_INFO
        if not info_path.is_file():
            raise MtcError(
                f"{model_dir}: no {MODEL_INFO}, so the SMT model is incomplete; "
                "run 'mtcompare train smt' (it resumes an interrupted training)"
            )
        info = read_model_info(model_dir)
        if not (isinstance(info.get("src_lang"), str) and isinstance(info.get("tgt_lang"), str)):
            raise MtcError(f"{info_path}: damaged (no language codes); train the model again")
        return cls.from_files(
            model_dir, (info["src_lang"], info["tgt_lang"]), processes, tuned, config
        )

    @classmethod
    def from_files(
        cls,
        model_dir: Path,
        languages: tuple[str, str],
        processes: int = 2,
        tuned: bool = True,
        config: SMTConfig | None = None,
    ) -> "SMTTranslator":
        """Load the model's files for ``languages`` (model.json not needed)."""
        config_path = model_dir / CONFIG_FILE
        needed = [config_path, model_dir / PHRASE_TABLE_FILE, model_dir / LM_FILE]
        for path in needed:
            if not path.is_file():
                raise MtcError(
                    f"{model_dir}: no {path.name}, so the SMT model is incomplete; "
                    "run 'mtcompare train smt' (it resumes an interrupted training)"
                )
        config = config or _read_config(config_path)
        for wanted, path in (
            (config.reordering == "msd-bidirectional-fe", model_dir / REORDERING_TABLE_FILE),
            (config.unknown_word_stand_ins, model_dir / SOURCE_VOCABULARY_FILE),
        ):
            if wanted and not path.is_file():
                raise MtcError(
                    f"{model_dir}: no {path.name}, so the SMT model is "
                    "incomplete; run 'mtcompare train smt' (it resumes)"
                )
        started = time.monotonic()
        with _damaged_model_hint():
            language_model = NGramLanguageModel.read_arpa(model_dir / LM_FILE)
        source_pre = Preprocessor.load(model_dir / f"preprocess.{languages[0]}.json")
        target_pre = Preprocessor.load(model_dir / f"preprocess.{languages[1]}.json")
        stand_ins = None
        if config.unknown_word_stand_ins:
            stand_ins = StandIns.load(model_dir / SOURCE_VOCABULARY_FILE)
        weights = config.weights
        if tuned and (model_dir / WEIGHTS_FILE).is_file():
            weights = _read_tuned_weights(model_dir / WEIGHTS_FILE)
        logger.info(
            "loaded SMT model %s in %.1f s: %s LM n-grams, %s weights; table "
            "entries are read for each input",
            model_dir,
            time.monotonic() - started,
            f"{len(language_model.entries):,}",
            "tuned" if weights is not config.weights else "untuned",
        )
        return cls(
            model_dir, language_model, source_pre, target_pre, config, weights, processes,
            stand_ins,
        )

    def translate(self, lines: Sequence[str]) -> list[str]:
        """Translate raw lines; same count and order, an empty line stays empty."""
        return [entries[0].text for entries in self.translate_nbest(lines, 1)]

    def translate_nbest(self, lines: Sequence[str], size: int) -> list[list[NBestEntry]]:
        """The ``size`` best distinct translations of each line, best first.

        Each entry has the raw text, the model score, Moses-style feature
        scores and the phrase segmentation (Moses' ``-t`` trace). A line
        longer than ``max_input_length`` tokens is decoded in chunks and gets
        only its 1-best, the chunks' best translations joined.
        """
        chunks, chunk_counts = self._encode(lines)
        self.read_tables_for(chunks)
        processes = self.processes if len(chunks) >= MIN_LINES_FOR_WORKERS else 1
        decoded = self.decoder.nbest_corpus(chunks, size, processes=processes)

        outputs: list[list[NBestEntry]] = []
        position = 0
        for count in chunk_counts:
            pieces = decoded[position : position + count]
            position += count
            if count == 1:
                outputs.append([self._entry(translation) for translation in pieces[0]])
            else:
                outputs.append([self._joined_entry([entries[0] for entries in pieces])])
        return outputs

    def read_tables_for(self, chunks: Sequence[Sequence[str]]) -> None:
        """Add the table entries of every n-gram of ``chunks`` not read for before.

        An unknown word with a stand-in (see :mod:`mtcompare.smt.unknown_words`)
        gets the stand-in's entries, read in the same pass.
        """
        longest = self.config.max_phrase_length
        missing = {
            tuple(chunk[start:end])
            for chunk in chunks
            for start in range(len(chunk))
            for end in range(start + 1, min(start + longest, len(chunk)) + 1)
        }
        missing -= self._phrases_read
        if not missing:
            return
        stand_ins = {}
        if self.stand_ins is not None:
            stand_ins = self.stand_ins.stand_ins(
                phrase[0] for phrase in missing if len(phrase) == 1
            )
        wanted = missing | {(word,) for word in stand_ins.values()}
        with _damaged_model_hint():
            entries = PhraseTable.read_moses(
                self.phrase_table_path, limit=self.config.phrase_limit, sources=wanted
            )
            if self.reordering_table is not None:
                assert self.reordering_table_path is not None
                self.reordering_table.update(
                    ReorderingTable.read_moses(self.reordering_table_path, sources=wanted)
                )
        self.phrase_table.update(entries)
        self._phrases_read |= missing
        borrowed = 0
        for word, stand_in in sorted(stand_ins.items()):
            # a word with entries of its own keeps them, whatever the vocabulary says
            if (word,) not in self.phrase_table and (stand_in,) in self.phrase_table:
                self.phrase_table.alias((word,), (stand_in,))
                if self.reordering_table is not None:
                    self.reordering_table.alias((word,), (stand_in,))
                logger.debug("unknown word %r borrows the translations of %r", word, stand_in)
                borrowed += 1
        if borrowed:
            logger.info("%d unknown words borrow the translations of a known word of the "
                        "same stem", borrowed)

    def _encode(self, lines: Sequence[str]) -> tuple[list[list[str]], list[int]]:
        """Tokenised chunks of at most ``max_input_length`` tokens, and per line
        how many chunks it became (0 for an empty line)."""
        chunks: list[list[str]] = []
        chunk_counts: list[int] = []
        size = self.config.max_input_length
        for line in lines:
            tokens = self.source_preprocessor.encode(line) if line.strip() else []
            pieces = [tokens[i : i + size] for i in range(0, len(tokens), size)]
            chunks.extend(pieces)
            chunk_counts.append(len(pieces))
        return chunks, chunk_counts

    def _entry(self, translation: Translation) -> NBestEntry:
        text = self.target_preprocessor.decode(translation.words) if translation.words else ""
        line = format_nbest_line(0, "", translation, self.decoder.config.weights)
        return NBestEntry(text, translation.score, line.split(" ||| ")[2],
                          format_trace(translation))

    def _joined_entry(self, translations: list[Translation]) -> NBestEntry:
        """One entry for a line decoded in chunks (none for an empty line)."""
        words = [word for translation in translations for word in translation.words]
        features = tuple(
            sum(values) for values in zip(*(t.features for t in translations))
        ) or (0.0,) * len(FEATURE_NAMES)
        joined = Translation(words, sum(t.score for t in translations), [], features)
        entry = self._entry(joined)
        # chunk k starts at token k * max_input_length of the line
        size = self.config.max_input_length
        trace = " ".join(
            format_trace(dataclasses.replace(translation, phrases=[
                (start + number * size, end + number * size, target)
                for start, end, target in translation.phrases
            ]))
            for number, translation in enumerate(translations)
        )
        return NBestEntry(entry.text, entry.score, entry.features, trace)


def _read_tuned_weights(path: Path) -> DecoderWeights:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        weights = DecoderConfig(weights=dict(record["weights"])).weights
        if not all(
            isinstance(w, (int, float)) and math.isfinite(w) for w in weights.vector()
        ):
            raise ValueError("a weight is not a finite number")
        return weights
    except (OSError, ValueError, KeyError, TypeError, MtcError) as error:
        raise MtcError(
            f"{path}: damaged ({error}); re-tune with 'mtcompare tune' or delete it "
            "to use the untuned weights"
        ) from None


@contextlib.contextmanager
def _damaged_model_hint() -> Iterator[None]:
    """Add what to do to a reader's error about a model's own file."""
    try:
        yield
    except MtcError as error:
        raise MtcError(f"{error}; the SMT model is damaged: delete that file and run "
                       "'mtcompare train smt' again (it rebuilds what is missing)") from None


# -- training stages ------------------------------------------------------------


def _symmetrized_alignments(
    source: list[list[str]],
    target: list[list[str]],
    config: SMTConfig,
    out_dir: Path,
    languages: tuple[str, str],
) -> list[set[tuple[int, int]]]:
    """Alignment models both ways, Viterbi alignments, symmetrised (reused from disk)."""
    path = out_dir / f"aligned.{config.symmetrization}"
    if _reuse(path):
        alignments = _read_alignments(path, len(source))
        for number, (links, src, tgt) in enumerate(zip(alignments, source, target), 1):
            if any(i >= len(src) or j >= len(tgt) for i, j in links):
                raise MtcError(
                    f"{path}:{number}: a link points past the end of its sentence pair; "
                    "delete the file to realign"
                )
        return alignments
    started = time.monotonic()
    alignments = align_both_ways(
        source,
        target,
        config.ibm1_iterations,
        config.symmetrization,
        languages,
        model=config.alignment_model,
        hmm_iterations=config.hmm_iterations,
    )
    links = sum(len(alignment) for alignment in alignments)
    elapsed = time.monotonic() - started
    logger.info(
        "aligned %s sentence pairs both ways and symmetrised (%s): %s links in %.0f s, "
        "%.0f pairs/s",
        f"{len(source):,}",
        config.symmetrization,
        f"{links:,}",
        elapsed,
        len(source) / max(elapsed, 1e-9),
    )
    write_lines(path, (format_links(alignment) for alignment in alignments))
    return alignments


def _build_tables(
    source: list[list[str]],
    target: list[list[str]],
    alignments: list[set[tuple[int, int]]],
    config: SMTConfig,
    out_dir: Path,
) -> None:
    """The phrase table and, for msd-bidirectional-fe, the reordering table."""
    started = time.monotonic()
    reordering = None
    if config.reordering == "msd-bidirectional-fe":
        table, reordering = build_phrase_and_reordering_tables(
            source, target, alignments,
            max_length=config.max_phrase_length, limit=config.phrase_limit,
            smoothing=config.phrase_smoothing,
        )
    else:
        table = build_phrase_table(
            source, target, alignments,
            max_length=config.max_phrase_length, limit=config.phrase_limit,
            smoothing=config.phrase_smoothing,
        )
    if reordering is not None:
        reordering.write_moses(out_dir / REORDERING_TABLE_FILE)
    table.write_moses(out_dir / PHRASE_TABLE_FILE)  # last: its presence means done
    logger.info(
        "phrase table: %s source phrases, %s entries%s, written in %.0f s",
        f"{len(table.entries):,}",
        f"{len(table):,}",
        "" if reordering is None else f"; reordering table: {len(reordering):,} entries",
        time.monotonic() - started,
    )


def _train_language_model(
    target: list[list[str]], config: SMTConfig, path: Path
) -> None:
    started = time.monotonic()
    language_model = train_kneser_ney(target, order=config.lm_order)
    language_model.write_arpa(path)
    logger.info(
        "language model written to %s in %.0f s", path, time.monotonic() - started
    )


# -- files ------------------------------------------------------------------------


def _read_tokenized(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise MtcError(f"{path}: missing; run 'mtcompare prepare' to make it")
    return [line.split() for line in read_lines(path)]


def _write_or_check_config(out_dir: Path, config: SMTConfig) -> None:
    """Record the config; a resumed training must use the same one."""
    path = out_dir / CONFIG_FILE
    wanted = dataclasses.asdict(config)
    if path.is_file():
        existing = dataclasses.asdict(_read_config(path))
        changed = [
            key
            for key in wanted
            if wanted[key] != existing.get(key)
            and key not in TUNING_SETTINGS + TRANSLATION_SETTINGS
        ]
        if changed:
            raise MtcError(
                f"{out_dir} holds a model trained with different settings "
                f"({', '.join(changed)}); use a new --out directory or delete this one"
            )
    write_text(path, json.dumps(wanted, indent=2) + "\n")


def _read_config(path: Path) -> SMTConfig:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise MtcError(f"{path}: cannot read the SMT configuration ({error})") from None
    if not isinstance(values, dict):
        raise MtcError(f"{path}: damaged (not a JSON object); train the model again")
    # a model trained before a setting existed was trained without it
    values = {**LEGACY_SETTINGS, **values}
    return config_from_dict(SMTConfig, values, where=str(path))


STAGE_SECONDS_FILE = "stages.json"
TRAINING_DATA_FILE = "training-data.json"


def _check_training_data(
    out_dir: Path,
    prepared_dir: Path,
    languages: tuple[str, str],
    source: list[list[str]],
    target: list[list[str]],
) -> None:
    """A model directory resumes only a training on the same data."""
    digest = hashlib.sha1()
    for line in source + target:
        digest.update(" ".join(line).encode("utf-8") + b"\n")
    identity = {"languages": list(languages), "train_pairs": len(source),
                "sha1": digest.hexdigest()}
    path = out_dir / TRAINING_DATA_FILE
    if path.is_file():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            stored = None
        if stored != identity:
            raise MtcError(
                f"{out_dir} holds a model trained on other data than {prepared_dir} "
                f"({'->'.join(languages)}, {len(source):,} pairs); use a new --out "
                "directory or delete this one"
            )
        return
    if (out_dir / PHRASE_TABLE_FILE).is_file() or (out_dir / LM_FILE).is_file():
        raise MtcError(
            f"{out_dir} holds a model whose training data is not recorded; use a new "
            "--out directory or delete this one"
        )
    write_text(path, json.dumps(identity, indent=2) + "\n")


def _read_stage_seconds(out_dir: Path) -> dict[str, float]:
    """Seconds of the stages done so far, kept across resumed trainings."""
    path = out_dir / STAGE_SECONDS_FILE
    if not path.is_file():
        return {}
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {}
    return {str(k): float(v) for k, v in stored.items()} if isinstance(stored, dict) else {}


@contextlib.contextmanager
def _timed(seconds: dict[str, float], stage: str, out_dir: Path) -> Iterator[None]:
    """Add the time of ``stage`` to ``seconds`` and record it when it finishes."""
    started = time.monotonic()
    yield
    seconds[stage] = seconds.get(stage, 0.0) + time.monotonic() - started
    write_text(out_dir / STAGE_SECONDS_FILE, json.dumps(seconds, indent=2) + "\n")


def _reuse(path: Path) -> bool:
    if path.is_file():
        logger.info("reusing %s from an earlier run", path)
        return True
    return False


def _read_alignments(path: Path, expected: int) -> list[set[tuple[int, int]]]:
    alignments = []
    for number, line in enumerate(read_lines(path), start=1):
        try:
            alignments.append(
                {
                    (int(i), int(j))
                    for i, j in (link.split("-") for link in line.split())
                }
            )
        except ValueError:
            raise MtcError(
                f"{path}:{number}: not an 'i-j' alignment; delete the file to realign"
            ) from None
    if len(alignments) != expected:
        raise MtcError(
            f"{path}: {len(alignments):,} alignments for {expected:,} sentence pairs; "
            "delete the file to realign"
        )
    return alignments


def _copy_file(source: Path, destination: Path) -> None:
    if not source.is_file():
        raise MtcError(f"{source}: missing; run 'mtcompare prepare' to make it")
    with atomic_open(destination, "wb") as stream:
        stream.write(source.read_bytes())
