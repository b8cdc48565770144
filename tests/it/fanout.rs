//! Calls whose sessions live on different workers (DESIGN.md decision 5): media crosses
//! workers through the fan-out rings, track state through peer messages.

use std::time::Duration;

use rtcd::bridge::{CloseReason, Command, DataPlane, MessageType, WorkerId};

use crate::media_harness::*;

#[test]
fn a_call_spread_over_two_workers_carries_audio_in_every_direction() {
    let mut server = Server::start(2);
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    let mut b = Client::new(&server, 1, "sessB", "call1", false);
    let mut c = Client::new(&server, 1, "sessC", "call1", true);
    assert!(
        run_until(
            &mut server,
            &mut [&mut a, &mut b, &mut c],
            Duration::from_secs(20),
            &[true, true, true],
            |cs| cs
                .iter()
                .all(|c| c.received.len() == 2 && c.total_received() >= 40)
        ),
        "a={:?} b={:?} c={:?}",
        a.received,
        b.received,
        c.received
    );
    let counters = server.pool.counters();
    let expected = match test_io() {
        rtcd::data::io::IoChoice::Portable => Some("portable"),
        rtcd::data::io::IoChoice::IoUring => Some("io_uring"),
        rtcd::data::io::IoChoice::Auto => None,
    };
    for w in &counters {
        assert!(
            expected.is_none_or(|e| e == w.io_backend),
            "{}",
            w.io_backend
        );
    }
    assert_eq!(counters[0].sessions, 1);
    assert_eq!(counters[1].sessions, 2);
    assert!(
        counters[0].fanouts > 0,
        "worker 0 handed a's audio to worker 1"
    );
    assert!(
        counters[1].fanouts > 0,
        "worker 1 handed b's and c's audio to worker 0"
    );
    let ring_drops: u64 = counters
        .iter()
        .flat_map(|w| w.drops.iter())
        .filter(|(r, _)| *r == "fanout_ring_full" || *r == "peer_queue_full")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(ring_drops, 0);
}

#[test]
fn a_screen_shared_on_one_worker_reaches_a_viewer_on_the_other_with_a_keyframe() {
    let mut server = Server::start(2);
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    let mut b = Client::new(&server, 1, "sessB", "call1", false);
    connect_all(&mut server, &mut [&mut a, &mut b], 5);
    a.start_screen(&mut server);
    assert!(
        run_until(
            &mut server,
            &mut [&mut a, &mut b],
            Duration::from_secs(20),
            &[false, false],
            |cs| cs[1].video_frames.values().sum::<usize>() >= 10
        ),
        "viewer on worker 1 decodes the screen: frames={:?} maps={:?}",
        b.video_frames,
        b.media_maps.last()
    );
    let map = b
        .media_maps
        .last()
        .expect("a MediaMap came before the offer");
    assert!(
        map.iter()
            .any(|(_, e)| e.kind == "screen" && e.sender_id == "sessA"),
        "{map:?}"
    );
    assert!(
        a.keyframe_requests >= 1,
        "the viewer's worker asked the sharer's worker for a keyframe"
    );
    // ScreenOff on worker 0 removes the track at the viewer on worker 1.
    let offers_before = b.media_maps.len();
    server.signal(0, &a.key, MessageType::ScreenOff, Vec::new());
    a.screen = None;
    assert!(
        run_until(
            &mut server,
            &mut [&mut a, &mut b],
            Duration::from_secs(10),
            &[false, false],
            |cs| cs[1].media_maps.len() > offers_before
        ),
        "a removal offer follows ScreenOff across workers"
    );
    assert!(b
        .media_maps
        .last()
        .expect("map")
        .iter()
        .all(|(_, e)| e.kind != "screen"));
}

#[test]
fn a_publisher_leaving_one_worker_stops_its_audio_on_the_other() {
    let mut server = Server::start(2);
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    let mut b = Client::new(&server, 1, "sessB", "call1", false);
    assert!(run_until(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(20),
        &[true, false],
        |cs| cs[1].total_received() >= 20
    ));
    server
        .pool
        .submit(WorkerId(0), Command::Leave { key: a.key.clone() })
        .expect("leave queued");
    assert!(run_until(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(5),
        &[true, false],
        |cs| cs[0].closed.is_some()
    ));
    assert_eq!(a.closed, Some(CloseReason::Leave));
    idle(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_millis(300),
        &[true, false],
    );
    let before = b.total_received();
    idle(
        &mut server,
        &mut [&mut a, &mut b],
        Duration::from_secs(1),
        &[true, false],
    );
    assert_eq!(b.total_received(), before, "the leaver's audio stops");
}

#[test]
fn a_late_joiner_on_another_worker_receives_tracks_published_before_it_joined() {
    let mut server = Server::start(2);
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    let mut b = Client::new(&server, 0, "sessB", "call1", false);
    connect_all(&mut server, &mut [&mut a, &mut b], 10);
    // Worker 1 has never hosted this call; it learnt a's and b's tracks all the same.
    let mut c = Client::new(&server, 1, "sessC", "call1", false);
    assert!(
        run_until(
            &mut server,
            &mut [&mut a, &mut b, &mut c],
            Duration::from_secs(20),
            &[true, true, false],
            |cs| cs[2].received.len() == 2 && cs[2].received.values().all(|n| *n >= 10)
        ),
        "c={:?}",
        c.received
    );
}

