// DTLS handshake stress: many Chromium joins against one rtcd, counting handshakes that fail.
// Not part of the default suite (slow); see e2e/README.md for running long loops.
// Env: DTLS_JOINS (iterations, default 300), DTLS_LANES (iterations in parallel, default 3),
//      DTLS_GROUP (users joining one call together per iteration, default 1),
//      DTLS_UNMUTED=1 (they talk for a second before leaving),
//      DTLS_PCAP=1 (capture the rtc port, UDP and TCP, with tcpdump into logs/dtls.pcap).
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {spawn} from 'node:child_process';
import {Env, newID, guarded, waitFor, sleep, logDir} from '../lib/harness.mjs';

const JOINS = Number(process.env.DTLS_JOINS || 300);
const LANES = Number(process.env.DTLS_LANES || 3);
// Users joining one call at the same moment (like the screen test's three users).
const GROUP = Number(process.env.DTLS_GROUP || 1);
const UNMUTED = process.env.DTLS_UNMUTED === '1';

const env = new Env('dtls', {rtcdEnv: {RTCD_RTC_WORKERS: '2', RTCD_RTC_WORKERSPILLSESSIONS: '1'}});
let tcpdump = null;
before(async () => {
    await env.setup();
    if (process.env.DTLS_PCAP === '1') {
        const pcap = path.join(logDir, 'dtls.pcap');
        tcpdump = spawn('tcpdump', ['-i', 'lo', '-U', '-s', '0', '-w', pcap, 'port', String(env.rtcd.rtcPort)], {stdio: 'ignore'});
        await sleep(500);
    }
});
after(async () => {
    await env.teardown({failed: env.failed});
    if (tcpdump) {
        tcpdump.kill('SIGTERM');
    }
});

test(`${JOINS} Chromium joins complete their DTLS handshake`, {timeout: 3600000}, () => guarded(env, async () => {
    let next = 0;
    const outcomes = {connected: 0, failed: 0};
    const failures = [];
    const lane = async (l) => {
        for (;;) {
            const i = next++;
            if (i >= JOINS) {
                return;
            }
            const callID = newID();
            const users = [];
            for (let g = 0; g < GROUP; g++) {
                users.push(await env.user(`u${i}.${g}`, {callID}));
            }
            await Promise.all(users.map(async (u, g) => {
                try {
                    await u.start({unmuted: UNMUTED});
                    const s = await waitFor(async () => {
                        const snap = await u.snapshot();
                        return snap.connected || snap.closed || snap.errors.length > 0 ? snap : null;
                    }, {timeout: 20000, what: `u${i}.${g} connected or failed`});
                    if (s.connected) {
                        outcomes.connected++;
                    } else {
                        outcomes.failed++;
                        failures.push({i, g, sessionID: u.sessionID, errors: s.errors, at: new Date().toISOString()});
                        console.log(`join ${i}.${g} (lane ${l}) failed: ${u.sessionID} ${JSON.stringify(s.errors)}`);
                    }
                } catch (err) {
                    outcomes.failed++;
                    failures.push({i, g, sessionID: u.sessionID, errors: [String(err.message).slice(0, 300)]});
                    console.log(`join ${i}.${g} (lane ${l}) error: ${u.sessionID} ${err.message.slice(0, 300)}`);
                }
            }));
            if (UNMUTED) {
                await sleep(1000);
            }
            for (const u of users) {
                await u.leave().catch(() => {});
                await u.close();
                env.users.splice(env.users.indexOf(u), 1);
            }
            if ((i + 1) % 50 === 0) {
                console.log(`${i + 1} joins: ${JSON.stringify(outcomes)}`);
            }
        }
    };
    await Promise.all(Array.from({length: LANES}, (_, l) => lane(l)));
    const log = fs.readFileSync(env.rtcd.logPath, 'utf8');
    const alerts = log.split('\n').filter((line) => line.includes('received fatal alert'));
    console.log(`outcomes ${JSON.stringify(outcomes)}; daemon DTLS alert lines: ${alerts.length}`);
    for (const a of alerts) {
        console.log(a);
    }
    assert.equal(outcomes.failed, 0, `failed joins: ${JSON.stringify(failures)}`);
}));
