"""IBM Model 1: hand-worked EM iterations, a loop-based reference, Viterbi links."""

from __future__ import annotations

import random
from collections import defaultdict
from fractions import Fraction

import pytest

from mtcompare.smt import align
from mtcompare.smt.align import align_corpus, train_ibm1


def test_repeated_target_word_is_counted_once_per_token() -> None:
    """Sources "x" and "x", targets "a a" and "b"; NULL is the extra source word.

    Uniform start: t(a|x) = t(b|x) = t(a|NULL) = t(b|NULL) = 1/2.
    Pair 1: each of the two a's splits 1/2 : 1/2 between NULL and x, so
    count(a|x) = 2 * 1/2 = 1 and count(a|NULL) = 1.
    Pair 2: b splits 1/2 : 1/2, so count(b|x) = count(b|NULL) = 1/2.
    M-step: t(a|x) = 1 / (1 + 1/2) = 2/3, t(b|x) = 1/3, the same for NULL.
    """
    model = train_ibm1([["x"], ["x"]], [["a", "a"], ["b"]], iterations=1)

    assert model.probability("x", "a") == pytest.approx(2 / 3, abs=1e-12)
    assert model.probability("x", "b") == pytest.approx(1 / 3, abs=1e-12)
    assert model.probability(None, "a") == pytest.approx(2 / 3, abs=1e-12)


def test_two_em_iterations_on_three_sentences_worked_by_hand() -> None:
    """Pairs (source -> target): "a b" -> "x y", "a" -> "x", "b" -> "y y".

    Every source word (NULL too) co-occurs with x and y: t starts at 1/2.

    Iteration 1, posteriors P(a_j = i):
      pair 1: x and y each split 1/3 : 1/3 : 1/3 over NULL, a, b
      pair 2: x splits 1/2 : 1/2 over NULL, a
      pair 3: each y splits 1/2 : 1/2 over NULL, b
    counts: NULL: x 1/3 + 1/2 = 5/6, y 1/3 + 2 * 1/2 = 4/3, total 13/6
            a:    x 5/6,             y 1/3,               total 7/6
            b:    x 1/3,             y 4/3,               total 5/3
    t(x|NULL) = 5/13, t(y|NULL) = 8/13; t(x|a) = 5/7, t(y|a) = 2/7;
    t(x|b) = 1/5, t(y|b) = 4/5.

    Iteration 2:
      pair 1, x: 5/13 + 5/7 + 1/5 = 591/455, posteriors 175/591, 325/591, 91/591
      pair 1, y: 8/13 + 2/7 + 4/5 = 774/455, posteriors 280/774, 130/774, 364/774
      pair 2, x: 5/13 + 5/7 = 100/91, posteriors 35/100, 65/100
      pair 3, y: 8/13 + 4/5 = 92/65, posteriors 40/92, 52/92 (twice, two y's)
    counts: NULL: x 175/591 + 7/20,   y 280/774 + 2 * 40/92
            a:    x 325/591 + 13/20,  y 130/774
            b:    x 91/591,           y 364/774 + 2 * 52/92
    and t(f|e) = count(f, e) / (count(x, e) + count(y, e)).
    """
    expected_counts = {
        None: (
            Fraction(175, 591) + Fraction(7, 20),
            Fraction(280, 774) + 2 * Fraction(40, 92),
        ),
        "a": (Fraction(325, 591) + Fraction(13, 20), Fraction(130, 774)),
        "b": (Fraction(91, 591), Fraction(364, 774) + 2 * Fraction(52, 92)),
    }
    # the same values, reduced: t(x|a) = 140739/160439, t(x|b) = 20769/236681
    assert expected_counts["a"][0] / sum(expected_counts["a"]) == Fraction(
        140739, 160439
    )

    model = train_ibm1([["a", "b"], ["a"], ["b"]], [["x", "y"], ["x"], ["y", "y"]], 2)

    for source_word, (count_x, count_y) in expected_counts.items():
        total = count_x + count_y
        assert model.probability(source_word, "x") == pytest.approx(
            float(count_x / total), abs=1e-9
        )
        assert model.probability(source_word, "y") == pytest.approx(
            float(count_y / total), abs=1e-9
        )


def _reference_ibm1(source, target, iterations):
    """Plain loops over words, straight from Brown et al. (1993), as an oracle."""
    cooccurring = defaultdict(set)
    for source_sentence, target_sentence in zip(source, target):
        for source_word in [None, *source_sentence]:
            cooccurring[source_word].update(target_sentence)
    table = {
        (source_word, target_word): 1 / len(targets)
        for source_word, targets in cooccurring.items()
        for target_word in targets
    }
    for _ in range(iterations):
        counts = defaultdict(float)
        for source_sentence, target_sentence in zip(source, target):
            with_null = [None, *source_sentence]
            for target_word in target_sentence:
                total = sum(
                    table[source_word, target_word] for source_word in with_null
                )
                for source_word in with_null:
                    counts[source_word, target_word] += (
                        table[source_word, target_word] / total
                    )
        totals = defaultdict(float)
        for (source_word, _), count in counts.items():
            totals[source_word] += count
        table = {pair: count / totals[pair[0]] for pair, count in counts.items()}
    return table


