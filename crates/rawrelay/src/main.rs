//! `rtcd-rawrelay`: the raw relay baseline (see the library docs). One thread, one UDP socket,
//! one datagram per syscall: the same I/O shape as the simplest SFU, minus the WebRTC engine.
//! Usage: rtcd-rawrelay ADDR:PORT

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};

use rtcd_rawrelay::{parse, Datagram, Key, HELLO_ACK};

struct Member {
    call: u32,
    key: Key,
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:27000".into());
    let addr: SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rtcd-rawrelay: bad address {addr:?}: {e}");
            std::process::exit(2);
        }
    };
    let sock = match UdpSocket::bind(addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rtcd-rawrelay: bind {addr}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("rtcd-rawrelay: listening on {addr}");
    let mut members: HashMap<SocketAddr, Member> = HashMap::new();
    let mut calls: HashMap<u32, Vec<SocketAddr>> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    let mut out = Vec::with_capacity(2048);
    let mut dropped = 0u64;
    loop {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(_) => continue,
        };
        let d = &mut buf[..n];
        match parse(d) {
            Ok(Datagram::Hello { call, key }) => {
                if let Some(old) = members.insert(
                    from,
                    Member {
                        call,
                        key: Key::new(&key),
                    },
                ) {
                    if let Some(v) = calls.get_mut(&old.call) {
                        v.retain(|a| *a != from);
                    }
                }
                calls.entry(call).or_default().push(from);
                let _ = sock.send_to(&[HELLO_ACK], from);
            }
            Ok(Datagram::Bye) => {
                if let Some(old) = members.remove(&from) {
                    if let Some(v) = calls.get_mut(&old.call) {
                        v.retain(|a| *a != from);
                    }
                }
            }
            Ok(Datagram::Media { header, .. }) => {
                let Some(m) = members.get(&from) else {
                    dropped += 1;
                    continue;
                };
                let plain = match m.key.open(&header, &mut d[rtcd_rawrelay::HEADER_LEN..]) {
                    Ok(p) => p,
                    Err(_) => {
                        dropped += 1;
                        continue;
                    }
                };
                if let Some(list) = calls.get(&m.call) {
                    for to in list {
                        if *to == from {
                            continue;
                        }
                        if let Some(sub) = members.get(to) {
                            sub.key.seal(&header, plain, &mut out);
                            let _ = sock.send_to(&out, to);
                        }
                    }
                }
            }
            Ok(Datagram::HelloAck) | Err(_) => {
                dropped += 1;
                if dropped.is_power_of_two() {
                    eprintln!("rtcd-rawrelay: {dropped} datagrams dropped so far");
                }
            }
        }
    }
}
