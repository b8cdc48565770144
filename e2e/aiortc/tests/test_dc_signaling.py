"""(e) dcSignaling=true: server offers travel zlib-compressed over calls-dc, answers go back
over the DC, and a client offer sent over the DC is answered over the DC."""

import asyncio
import json
import zlib

import msgpack

import relay as rl
from harness import Harness, run
from peer import wait_for


def test_server_offers_over_the_data_channel_and_dc_answers(daemon):
    async def scenario():
        async with Harness(daemon) as h:
            a = await h.joined(mic="tone")
            b = await h.joined(mic="tone", dc_signaling=True)

            # B's first negotiation still went over WS (the DC did not exist yet).
            assert b.first("answer", "ws") is not None

            # rtcd's offer for A's voice reaches B on the DC, not on WS.
            await wait_for(lambda: b.answers_sent, 10, what="server offer to B over the DC")
            dc_offers = b.all("offer", "dc")
            assert dc_offers, f"no DC offer; events: {[(e.source, e.kind) for e in b.events]}"
            assert not b.all("offer", "ws"), "dcSignaling session got a server offer over WS"
            assert b.answers_sent[0] == "dc"
            raw = dc_offers[0].raw
            # Exact framing: uint8 type (cc 03), then msgpack bin holding zlib(JSON).
            assert raw[:2] == b"\xcc\x03", raw[:8].hex()
            assert raw[2] in (0xC4, 0xC5, 0xC6), f"payload is not msgpack bin: {raw[2]:#x}"
            up = msgpack.Unpacker(raw=False)
            up.feed(raw)
            vals = list(up)
            assert len(vals) == 2 and isinstance(vals[1], bytes)
            body = json.loads(zlib.decompress(vals[1]))
            assert body["type"] == "offer" and body["sdp"].startswith("v=0")
            # MediaMap first, on the same (ordered) channel.
            mm = b.first("media_map", "dc")
            assert mm is not None and mm.seq < dc_offers[0].seq

            # The DC answer was applied: B receives A's audio.
            await wait_for(lambda: b.total_frames() >= 50, 10, what=f"audio at B ({b.frames})")
            # A (not in dcSignaling mode) still gets its offers over WS and hears B.
            await wait_for(lambda: a.answers_sent, 10, what="offer to A")
            assert a.all("offer", "ws") and not a.all("offer", "dc")
            await wait_for(lambda: a.total_frames() >= 50, 10, what=f"audio at A ({a.frames})")

            # Client-initiated renegotiation over the DC: lock, offer on DC, answer on DC, unlock.
            ws_before = len(b.ws_rtc)
            await b.take_lock()
            await b.offer(via="dc", wait=True, timeout=10)
            b.unlock()
            ans = b.all("answer")[-1]
            assert ans.source == "dc", f"answer to a DC offer came over {ans.source}"
            assert len([e for e in b.ws_rtc[ws_before:] if e.data["type"] == rl.SDP]) == 0
            assert b.pc.signalingState == "stable"
            await asyncio.sleep(0.5)
            n = b.total_frames()
            await asyncio.sleep(1.0)
            assert b.total_frames() > n, "audio stopped after the DC renegotiation"
            assert not a.errors and not b.errors, (a.errors, b.errors)

    run(scenario())
