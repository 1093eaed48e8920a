"""Greedy and beam search: hand-worked examples, brute-force enumeration and
agreement properties."""

import math
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch

from mtcompare.data.subword import BOS_ID, EOS_ID
from mtcompare.errors import MtcError
from mtcompare.nmt.batching import collate, pad
from mtcompare.nmt.model import DecoderState, EncoderOutput, ModelConfig, Seq2Seq
from mtcompare.nmt.search import (
    SearchConfig,
    attention_matrix,
    beam_search,
    greedy_search,
    max_output_lengths,
    translate_ids,
)

torch.set_num_threads(1)
A, B = 4, 5


class BigramModel:
    """A decoder whose next-piece distribution depends only on the previous piece."""

    def __init__(self, table: dict[int, dict[int, float]], vocab_size: int = 6):
        self.steps = 0
        self.log_probs = torch.full((vocab_size, vocab_size), float("-inf"))
        for previous, following in table.items():
            for piece, probability in following.items():
                self.log_probs[previous, piece] = math.log(probability)

    def eval(self) -> "BigramModel":
        return self

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> EncoderOutput:
        memory = torch.zeros(src.size(0), src.size(1), 1)
        return EncoderOutput(memory, memory, src != 0, src_lengths, memory[:, 0])

    def initial_state(self, encoded: EncoderOutput) -> DecoderState:
        zeros = torch.zeros(encoded.memory.size(0), 1)
        return DecoderState([zeros], [zeros], zeros)

    def decode_step(self, previous, state, encoded):
        self.steps += 1
        return self.log_probs[previous], state, None

    def translations(self, limit: int) -> list[tuple[list[int], float]]:
        """Every translation of at most ``limit`` pieces with nonzero probability,
        with its log-probability (end symbol included): brute-force enumeration."""
        found = []

        def extend(pieces: list[int], log_probability: float) -> None:
            previous = pieces[-1] if pieces else BOS_ID
            for piece, value in enumerate(self.log_probs[previous].tolist()):
                if value == float("-inf"):
                    continue
                if piece == EOS_ID:
                    found.append((pieces, log_probability + value))
                elif len(pieces) < limit:
                    extend(pieces + [piece], log_probability + value)

        extend([], 0.0)
        return found


def _one_source() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([[A, B, EOS_ID]]), torch.tensor([3])


def _best(model, src, lengths, **search) -> list[list[int]]:
    return [
        h[0].pieces for h in beam_search(model, src, lengths, SearchConfig(**search))
    ]


# Greedy takes A (0.6) and then ends (0.4): 0.24. B then the end: 0.4 * 0.9 = 0.36.
GARDEN_PATH = {
    BOS_ID: {A: 0.6, B: 0.4},
    A: {EOS_ID: 0.4, A: 0.3, B: 0.3},
    B: {EOS_ID: 0.9, A: 0.1},
}


def test_hand_worked_example_beam_finds_what_greedy_misses() -> None:
    model = BigramModel(GARDEN_PATH)
    src, lengths = _one_source()
    assert greedy_search(model, src, lengths) == [[A]]
    assert _best(model, src, lengths, beam_size=2, length_penalty=0.0) == [[B]]
    assert _best(model, src, lengths, beam_size=1, length_penalty=0.0) == [[A]]
    [[best, second]] = beam_search(
        model, src, lengths, SearchConfig(beam_size=2, length_penalty=0.0), n_best=2
    )
    assert best.pieces == [B] and second.pieces == [A]
    assert math.isclose(best.log_probability, math.log(0.36), rel_tol=1e-6)
    assert math.isclose(second.score, math.log(0.24), rel_tol=1e-6)


def test_beam_stops_once_no_live_hypothesis_can_win() -> None:
    model = BigramModel(GARDEN_PATH)
    src, lengths = _one_source()
    # after step 2: finished B</s> (0.36); the best live ones, AA and AB, are at
    # 0.18 and can only fall, so without normalisation the search is over
    _best(model, src, lengths, beam_size=2, length_penalty=0.0)
    assert model.steps == 2
    # normalised by length, a long live hypothesis could still overtake B</s>
    # (its bound is log 0.18 / 15 > log 0.36 / 2), so the search goes on
    model.steps = 0
    assert _best(model, src, lengths, beam_size=2, length_penalty=1.0) == [[B]]
    assert model.steps > 2


# The empty translation finishes first and wins on raw score: log 0.55 = -0.598
# against A B </s> at log(0.45 * 0.9 * 0.9) = log 0.3645 = -1.009. Normalised by
# length (alpha = 1) A B </s> wins: -1.009 / 3 = -0.336 against -0.598 / 1.
LONGER_WINS = {
    BOS_ID: {EOS_ID: 0.55, A: 0.45},
    A: {B: 0.9, EOS_ID: 0.1},
    B: {EOS_ID: 0.9, B: 0.1},
}


