"""Phrase extraction, scoring and the Moses phrase-table format, checked by hand."""

from __future__ import annotations

import gzip
import random
import re
from collections import defaultdict
from fractions import Fraction

import pytest

from mtcompare.errors import MtcError
from mtcompare.smt.align import align_corpus, train_ibm1
from mtcompare.smt.phrases import (
    PhraseEntry,
    PhraseTable,
    build_phrase_and_reordering_tables,
    build_phrase_table,
    extract_phrases,
    lexical_table,
)
from mtcompare.smt.symmetrize import symmetrize

# ---------------------------------------------------------------- extraction

# Rows are source words, columns target words. "y" and "." are unaligned and
# "perro negro" / "black dog" is crossed.
#
#              black  dog  barks  .
#   y            .     .     .    .
#   perro        .     X     .    .
#   negro        X     .     .    .
#   ladra        .     .     X    .
SOURCE = ["y", "perro", "negro", "ladra"]
TARGET = ["black", "dog", "barks", "."]
ALIGNMENT = {(1, 1), (2, 0), (3, 2)}

# Worked by hand, source span by source span (end exclusive):
#   [0,1) y             no alignment point                  -> nothing
#   [0,2) y perro       covers dog [1,2); both neighbours aligned
#   [0,3) y perro negro covers black dog [0,2); barks is aligned
#   [0,4) everything    covers [0,3), widened over "." to [0,4)
#   [1,2) perro         dog
#   [1,3) perro negro   black dog
#   [1,4) perro..ladra  [0,3) and [0,4)
#   [2,3) negro         black
#   [2,4) negro ladra   covers [0,3), but dog is aligned to perro -> inconsistent
#   [3,4) ladra         barks [2,3), widened over "." to [2,4)
EXPECTED_PHRASES = [
    (0, 2, 1, 2),
    (0, 3, 0, 2),
    (0, 4, 0, 3),
    (0, 4, 0, 4),
    (1, 2, 1, 2),
    (1, 3, 0, 2),
    (1, 4, 0, 3),
    (1, 4, 0, 4),
    (2, 3, 0, 1),
    (3, 4, 2, 3),
    (3, 4, 2, 4),
]


def test_extraction_matches_the_hand_worked_list() -> None:
    assert sorted(extract_phrases(SOURCE, TARGET, ALIGNMENT)) == EXPECTED_PHRASES


def test_max_length_limits_both_sides() -> None:
    expected = [
        phrase
        for phrase in EXPECTED_PHRASES
        if phrase[1] - phrase[0] <= 2 and phrase[3] - phrase[2] <= 2
    ]
    assert sorted(extract_phrases(SOURCE, TARGET, ALIGNMENT, max_length=2)) == expected


def test_unaligned_target_words_extend_on_both_edges() -> None:
    """a- x y z: the only link is (0,1); x and z are unaligned on either side."""
    assert sorted(extract_phrases(["a"], ["x", "y", "z"], {(0, 1)})) == [
        (0, 1, 0, 2),
        (0, 1, 0, 3),
        (0, 1, 1, 2),
        (0, 1, 1, 3),
    ]


def test_no_alignment_gives_no_phrases() -> None:
    assert extract_phrases(["a", "b"], ["x"], set()) == []


def test_alignment_point_outside_the_sentences_is_rejected() -> None:
    with pytest.raises(ValueError, match="outside a 2x1 sentence pair"):
        extract_phrases(["a", "b"], ["x"], {(0, 1)})


def _consistent_pairs_by_definition(
    source_length, target_length, alignment, max_length
):
    """Every span pair with a link inside and no link crossing its border."""

    def spans(length):
        return [
            (start, end)
            for start in range(length)
            for end in range(start + 1, min(length, start + max_length) + 1)
        ]

    pairs = []
    for source_start, source_end in spans(source_length):
        for target_start, target_end in spans(target_length):
            in_source = [source_start <= i < source_end for i, _ in alignment]
            in_target = [target_start <= j < target_end for _, j in alignment]
            if (
                any(s and t for s, t in zip(in_source, in_target))
                and in_source == in_target
            ):
                pairs.append((source_start, source_end, target_start, target_end))
    return sorted(pairs)


