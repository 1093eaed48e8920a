"""Tests for the phrase-based stack decoder, against brute-force search."""

from __future__ import annotations

import itertools
import math

import pytest

from mtcompare.errors import MtcError
from mtcompare.smt.decoder import (
    FEATURE_NAMES,
    UNKNOWN_WORD_PENALTY,
    Decoder,
    DecoderConfig,
    DecoderWeights,
    format_nbest_line,
    format_trace,
    phrase_orientation,
)
from mtcompare.smt.lm import train_kneser_ney
from mtcompare.smt.phrases import PhraseEntry, PhraseTable


def entry(target: str, *scores: float) -> PhraseEntry:
    words = tuple(target.split())
    return PhraseEntry(words, tuple(scores), (), (1, 1, 1))


def toy_table() -> PhraseTable:
    # "rojo" comes before "coche" in the source; English wants "red car".
    return PhraseTable(
        {
            ("el",): [
                entry("the", 0.8, 0.7, 0.9, 0.8),
                entry("it", 0.1, 0.2, 0.1, 0.1),
            ],
            ("coche",): [
                entry("car", 0.9, 0.8, 0.8, 0.7),
                entry("auto", 0.1, 0.1, 0.2, 0.2),
            ],
            ("rojo",): [entry("red", 0.9, 0.9, 0.9, 0.9)],
            ("coche", "rojo"): [entry("red car", 0.6, 0.5, 0.7, 0.6)],
            ("el", "coche"): [entry("the car", 0.5, 0.4, 0.6, 0.5)],
        }
    )


def toy_lm():
    english = [
        "the red car",
        "the car",
        "a red car",
        "the red house",
        "it is red",
        "the car is red",
        "red car",
        "the house",
    ]
    return train_kneser_ney([line.split() for line in english], order=3)


class ToyReordering:
    """A reordering table: each pair's six probabilities derived from its words."""

    def get(self, source, target):
        seed = sum(map(ord, " ".join(source + target)))
        backward = [1 + (seed * k) % 7 for k in (1, 2, 3)]
        forward = [1 + (seed * k) % 5 for k in (4, 5, 6)]
        return tuple(
            [b / sum(backward) for b in backward] + [f / sum(forward) for f in forward]
        )


def orientation(previous, span):
    """Monotone 0, swap 1, discontinuous 2, written out for the brute force."""
    if span[0] == previous[1]:
        return 0
    if span[1] == previous[0]:
        return 1
    return 2


def all_derivations(tokens, table, lm, weights: DecoderWeights, reordering=None):
    """Model score of every segmentation and every order of phrases."""
    options = {}
    for start in range(len(tokens)):
        for end in range(start + 1, len(tokens) + 1):
            entries = table.get(tuple(tokens[start:end]))
            if entries:
                options[(start, end)] = entries
            elif end == start + 1:
                options[(start, end)] = None  # copied unknown word

    def phrase_score(found, words):
        if found is None:
            return (
                weights.unknown_word * UNKNOWN_WORD_PENALTY + 1 + weights.phrase_penalty
            )
        return (
            sum(w * math.log(p) for w, p in zip(weights.phrase, found.scores))
            - weights.word_penalty * len(found.target)
            + weights.phrase_penalty
        )

    scores = []

    def extend(covered, previous, previous_probabilities, score, output):
        if len(covered) == len(tokens):
            total = score + weights.language_model * lm.sentence_logprob(output)
            if reordering is not None:
                at_end = orientation(previous, (len(tokens), len(tokens) + 1))
                total += weights.reordering[3 + at_end] * math.log(
                    previous_probabilities[3 + at_end]
                )
            scores.append((total, tuple(output)))
            return
        for (start, end), entries in options.items():
            if covered & set(range(start, end)):
                continue
            distortion = -weights.distortion * abs(start - previous[1])
            for found in entries or [None]:
                words = list(found.target) if found else [tokens[start]]
                reordering_score = 0.0
                probabilities = None
                if reordering is not None:
                    probabilities = (
                        reordering.get(tuple(tokens[start:end]), tuple(words))
                        if found
                        else (1 / 3,) * 6
                    )
                    o = orientation(previous, (start, end))
                    reordering_score = weights.reordering[o] * math.log(probabilities[o])
                    if previous_probabilities is not None:
                        reordering_score += weights.reordering[3 + o] * math.log(
                            previous_probabilities[3 + o]
                        )
                extend(
                    covered | set(range(start, end)),
                    (start, end),
                    probabilities,
                    score + distortion + phrase_score(found, words) + reordering_score,
                    output + words,
                )

    extend(set(), (0, 0), None, 0.0, [])
    return sorted(scores, reverse=True)


def brute_force(tokens, table, lm, weights: DecoderWeights, reordering=None) -> float:
    """Best model score over every segmentation and every order of phrases."""
    return all_derivations(tokens, table, lm, weights, reordering)[0][0]


