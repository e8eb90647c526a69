//! Connections held across a change (pure): the curl that holds one keep-alive connection
//! open from a probe pod, asking at a steady rate, and what its per-request lines say about that
//! connection once the change (a swap, a rebuild, a bisect step) is done: kept, reset or timed
//! out.

use serde::{Deserialize, Serialize};

/// What a held connection goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// kube-proxy swapped in (`p`, `kindred swap-proxy`).
    Swap,
    /// The cluster rebuilt and recreated (`b`).
    Rebuild,
    /// A bisect step that swapped or rebuilt.
    BisectStep,
}

impl Change {
    pub fn label(self) -> &'static str {
        match self {
            Change::Swap => "swap",
            Change::Rebuild => "rebuild",
            Change::BisectStep => "bisect step",
        }
    }
}

/// Which address a held connection goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// The Service's LoadBalancer IP.
    Lb,
    /// The Service's ClusterIP.
    ClusterIp,
}

impl Via {
    pub fn label(self) -> &'static str {
        match self {
            Via::Lb => "LB",
            Via::ClusterIp => "ClusterIP",
        }
    }
}

/// What became of a held connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// Every request after the first went on the same connection and was answered.
    Kept,
    /// A request failed on a reset or closed connection, or curl had to connect again.
    Reset,
    /// A request timed out, or none was answered in the window after the change.
    TimedOut,
    /// The connection could not be opened before the change: nothing was held.
    NotOpened,
}

impl Fate {
    pub const ALL: [Fate; 4] = [Fate::Kept, Fate::Reset, Fate::TimedOut, Fate::NotOpened];
    pub fn label(self) -> &'static str {
        match self {
            Fate::Kept => "kept",
            Fate::Reset => "reset",
            Fate::TimedOut => "timed out",
            Fate::NotOpened => "not opened",
        }
    }
}

/// One held connection, after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldConn {
    /// The pod it was held from.
    pub source: String,
    pub via: Via,
    /// "IP:port".
    pub addr: String,
    pub fate: Fate,
    /// Why (the request that failed, curl's error), or for a kept one how many requests it
    /// carried.
    #[serde(default)]
    pub detail: Option<String>,
}

/// How a held curl asks: `rate` requests a second, each within `max_time` seconds, for
/// `seconds` in all at most.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    pub rate: u32,
    pub connect_timeout: f64,
    pub max_time: f64,
    pub seconds: u64,
}

/// The `-w` line of each request: connections made for it, curl's exit code, the HTTP status.
/// On standard error, which curl does not buffer (its standard output to a pipe is written only
/// when full or at its end); curl's own messages there are not lines of three numbers.
pub const WRITE_OUT: &str = "%{stderr}%{num_connects} %{exitcode} %{http_code}\n";

/// The argv (no shell) that holds one connection to `addr` ("IP:port"): `path` asked again and
/// again on one keep-alive connection (a URL glob numbers the requests), one `-w` line each.
pub fn curl_argv(addr: &str, path: &str, p: Pace) -> Vec<String> {
    let count = (u64::from(p.rate.max(1)) * p.seconds).max(2);
    let sep = if path.contains('?') { '&' } else { '?' };
    vec![
        "curl".into(),
        "-sS".into(),
        "-o".into(),
        "/dev/null".into(),
        "--rate".into(),
        format!("{}/s", p.rate.max(1)),
        "-w".into(),
        WRITE_OUT.into(),
        "--connect-timeout".into(),
        format!("{}", p.connect_timeout),
        "--max-time".into(),
        format!("{}", p.max_time),
        format!("http://{addr}{path}{sep}held=[1-{count}]"),
    ]
}

/// One request's line, as `-w` wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    /// New connections curl made for this request (0: it reused the one it had).
    pub connects: u32,
    /// curl's exit code for this request (0: it got an HTTP answer).
    pub exit: u32,
    pub http: u16,
}

impl Line {
    /// A line of three numbers; anything else is not one of curl's (`None`).
    pub fn parse(s: &str) -> Option<Line> {
        let mut it = s.split_whitespace();
        let line = Line {
            connects: it.next()?.parse().ok()?,
            exit: it.next()?.parse().ok()?,
            http: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(line)
    }
}

/// A line and whether it came once the change was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub line: Line,
    pub after: bool,
}

/// How the held curl's exec ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Still running when the window closed (kindred closed it).
    Open,
    /// curl exited by itself, with this exit code.
    Exited(i64),
    /// The exec failed or was cut (its pod gone, the API server's connection lost): why.
    Failed(String),
}

/// What curl's exit code means for a connection.
fn curl_error(exit: u32) -> String {
    let what = match exit {
        7 => "could not connect",
        28 => "timed out",
        52 => "empty reply (connection closed)",
        55 => "send failed",
        56 => "receive failed (connection reset)",
        _ => return format!("curl exit {exit}"),
    };
    format!("{what} (curl exit {exit})")
}

