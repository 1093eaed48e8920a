"""Training a phrase-based SMT system and translating with it.

``train_smt`` runs the classic Moses pipeline (Koehn, *Statistical Machine
Translation*, 2010, chapters 4-6) on a prepared directory:

1. IBM Model 1 in both directions (Brown et al. 1993), each followed by its
   Viterbi word alignment;
2. symmetrisation of the two alignments (Och & Ney 2003; by default
   grow-diag-final-and, Koehn et al. 2003);
3. phrase extraction and scoring into a Moses phrase table;
4. an interpolated modified Kneser–Ney language model on the target side.

Every stage writes its file atomically, and a file that already exists is
reused, so an interrupted training resumes where it stopped. ``model.json``
is written last; its presence means the model directory is complete::

    config.json                 the SMTConfig (a re-run must use the same one)
    aligned.{symmetrization}    symmetrised alignments, "i-j" per link
    phrase-table.gz             Moses format
    lm.arpa.gz                  ARPA, log10
    preprocess.{lang}.json      copied from the prepared directory
    model.json                  {"kind": "smt", ...}

``SMTTranslator`` loads such a directory and translates raw lines: the shared
preprocessor tokenises and truecases, the phrase-table entries of the input's
source phrases are read (only those, as Moses filters a table for its test
set), the stack decoder translates (in worker processes for more than a few
lines), the target preprocessor recases and detokenises. Lines longer than
``max_input_length`` tokens are decoded in chunks of that length, so no input
can make decoding run out of time or memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from mtcompare.config import config_from_dict
from mtcompare.data.prepare import prepared_languages
from mtcompare.data.tokenize import Preprocessor
from mtcompare.errors import MtcError
from mtcompare.fileio import atomic_open, read_lines, write_lines, write_text
from mtcompare.smt.align import align_both_ways, format_links
from mtcompare.smt.decoder import Decoder, DecoderConfig, DecoderWeights
from mtcompare.smt.lm import NGramLanguageModel, train_kneser_ney
from mtcompare.smt.phrases import Phrase, PhraseTable, build_phrase_table
from mtcompare.smt.symmetrize import HEURISTICS
from mtcompare.translator import MODEL_INFO, read_model_info, write_model_info

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
PHRASE_TABLE_FILE = "phrase-table.gz"
LM_FILE = "lm.arpa.gz"
# Decode in worker processes only when there are enough lines to pay for them.
MIN_LINES_FOR_WORKERS = 8


@dataclass
class SMTConfig:
    """Settings of the SMT pipeline and of its decoder."""

    max_phrase_length: int = 7
    ibm1_iterations: int = 5
    lm_order: int = 3
    symmetrization: str = "grow-diag-final-and"
    phrase_limit: int = 20
    distortion_limit: int = 6
    stack_size: int = 50
    beam_threshold: float = 10.0
    max_input_length: int = 100
    weights: DecoderWeights = field(default_factory=DecoderWeights)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise one MtcError listing every setting out of its range."""
        problems = [
            f"{name} must be at least {low}, got {getattr(self, name)}"
            for name, low in (
                ("max_phrase_length", 1),
                ("ibm1_iterations", 1),
                ("lm_order", 1),
                ("phrase_limit", 1),
                ("distortion_limit", 0),
                ("stack_size", 1),
                ("max_input_length", 1),
            )
            if getattr(self, name) < low
        ]
        if self.lm_order > 9:
            problems.append(f"lm_order must be at most 9, got {self.lm_order}")
        if self.symmetrization not in HEURISTICS:
            problems.append(
                f"symmetrization {self.symmetrization!r} is unknown; "
                f"valid: {', '.join(HEURISTICS)}"
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
        )


