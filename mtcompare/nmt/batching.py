"""Subword vocabularies, token-budget batches with length bucketing, sharding.

The pieces come from SentencePiece (:mod:`mtcompare.data.subword`, unigram
or BPE, of a configurable size), learned either separately per language or
jointly on both training sides (one vocabulary, so a name spelt alike in both
languages is split alike; Sennrich et al. 2016, section 3.2, "joint BPE").

Padding wastes computation: a batch costs as much as its longest sentence
times its number of sentences. So each epoch shuffles the training pairs,
cuts them into large windows, sorts every window by length and cuts it into
batches whose padded size (sentences x longest side) stays within a token
budget; the batches are then shuffled, so the model does not see lengths in
order. Short sentences make batches of many sentences, long ones few, and
every batch costs about the same; the share of padded positions that is
left is logged every epoch. The same random generator state gives the same
batches, which keeps training repeatable and lets a resumed run redo an epoch
exactly. Training pairs longer than the maximum length are left out, counted
in the log, rather than cut or allowed to exhaust memory.

With several processes (DistributedDataParallel), every process computes
the same epoch's batches from the same seed and takes every W-th of them
(W processes), so the processes see disjoint batches and take equally many
steps.
"""

from __future__ import annotations

import logging
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from mtcompare.data.subword import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SubwordModel,
    train_sentencepiece,
)
from mtcompare.errors import MtcError
from mtcompare.fileio import atomic_open

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


def train_subword_models(
    src_lines: Sequence[str],
    tgt_lines: Sequence[str],
    out_dir: Path,
    languages: tuple[str, str],
    vocab_size: int,
    subword_type: str,
    joint: bool,
    threads: int = 1,
) -> tuple[SubwordModel, SubwordModel]:
    """Learn the source and target SentencePiece models into ``out_dir``.

    Writes ``spm.{lang}.model`` (and ``.vocab``) for both languages. With
    ``joint`` one model of ``vocab_size`` pieces is learned from both sides
    and written under both names, so every reader of a model directory finds
    the files it expects.
    """
    src_lang, tgt_lang = languages
    if not joint:
        return (
            train_sentencepiece(
                src_lines,
                out_dir / f"spm.{src_lang}",
                vocab_size,
                subword_type,
                threads,
            ),
            train_sentencepiece(
                tgt_lines,
                out_dir / f"spm.{tgt_lang}",
                vocab_size,
                subword_type,
                threads,
            ),
        )
    shared = train_sentencepiece(
        list(src_lines) + list(tgt_lines),
        out_dir / f"spm.{src_lang}",
        vocab_size,
        subword_type,
        threads,
    )
    for suffix in (".model", ".vocab"):
        source = out_dir / f"spm.{src_lang}{suffix}"
        with atomic_open(out_dir / f"spm.{tgt_lang}{suffix}", "wb") as stream:
            with open(source, "rb") as original:
                shutil.copyfileobj(original, stream)
    logger.info(
        "one joint vocabulary of %s pieces for %s and %s",
        f"{shared.vocab_size:,}",
        src_lang,
        tgt_lang,
    )
    return shared, SubwordModel.load(out_dir / f"spm.{tgt_lang}.model")


def filter_by_length(
    sources: Sequence[list[int]], targets: Sequence[list[int]], max_length: int
) -> list[int]:
    """Indices of pairs with both sides non-empty and at most ``max_length`` pieces.

    The pairs left out are counted in the log: too long, and empty.
    """
    kept, too_long, empty = [], 0, 0
    for index, (src, tgt) in enumerate(zip(sources, targets)):
        if not src or not tgt:
            empty += 1
        elif len(src) > max_length or len(tgt) > max_length:
            too_long += 1
        else:
            kept.append(index)
    if too_long or empty:
        logger.info(
            "skipped %s of %s training pairs: %s longer than max_length %d pieces, "
            "%s with an empty side",
            f"{too_long + empty:,}",
            f"{len(sources):,}",
            f"{too_long:,}",
            max_length,
            f"{empty:,}",
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


def padding_share(
    batches: Sequence[Sequence[int]],
    sources: Sequence[list[int]],
    targets: Sequence[list[int]],
) -> tuple[float, float]:
    """Share of padding in the source and the target tensors of ``batches``.

    A batch's source tensor has sentences x (longest source + 1) positions
    (the +1 is the end symbol), of which the real pieces fill the lengths;
    the same for the target output.
    """
    shares = []
    for side in (sources, targets):
        padded = real = 0
        for batch in batches:
            lengths = [len(side[index]) + 1 for index in batch]
            padded += len(lengths) * max(lengths)
            real += sum(lengths)
        shares.append(1 - real / padded if padded else 0.0)
    return shares[0], shares[1]


def shard_batches(
    batches: Sequence[list[int]], rank: int, world_size: int
) -> list[list[int]]:
    """This process's share of an epoch: every ``world_size``-th batch from
    ``rank`` on, equally many for every process (the remainder is left out,
    so that no process waits for a step the others never take)."""
    usable = len(batches) // world_size * world_size
    if usable == 0:
        raise MtcError(
            f"an epoch has {len(batches)} batch(es), fewer than the {world_size} "
            "training processes; lower batch_tokens or start fewer processes"
        )
    return list(batches[rank:usable:world_size])


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
