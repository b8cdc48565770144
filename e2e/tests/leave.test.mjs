// (d) Leave: the leaver's voice stops at the others (audio senders detached without
// renegotiation), its screen track is renegotiated away, rtcd sends `close` {sessionID} to the
// plugin, the session disappears from GET /calls/{id}/sessions, and the others keep talking.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {Env, newID, guarded, expectFlowing, growth, waitFor, sleep, inboundBy} from '../lib/harness.mjs';

const env = new Env('leave');
before(() => env.setup());
after(() => env.teardown({failed: env.failed}));

test('leave stops the leaver\'s tracks and yields close {sessionID}', {timeout: 150000}, () => guarded(env, async () => {
    const callID = newID();
    const [alice, bob, carol] = [await env.user('alice', {callID}), await env.user('bob', {callID}), await env.user('carol', {callID})];
    for (const u of [alice, bob, carol]) {
        await u.start({unmuted: true});
    }
    for (const u of [alice, bob, carol]) {
        await u.waitConnected();
    }
    await carol.shareScreen({width: 320, height: 240, frameRate: 15});
    for (const u of [alice, bob]) {
        await expectFlowing(u, [['voice', carol.sessionID]], {minDelta: 20});
        await expectFlowing(u, [['screen', carol.sessionID]], {field: 'framesDecoded', minDelta: 5});
    }
    const before = await env.sessions(callID);
    assert.equal(before.status, 200, `GET sessions: ${JSON.stringify(before)}`);
    assert.deepEqual(before.body.map((s) => s.SessionID).sort(), [alice, bob, carol].map((u) => u.sessionID).sort(), 'three sessions listed');

    const p = env.plugin;
    const t0 = Date.now();
    await carol.leave();
    const close = await waitFor(() => p.received({type: 'close', sessionID: carol.sessionID})[0], {
        what: 'close {sessionID: carol} from rtcd', describe: () => p.summary(carol.sessionID),
    });
    assert.deepEqual(close.data, {sessionID: carol.sessionID}, 'close payload is exactly {sessionID}');
    console.log(`close arrived ${close.at - t0} ms after leave`);
    assert.equal(p.received({type: 'close'}).length, 1, 'only the leaver is closed');

    for (const u of [alice, bob]) {
        await sleep(500);
        const dv = await growth(u, 'voice', carol.sessionID, {windowMs: 2000});
        assert.ok(dv <= 2, `${u.name}: still receiving carol's voice after leave (+${dv})`);
        await waitFor(async () => {
            const t = (await u.snapshot()).tracks.find((tr) => tr.id.startsWith(`screen_${carol.sessionID}_`));
            return t && (t.ended || t.muted);
        }, {what: `${u.name}: carol's screen track removed after leave`, describe: async () => JSON.stringify((await u.stats()).transceivers)});
        const ds = await growth(u, 'screen', carol.sessionID, {field: 'framesDecoded', windowMs: 1500});
        assert.ok(ds <= 1, `${u.name}: carol's screen still decoded after leave (+${ds}); ${JSON.stringify(inboundBy(await u.stats()))}`);
    }
    await expectFlowing(alice, [['voice', bob.sessionID]], {minDelta: 30});
    await expectFlowing(bob, [['voice', alice.sessionID]], {minDelta: 30});

    const after = await env.sessions(callID);
    assert.equal(after.status, 200);
    assert.deepEqual(after.body.map((s) => s.SessionID).sort(), [alice, bob].map((u) => u.sessionID).sort(), 'carol no longer listed');

    // Everyone leaves: one close each, then the call is gone (404).
    await alice.leave();
    await bob.leave();
    for (const u of [alice, bob]) {
        await waitFor(() => p.received({type: 'close', sessionID: u.sessionID}).length > 0, {what: `close for ${u.name}`});
    }
    const gone = await waitFor(async () => {
        const r = await env.sessions(callID);
        return r.status === 404 ? r : null;
    }, {timeout: 5000, what: 'GET /calls/{id}/sessions -> 404 after everyone left'});
    assert.match(String(gone.body), /not found/);
}));
