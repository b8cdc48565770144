//! Data-plane micro-benchmarks (issue 4): the UDP I/O backends over loopback, the
//! cross-worker handover of a datagram, the cross-worker fan-out handoff, and fan-out to N
//! subscribers on one worker versus spread over two.
//! `cargo bench --bench dataplane` (numbers in the README; never asserted in tests).

use std::hint::black_box;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rtcd::data::io::{self, IoChoice, IoKind, RecvBatch, UringRecv, UringSend};
use rtcd::data::media::Forwarded;
use rtcd::data::worker::Handover;

const BURST: usize = 64;

/// How a bench variant builds its backend.
#[derive(Clone, Copy)]
enum Build {
    Portable,
    Uring(UringRecv),
    /// Multishot receive, zero-copy sends from registered buffers.
    UringZeroCopy,
}

fn backend(build: Build) -> (Box<dyn io::UdpIo>, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let _ = socket2::SockRef::from(&s).set_recv_buffer_size(8 << 20);
    let addr = s.local_addr().expect("addr");
    let io = match build {
        Build::Portable => io::new_backend(IoKind::Portable, vec![s]),
        Build::Uring(recv) => io::new_uring(vec![s], recv),
        Build::UringZeroCopy => {
            io::new_uring_with(vec![s], UringRecv::Multishot, UringSend::ZeroCopyFixed)
        }
    };
    (io.expect("backend"), addr)
}

