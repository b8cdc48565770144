// (c) Mute stops and unmute resumes forwarding of the speaker's voice, with the matching `vad`
// messages: Chromium's fake microphone beeps (a short tone twice a second), whose
// ssrc-audio-level values vary enough for rtcd's VAD (stddev > 10 over 50 packets) to send
// VoiceOn; Mute always yields VoiceOff.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {Env, newID, guarded, expectFlowing, growth, waitFor, sleep} from '../lib/harness.mjs';
import {RTC} from '../lib/relay.mjs';

const env = new Env('mute');
before(() => env.setup());
after(() => env.teardown({failed: env.failed}));

async function expectStopped(listener, speaker) {
    await sleep(600); // packets in flight / jitter buffer
    const d = await growth(listener, 'voice', speaker.sessionID, {windowMs: 2500});
    assert.ok(d <= 3, `${listener.name}: still received ${d} voice packets from muted ${speaker.name} in 2.5 s`);
}

test('mute stops and unmute resumes forwarding, with vad VoiceOn/VoiceOff', {timeout: 180000}, () => guarded(env, async () => {
    const callID = newID();
    const alice = await env.user('alice', {callID});
    const bob = await env.user('bob', {callID});
    await alice.start({unmuted: true});
    await bob.start({unmuted: false}); // listener: mic taken but never published (like the webapp)
    await alice.waitConnected();
    await bob.waitConnected();
    const p = env.plugin;

    await expectFlowing(bob, [['voice', alice.sessionID]], {minDelta: 30});
    // The beeping fake mic makes rtcd's VAD fire.
    const on1 = await waitFor(() => p.vad(alice.sessionID).find((v) => v.type === RTC.VOICE_ON), {what: 'vad VoiceOn for alice', describe: () => p.summary(alice.sessionID)});
    const mic = (await alice.stats()).micLevel;
    console.log(`alice mic level (media-source): ${JSON.stringify(mic)}`);
    assert.equal(p.vad(bob.sessionID).length, 0, 'no vad for bob (never published a voice track)');

    // 1. Mute with track.enabled=false only: Chromium keeps sending (silent) RTP, rtcd must drop it.
    const t1 = Date.now();
    await alice.mute('enabled');
    const off1 = await waitFor(() => p.vad(alice.sessionID, t1).find((v) => v.type === RTC.VOICE_OFF), {timeout: 5000, what: 'vad VoiceOff for alice after Mute', describe: () => p.summary(alice.sessionID)});
    assert.ok(off1.at >= on1.at);
    await expectStopped(bob, alice);
    const sending = (await alice.stats()).outbound.find((o) => o.kind === 'audio');
    const s0 = sending.packetsSent;
    await sleep(500);
    assert.ok((await alice.stats()).outbound.find((o) => o.kind === 'audio').packetsSent > s0, 'alice keeps sending RTP while muted (so the drop is rtcd\'s doing)');

    // 2. Unmute: forwarding resumes, VAD sees the beeps again.
    const t2 = Date.now();
    await alice.unmute();
    await expectFlowing(bob, [['voice', alice.sessionID]], {minDelta: 30});
    await waitFor(() => p.vad(alice.sessionID, t2).find((v) => v.type === RTC.VOICE_ON), {what: 'vad VoiceOn for alice after Unmute', describe: () => p.summary(alice.sessionID)});

    // 3. Mute like the webapp (track.enabled=false + replaceTrack(null): nothing is sent), unmute again.
    const t3 = Date.now();
    await alice.mute('replace');
    await waitFor(() => p.vad(alice.sessionID, t3).find((v) => v.type === RTC.VOICE_OFF), {timeout: 5000, what: 'vad VoiceOff after the second Mute'});
    await expectStopped(bob, alice);
    await alice.unmute();
    await expectFlowing(bob, [['voice', alice.sessionID]], {minDelta: 30});

    // 4. A listener who starts speaking mid-call: bob's first unmute adds his mic (client offer).
    await bob.unmute();
    await expectFlowing(alice, [['voice', bob.sessionID]], {minDelta: 30});
    await waitFor(() => p.vad(bob.sessionID).find((v) => v.type === RTC.VOICE_ON), {what: 'vad VoiceOn for bob'});

    // vad messages carry all ids and no data.
    for (const m of p.received({type: 'vad'})) {
        assert.ok(m.ids.group_id === p.clientID && m.ids.call_id === callID && m.ids.user_id, `vad ids: ${JSON.stringify(m.ids)}`);
        assert.equal(m.payload, '', 'vad has no data');
    }
    for (const u of [alice, bob]) {
        assert.deepEqual((await u.snapshot()).errors, [], `${u.name}: RTCPeer errors`);
    }
}));
