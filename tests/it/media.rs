//! The media plane end to end over loopback UDP and TCP against the real worker pool,
//! with str0m clients behaving like Mattermost's RTCPeer (see `media_harness`).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtcd::bridge::{
    notice_queue, CloseReason, Command, DataPlane, MessageType, Notice, SessionInfo, SessionKey,
    WorkerId,
};
use rtcd::data::media::MediaSettings;
use rtcd::data::net::{self, Endpoint};
use rtcd::data::{PoolSettings, WorkerPool};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

use crate::media_harness::*;
use rtcd_proto::simulcast::Layer;

#[test]
fn three_clients_in_a_call_receive_each_others_audio() {
    let mut server = Server::start(1);
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    let mut b = Client::new(&server, 0, "sessB", "call1", false);
    let mut c = Client::new(&server, 0, "sessC", "call1", false);
    let ok = run_until(
        &mut server,
        &mut [&mut a, &mut b, &mut c],
        Duration::from_secs(20),
        &[true, true, true],
        |cs| {
            cs.iter()
                .all(|c| c.received.len() >= 2 && c.received.values().all(|n| *n >= 20))
        },
    );
    for cl in [&a, &b, &c] {
        assert!(cl.connected, "{} connected", cl.key);
        assert!(cl.candidates >= 1, "server trickled its candidates");
    }
    assert!(
        ok,
        "each client hears the two others: a={:?} b={:?} c={:?}",
        a.received, b.received, c.received
    );
    // Every server offer was preceded by a MediaMap naming the forwarded voice tracks.
    for cl in [&a, &b, &c] {
        let last = cl.media_maps.last().expect("media map sent");
        assert!(last.iter().all(|(_, e)| e.kind == "voice"));
        assert_eq!(last.len(), 2);
    }
}

#[test]
fn data_channel_answers_pings_locks_and_legacy_text_ping() {
    let mut server = Server::start(1);
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    assert!(run_until(
        &mut server,
        &mut [&mut a],
        Duration::from_secs(10),
        &[],
        |cs| cs[0].dc_open
    ));
    a.dc_write(true, &[0x01]); // Ping as the browser encodes it
    a.dc_write(false, b"ping"); // old mobile clients
    a.dc_write(true, &[0x07]); // Lock
    a.dc_write(true, &[0x07]); // Lock again: refused, we hold it
    a.dc_write(true, &[0x08]); // Unlock
    a.dc_write(true, &[0x07]); // Lock: granted again
    assert!(run_until(
        &mut server,
        &mut [&mut a],
        Duration::from_secs(5),
        &[],
        |cs| cs[0].pongs >= 2 && cs[0].lock_replies.len() >= 3
    ));
    assert_eq!(a.lock_replies, vec![true, false, true]);
}

#[test]
fn mute_stops_forwarding_with_voice_off_and_unmute_resumes() {
    let mut server = Server::start(1);
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    let mut b = Client::new(&server, 0, "sessB", "call1", false);
    assert!(
        run_until(
            &mut server,
            &mut [&mut a, &mut b],
            Duration::from_secs(20),
            &[true, false],
            |cs| { cs[1].total_received() >= 60 && cs[0].vad.contains(&true) }
        ),
        "b hears a and a's voice activity is detected: vad={:?} b={:?}",
        a.vad,
        b.received
    );
    let key = a.key.clone();
    server.signal(0, &key, MessageType::Mute, Vec::new());
    assert!(
        run_until(
            &mut server,
            &mut [&mut a, &mut b],
            Duration::from_secs(5),
            &[true, false],
            |cs| { cs[0].vad.last() == Some(&false) }
        ),
        "mute forces VoiceOff"
    );
    // Let in-flight packets land, then check nothing more arrives.
    idle(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_millis(300),
        &[true, false],
    );
    let before = b.total_received();
    idle(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(1),
        &[true, false],
    );
    assert_eq!(b.total_received(), before, "muted voice is not forwarded");
    server.signal(0, &key, MessageType::Unmute, Vec::new());
    assert!(
        run_until(
            &mut server,
            &mut [&mut a, &mut b],
            Duration::from_secs(5),
            &[true, false],
            |cs| { cs[1].total_received() >= before + 20 }
        ),
        "unmute resumes forwarding"
    );
}