def _random_corpus(seed: int, pairs: int = 40):
    generator = random.Random(seed)
    source_words, target_words = "abcdefg", "pqrstuvw"
    source = [
        [generator.choice(source_words) for _ in range(generator.randint(0, 6))]
        for _ in range(pairs)
    ]
    target = [
        [generator.choice(target_words) for _ in range(generator.randint(0, 6))]
        for _ in range(pairs)
    ]
    return source, target


@pytest.mark.parametrize("links_per_chunk", [1, 7, 1 << 22])
def test_vectorised_em_matches_loop_reference(
    monkeypatch, links_per_chunk: int
) -> None:
    """Repeated words, empty sentences and chunk boundaries change nothing."""
    monkeypatch.setattr(align, "LINKS_PER_CHUNK", links_per_chunk)
    source, target = _random_corpus(seed=3)
    expected = _reference_ibm1(source, target, iterations=3)

    model = train_ibm1(source, target, iterations=3)

    assert len(model.pair_keys) == len(expected)
    for (source_word, target_word), probability in expected.items():
        assert model.probability(source_word, target_word) == pytest.approx(
            probability, abs=1e-12
        )


def test_translation_probabilities_sum_to_one_per_source_word() -> None:
    source, target = _random_corpus(seed=5)
    model = train_ibm1(source, target, iterations=4)

    for source_word in [
        None,
        *(word for word in model.source_vocab if word != "<null>"),
    ]:
        total = sum(model.probability(source_word, word) for word in model.target_vocab)
        assert total == pytest.approx(1.0, abs=1e-12)


def test_unseen_words_have_probability_zero() -> None:
    model = train_ibm1([["la", "casa"]], [["the", "house"]], iterations=1)

    assert model.probability("perro", "house") == 0.0
    assert model.probability("casa", "dog") == 0.0


def _toy_model():
    source = [["la", "casa"], ["la", "casa", "verde"], ["la", "flor"], ["casa"]]
    target = [["the", "house"], ["the", "green", "house"], ["the", "flower"], ["house"]]
    return train_ibm1(source, target, iterations=10)


def test_viterbi_alignment_links_each_target_word_to_its_best_source_word() -> None:
    model = _toy_model()

    assert model.viterbi_alignment(
        ["la", "casa", "verde"], ["the", "green", "house"]
    ) == {
        (0, 0),
        (2, 1),
        (1, 2),
    }


def test_viterbi_alignment_leaves_unknown_words_unaligned() -> None:
    model = _toy_model()

    # "dog" was never seen: every t is 0, the tie goes to NULL, which is omitted;
    # "perro" was never seen either, so nothing can link to it
    assert model.viterbi_alignment(["la", "perro"], ["the", "dog"]) == {(0, 0)}
    assert model.viterbi_alignment([], ["the", "house"]) == set()
    assert model.viterbi_alignment(["la"], []) == set()


def test_align_corpus_agrees_with_viterbi_alignment(monkeypatch) -> None:
    monkeypatch.setattr(align, "LINKS_PER_CHUNK", 5)
    source, target = _random_corpus(seed=11)
    model = train_ibm1(source, target, iterations=3)

    alignments = align_corpus(model, source, target)

    assert alignments == [
        _loop_viterbi(model, source_sentence, target_sentence)
        for source_sentence, target_sentence in zip(source, target)
    ]


def _loop_viterbi(model, source_sentence, target_sentence):
    links = set()
    for target_index, target_word in enumerate(target_sentence):
        scores = [model.probability(None, target_word)] + [
            model.probability(word, target_word) for word in source_sentence
        ]
        best = scores.index(max(scores))  # first maximum: NULL wins ties
        if best > 0:
            links.add((best - 1, target_index))
    return links


def test_corpora_of_different_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        train_ibm1([["a"]], [["x"], ["y"]])


def test_alignment_error_rate_worked_by_hand():
    from mtcompare.smt.align import alignment_error_rate, parse_links

    # A = {0-0, 1-2, 2-2}; gold "0-0 1-1 1?2": S = {0-0, 1-1}, P = S + {1-2}.
    # |A&S| = 1, |A&P| = 2: precision 2/3, recall 1/2, AER = 1 - (1+2)/(3+2) = 2/5.
    sure, possible = parse_links("0-0 1-1 1?2", "gold:1")
    assert sure == {(0, 0), (1, 1)} and possible == {(0, 0), (1, 1), (1, 2)}
    scores = alignment_error_rate([{(0, 0), (1, 2), (2, 2)}], [sure], [possible])
    assert scores.precision == pytest.approx(2 / 3)
    assert scores.recall == pytest.approx(1 / 2)
    assert scores.aer == pytest.approx(2 / 5)
    perfect = alignment_error_rate([sure], [sure], [possible])
    assert perfect.aer == 0.0


def test_gold_links_must_be_links():
    from mtcompare.errors import MtcError
    from mtcompare.smt.align import parse_links

    with pytest.raises(MtcError, match="gold:3: 'x-1' is not a link"):
        parse_links("0-0 x-1", "gold:3")
