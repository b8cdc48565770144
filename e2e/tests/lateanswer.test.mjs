// A client that answers a server offer late (after rtcd's 10 s answer timeout, spec 4.4 step 6:
// the add is rolled back) must not be left with a broken session: later renegotiations
// (a new speaker) must still reach it. Models a starved browser tab (seen for real when six
// Chromium users and a debug daemon share two cores).
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {Env, newID, guarded, expectFlowing, waitFor, sleep} from '../lib/harness.mjs';
import {RTC} from '../lib/relay.mjs';

const env = new Env('lateanswer');
before(() => env.setup());
after(() => env.teardown({failed: env.failed}));

test('a late answer to a server offer does not break later renegotiations', {timeout: 150000}, () => guarded(env, async () => {
    const callID = newID();
    const alice = await env.user('alice', {callID});
    const bob = await env.user('bob', {callID});
    await alice.start({unmuted: true});
    await bob.start({unmuted: true});
    await alice.waitConnected();
    await bob.waitConnected();
    await expectFlowing(alice, [['voice', bob.sessionID]], {minDelta: 30});

    // alice will answer rtcd's next offer 12 s late.
    await alice.eval(() => window.e2e.delayAnswers(12000, 1));
    const p = env.plugin;
    const t0 = Date.now();
    const carol = await env.user('carol', {callID});
    await carol.start({unmuted: true});
    await carol.waitConnected();
    await expectFlowing(bob, [['voice', carol.sessionID]], {minDelta: 30});
    await waitFor(() => p.messages.some((m) => m.dir === 'out' && m.sessionID === alice.sessionID && m.rtcType === RTC.SDP && m.data.type === 'answer' && m.at > t0 + 11000), {
        timeout: 30000, what: 'alice\'s delayed answer sent',
    });
    await sleep(1000);

    // A new speaker after the late answer: rtcd must renegotiate with alice successfully.
    const dave = await env.user('dave', {callID});
    await dave.start({unmuted: true});
    await dave.waitConnected();
    await expectFlowing(bob, [['voice', dave.sessionID]], {minDelta: 30});
    try {
        await expectFlowing(alice, [['voice', dave.sessionID], ['voice', bob.sessionID]], {minDelta: 30, timeout: 25000});
    } catch (err) {
        const snap = await alice.snapshot();
        const rows = p.messages.filter((m) => m.sessionID === alice.sessionID && m.at >= t0 && m.type === 'rtc' && m.rtcType === RTC.SDP)
            .map((m) => `${new Date(m.at).toISOString().slice(11, 23)} ${m.dir === 'in' ? 'rtcd->' : '->rtcd'} ${m.data.type} mids=${(m.data.sdp.match(/a=mid:\S+/g) || []).join(',')}`);
        throw new Error(`${err.message}\n  alice's SDP exchange since the delay:\n    ${rows.join('\n    ')}\n  alice's page errors: ${JSON.stringify(snap.errors)}\n  rtcd log:\n${env.rtcd.log().split('\n').filter((l) => / WARN | ERROR /.test(l) && !/no live connection/.test(l)).join('\n')}`);
    }
}));