def train_smt(
    prepared_dir: Path, out_dir: Path, config: SMTConfig | None = None
) -> None:
    """Train every SMT component from ``prepared_dir`` into ``out_dir``."""
    config = config or SMTConfig()
    prepared_dir, out_dir = Path(prepared_dir), Path(out_dir)
    started = time.monotonic()
    src_lang, tgt_lang = prepared_languages(prepared_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_or_check_config(out_dir, config)
    logger.info(
        "training SMT %s->%s into %s with %s", src_lang, tgt_lang, out_dir, config
    )

    source = _read_tokenized(prepared_dir / f"train.tok.{src_lang}")
    target = _read_tokenized(prepared_dir / f"train.tok.{tgt_lang}")
    if len(source) != len(target):
        raise MtcError(
            f"{prepared_dir}: train.tok.{src_lang} has {len(source):,} lines but "
            f"train.tok.{tgt_lang} has {len(target):,}; run 'mtcompare prepare' again"
        )

    phrase_table_path = out_dir / PHRASE_TABLE_FILE
    if not _reuse(phrase_table_path):
        alignments = _symmetrized_alignments(
            source, target, config, out_dir, (src_lang, tgt_lang)
        )
        _build_phrase_table(source, target, alignments, config, phrase_table_path)

    lm_path = out_dir / LM_FILE
    if not _reuse(lm_path):
        _train_language_model(target, config, lm_path)

    for lang in (src_lang, tgt_lang):
        _copy_file(
            prepared_dir / f"preprocess.{lang}.json",
            out_dir / f"preprocess.{lang}.json",
        )
    write_model_info(
        out_dir,
        "smt",
        src_lang=src_lang,
        tgt_lang=tgt_lang,
        train_pairs=len(source),
        prepared=str(prepared_dir),
        # what translation reads; the alignment file is kept only for resuming
        translation_files=[MODEL_INFO, CONFIG_FILE, PHRASE_TABLE_FILE, LM_FILE,
                           f"preprocess.{src_lang}.json", f"preprocess.{tgt_lang}.json"],
    )
    logger.info(
        "SMT model complete in %s (%.0f s)", out_dir, time.monotonic() - started
    )


class SMTTranslator:
    """Raw source lines in, raw target lines out, through the stack decoder.

    The phrase table is read lazily. Each call to :meth:`translate` collects
    the source n-grams of its input (up to ``max_phrase_length`` words, the
    longest phrase training extracts), and reads from ``phrase-table.gz``
    only the entries of those that no earlier call asked for, in one pass,
    as Moses' filter-model-given-input.pl does for a test set. The decoder
    looks up no other phrase, so its translations are those it would make
    with the whole table, and one sentence no longer waits for millions of
    entries to be built.
    """

    name = "smt"

    def __init__(
        self,
        phrase_table_path: Path,
        language_model: NGramLanguageModel,
        source_preprocessor: Preprocessor,
        target_preprocessor: Preprocessor,
        config: SMTConfig,
        processes: int = 2,
    ) -> None:
        self.phrase_table_path = Path(phrase_table_path)
        self.phrase_table = PhraseTable()  # the entries read so far
        # every source phrase the table has been read for, found in it or not
        self._phrases_read: set[Phrase] = set()
        self.decoder = Decoder(
            self.phrase_table, language_model, config.decoder_config()
        )
        self.source_preprocessor = source_preprocessor
        self.target_preprocessor = target_preprocessor
        self.config = config
        self.processes = processes

    @classmethod
    def load(cls, model_dir: Path, processes: int = 2) -> "SMTTranslator":
        """Load a model directory written by :func:`train_smt`.

        Reads everything but the phrase table, which ``translate`` reads
        for its input.
        """
        model_dir = Path(model_dir)
        info_path = model_dir / MODEL_INFO
        phrase_table_path = model_dir / PHRASE_TABLE_FILE
        for path in (info_path, phrase_table_path):
            if not path.is_file():
                raise MtcError(
                    f"{model_dir}: no {path.name}, so the SMT model is incomplete; "
                    "run 'mtcompare train smt' (it resumes an interrupted training)"
                )
        info = read_model_info(model_dir)
        config = _read_config(model_dir / CONFIG_FILE)
        started = time.monotonic()
        with _damaged_model_hint():
            language_model = NGramLanguageModel.read_arpa(model_dir / LM_FILE)
        if not (isinstance(info.get("src_lang"), str) and isinstance(info.get("tgt_lang"), str)):
            raise MtcError(f"{info_path}: damaged (no language codes); train the model again")
        source_pre = Preprocessor.load(model_dir / f"preprocess.{info['src_lang']}.json")
        target_pre = Preprocessor.load(model_dir / f"preprocess.{info['tgt_lang']}.json")
        logger.info(
            "loaded SMT model %s in %.1f s: %s LM n-grams; phrase-table entries "
            "are read for each input",
            model_dir,
            time.monotonic() - started,
            f"{len(language_model.entries):,}",
        )
        return cls(
            phrase_table_path, language_model, source_pre, target_pre, config, processes
        )

    def translate(self, lines: Sequence[str]) -> list[str]:
        """Translate raw lines; same count and order, an empty line stays empty."""
        chunks, chunk_counts = self._encode(lines)
        self._read_phrase_table_for(chunks)
        processes = self.processes if len(chunks) >= MIN_LINES_FOR_WORKERS else 1
        decoded = self.decoder.decode_corpus(chunks, processes=processes)

        outputs = []
        position = 0
        for count in chunk_counts:
            words = [
                word for piece in decoded[position : position + count] for word in piece
            ]
            position += count
            outputs.append(self.target_preprocessor.decode(words) if words else "")
        return outputs

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

    def _read_phrase_table_for(self, chunks: list[list[str]]) -> None:
        """Add the entries of every n-gram of ``chunks`` not read for before."""
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
        with _damaged_model_hint():
            entries = PhraseTable.read_moses(
                self.phrase_table_path, limit=self.config.phrase_limit, sources=missing
            )
        self.phrase_table.update(entries)
        self._phrases_read |= missing


@contextlib.contextmanager
def _damaged_model_hint() -> Iterator[None]:
    """Add what to do to a reader's error about a model's own file."""
    try:
        yield
    except MtcError as error:
        raise MtcError(f"{error}; the SMT model is damaged, train it again with "
                       "'mtcompare train smt'") from None


# -- training stages ------------------------------------------------------------


def _symmetrized_alignments(
    source: list[list[str]],
    target: list[list[str]],
    config: SMTConfig,
    out_dir: Path,
    languages: tuple[str, str],
) -> list[set[tuple[int, int]]]:
    """IBM Model 1 both ways, Viterbi alignments, symmetrised (reused from disk)."""
    path = out_dir / f"aligned.{config.symmetrization}"
    if _reuse(path):
        return _read_alignments(path, len(source))
    started = time.monotonic()
    alignments = align_both_ways(
        source, target, config.ibm1_iterations, config.symmetrization, languages
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


def _build_phrase_table(
    source: list[list[str]],
    target: list[list[str]],
    alignments: list[set[tuple[int, int]]],
    config: SMTConfig,
    path: Path,
) -> None:
    started = time.monotonic()
    table = build_phrase_table(
        source,
        target,
        alignments,
        max_length=config.max_phrase_length,
        limit=config.phrase_limit,
    )
    table.write_moses(path)
    logger.info(
        "phrase table: %s source phrases written to %s in %.0f s",
        f"{len(table.entries):,}",
        path,
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
        changed = [key for key in wanted if wanted[key] != existing.get(key)]
        if changed:
            raise MtcError(
                f"{out_dir} holds a model trained with different settings "
                f"({', '.join(changed)}); use a new --out directory or delete this one"
            )
        return
    write_text(path, json.dumps(wanted, indent=2) + "\n")


def _read_config(path: Path) -> SMTConfig:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise MtcError(f"{path}: cannot read the SMT configuration ({error})") from None
    if not isinstance(values, dict):
        raise MtcError(f"{path}: damaged (not a JSON object); train the model again")
    return config_from_dict(SMTConfig, values, where=str(path))


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
