// Test harness: rtcd process, headless Chromium users, assertions helpers.
// Must run inside a loopback-only network namespace (scripts/e2e.sh creates one).
import {spawn, execFileSync} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import dgram from 'node:dgram';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {chromium} from 'playwright-core';
import {RtcdPlugin, MMServer, newID, sleep, waitFor} from './relay.mjs';

export {newID, sleep, waitFor};
export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const repoRoot = path.resolve(root, '..');
export const logDir = process.env.E2E_LOG_DIR || path.join(root, 'logs');

// Refuse to run anywhere but a namespace whose only interface is lo (DESIGN.md network rules:
// Chromium only inside a loopback-only netns).
export function assertLoopbackOnly() {
    const ifs = Object.keys(os.networkInterfaces());
    const nonLo = ifs.filter((n) => n !== 'lo');
    if (nonLo.length > 0 || process.env.E2E_NETNS === undefined) {
        throw new Error(`e2e tests must run inside a loopback-only network namespace (use scripts/e2e.sh); interfaces here: ${ifs.join(', ')}`);
    }
}

function tcpPortFree(port) {
    return new Promise((resolve) => {
        const s = net.createServer();
        s.once('error', () => resolve(false));
        s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
}

function udpPortFree(port) {
    return new Promise((resolve) => {
        const s = dgram.createSocket('udp4');
        s.once('error', () => resolve(false));
        s.bind(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
}

async function freePort(udpToo) {
    for (let i = 0; i < 50; i++) {
        // rtcd validates ice ports to 80-49151 (upstream rule); stay below the ephemeral range.
        const port = 20000 + Math.floor(Math.random() * 29000);
        if (await tcpPortFree(port) && (!udpToo || await udpPortFree(port))) {
            return port;
        }
    }
    throw new Error('no free port found');
}

export function rtcdBinary() {
    if (process.env.RTCD_BIN) {
        return path.resolve(process.env.RTCD_BIN);
    }
    for (const p of ['target/release/rtcd', 'target/debug/rtcd']) {
        const full = path.join(repoRoot, p);
        if (fs.existsSync(full)) {
            return full;
        }
    }
    throw new Error('rtcd binary not found: build it (cargo build --release --bin rtcd) or set RTCD_BIN');
}

export async function startRtcd({name = 'rtcd', env = {}} = {}) {
    fs.mkdirSync(logDir, {recursive: true});
    const httpPort = await freePort(false);
    let rtcPort = await freePort(true);
    while (rtcPort === httpPort) {
        rtcPort = await freePort(true);
    }
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rtcd-e2e-'));
    const logPath = path.join(logDir, `${name}.log`);
    const logFd = fs.openSync(logPath, 'w');
    const bin = rtcdBinary();
    const child = spawn(bin, [], {
        cwd: dataDir,
        env: {
            PATH: process.env.PATH,
            HOME: process.env.HOME,
            RUST_BACKTRACE: '1',
            RTCD_API_HTTP_LISTENADDRESS: `127.0.0.1:${httpPort}`,
            RTCD_API_SECURITY_ALLOWSELFREGISTRATION: 'true',
            RTCD_RTC_ICEADDRESSUDP: '127.0.0.1',
            RTCD_RTC_ICEADDRESSTCP: '127.0.0.1',
            RTCD_RTC_ICEPORTUDP: String(rtcPort),
            RTCD_RTC_ICEPORTTCP: String(rtcPort),
            RTCD_STORE_DATASOURCE: path.join(dataDir, 'db'),
            RTCD_LOGGER_ENABLEFILE: 'false',
            RTCD_LOGGER_ENABLECONSOLE: 'true',
            RTCD_LOGGER_CONSOLELEVEL: process.env.RTCD_LOGGER_CONSOLELEVEL || 'DEBUG',
            RTCD_LOGGER_ENABLECOLOR: 'false',
            // Data-plane layout from the caller (scripts/test.sh spreads calls over workers).
            ...Object.fromEntries(
                ['RTCD_RTC_WORKERS', 'RTCD_RTC_IOBACKEND', 'RTCD_RTC_WORKERSPILLSESSIONS']
                    .filter((k) => process.env[k] !== undefined)
                    .map((k) => [k, process.env[k]]),
            ),
            ...env,
        },
        stdio: ['ignore', logFd, logFd],
    });
    fs.closeSync(logFd);
    let exited = null;
    child.on('exit', (code, sig) => {
        exited = {code, sig};
    });
    child.on('error', (err) => {
        exited = {error: err.message};
    });
    const baseURL = `http://127.0.0.1:${httpPort}`;
    const rtcd = {
        pid: child.pid,
        baseURL,
        httpPort,
        rtcPort,
        logPath,
        dataDir,
        get exited() {
            return exited;
        },
        logTail(n = 60) {
            try {
                const lines = fs.readFileSync(logPath, 'utf8').split('\n');
                return lines.slice(-n).join('\n');
            } catch {
                return '';
            }
        },
        log() {
            try {
                return fs.readFileSync(logPath, 'utf8');
            } catch {
                return '';
            }
        },
        async stop() {
            if (exited === null) {
                try {
                    process.kill(child.pid, 'SIGTERM');
                } catch {
                    // already gone
                }
                const t0 = Date.now();
                while (exited === null && Date.now() - t0 < 5000) {
                    await sleep(50);
                }
                if (exited === null) {
                    try {
                        process.kill(child.pid, 'SIGKILL');
                    } catch {
                        // already gone
                    }
                }
            }
            fs.rmSync(dataDir, {recursive: true, force: true});
        },
    };
    const deadline = Date.now() + 15000;
    for (;;) {
        if (exited !== null) {
            await rtcd.stop();
            throw new Error(`rtcd exited early (${JSON.stringify(exited)}); log:\n${rtcd.logTail(30)}`);
        }
        const ok = await fetch(`${baseURL}/version`, {signal: AbortSignal.timeout(1000)}).then((r) => r.ok, () => false);
        if (ok) {
            break;
        }
        if (Date.now() > deadline) {
            await rtcd.stop();
            throw new Error(`rtcd did not answer GET ${baseURL}/version within 15 s (log ${logPath}):\n${rtcd.logTail(30)}`);
        }
        await sleep(100);
    }
    return rtcd;
}

export const CHROMIUM_ARGS = [
    '--use-fake-device-for-media-stream',
    '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    '--disable-quic',
    '--autoplay-policy=no-user-gesture-required',
    '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost',
];

export async function launchBrowser() {
    assertLoopbackOnly();
    return chromium.launch({
        executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
        headless: true,
        args: CHROMIUM_ARGS,
        timeout: 20000,
    });
}

// One end user: a fresh browser context (own profile) with one page running RTCPeer.
export class User {
    constructor({name, browser, mm, callID, userID = newID(), node, av1Support, dcSignaling}) {
        Object.assign(this, {name, browser, mm, callID, userID, node, av1Support, dcSignaling});
        this.sessionID = null;
        this.console = [];
    }

    async open() {
        this.context = await this.browser.newContext({permissions: ['camera', 'microphone']});
        this.page = await this.context.newPage();
        this.page.on('console', (m) => {
            this.console.push(`[${m.type()}] ${m.text()}`);
            if (this.console.length > 3000) {
                this.console.splice(0, 1000);
            }
        });
        this.page.on('pageerror', (e) => this.console.push(`[pageerror] ${e.message}`));
        const url = this.mm.pageURL({callID: this.callID, userID: this.userID, node: this.node, av1Support: this.av1Support, dcSignaling: this.dcSignaling});
        await this.page.goto(url, {timeout: 10000});
        await this.page.waitForFunction(() => window.e2e !== undefined, null, {timeout: 10000});
        return this;
    }

    async eval(fn, arg) {
        return this.page.evaluate(fn, arg);
    }

    async start(opts = {}) {
        this.sessionID = await this.eval((o) => window.e2e.start(o), opts);
        return this.sessionID;
    }

    async waitConnected(timeout = 20000) {
        await waitFor(() => this.eval(() => window.e2e.snapshot().connected), {
            timeout,
            what: `${this.name} (${this.sessionID}) RTC connected`,
            describe: async () => JSON.stringify(await this.snapshot()).slice(0, 1500),
        });
    }

    snapshot() {
        return this.eval(() => window.e2e.snapshot());
    }

    stats() {
        return this.eval(() => window.e2e.stats());
    }

    mute(mode) {
        return this.eval((m) => window.e2e.mute(m), mode);
    }

    unmute() {
        return this.eval(() => window.e2e.unmute());
    }

    shareScreen(opts) {
        return this.eval((o) => window.e2e.shareScreen(o), opts || {});
    }

    stopScreen() {
        return this.eval(() => window.e2e.stopScreen());
    }

    startVideo(opts) {
        return this.eval((o) => window.e2e.startVideo(o), opts || {});
    }

    leave() {
        return this.eval(() => window.e2e.leave());
    }

    pageLogs() {
        return this.eval(() => window.e2e.logs()).catch(() => this.console);
    }

    async close() {
        if (this.context) {
            await this.context.close().catch(() => {});
            this.context = null;
        }
    }
}

// Sums inbound-rtp counters of a stats snapshot per publisher session (from the forwarded
// track id `<type>_<publisherSessionID>_<rand>`), kind and type.
export function inboundBy(stats) {
    const out = {};
    for (const s of (stats && stats.inbound) || []) {
        const parts = (s.trackIdentifier || '').split('_');
        const type = parts.length === 3 ? parts[0] : `?${s.trackIdentifier}`;
        const pub = parts.length === 3 ? parts[1] : '?';
        const key = `${type}:${pub}`;
        const cur = out[key] || {type, publisher: pub, kind: s.kind, packetsReceived: 0, bytesReceived: 0, framesDecoded: 0, totalAudioEnergy: 0, tracks: []};
        cur.packetsReceived += s.packetsReceived;
        cur.bytesReceived += s.bytesReceived;
        cur.framesDecoded += s.framesDecoded;
        cur.totalAudioEnergy += s.totalAudioEnergy || 0;
        cur.tracks.push(s.trackIdentifier);
        out[key] = cur;
    }
    return out;
}

export function counter(stats, type, publisher, field = 'packetsReceived') {
    const e = inboundBy(stats)[`${type}:${publisher}`];
    return e ? e[field] : 0;
}

// A test environment: rtcd + plugin relay(s) + MM server + browser. Use in before()/after().
export class Env {
    // plugins: names of plugin connections, each a separately registered client (= a separate
    //   Mattermost installation, own groupID);
    // nodes: {name: pluginName}: extra connections with the same credentials as pluginName (another
    //   plugin node of the same installation);
    // browser: false for protocol-only tests.
    constructor(name, {plugins = ['a'], nodes = {}, rtcdEnv = {}, browser = true} = {}) {
        this.name = name;
        this.pluginNames = plugins;
        this.nodes = nodes;
        this.rtcdEnv = rtcdEnv;
        this.withBrowser = browser;
        this.users = [];
    }

    async setup() {
        assertLoopbackOnly();
        this.rtcd = await startRtcd({name: this.name, env: this.rtcdEnv});
        this.plugins = {};
        for (const n of this.pluginNames) {
            const p = new RtcdPlugin({baseURL: this.rtcd.baseURL, name: `plugin-${n}`});
            await p.register();
            await p.connect();
            this.plugins[n] = p;
        }
        for (const [n, of] of Object.entries(this.nodes)) {
            const base = this.plugins[of];
            const p = new RtcdPlugin({baseURL: this.rtcd.baseURL, name: `plugin-${n}`, clientID: base.clientID, authKey: base.authKey});
            await p.connect();
            this.plugins[n] = p;
        }
        this.plugin = this.plugins[this.pluginNames[0]];
        this.mm = await new MMServer({plugins: this.plugins}).start();
        if (this.withBrowser) {
            this.browser = await launchBrowser();
        }
        return this;
    }

    async user(name, opts = {}) {
        const u = new User({name, browser: this.browser, mm: this.mm, ...opts});
        this.users.push(u);
        await u.open();
        return u;
    }

    // rtcd's GET /calls/{callID}/sessions as the plugin calls it (Basic auth); {status, body}.
    async sessions(callID, plugin = this.plugin) {
        const auth = Buffer.from(`${plugin.clientID}:${plugin.authKey}`).toString('base64');
        const r = await fetch(`${this.rtcd.baseURL}/calls/${callID}/sessions`, {headers: {Authorization: `Basic ${auth}`}, signal: AbortSignal.timeout(5000)});
        const text = await r.text();
        let body = text;
        try {
            body = JSON.parse(text);
        } catch {
            // plain-text error
        }
        return {status: r.status, body};
    }

    // Diagnostic dump written to logs/<name>.diag.txt; returns its path.
    async dump(note = '') {
        const lines = [`# ${this.name} ${new Date().toISOString()} ${note}`];
        for (const [n, p] of Object.entries(this.plugins || {})) {
            lines.push(`\n## plugin ${n} (${p.clientID}) errors: ${JSON.stringify(p.errors)}`);
            lines.push(p.summary());
        }
        lines.push(`\n## mm errors: ${JSON.stringify(this.mm ? this.mm.errors : [])}`);
        for (const u of this.users) {
            lines.push(`\n## user ${u.name} session ${u.sessionID}`);
            try {
                lines.push(JSON.stringify(await u.snapshot(), null, 1));
                lines.push(JSON.stringify(await u.stats(), null, 1));
            } catch (err) {
                lines.push(`(snapshot failed: ${err.message})`);
            }
            lines.push((await u.pageLogs()).slice(-200).join('\n'));
        }
        fs.mkdirSync(logDir, {recursive: true});
        const p = path.join(logDir, `${this.name}.diag.txt`);
        fs.writeFileSync(p, lines.join('\n'));
        return p;
    }

    async teardown({failed = false} = {}) {
        if (failed || process.env.E2E_DUMP === '1') {
            try {
                const p = await this.dump(failed ? 'FAILED' : '');
                console.error(`e2e: diagnostics in ${p}; rtcd log in ${path.join(logDir, `${this.name}.log`)}`);
            } catch (err) {
                console.error(`e2e: dump failed: ${err.message}`);
            }
        }
        for (const u of this.users) {
            await u.close();
        }
        if (this.browser) {
            await this.browser.close().catch(() => {});
        }
        if (this.mm) {
            await this.mm.stop().catch(() => {});
        }
        for (const p of Object.values(this.plugins || {})) {
            await p.close().catch(() => {});
        }
        if (this.rtcd) {
            await this.rtcd.stop();
        }
    }
}

// Runs nft inside the current (test) namespace.
export function nft(script) {
    execFileSync('nft', ['-f', '-'], {input: script, stdio: ['pipe', 'pipe', 'pipe'], timeout: 10000});
}

// Marks the env failed when the body throws (so teardown writes diagnostics), rethrows.
export async function guarded(env, fn) {
    try {
        return await fn();
    } catch (err) {
        env.failed = true;
        throw err;
    }
}

// Waits until `user` receives `field` (packetsReceived/framesDecoded) from each (type, publisher)
// in `from`, then checks that it keeps growing by at least `minDelta` over `windowMs`.
export async function expectFlowing(user, from, {field = 'packetsReceived', minDelta = 20, windowMs = 2000, timeout = 20000} = {}) {
    const label = from.map(([type, pub]) => `${type}:${pub}`).join(', ');
    await waitFor(async () => {
        const s = await user.stats();
        return from.every(([type, pub]) => counter(s, type, pub, field) > 0);
    }, {
        timeout,
        what: `${user.name} to receive ${field} > 0 from ${label}`,
        describe: async () => JSON.stringify({inbound: inboundBy(await user.stats()), tracks: (await user.snapshot()).tracks}),
    });
    const a = await user.stats();
    await sleep(windowMs);
    const b = await user.stats();
    for (const [type, pub] of from) {
        const d = counter(b, type, pub, field) - counter(a, type, pub, field);
        if (d < minDelta) {
            throw new Error(`${user.name}: ${field} from ${type}:${pub} grew by ${d} in ${windowMs} ms (want >= ${minDelta}); inbound=${JSON.stringify(inboundBy(b))}`);
        }
    }
    return b;
}

// Growth of one counter over a window (for "stopped" assertions).
export async function growth(user, type, pub, {field = 'packetsReceived', windowMs = 2000} = {}) {
    const a = counter(await user.stats(), type, pub, field);
    await sleep(windowMs);
    const b = counter(await user.stats(), type, pub, field);
    return b - a;
}
