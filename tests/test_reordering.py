"""The lexicalised reordering model: orientations, smoothing and the Moses format."""

from __future__ import annotations

import gzip
import random
import re
from fractions import Fraction

import numpy as np
import pytest

from mtcompare.errors import MtcError
from mtcompare.smt import reordering
from mtcompare.smt.phrases import build_phrase_and_reordering_tables, extract_phrases
from mtcompare.smt.reordering import (
    DISCONTINUOUS,
    MONOTONE,
    SMOOTHING,
    SWAP,
    ReorderingTable,
    orientation_distribution,
    phrase_orientation,
    smoothed_probabilities,
    word_orientations,
)

M, S, D = MONOTONE, SWAP, DISCONTINUOUS

# ---------------------------------------------------------------- word orientations

# Rows are source words, columns target words; spans are (s_start, s_end,
# t_start, t_end) with exclusive ends. The backward orientation looks at the
# points (s_start-1, t_start-1) [monotone] and (s_end, t_start-1) [swap], the
# forward one at (s_end, t_end) [monotone] and (s_start-1, t_end) [swap]; the
# corners (-1, -1) and (n_source, n_target) count as aligned.
#
# Crossed: the middle words swap places.
#            w  x  y  z
#     a      X  .  .  .
#     b      .  .  X  .
#     c      .  X  .  .
#     d      .  .  .  X
CROSSED = (4, 4, {(0, 0), (1, 2), (2, 1), (3, 3)})
CROSSED_ORIENTATIONS = {
    (0, 1, 0, 1): (M, D),  # starts both sentences; (1,1) and (-1,1) unaligned
    (0, 3, 0, 3): (M, M),  # starts both; (3,3) aligned
    (0, 4, 0, 4): (M, M),  # the whole sentence: both corners
    (1, 2, 2, 3): (S, D),  # b|y: (0,1) no, (2,1) yes; (2,3) no, (0,3) no
    (1, 3, 1, 3): (M, M),  # b c|x y: (0,0) yes; (3,3) yes
    (1, 4, 1, 4): (M, M),  # (0,0) yes; ends both sentences
    (2, 3, 1, 2): (D, S),  # c|x: (1,0) no, (3,0) no; (3,2) no, (1,2) yes
    (3, 4, 3, 4): (D, M),  # d|z: (2,2) no, (4,2) no; ends both sentences
}

# Both points aligned: "y" comes after "x", which is linked to "a" before the
# pair and to "c" after it, so neither order holds.
#            x  y
#     a      X  .
#     b      .  X
#     c      X  .
BOTH_SIDES = (3, 2, {(0, 0), (2, 0), (1, 1)})
BOTH_SIDES_ORIENTATIONS = {
    (0, 3, 0, 2): (M, M),  # the whole sentence
    (1, 2, 1, 2): (D, D),  # (0,0) and (2,0) both aligned; (2,2) and (0,2) not
}

# An unaligned target word "x" before everything: a pair over it starts both
# sentences, a pair after it is preceded by no alignment point at all.
#            x  y  z
#     a      .  X  .
#     b      .  .  X
UNALIGNED_START = (2, 3, {(0, 1), (1, 2)})
UNALIGNED_START_ORIENTATIONS = {
    (0, 1, 0, 2): (M, M),  # starts both; (1,2) aligned
    (0, 1, 1, 2): (D, M),  # (-1,0) is no point, (1,0) unaligned; (1,2) aligned
    (0, 2, 0, 3): (M, M),  # the whole sentence
    (0, 2, 1, 3): (D, M),  # as (0,1,1,2) backward; ends both
    (1, 2, 2, 3): (M, M),  # (0,1) aligned; ends both
}

# An unaligned source word "c" at the end: a pair that ends the target but not
# the source is not forward-monotone.
#            x  y
#     a      X  .
#     b      .  X
#     c      .  .
UNALIGNED_END = (3, 2, {(0, 0), (1, 1)})
UNALIGNED_END_ORIENTATIONS = {
    (0, 1, 0, 1): (M, M),  # starts both; (1,1) aligned
    (0, 2, 0, 2): (M, D),  # (2,2) is no point: source position 2 is no end
    (0, 3, 0, 2): (M, M),  # the whole sentence
    (1, 2, 1, 2): (M, D),  # (0,0) aligned; as (0,2,0,2) forward
    (1, 3, 1, 2): (M, M),  # (0,0) aligned; ends both
}


