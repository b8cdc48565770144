//! The HTTP API (spec §1): exact paths, methods, status codes and JSON shapes of upstream.
//! Handlers that accept one method answer every other method with Go's plain 404.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use serde::Serialize;
use tokio::sync::watch;

use super::auth::{AuthError, AuthService, Principal, RegisterError};
use super::hub::Hub;
use super::metrics::Metrics;
use super::system::CpuLoad;
use super::ws::{self, WsSettings};
use crate::version::VersionInfo;

pub struct AppState {
    pub hub: Arc<Hub>,
    pub auth: Arc<AuthService>,
    pub metrics: Arc<Metrics>,
    pub cpu_load: CpuLoad,
    pub allow_self_registration: bool,
    pub enable_admin: bool,
    pub ws: WsSettings,
    pub shutdown: watch::Receiver<bool>,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/version", any(version))
        .route("/system", any(system))
        .route("/register", any(register))
        .route("/unregister", any(unregister))
        .route("/login", any(login))
        .route("/calls/{call_id}/sessions", any(call_sessions))
        .route("/calls/{call_id}/sessions/{session_id}", any(call_session))
        .route("/metrics", any(metrics))
        .route("/ws", any(ws_upgrade))
        .fallback(not_found)
        .with_state(state)
}

/// Go's `http.NotFound`.
async fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "404 page not found")
}

/// Go's `http.Error`: text/plain, message plus newline.
fn plain(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        format!("{msg}\n"),
    )
        .into_response()
}

/// JSON body with a trailing newline, as Go's `json.Encoder` writes it.
fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(mut v) => {
            v.push(b'\n');
            (status, [(header::CONTENT_TYPE, "application/json")], v).into_response()
        }
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `{"code": "<status>", "error": "<msg>"}` (keys sorted, as Go encodes a map).
fn json_error(status: StatusCode, msg: &str) -> Response {
    let mut m = std::collections::BTreeMap::new();
    m.insert("code", status.as_u16().to_string());
    m.insert("error", msg.to_string());
    json(status, &m)
}

fn auth_header(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

fn string_map(body: &Bytes) -> Result<HashMap<String, String>, String> {
    rtcd_proto::api::parse_string_map(body).map_err(|e| e.to_string())
}

async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, AuthError> {
    let res = state.auth.authenticate(auth_header(headers)).await;
    if let Err(e) = &res {
        state
            .metrics
            .auth_errors
            .with_label_values(&[e.kind()])
            .inc();
        tracing::debug!(error = %e, "authentication failed");
    }
    res
}

async fn version(method: Method) -> Response {
    if method != Method::GET {
        return not_found().await;
    }
    json(StatusCode::OK, &VersionInfo::current())
}

async fn system(State(st): State<Arc<AppState>>, method: Method) -> Response {
    if method != Method::GET {
        return not_found().await;
    }
    #[derive(Serialize)]
    struct SystemInfo {
        cpu_load: f64,
    }
    json(
        StatusCode::OK,
        &SystemInfo {
            cpu_load: st.cpu_load.get(),
        },
    )
}

async fn register(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        return not_found().await;
    }
    if !st.allow_self_registration {
        if let Err(e) = authenticate(&st, &headers).await {
            return json_error(StatusCode::UNAUTHORIZED, &e.to_string());
        }
    }
    let map = match string_map(&body) {
        Ok(m) => m,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e),
    };
    let client_id = map.get("clientID").map(String::as_str).unwrap_or("");
    let key = map.get("authKey").map(String::as_str).unwrap_or("");
    match st.auth.register(client_id, key).await {
        Ok(()) => {
            tracing::info!(clientID = %client_id, "client registered");
            let mut m = std::collections::BTreeMap::new();
            m.insert("clientID", client_id.to_string());
            m.insert("code", "201".to_string());
            json(StatusCode::CREATED, &m)
        }
        Err(e @ RegisterError::Internal(_)) => {
            tracing::error!(error = %e, "registration failed");
            json_error(StatusCode::BAD_REQUEST, &e.to_string())
        }
        Err(e) => json_error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

async fn unregister(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        return not_found().await;
    }
    if !st.enable_admin && !st.allow_self_registration {
        return json_error(StatusCode::FORBIDDEN, "unregister not enabled");
    }
    let principal = match authenticate(&st, &headers).await {
        Ok(p) => p,
        Err(e) => return json_error(StatusCode::UNAUTHORIZED, &e.to_string()),
    };
    let map = match string_map(&body) {
        Ok(m) => m,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e),
    };
    let client_id = map.get("clientID").map(String::as_str).unwrap_or("");
    if client_id.is_empty() {
        return json_error(StatusCode::BAD_REQUEST, "client id should not be empty");
    }
    if let Principal::Client(me) = &principal {
        if me != client_id {
            return json_error(StatusCode::FORBIDDEN, "client id not valid");
        }
    }
    match st.auth.unregister(client_id).await {
        Ok(()) => {
            tracing::info!(clientID = %client_id, "client unregistered");
            let mut m = std::collections::BTreeMap::new();
            m.insert("code", "200".to_string());
            json(StatusCode::OK, &m)
        }
        Err(e) => json_error(StatusCode::BAD_REQUEST, &format!("unregister failed: {e}")),
    }
}

