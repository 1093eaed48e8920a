"""Batching for NMT training: the length filter and its count, token budgets,
length bucketing and its padding share, shards for several processes, and
joint or separate subword vocabularies."""

import logging
import os
import random
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch

from mtcompare.data.subword import UNK_ID
from mtcompare.errors import MtcError
from mtcompare.nmt.batching import (
    filter_by_length,
    make_batches,
    padding_share,
    shard_batches,
    train_subword_models,
)

torch.set_num_threads(1)


def test_over_long_and_empty_pairs_are_skipped_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sources = [[5, 6], [5] * 4, [], [5, 6, 7], [5], [5, 6]]
    targets = [[7], [7], [7, 8], [7] * 5, [7, 8, 9], []]
    # max_length 3: pair 1 (source of 4) and pair 3 (target of 5) are too long,
    # pairs 2 and 5 have an empty side; pairs 0 and 4 stay (4 is exactly 3 long)
    with caplog.at_level(logging.INFO, logger="mtcompare.nmt.batching"):
        kept = filter_by_length(sources, targets, max_length=3)
    assert kept == [0, 4]
    assert (
        "skipped 4 of 6 training pairs: 2 longer than max_length 3 pieces, "
        "2 with an empty side" in caplog.text
    )


def test_nothing_skipped_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="mtcompare.nmt.batching"):
        assert filter_by_length([[5]], [[6]], max_length=1) == [0]
    assert "skipped" not in caplog.text


def _random_corpus(count: int, seed: int) -> tuple[list[list[int]], list[list[int]]]:
    rng = random.Random(seed)
    sources = [[5] * rng.randint(1, 40) for _ in range(count)]
    targets = [[6] * max(1, len(src) + rng.randint(-3, 3)) for src in sources]
    return sources, targets


def test_batches_keep_the_token_budget_and_hold_every_pair_once() -> None:
    sources, targets = _random_corpus(500, seed=3)
    sources[7] = [5] * 300  # a pair over the budget on its own
    budget = 200
    batches = make_batches(range(500), sources, targets, budget, random.Random(1))
    assert sorted(i for batch in batches for i in batch) == list(range(500))
    for batch in batches:
        # padded size: sentences x (longest side + 1 for the end symbol)
        longest = max(max(len(sources[i]), len(targets[i])) + 1 for i in batch)
        assert len(batch) * longest <= budget or batch == [7]
    assert [7] in batches


def test_same_generator_state_gives_the_same_batches() -> None:
    sources, targets = _random_corpus(300, seed=4)
    first = make_batches(range(300), sources, targets, 150, random.Random(9))
    second = make_batches(range(300), sources, targets, 150, random.Random(9))
    other = make_batches(range(300), sources, targets, 150, random.Random(10))
    assert first == second and first != other


def test_padding_share_by_hand() -> None:
    sources = [[1, 2, 3], [4]]
    targets = [[5], [6, 7]]
    # one batch; with the end symbol the sources are 4 and 2 long: 2 x 4 = 8
    # positions of which 6 are real, so 2/8 is padding; the targets 2 and 3:
    # 2 x 3 = 6 positions, 5 real, 1/6 padding
    source_share, target_share = padding_share([[0, 1]], sources, targets)
    assert source_share == pytest.approx(2 / 8)
    assert target_share == pytest.approx(1 / 6)
    # each pair alone: no padding at all
    assert padding_share([[0], [1]], sources, targets) == (0.0, 0.0)


def test_length_bucketing_keeps_padding_far_below_unsorted_batches() -> None:
    sources, targets = _random_corpus(2000, seed=5)
    batches = make_batches(range(2000), sources, targets, 400, random.Random(2))
    # the same batch sizes filled in shuffled order, without sorting by length
    order = list(range(2000))
    random.Random(2).shuffle(order)
    unsorted, position = [], 0
    for batch in batches:
        unsorted.append(order[position : position + len(batch)])
        position += len(batch)
    bucketed_share = padding_share(batches, sources, targets)[1]
    unsorted_share = padding_share(unsorted, sources, targets)[1]
    assert bucketed_share < 0.1 < 0.3 < unsorted_share


def test_shards_are_disjoint_equally_long_and_leave_out_only_the_remainder() -> None:
    batches = [[index] for index in range(7)]
    shards = [shard_batches(batches, rank, 3) for rank in range(3)]
    assert [len(shard) for shard in shards] == [2, 2, 2]
    assert sorted(batch[0] for shard in shards for batch in shard) == list(range(6))
    assert shard_batches(batches, 0, 1) == batches
    with pytest.raises(MtcError, match="fewer than the 8 training processes"):
        shard_batches(batches, 0, 8)


SPANISH = ["año niño señor", "mañana pequeño", "el niño y el señor"] * 5
ENGLISH = ["year child lord", "tomorrow small", "the child and the lord"] * 5


def test_joint_vocabulary_is_one_model_for_both_languages(tmp_path: Path) -> None:
    source, target = train_subword_models(
        SPANISH, ENGLISH, tmp_path, ("es", "en"), 60, "unigram", joint=True
    )
    assert (tmp_path / "spm.es.model").read_bytes() == (
        tmp_path / "spm.en.model"
    ).read_bytes()
    # the joint pieces cover the letters of both sides: "w" is English only
    assert UNK_ID not in source.encode_ids("tomorrow")
    assert source.encode_ids("mañana") == target.encode_ids("mañana")


def test_separate_vocabularies_know_only_their_own_side(tmp_path: Path) -> None:
    source, target = train_subword_models(
        SPANISH, ENGLISH, tmp_path, ("es", "en"), 40, "bpe", joint=False
    )
    assert (tmp_path / "spm.es.model").read_bytes() != (
        tmp_path / "spm.en.model"
    ).read_bytes()
    assert UNK_ID in source.encode_ids("tomorrow")  # no "w" in the Spanish text
    assert UNK_ID in target.encode_ids("año")  # no "ñ" in the English text
    assert UNK_ID not in target.encode_ids("tomorrow")