@pytest.mark.parametrize(
    "sentence, expected",
    [
        (CROSSED, CROSSED_ORIENTATIONS),
        (BOTH_SIDES, BOTH_SIDES_ORIENTATIONS),
        (UNALIGNED_START, UNALIGNED_START_ORIENTATIONS),
        (UNALIGNED_END, UNALIGNED_END_ORIENTATIONS),
    ],
)
def test_word_orientations_worked_by_hand(sentence, expected) -> None:
    source_length, target_length, alignment = sentence
    spans = extract_phrases(["s"] * source_length, ["t"] * target_length, alignment)
    assert sorted(spans) == sorted(expected)  # the hand list is complete

    backward, forward = word_orientations(
        spans, alignment, source_length, target_length
    )

    assert backward.dtype == forward.dtype == np.int8
    found = dict(zip(spans, zip(backward.tolist(), forward.tolist())))
    assert found == expected


def _orientations_by_definition(spans, alignment, source_length, target_length):
    """The module docstring's rule, one set lookup per point."""
    points = set(alignment) | {(-1, -1), (source_length, target_length)}

    def orientation(monotone_point, swap_point):
        monotone, swap = monotone_point in points, swap_point in points
        if monotone and not swap:
            return MONOTONE
        if swap and not monotone:
            return SWAP
        return DISCONTINUOUS

    return [
        (
            orientation((s_start - 1, t_start - 1), (s_end, t_start - 1)),
            orientation((s_end, t_end), (s_start - 1, t_end)),
        )
        for s_start, s_end, t_start, t_end in spans
    ]


def test_word_orientations_agree_with_the_definition_on_random_alignments() -> None:
    generator = random.Random(3)
    seen = set()
    for _ in range(300):
        source_length, target_length = generator.randint(1, 8), generator.randint(1, 8)
        alignment = {
            (generator.randrange(source_length), generator.randrange(target_length))
            for _ in range(generator.randint(0, 10))
        }
        spans = extract_phrases(["s"] * source_length, ["t"] * target_length, alignment)

        backward, forward = word_orientations(
            spans, alignment, source_length, target_length
        )

        found = list(zip(backward.tolist(), forward.tolist()))
        assert found == _orientations_by_definition(
            spans, alignment, source_length, target_length
        )
        seen.update(found)
    assert seen == {(b, f) for b in (M, S, D) for f in (M, S, D)}


def test_word_orientations_of_no_spans_and_bad_points() -> None:
    backward, forward = word_orientations([], set(), 2, 2)
    assert len(backward) == len(forward) == 0
    with pytest.raises(ValueError, match="outside a 2x1 sentence pair"):
        word_orientations([(0, 1, 0, 1)], {(0, 0), (0, 1)}, 2, 1)


# ---------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    "previous, current, expected",
    [
        ((0, 0), (0, 2), MONOTONE),  # the first phrase starts the sentence
        ((0, 0), (1, 3), DISCONTINUOUS),  # the first phrase skips a word
        ((2, 4), (4, 5), MONOTONE),  # starts where the previous one ended
        ((2, 4), (0, 2), SWAP),  # ends where the previous one started
        ((2, 4), (5, 7), DISCONTINUOUS),  # a gap after the previous phrase
        ((3, 5), (0, 2), DISCONTINUOUS),  # a gap before it
        ((3, 5), (5, 5), MONOTONE),  # the sentence end (n = 5) after the last phrase
        ((0, 3), (5, 5), DISCONTINUOUS),  # words 3 and 4 still untranslated
    ],
)
def test_phrase_orientation_for_the_decoder(previous, current, expected) -> None:
    assert phrase_orientation(*previous, *current) == expected


# ---------------------------------------------------------------- estimation


def test_smoothing_of_counts_worked_by_hand() -> None:
    """Two pairs, backward counts (mono, swap, disc) A = (3, 0, 1), B = (0, 1, 0).

    Over the corpus 3 + 0 = 3 mono, 0 + 1 = 1 swap, 1 + 0 = 1 disc of 5, so
    p(o) = (3/5, 1/5, 1/5), and with sigma = 1/2, sigma p(o) = (3/10, 1/10, 1/10):
      A: (3 + 3/10, 0 + 1/10, 1 + 1/10) / (4 + 1/2) = (33/45, 1/45, 11/45)
      B: (0 + 3/10, 1 + 1/10, 0 + 1/10) / (1 + 1/2) = (3/15, 11/15, 1/15)
    Forward A = (0, 0, 4), B = (1, 0, 0): p(o) = (1/5, 0, 4/5),
      A: (0 + 1/10, 0, 4 + 4/10) / (9/2) = (1/45, 0, 44/45)
      B: (1 + 1/10, 0, 0 + 4/10) / (3/2) = (11/15, 0, 4/15)
    """
    counts = np.array([[3, 0, 1, 0, 0, 4], [0, 1, 0, 1, 0, 0]], dtype=np.int32)

    distribution = orientation_distribution(counts)
    probabilities = smoothed_probabilities(counts, distribution)

    assert SMOOTHING == 0.5
    assert distribution == pytest.approx([3 / 5, 1 / 5, 1 / 5, 1 / 5, 0, 4 / 5])
    expected = [
        [33 / 45, 1 / 45, 11 / 45, 1 / 45, 0, 44 / 45],
        [3 / 15, 11 / 15, 1 / 15, 11 / 15, 0, 4 / 15],
    ]
    assert probabilities == pytest.approx(np.array(expected), abs=1e-12)


