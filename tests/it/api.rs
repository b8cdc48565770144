//! HTTP routes: methods, status codes and JSON shapes as upstream (spec §1).

use std::time::Duration;

use crate::common::*;
use serde_json::Value;

async fn post(server: &TestServer, path: &str, auth: Option<&str>, body: &str) -> (u16, String) {
    let mut req = http().post(server.url(path)).body(body.to_string());
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

#[tokio::test]
async fn version_reports_semver_build_info() {
    let s = TestServer::default().await;
    let r = http().get(s.url("/version")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body = r.text().await.unwrap();
    assert!(body.ends_with('\n'));
    let v = json(&body);
    for k in [
        "buildDate",
        "buildVersion",
        "buildHash",
        "goVersion",
        "goOS",
        "goArch",
    ] {
        assert!(v[k].is_string(), "{k} missing in {body}");
    }
    let ver = v["buildVersion"].as_str().unwrap();
    assert!(ver.starts_with('v'), "{ver}");
    let major: u64 = ver[1..].split('.').next().unwrap().parse().unwrap();
    assert!(major >= 1);
}

#[tokio::test]
async fn routes_answer_other_methods_with_go_plain_404() {
    let s = TestServer::default().await;
    for (method, path) in [
        ("POST", "/version"),
        ("POST", "/system"),
        ("GET", "/register"),
        ("GET", "/unregister"),
        ("GET", "/login"),
        ("POST", "/calls/c/sessions"),
        ("DELETE", "/calls/c/sessions/s"),
        ("GET", "/no/such/route"),
    ] {
        let r = http()
            .request(method.parse().unwrap(), s.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{method} {path}");
        assert_eq!(
            r.text().await.unwrap(),
            "404 page not found\n",
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn system_reports_finite_nonzero_cpu_load_after_two_samples() {
    let s = TestServer::default().await;
    let mut load = 0.0;
    for _ in 0..50 {
        let v: Value = http()
            .get(s.url("/system"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        load = v["cpu_load"].as_f64().expect("cpu_load is a number");
        if load > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(load > 0.0 && load.is_finite(), "cpu_load = {load}");
}

#[tokio::test]
async fn register_returns_201_then_refuses_duplicates_and_bad_bodies() {
    let s = TestServer::default().await;
    let body = format!(r#"{{"clientID":"c1","authKey":"{KEY}"}}"#);
    let (code, text) = post(&s, "/register", None, &body).await;
    assert_eq!(code, 201);
    assert_eq!(text, "{\"clientID\":\"c1\",\"code\":\"201\"}\n");

    let (code, text) = post(&s, "/register", None, &body).await;
    assert_eq!(code, 400);
    assert_eq!(
        json(&text)["error"],
        "registration failed: already registered"
    );
    assert_eq!(json(&text)["code"], "400");

    let (code, text) = post(
        &s,
        "/register",
        None,
        r#"{"clientID":"c2","authKey":"short"}"#,
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(
        json(&text)["error"],
        "registration failed: key not long enough"
    );

    let (code, text) = post(&s, "/register", None, &format!(r#"{{"authKey":"{KEY}"}}"#)).await;
    assert_eq!(code, 400);
    assert_eq!(
        json(&text)["error"],
        "registration failed: error: empty key"
    );

    let (code, text) = post(&s, "/register", None, "").await;
    assert_eq!(code, 400);
    assert_eq!(json(&text)["error"], "EOF");

    let (code, _) = post(&s, "/register", None, r#"{"clientID":1,"authKey":"x"}"#).await;
    assert_eq!(code, 400);
    let (code, _) = post(&s, "/register", None, "{not json").await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn register_without_self_registration_needs_credentials() {
    let s = TestServer::start(Setup {
        self_registration: false,
        admin: Some("admin-secret"),
        ..Setup::default()
    })
    .await;
    let body = format!(r#"{{"clientID":"c1","authKey":"{KEY}"}}"#);
    let (code, text) = post(&s, "/register", None, &body).await;
    assert_eq!(code, 401);
    assert_eq!(
        json(&text)["error"],
        "authentication failed: invalid auth header"
    );

    let (code, _) = post(&s, "/register", Some(&basic("c1", KEY)), &body).await;
    assert_eq!(
        code, 401,
        "unregistered credentials cannot register themselves"
    );

    let (code, _) = post(
        &s,
        "/register",
        Some(&basic("admin", "admin-secret")),
        &body,
    )
    .await;
    assert_eq!(code, 201);

    // rtcd: any registered client may register other IDs.
    let other = format!(r#"{{"clientID":"c2","authKey":"{KEY}"}}"#);
    let (code, _) = post(&s, "/register", Some(&basic("c1", KEY)), &other).await;
    assert_eq!(code, 201);
}

#[tokio::test]
async fn unregister_is_forbidden_when_admin_and_self_registration_are_off() {
    let s = TestServer::start(Setup {
        self_registration: false,
        ..Setup::default()
    })
    .await;
    let (code, text) = post(&s, "/unregister", None, r#"{"clientID":"c1"}"#).await;
    assert_eq!(code, 403);
    assert_eq!(json(&text)["error"], "unregister not enabled");
}

#[tokio::test]
async fn unregister_status_matrix_matches_upstream() {
    let s = TestServer::start(Setup {
        admin: Some("admin-secret"),
        ..Setup::default()
    })
    .await;
    s.register("c1", KEY).await;
    s.register("c2", KEY).await;
    let admin = basic("x", "admin-secret");

    let (code, _) = post(
        &s,
        "/unregister",
        Some(&basic("nobody", KEY)),
        r#"{"clientID":"nobody"}"#,
    )
    .await;
    assert_eq!(code, 401, "unregistered client");
    let (code, _) = post(
        &s,
        "/unregister",
        Some(&basic("c1", "wrong-key")),
        r#"{"clientID":"c1"}"#,
    )
    .await;
    assert_eq!(code, 401, "wrong key");
    let (code, text) = post(
        &s,
        "/unregister",
        Some(&basic("c1", KEY)),
        r#"{"clientID":"c2"}"#,
    )
    .await;
    assert_eq!(
        (code, json(&text)["error"].as_str().unwrap()),
        (403, "client id not valid")
    );
    let (code, text) = post(&s, "/unregister", Some(&basic("c1", KEY)), r#"{}"#).await;
    assert_eq!(
        (code, json(&text)["error"].as_str().unwrap()),
        (400, "client id should not be empty")
    );
    let (code, text) = post(&s, "/unregister", Some(&admin), r#"{"clientID":"ghost"}"#).await;
    assert_eq!(
        (code, json(&text)["error"].as_str().unwrap()),
        (400, "unregister failed: error: not found")
    );
    let (code, text) = post(
        &s,
        "/unregister",
        Some(&basic("c1", KEY)),
        r#"{"clientID":"c1"}"#,
    )
    .await;
    assert_eq!((code, text.as_str()), (200, "{\"code\":\"200\"}\n"));
    let (code, _) = post(&s, "/unregister", Some(&admin), r#"{"clientID":"c2"}"#).await;
    assert_eq!(code, 200);
    // Gone for good: the credentials no longer authenticate.
    let (code, _) = post(
        &s,
        "/unregister",
        Some(&basic("c1", KEY)),
        r#"{"clientID":"c1"}"#,
    )
    .await;
    assert_eq!(code, 401);
}

#[tokio::test]
async fn login_issues_a_bearer_token_usable_on_other_routes() {
    let s = TestServer::default().await;
    s.register("c1", KEY).await;
    let (code, text) = post(&s, "/login", None, r#"{"clientID":"c1","authKey":"bad"}"#).await;
    assert_eq!(code, 400, "bad credentials are a 400 upstream");
    assert!(json(&text)["error"]
        .as_str()
        .unwrap()
        .starts_with("login failed: authentication failed"));
    let (code, _) = post(&s, "/login", None, "[]").await;
    assert_eq!(code, 400);

    let (code, text) = post(
        &s,
        "/login",
        None,
        &format!(r#"{{"clientID":"c1","authKey":"{KEY}"}}"#),
    )
    .await;
    assert_eq!(code, 200);
    let v = json(&text);
    assert_eq!(v["code"], "200");
    let token = v["bearerToken"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 32);

    // The token opens the WebSocket and the sessions route...
    let ws = ws_connect(&s.ws_url, &format!("Bearer {token}")).await;
    assert!(ws.is_ok());
    let r = http()
        .get(s.url("/calls/x/sessions"))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // ...and unregister, as upstream's test does.
    let (code, _) = post(
        &s,
        "/unregister",
        Some(&format!("Bearer {token}")),
        r#"{"clientID":"c1"}"#,
    )
    .await;
    assert_eq!(code, 200);
    let (code, text) = post(
        &s,
        "/unregister",
        Some(&format!("Bearer {token}")),
        r#"{"clientID":"c1"}"#,
    )
    .await;
    assert_eq!(code, 401);
    assert_eq!(
        json(&text)["error"],
        "authentication failed: token is invalid"
    );
}

#[tokio::test]
async fn call_sessions_routes_need_a_client_identity() {
    let s = TestServer::start(Setup {
        admin: Some("admin-secret"),
        ..Setup::default()
    })
    .await;
    let r = http()
        .get(s.url("/calls/call1/sessions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.text().await.unwrap(), "unauthorized\n");
    let r = http()
        .get(s.url("/calls/call1/sessions"))
        .header("Authorization", basic("admin", "admin-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the admin has no group");
}

#[tokio::test]
async fn call_sessions_list_joined_sessions_with_exact_session_config() {
    let s = TestServer::default().await;
    s.register("c1", KEY).await;
    s.register("c2", KEY).await;
    let auth = basic("c1", KEY);
    let get = |path: &str, auth: &str| {
        http()
            .get(s.url(path))
            .header("Authorization", auth.to_string())
            .send()
    };
    let r = get("/calls/call1/sessions", &auth).await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.text().await.unwrap(),
        "failed to get session configs: group not found\n"
    );

    let mut p = Plugin::connect(&s, "c1", KEY).await;
    p.send_raw(join_frame("call1", "user1", "sess1")).await;
    s.wait_commands(1).await;

    let r = get("/calls/call1/sessions", &auth).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        serde_json::json!([{"GroupID":"c1","CallID":"call1","UserID":"user1","SessionID":"sess1",
            "Props":{"channelID":"chan","av1Support":true,"dcSignaling":false}}])
    );
    let r = get("/calls/call1/sessions/sess1", &auth).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["SessionID"], "sess1");
    assert_eq!(v["Props"]["channelID"], "chan");

    let r = get("/calls/other/sessions", &auth).await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.text().await.unwrap(),
        "failed to get session configs: call not found\n"
    );
    let r = get("/calls/call1/sessions/nope", &auth).await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.text().await.unwrap(),
        "failed to get session config: session not found\n"
    );
    // Another installation does not see c1's call.
    let r = get("/calls/call1/sessions", &basic("c2", KEY))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn metrics_are_served_with_upstream_names() {
    let s = TestServer::default().await;
    s.register("c1", KEY).await;
    let mut p = Plugin::connect(&s, "c1", KEY).await;
    p.send_raw(join_frame("call1", "user1", "sess1")).await;
    s.wait_commands(1).await;
    let r = http().get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    for needle in [
        "rtcd_ws_connections_total{clientID=\"c1\"} 1",
        "rtcd_ws_messages_total{clientID=\"c1\",direction=\"in\",type=\"join\"} 1",
        "rtcd_rtc_sessions_total{groupID=\"c1\"} 1",
        "rtcd_process_cpu_seconds_total",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
}

#[tokio::test]
async fn tls_listener_serves_the_api_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let mut cfg = test_config(dir.path(), &Setup::default());
    cfg.api.http.tls.enable = true;
    cfg.api.http.tls.cert_file = cert_file.to_string_lossy().into_owned();
    cfg.api.http.tls.cert_key = key_file.to_string_lossy().into_owned();
    let (tx, rx) = rtcd::bridge::notice_queue();
    let data = std::sync::Arc::new(FakeDataPlane {
        workers: 1,
        commands: Default::default(),
        notices: tx,
        refuse: Default::default(),
    });
    let control = rtcd::control::ControlPlane::start(&cfg, data, rx, Default::default())
        .await
        .unwrap();
    let port = control.local_addr.port();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = client
        .get(format!("https://localhost:{port}/version"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Plain HTTP on the TLS port does not get an API answer.
    let plain = http()
        .get(format!("http://127.0.0.1:{port}/version"))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
    control.shutdown().await;
}

#[tokio::test]
async fn tls_with_unloadable_certificate_fails_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path(), &Setup::default());
    cfg.api.http.tls.enable = true;
    cfg.api.http.tls.cert_file = "/nonexistent/cert.pem".into();
    cfg.api.http.tls.cert_key = "/nonexistent/key.pem".into();
    let (tx, rx) = rtcd::bridge::notice_queue();
    let data = std::sync::Arc::new(FakeDataPlane {
        workers: 1,
        commands: Default::default(),
        notices: tx,
        refuse: Default::default(),
    });
    let err = rtcd::control::ControlPlane::start(&cfg, data, rx, Default::default())
        .await
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
}
