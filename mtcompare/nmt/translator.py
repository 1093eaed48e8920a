"""The trained NMT model behind the :class:`mtcompare.translator.Translator` seam.

Raw text goes through the shared preprocessor (normalise, tokenise,
truecase), SentencePiece splits the tokens into pieces, beam search
(:mod:`mtcompare.nmt.search`) translates batches of sentences of similar
length, and the way back is the same in reverse: pieces to tokens to raw
text. Empty lines give empty lines without touching the model, and a source
longer than the longest training pair is cut to that length rather than
refused, so a caller always gets one output line per input line. A damaged
model directory is reported as one line naming the damaged file.

Two views inside the search are offered besides the 1-best text: the n best
translations of each line (:meth:`NMTTranslator.translate_nbest`, in the
record the SMT side writes, so ``mtcompare translate --n-best`` serves both),
and the attention weights with which the decoder read the source while it
wrote the 1-best translation of one line (:meth:`NMTTranslator.attention`),
one row per target piece and one column per source piece.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from mtcompare.config import config_from_dict
from mtcompare.data.subword import EOS_ID, SubwordModel
from mtcompare.data.tokenize import Preprocessor
from mtcompare.errors import MtcError
from mtcompare.nmt.batching import pad
from mtcompare.nmt.model import Seq2Seq
from mtcompare.nmt.search import (
    Hypothesis,
    SearchConfig,
    attention_matrix,
    beam_search,
    translate_ids,
)
from mtcompare.nmt.train import CONFIG_FILE, NMTConfig, load_checkpoint, restore_model
from mtcompare.translator import NBestEntry

logger = logging.getLogger(__name__)

DAMAGED = "the NMT model is damaged, train it again with 'mtcompare train nmt'"
# the entries of config.json that loading needs, with their JSON types
SETTINGS = {
    "nmt": (dict, "an object"),
    "src_lang": (str, "a string"),
    "tgt_lang": (str, "a string"),
    "checkpoint": (str, "a string"),
}


class NMTTranslator:
    """Translate raw text lines with a model directory written by ``train_nmt``."""

    name = "nmt"

    def __init__(
        self,
        model: Seq2Seq,
        source_preprocessor: Preprocessor,
        target_preprocessor: Preprocessor,
        source_subwords: SubwordModel,
        target_subwords: SubwordModel,
        search: SearchConfig,
        max_source_length: int,
        device: torch.device,
        batch_tokens: int = 4000,
    ):
        self.model = model.eval()
        self.source_preprocessor = source_preprocessor
        self.target_preprocessor = target_preprocessor
        self.source_subwords = source_subwords
        self.target_subwords = target_subwords
        self.search = search
        self.max_source_length = max_source_length
        self.device = device
        self.batch_tokens = batch_tokens

    @classmethod
    def load(
        cls, model_dir: str | Path, beam_size: int | None = None
    ) -> "NMTTranslator":
        """Load ``model_dir``; ``beam_size`` overrides the one in its config."""
        model_dir = Path(model_dir)
        config_path = model_dir / CONFIG_FILE
        if not config_path.is_file():
            raise MtcError(
                f"{model_dir}: no {CONFIG_FILE}; the NMT model is incomplete, "
                "train it again with 'mtcompare train nmt'"
            )
        settings = _read_settings(config_path)
        nmt = _nmt_config(settings["nmt"], config_path)
        src_lang, tgt_lang = settings["src_lang"], settings["tgt_lang"]
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        checkpoint_path = model_dir / settings["checkpoint"]
        checkpoint = load_checkpoint(
            checkpoint_path,
            device,
            DAMAGED,
            required=("model", "model_config", "progress"),
        )
        model, progress = restore_model(checkpoint, checkpoint_path, device, DAMAGED)
        search = nmt.search_config(beam_size)
        logger.info(
            "loaded NMT model %s (step %s), beam size %d",
            checkpoint_path,
            progress.step,
            search.beam_size,
        )
        return cls(
            model,
            Preprocessor.load(model_dir / f"preprocess.{src_lang}.json"),
            Preprocessor.load(model_dir / f"preprocess.{tgt_lang}.json"),
            SubwordModel.load(model_dir / f"spm.{src_lang}.model"),
            SubwordModel.load(model_dir / f"spm.{tgt_lang}.model"),
            search,
            nmt.max_length,
            device,
        )

    def translate(self, lines: Sequence[str]) -> list[str]:
        """Raw lines in, raw translations out: same count, same order."""
        start = time.monotonic()
        sources = self._encode(lines)
        with torch.inference_mode():
            outputs = translate_ids(
                self.model, sources, self.search, self.device, self.batch_tokens
            )
        translations = [self._decode(ids) for ids in outputs]
        self._log_rate(len(lines), start)
        return translations

    def translate_nbest(
        self, lines: Sequence[str], size: int
    ) -> list[list[NBestEntry]]:
        """The ``size`` best translations of each line, best first.

        The beam is widened to ``size`` when it is narrower. An entry's score
        is the length-normalised one the search ranks by; its features are
        ``logprob= L``, the log-probability of the pieces and the end symbol;
        its trace is empty. An empty line gets one empty translation.
        """
        if size < 1:
            raise MtcError(f"n-best size must be at least 1, got {size}")
        start = time.monotonic()
        search = self.search
        if search.beam_size < size:
            search = dataclasses.replace(search, beam_size=size)
        sources = self._encode(lines)
        found = self._search(sources, search, size)
        lists = [
            (
                [self._entry(hypothesis) for hypothesis in hypotheses]
                if source
                else [NBestEntry("", 0.0, "", "")]
            )
            for source, hypotheses in zip(sources, found)
        ]
        self._log_rate(len(lines), start)
        return lists

    def attention(self, line: str) -> tuple[list[str], list[str], list[list[float]]]:
        """The attention weights of one line's 1-best translation.

        Returns the source pieces and the target pieces, each ending in the
        end symbol, and a matrix with one row per target piece and one column
        per source piece: row i holds the weights with which the decoder read
        the source when it wrote target piece i, and sums to one. An empty
        line gives three empty lists.
        """
        (source,) = self._encode([line])
        if not source:
            return [], [], []
        (hypotheses,) = self._search([source], self.search, 1)
        target = hypotheses[0].pieces if hypotheses else []
        with torch.inference_mode():
            weights = attention_matrix(self.model, source, target)
        end = self.target_subwords.id_to_piece(EOS_ID)
        source_pieces = [self.source_subwords.id_to_piece(i) for i in source] + [end]
        target_pieces = [self.target_subwords.id_to_piece(i) for i in target] + [end]
        return source_pieces, target_pieces, weights.cpu().tolist()

    def _encode(self, lines: Sequence[str]) -> list[list[int]]:
        """Source piece ids of raw lines, each cut to the model's length limit."""
        sources = []
        truncated = 0
        for line in lines:
            tokens = self.source_preprocessor.encode(line) if line.strip() else []
            ids = self.source_subwords.encode_ids(" ".join(tokens)) if tokens else []
            if len(ids) > self.max_source_length:
                truncated += 1
                ids = ids[: self.max_source_length]
            sources.append(ids)
        if truncated:
            logger.warning(
                "cut %d source line(s) to the model's limit of %d pieces",
                truncated,
                self.max_source_length,
            )
        return sources

    def _decode(self, ids: Sequence[int]) -> str:
        """Raw text of target piece ids (an empty list gives an empty line)."""
        tokens = self.target_subwords.decode(ids).split()
        return self.target_preprocessor.decode(tokens) if tokens else ""

    def _entry(self, hypothesis: Hypothesis) -> NBestEntry:
        return NBestEntry(
            self._decode(hypothesis.pieces),
            hypothesis.score,
            f"logprob= {hypothesis.log_probability:.6g}",
            "",
        )

    def _search(
        self, sources: Sequence[list[int]], search: SearchConfig, n_best: int
    ) -> list[list[Hypothesis]]:
        """The ``n_best`` best hypotheses of every source (none for an empty one),
        decoded in batches of sentences of similar length."""
        found: list[list[Hypothesis]] = [[] for _ in sources]
        with torch.inference_mode():
            for chunk in _length_sorted_chunks(
                sources, search.beam_size, self.batch_tokens
            ):
                src = pad([sources[i] + [EOS_ID] for i in chunk]).to(self.device)
                src_lengths = torch.tensor(
                    [len(sources[i]) + 1 for i in chunk], device=self.device
                )  # batch
                results = beam_search(self.model, src, src_lengths, search, n_best)
                for index, hypotheses in zip(chunk, results):
                    found[index] = hypotheses
        return found

    def _log_rate(self, count: int, start: float) -> None:
        seconds = time.monotonic() - start
        logger.info(
            "translated %s lines in %.1f s, %.1f lines/s",
            f"{count:,}",
            seconds,
            count / max(seconds, 1e-9),
        )


