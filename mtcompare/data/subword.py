"""Subword segmentation with SentencePiece (Kudo & Richardson 2018).

The NMT system reads the shared preprocessor's tokens (one line of
space-separated tokens) and splits them further into subword pieces, so that
a fixed vocabulary of a few thousand pieces covers every word, rare names
included. SentencePiece learns that vocabulary from the training side only,
either with the unigram language model (Kudo 2018: start from a large seed
vocabulary and prune the pieces whose removal costs the corpus likelihood
least) or with byte-pair encoding (Sennrich et al. 2016: merge the most
frequent adjacent pair until the vocabulary is full).

SentencePiece treats the space as an ordinary symbol (written ``▁``), so
decoding pieces gives back exactly the token line they came from; the shared
preprocessor then turns tokens back into raw text. Normalisation is switched
off ("identity") because the preprocessor has already normalised the text,
and a second normalisation would break that round trip.

Piece ids 0-3 are reserved: padding, unknown, begin and end of sentence.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from pathlib import Path
from typing import Iterable, Sequence

import sentencepiece

from mtcompare.errors import MtcError

logger = logging.getLogger(__name__)

PAD_ID = 0
UNK_ID = 1
BOS_ID = 2
EOS_ID = 3
MODEL_TYPES = ("unigram", "bpe")
# the 4 reserved ids, the word boundary and at least three characters; a real
# text needs one piece per distinct character on top, reported when training
MIN_VOCAB_SIZE = 8


class SubwordModel:
    """A trained SentencePiece model: token lines to pieces and back."""

    def __init__(self, processor: sentencepiece.SentencePieceProcessor, path: Path):
        self._processor = processor
        self.path = path

    @classmethod
    def load(cls, path: str | Path) -> "SubwordModel":
        """Load a ``.model`` file written by :func:`train_sentencepiece`."""
        path = Path(path)
        if not path.is_file():
            raise MtcError(
                f"{path}: SentencePiece model not found; retrain the NMT model"
            )
        processor = sentencepiece.SentencePieceProcessor()
        try:
            processor.Load(str(path))
        except (OSError, RuntimeError) as error:
            reason = _short_reason(error).replace(f" from {path}", "")
            raise MtcError(
                f"{path}: not a SentencePiece model ({reason}); "
                "retrain the NMT model with 'mtcompare train nmt'"
            ) from None
        return cls(processor, path)

    @property
    def vocab_size(self) -> int:
        return self._processor.GetPieceSize()

    def encode(self, tokens_line: str) -> list[str]:
        """Split a line of space-separated tokens into subword pieces."""
        return self._processor.EncodeAsPieces(tokens_line)

    def encode_ids(self, tokens_line: str) -> list[int]:
        """Like :meth:`encode`, but piece ids (no begin or end symbol added)."""
        return self._processor.EncodeAsIds(tokens_line)

    def decode(self, pieces: Sequence[str] | Sequence[int]) -> str:
        """Join pieces (strings or ids) back into the token line they came from."""
        pieces = list(pieces)
        if not pieces:
            return ""
        if isinstance(pieces[0], str):
            return self._processor.DecodePieces(pieces)
        special = (PAD_ID, BOS_ID, EOS_ID)
        return self._processor.DecodeIds([int(i) for i in pieces if i not in special])

    def id_to_piece(self, piece_id: int) -> str:
        return self._processor.IdToPiece(piece_id)


def train_sentencepiece(
    lines: Iterable[str],
    model_prefix: str | Path,
    vocab_size: int,
    model_type: str = "unigram",
    threads: int = 1,
    seed_sentencepiece_size: int = 200_000,
) -> SubwordModel:
    """Learn a subword vocabulary from in-memory token lines.

    Writes ``{model_prefix}.model`` and ``{model_prefix}.vocab``. The vocabulary
    size is a soft limit (``hard_vocab_limit=False``), so a corpus too small
    for ``vocab_size`` pieces gets a smaller vocabulary instead of an error;
    a ``vocab_size`` below the number of distinct characters (plus 5) is an
    :class:`MtcError` that says how large it must be.
    """
    if model_type not in MODEL_TYPES:
        raise MtcError(
            f"unknown SentencePiece model type {model_type!r}; "
            f"valid: {', '.join(MODEL_TYPES)}"
        )
    if vocab_size < MIN_VOCAB_SIZE:
        raise MtcError(
            f"vocab_size must be at least {MIN_VOCAB_SIZE} (4 reserved pieces, the "
            f"word boundary and the characters of the text), got {vocab_size}"
        )
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise MtcError(f"{model_prefix}: no non-empty training lines for SentencePiece")
    model_prefix = Path(model_prefix)
    created = not model_prefix.parent.exists()
    model_prefix.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    try:
        sentencepiece.SentencePieceTrainer.Train(
            sentence_iterator=iter(lines),
            model_prefix=str(model_prefix),
            vocab_size=vocab_size,
            model_type=model_type,
            hard_vocab_limit=False,
            character_coverage=1.0,
            normalization_rule_name="identity",
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            num_threads=threads,
            seed_sentencepiece_size=seed_sentencepiece_size,
            minloglevel=2,
        )
    except (RuntimeError, OSError) as error:
        if created:  # leave no empty output folder behind
            with contextlib.suppress(OSError):
                model_prefix.parent.rmdir()
        raise _training_error(error, lines, model_prefix, vocab_size) from None
    model = SubwordModel.load(model_prefix.with_name(model_prefix.name + ".model"))
    logger.info(
        "trained SentencePiece %s model %s: %s pieces from %s lines in %.1f s",
        model_type,
        model.path.name,
        f"{model.vocab_size:,}",
        f"{len(lines):,}",
        time.monotonic() - start,
    )
    return model


def _training_error(
    error: Exception, lines: Sequence[str], model_prefix: Path, vocab_size: int
) -> MtcError:
    """Say why SentencePiece could not learn a vocabulary, and what to change."""
    characters = {char for line in lines for char in line if not char.isspace()}
    # character_coverage=1.0 keeps every character as a piece, next to the word
    # boundary and the 4 reserved pieces, whatever vocab_size asks for
    needed = len(characters) + 1 + 4
    if vocab_size < needed:
        return MtcError(
            f"{model_prefix}: vocab_size {vocab_size} is too small for this text: "
            f"its {len(characters)} distinct characters, the word boundary and 4 "
            f"reserved pieces each need one; set vocab_size to at least {needed}"
        )
    return MtcError(
        f"{model_prefix}: SentencePiece could not learn {vocab_size:,} pieces "
        f"({_short_reason(error)}); change vocab_size or subword_type"
    )


def _short_reason(error: Exception) -> str:
    """SentencePiece's message without its source location, first sentence only."""
    message = " ".join(str(error).split())
    # "INTERNAL: src/trainer_interface.cc(638) [condition] Vocabulary size is ..."
    message = re.sub(r"^\w+: \S+\(\d+\) (\[.*?\] ?)?", "", message)
    message = message.split(". ")[0].rstrip(".")
    return message[:100] or type(error).__name__
