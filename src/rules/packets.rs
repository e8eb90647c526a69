//! What a change does to packets: for each Service, the packet classes kube-proxy tells apart on a
//! node (sources × destinations), each traced through base and PR, and the classes whose outcome
//! differs. Pure: no I/O.
//!
//! Destinations come from the dumps: the ClusterIP, each LoadBalancer and external IP (with
//! their ports) and the NodePort on each of the node's addresses. nftables writes LoadBalancer
//! and external IPs the same way (`service-ips` → `external-…`): an address there is an LB IP
//! only when `firewall-ips` names it, else `LB/externalIP`. Sources, per side:
//! - `pod`: a pod on this node, from the pod CIDR kube-proxy's rules name (its `saddr != CIDR`
//!   masquerade test or pod short-circuit): the CIDR's network address + 2 (+1 is the bridge
//!   on kind nodes), moved on past any address the dump mentions (an endpoint would hairpin).
//!   Without a CIDR in the rules: [`DEFAULT_POD_IP`] (kind's pod subnet), said in the notes.
//! - `host`: the node itself (locally originated, from the node's first address).
//! - `outside`: a client outside the cluster, [`OUTSIDE_IP`] (RFC 5737 TEST-NET-2: outside
//!   every fixture's loadBalancerSourceRanges, so a range shows as a drop).
//!
//! The node's addresses: the caller's, else `nodeport-ips` (nftables) or the `-d` of the
//! `KUBE-NODEPORTS` jump (iptables), else [`DEFAULT_NODE_IP`] (said in the notes: iptables'
//! `addrtype LOCAL` accepts any address the packet is told is local).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::Serialize;

use super::nft::NftDump;
use super::parse::{Dump, Table};
use super::service::{ServiceFilter, ServiceKey, comment_ref, per_service_prefix};
use super::tokens;
use super::trace::{self, Brief, Origin, Packet, Proto, Step, Trace, Tracer, Verdict};

/// The key of the summary in `kindred diff --packets --format json`.
pub const JSON_KEY: &str = "packets";
/// The client outside the cluster (RFC 5737 TEST-NET-2).
pub const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// A pod's address when the rules name no pod CIDR (kind's default pod subnet, 10.244.0.0/16).
pub const DEFAULT_POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 2);
/// The node's address when neither the caller nor the dump names one (RFC 5737 TEST-NET-1).
pub const DEFAULT_NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

/// One side's parsed dump, borrowed.
#[derive(Clone, Copy)]
pub enum DumpRef<'a> {
    Iptables(&'a Dump),
    Nftables(&'a NftDump),
}

/// Where a packet of a class starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A pod on this node (prerouting, from the pod CIDR).
    Pod,
    /// The node itself, or a hostNetwork pod (output).
    Host,
    /// A client outside the cluster (prerouting).
    Outside,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Pod, Source::Host, Source::Outside];
    pub fn name(self) -> &'static str {
        match self {
            Source::Pod => "pod",
            Source::Host => "host",
            Source::Outside => "outside",
        }
    }
}

/// What kind of address of the Service a destination is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DestKind {
    #[serde(rename = "clusterip")]
    ClusterIp,
    #[serde(rename = "lb")]
    LoadBalancer,
    #[serde(rename = "externalip")]
    ExternalIp,
    /// A LoadBalancer or external IP: nftables writes both alike.
    #[serde(rename = "lb-or-externalip")]
    External,
    #[serde(rename = "nodeport")]
    NodePort,
}

impl DestKind {
    pub fn name(self) -> &'static str {
        match self {
            DestKind::ClusterIp => "ClusterIP",
            DestKind::LoadBalancer => "LB",
            DestKind::ExternalIp => "externalIP",
            DestKind::External => "LB/externalIP",
            DestKind::NodePort => "NodePort",
        }
    }
}

/// A destination kube-proxy handles for a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Dest {
    pub kind: DestKind,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub proto: Proto,
}

impl Dest {
    fn order(&self) -> (DestKind, Ipv4Addr, u16, &'static str) {
        (self.kind, self.ip, self.port, self.proto.name())
    }
}

impl PartialOrd for Dest {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Dest {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.order().cmp(&o.order())
    }
}

impl std::fmt::Display for Dest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}:{}", self.kind.name(), self.ip, self.port)?;
        if self.proto != Proto::Tcp {
            write!(f, "/{}", self.proto.name())?;
        }
        Ok(())
    }
}

/// A trace in brief: what decides whether two sides treat a class alike, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub verdict: Verdict,
    /// How many endpoints a DNAT can reach.
    pub endpoints: usize,
    pub masquerade: bool,
    /// The base chain (nftables) or built-in chain (iptables, `table/CHAIN`) the deciding rule
    /// was reached from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook_chain: Option<String>,
    /// The chain of the deciding rule (the last step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    /// 1-based line of the deciding rule in its dump.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

