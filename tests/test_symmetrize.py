"""Symmetrisation heuristics on alignment matrices worked by hand (Koehn 2010)."""

from __future__ import annotations

import random

import pytest

from mtcompare.smt.symmetrize import (
    grow_diag,
    grow_diag_final,
    grow_diag_final_and,
    intersection,
    symmetrize,
    union,
)

# Rows are source words 0-4, columns target words 0-5.
# F = forward (source->target model), B = backward (target->source, flipped),
# X = both.
#
#        0  1  2  3  4  5
#   0    X  .  .  .  F  .
#   1    .  X  F  .  .  .
#   2    .  .  B  .  .  .
#   3    .  .  .  X  .  .
#   4    .  B  .  .  .  F
#
# grow-diag starts from X = {(0,0), (1,1), (3,3)} and scans it in order:
#   (1,1): neighbour (1,2) is in the union, target 2 unaligned -> add;
#          neighbour (2,2) is in the union, source 2 unaligned  -> add.
#   (0,4), (4,5) and (4,1) touch no alignment point, so they are not grown.
# final, forward points first: (0,4) target 4 unaligned -> add;
#   (4,5) source 4 unaligned -> add; then backward: (4,1) source 4 and
#   target 1 both aligned now -> skip.
# final-and: (0,4) source 0 aligned -> skip; (4,5) both unaligned -> add;
#   (4,1) source 4 aligned -> skip.
FORWARD = {(0, 0), (1, 1), (1, 2), (3, 3), (0, 4), (4, 5)}
BACKWARD = {(0, 0), (1, 1), (2, 2), (3, 3), (4, 1)}
INTERSECTION = {(0, 0), (1, 1), (3, 3)}
GROW_DIAG = INTERSECTION | {(1, 2), (2, 2)}


def test_intersection_and_union() -> None:
    assert intersection(FORWARD, BACKWARD) == INTERSECTION
    assert union(FORWARD, BACKWARD) == FORWARD | BACKWARD


def test_grow_diag_adds_neighbours_with_an_unaligned_word() -> None:
    assert grow_diag(FORWARD, BACKWARD) == GROW_DIAG


def test_grow_diag_final_adds_union_points_with_an_unaligned_word() -> None:
    assert grow_diag_final(FORWARD, BACKWARD) == GROW_DIAG | {(0, 4), (4, 5)}


def test_grow_diag_final_and_needs_both_words_unaligned() -> None:
    assert grow_diag_final_and(FORWARD, BACKWARD) == GROW_DIAG | {(4, 5)}


def test_grow_diag_repeats_passes_until_nothing_changes() -> None:
    """A diagonal grown backwards: each pass adds one point behind the scan.

            0  1  2  3
        0   F  .  .  .
        1   .  B  .  .
        2   .  .  F  .
        3   .  .  .  X

    Pass 1 visits (3,3) and adds (2,2); (2,2) lies before (3,3) in grid
    order, so pass 2 visits it and adds (1,1); pass 3 adds (0,0).
    """
    forward = {(0, 0), (2, 2), (3, 3)}
    backward = {(1, 1), (3, 3)}

    assert grow_diag(forward, backward) == {(0, 0), (1, 1), (2, 2), (3, 3)}


def test_grow_diag_does_not_add_a_neighbour_whose_words_are_both_aligned() -> None:
    """(0,1) is next to (0,0) but source 0 and target 1 are aligned already.

        0  1
    0   X  F
    1   .  X
    """
    assert grow_diag({(0, 0), (0, 1), (1, 1)}, {(0, 0), (1, 1)}) == {(0, 0), (1, 1)}


def test_symmetrize_dispatches_by_name() -> None:
    assert symmetrize(FORWARD, BACKWARD) == grow_diag_final_and(FORWARD, BACKWARD)
    assert symmetrize(FORWARD, BACKWARD, "grow-diag") == GROW_DIAG
    assert symmetrize(FORWARD, BACKWARD, "intersection") == INTERSECTION


def test_unknown_heuristic_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="grow-diag-final-and") as error:
        symmetrize(FORWARD, BACKWARD, "grow-diagonal")
    assert "intersection" in str(error.value) and "'grow-diagonal'" in str(error.value)


def _random_directional_alignments(generator: random.Random):
    """A forward alignment (one source per target) and a backward one, flipped."""
    source_length, target_length = generator.randint(1, 8), generator.randint(1, 8)
    forward = {
        (generator.randrange(source_length), target_index)
        for target_index in range(target_length)
        if generator.random() < 0.8
    }
    backward = {
        (source_index, generator.randrange(target_length))
        for source_index in range(source_length)
        if generator.random() < 0.8
    }
    return forward, backward


def test_heuristics_lie_between_intersection_and_union() -> None:
    generator = random.Random(7)
    for _ in range(300):
        forward, backward = _random_directional_alignments(generator)
        both, either = forward & backward, forward | backward
        grown = grow_diag(forward, backward)
        final = grow_diag_final(forward, backward)
        final_and = grow_diag_final_and(forward, backward)

        assert both <= grown <= final <= either
        assert grown <= final_and <= either
        # final-and only adds points whose row and column are otherwise empty
        for source_index, target_index in final_and - grown:
            assert [s for s, _ in final_and].count(source_index) == 1
            assert [t for _, t in final_and].count(target_index) == 1


def test_heuristics_do_not_depend_on_input_order_or_type() -> None:
    forward_list = sorted(FORWARD, reverse=True)
    assert grow_diag_final_and(forward_list, list(BACKWARD)) == GROW_DIAG | {(4, 5)}