/// The fate of one held connection from its lines (in order) and how its exec ended; `window`
/// is how long it was watched after the change (seconds, for the detail).
pub fn classify(seen: &[Seen], ending: &Ending, window: u64) -> (Fate, String) {
    let Some(first) = seen.first() else {
        let why = match ending {
            Ending::Failed(e) => e.clone(),
            Ending::Exited(c) => format!("curl ended (exit {c}) without a request"),
            Ending::Open => "no request answered".into(),
        };
        return (Fate::NotOpened, why);
    };
    if first.line.exit != 0 || first.after {
        let why = if first.line.exit != 0 {
            curl_error(first.line.exit)
        } else {
            "its first answer came after the change".into()
        };
        return (Fate::NotOpened, why);
    }
    for (i, s) in seen.iter().enumerate().skip(1) {
        let n = i + 1;
        let when = if s.after { "after" } else { "during" };
        if s.line.exit == 28 {
            return (
                Fate::TimedOut,
                format!("request {n} timed out ({when} the change)"),
            );
        }
        if s.line.exit != 0 {
            let e = curl_error(s.line.exit);
            return (Fate::Reset, format!("request {n}: {e} ({when} the change)"));
        }
        if s.line.connects > 0 {
            let m = format!("request {n} needed a new connection ({when} the change)");
            return (Fate::Reset, m);
        }
    }
    if !seen.iter().any(|s| s.after) {
        let why = match ending {
            Ending::Failed(e) => return (Fate::Reset, format!("the exec ended: {e}")),
            Ending::Exited(c) => format!("curl ended (exit {c}) before the change was done"),
            Ending::Open => format!("no request answered in the {window}s after the change"),
        };
        return (Fate::TimedOut, why);
    }
    (
        Fate::Kept,
        format!("{} requests on one connection", seen.len()),
    )
}

