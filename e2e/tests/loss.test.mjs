// Media under UDP loss (nftables numgen in the test namespace; netem is not available here),
// one leg at a time so each repair path is visible:
//  1. publisher -> rtcd (10 %): rtcd's NACK generator must ask the publisher to resend (spec
//     5.6 interceptor 2), so the viewer sees (almost) no loss, no keyframe requests, and keeps
//     decoding;
//  2. rtcd -> viewer (10 %): the viewer NACKs and rtcd's NACK responder resends (RTX here),
//     so the viewer decodes without keyframe requests piling up.
// Voice keeps flowing throughout.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {execFileSync} from 'node:child_process';
import {Env, newID, guarded, expectFlowing, nft, sleep} from '../lib/harness.mjs';

const env = new Env('loss');
const table = `rtcd_e2e_loss_${process.pid}`;
before(() => env.setup());
after(async () => {
    dropTable();
    await env.teardown({failed: env.failed});
});

function dropTable() {
    try {
        execFileSync('nft', ['delete', 'table', 'inet', table], {stdio: 'ignore', timeout: 10000});
    } catch {
        // not there
    }
}

function droppedCount() {
    const out = execFileSync('nft', ['list', 'table', 'inet', table], {encoding: 'utf8', timeout: 10000});
    return [...out.matchAll(/packets (\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
}

function sum(list, field) {
    return list.reduce((a, s) => a + (s[field] || 0), 0);
}

async function videoCounters(alice, bob) {
    const bs = await bob.stats();
    const as = await alice.stats();
    const inb = bs.inbound.filter((s) => s.trackIdentifier.startsWith(`screen_${alice.sessionID}_`));
    const out = as.outbound.filter((o) => o.kind === 'video');
    return {
        bobFrames: sum(inb, 'framesDecoded'), bobRx: sum(inb, 'packetsReceived'), bobLost: sum(inb, 'packetsLost'),
        bobNacks: sum(inb, 'nackCount'), bobPlis: sum(inb, 'pliCount'), bobFreezes: sum(inb, 'freezeCount'),
        aliceSent: sum(out, 'packetsSent'), aliceNacksIn: sum(out, 'nackCount'), alicePlisIn: sum(out, 'pliCount'),
        aliceResent: sum(out, 'retransmittedPacketsSent'),
    };
}

function delta(a, b) {
    return Object.fromEntries(Object.keys(a).map((k) => [k, b[k] - a[k]]));
}

async function phase(name, rule, alice, bob) {
    nft(`table inet ${table} {
  chain out { type filter hook output priority 0; policy accept; ${rule} numgen random mod 100 < 10 counter drop; }
}
`);
    const c0 = await videoCounters(alice, bob);
    await sleep(10000);
    const c1 = await videoCounters(alice, bob);
    const dropped = droppedCount();
    dropTable();
    const d = delta(c0, c1);
    console.log(`${name}: dropped ${dropped} datagrams; over 10 s ${JSON.stringify(d)}`);
    return {d, dropped};
}

test('repairs under 10 % loss on the publisher leg and on the viewer leg', {timeout: 150000}, () => guarded(env, async () => {
    const callID = newID();
    const alice = await env.user('alice', {callID});
    const bob = await env.user('bob', {callID});
    await alice.start({unmuted: true});
    await bob.start({unmuted: true});
    await alice.waitConnected();
    await bob.waitConnected();
    await alice.shareScreen({width: 640, height: 480, frameRate: 15});
    await expectFlowing(bob, [['screen', alice.sessionID]], {field: 'framesDecoded', minDelta: 5});
    const port = env.rtcd.rtcPort;
    const alicePort = (await alice.stats()).selectedPair.local.port;
    const bobPort = (await bob.stats()).selectedPair.local.port;

    const pub = await phase('publisher leg', `udp sport ${alicePort} udp dport ${port}`, alice, bob);
    await expectFlowing(bob, [['voice', alice.sessionID]], {minDelta: 20});
    const view = await phase('viewer leg', `udp sport ${port} udp dport ${bobPort}`, alice, bob);
    await expectFlowing(bob, [['voice', alice.sessionID]], {minDelta: 20});
    await expectFlowing(bob, [['screen', alice.sessionID]], {field: 'framesDecoded', minDelta: 5});

    assert.ok(pub.dropped > 0 && view.dropped > 0, 'the rules dropped packets');
    const problems = [];
    // Packets lost before rtcd can only come back through rtcd's own NACKs to the publisher
    // (Chromium's outbound nackCount lags, so the viewer's view is what is asserted).
    if (pub.d.bobLost > 5 || pub.d.bobPlis > 3) {
        problems.push(`publisher leg: viewer lost ${pub.d.bobLost} packets and sent ${pub.d.bobPlis} PLIs: rtcd did not get the publisher's losses repaired (alice got ${pub.d.aliceNacksIn} NACKs, resent ${pub.d.aliceResent})`);
    }
    if (pub.d.bobFrames < 20) {
        problems.push(`publisher leg: viewer decoded only ${pub.d.bobFrames} frames in 10 s`);
    }
    if (view.d.bobNacks === 0) {
        problems.push('viewer leg: the viewer sent no NACKs (loss not visible?)');
    }
    if (view.d.bobFrames < 20) {
        problems.push(`viewer leg: viewer decoded only ${view.d.bobFrames} frames in 10 s`);
    }
    if (view.d.bobPlis > 3) {
        problems.push(`viewer leg: ${view.d.bobPlis} keyframe requests (PLI) from the viewer in 10 s: NACKs not answered?`);
    }
    assert.deepEqual(problems, [], 'loss repair');
}));