SENTENCES = [
    ["el", "coche", "rojo"],
    ["coche", "rojo", "el"],
    ["rojo", "el", "coche"],
    ["el", "zapato", "rojo"],
    ["el"],
]


@pytest.mark.parametrize("tokens", SENTENCES)
@pytest.mark.parametrize("stack_size", [1000, 50])
def test_finds_the_brute_force_best(tokens, stack_size):
    table, lm = toy_table(), toy_lm()
    config = DecoderConfig(stack_size=stack_size, beam_threshold=1e9)
    translation = Decoder(table, lm, config).search(tokens)
    assert translation.score == pytest.approx(
        brute_force(tokens, table, lm, config.weights)
    )


def test_reorders_and_uses_phrases():
    decoder = Decoder(toy_table(), toy_lm())
    assert decoder.decode(["el", "coche", "rojo"]) == ["the", "red", "car"]
    translation = decoder.search(["el", "coche", "rojo"])
    covered = sorted((start, end) for start, end, _ in translation.phrases)
    assert covered[0][0] == 0 and covered[-1][1] == 3


def test_recombination_keeps_the_best_score():
    # With a stack of one hypothesis per state the search still reaches the
    # best score on the toy, because recombined hypotheses share their future.
    table, lm = toy_table(), toy_lm()
    wide = Decoder(table, lm, DecoderConfig(stack_size=1000, beam_threshold=1e9))
    narrow = Decoder(table, lm, DecoderConfig(stack_size=8))
    for tokens in SENTENCES:
        assert narrow.search(tokens).score == pytest.approx(wide.search(tokens).score)


def test_monotone_decoding_keeps_source_order():
    decoder = Decoder(toy_table(), toy_lm(), DecoderConfig(distortion_limit=0))
    for tokens in SENTENCES:
        starts = [start for start, _, _ in decoder.search(tokens).phrases]
        assert starts == sorted(starts)
    # reordering inside the phrase "coche rojo" -> "red car" is still allowed
    assert decoder.decode(["el", "coche", "rojo"]) == ["the", "red", "car"]


def test_unknown_words_are_copied_and_empty_input_is_empty():
    decoder = Decoder(toy_table(), toy_lm())
    assert decoder.decode(["el", "zapato", "rojo"]).count("zapato") == 1
    assert decoder.decode(["\x07", "🙂"]) == ["\x07", "🙂"]
    assert decoder.decode([]) == []


def test_long_sentence_with_a_distortion_limit_completes():
    decoder = Decoder(
        toy_table(), toy_lm(), DecoderConfig(distortion_limit=2, stack_size=5)
    )
    tokens = ["el", "coche", "rojo", "x"] * 10
    assert len(decoder.decode(tokens)) >= 40


def test_decode_corpus_keeps_input_order():
    decoder = Decoder(toy_table(), toy_lm())
    sentences = [SENTENCES[i % len(SENTENCES)] for i in range(9)]
    expected = [decoder.decode(tokens) for tokens in sentences]
    assert decoder.decode_corpus(sentences, processes=2) == expected
    assert decoder.decode_corpus(sentences, processes=1) == expected


def test_invalid_settings_are_listed():
    with pytest.raises(MtcError, match="stack_size.*beam_threshold"):
        DecoderConfig(stack_size=0, beam_threshold=0)


def exhaustive(**settings) -> DecoderConfig:
    return DecoderConfig(stack_size=10_000, beam_threshold=1e9, **settings)


@pytest.mark.parametrize("tokens", SENTENCES)
def test_lexicalised_reordering_finds_the_brute_force_best(tokens):
    table, lm, reordering = toy_table(), toy_lm(), ToyReordering()
    config = exhaustive()
    translation = Decoder(table, lm, config, reordering).search(tokens)
    assert translation.score == pytest.approx(
        brute_force(tokens, table, lm, config.weights, reordering)
    )


@pytest.mark.parametrize("with_reordering", [False, True])
@pytest.mark.parametrize("tokens", SENTENCES)
def test_nbest_is_the_brute_force_ranking_of_derivations(tokens, with_reordering):
    # Without pruning, recombination arcs keep every derivation in the search
    # graph, so the k best paths are the k best of all derivations.
    table, lm = toy_table(), toy_lm()
    reordering = ToyReordering() if with_reordering else None
    config = exhaustive()
    expected = all_derivations(tokens, table, lm, config.weights, reordering)
    size = min(12, len(expected))
    found = Decoder(table, lm, config, reordering).nbest(tokens, size, distinct=False)
    assert [t.score for t in found] == pytest.approx([s for s, _ in expected[:size]])
    # distinct word sequences, best first
    distinct = Decoder(table, lm, config, reordering).nbest(tokens, 5)
    best_of_each = {}
    for score, words in expected:
        best_of_each.setdefault(words, score)
    ranked = sorted(best_of_each.values(), reverse=True)[:5]
    assert [t.score for t in distinct] == pytest.approx(ranked)
    assert len({tuple(t.words) for t in distinct}) == len(distinct)


