"""Corpus-level BLEU and chrF from sacreBLEU, with their signatures.

Scores are always computed on detokenised system output against the raw
reference (Post 2018, "A Call for Clarity in Reporting BLEU Scores"), so
that they compare with any other system scored the same way. The signature
records every option that changes the number.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from sacrebleu.metrics import BLEU, CHRF

from mtcompare.errors import MtcError


@dataclass(frozen=True)
class Score:
    """One metric's corpus score and the sacreBLEU signature that produced it."""

    metric: str
    score: float
    signature: str
    detail: str  # sacreBLEU's own one-line rendering (n-gram precisions, BP...)

    def to_dict(self) -> dict:
        return asdict(self)


def score_corpus(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, Score]:
    """BLEU and chrF of ``hypotheses`` against one reference per line."""
    if len(hypotheses) != len(references):
        raise MtcError(
            f"hypothesis has {len(hypotheses):,} lines but the reference has "
            f"{len(references):,}; translate every reference line"
        )
    if not references:
        raise MtcError("the reference is empty: there is nothing to score")
    scores = {}
    for name, metric in (("BLEU", BLEU()), ("chrF", CHRF())):
        result = metric.corpus_score(list(hypotheses), [list(references)])
        scores[name] = Score(
            metric=name,
            score=round(result.score, 2),
            signature=str(metric.get_signature()),
            detail=str(result),
        )
    return scores
