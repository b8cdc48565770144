//! The real `rtcd` binary: starts with no config file, persists credentials across
//! restarts, refuses invalid config with a clear error, and stops on SIGTERM.

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
