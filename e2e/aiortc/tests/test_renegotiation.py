"""(c) server-initiated and (d) client-initiated renegotiation."""

import asyncio
import re

import pytest

from harness import Harness, run
from peer import wait_for


def offer_mids_for(sdp: str, stream_id: str) -> list[tuple[str, str]]:
    """(mid, track id) of every m-section whose msid stream is ``stream_id``."""
    out = []
    for sec in sdp.split("\r\nm=")[1:]:
        mid = re.search(r"^a=mid:(\S+)", sec, re.M)
        for ms in re.finditer(r"^a=msid:(\S+) (\S+)", sec, re.M):
            if ms.group(1) == stream_id and mid:
                out.append((mid.group(1), ms.group(2)))
    return out


def offers_of(p):
    offers = p.all("offer", "ws") + p.all("offer", "dc")
    return sorted(offers, key=lambda e: e.seq)


def order_violations(p) -> list[str]:
    """Server offers that were not preceded (since the previous offer) by a MediaMap."""
    maps = p.all("media_map", "dc")
    prev, bad = 0, []
    for off in offers_of(p):
        if not [m for m in maps if prev < m.seq < off.seq]:
            later = [m for m in maps if m.seq > off.seq]
            gap = f"{(later[0].at - off.at) * 1000:.2f} ms later" if later else "never"
            bad.append(f"offer seq {off.seq} ({off.source}) arrived before its MediaMap ({gap})")
        prev = off.seq
    return bad


def check_media_map(p, publisher, kind="voice", strict_order=True):
    """The server offer that introduced ``publisher``'s track has a MediaMap entry for its mid
    (strict_order: the MediaMap arrived before that offer; else: before the next offer)."""
    offers = offers_of(p)
    assert offers, "no server offer"
    maps = p.all("media_map", "dc")
    for i, off in enumerate(offers):
        found = offer_mids_for(off.data, publisher.session_id)
        if not found:
            continue
        mid, track_id = found[0]
        assert re.fullmatch(rf"{kind}_{publisher.session_id}_[A-Za-z0-9]{{8}}", track_id), track_id
        limit = off.seq if strict_order else (offers[i + 1].seq if i + 1 < len(offers) else 1 << 62)
        cands = [m for m in maps if m.seq < limit and mid in (m.data or {})]
        assert cands, f"no MediaMap with mid {mid} (maps: {[m.data for m in maps]})"
        entry = cands[-1].data[mid]
        assert entry["type"] == kind, entry
        # Upstream quirk: sender_id is the *receiving* session's ID; accept the publisher's too.
        assert entry["sender_id"] in (p.session_id, publisher.session_id), entry
        return mid, track_id, entry
    raise AssertionError(f"no server offer carried a track of {publisher.session_id}")


def test_server_offer_after_second_publisher_media_map_first_then_audio(daemon):
    async def scenario():
        async with Harness(daemon) as h:
            a = await h.joined(mic="tone")
            await asyncio.sleep(0.5)
            assert a.server_offers == 0, "no other publisher yet: no server offer expected"
            b = await h.joined(mic="tone")

            # A gets B's voice: MediaMap on the DC and an offer on WS; A answers over WS.
            # (The MediaMap-before-offer order is checked by test_media_map_precedes_ws_offer.)
            await wait_for(lambda: len(a.answers_sent) >= 1, 10, what="server offer to A")
            await asyncio.sleep(0.3)
            mid, track_id, entry = check_media_map(a, b, strict_order=False)
            assert a.answers_sent and set(a.answers_sent) == {"ws"}

            # ... and then actually receives audio from B.
            await wait_for(lambda: a.frames.get(track_id, 0) >= 50, 10,
                           what=f"50 audio frames of {track_id} at A (got {a.frames})")
            assert await a.inbound_packets() >= 50

            # Symmetric: B got A's voice the same way (subscription when B's DC opened).
            await wait_for(lambda: len(b.answers_sent) >= 1, 10, what="server offer to B")
            await asyncio.sleep(0.3)
            _, b_track, _ = check_media_map(b, a, strict_order=False)
            await wait_for(lambda: b.frames.get(b_track, 0) >= 50, 10, what="audio at B")
            assert not a.errors and not b.errors, (a.errors, b.errors)

            # Leave of B: A gets no new offer for audio removal (rtcd detaches audio without
            # renegotiating), A's frames from B stop, and the plugin gets close for B.
            offers_before = a.server_offers
            await h.relay.leave(b.session_id)
            await asyncio.wait_for(b.closed.wait(), 5)
            await asyncio.sleep(1.0)
            n = a.frames.get(track_id, 0)
            await asyncio.sleep(1.0)
            assert a.frames.get(track_id, 0) - n <= 2, "A still receives B's audio after leave"
            assert a.server_offers == offers_before

    run(scenario())


def test_client_offer_under_lock_adds_a_track(daemon):
    async def scenario():
        async with Harness(daemon) as h:
            a = await h.joined(mic="tone")
            # B joins receive-only and answers the server's offer for A's voice first, so it
            # was the answerer once before making its own offer (aiortc quirk territory).
            b = await h.joined(mic=None)
            await wait_for(lambda: len(b.answers_sent) >= 1, 10, what="server offer to B")
            await wait_for(lambda: b.total_frames() >= 10, 10, what="audio at B")
            await asyncio.sleep(0.5)

            # Client-initiated renegotiation: lock, add the mic, offer over WS, answer, unlock.
            await b.take_lock()
            b.mic = b.mic or __import__("peer").Tone("tone")
            b.mic_sender = b.pc.addTrack(b.mic)
            offer_sdp = await b.offer(via="ws", wait=True, timeout=10)
            ans = b.all("answer", "ws")[-1]
            assert ans.seq > b.first(f"offer-ws", "local").seq
            assert re.findall(r"^a=mid:(\S+)", offer_sdp, re.M) == re.findall(
                r"^a=mid:(\S+)", ans.data, re.M
            ), "answer m-lines do not match the offer"
            b.unlock()

            # rtcd accepted the new track: A gets it via MediaMap + offer and receives audio.
            await wait_for(lambda: len(a.answers_sent) >= 1, 10, what="server offer to A")
            await asyncio.sleep(0.3)
            _, track_id, _ = check_media_map(a, b, strict_order=False)
            await wait_for(lambda: a.frames.get(track_id, 0) >= 50, 10,
                           what=f"audio from B at A ({a.frames})")
            # The lock is free again: a new Lock request is granted.
            await b.take_lock(timeout=2)
            b.unlock()
            assert b.pc.connectionState == "connected"
            assert not a.errors and not b.errors, (a.errors, b.errors)

    run(scenario())


def test_media_map_precedes_ws_offer(daemon):
    """Spec §4.4 steps 4-5: the MediaMap goes out on the DC before the offer. Checked on the
    client for 5 calls: at the existing publisher A and at the newcomer B."""

    async def scenario():
        bad = []
        for i in range(5):
            async with Harness(daemon, client_id=f"order-{i}") as h:
                a = await h.joined(mic="tone")
                await asyncio.sleep(0.3)
                b = await h.joined(mic="tone")
                await wait_for(lambda: a.answers_sent and b.answers_sent, 10, what="offers")
                bad += [f"round {i} A(existing): {v}" for v in order_violations(a)]
                bad += [f"round {i} B(newcomer): {v}" for v in order_violations(b)]
        assert not bad, "\n".join(bad)

    run(scenario(), timeout=120)
