//! The str0m configuration every session is built from (spec §5.1): ICE-lite, RTP mode,
//! exactly Opus/111, VP8/96 and AV1/45, Chrome's header-extension IDs, one DTLS certificate
//! for the whole process, and a send-side bandwidth estimate per session (TWCC), which only
//! chooses screen-share simulcast layers (spec §5.6–5.7): media is never paced by it (every
//! outbound stream is marked unpaced, like rtcd's no-op pacer).

use std::time::Instant;

use rand::Rng;
use str0m::bwe::Bitrate;
use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, Pt};
use str0m::rtp::Extension;
use str0m::{IceCreds, Rtc, RtcConfig};

/// rtcd's estimator start (and floor): half the low simulcast layer's rate.
pub const BWE_INITIAL_BPS: u64 = 250_000;

/// Characters allowed in ICE ufrag/pwd (RFC 8445 ice-char).
const ICE_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Builds sessions. Cheap to clone per session (the certificate is shared).
pub struct Engine {
    config: RtcConfig,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot create the DTLS certificate")]
pub struct EngineError;

impl Engine {
    /// `bwe`: enable the send-side bandwidth estimate (`rtc.bandwidth_estimation`).
    pub fn new(bwe: bool) -> Result<Engine, EngineError> {
        let provider = str0m::crypto::from_feature_flags();
        let cert = provider
            .dtls_provider
            .generate_certificate()
            .ok_or(EngineError)?;
        let mut config = RtcConfig::new()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .enable_bwe(bwe.then_some(Bitrate::bps(BWE_INITIAL_BPS)))
            .set_dtls_cert(cert)
            .clear_codecs()
            .clear_extension_map()
            // Chrome's IDs (str0m's ExtensionMap::standard).
            .set_extension(1, Extension::AudioLevel)
            .set_extension(3, Extension::TransportSequenceNumber)
            .set_extension(4, Extension::RtpMid)
            .set_extension(10, Extension::RtpStreamId)
            .set_extension(11, Extension::RepairedRtpStreamId);
        let opus = FormatParams {
            min_p_time: Some(10),
            use_inband_fec: Some(true),
            ..Default::default()
        };
        let codecs = config.codec_config();
        codecs.add_config(
            Pt::new_with_value(111),
            None,
            Codec::Opus,
            Frequency::FORTY_EIGHT_KHZ,
            Some(2),
            opus,
        );
        // RTX PTs so str0m can answer subscribers' NACKs for forwarded video (rtcd answers
        // them from its NACK responder; str0m only resends over RTX).
        codecs.add_config(
            Pt::new_with_value(96),
            Some(Pt::new_with_value(97)),
            Codec::Vp8,
            Frequency::NINETY_KHZ,
            None,
            FormatParams::default(),
        );
        codecs.add_config(
            Pt::new_with_value(45),
            Some(Pt::new_with_value(46)),
            Codec::Av1,
            Frequency::NINETY_KHZ,
            None,
            FormatParams::default(),
        );
        Ok(Engine { config })
    }

    /// A new session's `Rtc` with our chosen ICE credentials.
    pub fn build(&self, creds: IceCreds, now: Instant) -> Rtc {
        self.config
            .clone()
            .set_local_ice_credentials(creds)
            .build(now)
    }
}

/// ICE credentials whose ufrag starts with the owning worker's index (two hex digits), so
/// any worker can steer a first STUN packet to the owner without a shared table.
pub fn new_ice_creds(worker: usize) -> IceCreds {
    let mut rng = rand::rng();
    let mut pick = |n: usize| -> String {
        (0..n)
            .map(|_| ICE_CHARS[rng.random_range(0..ICE_CHARS.len())] as char)
            .collect()
    };
    IceCreds {
        ufrag: format!("{:02x}{}", worker & 0xff, pick(14)),
        pass: pick(24),
    }
}

/// The worker encoded in one of our ufrags.
pub fn worker_of_ufrag(ufrag: &str) -> Option<usize> {
    usize::from_str_radix(ufrag.get(..2)?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ufrag_carries_the_owning_worker() {
        for w in [0, 1, 7, 200] {
            let c = new_ice_creds(w);
            assert_eq!(worker_of_ufrag(&c.ufrag), Some(w));
            assert_eq!(c.ufrag.len(), 16);
            assert!(c.pass.len() >= 22);
        }
        assert_eq!(worker_of_ufrag("zz12"), None);
    }
}
