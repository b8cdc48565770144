//! Client authentication (spec §2): bcrypt-hashed keys in the [`Store`], admin secret,
//! bearer tokens in memory, and a rate limiter in front of every bcrypt operation so that a
//! flood of bad logins cannot starve the daemon.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use rand::RngCore;

use super::store::{Store, StoreError};

/// Minimum auth key length accepted by `/register` (upstream).
pub const MIN_KEY_LEN: usize = 32;
/// bcrypt cost, as Go's `bcrypt.DefaultCost`.
pub const BCRYPT_COST: u32 = 10;
/// Longest wait for a bcrypt slot before failing (upstream: 10 s).
pub const LIMITER_DEADLINE: Duration = Duration::from_secs(10);

/// Who a request authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Basic auth with the admin secret; upstream resolves it to an empty client ID.
    Admin,
    Client(String),
}

impl Principal {
    /// The client ID as upstream resolves it (empty for the admin).
    pub fn client_id(&self) -> &str {
        match self {
            Principal::Admin => "",
            Principal::Client(id) => id,
        }
    }
}

/// Why authentication failed. `Display` gives upstream's messages; `kind` is the metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication failed: token is invalid")]
    InvalidToken,
    #[error("authentication failed: session is expired")]
    ExpiredToken,
    #[error("authentication failed: invalid auth header")]
    InvalidHeader,
    #[error("authentication failed: unauthorized")]
    Unauthorized,
    #[error("authentication failed")]
    BadCredentials,
    #[error("authentication failed: {0}")]
    RateLimited(String),
    #[error("authentication failed: {0}")]
    Internal(String),
}

impl AuthError {
    pub fn kind(&self) -> &'static str {
        match self {
            AuthError::InvalidToken => "invalid_token",
            AuthError::ExpiredToken => "expired_token",
            AuthError::InvalidHeader => "invalid_header",
            AuthError::Unauthorized => "unauthorized",
            AuthError::BadCredentials => "bad_credentials",
            AuthError::RateLimited(_) => "rate_limited",
            AuthError::Internal(_) => "internal",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("registration failed: key not long enough")]
    KeyTooShort,
    #[error("registration failed: error: empty key")]
    EmptyId,
    #[error("registration failed: error: key too large")]
    IdTooLong,
    #[error("registration failed: already registered")]
    AlreadyRegistered,
    #[error("registration failed: {0}")]
    RateLimited(String),
    #[error("registration failed: {0}")]
    Internal(String),
}

/// Token bucket with burst 1 and a wait deadline, with the semantics of Go's
/// `rate.Limiter.Wait`: each caller reserves the next free slot; if that slot is further away
/// than the deadline, the call fails at once instead of waiting.
pub struct RateLimiter {
    interval: Duration,
    next_free: Mutex<Option<Instant>>,
}

impl RateLimiter {
    pub fn per_second(rate: f64) -> Self {
        let rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            1.0
        };
        RateLimiter {
            interval: Duration::from_secs_f64(1.0 / rate),
            next_free: Mutex::new(None),
        }
    }

    /// Reserves a slot at or after `now`; returns how long to wait, or an error if the wait
    /// would exceed `deadline`.
    pub fn reserve(&self, now: Instant, deadline: Duration) -> Result<Duration, String> {
        let mut next = self.next_free.lock().unwrap_or_else(|p| p.into_inner());
        let slot = match *next {
            Some(t) if t > now => t,
            _ => now,
        };
        let wait = slot - now;
        if wait > deadline {
            return Err(format!(
                "rate: Wait(n=1) would exceed context deadline (wait {} ms)",
                wait.as_millis()
            ));
        }
        *next = Some(slot + self.interval);
        Ok(wait)
    }

    pub async fn wait(&self, deadline: Duration) -> Result<(), String> {
        let wait = self.reserve(Instant::now(), deadline)?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }
}

struct TokenEntry {
    client_id: String,
    expires: Instant,
}

/// Bearer tokens: one per client, fixed expiry, in memory only (lost on restart, as upstream).
#[derive(Default)]
struct TokenCache {
    by_token: HashMap<String, TokenEntry>,
    by_client: HashMap<String, String>,
}

pub struct AuthSettings {
    pub enable_admin: bool,
    pub admin_secret_key: String,
    pub token_ttl: Duration,
    /// bcrypt operations per second (upstream: 12 × NumCPU).
    pub bcrypt_rate: f64,
}

pub struct AuthService {
    store: Arc<Store>,
    settings: AuthSettings,
    limiter: RateLimiter,
    tokens: Mutex<TokenCache>,
}

impl AuthService {
    pub fn new(store: Arc<Store>, settings: AuthSettings) -> Self {
        let limiter = RateLimiter::per_second(settings.bcrypt_rate);
        AuthService {
            store,
            settings,
            limiter,
            tokens: Mutex::new(TokenCache::default()),
        }
    }

