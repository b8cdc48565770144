"""§5.9-5.11: VAD edges from real audio levels (aiortc sends ssrc-audio-level), Mute/Unmute,
and leave -> close."""

import asyncio

import relay as rl
from harness import Harness, run
from peer import wait_for


def test_vad_mute_unmute_and_leave(daemon):
    async def scenario():
        async with Harness(daemon) as h:
            a = await h.joined(mic="speech")  # loudness varies every 100 ms
            b = await h.joined(mic=None)
            await wait_for(lambda: b.total_frames() >= 25, 10, what="A's audio at B")

            # Varying levels: stddev > 10 over the 50-packet window -> VoiceOn for A.
            await wait_for(lambda: rl.VOICE_ON in a.vad, 8, what=f"VoiceOn (vad {a.vad})")
            assert not b.vad, "B publishes nothing and must not get VAD events"
            # Steady tone: stddev 0 -> VoiceOff, at least 2 s after the activation.
            on_at = a.first("vad").at
            a.mic.mode = "tone"
            await wait_for(lambda: a.vad[-1] == rl.VOICE_OFF, 8, what=f"VoiceOff (vad {a.vad})")
            off = [e for e in a.all("vad") if e.data == rl.VOICE_OFF][-1]
            assert off.at - on_at >= 1.9, f"VoiceOff only {off.at - on_at:.2f}s after VoiceOn"

            # Mute: forced VoiceOff, forwarding stops; Unmute: forwarding resumes.
            a.mic.mode = "speech"
            await wait_for(lambda: a.vad[-1] == rl.VOICE_ON, 8, what="VoiceOn again")
            n_vad = len(a.vad)
            await h.relay.send_rtc(a.session_id, rl.MUTE, None)
            await wait_for(lambda: len(a.vad) > n_vad, 3, what="VoiceOff on mute")
            assert a.vad[n_vad] == rl.VOICE_OFF
            await asyncio.sleep(0.7)  # drain what was in flight / jitter buffer
            n = b.total_frames()
            await asyncio.sleep(1.5)
            assert b.total_frames() - n <= 3, f"B still got {b.total_frames() - n} frames while A muted"
            await h.relay.send_rtc(a.session_id, rl.UNMUTE, None)
            await wait_for(lambda: b.total_frames() >= n + 25, 5, what="audio after unmute")

            # Leave: rtcd closes A's session and tells the plugin (close {sessionID}).
            await h.relay.leave(a.session_id)
            await asyncio.wait_for(a.closed.wait(), 5)
            close = a.first("close")
            assert close.data == {"sessionID": a.session_id}
            assert not b.closed.is_set()
            assert not a.errors and not b.errors, (a.errors, b.errors)

    run(scenario())
