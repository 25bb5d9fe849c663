"""Sequence-number arithmetic modulo 2**32 (RFC 9293 3.4), across the wrap."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from utcp.core import seq as sq

TOP = 2**32 - 1  # the last sequence number before the wrap

seqs = st.integers(0, TOP)
# Two numbers compare meaningfully only when less than 2**31 apart.
deltas = st.integers(-(2**31) + 1, 2**31 - 1)


def test_add_wraps_forward():
    assert sq.add(TOP, 1) == 0
    assert sq.add(TOP - 9, 20) == 10


def test_add_negative_wraps_backward():
    assert sq.add(0, -1) == TOP
    assert sq.add(5, -10) == TOP - 4


def test_sub_is_signed_distance_across_wrap():
    assert sq.sub(0, TOP) == 1
    assert sq.sub(TOP, 0) == -1
    assert sq.sub(10, TOP - 9) == 20
    assert sq.sub(TOP - 9, 10) == -20


def test_sub_half_space_is_negative():
    assert sq.sub(2**31, 0) == -(2**31)
    assert sq.sub(2**31 - 1, 0) == 2**31 - 1


def test_lt_across_wrap():
    assert sq.lt(TOP, 0)
    assert not sq.lt(0, TOP)
    assert not sq.lt(7, 7)


def test_le_across_wrap():
    assert sq.le(TOP, 0)
    assert sq.le(7, 7)
    assert not sq.le(0, TOP)


def test_gt_across_wrap():
    assert sq.gt(0, TOP)
    assert not sq.gt(TOP, 0)
    assert not sq.gt(7, 7)


def test_ge_across_wrap():
    assert sq.ge(0, TOP)
    assert sq.ge(7, 7)
    assert not sq.ge(TOP, 0)


def test_in_window_across_wrap():
    start = TOP - 9  # window of 20 covers TOP-9 .. 10
    assert sq.in_window(TOP - 9, start, 20)
    assert sq.in_window(TOP, start, 20)
    assert sq.in_window(0, start, 20)
    assert sq.in_window(9, start, 20)
    assert not sq.in_window(10, start, 20)
    assert not sq.in_window(TOP - 10, start, 20)


def test_in_window_empty():
    assert not sq.in_window(5, 5, 0)
    assert not sq.in_window(0, TOP, 0)


# Property tests against a model: b = a + d on the integers, then wrapped.


@given(seqs, deltas)
def test_sub_inverts_add(a, d):
    assert sq.sub(sq.add(a, d), a) == d


@given(seqs, deltas)
def test_add_matches_model(a, d):
    assert sq.add(a, d) == (a + d) % 2**32
    assert 0 <= sq.add(a, d) <= TOP


@given(seqs, deltas)
def test_comparisons_match_model(a, d):
    b = sq.add(a, d)
    assert sq.lt(a, b) == (d > 0)
    assert sq.le(a, b) == (d >= 0)
    assert sq.gt(a, b) == (d < 0)
    assert sq.ge(a, b) == (d <= 0)


@given(seqs, deltas)
def test_comparisons_are_consistent(a, d):
    b = sq.add(a, d)
    assert sq.lt(a, b) == sq.gt(b, a)
    assert sq.le(a, b) == sq.ge(b, a)
    assert sq.le(a, b) == (sq.lt(a, b) or a == b)
    assert sq.lt(a, b) != sq.ge(a, b)


@given(seqs, st.integers(0, 2**31 - 1), st.integers(-(2**31) + 1, 2**31 - 1))
def test_in_window_matches_model(start, size, k):
    x = sq.add(start, k)
    assert sq.in_window(x, start, size) == (0 <= k < size)
