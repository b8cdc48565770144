// (e) Concurrent calls stay isolated: two calls of one plugin (group), plus a call of another
// registered client that reuses the first call's id (rtcd keys calls by (groupID, callID)).
// Each user receives tracks of its call mates only, and nothing from anyone else.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {Env, newID, guarded, expectFlowing, inboundBy, sleep} from '../lib/harness.mjs';

const env = new Env('isolation', {plugins: ['a', 'b']});
before(() => env.setup());
after(() => env.teardown({failed: env.failed}));

test('two concurrent calls (and a same-id call of another client) stay isolated', {timeout: 180000}, () => guarded(env, async () => {
    const call1 = newID();
    const call2 = newID();
    const calls = {
        one: [await env.user('a1', {callID: call1, node: 'a'}), await env.user('a2', {callID: call1, node: 'a'})],
        two: [await env.user('b1', {callID: call2, node: 'a'}), await env.user('b2', {callID: call2, node: 'a'})],
        other: [await env.user('c1', {callID: call1, node: 'b'}), await env.user('c2', {callID: call1, node: 'b'})],
    };
    const all = Object.values(calls).flat();
    for (const u of all) {
        await u.start({unmuted: true});
    }
    for (const u of all) {
        await u.waitConnected();
    }
    // One screen share per call so video isolation is covered too.
    await calls.one[0].shareScreen({width: 320, height: 240});
    await calls.two[0].shareScreen({width: 320, height: 240});
    await calls.other[0].shareScreen({width: 320, height: 240});

    for (const [name, members] of Object.entries(calls)) {
        for (const u of members) {
            const mates = members.filter((m) => m !== u);
            const want = mates.map((m) => ['voice', m.sessionID]);
            if (u !== members[0]) {
                want.push(['screen', members[0].sessionID]);
            }
            await expectFlowing(u, want, {minDelta: 10, windowMs: 2000});
        }
        console.log(`call ${name}: media flows between its members`);
    }
    await sleep(2000); // give stray forwarding a chance to show up
    for (const [name, members] of Object.entries(calls)) {
        const allowed = new Set(members.map((m) => m.sessionID));
        for (const u of members) {
            const snap = await u.snapshot();
            const foreign = snap.tracks.filter((t) => !allowed.has(t.id.split('_')[1]) || t.id.split('_')[1] === u.sessionID);
            assert.deepEqual(foreign, [], `${u.name} (call ${name}): tracks from outside its call: ${JSON.stringify(foreign)}`);
            const inb = inboundBy(await u.stats());
            for (const [key, v] of Object.entries(inb)) {
                if (v.packetsReceived > 0) {
                    assert.ok(allowed.has(v.publisher) && v.publisher !== u.sessionID, `${u.name} (call ${name}) received packets from ${key}: ${JSON.stringify(inb)}`);
                }
            }
        }
    }
    // rtcd's session lists are per client: call1 of client a has a1, a2; of client b has c1, c2.
    const la = await env.sessions(call1, env.plugins.a);
    const lb = await env.sessions(call1, env.plugins.b);
    assert.deepEqual(la.body.map((s) => s.SessionID).sort(), calls.one.map((u) => u.sessionID).sort(), 'client a, call1 sessions');
    assert.deepEqual(lb.body.map((s) => s.SessionID).sort(), calls.other.map((u) => u.sessionID).sort(), 'client b, call1 sessions');
    // Each plugin connection only saw its own sessions.
    for (const [n, pl] of Object.entries(env.plugins)) {
        const mine = new Set(all.filter((u) => (u.node || 'a') === n).map((u) => u.sessionID));
        const stray = pl.received({}).filter((m) => m.sessionID && !mine.has(m.sessionID));
        assert.deepEqual(stray.map((m) => `${m.type} ${m.sessionID}`), [], `plugin ${n} got messages of other clients' sessions`);
    }
}));
