"""A TCP proxy that delays each direction by a settable time: latency for the cluster harness, where
netem is not in the kernel (tbf only limits bandwidth).

    python delay_proxy.py LISTEN_HOST:PORT TARGET_HOST:PORT CONTROL_FILE

Every byte read from one side is written to the other ``delay`` later, in order, without holding up
the reads (a pipe of that latency, not a stop-and-wait). The delay in milliseconds is read from
CONTROL_FILE every 0.1 s (missing or empty: 0). A connection the target refuses is closed at once,
as the target's own refusal would be. Chunks are forwarded as read (64 KiB at most): no per-byte work.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

CHUNK = 64 << 10


class Delay:
    def __init__(self, control: Path) -> None:
        self.control = control
        self.seconds = 0.0

    async def follow(self) -> None:
        while True:
            try:
                text = self.control.read_text().strip()
                self.seconds = float(text) / 1000 if text else 0.0
            except (OSError, ValueError):
                self.seconds = 0.0
            await asyncio.sleep(0.1)


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: Delay) -> None:
    """Copy ``reader`` to ``writer``, each chunk written ``delay`` after it was read."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                break
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while True:
            data = await reader.read(CHUNK)
            queue.put_nowait((time.monotonic() + delay.seconds, data))
            if not data:  # end of stream, forwarded after the same delay
                break
        await sender
    finally:
        sender.cancel()
        with contextlib.suppress(Exception):
            writer.close()


async def main(listen: str, target: str, control: Path) -> None:
    delay = Delay(control)
    asyncio.create_task(delay.follow())
    host, port = target.rsplit(":", 1)

    async def serve(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            client_writer.close()
            return
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await asyncio.gather(pump(client_reader, upstream_writer, delay),
                                 pump(upstream_reader, client_writer, delay))

    listen_host, listen_port = listen.rsplit(":", 1)
    server = await asyncio.start_server(serve, listen_host, int(listen_port), reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
