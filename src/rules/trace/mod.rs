//! A packet tracer over kube-proxy's rules: where one packet goes through one node's dump.
//!
//! Given a dump (iptables or nftables, as [`crate::rules::mixed::OneDump`]) and a [`Packet`], it
//! walks the netfilter hooks in the kernel's order (prerouting or output, the routing decision,
//! input/forward, postrouting), each hook's chains by priority, and follows jumps, gotos,
//! returns, verdict maps, sets and iptables' `statistic` cascades (every endpoint a branch can
//! reach). It answers what kube-proxy's own unit tests answer with their tracers
//! (`tracePacket` in `pkg/proxy/iptables/proxier_test.go`, `pkg/proxy/nftables/helpers_test.go`):
//! the verdict, the endpoints a DNAT can reach, whether the packet is masqueraded, and every
//! rule that matched. A construct it cannot evaluate ends the trace as [`Verdict::Unknown`] at
//! that rule: it never guesses. Pure: no I/O.
//!
//! Compile a dump once ([`Tracer::new`]) and trace many packets through it.

pub mod iptables;
pub mod nft;

use std::net::Ipv4Addr;

use serde::Serialize;

use super::mixed::OneDump;

/// The JSON schema name of `kindred trace --format json`.
pub const SCHEMA: &str = "kindred.trace/v1";

/// The transport protocol of a traced packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// Where a packet starts on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// From a pod (or from outside the node): it enters through prerouting.
    #[default]
    Pod,
    /// Locally originated (a hostNetwork pod, the node itself): it starts at output.
    Host,
}

/// One packet: the first packet of a new connection (`ct state new`, no affinity entry yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub dport: u16,
    /// Source port; any ephemeral one unless a test needs it (kube-proxy never matches on it).
    pub sport: u16,
    pub proto: Proto,
    pub from: Origin,
    /// The node's own addresses (`fib daddr type local`, `-m addrtype --dst-type LOCAL`). Empty
    /// means none but the source when the packet starts at the host (see [`Packet::local`]).
    pub local_ips: Vec<Ipv4Addr>,
}

impl Packet {
    /// Whether an address is one of the node's own (127.0.0.0/8 always is).
    pub fn local(&self, ip: Ipv4Addr) -> bool {
        ip.is_loopback()
            || self.local_ips.contains(&ip)
            || (self.local_ips.is_empty() && self.from == Origin::Host && ip == self.src)
    }
}

/// A netfilter hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }

    pub fn from_name(s: &str) -> Option<Hook> {
        Some(match s {
            "prerouting" => Hook::Prerouting,
            "input" => Hook::Input,
            "forward" => Hook::Forward,
            "output" => Hook::Output,
            "postrouting" => Hook::Postrouting,
            _ => return None,
        })
    }
}

/// What finally happens to the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Destination-NATed to one of [`Trace::endpoints`].
    Dnat,
    Drop,
    Reject,
    /// No rule changed it: it goes where it was addressed.
    Accept,
    /// A rule the tracer cannot evaluate: [`Trace::notes`] and the last step say which.
    Unknown,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Dnat => "dnat",
            Verdict::Drop => "drop",
            Verdict::Reject => "reject",
            Verdict::Accept => "accept",
            Verdict::Unknown => "unknown",
        }
    }
}

/// One rule that matched (or a base chain entered), in the order the packet met them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub hook: Hook,
    /// `nat`, `filter`, ... for iptables; the table (`ip kube-proxy`) for nftables.
    pub table: String,
    pub chain: String,
    /// The rule as written in the dump (without counters).
    pub rule: String,
    /// 1-based line in the dump.
    pub line: u32,
}

/// Where one packet goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trace {
    pub verdict: Verdict,
    /// `IP:PORT` of every endpoint a DNAT can reach (all branches of a `statistic` cascade or a
    /// `numgen` map), sorted; empty unless the verdict is [`Verdict::Dnat`].
    pub endpoints: Vec<String>,
    pub masquerade: bool,
    pub path: Vec<Step>,
    /// What the reader should know: the line of an unknown construct, branches that end
    /// differently, ...
    pub notes: Vec<String>,
}

impl Trace {
    /// A trace that stops at a construct the tracer cannot evaluate.
    pub fn unknown(path: Vec<Step>, why: impl Into<String>) -> Trace {
        Trace {
            verdict: Verdict::Unknown,
            endpoints: Vec::new(),
            masquerade: false,
            path,
            notes: vec![why.into()],
        }
    }
}

/// A trace in brief: what decides whether two sides treat a packet alike ([`Trace`]'s verdict,
/// number of endpoints and masquerade), made without recording the path or the notes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Brief {
    pub verdict: Verdict,
    pub endpoints: usize,
    pub masquerade: bool,
}

impl Brief {
    /// The brief of a full trace.
    pub fn of(t: &Trace) -> Brief {
        Brief {
            verdict: t.verdict,
            endpoints: t.endpoints.len(),
            masquerade: t.masquerade,
        }
    }
}

/// A dump compiled for tracing: built once, then any number of packets traced through it.
pub enum Tracer<'a> {
    Iptables(iptables::Tracer<'a>),
    Nftables(nft::Tracer<'a>),
}

impl<'a> Tracer<'a> {
    pub fn new(d: &'a OneDump) -> Tracer<'a> {
        match d {
            OneDump::Iptables(d) => Tracer::Iptables(iptables::Tracer::new(d)),
            OneDump::Nftables(d) => Tracer::Nftables(nft::Tracer::new(d)),
        }
    }

    pub fn trace(&self, p: &Packet) -> Trace {
        match self {
            Tracer::Iptables(t) => t.trace(p),
            Tracer::Nftables(t) => t.trace(p),
        }
    }

    /// The same packet's [`Brief`]: equal to `Brief::of(&self.trace(p))`, and cheaper.
    pub fn brief(&self, p: &Packet) -> Brief {
        match self {
            Tracer::Iptables(t) => t.brief(p),
            Tracer::Nftables(t) => t.brief(p),
        }
    }
}

/// The same packet through two dumps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pair {
    pub schema: &'static str,
    /// Same verdict, endpoints and masquerade.
    pub equal: bool,
    pub base: Trace,
    pub pr: Trace,
    /// Index into both paths of the first step where they part (`None`: one path is the other's
    /// prefix and the outcomes agree).
    #[serde(skip)]
    pub parted_at: Option<usize>,
}

impl Pair {
    pub fn new(base: Trace, pr: Trace) -> Pair {
        let equal = base.verdict == pr.verdict
            && base.endpoints == pr.endpoints
            && base.masquerade == pr.masquerade;
        let parted_at = parted_at(&base.path, &pr.path);
        Pair {
            schema: SCHEMA,
            equal,
            base,
            pr,
            parted_at,
        }
    }
}

/// The first index where two paths differ (hook, chain and rule text; lines may differ).
pub fn parted_at(a: &[Step], b: &[Step]) -> Option<usize> {
    let same = |x: &Step, y: &Step| x.hook == y.hook && x.chain == y.chain && x.rule == y.rule;
    let n = a.iter().zip(b).take_while(|(x, y)| same(x, y)).count();
    (n < a.len().max(b.len())).then_some(n)
}