@pytest.mark.parametrize("with_reordering", [False, True])
def test_features_times_weights_give_the_score(with_reordering):
    table, lm = toy_table(), toy_lm()
    reordering = ToyReordering() if with_reordering else None
    weights = DecoderWeights(
        language_model=0.7, phrase=(0.1, 0.3, 0.2, 0.4), distortion=0.5,
        word_penalty=-0.4, phrase_penalty=0.3, reordering=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6),
    )
    decoder = Decoder(table, lm, exhaustive(weights=weights), reordering)
    for tokens in SENTENCES + [["rojo", "zapato", "coche", "el"]]:
        for translation in decoder.nbest(tokens, 6):
            assert len(translation.features) == len(FEATURE_NAMES)
            total = sum(w * h for w, h in zip(weights.vector(), translation.features))
            assert total == pytest.approx(translation.score)
            assert translation.features[2] == -len(translation.words)
            assert translation.features[3] == len(translation.phrases)


def test_weights_vector_round_trip_and_set_weights():
    weights = DecoderWeights(reordering=(1, 2, 3, 4, 5, 6), phrase=(7, 8, 9, 10))
    assert DecoderWeights.from_vector(weights.vector()) == DecoderWeights(
        **{**weights.__dict__, "reordering": (1.0, 2.0, 3.0, 4.0, 5.0, 6.0),
           "phrase": (7.0, 8.0, 9.0, 10.0)}
    )
    decoder = Decoder(toy_table(), toy_lm())
    before = decoder.search(["el", "coche", "rojo"]).score
    decoder.set_weights(DecoderWeights(language_model=2.0))
    assert decoder.search(["el", "coche", "rojo"]).score != pytest.approx(before)


def test_phrase_orientation_by_hand():
    assert phrase_orientation(0, 0, 0, 2) == 0  # sentence start, first words
    assert phrase_orientation(0, 2, 2, 3) == 0  # right after the previous
    assert phrase_orientation(2, 3, 0, 2) == 1  # just before the previous
    assert phrase_orientation(0, 0, 1, 2) == 2  # skips word 0
    assert phrase_orientation(3, 4, 0, 2) == 2  # before, with a gap


def test_trace_and_nbest_line_formats():
    decoder = Decoder(toy_table(), toy_lm())
    translation = decoder.nbest(["el", "coche", "rojo"], 1)[0]
    trace = format_trace(translation)
    assert trace == "the |0-0| red car |1-2|"  # spans of source words, inclusive
    line = format_nbest_line(3, "the red car", translation, decoder.config.weights)
    fields = line.split(" ||| ")
    assert fields[0] == "3" and fields[1] == "the red car"
    assert fields[2].startswith("LM0= ") and "TranslationModel0= " in fields[2]
    assert float(fields[3]) == pytest.approx(translation.score, abs=1e-4)


def test_nbest_corpus_in_workers_matches_one_process():
    decoder = Decoder(toy_table(), toy_lm(), reordering_table=ToyReordering())
    sentences = [SENTENCES[i % len(SENTENCES)] for i in range(7)]
    one = decoder.nbest_corpus(sentences, 3, processes=1)
    two = decoder.nbest_corpus(sentences, 3, processes=2)
    assert [[t.words for t in n] for n in one] == [[t.words for t in n] for n in two]
    assert all(1 <= len(n) <= 3 for n in one)


@pytest.mark.parametrize("tokens", SENTENCES + [["rojo", "zapato", "coche", "el"]])
def test_cube_pruning_with_a_large_pop_limit_finds_the_brute_force_best(tokens):
    table, lm, reordering = toy_table(), toy_lm(), ToyReordering()
    config = exhaustive(pop_limit=100_000)
    decoder = Decoder(table, lm, config, reordering)
    assert decoder.search(tokens).score == pytest.approx(
        brute_force(tokens, table, lm, config.weights, reordering)
    )
    # and its n-best entries keep features consistent with their scores
    for translation in decoder.nbest(tokens, 4):
        total = sum(w * h for w, h in zip(config.weights.vector(), translation.features))
        assert total == pytest.approx(translation.score)


def test_cube_pruning_with_a_small_pop_limit_still_translates_everything():
    decoder = Decoder(toy_table(), toy_lm(), DecoderConfig(pop_limit=3, stack_size=5))
    tokens = ["el", "coche", "rojo", "x"] * 8
    assert len(decoder.decode(tokens)) >= 32
    assert decoder.decode(["el", "coche", "rojo"]) == ["the", "red", "car"]


def test_a_short_nbest_list_is_the_start_of_a_longer_one():
    decoder = Decoder(toy_table(), toy_lm(), exhaustive())
    for tokens in SENTENCES:
        five = [t.words for t in decoder.nbest(tokens, 5)]
        longer = [t.words for t in decoder.nbest(tokens, 50)]
        assert five == longer[: len(five)] and len(five) == min(5, len(longer))
