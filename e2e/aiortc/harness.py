"""Glue for tests: one relay (plugin connection) + any number of aiortc peers, cleaned up."""

from __future__ import annotations

import asyncio
import secrets
import uuid

from daemon import Daemon
from peer import CallsPeer, patch_aioice_loopback
from relay import Relay

patch_aioice_loopback()


def new_id() -> str:
    """26 chars, like Mattermost IDs."""
    return uuid.uuid4().hex[:26]


class Harness:
    def __init__(self, daemon: Daemon, client_id: str = "mattermost-aiortc"):
        self.daemon = daemon
        self.relay = Relay(daemon.base_url, client_id, secrets.token_urlsafe(32))
        self.peers: list[CallsPeer] = []
        self.call_id = new_id()

    async def __aenter__(self) -> "Harness":
        await self.relay.connect()
        return self

    def peer(self, **kw) -> CallsPeer:
        p = CallsPeer(self.relay, kw.pop("session_id", None) or new_id(), kw.pop("call_id", self.call_id), **kw)
        self.peers.append(p)
        return p

    async def joined(self, **kw) -> CallsPeer:
        """A peer that joined, offered, and whose data channel is open."""
        p = self.peer(**kw)
        await p.start()
        await p.wait_connected(kw.get("timeout", 15))
        return p

    async def __aexit__(self, *exc) -> None:
        for p in self.peers:
            await p.close()
        await self.relay.close()


def run(coro, timeout: float = 90):
    """asyncio.run with an overall bound."""

    async def bounded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())
