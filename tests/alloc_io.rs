//! The data plane's own per-packet path allocates nothing after warm-up: the I/O backends'
//! receive (GRO bursts split in the batch, io_uring datagrams left in place) and their send
//! submission, on both backends. (str0m's per-packet allocations are bounded separately in
//! `tests/alloc.rs`.) Allocations are counted on the measuring thread only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use rtcd::data::io::{self, IoChoice, IoKind, RecvBatch};

struct Counting;

thread_local! {
    static TRACK: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if TRACK.with(|t| t.get()) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(0));
    TRACK.with(|t| t.set(true));
    f();
    TRACK.with(|t| t.set(false));
    COUNT.with(|c| c.get())
}

/// Sends `rounds` rounds of a 20-datagram GSO burst plus 10 single datagrams to `to` from
/// another thread, one round each time `go` says so.
fn sender(
    to: std::net::SocketAddr,
) -> (std::sync::mpsc::SyncSender<()>, std::thread::JoinHandle<()>) {
    // Bounded: its slots exist up front (an unbounded channel allocates as it grows).
    let (go, rx) = std::sync::mpsc::sync_channel::<()>(128);
    let t = std::thread::spawn(move || {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let single = s.try_clone().expect("clone");
        let mut tx = io::new_backend(IoKind::Portable, vec![s]).expect("backend");
        tx.set_gso(true);
        while rx.recv().is_ok() {
            for i in 0..20u8 {
                tx.send(0, to, vec![i; 1100]);
            }
            tx.flush();
            for i in 0..10u8 {
                single.send_to(&[i; 90], to).expect("send");
            }
        }
    });
    (go, t)
}

fn receive_and_send_without_allocating(kind: IoKind) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let _ = socket2::SockRef::from(&s).set_recv_buffer_size(4 << 20);
    let addr = s.local_addr().expect("addr");
    let mut rx = io::new_backend(kind, vec![s]).expect("backend");
    assert!(rx.set_gro(true), "GRO on");
    let sink = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let sink_addr = sink.local_addr().expect("addr");
    let mut batch = RecvBatch::default();
    let (go, t) = sender(addr);
    // One round: receive 30 datagrams, send 30 (owned buffers made beforehand, as str0m's
    // transmits are), flush.
    let mut round = |rx: &mut Box<dyn io::UdpIo>, out: &mut Vec<Vec<u8>>| -> (usize, usize) {
        go.send(()).expect("go");
        let (mut got, mut coalesced) = (0, 0);
        let end = Instant::now() + Duration::from_secs(5);
        while got < 30 && Instant::now() < end {
            rx.recv(&mut batch);
            got += batch.len();
            coalesced += batch.coalesced();
        }
        for data in out.drain(..) {
            rx.send(0, sink_addr, data);
        }
        rx.flush();
        (got, coalesced)
    };
    let buffers = |n: usize| -> Vec<Vec<u8>> { (0..n).map(|_| vec![1u8; 1100]).collect() };
    // Warm-up: queues, send slots and buffers reach their working sizes.
    for _ in 0..20 {
        let mut out = buffers(30);
        assert_eq!(round(&mut rx, &mut out).0, 30);
    }
    let mut outs: Vec<Vec<Vec<u8>>> = (0..50).map(|_| buffers(30)).collect();
    let mut results = Vec::with_capacity(50);
    let n = allocations(|| {
        for out in outs.iter_mut() {
            results.push(round(&mut rx, out));
        }
    });
    drop(go);
    t.join().expect("sender");
    assert!(
        results.iter().all(|r| r.0 == 30),
        "every datagram: {results:?}"
    );
    assert!(
        results.iter().map(|r| r.1).sum::<usize>() > 0,
        "some bursts arrived coalesced"
    );
    assert_eq!(
        n,
        0,
        "{} backend allocated {n} times in 50 rounds",
        kind.as_str()
    );
}

#[test]
fn the_portable_backend_receives_and_sends_without_allocating_after_warm_up() {
    receive_and_send_without_allocating(IoKind::Portable);
}

#[test]
fn the_io_uring_backend_receives_and_sends_without_allocating_after_warm_up() {
    match io::resolve(IoChoice::IoUring) {
        Ok(k) => receive_and_send_without_allocating(k),
        Err(e) => eprintln!("skipped: io_uring unavailable here: {e}"),
    }
}
