"""Tests for the phrase-based stack decoder, against brute-force search."""

from __future__ import annotations

import itertools
import math

import pytest

from mtcompare.errors import MtcError
from mtcompare.smt.decoder import (
    UNKNOWN_WORD_PENALTY,
    Decoder,
    DecoderConfig,
    DecoderWeights,
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


def brute_force(tokens, table, lm, weights: DecoderWeights) -> float:
    """Best model score over every segmentation and every order of phrases."""
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

    best = -math.inf

    def extend(covered, last_end, score, output):
        nonlocal best
        if len(covered) == len(tokens):
            total = score + weights.language_model * lm.sentence_logprob(output)
            best = max(best, total)
            return
        for (start, end), entries in options.items():
            if covered & set(range(start, end)):
                continue
            distortion = -weights.distortion * abs(start - last_end)
            for found in entries or [None]:
                words = list(found.target) if found else [tokens[start]]
                extend(
                    covered | set(range(start, end)),
                    end,
                    score + distortion + phrase_score(found, words),
                    output + words,
                )

    extend(set(), 0, 0.0, [])
    return best


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
