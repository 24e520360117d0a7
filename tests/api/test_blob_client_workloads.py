"""Client workloads as the Azure tools run them, with azure-storage-blob against the real server:
AzCopy-style block uploads (many blocks staged in parallel by separate clients, then one Put Block
List, re-committing with added blocks) and Azure ML datastore-style reads (list a folder of shards,
read them in parallel ranged pieces, adlfs reading a table's files by glob)."""

from __future__ import annotations

import base64
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from _blob_target import unique
from azure.storage.blob import BlobBlock, BlobServiceClient, BlockState, ContainerClient, ContentSettings


@pytest.fixture(scope="module")
def conn(exastor_server) -> str:
    return exastor_server.connection_string


@pytest.fixture
def cc(conn):
    client = BlobServiceClient.from_connection_string(conn, retry_total=0).create_container(unique())
    yield client
    client.delete_container()


def block_id(i: int) -> str:
    # AzCopy's ids: fixed-width, base64 of a per-transfer prefix and the block's index.
    return base64.b64encode(f"azcopy-{i:08d}".encode()).decode()


def test_azcopy_style_parallel_blocks_then_commit(conn, cc):
    data = os.urandom(24 * 256 * 1024 + 777)  # 25 blocks of 256 KiB, the last short
    size = 256 * 1024
    pieces = [(i, data[o:o + size]) for i, o in enumerate(range(0, len(data), size))]

    def stage(item: tuple[int, bytes]) -> None:
        # Each worker its own client (its own connections), as AzCopy's parallel transfers are.
        blob = BlobServiceClient.from_connection_string(conn, retry_total=0).get_blob_client(cc.container_name, "big")
        i, chunk = item
        blob.stage_block(block_id(i), chunk, validate_content=True)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(stage, pieces))
    blob = cc.get_blob_client("big")
    assert len(blob.get_block_list("uncommitted")[1]) == len(pieces)
    blob.commit_block_list([BlobBlock(block_id(i)) for i, _ in pieces],
                           content_settings=ContentSettings(content_md5=hashlib.md5(data).digest()))
    assert blob.download_blob(max_concurrency=4).readall() == data
    assert blob.get_blob_properties().content_settings.content_md5 == hashlib.md5(data).digest()
    # A resumed transfer appends blocks and re-commits the committed ones with them.
    extra = os.urandom(1000)
    blob.stage_block(block_id(len(pieces)), extra)
    blob.commit_block_list([BlobBlock(block_id(i), BlockState.COMMITTED) for i, _ in pieces]
                           + [BlobBlock(block_id(len(pieces)), BlockState.UNCOMMITTED)])
    assert blob.download_blob().readall() == data + extra


def test_azureml_datastore_style_reads(conn, cc):
    shards = {f"datasets/train/shard-{i:03d}.bin": os.urandom(300_000 + i) for i in range(12)}
    for name, payload in shards.items():
        cc.upload_blob(name, payload)
    cc.upload_blob("datasets/train/_meta.json", b"{}")

    def read(name: str) -> tuple[str, bytes]:
        reader = ContainerClient.from_connection_string(conn, cc.container_name, retry_total=0)
        blob = reader.get_blob_client(name)
        head = blob.download_blob(offset=0, length=4096).readall()
        rest = blob.download_blob(offset=4096, max_concurrency=3).readall()
        return name, head + rest

    names = [b.name for b in cc.list_blobs(name_starts_with="datasets/train/shard-")]
    assert names == sorted(shards)
    with ThreadPoolExecutor(6) as pool:
        got = dict(pool.map(read, names))
    assert got == shards
    adlfs = pytest.importorskip("adlfs")
    fs = adlfs.AzureBlobFileSystem(connection_string=conn, skip_instance_cache=True)
    files = fs.glob(f"{cc.container_name}/datasets/train/shard-00*.bin")
    assert len(files) == 10
    with fs.open(files[3], "rb", block_size=64 * 1024) as f:
        f.seek(100_000)
        assert f.read(10_000) == shards[files[3].split("/", 1)[1]][100_000:110_000]
