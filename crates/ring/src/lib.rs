//! A bounded single-producer single-consumer ring (DESIGN.md decision 5): one per ordered
//! pair of workers. Wait-free on both sides; a full ring refuses the item (the caller drops
//! and counts it) and never blocks or grows.
//!
//! Layout: the producer's and the consumer's index each sit on their own cache line, and
//! each side keeps a private copy of the other's index so that, while the ring is neither
//! full nor empty, push and pop touch only their own cache line.

#![deny(missing_docs)]

use std::cell::Cell;
use std::mem::MaybeUninit;

#[cfg(loom)]
use loom::cell::UnsafeCell;
#[cfg(loom)]
use loom::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};
#[cfg(not(loom))]
use std::cell::UnsafeCell;
#[cfg(not(loom))]
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

/// One slot. Under loom the cell is loom's, so the model checks every access for races.
struct Slot<T>(UnsafeCell<MaybeUninit<T>>);

impl<T> Slot<T> {
    fn new() -> Self {
        Slot(UnsafeCell::new(MaybeUninit::uninit()))
    }

    /// # Safety
    /// The caller has exclusive access to this empty slot.
    unsafe fn write(&self, v: T) {
        #[cfg(loom)]
        // SAFETY: forwarded from the caller.
        self.0.with_mut(|p| unsafe { (*p).write(v) });
        #[cfg(not(loom))]
        // SAFETY: forwarded from the caller.
        unsafe {
            (*self.0.get()).write(v)
        };
    }

    /// # Safety
    /// The caller has exclusive access to this full slot and leaves it empty.
    unsafe fn take(&self) -> T {
        #[cfg(loom)]
        // SAFETY: forwarded from the caller.
        return self.0.with_mut(|p| unsafe { (*p).assume_init_read() });
        #[cfg(not(loom))]
        // SAFETY: forwarded from the caller.
        unsafe {
            (*self.0.get()).assume_init_read()
        }
    }
}

/// Pads and aligns a value to its own cache line pair (128 bytes: adjacent-line prefetch).
#[repr(align(128))]
struct Padded<T>(T);

struct Shared<T> {
    /// Next slot the consumer reads; written by the consumer only.
    head: Padded<AtomicUsize>,
    /// Next slot the producer writes; written by the producer only.
    tail: Padded<AtomicUsize>,
    mask: usize,
    slots: Box<[Slot<T>]>,
}

// SAFETY: a slot is accessed by one side at a time: the producer writes slot `i` only while
// `i - head < capacity` (the consumer is done with it) and publishes it with a Release store
// of `tail`; the consumer reads it only after an Acquire load of `tail` shows it, and hands it
// back with a Release store of `head`. `T: Send` is required to move values across threads.
unsafe impl<T: Send> Sync for Shared<T> {}
unsafe impl<T: Send> Send for Shared<T> {}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        let head = self.head.0.load(Ordering::Relaxed);
        let tail = self.tail.0.load(Ordering::Relaxed);
        let mut i = head;
        while i != tail {
            // SAFETY: slots in [head, tail) hold initialised values that nobody will read
            // (both sides are gone: this is the last reference).
            drop(unsafe { self.slots[i & self.mask].take() });
            i = i.wrapping_add(1);
        }
    }
}

/// The writing end.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    /// Our own `tail` (only we write it).
    tail: Cell<usize>,
    /// Last `head` we saw; refreshed only when the ring looks full.
    head_cache: Cell<usize>,
}

/// The reading end.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    head: Cell<usize>,
    /// Last `tail` we saw; refreshed only when the ring looks empty.
    tail_cache: Cell<usize>,
}

// SAFETY: each end is used by one thread at a time (they are not Sync); moving an end to
// another thread is fine when T is Send.
unsafe impl<T: Send> Send for Producer<T> {}
unsafe impl<T: Send> Send for Consumer<T> {}

/// A ring holding at least `capacity` items (rounded up to a power of two, minimum 2).
pub fn ring<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let cap = capacity.max(2).next_power_of_two();
    let slots = (0..cap)
        .map(|_| Slot::new())
        .collect::<Vec<_>>()
        .into_boxed_slice();
    let shared = Arc::new(Shared {
        head: Padded(AtomicUsize::new(0)),
        tail: Padded(AtomicUsize::new(0)),
        mask: cap - 1,
        slots,
    });
    (
        Producer {
            shared: shared.clone(),
            tail: Cell::new(0),
            head_cache: Cell::new(0),
        },
        Consumer {
            shared,
            head: Cell::new(0),
            tail_cache: Cell::new(0),
        },
    )
}

impl<T> Producer<T> {
    /// Appends `value`, or gives it back when the ring is full.
    pub fn push(&self, value: T) -> Result<(), T> {
        let tail = self.tail.get();
        let cap = self.shared.mask + 1;
        if tail.wrapping_sub(self.head_cache.get()) >= cap {
            self.head_cache
                .set(self.shared.head.0.load(Ordering::Acquire));
            if tail.wrapping_sub(self.head_cache.get()) >= cap {
                return Err(value);
            }
        }
        let slot = &self.shared.slots[tail & self.shared.mask];
        // SAFETY: `tail - head < cap`, so the consumer has released this slot (Acquire load
        // of `head` above or earlier) and will not read it before our Release store below.
        unsafe { slot.write(value) };
        let next = tail.wrapping_add(1);
        self.tail.set(next);
        self.shared.tail.0.store(next, Ordering::Release);
        Ok(())
    }

