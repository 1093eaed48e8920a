"""Text normalisation and the length and ratio filters for training pairs.

:func:`clean_pairs` follows Moses' ``clean-corpus-n.perl`` (Koehn et al. 2007):
a pair is dropped when either side has no tokens, when either side has more
than ``max_length`` tokens, or when the longer side has more than
``max_ratio`` times as many tokens as the shorter. Long pairs slow word
alignment and phrase extraction down quadratically, and pairs with extreme
length ratios are usually misaligned. Only training data is cleaned; dev and
test sets are never filtered.
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass, field
from typing import Sequence

from mtcompare.data.corpus import Pair
from mtcompare.errors import MtcError

logger = logging.getLogger(__name__)

DROP_REASONS = ("empty", "too_long", "ratio")

# Control characters that separate words become spaces; the rest are removed.
_SPACING_CONTROLS = frozenset("\t\n\r\v\f\x1c\x1d\x1e\x1f\x85")


def normalize_text(text: str) -> str:
    """Unicode NFC, control characters removed (tabs and line breaks become
    spaces), runs of whitespace collapsed to one space, both ends stripped."""
    text = unicodedata.normalize("NFC", text)
    characters = [
        " " if character in _SPACING_CONTROLS else character
        for character in text
        if character in _SPACING_CONTROLS or unicodedata.category(character) != "Cc"
    ]
    return " ".join("".join(characters).split())


@dataclass
class CleanReport:
    """How many pairs the filters kept, and how many each reason dropped."""

    kept: int
    dropped: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(DROP_REASONS, 0)
    )

    @property
    def total(self) -> int:
        return self.kept + sum(self.dropped.values())


def clean_pairs(
    pairs: Sequence[Pair],
    src_tokens: Sequence[Sequence[str]],
    tgt_tokens: Sequence[Sequence[str]],
    max_length: int = 80,
    max_ratio: float = 9.0,
) -> tuple[list[int], CleanReport]:
    """Indices of the pairs that pass the filters, in order, and a report.

    ``src_tokens[i]`` and ``tgt_tokens[i]`` are the tokens of ``pairs[i]``. A
    dropped pair counts once, under the first reason that applies in the
    order empty, too_long, ratio. Exactly ``max_length`` tokens, and a ratio
    of exactly ``max_ratio``, are kept.
    """
    _check_limits(max_length, max_ratio)
    if not len(pairs) == len(src_tokens) == len(tgt_tokens):
        raise ValueError(
            f"clean_pairs needs one token list per pair: {len(pairs)} pairs, "
            f"{len(src_tokens)} source and {len(tgt_tokens)} target token lists"
        )
    kept: list[int] = []
    report = CleanReport(kept=0)
    for index, (pair, src, tgt) in enumerate(zip(pairs, src_tokens, tgt_tokens)):
        reason = _drop_reason(pair, len(src), len(tgt), max_length, max_ratio)
        if reason is None:
            kept.append(index)
        else:
            report.dropped[reason] += 1
    report.kept = len(kept)
    logger.info(
        "cleaning kept %s of %s pairs (dropped: %s)",
        f"{report.kept:,}",
        f"{report.total:,}",
        ", ".join(f"{reason} {count:,}" for reason, count in report.dropped.items()),
    )
    return kept, report


def _drop_reason(
    pair: Pair, src_length: int, tgt_length: int, max_length: int, max_ratio: float
) -> str | None:
    """The first filter the pair fails, or None when it passes them all."""
    if min(src_length, tgt_length) == 0 or not pair.src.strip() or not pair.tgt.strip():
        return "empty"
    if src_length > max_length or tgt_length > max_length:
        return "too_long"
    if max(src_length, tgt_length) > max_ratio * min(src_length, tgt_length):
        return "ratio"
    return None


def _check_limits(max_length: int, max_ratio: float) -> None:
    if max_length < 1:
        raise MtcError(f"max_length is {max_length}; it must be a whole number of "
                       "tokens, 1 or more (Moses uses 80)")
    if max_ratio < 1:
        raise MtcError(f"max_ratio is {max_ratio}; it must be 1 or more "
                       "(Moses uses 9)")