/// How many connections met each fate, in [`Fate::ALL`]'s order, those with none left out.
pub fn tally(conns: &[HeldConn]) -> Vec<(Fate, usize)> {
    Fate::ALL
        .iter()
        .map(|f| (*f, conns.iter().filter(|c| c.fate == *f).count()))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// "held across swap: 4 kept, 2 reset" (or "held across swap: no connection" when none was).
pub fn summary(change: Change, conns: &[HeldConn]) -> String {
    let t = tally(conns);
    let counts = if t.is_empty() {
        "no connection".to_string()
    } else {
        t.iter()
            .map(|(f, n)| format!("{n} {}", f.label()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("held across {}: {counts}", change.label())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(lines: &[(&str, bool)]) -> Vec<Seen> {
        lines
            .iter()
            .map(|(l, after)| Seen {
                line: Line::parse(l).unwrap(),
                after: *after,
            })
            .collect()
    }

    #[test]
    fn the_argv_holds_one_connection_at_a_steady_rate() {
        let p = Pace {
            rate: 4,
            connect_timeout: 2.0,
            max_time: 1.5,
            seconds: 30,
        };
        let a = curl_argv("10.96.0.7:8080", "/hostname", p);
        assert_eq!(a[0], "curl");
        let at = |f: &str| a[a.iter().position(|x| x == f).unwrap() + 1].clone();
        assert_eq!(at("--rate"), "4/s");
        assert_eq!(at("-w"), WRITE_OUT);
        // Unbuffered: each line arrives as its request ends, not when curl exits.
        assert!(WRITE_OUT.starts_with("%{stderr}"), "{WRITE_OUT}");
        assert_eq!(at("--max-time"), "1.5");
        assert_eq!(at("--connect-timeout"), "2");
        assert_eq!(
            a.last().unwrap(),
            "http://10.96.0.7:8080/hostname?held=[1-120]"
        );
        // No `Connection: close`: the connection is kept alive.
        assert!(!a.iter().any(|x| x.contains("Connection")), "{a:?}");
        let q = curl_argv("1.2.3.4:80", "/x?a=1", p);
        assert!(q.last().unwrap().ends_with("/x?a=1&held=[1-120]"), "{q:?}");
    }

    #[test]
    fn lines_are_three_numbers_or_nothing() {
        assert_eq!(
            Line::parse("1 0 200"),
            Some(Line {
                connects: 1,
                exit: 0,
                http: 200
            })
        );
        assert_eq!(Line::parse("0 56 000").map(|l| l.exit), Some(56));
        assert_eq!(Line::parse("1 0"), None);
        assert_eq!(Line::parse("1 0 200 x"), None);
        assert_eq!(Line::parse("<html>"), None);
        assert_eq!(Line::parse(""), None);
    }

    #[test]
    fn one_connection_answering_throughout_is_kept() {
        let s = seen(&[
            ("1 0 200", false),
            ("0 0 200", false),
            ("0 0 200", true),
            ("0 0 200", true),
        ]);
        let (f, d) = classify(&s, &Ending::Open, 5);
        assert_eq!(f, Fate::Kept);
        assert_eq!(d, "4 requests on one connection");
    }

    #[test]
    fn a_new_connection_or_a_failed_request_is_a_reset() {
        // curl found its connection dead and quietly opened another.
        let s = seen(&[("1 0 200", false), ("0 0 200", false), ("1 0 200", true)]);
        let (f, d) = classify(&s, &Ending::Open, 5);
        assert_eq!(f, Fate::Reset);
        assert_eq!(d, "request 3 needed a new connection (after the change)");
        let s = seen(&[("1 0 200", false), ("0 56 000", false), ("1 0 200", true)]);
        let (f, d) = classify(&s, &Ending::Open, 5);
        assert_eq!(f, Fate::Reset);
        assert!(
            d.contains("connection reset") && d.contains("during"),
            "{d}"
        );
        let s = seen(&[("1 0 200", false), ("0 52 000", true)]);
        assert_eq!(classify(&s, &Ending::Open, 5).0, Fate::Reset);
    }

    #[test]
    fn a_timeout_or_silence_after_the_change_is_timed_out() {
        let s = seen(&[("1 0 200", false), ("0 28 000", true)]);
        let (f, d) = classify(&s, &Ending::Open, 5);
        assert_eq!(f, Fate::TimedOut);
        assert_eq!(d, "request 2 timed out (after the change)");
        // Nothing at all after the change.
        let s = seen(&[("1 0 200", false), ("0 0 200", false)]);
        let (f, d) = classify(&s, &Ending::Open, 5);
        assert_eq!(f, Fate::TimedOut);
        assert_eq!(d, "no request answered in the 5s after the change");
    }

    #[test]
    fn the_first_bad_request_decides() {
        let s = seen(&[("1 0 200", false), ("0 28 000", false), ("1 0 200", true)]);
        assert_eq!(classify(&s, &Ending::Open, 5).0, Fate::TimedOut);
        let s = seen(&[("1 0 200", false), ("1 0 200", false), ("0 28 000", true)]);
        assert_eq!(classify(&s, &Ending::Open, 5).0, Fate::Reset);
    }

    #[test]
    fn a_connection_never_opened_is_said_so() {
        let (f, d) = classify(&[], &Ending::Failed("pod gone".into()), 5);
        assert_eq!((f, d.as_str()), (Fate::NotOpened, "pod gone"));
        let s = seen(&[("0 7 000", false), ("1 0 200", true)]);
        let (f, d) = classify(&s, &Ending::Open, 5);
        assert_eq!(f, Fate::NotOpened);
        assert!(d.contains("could not connect"), "{d}");
    }

    #[test]
    fn an_exec_cut_during_the_change_is_a_reset() {
        let s = seen(&[("1 0 200", false), ("0 0 200", false)]);
        let (f, d) = classify(&s, &Ending::Failed("cluster recreated".into()), 5);
        assert_eq!(f, Fate::Reset);
        assert_eq!(d, "the exec ended: cluster recreated");
    }

    #[test]
    fn a_held_report_is_recorded_and_read_back() {
        use crate::backend::event::Event;
        let ev = Event::Held {
            side: crate::model::Side::Pr,
            change: Change::BisectStep,
            conns: vec![HeldConn {
                source: "netshoot-77523-worker".into(),
                via: Via::ClusterIp,
                addr: "10.96.41.7:8080".into(),
                fate: Fate::TimedOut,
                detail: Some("request 31 timed out (after the change)".into()),
            }],
        };
        let line = format!(
            "{{\"format\":\"kindred-recording\",\"version\":1}}\n{{\"t\":5,\"event\":{}}}\n",
            serde_json::to_string(&ev).unwrap()
        );
        assert!(line.contains(r#""type":"held""#), "{line}");
        assert!(line.contains(r#""change":"bisect_step""#), "{line}");
        assert!(
            line.contains(r#""via":"cluster_ip","addr":"10.96.41.7:8080","fate":"timed_out""#),
            "{line}"
        );
        let rec = crate::backend::recording::parse(&line, "t").unwrap();
        assert_eq!(rec.records[0].event, ev);
    }

    #[test]
    fn the_summary_counts_each_fate() {
        let c = |fate| HeldConn {
            source: "p".into(),
            via: Via::Lb,
            addr: "a".into(),
            fate,
            detail: None,
        };
        let conns = [c(Fate::Kept), c(Fate::Reset), c(Fate::Kept), c(Fate::Kept)];
        assert_eq!(
            summary(Change::Swap, &conns),
            "held across swap: 3 kept, 1 reset"
        );
        assert_eq!(
            summary(Change::Rebuild, &[]),
            "held across rebuild: no connection"
        );
    }
}
