//! UDP I/O backends behind one trait (DESIGN.md decision 4): io_uring where the kernel
//! allows it, and a portable backend of non-blocking sockets with `recvmmsg`/`sendmmsg`.
//!
//! Both receive into a caller-owned [`RecvBatch`] and send from owned buffers queued during
//! a loop turn and submitted together at its end ([`UdpIo::flush`]). Readiness comes from
//! the worker's epoll (mio): the portable backend registers its sockets, the io_uring
//! backend its ring's file descriptor (readable while completions are waiting).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

/// Largest datagram received (rtcd reads with MTU 1460; leave room).
pub const SLOT: usize = 2048;
/// Messages per receive batch.
pub const BATCH: usize = 32;
/// Receive space per message with UDP GRO: a coalesced burst is at most one UDP payload
/// (rust-stack.md §2: smaller buffers silently truncate it).
pub const GRO_SLOT: usize = 65_536;
/// Linux `UDP_GRO` (since 5.0): the socket option and the control message with the
/// segment size of a coalesced receive.
const UDP_GRO: libc::c_int = 104;
/// Receives kept in flight per socket on io_uring's single-shot fallback.
const URING_RECVS_PER_SOCKET: usize = 64;
/// Provided buffers shared by a worker's multishot receives (a power of two), each with
/// room for a GRO burst ([`GRO_SLOT`]).
const URING_BUFS: u16 = 256;
/// Bytes the kernel writes before a multishot datagram's payload: an
/// `io_uring_recvmsg_out` header, the source address and the control space.
const URING_BUF_HEAD: usize = 16 + size_of::<libc::sockaddr_storage>() + URING_CONTROL;
/// Control space per multishot receive: see [`CONTROL_WORDS`].
const URING_CONTROL: usize = CONTROL_WORDS * 8;
/// Control space per received message, in u64s (for alignment): a `UDP_GRO` control
/// message (an int, 24 bytes with its header) and an `SCM_TIMESTAMPNS` one (a timespec,
/// 32 bytes).
const CONTROL_WORDS: usize = 8;
/// Oldest kernel receive time believed: a timestamp further back than this (a wall-clock
/// step) counts as this old.
const MAX_RX_AGE: std::time::Duration = std::time::Duration::from_secs(1);
/// Buffer group id of the provided buffer ring.
const URING_BGID: u16 = 0;
/// Submission queue size.
const URING_ENTRIES: u32 = 1024;

/// Which backend a worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoKind {
    IoUring,
    Portable,
}

impl IoKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IoKind::IoUring => "io_uring",
            IoKind::Portable => "portable",
        }
    }
}

/// The configured choice (`rtc.io_backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoChoice {
    #[default]
    Auto,
    IoUring,
    Portable,
}

/// What `choice` resolves to on this kernel: `Auto` probes io_uring and falls back (for
/// example under a container's default seccomp profile); an explicit `IoUring` fails when
/// unavailable.
pub fn resolve(choice: IoChoice) -> io::Result<IoKind> {
    match choice {
        IoChoice::Portable => Ok(IoKind::Portable),
        IoChoice::IoUring => probe_uring().map(|()| IoKind::IoUring),
        IoChoice::Auto => Ok(match probe_uring() {
            Ok(()) => IoKind::IoUring,
            Err(e) => {
                tracing::warn!(error = %e, "io_uring unavailable; using the portable backend");
                IoKind::Portable
            }
        }),
    }
}

fn probe_uring() -> io::Result<()> {
    let ring = io_uring::IoUring::new(8)?;
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    for op in [
        io_uring::opcode::RecvMsg::CODE,
        io_uring::opcode::SendMsg::CODE,
    ] {
        if !probe.is_supported(op) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("io_uring opcode {op} not supported"),
            ));
        }
    }
    Ok(())
}

/// One received datagram inside a [`RecvBatch`].
#[derive(Debug, Clone, Copy)]
pub struct Datagram {
    /// Index of the socket it arrived on.
    pub sock: usize,
    pub source: SocketAddr,
    /// When the kernel received it (`SO_TIMESTAMPNS`, wall-clock ns; 0: not stamped).
    pub rx_ns: u64,
    at: At,
    len: usize,
}

/// Where a datagram's bytes are.
#[derive(Debug, Clone, Copy)]
enum At {
    /// In the batch's own buffer, at this offset.
    Own(usize),
    /// In an io_uring provided buffer the batch holds (see [`RecvBatch::held`]).
    Ring(*const u8),
}

/// Datagrams received in one call: in the batch's own preallocated buffer (the portable
/// path receives straight into it) or in place in io_uring provided buffers that the
/// batch holds until it is next passed to [`UdpIo::recv`]. Use one batch per backend
/// (the worker does): a batch dropped while holding buffers takes them out of the ring.
///
/// With UDP GRO one received message can carry many datagrams of one flow (a video
/// frame's burst): the batch splits it into its datagrams, so callers never see the
/// coalesced form.
pub struct RecvBatch {
    /// [`BATCH`] message slots of up to [`GRO_SLOT`] bytes. Allocated zeroed, so pages
    /// are only backed once the kernel writes into them.
    buf: Box<[u8]>,
    items: Vec<Datagram>,
    /// Messages (kernel receives, coalesced or not) in this batch.
    msgs: usize,
    /// Datagrams that arrived coalesced by GRO in this batch.
    coalesced: usize,
    /// Datagrams dropped as larger than [`SLOT`] in this batch.
    oversized: usize,
    /// Provided buffers (ids) of backend `holder` that `items` point into; handed back
    /// to the kernel by that backend when the batch is next passed to it.
    held: Vec<u16>,
    holder: u64,
}

// SAFETY: the `At::Ring` pointers point into a backend's provided-buffer memory, which is
// never freed (see `BufRing`) and which the kernel does not write while the batch holds
// the buffer; the batch is used by one thread at a time like any owned value.
unsafe impl Send for RecvBatch {}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            buf: vec![0u8; BATCH * GRO_SLOT].into_boxed_slice(),
            items: Vec::with_capacity(BATCH * 4),
            msgs: 0,
            coalesced: 0,
            oversized: 0,
            held: Vec::with_capacity(BATCH),
            holder: 0,
        }
    }
}

impl RecvBatch {
    /// Datagrams in the batch.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Received messages (a GRO-coalesced message counts once).
    pub fn messages(&self) -> usize {
        self.msgs
    }

    /// Datagrams of this batch that arrived coalesced by GRO.
    pub fn coalesced(&self) -> usize {
        self.coalesced
    }

    /// Datagrams of this batch dropped as larger than any datagram served.
    pub fn oversized(&self) -> usize {
        self.oversized
    }

    pub fn get(&self, i: usize) -> Option<(Datagram, &[u8])> {
        let d = *self.items.get(i)?;
        let bytes = match d.at {
            At::Own(offset) => self.buf.get(offset..offset + d.len)?,
            // SAFETY: the pointer and length describe received bytes inside a provided
            // buffer this batch holds (not handed back to the kernel, never freed).
            At::Ring(p) => unsafe { std::slice::from_raw_parts(p, d.len) },
        };
        Some((d, bytes))
    }

    /// Empties the batch; provided buffers stay held until their backend takes them.
    fn clear(&mut self) {
        self.items.clear();
        self.msgs = 0;
        self.coalesced = 0;
        self.oversized = 0;
    }

    fn full(&self) -> bool {
        self.msgs >= BATCH
    }

    /// The batch's own bytes for message slot `slot` of `stride` bytes.
    fn slot_ptr(&mut self, slot: usize, stride: usize) -> Option<*mut u8> {
        let start = slot.checked_mul(stride)?;
        self.buf
            .get_mut(start..start + stride)
            .map(|s| s.as_mut_ptr())
    }

    /// Adds one received message (`len` bytes at `at`), split into its datagrams when GRO
    /// coalesced it (`seg`: the segment size from the `UDP_GRO` control message).
    fn push_message(
        &mut self,
        sock: usize,
        source: SocketAddr,
        at: At,
        len: usize,
        control: Control,
    ) {
        self.msgs += 1;
        let (seg, rx_ns) = (control.seg, control.rx_ns);
        let mut parts = 0;
        for (off, n) in gro_segments(len, seg) {
            parts += 1;
            if n > SLOT {
                self.oversized += 1;
                continue;
            }
            let at = match at {
                At::Own(o) => At::Own(o + off),
                // SAFETY: `off < len`, inside the received bytes.
                At::Ring(p) => At::Ring(unsafe { p.add(off) }),
            };
            self.items.push(Datagram {
                sock,
                source,
                rx_ns,
                at,
                len: n,
            });
        }
        if parts > 1 {
            self.coalesced += parts;
        }
    }

    /// Copies a message in (io_uring's single-shot path receives into its own slots).
    fn push_copy(&mut self, sock: usize, source: SocketAddr, bytes: &[u8]) {
        let slot = self.msgs;
        let len = bytes.len().min(SLOT);
        let Some(dst) = self.buf.get_mut(slot * SLOT..slot * SLOT + len) else {
            return;
        };
        dst.copy_from_slice(&bytes[..len]);
        self.push_message(sock, source, At::Own(slot * SLOT), len, Control::default());
    }
}

/// What a received message's control data says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Control {
    /// The GRO segment size: the `UDP_GRO` control message the kernel adds when it
    /// coalesced datagrams (`None`: one datagram).
    pub seg: Option<usize>,
    /// When the kernel received the message (`SCM_TIMESTAMPNS`: wall-clock ns; 0: not
    /// stamped, as in [`Datagram::rx_ns`]).
    pub rx_ns: u64,
}

/// Reads a received message's control data; malformed or truncated control messages end
/// the walk (what was read before them stands), unknown ones are skipped.
pub fn read_control(control: &[u8]) -> Control {
    let hdr = size_of::<libc::cmsghdr>();
    let align = |n: usize| n.div_ceil(size_of::<usize>()) * size_of::<usize>();
    let mut out = Control::default();
    let mut off = 0;
    while off + hdr <= control.len() {
        // SAFETY: `hdr` bytes at `off` are inside `control`; read unaligned.
        let c: libc::cmsghdr =
            unsafe { std::ptr::read_unaligned(control.as_ptr().add(off) as *const libc::cmsghdr) };
        let clen = c.cmsg_len as usize;
        if clen < hdr || off + clen > control.len() {
            break;
        }
        let data = &control[(off + align(hdr)).min(off + clen)..off + clen];
        match (c.cmsg_level, c.cmsg_type) {
            (libc::SOL_UDP, UDP_GRO) if data.len() >= size_of::<libc::c_int>() => {
                // SAFETY: the int lies inside this control message (checked above).
                let v: libc::c_int =
                    unsafe { std::ptr::read_unaligned(data.as_ptr() as *const libc::c_int) };
                out.seg = usize::try_from(v).ok().filter(|&s| s > 0);
            }
            (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS)
                if data.len() >= size_of::<libc::timespec>() =>
            {
                // SAFETY: the timespec lies inside this control message (checked above).
                let t: libc::timespec =
                    unsafe { std::ptr::read_unaligned(data.as_ptr() as *const libc::timespec) };
                out.rx_ns = u64::try_from(t.tv_sec)
                    .ok()
                    .zip(u64::try_from(t.tv_nsec).ok().filter(|&n| n < 1_000_000_000))
                    .and_then(|(s, n)| s.checked_mul(1_000_000_000)?.checked_add(n))
                    .unwrap_or(0);
            }
            _ => {}
        }
        off += align(clen);
    }
    out
}

