"""Tests for the interpolated modified Kneser-Ney language model."""

from __future__ import annotations

import gzip
import math
import random
from pathlib import Path

import pytest

from mtcompare.errors import MtcError
from mtcompare.smt.lm import (
    BOS,
    EOS,
    UNK,
    NGramLanguageModel,
    modified_kneser_ney_discounts,
    train_kneser_ney,
)

# ../shared beside the project root; absent in a user's clone, present in CI.
KENLM = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "kenlm"

TINY = [["a", "b"], ["a"]]


def prob(model: NGramLanguageModel, history: tuple[str, ...], word: str) -> float:
    return math.exp(model.score(history, word)[0])


def test_discounts_from_counts_of_counts():
    # Y = 10 / (10 + 2*5) = 0.5
    # D1 = 1 - 2*0.5*5/10 = 0.5; D2 = 2 - 3*0.5*3/5 = 1.1; D3+ = 3 - 4*0.5*2/3
    d1, d2, d3 = modified_kneser_ney_discounts(10, 5, 3, 2)
    assert (d1, d2, d3) == pytest.approx((0.5, 1.1, 3 - 4 / 3))
    assert modified_kneser_ney_discounts(3, 1, 0, 0) is None


def test_bigram_probabilities_by_hand(caplog):
    # Padded corpus: "<s> a b </s>", "<s> a </s>".
    # Bigrams (raw counts, top order): <s> a: 2, a b: 1, a </s>: 1, b </s>: 1
    #   n1 = 3, n2 = 1, n3 = 0: no valid modified discounts, so the fallback
    #   D = n1 / (n1 + 2 n2) = 3/5 = 0.6 for every count.
    # Unigrams (continuation counts): a: 1 ({<s>}), b: 1 ({a}), </s>: 2 ({a, b})
    #   n1 = 2, n2 = 1: fallback D = 2/4 = 0.5; total 4.
    #   gamma() = 0.5 * 3 / 4 = 0.375, vocabulary {a, b, </s>, <unk>}: 1/4 each
    #   P(a) = P(b) = 0.5/4 + 0.375/4 = 0.21875
    #   P(</s>) = 1.5/4 + 0.375/4 = 0.46875;  P(<unk>) = 0.375/4 = 0.09375
    model = train_kneser_ney(TINY, order=2)
    assert "no valid modified Kneser-Ney discounts" in caplog.text
    assert model.discounts == [(0.5,) * 3, pytest.approx((0.6,) * 3)]
    assert prob(model, (), "a") == pytest.approx(0.21875)
    assert prob(model, (), EOS) == pytest.approx(0.46875)
    assert prob(model, (), UNK) == pytest.approx(0.09375)
    assert prob(model, (), "never-seen") == pytest.approx(0.09375)
    # After <s>: total 2, gamma(<s>) = 0.6 * 1 / 2 = 0.3
    #   P(a | <s>) = (2 - 0.6)/2 + 0.3 * 0.21875 = 0.765625
    #   P(b | <s>) = 0.3 * 0.21875 = 0.065625 (unseen: backoff)
    assert prob(model, (BOS,), "a") == pytest.approx(0.765625)
    assert prob(model, (BOS,), "b") == pytest.approx(0.065625)
    # After a: total 2, gamma(a) = 0.6 * 2 / 2 = 0.6
    #   P(b | a) = 0.4/2 + 0.6 * 0.21875 = 0.33125
    # After b: total 1, gamma(b) = 0.6: P(</s> | b) = 0.4 + 0.6 * 0.46875 = 0.68125
    assert prob(model, ("a",), "b") == pytest.approx(0.33125)
    assert prob(model, ("b",), EOS) == pytest.approx(0.68125)
    expected = math.log(0.765625 * 0.33125 * 0.68125)
    assert model.sentence_logprob(["a", "b"]) == pytest.approx(expected)
    assert model.perplexity(["a b"]) == pytest.approx(math.exp(-expected / 3))


