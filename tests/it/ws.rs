//! The plugin WebSocket: auth, hello, framing, routing through the bridge, reconnects,
//! liveness and bad input (spec §3).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rtcd::bridge::{CloseReason, Command, MessageType, Notice, SubmitError};
use rtcd::control::ws::WsSettings;
use rtcd::control::ControlOptions;
use rtcd_proto::ws::{ClientMessage, RtcMessage};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

#[tokio::test]
async fn ws_auth_failure_answers_200_with_empty_body_and_no_upgrade() {
    let s = TestServer::default().await;
    s.register("c1", KEY).await;
    for auth in [
        basic("c1", "wrong"),
        basic("ghost", KEY),
        "Bearer nope".to_string(),
    ] {
        let err = ws_connect(&s.ws_url, &auth).await.expect_err("must fail");
        match err {
            tokio_tungstenite::tungstenite::Error::Http(resp) => {
                assert_eq!(resp.status(), 200);
                assert!(resp.body().as_ref().is_none_or(|b| b.is_empty()));
            }
            other => panic!("unexpected error {other:?}"),
        }
    }
    // Without Authorization at all, same answer.
    let r = http().get(s.url("/ws")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "");
    assert!(s.metrics_text().contains("rtcd_auth_errors_total"));
}

#[tokio::test]
async fn authenticated_request_that_is_not_an_upgrade_is_refused() {
    let s = TestServer::default().await;
    s.register("c1", KEY).await;
    let r = http()
        .get(s.url("/ws"))
        .header("Authorization", basic("c1", KEY))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
}

#[tokio::test]
async fn hello_is_the_first_frame_with_a_fresh_connection_id() {
    let s = TestServer::default().await;
    s.register("c1", KEY).await;
    let a = Plugin::connect(&s, "c1", KEY).await;
    let b = Plugin::connect(&s, "c1", KEY).await;
    assert_ne!(a.conn_id, b.conn_id);
    assert!(rtcd_proto::id::is_valid_id(&a.conn_id));
}

#[tokio::test]
async fn hello_bytes_are_a_str_type_followed_by_a_str_valued_map() {
    let s = TestServer::default().await;
    s.register("c1", KEY).await;
    let mut ws = ws_connect(&s.ws_url, &basic("c1", KEY)).await.unwrap();
    let f = next_binary(&mut ws).await;
    // a5 "hello" 82 a8 "clientID" a2 "c1" a6 "connID" da? <26 chars>
    let mut want = vec![0xa5];
    want.extend_from_slice(b"hello");
    want.push(0x82);
    want.push(0xa8);
    want.extend_from_slice(b"clientID");
    want.push(0xa2);
    want.extend_from_slice(b"c1");
    want.push(0xa6);
    want.extend_from_slice(b"connID");
    want.push(0xa0 | 26);
    assert_eq!(&f[..want.len()], &want[..]);
    assert_eq!(f.len(), want.len() + 26);
}