/// Asks the kernel to stamp every datagram received on `sock` with its arrival time
/// (`SO_TIMESTAMPNS`), read back from the control data by [`read_control`].
pub fn set_rx_timestamps(sock: RawFd) -> io::Result<()> {
    set_int_option(sock, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
}

/// `setsockopt` with an int value.
fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a plain syscall with a c_int option value that outlives the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &v as *const _ as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The worker's clock and the wall clock read together, to turn the kernel's wall-clock
/// receive stamps into [`std::time::Instant`]s: what transport-wide congestion control
/// feedback reports to senders. A datagram that waited in the socket while the worker
/// was busy or descheduled keeps the time it really arrived, so a sender's bandwidth
/// probe read in one batch is not seen as arriving all at once.
#[derive(Debug, Clone, Copy)]
pub struct RxClock {
    now: std::time::Instant,
    real_ns: u64,
}

impl RxClock {
    pub fn now() -> RxClock {
        let now = std::time::Instant::now();
        let real_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        RxClock { now, real_ns }
    }

    /// When a datagram stamped `rx_ns` arrived, no earlier than `floor` and no later than
    /// this clock's reading; `fallback` when it carries no stamp.
    pub fn arrival(
        &self,
        rx_ns: u64,
        floor: std::time::Instant,
        fallback: std::time::Instant,
    ) -> std::time::Instant {
        if rx_ns == 0 {
            return fallback;
        }
        let age = std::time::Duration::from_nanos(self.real_ns.saturating_sub(rx_ns));
        let at = self
            .now
            .checked_sub(age.min(MAX_RX_AGE))
            .unwrap_or(self.now);
        at.max(floor.min(self.now))
    }
}

/// Turns UDP GRO on or off on a socket (Linux 5.0+).
pub fn set_udp_gro(sock: &UdpSocket, on: bool) -> io::Result<()> {
    set_int_option(sock.as_raw_fd(), libc::SOL_UDP, UDP_GRO, on.into())
}

/// Turns UDP GRO on or off on every socket; returns whether it is on. Where a socket
/// refuses it, all are turned off (partly on would be safe, but one state is simpler).
fn set_gro_all(sockets: &[UdpSocket], on: bool) -> bool {
    let ok = sockets.iter().all(|s| set_udp_gro(s, on).is_ok());
    if on && !ok {
        for s in sockets {
            let _ = set_udp_gro(s, false);
        }
        tracing::warn!("UDP GRO unavailable; receiving datagrams one by one");
    }
    on && ok
}

/// Receive timestamps on every socket (see [`RxClock`]); where refused, datagrams are
/// timed when read.
fn set_rx_timestamps_all(sockets: &[UdpSocket]) {
    for s in sockets {
        if let Err(e) = set_rx_timestamps(s.as_raw_fd()) {
            tracing::warn!(error = %e, "no kernel receive timestamps; datagrams timed when read");
        }
    }
}

/// Receives one message from socket `fd` into `buf` (at least [`GRO_SLOT`] bytes when GRO
/// is on): its length and control data (GRO segment size, receive time); `None` for a
/// message larger than `buf` (truncated, dropped).
pub fn recv_gro(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<(usize, Control)>> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut cmsg = [0u64; CONTROL_WORDS];
    // SAFETY: plain old data, zero is valid.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = size_of_val(&cmsg) as _;
    // SAFETY: the header, iovec, buffer and control space outlive the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        return Ok(None);
    }
    let control = control_bytes(&cmsg, msg.msg_controllen as usize);
    Ok(Some((n as usize, read_control(control))))
}

/// The first `len` bytes of a control buffer.
fn control_bytes(cmsg: &[u64; CONTROL_WORDS], len: usize) -> &[u8] {
    // SAFETY: u64s viewed as bytes; `len` is clamped to the buffer.
    let all = unsafe { std::slice::from_raw_parts(cmsg.as_ptr() as *const u8, size_of_val(cmsg)) };
    &all[..len.min(all.len())]
}

/// The datagrams of a `len`-byte message received with GRO (`seg`: its segment size, if
/// coalesced), as (offset, length) pairs: every one `seg` bytes but a shorter last one.
/// Both receive paths split with it; a datagram longer than [`SLOT`] is theirs to drop.
pub fn gro_segments(len: usize, seg: Option<usize>) -> impl Iterator<Item = (usize, usize)> {
    let seg = match seg {
        Some(s) if s > 0 && s < len => s,
        _ => len.max(1),
    };
    (0..len)
        .step_by(seg)
        .map(move |off| (off, seg.min(len - off)))
}

/// A UDP I/O backend over the worker's sockets.
pub trait UdpIo: Send {
    fn kind(&self) -> IoKind;
    /// Registers for readiness with the worker's poll; tokens from `base` upwards.
    fn register(&mut self, registry: &Registry, base: usize) -> io::Result<()>;
    /// Fills `batch` (cleared first) with received datagrams. True when it may have left
    /// datagrams behind (the caller comes back within the same turn budget).
    fn recv(&mut self, batch: &mut RecvBatch) -> bool;
    /// Queues a datagram; sent at [`UdpIo::flush`] (or earlier when the queue is full).
    fn send(&mut self, sock: usize, dest: SocketAddr, data: Vec<u8>);
    /// Submits queued sends. Returns how many sends are known to have failed since the
    /// last call.
    fn flush(&mut self) -> usize;
    /// Turns UDP GSO (coalesced same-destination bursts) on or off where supported.
    fn set_gso(&mut self, _on: bool) {}
    /// Turns UDP GRO (receiving a flow's burst as one message, split again in the
    /// [`RecvBatch`]) on or off. Returns whether it is on (false where unsupported).
    fn set_gro(&mut self, _on: bool) -> bool {
        false
    }
    /// How the backend receives (for logs and benchmarks).
    fn recv_path(&self) -> &'static str;
    /// Times a receive found no free buffer (io_uring multishot: the kernel ended the
    /// receive with `ENOBUFS`; the datagrams waited in the socket buffer until it was
    /// re-armed). Zero on paths without provided buffers.
    fn recv_buffer_exhaustions(&self) -> u64 {
        0
    }
}

pub fn new_backend(kind: IoKind, sockets: Vec<UdpSocket>) -> io::Result<Box<dyn UdpIo>> {
    match kind {
        IoKind::Portable => {
            for s in &sockets {
                s.set_nonblocking(true)?;
            }
            Ok(Box::new(Portable::new(sockets)))
        }
        IoKind::IoUring => new_uring(sockets, UringRecv::Multishot),
    }
}

/// How the io_uring backend receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UringRecv {
    /// One multishot `RecvMsg` per socket on a provided buffer ring (the default), falling
    /// back to `SingleShot` where the kernel refuses buffer rings or multishot receives.
    Multishot,
    /// 64 single-shot `RecvMsg` per socket, each re-armed after its completion (kept as the
    /// fallback and for comparison in `benches/dataplane.rs`).
    SingleShot,
}

/// An io_uring backend with an explicit receive path (`new_backend` picks `Multishot`).
pub fn new_uring(sockets: Vec<UdpSocket>, recv: UringRecv) -> io::Result<Box<dyn UdpIo>> {
    new_uring_with(sockets, recv, UringSend::Copy)
}

/// How the io_uring backend sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UringSend {
    /// `SendMsg` from the packets' own buffers; the kernel copies (the default).
    Copy,
    /// `SendMsgZc` from registered (fixed) buffers (kernel 6.15+ for fixed buffers with
    /// `SENDMSG_ZC`): the packets are copied into a registered buffer, the kernel sends
    /// without copying again. Measured slower here (README "Data plane": loopback and
    /// veth copy anyway, and each send costs a notification), so only for comparison in
    /// `benches/dataplane.rs`; runs without a free buffer fall back to `Copy`.
    ZeroCopyFixed,
}

/// An io_uring backend with explicit receive and send paths.
pub fn new_uring_with(
    sockets: Vec<UdpSocket>,
    recv: UringRecv,
    send: UringSend,
) -> io::Result<Box<dyn UdpIo>> {
    for s in &sockets {
        s.set_nonblocking(true)?;
    }
    let mut u = Uring::new(sockets, recv, URING_BUFS)?;
    if send == UringSend::ZeroCopyFixed {
        u.register_fixed(URING_FIXED_BUFS)?;
    }
    Ok(Box::new(u))
}

// ------------------------------------------------------------------ sockaddr helpers

fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn from_sockaddr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { &*(s as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(s as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

// ------------------------------------------------------------------ portable

/// Non-blocking sockets, `recvmmsg` and `sendmmsg`.
pub struct Portable {
    sockets: Vec<UdpSocket>,
    /// Next socket to read first (fairness across sockets).
    next: usize,
    sends: Vec<(usize, SocketAddr, Vec<u8>)>,
    failed: usize,
    /// Coalesce same-destination bursts with UDP GSO.
    gso: bool,
    /// UDP GRO is on for every socket (receive into [`GRO_SLOT`]-byte slots).
    gro: bool,
}

/// Datagrams per `sendmmsg`.
const SEND_BATCH: usize = 64;

impl Portable {
    fn new(sockets: Vec<UdpSocket>) -> Portable {
        let mut p = Portable {
            sockets,
            next: 0,
            sends: Vec::with_capacity(SEND_BATCH),
            failed: 0,
            gso: true,
            gro: false,
        };
        p.set_gro(true);
        set_rx_timestamps_all(&p.sockets);
        p
    }

    /// One `recvmmsg` on `fd` into the free message slots of `batch` (slots of
    /// [`GRO_SLOT`] bytes with GRO, else [`SLOT`]). Returns messages read.
    fn recv_fd(fd: RawFd, sock: usize, batch: &mut RecvBatch, gro: bool) -> usize {
        let start = batch.msgs;
        let want = BATCH.saturating_sub(start);
        if want == 0 {
            return 0;
        }
        let stride = if gro { GRO_SLOT } else { SLOT };
        // SAFETY: plain old data, zero is valid.
        let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        // Control space per message (GRO segment size, receive time); u64 for alignment.
        let mut cmsgs = [[0u64; CONTROL_WORDS]; BATCH];
        for i in 0..want {
            let Some(base) = batch.slot_ptr(start + i, stride) else {
                return 0;
            };
            iovs[i] = libc::iovec {
                iov_base: base as *mut libc::c_void,
                iov_len: stride,
            };
            let h = &mut msgs[i].msg_hdr;
            h.msg_name = &mut addrs[i] as *mut _ as *mut libc::c_void;
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = cmsgs[i].as_mut_ptr() as *mut libc::c_void;
            h.msg_controllen = size_of_val(&cmsgs[i]) as _;
        }
        // SAFETY: msgs/iovs/addrs/cmsgs and the batch buffer outlive the call; `want`
        // entries are initialised and their slots lie inside the batch's buffer.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                want as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n <= 0 {
            return 0;
        }
        let n = n as usize;
        for i in 0..n {
            let h = &msgs[i].msg_hdr;
            let Some(source) = from_sockaddr(&addrs[i]) else {
                batch.msgs += 1;
                continue;
            };
            if h.msg_flags & libc::MSG_TRUNC != 0 {
                // Larger than any datagram we serve (or than any GRO burst).
                batch.msgs += 1;
                batch.oversized += 1;
                continue;
            }
            let control = read_control(control_bytes(&cmsgs[i], h.msg_controllen as usize));
            let len = (msgs[i].msg_len as usize).min(stride);
            batch.push_message(sock, source, At::Own((start + i) * stride), len, control);
        }
        n
    }

    fn send_now(&mut self) {
        if self.sends.is_empty() {
            return;
        }
        let mut i = 0;
        while i < self.sends.len() {
            let sock = self.sends[i].0;
            // A run of datagrams for the same socket goes in one sendmmsg.
            let mut end = i + 1;
            while end < self.sends.len() && self.sends[end].0 == sock && end - i < SEND_BATCH {
                end += 1;
            }
            let Some(fd) = self.sockets.get(sock).map(|s| s.as_raw_fd()) else {
                self.failed += end - i;
                i = end;
                continue;
            };
            self.send_run(fd, i, end);
            i = end;
        }
        self.sends.clear();
    }

    /// Sends `self.sends[from..to]` (one socket, at most SEND_BATCH) with one `sendmmsg`.
    /// With GSO, consecutive datagrams to one destination whose sizes are equal (the last
    /// may be shorter) become one message the kernel segments: a video frame's burst to one
    /// viewer costs one trip through the stack instead of one per packet.
    fn send_run(&mut self, fd: RawFd, from: usize, to: usize) {
        // SAFETY: plain old data, zero is valid.
        let mut addrs: [libc::sockaddr_storage; SEND_BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut iovs: [libc::iovec; SEND_BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; SEND_BATCH] = unsafe { zeroed() };
        // One cmsg (UDP_SEGMENT, u16) per message; u64 for alignment.
        let mut cmsgs = [[0u64; 4]; SEND_BATCH];
        // Datagrams carried by each message.
        let mut segs = [0usize; SEND_BATCH];
        let mut m = 0;
        let mut k = from;
        while k < to {
            let (_, dest, data) = &self.sends[k];
            let seg = data.len();
            let n = if self.gso {
                gso_run(&self.sends[..to], k)
            } else {
                1
            };
            let (sa, len) = to_sockaddr(*dest);
            addrs[m] = sa;
            for j in 0..n {
                let b = &self.sends[k + j].2;
                iovs[k - from + j] = libc::iovec {
                    iov_base: b.as_ptr() as *mut libc::c_void,
                    iov_len: b.len(),
                };
            }
            let hdr = &mut msgs[m].msg_hdr;
            hdr.msg_name = &mut addrs[m] as *mut _ as *mut libc::c_void;
            hdr.msg_namelen = len;
            hdr.msg_iov = &mut iovs[k - from];
            hdr.msg_iovlen = n as _;
            if n > 1 {
                set_gso_segment(hdr, &mut cmsgs[m], seg);
            }
            segs[m] = n;
            m += 1;
            k += n;
        }
        let mut done = 0;
        while done < m {
            // SAFETY: entries done..m are initialised; their buffers live in `self.sends`
            // and the arrays above until after the call.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    msgs.as_mut_ptr().add(done),
                    (m - done) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                done += r as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if r < 0 && e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if segs[done] > 1
                && matches!(
                    e.raw_os_error(),
                    Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP)
                )
            {
                // No segmentation offload on this path: send unsegmented from now on.
                tracing::warn!(error = %e, "UDP GSO unavailable; sending datagrams one by one");
                self.gso = false;
            }
            // Full socket buffer or an error on the first message: drop it and carry on
            // with the rest (UDP is lossy; never block the loop).
            self.failed += segs[done];
            done += 1;
        }
    }
}

/// How many datagrams from `q[k..]` one GSO send can carry: same socket and destination,
/// equal sizes (a shorter one may end the run), within the kernel's limits.
fn gso_run(q: &[(usize, SocketAddr, Vec<u8>)], k: usize) -> usize {
    let Some((sock, dest, first)) = q.get(k) else {
        return 0;
    };
    let seg = first.len();
    let (mut n, mut total) = (1, seg);
    while n < GSO_MAX_SEGMENTS {
        let Some((s2, d2, b2)) = q.get(k + n) else {
            break;
        };
        if s2 != sock || d2 != dest || b2.is_empty() || b2.len() > seg {
            break;
        }
        if total + b2.len() > GSO_MAX_BYTES {
            break;
        }
        total += b2.len();
        n += 1;
        if b2.len() < seg {
            break; // a shorter datagram ends the message
        }
    }
    n
}

/// Attaches a `UDP_SEGMENT` cmsg (segment size `seg`) to `hdr`, stored in `buf`.
fn set_gso_segment(hdr: &mut libc::msghdr, buf: &mut [u64; 4], seg: usize) {
    hdr.msg_control = buf.as_mut_ptr() as *mut libc::c_void;
    // SAFETY: CMSG_SPACE of a u16 fits the 32-byte buffer.
    hdr.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as _;
    // SAFETY: msg_control/msg_controllen describe `buf`, which holds one cmsg.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(hdr);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, seg as u16);
    }
}

/// Linux `UDP_SEGMENT` (since 4.18): the segment size of a GSO send.
const UDP_SEGMENT: libc::c_int = 103;
/// Segments per GSO send (kernel limit 64) and bytes per GSO send.
const GSO_MAX_SEGMENTS: usize = 64;
const GSO_MAX_BYTES: usize = 60_000;

impl UdpIo for Portable {
    fn kind(&self) -> IoKind {
        IoKind::Portable
    }

    fn register(&mut self, registry: &Registry, base: usize) -> io::Result<()> {
        for (i, s) in self.sockets.iter().enumerate() {
            registry.register(
                &mut SourceFd(&s.as_raw_fd()),
                Token(base + i),
                Interest::READABLE,
            )?;
        }
        Ok(())
    }

    fn recv(&mut self, batch: &mut RecvBatch) -> bool {
        batch.clear();
        let n = self.sockets.len();
        if n == 0 {
            return false;
        }
        let mut more = false;
        for k in 0..n {
            let idx = (self.next + k) % n;
            let fd = self.sockets[idx].as_raw_fd();
            let room = BATCH - batch.msgs;
            let got = Self::recv_fd(fd, idx, batch, self.gro);
            if got == room {
                // This socket may have more: read it first next time.
                more = true;
                self.next = idx;
                return more;
            }
            if batch.full() {
                more = true;
                break;
            }
        }
        self.next = (self.next + 1) % n;
        more
    }

    fn send(&mut self, sock: usize, dest: SocketAddr, data: Vec<u8>) {
        self.sends.push((sock, dest, data));
        if self.sends.len() >= 4 * SEND_BATCH {
            self.send_now();
        }
    }

    fn flush(&mut self) -> usize {
        self.send_now();
        std::mem::take(&mut self.failed)
    }

    fn set_gso(&mut self, on: bool) {
        self.gso = on;
    }

    fn set_gro(&mut self, on: bool) -> bool {
        self.gro = set_gro_all(&self.sockets, on);
        self.gro
    }

    fn recv_path(&self) -> &'static str {
        if self.gro {
            "recvmmsg, UDP GRO"
        } else {
            "recvmmsg"
        }
    }
}

// ------------------------------------------------------------------ io_uring

/// `user_data` tags: a single-shot receive (slot index below), a multishot receive (socket
/// index below); a send carries its slot index untagged.
const TAG_RECV: u64 = 1 << 63;
const TAG_MULTI: u64 = 1 << 62;

/// One receive kept in flight: its buffer, address and header live at a fixed address.
struct RecvSlot {
    sock: usize,
    buf: [u8; SLOT],
    addr: libc::sockaddr_storage,
    iov: libc::iovec,
    msg: libc::msghdr,
}

/// One send in flight.
struct SendSlot {
    /// The datagrams of this send (several when coalesced with GSO).
    data: Vec<Vec<u8>>,
    addr: libc::sockaddr_storage,
    iovs: [libc::iovec; GSO_MAX_SEGMENTS],
    /// One UDP_SEGMENT cmsg; u64 for alignment.
    cmsg: [u64; 4],
    msg: libc::msghdr,
    /// The registered buffer a zero-copy send reads from (freed at its notification).
    fixed: Option<u16>,
}

/// Registered (fixed) send buffers for zero-copy sends ([`UringSend::ZeroCopyFixed`]):
/// one registered region of `count` × [`GRO_SLOT`] bytes. A send's datagrams are copied
/// into a free buffer (str0m hands us one `Vec` per packet), sent with `SendMsgZc`, and the
/// buffer is reused after the kernel's notification that it no longer reads it.
struct FixedBufs {
    base: *mut u8,
    free: Vec<u16>,
}

/// Fixed send buffers per backend on the zero-copy path (2 MiB, within the default 8 MiB
/// `RLIMIT_MEMLOCK` that registered buffers count against).
const URING_FIXED_BUFS: u16 = 32;

/// Frees send slot `idx` of `sends` (and its registered buffer, back to `fixed`).
#[allow(clippy::vec_box)]
fn release_send(
    sends: &mut [Box<SendSlot>],
    free_sends: &mut Vec<usize>,
    fixed: &mut Option<FixedBufs>,
    idx: usize,
) {
    let Some(s) = sends.get_mut(idx) else {
        return;
    };
    s.data.clear();
    if let (Some(b), Some(f)) = (s.fixed.take(), fixed.as_mut()) {
        f.free.push(b);
    }
    free_sends.push(idx);
}

/// A provided buffer ring (kernel 5.19+): `count` buffers of `size` bytes that the
/// kernel picks from for multishot receives, and that we hand back by advancing the tail.
///
/// Its memory is never freed: after the io_uring closes, the kernel may still complete
/// cancelled receives into it (one allocation per backend, at shutdown).
struct BufRing {
    /// Page-aligned array of `count` entries shared with the kernel.
    entries: *mut io_uring::types::BufRingEntry,
    /// `count * size` bytes.
    bufs: *mut u8,
    count: u16,
    /// Bytes per buffer: [`URING_BUF_HEAD`] and the largest payload received.
    size: usize,
    /// Our tail (entries handed to the kernel), published with [`BufRing::publish`].
    tail: u16,
}

