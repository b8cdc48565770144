// Simulcast screen share + camera video + a late joiner: alice shares her screen with RTCPeer's
// simulcast encodings (l: 5 fps, h: 20 fps), bob turns his camera on (VideoOn {videoStreamID}
// before the offer), then carol joins the running call and must get alice's voice and screen
// (low layer for new joiners) and bob's video when her data channel opens; both viewers are
// then switched up to the high layer as their bandwidth estimates allow.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {Env, newID, guarded, expectFlowing, waitFor, sleep, counter} from '../lib/harness.mjs';
import {RTC} from '../lib/relay.mjs';

const env = new Env('video');
before(() => env.setup());
after(() => env.teardown({failed: env.failed}));

test('simulcast screen, camera video and a late joiner', {timeout: 180000}, () => guarded(env, async () => {
    const callID = newID();
    const alice = await env.user('alice', {callID});
    const bob = await env.user('bob', {callID});
    await alice.start({unmuted: true, simulcast: true});
    await bob.start({unmuted: true});
    await alice.waitConnected();
    await bob.waitConnected();
    await alice.shareScreen({width: 1280, height: 720, frameRate: 20});
    const cam = await bob.startVideo({width: 320, height: 240, frameRate: 15});
    const p = env.plugin;
    const vOn = p.messages.find((m) => m.dir === 'out' && m.sessionID === bob.sessionID && m.rtcType === RTC.VIDEO_ON);
    assert.deepEqual(vOn && vOn.data, {videoStreamID: cam.streamID}, 'VideoOn payload');

    // alice's sender really is simulcast (two rids). Only rid'd senders count: Chromium may
    // send a padding packet on another video transceiver (packetsSent 1, bytesSent 0).
    const rids = await waitFor(async () => {
        const out = (await alice.stats()).outbound.filter((o) => o.kind === 'video' && o.rid && o.packetsSent > 0).map((o) => o.rid).sort();
        return out.length >= 2 ? out : null;
    }, {what: 'alice sending two simulcast layers', describe: async () => JSON.stringify((await alice.stats()).outbound)});
    assert.deepEqual(rids, ['h', 'l']);

    await expectFlowing(bob, [['screen', alice.sessionID]], {field: 'framesDecoded', minDelta: 5, windowMs: 3000});
    await expectFlowing(alice, [['video', bob.sessionID]], {field: 'framesDecoded', minDelta: 10, windowMs: 2000});

    const carol = await env.user('carol', {callID});
    await carol.start({unmuted: false});
    await carol.waitConnected();
    await expectFlowing(carol, [['voice', alice.sessionID], ['voice', bob.sessionID]], {minDelta: 30});
    await expectFlowing(carol, [['video', bob.sessionID]], {field: 'framesDecoded', minDelta: 10, windowMs: 2000});
    await expectFlowing(carol, [['screen', alice.sessionID]], {field: 'framesDecoded', minDelta: 5, windowMs: 3000});

    // Layers (spec §5.7): every viewer starts on `l`, the same forwarded track for all, and
    // on this loopback path its bandwidth estimate soon exceeds the layer's rate, so rtcd
    // switches it to `h` (remove `l`, add `h`: a new track) — 20 fps instead of 5.
    const screenTracks = async (u) => (await u.snapshot()).tracks
        .filter((t) => t.id.startsWith(`screen_${alice.sessionID}_`))
        .sort((x, y) => x.at - y.at);
    const upgraded = async (u) => {
        const ts = await screenTracks(u);
        return ts.length >= 2 && ts[0].id !== ts[ts.length - 1].id ? ts : null;
    };
    // On failure, also say what alice's browser was sending and why (a paused `h` with
    // qualityLimitationReason 'bandwidth' points at her send-side estimate, i.e. at the
    // transport-cc feedback rtcd gives her; 'cpu' at the machine).
    const sender = async () => {
        const s = await alice.stats();
        return {
            layers: s.outbound.filter((o) => o.kind === 'video' && o.rid).map((o) => ({rid: o.rid, framesEncoded: o.framesEncoded, bytesSent: o.bytesSent, fps: o.framesPerSecond, limitation: o.qualityLimitationReason, limitationDurations: o.qualityLimitationDurations})),
            availableOutgoingBitrate: s.selectedPair && s.selectedPair.availableOutgoingBitrate,
        };
    };
    const describe = (u) => async () => JSON.stringify({tracks: await screenTracks(u), aliceSends: await sender()});
    const bobTracks = await waitFor(() => upgraded(bob), {what: 'bob switched to another screen layer', timeout: 45000, describe: describe(bob)});
    const carolTracks = await waitFor(() => upgraded(carol), {what: 'carol switched to another screen layer', timeout: 45000, describe: describe(carol)});
    assert.equal(carolTracks[0].id, bobTracks[0].id, 'both viewers started on the same (`l`) track');
    assert.equal(carolTracks[carolTracks.length - 1].id, bobTracks[bobTracks.length - 1].id, 'and moved to the same (`h`) track');
    const sc = await expectFlowing(carol, [['screen', alice.sessionID]], {field: 'framesDecoded', minDelta: 5, windowMs: 3000});
    const f0 = counter(sc, 'screen', alice.sessionID, 'framesDecoded');
    await sleep(3000);
    const f1 = counter(await carol.stats(), 'screen', alice.sessionID, 'framesDecoded');
    const fps = (f1 - f0) / 3;
    console.log(`carol decodes alice's screen at ${fps} fps after the switch`);
    assert.ok(fps > 10, `carol gets the high (20 fps) layer, measured ${fps} fps`);
    const metrics = await (await fetch(`${env.rtcd.baseURL}/metrics`)).text();
    const ups = metrics.split('\n').filter((l) => l.startsWith('rtcd_rtc_simulcast_layer_switches_total') && l.includes('layer="h"'))
        .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
    assert.ok(ups >= 2, `layer switches up counted: ${ups}`);

    const snap = await carol.snapshot();
    for (const [type, pub] of [['voice', alice], ['voice', bob], ['screen', alice], ['video', bob]]) {
        const t = snap.tracks.find((tr) => tr.id.startsWith(`${type}_${pub.sessionID}_`));
        assert.ok(t, `carol has ${type} of ${pub.name}: ${JSON.stringify(snap.tracks)}`);
        assert.deepEqual(t.streams, [pub.sessionID], `stream id of ${type} of ${pub.name}`);
        if (t.kind === 'video') {
            assert.ok(snap.mediaMaps.some((m) => m.map[t.mid] && m.map[t.mid].type === type), `MediaMap for ${type} (mid ${t.mid}): ${JSON.stringify(snap.mediaMaps)}`);
        }
    }
    assert.ok(!snap.tracks.some((t) => t.id.includes(carol.sessionID)), 'carol gets none of her own tracks');
    for (const u of [alice, bob, carol]) {
        assert.deepEqual((await u.snapshot()).errors, [], `${u.name}: RTCPeer errors`);
    }
}));
