//! Any `ice_host_override` value → `parse_host_override` must not panic and its error message
//! stays short; a parsed mapping has one family per entry, no internal address twice, and
//! re-parses from its own `EXT/INT,…` rendering; the candidates computed from it keep every
//! local IP, in order, in its own family, and give the port override only to external
//! addresses. Input bytes that are not UTF-8 are read lossily.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use rtcd_proto::host::{
    external_addresses, host_candidates, parse_host_override, HostOverride, HostOverrideSpec,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let spec = match parse_host_override(&text) {
        Ok(spec) => spec,
        Err(e) => {
            // The offending entry is quoted cut to 64 characters, each at most 10 bytes once
            // Debug-escaped (`\u{10ffff}`).
            assert!(e.to_string().len() <= 800, "{e}");
            return;
        }
    };
    let host_override = match spec {
        HostOverrideSpec::None => {
            assert!(text.trim().is_empty());
            HostOverride::None
        }
        HostOverrideSpec::IpOrHostname(h) => {
            assert!(!h.is_empty() && h == text.trim() && !h.contains('/'));
            match h.parse::<IpAddr>() {
                Ok(ip) => HostOverride::Ip(ip),
                Err(_) => return,
            }
        }
        HostOverrideSpec::Mapping(pairs) => {
            assert_eq!(pairs.len(), text.matches(',').count() + 1);
            for (i, (ext, int)) in pairs.iter().enumerate() {
                assert_eq!(ext.is_ipv4(), int.is_ipv4());
                assert!(pairs[..i].iter().all(|(_, other)| other != int));
            }
            let rendered: Vec<String> = pairs.iter().map(|(e, i)| format!("{e}/{i}")).collect();
            assert_eq!(
                parse_host_override(&rendered.join(",")),
                Ok(HostOverrideSpec::Mapping(pairs.clone()))
            );
            HostOverride::Mapping(pairs)
        }
    };
    let locals: Vec<IpAddr> = ["127.0.0.1", "10.0.0.5", "192.168.1.9", "2001:db8::1"]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let stun = [(locals[1], locals[2])];
    for n in 1..=locals.len() {
        let external = external_addresses(&host_override, &stun);
        let got = host_candidates(&locals[..n], &host_override, &stun, Some(8443));
        assert_eq!(got.len(), n);
        for (c, local) in got.iter().zip(&locals) {
            assert_eq!(c.local, *local);
            assert_eq!(c.advertised.is_ipv4(), local.is_ipv4());
            assert_eq!(c.port_override.is_some(), external.contains(&c.advertised));
        }
    }
});
