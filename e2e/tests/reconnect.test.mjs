// An end user's Mattermost WebSocket moves to another plugin node mid-call: the new node sends
// `reconnect {sessionID}` (same credentials, another rtcd connection), and from then on rtcd's
// messages for that session (server offers, candidates, vad) must go to the new connection,
// while the call keeps working.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {Env, newID, guarded, expectFlowing, waitFor} from '../lib/harness.mjs';
import {RTC} from '../lib/relay.mjs';

const env = new Env('reconnect', {nodes: {a2: 'a'}});
before(() => env.setup());
after(() => env.teardown({failed: env.failed}));

test('reconnect moves a session to another plugin connection mid-call', {timeout: 150000}, () => guarded(env, async () => {
    const callID = newID();
    const alice = await env.user('alice', {callID, node: 'a'});
    const bob = await env.user('bob', {callID, node: 'a'});
    await alice.start({unmuted: true});
    await bob.start({unmuted: true});
    await alice.waitConnected();
    await bob.waitConnected();
    await expectFlowing(alice, [['voice', bob.sessionID]], {minDelta: 30});

    const {a, a2} = env.plugins;
    env.mm.moveSession(alice.sessionID, 'a2');
    const tMove = Date.now();
    // A new speaker: rtcd must renegotiate with alice through a2.
    const carol = await env.user('carol', {callID, node: 'a'});
    await carol.start({unmuted: true});
    await carol.waitConnected();
    await expectFlowing(alice, [['voice', carol.sessionID]], {minDelta: 30});
    const viaA2 = a2.received({type: 'rtc', sessionID: alice.sessionID, since: tMove});
    const viaA = a.received({type: 'rtc', sessionID: alice.sessionID, since: tMove + 200});
    assert.ok(viaA2.some((m) => m.rtcType === RTC.SDP && m.data.type === 'offer'), `server offer for alice arrived on the new connection:\n${a2.summary(alice.sessionID)}`);
    assert.deepEqual(viaA.map((m) => `${m.rtcType}`), [], 'nothing for alice on the old connection after reconnect');

    const t1 = Date.now();
    await alice.mute();
    await waitFor(() => a2.vad(alice.sessionID, t1).some((v) => v.type === RTC.VOICE_OFF), {timeout: 5000, what: 'VoiceOff for alice on the new connection'});
    await alice.unmute();
    await expectFlowing(carol, [['voice', alice.sessionID]], {minDelta: 30});

    await alice.leave();
    await waitFor(() => a.received({type: 'close', sessionID: alice.sessionID}).length + a2.received({type: 'close', sessionID: alice.sessionID}).length === 1, {what: 'one close for alice'});
    await expectFlowing(bob, [['voice', carol.sessionID]], {minDelta: 30});
}));
