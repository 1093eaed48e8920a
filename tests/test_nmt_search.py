"""Greedy and beam search: a hand-worked example and agreement properties."""

import math
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch

from mtcompare.data.subword import BOS_ID, EOS_ID
from mtcompare.nmt.batching import pad
from mtcompare.nmt.model import DecoderState, EncoderOutput, ModelConfig, Seq2Seq
from mtcompare.nmt.search import (
    SearchConfig,
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
        return EncoderOutput(memory, memory, src != 0, src_lengths)

    def initial_state(self, encoded: EncoderOutput) -> DecoderState:
        zeros = torch.zeros(encoded.memory.size(0), 1)
        return DecoderState([zeros], [zeros], zeros)

    def decode_step(self, previous, state, encoded):
        self.steps += 1
        return self.log_probs[previous], state, None


# Greedy takes A (0.6) and then ends (0.4): 0.24. B then the end: 0.4 * 0.9 = 0.36.
GARDEN_PATH = {
    BOS_ID: {A: 0.6, B: 0.4},
    A: {EOS_ID: 0.4, A: 0.3, B: 0.3},
    B: {EOS_ID: 0.9, A: 0.1},
}


def _one_source() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([[A, B, EOS_ID]]), torch.tensor([3])


def test_hand_worked_example_beam_finds_what_greedy_misses() -> None:
    model = BigramModel(GARDEN_PATH)
    src, lengths = _one_source()
    assert greedy_search(model, src, lengths) == [[A]]
    assert beam_search(model, src, lengths, beam_size=2, length_penalty=0.0) == [[B]]
    assert beam_search(model, src, lengths, beam_size=1, length_penalty=0.0) == [[A]]


def test_beam_stops_once_no_live_hypothesis_can_win() -> None:
    model = BigramModel(GARDEN_PATH)
    src, lengths = _one_source()
    # after step 2: finished B</s> (0.36); the best live ones, AA and AB, are at
    # 0.18 and can only fall, so without normalisation the search is over
    beam_search(model, src, lengths, beam_size=2, length_penalty=0.0)
    assert model.steps == 2
    # normalised by length, a long live hypothesis could still overtake B</s>
    # (its bound is log 0.18 / 15 > log 0.36 / 2), so the search goes on
    model.steps = 0
    assert beam_search(model, src, lengths, beam_size=2, length_penalty=1.0) == [[B]]
    assert model.steps > 2


def test_output_never_exceeds_the_length_limit() -> None:
    endless = BigramModel({BOS_ID: {A: 1.0}, A: {A: 0.99, EOS_ID: 0.01}})
    src, lengths = _one_source()
    limit = int(max_output_lengths(lengths, 1.5, 2)[0])
    assert limit == 6
    assert greedy_search(endless, src, lengths, 1.5, 2) == [[A] * limit]
    assert beam_search(endless, src, lengths, 3, 1.0, 1.5, 2) == [[A] * limit]


def _random_model_and_sources(seed: int = 3):
    torch.manual_seed(seed)
    model = Seq2Seq(ModelConfig(24, 12, 16, 16, dropout=0.0)).eval()
    generator = torch.Generator().manual_seed(seed)
    sources = [
        torch.randint(4, 24, (int(length),), generator=generator).tolist()
        for length in torch.randint(1, 9, (7,), generator=generator)
    ]
    src = pad([source + [EOS_ID] for source in sources])
    lengths = torch.tensor([len(source) + 1 for source in sources])
    return model, sources, src, lengths


def test_beam_of_one_without_normalisation_is_greedy() -> None:
    model, _, src, lengths = _random_model_and_sources()
    assert beam_search(model, src, lengths, 1, 0.0) == greedy_search(
        model, src, lengths
    )


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_batched_beam_search_equals_one_sentence_at_a_time(
    length_penalty: float,
) -> None:
    model, sources, src, lengths = _random_model_and_sources()
    batched = beam_search(model, src, lengths, 4, length_penalty)
    alone = [
        beam_search(
            model, src[i : i + 1, : lengths[i]], lengths[i : i + 1], 4, length_penalty
        )[0]
        for i in range(len(sources))
    ]
    assert batched == alone


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