C = 6
# The empty translation scores -0.4 / 1; A B C </s> -1.1 / 4 = -0.275 and wins, but
# only after three more pieces: a bound that assumed a live hypothesis ends at
# the next step (-1.1 / 2 = -0.55 after the first step) would stop too early.
LATE_WIN = {
    BOS_ID: {EOS_ID: math.exp(-0.4), A: 1 - math.exp(-0.4)},
    A: {B: 1.0},
    B: {C: 1.0},
    C: {EOS_ID: 1.0},
}


@pytest.mark.parametrize(
    "table, longer, score",
    [
        (LONGER_WINS, [A, B], math.log(0.3645) / 3),
        (LATE_WIN, [A, B, C], math.log(1 - math.exp(-0.4)) / 4),
    ],
)
def test_a_longer_translation_wins_after_the_short_one_finished_first(
    table: dict, longer: list[int], score: float
) -> None:
    model = BigramModel(table, vocab_size=7)
    src, lengths = _one_source()
    # no normalisation: the empty translation, found at the first step, is best
    assert _best(model, src, lengths, beam_size=2, length_penalty=0.0) == [[]]
    assert model.steps == 1
    # normalised, the first finished hypothesis must not end the search
    [[best]] = beam_search(model, src, lengths, SearchConfig(beam_size=2))
    assert best.pieces == longer
    assert math.isclose(best.score, score, rel_tol=1e-6)
    # and it is the best of every possible translation (brute force)
    limit = int(max_output_lengths(lengths, 1.5, 10)[0])
    scored = [(lp / (len(p) + 1), p) for p, lp in model.translations(limit)]
    assert max(scored)[1] == longer


@pytest.mark.parametrize(
    "normalisation, alpha", [("length", 0.0), ("length", 1.0), ("gnmt", 0.6)]
)
def test_n_best_of_an_exhaustive_beam_equals_brute_force(
    normalisation: str, alpha: float
) -> None:
    # pieces A and B after any piece, or the end; at most 3 pieces. The beam
    # (12) is never short: at most 4 live prefixes x 3 continuations compete at
    # a step, so beam search sees every one of the 15 translations
    generator = torch.Generator().manual_seed(5)
    table = {}
    for previous in (BOS_ID, A, B):
        weights = torch.rand(3, generator=generator) + 0.1
        probabilities = (weights / weights.sum()).tolist()
        table[previous] = dict(zip((A, B, EOS_ID), probabilities))
    model = BigramModel(table)
    src, lengths = _one_source()
    search = SearchConfig(
        beam_size=12,
        length_penalty=alpha,
        length_normalisation=normalisation,
        max_length_ratio=0.0,
        max_length_extra=3,
    )
    [found] = beam_search(model, src, lengths, search, n_best=5)

    def lp(length: int) -> float:
        base = (5 + length) / 6 if normalisation == "gnmt" else length
        return base**alpha

    everything = model.translations(3)
    assert len(everything) == 15
    expected = sorted(  # (minus the normalised score, pieces), best first
        (-log_probability / lp(len(pieces) + 1), pieces)
        for pieces, log_probability in everything
    )
    assert [h.pieces for h in found] == [pieces for _, pieces in expected[:5]]
    for hypothesis, (negative_score, _) in zip(found, expected):
        assert math.isclose(hypothesis.score, -negative_score, rel_tol=1e-5)


def test_gnmt_length_normaliser_by_hand() -> None:
    # Wu et al. 2016 eq. 14: ((5 + 7) / 6) ** 0.5 = sqrt(2)
    search = SearchConfig(length_penalty=0.5, length_normalisation="gnmt")
    assert math.isclose(search.length_normaliser(7), math.sqrt(2))
    assert SearchConfig(length_penalty=1.0).length_normaliser(7) == 7.0


def test_output_never_exceeds_the_length_limit() -> None:
    endless = BigramModel({BOS_ID: {A: 1.0}, A: {A: 0.99, EOS_ID: 0.01}})
    src, lengths = _one_source()
    limit = int(max_output_lengths(lengths, 1.5, 2)[0])
    assert limit == 6
    short = dict(max_length_ratio=1.5, max_length_extra=2)
    assert greedy_search(endless, src, lengths, SearchConfig(**short)) == [[A] * limit]
    assert _best(endless, src, lengths, beam_size=3, **short) == [[A] * limit]


def _random_model_and_sources(seed: int = 3, **changes):
    torch.manual_seed(seed)
    model = Seq2Seq(ModelConfig(24, 12, 16, 16, dropout=0.0, **changes)).eval()
    generator = torch.Generator().manual_seed(seed)
    sources = [
        torch.randint(4, 24, (int(length),), generator=generator).tolist()
        for length in torch.randint(1, 9, (7,), generator=generator)
    ]
    src = pad([source + [EOS_ID] for source in sources])
    lengths = torch.tensor([len(source) + 1 for source in sources])
    return model, sources, src, lengths


DEEP = dict(
    encoder_layers=2,
    decoder_layers=2,
    encoder_connection="dense",
    decoder_connection="residual",
    attention="additive",
)


