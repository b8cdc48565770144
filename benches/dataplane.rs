//! Data-plane micro-benchmarks (issue 4): the UDP I/O backends over loopback, the
//! cross-worker handover of a datagram, and the cross-worker fan-out handoff.
//! `cargo bench --bench dataplane` (numbers in the README; never asserted in tests).

use std::hint::black_box;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rtcd::data::io::{self, IoChoice, IoKind, RecvBatch};
use rtcd::data::media::Forwarded;
use rtcd::data::worker::Handover;

const BURST: usize = 64;

fn backend(kind: IoKind) -> (Box<dyn io::UdpIo>, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let _ = socket2::SockRef::from(&s).set_recv_buffer_size(8 << 20);
    let addr = s.local_addr().expect("addr");
    (io::new_backend(kind, vec![s]).expect("backend"), addr)
}

/// A burst of 64 × 1,200-byte datagrams sent by one backend and received by another.
fn udp_backends(c: &mut Criterion) {
    let mut g = c.benchmark_group("udp_backend_burst_64x1200");
    g.throughput(Throughput::Elements(BURST as u64));
    let mut variants = vec![
        ("portable", IoKind::Portable, false),
        ("portable+gso", IoKind::Portable, true),
    ];
    if io::resolve(IoChoice::IoUring).is_ok() {
        variants.push(("io_uring", IoKind::IoUring, false));
        variants.push(("io_uring+gso", IoKind::IoUring, true));
    }
    for (name, kind, gso) in variants {
        let (mut tx, _) = backend(kind);
        tx.set_gso(gso);
        let (mut rx, rx_addr) = backend(kind);
        let mut batch = RecvBatch::default();
        g.bench_with_input(BenchmarkId::from_parameter(name), &kind, |b, _| {
            b.iter(|| {
                for _ in 0..BURST {
                    tx.send(0, rx_addr, vec![7u8; 1200]);
                }
                tx.flush();
                let mut got = 0;
                let mut spins = 0;
                while got < BURST && spins < 100_000 {
                    rx.recv(&mut batch);
                    got += batch.len();
                    spins += 1;
                }
                tx.flush(); // reap send completions (io_uring)
                black_box(got)
            })
        });
    }
    g.finish();
}

/// What a worker pays to pass a datagram it received for a session it does not own: a
/// copy into a `Vec` and a bounded channel hop (the owner's side included).
fn handover(c: &mut Criterion) {
    let mut g = c.benchmark_group("handover_1200b");
    g.throughput(Throughput::Elements(1));
    let (tx, rx) = crossbeam_channel::bounded::<Handover>(8192);
    let datagram = vec![9u8; 1200];
    let source: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    g.bench_function("handover_through_queue", |b| {
        b.iter(|| {
            let h = Handover::Udp {
                socket: 0,
                source,
                bytes: datagram.to_vec(),
            };
            let _ = tx.try_send(h);
            black_box(rx.try_recv().ok())
        })
    });
    g.bench_function("direct_on_owner", |b| {
        b.iter(|| black_box(rtcd_proto::stun::binding_request_local_ufrag(&datagram)))
    });
    g.finish();
}

/// The per-destination-worker cost of cross-core fan-out: one `Forwarded` (shared payload)
/// through an SPSC ring, versus the clone a local subscriber costs anyway.
fn fanout_handoff(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout_handoff");
    g.throughput(Throughput::Elements(1));
    let f = Forwarded {
        call: (Arc::from("group"), Arc::from("call")),
        track: Arc::from("voice_sessA_abcdefgh"),
        seq: 1,
        rtp_time: 0,
        received: Instant::now(),
        marker: false,
        audio_level: Some(-30),
        voice_activity: Some(true),
        video: false,
        payload: Arc::from(vec![1u8; 100]),
    };
    let (p, q) = rtcd_ring::ring::<Forwarded>(8192);
    g.bench_function("ring_push_pop", |b| {
        b.iter(|| {
            let _ = p.push(f.clone());
            black_box(q.pop())
        })
    });
    g.bench_function("local_clone_only", |b| b.iter(|| black_box(f.clone())));
    g.finish();
}

criterion_group!(benches, udp_backends, handover, fanout_handoff);
criterion_main!(benches);
