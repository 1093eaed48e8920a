"""The shared preprocessor: tokenisation, truecasing and their inverse."""

import pytest

from mtcompare.data.tokenize import Preprocessor
from mtcompare.errors import MtcError

# Sentences written for these tests in the style of the World English Bible:
# curly double and single quotes, curly apostrophes, an em dash without spaces.
ENGLISH = [
    "The king said, “Bring me the scroll.”",
    "Then the servant answered, “My lord’s scroll is lost.”",
    "He said to them, “Haven’t you heard, ‘Keep the law’?”",
    "The prophet’s words—all of them—were written down.",
    "The people went home (each to his own house), and the city was quiet.",
    "“Who is this?” the woman asked.",
    "They didn’t listen; they wouldn’t hear.",
    "The scroll was found in the king’s house.",
    "Is it the king’s scroll? Yes, it is.",
    "The city’s gates were shut at night.",
    "They ate, and then they slept.",
]


@pytest.fixture(scope="module")
def english() -> Preprocessor:
    return Preprocessor.train("en", ENGLISH)


def test_curly_apostrophes_split_like_ascii_ones(english):
    assert english.tokenize("The king’s scroll") == ["The", "king", "’s", "scroll"]
    assert english.tokenize("Haven’t you") == ["Haven", "’t", "you"]


def test_curly_quotes_become_tokens(english):
    assert english.tokenize("He said, “Go.”") == ["He", "said", ",", "“", "Go", ".", "”"]


def test_detokenize_inverts_tokenize_on_curly_quotes(english):
    held_out = [
        "The woman said, “The king’s servant didn’t come.”",
        "He asked, “Did you say, ‘Go home’?”",
        "The gates—both of them—were shut (at night).",
    ]
    for line in ENGLISH + held_out:
        assert english.detokenize(english.tokenize(line)) == line


def test_learned_attachment_of_punctuation(english):
    assert english.attachment["“"] == (False, True)
    assert english.attachment["—"] == (True, True)  # learned: Unicode says nothing
    assert english.detokenize(["a", "”", "b", "‘", "c"]) == "a” b ‘c"
    # ")" is usually followed by ",", which must not make it attach to words
    assert english.detokenize(["(", "at", "night", ")", "and", "day"]) == "(at night) and day"


def test_ascii_double_quotes_alternate(english):
    assert english.detokenize(["He", "said", '"', "go", '"', "and", "went"]) == (
        'He said "go" and went'
    )


def test_bars_are_single_tokens(english):
    assert english.tokenize("a|||b") == ["a", "|", "|", "|", "b"]
    assert " ||| " not in " ".join(english.tokenize("x ||| y"))


def test_truecasing_changes_only_sentence_initial_words(english):
    encoded = english.encode("The scroll was found. Then the king said, “The end.”")
    assert encoded[0] == "the"
    assert encoded[5] == "then"
    assert encoded[-4] == "The"  # inside a quote, mid-sentence: kept as written
    assert english.encode("The king")[1] == "king"


def test_decode_inverts_encode_for_capitalised_sentences(english):
    line = "The scroll was found in the king’s house. Then they went home."
    assert english.decode(english.encode(line)) == line


def test_words_in_capitals_take_their_usual_form_anywhere():
    # "ACONTECIÓ" is written in capitals once, at a chapter opening, and in
    # lower case twice inside sentences: its usual form is "aconteció", even
    # in second position where ordinary truecasing would keep what is written.
    spanish = Preprocessor.train(
        "es",
        [
            "Y ACONTECIÓ en aquellos días.",
            "Y así aconteció que el rey salió.",
            "Después aconteció esto y aquello.",
            "Alabad a JAH.",  # "JAH" is never written otherwise: it stays
        ],
    )
    assert spanish.encode("Y ACONTECIÓ que") == ["y", "aconteció", "que"]
    assert spanish.encode("Entonces EL REY") == ["Entonces", "el", "rey"]
    assert spanish.encode("Alabad a JAH")[2] == "JAH"
    assert spanish.encode("Y entonces I dijo")[2] == "I"  # one letter: not "capitals"


def test_unknown_words_keep_their_case_at_sentence_start(english):
    assert english.encode("Zerubbabel went home.")[0] == "Zerubbabel"