    /// Items currently queued (a snapshot; the consumer may be taking some).
    pub fn len(&self) -> usize {
        self.tail
            .get()
            .wrapping_sub(self.shared.head.0.load(Ordering::Relaxed))
    }

    /// True when nothing is queued (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ring's capacity.
    pub fn capacity(&self) -> usize {
        self.shared.mask + 1
    }
}

impl<T> Consumer<T> {
    /// Takes the oldest item, if any.
    pub fn pop(&self) -> Option<T> {
        let head = self.head.get();
        if head == self.tail_cache.get() {
            self.tail_cache
                .set(self.shared.tail.0.load(Ordering::Acquire));
            if head == self.tail_cache.get() {
                return None;
            }
        }
        let slot = &self.shared.slots[head & self.shared.mask];
        // SAFETY: `head < tail` (Acquire load of `tail` above or earlier), so the producer
        // wrote and published this slot and will not touch it until we release it below.
        let value = unsafe { slot.take() };
        let next = head.wrapping_add(1);
        self.head.set(next);
        self.shared.head.0.store(next, Ordering::Release);
        Some(value)
    }

    /// Items currently queued (a snapshot).
    pub fn len(&self) -> usize {
        self.shared
            .tail
            .0
            .load(Ordering::Relaxed)
            .wrapping_sub(self.head.get())
    }

    /// True when nothing is queued (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn items_come_out_in_order_and_a_full_ring_refuses() {
        let (p, c) = ring::<u32>(4);
        for i in 0..4 {
            assert!(p.push(i).is_ok());
        }
        assert_eq!(p.push(99), Err(99), "full ring gives the item back");
        assert_eq!(p.len(), 4);
        for i in 0..4 {
            assert_eq!(c.pop(), Some(i));
        }
        assert_eq!(c.pop(), None);
        assert!(p.push(5).is_ok(), "space is reusable after pops");
        assert_eq!(c.pop(), Some(5));
    }

    #[test]
    fn capacity_rounds_up_to_a_power_of_two() {
        let (p, _c) = ring::<u8>(5);
        assert_eq!(p.capacity(), 8);
        let (p, _c) = ring::<u8>(0);
        assert_eq!(p.capacity(), 2);
    }

    #[test]
    fn items_left_in_the_ring_are_dropped_with_it() {
        let item = std::sync::Arc::new(());
        let (p, c) = ring(8);
        for _ in 0..5 {
            assert!(p.push(item.clone()).is_ok());
        }
        drop(c.pop());
        drop(p);
        drop(c);
        assert_eq!(std::sync::Arc::strong_count(&item), 1);
    }

    #[test]
    fn two_threads_pass_a_million_items_without_loss_or_reordering() {
        const N: u64 = 1_000_000;
        let (p, c) = ring::<u64>(64);
        let producer = std::thread::spawn(move || {
            let mut i = 0;
            while i < N {
                if p.push(i).is_ok() {
                    i += 1;
                } else {
                    std::hint::spin_loop();
                }
            }
        });
        let mut next = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while next < N {
            match c.pop() {
                Some(v) => {
                    assert_eq!(v, next);
                    next += 1;
                }
                None => {
                    assert!(std::time::Instant::now() < deadline, "stalled at {next}");
                    std::hint::spin_loop();
                }
            }
        }
        producer.join().expect("producer");
    }
}

/// Exhaustive interleavings with loom: `RUSTFLAGS="--cfg loom" cargo test -p rtcd-ring --release`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    #[test]
    fn every_interleaving_delivers_each_item_once_in_order() {
        loom::model(|| {
            let (p, c) = ring::<usize>(2);
            let t = loom::thread::spawn(move || {
                let mut refused = 0;
                for i in 0..3 {
                    if p.push(i).is_err() {
                        refused += 1;
                    }
                }
                refused
            });
            let mut got = Vec::new();
            for _ in 0..3 {
                if let Some(v) = c.pop() {
                    got.push(v);
                }
            }
            let refused = t.join().expect("producer");
            while let Some(v) = c.pop() {
                got.push(v);
            }
            // In order, no duplicates, and everything not refused arrives.
            assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
            assert_eq!(got.len() + refused, 3, "{got:?} refused {refused}");
        });
    }

    #[test]
    fn values_left_behind_are_dropped_exactly_once() {
        loom::model(|| {
            let item = Arc::new(());
            let (p, c) = ring(2);
            let i2 = item.clone();
            let t = loom::thread::spawn(move || {
                let _ = p.push(i2.clone());
                let _ = p.push(i2);
            });
            let _ = c.pop();
            t.join().expect("producer");
            drop(c);
            assert_eq!(Arc::strong_count(&item), 1);
        });
    }
}