@pytest.mark.parametrize("changes", [{}, DEEP])
def test_beam_of_one_without_normalisation_is_greedy(changes: dict) -> None:
    model, _, src, lengths = _random_model_and_sources(**changes)
    assert _best(model, src, lengths, beam_size=1, length_penalty=0.0) == (
        greedy_search(model, src, lengths)
    )


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
@pytest.mark.parametrize("changes", [{}, DEEP])
def test_batched_beam_search_equals_one_sentence_at_a_time(
    length_penalty: float, changes: dict
) -> None:
    model, sources, src, lengths = _random_model_and_sources(**changes)
    search = SearchConfig(beam_size=4, length_penalty=length_penalty)
    batched = beam_search(model, src, lengths, search, n_best=3)
    alone = [
        beam_search(model, src[i : i + 1, : lengths[i]], lengths[i : i + 1], search, 3)[
            0
        ]
        for i in range(len(sources))
    ]
    assert [[h.pieces for h in sentence] for sentence in batched] == [
        [h.pieces for h in sentence] for sentence in alone
    ]
    for together, by_itself in zip(batched, alone):
        for first, second in zip(together, by_itself):
            assert math.isclose(first.score, second.score, rel_tol=1e-4, abs_tol=1e-5)


def test_n_best_is_sorted_distinct_and_scored_by_the_model() -> None:
    model, sources, src, lengths = _random_model_and_sources()
    search = SearchConfig(beam_size=5, length_penalty=1.0)
    results = beam_search(model, src, lengths, search, n_best=4)
    for index, hypotheses in enumerate(results):
        assert len(hypotheses) == 4
        scores = [h.score for h in hypotheses]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.pieces) for h in hypotheses}) == 4
        for hypothesis in hypotheses:
            # teacher forcing gives the log-probability the search accumulated
            batch = collate([0], [sources[index]], [hypothesis.pieces])
            with torch.no_grad():
                log_probs = model(batch.src, batch.src_lengths, batch.tgt_input)
            log_probs = torch.log_softmax(log_probs, dim=-1)[0]  # tgt_len x vocab
            total = float(log_probs.gather(1, batch.tgt_output.T).sum())
            assert math.isclose(hypothesis.log_probability, total, rel_tol=1e-4)
            length = len(hypothesis.pieces) + 1
            assert math.isclose(hypothesis.score, hypothesis.log_probability / length)


def test_n_best_larger_than_the_beam_is_a_user_error() -> None:
    model, _, src, lengths = _random_model_and_sources()
    with pytest.raises(MtcError, match="n_best must be between 1 and the beam size"):
        beam_search(model, src, lengths, SearchConfig(beam_size=2), n_best=3)


def test_search_config_errors_list_valid_values() -> None:
    with pytest.raises(MtcError, match="valid: length, gnmt"):
        SearchConfig(length_normalisation="average").validate()
    with pytest.raises(MtcError, match="length_penalty"):
        SearchConfig(length_penalty=-0.5).validate()


class _RecordingModel:
    """Passes calls to a model and keeps the attention weights of every step."""

    def __init__(self, model: Seq2Seq):
        self.model = model
        self.weights: list[torch.Tensor] = []

    def eval(self) -> "_RecordingModel":
        self.model.eval()
        return self

    def encode(self, src, src_lengths):
        return self.model.encode(src, src_lengths)

    def initial_state(self, encoded):
        return self.model.initial_state(encoded)

    def decode_step(self, previous, state, encoded):
        logits, state, weights = self.model.decode_step(previous, state, encoded)
        self.weights.append(weights)
        return logits, state, weights


@pytest.mark.parametrize("changes", [{}, DEEP])
def test_attention_matrix_is_what_the_search_read(changes: dict) -> None:
    model, sources, _, _ = _random_model_and_sources(**changes)
    source = sources[2]
    src, lengths = torch.tensor([source + [EOS_ID]]), torch.tensor([len(source) + 1])
    recorder = _RecordingModel(model)
    [target] = greedy_search(recorder, src, lengths)
    matrix = attention_matrix(model, source, target)
    assert matrix.shape == (len(target) + 1, len(source) + 1)
    assert torch.allclose(matrix.sum(dim=1), torch.ones(len(target) + 1))
    seen = torch.cat(recorder.weights[: len(target) + 1])  # steps x src_len
    assert torch.allclose(matrix, seen, atol=1e-6)


def test_translate_ids_keeps_order_and_empty_sources() -> None:
    model, sources, _, _ = _random_model_and_sources()
    sources = sources[:3] + [[]] + sources[3:]
    search = SearchConfig(beam_size=3)
    together = translate_ids(
        model, sources, search, torch.device("cpu"), batch_tokens=40
    )
    one_by_one = [
        translate_ids(model, [source], search, torch.device("cpu"))[0]
        for source in sources
    ]
    assert together == one_by_one
    assert together[3] == []
    greedy = translate_ids(model, sources, search, torch.device("cpu"), greedy=True)
    assert (
        greedy[3] == []
        and greedy[0]
        == greedy_search(
            model, pad([sources[0] + [EOS_ID]]), torch.tensor([len(sources[0]) + 1])
        )[0]
    )