#[test]
fn leave_closes_the_session_and_others_stop_receiving_it() {
    let mut server = Server::start(1);
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    let mut b = Client::new(&server, 0, "sessB", "call1", false);
    assert!(run_until(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(20),
        &[true, false],
        |cs| cs[1].total_received() >= 20
    ));
    server
        .pool
        .submit(WorkerId(0), Command::Leave { key: a.key.clone() })
        .unwrap();
    assert!(run_until(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(5),
        &[true, false],
        |cs| cs[0].closed.is_some()
    ));
    assert_eq!(a.closed, Some(CloseReason::Leave));
    idle(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_millis(300),
        &[true, false],
    );
    let before = b.total_received();
    idle(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(1),
        &[true, false],
    );
    assert_eq!(b.total_received(), before, "the leaver's audio stops");
}

#[test]
fn two_calls_stay_isolated() {
    let mut server = Server::start(1);
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    let mut b = Client::new(&server, 0, "sessB", "call1", false);
    let mut c = Client::new(&server, 0, "sessC", "call2", false);
    let mut d = Client::new(&server, 0, "sessD", "call2", false);
    connect_all(&mut server, &mut [&mut a, &mut b, &mut c, &mut d], 30);
    for cl in [&a, &b, &c, &d] {
        assert_eq!(
            cl.received.len(),
            1,
            "{} receives exactly one remote track",
            cl.key
        );
        assert_eq!(cl.media_maps.last().unwrap().len(), 1);
    }
}

/// An `actpass` offer lets rtcd choose: it answers `a=setup:active` and is the DTLS client
/// (as upstream's pion and RFC 5763 §5), over UDP and ICE-TCP alike; media then flows.
#[test]
fn answers_an_actpass_offer_as_the_dtls_client() {
    let mut server = Server::start(1);
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    let mut b = Client::new(&server, 0, "sessB", "call1", true);
    let ok = run_until(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(20),
        &[true, true],
        |cs| cs[0].total_received() >= 20 && cs[1].total_received() >= 20,
    );
    for cl in [&a, &b] {
        assert!(cl.connected, "{} connected", cl.key);
        assert!(
            !cl.answer_setups.is_empty() && cl.answer_setups.iter().all(|v| v == "active"),
            "{}: rtcd's answers say a=setup:{:?}",
            cl.key,
            cl.answer_setups
        );
    }
    assert!(ok, "udp a={:?} tcp b={:?}", a.received, b.received);
}

#[test]
fn ice_over_tcp_carries_media() {
    let mut server = Server::start(1);
    let mut a = Client::new(&server, 0, "sessA", "call1", true);
    let mut b = Client::new(&server, 0, "sessB", "call1", false);
    assert!(
        run_until(
            &mut server,
            &mut [&mut a, &mut b],
            Duration::from_secs(20),
            &[true, true],
            |cs| { cs[0].total_received() >= 20 && cs[1].total_received() >= 20 }
        ),
        "tcp client a={:?} udp client b={:?}",
        a.received,
        b.received
    );
}

#[test]
fn sessions_owned_by_the_second_worker_are_steered_to_it() {
    let mut server = Server::start(2);
    // Both sessions live on worker 1; the kernel may deliver their packets to worker 0.
    let mut a = Client::new(&server, 1, "sessA", "call1", false);
    let mut b = Client::new(&server, 1, "sessB", "call1", false);
    let mut c = Client::new(&server, 1, "sessC", "call1", true);
    assert!(
        run_until(
            &mut server,
            &mut [&mut a, &mut b, &mut c],
            Duration::from_secs(20),
            &[true, true, true],
            |cs| {
                cs.iter()
                    .all(|c| c.received.len() == 2 && c.total_received() >= 40)
            }
        ),
        "a={:?} b={:?} c={:?}",
        a.received,
        b.received,
        c.received
    );
    let counters = server.pool.counters();
    assert_eq!(counters.len(), 2);
    assert_eq!(counters[1].sessions, 3);
}