async fn login(State(st): State<Arc<AppState>>, method: Method, body: Bytes) -> Response {
    if method != Method::POST {
        return not_found().await;
    }
    let map = match string_map(&body) {
        Ok(m) => m,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e),
    };
    let client_id = map.get("clientID").map(String::as_str).unwrap_or("");
    let key = map.get("authKey").map(String::as_str).unwrap_or("");
    match st.auth.login(client_id, key).await {
        Ok(token) => {
            let mut m = std::collections::BTreeMap::new();
            m.insert("bearerToken", token);
            m.insert("code", "200".to_string());
            json(StatusCode::OK, &m)
        }
        Err(e) => {
            st.metrics.auth_errors.with_label_values(&[e.kind()]).inc();
            json_error(StatusCode::BAD_REQUEST, &format!("login failed: {e}"))
        }
    }
}

/// `/calls/...` needs a client identity: auth failures and the admin both get 401.
async fn client_of(st: &AppState, headers: &HeaderMap) -> Option<String> {
    match authenticate(st, headers).await {
        Ok(Principal::Client(id)) if !id.is_empty() => Some(id),
        _ => None,
    }
}

async fn call_sessions(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    Path(call_id): Path<String>,
) -> Response {
    if method != Method::GET {
        return not_found().await;
    }
    let Some(client) = client_of(&st, &headers).await else {
        return plain(StatusCode::UNAUTHORIZED, "unauthorized");
    };
    match st.hub.call_sessions(&client, &call_id) {
        Ok(list) => json(StatusCode::OK, &list),
        Err(e) => plain(
            StatusCode::NOT_FOUND,
            &format!("failed to get session configs: {e}"),
        ),
    }
}

async fn call_session(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    Path((call_id, session_id)): Path<(String, String)>,
) -> Response {
    if method != Method::GET {
        return not_found().await;
    }
    let Some(client) = client_of(&st, &headers).await else {
        return plain(StatusCode::UNAUTHORIZED, "unauthorized");
    };
    match st.hub.call_session(&client, &call_id, &session_id) {
        Ok(cfg) => json(StatusCode::OK, &cfg),
        Err(e) => plain(
            StatusCode::NOT_FOUND,
            &format!("failed to get session config: {e}"),
        ),
    }
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    st.metrics.sync_workers(&st.hub.worker_counters());
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

async fn ws_upgrade(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let principal = match authenticate(&st, &headers).await {
        Ok(p) => p,
        // rtcd: an auth failure on /ws writes nothing, so the client sees 200 with an empty
        // body and its handshake fails.
        Err(_) => return StatusCode::OK.into_response(),
    };
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => return rejection.into_response(),
    };
    let hub = st.hub.clone();
    let settings = st.ws;
    let shutdown = st.shutdown.clone();
    let client_id = principal.client_id().to_string();
    upgrade
        .max_message_size(settings.max_frame)
        .max_frame_size(settings.max_frame)
        .on_upgrade(move |socket| ws::serve_conn(socket, hub, client_id, settings, shutdown))
}
