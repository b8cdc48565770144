// Test page: one Mattermost Calls end user, built like the Calls webapp around RTCPeer
// (@mattermost/calls-common). Signaling goes over a WebSocket to the test's plugin-like relay
// (lib/relay.mjs), standing in for the Mattermost server WebSocket:
//   page -> relay: JSON {type: 'join'|'sdp'|'ice'|'mute'|'unmute'|'screen_on'|'screen_off'|
//                         'video_on'|'video_off'|'leave', data?}
//                  'sdp' data = base64(zlib(JSON {type, sdp})) like the webapp's deflate();
//                  'ice' data = JSON string of the RTCIceCandidate.
//   relay -> page: JSON {type: 'join_ack', sessionID} | {type: 'signal', data: <JSON string>}
//                  ('signal' carries rtcd's rtc payload verbatim, fed to RTCPeer.signal()).
// window.e2e exposes the hooks the Node tests drive through Playwright.
import {RTCPeer} from '@mattermost/calls-common';
import {deflate, inflate} from 'pako';
import {decodeMulti, encode} from '@msgpack/msgpack';

const state = {
    sessionID: null,
    connected: false,
    closed: false,
    errors: [],
    log: [],
    tracks: [], // remote tracks: {id, kind, streams, mid, at, ended}
    offersSent: 0,
    answersSent: 0,
    candidatesSent: 0,
    localCandidates: [],
    signalsIn: {offer: 0, answer: 0, candidate: 0, other: 0},
    remoteCandidates: [],
    dc: {pongs: 0, binary: 0, binaryTypes: {}},
    mediaMaps: [], // DC MediaMap messages from rtcd: {at, map}
    dcSignaling: new URLSearchParams(location.search).get('dcs') === 'true',
    // Joined with the `av1Support` prop (the relay reads the same query parameter).
    av1Support: new URLSearchParams(location.search).get('av1') === 'true',
    dcSDP: {offersIn: 0, answersOut: 0, other: 0}, // SDP over the data channel (dcSignaling)
    delayedAnswers: 0,
    connStates: [],
    left: false,
};

let peer = null;
let ws = null;
let stream = null;
let audioTrack = null;
let voiceTrackAdded = false;
let voiceTrackReplaced = false;
let screen = null; // {stream, track, senders}
let video = null;
let lastStats = null;
let dcOffersPending = 0;
const answerDelay = {ms: 0, count: 0};
const extraTracks = [];

function log(level, ...args) {
    const line = `${new Date().toISOString()} ${level} ${args.map((a) => (typeof a === 'string' ? a : safeJSON(a))).join(' ')}`;
    state.log.push(line);
    if (state.log.length > 2000) {
        state.log.splice(0, 500);
    }
    console.log(line);
}

function safeJSON(v) {
    try {
        return v instanceof Error ? `${v.name}: ${v.message}` : JSON.stringify(v);
    } catch {
        return String(v);
    }
}

const logger = {
    logDebug: (...a) => log('debug', ...a),
    logInfo: (...a) => log('info', ...a),
    logWarn: (...a) => log('warn', ...a),
    logErr: (...a) => log('error', ...a),
};

function b64(bytes) {
    let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) {
        s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(s);
}

function send(type, data) {
    if (!ws || ws.readyState !== WebSocket.OPEN) {
        log('error', `ws not open, dropping ${type}`);
        return;
    }
    ws.send(JSON.stringify(data === undefined ? {type} : {type, data}));
}

function sendSDP(desc) {
    // Same as the Calls webapp: deflate(JSON.stringify(sdp)) sent as binary; the plugin inflates.
    const json = JSON.stringify({type: desc.type, sdp: desc.sdp});
    send('sdp', b64(deflate(json)));
}

function withTimeout(p, ms, what) {
    let t;
    return Promise.race([
        p.finally(() => clearTimeout(t)),
        new Promise((_, rej) => {
            t = setTimeout(() => rej(new Error(`timeout after ${ms} ms: ${what}`)), ms);
        }),
    ]);
}

