"""Encryption at rest through the real server and real clients: no byte of an object is on the drives
in the clear (one drive, and 4+2 erasure coding over six), the S3 SSE-S3 and Blob
``x-ms-server-encrypted`` answers tell the truth, `exastor key rotate` keeps old objects readable, and
without the master key nothing reads (and fsck does not call locked data damaged)."""

from __future__ import annotations

import random
from pathlib import Path

import botocore.exceptions
import pytest
from azure.storage.blob import BlobServiceClient

from conftest import exastor, s3_client, start_server
from exastor.datadir import keys
from exastor.engine.record import HEADER_SIZE, decode_header
from exastor.engine.scan import walk

GEOMETRIES = {"one drive": 1, "4+2 over 6 drives": 6}


def _serve(tmp_path: Path, drives: int, *extra: str):
    args = [a for i in range(drives) for a in ("--drive", str(tmp_path / f"d{i}"))] if drives > 1 else []
    if drives == 6:
        args += ["--ec", "4+2"]
    # Small segments: most of the data is sealed into erasure-coded shards by the time the server stops.
    return start_server(tmp_path, *args, *extra, env={"EXASTOR_SEGMENT_SIZE": str(1 << 20)})


def _bodies() -> dict[str, bytes]:
    rng = random.Random(12)
    return {"s3": rng.randbytes(3 << 20), "blob": rng.randbytes(2 << 20)}  # incompressible: stored as is


def _write(server, bodies: dict[str, bytes]) -> BlobServiceClient:
    s3 = s3_client(server)
    s3.create_bucket(Bucket="enc")
    s3.put_object(Bucket="enc", Key="obj", Body=bodies["s3"])
    blobs = BlobServiceClient.from_connection_string(server.connection_string)
    blobs.create_container("encc")
    blobs.get_blob_client("encc", "blob").upload_blob(bodies["blob"])
    return blobs


def _samples(bodies: dict[str, bytes]) -> list[bytes]:
    return [b[i:i + 32] for b in bodies.values() for i in range(0, len(b) - 32, 64 << 10)]


def _plaintext_found(roots: list[Path], samples: list[bytes]) -> int:
    found = 0
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                content = path.read_bytes()
                found += sum(s in content for s in samples)
    return found


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_no_object_byte_is_on_the_drives_in_the_clear(tmp_path, geometry):
    bodies = _bodies()
    server = _serve(tmp_path, GEOMETRIES[geometry])
    try:
        _write(server, bodies)
        assert s3_client(server).get_object(Bucket="enc", Key="obj")["Body"].read() == bodies["s3"]
    finally:
        server.stop()  # seals the open segments: shards, not only replicas
    if GEOMETRIES[geometry] == 6:
        assert list((tmp_path / "d0" / "shards").glob("seg-*")), "nothing was erasure-coded"
    assert _plaintext_found([tmp_path], _samples(bodies)) == 0
    server.start()
    try:
        assert s3_client(server).get_object(Bucket="enc", Key="obj")["Body"].read() == bodies["s3"]
        blobs = BlobServiceClient.from_connection_string(server.connection_string)
        assert blobs.get_blob_client("encc", "blob").download_blob().readall() == bodies["blob"]
    finally:
        server.stop()


def test_encrypted_store_says_so_and_a_plaintext_one_does_not(tmp_path):
    bodies = _bodies()
    server = _serve(tmp_path / "on", 1)
    try:
        blobs = _write(server, bodies)
        client = blobs.get_blob_client("encc", "blob")
        assert client.get_blob_properties().server_encrypted is True
        assert [b.server_encrypted for b in blobs.get_container_client("encc").list_blobs()] == [True]
        assert client.upload_blob(b"more", overwrite=True)["request_server_encrypted"] is True
        put = s3_client(server).put_object(Bucket="enc", Key="sse", Body=b"x", ServerSideEncryption="AES256")
        assert put["ServerSideEncryption"] == "AES256"
    finally:
        server.stop()
    off = _serve(tmp_path / "off", 1, "--encrypt-at-rest", "off")
    try:
        blobs = _write(off, bodies)
        client = blobs.get_blob_client("encc", "blob")
        assert client.get_blob_properties().server_encrypted is False
        assert [b.server_encrypted for b in blobs.get_container_client("encc").list_blobs()] == [False]
        assert client.upload_blob(b"more", overwrite=True)["request_server_encrypted"] is False
        with pytest.raises(botocore.exceptions.ClientError) as refused:  # never claim SSE-S3 for plaintext
            s3_client(off, retry=False).put_object(Bucket="enc", Key="sse", Body=b"x", ServerSideEncryption="AES256")
        assert refused.value.response["Error"]["Code"] == "NotImplemented"
    finally:
        off.stop()
    # The same search finds the plaintext when it is there: the check above can see it.
    assert _plaintext_found([tmp_path / "off"], _samples(bodies)) > 0


def _key_ids(root: Path) -> set[int]:
    ids = set()
    for path in root.rglob("seg-*.log"):
        buf = path.read_bytes()
        ids |= {decode_header(buf[pos:pos + HEADER_SIZE]).key_id for pos, _ in walk(buf).records}
    return ids


def test_rotate_then_old_and_new_objects_read_and_without_the_master_key_nothing_does(tmp_path):
    rng = random.Random(13)
    before, after = rng.randbytes(1 << 20), rng.randbytes(1 << 20)
    server = start_server(tmp_path)  # default segment size: the records stay in segment files
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket="rot")
        s3.put_object(Bucket="rot", Key="before", Body=before)
    finally:
        server.stop()
    rotated = exastor("key", "rotate", data_dir=server.data_dir)
    assert "data key 2 made" in rotated.stdout
    server.start()
    try:
        s3 = s3_client(server)
        s3.put_object(Bucket="rot", Key="after", Body=after)
        assert s3.get_object(Bucket="rot", Key="before")["Body"].read() == before
        assert s3.get_object(Bucket="rot", Key="after")["Body"].read() == after
    finally:
        server.stop()
    assert _key_ids(server.data_dir) == {1, 2}
    status = exastor("key", "status", data_dir=server.data_dir).stdout
    assert "encrypt_at_rest : on (every record encrypted)" in status and "data key 2" in status

    key_file = server.data_dir / keys.KEY_FILE
    key_file.rename(tmp_path / "master.key.away")
    check = exastor("fsck", data_dir=server.data_dir, check=False)
    assert check.returncode == 2 and "encrypted at rest" in check.stderr, check.stdout + check.stderr
    assert "corrupt" not in check.stdout
    serve = exastor("serve", "--s3-port", "0", "--blob-port", "0", data_dir=server.data_dir, check=False)
    assert serve.returncode == 2 and "master key" in serve.stderr  # it never serves without the key
    (tmp_path / "master.key.away").rename(key_file)
    check = exastor("fsck", data_dir=server.data_dir, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
