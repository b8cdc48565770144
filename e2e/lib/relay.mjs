// Plugin-like relay between end-user pages (headless Chromium running RTCPeer) and rtcd.
//
// RtcdPlugin: one Mattermost Calls plugin node's connection to rtcd (HTTP /register + WS /ws,
//   msgpack framing: str(type) immediately followed by one msgpack value).
// MMServer: the Mattermost server + plugin as the browser sees them: serves the test page
//   (secure context: http://127.0.0.1) and a WebSocket per end user; translates page events
//   into rtcd messages exactly like the plugin does (spec 9.3) and relays rtcd's `rtc` payloads
//   back to the page verbatim (the webapp feeds them to RTCPeer.signal()).
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import crypto from 'node:crypto';
import {fileURLToPath} from 'node:url';
import {encode, decodeMulti} from '@msgpack/msgpack';
import WebSocket, {WebSocketServer} from 'ws';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export const RTC = Object.freeze({
    ICE: 1, SDP: 2, MUTE: 3, UNMUTE: 4, SCREEN_ON: 5, SCREEN_OFF: 6,
    VOICE_ON: 7, VOICE_OFF: 8, VIDEO_ON: 9, VIDEO_OFF: 10,
});

const ID_ALPHABET = 'ybndrfg8ejkmcpqxot1uwisza345h769';

// Mattermost-style 26-char id.
export function newID() {
    const b = crypto.randomBytes(26);
    let s = '';
    for (let i = 0; i < 26; i++) {
        s += ID_ALPHABET[b[i] & 31];
    }
    return s;
}

export function sleep(ms) {
    return new Promise((r) => setTimeout(r, ms));
}

// Polls `fn` (sync or async) until it returns a truthy value; throws a descriptive error after
// `timeout` ms. `describe` (optional) is called on timeout to add the current state.
export async function waitFor(fn, {timeout = 20000, interval = 100, what = 'condition', describe} = {}) {
    const deadline = Date.now() + Math.min(timeout, 60000); // hard cap: no unbounded waits
    let last;
    for (;;) {
        try {
            last = await fn();
        } catch (err) {
            last = undefined;
            if (Date.now() >= deadline) {
                throw new Error(`timed out after ${timeout} ms waiting for ${what}: ${err.message}`);
            }
        }
        if (last) {
            return last;
        }
        if (Date.now() >= deadline) {
            let extra = '';
            if (describe) {
                try {
                    extra = `\n  state: ${await describe()}`;
                } catch (err) {
                    extra = `\n  (describe failed: ${err.message})`;
                }
            }
            throw new Error(`timed out after ${timeout} ms waiting for ${what}${extra}`);
        }
        await sleep(interval);
    }
}

export function encodeFrame(type, value) {
    const a = encode(type);
    const b = encode(value === undefined ? null : value);
    const out = new Uint8Array(a.length + b.length);
    out.set(a, 0);
    out.set(b, a.length);
    return out;
}

export function decodeFrame(buf) {
    const it = decodeMulti(buf);
    const t = it.next();
    if (t.done || typeof t.value !== 'string') {
        throw new Error('frame does not start with a msgpack str type');
    }
    const v = it.next();
    const extra = it.next();
    if (!extra.done) {
        throw new Error(`frame ${t.value}: more than two msgpack values`);
    }
    return {type: t.value, data: v.done ? undefined : v.value};
}

function bytesToString(b) {
    if (b === undefined || b === null) {
        return '';
    }
    if (typeof b === 'string') {
        return b;
    }
    return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');
}

function tryJSON(s) {
    try {
        return JSON.parse(s);
    } catch {
        return undefined;
    }
}

export class RtcdPlugin {
    constructor({baseURL, clientID = `e2e${newID()}`, authKey = crypto.randomBytes(24).toString('hex'), name = 'plugin'}) {
        this.baseURL = baseURL.replace(/\/$/, '');
        this.clientID = clientID;
        this.authKey = authKey;
        this.name = name;
        this.messages = []; // {at, dir: 'in'|'out', type, sessionID, rtcType, data}
        this.hello = null;
        this.ws = null;
        this.handlers = new Map(); // sessionID -> fn(rec)
        this.errors = [];
    }