#[tokio::test]
async fn join_places_the_session_on_a_worker_and_rtc_messages_follow_it() {
    let s = TestServer::default().await;
    s.register("c1", KEY).await;
    let mut p = Plugin::connect(&s, "c1", KEY).await;
    p.send_raw(join_frame("call1", "user1", "sess1")).await;
    p.send_raw(rtc_frame("sess1", 2, br#"{"type":"offer","sdp":"v=0"}"#))
        .await;
    p.send_raw(rtc_frame("sess1", 5, br#"{"screenStreamID":"abc"}"#))
        .await;
    let cmds = s.wait_commands(3).await;
    let (w, Command::Join(info)) = &cmds[0] else {
        panic!("{cmds:?}")
    };
    assert_eq!(
        &*info.key.group_id, "c1",
        "group is the connection's client ID"
    );
    assert_eq!(&*info.key.session_id, "sess1");
    assert_eq!(&*info.call_id, "call1");
    assert_eq!(&*info.user_id, "user1");
    assert!(info.av1_support && !info.dc_signaling);
    for (w2, cmd) in &cmds[1..] {
        assert_eq!(w2, w, "all of a session's commands go to its worker");
        assert!(matches!(cmd, Command::Signal { .. }));
    }
    let Command::Signal { msg_type, data, .. } = &cmds[1].1 else {
        unreachable!()
    };
    assert_eq!(*msg_type, MessageType::Sdp);
    assert_eq!(data, br#"{"type":"offer","sdp":"v=0"}"#);
    let Command::Signal { msg_type, .. } = &cmds[2].1 else {
        unreachable!()
    };
    assert_eq!(*msg_type, MessageType::ScreenOn);
}

#[tokio::test]
async fn sessions_of_one_call_are_placed_on_one_worker() {
    let s = TestServer::default().await;
    s.register("c1", KEY).await;
    let mut p = Plugin::connect(&s, "c1", KEY).await;
    p.send_raw(join_frame("callA", "u1", "s1")).await;
    p.send_raw(join_frame("callB", "u2", "s2")).await;
    p.send_raw(join_frame("callA", "u3", "s3")).await;
    s.wait_commands(3).await;
    let w1 = s.hub().worker_of(&key("c1", "s1")).unwrap();
    let w2 = s.hub().worker_of(&key("c1", "s2")).unwrap();
    let w3 = s.hub().worker_of(&key("c1", "s3")).unwrap();
    assert_eq!(w1, w3, "same call, same worker");
    assert_ne!(w1, w2, "a new call goes to the least-loaded worker");
}

#[tokio::test]
async fn worker_notices_reach_the_plugin_with_all_four_ids() {
    let s = TestServer::default().await;
    s.register("c1", KEY).await;
    let mut p = Plugin::connect(&s, "c1", KEY).await;
    p.send_raw(join_frame("call1", "user1", "sess1")).await;
    s.wait_commands(1).await;
    let answer = br#"{"type":"answer","sdp":"v=0"}"#.to_vec();
    s.data.notify(Notice::Signal {
        key: key("c1", "sess1"),
        msg_type: MessageType::Sdp,
        data: answer.clone(),
    });
    let want = ClientMessage::Rtc(RtcMessage {
        group_id: "c1".into(),
        user_id: "user1".into(),
        session_id: "sess1".into(),
        call_id: "call1".into(),
        msg_type: MessageType::Sdp,
        data: answer,
    });
    assert_eq!(p.recv().await, want);

    s.data.notify(Notice::Vad {
        key: key("c1", "sess1"),
        on: true,
    });
    match p.recv().await {
        ClientMessage::Vad(m) => {
            assert_eq!(m.msg_type, MessageType::VoiceOn);
            assert!(m.data.is_empty());
            assert_eq!(m.call_id, "call1");
        }
        other => panic!("{other:?}"),
    }
    let text = s.metrics_text();
    assert!(
        text.contains("rtcd_ws_messages_total{clientID=\"c1\",direction=\"out\",type=\"rtc\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("rtcd_ws_messages_total{clientID=\"c1\",direction=\"out\",type=\"vad\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn leave_closes_the_session_and_the_plugin_gets_close() {
    let s = TestServer::default().await;
    s.register("c1", KEY).await;
    let mut p = Plugin::connect(&s, "c1", KEY).await;
    p.send_raw(join_frame("call1", "user1", "sess1")).await;
    p.send_raw(session_frame("leave", "sess1")).await;
    assert_eq!(
        p.recv().await,
        ClientMessage::Close {
            session_id: "sess1".into()
        }
    );
    let cmds = s.wait_commands(2).await;
    assert!(matches!(&cmds[1].1, Command::Leave { key } if &*key.session_id == "sess1"));
    assert_eq!(s.hub().session_count(), 0);
    assert!(s
        .metrics_text()
        .contains("rtcd_rtc_sessions_total{groupID=\"c1\"} 0"));
    // Leave for an unknown session is ignored silently, as upstream.
    p.send_raw(session_frame("leave", "ghost")).await;
    p.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn worker_initiated_close_tears_down_and_notifies() {
    let s = TestServer::default().await;
    s.register("c1", KEY).await;
    let mut p = Plugin::connect(&s, "c1", KEY).await;
    p.send_raw(join_frame("call1", "user1", "sess1")).await;
    s.wait_commands(1).await;
    s.data.notify(Notice::Closed {
        key: key("c1", "sess1"),
        reason: CloseReason::SignalingTimeout,
    });
    assert_eq!(
        p.recv().await,
        ClientMessage::Close {
            session_id: "sess1".into()
        }
    );
    let r = http()
        .get(s.url("/calls/call1/sessions"))
        .header("Authorization", basic("c1", KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "a closed session is no longer listed");
}

#[tokio::test]
async fn reconnect_moves_the_session_to_the_new_connection() {
    let s = TestServer::default().await;
    s.register("c1", KEY).await;
    let mut a = Plugin::connect(&s, "c1", KEY).await;
    let mut b = Plugin::connect(&s, "c1", KEY).await;
    a.send_raw(join_frame("call1", "user1", "sess1")).await;
    s.wait_commands(1).await;
    // The end user reconnected to the Mattermost node behind connection b.
    b.send_raw(session_frame("reconnect", "sess1")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.data.notify(Notice::Signal {
        key: key("c1", "sess1"),
        msg_type: MessageType::Ice,
        data: b"{}".to_vec(),
    });
    assert!(matches!(b.recv().await, ClientMessage::Rtc(m) if m.msg_type == MessageType::Ice));
    a.expect_silence(Duration::from_millis(200)).await;
    // Deliberate fix: `close` follows the latest mapping too (upstream: join-time connection).
    b.send_raw(session_frame("leave", "sess1")).await;
    assert_eq!(
        b.recv().await,
        ClientMessage::Close {
            session_id: "sess1".into()
        }
    );
}

#[tokio::test]
async fn messages_fall_back_to_a_live_connection_of_the_same_client() {
    let s = TestServer::default().await;
    s.register("c1", KEY).await;
    s.register("c2", KEY).await;
    let mut a = Plugin::connect(&s, "c1", KEY).await;
    let mut other_client = Plugin::connect(&s, "c2", KEY).await;
    a.send_raw(join_frame("call1", "user1", "sess1")).await;
    s.wait_commands(1).await;
    // The plugin's WebSocket drops and comes back with a new connection ID.
    a.ws.close(None).await.unwrap();
    drop(a);
    for _ in 0..100 {
        if s.hub().conn_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut a2 = Plugin::connect(&s, "c1", KEY).await;
    s.data.notify(Notice::Vad {
        key: key("c1", "sess1"),
        on: false,
    });
    assert!(
        matches!(a2.recv().await, ClientMessage::Vad(m) if m.msg_type == MessageType::VoiceOff)
    );
    other_client
        .expect_silence(Duration::from_millis(200))
        .await;
}

#[tokio::test]
async fn a_client_cannot_reach_another_clients_sessions() {
    let s = TestServer::default().await;
    s.register("c1", KEY).await;
    s.register("c2", KEY).await;
    let mut a = Plugin::connect(&s, "c1", KEY).await;
    let mut b = Plugin::connect(&s, "c2", KEY).await;
    a.send_raw(join_frame("call1", "user1", "sess1")).await;
    s.wait_commands(1).await;
    b.send_raw(rtc_frame("sess1", 3, b"")).await;
    b.send_raw(session_frame("leave", "sess1")).await;
    b.expect_silence(Duration::from_millis(200)).await;
    assert_eq!(s.data.commands().len(), 1, "nothing reached the worker");
    assert_eq!(s.hub().session_count(), 1);
    assert!(s
        .metrics_text()
        .contains("rtcd_ws_errors_total{clientID=\"c2\",type=\"unknown_session\"} 1"));
    // The same session ID in another group is a different session.
    b.send_raw(join_frame("call1", "user9", "sess1")).await;
    s.wait_commands(2).await;
    assert_eq!(s.hub().session_count(), 2);
}

#[tokio::test]
async fn invalid_and_duplicate_joins_get_no_reply_and_are_counted() {
    let s = TestServer::default().await;
    s.register("c1", KEY).await;
    let mut p = Plugin::connect(&s, "c1", KEY).await;
    p.send_raw(join_frame("", "user1", "sess1")).await;
    p.send_raw(join_frame("call1", "user1", "sess1")).await;
    p.send_raw(join_frame("call1", "user1", "sess1")).await;
    p.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(s.data.commands().len(), 1);
    let text = s.metrics_text();
    assert!(
        text.contains("rtcd_ws_errors_total{clientID=\"c1\",type=\"invalid_join\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("rtcd_ws_errors_total{clientID=\"c1\",type=\"duplicate_session\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn admin_connection_cannot_join() {
    let s = TestServer::start(Setup {
        admin: Some("admin-secret"),
        ..Setup::default()
    })
    .await;
    let mut ws = ws_connect(&s.ws_url, &basic("x", "admin-secret"))
        .await
        .unwrap();
    let hello = next_binary(&mut ws).await;
    assert!(
        matches!(ClientMessage::decode(&hello).unwrap(), ClientMessage::Hello { client_id, .. } if client_id.is_empty())
    );
    ws.send(Message::Binary(join_frame("c", "u", "s").into()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(s.data.commands().is_empty());
}

#[tokio::test]
async fn malformed_frames_are_counted_and_the_connection_survives() {
    let s = TestServer::default().await;
    s.register("c1", KEY).await;
    let mut p = Plugin::connect(&s, "c1", KEY).await;
    let mut bystander = Plugin::connect(&s, "c1", KEY).await;
    let mut unknown = Vec::new();
    rmp::encode::write_str(&mut unknown, "bogus").unwrap();
    unknown.push(0xc0);
    for bad in [
        vec![0xc1],                               // never-used msgpack byte
        vec![0xa5, b'j', b'o'],                   // truncated str
        vec![0x01, 0x02],                         // type is not a str
        unknown,                                  // unknown type
        vec![0xa4, b'j', b'o', b'i', b'n', 0x01], // join data not a map
        ClientMessage::Hello {
            client_id: "c1".into(),
            conn_id: "x".into(),
        }
        .to_bytes(), // rtcd never accepts hello from the plugin
    ] {
        p.send_raw(bad).await;
    }
    p.ws.send(Message::Text("ping".into())).await.unwrap();
    // Still alive and served.
    p.send_raw(join_frame("call1", "user1", "sess1")).await;
    s.wait_commands(1).await;
    let text = s.metrics_text();
    for kind in ["decode", "unknown_type", "unexpected_type", "text_frame"] {
        assert!(
            text.contains(&format!(
                "rtcd_ws_errors_total{{clientID=\"c1\",type=\"{kind}\"}}"
            )),
            "{kind}: {text}"
        );
    }
    bystander.expect_silence(Duration::from_millis(100)).await;
    assert_eq!(s.hub().conn_count(), 2);
}

#[tokio::test]
async fn oversized_frame_drops_only_that_connection() {
    let s = TestServer::default().await;
    s.register("c1", KEY).await;
    let mut big = Plugin::connect(&s, "c1", KEY).await;
    let mut other = Plugin::connect(&s, "c1", KEY).await;
    let _ = big
        .ws
        .send(Message::Binary(vec![0u8; (1 << 20) + 1].into()))
        .await;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match big.ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                _ => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "oversized frame must end the connection");
    // A frame just under the limit is fine on the other connection.
    other.send_raw(join_frame("call1", "user1", "sess1")).await;
    s.wait_commands(1).await;
    assert!(s.metrics_text().contains("type=\"oversized\""));
}

fn fast_liveness() -> Setup {
    Setup {
        opts: ControlOptions {
            ws: WsSettings {
                ping_interval: Duration::from_millis(100),
                pong_wait: Duration::from_millis(300),
                ..WsSettings::default()
            },
            ..Setup::default().opts
        },
        ..Setup::default()
    }
}

#[tokio::test]
async fn a_plugin_that_never_answers_pings_is_dropped() {
    let s = TestServer::start(fast_liveness()).await;
    s.register("c1", KEY).await;
    // Connect, read hello, then never read again: tungstenite only answers pings while reading.
    let _silent = Plugin::connect(&s, "c1", KEY).await;
    let mut dropped = false;
    for _ in 0..100 {
        if s.hub().conn_count() == 0 {
            dropped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(dropped, "connection without pongs must be dropped");
}

#[tokio::test]
async fn a_plugin_that_answers_pings_stays_connected() {
    let s = TestServer::start(fast_liveness()).await;
    s.register("c1", KEY).await;
    let mut p = Plugin::connect(&s, "c1", KEY).await;
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(1200);
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(until, p.ws.next()).await {
        if matches!(m, Message::Ping(_)) {
            pings += 1;
        }
    }
    assert!(pings >= 3, "pings every interval, got {pings}");
    assert_eq!(s.hub().conn_count(), 1);
}

#[tokio::test]
async fn join_refused_by_a_full_worker_queue_is_closed_at_once() {
    let s = TestServer::default().await;
    s.register("c1", KEY).await;
    let mut p = Plugin::connect(&s, "c1", KEY).await;
    *s.data.refuse.lock().unwrap() = Some(SubmitError::Full);
    p.send_raw(join_frame("call1", "user1", "sess1")).await;
    assert_eq!(
        p.recv().await,
        ClientMessage::Close {
            session_id: "sess1".into()
        }
    );
    assert_eq!(s.hub().session_count(), 0);
    assert!(s
        .metrics_text()
        .contains("rtcd_bridge_drops_total{direction=\"command\",reason=\"join\"} 1"));
}

#[tokio::test]
async fn sessions_survive_their_plugin_connection_dropping() {
    let s = TestServer::default().await;
    s.register("c1", KEY).await;
    let mut a = Plugin::connect(&s, "c1", KEY).await;
    a.send_raw(join_frame("call1", "user1", "sess1")).await;
    s.wait_commands(1).await;
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        s.hub().session_count(),
        1,
        "upstream keeps RTC sessions across WS drops"
    );
    assert!(!s
        .data
        .commands()
        .iter()
        .any(|(_, c)| matches!(c, Command::Leave { .. })));
}
