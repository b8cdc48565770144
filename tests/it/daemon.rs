//! The real `rtcd` binary: starts with no config file, persists credentials across
//! restarts, refuses invalid config with a clear error, stops on SIGTERM, and drains live
//! sessions on SIGTERM (bounded by `rtc.drain_timeout_seconds`).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rtcd_proto::ws::ClientMessage;

use crate::common::*;

struct Daemon {
    child: Child,
    port: u16,
}

fn free_port() -> u16 {
    crate::media_harness::free_udp_port()
}

impl Daemon {
    fn spawn(dir: &std::path::Path, port: u16, extra_env: &[(&str, &str)]) -> Daemon {
        let rtc_port = free_port().to_string();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtcd"));
        cmd.current_dir(dir)
            .env_clear()
            .env("RTCD_API_HTTP_LISTENADDRESS", format!("127.0.0.1:{port}"))
            .env("RTCD_API_SECURITY_ALLOWSELFREGISTRATION", "true")
            .env("RTCD_STORE_DATASOURCE", dir.join("db"))
            .env("RTCD_LOGGER_ENABLEFILE", "false")
            .env("RTCD_RTC_ICEADDRESSUDP", "127.0.0.1")
            .env("RTCD_RTC_ICEPORTUDP", &rtc_port)
            .env("RTCD_RTC_ICEADDRESSTCP", "127.0.0.1")
            .env("RTCD_RTC_ICEPORTTCP", &rtc_port)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        Daemon {
            child: cmd.spawn().unwrap(),
            port,
        }
    }

