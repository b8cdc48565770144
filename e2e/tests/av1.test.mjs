// AV1 screen sharing (spec 5.8), driven like the Calls webapp: a session joined with
// `av1Support: true` sends its screen twice on one stream — the fallback track (VP8, no codec
// preference) and the same track with the AV1 codec preference. rtcd forwards the AV1 track
// only to receivers that joined with av1Support as well, the VP8 track to everyone else, and
// never both. Checked on receivers present when the share starts (track pushed on publish)
// and on late joiners (subscribed when their data channel opens). ScreenOff removes whichever
// copy each viewer has.
// Skipped (with the reason printed) when this Chromium cannot encode and decode AV1 in WebRTC.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {Env, newID, guarded, expectFlowing, growth, waitFor, sleep} from '../lib/harness.mjs';

const env = new Env('av1');
before(() => env.setup());
after(() => env.teardown({failed: env.failed}));

// The screen tracks `viewer` receives from `publisher`: [{track, codec, framesDecoded}].
async function screenTracks(viewer, publisher) {
    const snap = await viewer.snapshot();
    const st = await viewer.stats();
    return snap.tracks
        .filter((t) => t.kind === 'video' && t.id.startsWith(`screen_${publisher.sessionID}_`))
        .map((t) => {
            const inb = st.inbound.find((s) => s.trackIdentifier === t.id) || {};
            return {track: t.id, mid: t.mid, ended: t.ended, codec: inb.codec ?? null, framesDecoded: inb.framesDecoded ?? 0};
        });
}

// `viewer` decodes `publisher`'s screen in `codec` (frames keep growing) and has exactly one
// live screen track from it (never the other codec's copy as well).
async function expectScreenIn(viewer, publisher, codec) {
    await waitFor(async () => {
        const ts = await screenTracks(viewer, publisher);
        return ts.some((t) => t.codec !== null && t.framesDecoded > 0) ? ts : null;
    }, {what: `${viewer.name}: decoding ${publisher.name}'s screen`, describe: async () => JSON.stringify(await screenTracks(viewer, publisher))});
    await expectFlowing(viewer, [['screen', publisher.sessionID]], {field: 'framesDecoded', minDelta: 8, windowMs: 3000});
    const ts = (await screenTracks(viewer, publisher)).filter((t) => !t.ended);
    assert.equal(ts.length, 1, `${viewer.name}: exactly one screen track from ${publisher.name}: ${JSON.stringify(ts)}`);
    assert.equal(ts[0].codec, codec, `${viewer.name}: screen codec (${JSON.stringify(ts)})`);
    assert.ok(ts[0].framesDecoded > 0, `${viewer.name}: frames decoded`);
    assert.deepEqual((await viewer.snapshot()).errors, [], `${viewer.name}: RTCPeer errors`);
    return ts[0];
}

test('AV1-capable viewers decode the screen as AV1, the others as VP8', {timeout: 200000}, (t) => guarded(env, async () => {
    const callID = newID();
    const alice = await env.user('alice', {callID, av1Support: true});

    // Precondition: this Chromium encodes and decodes AV1 in WebRTC.
    const caps = await alice.eval(() => window.e2e.av1Capabilities());
    if (!caps.send || !caps.receive) {
        const missing = [
            !caps.send && 'encode (RTCRtpSender.getCapabilities(\'video\') lists no video/AV1)',
            !caps.receive && 'decode (RTCRtpReceiver.getCapabilities(\'video\') lists no video/AV1)',
        ].filter(Boolean).join(' nor ');
        const reason = `this Chromium cannot ${missing} in WebRTC`;
        console.log(`SKIP av1: ${reason}`);
        t.skip(reason);
        return;
    }
    console.log(`av1: Chromium AV1 capability ${JSON.stringify(caps.codec)}`);

    const bob = await env.user('bob', {callID, av1Support: true});
    const carol = await env.user('carol', {callID, av1Support: false});
    for (const u of [alice, bob, carol]) {
        await u.start({unmuted: false});
    }
    for (const u of [alice, bob, carol]) {
        await u.waitConnected();
    }

    const share = await alice.shareScreen({width: 320, height: 240, frameRate: 15});
    assert.equal(share.av1, true, 'alice (av1Support) adds the AV1 copy of her screen');

    // alice really sends both encodings of the one screen track.
    const out = await waitFor(async () => {
        const o = (await alice.stats()).outbound.filter((s) => s.kind === 'video' && s.framesEncoded > 0);
        const codecs = [...new Set(o.map((s) => s.codec))].sort();
        return codecs.length === 2 ? codecs : null;
    }, {what: 'alice encoding her screen as VP8 and AV1', describe: async () => JSON.stringify((await alice.stats()).outbound)});
    assert.deepEqual(out, ['video/AV1', 'video/VP8']);

    const b = await expectScreenIn(bob, alice, 'video/AV1');
    const c = await expectScreenIn(carol, alice, 'video/VP8');
    console.log(`av1: bob decodes ${b.codec} (${b.framesDecoded} frames), carol ${c.codec} (${c.framesDecoded} frames)`);
    for (const v of [bob, carol]) {
        const tr = (await v.snapshot()).tracks.find((x) => x.id === (v === bob ? b.track : c.track));
        assert.deepEqual(tr.streams, [alice.sessionID], `${v.name}: screen stream id = alice's session id`);
    }
    assert.ok(!(await alice.snapshot()).tracks.some((x) => x.id.includes(alice.sessionID)), 'alice receives none of her own tracks');

    // Late joiners are subscribed when their data channel opens: same codec rule.
    const dave = await env.user('dave', {callID, av1Support: true});
    const erin = await env.user('erin', {callID, av1Support: false});
    for (const u of [dave, erin]) {
        await u.start({unmuted: false});
    }
    for (const u of [dave, erin]) {
        await u.waitConnected();
    }
    const d = await expectScreenIn(dave, alice, 'video/AV1');
    const e = await expectScreenIn(erin, alice, 'video/VP8');
    console.log(`av1: late joiners: dave decodes ${d.codec} (${d.framesDecoded} frames), erin ${e.codec} (${e.framesDecoded} frames)`);
    assert.deepEqual((await alice.snapshot()).errors, [], 'alice: RTCPeer errors');

    // ScreenOff (alice removes both senders, like newer calls-common): every viewer's screen
    // track is renegotiated away and its frames stop.
    await alice.stopScreen();
    for (const v of [bob, carol, dave, erin]) {
        await waitFor(async () => {
            const snap = await v.snapshot();
            const tr = snap.tracks.find((x) => x.id.startsWith(`screen_${alice.sessionID}_`));
            return tr && (tr.ended || tr.muted);
        }, {what: `${v.name}: alice's screen track removed (muted/ended) after ScreenOff`, describe: async () => JSON.stringify((await v.stats()).transceivers)});
    }
    await sleep(500);
    for (const v of [bob, carol, dave, erin]) {
        const n = await growth(v, 'screen', alice.sessionID, {field: 'framesDecoded', windowMs: 1500});
        assert.ok(n <= 1, `${v.name}: screen frames still decoded after ScreenOff (+${n})`);
        assert.deepEqual((await v.snapshot()).errors, [], `${v.name}: RTCPeer errors`);
    }
}));
