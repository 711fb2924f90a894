"""Reads one string from a GGUF file's metadata (its chat template) without loading the model."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

_STRING, _ARRAY = 8, 9
# Byte sizes of GGUF's fixed-size value types, by type id.
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def _u32(f: BinaryIO) -> int:
    return int(struct.unpack("<I", f.read(4))[0])


def _u64(f: BinaryIO) -> int:
    return int(struct.unpack("<Q", f.read(8))[0])


def _skip(f: BinaryIO, kind: int) -> None:
    if kind == _STRING:
        f.seek(_u64(f), 1)
    elif kind == _ARRAY:
        item, count = _u32(f), _u64(f)
        if item in _FIXED:
            f.seek(_FIXED[item] * count, 1)
        else:
            for _ in range(count):
                _skip(f, item)
    else:
        f.seek(_FIXED[kind], 1)


def metadata_string(path: Path, key: str) -> str | None:
    """The string value of `key` in the file's metadata, or None where it has none."""
    with path.open("rb") as f:
        if f.read(4) != b"GGUF" or _u32(f) < 2:
            return None
        _u64(f)  # tensor count
        for _ in range(_u64(f)):
            name = f.read(_u64(f)).decode("utf-8", errors="replace")
            kind = _u32(f)
            if name == key and kind == _STRING:
                return f.read(_u64(f)).decode("utf-8", errors="replace")
            _skip(f, kind)
    return None