#[test]
fn one_sharer_per_call_holds_across_workers() {
    let mut server = Server::start(2);
    let mut a = Client::new(&server, 0, "sessA", "call1", false);
    let mut b = Client::new(&server, 1, "sessB", "call1", false);
    let mut c = Client::new(&server, 1, "sessC", "call1", false);
    assert!(run_until(
        &mut server,
        &mut [&mut a, &mut b, &mut c],
        Duration::from_secs(20),
        &[true, true, true],
        |cs| cs
            .iter()
            .all(|c| c.received.len() == 2 && c.total_received() >= 10)
    ));
    a.start_screen(&mut server);
    assert!(run_until(
        &mut server,
        &mut [&mut a, &mut b, &mut c],
        Duration::from_secs(20),
        &[false, false, false],
        |cs| cs[1..]
            .iter()
            .all(|c| c.video_frames.values().sum::<usize>() >= 5)
    ));
    // b, on the other worker, tries to share too: refused there as well.
    b.start_screen(&mut server);
    idle(
        &mut server,
        &mut [&mut a, &mut b, &mut c],
        Duration::from_secs(2),
        &[false, false, false],
    );
    for maps in &c.media_maps {
        assert!(
            maps.iter()
                .all(|(_, e)| !(e.kind == "screen" && e.sender_id == "sessB")),
            "c was offered b's screen: {maps:?}"
        );
    }
    assert_eq!(c.video_frames.len(), 1, "c decodes only a's screen");
}

/// DESIGN.md decision 3: a flow the kernel hashes to a worker that does not own its session
/// is handed over to the owner; once it proved itself (STUN with the session's credentials)
/// the owner opens a socket on the shared port connected to the client, and the rest of the
/// flow arrives there directly: no more handovers while media keeps flowing.
#[test]
fn a_flow_landing_on_another_worker_is_handed_over_then_served_directly() {
    let mut server = Server::start(2);
    // The kernel hashes about half of the client ports to worker 0; sessions live on 1.
    for attempt in 0..16 {
        let before = handovers(&server);
        let call = format!("call{attempt}");
        let mut a = Client::new(&server, 1, &format!("sA{attempt}"), &call, false);
        let mut b = Client::new(&server, 1, &format!("sB{attempt}"), &call, false);
        connect_all(&mut server, &mut [&mut a, &mut b], 10);
        if handovers(&server) == before {
            continue; // both flows hashed to the owner: try other ports
        }
        // The handed-over flow gets its connected socket.
        assert!(
            direct_path_opens(&mut server, &mut [&mut a, &mut b], before, 21),
            "no direct path opened"
        );
        let h0 = handovers(&server);
        let got = (a.total_received(), b.total_received());
        idle(
            &mut server,
            &mut [&mut a, &mut b],
            Duration::from_secs(2),
            &[true, true],
        );
        assert!(
            a.total_received() >= got.0 + 50 && b.total_received() >= got.1 + 50,
            "media keeps flowing both ways: {got:?} -> ({}, {})",
            a.total_received(),
            b.total_received()
        );
        assert_eq!(handovers(&server), h0, "the flow no longer needs handovers");
        return;
    }
    panic!("no client port hashed to the non-owner worker in 16 attempts");
}

/// The direct path receives with GRO too: a publisher whose flow was handed over and then
/// served by its owner's connected socket sends coalesced video bursts; the owner splits
/// them (the viewer decodes whole frames) and none of them reach the other worker.
#[test]
fn coalesced_bursts_on_the_direct_path_are_split_and_forwarded_whole() {
    let mut server = Server::start(2);
    // Only the publisher uses UDP (the viewer ICE-TCP), so an open direct socket is its.
    for attempt in 0..16 {
        let before = handovers(&server);
        let call = format!("call{attempt}");
        let mut a = Client::new(&server, 1, &format!("sA{attempt}"), &call, false);
        a.send_with_gso();
        let mut b = Client::new(&server, 1, &format!("sB{attempt}"), &call, true);
        connect_all(&mut server, &mut [&mut a, &mut b], 10);
        // The direct socket opens only when the publisher's port hashed to worker 0.
        if !direct_path_opens(&mut server, &mut [&mut a, &mut b], before, 10) {
            continue;
        }
        let before: Vec<u64> = server
            .pool
            .counters()
            .iter()
            .map(|c| c.recv_coalesced)
            .collect();
        share_simulcast_and_check_whole_frames(&mut server, &mut a, &mut b, 20);
        let c = server.pool.counters();
        // 20 frames of at least 3 packets each (`l`), coalesced per frame.
        assert!(
            c[1].recv_coalesced >= before[1] + 40,
            "the owner got the bursts coalesced: {} -> {}",
            before[1],
            c[1].recv_coalesced
        );
        assert_eq!(
            c[0].recv_coalesced, before[0],
            "none went by the other worker"
        );
        return;
    }
    panic!("the publisher's port never hashed to the non-owner worker in 16 attempts");
}

/// Handovers so far, over every worker.
fn handovers(s: &Server) -> u64 {
    s.pool.counters().iter().map(|c| c.handovers).sum()
}

/// Drives `clients` (all speaking) for up to `tries` × 100 ms until a flow handed over since
/// `before` has a direct-path socket on worker 1, then lets datagrams queued before the
/// connect (which may still be handed over) land for 500 ms. Whether it opened.
fn direct_path_opens(
    server: &mut Server,
    clients: &mut [&mut Client],
    before: u64,
    tries: usize,
) -> bool {
    let speaking = vec![true; clients.len()];
    for _ in 0..tries {
        if handovers(server) > before && server.pool.counters()[1].direct_flows >= 1 {
            idle(server, clients, Duration::from_millis(500), &speaking);
            return true;
        }
        idle(server, clients, Duration::from_millis(100), &speaking);
    }
    false
}