async function start(opts = {}) {
    const o = {unmuted: true, simulcast: false, connTimeoutMs: 15000, audio: undefined, ...opts};
    if (peer) {
        throw new Error('already started');
    }

    // Like the webapp: mic with the processing constraints, track disabled until unmute.
    stream = await navigator.mediaDevices.getUserMedia({
        video: false,
        audio: o.audio ?? {autoGainControl: true, echoCancellation: true, noiseSuppression: true},
    });
    audioTrack = stream.getAudioTracks()[0];
    audioTrack.enabled = false;

    const wsURL = new URL('/mm', location.href);
    wsURL.protocol = 'ws:';
    wsURL.search = location.search;
    ws = new WebSocket(wsURL);
    const joined = new Promise((resolve, reject) => {
        ws.onmessage = (ev) => {
            let msg;
            try {
                msg = JSON.parse(ev.data);
            } catch (err) {
                log('error', 'bad relay message', String(ev.data).slice(0, 200));
                return;
            }
            if (msg.type === 'join_ack') {
                state.sessionID = msg.sessionID;
                resolve();
            } else if (msg.type === 'join_error') {
                reject(new Error(`join failed: ${msg.error}`));
            } else if (msg.type === 'signal') {
                onSignal(msg.data);
            }
        };
        ws.onerror = () => reject(new Error('relay websocket error'));
        ws.onclose = () => log('info', 'relay websocket closed');
    });
    await withTimeout(new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = () => reject(new Error('relay websocket error'));
    }), 5000, 'relay websocket open');
    send('join');
    await withTimeout(joined, 10000, 'join ack');

    peer = new RTCPeer({iceServers: [], logger, simulcast: Boolean(o.simulcast), connTimeoutMs: o.connTimeoutMs});
    peer.on('offer', (desc) => {
        state.offersSent++;
        log('info', `sending offer #${state.offersSent}`);
        sendSDP(desc);
    });
    peer.on('answer', (desc) => {
        state.answersSent++;
        if (dcOffersPending > 0) {
            // Like newer calls-common (dc_msg): answer a DC offer over the DC, zlib-compressed.
            dcOffersPending--;
            state.dcSDP.answersOut++;
            log('info', `sending answer #${state.answersSent} over the data channel`);
            const z = deflate(JSON.stringify({type: desc.type, sdp: desc.sdp}));
            const a = encode(3);
            const b = encode(z);
            const msg = new Uint8Array(a.length + b.length);
            msg.set(a, 0);
            msg.set(b, a.length);
            peer.dc.send(msg);
            return;
        }
        if (answerDelay.count > 0) {
            // Test hook: a slow client (e.g. a starved tab) answering rtcd's offer late.
            answerDelay.count--;
            state.delayedAnswers++;
            log('info', `delaying answer #${state.answersSent} by ${answerDelay.ms} ms`);
            setTimeout(() => sendSDP(desc), answerDelay.ms);
            return;
        }
        log('info', `sending answer #${state.answersSent}`);
        sendSDP(desc);
    });
    peer.on('candidate', (cand) => {
        state.candidatesSent++;
        state.localCandidates.push(cand.candidate);
        send('ice', JSON.stringify(cand));
    });
    peer.on('connect', () => {
        state.connected = true;
        log('info', 'rtc connected');
    });
    peer.on('close', (err) => {
        state.closed = true;
        log('info', 'rtc closed', err ? String(err) : '');
    });
    peer.on('error', (err) => {
        state.errors.push(String(err && err.message ? err.message : err));
        log('error', 'peer error', String(err));
    });
    const pc = peer.pc;
    pc.addEventListener('track', (ev) => {
        const rec = {
            id: ev.track.id,
            kind: ev.track.kind,
            streams: ev.streams.map((s) => s.id),
            mid: ev.transceiver ? ev.transceiver.mid : null,
            at: Date.now(),
            ended: false,
            muted: ev.track.muted,
            muteEvents: 0,
        };
        state.tracks.push(rec);
        ev.track.addEventListener('ended', () => {
            rec.ended = true;
        });
        ev.track.addEventListener('mute', () => {
            rec.muted = true;
            rec.muteEvents++;
        });
        ev.track.addEventListener('unmute', () => {
            rec.muted = false;
        });
        if (ev.track.kind === 'audio') {
            // Like the webapp: every remote audio track is played by an <audio> element (this also
            // makes Chromium decode it, so inbound audioLevel/totalAudioEnergy become meaningful).
            const el = document.createElement('audio');
            el.autoplay = true;
            el.srcObject = new MediaStream([ev.track]);
            document.body.appendChild(el);
            el.play().catch((err) => log('warn', `audio play: ${err.message}`));
        }
        log('info', `remote track ${rec.kind} ${rec.id} streams=${rec.streams.join(',')} mid=${rec.mid}`);
    });
    pc.addEventListener('connectionstatechange', () => state.connStates.push(pc.connectionState));
    peer.dc.addEventListener('message', ({data}) => {
        if (data === 'pong') {
            state.dc.pongs++;
        } else if (data instanceof ArrayBuffer || data instanceof Blob) {
            state.dc.binary++;
            if (data instanceof ArrayBuffer && data.byteLength > 0) {
                try {
                    const it = decodeMulti(new Uint8Array(data));
                    const t = it.next().value;
                    state.dc.binaryTypes[t] = (state.dc.binaryTypes[t] || 0) + 1;
                    if (t === 9) {
                        state.mediaMaps.push({at: Date.now(), map: it.next().value});
                    } else if (t === 3) {
                        // SDP over the DC (rtcd's offers with dcSignaling): zlib(JSON).
                        const json = new TextDecoder().decode(inflate(it.next().value));
                        const type = JSON.parse(json).type;
                        if (type === 'offer') {
                            state.dcSDP.offersIn++;
                            dcOffersPending++;
                        } else {
                            state.dcSDP.other++;
                        }
                        onSignal(json);
                    }
                } catch (err) {
                    log('warn', `undecodable DC message: ${err.message}`);
                }
            }
        }
    });

    if (o.unmuted) {
        await unmute();
    }
    return state.sessionID;
}

