"""Fresh user and inference ids: uuid4().hex's format, from os.urandom read in bulk.

`uuid.uuid4()` makes one os.urandom system call per id, and an invocation of a new user
needs two. Here a block read once per 256 ids is cut into 256 ids at once, 16 bytes
each, which are then handed out one by one. The
bytes are still the kernel's (a user's id and inference id key their conversions, so
they must not be predictable from other ids, as a seeded generator's would be), and a
block is never shared: a forked child (`abtest serve --workers`) and an environment
restored from a snapshot (Lambda SnapStart, `reset()` in its restore hook) start with
no block of their own, never with one a sibling uses too.
"""

from __future__ import annotations

import os
from collections import deque

_BLOCK_BYTES = 16 * 256
# uuid4's fixed bits (RFC 9562 section 5.4): version 4, variant 10.
_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_SET = (0x4000 << 64) | (0x8000 << 48)

# Ids cut from the last block and not handed out yet. popleft and extend are atomic (the
# GIL): threads take distinct ids without a lock, and two threads refilling at once each
# add a block of their own.
_ids: deque[str] = deque()


def new_id() -> str:
    """32 lowercase hex digits, as uuid.uuid4().hex: 122 random bits."""
    try:
        return _ids.popleft()
    except IndexError:
        block = os.urandom(_BLOCK_BYTES)
        fresh = [
            f"{(int.from_bytes(block[start : start + 16], 'big') & _CLEAR) | _SET:032x}"
            for start in range(0, _BLOCK_BYTES, 16)
        ]
        _ids.extend(fresh[1:])
        return fresh[0]


def reset() -> None:
    """Forget the block: the next id reads a new one (after a fork or a snapshot restore)."""
    _ids.clear()


os.register_at_fork(after_in_child=reset)
