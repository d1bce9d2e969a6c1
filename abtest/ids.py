"""Fresh user and inference ids: uuid4().hex's format, from os.urandom read in bulk.

`uuid.uuid4()` makes one os.urandom system call per id, and an invocation of a new user
needs two. Here 16 bytes at a time are cut from a block read once per 256 ids. The
bytes are still the kernel's (a user's id and inference id key their conversions, so
they must not be predictable from other ids, as a seeded generator's would be), and a
block is never shared: a forked child (`abtest serve --workers`) and an environment
restored from a snapshot (Lambda SnapStart, `reset()` in its restore hook) start with
no block of their own, never with one a sibling uses too.
"""

from __future__ import annotations

import os
import threading

_BLOCK_BYTES = 16 * 256
# uuid4's fixed bits (RFC 9562 section 5.4): version 4, variant 10.
_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_SET = (0x4000 << 64) | (0x8000 << 48)

_lock = threading.Lock()
_block = b""
_taken = 0


def new_id() -> str:
    """32 lowercase hex digits, as uuid.uuid4().hex: 122 random bits."""
    global _block, _taken
    with _lock:
        if _taken >= len(_block):
            _block, _taken = os.urandom(_BLOCK_BYTES), 0
        start = _taken
        _taken += 16
        raw = _block[start : start + 16]
    return f"{(int.from_bytes(raw, 'big') & _CLEAR) | _SET:032x}"


def reset() -> None:
    """Forget the block: the next id reads a new one (after a fork or a snapshot restore)."""
    global _block, _taken, _lock
    _block, _taken = b"", 0
    _lock = threading.Lock()  # a fork may have copied it held by another thread


os.register_at_fork(after_in_child=reset)