impl BufRing {
    /// Allocates and registers the ring on `ring` (group [`URING_BGID`]) with every buffer
    /// handed to the kernel. Fails where the kernel has no buffer rings.
    fn register(ring: &io_uring::IoUring, count: u16, size: usize) -> io::Result<BufRing> {
        if !count.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer ring size must be a power of two",
            ));
        }
        let layout = std::alloc::Layout::from_size_align(
            count as usize * size_of::<io_uring::types::BufRingEntry>(),
            4096,
        )
        .map_err(io::Error::other)?;
        // SAFETY: the layout has a non-zero size (count >= 1).
        let entries =
            unsafe { std::alloc::alloc_zeroed(layout) } as *mut io_uring::types::BufRingEntry;
        if entries.is_null() {
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "buffer ring"));
        }
        // SAFETY: `entries` is page-aligned memory for `count` entries that stays allocated
        // for as long as the ring can use it (never freed once registered, see above).
        if let Err(e) = unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, count, URING_BGID, 0)
        } {
            // SAFETY: not registered, so the kernel holds no reference to it.
            unsafe { std::alloc::dealloc(entries as *mut u8, layout) };
            return Err(e);
        }
        // Zeroed, so pages are only backed once the kernel writes into them (GRO buffers
        // are 64 KiB, most datagrams use the first 1.2 KiB of one).
        let bufs = Box::leak(vec![0u8; count as usize * size].into_boxed_slice()).as_mut_ptr();
        let mut r = BufRing {
            entries,
            bufs,
            count,
            size,
            tail: 0,
        };
        for bid in 0..count {
            r.give(bid);
        }
        r.publish();
        Ok(r)
    }

    /// The bytes of buffer `bid` (which the kernel has filled and not been given back).
    fn buf(&self, bid: u16) -> Option<&[u8]> {
        if bid >= self.count {
            return None;
        }
        // SAFETY: `bid` is in range, and the kernel does not write into a buffer between
        // its completion and our `give` (the caller copies out before giving it back).
        Some(unsafe {
            std::slice::from_raw_parts(self.bufs.add(bid as usize * self.size), self.size)
        })
    }

    /// Queues buffer `bid` for the kernel again (visible after `publish`).
    fn give(&mut self, bid: u16) {
        if bid >= self.count {
            return;
        }
        let i = (self.tail & (self.count - 1)) as usize;
        // SAFETY: `i < count`; the entry at our tail is not in use by the kernel (it only
        // reads entries between its head and the published tail).
        let e = unsafe { &mut *self.entries.add(i) };
        // SAFETY: `bid < count`, inside the buffers' allocation.
        e.set_addr(unsafe { self.bufs.add(bid as usize * self.size) } as u64);
        e.set_len(self.size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the given buffers visible to the kernel.
    fn publish(&self) {
        // SAFETY: `entries` is the ring's first entry; its tail field is a u16 the kernel
        // reads with acquire semantics, so entries written before this store are seen.
        unsafe {
            let tail = io_uring::types::BufRingEntry::tail(self.entries) as *mut u16;
            std::sync::atomic::AtomicU16::from_ptr(tail)
                .store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }
}

/// The multishot receive path: one `RecvMsgMulti` per socket on one shared buffer ring.
struct Multishot {
    bufs: BufRing,
    /// One header per socket; the kernel reads its name and control lengths at arm time and
    /// [`io_uring::types::RecvMsgOut::parse`] needs them to find the payload.
    #[allow(clippy::vec_box)]
    hdrs: Vec<Box<libc::msghdr>>,
    /// Sockets whose multishot receive ended (no `IORING_CQE_F_MORE`): re-arm them.
    rearm: Vec<usize>,
    /// Whether any datagram arrived this way (an `EINVAL` before that means the kernel
    /// has buffer rings but no multishot `RecvMsg`: fall back to single-shot).
    delivered: bool,
    unsupported: bool,
    exhausted: u64,
}

impl Multishot {
    /// Handles one completion of socket `sock`'s multishot receive: its datagrams go into
    /// `batch` in place, and the batch holds the buffer until it comes back to backend
    /// `id`'s `recv` (buffers of failed receives go straight back to the ring).
    fn complete(&mut self, id: u64, sock: usize, res: i32, flags: u32, batch: &mut RecvBatch) {
        if let Some(bid) = io_uring::cqueue::buffer_select(flags) {
            let mut held = false;
            if let (Ok(n), Some(buf), Some(hdr)) = (
                usize::try_from(res),
                self.bufs.buf(bid),
                self.hdrs.get(sock),
            ) {
                let buf = &buf[..n.min(buf.len())];
                if let Ok(out) = io_uring::types::RecvMsgOut::parse(buf, hdr) {
                    if out.is_payload_truncated() {
                        // Larger than the buffer: larger than any datagram we serve, or a
                        // GRO burst on a path without GRO-sized buffers (never enabled).
                        batch.msgs += 1;
                        batch.oversized += 1;
                    } else if let (false, Some(source)) = (
                        out.is_name_data_truncated(),
                        sockaddr_from_bytes(out.name_data()),
                    ) {
                        let control = if out.is_control_data_truncated() {
                            Control::default()
                        } else {
                            read_control(out.control_data())
                        };
                        let p = out.payload_data();
                        batch.push_message(sock, source, At::Ring(p.as_ptr()), p.len(), control);
                        self.delivered = true;
                        held = true;
                    }
                }
            }
            if held {
                batch.held.push(bid);
                batch.holder = id;
            } else {
                self.bufs.give(bid);
            }
        }
        if res < 0 {
            match -res {
                libc::ENOBUFS => self.exhausted += 1,
                libc::EINVAL if !self.delivered => self.unsupported = true,
                errno => tracing::debug!(errno, sock, "io_uring multishot receive ended"),
            }
        }
        if !io_uring::cqueue::more(flags) && !self.rearm.contains(&sock) {
            self.rearm.push(sock);
        }
    }

    /// Hands back the buffers `batch` holds from backend `id` (published by the caller).
    /// Buffers of another backend are released from the batch without going back (only a
    /// batch moved between backends, which the worker never does, loses them).
    fn take_back(&mut self, id: u64, batch: &mut RecvBatch) {
        if batch.holder == id {
            for bid in batch.held.drain(..) {
                self.bufs.give(bid);
            }
        } else {
            batch.held.clear();
        }
    }
}

/// A source address as the kernel wrote it into a multishot buffer.
fn sockaddr_from_bytes(name: &[u8]) -> Option<SocketAddr> {
    if name.len() > size_of::<libc::sockaddr_storage>() {
        return None;
    }
    // SAFETY: plain old data, zero is valid.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    // SAFETY: `name` fits in the storage (checked above); byte copy, no alignment needed.
    unsafe {
        std::ptr::copy_nonoverlapping(name.as_ptr(), &mut storage as *mut _ as *mut u8, name.len())
    };
    from_sockaddr(&storage)
}

/// io_uring: receives kept in flight on every socket (one multishot receive per socket on
/// a provided buffer ring, or 64 single-shot receives re-armed as they complete), sends
/// queued as SQEs during the turn and submitted with one `io_uring_enter` at its end.
pub struct Uring {
    ring: io_uring::IoUring,
    sockets: Vec<UdpSocket>,
    /// The multishot path; `None` on the single-shot path.
    multi: Option<Multishot>,
    /// Single-shot receive slots (empty on the multishot path). Boxed: the kernel holds
    /// pointers into each slot, so slots must not move when the vector grows.
    #[allow(clippy::vec_box)]
    recvs: Vec<Box<RecvSlot>>,
    /// Send slots, reused (never freed while the backend lives); `free_sends` lists the
    /// idle ones.
    #[allow(clippy::vec_box)]
    sends: Vec<Box<SendSlot>>,
    free_sends: Vec<usize>,
    /// Receive slots to re-arm (reused buffer).
    rearm: Vec<usize>,
    /// Datagrams queued this turn, coalesced and submitted at `flush`.
    pending: Vec<(usize, SocketAddr, Vec<u8>)>,
    gso: bool,
    /// UDP GRO is on for the sockets (only with GRO-sized provided buffers).
    gro: bool,
    /// A `SINGLE_ISSUER | DEFER_TASKRUN` ring: completions are posted when we enter.
    deferred: bool,
    /// Not yet enabled (created `R_DISABLED`; the first thread to use it enables it and
    /// submits what was queued, the receives armed at creation).
    disabled: bool,
    /// The eventfd a deferred ring signals when completions are queued (the readiness
    /// source; never read: epoll is edge-triggered and each signal is a new edge).
    wake: Option<std::os::fd::OwnedFd>,
    /// Tells this backend's held buffers in a [`RecvBatch`] from another backend's.
    id: u64,
    /// Registered send buffers ([`UringSend::ZeroCopyFixed`]).
    fixed: Option<FixedBufs>,
    /// Sends that went zero-copy from a registered buffer.
    zero_copy_sends: u64,
    failed: usize,
    unsubmitted: bool,
}

/// Backend ids (see [`Uring::id`]); zero means none.
static NEXT_URING_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

// SAFETY: the raw pointers inside the slots point into the slots themselves (boxed, so
// stable), and the buffer ring's into memory owned by the backend; the whole backend
// moves to its worker thread once and is used only there.
unsafe impl Send for Uring {}

impl Drop for Uring {
    fn drop(&mut self) {
        // Requests still in flight are cancelled asynchronously after the ring closes: the
        // kernel may still write into their buffers, so those are leaked, not freed (once,
        // at shutdown). The buffer ring is never freed (see `BufRing`).
        for s in self.recvs.drain(..) {
            let _ = Box::leak(s);
        }
        for s in self.sends.drain(..) {
            let _ = Box::leak(s);
        }
        if let Some(m) = self.multi.take() {
            for h in m.hdrs {
                let _ = Box::leak(h);
            }
        }
    }
}

impl Uring {
    fn new(sockets: Vec<UdpSocket>, recv: UringRecv, bufs: u16) -> io::Result<Uring> {
        Self::build(sockets, recv, bufs, true)
    }

    /// `defer`: try a `SINGLE_ISSUER | DEFER_TASKRUN` ring first (false: the plain ring
    /// older kernels get, kept under test).
    fn build(
        sockets: Vec<UdpSocket>,
        recv: UringRecv,
        bufs: u16,
        defer: bool,
    ) -> io::Result<Uring> {
        // One issuer, completions deferred to our own `io_uring_enter` (6.1+): the kernel
        // does not interrupt the worker with task work, and completions are run in batches
        // when we look for them. The ring is created disabled so that the worker thread
        // that enables it becomes its issuer. Older kernels: a plain ring, whose
        // completions arrive as task work (which may interrupt epoll_wait with EINTR; the
        // loop just polls again).
        let deferred_ring = if defer {
            io_uring::IoUring::builder()
                .setup_single_issuer()
                .setup_defer_taskrun()
                .setup_taskrun_flag()
                .setup_r_disabled()
                .build(URING_ENTRIES)
                .map_err(|e| {
                    tracing::debug!(error = %e, "io_uring: no DEFER_TASKRUN ring; a plain one");
                })
                .ok()
        } else {
            None
        };
        let (ring, deferred) = match deferred_ring {
            Some(r) => (r, true),
            None => (io_uring::IoUring::builder().build(URING_ENTRIES)?, false),
        };
        // A deferred ring's fd does not turn readable for epoll when completions wait
        // (measured: a sleeping poll was not woken); the kernel signals a registered
        // eventfd when the first one is queued, so the worker waits on that instead.
        let wake = if deferred {
            // SAFETY: plain syscall; the fd is owned right below.
            let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: a fresh fd that nothing else owns.
            let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
            ring.submitter().register_eventfd(fd.as_raw_fd())?;
            Some(fd)
        } else {
            None
        };
        set_rx_timestamps_all(&sockets);
        let fds: Vec<RawFd> = sockets.iter().map(|s| s.as_raw_fd()).collect();
        if !fds.is_empty() {
            ring.submitter().register_files(&fds)?;
        }
        let multi = match recv {
            UringRecv::SingleShot => None,
            UringRecv::Multishot => match BufRing::register(&ring, bufs, URING_BUF_HEAD + GRO_SLOT)
            {
                Ok(bufs) => Some(Multishot {
                    bufs,
                    hdrs: (0..sockets.len())
                        .map(|_| {
                            // SAFETY: plain old data, zero is valid.
                            let mut h: Box<libc::msghdr> = Box::new(unsafe { zeroed() });
                            // No iovec: the kernel takes a whole provided buffer.
                            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                            h.msg_controllen = URING_CONTROL as _;
                            h
                        })
                        .collect(),
                    rearm: Vec::with_capacity(sockets.len()),
                    delivered: false,
                    unsupported: false,
                    exhausted: 0,
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "io_uring: no provided buffer rings; single-shot receives");
                    None
                }
            },
        };
        let mut u = Uring {
            ring,
            sockets,
            multi,
            recvs: Vec::new(),
            sends: Vec::new(),
            free_sends: Vec::new(),
            rearm: Vec::with_capacity(BATCH * 2),
            pending: Vec::new(),
            gso: true,
            gro: false,
            deferred,
            disabled: deferred,
            wake,
            id: NEXT_URING_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            fixed: None,
            zero_copy_sends: 0,
            failed: 0,
            unsubmitted: false,
        };
        u.set_gro(true);
        if u.multi.is_some() {
            for sock in 0..u.sockets.len() {
                u.arm_multishot(sock)?;
            }
        } else {
            u.arm_single_shot()?;
        }
        if !u.disabled {
            u.ring.submit()?;
        }
        Ok(u)
    }

    /// Puts 64 single-shot receives in flight on every socket.
    fn arm_single_shot(&mut self) -> io::Result<()> {
        for sock in 0..self.sockets.len() {
            for _ in 0..URING_RECVS_PER_SOCKET {
                // SAFETY: plain old data, zero is valid.
                let mut slot: Box<RecvSlot> = Box::new(unsafe { zeroed() });
                slot.sock = sock;
                self.recvs.push(slot);
                let idx = self.recvs.len() - 1;
                self.arm_recv(idx)?;
            }
        }
        Ok(())
    }

    fn arm_multishot(&mut self, sock: usize) -> io::Result<()> {
        let Some(hdr) = self.multi.as_ref().and_then(|m| m.hdrs.get(sock)) else {
            return Ok(());
        };
        let hdr: *const libc::msghdr = &**hdr;
        let e = io_uring::opcode::RecvMsgMulti::new(
            io_uring::types::Fixed(sock as u32),
            hdr,
            URING_BGID,
        )
        .build()
        .user_data(TAG_MULTI | sock as u64);
        self.push_sqe(&e)
    }

    /// Enables a ring created disabled, on the calling thread (which becomes its only
    /// issuer), and submits what was queued.
    fn enable(&mut self) {
        if !self.disabled {
            return;
        }
        self.disabled = false;
        if let Err(e) = self.ring.submitter().register_enable_rings() {
            tracing::warn!(error = %e, "io_uring: cannot enable the ring");
        }
        if let Err(e) = self.ring.submit() {
            tracing::warn!(error = %e, "io_uring: cannot arm the receives");
        }
        self.unsubmitted = false;
    }

    fn push_sqe(&mut self, e: &io_uring::squeue::Entry) -> io::Result<()> {
        // SAFETY: every entry points into a boxed slot or header (or the buffer ring) that
        // stays alive (and untouched) until its completion is reaped.
        if unsafe { self.ring.submission().push(e) }.is_err() {
            self.ring.submit()?;
            // SAFETY: as above.
            unsafe { self.ring.submission().push(e) }
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        }
        self.unsubmitted = true;
        Ok(())
    }

    fn arm_recv(&mut self, idx: usize) -> io::Result<()> {
        let Some(slot) = self.recvs.get_mut(idx) else {
            return Ok(());
        };
        let s = &mut **slot;
        s.iov = libc::iovec {
            iov_base: s.buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: SLOT,
        };
        // SAFETY: plain old data, zero is valid.
        s.msg = unsafe { zeroed() };
        s.msg.msg_name = &mut s.addr as *mut _ as *mut libc::c_void;
        s.msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        s.msg.msg_iov = &mut s.iov;
        s.msg.msg_iovlen = 1;
        let e = io_uring::opcode::RecvMsg::new(io_uring::types::Fixed(s.sock as u32), &mut s.msg)
            .build()
            .user_data(TAG_RECV | idx as u64);
        self.push_sqe(&e)
    }

    /// After a batch of completions: hands the consumed buffers back to the kernel and
    /// re-arms ended multishot receives (or falls back to single-shot receives when the
    /// kernel turned multishot down).
    fn after_multishot(&mut self) {
        let Some(m) = self.multi.as_mut() else {
            return;
        };
        m.bufs.publish();
        if m.unsupported {
            tracing::warn!("io_uring: multishot RecvMsg unsupported; single-shot receives");
            // The single-shot slots are not GRO-sized.
            self.set_gro(false);
            // Its buffers stay allocated (never freed, see `BufRing`).
            self.multi = None;
            if let Err(e) = self.arm_single_shot() {
                tracing::warn!(error = %e, "io_uring: cannot arm single-shot receives");
            }
            return;
        }
        let mut rearm = std::mem::take(&mut m.rearm);
        for sock in rearm.drain(..) {
            if let Err(e) = self.arm_multishot(sock) {
                tracing::warn!(error = %e, "io_uring: cannot re-arm a multishot receive");
            }
        }
        if let Some(m) = self.multi.as_mut() {
            m.rearm = rearm;
        }
    }
}

impl UdpIo for Uring {
    fn kind(&self) -> IoKind {
        IoKind::IoUring
    }

    fn register(&mut self, registry: &Registry, base: usize) -> io::Result<()> {
        let fd = match &self.wake {
            Some(w) => w.as_raw_fd(),
            None => self.ring.as_raw_fd(),
        };
        registry.register(&mut SourceFd(&fd), Token(base), Interest::READABLE)
    }

    fn recv(&mut self, batch: &mut RecvBatch) -> bool {
        batch.clear();
        self.enable();
        // Deferred completions (and those the kernel kept in its overflow list when the
        // completion queue was full) are posted by an enter that asks for events (the
        // crate's submit does when the kernel flags either).
        let waiting = {
            let sq = self.ring.submission();
            (self.deferred && sq.taskrun()) || sq.cq_overflow()
        };
        if waiting {
            if let Err(e) = self.ring.submit() {
                tracing::debug!(error = %e, "io_uring: running deferred completions failed");
            }
            self.unsubmitted = false;
        }
        match self.multi.as_mut() {
            Some(m) => m.take_back(self.id, batch),
            None => batch.held.clear(),
        }
        let mut rearm = std::mem::take(&mut self.rearm);
        let mut more = false;
        {
            let cq = self.ring.completion();
            for cqe in cq {
                let ud = cqe.user_data();
                let res = cqe.result();
                if ud & TAG_MULTI != 0 {
                    let sock = (ud & !TAG_MULTI) as usize;
                    if let Some(m) = self.multi.as_mut() {
                        m.complete(self.id, sock, res, cqe.flags(), batch);
                    }
                } else if ud & TAG_RECV != 0 {
                    let idx = (ud & !TAG_RECV) as usize;
                    if let Some(slot) = self.recvs.get(idx) {
                        if res > 0 && slot.msg.msg_flags & libc::MSG_TRUNC == 0 {
                            if let Some(source) = from_sockaddr(&slot.addr) {
                                batch.push_copy(slot.sock, source, &slot.buf[..res as usize]);
                            }
                        }
                    }
                    rearm.push(idx);
                } else {
                    let idx = ud as usize;
                    let flags = cqe.flags();
                    if io_uring::cqueue::notif(flags) {
                        // A zero-copy send's buffer is no longer read by the kernel.
                        release_send(&mut self.sends, &mut self.free_sends, &mut self.fixed, idx);
                        continue;
                    }
                    if let Some(s) = self.sends.get_mut(idx) {
                        if res < 0 {
                            self.failed += s.data.len();
                            if s.data.len() > 1
                                && matches!(-res, libc::EIO | libc::EINVAL | libc::EOPNOTSUPP)
                                && self.gso
                            {
                                tracing::warn!(
                                    errno = -res,
                                    "UDP GSO unavailable on io_uring; sending datagrams one by one"
                                );
                                self.gso = false;
                            }
                        }
                        // A zero-copy send with a notification to come keeps its slot.
                        if !(s.fixed.is_some() && io_uring::cqueue::more(flags)) {
                            release_send(
                                &mut self.sends,
                                &mut self.free_sends,
                                &mut self.fixed,
                                idx,
                            );
                        }
                    }
                }
                if batch.full() {
                    more = true;
                    break;
                }
            }
        }
        for idx in rearm.drain(..) {
            if let Err(e) = self.arm_recv(idx) {
                tracing::warn!(error = %e, "io_uring: cannot re-arm a receive");
            }
        }
        self.rearm = rearm;
        self.after_multishot();
        if self.unsubmitted {
            let _ = self.ring.submit();
            self.unsubmitted = false;
        }
        // Completion work the kernel queued meanwhile (or left over: it runs a bounded
        // number of items per enter) signals the eventfd only when its list was empty;
        // completions posted by the enter just above, or held in the kernel's overflow
        // list, signal nothing new either: come back this turn rather than sleep on them.
        more || (self.deferred && self.ring.submission().taskrun())
            || self.ring.submission().cq_overflow()
            || !self.ring.completion().is_empty()
    }

    fn send(&mut self, sock: usize, dest: SocketAddr, data: Vec<u8>) {
        if sock >= self.sockets.len() {
            self.failed += 1;
            return;
        }
        self.pending.push((sock, dest, data));
        if self.pending.len() >= 4 * GSO_MAX_SEGMENTS {
            self.submit_pending();
        }
    }

    fn flush(&mut self) -> usize {
        self.enable();
        self.submit_pending();
        if self.unsubmitted {
            if let Err(e) = self.ring.submit() {
                tracing::debug!(error = %e, "io_uring submit failed");
            }
            self.unsubmitted = false;
        }
        std::mem::take(&mut self.failed)
    }

    fn set_gso(&mut self, on: bool) {
        self.gso = on;
    }

    fn set_gro(&mut self, on: bool) -> bool {
        // The provided buffers hold a GRO burst; the single-shot slots do not.
        self.gro = set_gro_all(&self.sockets, on && self.multi.is_some());
        self.gro
    }

    fn recv_path(&self) -> &'static str {
        if self.multi.is_some() && self.gro {
            "io_uring multishot RecvMsg, provided buffer ring, UDP GRO"
        } else if self.multi.is_some() {
            "io_uring multishot RecvMsg, provided buffer ring"
        } else {
            "io_uring single-shot RecvMsg"
        }
    }

    fn recv_buffer_exhaustions(&self) -> u64 {
        self.multi.as_ref().map_or(0, |m| m.exhausted)
    }
}

impl Uring {
    /// Turns the queued datagrams into `SendMsg` SQEs, one per run of same-socket,
    /// same-destination, equal-size datagrams (GSO; the last may be shorter).
    fn submit_pending(&mut self) {
        let mut pending = std::mem::take(&mut self.pending);
        let mut k = 0;
        while k < pending.len() {
            let n = if self.gso { gso_run(&pending, k) } else { 1 };
            let (sock, dest, seg) = (pending[k].0, pending[k].1, pending[k].2.len());
            let idx = self.take_send_slot();
            let Some(slot) = self.sends.get_mut(idx) else {
                k += n;
                continue;
            };
            let s = &mut **slot;
            s.data.extend(
                pending[k..k + n]
                    .iter_mut()
                    .map(|e| std::mem::take(&mut e.2)),
            );
            k += n;
            let (addr, addr_len) = to_sockaddr(dest);
            s.addr = addr;
            for (i, b) in s.data.iter_mut().enumerate() {
                s.iovs[i] = libc::iovec {
                    iov_base: b.as_mut_ptr() as *mut libc::c_void,
                    iov_len: b.len(),
                };
            }
            // SAFETY: plain old data, zero is valid.
            s.msg = unsafe { zeroed() };
            s.msg.msg_name = &mut s.addr as *mut _ as *mut libc::c_void;
            s.msg.msg_namelen = addr_len;
            s.msg.msg_iov = s.iovs.as_mut_ptr();
            s.msg.msg_iovlen = s.data.len() as _;
            if s.data.len() > 1 {
                set_gso_segment(&mut s.msg, &mut s.cmsg, seg);
            }
            let n = s.data.len();
            let msg: *const libc::msghdr = &s.msg;
            let e = match self.stage_fixed(idx) {
                Some(b) => {
                    self.zero_copy_sends += 1;
                    io_uring::opcode::SendMsgZc::new(io_uring::types::Fixed(sock as u32), msg)
                        .buf_index(Some(b))
                        .build()
                }
                None => {
                    io_uring::opcode::SendMsg::new(io_uring::types::Fixed(sock as u32), msg).build()
                }
            }
            .user_data(idx as u64);
            if self.push_sqe(&e).is_err() {
                self.failed += n;
                self.release_send(idx);
            }
        }
        pending.clear();
        self.pending = pending;
    }

    /// Frees send slot `idx` (and its registered buffer).
    fn release_send(&mut self, idx: usize) {
        release_send(&mut self.sends, &mut self.free_sends, &mut self.fixed, idx);
    }

    /// Registers `count` fixed send buffers of [`GRO_SLOT`] bytes.
    fn register_fixed(&mut self, count: u16) -> io::Result<()> {
        // Never freed: the kernel may read a buffer until a cancelled send's notification,
        // which can come after the ring is gone (one allocation per backend).
        let base = Box::leak(vec![0u8; count as usize * GRO_SLOT].into_boxed_slice()).as_mut_ptr();
        let iovs: Vec<libc::iovec> = (0..count as usize)
            .map(|i| libc::iovec {
                // SAFETY: inside the allocation above.
                iov_base: unsafe { base.add(i * GRO_SLOT) } as *mut libc::c_void,
                iov_len: GRO_SLOT,
            })
            .collect();
        // SAFETY: the buffers stay allocated for as long as the ring can use them.
        unsafe { self.ring.submitter().register_buffers(&iovs) }?;
        self.fixed = Some(FixedBufs {
            base,
            free: (0..count).rev().collect(),
        });
        Ok(())
    }

    /// Copies slot `idx`'s datagrams into a free registered buffer and points its iovecs
    /// there. Returns the buffer, or `None` (no free one: send from the packets).
    fn stage_fixed(&mut self, idx: usize) -> Option<u16> {
        let f = self.fixed.as_mut()?;
        let s = self.sends.get_mut(idx)?;
        let total: usize = s.data.iter().map(|d| d.len()).sum();
        if total > GRO_SLOT {
            return None;
        }
        let b = f.free.pop()?;
        // SAFETY: buffer `b` is free (the kernel no longer reads it) and GRO_SLOT long.
        let dst =
            unsafe { std::slice::from_raw_parts_mut(f.base.add(b as usize * GRO_SLOT), GRO_SLOT) };
        let mut off = 0;
        for (i, d) in s.data.iter().enumerate() {
            dst[off..off + d.len()].copy_from_slice(d);
            s.iovs[i] = libc::iovec {
                iov_base: dst[off..].as_mut_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            };
            off += d.len();
        }
        s.fixed = Some(b);
        Some(b)
    }

    fn take_send_slot(&mut self) -> usize {
        if let Some(i) = self.free_sends.pop() {
            return i;
        }
        self.sends.push(Box::new(SendSlot {
            data: Vec::with_capacity(GSO_MAX_SEGMENTS),
            // SAFETY: plain old data, zero is valid.
            addr: unsafe { zeroed() },
            // SAFETY: as above.
            iovs: unsafe { zeroed() },
            cmsg: [0; 4],
            // SAFETY: as above.
            msg: unsafe { zeroed() },
            fixed: None,
        }));
        self.sends.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` with the io_uring backend kind, or says why it is skipped here.
    fn on_io_uring(f: impl FnOnce(IoKind)) {
        match resolve(IoChoice::IoUring) {
            Ok(k) => f(k),
            Err(e) => eprintln!("skipped: io_uring unavailable here: {e}"),
        }
    }

    fn pair(kind: IoKind) -> (Box<dyn UdpIo>, SocketAddr, UdpSocket) {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = s.local_addr().expect("addr");
        let io = new_backend(kind, vec![s]).expect("backend");
        let peer = UdpSocket::bind("127.0.0.1:0").expect("bind peer");
        peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        (io, addr, peer)
    }

    fn roundtrip(kind: IoKind) {
        let (io, addr, peer) = pair(kind);
        assert_eq!(io.kind(), kind);
        roundtrip_with(io, addr, peer);
    }

    fn roundtrip_with(mut io: Box<dyn UdpIo>, addr: SocketAddr, peer: UdpSocket) {
        for i in 0..100u8 {
            peer.send_to(&[i; 100], addr).expect("send");
        }
        let mut batch = RecvBatch::default();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < 100 && std::time::Instant::now() < deadline {
            io.recv(&mut batch);
            for i in 0..batch.len() {
                let (d, bytes) = batch.get(i).expect("item");
                assert_eq!(d.sock, 0);
                assert_eq!(d.source, peer.local_addr().expect("addr"));
                assert_eq!(bytes.len(), 100);
                got.push(bytes[0]);
            }
        }
        assert_eq!(got, (0..100u8).collect::<Vec<_>>(), "all, in order");
        let me = peer.local_addr().expect("addr");
        // Fewer than fit in the peer's default receive buffer.
        for i in 0..64u8 {
            io.send(0, me, vec![i; 1200]);
        }
        assert_eq!(io.flush(), 0);
        let mut buf = [0u8; 2048];
        for i in 0..64u8 {
            let (n, from) = loop {
                match peer.recv_from(&mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    r => break r.expect("datagram"),
                }
            };
            assert_eq!((n, from, buf[0]), (1200, addr, i));
        }
    }

    /// Bursts to one destination (coalesced by GSO on the portable backend) mixed with
    /// other sizes and destinations arrive as the original datagrams, in order.
    fn mixed_bursts(kind: IoKind, gso: bool) {
        let (io, addr, peer) = pair(kind);
        mixed_bursts_from(io, addr, peer, gso);
    }

    fn mixed_bursts_from(mut io: Box<dyn UdpIo>, addr: SocketAddr, peer: UdpSocket, gso: bool) {
        io.set_gso(gso);
        let other = UdpSocket::bind("127.0.0.1:0").expect("bind");
        other
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        let me = peer.local_addr().expect("addr");
        let plan: Vec<(SocketAddr, usize)> = (0..10)
            .map(|_| (me, 1100))
            .chain([
                (me, 500),
                (me, 1100),
                (other.local_addr().expect("a"), 1100),
            ])
            .chain((0..5).map(|_| (me, 1100)))
            .chain([(me, 1200), (me, 300)])
            .collect();
        for (i, (dest, len)) in plan.iter().enumerate() {
            io.send(0, *dest, vec![i as u8; *len]);
        }
        assert_eq!(io.flush(), 0);
        let mut buf = [0u8; 2048];
        let recv = |s: &UdpSocket, buf: &mut [u8]| loop {
            match s.recv_from(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r.expect("datagram"),
            }
        };
        for (i, (dest, len)) in plan.iter().enumerate() {
            let s = if *dest == me { &peer } else { &other };
            let (n, from) = recv(s, &mut buf);
            assert_eq!((n, from, buf[0]), (*len, addr, i as u8), "datagram {i}");
        }
    }

    #[test]
    fn portable_gso_bursts_arrive_as_the_original_datagrams() {
        mixed_bursts(IoKind::Portable, true);
        mixed_bursts(IoKind::Portable, false);
    }

    #[test]
    fn io_uring_gso_bursts_arrive_as_the_original_datagrams() {
        on_io_uring(|k| {
            mixed_bursts(k, true);
            mixed_bursts(k, false);
        });
    }

    /// The zero-copy send path from registered buffers (kept for comparison) sends the
    /// same datagrams, coalesced or not, and reuses its buffers after the notifications.
    #[test]
    fn io_uring_zero_copy_sends_from_registered_buffers_arrive_as_the_original_datagrams() {
        if let Err(e) = resolve(IoChoice::IoUring) {
            eprintln!("skipped: io_uring unavailable here: {e}");
            return;
        }
        for gso in [true, false] {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let addr = s.local_addr().expect("addr");
            let io = match new_uring_with(vec![s], UringRecv::Multishot, UringSend::ZeroCopyFixed) {
                Ok(io) => io,
                Err(e) => {
                    eprintln!("skipped: no registered buffers here: {e}");
                    return;
                }
            };
            let peer = UdpSocket::bind("127.0.0.1:0").expect("bind peer");
            peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .expect("timeout");
            mixed_bursts_from(io, addr, peer, gso);
        }
        // More sends than registered buffers: each is handed back after its notification.
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.set_nonblocking(true).expect("nonblocking");
        let mut io = Uring::new(vec![s], UringRecv::Multishot, URING_BUFS).expect("backend");
        io.register_fixed(URING_FIXED_BUFS).expect("fixed buffers");
        let peer = UdpSocket::bind("127.0.0.1:0").expect("bind peer");
        let _ = socket2::SockRef::from(&peer).set_recv_buffer_size(4 << 20);
        peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        let me = peer.local_addr().expect("addr");
        let mut batch = RecvBatch::default();
        let mut buf = [0u8; 2048];
        for round in 0..4 * URING_FIXED_BUFS as usize {
            io.send(0, me, vec![round as u8; 200]);
            assert_eq!(io.flush(), 0);
            let (n, _) = peer.recv_from(&mut buf).expect("datagram");
            assert_eq!((n, buf[0]), (200, round as u8));
            io.recv(&mut batch); // reaps the completion and the notification
        }
        assert_eq!(
            io.zero_copy_sends,
            4 * URING_FIXED_BUFS as u64,
            "every send went zero-copy: buffers came back"
        );
    }

    #[test]
    fn portable_backend_receives_and_sends_batches_in_order() {
        roundtrip(IoKind::Portable);
    }

    #[test]
    fn io_uring_backend_receives_and_sends_batches_in_order() {
        on_io_uring(roundtrip);
    }

    /// A datagram arriving while the worker sleeps in epoll must wake it (not wait for the
    /// poll timeout): the registered readiness source fires.
    fn readiness_wakes_a_sleeping_poll(kind: IoKind) {
        let (io, addr, peer) = pair(kind);
        readiness_wakes_with(io, addr, peer);
    }

    /// Three times in a row (the eventfd of a deferred ring is never read: each signal must
    /// still be a new edge for epoll).
    fn readiness_wakes_with(mut io: Box<dyn UdpIo>, addr: SocketAddr, peer: UdpSocket) {
        let mut poll = mio::Poll::new().expect("poll");
        io.register(poll.registry(), 1).expect("register");
        let mut events = mio::Events::with_capacity(8);
        let mut batch = RecvBatch::default();
        io.recv(&mut batch); // arm and drain
        let peer = std::sync::Arc::new(peer);
        for round in 0..3u8 {
            let p = peer.clone();
            let sender = std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(100));
                p.send_to(&[b'w', round], addr).expect("send");
            });
            let mut got = Vec::new();
            for _ in 0..50 {
                let interrupted =
                    match poll.poll(&mut events, Some(std::time::Duration::from_secs(10))) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
                        r => {
                            r.expect("poll");
                            false
                        }
                    };
                let woken = interrupted || !events.is_empty();
                io.recv(&mut batch);
                // Readiness, not the poll's timeout, must have ended the wait.
                assert!(
                    woken,
                    "round {round}: poll timed out, the datagram did not wake it"
                );
                if let Some((_, b)) = batch.get(0) {
                    got.extend_from_slice(b);
                    break;
                }
            }
            sender.join().expect("sender");
            assert_eq!(got, [b'w', round]);
        }
    }

    #[test]
    fn portable_readiness_wakes_a_sleeping_worker() {
        readiness_wakes_a_sleeping_poll(IoKind::Portable);
    }

    #[test]
    fn io_uring_readiness_wakes_a_sleeping_worker() {
        on_io_uring(readiness_wakes_a_sleeping_poll);
    }

    /// The plain ring that kernels without `DEFER_TASKRUN` get (completions as task work,
    /// the ring's own fd in epoll) receives, sends and wakes a sleeping poll like the
    /// deferred one.
    #[test]
    fn io_uring_plain_ring_fallback_receives_sends_and_wakes_a_sleeping_worker() {
        if let Err(e) = resolve(IoChoice::IoUring) {
            eprintln!("skipped: io_uring unavailable here: {e}");
            return;
        }
        let plain = || {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
            s.set_nonblocking(true).expect("nonblocking");
            let addr = s.local_addr().expect("addr");
            let u = Uring::build(vec![s], UringRecv::Multishot, URING_BUFS, false).expect("ring");
            assert!(!u.deferred && u.wake.is_none(), "a plain ring");
            let peer = UdpSocket::bind("127.0.0.1:0").expect("bind peer");
            peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .expect("timeout");
            (Box::new(u) as Box<dyn UdpIo>, addr, peer)
        };
        let (io, addr, peer) = plain();
        roundtrip_with(io, addr, peer);
        let (io, addr, peer) = plain();
        readiness_wakes_with(io, addr, peer);
    }

    /// The io_uring single-shot path (the fallback where the kernel has no buffer rings).
    #[test]
    fn io_uring_single_shot_fallback_receives_and_sends_in_order() {
        if let Err(e) = resolve(IoChoice::IoUring) {
            eprintln!("skipped: io_uring unavailable here: {e}");
            return;
        }
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = s.local_addr().expect("addr");
        let mut io = new_uring(vec![s], UringRecv::SingleShot).expect("backend");
        assert_eq!(io.recv_path(), "io_uring single-shot RecvMsg");
        let peer = UdpSocket::bind("127.0.0.1:0").expect("bind peer");
        for i in 0..100u8 {
            peer.send_to(&[i; 100], addr).expect("send");
        }
        let got = receive(&mut *io, &mut RecvBatch::default(), 100);
        let me = peer.local_addr().expect("addr");
        assert_eq!(
            got,
            (0..100u8)
                .map(|i| (0, me, vec![i; 100]))
                .collect::<Vec<_>>()
        );
    }

    /// Receives until `want` datagrams arrived (or 5 s passed): (socket, source, bytes).
    /// One batch per backend, as the worker does (it holds provided buffers).
    fn receive(
        io: &mut dyn UdpIo,
        batch: &mut RecvBatch,
        want: usize,
    ) -> Vec<(usize, SocketAddr, Vec<u8>)> {
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < want && std::time::Instant::now() < deadline {
            io.recv(batch);
            assert!(batch.messages() <= BATCH);
            for i in 0..batch.len() {
                let (d, bytes) = batch.get(i).expect("item");
                got.push((d.sock, d.source, bytes.to_vec()));
            }
        }
        got
    }

    /// A multishot backend with a buffer ring of `bufs` on two sockets.
    fn multishot(bufs: u16) -> Option<(Uring, [SocketAddr; 2])> {
        if let Err(e) = resolve(IoChoice::IoUring) {
            eprintln!("skipped: io_uring unavailable here: {e}");
            return None;
        }
        let mut sockets = Vec::new();
        let mut addrs = Vec::new();
        for _ in 0..2 {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
            s.set_nonblocking(true).expect("nonblocking");
            let _ = socket2::SockRef::from(&s).set_recv_buffer_size(4 << 20);
            addrs.push(s.local_addr().expect("addr"));
            sockets.push(s);
        }
        let io = Uring::new(sockets, UringRecv::Multishot, bufs).expect("backend");
        if io.multi.is_none() {
            eprintln!("skipped: no provided buffer rings on this kernel");
            return None;
        }
        Some((io, [addrs[0], addrs[1]]))
    }

    /// Many more datagrams than the buffer ring holds pass through it (so buffers are
    /// handed back), in order per socket, each with its socket and source.
    #[test]
    fn io_uring_multishot_recycles_its_buffers_across_many_datagrams() {
        let Some((mut io, [a0, a1])) = multishot(URING_BUFS) else {
            return;
        };
        assert_eq!(
            io.recv_path(),
            "io_uring multishot RecvMsg, provided buffer ring, UDP GRO"
        );
        let p0 = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let p1 = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let (s0, s1) = (p0.local_addr().expect("a"), p1.local_addr().expect("a"));
        let rounds = 4 * URING_BUFS as usize / 50;
        let mut batch = RecvBatch::default();
        let mut expected = Vec::new();
        let mut got = Vec::new();
        for r in 0..rounds {
            for i in 0..50usize {
                let tag = ((r * 50 + i) % 251) as u8;
                // Interleaved sources and sockets; sizes up to the full slot.
                let (peer, src, dst, sock) = match i % 3 {
                    0 => (&p0, s0, a0, 0),
                    1 => (&p1, s1, a0, 0),
                    _ => (&p0, s0, a1, 1),
                };
                let len = if i == 7 { SLOT } else { 60 + i * 20 };
                peer.send_to(&vec![tag; len], dst).expect("send");
                expected.push((sock, src, vec![tag; len]));
            }
            got.extend(receive(&mut io, &mut batch, expected.len() - got.len()));
            if got.len() < expected.len() {
                break; // stuck: the assertions below say what is missing
            }
        }
        // Per socket, the order is the send order.
        for sock in 0..2 {
            let want: Vec<_> = expected.iter().filter(|d| d.0 == sock).collect();
            let have: Vec<_> = got.iter().filter(|d| d.0 == sock).collect();
            assert_eq!(have.len(), want.len(), "socket {sock}: all datagrams");
            assert!(
                have == want,
                "socket {sock}: same datagrams, sources and order"
            );
        }
    }

    /// When every provided buffer is taken, the kernel ends the multishot receive with
    /// ENOBUFS; the backend counts it, re-arms, and the datagrams that waited in the socket
    /// buffer still arrive, in order.
    #[test]
    fn io_uring_multishot_rearms_after_running_out_of_buffers() {
        let Some((mut io, [a0, _])) = multishot(8) else {
            return;
        };
        let peer = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let me = peer.local_addr().expect("addr");
        for i in 0..100u8 {
            peer.send_to(&[i; 300], a0).expect("send");
        }
        let mut batch = RecvBatch::default();
        let got = receive(&mut io, &mut batch, 100);
        assert_eq!(
            got,
            (0..100u8)
                .map(|i| (0, me, vec![i; 300]))
                .collect::<Vec<_>>()
        );
        assert!(
            io.recv_buffer_exhaustions() >= 1,
            "ran out of buffers at least once"
        );
        // And it keeps receiving afterwards.
        peer.send_to(b"after", a0).expect("send");
        assert_eq!(
            receive(&mut io, &mut batch, 1),
            vec![(0, me, b"after".to_vec())]
        );
    }

    /// A datagram larger than a slot is dropped (as on the other paths) without ending
    /// the receive: the next one still arrives.
    #[test]
    fn io_uring_multishot_drops_an_oversized_datagram_and_keeps_receiving() {
        let Some((mut io, [a0, _])) = multishot(8) else {
            return;
        };
        let peer = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let me = peer.local_addr().expect("addr");
        peer.send_to(&[1u8; SLOT + 500], a0).expect("send");
        peer.send_to(&[2u8; 100], a0).expect("send");
        let mut batch = RecvBatch::default();
        assert_eq!(
            receive(&mut io, &mut batch, 1),
            vec![(0, me, vec![2u8; 100])]
        );
        assert_eq!(batch.oversized(), 1, "the oversized datagram is counted");
    }

    /// GSO bursts from one backend reach another backend's socket with GRO on as one
    /// message per burst (counted as coalesced) and come out as the original datagrams,
    /// in order, interleaved with another source's; with GRO off the kernel splits them
    /// and nothing is counted as coalesced.
    fn gro_bursts(kind: IoKind, gro: bool) {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = s.local_addr().expect("addr");
        let _ = socket2::SockRef::from(&s).set_recv_buffer_size(4 << 20);
        let mut rx = new_backend(kind, vec![s]).expect("backend");
        assert_eq!(rx.set_gro(gro), gro, "GRO {gro} on this kernel");
        let tx_sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let tx_addr = tx_sock.local_addr().expect("addr");
        let mut tx = new_backend(kind, vec![tx_sock]).expect("backend");
        tx.set_gso(true);
        let other = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let other_addr = other.local_addr().expect("addr");
        // Video-like bursts: equal sizes with a shorter last one, then single datagrams.
        let sizes: Vec<usize> = (0..10)
            .map(|_| 1100)
            .chain([700])
            .chain((0..20).map(|_| 1200))
            .chain([300, 1200, 900])
            .collect();
        let mut expected = Vec::new();
        for (i, len) in sizes.iter().enumerate() {
            let tag = i as u8;
            tx.send(0, addr, vec![tag; *len]);
            expected.push((tx_addr, vec![tag; *len]));
            if i % 10 == 0 {
                other.send_to(&[200 + tag / 10; 80], addr).expect("send");
                expected.push((other_addr, vec![200 + tag / 10; 80]));
            }
        }
        assert_eq!(tx.flush(), 0);
        let mut batch = RecvBatch::default();
        let mut got = Vec::new();
        let mut coalesced = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < expected.len() && std::time::Instant::now() < deadline {
            rx.recv(&mut batch);
            assert!(batch.messages() <= BATCH);
            coalesced += batch.coalesced();
            for i in 0..batch.len() {
                let (d, bytes) = batch.get(i).expect("item");
                got.push((d.source, bytes.to_vec()));
            }
        }
        for src in [tx_addr, other_addr] {
            let want: Vec<_> = expected.iter().filter(|d| d.0 == src).collect();
            let have: Vec<_> = got.iter().filter(|d| d.0 == src).collect();
            assert_eq!(have.len(), want.len(), "all datagrams from {src}");
            assert!(have == want, "datagrams from {src} as sent, in order");
        }
        if gro {
            assert!(coalesced >= 10, "bursts arrived coalesced: {coalesced}");
        } else {
            assert_eq!(coalesced, 0);
        }
    }

    #[test]
    fn portable_gro_receives_bursts_as_the_original_datagrams() {
        gro_bursts(IoKind::Portable, true);
        gro_bursts(IoKind::Portable, false);
    }

    #[test]
    fn io_uring_gro_receives_bursts_as_the_original_datagrams() {
        on_io_uring(|k| {
            gro_bursts(k, true);
            gro_bursts(k, false);
        });
    }

    /// Every datagram keeps the time the kernel received it, however long it then waited
    /// in the socket: two sent 60 ms apart and read together are 60 ms apart, and the
    /// first is as old as it is (what transport-cc feedback must report to the sender).
    fn receive_times(kind: IoKind) {
        let (mut io, addr, peer) = pair(kind);
        let ms = std::time::Duration::from_millis;
        for i in 0..3u8 {
            peer.send_to(&[i; 100], addr).expect("send");
        }
        std::thread::sleep(ms(60));
        peer.send_to(&[3; 100], addr).expect("send");
        let mut batch = RecvBatch::default();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < 4 && std::time::Instant::now() < deadline {
            io.recv(&mut batch);
            let clock = RxClock::now();
            for i in 0..batch.len() {
                let (d, bytes) = batch.get(i).expect("item");
                assert_ne!(
                    d.rx_ns, 0,
                    "datagram {} carries a kernel receive time",
                    bytes[0]
                );
                let at = clock.arrival(d.rx_ns, clock.now - ms(900), clock.now);
                got.push((bytes[0], at));
            }
        }
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        assert!(got[3].1 >= got[2].1 + ms(50), "{got:?}");
        assert!(got[0].1 + ms(50) <= std::time::Instant::now(), "{got:?}");
    }

    #[test]
    fn portable_datagrams_keep_the_time_the_kernel_received_them() {
        receive_times(IoKind::Portable);
    }

    #[test]
    fn io_uring_datagrams_keep_the_time_the_kernel_received_them() {
        on_io_uring(receive_times);
    }

    /// The direct path's receive: a connected socket with GRO gets a burst as one message
    /// with its segment size, which splits into the original datagrams.
    #[test]
    fn a_connected_socket_with_gro_receives_a_burst_and_splits_it() {
        let tx_sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let tx_addr = tx_sock.local_addr().expect("addr");
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx.connect(tx_addr).expect("connect");
        set_udp_gro(&rx, true).expect("UDP_GRO");
        set_rx_timestamps(rx.as_raw_fd()).expect("SO_TIMESTAMPNS");
        let mut tx = new_backend(IoKind::Portable, vec![tx_sock]).expect("backend");
        let sizes = [1000, 1000, 1000, 1000, 400];
        for (i, len) in sizes.iter().enumerate() {
            tx.send(0, rx.local_addr().expect("addr"), vec![i as u8; *len]);
        }
        assert_eq!(tx.flush(), 0);
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        let mut one = [0u8; 1];
        let _ = rx.peek(&mut one); // wait until it arrived
        let mut buf = vec![0u8; GRO_SLOT];
        let (n, control) = recv_gro(rx.as_raw_fd(), &mut buf)
            .expect("recv")
            .expect("not truncated");
        assert_eq!(
            (n, control.seg),
            (4400, Some(1000)),
            "one coalesced message"
        );
        let stamped = control.rx_ns;
        assert_ne!(stamped, 0, "a kernel receive time");
        assert!(
            stamped <= RxClock::now().real_ns,
            "received before it was read"
        );
        let got: Vec<Vec<u8>> = gro_segments(n, control.seg)
            .map(|(off, len)| buf[off..off + len].to_vec())
            .collect();
        let want: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, len)| vec![i as u8; *len])
            .collect();
        assert_eq!(got, want);
    }

    /// A coalesced message splits at its segment size (the last datagram may be shorter);
    /// a datagram larger than a slot is dropped and counted, its neighbours kept.
    #[test]
    fn a_coalesced_message_splits_into_segments_and_drops_oversized_ones() {
        let mut b = RecvBatch::default();
        let src: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        let seg = |n| Control {
            seg: Some(n),
            rx_ns: 0,
        };
        b.push_message(0, src, At::Own(0), 2500, seg(1000));
        let lens: Vec<usize> = (0..b.len()).map(|i| b.get(i).expect("d").1.len()).collect();
        assert_eq!(lens, vec![1000, 1000, 500]);
        assert_eq!((b.messages(), b.coalesced(), b.oversized()), (1, 3, 0));
        b.push_message(0, src, At::Own(GRO_SLOT), SLOT + 1, Control::default());
        b.push_message(0, src, At::Own(2 * GRO_SLOT), 10, seg(10));
        assert_eq!((b.len(), b.messages(), b.oversized()), (4, 3, 1));
        b.clear();
        assert_eq!((b.len(), b.messages(), b.coalesced()), (0, 0, 0));
    }

    /// The split both receive paths share covers the message exactly, once: `seg`-byte
    /// datagrams and a shorter last one; no (or a useless) segment size means one datagram.
    #[test]
    fn gro_segments_cover_the_message_exactly_once() {
        let segs = |len, seg| gro_segments(len, seg).collect::<Vec<_>>();
        assert_eq!(
            segs(2500, Some(1000)),
            vec![(0, 1000), (1000, 1000), (2000, 500)]
        );
        assert_eq!(
            segs(3000, Some(1000)),
            vec![(0, 1000), (1000, 1000), (2000, 1000)]
        );
        assert_eq!(segs(800, Some(1000)), vec![(0, 800)]);
        assert_eq!(segs(800, Some(0)), vec![(0, 800)]);
        assert_eq!(segs(800, None), vec![(0, 800)]);
        assert_eq!(segs(0, Some(1000)), vec![]);
        for (len, seg) in [(65_535, 1200), (4401, 1100), (1, 1)] {
            let parts = segs(len, Some(seg));
            assert_eq!(parts.iter().map(|p| p.1).sum::<usize>(), len);
            assert!(parts.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0));
        }
    }

    /// The UDP_GRO control message is found among others; malformed or foreign control
    /// data gives no segment size instead of a bad read.
    #[test]
    fn the_gro_segment_size_is_read_from_control_data_and_malformed_data_is_ignored() {
        fn cmsg(level: libc::c_int, ty: libc::c_int, v: libc::c_int) -> Vec<u8> {
            let hdr = size_of::<libc::cmsghdr>();
            let mut out = vec![0u8; hdr + 8];
            // SAFETY: writes a cmsghdr and an int into a buffer large enough for both.
            unsafe {
                let mut c: libc::cmsghdr = zeroed();
                c.cmsg_len = (hdr + size_of::<libc::c_int>()) as _;
                c.cmsg_level = level;
                c.cmsg_type = ty;
                std::ptr::write_unaligned(out.as_mut_ptr() as *mut libc::cmsghdr, c);
                std::ptr::write_unaligned(out.as_mut_ptr().add(hdr) as *mut libc::c_int, v);
            }
            out
        }
        assert_eq!(
            read_control(&cmsg(libc::SOL_UDP, UDP_GRO, 1200)).seg,
            Some(1200)
        );
        let mut two = cmsg(libc::SOL_IP, libc::IP_TOS, 0);
        two.extend(cmsg(libc::SOL_UDP, UDP_GRO, 900));
        assert_eq!(read_control(&two).seg, Some(900));
        assert_eq!(read_control(&cmsg(libc::SOL_UDP, UDP_GRO, 0)).seg, None);
        assert_eq!(read_control(&cmsg(libc::SOL_UDP, UDP_GRO, -5)).seg, None);
        assert_eq!(read_control(&[]).seg, None);
        let whole = cmsg(libc::SOL_UDP, UDP_GRO, 1200);
        for cut in 0..whole.len() - 4 {
            assert_eq!(read_control(&whole[..cut]).seg, None, "cut at {cut}");
        }
        let mut bad = whole.clone();
        bad[0] = 0xff; // cmsg_len beyond the buffer
        assert_eq!(read_control(&bad).seg, None);
        bad[..8].copy_from_slice(&1u64.to_ne_bytes()); // shorter than a header
        assert_eq!(read_control(&bad).seg, None);
    }

    /// The kernel's receive time (`SCM_TIMESTAMPNS`) is read next to the GRO segment size;
    /// a short or nonsensical timespec gives no time rather than a wrong one.
    #[test]
    fn the_receive_time_is_read_from_control_data_and_malformed_times_are_ignored() {
        fn cmsg(level: libc::c_int, ty: libc::c_int, data: &[u8]) -> Vec<u8> {
            let hdr = size_of::<libc::cmsghdr>();
            let space = hdr + data.len().div_ceil(8) * 8;
            let mut out = vec![0u8; space];
            // SAFETY: writes a cmsghdr into a buffer larger than one.
            unsafe {
                let mut c: libc::cmsghdr = zeroed();
                c.cmsg_len = (hdr + data.len()) as _;
                c.cmsg_level = level;
                c.cmsg_type = ty;
                std::ptr::write_unaligned(out.as_mut_ptr() as *mut libc::cmsghdr, c);
            }
            out[hdr..hdr + data.len()].copy_from_slice(data);
            out
        }
        fn ts(sec: i64, nsec: i64) -> Vec<u8> {
            [sec.to_ne_bytes(), nsec.to_ne_bytes()].concat()
        }
        let stamp = cmsg(
            libc::SOL_SOCKET,
            libc::SCM_TIMESTAMPNS,
            &ts(1_700_000_000, 5),
        );
        assert_eq!(
            read_control(&stamp),
            Control {
                seg: None,
                rx_ns: 1_700_000_000_000_000_005
            }
        );
        let mut both = cmsg(libc::SOL_UDP, UDP_GRO, &1200i32.to_ne_bytes());
        both.extend(&stamp);
        assert_eq!(
            read_control(&both),
            Control {
                seg: Some(1200),
                rx_ns: 1_700_000_000_000_000_005
            }
        );
        for bad in [
            ts(-1, 0),
            ts(5, 1_000_000_000),
            ts(5, -1),
            ts(0, 0),
            ts(i64::MAX, 0),
        ] {
            let c = cmsg(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &bad);
            assert_eq!(read_control(&c).rx_ns, 0, "{bad:?}");
        }
        let short = cmsg(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &ts(5, 5)[..12]);
        assert_eq!(read_control(&short).rx_ns, 0);
        for cut in 0..stamp.len() {
            assert_eq!(read_control(&stamp[..cut]).rx_ns, 0, "cut at {cut}");
        }
    }

    /// Kernel receive times become the worker's clock: as old as the wall clock says,
    /// never before the floor, never after the reading, at most `MAX_RX_AGE` old, and the
    /// fallback for datagrams without a stamp.
    #[test]
    fn receive_times_convert_to_the_worker_clock_within_bounds() {
        let c = RxClock::now();
        let ms = |n: u64| std::time::Duration::from_millis(n);
        let long_ago = c.now - ms(10_000);
        let fallback = c.now - ms(3);
        assert_eq!(c.arrival(0, long_ago, fallback), fallback);
        assert_eq!(
            c.arrival(c.real_ns - 40_000_000, long_ago, fallback),
            c.now - ms(40)
        );
        assert_eq!(
            c.arrival(c.real_ns - 40_000_000, c.now - ms(10), fallback),
            c.now - ms(10)
        );
        assert_eq!(c.arrival(c.real_ns + 5_000_000, long_ago, fallback), c.now);
        assert_eq!(c.arrival(1, long_ago, fallback), c.now - MAX_RX_AGE);
        assert_eq!(c.arrival(c.real_ns, c.now + ms(5), fallback), c.now);
    }

    #[test]
    fn sockaddr_conversion_round_trips_v4_and_v6() {
        for a in ["127.0.0.1:8443", "[::1]:9", "[fe80::1%2]:5000"] {
            let a: SocketAddr = a.parse().expect("addr");
            let (s, _) = to_sockaddr(a);
            assert_eq!(from_sockaddr(&s), Some(a));
        }
    }
}
