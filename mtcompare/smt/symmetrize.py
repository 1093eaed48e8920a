"""Symmetrising two directional word alignments into one.

IBM models link each target word to at most one source word, so an alignment
trained source->target cannot express one target word translating several
source words, and the reverse model has the opposite blind spot. Och & Ney
(2003) and Koehn, Och & Marcu (2003, section 4.4) combine the two: the
intersection is precise but sparse, the union dense but noisy, and the grow
heuristics start from the intersection and add union points next to it.

This module follows the pseudo-code of Koehn (2010), "Statistical Machine
Translation", section 4.5.3, figure 4.10:

* grow-diag: start from the intersection; repeatedly visit the alignment
  points in grid order (source index, then target index) and, for each of
  its 8 neighbours (horizontal, vertical and diagonal) that lies in the union,
  add it if its source word or its target word is still unaligned; stop when a
  full pass adds nothing. A point added ahead of the one being visited is
  itself visited later in the same pass, as in a grid scan.
* final: afterwards visit the points of the forward alignment, then those of
  the backward alignment, each in grid order, and add a point if its source
  word or its target word is still unaligned.
* final-and: as final, but add the point only if both its source word and its
  target word are still unaligned.

Points are (source index, target index). ``forward`` is the source->target
model's alignment; ``backward`` is the target->source model's alignment,
already flipped to (source index, target index) by the caller.
"""

from __future__ import annotations

import heapq
from typing import Callable, Iterable

Alignment = set[tuple[int, int]]
Points = Iterable[tuple[int, int]]  # any collection of (source, target) points

# Koehn (2010), figure 4.10: the four horizontal/vertical neighbours, then the
# four diagonal ones, as (source offset, target offset).
NEIGHBOURS = ((-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


def intersection(forward: Points, backward: Points) -> Alignment:
    """Points in both alignments."""
    return set(forward) & set(backward)


def union(forward: Points, backward: Points) -> Alignment:
    """Points in either alignment."""
    return set(forward) | set(backward)


def grow_diag(forward: Points, backward: Points) -> Alignment:
    """The intersection grown into neighbouring union points (diagonals included)."""
    forward, backward = set(forward), set(backward)
    return _GrowingAlignment(forward & backward).grow(forward | backward).points


def grow_diag_final(forward: Points, backward: Points) -> Alignment:
    """grow-diag, then union points whose source or target word is unaligned."""
    return _grow_diag_then_final(forward, backward, both_unaligned=False)


def grow_diag_final_and(forward: Points, backward: Points) -> Alignment:
    """grow-diag, then union points whose source and target words are both unaligned."""
    return _grow_diag_then_final(forward, backward, both_unaligned=True)


def _grow_diag_then_final(forward: Points, backward: Points, both_unaligned: bool) -> Alignment:
    forward, backward = set(forward), set(backward)
    alignment = _GrowingAlignment(forward & backward).grow(forward | backward)
    alignment.add_final(forward, both_unaligned=both_unaligned)
    alignment.add_final(backward, both_unaligned=both_unaligned)
    return alignment.points


HEURISTICS: dict[str, Callable[[Alignment, Alignment], Alignment]] = {
    "intersection": intersection,
    "union": union,
    "grow-diag": grow_diag,
    "grow-diag-final": grow_diag_final,
    "grow-diag-final-and": grow_diag_final_and,
}


def symmetrize(
    forward: Points,
    backward: Points,
    heuristic: str = "grow-diag-final-and",
) -> Alignment:
    """Combine two directional alignments with the named heuristic."""
    try:
        combine = HEURISTICS[heuristic]
    except KeyError:
        raise ValueError(
            f"unknown symmetrisation heuristic {heuristic!r}; "
            f"valid: {', '.join(HEURISTICS)}"
        ) from None
    return combine(set(forward), set(backward))


class _GrowingAlignment:
    """An alignment being grown, with the sets of aligned source and target words."""

    def __init__(self, points: Alignment) -> None:
        self.points: Alignment = set()
        self.aligned_source: set[int] = set()
        self.aligned_target: set[int] = set()
        for point in points:
            self._add(point)

    def grow(self, union_points: Alignment) -> "_GrowingAlignment":
        """Koehn's GROW-DIAG: passes over the alignment until one adds no point."""
        added = True
        while added:
            added = self._grow_pass(union_points)
        return self

    def add_final(self, candidates: Alignment, both_unaligned: bool) -> None:
        """Koehn's FINAL (``both_unaligned=False``) or FINAL-AND (``True``)."""
        for point in sorted(candidates):
            if point in self.points:
                continue
            source_free = point[0] not in self.aligned_source
            target_free = point[1] not in self.aligned_target
            if (
                (source_free and target_free)
                if both_unaligned
                else (source_free or target_free)
            ):
                self._add(point)

    def _grow_pass(self, union_points: Alignment) -> bool:
        """One scan in grid order; True if it added a point."""
        added = False
        queue = sorted(self.points)  # a sorted list is a valid heap
        while queue:
            source_index, target_index = heapq.heappop(queue)
            for source_offset, target_offset in NEIGHBOURS:
                neighbour = (source_index + source_offset, target_index + target_offset)
                if neighbour not in union_points or neighbour in self.points:
                    continue
                if (
                    neighbour[0] not in self.aligned_source
                    or neighbour[1] not in self.aligned_target
                ):
                    self._add(neighbour)
                    added = True
                    if neighbour > (source_index, target_index):
                        heapq.heappush(queue, neighbour)
        return added

    def _add(self, point: tuple[int, int]) -> None:
        self.points.add(point)
        self.aligned_source.add(point[0])
        self.aligned_target.add(point[1])