    /// Runs the shared auth handler (spec §2.2) on an `Authorization` header value.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        let header = header.unwrap_or("");
        // rtcd: the Bearer prefix test is case-sensitive.
        if let Some(token) = header.strip_prefix("Bearer ") {
            return self.check_token(token.trim(), Instant::now());
        }
        let (user, pass) = parse_basic(header).ok_or(AuthError::InvalidHeader)?;
        if self.settings.enable_admin
            && !self.settings.admin_secret_key.is_empty()
            && constant_time_eq(pass.as_bytes(), self.settings.admin_secret_key.as_bytes())
        {
            return Ok(Principal::Admin);
        }
        if user.is_empty() {
            return Err(AuthError::Unauthorized);
        }
        self.check_key(&user, &pass).await?;
        Ok(Principal::Client(user))
    }

    fn check_token(&self, token: &str, now: Instant) -> Result<Principal, AuthError> {
        let mut cache = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let entry = cache.by_token.get(token).ok_or(AuthError::InvalidToken)?;
        if entry.expires <= now {
            let client = entry.client_id.clone();
            cache.by_token.remove(token);
            if cache.by_client.get(&client).map(String::as_str) == Some(token) {
                cache.by_client.remove(&client);
            }
            return Err(AuthError::ExpiredToken);
        }
        Ok(Principal::Client(entry.client_id.clone()))
    }

    /// Verifies a client's key against its stored hash. Unknown clients fail before the
    /// rate limiter (no token spent), as upstream.
    pub async fn check_key(&self, client_id: &str, key: &str) -> Result<(), AuthError> {
        let hash = match self.store.get(client_id) {
            Ok(h) => h,
            Err(StoreError::NotFound | StoreError::EmptyKey | StoreError::KeyTooLarge) => {
                return Err(AuthError::BadCredentials)
            }
            Err(e) => return Err(AuthError::Internal(e.to_string())),
        };
        self.limiter
            .wait(LIMITER_DEADLINE)
            .await
            .map_err(AuthError::RateLimited)?;
        let key = key.to_string();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(key, &hash).unwrap_or(false))
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        if ok {
            Ok(())
        } else {
            Err(AuthError::BadCredentials)
        }
    }

    /// Registers a new client (checks in upstream's order, spec §1.4).
    pub async fn register(&self, client_id: &str, key: &str) -> Result<(), RegisterError> {
        if key.len() < MIN_KEY_LEN {
            return Err(RegisterError::KeyTooShort);
        }
        if client_id.is_empty() {
            return Err(RegisterError::EmptyId);
        }
        if client_id.len() > super::store::MAX_KEY_LEN {
            return Err(RegisterError::IdTooLong);
        }
        match self.store.get(client_id) {
            Ok(_) => return Err(RegisterError::AlreadyRegistered),
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(RegisterError::Internal(e.to_string())),
        }
        self.limiter
            .wait(LIMITER_DEADLINE)
            .await
            .map_err(RegisterError::RateLimited)?;
        let key = key.to_string();
        let hash = tokio::task::spawn_blocking(move || bcrypt::hash(key, BCRYPT_COST))
            .await
            .map_err(|e| RegisterError::Internal(e.to_string()))?
            .map_err(|e| RegisterError::Internal(e.to_string()))?;
        let store = self.store.clone();
        let id = client_id.to_string();
        tokio::task::spawn_blocking(move || store.put_if_absent(&id, &hash))
            .await
            .map_err(|e| RegisterError::Internal(e.to_string()))?
            .map_err(|e| match e {
                StoreError::AlreadyExists => RegisterError::AlreadyRegistered,
                other => RegisterError::Internal(other.to_string()),
            })
    }

    /// Removes a client and its bearer token. Its connections and sessions are untouched.
    pub async fn unregister(&self, client_id: &str) -> Result<(), StoreError> {
        let store = self.store.clone();
        let id = client_id.to_string();
        tokio::task::spawn_blocking(move || store.delete(&id))
            .await
            .map_err(|e| StoreError::Io(e.to_string()))??;
        self.revoke_token(client_id);
        Ok(())
    }

    fn revoke_token(&self, client_id: &str) {
        let mut cache = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(token) = cache.by_client.remove(client_id) {
            cache.by_token.remove(&token);
        }
    }

    /// Checks credentials and issues a bearer token, revoking the client's previous one.
    pub async fn login(&self, client_id: &str, key: &str) -> Result<String, AuthError> {
        if client_id.is_empty() {
            return Err(AuthError::BadCredentials);
        }
        self.check_key(client_id, key).await?;
        Ok(self.issue_token(client_id, Instant::now()))
    }

    fn issue_token(&self, client_id: &str, now: Instant) -> String {
        let token = new_token();
        let mut cache = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = cache.by_client.insert(client_id.to_string(), token.clone()) {
            cache.by_token.remove(&old);
        }
        cache.by_token.insert(
            token.clone(),
            TokenEntry {
                client_id: client_id.to_string(),
                expires: now + self.settings.token_ttl,
            },
        );
        token
    }
}

