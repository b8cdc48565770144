// dcSignaling (join prop): after the data channel opens rtcd sends its own offers as
// zlib-compressed SDP over `calls-dc` (spec 4.5/4.6) instead of the WebSocket; the page answers
// over the DC like newer calls-common. Media must flow and no server offer may use the WS.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {Env, newID, guarded, expectFlowing} from '../lib/harness.mjs';
import {RTC} from '../lib/relay.mjs';

const env = new Env('dcsignaling');
before(() => env.setup());
after(() => env.teardown({failed: env.failed}));

test('server offers over the data channel with dcSignaling', {timeout: 150000}, () => guarded(env, async () => {
    const callID = newID();
    const alice = await env.user('alice', {callID, dcSignaling: true});
    const bob = await env.user('bob', {callID, dcSignaling: true});
    const carol = await env.user('carol', {callID}); // WS signaling, same call
    for (const u of [alice, bob, carol]) {
        await u.start({unmuted: true});
    }
    for (const u of [alice, bob, carol]) {
        await u.waitConnected();
    }
    await carol.shareScreen({width: 320, height: 240});
    for (const u of [alice, bob]) {
        const others = [alice, bob, carol].filter((o) => o !== u).map((o) => ['voice', o.sessionID]);
        await expectFlowing(u, others, {minDelta: 30});
        await expectFlowing(u, [['screen', carol.sessionID]], {field: 'framesDecoded', minDelta: 5});
    }
    await expectFlowing(carol, [['voice', alice.sessionID], ['voice', bob.sessionID]], {minDelta: 30});

    const p = env.plugin;
    for (const u of [alice, bob]) {
        const snap = await u.snapshot();
        assert.ok(snap.dcSDP.offersIn >= 2, `${u.name}: rtcd offers arrived over the DC: ${JSON.stringify(snap.dcSDP)}`);
        assert.equal(snap.dcSDP.answersOut, snap.dcSDP.offersIn, `${u.name}: every DC offer answered over the DC`);
        const wsOffers = p.received({type: 'rtc', sessionID: u.sessionID, rtcType: RTC.SDP}).filter((m) => m.data.type === 'offer');
        assert.deepEqual(wsOffers.map((m) => m.at), [], `${u.name}: no rtcd offer over the WebSocket with dcSignaling`);
        const wsAnswers = p.received({type: 'rtc', sessionID: u.sessionID, rtcType: RTC.SDP}).filter((m) => m.data.type === 'answer');
        assert.ok(wsAnswers.length >= 1, `${u.name}: the answer to the initial (WS) offer came over the WS`);
        assert.deepEqual(snap.errors, [], `${u.name}: RTCPeer errors`);
    }
    const carolSnap = await carol.snapshot();
    assert.equal(carolSnap.dcSDP.offersIn, 0, 'carol (no dcSignaling) got no DC offers');
    assert.ok(p.received({type: 'rtc', sessionID: carol.sessionID, rtcType: RTC.SDP}).some((m) => m.data.type === 'offer'), 'carol got rtcd offers over the WS');
}));