def test_distribution_of_no_counts_is_uniform() -> None:
    distribution = orientation_distribution(np.zeros((0, 6), dtype=np.int32))
    assert distribution == pytest.approx([1 / 3] * 6)


def _sentences(*examples):
    """Corpus of the hand examples, each with its own words."""
    source, target, alignments = [], [], []
    for number, (source_length, target_length, alignment) in enumerate(examples):
        source.append([f"s{number}.{i}" for i in range(source_length)])
        target.append([f"t{number}.{j}" for j in range(target_length)])
        alignments.append(alignment)
    return source, target, alignments


def test_reordering_table_of_a_tiny_corpus_worked_by_hand() -> None:
    """Corpus: CROSSED once (sentence 0), UNALIGNED_START twice (1 and 2).

    Sentences 1 and 2 have the same words here, so their pairs count twice.
    Orientation counts of all 8 + 2 * 5 occurrences (see the lists above):
      backward  mono 5 + 2*3 = 11, swap 1, disc 2 + 2*2 = 6      (of 18)
      forward   mono 5 + 2*5 = 15, swap 1, disc 2                (of 18)
    so sigma p(o) = (11/36, 1/36, 6/36) backward and (15/36, 1/36, 2/36) forward.

    c|x of CROSSED, count 1, backward disc, forward swap (denominator 3/2):
      backward (11/36, 1/36, 1 + 6/36) * 2/3 = (11/54, 1/54, 42/54)
      forward  (15/36, 1 + 1/36, 2/36) * 2/3 = (15/54, 37/54, 2/54)
    a|y of UNALIGNED_START, count 2, backward disc twice, forward mono twice
    (denominator 5/2):
      backward (11/36, 1/36, 2 + 6/36) * 2/5 = (11/90, 1/90, 78/90)
      forward  (2 + 15/36, 1/36, 2/36) * 2/5 = (87/90, 1/90, 2/90)
    """
    source, target, alignments = _sentences(CROSSED, UNALIGNED_START)
    source.append(source[1])
    target.append(target[1])
    alignments.append(alignments[1])

    phrase_table, reordering_table = build_phrase_and_reordering_tables(
        source, target, alignments, limit=None
    )

    assert len(reordering_table) == len(phrase_table) == 8 + 5
    crossed_c_x = reordering_table.get(("s0.2",), ("t0.1",))
    start_a_y = reordering_table.get(("s1.0",), ("t1.1",))
    expected_c_x = [Fraction(n, 54) for n in (11, 1, 42, 15, 37, 2)]
    expected_a_y = [Fraction(n, 90) for n in (11, 1, 78, 87, 1, 2)]
    assert crossed_c_x == pytest.approx([float(p) for p in expected_c_x], abs=1e-12)
    assert start_a_y == pytest.approx([float(p) for p in expected_a_y], abs=1e-12)


def _random_aligned_corpus(seed: int, pairs: int = 80):
    generator = random.Random(seed)
    source, target, alignments = [], [], []
    for _ in range(pairs):
        source_length, target_length = generator.randint(1, 7), generator.randint(1, 7)
        source.append([generator.choice("abcd") for _ in range(source_length)])
        target.append([generator.choice("wxyz") for _ in range(target_length)])
        alignments.append(
            {
                (generator.randrange(source_length), generator.randrange(target_length))
                for _ in range(generator.randint(0, 7))
            }
        )
    return source, target, alignments