    async register() {
        const res = await fetch(`${this.baseURL}/register`, {
            method: 'POST',
            headers: {'content-type': 'application/json'},
            body: JSON.stringify({clientID: this.clientID, authKey: this.authKey}),
            signal: AbortSignal.timeout(10000),
        });
        const body = await res.text();
        if (res.status !== 201) {
            throw new Error(`POST /register: HTTP ${res.status} ${body}`);
        }
        return tryJSON(body);
    }

    async connect({timeout = 10000} = {}) {
        const url = `${this.baseURL.replace(/^http/, 'ws')}/ws`;
        const auth = Buffer.from(`${this.clientID}:${this.authKey}`).toString('base64');
        const ws = new WebSocket(url, {headers: {Authorization: `Basic ${auth}`}, perMessageDeflate: false, handshakeTimeout: timeout});
        this.ws = ws;
        ws.on('message', (data, isBinary) => this.onFrame(data, isBinary));
        ws.on('error', (err) => this.errors.push(`ws error: ${err.message}`));
        ws.on('close', (code) => this.messages.push({at: Date.now(), dir: 'in', type: '<ws-close>', data: code}));
        await new Promise((resolve, reject) => {
            ws.once('open', resolve);
            ws.once('error', reject);
        });
        await waitFor(() => this.hello, {timeout, what: `${this.name}: hello from rtcd`});
        return this.hello;
    }

    onFrame(data, isBinary) {
        const at = Date.now();
        if (!isBinary) {
            this.errors.push(`unexpected text frame from rtcd: ${String(data).slice(0, 100)}`);
            return;
        }
        let f;
        try {
            f = decodeFrame(new Uint8Array(data));
        } catch (err) {
            this.errors.push(`undecodable frame: ${err.message} (${Buffer.from(data).toString('hex').slice(0, 80)})`);
            return;
        }
        const rec = {at, dir: 'in', type: f.type, raw: f.data};
        if (f.type === 'hello') {
            rec.data = f.data;
            this.hello = f.data;
        } else if (f.type === 'close') {
            rec.data = f.data;
            rec.sessionID = f.data && f.data.sessionID;
        } else if (f.type === 'rtc' || f.type === 'vad') {
            const m = f.data || {};
            rec.sessionID = m.session_id;
            rec.rtcType = m.type;
            rec.ids = {group_id: m.group_id, user_id: m.user_id, session_id: m.session_id, call_id: m.call_id};
            rec.payload = bytesToString(m.data);
            rec.dataEncoding = m.data === undefined ? 'absent' : (typeof m.data === 'string' ? 'str' : 'bin');
            rec.data = tryJSON(rec.payload);
        } else {
            rec.data = f.data;
        }
        this.messages.push(rec);
        const h = rec.sessionID && this.handlers.get(rec.sessionID);
        if (h) {
            try {
                h(rec);
            } catch (err) {
                this.errors.push(`handler for ${rec.sessionID}: ${err.message}`);
            }
        }
    }

