"""sacreBLEU scores and signatures."""

import pytest

from mtcompare.errors import MtcError
from mtcompare.eval.metrics import score_corpus


def test_reference_against_itself_scores_100():
    references = ["The king went home.", "He said, “Go.”"]
    scores = score_corpus(references, references)
    assert scores["BLEU"].score == 100.0
    assert scores["chrF"].score == 100.0
    assert scores["BLEU"].signature.startswith("nrefs:1|case:mixed")


def test_bleu_worked_by_hand():
    # hypothesis "a b c d e f" against "a b c d e g": n-gram precisions 5/6, 4/5,
    # 3/4, 2/3, equal lengths so no brevity penalty; BLEU = (1/3) ** (1/4).
    scores = score_corpus(["a b c d e f"], ["a b c d e g"])
    assert scores["BLEU"].score == pytest.approx(100 * (1 / 3) ** 0.25, abs=0.01)


def test_line_count_mismatch_is_an_error():
    with pytest.raises(MtcError, match="2 lines but the reference has 1"):
        score_corpus(["a", "b"], ["a"])