def test_probabilities_of_each_direction_sum_to_one() -> None:
    _, table = build_phrase_and_reordering_tables(
        *_random_aligned_corpus(seed=5), limit=None
    )

    assert len(table) > 100
    for _, _, probabilities in table.items():
        assert len(probabilities) == 6
        assert sum(probabilities[:3]) == pytest.approx(1.0, abs=1e-12)
        assert sum(probabilities[3:]) == pytest.approx(1.0, abs=1e-12)
        assert all(0.0 < p < 1.0 for p in probabilities)


def test_reordering_pairs_are_the_pruned_phrase_table_pairs() -> None:
    corpus = _random_aligned_corpus(seed=6)
    full_phrases, full_reordering = build_phrase_and_reordering_tables(
        *corpus, limit=None
    )
    phrases, reordering = build_phrase_and_reordering_tables(*corpus, limit=2)

    phrase_pairs = {
        (source, entry.target)
        for source, translations in phrases.entries.items()
        for entry in translations
    }
    reordering_pairs = {(source, target) for source, target, _ in reordering.items()}
    assert len(phrase_pairs) < len(full_reordering)  # the limit did prune
    assert reordering_pairs == phrase_pairs
    assert len(reordering) == len(phrases)
    # pruning keeps the probabilities: p(o) is that of the whole corpus
    for source, target, probabilities in reordering.items():
        assert full_reordering.get(source, target) == probabilities

    full_phrases.prune(2)
    full_reordering.prune_to(full_phrases)
    assert list(full_reordering.items()) == list(reordering.items())


def test_unknown_pairs_give_none() -> None:
    _, table = build_phrase_and_reordering_tables(*_sentences(CROSSED, UNALIGNED_START))

    assert table.get(["s0.2"], ["t0.1"]) == table.get(("s0.2",), ("t0.1",))
    assert table.get(("s0.2",), ("t0.0",)) is None  # known source, other target
    assert table.get(("nothing",), ("t0.1",)) is None
    assert ("s0.2",) in table and ("nothing",) not in table


# ---------------------------------------------------------------- the table


def test_from_groups_checks_its_input() -> None:
    table = ReorderingTable.from_groups(
        [(("a",), (("x",), ("y",))), (("b",), (("z",),))],
        np.arange(18).reshape(3, 6) / 20,
    )
    assert table.get(("a",), ("y",)) == pytest.approx([p / 20 for p in range(6, 12)])
    assert table.get(("b",), ("z",)) == pytest.approx([p / 20 for p in range(12, 18)])

    with pytest.raises(ValueError, match="listed twice"):
        ReorderingTable.from_groups(
            [(("a",), (("x",),)), (("a",), (("y",),))], np.zeros((2, 6))
        )
    with pytest.raises(ValueError, match=re.escape("shape (2, 6), not (3, 6)")):
        ReorderingTable.from_groups([(("a",), (("x",), ("y",)))], np.zeros((3, 6)))


def test_update_adds_source_phrases() -> None:
    table = ReorderingTable()
    table.update(
        ReorderingTable.from_groups([(("a",), (("x",),))], np.full((1, 6), 0.5))
    )
    table.update(
        ReorderingTable.from_groups([(("b", "c"), (("y",),))], np.full((1, 6), 0.25))
    )

    assert len(table) == 2
    assert table.get(("a",), ("x",)) == (0.5,) * 6
    assert table.get(("b", "c"), ("y",)) == (0.25,) * 6


# ---------------------------------------------------------------- Moses format


@pytest.mark.parametrize("name", ["reordering-table", "reordering-table.gz"])
def test_moses_write_read_round_trip(tmp_path, name: str) -> None:
    _, table = build_phrase_and_reordering_tables(
        *_random_aligned_corpus(seed=8), limit=None
    )
    path = tmp_path / name

    table.write_moses(path)
    again = ReorderingTable.read_moses(path)

    assert len(again) == len(table)
    written = {(source, target): p for source, target, p in table.items()}
    assert {(source, target): p for source, target, p in again.items()} == written


def test_round_trip_when_the_cache_of_score_texts_overflows(
    tmp_path, monkeypatch
) -> None:
    _, table = build_phrase_and_reordering_tables(
        *_random_aligned_corpus(seed=10), limit=None
    )
    path = tmp_path / "reordering-table"
    monkeypatch.setattr(reordering, "_SCORE_TEXTS_CACHED", 2)

    table.write_moses(path)
    again = ReorderingTable.read_moses(path)

    # written in source text order, each source's pairs in table order
    assert list(again.items()) == sorted(
        table.items(), key=lambda item: " ".join(item[0])
    )


