// A browser that disappears without `leave` (tab closed, network gone): rtcd must notice the
// dead PeerConnection by itself (ICE consent / DTLS close) and send `close` {sessionID}, and
// the others stop receiving the vanished user's media.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {Env, newID, guarded, expectFlowing, waitFor} from '../lib/harness.mjs';

const env = new Env('vanish');
before(() => env.setup());
after(() => env.teardown({failed: env.failed}));

test('a vanished browser is closed by rtcd without leave', {timeout: 120000}, () => guarded(env, async () => {
    const callID = newID();
    const alice = await env.user('alice', {callID});
    const bob = await env.user('bob', {callID});
    await alice.start({unmuted: true});
    await bob.start({unmuted: true});
    await alice.waitConnected();
    await bob.waitConnected();
    await expectFlowing(alice, [['voice', bob.sessionID]], {minDelta: 30});

    const p = env.plugin;
    const t0 = Date.now();
    await bob.close(); // closes the browser context: no leave sent, PeerConnection destroyed
    const close = await waitFor(() => p.received({type: 'close', sessionID: bob.sessionID})[0], {
        timeout: 40000, interval: 250, what: 'close for the vanished session (pion fails a PeerConnection after 25 s without traffic)',
    });
    console.log(`close ${close.at - t0} ms after the browser context closed`);
    assert.equal(p.messages.filter((m) => m.dir === 'out' && m.type === 'leave').length, 0, 'no leave was sent');
    const snap = await alice.snapshot();
    assert.ok(snap.connected && !snap.closed, 'alice still connected');
    assert.equal((await alice.stats()).connectionState, 'connected', 'alice\'s PeerConnection is unaffected');
}));
