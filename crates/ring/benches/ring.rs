//! Ring push/pop against crossbeam's ArrayQueue and rtrb (issue 4 benchmarks).
//! `cargo bench -p rtcd-ring`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const BATCH: u64 = 64;

fn same_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring_push_pop_64");
    g.throughput(Throughput::Elements(BATCH));
    let item = Arc::new([0u8; 1200]);
    let (p, q) = rtcd_ring::ring::<Arc<[u8; 1200]>>(1024);
    g.bench_function("rtcd_ring", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                let _ = p.push(item.clone());
            }
            for _ in 0..BATCH {
                black_box(q.pop());
            }
        })
    });
    let aq = crossbeam_queue::ArrayQueue::new(1024);
    g.bench_function("crossbeam_array_queue", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                let _ = aq.push(item.clone());
            }
            for _ in 0..BATCH {
                black_box(aq.pop());
            }
        })
    });
    let (mut rp, mut rc) = rtrb::RingBuffer::new(1024);
    g.bench_function("rtrb", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                let _ = rp.push(item.clone());
            }
            for _ in 0..BATCH {
                black_box(rc.pop().ok());
            }
        })
    });
    g.finish();
}

/// Producer and consumer on two threads: items per second through the ring.
fn cross_thread(c: &mut Criterion) {
    const N: u64 = 100_000;
    let mut g = c.benchmark_group("ring_cross_thread_100k");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.bench_function("rtcd_ring", |b| {
        b.iter(|| {
            let (p, q) = rtcd_ring::ring::<u64>(1024);
            let t = std::thread::spawn(move || {
                let mut i = 0;
                while i < N {
                    if p.push(i).is_ok() {
                        i += 1;
                    }
                }
            });
            let mut n = 0;
            while n < N {
                if q.pop().is_some() {
                    n += 1;
                }
            }
            t.join().unwrap();
        })
    });
    g.bench_function("crossbeam_array_queue", |b| {
        b.iter(|| {
            let q = Arc::new(crossbeam_queue::ArrayQueue::<u64>::new(1024));
            let p = q.clone();
            let t = std::thread::spawn(move || {
                let mut i = 0;
                while i < N {
                    if p.push(i).is_ok() {
                        i += 1;
                    }
                }
            });
            let mut n = 0;
            while n < N {
                if q.pop().is_some() {
                    n += 1;
                }
            }
            t.join().unwrap();
        })
    });
    g.bench_function("rtrb", |b| {
        b.iter(|| {
            let (mut p, mut q) = rtrb::RingBuffer::<u64>::new(1024);
            let t = std::thread::spawn(move || {
                let mut i = 0;
                while i < N {
                    if p.push(i).is_ok() {
                        i += 1;
                    }
                }
            });
            let mut n = 0;
            while n < N {
                if q.pop().is_ok() {
                    n += 1;
                }
            }
            t.join().unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, same_thread, cross_thread);
criterion_main!(benches);
