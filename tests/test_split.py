"""The fixed Bible split rule and the seeded split for other corpora."""

import pytest

from mtcompare.data.corpus import Pair
from mtcompare.data.split import bible_split, seeded_split, split_pairs
from mtcompare.errors import MtcError

# Worked out once with `printf '%s' "Genesis 6" | sha1sum` and `bc` (hex % 0x19),
# independently of Python's hashlib.
HAND_CHECKED = {
    "Genesis 1:1": "train",  # sha1 % 25 == 12
    "Genesis 2:7": "train",  # 11
    "Genesis 6:1": "test",  # 0
    "Genesis 6:22": "test",  # same chapter, same split
    "Genesis 20:1": "dev",  # 1
    "I Kings 4:1": "test",  # 0
    "I Corinthians 7:3": "test",  # 0
    "Song of Solomon 7:1": "dev",  # 1
    "Revelation of John 2:1": "dev",  # 1
    "Revelation of John 22:21": "train",  # 20
}


@pytest.mark.parametrize("ref, expected", sorted(HAND_CHECKED.items()))
def test_bible_split_matches_hand_checked_chapters(ref, expected):
    assert bible_split(ref) == expected


def test_bible_split_rejects_a_reference_without_chapter_and_verse():
    with pytest.raises(MtcError, match="Book chapter:verse"):
        bible_split("Genesis")


def test_seeded_split_gives_the_requested_sizes():
    labels = seeded_split(100, dev_size=7, test_size=5, seed=1)
    assert len(labels) == 100
    assert labels.count("dev") == 7
    assert labels.count("test") == 5
    assert labels.count("train") == 88


def test_seeded_split_is_deterministic_for_a_seed_and_differs_across_seeds():
    assert seeded_split(200, 20, 20, seed=3) == seeded_split(200, 20, 20, seed=3)
    assert seeded_split(200, 20, 20, seed=3) != seeded_split(200, 20, 20, seed=4)


def test_seeded_split_rejects_sizes_larger_than_the_corpus():
    with pytest.raises(MtcError, match="cannot take"):
        seeded_split(10, dev_size=6, test_size=5, seed=0)


def test_split_pairs_groups_in_order_with_every_split_present():
    pairs = [Pair(f"s{i}", f"t{i}") for i in range(4)]
    groups = split_pairs(pairs, ["train", "test", "train", "test"])
    assert groups == {
        "train": [pairs[0], pairs[2]],
        "dev": [],
        "test": [pairs[1], pairs[3]],
    }
