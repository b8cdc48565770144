//! Bodies of the HTTP API's POST routes (`/register`, `/unregister`, `/login`): a JSON object
//! whose values are all strings, as upstream decodes them into a Go `map[string]string`.

use std::collections::HashMap;

/// Largest body accepted (the real ones are under 200 bytes).
pub const MAX_BODY_LEN: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("request body too large ({len} bytes, limit {max})")]
    TooLarge { len: usize, max: usize },
    /// Go's decoder reports an empty body as `EOF`; we keep the message.
    #[error("EOF")]
    Empty,
    #[error("{0}")]
    Json(String),
}

/// Decodes the first JSON value of `body` as an object of string values. Like Go's
/// `json.Decoder.Decode`, bytes after the first value are ignored.
pub fn parse_string_map(body: &[u8]) -> Result<HashMap<String, String>, BodyError> {
    if body.len() > MAX_BODY_LEN {
        return Err(BodyError::TooLarge {
            len: body.len(),
            max: MAX_BODY_LEN,
        });
    }
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(BodyError::Empty);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    <HashMap<String, String> as serde::Deserialize>::deserialize(&mut de)
        .map_err(|e| BodyError::Json(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_object_is_decoded() {
        let m = parse_string_map(br#"{"clientID":"a","authKey":"b"}"#).unwrap();
        assert_eq!(m["clientID"], "a");
        assert_eq!(m["authKey"], "b");
    }

    #[test]
    fn empty_body_is_eof_like_go() {
        assert_eq!(parse_string_map(b""), Err(BodyError::Empty));
        assert_eq!(parse_string_map(b" \n"), Err(BodyError::Empty));
    }

    #[test]
    fn non_string_values_and_non_objects_are_rejected() {
        assert!(matches!(
            parse_string_map(br#"{"a":1}"#),
            Err(BodyError::Json(_))
        ));
        assert!(matches!(parse_string_map(b"[]"), Err(BodyError::Json(_))));
        assert!(matches!(parse_string_map(b"{"), Err(BodyError::Json(_))));
    }

    #[test]
    fn trailing_bytes_after_the_object_are_ignored_like_go() {
        assert!(parse_string_map(br#"{"a":"b"} trailing"#).is_ok());
    }

    #[test]
    fn oversized_body_is_rejected_before_parsing() {
        let big = vec![b' '; MAX_BODY_LEN + 1];
        assert!(matches!(
            parse_string_map(&big),
            Err(BodyError::TooLarge { .. })
        ));
    }
}