def test_extraction_agrees_with_the_definition_of_consistency() -> None:
    generator = random.Random(2)
    for _ in range(300):
        source_length, target_length = generator.randint(1, 8), generator.randint(1, 8)
        alignment = {
            (generator.randrange(source_length), generator.randrange(target_length))
            for _ in range(generator.randint(0, 9))
        }
        max_length = generator.randint(1, 7)
        found = extract_phrases(
            ["s"] * source_length, ["t"] * target_length, alignment, max_length
        )

        assert len(found) == len(set(found))
        assert sorted(found) == _consistent_pairs_by_definition(
            source_length, target_length, alignment, max_length
        )


# ---------------------------------------------------------------- scoring

# Three sentence pairs; "pues" and "a" are unaligned.
#   la casa   / the house   0-0 1-1
#   la casa   / the home    0-0 1-1
#   pues casa / a house     1-1
TINY_SOURCE = [["la", "casa"], ["la", "casa"], ["pues", "casa"]]
TINY_TARGET = [["the", "house"], ["the", "home"], ["a", "house"]]
TINY_ALIGNMENTS = [{(0, 0), (1, 1)}, {(0, 0), (1, 1)}, {(1, 1)}]


def test_lexical_table_by_relative_frequency_with_null() -> None:
    """Links: la-the x2, casa-house x2, casa-home x1, NULL-a x1, pues-NULL x1.

    w(t|s) divides by the links of s: casa has 3, so w(house|casa) = 2/3 and
    w(home|casa) = 1/3; w(the|la) = 2/2; w(a|NULL) = 1/1; w(NULL|pues) = 1/1.
    w(s|t) divides by the links of t: w(casa|house) = 2/2, w(la|the) = 2/2,
    w(pues|NULL) = 1/1.
    """
    direct, inverse = lexical_table(TINY_SOURCE, TINY_TARGET, TINY_ALIGNMENTS)

    assert direct == pytest.approx(
        {
            ("la", "the"): 1.0,
            ("casa", "house"): 2 / 3,
            ("casa", "home"): 1 / 3,
            (None, "a"): 1.0,
            ("pues", None): 1.0,
        }
    )
    assert inverse == pytest.approx(
        {
            ("la", "the"): 1.0,
            ("casa", "house"): 1.0,
            ("casa", "home"): 1.0,
            (None, "a"): 1.0,
            ("pues", None): 1.0,
        }
    )


def test_scores_of_a_tiny_corpus_worked_by_hand() -> None:
    """Extracted occurrences (pair 3 widens over the unaligned "a" and "pues"):

        pair 1: la|the  casa|house  la casa|the house
        pair 2: la|the  casa|home   la casa|the home
        pair 3: casa|house  casa|a house  pues casa|house  pues casa|a house

    count(casa) = 4, count(la casa) = 2, count(pues casa) = 2, count(la) = 2;
    count(house) = 3 (casa x2, pues casa), count(a house) = 2, count(home) = 1.

    casa -> house:   phi(t|s) = 2/4, phi(s|t) = 2/3, lex(t|s) = w(house|casa) = 2/3,
                     lex(s|t) = w(casa|house) = 1
    casa -> a house: phi(t|s) = 1/4, phi(s|t) = 1/2,
                     lex(t|s) = w(a|NULL) * w(house|casa) = 1 * 2/3
    casa -> home:    phi(t|s) = 1/4, phi(s|t) = 1/1, lex(t|s) = 1/3
    la casa -> the home: lex(t|s) = w(the|la) * w(home|casa) = 1 * 1/3
    pues casa -> house:  phi(s|t) = 1/3, lex(s|t) = w(pues|NULL) * w(casa|house) = 1
    """
    table = build_phrase_table(TINY_SOURCE, TINY_TARGET, TINY_ALIGNMENTS, limit=None)

    def entry_for(source, target):
        (entry,) = [
            e for e in table[tuple(source.split())] if e.target == tuple(target.split())
        ]
        return entry

    half, third, quarter, two_thirds = (
        Fraction(1, 2),
        Fraction(1, 3),
        Fraction(1, 4),
        Fraction(2, 3),
    )
    # (source, target): (phi(s|t), lex(s|t), phi(t|s), lex(t|s)), counts, alignment
    expected = {
        ("la", "the"): ((1, 1, 1, 1), (2, 2, 2), ((0, 0),)),
        ("casa", "house"): ((two_thirds, 1, half, two_thirds), (3, 4, 2), ((0, 0),)),
        ("casa", "a house"): ((half, 1, quarter, two_thirds), (2, 4, 1), ((0, 1),)),
        ("casa", "home"): ((1, 1, quarter, third), (1, 4, 1), ((0, 0),)),
        ("la casa", "the house"): (
            (1, 1, half, two_thirds),
            (1, 2, 1),
            ((0, 0), (1, 1)),
        ),
        ("la casa", "the home"): ((1, 1, half, third), (1, 2, 1), ((0, 0), (1, 1))),
        ("pues casa", "house"): ((third, 1, half, two_thirds), (3, 2, 1), ((1, 0),)),
        ("pues casa", "a house"): ((half, 1, half, two_thirds), (2, 2, 1), ((1, 1),)),
    }
    assert len(table) == len(expected)
    for (source, target), (probabilities, counts, alignment) in expected.items():
        entry = entry_for(source, target)
        assert entry.scores == pytest.approx(
            [float(p) for p in probabilities], abs=1e-12
        )
        assert entry.counts == counts
        assert entry.alignment == alignment

    # best first by phi(t|s), the tie between "a house" and "home" broken by lex(t|s)
    assert [e.target for e in table[("casa",)]] == [
        ("house",),
        ("a", "house"),
        ("home",),
    ]
    assert table.max_source_length == 2