def _length_sorted_chunks(
    sources: Sequence[list[int]], beam_size: int, batch_tokens: int
) -> Iterator[list[int]]:
    """Indices of the non-empty sources, longest first, in chunks whose padded
    size times the beam stays within ``batch_tokens`` (at least one each)."""
    order = sorted(
        (i for i in range(len(sources)) if sources[i]), key=lambda i: -len(sources[i])
    )
    start = 0
    while start < len(order):
        longest = len(sources[order[start]]) + 1  # with the end symbol
        size = max(1, batch_tokens // (longest * beam_size))
        yield order[start : start + size]
        start += size


def _read_settings(path: Path) -> dict[str, Any]:
    """The model directory's ``config.json``, checked for the entries it must have."""
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise MtcError(
            f"{path}: cannot read it ({error.strerror}); {DAMAGED}"
        ) from None
    except UnicodeDecodeError:
        raise MtcError(f"{path}: not UTF-8 text; {DAMAGED}") from None
    except json.JSONDecodeError as error:
        raise MtcError(
            f"{path}:{error.lineno}: not valid JSON ({error.msg}); {DAMAGED}"
        ) from None
    if not isinstance(settings, dict):
        raise MtcError(f"{path}: not a JSON object of settings; {DAMAGED}")
    for key, (expected_type, json_type) in SETTINGS.items():
        if key not in settings:
            raise MtcError(f"{path}: no {key!r} entry; {DAMAGED}")
        if not isinstance(settings[key], expected_type):
            raise MtcError(f"{path}: {key!r} is not {json_type}; {DAMAGED}")
    return settings


def _nmt_config(record: dict[str, Any], path: Path) -> NMTConfig:
    """The NMT settings saved by training, validated; errors name ``path``."""
    try:
        return config_from_dict(NMTConfig, record, where=str(path))
    except MtcError as error:
        message = str(error)
        if not message.startswith(f"{path}:"):  # validate() does not know the file
            message = f"{path}: {message}"
        raise MtcError(f"{message}; {DAMAGED}") from None
