//! The data plane's sockets: one SO_REUSEPORT UDP socket per local address per worker on
//! the shared RTC port, and a passive ICE-TCP listener likewise (spec §6.2). The kernel
//! spreads remote 4-tuples over the workers' sockets; steering fixes the rest.

use std::io;
use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::RtcConfig;

/// Socket buffers requested (upstream asks for 16 MiB; the kernel caps at rmem_max).
const SOCKET_BUFFER: usize = 16 * 1024 * 1024;

/// One local address we listen on and the address we advertise for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub local: SocketAddr,
    pub advertised: SocketAddr,
}

/// The local IPs to use (spec §6.2): the configured lists, or every address of every up
/// interface (loopback included; IPv6 only with `enable_ipv6` and only global unicast).
pub fn local_ips(cfg: &RtcConfig, listed: &str) -> io::Result<Vec<IpAddr>> {
    let parse =
        |s: &str| -> Vec<IpAddr> { s.split(',').filter_map(|p| p.trim().parse().ok()).collect() };
    let listed = parse(listed);
    if !listed.is_empty() {
        return Ok(listed);
    }
    let mut ips = Vec::new();
    for iface in if_addrs::get_if_addrs()? {
        let ip = iface.ip();
        let ok = match ip {
            IpAddr::V4(_) => true,
            IpAddr::V6(v6) => {
                cfg.enable_ipv6
                    && !v6.is_loopback()
                    && !v6.is_unspecified()
                    && (v6.segments()[0] & 0xe000) == 0x2000
            }
        };
        if ok && !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    Ok(ips)
}

fn reuse_socket(addr: SocketAddr, ty: Type, proto: Protocol) -> io::Result<Socket> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, ty, Some(proto))?;
    s.set_reuse_address(true)?;
    #[cfg(unix)]
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

/// A non-blocking UDP socket on `addr` that shares the port with the other workers.
pub fn udp_socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let s = reuse_socket(addr, Type::DGRAM, Protocol::UDP)?;
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// A non-blocking UDP socket on the shared `local` address, connected to `peer`: the kernel
/// delivers `peer`'s datagrams to it rather than to the SO_REUSEPORT group (the direct path
/// for a flow the group hashes to another worker; see the test below).
pub fn connected_udp_socket(
    local: SocketAddr,
    peer: SocketAddr,
) -> io::Result<std::net::UdpSocket> {
    let s = reuse_socket(local, Type::DGRAM, Protocol::UDP)?;
    s.bind(&local.into())?;
    s.connect(&peer.into())?;
    Ok(s.into())
}

