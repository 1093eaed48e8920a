"""Training in two processes with DistributedDataParallel on the CPU (gloo).

Two processes are started as torchrun would start them (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT in the environment), on the loopback
interface only, and both run ``train_nmt`` on one tiny corpus. They take
different batches, so their weights stay the same only if the gradients are
really averaged across them at every step.
"""

import json
import math
import os
import socket
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as multiprocessing

from mtcompare.nmt import train as nmt_train
from mtcompare.nmt.train import NMTConfig, load_checkpoint, train_nmt
from mtcompare.translator import load_translator
from test_nmt_train import _tiny_config, _write_prepared

torch.set_num_threads(1)
WORLD_SIZE = 2


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _process(
    rank: int, port: int, prepared: Path, out: Path, config: NMTConfig
) -> None:
    """One training process; writes the weights it ends with to rank-N.pt."""
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(WORLD_SIZE),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        GLOO_SOCKET_IFNAME="lo",  # gloo's own connections stay on loopback too
        OMP_WAIT_POLICY="PASSIVE",
    )
    torch.set_num_threads(1)
    batches: list[list[int]] = []  # the pairs of every step this process took
    train_step = nmt_train._TrainingLoop._train_step

    def recorded(loop: nmt_train._TrainingLoop, indices: list[int]) -> float:
        batches.append(list(indices))
        return train_step(loop, indices)

    nmt_train._TrainingLoop._train_step = recorded  # this process only
    model = train_nmt(prepared, out, config)
    torch.save(
        {"weights": model.state_dict(), "batches": batches},
        out.parent / f"rank-{rank}.pt",
    )


@pytest.mark.skipif(not dist.is_gloo_available(), reason="PyTorch without gloo")
def test_two_gloo_processes_end_with_identical_weights_and_a_falling_loss(
    tmp_path: Path,
) -> None:
    prepared = _write_prepared(tmp_path / "prep")
    out = tmp_path / "model"
    # small batches, so that an epoch has several for each process
    config = _tiny_config(max_steps=16, validate_every=4, batch_tokens=60, lr=1e-2)
    multiprocessing.spawn(
        _process,
        args=(_free_loopback_port(), prepared, out, config),
        nprocs=WORLD_SIZE,
        join=True,
    )
    results = [torch.load(tmp_path / f"rank-{rank}.pt") for rank in range(2)]
    # at every step the two processes trained on different pairs
    steps = list(zip(results[0]["batches"], results[1]["batches"]))
    assert len(steps) == 16
    assert all(not set(first) & set(second) for first, second in steps)
    weights = [result["weights"] for result in results]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    last = load_checkpoint(out / "last.pt", torch.device("cpu"))
    assert last["world_size"] == 2
    assert all(
        torch.equal(last["model"][name], weights[0][name]) for name in weights[0]
    )
    progress = last["progress"]
    assert progress["step"] == 16
    # the training loss (of process 0's batches, so noisy) ends lower than it
    # began, and the dev perplexity (a fixed set) falls at every validation
    losses = [entry["train_loss"] for entry in progress["history"]]
    perplexities = [entry["dev_perplexity"] for entry in progress["history"]]
    assert len(losses) == 4 and all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0]
    assert all(
        later < earlier for earlier, later in zip(perplexities, perplexities[1:])
    )
    assert json.loads((out / "model.json").read_text())["steps"] == 16
    assert load_translator(out).translate(["Uno dos ."])
