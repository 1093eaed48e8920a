"""Word alignment: IBM Model 1 and the HMM model checked by hand and by brute force.

IBM Model 1: hand-worked EM iterations, a loop-based reference, Viterbi links.
HMM: posteriors, likelihood, Viterbi path and one EM iteration against an
enumeration of every alignment; EM never lowers the likelihood; on a synthetic
corpus with a known, locally monotone alignment it beats IBM Model 1. Saving and
loading the two-way models, from the library and from ``mtcompare align``.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import defaultdict
from fractions import Fraction

import numpy as np
import pytest

from mtcompare.errors import MtcError
from mtcompare.smt import align, hmm
from mtcompare.smt.align import (
    IBMModel1,
    align_both_ways,
    align_corpus,
    alignment_error_rate,
    load_alignment_model,
    save_alignment_model,
    train_alignment_models,
    train_ibm1,
)
from mtcompare.smt.hmm import HMMModel, train_hmm


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


# ---------------------------------------------------------------- HMM


def _table_model(table, jump_weights, null_probability):
    """An HMM with the given t(target | source) (``None`` = NULL) and jump weights."""
    source_vocab, target_vocab = {"<null>": 0}, {}
    for source_word, target_word in table:
        source_vocab.setdefault(source_word or "<null>", len(source_vocab))
        target_vocab.setdefault(target_word, len(target_vocab))
    key_base = len(target_vocab) + 1
    entries = sorted(
        (
            source_vocab[source_word or "<null>"] * key_base
            + target_vocab[target_word],
            p,
        )
        for (source_word, target_word), p in table.items()
    )
    translation = IBMModel1(
        source_vocab,
        target_vocab,
        np.array([key for key, _ in entries], dtype=np.int64),
        np.array([p for _, p in entries]),
    )
    return HMMModel(translation, np.array(jump_weights, dtype=float), null_probability)


def test_hmm_posteriors_worked_by_hand() -> None:
    """Source "x y", target "a b", p0 = 0.2, max jump 1: c(-1, 0, +1) = .2, .3, .5.

    Jump rows (previous position -> positions 1, 2), before the factor 1 - p0:
      from the start 0: widths +1, +2 -> both clip to +1: 1/2, 1/2
      from 1: widths 0, +1: .3/.8, .5/.8;  from 2: widths -1, 0: .2/.5, .3/.5
    t(a|x) .5, t(a|y) .1, t(a|NULL) .2; t(b|x) .1, t(b|y) .5, t(b|NULL) .2.

    Word 1: to 1: .8 * .5 * .5 = .2, to 2: .8 * .5 * .1 = .04, NULL: .2 * .2 = .04.
    Word 2, NULL remembering where it came from (the start, for a first NULL):
      after 1:    to 1 .8*.375*.1 = .03,  to 2 .8*.625*.5 = .25,  NULL .2*.2 = .04
      after 2:    to 1 .8*.4*.1 = .032,   to 2 .8*.6*.5 = .24,    NULL .04
      after NULL: to 1 .8*.5*.1 = .04,    to 2 .8*.5*.5 = .2,     NULL .04
    Paths: (1,1) .006 (1,2) .05 (1,N) .008 (2,1) .00128 (2,2) .0096 (2,N) .0016
           (N,1) .0016 (N,2) .008 (N,N) .0016; total P(f|e) = .08768.
    Word 1: P(1) = .064/.08768, P(2) = .01248/.08768, P(NULL) = .0112/.08768.
    Word 2: P(1) = .00888/.08768, P(2) = .0676/.08768, P(NULL) = .0112/.08768.
    The best path is (1, 2).
    """
    model = _table_model(
        {
            ("x", "a"): 0.5,
            ("y", "a"): 0.1,
            (None, "a"): 0.2,
            ("x", "b"): 0.1,
            ("y", "b"): 0.5,
            (None, "b"): 0.2,
        },
        [0.2, 0.3, 0.5],
        0.2,
    )

    posteriors = model.alignment_posteriors(["x", "y"], ["a", "b"])

    expected = np.array([[0.0112, 0.064, 0.01248], [0.0112, 0.00888, 0.0676]]) / 0.08768
    np.testing.assert_allclose(posteriors, expected, rtol=1e-12)
    assert model.log_likelihood(["x", "y"], ["a", "b"]) == pytest.approx(
        math.log(0.08768), abs=1e-12
    )
    assert model.viterbi_alignment(["x", "y"], ["a", "b"]) == {(0, 0), (1, 1)}


def _brute_force_transition(model, previous, position, source_length):
    """p(position | previous real position) from the jump weights, as in the paper."""
    if position == 0:
        return model.null_probability
    weights, max_jump = model.jump_weights, model.max_jump

    def weight(width):
        return weights[max(-max_jump, min(max_jump, width)) + max_jump]

    total = sum(weight(k - previous) for k in range(1, source_length + 1))
    return (1 - model.null_probability) * weight(position - previous) / total


def _enumerate_alignments(model, source, target):
    """Every alignment (a_1 .. a_J), 0 = NULL, with its joint probability P(f, a | e).

    A NULL word does not move the chain: the next jump starts from the last
    real position, 0 before the first one.
    """
    floor = hmm.EMISSION_FLOOR
    for alignment in itertools.product(range(len(source) + 1), repeat=len(target)):
        probability, last_real = 1.0, 0
        for target_word, position in zip(target, alignment):
            source_word = source[position - 1] if position else None
            probability *= _brute_force_transition(
                model, last_real, position, len(source)
            )
            probability *= max(model.probability(source_word, target_word), floor)
            if position:
                last_real = position
        yield alignment, probability


def _two_sentence_model(iterations=2, max_jump=2):
    source = [["la", "casa", "verde", "la"], ["casa", "la", "flor"]]
    target = [["the", "green", "house", "the"], ["house", "the", "flower"]]
    initial = train_ibm1(source, target, iterations=2)
    model = train_hmm(source, target, iterations, initial=initial, max_jump=max_jump)
    return source, target, model


def test_hmm_forward_backward_matches_brute_force_on_two_sentences() -> None:
    source, target, model = _two_sentence_model()

    for source_sentence, target_sentence in zip(source, target):
        expected = np.zeros((len(target_sentence), len(source_sentence) + 1))
        total = 0.0
        for alignment, probability in _enumerate_alignments(
            model, source_sentence, target_sentence
        ):
            total += probability
            for j, position in enumerate(alignment):
                expected[j, position] += probability

        posteriors = model.alignment_posteriors(source_sentence, target_sentence)

        np.testing.assert_allclose(posteriors, expected / total, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(posteriors.sum(axis=1), 1.0, rtol=1e-12)
        assert model.log_likelihood(source_sentence, target_sentence) == pytest.approx(
            math.log(total), abs=1e-10
        )


def test_one_hmm_em_iteration_matches_brute_force_expected_counts() -> None:
    """t after one iteration is the enumerated expected counts, normalised; the jump
    weights satisfy the maximum-likelihood condition N(d) = c(d) sum_rows M m / Z."""
    source, target, _ = _two_sentence_model()
    initial = train_ibm1(source, target, iterations=2)
    before = train_hmm(source, target, 0, initial=initial, max_jump=1)
    after = train_hmm(source, target, 1, initial=initial, max_jump=1)

    pair_counts = defaultdict(float)
    width_counts = np.zeros(3)
    row_totals = defaultdict(float)  # (I, previous position) -> expected real jumps
    for source_sentence, target_sentence in zip(source, target):
        paths = list(_enumerate_alignments(before, source_sentence, target_sentence))
        total = sum(probability for _, probability in paths)
        for alignment, probability in paths:
            weight, last_real = probability / total, 0
            for target_word, position in zip(target_sentence, alignment):
                source_word = source_sentence[position - 1] if position else None
                pair_counts[source_word, target_word] += weight
                if position:
                    width_counts[max(-1, min(1, position - last_real)) + 1] += weight
                    row_totals[len(source_sentence), last_real] += weight
                    last_real = position

    source_totals = defaultdict(float)
    for (source_word, _), count in pair_counts.items():
        source_totals[source_word] += count
    for (source_word, target_word), count in pair_counts.items():
        assert after.probability(source_word, target_word) == pytest.approx(
            count / source_totals[source_word], abs=1e-12
        )

    weights = after.jump_weights
    denominators = np.zeros(3)
    for (length, previous), row_total in row_totals.items():
        widths = [max(-1, min(1, k - previous)) + 1 for k in range(1, length + 1)]
        normaliser = sum(weights[width] for width in widths)
        for width in widths:
            denominators[width] += row_total / normaliser
    np.testing.assert_allclose(width_counts, weights * denominators, rtol=1e-8)


def test_hmm_viterbi_is_the_brute_force_best_alignment() -> None:
    source, target = _random_corpus(seed=7, pairs=60)
    model = train_hmm(source, target, 3, initial=train_ibm1(source, target, 3))
    # pairs small enough to enumerate: at most 5^4 alignments
    pairs = [
        (s, t) for s, t in zip(source, target) if 0 < len(s) <= 4 and 0 < len(t) <= 4
    ]
    source, target = [s for s, _ in pairs], [t for _, t in pairs]

    viterbi = hmm.viterbi_alignments(model, source, target)

    unique_best = 0
    for source_sentence, target_sentence, links in zip(source, target, viterbi):
        paths = dict(_enumerate_alignments(model, source_sentence, target_sentence))
        ranked = sorted(paths.items(), key=lambda item: -item[1])
        found = [0] * len(target_sentence)  # the Viterbi path, 0 = NULL
        for i, j in links:
            found[j] = i + 1
        # a repeated word can make two paths equally good: then either is right
        assert paths[tuple(found)] == pytest.approx(ranked[0][1], rel=1e-12)
        if ranked[1][1] < ranked[0][1] * (1 - 1e-9):
            unique_best += 1
            assert tuple(found) == ranked[0][0]
    assert unique_best > len(source) // 2


def test_hmm_em_never_decreases_the_likelihood() -> None:
    source, target = _random_corpus(seed=13, pairs=80)
    pairs = [(s, t) for s, t in zip(source, target) if s and t]
    initial = train_ibm1([s for s, _ in pairs], [t for _, t in pairs], 2)

    likelihoods = []
    for iterations in range(7):
        model = train_hmm(
            [s for s, _ in pairs], [t for _, t in pairs], iterations, initial=initial
        )
        likelihoods.append(sum(model.log_likelihood(s, t) for s, t in pairs))

    for earlier, later in zip(likelihoods, likelihoods[1:]):
        assert later >= earlier - 1e-9 * abs(earlier)
    assert likelihoods[-1] > likelihoods[0] + 1.0


@pytest.mark.parametrize("links_per_batch", [1, 40])
def test_batching_changes_nothing(monkeypatch, links_per_batch: int) -> None:
    source, target = _random_corpus(seed=17, pairs=60)
    initial = train_ibm1(source, target, 2)
    expected = train_hmm(source, target, 3, initial=initial)
    expected_links = hmm.viterbi_alignments(expected, source, target)

    monkeypatch.setattr(hmm, "LINKS_PER_BATCH", links_per_batch)
    model = train_hmm(source, target, 3, initial=initial)

    np.testing.assert_allclose(
        model.translation.pair_probabilities,
        expected.translation.pair_probabilities,
        rtol=1e-12,
    )
    np.testing.assert_allclose(model.jump_weights, expected.jump_weights, rtol=1e-12)
    assert hmm.viterbi_alignments(model, source, target) == expected_links


def _monotone_corpus(seed: int, pairs: int = 300):
    """Source words with Zipf frequencies (so words repeat within a sentence), each
    with one translation; the target swaps neighbours now and then, drops a source
    word or inserts an untranslated one. Returns source, target and the gold links."""
    generator = random.Random(seed)
    words = [f"w{k}" for k in range(40)]
    frequencies = [1 / (rank + 1) for rank in range(len(words))]
    source, target, gold = [], [], []
    for _ in range(pairs):
        sentence = generator.choices(words, frequencies, k=generator.randint(4, 12))
        translated = [
            (f"t{word[1:]}", i)
            for i, word in enumerate(sentence)
            if generator.random() > 0.1
        ]
        for k in range(len(translated) - 1):
            if generator.random() < 0.2:
                translated[k], translated[k + 1] = translated[k + 1], translated[k]
        if generator.random() < 0.5:
            translated.insert(generator.randint(0, len(translated)), ("de", None))
        source.append(sentence)
        target.append([word for word, _ in translated])
        gold.append({(i, j) for j, (_, i) in enumerate(translated) if i is not None})
    return source, target, gold


def test_hmm_beats_ibm1_on_a_locally_monotone_corpus() -> None:
    source, target, gold = _monotone_corpus(seed=1)

    ibm1 = align_both_ways(source, target, 5, model="ibm1")
    hmm_links = align_both_ways(source, target, 5, model="hmm", hmm_iterations=5)

    ibm1_aer = alignment_error_rate(ibm1, gold, gold).aer
    hmm_aer = alignment_error_rate(hmm_links, gold, gold).aer
    assert hmm_aer < ibm1_aer - 0.05, (hmm_aer, ibm1_aer)


def test_unseen_words_do_not_break_the_hmm() -> None:
    _, _, model = _two_sentence_model()

    links = model.viterbi_alignment(["la", "perro", "verde"], ["the", "green", "dog"])
    posteriors = model.alignment_posteriors(["perro"], ["dog", "the"])

    assert all(0 <= i < 3 and 0 <= j < 3 for i, j in links)
    assert (0, 0) in links and (2, 1) in links
    assert np.all(np.isfinite(posteriors))
    np.testing.assert_allclose(posteriors.sum(axis=1), 1.0)
    assert model.viterbi_alignment([], ["the"]) == set()


def test_unknown_alignment_model_lists_the_valid_ones() -> None:
    with pytest.raises(MtcError, match="valid: ibm1, hmm"):
        align_both_ways([["a"]], [["x"]], model="ibm2")


@pytest.mark.parametrize("kind", ["ibm1", "hmm"])
def test_saved_models_align_as_the_trained_ones(tmp_path, kind: str) -> None:
    source, target, _ = _monotone_corpus(seed=2, pairs=60)
    models = train_alignment_models(
        source, target, 3, model=kind, hmm_iterations=2, languages=("xx", "yy")
    )

    save_alignment_model(tmp_path / "model", models)
    loaded = load_alignment_model(tmp_path / "model")

    assert loaded.kind == kind and loaded.languages == ("xx", "yy")
    assert loaded.align(source, target) == models.align(source, target)
    if kind == "hmm":
        np.testing.assert_array_equal(
            loaded.backward.jump_weights, models.backward.jump_weights
        )


def test_a_damaged_or_missing_model_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(MtcError, match="not a saved alignment model"):
        load_alignment_model(tmp_path / "nothing")
    models = train_alignment_models([["a", "b"]], [["x", "y"]], 1, hmm_iterations=1)
    save_alignment_model(tmp_path / "model", models)
    (tmp_path / "model" / "backward.npz").write_bytes(b"not a zip file")
    with pytest.raises(MtcError, match="damaged alignment model"):
        load_alignment_model(tmp_path / "model")


def test_cli_model_round_trip_keeps_the_line_count(tmp_path, capsys) -> None:
    from mtcompare.cli import main

    source, target, _ = _monotone_corpus(seed=3, pairs=80)
    training = tmp_path / "train.txt"
    training.write_text(
        "".join(f"{' '.join(s)} ||| {' '.join(t)}\n" for s, t in zip(source, target)),
        encoding="utf-8",
    )
    new_pairs = tmp_path / "new.txt"
    new_pairs.write_text(
        "w0 w1 w2 ||| t0 t1 t2\nw3 unseen w0 ||| t3 novel t0\n|||\nw5 ||| t5 t5 de\n",
        encoding="utf-8",
    )

    def run(argv):
        try:
            main(argv)
        except SystemExit as exit_info:
            assert exit_info.code in (0, None), capsys.readouterr().err
        return capsys.readouterr()

    run(
        [
            "align",
            "-i",
            str(training),
            "-o",
            str(tmp_path / "trained.links"),
            "--hmm-iterations",
            "3",
            "--save-model",
            str(tmp_path / "model"),
        ]
    )
    run(
        [
            "align",
            "-i",
            str(training),
            "-o",
            str(tmp_path / "reused.links"),
            "--model",
            str(tmp_path / "model"),
        ]
    )
    run(
        [
            "align",
            "-i",
            str(new_pairs),
            "-o",
            str(tmp_path / "new.links"),
            "--model",
            str(tmp_path / "model"),
        ]
    )

    trained = (tmp_path / "trained.links").read_text(encoding="utf-8")
    assert (tmp_path / "reused.links").read_text(encoding="utf-8") == trained
    assert len(trained.splitlines()) == len(source)
    new_links = (tmp_path / "new.links").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(new_links) == 4 and new_links[2] == ""
    assert set(new_links[0].split()) == {"0-0", "1-1", "2-2"}
    for line, (src, tgt) in zip(new_links, [(3, 3), (3, 3), (0, 0), (1, 3)]):
        for link in line.split():
            i, j = map(int, link.split("-"))
            assert 0 <= i < src and 0 <= j < tgt


def test_cli_model_refuses_training_options(tmp_path, capsys) -> None:
    from mtcompare.cli import main

    pairs = tmp_path / "pairs.txt"
    pairs.write_text("a ||| x\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["align", "-i", str(pairs), "--model", str(tmp_path), "--iterations", "3"])
    assert exit_info.value.code == 2
    assert "drop --iterations" in capsys.readouterr().err
