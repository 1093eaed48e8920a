"""Text normalisation and the Moses-style length and ratio filters."""

import pytest

from mtcompare.data.clean import clean_pairs, normalize_text
from mtcompare.data.corpus import Pair
from mtcompare.errors import MtcError


def test_normalize_text_composes_removes_controls_and_collapses_spaces():
    decomposed = "Jose\u0301"  # e + combining acute
    assert normalize_text(f"  {decomposed}\tfue\x00\x07 a\r\n  casa \x1b ") == (
        "José fue a casa"
    )


def test_normalize_text_keeps_curly_quotes_and_other_punctuation():
    assert normalize_text("“Let there be light,” ‘he’ said") == (
        "“Let there be light,” ‘he’ said"
    )


def _run(token_counts, **limits):
    """clean_pairs on pairs whose sides have the given numbers of tokens."""
    src = [["a"] * s for s, _ in token_counts]
    tgt = [["b"] * t for _, t in token_counts]
    pairs = [Pair(" ".join(s), " ".join(t)) for s, t in zip(src, tgt)]
    return clean_pairs(pairs, src, tgt, **limits)


def test_each_reason_is_counted():
    kept, report = _run([(3, 4), (0, 2), (2, 0), (81, 10), (10, 91), (1, 10), (2, 3)])
    assert kept == [0, 6]
    assert report.kept == 2
    assert report.dropped == {"empty": 2, "too_long": 2, "ratio": 1}


def test_boundaries_are_kept():
    kept, report = _run([(80, 80), (1, 9), (9, 1), (80, 9)])
    assert kept == [0, 1, 2, 3]
    assert report.dropped == {"empty": 0, "too_long": 0, "ratio": 0}


def test_a_pair_counts_once_under_the_first_reason():
    # empty and too long -> empty; too long and bad ratio -> too_long
    kept, report = _run([(0, 100), (100, 2)])
    assert kept == []
    assert report.dropped == {"empty": 1, "too_long": 1, "ratio": 0}


def test_limits_are_parameters():
    kept, report = _run([(5, 6), (5, 16)], max_length=10, max_ratio=3.0)
    assert kept == [0]
    assert report.dropped == {"empty": 0, "too_long": 1, "ratio": 0}


def test_blank_text_is_empty_even_with_tokens():
    pairs = [Pair("   ", "hello")]
    kept, report = clean_pairs(pairs, [["x"]], [["hello"]])
    assert kept == []
    assert report.dropped["empty"] == 1


def test_invalid_limits_are_user_errors():
    with pytest.raises(MtcError, match="max_length"):
        _run([(1, 1)], max_length=0)
    with pytest.raises(MtcError, match="max_ratio"):
        _run([(1, 1)], max_ratio=0.5)