impl Outcome {
    pub fn of(t: &Trace) -> Outcome {
        // What decided: the DNAT rule for a DNAT (later steps only masquerade or check), the
        // last step for a drop, reject or unknown; nothing decides an accept.
        let last = match t.verdict {
            Verdict::Accept => None,
            Verdict::Dnat => t
                .path
                .iter()
                .rev()
                .find(|s| s.rule.contains("dnat to") || s.rule.contains("-j DNAT"))
                .or(t.path.last()),
            _ => t.path.last(),
        };
        Outcome {
            verdict: t.verdict,
            endpoints: t.endpoints.len(),
            masquerade: t.masquerade,
            hook_chain: last.and_then(|l| entry_chain(&t.path, l)),
            chain: last.map(|l| l.chain.clone()),
            line: last.map(|l| l.line),
        }
    }

    /// The same for packets: verdict, endpoint count and masquerade (not where).
    pub fn same(&self, o: &Outcome) -> bool {
        self.verdict == o.verdict
            && self.endpoints == o.endpoints
            && self.masquerade == o.masquerade
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.verdict.name())?;
        match self.verdict {
            Verdict::Dnat => {
                let s = if self.endpoints == 1 { "" } else { "s" };
                write!(f, " {} endpoint{s}", self.endpoints)?;
            }
            Verdict::Accept => {}
            _ => {
                let mut at: Vec<&str> = Vec::new();
                at.extend(self.hook_chain.as_deref());
                if let Some(c) = self.chain.as_deref()
                    && self.hook_chain.as_deref() != Some(c)
                {
                    at.push(c);
                }
                if !at.is_empty() {
                    write!(f, " ({})", at.join(", "))?;
                }
            }
        }
        if self.masquerade {
            f.write_str(" masqueraded")?;
        }
        Ok(())
    }
}

/// The chain the hook entered on the way to `last`: the nearest base chain (nftables: its
/// `type … hook …` step; iptables: a built-in chain, as `table/CHAIN`) at or before it.
fn entry_chain(path: &[Step], last: &Step) -> Option<String> {
    const BUILT_IN: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];
    path.iter()
        .rev()
        .take_while(|s| s.hook == last.hook)
        .find_map(|s| {
            if s.rule.starts_with("type ") {
                Some(s.chain.clone())
            } else if BUILT_IN.contains(&s.chain.as_str()) && s.table == last.table {
                Some(format!("{}/{}", s.table, s.chain))
            } else {
                None
            }
        })
}

/// A packet class whose outcome differs between base and PR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PacketChange {
    /// The Service port, `ns/name:port` as kube-proxy names it.
    pub service: String,
    pub source: Source,
    /// The destination (base's; the PR's when base has none of this kind).
    pub destination: Dest,
    /// The PR's address for the same class, when it differs (another cluster's LB IP, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pr_destination: Option<Dest>,
    pub base: Outcome,
    pub pr: Outcome,
}

/// What one side's packets were made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Facts {
    pub node_ips: Vec<Ipv4Addr>,
    pub pod_ip: Ipv4Addr,
    /// The pod CIDR the rules name, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<String>,
    pub outside_ip: Ipv4Addr,
    /// Assumptions made (an address the dump does not give).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The packet summary of two dumps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Every class traced (on both sides).
    pub classes: usize,
    /// Services with at least one destination.
    pub services: usize,
    pub changes: Vec<PacketChange>,
    /// Classes a side traced to `unknown` (a rule the tracer cannot evaluate), listed or not.
    pub unknown: usize,
    pub base: Facts,
    pub pr: Facts,
}

impl Summary {
    pub fn equal(&self) -> bool {
        self.changes.is_empty()
    }
}

impl Facts {
    fn sources(&self) -> String {
        let nodes: Vec<String> = self.node_ips.iter().map(ToString::to_string).collect();
        format!(
            "pod {}, host {}, outside {}",
            self.pod_ip,
            nodes.join("/"),
            self.outside_ip
        )
    }
}

/// The class of a change in words: `host → LB 1.2.3.4:80` (and the PR's address when it is
/// another).
pub fn class_words(c: &PacketChange) -> String {
    let mut s = format!("{} → {}", c.source.name(), c.destination);
    if let Some(p) = &c.pr_destination {
        s.push_str(&format!(" (PR {}:{})", p.ip, p.port));
    }
    s
}