def test_most_frequent_internal_alignment_and_mean_over_aligned_words() -> None:
    """ "a b" / "x y" twice with links 0-0 0-1 1-1, once with 0-0 1-1.

    Links: a-x x3, a-y x2, b-y x3, so w(x|a) = 3/5, w(y|a) = 2/5, w(y|b) = 3/3,
    w(a|x) = 3/3, w(a|y) = 2/5, w(b|y) = 3/5.
    "a b" | "x y" is extracted 3 times and keeps the majority alignment 0-0 0-1 1-1:
      lex(t|s) = w(x|a) * (w(y|a) + w(y|b)) / 2 = 3/5 * 7/10 = 21/50
      lex(s|t) = (w(a|x) + w(a|y)) / 2 * w(b|y) = 7/10 * 3/5 = 21/50
    """
    crossed, diagonal = {(0, 0), (0, 1), (1, 1)}, {(0, 0), (1, 1)}
    table = build_phrase_table(
        [["a", "b"]] * 3, [["x", "y"]] * 3, [crossed, diagonal, crossed], limit=None
    )

    (entry,) = table[("a", "b")]
    assert entry.alignment == ((0, 0), (0, 1), (1, 1))
    assert entry.counts == (3, 3, 3)
    assert entry.scores == pytest.approx((1.0, 21 / 50, 1.0, 21 / 50), abs=1e-12)


def _random_aligned_corpus(seed: int, pairs: int = 60):
    generator = random.Random(seed)
    source, target, alignments = [], [], []
    for _ in range(pairs):
        source_length, target_length = generator.randint(1, 7), generator.randint(1, 7)
        source.append([generator.choice("abcde") for _ in range(source_length)])
        target.append([generator.choice("vwxyz") for _ in range(target_length)])
        alignments.append(
            {
                (generator.randrange(source_length), generator.randrange(target_length))
                for _ in range(generator.randint(0, 6))
            }
        )
    return source, target, alignments


def test_phrase_probabilities_sum_to_one() -> None:
    table = build_phrase_table(*_random_aligned_corpus(seed=4), limit=None)
    inverse_totals: dict[tuple, float] = defaultdict(float)
    for translations in table.entries.values():
        assert sum(e.scores[2] for e in translations) == pytest.approx(1.0, abs=1e-12)
        for entry in translations:
            inverse_totals[entry.target] += entry.scores[0]
            assert 0.0 < entry.scores[1] <= 1.0 and 0.0 < entry.scores[3] <= 1.0
    assert all(
        total == pytest.approx(1.0, abs=1e-12) for total in inverse_totals.values()
    )


