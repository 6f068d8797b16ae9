"""A TCP proxy on loopback that can cut connections part-way through an answer (the network
between a client and a server failing mid-answer), or sever the link whole until restored."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class CuttingProxy:
    upstream_port: int
    port: int = 0
    cut_after_bytes: int = 0  # of the server's side of a connection
    cuts_left: int = 0  # connections still to cut; the rest pass through whole
    cuts: int = 0  # connections cut so far
    severed: bool = False
    _server: asyncio.Server | None = field(default=None, repr=False)
    _open: set[asyncio.StreamWriter] = field(default_factory=set, repr=False)

    def cut(self, connections: int, after_bytes: int) -> None:
        self.cuts_left, self.cut_after_bytes = connections, after_bytes

    def sever(self) -> None:
        """Every open connection dies and new ones are dropped at once, until `restore`."""
        self.severed = True
        for writer in self._open:
            writer.transport.abort()

    def restore(self) -> None:
        self.severed = False

    async def _handle(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        if self.severed:
            client_out.transport.abort()
            return
        server_in, server_out = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._open |= {client_out, server_out}
        limit = None
        if self.cuts_left:
            self.cuts_left -= 1
            limit = self.cut_after_bytes

        async def pipe(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, cap: int | None
        ) -> None:
            sent = 0
            while data := await src.read(65536):
                if cap is not None and sent + len(data) > cap:
                    dst.write(data[: cap - sent])
                    await dst.drain()
                    self.cuts += 1
                    for writer in (client_out, server_out):  # both sides see the connection die
                        writer.transport.abort()
                    return
                dst.write(data)
                await dst.drain()
                sent += len(data)
            with contextlib.suppress(OSError):
                dst.write_eof()

        with contextlib.suppress(OSError):
            await asyncio.gather(
                pipe(client_in, server_out, None), pipe(server_in, client_out, limit)
            )
        for writer in (client_out, server_out):
            writer.close()
            self._open.discard(writer)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[CuttingProxy]:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            self._server.close()
            await self._server.wait_closed()