/// A burst of 64 × 1,200-byte datagrams sent by one backend and received by another (both
/// of the variant's kind, in one thread); `+gso`: the sender coalesces the burst, `+gro`:
/// the receiver takes coalesced bursts whole and splits them (without it the kernel splits).
fn udp_backends(c: &mut Criterion) {
    let mut g = c.benchmark_group("udp_backend_burst_64x1200");
    g.throughput(Throughput::Elements(BURST as u64));
    let mut variants = vec![
        ("portable", Build::Portable, false, false),
        ("portable+gso", Build::Portable, true, false),
        ("portable+gso+gro", Build::Portable, true, true),
    ];
    if io::resolve(IoChoice::IoUring).is_ok() {
        let single = Build::Uring(UringRecv::SingleShot);
        let multi = Build::Uring(UringRecv::Multishot);
        variants.push(("io_uring_single_shot", single, false, false));
        variants.push(("io_uring_single_shot+gso", single, true, false));
        variants.push(("io_uring_multishot", multi, false, false));
        variants.push(("io_uring_multishot+gso", multi, true, false));
        variants.push(("io_uring_multishot+gso+gro", multi, true, true));
        variants.push((
            "io_uring_multishot+zc_fixed",
            Build::UringZeroCopy,
            false,
            false,
        ));
        variants.push((
            "io_uring_multishot+gso+zc_fixed",
            Build::UringZeroCopy,
            true,
            false,
        ));
        variants.push((
            "io_uring_multishot+gso+gro+zc_fixed",
            Build::UringZeroCopy,
            true,
            true,
        ));
    }
    for (name, build, gso, gro) in variants {
        let (mut tx, _) = backend(build);
        tx.set_gso(gso);
        let (mut rx, rx_addr) = backend(build);
        if rx.set_gro(gro) != gro {
            eprintln!("{name}: skipped, no UDP GRO here");
            continue;
        }
        let (mut batch, mut reaped) = (RecvBatch::default(), RecvBatch::default());
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
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
                // Reap the sender's completions (io_uring reaps them in `recv`; without
                // this its completion queue overflows and its send slots pile up).
                tx.recv(&mut reaped);
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
                rx_ns: 0,
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

/// A subscriber's outbound state in [`fanout_spread`]: its SSRC, sequence offset and
/// SRTP key.
struct Subscriber {
    ssrc: u32,
    seq_offset: u16,
    key: ring::aead::LessSafeKey,
}

fn subscribers(n: usize) -> Vec<Subscriber> {
    (0..n)
        .map(|i| Subscriber {
            ssrc: 0x1000 + i as u32,
            seq_offset: (i * 977) as u16,
            key: ring::aead::LessSafeKey::new(
                ring::aead::UnboundKey::new(&ring::aead::AES_128_GCM, &[i as u8; 16]).expect("key"),
            ),
        })
        .collect()
}

/// The per-subscriber work approximated: a fresh datagram with the RTP header rewritten
/// for the subscriber, sealed with its AES-128-GCM key (as SRTP AEAD does), handed on and
/// freed (the send path takes an owned `Vec` per datagram).
fn write_to(sub: &Subscriber, f: &Forwarded) {
    let seq = (f.seq as u16).wrapping_add(sub.seq_offset);
    let mut out = Vec::with_capacity(12 + f.payload.len() + 16);
    out.extend_from_slice(&[0x80, 96 | if f.marker { 0x80 } else { 0 }]);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&f.rtp_time.to_be_bytes());
    out.extend_from_slice(&sub.ssrc.to_be_bytes());
    out.extend_from_slice(&f.payload);
    let mut nonce = [0u8; 12];
    nonce[2..6].copy_from_slice(&sub.ssrc.to_be_bytes());
    nonce[10..12].copy_from_slice(&seq.to_be_bytes());
    let (header, body) = out.split_at_mut(12);
    let tag = sub
        .key
        .seal_in_place_separate_tag(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::from(&*header),
            body,
        )
        .expect("seal");
    out.extend_from_slice(tag.as_ref());
    black_box(out);
}

/// Packets per measured iteration of [`fanout_spread`] (a burst, as a video frame is).
const FANOUT_BURST: usize = 16;

/// Fan-out of one publisher's packets to N subscribers: all on the publisher's worker,
/// versus half of them on a second worker reached through the SPSC ring (one `Forwarded`
/// per packet per destination worker, DESIGN.md decision 5). Per-subscriber work is
/// [`write_to`] (header rewrite + AES-GCM seal + an owned datagram), not str0m's full send
/// path, so it is a lower bound on what spreading takes off the publisher's worker.
/// Throughput counts delivered (packet, subscriber) pairs.
///
/// * `local`: one thread writes every subscriber's copy.
/// * `spread_cpu`: one thread does both workers' parts (push, its half, pop, the other
///   half): the total CPU a packet costs when spread, handoff included.
/// * `spread_two_threads`: a second thread pops and writes its half while the first writes
///   its own; wall time per burst, so it shows the parallel gain and the cross-core cost.
fn fanout_spread(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout_1_to_n_1100b");
    let f = Forwarded {
        call: (Arc::from("group"), Arc::from("call")),
        track: Arc::from("screen_sessA_abcdefgh"),
        seq: 70_000,
        rtp_time: 90_000,
        received: Instant::now(),
        marker: false,
        audio_level: None,
        voice_activity: None,
        video: true,
        payload: Arc::from(vec![3u8; 1100]),
    };
    for n in [2usize, 8, 32] {
        g.throughput(Throughput::Elements((FANOUT_BURST * n) as u64));
        let all = subscribers(n);
        g.bench_with_input(BenchmarkId::new("local", n), &n, |b, _| {
            b.iter(|| {
                for _ in 0..FANOUT_BURST {
                    for s in &all {
                        write_to(s, &f);
                    }
                }
            })
        });
        let (here, there) = all.split_at(n / 2);
        let (p, q) = rtcd_ring::ring::<Forwarded>(1024);
        g.bench_with_input(BenchmarkId::new("spread_cpu", n), &n, |b, _| {
            b.iter(|| {
                for _ in 0..FANOUT_BURST {
                    let _ = p.push(f.clone());
                    for s in here {
                        write_to(s, &f);
                    }
                }
                while let Some(r) = q.pop() {
                    for s in there {
                        write_to(s, &r);
                    }
                }
            })
        });
        // The second worker: polls the ring (a busy worker would not sleep either).
        let there = subscribers(n).into_iter().skip(n / 2).collect::<Vec<_>>();
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, q) = rtcd_ring::ring::<Forwarded>(1024);
        let worker = {
            let (done, stop) = (done.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match q.pop() {
                        Some(r) => {
                            for s in &there {
                                write_to(s, &r);
                            }
                            done.fetch_add(1, Ordering::Release);
                        }
                        // Yield rather than spin: the machine may be shared.
                        None => std::thread::yield_now(),
                    }
                }
            })
        };
        let mut sent = 0u64;
        g.bench_with_input(BenchmarkId::new("spread_two_threads", n), &n, |b, _| {
            b.iter(|| {
                for _ in 0..FANOUT_BURST {
                    let mut pkt = f.clone();
                    while let Err(back) = p.push(pkt) {
                        pkt = back;
                        std::thread::yield_now();
                    }
                    for s in here {
                        write_to(s, &f);
                    }
                }
                sent += FANOUT_BURST as u64;
                while done.load(Ordering::Acquire) < sent {
                    std::thread::yield_now();
                }
            })
        });
        stop.store(true, Ordering::Relaxed);
        worker.join().expect("second worker");
    }
    g.finish();
}

criterion_group!(
    benches,
    udp_backends,
    handover,
    fanout_handoff,
    fanout_spread
);
criterion_main!(benches);