#[test]
fn a_session_without_an_offer_is_closed_after_the_signaling_timeout() {
    let port = free_udp_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ep = Endpoint {
        local: addr,
        advertised: addr,
    };
    let (tx, mut rx) = notice_queue();
    let pool = WorkerPool::start(
        PoolSettings {
            workers: 1,
            udp: vec![ep],
            tcp: vec![],
            candidates: Default::default(),
            media: MediaSettings {
                signaling_timeout: Duration::from_millis(200),
                ..MediaSettings::default()
            },
            pin: false,
            io: test_io(),
        },
        tx,
    )
    .unwrap();
    let key = SessionKey::new("g", "s1");
    pool.submit(
        WorkerId(0),
        Command::Join(SessionInfo {
            key: key.clone(),
            call_id: "c".into(),
            user_id: "u".into(),
            av1_support: false,
            dc_signaling: false,
        }),
    )
    .unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        match rx.try_recv() {
            Ok(Notice::Closed { key: k, reason }) => {
                assert_eq!(k, key);
                assert_eq!(reason, CloseReason::SignalingTimeout);
                break;
            }
            Ok(_) => {}
            Err(_) => {
                assert!(Instant::now() < end, "no close notice");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    let _ = net::probe_ports(&[], &[]);
}

#[test]
fn garbage_datagrams_are_dropped_and_counted() {
    let mut server = Server::start(1);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = format!("127.0.0.1:{}", server.port);
    for bad in [
        &b"\x00\x01garbage"[..],
        &[0x16, 0xfe, 0xfd][..],
        &[0x80; 40][..],
        &[][..],
    ] {
        sock.send_to(bad, &target).unwrap();
    }
    // A real session still works afterwards.
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    assert!(run_until(
        &mut server,
        &mut [&mut a],
        Duration::from_secs(10),
        &[],
        |cs| cs[0].dc_open
    ));
    let drops: u64 = server.pool.counters()[0]
        .drops
        .iter()
        .filter(|(r, _)| *r == "unknown_source" || *r == "malformed")
        .map(|(_, v)| v)
        .sum();
    assert!(drops >= 3, "{:?}", server.pool.counters());
}

#[test]
fn screen_share_reaches_viewers_with_a_screen_media_map_and_a_keyframe_request() {
    let mut server = Server::start(1);
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    let mut b = Client::new(&server, 0, "sessB", "call1", false);
    connect_all(&mut server, &mut [&mut a, &mut b], 5);
    a.start_screen(&mut server);
    assert!(
        run_until(
            &mut server,
            &mut [&mut a, &mut b],
            Duration::from_secs(20),
            &[false, false],
            |cs| { cs[1].video_frames.values().sum::<usize>() >= 10 }
        ),
        "viewer decodes the screen: frames={:?} maps={:?}",
        b.video_frames,
        b.media_maps.last()
    );
    let map = b.media_maps.last().unwrap();
    assert!(
        map.iter()
            .any(|(_, e)| e.kind == "screen" && e.sender_id == "sessA"),
        "{map:?}"
    );
    assert!(
        a.keyframe_requests >= 1,
        "the new viewer triggered a PLI to the sharer"
    );
    // ScreenOff removes the screen track at the viewer by renegotiation.
    let offers_before = b.media_maps.len();
    server.signal(0, &a.key, MessageType::ScreenOff, Vec::new());
    a.screen = None;
    assert!(
        run_until(
            &mut server,
            &mut [&mut a, &mut b],
            Duration::from_secs(10),
            &[false, false],
            |cs| { cs[1].media_maps.len() > offers_before }
        ),
        "a removal offer follows ScreenOff"
    );
    assert!(b
        .media_maps
        .last()
        .unwrap()
        .iter()
        .all(|(_, e)| e.kind != "screen"));
}

/// The whole daemon: a plugin-like WebSocket client relays a str0m client's signaling
/// through the control plane to a real worker, as the Calls plugin does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connects_through_the_plugin_websocket_and_the_daemon() {
    use crate::common::*;
    use rtcd_proto::ws::{ClientMessage, RtcMessage};

    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(dir.path(), &Setup::default());
    let port = free_udp_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ep = Endpoint {
        local: addr,
        advertised: addr,
    };
    let (tx, rx) = notice_queue();
    let pool = Arc::new(
        WorkerPool::start(
            PoolSettings {
                workers: 2,
                udp: vec![ep],
                tcp: vec![],
                candidates: rtcd::data::media::LocalCandidates {
                    udp: vec![addr],
                    tcp: vec![],
                },
                media: MediaSettings::default(),
                pin: false,
                io: test_io(),
            },
            tx,
        )
        .unwrap(),
    );
    let control = rtcd::control::ControlPlane::start(&cfg, pool.clone(), rx, Default::default())
        .await
        .unwrap();
    let base = format!("http://{}", control.local_addr);
    let r = http()
        .post(format!("{base}/register"))
        .json(&serde_json::json!({"clientID": "mm", "authKey": KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut ws = ws_connect(
        &format!("ws://{}/ws", control.local_addr),
        &basic("mm", KEY),
    )
    .await
    .unwrap();
    let _hello = next_binary(&mut ws).await;
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        join_frame("call1", "user1", "sess1").into(),
    ))
    .await
    .unwrap();

    // The end user's peer.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_nonblocking(true).unwrap();
    let local = sock.local_addr().unwrap();
    let mut rtc = Rtc::builder().build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    api.add_channel("calls-dc".to_string());
    let (offer, pending) = api.apply().unwrap();
    let mut pending = Some(pending);
    let offer_json = serde_json::json!({"type": "offer", "sdp": offer.to_sdp_string()}).to_string();
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        rtc_frame("sess1", 2, offer_json.as_bytes()).into(),
    ))
    .await
    .unwrap();

    let mut dc_open = false;
    let mut got_answer = false;
    let mut buf = [0u8; 2048];
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end && !dc_open {
        // Plugin side: relay rtcd's messages to the peer.
        if let Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(b)))) =
            tokio::time::timeout(
                Duration::from_millis(5),
                futures_util::StreamExt::next(&mut ws),
            )
            .await
        {
            match ClientMessage::decode(&b).unwrap() {
                ClientMessage::Rtc(RtcMessage {
                    msg_type,
                    data,
                    group_id,
                    user_id,
                    call_id,
                    ..
                }) => {
                    assert_eq!(
                        (group_id.as_str(), user_id.as_str(), call_id.as_str()),
                        ("mm", "user1", "call1")
                    );
                    let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
                    if msg_type == MessageType::Sdp {
                        assert_eq!(v["type"], "answer");
                        let ans = SdpAnswer::from_sdp_string(v["sdp"].as_str().unwrap()).unwrap();
                        rtc.sdp_api()
                            .accept_answer(pending.take().unwrap(), ans)
                            .unwrap();
                        got_answer = true;
                    } else if msg_type == MessageType::Ice {
                        assert!(got_answer, "candidates trickle after the answer");
                        let c = Candidate::from_sdp_string(
                            v["candidate"]["candidate"].as_str().unwrap(),
                        )
                        .unwrap();
                        rtc.add_remote_candidate(c);
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let now = Instant::now();
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            rtc.handle_input(Input::Receive(
                now,
                Receive::new(Protocol::Udp, from, local, &buf[..n]).unwrap(),
            ))
            .unwrap();
        }
        let _ = rtc.handle_input(Input::Timeout(now));
        loop {
            match rtc.poll_output().unwrap() {
                Output::Timeout(_) => break,
                Output::Transmit(t) => {
                    let _ = sock.send_to(&t.contents, t.destination);
                }
                Output::Event(Event::ChannelOpen(..)) => dc_open = true,
                Output::Event(_) => {}
            }
        }
    }
    assert!(got_answer, "the daemon answered the relayed offer");
    assert!(dc_open, "ICE, DTLS and SCTP came up through the daemon");
    // Leave through the plugin: the session closes and the plugin gets `close`.
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        session_frame("leave", "sess1").into(),
    ))
    .await
    .unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < end, "no close");
        let b = next_binary(&mut ws).await;
        if let ClientMessage::Close { session_id } = ClientMessage::decode(&b).unwrap() {
            assert_eq!(session_id, "sess1");
            break;
        }
    }
    control.shutdown().await;
}

