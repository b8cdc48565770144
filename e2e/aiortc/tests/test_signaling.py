"""(a) Initial offer/answer over the plugin WebSocket and the timing of rtcd's candidates."""

import asyncio
import json
import re

import relay as rl
from harness import Harness, run


def test_answer_first_then_trickled_candidates(daemon):
    async def scenario():
        async with Harness(daemon) as h:
            p = h.peer(mic="tone")
            await p.start()
            await p.wait_connected(15)
            # Wait a little for any late candidates.
            await asyncio.sleep(0.5)

            # Every rtc message for this session carries all four IDs.
            assert p.ws_rtc, "no rtc message from rtcd"
            for ev in p.ws_rtc:
                m = ev.data
                assert m["group_id"] == h.relay.client_id
                assert m["user_id"] == p.user_id
                assert m["session_id"] == p.session_id
                assert m["call_id"] == p.call_id
                assert isinstance(m["data"], bytes), "data must be msgpack bin"

            # The very first rtc message is the SDP answer, and it is an answer to our offer.
            first = p.ws_rtc[0].data
            assert first["type"] == rl.SDP, f"first rtc message is type {first['type']}"
            body = json.loads(first["data"])
            assert set(body) == {"type", "sdp"} and body["type"] == "answer"

            answer = p.first("answer", "ws")
            cands = p.all("candidate", "ws")
            assert answer is not None
            assert cands, "rtcd trickled no candidates"
            assert all(c.seq > answer.seq for c in cands), "a candidate arrived before the answer"

            offer_sdp = p.first("offer-ws", "local").data
            first_mid = re.search(r"^a=mid:(\S+)", offer_sdp, re.M).group(1)
            seen = set()
            for c in cands:
                d = c.data
                assert set(d) == {"type", "candidate"} and d["type"] == "candidate", d
                inner = d["candidate"]
                assert set(inner) == {"candidate", "sdpMid", "sdpMLineIndex", "usernameFragment"}, inner
                assert inner["sdpMLineIndex"] == 0
                assert inner["sdpMid"] == first_mid
                assert inner["usernameFragment"] is None
                line = inner["candidate"]
                assert line.startswith("candidate:"), line
                bits = line[len("candidate:"):].split()
                # foundation component transport priority ip port typ type ...
                assert bits[1] == "1" and bits[6] == "typ" and bits[7] == "host", line
                assert bits[4] == "127.0.0.1", line
                assert int(bits[5]) == daemon.ice_port, line
                seen.add(bits[2].lower())
                if bits[2].lower() == "tcp":
                    assert "tcptype passive" in line, line
            assert "udp" in seen, f"no UDP candidate: {[c.data for c in cands]}"
            assert "tcp" in seen, f"no TCP candidate: {[c.data for c in cands]}"

            # The answer must not need the candidates to be usable by a trickle client, but it
            # must be a valid answer for our m-lines: same mids, in order.
            mids_offer = re.findall(r"^a=mid:(\S+)", offer_sdp, re.M)
            mids_answer = re.findall(r"^a=mid:(\S+)", body["sdp"], re.M)
            assert mids_offer == mids_answer
            assert p.pc.connectionState == "connected"
            assert not p.errors, p.errors

    run(scenario())


def test_join_without_offer_is_closed_after_the_signaling_timeout(daemon):
    """A session that never offers is closed after the 10 s signaling timeout (close msg)."""

    async def scenario():
        async with Harness(daemon) as h:
            sid = "no-offer-session-0000000000"
            await h.relay.join(sid, h.call_id, "u1")
            q = h.relay.queue(sid)
            ev = await asyncio.wait_for(q.get(), 15)
            assert ev.type == "close" and ev.data == {"sessionID": sid}, ev

    run(scenario(), timeout=30)