/// The summary as text: a head line, one line per class that differs (aligned), the sources
/// used and any assumption. Untrusted text (Service names, chains) through
/// [`super::render::visible`].
pub fn write_text(out: &mut impl std::fmt::Write, s: &Summary) -> std::fmt::Result {
    use super::render::visible;
    let n = s.changes.len();
    let svcs = if s.services == 1 { "" } else { "s" };
    if n == 0 {
        writeln!(
            out,
            "packets: no class differs ({} classes traced, {} Service{svcs})",
            s.classes, s.services
        )?;
    } else {
        writeln!(
            out,
            "packets: {n} of {} classes differ ({} Service{svcs})",
            s.classes, s.services
        )?;
    }
    let rows: Vec<[String; 4]> = s
        .changes
        .iter()
        .map(|c| {
            [
                visible(&c.service).into_owned(),
                class_words(c),
                format!("base {}", visible(&c.base.to_string())),
                format!("PR {}", visible(&c.pr.to_string())),
            ]
        })
        .collect();
    let w = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let (w0, w1, w2) = (w(0), w(1), w(2));
    for r in &rows {
        let pad = |t: &str, w: usize| format!("{t}{}", " ".repeat(w - t.chars().count()));
        writeln!(
            out,
            "  {}  {}   {}   {}",
            pad(&r[0], w0),
            pad(&r[1], w1),
            pad(&r[2], w2),
            r[3]
        )?;
    }
    if s.base == s.pr {
        writeln!(out, "  sources: {}", s.base.sources())?;
    } else {
        writeln!(
            out,
            "  sources: base {}; PR {}",
            s.base.sources(),
            s.pr.sources()
        )?;
    }
    if s.unknown > 0 {
        writeln!(
            out,
            "  note: {} class{} traced to unknown on a side (a rule the tracer cannot evaluate; \
             `kindred trace` shows which)",
            s.unknown,
            if s.unknown == 1 { "" } else { "es" }
        )?;
    }
    for (side, f) in [("base", &s.base), ("PR", &s.pr)] {
        for note in &f.notes {
            writeln!(out, "  note: {side}: {}", visible(note))?;
        }
    }
    Ok(())
}

/// One side, ready to trace: compiled once.
pub struct Side<'a> {
    tracer: Tracer<'a>,
    dests: BTreeMap<ServiceKey, Vec<Dest>>,
    facts: Facts,
}

impl<'a> Side<'a> {
    /// Compile a dump and read its Services' destinations. `node_ips`: the caller's node
    /// addresses (empty: from the dump).
    pub fn new(d: DumpRef<'a>, node_ips: &[Ipv4Addr]) -> Side<'a> {
        let (tracer, found, text) = match d {
            DumpRef::Iptables(d) => (
                Tracer::Iptables(trace::iptables::Tracer::new(d)),
                iptables_found(d),
                d.text.as_str(),
            ),
            DumpRef::Nftables(d) => (
                Tracer::Nftables(trace::nft::Tracer::new(d)),
                nft_found(d),
                d.text.as_str(),
            ),
        };
        let mut notes = Vec::new();
        let node_ips = if !node_ips.is_empty() {
            node_ips.to_vec()
        } else if !found.node_ips.is_empty() {
            found.node_ips.clone()
        } else {
            notes.push(format!(
                "the dump names no node address: {DEFAULT_NODE_IP} assumed (--node-ip sets it)"
            ));
            vec![DEFAULT_NODE_IP]
        };
        let pod_ip = match found.pod_cidr {
            Some((net, len)) => pick_pod_ip(net, len, text),
            None => {
                notes.push(format!(
                    "the rules name no pod CIDR: a pod at {DEFAULT_POD_IP} assumed"
                ));
                DEFAULT_POD_IP
            }
        };
        let mut dests: BTreeMap<ServiceKey, Vec<Dest>> = BTreeMap::new();
        for (k, mut d) in found.dests {
            if d.kind == DestKind::NodePort {
                for ip in &node_ips {
                    d.ip = *ip;
                    dests.entry(k.clone()).or_default().push(d);
                }
            } else {
                dests.entry(k).or_default().push(d);
            }
        }
        // One destination per address: the kind a comment or set names over `LB/externalIP`.
        for v in dests.values_mut() {
            v.sort_by_key(|d| (d.ip, d.port, d.proto.name(), d.kind));
            v.dedup_by(|a, b| (a.ip, a.port, a.proto) == (b.ip, b.port, b.proto));
            v.sort();
        }
        let facts = Facts {
            node_ips,
            pod_ip,
            pod_cidr: found.pod_cidr.map(|(n, l)| format!("{n}/{l}")),
            outside_ip: OUTSIDE_IP,
            notes,
        };
        Side {
            tracer,
            dests,
            facts,
        }
    }

    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    /// The destinations found for one Service.
    pub fn dests(&self, k: &ServiceKey) -> &[Dest] {
        self.dests.get(k).map_or(&[], Vec::as_slice)
    }

    /// The packet of a class on this side.
    pub fn packet(&self, s: Source, d: &Dest) -> Packet {
        let (src, from) = match s {
            Source::Pod => (self.facts.pod_ip, Origin::Pod),
            Source::Host => (self.facts.node_ips[0], Origin::Host),
            Source::Outside => (self.facts.outside_ip, Origin::Pod),
        };
        Packet {
            src,
            dst: d.ip,
            dport: d.port,
            sport: 40000,
            proto: d.proto,
            from,
            local_ips: self.facts.node_ips.clone(),
        }
    }

    pub fn outcome(&self, s: Source, d: &Dest) -> Outcome {
        Outcome::of(&self.tracer.trace(&self.packet(s, d)))
    }
}

/// The classes whose outcome differs between two sides, for every Service (or those `filter`
/// selects) found in either.
pub fn compare(base: &Side, pr: &Side, filter: Option<&ServiceFilter>) -> Summary {
    let keys: std::collections::BTreeSet<&ServiceKey> = base
        .dests
        .keys()
        .chain(pr.dests.keys())
        .filter(|k| filter.is_none_or(|f| f.matches(k)))
        .collect();
    let mut pairs: Vec<(&ServiceKey, Dest, Dest)> = Vec::new();
    for k in &keys {
        for (b, p) in pair_dests(base.dests(k), pr.dests(k)) {
            pairs.push((k, b, p));
        }
    }
    // Each side traces its own packets: one thread per side. Only what decides equality is
    // kept; the classes that differ are traced again for where they end.
    let (bo, po) = both(|| briefs(base, &pairs, false), || briefs(pr, &pairs, true));
    let unknown = bo
        .iter()
        .zip(&po)
        .filter(|(x, y)| x.verdict == Verdict::Unknown || y.verdict == Verdict::Unknown)
        .count();
    let differ: Vec<(usize, Source)> = (0..bo.len())
        .filter(|&at| bo[at] != po[at])
        .map(|at| (at / Source::ALL.len(), Source::ALL[at % Source::ALL.len()]))
        .collect();
    let outcomes = |side: &Side, pr_side: bool| -> Vec<Outcome> {
        differ
            .iter()
            .map(|&(i, s)| side.outcome(s, if pr_side { &pairs[i].2 } else { &pairs[i].1 }))
            .collect()
    };
    let (xs, ys) = both(|| outcomes(base, false), || outcomes(pr, true));
    let changes: Vec<PacketChange> = differ
        .iter()
        .zip(xs.into_iter().zip(ys))
        .map(|(&(i, s), (x, y))| {
            let (k, b, p) = &pairs[i];
            PacketChange {
                service: k.to_string(),
                source: s,
                destination: *b,
                pr_destination: (b != p).then_some(*p),
                base: x,
                pr: y,
            }
        })
        .collect();
    Summary {
        classes: pairs.len() * Source::ALL.len(),
        services: keys.len(),
        changes,
        unknown,
        base: base.facts.clone(),
        pr: pr.facts.clone(),
    }
}

/// Two jobs at once, the first on a thread of its own.
fn both<A: Send, B>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B) -> (A, B) {
    std::thread::scope(|sc| {
        let h = sc.spawn(a);
        let y = b();
        (h.join().expect("tracing thread"), y)
    })
}