#[test]
fn with_dc_signaling_server_offers_travel_zlib_compressed_over_the_data_channel() {
    let mut server = Server::start(1);
    let mut a = Client::new_with(&server, 0, "sessA", "call1", false, true);
    let mut b = Client::new_with(&server, 0, "sessB", "call1", false, true);
    assert!(
        run_until(
            &mut server,
            &mut [&mut a, &mut b],
            Duration::from_secs(20),
            &[true, true],
            |cs| { cs.iter().all(|c| c.total_received() >= 20) }
        ),
        "a={:?} b={:?}",
        a.received,
        b.received
    );
    assert!(
        a.dc_offers >= 1 && b.dc_offers >= 1,
        "offers came over the data channel"
    );
}

#[test]
fn video_keeps_flowing_under_ten_percent_loss_in_both_directions() {
    let mut server = Server::start(1);
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    let mut b = Client::new(&server, 0, "sessB", "call1", false);
    connect_all(&mut server, &mut [&mut a, &mut b], 5);
    a.start_screen(&mut server);
    assert!(run_until(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(10),
        &[false, false],
        |cs| { cs[1].video_frames.values().sum::<usize>() >= 5 }
    ));
    // 10 % loss on every datagram in and out of both clients.
    a.loss_percent = 10;
    b.loss_percent = 10;
    let sent0 = a.video_sent;
    let got0: usize = b.video_frames.values().sum();
    idle(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(8),
        &[false, false],
    );
    a.screen = None; // stop sending, let retransmissions settle
    a.loss_percent = 0;
    b.loss_percent = 0;
    idle(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(2),
        &[false, false],
    );
    let sent = a.video_sent - sent0;
    let got = b.video_frames.values().sum::<usize>() - got0;
    println!("video frames under 10% loss: sent {sent}, received {got}");
    assert!(sent >= 100, "sent {sent}");
    // Two lossy hops without any repair would lose about 19 % of these single-packet frames;
    // NACK/RTX repairs most of them (measured 95-100 %).
    assert!(got * 100 >= sent * 90, "received {got} of {sent} frames");
}

