// Protocol checks of the plugin <-> rtcd WebSocket without a browser (spec 3, 4.1): hello,
// bad credentials, the 10 s first-offer timeout -> close, leave -> close, and messages rtcd
// must ignore without breaking the connection.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {Env, newID, guarded, waitFor, sleep} from '../lib/harness.mjs';
import {RtcdPlugin, RTC} from '../lib/relay.mjs';

const env = new Env('signaling', {browser: false, nodes: {a2: 'a'}});
before(() => env.setup());
after(() => env.teardown({failed: env.failed}));

function joinMsg(callID, sessionID = newID()) {
    return {callID, userID: newID(), sessionID, channelID: newID(), av1Support: false, dcSignaling: false};
}

test('hello carries str clientID and a fresh connID per connection', () => guarded(env, async () => {
    const a = env.plugins.a;
    const a2 = env.plugins.a2;
    for (const p of [a, a2]) {
        assert.equal(typeof p.hello.clientID, 'string', 'hello.clientID is a msgpack str');
        assert.equal(typeof p.hello.connID, 'string', 'hello.connID is a msgpack str');
        assert.equal(p.hello.clientID, a.clientID);
        assert.match(p.hello.connID, /^[a-z0-9]{26}$/, 'connID is a 26-char id');
        assert.equal(p.received({type: 'hello'}).length, 1, 'exactly one hello');
        assert.equal(p.messages.find((m) => m.dir === 'in').type, 'hello', 'hello is the first frame');
    }
    assert.notEqual(a.hello.connID, a2.hello.connID, 'two connections, two connIDs');
}));

test('a wrong auth key cannot open /ws', () => guarded(env, async () => {
    const bad = new RtcdPlugin({baseURL: env.rtcd.baseURL, clientID: env.plugin.clientID, authKey: 'x'.repeat(48), name: 'bad'});
    await assert.rejects(bad.connect({timeout: 5000}), 'handshake with a wrong key fails');
    await bad.close();
}));

test('join without an offer is closed after the 10 s signaling timeout', {timeout: 60000}, () => guarded(env, async () => {
    const p = env.plugin;
    const callID = newID();
    const j = joinMsg(callID);
    const t0 = Date.now();
    p.join(j);
    const listed = await waitFor(async () => {
        const r = await env.sessions(callID);
        return r.status === 200 ? r : null;
    }, {timeout: 3000, what: 'session listed after join'});
    assert.deepEqual(listed.body.map((s) => ({...s, GroupID: s.GroupID})), [{
        GroupID: p.clientID, CallID: callID, UserID: j.userID, SessionID: j.sessionID,
        Props: {channelID: j.channelID, av1Support: false, dcSignaling: false},
    }], 'GET /calls/{id}/sessions shows the join');

    // Messages rtcd must drop without answering or closing the connection.
    p.leave(newID()); // unknown session
    p.sendRTC(newID(), RTC.ICE, JSON.stringify({candidate: 'candidate:1 1 udp 1 127.0.0.1 9 typ host', sdpMid: '0', sdpMLineIndex: 0}));
    p.join({...j, userID: newID()}); // duplicate session id
    p.send('hello', {clientID: 'x', connID: 'y'}); // only rtcd sends hello

    const close = await waitFor(() => p.received({type: 'close', sessionID: j.sessionID})[0], {
        what: 'close for a session that never sent an offer', describe: () => p.summary(),
    });
    const took = close.at - t0;
    console.log(`close after ${took} ms`);
    assert.ok(took >= 9000 && took <= 13000, `close after ~10 s, got ${took} ms`);
    assert.deepEqual(close.data, {sessionID: j.sessionID});
    assert.equal(typeof close.data.sessionID, 'string', 'close.sessionID is a msgpack str');
    await sleep(1000);
    assert.equal(p.received({type: 'close'}).length, 1, `one close only: ${p.summary()}`);
    assert.equal(p.received({type: 'rtc'}).length, 0, 'nothing but close was sent');
    assert.equal((await env.sessions(callID)).status, 404, 'call gone');
    assert.deepEqual(p.errors, [], 'plugin connection errors');
    assert.ok(p.ws && p.ws.readyState === 1, 'connection still open');
}));

test('join then leave: one prompt close, also after reconnect to another node', () => guarded(env, async () => {
    const a = env.plugins.a;
    const a2 = env.plugins.a2;
    const j = joinMsg(newID());
    a.join(j);
    await sleep(200);
    const t0 = Date.now();
    a.leave(j.sessionID);
    const close = await waitFor(() => a.received({type: 'close', sessionID: j.sessionID})[0], {timeout: 5000, what: 'close after leave'});
    assert.ok(close.at - t0 < 3000, `close within 3 s of leave (${close.at - t0} ms)`);

    // Remapped session (end user moved to node a2): leave via a2.
    const k = joinMsg(newID());
    a.join(k);
    await sleep(200);
    a2.reconnect(k.sessionID);
    await sleep(200);
    a2.leave(k.sessionID);
    await waitFor(() => a.received({type: 'close', sessionID: k.sessionID}).length + a2.received({type: 'close', sessionID: k.sessionID}).length > 0, {
        timeout: 5000, what: 'close after reconnect + leave', describe: () => `${a.summary()}\n--\n${a2.summary()}`,
    });
    await sleep(500);
    const onA = a.received({type: 'close', sessionID: k.sessionID}).length;
    const onA2 = a2.received({type: 'close', sessionID: k.sessionID}).length;
    // Upstream sends close to the join-time connection; this daemon deliberately sends it to the
    // session's latest connection (src/control/hub.rs, README). Either reaches the plugin cluster.
    console.log(`close after reconnect: join-time connection ${onA}, remapped connection ${onA2}`);
    assert.equal(onA + onA2, 1, 'exactly one close');
}));
