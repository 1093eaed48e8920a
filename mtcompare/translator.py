"""The one seam between systems and the evaluation harness.

Both systems (and any external one) meet the harness through
:class:`Translator`: raw text lines in, raw detokenised lines out, same
count, same order. Tokenisation happens inside, through the shared
:mod:`mtcompare.data.tokenize` preprocessor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

from mtcompare.errors import MtcError

MODEL_INFO = "model.json"


class Translator(Protocol):
    name: str

    def translate(self, lines: Sequence[str]) -> list[str]: ...


@dataclass
class NBestEntry:
    """One translation of an n-best list, as ``mtcompare translate`` writes it.

    Translators that give n-best lists have
    ``translate_nbest(lines, size) -> list[list[NBestEntry]]``, best first.
    """

    text: str
    score: float
    features: str  # SMT: "LM0= ... TranslationModel0= ..." as in Moses; NMT: "logprob= ..."
    trace: str  # SMT: the phrase segmentation, "the red car |0-1| ..."; NMT: ""


def write_model_info(model_dir: Path, kind: str, **extra: object) -> None:
    """Record which kind of system a model directory holds."""
    info = {"kind": kind, **extra}
    path = Path(model_dir) / MODEL_INFO
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_model_info(model_dir: str | Path) -> dict:
    """The ``model.json`` record of a model directory."""
    path = Path(model_dir) / MODEL_INFO
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise MtcError(f"{path}: cannot read ({error.strerror})") from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        raise MtcError(f"{path}: damaged ({error.__class__.__name__}); "
                       "train the model again") from None
    if not isinstance(info, dict):
        raise MtcError(f"{path}: damaged (not a JSON object); train the model again")
    return info


def load_translator(model_dir: str | Path, threads: int = 2, tuned: bool = True) -> Translator:
    """Load an SMT or NMT model directory as a :class:`Translator`.

    ``threads``: decoder processes for SMT, torch threads for NMT. ``tuned``
    false makes an SMT model use its configured weights instead of the tuned.
    """
    model_dir = Path(model_dir)
    info_path = model_dir / MODEL_INFO
    if not info_path.is_file():
        raise MtcError(
            f"{model_dir}: not a model directory (no {MODEL_INFO}); "
            "train one with 'mtcompare train smt|nmt PREPARED --out DIR'"
        )
    kind = read_model_info(model_dir).get("kind")
    if kind == "smt":
        from mtcompare.smt.model import SMTTranslator

        return SMTTranslator.load(model_dir, processes=threads, tuned=tuned)
    if kind == "nmt":
        if not tuned:
            raise MtcError(f"{model_dir}: an NMT model has no untuned weights; --untuned "
                           "is for SMT models")
        import torch

        from mtcompare.nmt.translator import NMTTranslator

        torch.set_num_threads(threads)
        return NMTTranslator.load(model_dir)
    raise MtcError(f"{info_path}: unknown model kind {kind!r}; expected 'smt' or 'nmt'")