#[test]
fn the_server_answers_a_viewers_nacks_with_retransmissions() {
    let mut server = Server::start(1);
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    let mut b = Client::new(&server, 0, "sessB", "call1", false);
    connect_all(&mut server, &mut [&mut a, &mut b], 5);
    a.start_screen(&mut server);
    assert!(run_until(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(10),
        &[false, false],
        |cs| { cs[1].video_frames.values().sum::<usize>() >= 5 }
    ));
    // 10 % loss only between the server and the viewer: every repair is the server's RTX.
    b.loss_percent = 10;
    let sent0 = a.video_sent;
    let got0: usize = b.video_frames.values().sum();
    idle(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(8),
        &[false, false],
    );
    a.screen = None;
    b.loss_percent = 0;
    idle(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(2),
        &[false, false],
    );
    let sent = a.video_sent - sent0;
    let got = b.video_frames.values().sum::<usize>() - got0;
    println!("viewer-leg loss: sent {sent}, received {got}");
    assert!(sent >= 100, "sent {sent}");
    // Without retransmission about 10 % of these single-packet frames would be lost
    // (measured: all repaired).
    assert!(got * 100 >= sent * 97, "received {got} of {sent} frames");
}

#[test]
fn a_client_holding_the_lock_defers_server_offers_until_rtcd_gives_up_after_five_seconds() {
    let mut server = Server::start(1);
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    assert!(run_until(
        &mut server,
        &mut [&mut a],
        Duration::from_secs(10),
        &[],
        |cs| cs[0].dc_open
    ));
    a.dc_write(true, &[0x07]);
    assert!(run_until(
        &mut server,
        &mut [&mut a],
        Duration::from_secs(5),
        &[],
        |cs| !cs[0].lock_replies.is_empty()
    ));
    assert_eq!(a.lock_replies, vec![true]);
    let mut b = Client::new(&server, 0, "sessB", "call1", false);
    // b publishes; a's renegotiation must wait for a's lock.
    idle(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(3),
        &[false, true],
    );
    assert!(
        a.media_maps.is_empty(),
        "no server offer while the client holds the lock"
    );
    // After 5 s rtcd drops the waiting action; unlocking later does not bring it back.
    idle(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(3),
        &[false, true],
    );
    a.dc_write(true, &[0x08]);
    idle(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(1),
        &[false, true],
    );
    assert!(a.media_maps.is_empty(), "the timed-out action was dropped");
    assert_eq!(a.total_received(), 0);
}

