//! Advertised host candidates (spec §6.3–6.4): which address, and which port, each local
//! IP is advertised with under `rtc.ice_host_override`, STUN-discovered public addresses and
//! `rtc.ice_host_port_override`. Upstream splits this between `service/rtc/utils.go`
//! (`generateAddrsPairs`, `getExternalAddrMapFromHostOverride`), pion's 1:1 NAT mapper in
//! host mode (an unmapped local IP is advertised as itself) and the port rewrite in
//! `sfu.go`'s `OnICECandidate`.
//!
//! Owns: parsing the override setting and computing the candidates. Must not: resolve
//! hostnames or probe STUN (the caller does, and passes the results in).
//!
//! Deliberate difference (spec §12 quirk 13): upstream compares candidate addresses with the
//! override *string*, so a hostname override never gets the port override. Here the caller
//! passes the resolved address, and the port override applies to it.

use std::net::IpAddr;

/// Longest `ice_host_override` value accepted.
pub const MAX_HOST_OVERRIDE_LEN: usize = 64 * 1024;
/// Longest piece of the setting quoted back in an error.
const MAX_QUOTED: usize = 64;

/// `rtc.ice_host_override` as written in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostOverrideSpec {
    /// Empty: advertise local IPs, rewritten by STUN discovery when a STUN server is set.
    None,
    /// One IP address or hostname; hostnames are resolved by the caller (upstream: at each
    /// session creation, 1 s timeout, first address of the allowed families).
    IpOrHostname(String),
    /// `EXT/INT,…` (detected by a `/`): host candidates on `INT` are advertised as `EXT`.
    Mapping(Vec<(IpAddr, IpAddr)>),
}

/// The override with any hostname already resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostOverride {
    None,
    Ip(IpAddr),
    /// `(external, internal)` pairs.
    Mapping(Vec<(IpAddr, IpAddr)>),
}

/// One local IP's host candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCandidate {
    /// The address we listen on.
    pub local: IpAddr,
    /// The address put in the candidate.
    pub advertised: IpAddr,
    /// The port put in the candidate (UDP and TCP alike) instead of the listening port.
    pub port_override: Option<u16>,
}

/// Why an `ice_host_override` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostOverrideError {
    #[error("ice_host_override is {len} bytes, over the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    #[error("ice_host_override mapping entry {0:?} is not EXT/INT")]
    NotAPair(String),
    #[error("ice_host_override mapping entry {0:?} does not hold two IP addresses")]
    NotAnIp(String),
    #[error("ice_host_override mapping entry {0:?} mixes IPv4 and IPv6")]
    MixedFamilies(String),
    #[error("ice_host_override maps internal address {0} twice")]
    DuplicateInternal(IpAddr),
}

fn quoted(s: &str) -> String {
    s.chars().take(MAX_QUOTED).collect()
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// Parses `rtc.ice_host_override` (surrounding whitespace ignored). A mapping is checked as
/// pion checks it when each session is created (two IPs per entry, one family per entry, no
/// internal address twice), so a bad mapping fails at start-up instead of at every join.
/// Single values are not checked: any string may be a hostname.
pub fn parse_host_override(s: &str) -> Result<HostOverrideSpec, HostOverrideError> {
    if s.len() > MAX_HOST_OVERRIDE_LEN {
        return Err(HostOverrideError::TooLong {
            len: s.len(),
            max: MAX_HOST_OVERRIDE_LEN,
        });
    }
    let s = s.trim();
    if s.is_empty() {
        return Ok(HostOverrideSpec::None);
    }
    if !s.contains('/') {
        return Ok(HostOverrideSpec::IpOrHostname(s.to_string()));
    }
    let mut pairs: Vec<(IpAddr, IpAddr)> = Vec::new();
    for entry in s.split(',').map(str::trim) {
        let (ext, int) = entry
            .split_once('/')
            .ok_or_else(|| HostOverrideError::NotAPair(quoted(entry)))?;
        let (Ok(ext), Ok(int)) = (ext.trim().parse::<IpAddr>(), int.trim().parse::<IpAddr>())
        else {
            return Err(HostOverrideError::NotAnIp(quoted(entry)));
        };
        if !same_family(ext, int) {
            return Err(HostOverrideError::MixedFamilies(quoted(entry)));
        }
        if pairs.iter().any(|&(_, i)| i == int) {
            return Err(HostOverrideError::DuplicateInternal(int));
        }
        pairs.push((ext, int));
    }
    Ok(HostOverrideSpec::Mapping(pairs))
}

/// The addresses whose host candidates get the port override (upstream
/// `getExternalAddrMapFromHostOverride`): the override IP; or every `EXT` of a mapping with
/// `EXT ≠ INT`; or, without an override, every STUN-discovered public address.
pub fn external_addresses(
    host_override: &HostOverride,
    stun_public: &[(IpAddr, IpAddr)],
) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = match host_override {
        HostOverride::None => stun_public.iter().map(|&(_, public)| public).collect(),
        HostOverride::Ip(ip) => vec![*ip],
        HostOverride::Mapping(pairs) => pairs
            .iter()
            .filter(|(ext, int)| ext != int)
            .map(|&(ext, _)| ext)
            .collect(),
    };
    out.sort_unstable();
    out.dedup();
    out
}