    async fn wait_ready(&mut self) {
        for _ in 0..300 {
            if let Ok(r) = http()
                .get(format!("http://127.0.0.1:{}/version", self.port))
                .send()
                .await
            {
                if r.status() == 200 {
                    return;
                }
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("rtcd exited early: {st}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("rtcd did not become ready");
    }

    /// Sends a signal to our own child, by its PID.
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit, at most `within`.
    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let end = std::time::Instant::now() + within;
        while std::time::Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("rtcd still running {within:?} after the signal");
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        // Our own child, by its PID.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("rtcd did not stop on SIGTERM");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[tokio::test]
async fn daemon_starts_without_a_config_file_and_serves_version() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut d = Daemon::spawn(dir.path(), port, &[]);
    d.wait_ready().await;
    let v: serde_json::Value = http()
        .get(format!("http://127.0.0.1:{port}/version"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["buildVersion"].as_str().unwrap().starts_with('v'));
    assert!(d.terminate().success(), "SIGTERM exits 0");
}

#[tokio::test]
async fn credentials_survive_a_restart_and_a_plugin_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut d = Daemon::spawn(dir.path(), port, &[]);
    d.wait_ready().await;
    let r = http()
        .post(format!("{base}/register"))
        .json(&serde_json::json!({"clientID": "mm-install", "authKey": KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(d.terminate().success());

    let mut d = Daemon::spawn(dir.path(), port, &[]);
    d.wait_ready().await;
    let mut ws = ws_connect(
        &format!("ws://127.0.0.1:{port}/ws"),
        &basic("mm-install", KEY),
    )
    .await
    .expect("registered credentials still work after restart");
    let hello = next_binary(&mut ws).await;
    assert!(matches!(
        ClientMessage::decode(&hello).unwrap(),
        ClientMessage::Hello { client_id, .. } if client_id == "mm-install"
    ));
    // The plugin then joins; with no offer the real worker closes the session.
    let r = http()
        .post(format!("{base}/register"))
        .json(&serde_json::json!({"clientID": "mm-install", "authKey": KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "still registered after the restart");
    assert!(d.terminate().success());
}

#[tokio::test]
async fn invalid_config_fails_at_startup_naming_key_value_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut d = Daemon::spawn(dir.path(), port, &[("RTCD_RTC_ICEPORTUDP", "70000")]);
    let status = d.child.wait().unwrap();
    assert!(!status.success());
    let mut err = String::new();
    use std::io::Read;
    d.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("ice_port_udp") && err.contains("70000"),
        "{err}"
    );
}

#[tokio::test]
async fn config_file_given_with_go_style_flag_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let file = dir.path().join("rtcd.toml");
    std::fs::write(
        &file,
        format!(
            "[api]\nhttp.listen_address = \"127.0.0.1:{port}\"\n[logger]\nenable_file = false\n"
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_rtcd"))
        .args(["-config", file.to_str().unwrap()])
        .current_dir(dir.path())
        .env_clear()
        .env("RTCD_STORE_DATASOURCE", dir.path().join("db"))
        .env("RTCD_RTC_ICEADDRESSUDP", "127.0.0.1")
        .env("RTCD_RTC_ICEADDRESSTCP", "127.0.0.1")
        .env("RTCD_RTC_ICEPORTUDP", free_port().to_string())
        .env("RTCD_RTC_ICEPORTTCP", free_port().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut d = Daemon { child, port };
    d.wait_ready().await;
    assert!(d.terminate().success());
}

/// Registers `mm`, connects its plugin WebSocket, joins `sess1` in `call1` and waits until the
/// daemon lists the session.
async fn plugin_with_live_session(port: u16) -> Ws {
    use futures_util::SinkExt;
    let base = format!("http://127.0.0.1:{port}");
    let r = http()
        .post(format!("{base}/register"))
        .json(&serde_json::json!({"clientID": "mm", "authKey": KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut ws = ws_connect(&format!("ws://127.0.0.1:{port}/ws"), &basic("mm", KEY))
        .await
        .unwrap();
    let _hello = next_binary(&mut ws).await;
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        join_frame("call1", "user1", "sess1").into(),
    ))
    .await
    .unwrap();
    for _ in 0..100 {
        let r = http()
            .get(format!("{base}/calls/call1/sessions"))
            .header("Authorization", basic("mm", KEY))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            return ws;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("session never listed");
}

/// Polls `/system` until it reports the draining load (the signal has been handled).
async fn wait_draining(port: u16) {
    for _ in 0..200 {
        let v: serde_json::Value = http()
            .get(format!("http://127.0.0.1:{port}/system"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["cpu_load"].as_f64().unwrap() >= 1.0e5 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("/system never reported the draining load");
}

/// A real str0m offer (microphone + `calls-dc`), as RTCPeer sends first, in the plugin's JSON.
fn offer_json() -> Vec<u8> {
    use str0m::media::{Direction, MediaKind};
    let mut rtc = str0m::Rtc::builder().build(std::time::Instant::now());
    let addr = "127.0.0.1:9".parse().unwrap();
    rtc.add_local_candidate(str0m::Candidate::host(addr, "udp").unwrap());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    api.add_channel("calls-dc".to_string());
    let (offer, _pending) = api.apply().unwrap();
    serde_json::json!({"type": "offer", "sdp": offer.to_sdp_string()})
        .to_string()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_live_session_refuses_new_joins_then_closes_it_and_exits_0() {
    use futures_util::{SinkExt, StreamExt};
    use rtcd_proto::ws::{MessageType, RtcMessage};
    use tokio_tungstenite::tungstenite::Message;

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Short, but with room for a loaded machine to answer the offer before it ends.
    let mut d = Daemon::spawn(dir.path(), port, &[("RTCD_RTC_DRAINTIMEOUTSECONDS", "4")]);
    d.wait_ready().await;
    let mut ws = plugin_with_live_session(port).await;

    d.signal("TERM");
    let signalled = std::time::Instant::now();
    wait_draining(port).await;
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "the daemon waits for the live session"
    );

    // The live session is still served over the same plugin connection: its offer is answered.
    ws.send(Message::Binary(rtc_frame("sess1", 2, &offer_json()).into()))
        .await
        .unwrap();
    // A new session is refused with `close` while draining.
    ws.send(Message::Binary(
        join_frame("call2", "user2", "sess2").into(),
    ))
    .await
    .unwrap();

    let (mut answered, mut refused, mut closed) = (false, false, false);
    while !(refused && closed) {
        let b = next_binary(&mut ws).await;
        match ClientMessage::decode(&b).unwrap() {
            ClientMessage::Rtc(RtcMessage {
                session_id,
                msg_type: MessageType::Sdp,
                data,
                ..
            }) => {
                assert_eq!(session_id, "sess1");
                assert!(!closed, "answer after close");
                let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
                assert_eq!(v["type"], "answer");
                answered = true;
            }
            ClientMessage::Rtc(_) => {} // trickled candidates
            ClientMessage::Close { session_id } if session_id == "sess2" => refused = true,
            ClientMessage::Close { session_id } if session_id == "sess1" => closed = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        answered,
        "the live session's offer was answered during the drain"
    );

    // Then the daemon closes the plugin connection and exits 0, well within the bound.
    let end = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(end, ws.next()).await {
            Err(_) => panic!("plugin connection not closed"),
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => break,
            Ok(Some(Ok(_))) => {}
        }
    }
    let status = d.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "exit status after drain: {status}");
    assert!(
        signalled.elapsed() < Duration::from_secs(30),
        "drain bounded by its timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_cuts_the_drain_short() {
    second_signal_cuts_the_drain_short("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_twice_cuts_the_drain_short() {
    second_signal_cuts_the_drain_short("INT").await;
}

async fn second_signal_cuts_the_drain_short(sig: &str) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut d = Daemon::spawn(dir.path(), port, &[("RTCD_RTC_DRAINTIMEOUTSECONDS", "600")]);
    d.wait_ready().await;
    let _ws = plugin_with_live_session(port).await;
    d.signal(sig);
    wait_draining(port).await;
    assert!(d.child.try_wait().unwrap().is_none(), "draining");
    d.signal(sig);
    let status = d.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "an interrupted drain exits 1");
}

/// With two workers, each worker thread is pinned to its own core (when the machine has two),
/// and the UDP backend in use is exported.
#[tokio::test]
async fn worker_threads_are_pinned_to_distinct_cores_and_report_their_io_backend() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut d = Daemon::spawn(dir.path(), port, &[("RTCD_RTC_WORKERS", "2")]);
    d.wait_ready().await;
    let pid = d.child.id();
    let mut pinned = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = entry.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if !comm.starts_with("rtcd-worker-") {
            continue;
        }
        let status = std::fs::read_to_string(task.join("status")).unwrap_or_default();
        let cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        pinned.push((comm.trim().to_string(), cpus));
    }
    pinned.sort();
    assert_eq!(pinned.len(), 2, "two worker threads: {pinned:?}");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores >= 2 {
        assert_ne!(pinned[0].1, pinned[1].1, "distinct cores: {pinned:?}");
        for (_, cpus) in &pinned {
            assert!(
                cpus.parse::<usize>().is_ok(),
                "pinned to exactly one core: {pinned:?}"
            );
        }
    }
    let metrics = http()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("rtcd_rtc_io_backend{") && metrics.contains("worker=\"1\""),
        "{metrics}"
    );
    assert!(d.terminate().success());
}