/// Each class's brief on one side (`pr_side`: the PR's destination of each pair), sources in
/// [`Source::ALL`]'s order. One packet per source, aimed at each destination in turn.
fn briefs(side: &Side, pairs: &[(&ServiceKey, Dest, Dest)], pr_side: bool) -> Vec<Brief> {
    let mut out = Vec::with_capacity(pairs.len() * Source::ALL.len());
    let mut packets: Option<[Packet; 3]> = None;
    for (_, b, p) in pairs {
        let d = if pr_side { p } else { b };
        let ps = packets.get_or_insert_with(|| Source::ALL.map(|s| side.packet(s, d)));
        for pk in ps.iter_mut() {
            (pk.dst, pk.dport, pk.proto) = (d.ip, d.port, d.proto);
        }
        out.extend(ps.iter().map(|pk| side.tracer.brief(pk)));
    }
    out
}

/// Base's and the PR's destinations of one Service paired by class: the same address first;
/// then, kind by kind, the rest in order (two clusters give a Service different LB IPs and
/// NodePorts); what is left is traced at the same address on both sides.
pub fn pair_dests(base: &[Dest], pr: &[Dest]) -> Vec<(Dest, Dest)> {
    let key = |d: &Dest| (d.ip, d.port, d.proto);
    let mut out: Vec<(Dest, Dest)> = Vec::new();
    let mut left_b: Vec<Dest> = Vec::new();
    let mut left_p: Vec<Dest> = pr.to_vec();
    for b in base {
        match left_p.iter().position(|p| key(p) == key(b)) {
            Some(i) => out.push((*b, left_p.remove(i))),
            None => left_b.push(*b),
        }
    }
    let mut rest_b: Vec<Dest> = Vec::new();
    for b in left_b {
        match left_p
            .iter()
            .position(|p| p.kind == b.kind && p.proto == b.proto)
        {
            Some(i) => out.push((b, left_p.remove(i))),
            None => rest_b.push(b),
        }
    }
    out.extend(rest_b.into_iter().map(|b| (b, b)));
    out.extend(left_p.into_iter().map(|p| (p, p)));
    out.sort();
    out
}