function onSignal(data) {
    let msg;
    try {
        msg = JSON.parse(data);
    } catch (err) {
        log('error', 'bad signal payload', String(data).slice(0, 200));
        return;
    }
    if (msg.type in state.signalsIn) {
        state.signalsIn[msg.type]++;
    } else {
        state.signalsIn.other++;
    }
    if (msg.type === 'candidate') {
        state.remoteCandidates.push(msg.candidate && msg.candidate.candidate);
    }
    if (!peer) {
        log('warn', `signal ${msg.type} without a peer`);
        return;
    }
    peer.signal(data).catch((err) => {
        state.errors.push(`signal ${msg.type}: ${err && err.message ? err.message : err}`);
        log('error', `signal ${msg.type} failed`, String(err));
    });
}

async function unmute() {
    if (!peer) {
        throw new Error('not started');
    }
    if (!voiceTrackAdded) {
        await peer.addTrack(audioTrack, stream);
        voiceTrackAdded = true;
    } else if (voiceTrackReplaced) {
        peer.replaceTrack(audioTrack.id, audioTrack);
        voiceTrackReplaced = false;
    }
    audioTrack.enabled = true;
    send('unmute');
}

// mode 'enabled' (default): only disables the track, so Chromium keeps sending (silent) RTP
// and forwarding must be stopped by rtcd; mode 'replace': also replaceTrack(null) like the webapp.
async function mute(mode = 'enabled') {
    if (!peer) {
        throw new Error('not started');
    }
    if (mode === 'replace' && voiceTrackAdded) {
        peer.replaceTrack(audioTrack.id, null);
        voiceTrackReplaced = true;
    }
    audioTrack.enabled = false;
    send('mute');
}

async function fakeVideoTrack(opts) {
    const s = await navigator.mediaDevices.getUserMedia({
        audio: false,
        video: {width: opts.width ?? 640, height: opts.height ?? 480, frameRate: opts.frameRate ?? 15},
    });
    const t = s.getVideoTracks()[0];
    t.contentHint = opts.contentHint ?? 'detail';
    extraTracks.push(t);
    return t;
}

// What the webapp checks before joining with av1Support (RTCPeer.getVideoCodec in newer
// calls-common: the first `video/AV1` entry of RTCRtpReceiver.getCapabilities), plus whether
// this Chromium can encode AV1 at all (RTCRtpSender.getCapabilities).
function getVideoCodec(mimeType) {
    const caps = RTCRtpReceiver.getCapabilities ? RTCRtpReceiver.getCapabilities('video') : null;
    return (caps ? caps.codecs : []).find((c) => c.mimeType === mimeType) || null;
}