def test_limit_keeps_the_best_translations_of_each_source_phrase() -> None:
    corpus = _random_aligned_corpus(seed=6)
    full = build_phrase_table(*corpus, limit=None)
    pruned = build_phrase_table(*corpus, limit=2)

    assert max(len(t) for t in full.entries.values()) > 2
    for source, translations in full.entries.items():
        assert pruned[source] == translations[:2]
        ranks = [(-e.scores[2], -e.scores[3]) for e in translations]
        assert ranks == sorted(ranks)

    full.prune(2)
    assert full.entries == pruned.entries


@pytest.mark.parametrize("limit", [None, 2])
def test_building_with_the_reordering_table_gives_the_same_phrase_table(
    limit: int | None,
) -> None:
    corpus = _random_aligned_corpus(seed=7)
    phrase_table, reordering_table = build_phrase_and_reordering_tables(
        *corpus, limit=limit
    )

    assert phrase_table.entries == build_phrase_table(*corpus, limit=limit).entries
    assert len(reordering_table) == len(phrase_table)


def test_unknown_source_phrase_has_no_translations() -> None:
    table = build_phrase_table(TINY_SOURCE, TINY_TARGET, TINY_ALIGNMENTS)

    assert table.get(("perro",)) == [] and table[("perro",)] == []
    assert ("casa",) in table and ("perro",) not in table


def test_phrase_table_from_trained_alignments() -> None:
    source = [["la", "casa"], ["la", "casa", "verde"], ["la", "flor"], ["casa"]] * 2
    target = [
        ["the", "house"],
        ["the", "green", "house"],
        ["the", "flower"],
        ["house"],
    ] * 2
    forward = align_corpus(train_ibm1(source, target, 10), source, target)
    backward_model = train_ibm1(target, source, 10)
    backward = [
        {(s, t) for t, s in links}
        for links in align_corpus(backward_model, target, source)
    ]
    alignments = [symmetrize(f, b) for f, b in zip(forward, backward)]

    table = build_phrase_table(source, target, alignments)

    assert table[("casa",)][0].target == ("house",)
    assert table[("casa", "verde")][0].target == ("green", "house")


# ---------------------------------------------------------------- Moses format


@pytest.mark.parametrize("name", ["phrase-table", "phrase-table.gz"])
def test_moses_write_read_round_trip(tmp_path, name: str) -> None:
    table = build_phrase_table(*_random_aligned_corpus(seed=8), limit=None)
    path = tmp_path / name

    table.write_moses(path)
    again = PhraseTable.read_moses(path)

    assert again.entries == table.entries
    assert (
        len(again) == len(table) and again.max_source_length == table.max_source_length
    )
    assert PhraseTable.read_moses(path, limit=1).entries == {
        source: translations[:1] for source, translations in table.entries.items()
    }


def test_moses_line_format(tmp_path) -> None:
    table = build_phrase_table(TINY_SOURCE, TINY_TARGET, TINY_ALIGNMENTS)
    path = tmp_path / "phrase-table.gz"

    table.write_moses(path)

    lines = gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()
    assert (
        "casa ||| a house ||| 0.5 1.0 0.25 0.6666666666666666 ||| 0-1 ||| 2 4 1"
        in lines
    )
    assert lines[0].startswith("casa ||| house ||| ")  # sources in order, best first


def test_reads_moses_tables_without_counts_and_with_extra_fields(tmp_path) -> None:
    path = tmp_path / "phrase-table"
    path.write_text(
        "el ||| the ||| 0.5 0.4 0.3 0.2 ||| 0-0 ||| 1 2 1 ||| |||\n"
        "el perro ||| the dog ||| 1 1 1 1\n",
        encoding="utf-8",
    )

    table = PhraseTable.read_moses(path)

    assert table[("el",)] == [
        PhraseEntry(("the",), (0.5, 0.4, 0.3, 0.2), ((0, 0),), (1, 2, 1))
    ]
    assert table[("el", "perro")][0].counts == (0, 0, 0)


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("el ||| the\n", "found 2 field"),
        ("el ||| the ||| 0.5 0.4 0.3\n", "expected 4 numbers as scores"),
        ("el ||| the ||| 0.5 0.4 0.3 zero\n", "expected 4 numbers as scores"),
        ("el ||| the ||| 1 1 1 1 ||| 0:0\n", "not of the form i-j"),
        ("el ||| the ||| 1 1 1 1 ||| 0-1\n", "outside the 1x1 phrase pair"),
        ("el ||| the ||| 1 1 1 1 ||| 0-0 ||| 1 2\n", "expected 3 integers as counts"),
        (" ||| the ||| 1 1 1 1\n", "empty source or target"),
    ],
)
def test_malformed_line_names_file_and_line(
    tmp_path, bad_line: str, message: str
) -> None:
    path = tmp_path / "phrase-table"
    path.write_text(
        "la ||| the ||| 1 1 1 1 ||| 0-0 ||| 1 1 1\n" + bad_line, encoding="utf-8"
    )

    with pytest.raises(MtcError, match=message) as error:
        PhraseTable.read_moses(path)
    assert str(error.value).startswith(f"{path}:2: ")


