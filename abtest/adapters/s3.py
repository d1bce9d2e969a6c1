"""EventArchive on S3: stream the objects Firehose delivered, keep rejected lines beside them."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, BinaryIO
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from abtest.errors import NotFoundError
from abtest.events import REJECTED_PREFIX, DamagedObject, whole_lines
from abtest.records import RejectedLine

GZIP_MAGIC = b"\x1f\x8b"
CHUNK_BYTES = 1 << 20  # read and decompress 1 MiB at a time: memory stays flat, calls stay few
# Rejected lines are uploaded in parts of this size (S3's least is 5 MiB but for the last).
PART_BYTES = 8 << 20
REJECTED_CONTENT_TYPE = "application/x-ndjson"


class S3EventArchive:
    """EventArchive over the bucket Firehose delivers to."""

    def __init__(self, bucket: str, *, client: Any, rejected_prefix: str = REJECTED_PREFIX):
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

    @contextmanager
    def open_rejected(self, object_key: str) -> Iterator[RejectedUpload]:
        upload = RejectedUpload(
            self.client, self.bucket, f"{self.rejected_prefix}{object_key}.jsonl"
        )
        try:
            yield upload
        except BaseException:
            upload.abort()
            raise
        upload.finish()


class RejectedUpload:
    """Rejected lines on their way to one S3 object, holding at most a part in memory.

    Up to PART_BYTES they are one PutObject, as most objects need; past that, a multipart
    upload of PART_BYTES parts. An upload left unfinished (the function stopped between
    parts) is removed by the bucket's lifecycle rule.
    """

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []

    def write(self, line: RejectedLine) -> None:
        self.buffer += line.json_line()
        if len(self.buffer) >= PART_BYTES:
            self._upload_part()

    def finish(self) -> None:
        if self.upload_id is None:
            if self.buffer:  # nothing is written when nothing was rejected
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self.key,
                    Body=bytes(self.buffer),
                    ContentType=REJECTED_CONTENT_TYPE,
                )
            return
        if self.buffer:
            self._upload_part()
        self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
        )

    def abort(self) -> None:
        if self.upload_id is not None:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
            )

    def _upload_part(self) -> None:
        if self.upload_id is None:
            self.upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=REJECTED_CONTENT_TYPE
            )["UploadId"]
        number = len(self.parts) + 1
        answer = self.client.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=bytes(self.buffer),
        )
        self.parts.append({"ETag": answer["ETag"], "PartNumber": number})
        self.buffer.clear()


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