function av1Capabilities() {
    const has = (caps) => Boolean(caps && caps.codecs.some((c) => c.mimeType === 'video/AV1'));
    return {
        send: has(RTCRtpSender.getCapabilities && RTCRtpSender.getCapabilities('video')),
        receive: has(RTCRtpReceiver.getCapabilities && RTCRtpReceiver.getCapabilities('video')),
        codec: getVideoCodec('video/AV1'),
    };
}

// Newer calls-common: RTCPeer.addTrack(track, stream, {codec}) adds the sendonly transceiver and
// calls trx.setCodecPreferences([codec]) on it right away. 0.27.2 has no options argument, so
// the preference is applied to the transceiver its addTrack creates (synchronously, before
// negotiationneeded fires). Returns the new sender.
async function addTrackWithCodec(track, s, codec) {
    const pc = peer.pc;
    const addTransceiver = pc.addTransceiver;
    let trx = null;
    pc.addTransceiver = function (...args) {
        trx = addTransceiver.apply(this, args);
        trx.setCodecPreferences([codec]);
        return trx;
    };
    try {
        await peer.addTrack(track, s);
    } finally {
        pc.addTransceiver = addTransceiver;
    }
    if (!trx) {
        throw new Error('RTCPeer.addTrack created no transceiver');
    }
    return trx.sender;
}

// Screen share as the webapp does it: ScreenOn with the stream id is sent before the offer
// carrying the track (the offer is created asynchronously on negotiationneeded). A session
// joined with av1Support sends the track twice, like the webapp's setScreenStream: first the
// fallback track without codec preference (VP8), then the same track with the AV1 codec
// preference (same stream).
async function shareScreen(opts = {}) {
    if (!peer) {
        throw new Error('not started');
    }
    if (screen) {
        throw new Error('already sharing');
    }
    const track = await fakeVideoTrack(opts);
    const s = new MediaStream([track]);
    screen = {stream: s, track, senders: []};
    send('screen_on', JSON.stringify({screenStreamID: s.id}));
    await peer.addTrack(track, s);
    screen.senders.push(peer.senders[track.id]);
    const av1Codec = state.av1Support ? getVideoCodec('video/AV1') : null;
    if (av1Codec) {
        log('info', 'AV1 supported, sending track', av1Codec);
        screen.senders.push(await addTrackWithCodec(track, s, av1Codec));
    }
    return {streamID: s.id, trackID: track.id, av1: Boolean(av1Codec)};
}

async function stopScreen() {
    if (!screen) {
        return;
    }
    const {track, senders} = screen;
    screen = null;
    track.stop();
    // Newer calls-common removes every sender of the track; 0.27.2 keeps only the last one.
    peer.removeTrack(track.id);
    for (const sender of senders) {
        if (peer.pc.getSenders().includes(sender)) {
            peer.pc.removeTrack(sender);
        }
    }
    send('screen_off');
}

async function startVideo(opts = {}) {
    if (!peer) {
        throw new Error('not started');
    }
    const track = await fakeVideoTrack({contentHint: 'motion', ...opts});
    const s = new MediaStream([track]);
    video = {stream: s, track};
    send('video_on', JSON.stringify({videoStreamID: s.id}));
    await peer.addTrack(track, s);
    return {streamID: s.id, trackID: track.id};
}

async function stopVideo() {
    if (!video) {
        return;
    }
    const {track} = video;
    video = null;
    track.stop();
    peer.removeTrack(track.id);
    send('video_off');
}

async function leave() {
    state.left = true;
    if (peer) {
        lastStats = await stats().catch(() => null);
    }
    send('leave');
    if (peer) {
        try {
            peer.destroy();
        } catch (err) {
            log('warn', 'destroy', String(err));
        }
        peer = null;
    }
    for (const t of [...(stream ? stream.getTracks() : []), ...extraTracks]) {
        t.stop();
    }
}

