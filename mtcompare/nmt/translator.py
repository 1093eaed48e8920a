"""The trained NMT model behind the :class:`mtcompare.translator.Translator` seam.

Raw text goes through the shared preprocessor (normalise, tokenise,
truecase), SentencePiece splits the tokens into pieces, beam search
(:mod:`mtcompare.nmt.search`) translates batches of sentences of similar
length, and the way back is the same in reverse: pieces to tokens to raw
text. Empty lines give empty lines without touching the model, and a source
longer than the longest training pair is cut to that length rather than
refused, so a caller always gets one output line per input line. A damaged
model directory is reported as one line naming the damaged file.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from mtcompare.config import config_from_dict
from mtcompare.data.subword import SubwordModel
from mtcompare.data.tokenize import Preprocessor
from mtcompare.errors import MtcError
from mtcompare.nmt.model import Seq2Seq
from mtcompare.nmt.search import SearchConfig, translate_ids
from mtcompare.nmt.train import CONFIG_FILE, NMTConfig, load_checkpoint, restore_model

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
        with torch.inference_mode():
            outputs = translate_ids(
                self.model, sources, self.search, self.device, self.batch_tokens
            )
        translations = []
        for ids in outputs:  # an empty source has an empty output
            tokens = self.target_subwords.decode(ids).split()
            translations.append(
                self.target_preprocessor.decode(tokens) if tokens else ""
            )
        seconds = time.monotonic() - start
        logger.info(
            "translated %s lines in %.1f s, %.1f lines/s",
            f"{len(lines):,}",
            seconds,
            len(lines) / max(seconds, 1e-9),
        )
        return translations


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