/// The address a pod on this node is given: network + 2, past any address the dump mentions.
fn pick_pod_ip(net: Ipv4Addr, len: u8, text: &str) -> Ipv4Addr {
    let base = u32::from(net);
    let size = if len >= 32 { 1 } else { 1u64 << (32 - len) };
    let mentioned = |ip: Ipv4Addr| {
        let s = ip.to_string();
        memchr::memmem::find_iter(text.as_bytes(), s.as_bytes()).any(|i| {
            let after = text.as_bytes().get(i + s.len());
            let before = i.checked_sub(1).map(|j| text.as_bytes()[j]);
            !after.is_some_and(|c| c.is_ascii_digit() || *c == b'.')
                && !before.is_some_and(|c| c.is_ascii_digit() || c == b'.')
        })
    };
    (2..size.min(258))
        .map(|o| Ipv4Addr::from(base.wrapping_add(o as u32)))
        .find(|ip| !mentioned(*ip))
        .unwrap_or(Ipv4Addr::from(base.wrapping_add(2)))
}

/// What a dump says about its Services' addresses and the node.
#[derive(Default)]
struct Found {
    /// NodePort entries carry an unspecified IP: one per node address is made later.
    dests: Vec<(ServiceKey, Dest)>,
    node_ips: Vec<Ipv4Addr>,
    pod_cidr: Option<(Ipv4Addr, u8)>,
}

fn cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, len) = s.split_once('/').unwrap_or((s, "32"));
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    Some((ip.parse().ok()?, len))
}

fn proto(s: &str) -> Option<Proto> {
    Some(match s {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        "sctp" => Proto::Sctp,
        _ => return None,
    })
}

fn key(ns: &str, name: &str, port: &str) -> ServiceKey {
    ServiceKey {
        namespace: ns.to_string(),
        name: name.to_string(),
        port: port.to_string(),
    }
}

/// iptables: `KUBE-SERVICES` (nat: `cluster IP`, `loadbalancer IP`, `external IP` by comment;
/// filter: Services without endpoints), `KUBE-EXTERNAL-SERVICES` (filter: no (local)
/// endpoints), `KUBE-NODEPORTS`; the pod CIDR from `! -s CIDR … KUBE-MARK-MASQ` or `-s CIDR`
/// pod redirects; the node address from a `-d IP … -j KUBE-NODEPORTS`.
fn iptables_found(d: &Dump) -> Found {
    let mut f = Found::default();
    let mut words = Vec::new();
    for r in &d.rules {
        let chain = d.rule_chain(r);
        let wanted = matches!(
            chain,
            "KUBE-SERVICES" | "KUBE-NODEPORTS" | "KUBE-EXTERNAL-SERVICES"
        ) || (f.pod_cidr.is_none()
            && matches!(
                per_service_prefix(chain),
                Some("KUBE-SVC" | "KUBE-XLB" | "KUBE-EXT")
            ));
        if !wanted {
            continue;
        }
        let body = d.rule_body(r);
        words.clear();
        tokens::split_into(&mut words, body);
        let arg = |flag: &str| {
            words
                .iter()
                .position(|w| *w == flag)
                .and_then(|i| words.get(i + 1).copied())
        };
        let negated = |flag: &str| {
            words
                .iter()
                .position(|w| *w == flag)
                .is_some_and(|i| i > 0 && words[i - 1] == "!")
        };
        let target = tokens::jump_target(body);
        if f.pod_cidr.is_none()
            && let Some(s) = arg("-s")
            && ((negated("-s") && target == Some("KUBE-MARK-MASQ"))
                || (!negated("-s") && target.is_some_and(|t| t.starts_with("KUBE-SVC-"))))
        {
            f.pod_cidr = cidr(s);
        }
        if chain == "KUBE-SERVICES"
            && target == Some("KUBE-NODEPORTS")
            && let Some((ip, _)) = arg("-d").and_then(cidr)
        {
            f.node_ips.push(ip);
        }
        let Some(comment) = tokens::comment(body) else {
            continue;
        };
        let Some(((ns, name, port), _)) = comment_ref(comment) else {
            continue;
        };
        let Some(dport) = arg("--dport").and_then(|p| p.parse::<u16>().ok()) else {
            continue;
        };
        let pr = arg("-p").and_then(proto).unwrap_or(Proto::Tcp);
        let nat = r.table.is_none_or(|t| t == Table::Nat);
        let dst = arg("-d").and_then(cidr).map(|(ip, _)| ip);
        let kind = match (chain, dst) {
            ("KUBE-NODEPORTS", _) if nat => DestKind::NodePort,
            ("KUBE-EXTERNAL-SERVICES", None) => DestKind::NodePort,
            ("KUBE-EXTERNAL-SERVICES", Some(_)) => DestKind::External,
            ("KUBE-SERVICES", Some(_)) if !nat => DestKind::ClusterIp,
            ("KUBE-SERVICES", Some(_)) if comment.contains("cluster IP") => DestKind::ClusterIp,
            ("KUBE-SERVICES", Some(_)) if comment.contains("loadbalancer IP") => {
                DestKind::LoadBalancer
            }
            ("KUBE-SERVICES", Some(_)) if comment.contains("external IP") => DestKind::ExternalIp,
            _ => continue,
        };
        let ip = dst.unwrap_or(Ipv4Addr::UNSPECIFIED);
        f.dests.push((
            key(ns, name, port),
            Dest {
                kind,
                ip: if kind == DestKind::NodePort {
                    Ipv4Addr::UNSPECIFIED
                } else {
                    ip
                },
                port: dport,
                proto: pr,
            },
        ));
    }
    f
}

