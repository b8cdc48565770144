//! The data plane: one worker thread per core, each owning its sockets, its sessions (one
//! str0m `Rtc` each), their timers and its counters. The control plane reaches a worker
//! only through [`DataPlane::submit`]; workers answer with notices.

pub mod engine;
pub mod io;
pub mod media;
pub mod net;
pub mod stats;
pub mod worker;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, TrySendError};

use crate::bridge::{Command, DataPlane, NoticeTx, SubmitError, WorkerCounters, WorkerId};
use engine::Engine;
use media::{LocalCandidates, Media, MediaSettings};
use net::Endpoint;
use stats::WorkerStats;
use worker::{Handover, Worker, WorkerHandle, WorkerParts};

pub use media::SIGNALING_TIMEOUT;

/// Commands a worker can have queued before the control plane sees `Full`.
pub const COMMAND_QUEUE: usize = 4096;
/// Datagrams one worker can have queued from the others.
pub const HANDOVER_QUEUE: usize = 8192;
/// Media packets in flight from one worker to another (per ordered pair).
pub const FANOUT_RING: usize = 8192;
/// Call-state messages one worker can have queued from the others.
pub const PEER_QUEUE: usize = 65536;

/// What the pool needs to start.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub workers: usize,
    /// UDP sockets to bind on every worker (same addresses, SO_REUSEPORT).
    pub udp: Vec<Endpoint>,
    /// Passive ICE-TCP listeners to bind on every worker.
    pub tcp: Vec<Endpoint>,
    /// Host candidates advertised to clients.
    pub candidates: LocalCandidates,
    pub media: MediaSettings,
    /// Pin worker `i` to core `i % cores`.
    pub pin: bool,
    /// UDP I/O backend (`rtc.io_backend`).
    pub io: io::IoChoice,
}

/// The pool of workers; implements [`DataPlane`] for the control plane.
pub struct WorkerPool {
    handles: Arc<Vec<WorkerHandle>>,
    threads: Vec<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("rtc: {0}")]
    Io(#[from] std::io::Error),
    #[error("rtc: {0}")]
    Engine(#[from] engine::EngineError),
}

impl WorkerPool {
    pub fn start(settings: PoolSettings, notices: NoticeTx) -> Result<WorkerPool, StartError> {
        let n = settings.workers.max(1);
        net::probe_ports(&settings.udp, &settings.tcp)?;
        let io_kind = io::resolve(settings.io)?;
        tracing::info!(backend = io_kind.as_str(), "rtc: UDP I/O backend");
        let mut parts = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        // rings[src][dst]: the fan-out ring from worker src to worker dst.
        let mut producers: Vec<Vec<Option<rtcd_ring::Producer<media::Forwarded>>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        let mut consumers: Vec<Vec<(usize, rtcd_ring::Consumer<media::Forwarded>)>> =
            (0..n).map(|_| Vec::new()).collect();
        for (src, row) in producers.iter_mut().enumerate() {
            for (dst, slot) in row.iter_mut().enumerate() {
                if src != dst {
                    let (p, c) = rtcd_ring::ring(FANOUT_RING);
                    *slot = Some(p);
                    consumers[dst].push((src, c));
                }
            }
        }
        let mut producers = producers.into_iter();
        let mut consumers = consumers.into_iter();
        for id in 0..n {
            let poll = mio::Poll::new()?;
            let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0))?);
            let (cmd_tx, cmd_rx) = bounded(COMMAND_QUEUE);
            let (ho_tx, ho_rx) = bounded::<Handover>(HANDOVER_QUEUE);
            let (peer_tx, peer_rx) = bounded(PEER_QUEUE);
            let sleeping = Arc::new(AtomicBool::new(false));
            let stats = Arc::new(WorkerStats::new(io_kind));
            let mut sockets = Vec::new();
            for e in &settings.udp {
                sockets.push(net::udp_socket(e.local)?);
            }
            let io = io::new_backend(io_kind, sockets)?;
            if id == 0 {
                tracing::info!(path = io.recv_path(), "rtc: UDP receive path");
            }
            let mut tcp = Vec::new();
            for e in &settings.tcp {
                tcp.push((net::tcp_listener(e.local)?, *e));
            }
            let mut media = Media::new(
                id,
                Engine::new(settings.media.bandwidth_estimation)?,
                settings.media,
                settings.candidates.clone(),
                notices.clone(),
                stats.clone(),
            );
            media.set_workers(n);
            parts.push(WorkerParts {
                id,
                poll,
                io,
                udp: settings.udp.clone(),
                tcp,
                media,
                commands: cmd_rx,
                handovers: ho_rx,
                peer_rx,
                rings_out: producers.next().unwrap_or_default(),
                rings_in: consumers.next().unwrap_or_default(),
                sleeping: sleeping.clone(),
                stats: stats.clone(),
            });
            handles.push(WorkerHandle {
                commands: cmd_tx,
                handovers: ho_tx,
                peer: peer_tx,
                waker,
                sleeping,
                stats,
            });
        }
        let handles = Arc::new(handles);
        let cores = if settings.pin {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut threads = Vec::with_capacity(n);
        for p in parts {
            let id = p.id;
            let w = Worker::new(p, handles.clone())?;
            let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
            let t = std::thread::Builder::new()
                .name(format!("rtcd-worker-{id}"))
                .spawn(move || {
                    if let Some(c) = core {
                        if !core_affinity::set_for_current(c) {
                            tracing::warn!(worker = id, core = c.id, "could not pin worker");
                        }
                    }
                    w.run()
                })?;
            threads.push(t);
        }
        Ok(WorkerPool { handles, threads })
    }

    /// Stops every worker (each closes its sessions first) and joins the threads.
    pub fn stop(&mut self) {
        for h in self.handles.iter() {
            let _ = h
                .commands
                .send_timeout(Command::Shutdown, Duration::from_secs(1));
            let _ = h.waker.wake();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.stop();
    }
}

impl DataPlane for WorkerPool {
    fn worker_count(&self) -> usize {
        self.handles.len()
    }

    fn submit(&self, worker: WorkerId, cmd: Command) -> Result<(), SubmitError> {
        let h = self
            .handles
            .get(worker.0)
            .ok_or(SubmitError::NoSuchWorker)?;
        h.commands.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(_) => SubmitError::Full,
            TrySendError::Disconnected(_) => SubmitError::Closed,
        })?;
        // Commands are rare next to packets; always wake (cheap when already awake).
        let _ = h.waker.wake();
        Ok(())
    }

    fn counters(&self) -> Vec<WorkerCounters> {
        self.handles
            .iter()
            .enumerate()
            .map(|(i, h)| h.stats.snapshot(i))
            .collect()
    }
}