    send(type, value) {
        if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
            throw new Error(`${this.name}: ws to rtcd not open`);
        }
        this.ws.send(encodeFrame(type, value), {binary: true});
    }

    join({callID, userID, sessionID, channelID, av1Support = false, dcSignaling = false}) {
        const value = {callID, userID, sessionID, channelID, av1Support, dcSignaling};
        this.messages.push({at: Date.now(), dir: 'out', type: 'join', sessionID, data: value});
        this.send('join', value);
    }

    leave(sessionID) {
        this.messages.push({at: Date.now(), dir: 'out', type: 'leave', sessionID, data: {sessionID}});
        this.send('leave', {sessionID});
    }

    reconnect(sessionID) {
        this.messages.push({at: Date.now(), dir: 'out', type: 'reconnect', sessionID, data: {sessionID}});
        this.send('reconnect', {sessionID});
    }

    // The plugin sends empty group/user/call IDs; only session_id routes. `data` omitted when empty.
    sendRTC(sessionID, type, data) {
        const m = {group_id: '', user_id: '', session_id: sessionID, call_id: '', type};
        let payload;
        if (data !== undefined && data !== null) {
            payload = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
            if (payload.length > 0) {
                m.data = new Uint8Array(payload.buffer, payload.byteOffset, payload.length);
            }
        }
        this.messages.push({at: Date.now(), dir: 'out', type: 'rtc', sessionID, rtcType: type, payload: payload ? payload.toString('utf8') : '', data: payload ? tryJSON(payload.toString('utf8')) : undefined});
        this.send('rtc', m);
    }

    onSession(sessionID, fn) {
        this.handlers.set(sessionID, fn);
    }

    // Helpers for assertions.
    received({type, sessionID, rtcType, since = 0} = {}) {
        return this.messages.filter((m) => m.dir === 'in' &&
            (type === undefined || m.type === type) &&
            (sessionID === undefined || m.sessionID === sessionID) &&
            (rtcType === undefined || m.rtcType === rtcType) &&
            m.at >= since);
    }

    vad(sessionID, since = 0) {
        return this.received({type: 'vad', sessionID, since}).map((m) => ({at: m.at, on: m.rtcType === RTC.VOICE_ON, type: m.rtcType}));
    }

    summary(sessionID) {
        const rows = this.messages.filter((m) => sessionID === undefined || m.sessionID === sessionID);
        return rows.map((m) => `${new Date(m.at).toISOString().slice(11, 23)} ${m.dir === 'in' ? '<-' : '->'} ${m.type}${m.rtcType ? `/${m.rtcType}` : ''} ${m.sessionID ?? ''}${m.data && m.type === 'rtc' && m.data.type ? ` ${m.data.type}` : ''}`).join('\n');
    }

    async close() {
        if (this.ws) {
            const ws = this.ws;
            this.ws = null;
            await new Promise((resolve) => {
                const t = setTimeout(() => {
                    ws.terminate();
                    resolve();
                }, 2000);
                ws.once('close', () => {
                    clearTimeout(t);
                    resolve();
                });
                ws.close();
            });
        }
    }
}

// Per end-user session state held by MMServer.
class UserSession {
    constructor({sessionID, userID, callID, channelID, plugin, ws}) {
        Object.assign(this, {sessionID, userID, callID, channelID, plugin, ws});
        this.events = []; // page -> relay events, {at, type}
        this.closed = false;
    }
}

export class MMServer {
    // plugins: {name: RtcdPlugin}; the page URL picks one with ?node=<name> (default: first).
    constructor({plugins, bundlePath = path.join(root, 'dist', 'page.bundle.js')}) {
        this.plugins = plugins;
        this.defaultNode = Object.keys(plugins)[0];
        this.bundlePath = bundlePath;
        this.sessions = new Map();
        this.errors = [];
        this.server = null;
        this.port = 0;
    }

    async start() {
        const html = fs.readFileSync(path.join(root, 'page', 'index.html'));
        const bundle = fs.readFileSync(this.bundlePath);
        this.server = http.createServer((req, res) => {
            const u = new URL(req.url, 'http://127.0.0.1');
            if (u.pathname === '/') {
                res.writeHead(200, {'content-type': 'text/html; charset=utf-8'});
                res.end(html);
            } else if (u.pathname === '/page.bundle.js') {
                res.writeHead(200, {'content-type': 'text/javascript; charset=utf-8'});
                res.end(bundle);
            } else {
                res.writeHead(404);
                res.end();
            }
        });
        this.wss = new WebSocketServer({server: this.server, path: '/mm'});
        this.wss.on('connection', (ws, req) => this.onPage(ws, req));
        await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
        this.port = this.server.address().port;
        return this;
    }

    pageURL({callID, userID = newID(), channelID = callID, node = this.defaultNode, av1Support = false, dcSignaling = false}) {
        const q = new URLSearchParams({callID, userID, channelID, node, av1: String(av1Support), dcs: String(dcSignaling)});
        return `http://127.0.0.1:${this.port}/?${q}`;
    }