async function stats() {
    if (!peer || !peer.pc) {
        return lastStats;
    }
    const pc = peer.pc;
    const report = await pc.getStats(null);
    const byID = new Map();
    report.forEach((s) => byID.set(s.id, s));
    const codec = (s) => (s.codecId && byID.get(s.codecId) ? byID.get(s.codecId).mimeType : null);
    const out = {
        at: Date.now(),
        connectionState: pc.connectionState,
        iceConnectionState: pc.iceConnectionState,
        signalingState: pc.signalingState,
        inbound: [],
        outbound: [],
        selectedPair: null,
        transceivers: pc.getTransceivers().map((t) => ({
            mid: t.mid,
            direction: t.direction,
            currentDirection: t.currentDirection,
            sendTrack: t.sender.track ? {id: t.sender.track.id, kind: t.sender.track.kind} : null,
            recvTrack: t.receiver.track ? {id: t.receiver.track.id, kind: t.receiver.track.kind, readyState: t.receiver.track.readyState} : null,
        })),
    };
    report.forEach((s) => {
        if (s.type === 'inbound-rtp') {
            out.inbound.push({
                kind: s.kind,
                trackIdentifier: s.trackIdentifier,
                mid: s.mid,
                ssrc: s.ssrc,
                codec: codec(s),
                packetsReceived: s.packetsReceived ?? 0,
                bytesReceived: s.bytesReceived ?? 0,
                packetsLost: s.packetsLost ?? 0,
                framesDecoded: s.framesDecoded ?? 0,
                framesReceived: s.framesReceived ?? 0,
                totalSamplesReceived: s.totalSamplesReceived ?? 0,
                nackCount: s.nackCount ?? 0,
                pliCount: s.pliCount ?? 0,
                firCount: s.firCount ?? 0,
                freezeCount: s.freezeCount ?? 0,
                keyFramesDecoded: s.keyFramesDecoded ?? 0,
                concealedSamples: s.concealedSamples ?? 0,
                audioLevel: s.audioLevel,
                totalAudioEnergy: s.totalAudioEnergy,
            });
        } else if (s.type === 'outbound-rtp') {
            out.outbound.push({
                kind: s.kind,
                mid: s.mid,
                rid: s.rid,
                ssrc: s.ssrc,
                codec: codec(s),
                packetsSent: s.packetsSent ?? 0,
                bytesSent: s.bytesSent ?? 0,
                framesEncoded: s.framesEncoded ?? 0,
                nackCount: s.nackCount ?? 0,
                pliCount: s.pliCount ?? 0,
                retransmittedPacketsSent: s.retransmittedPacketsSent ?? 0,
                keyFramesEncoded: s.keyFramesEncoded ?? 0,
                // Why the encoder sends less than asked ('cpu' | 'bandwidth' | 'none'), and for
                // how long each (s): tells a loaded machine from a low send-side estimate.
                qualityLimitationReason: s.qualityLimitationReason,
                qualityLimitationDurations: s.qualityLimitationDurations,
                frameWidth: s.frameWidth,
                framesPerSecond: s.framesPerSecond,
                targetBitrate: s.targetBitrate,
                active: s.active,
            });
        } else if (s.type === 'media-source' && s.kind === 'audio') {
            out.micLevel = {audioLevel: s.audioLevel, totalAudioEnergy: s.totalAudioEnergy, totalSamplesDuration: s.totalSamplesDuration};
        } else if (s.type === 'transport' && s.selectedCandidatePairId) {
            const pair = byID.get(s.selectedCandidatePairId);
            if (pair) {
                const l = byID.get(pair.localCandidateId) || {};
                const r = byID.get(pair.remoteCandidateId) || {};
                out.selectedPair = {
                    state: pair.state,
                    // The send-side bandwidth estimate (from rtcd's transport-cc feedback).
                    availableOutgoingBitrate: pair.availableOutgoingBitrate,
                    currentRoundTripTime: pair.currentRoundTripTime,
                    local: {address: l.address, port: l.port, protocol: l.protocol, type: l.candidateType, tcpType: l.tcpType},
                    remote: {address: r.address, port: r.port, protocol: r.protocol, type: r.candidateType, tcpType: r.tcpType},
                };
            }
        }
    });
    return out;
}

function snapshot() {
    return JSON.parse(JSON.stringify({...state, log: undefined}));
}

function delayAnswers(ms, count = 1) {
    answerDelay.ms = ms;
    answerDelay.count = count;
}

window.e2e = {av1Capabilities, delayAnswers, start, mute, unmute, shareScreen, stopScreen, startVideo, stopVideo, leave, stats, snapshot, logs: () => state.log.slice()};
document.getElementById('status').textContent = 'ready';