def _toy_corpus() -> list[list[str]]:
    generator = random.Random(7)
    words = "the cat dog sat on a mat and ran to".split()
    weights = [10, 6, 5, 4, 4, 3, 3, 2, 1, 1]
    return [
        generator.choices(words, weights, k=generator.randint(1, 8)) for _ in range(80)
    ]


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_distributions_sum_to_one_in_every_seen_context(order):
    model = train_kneser_ney(_toy_corpus(), order=order)
    predicted = sorted(model.vocabulary - {BOS})
    histories = {ngram[:-1] for ngram in model.entries if len(ngram) > 1} | {()}
    for history in histories:
        total = sum(prob(model, history, word) for word in predicted)
        assert total == pytest.approx(1.0, abs=1e-9), history


def test_state_is_the_longest_known_history():
    model = train_kneser_ney(_toy_corpus(), order=3)
    _, state = model.score((BOS,), "the")
    assert state == (BOS, "the")
    _, state = model.score(state, "zebra")
    assert state == ()  # <unk> is never a history
    _, state = model.score((), "the")
    assert state == ("the",)


@pytest.mark.parametrize("name", ["lm.arpa", "lm.arpa.gz"])
def test_arpa_round_trip_gives_identical_scores(tmp_path, name):
    model = train_kneser_ney(_toy_corpus(), order=3)
    path = tmp_path / name
    model.write_arpa(path)
    loaded = NGramLanguageModel.read_arpa(path)
    assert loaded.order == 3
    assert loaded.entries == model.entries
    for sentence in _toy_corpus()[:10] + [["zebra", "the", "cat"]]:
        assert loaded.sentence_logprob(sentence) == model.sentence_logprob(sentence)


def test_arpa_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.arpa"
    path.write_text(
        "\\data\\\nngram 1=1\n\n\\1-grams:\n-1.0\n\\end\\\n", encoding="utf-8"
    )
    with pytest.raises(MtcError, match=r"bad.arpa:5"):
        NGramLanguageModel.read_arpa(path)


def _kenlm_sentences(name: str) -> list[list[str]]:
    return [
        line.split() for line in (KENLM / name).read_text(encoding="utf-8").splitlines()
    ]


@pytest.mark.skipif(not KENLM.is_dir(), reason=f"no KenLM fixture at {KENLM}")
def test_matches_kenlm_lmplz():
    model = train_kneser_ney(_kenlm_sentences("train.txt"), order=3)
    log = (KENLM / "lmplz3.log").read_text(encoding="utf-8")
    for order, discounts in enumerate(model.discounts, start=1):
        line = next(line for line in log.splitlines() if line.startswith(f"{order} "))
        expected = [float(field.split("=")[1]) for field in line.split()[2:5]]
        assert discounts == pytest.approx(expected, abs=1e-5)
    reference = NGramLanguageModel.read_arpa(KENLM / "small3.arpa.gz")
    assert set(reference.entries) == set(model.entries)
    for ngram, (log_prob, backoff) in reference.entries.items():
        if ngram != (BOS,):
            assert model.entries[ngram][0] == pytest.approx(log_prob, abs=1e-6), ngram
        assert model.entries[ngram][1] == pytest.approx(backoff, abs=1e-6), ngram
    query = (KENLM / "query3.txt").read_text(encoding="utf-8").splitlines()
    totals = [float(line.split()[1]) for line in query if line.startswith("Total")]
    heldout = _kenlm_sentences("heldout.txt")
    ours = [model.sentence_logprob(sentence) / math.log(10) for sentence in heldout]
    assert ours == pytest.approx(totals, abs=1e-4)
    perplexity = float(next(l for l in query if "including OOVs" in l).split()[-1])
    assert model.perplexity(heldout) == pytest.approx(perplexity, rel=1e-5)


def test_an_empty_text_is_a_clear_error():
    with pytest.raises(MtcError, match="no sentences"):
        train_kneser_ney([], order=3)