    onPage(ws, req) {
        const q = new URL(req.url, 'http://127.0.0.1').searchParams;
        const plugin = this.plugins[q.get('node') || this.defaultNode];
        let sess = null;
        ws.on('message', (raw, isBinary) => {
            let msg;
            try {
                msg = JSON.parse(isBinary ? Buffer.from(raw).toString('utf8') : String(raw));
            } catch (err) {
                this.errors.push(`bad page message: ${err.message}`);
                return;
            }
            try {
                if (msg.type === 'join') {
                    if (sess) {
                        throw new Error('second join on one page connection');
                    }
                    // The plugin uses the end user's Mattermost WS connection ID as the session ID.
                    sess = new UserSession({
                        sessionID: newID(),
                        userID: q.get('userID'),
                        callID: q.get('callID'),
                        channelID: q.get('channelID'),
                        plugin,
                        ws,
                    });
                    this.sessions.set(sess.sessionID, sess);
                    plugin.onSession(sess.sessionID, (rec) => this.fromRtcd(sess, rec));
                    plugin.join({
                        callID: sess.callID,
                        userID: sess.userID,
                        sessionID: sess.sessionID,
                        channelID: sess.channelID,
                        av1Support: q.get('av1') === 'true',
                        dcSignaling: q.get('dcs') === 'true',
                    });
                    ws.send(JSON.stringify({type: 'join_ack', sessionID: sess.sessionID}));
                    return;
                }
                if (!sess) {
                    throw new Error(`${msg.type} before join`);
                }
                sess.events.push({at: Date.now(), type: msg.type});
                this.toRtcd(sess, msg);
            } catch (err) {
                this.errors.push(`page ${sess ? sess.sessionID : '?'}: ${err.message}`);
                if (msg.type === 'join') {
                    ws.send(JSON.stringify({type: 'join_error', error: err.message}));
                }
            }
        });
        ws.on('close', () => {
            if (sess) {
                sess.pageClosed = true;
            }
        });
    }

    toRtcd(sess, msg) {
        const p = sess.plugin;
        const id = sess.sessionID;
        switch (msg.type) {
        case 'sdp': {
            // The plugin inflates the browser's zlib-compressed SDP (size-limited) and relays plain JSON.
            const inflated = zlib.inflateSync(Buffer.from(msg.data, 'base64'), {maxOutputLength: 1 << 20});
            const desc = JSON.parse(inflated.toString('utf8'));
            if (!desc || (desc.type !== 'offer' && desc.type !== 'answer') || typeof desc.sdp !== 'string') {
                throw new Error(`unexpected SDP payload ${inflated.toString('utf8').slice(0, 100)}`);
            }
            p.sendRTC(id, RTC.SDP, inflated);
            break;
        }
        case 'ice':
            p.sendRTC(id, RTC.ICE, msg.data);
            break;
        case 'mute':
            p.sendRTC(id, RTC.MUTE);
            break;
        case 'unmute':
            p.sendRTC(id, RTC.UNMUTE);
            break;
        case 'screen_on':
            p.sendRTC(id, RTC.SCREEN_ON, msg.data);
            break;
        case 'screen_off':
            p.sendRTC(id, RTC.SCREEN_OFF);
            break;
        case 'video_on':
            p.sendRTC(id, RTC.VIDEO_ON, msg.data);
            break;
        case 'video_off':
            p.sendRTC(id, RTC.VIDEO_OFF);
            break;
        case 'leave':
            p.leave(id);
            break;
        default:
            throw new Error(`unknown page message ${msg.type}`);
        }
    }

    fromRtcd(sess, rec) {
        if (rec.type === 'rtc') {
            // Plugin -> Mattermost WS event custom_com.mattermost.calls_signal {data: payload}.
            if (sess.ws.readyState === WebSocket.OPEN) {
                sess.ws.send(JSON.stringify({type: 'signal', data: rec.payload}));
            }
        } else if (rec.type === 'close') {
            sess.closed = true;
        }
        // vad -> user_voice_on/off broadcast: recorded by the plugin, nothing to forward.
    }

    // The end user's Mattermost WS reconnected to another plugin node: that node sends
    // `reconnect {sessionID}` and relays the session from now on (the old node may still get
    // the session's `close`, spec 3.6/3.7).
    moveSession(sessionID, node) {
        const sess = this.sessions.get(sessionID);
        if (!sess) {
            throw new Error(`unknown session ${sessionID}`);
        }
        const p = this.plugins[node];
        p.onSession(sessionID, (rec) => this.fromRtcd(sess, rec));
        p.reconnect(sessionID);
        sess.plugin = p;
    }

    async stop() {
        for (const c of this.wss ? this.wss.clients : []) {
            c.terminate();
        }
        if (this.wss) {
            this.wss.close();
        }
        if (this.server) {
            this.server.closeAllConnections();
            await new Promise((r) => this.server.close(r));
        }
    }
}