def test_moses_line_format(tmp_path) -> None:
    table = ReorderingTable.from_groups(
        [(("la", "casa"), (("the", "house"), ("house",))), (("el",), (("the",),))],
        np.array([[0.5, 0.25, 0.25, 1.0, 0.0, 0.0]] * 2 + [[0.1] * 6]),
    )
    path = tmp_path / "reordering-table.wbe-msd-bidirectional-fe.gz"

    table.write_moses(path)

    lines = gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()
    assert lines == [
        "el ||| the ||| 0.1 0.1 0.1 0.1 0.1 0.1",
        "la casa ||| the house ||| 0.5 0.25 0.25 1.0 0.0 0.0",
        "la casa ||| house ||| 0.5 0.25 0.25 1.0 0.0 0.0",
    ]


def test_fields_after_the_probabilities_are_ignored(tmp_path) -> None:
    path = tmp_path / "reordering-table"
    path.write_text("la ||| the ||| 1 0 0 0.5 0.5 0 ||| 3 |||\n", encoding="utf-8")

    table = ReorderingTable.read_moses(path)

    assert table.get(("la",), ("the",)) == (1.0, 0.0, 0.0, 0.5, 0.5, 0.0)


def test_read_moses_for_given_sources_keeps_exactly_their_entries(tmp_path) -> None:
    _, table = build_phrase_and_reordering_tables(
        *_random_aligned_corpus(seed=9), limit=None
    )
    path = tmp_path / "reordering-table.gz"
    table.write_moses(path)
    known = sorted({source for source, _, _ in table.items()})
    wanted = set(known[::3]) | {("q",), ("a", "q")}  # two that are not in the table

    filtered = ReorderingTable.read_moses(path, sources=wanted)

    expected = {(s, t): p for s, t, p in table.items() if s in set(known[::3])}
    assert {(s, t): p for s, t, p in filtered.items()} == expected
    assert len(filtered) == len(expected) > 0
    assert len(ReorderingTable.read_moses(path, sources=[])) == 0


def test_read_moses_for_given_sources_skips_other_lines_unparsed(tmp_path) -> None:
    path = tmp_path / "reordering-table"
    path.write_bytes(
        b"el ||| the ||| not probabilities\n"
        b"perro ||| d\xf6g ||| 1 0 0 1 0 0\n"
        b"la ||| the ||| 0.5 0.25 0.25 0.5 0.25 0.25\n"
        b"la ||| her ||| 1 0 0 0 0 1\n"
    )

    table = ReorderingTable.read_moses(path, sources=[("la",)])

    assert table.get(("la",), ("her",)) == (1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    assert len(table) == 2
    with pytest.raises(MtcError, match=re.escape(f"{path}:1: expected 6 probab")):
        ReorderingTable.read_moses(path, sources={("el",)})
    with pytest.raises(MtcError, match=re.escape(f"{path}:2: not valid UTF-8")):
        ReorderingTable.read_moses(path, sources={("perro",)})


GOOD_LINE = "la ||| the ||| 0.5 0.25 0.25 0.5 0.25 0.25\n"


@pytest.mark.parametrize(
    "lines, line_number, message",
    [
        (["el ||| the\n"], 2, "found 2 field"),
        (["el ||| the ||| 0.5 0.25 0.25 0.5 0.25\n"], 2, "expected 6 probabilities"),
        (["el ||| the ||| 0.5 0.25 0.25 0.5 0.25 x\n"], 2, "expected 6 probabilities"),
        (["el ||| the ||| 0.5 0.25 0.25 0.5 0.25 1.5\n"], 2, "numbers from 0 to 1"),
        (["el ||| the ||| 0.5 0.25 0.25 0.5 0.25 nan\n"], 2, "numbers from 0 to 1"),
        (["el |||  ||| 1 0 0 1 0 0\n"], 2, "empty source or target"),
        (["el ||| the ||| 1 0 0 1 0 0\n", GOOD_LINE], 3, "are not together"),
        ([GOOD_LINE], 2, "'la' ||| 'the' is listed twice"),
    ],
)
def test_damaged_line_names_file_and_line(
    tmp_path, lines: list[str], line_number: int, message: str
) -> None:
    path = tmp_path / "reordering-table"
    path.write_text(GOOD_LINE + "".join(lines), encoding="utf-8")

    with pytest.raises(MtcError, match=re.escape(message)) as error:
        ReorderingTable.read_moses(path)
    assert str(error.value).startswith(f"{path}:{line_number}: ")


def test_missing_file_is_a_user_error(tmp_path) -> None:
    with pytest.raises(MtcError, match="cannot read"):
        ReorderingTable.read_moses(tmp_path / "nothing.gz")
