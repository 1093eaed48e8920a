"""Token-budget batches with length bucketing.

Padding wastes computation: a batch costs as much as its longest sentence
times its number of sentences. So each epoch shuffles the training pairs,
cuts them into large windows, sorts every window by length and cuts it into
batches whose padded size (sentences x longest side) stays within a token
budget; the batches are then shuffled, so the model does not see lengths in
order. Short sentences make batches of many sentences, long ones few, and
every batch costs about the same. The same random generator state gives the
same batches, which keeps training repeatable and lets a resumed run redo an
epoch exactly.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Sequence

import torch

from mtcompare.data.subword import BOS_ID, EOS_ID, PAD_ID

logger = logging.getLogger(__name__)


@dataclass
class Batch:
    """Padded tensors for one teacher-forced training step."""

    src: torch.Tensor  # batch x src_len: source ids ending in EOS, padded
    src_lengths: torch.Tensor  # batch
    tgt_input: torch.Tensor  # batch x tgt_len: BOS + target ids, padded
    tgt_output: torch.Tensor  # batch x tgt_len: target ids + EOS, padded
    target_tokens: int  # non-padding tokens in tgt_output

    def to(self, device: torch.device) -> "Batch":
        return Batch(
            self.src.to(device),
            self.src_lengths.to(device),
            self.tgt_input.to(device),
            self.tgt_output.to(device),
            self.target_tokens,
        )


def filter_by_length(
    sources: Sequence[list[int]], targets: Sequence[list[int]], max_length: int
) -> list[int]:
    """Indices of pairs with both sides non-empty and at most ``max_length`` pieces."""
    kept = [
        index
        for index, (src, tgt) in enumerate(zip(sources, targets))
        if 0 < len(src) <= max_length and 0 < len(tgt) <= max_length
    ]
    skipped = len(sources) - len(kept)
    if skipped:
        logger.info(
            "skipped %s of %s training pairs that are empty or longer than %d pieces",
            f"{skipped:,}",
            f"{len(sources):,}",
            max_length,
        )
    return kept


def make_batches(
    indices: Sequence[int],
    sources: Sequence[list[int]],
    targets: Sequence[list[int]],
    batch_tokens: int,
    rng: random.Random,
    window_batches: int = 100,
) -> list[list[int]]:
    """Group pair indices into shuffled, length-bucketed batches.

    A batch's padded size, sentences x (longest side + 1), stays within
    ``batch_tokens``; a single pair longer than that makes a batch on its own.
    """
    order = list(indices)
    rng.shuffle(order)
    average_length = sum(_cost(sources, targets, i) for i in order) / max(len(order), 1)
    window = max(1, int(window_batches * batch_tokens / max(average_length, 1.0)))
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        bucket = sorted(
            order[start : start + window],
            key=lambda i: (len(targets[i]), len(sources[i])),
        )
        batches.extend(_cut(bucket, sources, targets, batch_tokens))
    rng.shuffle(batches)
    return batches


def _cost(
    sources: Sequence[list[int]], targets: Sequence[list[int]], index: int
) -> int:
    # +1 for the EOS (source, target output) or BOS (target input) symbol
    return max(len(sources[index]), len(targets[index])) + 1


def _cut(
    bucket: list[int],
    sources: Sequence[list[int]],
    targets: Sequence[list[int]],
    batch_tokens: int,
) -> list[list[int]]:
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in bucket:
        cost = _cost(sources, targets, index)
        if current and max(longest, cost) * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(index)
        longest = max(longest, cost)
    if current:
        batches.append(current)
    return batches


def collate(
    indices: Sequence[int], sources: Sequence[list[int]], targets: Sequence[list[int]]
) -> Batch:
    """Pad the chosen pairs into a :class:`Batch`."""
    src = pad([sources[i] + [EOS_ID] for i in indices])
    tgt_input = pad([[BOS_ID] + targets[i] for i in indices])
    tgt_output = pad([targets[i] + [EOS_ID] for i in indices])
    src_lengths = torch.tensor([len(sources[i]) + 1 for i in indices])
    target_tokens = sum(len(targets[i]) + 1 for i in indices)
    return Batch(src, src_lengths, tgt_input, tgt_output, target_tokens)


def pad(sequences: Sequence[list[int]]) -> torch.Tensor:
    """Right-pad id lists with PAD into a batch x longest tensor."""
    longest = max(len(sequence) for sequence in sequences)
    padded = torch.full((len(sequences), longest), PAD_ID, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        padded[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
    return padded
