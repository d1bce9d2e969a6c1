"""Fresh user and inference ids: uuid4's format, unique, never shared with a forked worker."""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor

from abtest import ids


def test_ids_have_uuid4_hex_format() -> None:
    for _ in range(2000):  # several blocks
        text = ids.new_id()
        parsed = uuid.UUID(hex=text)
        assert parsed.hex == text  # 32 lowercase hex digits
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_ids_are_unique_across_threads() -> None:
    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(lambda _: [ids.new_id() for _ in range(5000)], range(8)))
    every = [i for batch in batches for i in batch]
    assert len(set(every)) == len(every)


def test_a_forked_child_never_continues_the_parents_block() -> None:
    """A worker forked mid-block must not hand out the ids its parent hands out next."""
    ids.new_id()  # the parent holds a block, most of it unused
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        try:
            os.write(write, "".join(ids.new_id() for _ in range(50)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        child = pipe.read().decode()
    os.waitpid(pid, 0)
    child_ids = {child[i : i + 32] for i in range(0, len(child), 32)}
    parent_ids = {ids.new_id() for _ in range(50)}
    assert len(child_ids) == 50
    assert not child_ids & parent_ids
