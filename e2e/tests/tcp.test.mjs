// (f) ICE over TCP when UDP is blocked: an nftables rule in the test namespace drops every UDP
// datagram to or from rtcd's rtc port; Chromium must connect to rtcd's passive TCP candidate
// (same port) and media must flow over it.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {execFileSync} from 'node:child_process';
import {Env, newID, guarded, expectFlowing, nft} from '../lib/harness.mjs';

const env = new Env('tcp');
const table = `rtcd_e2e_tcp_${process.pid}`;
before(async () => {
    await env.setup();
    const port = env.rtcd.rtcPort;
    nft(`table inet ${table} {
  chain out { type filter hook output priority 0; policy accept; udp dport ${port} counter drop; udp sport ${port} counter drop; }
  chain in { type filter hook input priority 0; policy accept; udp dport ${port} counter drop; udp sport ${port} counter drop; }
}
`);
});
after(async () => {
    try {
        execFileSync('nft', ['delete', 'table', 'inet', table], {stdio: 'ignore', timeout: 10000});
    } catch {
        // not created
    }
    await env.teardown({failed: env.failed});
});

function dropped() {
    const out = execFileSync('nft', ['list', 'table', 'inet', table], {encoding: 'utf8', timeout: 10000});
    return [...out.matchAll(/packets (\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
}

test('ICE-TCP: users connect over TCP when UDP to the rtc port is dropped', {timeout: 150000}, () => guarded(env, async () => {
    const callID = newID();
    const alice = await env.user('alice', {callID});
    const bob = await env.user('bob', {callID});
    await alice.start({unmuted: true, connTimeoutMs: 30000});
    await bob.start({unmuted: true, connTimeoutMs: 30000});
    await alice.waitConnected(20000);
    await bob.waitConnected(20000);
    for (const u of [alice, bob]) {
        const st = await u.stats();
        assert.ok(st.selectedPair, `${u.name}: has a selected candidate pair`);
        assert.equal(st.selectedPair.remote.protocol, 'tcp', `${u.name}: selected pair uses TCP: ${JSON.stringify(st.selectedPair)}`);
        assert.equal(st.selectedPair.remote.port, env.rtcd.rtcPort, `${u.name}: TCP to rtcd's rtc port`);
        assert.equal(st.selectedPair.remote.address, '127.0.0.1');
    }
    await expectFlowing(alice, [['voice', bob.sessionID]], {minDelta: 30});
    await expectFlowing(bob, [['voice', alice.sessionID]], {minDelta: 30});
    const snap = await alice.snapshot();
    assert.ok(snap.dc.pongs > 0, 'data channel works over TCP');
    console.log(`UDP datagrams dropped by the rule: ${dropped()}`);
}));
