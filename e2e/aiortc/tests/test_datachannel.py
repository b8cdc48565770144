"""(b) The calls-dc protocol: Ping/Pong, legacy text ping, Lock/Unlock replies (exact bytes)."""

import asyncio

from harness import Harness, run
from peer import DC_LOCK, DC_PING, DC_UNLOCK, dc_encode


async def next_bytes(p, timeout=5.0):
    """Next raw DC message after the ones already seen."""
    start = len(p.dc_raw)
    deadline = asyncio.get_running_loop().time() + timeout
    while len(p.dc_raw) == start:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("no data channel message")
        await asyncio.sleep(0.01)
    return p.dc_raw[start][1]


def test_ping_pong_legacy_text_and_lock_unlock_bytes(daemon):
    async def scenario():
        async with Harness(daemon) as h:
            # Data-channel-only peer: nothing else (media maps, offers) uses the DC meanwhile.
            p = h.peer(mic=None)
            await p.start()
            await p.wait_connected(15)
            await asyncio.sleep(0.3)
            p.dc_raw.clear()

            # Browser Ping is a positive fixint 01; rtcd answers Pong as uint8 cc 02.
            for _ in range(3):
                p.dc.send(bytes([DC_PING]))
                got = await next_bytes(p)
                assert got == b"\xcc\x02", got

            # Legacy mobile clients: the text "ping" is answered with the text "pong".
            p.dc.send("ping")
            got = await next_bytes(p)
            assert got == "pong", repr(got)
            # The same 4 bytes sent as a binary message also count as the legacy ping.
            p.dc.send(b"ping")
            got = await next_bytes(p)
            assert got in ("pong", b"pong"), repr(got)

            # Lock: granted (cc 07 c3), refused while held (cc 07 c2), granted after Unlock.
            p.dc.send(dc_encode(DC_LOCK))
            assert await next_bytes(p) == b"\xcc\x07\xc3"
            p.dc.send(dc_encode(DC_LOCK))
            assert await next_bytes(p) == b"\xcc\x07\xc2"
            p.dc.send(dc_encode(DC_UNLOCK))
            await asyncio.sleep(0.2)
            p.dc.send(dc_encode(DC_LOCK))
            assert await next_bytes(p) == b"\xcc\x07\xc3"
            p.dc.send(dc_encode(DC_UNLOCK))

            # Unknown / garbage messages and metrics reports do not break the channel.
            await asyncio.sleep(0.2)
            mark = len(p.dc_raw)
            p.dc.send(b"\xc1")                      # never-used msgpack byte
            p.dc.send(dc_encode(4, 0.05))            # LossRate
            p.dc.send(dc_encode(5, 0.012))           # RoundTripTime
            p.dc.send(dc_encode(6, 0.003))           # Jitter
            p.dc.send(dc_encode(10, {"x": 1}))       # CodecSupportMap: rejected by rtcd 1.2.6
            await asyncio.sleep(0.2)
            extra = [m for _, m in p.dc_raw[mark:]]
            assert extra == [], f"unexpected replies: {extra!r}"
            p.dc.send(bytes([DC_PING]))
            assert await next_bytes(p) == b"\xcc\x02"
            assert p.pc.connectionState == "connected"
            assert not p.errors, p.errors

    run(scenario())
