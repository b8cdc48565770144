//! Command line: `rtcd-loadgen --server rtcd|raw --shape w1|w2|w3|w4|w6 --n N [options]`.

use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    /// rtcd (ours or upstream): the plugin WebSocket + WebRTC participants.
    Rtcd,
    /// The raw relay baseline: plain UDP + AES-128-GCM.
    Raw,
    /// Janus VideoRoom over its HTTP API.
    Janus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// One call, 2 speakers + N audio listeners.
    W1,
    /// One screen share (+ audio) to N viewers.
    W2,
    /// N calls × 4 participants, all talking.
    W3,
    /// N 1:1 calls, both talking.
    W4,
    /// N calls × 4, all talking, with join/leave churn.
    W6,
}

#[derive(Debug, Clone)]
pub struct Opts {
    pub server: ServerKind,
    pub shape: Shape,
    pub n: usize,
    /// rtcd HTTP/WS API address.
    pub api: SocketAddr,
    /// Raw relay address.
    pub relay: SocketAddr,
    /// Janus HTTP API address.
    pub janus: SocketAddr,
    /// Address the participants' sockets bind (the veth end facing Janus's namespace).
    pub local_ip: std::net::IpAddr,
    /// Server process to account CPU and RSS for.
    pub pid: Option<u32>,
    pub warmup_s: f64,
    pub duration_s: f64,
    /// Joins per second while setting up.
    pub join_rate: f64,
    /// W6: joins (each paired with a leave) per second during the window.
    pub churn_rate: f64,
    pub audio_bytes: usize,
    pub video_kbps: u32,
    pub video_fps: u32,
    pub video_packet: usize,
    pub out: Option<String>,
    pub label: String,
    /// The server's CPU cap in % of one core (set by scripts/bench.sh's cgroup), recorded in
    /// the report only.
    pub cpu_cap_pct: Option<u32>,
    pub quiet: bool,
}

pub const USAGE: &str = "usage: rtcd-loadgen --server rtcd|raw|janus --shape w1|w2|w3|w4|w6 --n N \
[--api 127.0.0.1:8045] [--relay 127.0.0.1:27000] [--janus 198.18.0.2:8088] [--local-ip IP] [--pid PID] [--warmup S] [--duration S] \
[--join-rate R] [--churn-rate R] [--audio-bytes B] [--video-kbps K] [--video-fps F] \
[--video-packet B] [--cpu-cap PCT] [--out report.json] [--label TEXT] [--quiet]";

fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag}: {v:?} is not a valid number"))
}