/// A non-blocking TCP listener on `addr` that shares the port with the other workers.
pub fn tcp_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = reuse_socket(addr, Type::STREAM, Protocol::TCP)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// Checks the RTC ports are free before workers start, so a busy port fails start-up
/// with a clear error (upstream: a busy port is fatal).
pub fn probe_ports(udp: &[Endpoint], tcp: &[Endpoint]) -> io::Result<()> {
    for e in udp {
        let probe = Socket::new(
            if e.local.is_ipv4() {
                Domain::IPV4
            } else {
                Domain::IPV6
            },
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        probe
            .bind(&e.local.into())
            .map_err(|err| io::Error::new(err.kind(), format!("udp {}: {err}", e.local)))?;
    }
    for e in tcp {
        let probe = Socket::new(
            if e.local.is_ipv4() {
                Domain::IPV4
            } else {
                Domain::IPV6
            },
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        // As the listeners themselves: connections of a previous run left in TIME_WAIT
        // must not make a restart fail (a live listener still does).
        probe.set_reuse_address(true)?;
        probe
            .bind(&e.local.into())
            .map_err(|err| io::Error::new(err.kind(), format!("tcp {}: {err}", e.local)))?;
    }
    Ok(())
}

/// What the workers bind and what they advertise, from the `[rtc]` config.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub udp: Vec<Endpoint>,
    pub tcp: Vec<Endpoint>,
    pub candidates: super::media::LocalCandidates,
}

/// Plans sockets and host candidates (spec §6.2): one UDP socket per local IP on
/// `ice_port_udp`; TCP listeners per listed IP, or one wildcard listener, on `ice_port_tcp`.
/// `advertise` maps a local IP to the address clients should use (host overrides).
pub fn plan(cfg: &RtcConfig, advertise: &dyn Fn(IpAddr) -> (IpAddr, u16)) -> io::Result<Plan> {
    let mut p = Plan::default();
    let udp_ips = local_ips(cfg, &cfg.ice_address_udp)?;
    for ip in &udp_ips {
        let local = SocketAddr::new(*ip, cfg.ice_port_udp);
        let (adv_ip, adv_port) = advertise(*ip);
        let advertised = SocketAddr::new(
            adv_ip,
            if adv_port == 0 {
                cfg.ice_port_udp
            } else {
                adv_port
            },
        );
        p.udp.push(Endpoint { local, advertised });
        p.candidates.udp.push(advertised);
    }
    let listed_tcp = !cfg.ice_address_tcp.trim().is_empty();
    let tcp_ips = local_ips(cfg, &cfg.ice_address_tcp)?;
    if listed_tcp {
        for ip in &tcp_ips {
            let local = SocketAddr::new(*ip, cfg.ice_port_tcp);
            let (adv_ip, adv_port) = advertise(*ip);
            let advertised = SocketAddr::new(
                adv_ip,
                if adv_port == 0 {
                    cfg.ice_port_tcp
                } else {
                    adv_port
                },
            );
            p.tcp.push(Endpoint { local, advertised });
        }
    } else {
        let any: IpAddr = std::net::Ipv4Addr::UNSPECIFIED.into();
        let local = SocketAddr::new(any, cfg.ice_port_tcp);
        p.tcp.push(Endpoint {
            local,
            advertised: local,
        });
        if cfg.enable_ipv6 {
            let any6: IpAddr = std::net::Ipv6Addr::UNSPECIFIED.into();
            let local = SocketAddr::new(any6, cfg.ice_port_tcp);
            p.tcp.push(Endpoint {
                local,
                advertised: local,
            });
        }
    }
    for ip in &tcp_ips {
        let (adv_ip, adv_port) = advertise(*ip);
        p.candidates.tcp.push(SocketAddr::new(
            adv_ip,
            if adv_port == 0 {
                cfg.ice_port_tcp
            } else {
                adv_port
            },
        ));
    }
    Ok(p)
}

/// STUN public-address discovery (spec §6.3): from `local_ip:port`, one Binding Request to
/// `server` ("host:port", scheme already stripped), waiting at most `timeout`.
pub fn stun_discover(
    local_ip: IpAddr,
    port: u16,
    server: &str,
    timeout: std::time::Duration,
) -> Option<IpAddr> {
    use std::net::ToSocketAddrs;
    let target = server
        .to_socket_addrs()
        .ok()?
        .find(|a| a.is_ipv4() == local_ip.is_ipv4())?;
    let sock = udp_socket(SocketAddr::new(local_ip, port)).ok()?;
    sock.set_nonblocking(false).ok()?;
    sock.set_read_timeout(Some(timeout)).ok()?;
    let mut tid = [0u8; 12];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut tid);
    sock.send_to(&rtcd_proto::stun::binding_request(tid), target)
        .ok()?;
    let deadline = std::time::Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    while std::time::Instant::now() < deadline {
        let (n, from) = sock.recv_from(&mut buf).ok()?;
        if from != target {
            continue;
        }
        if let Some(addr) = rtcd_proto::stun::binding_response_address(&buf[..n], &tid) {
            return Some(addr.ip());
        }
    }
    None
}

/// `stun:host:port` / `stuns:host:port` → `host:port` (upstream queries both as plain UDP).
pub fn stun_target(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("stun:")
        .or_else(|| url.strip_prefix("stuns:"))?;
    let rest = rest.split('?').next()?;
    rest.rsplit_once(':').map(|_| rest)
}