/// The address a local IP is advertised with.
fn advertised(
    local: IpAddr,
    local_ips: &[IpAddr],
    host_override: &HostOverride,
    stun_public: &[(IpAddr, IpAddr)],
) -> IpAddr {
    match host_override {
        // Spec §6.3 (1): the discovered public address, else the local one.
        HostOverride::None => stun_public
            .iter()
            .find(|&&(l, _)| l == local)
            .map_or(local, |&(_, public)| public),
        // Spec §6.3 (2): a lone local IP of the override's family maps to it, even loopback;
        // otherwise loopback stays itself and every other IP of that family maps to it.
        HostOverride::Ip(ext) => {
            let lone = local_ips.len() == 1;
            if !same_family(*ext, local) || (!lone && local.is_loopback()) {
                local
            } else {
                *ext
            }
        }
        // Spec §6.3 (3): verbatim; pion advertises an unmapped IP as itself.
        HostOverride::Mapping(pairs) => pairs
            .iter()
            .find(|&&(_, int)| int == local)
            .map_or(local, |&(ext, _)| ext),
    }
}

/// The host candidate of every local IP, in order. `stun_public` lists `(local, public)`
/// discoveries (ignored when an override is set, as upstream); `port_override` is the
/// single port already resolved from `ice_host_port_override` (its `IP/port` form picks the
/// port of the first of our own local IPs listed), applied only to candidates advertised on
/// an [external address](external_addresses).
pub fn host_candidates(
    local_ips: &[IpAddr],
    host_override: &HostOverride,
    stun_public: &[(IpAddr, IpAddr)],
    port_override: Option<u16>,
) -> Vec<HostCandidate> {
    let external = external_addresses(host_override, stun_public);
    local_ips
        .iter()
        .map(|&local| {
            let advertised = advertised(local, local_ips, host_override, stun_public);
            HostCandidate {
                local,
                advertised,
                port_override: port_override.filter(|_| external.contains(&advertised)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| ip(s)).collect()
    }

    /// `(advertised, local)` like upstream's "EXT/INT" pair strings.
    fn pairs(c: &[HostCandidate]) -> Vec<String> {
        c.iter()
            .map(|c| format!("{}/{}", c.advertised, c.local))
            .collect()
    }

    fn spec(s: &str) -> HostOverride {
        match parse_host_override(s).unwrap() {
            HostOverrideSpec::None => HostOverride::None,
            HostOverrideSpec::IpOrHostname(h) => HostOverride::Ip(ip(&h)),
            HostOverrideSpec::Mapping(m) => HostOverride::Mapping(m),
        }
    }

    fn stun(list: &[(&str, &str)]) -> Vec<(IpAddr, IpAddr)> {
        list.iter().map(|(l, p)| (ip(l), ip(p))).collect()
    }

    /// Upstream utils_test.go `TestGenerateAddrsPairs`. Upstream returns only the pairs it
    /// hands pion; a local IP without a pair is advertised as itself, which is written here.
    #[test]
    fn advertised_addresses_match_upstream_pair_table() {
        let two = ips(&["127.0.0.1", "10.1.1.1"]);
        assert!(host_candidates(&[], &HostOverride::None, &[], None).is_empty());
        assert!(host_candidates(&[], &spec("1.1.1.1"), &[], None).is_empty());
        /// (override, STUN discoveries, expected "EXT/INT" per local IP)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
        let cases: &[Case] = &[
            // no public addresses
            ("", &[], &["127.0.0.1/127.0.0.1", "10.1.1.1/10.1.1.1"]),
            // full NAT mapping
            (
                "1.1.1.1/127.0.0.1,1.1.1.1/10.1.1.1",
                &[],
                &["1.1.1.1/127.0.0.1", "1.1.1.1/10.1.1.1"],
            ),
            // no public addresses with override
            ("1.1.1.1", &[], &["127.0.0.1/127.0.0.1", "1.1.1.1/10.1.1.1"]),
            // single public address for multiple local addrs, no override
            (
                "",
                &[("10.1.1.1", "1.1.1.1")],
                &["127.0.0.1/127.0.0.1", "1.1.1.1/10.1.1.1"],
            ),
            // multiple public addresses, no override
            (
                "",
                &[("127.0.0.1", "1.1.1.1"), ("10.1.1.1", "1.1.1.2")],
                &["1.1.1.1/127.0.0.1", "1.1.1.2/10.1.1.1"],
            ),
            // multiple public addresses, with override: the override wins
            (
                "8.8.8.8",
                &[("127.0.0.1", "1.1.1.1"), ("10.1.1.1", "1.1.1.2")],
                &["127.0.0.1/127.0.0.1", "8.8.8.8/10.1.1.1"],
            ),
        ];
        for (ovr, public, want) in cases {
            let got = host_candidates(&two, &spec(ovr), &stun(public), None);
            assert_eq!(pairs(&got), *want, "override {ovr:?}, public {public:?}");
        }
    }

    #[test]
    fn a_lone_local_ip_maps_to_the_override_only_within_its_family() {
        let one = ips(&["127.0.0.1"]);
        assert_eq!(
            pairs(&host_candidates(&one, &spec("1.2.3.4"), &[], None)),
            ["1.2.3.4/127.0.0.1"],
            "even loopback, when it is the only one"
        );
        let v6 = ips(&["2001:db8::1"]);
        assert_eq!(
            pairs(&host_candidates(&v6, &spec("1.2.3.4"), &[], None)),
            ["2001:db8::1/2001:db8::1"]
        );
    }

    #[test]
    fn loneness_counts_every_local_ip_not_only_those_of_the_overrides_family() {
        // Upstream tests `len(localIPs) == 1`: with an IPv6 address beside it, the only IPv4
        // address is loopback and stays itself.
        let locals = ips(&["127.0.0.1", "2001:db8::1"]);
        assert_eq!(
            pairs(&host_candidates(&locals, &spec("1.2.3.4"), &[], None)),
            ["127.0.0.1/127.0.0.1", "2001:db8::1/2001:db8::1"]
        );
        let locals = ips(&["10.0.0.5", "2001:db8::1"]);
        assert_eq!(
            pairs(&host_candidates(&locals, &spec("1.2.3.4"), &[], None)),
            ["1.2.3.4/10.0.0.5", "2001:db8::1/2001:db8::1"]
        );
    }

    #[test]
    fn several_local_ips_map_by_family_and_loopback_stays_itself() {
        let locals = ips(&["127.0.0.1", "10.0.0.5", "192.168.1.9", "2001:db8::1", "::1"]);
        assert_eq!(
            pairs(&host_candidates(&locals, &spec("203.0.113.7"), &[], None)),
            [
                "127.0.0.1/127.0.0.1",
                "203.0.113.7/10.0.0.5",
                "203.0.113.7/192.168.1.9",
                "2001:db8::1/2001:db8::1",
                "::1/::1",
            ]
        );
        assert_eq!(
            pairs(&host_candidates(&locals, &spec("2001:db8::ff"), &[], None)),
            [
                "127.0.0.1/127.0.0.1",
                "10.0.0.5/10.0.0.5",
                "192.168.1.9/192.168.1.9",
                "2001:db8::ff/2001:db8::1",
                "::1/::1",
            ]
        );
    }

    #[test]
    fn a_mapping_is_used_verbatim_and_unmapped_ips_stay_themselves() {
        let locals = ips(&["127.0.0.1", "10.0.0.5", "10.0.0.6"]);
        let got = host_candidates(
            &locals,
            &spec("203.0.113.7/10.0.0.5, 127.0.0.1/127.0.0.1"),
            &stun(&[("10.0.0.6", "198.51.100.1")]),
            None,
        );
        assert_eq!(
            pairs(&got),
            [
                "127.0.0.1/127.0.0.1",
                "203.0.113.7/10.0.0.5",
                "10.0.0.6/10.0.0.6"
            ],
            "STUN results are ignored under an override"
        );
    }

    /// Upstream utils_test.go `TestGetExternalAddrMapFromHostOverride`.
    #[test]
    fn external_addresses_match_upstream_table() {
        assert!(external_addresses(&HostOverride::None, &[]).is_empty());
        assert_eq!(
            external_addresses(&spec("10.0.0.1"), &[]),
            ips(&["10.0.0.1"])
        );
        assert_eq!(
            external_addresses(
                &spec("10.0.0.1/127.0.0.1,10.0.0.3/127.0.0.2,10.0.0.2/127.0.0.3"),
                &[]
            ),
            ips(&["10.0.0.1", "10.0.0.2", "10.0.0.3"])
        );
        assert_eq!(
            external_addresses(
                &spec("10.0.0.1/127.0.0.1,127.0.0.2/127.0.0.2,10.0.0.2/127.0.0.3"),
                &[]
            ),
            ips(&["10.0.0.1", "10.0.0.2"])
        );
        assert_eq!(
            external_addresses(&HostOverride::None, &stun(&[("127.0.0.1", "10.0.0.1")])),
            ips(&["10.0.0.1"])
        );
    }

    /// Upstream server_test.go `TestICEHostPortOverride`, on the candidate computation.
    #[test]
    fn the_port_override_applies_only_to_external_addresses() {
        let locals = ips(&["127.0.0.1", "10.0.0.5"]);
        let ports = |c: Vec<HostCandidate>| -> Vec<(String, Option<u16>)> {
            c.iter()
                .map(|c| (c.advertised.to_string(), c.port_override))
                .collect()
        };
        // No host override, no STUN: nothing is external.
        assert_eq!(
            ports(host_candidates(
                &locals,
                &HostOverride::None,
                &[],
                Some(8443)
            )),
            [("127.0.0.1".into(), None), ("10.0.0.5".into(), None)]
        );
        // Single IP override: only its candidates.
        assert_eq!(
            ports(host_candidates(&locals, &spec("8.8.8.8"), &[], Some(8443))),
            [("127.0.0.1".into(), None), ("8.8.8.8".into(), Some(8443))]
        );
        // STUN-derived: only the discovered public address.
        assert_eq!(
            ports(host_candidates(
                &locals,
                &HostOverride::None,
                &stun(&[("127.0.0.1", "8.8.8.8")]),
                Some(8443)
            )),
            [("8.8.8.8".into(), Some(8443)), ("10.0.0.5".into(), None)]
        );
        // Mapping: EXT ≠ INT entries only.
        assert_eq!(
            ports(host_candidates(
                &locals,
                &spec("127.0.0.1/127.0.0.1,8.8.8.8/10.0.0.5"),
                &[],
                Some(8443)
            )),
            [("127.0.0.1".into(), None), ("8.8.8.8".into(), Some(8443))]
        );
        // No port override: nothing changes.
        assert!(host_candidates(&locals, &spec("8.8.8.8"), &[], None)
            .iter()
            .all(|c| c.port_override.is_none()));
    }

    #[test]
    fn a_loopback_override_gets_the_port_like_upstream() {
        // Membership, not mapping, decides: a loopback candidate equal to the override IP is
        // "external" upstream too (tests here advertise 127.0.0.1).
        let locals = ips(&["127.0.0.1", "10.0.0.5"]);
        let got = host_candidates(&locals, &spec("127.0.0.1"), &[], Some(9000));
        assert_eq!(got[0].advertised, ip("127.0.0.1"));
        assert_eq!(got[0].port_override, Some(9000));
        assert_eq!(got[1].advertised, ip("127.0.0.1"));
    }

    #[test]
    fn override_settings_parse_into_their_three_forms() {
        assert_eq!(parse_host_override(""), Ok(HostOverrideSpec::None));
        assert_eq!(parse_host_override("  "), Ok(HostOverrideSpec::None));
        assert_eq!(
            parse_host_override(" rtc.example.com "),
            Ok(HostOverrideSpec::IpOrHostname("rtc.example.com".into()))
        );
        assert_eq!(
            parse_host_override("2001:db8::1"),
            Ok(HostOverrideSpec::IpOrHostname("2001:db8::1".into()))
        );
        assert_eq!(
            parse_host_override("1.1.1.1/10.0.0.1, 2001:db8::1/fd00::1"),
            Ok(HostOverrideSpec::Mapping(vec![
                (ip("1.1.1.1"), ip("10.0.0.1")),
                (ip("2001:db8::1"), ip("fd00::1")),
            ]))
        );
    }

    #[test]
    fn malformed_mappings_are_refused_with_the_entry() {
        use HostOverrideError::*;
        let cases = [
            ("1.1.1.1/10.0.0.1,5.5.5.5", NotAPair("5.5.5.5".into())),
            ("1.1.1.1/10.0.0.1,", NotAPair("".into())),
            (
                "1.1.1.1/host.example",
                NotAnIp("1.1.1.1/host.example".into()),
            ),
            ("1.1.1.1/10.0.0.1/x", NotAnIp("1.1.1.1/10.0.0.1/x".into())),
            ("1.1.1.1/fd00::1", MixedFamilies("1.1.1.1/fd00::1".into())),
            (
                "1.1.1.1/10.0.0.1,2.2.2.2/10.0.0.1",
                DuplicateInternal(ip("10.0.0.1")),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_host_override(input), Err(want), "{input:?}");
        }
        let long = format!("{}/1.1.1.1", "9".repeat(200));
        match parse_host_override(&long) {
            Err(NotAnIp(q)) => assert_eq!(q.chars().count(), MAX_QUOTED),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_host_override(&"a".repeat(MAX_HOST_OVERRIDE_LEN + 1)),
            Err(TooLong { .. })
        ));
    }
}
