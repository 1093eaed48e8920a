"""Stand-ins for unknown source words, checked on hand-made vocabularies."""

from __future__ import annotations

from collections import Counter

import pytest

from mtcompare.errors import MtcError
from mtcompare.smt.unknown_words import StandIns, normalise

VOCABULARY = Counter({
    "tomaron": 3, "tomar": 9, "tomó": 4,
    "restaurar": 2, "restauración": 5,
    "casa": 30, "Bichri": 1, "canto": 2, "cantidad": 6, "vivificará": 1,
})


@pytest.fixture(scope="module")
def stand_ins() -> StandIns:
    return StandIns(VOCABULARY)


def test_normalise_lowercases_and_drops_accents():
    assert normalise("Tomáronse") == "tomaronse"
    assert normalise("avergüéncese") == "averguencese"


@pytest.mark.parametrize("word, expected", [
    ("tomáronse", "tomaron"),  # "tomaron" is its longest known prefix (7 letters)
    ("tomarlo", "tomar"),  # "tomar" (5 letters) beats "tomaron"'s "tomar" on frequency
    ("restauró", "restauración"),  # prefix "restaur": the more frequent word wins
    ("vivifícame", "vivificará"),  # accents do not count: "vivific"
    ("casas", None),  # "casa" is shorter than MIN_PREFIX
    ("cantar", None),  # "cant" only
    ("restaurarlo", "restaurar"),  # "restaurar" (9) beats "restaura" (8)
])
def test_longest_shared_prefix(stand_ins, word, expected):
    assert stand_ins.stand_in(word) == expected


def test_the_prefix_must_cover_half_the_word(stand_ins):
    # shares "tomar" (5 letters) with "tomar", less than half of 12 letters
    assert stand_ins.stand_in("tomarísimoss") is None


def test_known_words_and_names_lend_nothing(stand_ins):
    assert stand_ins.stand_in("tomar") is None
    assert stand_ins.stand_in("Bichrites") is None  # "Bichri" is a name: it lends nothing


def test_the_choice_depends_on_the_word_alone(stand_ins):
    # a capitalised unknown word borrows wherever it stands (a verse may open with it)
    assert stand_ins.stand_in("Tomáronse") == "tomaron"
    found = stand_ins.stand_ins(["Tomáronse", "la", "casa", "y", "tomáronse", "."])
    assert found == {"Tomáronse": "tomaron", "tomáronse": "tomaron"}


def test_a_very_long_word_is_compared_on_its_first_characters(stand_ins):
    assert stand_ins.stand_in("tomaron" + "x" * 10_000) is None  # 7 of 30 characters
    assert StandIns(Counter({"a" * 50: 1})).stand_in("a" * 60) == "a" * 50


def test_save_and_load(tmp_path, stand_ins):
    path = tmp_path / "vocabulary.tsv"
    stand_ins.save(path)
    assert path.read_text(encoding="utf-8").splitlines()[0] == "casa\t30"
    assert StandIns.load(path).vocabulary == VOCABULARY


@pytest.mark.parametrize("text, problem", [
    ("casa\t3\ncasa tres\n", r"vocabulary.tsv:2: expected 'word<TAB>count'"),
    ("casa\t3\ncasa\t\u00b2\n", r"vocabulary.tsv:2: expected 'word<TAB>count'"),
    ("casa\t3\ncasa\t4\n", r"vocabulary.tsv:2: 'casa' is listed twice"),
    ("", r"vocabulary.tsv: no words"),
])
def test_a_damaged_vocabulary_names_its_line(tmp_path, text, problem):
    path = tmp_path / "vocabulary.tsv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MtcError, match=problem):
        StandIns.load(path)
