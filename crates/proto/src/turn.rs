//! TURN REST credentials (spec §6.7; draft-uberti-behave-turn-rest), as rtcd and the plugin
//! compute them.
//!
//! Owns: the credential algorithm and its bounds. The current time and expiry are arguments.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Longest credential lifetime accepted (7 days), as upstream.
pub const MAX_TURN_CREDENTIAL_LIFETIME_SECS: i64 = 7 * 24 * 60 * 60;

/// A short-lived TURN username/password pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredentials {
    /// `"<expiry unix seconds>:<name>"`.
    pub username: String,
    /// base64 (standard, padded) of HMAC-SHA1(secret, username).
    pub password: String,
}

/// Why credentials could not be made; every case is a misuse by the caller (or bad config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TurnError {
    #[error("TURN credential name should not be empty")]
    EmptyName,
    #[error("TURN static auth secret should not be empty")]
    EmptySecret,
    #[error("TURN credential expiry {0} should be a positive unix time")]
    NonPositiveExpiry(i64),
    #[error("TURN credential expiry {expiry} is more than 7 days after {now}")]
    ExpiryTooFar { expiry: i64, now: i64 },
}

/// `username = "<expiry_unix>:<name>"`, `password = base64(HMAC-SHA1(secret, username))`.
pub fn turn_credentials(
    secret: &str,
    name: &str,
    expiry_unix: i64,
    now_unix: i64,
) -> Result<TurnCredentials, TurnError> {
    if name.is_empty() {
        return Err(TurnError::EmptyName);
    }
    if secret.is_empty() {
        return Err(TurnError::EmptySecret);
    }
    if expiry_unix <= 0 {
        return Err(TurnError::NonPositiveExpiry(expiry_unix));
    }
    if expiry_unix > now_unix.saturating_add(MAX_TURN_CREDENTIAL_LIFETIME_SECS) {
        return Err(TurnError::ExpiryTooFar {
            expiry: expiry_unix,
            now: now_unix,
        });
    }
    let username = format!("{expiry_unix}:{name}");
    // HMAC takes keys of any length (RFC 2104 §2), so this cannot fail; the secret is
    // non-empty here, so the error named is the closest true statement.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret.as_bytes()) else {
        return Err(TurnError::EmptySecret);
    };
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Ok(TurnCredentials { username, password })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000 - 4 * 3600;

    // Expected passwords computed independently with Python:
    //   base64.b64encode(hmac.new(secret, username, hashlib.sha1).digest())
    #[test]
    fn credentials_match_an_independently_computed_vector() {
        assert_eq!(
            turn_credentials("secret", "alice", 1_700_000_000, NOW),
            Ok(TurnCredentials {
                username: "1700000000:alice".into(),
                password: "d8soP47RbdIKLDUOpnJPVQyq5Ts=".into(),
            })
        );
    }

    #[test]
    fn secrets_longer_than_a_block_are_hashed_first() {
        let secret = "x".repeat(100);
        let creds = turn_credentials(
            &secret,
            "8uibt4rkgbfjbpjqpmmsm5k1oa",
            1_700_086_400,
            1_700_000_000,
        );
        assert_eq!(
            creds.map(|c| (c.username, c.password)),
            Ok((
                "1700086400:8uibt4rkgbfjbpjqpmmsm5k1oa".into(),
                "Csgr7EH+FdaJL/xXrXF/RcvIjps=".into()
            ))
        );
    }

    #[test]
    fn empty_name_or_secret_is_rejected() {
        assert_eq!(
            turn_credentials("secret", "", 1_700_000_000, NOW),
            Err(TurnError::EmptyName)
        );
        assert_eq!(
            turn_credentials("", "alice", 1_700_000_000, NOW),
            Err(TurnError::EmptySecret)
        );
    }

    #[test]
    fn expiry_must_be_positive_and_within_seven_days() {
        assert_eq!(
            turn_credentials("s", "n", 0, NOW),
            Err(TurnError::NonPositiveExpiry(0))
        );
        assert_eq!(
            turn_credentials("s", "n", -5, NOW),
            Err(TurnError::NonPositiveExpiry(-5))
        );
        let limit = NOW + MAX_TURN_CREDENTIAL_LIFETIME_SECS;
        assert!(turn_credentials("s", "n", limit, NOW).is_ok());
        assert_eq!(
            turn_credentials("s", "n", limit + 1, NOW),
            Err(TurnError::ExpiryTooFar {
                expiry: limit + 1,
                now: NOW
            })
        );
        // No overflow near the end of time.
        assert!(turn_credentials("s", "n", i64::MAX, i64::MAX).is_ok());
    }
}