#[test]
fn simulcast_screen_share_sends_viewers_only_the_low_layer() {
    let mut server = Server::start(1);
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    let mut b = Client::new(&server, 0, "sessB", "call1", false);
    connect_all(&mut server, &mut [&mut a, &mut b], 5);
    a.start_screen_with(&mut server, true);
    assert!(
        run_until(
            &mut server,
            &mut [&mut a, &mut b],
            Duration::from_secs(10),
            &[false, false],
            |cs| { cs[1].video_frames.values().sum::<usize>() >= 10 }
        ),
        "viewer gets the screen: {:?}",
        b.video_frames
    );
    // Let the high layer be published too, then check the viewer still has one screen track.
    idle(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(1),
        &[false, false],
    );
    assert_eq!(
        b.video_frames.len(),
        1,
        "one forwarded screen track (layer l)"
    );
    let screens = b
        .media_maps
        .last()
        .unwrap()
        .iter()
        .filter(|(_, e)| e.kind == "screen")
        .count();
    assert_eq!(screens, 1);
}

/// rtcd (spec §5.7): a viewer starts on `l`; once its bandwidth estimate passes 0.9 × the
/// `l` layer's measured rate and both layers' rates are known (the `l` monitor needs 10 s),
/// it is switched to `h` by removing the `l` track and adding the `h` one.
#[test]
fn a_screen_viewer_with_bandwidth_to_spare_is_switched_up_to_the_high_layer() {
    let _ = viewer_switches_up(1, 0);
}

/// As above with the viewer on another worker than the sharer: the layer rates measured at
/// the sharer's worker reach the viewer's, and the `h` track is fanned out across.
#[test]
fn a_screen_viewer_on_another_worker_is_switched_up_to_the_high_layer() {
    let _ = viewer_switches_up(2, 1);
}

/// rtcd (spec §5.7): a viewer on `h` whose estimate falls below 0.9 × the `h` rate goes
/// back to `l` — at once, even within the backoff, since the estimate is falling.
#[test]
fn a_screen_viewer_whose_link_turns_lossy_is_switched_back_down_to_the_low_layer() {
    let (mut server, mut a, mut b, up) = viewer_switches_up(1, 0);
    // The viewer's link now loses a quarter of its datagrams: the estimate collapses.
    b.loss_percent = 25;
    let down = run_until(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(40),
        &[false, false],
        |cs| cs[1].video_frames.keys().any(|m| !up.contains(m)),
    );
    assert!(down, "no switch back to `l`: {:?}", b.video_frames);
    b.loss_percent = 0;
    let back = run_until(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(10),
        &[false, false],
        |cs| received_layer(cs[1], Layer::Low, &up).is_some(),
    );
    assert!(back, "the new track is `l`: {:?}", b.video_bytes);
}

/// The simulcast layer an m-line carries, told by its frame size (the harness sends
/// 3 000-byte `l` frames and 15 000-byte `h` frames); `None` before 20 frames.
fn layer_of(c: &Client, mid: &Mid) -> Option<Layer> {
    let frames = *c.video_frames.get(mid)?;
    if frames < 20 {
        return None;
    }
    let per_frame = c.video_bytes[mid] / frames;
    match per_frame {
        0..5_000 => Some(Layer::Low),
        10_000.. => Some(Layer::High),
        _ => None,
    }
}

/// An m-line (not in `except`) that received at least 20 frames of `layer`.
fn received_layer(c: &Client, layer: Layer, except: &[Mid]) -> Option<Mid> {
    c.video_frames
        .keys()
        .find(|m| !except.contains(m) && layer_of(c, m) == Some(layer))
        .copied()
}

/// Extension (not upstream): a viewer on `h` whose publisher stops sending `h` (its uplink
/// cannot carry it) falls back to `l` at once instead of freezing.
#[test]
fn a_screen_viewer_falls_back_to_the_low_layer_when_the_high_one_stops_arriving() {
    let (mut server, mut a, mut b, up) = viewer_switches_up(2, 1);
    a.pause_high = true;
    let back = run_until(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(15),
        &[false, false],
        |cs| received_layer(cs[1], Layer::Low, &up).is_some(),
    );
    assert!(back, "no fallback to `l`: {:?}", b.video_bytes);
}

/// `rtc.bandwidth_estimation = false`: no estimate, so viewers stay on `l`.
#[test]
fn without_bandwidth_estimation_screen_viewers_stay_on_the_low_layer() {
    let mut server = Server::start_with(
        1,
        MediaSettings {
            bandwidth_estimation: false,
            ..MediaSettings::default()
        },
    );
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    let mut b = Client::new(&server, 0, "sessB", "call1", false);
    connect_all(&mut server, &mut [&mut a, &mut b], 5);
    a.start_screen_with(&mut server, true);
    // Past the 10 s the `l` rate monitor needs, where an estimating viewer switches.
    idle(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(14),
        &[false, false],
    );
    assert_eq!(b.video_frames.len(), 1, "{:?}", b.video_bytes);
    let only = *b.video_frames.keys().next().unwrap();
    assert_eq!(layer_of(&b, &only), Some(Layer::Low));
}

