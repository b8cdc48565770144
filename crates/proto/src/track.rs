//! Forwarded track identity (spec §5.2–5.3): track IDs `<type>_<publisherSessionID>_<rand8>`
//! that clients parse, and the classification of a publisher's incoming tracks.

/// What a forwarded track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    Voice,
    Screen,
    ScreenAudio,
    Video,
}

impl TrackKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TrackKind::Voice => "voice",
            TrackKind::Screen => "screen",
            TrackKind::ScreenAudio => "screen-audio",
            TrackKind::Video => "video",
        }
    }

    pub fn parse(s: &str) -> Option<TrackKind> {
        Some(match s {
            "voice" => TrackKind::Voice,
            "screen" => TrackKind::Screen,
            "screen-audio" => TrackKind::ScreenAudio,
            "video" => TrackKind::Video,
            _ => return None,
        })
    }
}

/// `<type>_<session>_<rand8>`.
pub fn track_id(kind: TrackKind, publisher_session: &str, rand8: &str) -> String {
    format!("{}_{}_{}", kind.as_str(), publisher_session, rand8)
}

/// The kind and publisher session of a track ID (exactly three `_`-separated fields, a
/// known kind, as upstream's `isValidTrackID`; additionally the session must be non-empty).
pub fn parse_track_id(id: &str) -> Option<(TrackKind, &str)> {
    let mut it = id.split('_');
    let kind = TrackKind::parse(it.next()?)?;
    let session = it.next()?;
    let _rand = it.next()?;
    if it.next().is_some() || session.is_empty() {
        return None;
    }
    Some((kind, session))
}

/// Eight characters for a track ID suffix, from 8 random bytes. rtcd takes the first 8
/// characters of a new Mattermost ID (`random.NewID()[0:8]`): base32 of random bytes in
/// the alphabet `ybndrfg8ejkmcpqxot1uwisza345h769`, 5 random bits per character, which
/// is what this gives (the low 5 bits of each byte).
pub fn random_suffix(random: [u8; 8]) -> String {
    random
        .iter()
        .map(|b| crate::id::ID_ALPHABET[usize::from(b & 31)] as char)
        .collect()
}

/// Classifies a publisher's incoming track by its MSID stream ID (spec §5.2): audio is
/// screen audio when it belongs to the call's screen share, voice otherwise; video is the
/// screen share or the session's camera, and anything else is rejected (`None`).
pub fn classify(
    is_audio: bool,
    stream_id: &str,
    call_screen_stream_id: Option<&str>,
    session_video_stream_id: Option<&str>,
) -> Option<TrackKind> {
    let is_screen = call_screen_stream_id.is_some_and(|s| !s.is_empty() && s == stream_id);
    if is_audio {
        return Some(if is_screen {
            TrackKind::ScreenAudio
        } else {
            TrackKind::Voice
        });
    }
    if is_screen {
        return Some(TrackKind::Screen);
    }
    if session_video_stream_id.is_some_and(|s| !s.is_empty() && s == stream_id) {
        return Some(TrackKind::Video);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn track_ids_round_trip_for_every_kind() {
        for k in [
            TrackKind::Voice,
            TrackKind::Screen,
            TrackKind::ScreenAudio,
            TrackKind::Video,
        ] {
            let id = track_id(k, "sess1", "abcdefgh");
            assert_eq!(parse_track_id(&id), Some((k, "sess1")));
        }
        assert_eq!(
            track_id(TrackKind::ScreenAudio, "s", "x"),
            "screen-audio_s_x"
        );
    }

    #[test]
    fn malformed_track_ids_are_rejected() {
        for bad in ["voice_s", "voice_s_r_x", "mic_s_r", "", "voice__r"] {
            assert_eq!(parse_track_id(bad), None, "{bad}");
        }
    }

    /// Upstream utils_test.go `TestIsValidTrackID`.
    #[test]
    fn track_id_validity_matches_upstream_table() {
        for (id, valid) in [
            ("", false),
            ("screen_id", false),
            ("screen_id_id_id", false),
            ("ai_id_id", false),
            ("screen_id_id", true),
            ("voice_id_id", true),
            ("video_id_id", true),
            ("screen-audio_id_id", true),
        ] {
            assert_eq!(parse_track_id(id).is_some(), valid, "{id:?}");
        }
        assert_eq!(
            parse_track_id("screen-audio_sess_rand1234"),
            Some((TrackKind::ScreenAudio, "sess"))
        );
    }

    #[test]
    fn random_suffix_is_eight_id_chars() {
        let s = random_suffix([0, 1, 2, 255, 31, 32, 100, 200]);
        assert_eq!(s.len(), 8);
        assert!(s.bytes().all(|c| crate::id::ID_ALPHABET.contains(&c)));
        assert_eq!(random_suffix([0, 1, 2, 3, 4, 5, 6, 31]), "ybndrfg9");
        assert_eq!(
            random_suffix([32; 8]),
            "yyyyyyyy",
            "only the low 5 bits count"
        );
    }

    #[test]
    fn classification_follows_screen_on_and_video_on() {
        assert_eq!(
            classify(true, "mic", Some("scr"), None),
            Some(TrackKind::Voice)
        );
        assert_eq!(
            classify(true, "scr", Some("scr"), None),
            Some(TrackKind::ScreenAudio)
        );
        assert_eq!(
            classify(false, "scr", Some("scr"), Some("cam")),
            Some(TrackKind::Screen)
        );
        assert_eq!(
            classify(false, "cam", Some("scr"), Some("cam")),
            Some(TrackKind::Video)
        );
        assert_eq!(classify(false, "other", Some("scr"), Some("cam")), None);
        assert_eq!(classify(false, "", None, Some("")), None);
    }
}
