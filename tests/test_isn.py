"""RFC 6528 initial sequence numbers: M + F(4-tuple, secret)."""

from __future__ import annotations

import pytest

from utcp.core.isn import IsnGenerator
from utcp.core.seq import sub

SECRET = bytes(range(16))
TUPLE = (("127.0.0.1", 9000), 49152, ("127.0.0.1", 9001), 7007)


def test_isn_deterministic_for_secret_and_time():
    assert IsnGenerator(SECRET)(*TUPLE, 12.5) == IsnGenerator(SECRET)(*TUPLE, 12.5)


def test_isn_is_32_bits():
    for now in (0.0, 1.0, 4294.967296, 1e6):
        assert 0 <= IsnGenerator(SECRET)(*TUPLE, now) < 2**32


@pytest.mark.parametrize("field, other", [
    (0, ("127.0.0.1", 9100)),
    (1, 49153),
    (2, ("127.0.0.2", 9001)),
    (3, 7008),
])
def test_isn_differs_by_four_tuple(field, other):
    gen = IsnGenerator(SECRET)
    changed = list(TUPLE)
    changed[field] = other
    assert gen(*changed, 3.0) != gen(*TUPLE, 3.0)


def test_isn_advances_one_per_microsecond():
    gen = IsnGenerator(SECRET)
    base = gen(*TUPLE, 100.0)
    assert sub(gen(*TUPLE, 100.000001), base) == 1
    assert sub(gen(*TUPLE, 100.001), base) == 1000
    assert sub(gen(*TUPLE, 101.0), base) == 1_000_000


def test_isn_wraps_with_time():
    # M wraps every 2**32 microseconds (about 71.6 minutes); the ISN stays 32-bit.
    gen = IsnGenerator(SECRET)
    assert gen(*TUPLE, 0.0) == gen(*TUPLE, 2**32 / 1_000_000)


def test_isn_secret_differs_per_generator():
    a, b = IsnGenerator(), IsnGenerator()
    tuples = [(("10.0.0.1", 1), port, ("10.0.0.2", 2), 80) for port in range(49152, 49160)]
    assert [a(*t, 0.0) for t in tuples] != [b(*t, 0.0) for t in tuples]


def test_isn_secret_changes_the_isn():
    assert IsnGenerator(SECRET)(*TUPLE, 0.0) != IsnGenerator(bytes(16))(*TUPLE, 0.0)


@pytest.mark.parametrize("secret", [b"", bytes(33)])
def test_isn_secret_length_checked(secret):
    with pytest.raises(ValueError):
        IsnGenerator(secret)


def test_isn_is_the_keyed_hash_of_the_four_tuple_plus_the_clock():
    # RFC 6528's ISN = M + F(4-tuple, secret), F a keyed BLAKE2s of the 4-tuple as
    # text: the same values whatever the generator remembers between calls, so a
    # seeded simulation draws the same ISNs as ever.
    import hashlib

    local, local_port, remote, remote_port = TUPLE
    f = hashlib.blake2s(f"{local!r}|{local_port}|{remote!r}|{remote_port}".encode(),
                        key=SECRET, digest_size=4).digest()
    expected = (12_500_000 + int.from_bytes(f, "big")) % 2**32
    gen = IsnGenerator(SECRET)
    assert gen(*TUPLE, 12.5) == expected
    for i in range(3000):  # (more addresses than it keeps the text of)
        gen(("10.0.0.1", i), 1, ("10.0.0.2", i), 2, 0.0)
    assert gen(*TUPLE, 12.5) == expected
