"""http/asgi.respond_stream: a streamed body goes out whole and in order, each send joined into a
buffer under malloc's 1 MiB mmap threshold (gateway/memory.py), so the gateway reuses heap memory
from send to send instead of faulting in fresh pages for every MiB of a GET."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

from exastor.engine.chunker import MAX_SIZE
from exastor.http.asgi import SEND_COALESCE, respond_stream


async def _pieces(sizes: list[int], data: bytes) -> AsyncIterator[bytes | memoryview]:
    pos = 0
    for n in sizes:
        yield memoryview(data)[pos:pos + n]
        pos += n


def test_a_streamed_body_is_sent_whole_in_sends_under_the_mmap_threshold() -> None:
    rng = random.Random(14)
    sizes = [rng.randint(1, MAX_SIZE) for _ in range(200)] + [MAX_SIZE] * 20  # chunks: at most MAX_SIZE
    data = rng.randbytes(sum(sizes))
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    asyncio.run(respond_stream(send, 200, [("content-length", str(len(data)))], _pieces(sizes, data)))
    assert messages[0]["type"] == "http.response.start" and messages[0]["status"] == 200
    bodies = [m for m in messages[1:] if m["type"] == "http.response.body"]
    assert b"".join(m["body"] for m in bodies) == data
    assert [m["more_body"] for m in bodies] == [True] * (len(bodies) - 1) + [False]
    assert all(len(m["body"]) < 1 << 20 for m in bodies)
    assert all(len(m["body"]) >= SEND_COALESCE for m in bodies[:-1])  # still few sends: none small
