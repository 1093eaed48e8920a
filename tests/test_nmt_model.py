"""The attentional encoder-decoder: attention properties and learning a toy corpus."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from mtcompare.data.subword import EOS_ID
from mtcompare.errors import MtcError
from mtcompare.nmt.batching import collate, pad
from mtcompare.nmt.model import Attention, ModelConfig, Seq2Seq
from mtcompare.nmt.search import greedy_search
from mtcompare.nmt.train import restore_model

torch.set_num_threads(1)


@pytest.mark.parametrize("kind", ["general", "additive"])
def test_attention_weights_sum_to_one_and_are_zero_on_padding(kind: str) -> None:
    torch.manual_seed(0)
    attention = Attention(kind, query_size=8, memory_size=12)
    memory = torch.randn(3, 5, 12)  # batch x src_len x memory
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]]).bool()
    context, weights = attention(
        torch.randn(3, 8), attention.keys(memory), memory, mask
    )
    assert torch.allclose(weights.sum(dim=1), torch.ones(3))
    assert torch.all(weights[~mask] == 0)
    assert torch.allclose(
        context[2], memory[2, 0]
    )  # one real position: all weight on it


@pytest.mark.parametrize("kind", ["general", "additive"])
def test_padding_does_not_change_the_result(kind: str) -> None:
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(20, 20, 8, 8, attention=kind)).eval()
    sources = [[5, 6, 7, 8, 9, 10], [11, 12]]
    targets = [[5, 6, 7], [8, 9]]
    batch = collate([0, 1], sources, targets)
    together = model(batch.src, batch.src_lengths, batch.tgt_input)
    alone = collate([1], sources, targets)
    by_itself = model(alone.src, alone.src_lengths, alone.tgt_input)
    assert torch.allclose(together[1, :3], by_itself[0], atol=1e-5)


def test_overfits_ten_pairs_to_perfect_reproduction() -> None:
    torch.manual_seed(1)
    generator = torch.Generator().manual_seed(1)
    sources, targets = [], []
    for _ in range(10):
        length = int(torch.randint(3, 8, (1,), generator=generator))
        source = torch.randint(4, 30, (length,), generator=generator).tolist()
        sources.append(source)
        targets.append([piece + 10 for piece in reversed(source)])  # a reordering task
    model = Seq2Seq(ModelConfig(30, 40, 32, 64, dropout=0.0))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = collate(list(range(10)), sources, targets)
    for _ in range(150):
        logits = model(batch.src, batch.src_lengths, batch.tgt_input)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, 40), batch.tgt_output.reshape(-1), ignore_index=0
        )
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    src = pad([source + [EOS_ID] for source in sources])
    lengths = torch.tensor([len(source) + 1 for source in sources])
    assert greedy_search(model, src, lengths) == targets


def _checkpoint(config: ModelConfig) -> dict:
    torch.manual_seed(0)
    model = Seq2Seq(config)
    return {
        "model": model.state_dict(),
        "model_config": asdict(config),
        "progress": {"step": 7},
    }


def test_restore_model_gives_back_the_saved_network() -> None:
    config = ModelConfig(20, 20, 8, 8)
    checkpoint = _checkpoint(config)
    model, progress = restore_model(
        checkpoint, Path("best.pt"), torch.device("cpu"), "retrain"
    )
    assert progress.step == 7
    assert all(
        torch.equal(value, checkpoint["model"][name])
        for name, value in model.state_dict().items()
    )


@pytest.mark.parametrize(
    "change",
    [{"hidden_size": 12}, {"attention": "dot"}, {"hidden_size": 0}, {"layers": 2}],
)
def test_weights_that_do_not_fit_their_config_are_one_short_line(change: dict) -> None:
    checkpoint = _checkpoint(ModelConfig(20, 20, 8, 8))
    checkpoint["model_config"].update(change)
    with pytest.raises(MtcError) as caught:
        restore_model(checkpoint, Path("best.pt"), torch.device("cpu"), "retrain")
    message = str(caught.value)
    assert message.startswith("best.pt: its network does not fit its model_config")
    assert message.endswith("; retrain") and "\n" not in message
    assert len(message) < 200