def test_invalid_utf8_names_file_and_line(tmp_path) -> None:
    path = tmp_path / "phrase-table"
    path.write_bytes(b"la ||| the ||| 1 1 1 1\nm\xe1s ||| more ||| 1 1 1 1\n")

    with pytest.raises(MtcError, match=re.escape(f"{path}:2: not valid UTF-8")):
        PhraseTable.read_moses(path)


# ---------------------------------------------------------------- filtered reading


def test_read_moses_for_given_sources_keeps_exactly_their_entries(tmp_path) -> None:
    table = build_phrase_table(*_random_aligned_corpus(seed=8), limit=None)
    path = tmp_path / "phrase-table.gz"
    table.write_moses(path)
    known = sorted(table.entries)
    wanted = set(known[::3]) | {("q",), ("a", "q")}  # two that are not in the table

    filtered = PhraseTable.read_moses(path, sources=wanted)
    pruned = PhraseTable.read_moses(path, limit=2, sources=list(wanted))

    assert filtered.entries == {source: table[source] for source in known[::3]}
    assert pruned.entries == {source: table[source][:2] for source in known[::3]}
    assert filtered.max_source_length == max(map(len, known[::3]))
    assert PhraseTable.read_moses(path, sources=set()).entries == {}


def test_read_moses_for_given_sources_skips_other_lines_unparsed(tmp_path) -> None:
    path = tmp_path / "phrase-table"
    path.write_bytes(
        b"la ||| the ||| 1 1 1 1 ||| 0-0 ||| 1 1 1\n"
        b"el ||| the ||| not scores at all\n"
        b"el  perro ||| the dog ||| 1 1 1 1\n"
        b"perro ||| d\xf6g ||| 1 1 1 1\n"
        b"\n"
        b"la ||| her ||| 0.5 0.5 0.5 0.5\n"
    )

    table = PhraseTable.read_moses(path, sources={("la",), ("el", "perro")})

    assert [entry.target for entry in table[("la",)]] == [("the",), ("her",)]
    assert table[("el", "perro")][0].target == ("the", "dog")
    with pytest.raises(MtcError, match=re.escape(f"{path}:2: expected 4 numbers")):
        PhraseTable.read_moses(path, sources={("el",)})
    with pytest.raises(MtcError, match=re.escape(f"{path}:4: not valid UTF-8")):
        PhraseTable.read_moses(path, sources={("perro",)})


def test_read_moses_for_given_sources_rejects_a_line_without_fields(tmp_path) -> None:
    path = tmp_path / "phrase-table"
    path.write_text("la ||| the ||| 1 1 1 1\nno fields here\n", encoding="utf-8")

    with pytest.raises(MtcError, match=re.escape(f"{path}:2: expected 'source")):
        PhraseTable.read_moses(path, sources={("la",)})


def test_update_adds_source_phrases() -> None:
    table = PhraseTable()
    entry = PhraseEntry(("the", "dog"), (1.0,) * 4, ((0, 0), (1, 1)), (1, 1, 1))

    table.update(PhraseTable({("el", "perro"): [entry]}))

    assert table[("el", "perro")] == [entry] and table.max_source_length == 2


def test_a_corpus_without_alignment_links_is_a_clear_error() -> None:
    with pytest.raises(MtcError, match="no phrase pairs could be extracted from 1 sentence"):
        build_phrase_and_reordering_tables([["hola"]], [["hello"]], [set()])