/// 32 URL-safe base64 characters from 24 CSPRNG bytes (192 bits), as upstream.
pub fn new_token() -> String {
    let mut b = [0u8; 24];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Parses `Basic base64(user:pass)` as Go's `Request.BasicAuth` does (scheme case-insensitive).
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case("Basic ") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim().as_bytes())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(dir: &std::path::Path, admin: bool) -> AuthService {
        let store = Arc::new(Store::open(dir).unwrap());
        AuthService::new(
            store,
            AuthSettings {
                enable_admin: admin,
                admin_secret_key: if admin {
                    "admin-secret".into()
                } else {
                    String::new()
                },
                token_ttl: Duration::from_secs(60),
                bcrypt_rate: 1000.0,
            },
        )
    }

    fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[tokio::test]
    async fn registered_client_authenticates_with_basic_auth_and_wrong_key_fails() {
        let dir = tempfile::tempdir().unwrap();
        let auth = service(dir.path(), false);
        auth.register("c1", KEY).await.unwrap();
        assert_eq!(
            auth.authenticate(Some(&basic("c1", KEY))).await.unwrap(),
            Principal::Client("c1".into())
        );
        assert_eq!(
            auth.authenticate(Some(&basic("c1", "wrong"))).await,
            Err(AuthError::BadCredentials)
        );
        assert_eq!(
            auth.authenticate(Some(&basic("nobody", KEY))).await,
            Err(AuthError::BadCredentials)
        );
        assert_eq!(auth.authenticate(None).await, Err(AuthError::InvalidHeader));
        assert_eq!(
            auth.authenticate(Some(&basic("", KEY))).await,
            Err(AuthError::Unauthorized)
        );
    }

    #[tokio::test]
    async fn register_checks_key_length_before_id_and_refuses_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let auth = service(dir.path(), false);
        assert_eq!(
            auth.register("", "short").await,
            Err(RegisterError::KeyTooShort)
        );
        assert_eq!(auth.register("", KEY).await, Err(RegisterError::EmptyId));
        auth.register("c1", KEY).await.unwrap();
        assert_eq!(
            auth.register("c1", KEY).await,
            Err(RegisterError::AlreadyRegistered)
        );
    }

    #[tokio::test]
    async fn admin_secret_authenticates_as_admin_with_any_username() {
        let dir = tempfile::tempdir().unwrap();
        let auth = service(dir.path(), true);
        assert_eq!(
            auth.authenticate(Some(&basic("whoever", "admin-secret")))
                .await
                .unwrap(),
            Principal::Admin
        );
    }

    #[tokio::test]
    async fn login_issues_one_token_per_client_and_revokes_the_previous() {
        let dir = tempfile::tempdir().unwrap();
        let auth = service(dir.path(), false);
        auth.register("c1", KEY).await.unwrap();
        let t1 = auth.login("c1", KEY).await.unwrap();
        assert_eq!(t1.len(), 32);
        let bearer1 = format!("Bearer {t1}");
        assert!(auth.authenticate(Some(&bearer1)).await.is_ok());
        let t2 = auth.login("c1", KEY).await.unwrap();
        assert_ne!(t1, t2);
        assert_eq!(
            auth.authenticate(Some(&bearer1)).await,
            Err(AuthError::InvalidToken)
        );
        assert!(auth
            .authenticate(Some(&format!("Bearer {t2}")))
            .await
            .is_ok());
        auth.unregister("c1").await.unwrap();
        assert_eq!(
            auth.authenticate(Some(&format!("Bearer {t2}"))).await,
            Err(AuthError::InvalidToken)
        );
    }

    #[test]
    fn expired_token_is_rejected_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let auth = service(dir.path(), false);
        let start = Instant::now();
        let token = auth.issue_token("c1", start);
        assert!(auth.check_token(&token, start).is_ok());
        let later = start + Duration::from_secs(61);
        assert_eq!(
            auth.check_token(&token, later),
            Err(AuthError::ExpiredToken)
        );
        assert_eq!(
            auth.check_token(&token, later),
            Err(AuthError::InvalidToken)
        );
    }

    #[test]
    fn limiter_spaces_slots_and_fails_fast_past_the_deadline() {
        let l = RateLimiter::per_second(2.0);
        let t0 = Instant::now();
        assert_eq!(
            l.reserve(t0, Duration::from_secs(1)).unwrap(),
            Duration::ZERO
        );
        assert_eq!(
            l.reserve(t0, Duration::from_secs(1)).unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            l.reserve(t0, Duration::from_secs(1)).unwrap(),
            Duration::from_millis(1000)
        );
        // The next slot is 1.5 s away: over the deadline, refused without being reserved.
        assert!(l.reserve(t0, Duration::from_secs(1)).is_err());
        assert!(l.reserve(t0, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn basic_header_parsing_follows_go() {
        assert_eq!(
            parse_basic(&basic("a", "b:c")),
            Some(("a".into(), "b:c".into()))
        );
        assert_eq!(parse_basic("basic YTpi"), Some(("a".into(), "b".into())));
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(parse_basic("Digest x"), None);
        assert_eq!(parse_basic(""), None);
    }
}