pub fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        server: ServerKind::Rtcd,
        shape: Shape::W1,
        n: 10,
        api: SocketAddr::from(([127, 0, 0, 1], 8045)),
        relay: SocketAddr::from(([127, 0, 0, 1], 27000)),
        janus: SocketAddr::from(([198, 18, 0, 2], 8088)),
        local_ip: std::net::IpAddr::from([127, 0, 0, 1]),
        pid: None,
        warmup_s: 3.0,
        duration_s: 10.0,
        join_rate: 100.0,
        churn_rate: 5.0,
        audio_bytes: 100,
        video_kbps: 1500,
        video_fps: 15,
        video_packet: 1100,
        out: None,
        label: String::new(),
        cpu_cap_pct: None,
        quiet: false,
    };
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        if flag == "--quiet" {
            o.quiet = true;
            i += 1;
            continue;
        }
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.into());
        }
        let v = args
            .get(i + 1)
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?
            .as_str();
        match flag {
            "--server" => {
                o.server = match v {
                    "rtcd" => ServerKind::Rtcd,
                    "raw" => ServerKind::Raw,
                    "janus" => ServerKind::Janus,
                    _ => return Err(format!("--server: unknown server {v:?} (rtcd, raw, janus)")),
                }
            }
            "--shape" => {
                o.shape = match v.to_ascii_lowercase().as_str() {
                    "w1" => Shape::W1,
                    "w2" => Shape::W2,
                    "w3" => Shape::W3,
                    "w4" => Shape::W4,
                    "w6" => Shape::W6,
                    _ => return Err(format!("--shape: unknown shape {v:?} (w1 w2 w3 w4 w6)")),
                }
            }
            "--n" => o.n = num(flag, v)?,
            "--api" => o.api = num(flag, v)?,
            "--relay" => o.relay = num(flag, v)?,
            "--janus" => o.janus = num(flag, v)?,
            "--local-ip" => o.local_ip = num(flag, v)?,
            "--pid" => o.pid = Some(num(flag, v)?),
            "--warmup" => o.warmup_s = num(flag, v)?,
            "--duration" => o.duration_s = num(flag, v)?,
            "--join-rate" => o.join_rate = num(flag, v)?,
            "--churn-rate" => o.churn_rate = num(flag, v)?,
            "--audio-bytes" => o.audio_bytes = num(flag, v)?,
            "--video-kbps" => o.video_kbps = num(flag, v)?,
            "--video-fps" => o.video_fps = num(flag, v)?,
            "--video-packet" => o.video_packet = num(flag, v)?,
            "--out" => o.out = Some(v.to_string()),
            "--label" => o.label = v.to_string(),
            "--cpu-cap" => {
                let pct: u32 = num(flag, v)?;
                if !(1..=100).contains(&pct) {
                    return Err("--cpu-cap must be 1..=100 (% of one core)".into());
                }
                o.cpu_cap_pct = Some(pct);
            }
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
        i += 2;
    }
    if o.n == 0 || o.n > 20_000 {
        return Err("--n must be 1..=20000".into());
    }
    let duration_ok = o.duration_s > 0.0 && o.duration_s <= 3600.0;
    if !duration_ok || !(0.0..=600.0).contains(&o.warmup_s) {
        return Err("--duration must be in (0, 3600] and --warmup in [0, 600]".into());
    }
    if o.join_rate <= 0.0 || o.churn_rate <= 0.0 || o.video_fps == 0 || o.video_fps > 120 {
        return Err("--join-rate, --churn-rate and --video-fps (≤120) must be positive".into());
    }
    if !(crate::payload::STAMP_LEN..=1200).contains(&o.audio_bytes)
        || !(crate::payload::STAMP_LEN + 16..=1200).contains(&o.video_packet)
    {
        return Err("--audio-bytes and --video-packet must be 36..=1200".into());
    }
    Ok(o)
}

/// One participant of the plan.
#[derive(Debug, Clone, Copy)]
pub struct Role {
    pub call: usize,
    pub audio: bool,
    pub video: bool,
    /// Receives the other participants' media (Janus publishers do not: their PC is send-only).
    pub receives: bool,
}

/// The participants of a shape at size `n`.
pub fn plan(shape: Shape, n: usize) -> Vec<Role> {
    let r = |call, audio, video| Role {
        call,
        audio,
        video,
        receives: true,
    };
    match shape {
        Shape::W1 => {
            let mut v = vec![r(0, true, false), r(0, true, false)];
            v.extend((0..n).map(|_| r(0, false, false)));
            v
        }
        Shape::W2 => {
            let mut v = vec![r(0, true, true)];
            v.extend((0..n).map(|_| r(0, false, false)));
            v
        }
        Shape::W3 | Shape::W6 => (0..n * 4).map(|i| r(i / 4, true, false)).collect(),
        Shape::W4 => (0..n * 2).map(|i| r(i / 2, true, false)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn shapes_expand_to_the_documented_participants() {
        assert_eq!(plan(Shape::W1, 10).len(), 12);
        assert_eq!(plan(Shape::W1, 10).iter().filter(|r| r.audio).count(), 2);
        assert_eq!(plan(Shape::W2, 5).iter().filter(|r| r.video).count(), 1);
        let w3 = plan(Shape::W3, 3);
        assert_eq!(w3.len(), 12);
        assert_eq!(w3[11].call, 2);
        assert!(w3.iter().all(|r| r.audio));
        assert_eq!(plan(Shape::W4, 4).len(), 8);
    }

    #[test]
    fn bad_options_are_refused_with_the_flag_named() {
        assert!(parse(&args("--server rtcd --shape w3 --n 4")).is_ok());
        let e = parse(&args("--shape w9")).unwrap_err();
        assert!(e.contains("--shape"), "{e}");
        let e = parse(&args("--n abc")).unwrap_err();
        assert!(e.contains("--n"), "{e}");
        assert!(parse(&args("--n")).is_err());
        assert!(parse(&args("--n 0")).is_err());
        assert!(parse(&args("--bogus 1")).is_err());
        assert_eq!(
            parse(&args("--cpu-cap 50")).map(|o| o.cpu_cap_pct),
            Ok(Some(50))
        );
        assert!(parse(&args("--cpu-cap 0")).is_err_and(|e| e.contains("--cpu-cap")));
    }
}
