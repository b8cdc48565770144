// (a) Three users in one call hear each other: every page receives growing voice RTP from both
// other users, forwarded by rtcd with track ids voice_<publisher>_<rand> and stream id = publisher.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {Env, newID, guarded, expectFlowing, waitFor, inboundBy} from '../lib/harness.mjs';

const env = new Env('audio');
before(() => env.setup());
after(() => env.teardown({failed: env.failed}));

test('three users in one call hear each other', {timeout: 120000}, () => guarded(env, async () => {
    const callID = newID();
    const users = [];
    for (const name of ['alice', 'bob', 'carol']) {
        users.push(await env.user(name, {callID}));
    }
    for (const u of users) {
        await u.start({unmuted: true});
    }
    for (const u of users) {
        await u.waitConnected();
    }

    // Signaling as the plugin sees it: an SDP answer and 127.0.0.1 candidates per session,
    // every rtc message carrying all four ids.
    const p = env.plugin;
    assert.equal(p.hello.clientID, p.clientID, 'hello.clientID is the registered client id');
    assert.ok(typeof p.hello.connID === 'string' && p.hello.connID.length > 0, 'hello carries a connID');
    for (const u of users) {
        const rtc = p.received({type: 'rtc', sessionID: u.sessionID});
        const answers = rtc.filter((m) => m.rtcType === 2 && m.data && m.data.type === 'answer');
        assert.ok(answers.length >= 1, `${u.name}: rtcd sent an SDP answer`);
        assert.match(answers[0].data.sdp, /a=ice-lite/, `${u.name}: answer is ICE-lite`);
        const cands = rtc.filter((m) => m.rtcType === 1);
        assert.ok(cands.length >= 1, `${u.name}: rtcd trickled candidates`);
        for (const c of cands) {
            assert.equal(c.data.type, 'candidate', 'candidate wrapper {type:"candidate"}');
            assert.match(c.data.candidate.candidate, / 127\.0\.0\.1 /, `candidate on 127.0.0.1: ${c.data.candidate.candidate}`);
            assert.ok(c.data.candidate.candidate.includes(` ${env.rtcd.rtcPort} `), `candidate on the rtc port ${env.rtcd.rtcPort}: ${c.data.candidate.candidate}`);
        }
        for (const m of rtc) {
            assert.deepEqual(m.ids, {group_id: p.clientID, user_id: u.userID, session_id: u.sessionID, call_id: callID}, `${u.name}: ids of rtc message`);
        }
    }

    for (const u of users) {
        const others = users.filter((o) => o !== u).map((o) => ['voice', o.sessionID]);
        await expectFlowing(u, others, {minDelta: 30, windowMs: 2000});
        // Decoded and audible: the page plays every remote track (like the webapp), so Chromium
        // decodes it; the fake mics' beeps give non-zero energy.
        await waitFor(async () => {
            const inb = inboundBy(await u.stats());
            return others.every(([type, pub]) => (inb[`${type}:${pub}`] || {}).totalAudioEnergy > 0);
        }, {timeout: 10000, what: `${u.name}: decoded voice of both others has audio energy`, describe: async () => JSON.stringify(inboundBy(await u.stats()))});
        const snap = await u.snapshot();
        for (const o of users.filter((x) => x !== u)) {
            const t = snap.tracks.find((tr) => tr.kind === 'audio' && tr.id.startsWith(`voice_${o.sessionID}_`));
            assert.ok(t, `${u.name}: received a voice track from ${o.name}: ${JSON.stringify(snap.tracks)}`);
            assert.deepEqual(t.streams, [o.sessionID], `${u.name}: stream id of ${o.name}'s voice is the publisher session id`);
        }
        // Chromium in the loopback-only namespace: only 127.0.0.1 host candidates, a UDP pair on loopback.
        assert.ok(snap.localCandidates.length > 0 && snap.localCandidates.every((c) => / 127\.0\.0\.1 \d+ typ host/.test(c)), `${u.name}: browser candidates are 127.0.0.1 host: ${JSON.stringify(snap.localCandidates)}`);
        const pair = (await u.stats()).selectedPair;
        assert.ok(pair && pair.local.address === '127.0.0.1' && pair.remote.address === '127.0.0.1' && pair.remote.protocol === 'udp' && pair.remote.port === env.rtcd.rtcPort, `${u.name}: selected pair 127.0.0.1 -> rtcd udp: ${JSON.stringify(pair)}`);
        assert.ok(snap.dc.pongs > 0, `${u.name}: calls-dc ping answered with pong (${JSON.stringify(snap.dc)})`);
        assert.deepEqual(snap.errors, [], `${u.name}: RTCPeer errors`);
    }
}));

test('six users joining at the same moment all hear each other (renegotiation storm)', {timeout: 150000}, () => guarded(env, async () => {
    const callID = newID();
    const names = ['u1', 'u2', 'u3', 'u4', 'u5', 'u6'];
    const users = await Promise.all(names.map((name) => env.user(name, {callID})));
    await Promise.all(users.map((u) => u.start({unmuted: true})));
    await Promise.all(users.map((u) => u.waitConnected()));
    for (const u of users) {
        const others = users.filter((o) => o !== u).map((o) => ['voice', o.sessionID]);
        await expectFlowing(u, others, {minDelta: 20, windowMs: 2000});
        const snap = await u.snapshot();
        assert.deepEqual(snap.errors, [], `${u.name}: RTCPeer errors`);
        assert.equal(snap.tracks.filter((t) => t.kind === 'audio').length, 5, `${u.name}: exactly five voice tracks: ${JSON.stringify(snap.tracks.map((t) => t.id))}`);
    }
}));
