"""EventArchive on S3: stream the objects Firehose delivered, keep rejected lines beside them."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from abtest.errors import NotFoundError
from abtest.events import DamagedObject, whole_lines
from abtest.records import RejectedLine

GZIP_MAGIC = b"\x1f\x8b"
CHUNK_BYTES = 1 << 20  # read and decompress 1 MiB at a time: memory stays flat, calls stay few


class S3EventArchive:
    """EventArchive over the bucket Firehose delivers to."""

    def __init__(self, bucket: str, *, client: Any, rejected_prefix: str = "rejected/"):
        """`client` is a boto3 S3 client.

        Rejected lines go under `rejected_prefix`: keep that prefix out of the bucket
        notification that triggers aggregation, or rejected files would be aggregated too.
        """
        self.bucket = bucket
        self.rejected_prefix = rejected_prefix
        self.client = client

    def read_blocks(self, object_key: str) -> Iterator[bytes]:
        """The object as blocks of whole lines; gzip is told by its magic bytes.

        The key's suffix is not trusted: Firehose's file extension depends on stream
        settings, and objects get copied and renamed. A missing object is a NotFoundError.
        """
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=object_key)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise NotFoundError(f"no object s3://{self.bucket}/{object_key}") from exc
            raise
        try:
            yield from iter_blocks(body)
        finally:
            body.close()

    def keys(self, prefix: str) -> list[str]:
        """Every object key under `prefix` but the rejected lines, in key (Firehose: time) order."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        return sorted(
            item["Key"]
            for page in pages
            for item in page.get("Contents", ())
            if not item["Key"].startswith(self.rejected_prefix)
        )

    def put_rejected(self, object_key: str, rejected: Iterable[RejectedLine]) -> None:
        lines = [
            json.dumps({"line_number": r.line_number, "reason": r.reason, "line": r.line}) + "\n"
            for r in rejected
        ]
        if not lines:
            return
        self.client.put_object(
            Bucket=self.bucket,
            Key=f"{self.rejected_prefix}{object_key}.jsonl",
            Body="".join(lines).encode(),
            ContentType="application/x-ndjson",
        )


def iter_blocks(stream: BinaryIO) -> Iterator[bytes]:
    """Blocks of whole lines of a plain or gzip stream, read in bounded chunks."""
    chunks = _chunks(stream)
    first = b""
    for chunk in chunks:  # a short read may return under two bytes; gather enough to tell
        first += chunk
        if len(first) >= len(GZIP_MAGIC):
            break
    if not first:
        return
    head = _prepend(first, chunks)
    yield from whole_lines(_gunzip(head) if first.startswith(GZIP_MAGIC) else head)


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK_BYTES):
        yield chunk


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _gunzip(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Decompress gzip (one member or several in a row), at most CHUNK_BYTES out per step.

    Raises DamagedObject where the data ends early, after yielding all it could: what a
    truncated deflate stream decodes to is exactly a prefix of the original.

    The output bound matters: a small compressed chunk of repetitive events can expand a
    thousandfold.
    """
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    fed = False  # has the current member had any input
    for chunk in chunks:
        data = chunk
        while data:
            fed = True
            # Corrupt data (zlib.error) is not DamagedObject: deflate may have decoded garbage
            # for a while before noticing, so nothing of it can be trusted; the object
            # fails and waits in the failed-aggregations queue for a person.
            yield inflater.decompress(data, CHUNK_BYTES)
            if inflater.eof:  # a member ended; what follows is the next member
                data = inflater.unused_data
                inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                fed = False
            else:
                data = inflater.unconsumed_tail
    if fed:
        yield inflater.flush()
        if not inflater.eof:
            raise DamagedObject("gzip object ended before its end-of-stream marker (truncated)")


def object_keys_from_s3_event(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(bucket, key) of each ObjectCreated record; S3 URL-encodes keys in notifications."""
    return [
        (record["s3"]["bucket"]["name"], unquote_plus(record["s3"]["object"]["key"]))
        for record in event.get("Records", [])
        if record.get("eventName", "ObjectCreated:").startswith("ObjectCreated:")
    ]
