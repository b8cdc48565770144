"""A plugin-like client of rtcd's HTTP + WebSocket API (what the Mattermost Calls plugin does).

* ``POST /register`` ``{"clientID", "authKey"}`` (key >= 32 chars, self-registration enabled);
* ``GET /ws`` with ``Authorization: Basic base64(clientID:authKey)``;
* every binary WS frame is ``msgpack str(type)`` immediately followed by one msgpack value
  (rtcd-spec §3.4), encoded like vmihailenco/msgpack: strings as ``str``, payloads as ``bin``.

Inbound frames (``hello``, ``rtc``, ``vad``, ``close``) are decoded and dispatched: ``rtc``,
``vad`` and ``close`` go to the per-session queue of their ``session_id`` (created on demand),
every frame is also appended to :attr:`Relay.log` with a global sequence number so tests can
compare arrival order with data-channel events (see :func:`next_seq`).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgpack

# Message types of rtc.Message (rtcd-spec §3.5).
ICE = 1
SDP = 2
MUTE = 3
UNMUTE = 4
SCREEN_ON = 5
SCREEN_OFF = 6
VOICE_ON = 7
VOICE_OFF = 8
VIDEO_ON = 9
VIDEO_OFF = 10

_seq = itertools.count(1)


def next_seq() -> int:
    """A process-wide sequence number: WS frames and DC messages share it (one event loop)."""
    return next(_seq)


def encode_frame(msg_type: str, data: Any) -> bytes:
    """``msgpack str(type) || msgpack value(data)``; ``None`` data encodes as nil (0xc0)."""
    return msgpack.packb(msg_type, use_bin_type=True) + msgpack.packb(data, use_bin_type=True)


def decode_frame(frame: bytes) -> tuple[str, Any]:
    """Inverse of :func:`encode_frame`; raises ValueError unless the frame is exactly 2 values."""
    up = msgpack.Unpacker(raw=False, strict_map_key=False)
    up.feed(frame)
    values = list(up)
    if len(values) != 2 or not isinstance(values[0], str):
        raise ValueError(f"bad frame {frame.hex()}: {values!r}")
    return values[0], values[1]


def rtc_payload(session_id: str, msg_type: int, data: bytes | None) -> dict:
    """The plugin's rtc.Message: IDs other than session_id are empty strings (rtcd fills them)."""
    m = {"group_id": "", "user_id": "", "session_id": session_id, "call_id": "", "type": msg_type}
    if data:
        m["data"] = bytes(data)
    return m


@dataclass
class Inbound:
    seq: int
    at: float
    type: str
    data: Any
    raw: bytes = field(repr=False, default=b"")


class Relay:
    """One plugin connection to rtcd."""

    def __init__(self, base_url: str, client_id: str, auth_key: str):
        assert len(auth_key) >= 32, "rtcd requires authKey >= 32 chars"
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.auth_key = auth_key
        self.http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.hello: dict | None = None
        self.log: list[Inbound] = []
        self.sessions: dict[str, asyncio.Queue[Inbound]] = {}
        self.unrouted: list[Inbound] = []
        self._reader: asyncio.Task | None = None
        self._hello_evt = asyncio.Event()
        self.closed = asyncio.Event()

    # -- HTTP -----------------------------------------------------------------------------
    def _auth_header(self) -> str:
        tok = base64.b64encode(f"{self.client_id}:{self.auth_key}".encode()).decode()
        return f"Basic {tok}"

    async def register(self) -> dict:
        """``POST /register``; sent with Basic auth of the same credentials, like the plugin."""
        assert self.http
        async with self.http.post(
            f"{self.base_url}/register",
            json={"clientID": self.client_id, "authKey": self.auth_key},
            headers={"Authorization": self._auth_header()},
        ) as r:
            body = await r.json(content_type=None)
            if r.status != 201:
                raise RuntimeError(f"register failed: {r.status} {body}")
            return body

    # -- WS -------------------------------------------------------------------------------
    async def connect(self, register: bool = True, timeout: float = 5.0) -> dict:
        """Register (optional), open /ws and wait for ``hello``. Returns the hello map."""
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=timeout))
        if register:
            await self.register()
        ws_url = self.base_url.replace("http://", "ws://", 1) + "/ws"
        self.ws = await self.http.ws_connect(
            ws_url,
            headers={"Authorization": self._auth_header()},
            autoping=True,
            heartbeat=None,
            max_msg_size=1 << 20,
        )
        self._reader = asyncio.create_task(self._read_loop(), name=f"relay-{self.client_id}")
        await asyncio.wait_for(self._hello_evt.wait(), timeout)
        assert self.hello is not None
        return self.hello

    async def _read_loop(self) -> None:
        assert self.ws
        try:
            async for msg in self.ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    t, data = decode_frame(msg.data)
                    ev = Inbound(next_seq(), time.monotonic(), t, data, msg.data)
                    self.log.append(ev)
                    if t == "hello":
                        self.hello = data
                        self._hello_evt.set()
                    elif t in ("rtc", "vad"):
                        self.queue(data["session_id"]).put_nowait(ev)
                    elif t == "close":
                        self.queue(data["sessionID"]).put_nowait(ev)
                    else:
                        self.unrouted.append(ev)
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    self.unrouted.append(Inbound(next_seq(), time.monotonic(), "text", msg.data))
                elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED):
                    break
        finally:
            self.closed.set()

    def queue(self, session_id: str) -> asyncio.Queue[Inbound]:
        q = self.sessions.get(session_id)
        if q is None:
            q = self.sessions[session_id] = asyncio.Queue()
        return q

    async def send(self, msg_type: str, data: Any) -> None:
        assert self.ws
        await self.ws.send_bytes(encode_frame(msg_type, data))

    async def join(
        self,
        session_id: str,
        call_id: str,
        user_id: str,
        channel_id: str = "channel",
        av1: bool = False,
        dc_signaling: bool = False,
    ) -> None:
        self.queue(session_id)
        await self.send(
            "join",
            {
                "callID": call_id,
                "userID": user_id,
                "sessionID": session_id,
                "channelID": channel_id,
                "av1Support": av1,
                "dcSignaling": dc_signaling,
            },
        )

    async def leave(self, session_id: str) -> None:
        await self.send("leave", {"sessionID": session_id})

    async def reconnect(self, session_id: str) -> None:
        await self.send("reconnect", {"sessionID": session_id})

    async def send_rtc(self, session_id: str, msg_type: int, data: bytes | str | None) -> None:
        if isinstance(data, str):
            data = data.encode()
        await self.send("rtc", rtc_payload(session_id, msg_type, data))

    async def send_sdp(self, session_id: str, sdp_type: str, sdp: str) -> None:
        await self.send_rtc(session_id, SDP, json.dumps({"type": sdp_type, "sdp": sdp}))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 2)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._reader.cancel()
        if self.http is not None:
            await self.http.close()