def test_lowercase_mode():
    pre = Preprocessor.train("en", ENGLISH, case="lowercase")
    assert pre.encode("The King’s Scroll.") == ["the", "king", "’s", "scroll", "."]
    assert pre.decode(["the", "king", "went", "."]) == "The king went."


def test_empty_and_whitespace_lines(english):
    assert english.encode("") == []
    assert english.encode("   \t ") == []
    assert english.decode([]) == ""


def test_save_load_round_trip(tmp_path, english):
    path = tmp_path / "preprocess.en.json"
    english.save(path)
    loaded = Preprocessor.load(path)
    assert loaded.truecase_forms == english.truecase_forms
    assert loaded.attachment == english.attachment
    assert loaded.encode(ENGLISH[1]) == english.encode(ENGLISH[1])


def test_load_rejects_a_broken_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(MtcError, match="broken.json"):
        Preprocessor.load(path)


def test_unknown_case_mode_lists_valid_ones():
    with pytest.raises(MtcError, match="truecase, lowercase, none"):
        Preprocessor("en", case="upper")


def test_spanish_inverted_marks():
    spanish = ["¿Quién es este?", "¡Oh Señor!", "Y dijo: ¿Dónde está?", "¿Qué es?"]
    pre = Preprocessor.train("es", spanish)
    assert pre.tokenize("¿Quién es?") == ["¿", "Quién", "es", "?"]
    assert pre.detokenize(pre.tokenize("¿Dónde está el rey?")) == "¿Dónde está el rey?"


def test_no_capitals_added_where_the_language_has_none():
    pre = Preprocessor.train("xx", ["gibo namo taco.", "namo gibo. taco namo."])
    assert not pre.capitalized_starts
    assert pre.decode(["gibo", "namo", "."]) == "gibo namo."
    assert Preprocessor.train("en", ENGLISH).capitalized_starts


# Verses that continue the sentence of the line before start in lower case.
VERSES = [
    "In the beginning the king spoke.",
    "who made the city and its gates,",
    "who gave them water.",
    "Who is this man?",
    "and they slept.",
    "And the city was quiet.",
    "and the gates were shut.",
    "and the king went home.",
    "The people went home.",
    "The king slept.",
    "In the morning they rose.",
]


def test_learned_lowercase_line_starts():
    # "who": 2 lower, 1 capitalised; "and": 3 lower, 1 capitalised; "the" and
    # "in" only capitalised; more lines start capitalised (6) than not (5)
    verses = Preprocessor.train("en", VERSES)
    assert verses.lowercase_line_starts == {"who", "and"}
    assert verses.decode(verses.encode("and the city slept.")) == "and the city slept."
    assert verses.decode(["who", "is", "this", "?"]) == "who is this?"
    assert verses.decode(verses.encode("the king slept.")) == "The king slept."
    # later sentences of the line are capitalised as before
    assert verses.decode(["the", "king", "slept", ".", "and", "so", "."]) == (
        "The king slept. And so."
    )


def test_too_few_lowercase_line_starts_are_not_learned():
    verses = Preprocessor.train("en", ["who went home.", "The king slept."])
    assert verses.lowercase_line_starts == frozenset()
    assert verses.decode(["who", "went", "home", "."]) == "Who went home."


def test_lowercase_line_starts_survive_save_and_load(tmp_path):
    verses = Preprocessor.train("en", VERSES)
    path = tmp_path / "preprocess.en.json"
    verses.save(path)
    assert Preprocessor.load(path).lowercase_line_starts == {"who", "and"}


@pytest.mark.parametrize("value", ['"and"', '{"and": 1}', "[1, 2]", '["And"]'])
def test_a_damaged_lowercase_line_starts_is_refused(tmp_path, value):
    path = tmp_path / "preprocess.en.json"
    Preprocessor.train("en", VERSES).save(path)
    text = path.read_text(encoding="utf-8")
    start = text.index('"lowercase_line_starts"')
    end = text.index("]", start) + 1
    path.write_text(text[:start] + f'"lowercase_line_starts": {value}' + text[end:],
                    encoding="utf-8")
    with pytest.raises(MtcError, match="not a preprocessor file"):
        Preprocessor.load(path)