fn viewer_switches_up(workers: usize, viewer_worker: usize) -> (Server, Client, Client, [Mid; 2]) {
    let mut server = Server::start(workers);
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    let mut b = Client::new(&server, viewer_worker, "sessB", "call1", false);
    connect_all(&mut server, &mut [&mut a, &mut b], 5);
    a.start_screen_with(&mut server, true);
    assert!(
        run_until(
            &mut server,
            &mut [&mut a, &mut b],
            Duration::from_secs(10),
            &[false, false],
            |cs| { cs[1].video_frames.values().sum::<usize>() >= 20 }
        ),
        "viewer gets the screen: {:?}",
        b.video_frames
    );
    assert_eq!(b.video_frames.len(), 1, "one screen track first");
    let first = *b.video_frames.keys().next().unwrap();
    assert_eq!(
        layer_of(&b, &first),
        Some(Layer::Low),
        "the first layer is `l`"
    );
    let switched = run_until(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(40),
        &[false, false],
        |cs| received_layer(cs[1], Layer::High, &[]).is_some(),
    );
    assert!(switched, "no switch to `h`: {:?}", b.video_bytes);
    let second = received_layer(&b, Layer::High, &[]).unwrap();
    // The `l` m-line was removed by renegotiation: it no longer receives.
    let before = b.video_frames[&first];
    idle(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(1),
        &[false, false],
    );
    assert_eq!(b.video_frames[&first], before, "`l` no longer forwarded");
    // A good path stays on `h`: no flapping back and forth.
    idle(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(4),
        &[false, false],
    );
    assert_eq!(b.video_frames.len(), 2, "stays on `h`: {:?}", b.video_bytes);
    let screens = b
        .media_maps
        .last()
        .unwrap()
        .iter()
        .filter(|(_, e)| e.kind == "screen")
        .count();
    assert_eq!(screens, 1, "one screen track in the MediaMap");
    (server, a, b, [first, second])
}

#[test]
fn a_client_that_goes_silent_is_closed_as_failed_and_the_others_carry_on() {
    let mut server = Server::start_with(
        1,
        MediaSettings {
            failed_after: Duration::from_secs(2),
            ..MediaSettings::default()
        },
    );
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    let mut b = Client::new(&server, 0, "sessB", "call1", false);
    connect_all(&mut server, &mut [&mut a, &mut b], 10);
    // b vanishes without a word; a keeps talking and stays.
    let mut closed = None;
    for _ in 0..20 {
        idle(
            &mut server,
            &mut [&mut a],
            Duration::from_millis(500),
            &[true],
        );
        closed = server.parked.iter().find_map(|n| match n {
            Notice::Closed { key, reason } if *key == b.key => Some(*reason),
            _ => None,
        });
        if closed.is_some() {
            break;
        }
    }
    assert_eq!(closed, Some(CloseReason::ConnectionFailed));
    assert!(a.closed.is_none(), "the talking client is kept");
    assert_eq!(server.pool.counters()[0].sessions, 1);
}

/// Bursts that reach rtcd coalesced (UDP GRO: a publisher behind a GSO-capable sender or a
/// NIC that coalesces a frame's packets) are split again: the viewer decodes every frame
/// of both simulcast layers' sizes whole, and the coalesced datagrams are counted.
#[test]
fn a_publishers_bursts_arriving_coalesced_are_split_and_forwarded_whole() {
    let mut server = Server::start(1);
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    a.send_with_gso();
    let mut b = Client::new(&server, 0, "sessB", "call1", false);
    connect_all(&mut server, &mut [&mut a, &mut b], 5);
    share_simulcast_and_check_whole_frames(&mut server, &mut a, &mut b, 20);
    let coalesced: u64 = server
        .pool
        .counters()
        .iter()
        .map(|c| c.recv_coalesced)
        .sum();
    assert!(coalesced > 0, "the bursts arrived coalesced");
}
