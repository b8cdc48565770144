"""(f) 10 % random UDP loss on a subscriber's path, injected with nftables inside a fresh
loopback-only network namespace (the kernel here has no netem; see real-clients.md §4.3)."""

import asyncio
import os
import re
import time

import pytest

from daemon import Daemon, Netns, in_netns, netns_available
from harness import Harness, run
from peer import wait_for

LOSS_PERCENT = 10
WINDOW_S = 10.0


def drop_counters(ruleset: str) -> int:
    return sum(int(m) for m in re.findall(r"counter packets (\d+) bytes \d+ drop", ruleset))


def test_audio_survives_ten_percent_loss_both_ways(request):
    why = netns_available()
    if why:
        pytest.skip(why)
    with Netns() as ns:
        d = Daemon(request.node.name, netns=ns.name).start()
        try:
            with in_netns(ns.name):
                result = run(scenario(d, ns), timeout=150)
        except BaseException:
            print(f"\n----- rtcd log tail ({d.log_path}) -----\n{d.log_tail(80)}")
            raise
        finally:
            d.stop()
    print(result)
    if not os.environ.get("AIORTC_KEEP_LOGS"):
        d.log_path.unlink(missing_ok=True)


async def scenario(d: Daemon, ns: Netns) -> dict:
    async with Harness(d) as h:
        # Publisher A connects without loss.
        a = await h.joined(mic="tone")
        a_port = a.pc.sctp.transport.transport.iceGatherer.getLocalCandidates()[0].port
        # Every UDP datagram not to/from A's port is a packet of B's leg (all media goes
        # through the daemon's single ICE port): drop 10 % of them on output (each datagram on
        # lo passes the output hook exactly once), i.e. 10 % loss in each direction, from
        # before B's ICE/DTLS/SCTP handshakes on.
        ns.nft(
            f"""table inet aiortc_impair {{
  chain out {{
    type filter hook output priority 0; policy accept;
    udp sport {d.ice_port} udp dport != {a_port} counter
    udp dport {d.ice_port} udp sport != {a_port} counter
    udp sport {d.ice_port} udp dport != {a_port} numgen random mod 100 < {LOSS_PERCENT} counter drop
    udp dport {d.ice_port} udp sport != {a_port} numgen random mod 100 < {LOSS_PERCENT} counter drop
  }}
}}
"""
        )
        t0 = time.monotonic()
        b = h.peer(mic=None)
        await b.start()
        await b.wait_connected(45)
        connect_s = time.monotonic() - t0
        await wait_for(lambda: b.answers_sent, 30, what="server offer to B under loss")
        await wait_for(lambda: b.total_frames() >= 20, 30, what=f"first audio at B ({b.frames})")
        first_audio_s = time.monotonic() - t0

        w0 = time.monotonic()
        sent0, recv0 = await a.outbound_packets(), await b.inbound_packets()
        await asyncio.sleep(WINDOW_S)
        sent1, recv1 = await a.outbound_packets(), await b.inbound_packets()
        listing = ns.nft_list()
        drops = drop_counters(listing)
        counts = [int(x) for x in re.findall(r"counter packets (\d+)", listing)]
        sent, recv = sent1 - sent0, recv1 - recv0
        ratio = recv / sent if sent else 0.0

        # Loss removed: everything arrives again.
        ns.nft("delete table inet aiortc_impair\n")
        await asyncio.sleep(1.0)
        s2, r2 = await a.outbound_packets(), await b.inbound_packets()
        await asyncio.sleep(3.0)
        s3, r3 = await a.outbound_packets(), await b.inbound_packets()
        ratio_after = (r3 - r2) / (s3 - s2) if s3 > s2 else 0.0

        result = {
            "connect_s": round(connect_s, 2),
            "first_audio_s": round(first_audio_s, 2),
            "window_sent": sent,
            "window_received": recv,
            "ratio": round(ratio, 3),
            "max_gap_s": round(b.max_gap(w0), 3),
            "nft_drops": drops,
            "nft_down_up_total_dropped": counts,
            "ratio_after_loss_removed": round(ratio_after, 3),
        }
        assert drops > 0, f"the nftables rule dropped nothing: {result}"
        assert sent >= 0.8 * WINDOW_S * 50, f"publisher did not send steadily: {result}"
        assert ratio >= 0.80, f"less than 80 % of the audio arrived under 10 % loss: {result}"
        assert ratio <= 0.97, f"loss did not apply to B's leg: {result}"
        assert ratio_after >= 0.95, f"audio did not recover after the loss: {result}"
        assert b.pc.connectionState == "connected"
        return result