/// What every local IP advertises (spec §6.3–6.4): `ice_host_override` in its three forms,
/// else STUN-discovered public IPs, and `ice_host_port_override` on external addresses.
/// Deviation: a hostname override is resolved once at start-up (upstream: at every join).
pub fn host_candidates(
    cfg: &crate::config::Config,
) -> Result<Vec<rtcd_proto::host::HostCandidate>, String> {
    use rtcd_proto::host::{self, HostOverride, HostOverrideSpec};
    let spec = host::parse_host_override(&cfg.rtc.ice_host_override)
        .map_err(|e| format!("rtc.ice_host_override: {e}"))?;
    let ov = match spec {
        HostOverrideSpec::None => HostOverride::None,
        HostOverrideSpec::Mapping(m) => HostOverride::Mapping(m),
        HostOverrideSpec::IpOrHostname(name) => match name.parse::<std::net::IpAddr>() {
            Ok(ip) => HostOverride::Ip(ip),
            Err(_) => {
                use std::net::ToSocketAddrs;
                let ip = (name.as_str(), 0)
                    .to_socket_addrs()
                    .map_err(|e| format!("rtc.ice_host_override = {name:?}: cannot resolve: {e}"))?
                    .map(|a| a.ip())
                    .find(|ip| ip.is_ipv4() || cfg.rtc.enable_ipv6)
                    .ok_or_else(|| {
                        format!("rtc.ice_host_override = {name:?}: no usable address")
                    })?;
                HostOverride::Ip(ip)
            }
        },
    };
    let public: Vec<(std::net::IpAddr, std::net::IpAddr)> =
        discover_public_ips(cfg).into_iter().collect();
    let mut ips = local_ips(&cfg.rtc, &cfg.rtc.ice_address_udp).map_err(|e| format!("rtc: {e}"))?;
    for ip in local_ips(&cfg.rtc, &cfg.rtc.ice_address_tcp).map_err(|e| format!("rtc: {e}"))? {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    let all = local_ips(&cfg.rtc, "").map_err(|e| format!("rtc: {e}"))?;
    let port = cfg.rtc.ice_host_port_override.resolve(&all);
    let out = host::host_candidates(&ips, &ov, &public, port);
    for c in &out {
        if c.advertised != c.local || c.port_override.is_some() {
            tracing::info!(local = %c.local, advertised = %c.advertised, port = ?c.port_override, "host candidate rewritten");
        }
    }
    Ok(out)
}

/// STUN discovery of public addresses (spec §6.3): only when no host override is set and a
/// STUN server is configured; sequential per local UDP address, 5 s each at most.
fn discover_public_ips(
    cfg: &crate::config::Config,
) -> std::collections::HashMap<std::net::IpAddr, std::net::IpAddr> {
    let mut out = std::collections::HashMap::new();
    if !cfg.rtc.ice_host_override.trim().is_empty() {
        return out;
    }
    let Some(target) = cfg.rtc.first_stun_url().and_then(stun_target) else {
        return out;
    };
    let Ok(ips) = local_ips(&cfg.rtc, &cfg.rtc.ice_address_udp) else {
        return out;
    };
    for ip in ips {
        match stun_discover(
            ip,
            cfg.rtc.ice_port_udp,
            target,
            std::time::Duration::from_secs(5),
        ) {
            Some(public) => {
                tracing::info!(local = %ip, %public, "public address discovered");
                out.insert(ip, public);
            }
            None => tracing::warn!(local = %ip, server = target, "STUN discovery got no answer"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_binds_the_tcp_port_while_old_connections_sit_in_time_wait() {
        use std::io::Read;
        let l = tcp_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        l.set_nonblocking(false).unwrap();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        let (server_side, _) = l.accept().unwrap();
        // The server closes first, so its end of the connection goes to TIME_WAIT.
        drop(server_side);
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).unwrap(), 0);
        drop(client);
        drop(l);
        let e = Endpoint {
            local: addr,
            advertised: addr,
        };
        probe_ports(&[], &[e]).expect("probe passes despite TIME_WAIT");
        tcp_listener(addr).expect("listener binds despite TIME_WAIT");
    }

    /// DESIGN.md decision 3, checked on this kernel: a socket on the shared port that is
    /// connected to one client receives exactly that client's datagrams, ahead of the
    /// reuseport group (the basis of a direct path for handed-over flows).
    #[test]
    fn a_connected_socket_on_the_shared_port_takes_its_clients_datagrams() {
        let group_a = udp_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = group_a.local_addr().unwrap();
        let group_b = udp_socket(addr).unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let direct = udp_socket(addr).unwrap();
        direct.connect(client.local_addr().unwrap()).unwrap();
        let others: Vec<std::net::UdpSocket> = (0..8)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for _ in 0..20 {
            client.send_to(b"mine", addr).unwrap();
            for o in &others {
                o.send_to(b"other", addr).unwrap();
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let drain = |s: &std::net::UdpSocket| {
            let mut buf = [0u8; 64];
            let mut got = Vec::new();
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                got.push((buf[..n].to_vec(), from));
            }
            got
        };
        let direct_got = drain(&direct);
        let group_got: Vec<_> = drain(&group_a).into_iter().chain(drain(&group_b)).collect();
        assert_eq!(
            direct_got.len(),
            20,
            "every datagram of the connected client"
        );
        assert!(direct_got.iter().all(|(b, _)| b == b"mine"));
        assert_eq!(
            group_got.len(),
            20 * others.len(),
            "the rest went to the group"
        );
        assert!(group_got.iter().all(|(b, _)| b == b"other"));
    }

    #[test]
    fn a_port_held_by_a_live_listener_fails_the_probe() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let e = Endpoint {
            local: addr,
            advertised: addr,
        };
        let err = probe_ports(&[], &[e]).unwrap_err();
        assert!(err.to_string().contains("tcp 127.0.0.1:"), "{err}");
    }

    fn cfg(override_: &str, port_override: &str) -> crate::config::Config {
        let mut c = crate::config::Config::default();
        c.rtc.ice_address_udp = "127.0.0.1".into();
        c.rtc.ice_address_tcp = "127.0.0.1".into();
        c.rtc.ice_host_override = override_.into();
        if !port_override.is_empty() {
            c.rtc.ice_host_port_override =
                crate::config::HostPortOverride::parse(port_override).unwrap();
        }
        c
    }

    #[test]
    fn host_override_forms_rewrite_the_advertised_address_and_port() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let c = host_candidates(&cfg("", "")).unwrap();
        assert_eq!(
            (c[0].local, c[0].advertised, c[0].port_override),
            (lo, lo, None)
        );
        let c = host_candidates(&cfg("203.0.113.9", "30000")).unwrap();
        assert_eq!(c[0].advertised, "203.0.113.9".parse::<IpAddr>().unwrap());
        assert_eq!(c[0].port_override, Some(30000));
        let c = host_candidates(&cfg("198.51.100.1/127.0.0.1", "")).unwrap();
        assert_eq!(c[0].advertised, "198.51.100.1".parse::<IpAddr>().unwrap());
        let c = host_candidates(&cfg("localhost", "")).unwrap();
        assert!(c[0].advertised.is_loopback());
        let p = plan(&cfg("203.0.113.9", "30000").rtc, &|ip| {
            c.iter()
                .find(|h| h.local == ip)
                .map_or((ip, 0), |_| ("203.0.113.9".parse().unwrap(), 30000))
        })
        .unwrap();
        assert_eq!(
            p.candidates.udp[0],
            "203.0.113.9:30000".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            p.udp[0].local,
            "127.0.0.1:8443".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn stun_urls_need_a_port() {
        assert_eq!(
            stun_target("stun:stun.example.com:3478"),
            Some("stun.example.com:3478")
        );
        assert_eq!(stun_target("stuns:1.2.3.4:5349"), Some("1.2.3.4:5349"));
        assert_eq!(stun_target("stun:stun.example.com"), None);
        assert_eq!(stun_target("turn:x:1"), None);
    }

    #[test]
    fn discovery_reads_the_reflexive_address_from_a_local_stun_server() {
        // A tiny STUN server on loopback that reports a fixed public address.
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            assert!(n >= 20);
            let mut resp = vec![0x01, 0x01, 0x00, 12];
            resp.extend_from_slice(&buf[4..20]);
            let port = 9999u16 ^ 0x2112;
            resp.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0x00, 0x01]);
            resp.extend_from_slice(&port.to_be_bytes());
            resp.extend_from_slice(&[198 ^ 0x21, 51 ^ 0x12, 100 ^ 0xa4, 7 ^ 0x42]);
            server.send_to(&resp, from).unwrap();
        });
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ip = stun_discover(
            "127.0.0.1".parse().unwrap(),
            port,
            &addr.to_string(),
            std::time::Duration::from_secs(5),
        );
        t.join().unwrap();
        assert_eq!(ip, Some("198.51.100.7".parse().unwrap()));
    }
}
