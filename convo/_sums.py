"""Running sums over a text for :mod:`convo._measure`: with numpy when it is installed, else in
pure Python. Both give the same numbers (tests/test_chunking.py checks), so chunks are the same;
numpy is only faster (the ``fast`` extra).

- :func:`token_starts`: the byte offset where each whole-text token starts, one tiktoken pass.
- :func:`char_sums`: for dense non-Latin text, each character's byte offset and the CJK
  characters before it.
- :func:`first_cjk`: the lowest code point that ``offline_counter.CJK`` matches (a cheap pre-check).

Each answer is a ``memoryview`` of machine integers: indexing it gives a plain int, and
``bisect`` works on it, whichever way it was built.
"""

from __future__ import annotations

import functools
from array import array
from itertools import accumulate
from types import ModuleType
from typing import Any

from .offline_counter import CJK, encoding

__all__ = ["char_sums", "first_cjk", "numpy_or_none", "token_starts"]


@functools.cache
def numpy_or_none() -> ModuleType | None:
    """numpy, or None when it is not installed (then the pure-Python path is used)."""
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def _np(use_numpy: bool | None) -> Any:
    if use_numpy is False:
        return None
    np = numpy_or_none()
    if np is None and use_numpy:
        raise ImportError("numpy is not installed: pip install 'convo[fast]'")
    return np


def token_starts(text: str, use_numpy: bool | None = None) -> tuple[int, memoryview]:
    """(number of tokens, starts): ``starts[t]`` is where whole-text token t starts, in bytes.

    ``starts[ntok]`` is the text's size in UTF-8 bytes. ``use_numpy``: None for numpy when
    installed; False or True to choose (tests compare the two).
    """
    enc = encoding()
    np = _np(use_numpy)
    if np is None:
        lengths = _token_lengths_list()
        tokens = enc.encode_ordinary(text)
        return len(tokens), _memory(accumulate((lengths[t] for t in tokens), initial=0), 4 * len(text))
    if hasattr(enc, "encode_to_numpy"):  # tiktoken >= 0.9: == encode_ordinary, without a list
        ids = enc.encode_to_numpy(text, disallowed_special=())
    else:
        ids = np.array(enc.encode_ordinary(text), np.uint32)
    return len(ids), _np_running_sum(np, _token_lengths_array(np).take(ids), 4 * len(text))


def char_sums(text: str, use_numpy: bool | None = None) -> tuple[memoryview, memoryview]:
    """Running sums over the characters of ``text``: UTF-8 bytes, and CJK characters."""
    np = _np(use_numpy)
    if np is None:
        table = _cjk_bytes()
        sizes = (1 + (o >= 0x80) + (o >= 0x800) + (o >= 0x10000) for o in map(ord, text))
        cjk = (table[o] if o < 0x10000 else CJK.match(chr(o)) is not None for o in map(ord, text))
        return (_memory(accumulate(sizes, initial=0), 4 * len(text)),
                _memory(accumulate(cjk, initial=0), len(text)))
    cp = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    size = 1 + (cp >= 0x80).astype(np.uint8) + (cp >= 0x800) + (cp >= 0x10000)
    flags = np.frombuffer(_cjk_bytes(), np.uint8).astype(bool).take(np.minimum(cp, 0xFFFF))
    for high in np.unique(cp[cp > 0xFFFF]):  # rare: emoji, historic scripts, CJK extensions
        flags[cp == high] = CJK.match(chr(high)) is not None
    return _np_running_sum(np, size, 4 * len(text)), _np_running_sum(np, flags, len(text))


@functools.cache
def first_cjk() -> int:
    """The lowest code point that ``offline_counter.CJK`` matches."""
    return _cjk_bytes().index(1)


# -- tables, built once ---------------------------------------------------------------------------


@functools.cache
def _token_lengths_list() -> bytes:
    """Length in bytes of every token of the encoding (0 for unused ids); the longest is 128."""
    enc = encoding()
    size = enc.max_token_value + 1
    lengths = bytearray(size)
    step = 4096
    for lo in range(0, size, step):
        ids = list(range(lo, min(lo + step, size)))
        try:
            lengths[lo : lo + len(ids)] = bytes(len(b) for b in enc.decode_tokens_bytes(ids))
        except KeyError:  # a block with unused ids (near the special tokens): one at a time
            for i in ids:
                try:
                    lengths[i] = len(enc.decode_single_token_bytes(i))
                except KeyError:
                    pass
    return bytes(lengths)


@functools.cache
def _token_lengths_array(np: Any) -> Any:
    return np.frombuffer(_token_lengths_list(), np.uint8)


@functools.cache
def _cjk_bytes() -> bytes:
    """1 for each code point of the Basic Multilingual Plane that ``offline_counter.CJK`` matches, else 0."""
    table = bytearray(0x10000)
    for m in CJK.finditer("".join(map(chr, range(0x10000)))):
        table[m.start()] = 1
    return bytes(table)


def _memory(values: Any, bound: int) -> memoryview:
    """A memoryview of the ints ``values``, 32-bit when every sum stays under ``bound``."""
    return memoryview(array("i" if bound < 2**31 else "q", values))


def _np_running_sum(np: Any, values: Any, bound: int) -> memoryview:
    """[0, v0, v0 + v1, ...] as a memoryview (reading one number is several times faster than
    from the numpy array: a plain int, no numpy scalar)."""
    out = np.empty(len(values) + 1, np.int32 if bound < 2**31 else np.int64)  # int32 sums several times faster
    out[0] = 0
    np.cumsum(values, dtype=out.dtype, out=out[1:])
    return memoryview(out)
