//! The data plane: one worker thread per core, each owning its sessions.
//!
//! This is the worker shell: threads, bounded command queues, the per-session signaling
//! deadline (the client's first offer must arrive within 10 s, or the session closes with a
//! `close` to the plugin, as upstream), leave and shutdown. The media engine (str0m, sockets,
//! fan-out) plugs into the worker's session table.

use std::collections::HashMap;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::bridge::{
    CloseReason, Command, DataPlane, MessageType, Notice, NoticeTx, SessionInfo, SessionKey,
    SubmitError, WorkerId,
};

/// Commands a worker can have queued before the control plane sees `Full`.
pub const COMMAND_QUEUE: usize = 4096;
/// rtcd: the first offer must arrive within this time after `join`.
pub const SIGNALING_TIMEOUT: Duration = Duration::from_secs(10);

struct WorkerHandle {
    tx: Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

/// The pool of workers; implements [`DataPlane`] for the control plane.
pub struct WorkerPool {
    workers: Vec<WorkerHandle>,
}

#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub workers: usize,
    pub signaling_timeout: Duration,
}

impl WorkerPool {
    pub fn start(settings: PoolSettings, notices: NoticeTx) -> std::io::Result<WorkerPool> {
        let n = settings.workers.max(1);
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = bounded(COMMAND_QUEUE);
            let notices = notices.clone();
            let thread = std::thread::Builder::new()
                .name(format!("rtcd-worker-{i}"))
                .spawn(move || Worker::new(WorkerId(i), settings, notices).run(rx))?;
            workers.push(WorkerHandle {
                tx,
                thread: Some(thread),
            });
        }
        Ok(WorkerPool { workers })
    }

    /// Stops every worker (each closes its sessions first) and joins the threads.
    pub fn stop(&mut self) {
        for w in &self.workers {
            let _ = w.tx.send_timeout(Command::Shutdown, Duration::from_secs(1));
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
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
        self.workers.len()
    }

    fn submit(&self, worker: WorkerId, cmd: Command) -> Result<(), SubmitError> {
        let w = self
            .workers
            .get(worker.0)
            .ok_or(SubmitError::NoSuchWorker)?;
        w.tx.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(_) => SubmitError::Full,
            TrySendError::Disconnected(_) => SubmitError::Closed,
        })
    }
}

struct Session {
    info: SessionInfo,
    /// Set until the first offer has been handled.
    offer_deadline: Option<Instant>,
}

struct Worker {
    id: WorkerId,
    settings: PoolSettings,
    notices: NoticeTx,
    sessions: HashMap<SessionKey, Session>,
}

impl Worker {
    fn new(id: WorkerId, settings: PoolSettings, notices: NoticeTx) -> Self {
        Worker {
            id,
            settings,
            notices,
            sessions: HashMap::new(),
        }
    }

    fn run(mut self, rx: Receiver<Command>) {
        tracing::debug!(worker = %self.id, "worker started");
        loop {
            let now = Instant::now();
            let next = self
                .sessions
                .values()
                .filter_map(|s| s.offer_deadline)
                .min();
            let wait = next.map_or(Duration::from_secs(1), |d| d.saturating_duration_since(now));
            match rx.recv_timeout(wait) {
                Ok(Command::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(cmd) => self.handle(cmd, Instant::now()),
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.expire(Instant::now());
        }
        let keys: Vec<SessionKey> = self.sessions.keys().cloned().collect();
        for key in keys {
            self.close(&key, CloseReason::Shutdown);
        }
        tracing::debug!(worker = %self.id, "worker stopped");
    }

    fn handle(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::Join(info) => {
                let key = info.key.clone();
                self.sessions.insert(
                    key,
                    Session {
                        info,
                        offer_deadline: Some(now + self.settings.signaling_timeout),
                    },
                );
            }
            Command::Signal { key, msg_type, .. } => {
                let Some(s) = self.sessions.get(&key) else {
                    tracing::debug!(session = %key, "signal for unknown session dropped");
                    return;
                };
                if msg_type == MessageType::Sdp {
                    tracing::warn!(session = %key, callID = %s.info.call_id, "no media engine in this build; the offer cannot be answered");
                }
            }
            Command::Leave { key } => self.close(&key, CloseReason::Leave),
            Command::Shutdown => {}
        }
    }

    fn expire(&mut self, now: Instant) {
        let expired: Vec<SessionKey> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.offer_deadline.is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            tracing::info!(session = %key, "no offer within the signaling timeout");
            self.close(&key, CloseReason::SignalingTimeout);
        }
    }

    fn close(&mut self, key: &SessionKey, reason: CloseReason) {
        if self.sessions.remove(key).is_some() {
            let n = Notice::Closed {
                key: key.clone(),
                reason,
            };
            if self.notices.try_send(n).is_err() {
                tracing::error!(session = %key, "notice queue full: close notification lost");
            }
        }
    }
}
