// (b) A screen share is decoded by the other users: ScreenOn {screenStreamID} goes to rtcd
// before the offer carrying the video track, rtcd forwards it as screen_<publisher>_<rand>
// (VP8, stream id = publisher), announces it in a DC MediaMap, and the viewers' framesDecoded
// grows. ScreenOff removes the track at the viewers (renegotiation) and the frames stop.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {Env, newID, guarded, expectFlowing, growth, waitFor, sleep, inboundBy} from '../lib/harness.mjs';
import {RTC} from '../lib/relay.mjs';

const env = new Env('screen');
before(() => env.setup());
after(() => env.teardown({failed: env.failed}));

test('a screen share is decoded by the others, and stops after ScreenOff', {timeout: 150000}, () => guarded(env, async () => {
    const callID = newID();
    const [alice, bob, carol] = [await env.user('alice', {callID}), await env.user('bob', {callID}), await env.user('carol', {callID})];
    for (const u of [alice, bob, carol]) {
        await u.start({unmuted: true});
    }
    for (const u of [alice, bob, carol]) {
        await u.waitConnected();
    }
    // Let the voice renegotiations settle first (rtcd pushes every voice track to every peer).
    await expectFlowing(bob, [['voice', alice.sessionID]], {minDelta: 20});

    const p = env.plugin;
    const outBefore = p.messages.length;
    const share = await alice.shareScreen({width: 640, height: 480, frameRate: 15});

    // ScreenOn with the stream id must precede the offer that carries the video m-line.
    const sent = await waitFor(() => {
        const rows = p.messages.slice(outBefore).filter((m) => m.dir === 'out' && m.sessionID === alice.sessionID && m.type === 'rtc');
        const on = rows.findIndex((m) => m.rtcType === RTC.SCREEN_ON);
        const offer = rows.findIndex((m) => m.rtcType === RTC.SDP && m.data && m.data.type === 'offer' && /m=video/.test(m.data.sdp));
        return on >= 0 && offer >= 0 ? {rows, on, offer} : null;
    }, {what: 'alice: ScreenOn and a video offer sent to rtcd', describe: () => p.summary(alice.sessionID)});
    assert.ok(sent.on < sent.offer, `ScreenOn (#${sent.on}) sent before the video offer (#${sent.offer})`);
    assert.deepEqual(sent.rows[sent.on].data, {screenStreamID: share.streamID}, 'ScreenOn payload');

    for (const v of [bob, carol]) {
        await expectFlowing(v, [['screen', alice.sessionID]], {field: 'framesDecoded', minDelta: 8, windowMs: 3000});
        const snap = await v.snapshot();
        const t = snap.tracks.find((tr) => tr.kind === 'video' && tr.id.startsWith(`screen_${alice.sessionID}_`));
        assert.ok(t, `${v.name}: got a screen track from alice: ${JSON.stringify(snap.tracks)}`);
        assert.equal(t.id.split('_').length, 3, `${v.name}: track id has three fields: ${t.id}`);
        assert.deepEqual(t.streams, [alice.sessionID], `${v.name}: screen stream id = alice's session id`);
        const mm = snap.mediaMaps.find((m) => m.map && m.map[t.mid] && m.map[t.mid].type === 'screen');
        assert.ok(mm, `${v.name}: a DC MediaMap announced mid ${t.mid} as screen: ${JSON.stringify(snap.mediaMaps)}`);
        assert.ok(mm.at <= t.at, `${v.name}: MediaMap (${mm.at}) arrived before the track (${t.at})`);
        const st = await v.stats();
        const inb = st.inbound.find((s) => s.trackIdentifier === t.id);
        assert.equal(inb.codec, 'video/VP8', `${v.name}: screen codec`);
        assert.deepEqual(snap.errors, [], `${v.name}: RTCPeer errors`);
    }
    // The sharer does not get its own screen back.
    const aSnap = await alice.snapshot();
    assert.ok(!aSnap.tracks.some((tr) => tr.id.includes(alice.sessionID)), `alice receives none of her own tracks: ${JSON.stringify(aSnap.tracks)}`);

    // ScreenOff: rtcd renegotiates the screen track away at every viewer; frames stop.
    await alice.stopScreen();
    for (const v of [bob, carol]) {
        await waitFor(async () => {
            const snap = await v.snapshot();
            const t = snap.tracks.find((tr) => tr.id.startsWith(`screen_${alice.sessionID}_`));
            return t && (t.ended || t.muted);
        }, {what: `${v.name}: alice's screen track removed (muted/ended) after ScreenOff`, describe: async () => JSON.stringify((await v.stats()).transceivers)});
        await sleep(500);
        const d = await growth(v, 'screen', alice.sessionID, {field: 'framesDecoded', windowMs: 2000});
        assert.ok(d <= 1, `${v.name}: screen frames still decoded after ScreenOff (+${d}); inbound=${JSON.stringify(inboundBy(await v.stats()))}`);
    }
    // Voice keeps flowing.
    await expectFlowing(carol, [['voice', alice.sessionID], ['voice', bob.sessionID]], {minDelta: 20});
}));

test('one sharer per call: a second ScreenOn is refused, handover works after ScreenOff', {timeout: 150000}, () => guarded(env, async () => {
    const callID = newID();
    const [dora, erin, finn] = [await env.user('dora', {callID}), await env.user('erin', {callID}), await env.user('finn', {callID})];
    for (const u of [dora, erin, finn]) {
        await u.start({unmuted: false});
    }
    for (const u of [dora, erin, finn]) {
        await u.waitConnected();
    }
    await dora.shareScreen({width: 320, height: 240});
    await expectFlowing(finn, [['screen', dora.sessionID]], {field: 'framesDecoded', minDelta: 5});

    // erin tries to share while dora is sharing: rtcd keeps dora as the sharer and rejects
    // erin's video (its stream id is neither the call's screen stream nor a VideoOn stream).
    await erin.shareScreen({width: 320, height: 240});
    await sleep(4000);
    for (const v of [dora, finn]) {
        const snap = await v.snapshot();
        assert.ok(!snap.tracks.some((t) => t.id.includes(erin.sessionID) && t.kind === 'video'), `${v.name}: got a video track from the second sharer: ${JSON.stringify(snap.tracks)}`);
    }
    await expectFlowing(finn, [['screen', dora.sessionID]], {field: 'framesDecoded', minDelta: 5});
    await erin.stopScreen(); // ScreenOff from a non-sharer: ignored by rtcd
    await expectFlowing(finn, [['screen', dora.sessionID]], {field: 'framesDecoded', minDelta: 5});

    // Handover: dora stops, erin shares again.
    await dora.stopScreen();
    await waitFor(async () => {
        const t = (await finn.snapshot()).tracks.find((tr) => tr.id.startsWith(`screen_${dora.sessionID}_`));
        return t && (t.ended || t.muted);
    }, {what: 'finn: dora\'s screen removed'});
    await erin.shareScreen({width: 320, height: 240});
    for (const v of [dora, finn]) {
        await expectFlowing(v, [['screen', erin.sessionID]], {field: 'framesDecoded', minDelta: 5});
    }
    for (const u of [dora, erin, finn]) {
        assert.deepEqual((await u.snapshot()).errors, [], `${u.name}: RTCPeer errors`);
    }
}));