/// nftables: the `service-ips`, `no-endpoint-services`, `service-nodeports` and
/// `no-endpoint-nodeports` maps' elements; `cluster-ips`, `firewall-ips` and `nodeport-ips`
/// say which addresses are what; the pod CIDR from `ip saddr != CIDR jump mark-for-masquerade`
/// or `ip saddr CIDR goto …` (pod short-circuit).
fn nft_found(d: &NftDump) -> Found {
    let mut f = Found::default();
    let mut cluster: Vec<Ipv4Addr> = Vec::new();
    let mut firewall: Vec<Ipv4Addr> = Vec::new();
    let mut els: Vec<(&str, &str)> = Vec::new();
    for it in d.items.iter().filter(|i| i.table.is_none() && !i.decl) {
        let text: &str = &it.text;
        match &*it.chain {
            "set nodeport-ips" => f.node_ips.extend(text.trim().parse::<Ipv4Addr>().ok()),
            "set cluster-ips" => cluster.extend(text.trim().parse::<Ipv4Addr>().ok()),
            "map firewall-ips" => firewall.extend(
                text.split(" . ")
                    .next()
                    .and_then(|s| s.trim().parse::<Ipv4Addr>().ok()),
            ),
            c @ ("map service-ips"
            | "map no-endpoint-services"
            | "map service-nodeports"
            | "map no-endpoint-nodeports") => els.push((c, text)),
            _ => {
                if f.pod_cidr.is_none() {
                    f.pod_cidr = nft_pod_cidr(text);
                }
            }
        }
    }
    for (map, text) in els {
        let Some((k, kind, ip, port, pr)) = nft_element(map, text) else {
            continue;
        };
        let kind = match kind {
            DestKind::External if firewall.contains(&ip) => DestKind::LoadBalancer,
            DestKind::External if cluster.contains(&ip) => DestKind::ClusterIp,
            k => k,
        };
        f.dests.push((
            k,
            Dest {
                kind,
                ip,
                port,
                proto: pr,
            },
        ));
    }
    f
}

fn nft_pod_cidr(text: &str) -> Option<(Ipv4Addr, u8)> {
    let at = text.find("ip saddr ")?;
    let rest = &text[at + "ip saddr ".len()..];
    let (neg, rest) = match rest.strip_prefix("!= ") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let (c, tail) = rest.split_once(' ')?;
    let ok = if neg {
        tail.starts_with("jump mark-for-masquerade")
    } else {
        tail.starts_with("goto service-")
    };
    if ok && c.contains('/') { cidr(c) } else { None }
}

