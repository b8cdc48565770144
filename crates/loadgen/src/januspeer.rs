//! One participant against Janus's VideoRoom: Janus's model is one send-only publisher
//! PeerConnection for the participant's own media plus one subscriber PeerConnection that
//! receives the other participants' feeds (multistream). Both PCs report to the same meter
//! receiver slot, so a Janus participant is measured exactly like an rtcd session (one PC that
//! sends and receives).
//!
//! The signaling (attach, join, subscribe, start, leave, detach) is driven by `main.rs` with
//! [`crate::janus::Janus`]; this module owns the two PCs and the subscription bookkeeping.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::rtcpeer::RtcPeer;

/// Janus refuses to subscribe to a feed whose PeerConnection is not up yet ("No such feed"):
/// a feed counts as ready this long after its publisher connected.
pub const FEED_READY_AFTER: Duration = Duration::from_millis(300);

pub struct JanusPeer {
    /// Send-only PC for the participant's own media (None for listeners).
    pub publisher: Option<RtcPeer>,
    pub pub_handle: Option<u64>,
    /// The publisher's feed id, once Janus answered `joinandconfigure`.
    pub feed: Option<u64>,
    /// Receive-only PC for the other participants' feeds, made once there are feeds to get.
    pub subscriber: Option<RtcPeer>,
    pub sub_handle: Option<u64>,
    /// Feeds asked for on the subscriber handle (Janus subscribes twice if asked twice).
    pub subscribed: BTreeSet<u64>,
    /// A subscriber PC is wanted: the participant receives and its call has other publishers.
    pub needs_subscriber: bool,
    pub joined_at: Instant,
    pub errors: Vec<String>,
}

impl JanusPeer {
    pub fn new(publisher: Option<RtcPeer>, needs_subscriber: bool, now: Instant) -> JanusPeer {
        JanusPeer {
            publisher,
            pub_handle: None,
            feed: None,
            subscriber: None,
            sub_handle: None,
            subscribed: BTreeSet::new(),
            needs_subscriber,
            joined_at: now,
            errors: Vec::new(),
        }
    }

    /// Connected when every PC it needs is: the later of the two.
    pub fn connected_at(&self) -> Option<Instant> {
        let p = match &self.publisher {
            Some(p) => Some(p.connected_at?),
            None => None,
        };
        let s = if self.needs_subscriber {
            Some(self.subscriber.as_ref()?.connected_at?)
        } else {
            None
        };
        p.max(s)
    }

    /// First media received (only the subscriber PC receives).
    pub fn first_media(&self) -> Option<Instant> {
        self.subscriber.as_ref().and_then(|s| s.first_media)
    }

    /// The feed can be subscribed to at `now`.
    pub fn feed_ready(&self, now: Instant) -> Option<u64> {
        let up = self.publisher.as_ref()?.connected_at?;
        (now.saturating_duration_since(up) >= FEED_READY_AFTER)
            .then_some(self.feed)
            .flatten()
    }

    pub fn errors(&self) -> Vec<String> {
        let mut v = self.errors.clone();
        for (what, p) in [
            ("publisher", &self.publisher),
            ("subscriber", &self.subscriber),
        ] {
            if let Some(p) = p {
                v.extend(p.errors.iter().map(|e| format!("{what}: {e}")));
            }
        }
        v
    }

    pub fn record_error(&mut self, e: String) {
        if self.errors.len() < 8 {
            self.errors.push(e);
        }
    }
}

/// Ready feeds of the call that `own` (a participant slot) is not subscribed to yet, in the
/// order given. `ready` is (feed, owner slot).
pub fn feeds_to_add(ready: &[(u64, usize)], own: usize, subscribed: &BTreeSet<u64>) -> Vec<u64> {
    ready
        .iter()
        .filter(|(feed, owner)| *owner != own && !subscribed.contains(feed))
        .map(|(feed, _)| *feed)
        .collect()
}

/// Whether to make the subscriber PC now, with `ready_others` feeds available. While the run
/// sets up, it waits for all `planned_others` feeds of its call (one offer, no renegotiation);
/// a participant joining later (churn) subscribes to what is there and adds the rest later.
pub fn subscriber_due(ready_others: usize, planned_others: usize, setting_up: bool) -> bool {
    ready_others > 0 && (!setting_up || ready_others >= planned_others)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_participant_subscribes_to_the_other_ready_feeds_once() {
        let ready = [(10, 0), (11, 1), (12, 2)];
        let mut have = BTreeSet::new();
        assert_eq!(feeds_to_add(&ready, 1, &have), vec![10, 12]);
        have.insert(10);
        assert_eq!(feeds_to_add(&ready, 1, &have), vec![12]);
        have.insert(12);
        assert!(feeds_to_add(&ready, 1, &have).is_empty());
        assert_eq!(
            feeds_to_add(&ready, 7, &have),
            vec![11],
            "a listener gets every feed"
        );
    }

    #[test]
    fn the_subscriber_waits_for_the_whole_call_only_while_setting_up() {
        assert!(!subscriber_due(0, 0, false), "nothing to subscribe to");
        assert!(!subscriber_due(2, 3, true));
        assert!(subscriber_due(3, 3, true));
        assert!(
            subscriber_due(1, 3, false),
            "a churned-in participant takes what is there"
        );
    }

    #[test]
    fn connected_means_every_needed_pc_is_up() {
        let now = Instant::now();
        let listener = JanusPeer::new(None, true, now);
        assert_eq!(listener.connected_at(), None, "no subscriber PC yet");
        let presenter = JanusPeer::new(None, false, now);
        assert_eq!(presenter.connected_at(), None, "nothing at all to connect");
        assert_eq!(presenter.feed_ready(now), None);
    }
}
