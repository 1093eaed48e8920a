"""Train, dev and test splits: a fixed rule for the Bible, a seeded one elsewhere.

The Bible is split by whole chapters, so that no test verse has its neighbours
in training: the chapter "Book c" goes to test when the SHA-1 of the UTF-8
string ``"Book c"``, read as one integer, is 0 modulo 25, to dev when it is 1,
and to train otherwise (about 4 % each for dev and test). The rule depends on
nothing but the reference, so other systems can reproduce the same split.

Other corpora have no structure to split by; :func:`seeded_split` draws dev
and test segments at random with a fixed seed.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from typing import Sequence

from mtcompare.data.corpus import Pair
from mtcompare.errors import MtcError

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
_CHAPTERS_PER_BUCKET = 25
_REFERENCE = re.compile(r"^(?P<book>.+) (?P<chapter>\d+):(?P<verse>\d+)$")


def bible_split(ref: str) -> str:
    """The split of a verse reference: ``"Genesis 6:1"`` -> ``"test"``.

    The book name may contain spaces ("Revelation of John", "I Samuel"), so
    the reference is read from the right as ``book chapter:verse``.
    """
    match = _REFERENCE.match(ref.strip())
    if match is None:
        raise MtcError(f"verse reference {ref!r} is not of the form "
                       "'Book chapter:verse' (e.g. 'Genesis 6:1'); check the .ref file")
    chapter = f"{match['book']} {int(match['chapter'])}"
    bucket = int(hashlib.sha1(chapter.encode("utf-8")).hexdigest(), 16)
    bucket %= _CHAPTERS_PER_BUCKET
    if bucket == 0:
        return "test"
    if bucket == 1:
        return "dev"
    return "train"


def seeded_split(n: int, dev_size: int, test_size: int, seed: int) -> list[str]:
    """A split label for each of ``n`` segments: ``dev_size`` dev and
    ``test_size`` test segments drawn at random with ``seed``, the rest train."""
    if min(n, dev_size, test_size) < 0 or dev_size + test_size > n:
        raise MtcError(
            f"cannot take {dev_size:,} dev and {test_size:,} test segments from "
            f"{n:,}; choose sizes of 0 or more that add up to at most {n:,}"
        )
    order = list(range(n))
    random.Random(seed).shuffle(order)
    labels = ["train"] * n
    for index in order[:dev_size]:
        labels[index] = "dev"
    for index in order[dev_size : dev_size + test_size]:
        labels[index] = "test"
    return labels


def split_pairs(pairs: Sequence[Pair], labels: Sequence[str]) -> dict[str, list[Pair]]:
    """Pairs grouped by label, each group in corpus order; all three splits present."""
    if len(pairs) != len(labels):
        raise ValueError(f"split_pairs needs one label per pair: {len(pairs)} pairs, "
                         f"{len(labels)} labels")
    groups: dict[str, list[Pair]] = {split: [] for split in SPLITS}
    for pair, label in zip(pairs, labels):
        if label not in groups:
            valid = ", ".join(SPLITS)
            raise ValueError(f"unknown split label {label!r}; valid: {valid}")
        groups[label].append(pair)
    logger.info("split %s pairs: %s", f"{len(pairs):,}",
                ", ".join(f"{split} {len(group):,}" for split, group in groups.items()))
    return groups