/// One element of a destination map: its Service, the kind of address, the address (unspecified
/// for a NodePort), port and protocol.
fn nft_element(map: &str, text: &str) -> Option<(ServiceKey, DestKind, Ipv4Addr, u16, Proto)> {
    let (k, v) = text.rsplit_once(" : ")?;
    let (k, comment) = match k.split_once(" comment ") {
        Some((k, c)) => (k, Some(c.trim().trim_matches('"'))),
        None => (k, None),
    };
    let parts: Vec<&str> = k.split(" . ").map(str::trim).collect();
    let nodeport = map.ends_with("nodeports");
    let (ip, pr, port) = match (nodeport, parts.as_slice()) {
        (false, [ip, pr, port]) => (ip.parse().ok()?, *pr, *port),
        (true, [pr, port]) => (Ipv4Addr::UNSPECIFIED, *pr, *port),
        _ => return None,
    };
    let (pr, port) = (proto(pr)?, port.parse::<u16>().ok()?);
    let (svc, kind) = match comment {
        Some(c) => {
            let ((ns, name, port), _) = comment_ref(c)?;
            (key(ns, name, port), DestKind::External)
        }
        None => {
            // `goto service-HASH-ns/name/proto/port` or `goto external-…`.
            let chain = v.split_whitespace().last()?;
            let (kind, rest) = chain.split_once('-')?;
            let (_hash, svc) = rest.split_once('-')?;
            let mut p = svc.split('/');
            let (ns, name, _, port) = (p.next()?, p.next()?, p.next()?, p.next()?);
            let kind = match kind {
                "service" => DestKind::ClusterIp,
                "external" => DestKind::External,
                _ => return None,
            };
            (key(ns, name, port), kind)
        }
    };
    let kind = if nodeport { DestKind::NodePort } else { kind };
    Some((svc, kind, ip, port, pr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::mixed::OneDump;

    fn fixture(p: &str) -> OneDump {
        let path = format!("{}/tests/fixtures/trace/{p}", env!("CARGO_MANIFEST_DIR"));
        OneDump::parse(std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn dref(d: &OneDump) -> DumpRef<'_> {
        match d {
            OneDump::Iptables(d) => DumpRef::Iptables(d),
            OneDump::Nftables(d) => DumpRef::Nftables(d),
        }
    }

    fn svc(s: &str) -> ServiceKey {
        let (ns, rest) = s.split_once('/').unwrap();
        let (name, port) = rest.split_once(':').unwrap();
        key(ns, name, port)
    }

    #[test]
    fn nftables_destinations_and_node_from_the_dump() {
        let d = fixture("kernel/nftables-overall-v1.34.txt");
        let s = Side::new(dref(&d), &[]);
        let f = s.facts();
        assert_eq!(f.node_ips, [Ipv4Addr::new(192, 168, 0, 2)]);
        assert_eq!(f.pod_cidr.as_deref(), Some("10.0.0.0/8"));
        // 10.0.0.2 is no endpoint: a pod on this node that is no backend.
        assert_eq!(f.pod_ip, Ipv4Addr::new(10, 0, 0, 2));
        assert!(f.notes.is_empty(), "{:?}", f.notes);
        let got: Vec<String> = s
            .dests(&svc("ns2/svc2:p80"))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "ClusterIP 172.30.0.42:80",
                "LB/externalIP 1.2.3.4:80",
                "LB/externalIP 192.168.99.22:80",
                "NodePort 192.168.0.2:3001"
            ]
        );
        // A firewall-ips address is an LB IP; a Service without endpoints has its ClusterIP.
        let svc5: Vec<String> = s
            .dests(&svc("ns5/svc5:p80"))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(svc5.contains(&"LB 5.6.7.8:80".to_string()), "{svc5:?}");
        let svc6: Vec<String> = s
            .dests(&svc("ns6/svc6:p80"))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(svc6, ["ClusterIP 172.30.0.46:80"]);
    }

    #[test]
    fn iptables_destinations_by_comment_node_given_by_the_caller() {
        let d = fixture("kernel/iptables-overall.txt");
        let node = Ipv4Addr::new(192, 168, 0, 2);
        let s = Side::new(dref(&d), &[node]);
        assert_eq!(s.facts().pod_cidr.as_deref(), Some("10.0.0.0/8"));
        let got: Vec<String> = s
            .dests(&svc("ns2/svc2:p80"))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "ClusterIP 172.30.0.42:80",
                "LB 1.2.3.4:80",
                "externalIP 192.168.99.22:80",
                "NodePort 192.168.0.2:3001"
            ]
        );
        let svc4: Vec<String> = s
            .dests(&svc("ns4/svc4:p80"))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(svc4.contains(&"externalIP 192.168.99.33:80".to_string()));
        // Without the caller's address, one is assumed and the notes say so.
        let s = Side::new(dref(&d), &[]);
        assert_eq!(s.facts().node_ips, [DEFAULT_NODE_IP]);
        assert!(s.facts().notes[0].contains("no node address"));
    }

    #[test]
    fn the_host_source_is_traced_from_the_node() {
        let d = fixture("kernel/nftables-overall-v1.34.txt");
        let s = Side::new(dref(&d), &[]);
        let p = s.packet(
            Source::Host,
            &Dest {
                kind: DestKind::LoadBalancer,
                ip: Ipv4Addr::new(1, 2, 3, 4),
                port: 80,
                proto: Proto::Tcp,
            },
        );
        assert_eq!(
            (p.src, p.from),
            (Ipv4Addr::new(192, 168, 0, 2), Origin::Host)
        );
        assert_eq!(
            s.packet(
                Source::Outside,
                &Dest {
                    ..*s.dests(&svc("ns2/svc2:p80")).first().unwrap()
                }
            )
            .src,
            OUTSIDE_IP
        );
    }

    #[test]
    fn pairs_the_same_address_then_by_kind() {
        let d = |kind, ip: [u8; 4], port| Dest {
            kind,
            ip: ip.into(),
            port,
            proto: Proto::Tcp,
        };
        let base = [
            d(DestKind::ClusterIp, [10, 96, 84, 42], 8080),
            d(DestKind::LoadBalancer, [172, 17, 255, 1], 8080),
        ];
        let pr = [
            d(DestKind::ClusterIp, [10, 96, 84, 42], 8080),
            d(DestKind::LoadBalancer, [172, 17, 254, 1], 8080),
            d(DestKind::ExternalIp, [1, 1, 1, 1], 80),
        ];
        let p = pair_dests(&base, &pr);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0], (base[0], pr[0]));
        assert_eq!(p[1], (base[1], pr[1]));
        assert_eq!(p[2], (pr[2], pr[2]));
    }

    #[test]
    fn pr132456_host_to_the_etp_local_lb_without_endpoint_is_the_change() {
        let (b, p) = (
            fixture("kernel/nftables-overall-v1.33.txt"),
            fixture("kernel/nftables-overall-v1.34.txt"),
        );
        let sum = compare(&Side::new(dref(&b), &[]), &Side::new(dref(&p), &[]), None);
        let got: Vec<String> = sum
            .changes
            .iter()
            .map(|c| {
                format!(
                    "{} {} {} | {} | {}",
                    c.service,
                    c.source.name(),
                    c.destination,
                    c.base,
                    c.pr
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                "ns2/svc2:p80 host LB/externalIP 1.2.3.4:80 | drop (filter-output, service-endpoints-check) | dnat 1 endpoint masqueraded",
                "ns2/svc2:p80 host LB/externalIP 192.168.99.22:80 | drop (filter-output, service-endpoints-check) | dnat 1 endpoint masqueraded",
            ]
        );
        assert!(sum.changes.iter().all(|c| c.source == Source::Host));
        assert!(sum.classes >= 3 * 6);
    }

    #[test]
    fn text_shows_no_control_character_of_a_dump() {
        let o = |chain: &str| Outcome {
            verdict: Verdict::Drop,
            endpoints: 0,
            masquerade: false,
            hook_chain: Some("filter-output".into()),
            chain: Some(chain.into()),
            line: Some(1),
        };
        let d = Dest {
            kind: DestKind::ClusterIp,
            ip: Ipv4Addr::new(10, 96, 0, 1),
            port: 80,
            proto: Proto::Udp,
        };
        let facts = Facts {
            node_ips: vec![DEFAULT_NODE_IP],
            pod_ip: DEFAULT_POD_IP,
            pod_cidr: None,
            outside_ip: OUTSIDE_IP,
            notes: vec!["a\x1b[2Jb".into()],
        };
        let s = Summary {
            classes: 3,
            services: 1,
            unknown: 1,
            changes: vec![PacketChange {
                service: "a/b:\x07".into(),
                source: Source::Pod,
                destination: d,
                pr_destination: None,
                base: o("evil\x1b]0;x\x07"),
                pr: Outcome {
                    verdict: Verdict::Accept,
                    ..o("x")
                },
            }],
            base: facts.clone(),
            pr: facts,
        };
        let mut t = String::new();
        write_text(&mut t, &s).unwrap();
        assert!(!t.chars().any(|c| c.is_control() && c != '\n'), "{t:?}");
        assert!(t.contains("pod → ClusterIP 10.96.0.1:80/udp"), "{t}");
        assert!(
            t.contains("base drop (filter-output, evil\\x1b]0;x\\x07)"),
            "{t}"
        );
        assert!(t.contains("PR accept\n"), "{t}");
        assert!(
            t.contains("note: 1 class traced to unknown on a side"),
            "{t}"
        );
    }

    #[test]
    fn pod_cidr_from_the_masquerade_test_or_the_short_circuit() {
        let c = Some((Ipv4Addr::new(10, 0, 0, 0), 8));
        let svc = "ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8 jump mark-for-masquerade";
        assert_eq!(nft_pod_cidr(svc), c);
        let ext = "ip saddr 10.0.0.0/8 goto service-42NFTM6N-ns2/svc2/tcp/p80 comment \"x\"";
        assert_eq!(nft_pod_cidr(ext), c);
        assert_eq!(
            nft_pod_cidr("ip saddr 10.180.0.1 jump mark-for-masquerade"),
            None
        );
        assert_eq!(nft_pod_cidr("ip saddr != 203.0.113.0/25 drop"), None);
    }

    /// The brief a comparison decides by is the full trace's, class by class, on every
    /// fixture the tracer has (statistic cascades, numgen maps, drops, unknowns).
    #[test]
    fn every_class_brief_is_its_full_trace() {
        let root = format!("{}/tests/fixtures/trace", env!("CARGO_MANIFEST_DIR"));
        let mut classes = 0;
        for dir in ["iptables", "kernel", "nftables"] {
            let mut files: Vec<_> = std::fs::read_dir(format!("{root}/{dir}"))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            files.sort();
            for f in files {
                let d = fixture(&format!("{dir}/{f}"));
                let s = Side::new(dref(&d), &[]);
                for dests in s.dests.values() {
                    for dest in dests {
                        for src in Source::ALL {
                            let p = s.packet(src, dest);
                            let full = Brief::of(&s.tracer.trace(&p));
                            assert_eq!(s.tracer.brief(&p), full, "{f}: {src:?} -> {dest}");
                            classes += 1;
                        }
                    }
                }
            }
        }
        assert!(classes > 300, "{classes}");
    }

    #[test]
    fn equal_dumps_no_change() {
        let b = fixture("kernel/nftables-overall-v1.34.txt");
        let sum = compare(&Side::new(dref(&b), &[]), &Side::new(dref(&b), &[]), None);
        assert!(sum.equal());
        assert!(sum.classes > 0);
    }
}
