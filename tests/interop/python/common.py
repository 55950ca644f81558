"""Shared by the interop peer scripts: compression settings and the test
messages (the same list as crates/wsx/tests/interop.rs sends)."""

import os
import random

from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)

MODES = ("off", "default", "no-context-takeover")


def compression_kwargs(mode, server):
    """Keyword arguments of serve() / connect() for a --compression mode:
    off (compression=None), default (websockets' defaults: context takeover,
    a 12-bit window for the server, memLevel 5), or no-context-takeover
    (the same with no context takeover in both directions)."""
    if mode == "off":
        return {"compression": None}
    if mode == "default":
        return {"compression": "deflate"}
    if mode == "no-context-takeover":
        if server:
            factory = ServerPerMessageDeflateFactory(
                server_no_context_takeover=True,
                client_no_context_takeover=True,
                server_max_window_bits=12,
                client_max_window_bits=12,
                compress_settings={"memLevel": 5},
            )
        else:
            factory = ClientPerMessageDeflateFactory(
                server_no_context_takeover=True,
                client_no_context_takeover=True,
                compress_settings={"memLevel": 5},
            )
        return {"compression": None, "extensions": [factory]}
    raise SystemExit(f"unknown --compression {mode} ({' | '.join(MODES)})")


SIZES = (0, 1, 64 << 10, 16 << 20)
SENTENCE = "wsx interop: the quick brown fox jumps over the lazy dog, h\u00e9las \u2713 \u20ac 0123456789\n"
ALPHABET = "abZ 7\u00e9\u00df\u2713\u20ac\u4e2d\U0001F600\U00010348"


def text(size, rand):
    """Text of exactly `size` UTF-8 bytes: compressible (a repeated
    sentence) or not (random characters)."""
    if rand:
        rng = random.Random(os.urandom(8))
        chars, n = [], 0
        while n < size:
            c = rng.choice(ALPHABET)
            m = len(c.encode())
            if n + m > size:
                break
            chars.append(c)
            n += m
        s = "".join(chars)
    else:
        unit = len(SENTENCE.encode())
        s = SENTENCE * (size // unit)
        n = len(s.encode())
        for c in SENTENCE:
            m = len(c.encode())
            if n + m > size:
                break
            s += c
            n += m
    s += "x" * (size - len(s.encode()))
    assert len(s.encode()) == size
    return s


def binary(size, rand):
    """Binary of `size` bytes: compressible (a counter pattern) or random."""
    if rand:
        return os.urandom(size)
    return bytes((i >> 4) & 0xFF for i in range(size))


def messages():
    """The messages of one test run, in order: for each size a compressible
    text and a random binary message, then a random text and a compressible
    binary message of 64 KiB. Text is str, binary is bytes."""
    out = []
    for size in SIZES:
        out.append(text(size, False))
        out.append(binary(size, True))
    out.append(text(64 << 10, True))
    out.append(binary(64 << 10, False))
    return out
