"""S3EventArchive on moto S3: plain and gzip objects, streaming, rejected lines, event keys."""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib

import boto3
import pytest

from abtest.adapters import s3 as s3_adapter
from abtest.adapters.s3 import S3EventArchive, object_keys_from_s3_event
from abtest.adapters.sqlite import SqliteStore
from abtest.aggregation import aggregate
from abtest.errors import NotFoundError
from abtest.events import encode, invocation_event, split_lines
from abtest.records import EndpointConfig, RejectedLine, VariantConfig

BUCKET = "abtest-events-bucket"
KEY = "2026/01/02/03/abtest-events-1-2026-01-02-03-04-05-abc"  # no suffix to go by


@pytest.fixture
def s3(fake_aws):
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def archive(s3):
    return S3EventArchive(BUCKET, client=s3)


def read_lines(archive: S3EventArchive, key: str) -> list[bytes]:
    """The non-blank lines of the archive's blocks; also checks blocks end at line ends."""
    blocks = list(archive.read_blocks(key))
    assert all(block.endswith(b"\n") for block in blocks[:-1])
    return [line for block in blocks for line in split_lines(block) if line.strip()]


def _lines(n: int, start: int = 0) -> list[bytes]:
    return [
        json.dumps({"type": "invocation", "user_id": f"user-{i}", "propensity": 0.5}).encode()
        for i in range(start, start + n)
    ]


def test_plain_object_lines_without_line_ends_and_blank_lines(s3, archive):
    lines = _lines(3)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=lines[0] + b"\n\n" + lines[1] + b"\n  \n" + lines[2])
    assert read_lines(archive, KEY) == lines


def test_gzip_object_is_recognised_by_its_bytes_not_its_key(s3, archive):
    lines = _lines(100)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=gzip.compress(b"\n".join(lines) + b"\n"))
    assert read_lines(archive, KEY) == lines


def test_a_plain_object_named_gz_is_read_as_plain(s3, archive):
    lines = _lines(2)
    s3.put_object(Bucket=BUCKET, Key=f"{KEY}.gz", Body=b"\n".join(lines))
    assert read_lines(archive, f"{KEY}.gz") == lines


def test_concatenated_gzip_members_are_all_read(s3, archive):
    first, second = _lines(5), _lines(5, start=5)
    body = gzip.compress(b"\n".join(first) + b"\n") + gzip.compress(b"\n".join(second) + b"\n")
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=body)
    assert read_lines(archive, KEY) == first + second


def _events(n: int) -> list[bytes]:
    return [
        encode(
            invocation_event(
                now=1_700_000_000 + i,
                endpoint_name="reviews-dev",
                variant_name="A",
                user_id=f"user-{i}",
                inference_id=f"inference-{i}",
                strategy="ThompsonSampling",
                propensity=0.5,
                assignment="new",
            )
        )
        for i in range(n)
    ]


def test_a_truncated_gzip_object_counts_every_whole_line_before_the_cut(s3, archive, tmp_path):
    store = SqliteStore(tmp_path / "abtest.sqlite3")
    store.register_endpoint(EndpointConfig("reviews-dev", "UCB1", {}, 0, (VariantConfig("A"),)), 0)
    lines = _events(20_000)
    body = gzip.compress(b"".join(lines))
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=body[: len(body) // 2])

    result = aggregate(store, archive, KEY, 0)

    counted = store.get_endpoint("reviews-dev").variants[0].counts.invocation_count
    assert result.applied
    assert 0 < counted == result.events < len(lines)
    assert result.rejected == 1
    rejected = result.first_rejected
    assert rejected.line_number == counted + 1
    assert rejected.reason.startswith("object damaged: gzip object ended")
    kept = s3.get_object(Bucket=BUCKET, Key=f"rejected/{KEY}.jsonl")["Body"].read()
    assert json.loads(kept)["line_number"] == counted + 1
    store.close()


def test_a_corrupt_gzip_object_fails_whole_for_a_person_to_look_at(s3, archive):
    body = gzip.compress(b"".join(_events(20_000)))
    cut = len(body) // 2
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=body[:cut] + b"\xff" * 64 + body[cut + 64 :])

    with pytest.raises(zlib.error):
        read_lines(archive, KEY)


def test_an_empty_object_has_no_lines(s3, archive):
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"")
    assert read_lines(archive, KEY) == []


def test_a_missing_object_is_not_found(archive):
    with pytest.raises(NotFoundError, match="no-such-key"):
        read_lines(archive, "no-such-key")


