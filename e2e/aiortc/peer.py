"""An aiortc end-user peer that talks to rtcd the way Mattermost's RTCPeer does.

It creates the ``calls-dc`` data channel, offers first (optionally with a microphone), relays
its SDP over the plugin WebSocket (:class:`relay.Relay`), applies rtcd's trickled candidates,
answers server offers (from WS or, with dcSignaling, from the DC), and records every signaling
event with the shared sequence number of :func:`relay.next_seq` so tests can check ordering.

aiortc needs two tweaks here (shared reference real-clients.md §2.1): no default STUN server
(``RTCConfiguration(iceServers=[])``) and host candidates on 127.0.0.1 (aioice skips loopback),
done by :func:`patch_aioice_loopback`.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import logging
import math
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
import av
import msgpack
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import candidate_from_sdp

import relay as rl

log = logging.getLogger("peer")

# Data channel message types (rtcd-spec §4.6.2).
DC_PING = 1
DC_PONG = 2
DC_SDP = 3
DC_LOSS_RATE = 4
DC_RTT = 5
DC_JITTER = 6
DC_LOCK = 7
DC_UNLOCK = 8
DC_MEDIA_MAP = 9


def patch_aioice_loopback() -> None:
    """aioice drops 127.0.0.1 from host candidates; everything here runs on loopback."""
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def dc_encode(msg_type: int, payload: Any = None, *, with_payload: bool = False) -> bytes:
    """Browser-style DC message: positive fixint type, then the optional msgpack payload."""
    out = msgpack.packb(msg_type)
    if with_payload or payload is not None:
        out += msgpack.packb(payload, use_bin_type=True)
    return out


def dc_decode(raw: bytes) -> tuple[int, Any, bool]:
    """Returns (type, payload, has_payload)."""
    up = msgpack.Unpacker(raw=False, strict_map_key=False)
    up.feed(raw)
    vals = list(up)
    if not vals or not isinstance(vals[0], int) or len(vals) > 2:
        raise ValueError(f"bad dc message {raw.hex()}")
    return vals[0], (vals[1] if len(vals) == 2 else None), len(vals) == 2


class Tone(MediaStreamTrack):
    """A paced 48 kHz mono audio source. ``mode``: "tone" (steady 440 Hz, constant audio level),
    "speech" (loudness alternating every 100 ms: audio level varies, which rtcd's VAD sees as
    voice), "silence"."""

    kind = "audio"

    def __init__(self, mode: str = "tone"):
        super().__init__()
        self.mode = mode
        self.rate = 48000
        self.samples = 960  # 20 ms
        self._pts = 0
        self._start: float | None = None
        self.frames = 0

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        target = self._start + self._pts / self.rate
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        amp = 0
        if self.mode == "tone":
            amp = 8000
        elif self.mode == "speech":
            amp = (12000, 200, 4000, 30, 20000)[(self.frames // 5) % 5]
        frame = av.AudioFrame(format="s16", layout="mono", samples=self.samples)
        if amp:
            base = self._pts
            data = bytearray()
            for i in range(self.samples):
                v = int(amp * math.sin(2 * math.pi * 440 * (base + i) / self.rate))
                data += v.to_bytes(2, "little", signed=True)
            frame.planes[0].update(bytes(data))
        else:
            frame.planes[0].update(bytes(2 * self.samples))
        frame.sample_rate = self.rate
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self.rate)
        self._pts += self.samples
        self.frames += 1
        return frame


@dataclass
class Event:
    seq: int
    at: float
    source: str  # "ws" | "dc"
    kind: str  # "answer" | "offer" | "candidate" | "media_map" | "pong" | "lock" | "text" | ...
    data: Any = None
    raw: Any = field(default=None, repr=False)


class CallsPeer:
    def __init__(
        self,
        relay: rl.Relay,
        session_id: str,
        call_id: str,
        user_id: str | None = None,
        *,
        mic: str | None = "tone",
        dc_signaling: bool = False,
        answer_via: str | None = None,
    ):
        self.relay = relay
        self.session_id = session_id
        self.call_id = call_id
        self.user_id = user_id or f"user-{session_id}"
        self.dc_signaling = dc_signaling
        # Where answers to server offers go: default = the path the offer came from.
        self.answer_via = answer_via
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.dc = self.pc.createDataChannel("calls-dc")
        self.dc_open = asyncio.Event()
        self.mic: Tone | None = Tone(mic) if mic else None
        self.mic_sender = None
        self.events: list[Event] = []
        self.ws_rtc: list[rl.Inbound] = []
        self.dc_raw: list[tuple[int, bytes | str]] = []
        self.media_maps: list[dict] = []
        self.lock_replies: asyncio.Queue[bool] = asyncio.Queue()
        self.pongs: asyncio.Queue[bytes] = asyncio.Queue()
        self.texts: asyncio.Queue[str] = asyncio.Queue()
        self.server_offers = 0
        self.server_offer_evt = asyncio.Event()
        self.answers_sent: list[str] = []
        self.vad: list[int] = []
        self.closed = asyncio.Event()
        self.remote_candidates: list[dict] = []
        self.frames: dict[str, int] = {}  # remote track id -> decoded frames
        self.tracks: list[MediaStreamTrack] = []
        self.gaps: list[tuple[float, float]] = []  # (arrival time, seconds since previous frame)
        self.errors: list[str] = []
        self._answer_fut: asyncio.Future | None = None
        self._sdp_lock = asyncio.Lock()
        self._pending_cands: list = []
        self._tasks: list[asyncio.Task] = []
        self._install_handlers()

    # -- setup ----------------------------------------------------------------------------
    def _install_handlers(self) -> None:
        @self.dc.on("open")
        def _on_open() -> None:
            self.dc_open.set()

        @self.dc.on("message")
        def _on_message(msg: bytes | str) -> None:
            self._on_dc(msg)

        @self.pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            self.tracks.append(track)
            self.frames.setdefault(track.id, 0)
            self._tasks.append(asyncio.create_task(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        last = None
        try:
            while True:
                await track.recv()
                now = time.monotonic()
                if last is not None:
                    self.gaps.append((now, now - last))
                last = now
                self.frames[track.id] = self.frames.get(track.id, 0) + 1
        except Exception:  # MediaStreamError when the track ends
            return

    def record(self, source: str, kind: str, data: Any = None, raw: Any = None) -> Event:
        """Records an event; WS messages keep their arrival sequence number and time."""
        if isinstance(raw, rl.Inbound):
            ev = Event(raw.seq, raw.at, source, kind, data, raw)
        else:
            ev = Event(rl.next_seq(), time.monotonic(), source, kind, data, raw)
        self.events.append(ev)
        return ev

    async def start(self, *, join: bool = True) -> None:
        """join + initial offer over WS (the first negotiation is done without the lock)."""
        if join:
            await self.relay.join(
                self.session_id, self.call_id, self.user_id, dc_signaling=self.dc_signaling
            )
        self._tasks.append(asyncio.create_task(self._ws_pump()))
        if self.mic is not None:
            self.mic_sender = self.pc.addTrack(self.mic)
        await self.offer(via="ws", wait=False)

    async def offer(self, via: str = "ws", wait: bool = True, timeout: float = 10.0) -> str:
        """Create an offer, send it over WS or DC, optionally wait for (and apply) rtcd's answer."""
        loop = asyncio.get_running_loop()
        self._answer_fut = loop.create_future()
        async with self._sdp_lock:
            offer = await self.pc.createOffer()
            await self.pc.setLocalDescription(offer)
        sdp = self.pc.localDescription.sdp
        self.record("local", f"offer-{via}", sdp)
        await self._send_sdp("offer", sdp, via)
        if wait:
            await asyncio.wait_for(asyncio.shield(self._answer_fut), timeout)
        return sdp

    async def wait_answer(self, timeout: float = 10.0) -> None:
        assert self._answer_fut is not None
        await asyncio.wait_for(asyncio.shield(self._answer_fut), timeout)

    async def _send_sdp(self, sdp_type: str, sdp: str, via: str) -> None:
        if via == "ws":
            await self.relay.send_sdp(self.session_id, sdp_type, sdp)
        elif via == "dc":
            body = zlib.compress(json.dumps({"type": sdp_type, "sdp": sdp}).encode())
            self.dc.send(dc_encode(DC_SDP, body))
        else:
            raise ValueError(via)

    # -- inbound WS -----------------------------------------------------------------------
    async def _ws_pump(self) -> None:
        q = self.relay.queue(self.session_id)
        while True:
            ev = await q.get()
            try:
                await self._on_ws(ev)
            except Exception as e:  # keep pumping; tests look at self.errors
                log.exception("ws message handling failed")
                self.errors.append(f"ws {ev.type}: {e!r}")

    async def _on_ws(self, ev: rl.Inbound) -> None:
        if ev.type == "close":
            self.record("ws", "close", ev.data)
            self.closed.set()
            return
        if ev.type == "vad":
            self.vad.append(ev.data["type"])
            self.record("ws", "vad", ev.data["type"], ev.data)
            return
        self.ws_rtc.append(ev)
        m = ev.data
        body = json.loads(bytes(m.get("data") or b""))
        if m["type"] == rl.SDP:
            await self._on_sdp(body, "ws", ev)
        elif m["type"] == rl.ICE:
            self.record("ws", "candidate", body, ev)
            await self._add_candidate(body)
        else:
            self.record("ws", f"rtc-{m['type']}", body, ev)

    async def _add_candidate(self, body: dict) -> None:
        c = body.get("candidate") or {}
        self.remote_candidates.append(c)
        line = c.get("candidate") or ""
        if not line:
            return
        cand = candidate_from_sdp(line.split(":", 1)[1])
        cand.sdpMid = c.get("sdpMid")
        cand.sdpMLineIndex = c.get("sdpMLineIndex")
        if self.pc.remoteDescription is None:
            self._pending_cands.append(cand)
            return
        await self.pc.addIceCandidate(cand)

    async def _flush_candidates(self) -> None:
        pending, self._pending_cands = self._pending_cands, []
        for cand in pending:
            await self.pc.addIceCandidate(cand)

    async def _on_sdp(self, body: dict, source: str, raw: Any) -> None:
        t = body.get("type")
        if t == "answer":
            self.record(source, "answer", body["sdp"], raw)
            async with self._sdp_lock:
                await self.pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "answer"))
            await self._flush_candidates()
            if self._answer_fut is not None and not self._answer_fut.done():
                self._answer_fut.set_result(body["sdp"])
        elif t == "offer":
            self.record(source, "offer", body["sdp"], raw)
            self.server_offers += 1
            async with self._sdp_lock:
                await self.pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "offer"))
                answer = await self.pc.createAnswer()
                await self.pc.setLocalDescription(answer)
            await self._flush_candidates()
            via = self.answer_via or source
            self.answers_sent.append(via)
            self.record("local", f"answer-{via}", self.pc.localDescription.sdp)
            await self._send_sdp("answer", self.pc.localDescription.sdp, via)
            self.server_offer_evt.set()
        else:
            self.errors.append(f"unexpected sdp type {t!r}")

    # -- inbound DC -----------------------------------------------------------------------
    def _on_dc(self, msg: bytes | str) -> None:
        seq = rl.next_seq()
        self.dc_raw.append((seq, msg))
        if isinstance(msg, str):
            self.events.append(Event(seq, time.monotonic(), "dc", "text", msg, msg))
            self.texts.put_nowait(msg)
            return
        try:
            t, payload, _ = dc_decode(msg)
        except Exception as e:
            self.errors.append(f"dc decode {msg!r}: {e!r}")
            return
        if t == DC_PONG:
            self.events.append(Event(seq, time.monotonic(), "dc", "pong", None, msg))
            self.pongs.put_nowait(msg)
        elif t == DC_LOCK:
            self.events.append(Event(seq, time.monotonic(), "dc", "lock", payload, msg))
            self.lock_replies.put_nowait(payload)
        elif t == DC_MEDIA_MAP:
            self.events.append(Event(seq, time.monotonic(), "dc", "media_map", payload, msg))
            self.media_maps.append(payload)
        elif t == DC_SDP:
            try:
                body = json.loads(zlib.decompress(payload))
            except Exception as e:
                self.errors.append(f"dc sdp payload: {e!r}")
                return
            task = asyncio.get_running_loop().create_task(self._dc_sdp(body, msg, seq))
            self._tasks.append(task)
        else:
            self.events.append(Event(seq, time.monotonic(), "dc", f"type-{t}", payload, msg))

    async def _dc_sdp(self, body: dict, raw: bytes, seq: int) -> None:
        try:
            await self._on_sdp(body, "dc", raw)
            # keep the arrival sequence number, not the processing one
            for ev in reversed(self.events):
                if ev.source == "dc" and ev.raw is raw:
                    ev.seq = seq
                    break
        except Exception as e:
            log.exception("dc sdp handling failed")
            self.errors.append(f"dc sdp: {e!r}")

    # -- helpers --------------------------------------------------------------------------
    async def wait_connected(self, timeout: float = 15.0) -> None:
        await asyncio.wait_for(self.dc_open.wait(), timeout)

    async def take_lock(self, timeout: float = 5.0) -> None:
        """Like RTCPeer: Lock request every ~50 ms until granted."""
        deadline = time.monotonic() + timeout
        while True:
            self.dc.send(dc_encode(DC_LOCK))
            granted = await asyncio.wait_for(self.lock_replies.get(), max(0.1, deadline - time.monotonic()))
            if granted is True:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("lock not granted")
            await asyncio.sleep(0.05)

    def unlock(self) -> None:
        self.dc.send(dc_encode(DC_UNLOCK))

    def max_gap(self, since: float) -> float:
        return max((g for t, g in self.gaps if t >= since), default=0.0)

    def total_frames(self) -> int:
        return sum(self.frames.values())

    async def inbound_packets(self) -> int:
        stats = await self.pc.getStats()
        return sum(s.packetsReceived for s in stats.values() if s.type == "inbound-rtp")

    async def outbound_packets(self) -> int:
        stats = await self.pc.getStats()
        return sum(s.packetsSent for s in stats.values() if s.type == "outbound-rtp")

    def first(self, kind: str, source: str | None = None) -> Event | None:
        for ev in self.events:
            if ev.kind == kind and (source is None or ev.source == source):
                return ev
        return None

    def all(self, kind: str, source: str | None = None) -> list[Event]:
        return [e for e in self.events if e.kind == kind and (source is None or e.source == source)]

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self.mic is not None:
            self.mic.stop()
        try:
            await asyncio.wait_for(self.pc.close(), 5)
        except Exception:
            pass


async def wait_for(pred, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll ``pred()`` (sync or async) until truthy; raises TimeoutError with ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
