"""The Blob API through azure-storage-blob's aio client (aiohttp transport: its own URL encoding,
so Shared Key canonicalization is checked on a second code path)."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest
from _blob_target import BlobTarget, external_target, unique
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, ContentSettings
from azure.storage.blob.aio import BlobServiceClient


@pytest.fixture(scope="module")
def target(request) -> BlobTarget:
    ext = external_target()
    if ext is not None:
        return ext
    server = request.getfixturevalue("exastor_server")
    return BlobTarget.from_connection_string(server.connection_string, is_exastor=True)


def run(coro):
    return asyncio.run(coro)


def test_aio_roundtrip_blocks_listing(target):
    async def scenario() -> None:
        async with BlobServiceClient.from_connection_string(target.connection_string, retry_total=0,
                                                            max_single_put_size=128 * 1024,
                                                            max_block_size=128 * 1024) as svc:
            cc = await svc.create_container(unique())
            try:
                with pytest.raises(ResourceExistsError):
                    await svc.create_container(cc.container_name)
                data = os.urandom(600_000)
                names = ["x/one", "x/two words", "y/ünï", "z"]
                await asyncio.gather(*(cc.upload_blob(n, data, metadata={"n": str(i)}, max_concurrency=2,
                                                      content_settings=ContentSettings(content_type="a/b"))
                                       for i, n in enumerate(names)))
                for n in names:
                    stream = await cc.download_blob(n, max_concurrency=2)
                    assert await stream.readall() == data
                listed = [b.name async for b in cc.list_blobs()]
                assert listed == names
                walked = sorted([b.name async for b in cc.walk_blobs()])
                assert walked == ["x/", "y/", "z"]
                bc = cc.get_blob_client("x/one")
                committed, _ = await bc.get_block_list("committed")
                assert sum(b.size for b in committed) == len(data) and len(committed) == 5
                props = await bc.get_blob_properties()
                assert props.metadata == {"n": "0"} and props.content_settings.content_type == "a/b"
                ids = [base64.b64encode(f"{i:04d}".encode()).decode() for i in range(3)]
                nb = cc.get_blob_client("manual")
                for i, bid in enumerate(ids):
                    await nb.stage_block(bid, bytes([65 + i]) * 10)
                await nb.commit_block_list([BlobBlock(ids[2]), BlobBlock(ids[1])])
                assert await (await nb.download_blob()).readall() == b"C" * 10 + b"B" * 10
                await nb.delete_blob()
                with pytest.raises(ResourceNotFoundError):
                    await nb.get_blob_properties()
            finally:
                await cc.delete_container()

    run(scenario())