@pytest.mark.slow(seconds=4)  # 50 MB of events, gzipped, through moto
def test_a_large_gzip_object_is_streamed_in_bounded_memory(s3, archive):
    # GIVEN a gzip object of about 50 MB of events once decompressed
    template = (
        '{"type":"invocation","timestamp":%d.25,"endpoint_name":"reviews","variant_name":'
        '"Challenger1","user_id":"user-%d","inference_id":"%032x","strategy":'
        '"ThompsonSampling","propensity":0.%d}'
    )
    count = 300_000
    raw = "\n".join(template % (1_700_000_000 + i, i, i * 7919, i % 97) for i in range(count))
    plain = raw.encode()
    del raw
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=gzip.compress(plain, compresslevel=1))
    size = len(plain)
    first, last = plain[: plain.index(b"\n")], plain[plain.rindex(b"\n") + 1 :]
    del plain
    assert size > 50_000_000
    # WHEN its lines are read one at a time
    tracemalloc.start()
    try:
        n = 0
        seen_first = seen_last = None
        for line in (ln for block in archive.read_blocks(KEY) for ln in split_lines(block)):
            if n == 0:
                seen_first = line
            seen_last = line
            n += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # THEN every line arrives intact and memory stays far below the object's size
    assert n == count
    assert (seen_first, seen_last) == (first, last)
    assert peak < size / 3, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB object"


def keep(archive: S3EventArchive, lines) -> None:
    with archive.open_rejected(KEY) as rejected:
        for line in lines:
            rejected.write(line)


def test_rejected_lines_are_kept_beside_the_object(s3, archive):
    keep(
        archive,
        [
            RejectedLine(3, "not JSON", "{oops"),
            RejectedLine(7, "unknown endpoint", '{"endpoint_name": "gone"}'),
        ],
    )
    body = s3.get_object(Bucket=BUCKET, Key=f"rejected/{KEY}.jsonl")["Body"].read()
    assert [json.loads(line) for line in body.splitlines()] == [
        {"line_number": 3, "reason": "not JSON", "line": "{oops"},
        {"line_number": 7, "reason": "unknown endpoint", "line": '{"endpoint_name": "gone"}'},
    ]


def test_rejected_prefix_is_configurable(s3):
    keep(
        S3EventArchive(BUCKET, client=s3, rejected_prefix="errors/"), [RejectedLine(1, "bad", "x")]
    )
    assert s3.list_objects_v2(Bucket=BUCKET)["Contents"][0]["Key"] == f"errors/{KEY}.jsonl"


def test_nothing_is_written_when_no_line_was_rejected(s3, archive):
    keep(archive, [])
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0


def test_many_rejected_lines_stream_in_parts_of_bounded_size(s3, archive, monkeypatch):
    # Parts of 5 MiB (S3's least) so that a few thousand lines make several of them.
    monkeypatch.setattr(s3_adapter, "PART_BYTES", 5 << 20)
    sent: list[int] = []
    upload_part = s3.upload_part
    monkeypatch.setattr(
        s3, "upload_part", lambda **p: sent.append(len(p["Body"])) or upload_part(**p)
    )
    lines = [RejectedLine(n, "not JSON", "x" * 9_000) for n in range(1, 1_501)]

    keep(archive, lines)

    body = s3.get_object(Bucket=BUCKET, Key=f"rejected/{KEY}.jsonl")["Body"].read()
    assert [json.loads(line)["line_number"] for line in body.splitlines()] == list(range(1, 1_501))
    assert len(sent) == 3 and max(sent) < (5 << 20) + 10_000  # never more than a part held


def test_a_failure_while_rejecting_leaves_no_object_and_no_upload(s3, archive, monkeypatch):
    monkeypatch.setattr(s3_adapter, "PART_BYTES", 5 << 20)
    with pytest.raises(RuntimeError), archive.open_rejected(KEY) as rejected:
        for n in range(1, 1_000):
            rejected.write(RejectedLine(n, "not JSON", "x" * 9_000))
        raise RuntimeError("the function failed mid-object")

    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def _record(key: str, event_name: str = "ObjectCreated:Put") -> dict:
    return {
        "eventSource": "aws:s3",
        "eventName": event_name,
        "s3": {"bucket": {"name": BUCKET}, "object": {"key": key, "size": 10}},
    }


def test_object_keys_are_url_decoded_from_the_notification():
    event = {
        "Records": [
            _record("2026/01/02/abtest+events-1-2026%3A01.gz"),
            _record("plain/key", "ObjectCreated:CompleteMultipartUpload"),
            _record("removed/key", "ObjectRemoved:Delete"),
        ]
    }
    assert object_keys_from_s3_event(event) == [
        (BUCKET, "2026/01/02/abtest events-1-2026:01.gz"),
        (BUCKET, "plain/key"),
    ]


def test_the_s3_test_event_has_no_objects():
    event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET}
    assert object_keys_from_s3_event(event) == []
