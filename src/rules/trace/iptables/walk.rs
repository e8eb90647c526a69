//! One packet's walk through a compiled dump: the hooks in the kernel's order, each table's
//! built-in chain with its jumps, gotos and returns, one branch of `statistic` outcomes at a
//! time; and the branches' outcomes made one [`Trace`].

use std::net::Ipv4Addr;

use super::rule::{AddrType, Match, ProtoMatch, Rule, Target, ct};
use super::{Compiled, MAX_DEPTH, Tracer, hook_slot, table_slot};
use crate::rules::parse::Table;
use crate::rules::trace::{Hook, Origin, Packet, Proto, Step, Trace, Verdict};

/// How one branch ended.
pub(super) struct Outcome {
    verdict: Verdict,
    endpoint: Option<(Ipv4Addr, u16)>,
    masquerade: bool,
    path: Vec<Step>,
    notes: Vec<String>,
    /// The line that ended it (drop, reject, an unknown construct), for the notes.
    at: Option<u32>,
}

/// What the branches decide together: the verdict (see the module's documentation), the
/// endpoints their DNATs reach (each once, in the order met; none unless the verdict is
/// `dnat`) and whether any masquerades.
pub(super) fn decide(outcomes: &[Outcome]) -> (Verdict, Vec<(Ipv4Addr, u16)>, bool) {
    let mut endpoints: Vec<(Ipv4Addr, u16)> = Vec::new();
    for o in outcomes {
        if let (Verdict::Dnat, Some(e)) = (o.verdict, o.endpoint)
            && !endpoints.contains(&e)
        {
            endpoints.push(e);
        }
    }
    let first = outcomes.first().map_or(Verdict::Accept, |o| o.verdict);
    let verdict = if outcomes.iter().any(|o| o.verdict == Verdict::Unknown) {
        Verdict::Unknown
    } else if outcomes.iter().any(|o| o.verdict == Verdict::Dnat) {
        Verdict::Dnat
    } else {
        first
    };
    if verdict != Verdict::Dnat {
        // The notes name the endpoints of the branches that DNAT.
        endpoints.clear();
    }
    (verdict, endpoints, outcomes.iter().any(|o| o.masquerade))
}

/// The branches' outcomes as one trace (see the module's documentation).
pub(super) fn combine(outcomes: Vec<Outcome>) -> Trace {
    let (verdict, endpoints, masquerade) = decide(&outcomes);
    let mut endpoints: Vec<String> = endpoints
        .iter()
        .map(|(ip, port)| format!("{ip}:{port}"))
        .collect();
    endpoints.sort();
    let mut path: Vec<Step> = Vec::new();
    let mut seen = rustc_hash::FxHashSet::default();
    let mut notes: Vec<String> = Vec::new();
    for o in &outcomes {
        for s in &o.path {
            if seen.insert((s.hook, s.table.clone(), s.line)) {
                path.push(s.clone());
            }
        }
        for n in &o.notes {
            if !notes.contains(n) {
                notes.push(n.clone());
            }
        }
    }
    if outcomes.len() > 1 {
        for o in outcomes.iter().filter(|o| o.verdict != verdict) {
            let n = match (o.verdict, o.endpoint, o.at) {
                (Verdict::Dnat, Some((ip, port)), _) => format!("a branch DNATs to {ip}:{port}"),
                (v, Some((ip, port)), Some(line)) => format!(
                    "a branch DNATed to {ip}:{port} ends in {} at line {line}",
                    v.name()
                ),
                (v, _, Some(line)) => format!("a branch ends in {} at line {line}", v.name()),
                (v, _, None) => format!("a branch ends in {}", v.name()),
            };
            if !notes.contains(&n) {
                notes.push(n);
            }
        }
    }
    Trace {
        verdict,
        endpoints,
        masquerade,
        path,
        notes,
    }
}

/// How a walk through one table's base chain ended.
enum End {
    /// Fell through (policy ACCEPT) or ACCEPTed: on to the next table.
    Accept,
    /// DNAT, SNAT or MASQUERADE: the nat table is done for this hook.
    Nat,
    Drop(u32),
    Reject(u32),
    Unknown(u32, String),
}

/// A place in a chain: which, the next position in it, its length and, for an indexed chain,
/// the positions this packet can match (rules for any destination, for its address, for its
/// port).
#[derive(Clone, Copy)]
struct Frame<'t> {
    chain: usize,
    next: usize,
    len: usize,
    lists: Option<[&'t [u32]; 3]>,
}

/// A match's result: yes, no, or cannot tell.
enum Hit {
    Yes,
    No,
    Unknown(String),
}

/// One branch of one packet's walk.
pub(super) struct Walk<'t, 'a> {
    t: &'t Tracer<'a>,
    p: &'t Packet,
    dst: Ipv4Addr,
    dport: u16,
    mark: u32,
    ctstate: u8,
    untracked: bool,
    endpoint: Option<(Ipv4Addr, u16)>,
    masquerade: bool,
    hook: Hook,
    /// The `statistic` outcomes: the first `prefix` given, the rest chosen (matched) here.
    pub(super) choices: Vec<bool>,
    pub(super) prefix: usize,
    next_choice: usize,
    /// Whether the path and notes are kept (a full trace), or only what decides the verdict.
    record: bool,
    path: Vec<Step>,
    notes: Vec<String>,
    end: Option<(Verdict, Option<u32>)>,
}

impl<'t, 'a> Walk<'t, 'a> {
    /// A walk of the branch `choices` starts; `record`: keep the path and the notes.
    pub(super) fn new(
        t: &'t Tracer<'a>,
        p: &'t Packet,
        choices: Vec<bool>,
        record: bool,
    ) -> Walk<'t, 'a> {
        let prefix = choices.len();
        Walk {
            t,
            p,
            dst: p.dst,
            dport: p.dport,
            mark: 0,
            ctstate: ct::NEW,
            untracked: false,
            endpoint: None,
            masquerade: false,
            hook: Hook::Prerouting,
            choices,
            prefix,
            next_choice: 0,
            record,
            path: Vec::new(),
            notes: Vec::new(),
            end: None,
        }
    }

    pub(super) fn outcome(self) -> Outcome {
        let (verdict, at) = match self.end {
            Some(e) => e,
            None if self.endpoint.is_some() => (Verdict::Dnat, None),
            None => (Verdict::Accept, None),
        };
        Outcome {
            verdict,
            endpoint: self.endpoint,
            masquerade: self.masquerade,
            path: self.path,
            notes: self.notes,
            at,
        }
    }

    /// The whole walk, hook by hook.
    pub(super) fn run(&mut self) {
        use Table::*;
        let walk: &[(Hook, &[Table])] = match self.p.from {
            Origin::Pod => &[(Hook::Prerouting, &[Raw, Mangle, Nat])],
            Origin::Host => &[
                (Hook::Output, &[Raw, Mangle, Nat, Filter, Security]),
                (Hook::Postrouting, &[Mangle, Nat]),
            ],
        };
        for (hook, tables) in walk {
            if !self.hook(*hook, tables) {
                return;
            }
        }
        let local = self.p.local(self.dst);
        let rest: &[(Hook, &[Table])] = match (self.p.from, local) {
            (Origin::Pod, true) => &[(Hook::Input, &[Mangle, Filter, Security, Nat])],
            (Origin::Pod, false) => &[
                (Hook::Forward, &[Mangle, Filter, Security]),
                (Hook::Postrouting, &[Mangle, Nat]),
            ],
            // Back in through `lo`; NAT was decided on the way out.
            (Origin::Host, true) => &[
                (Hook::Prerouting, &[Raw, Mangle]),
                (Hook::Input, &[Mangle, Filter, Security]),
            ],
            (Origin::Host, false) => &[],
        };
        for (hook, tables) in rest {
            if !self.hook(*hook, tables) {
                return;
            }
        }
    }

    /// One hook, its tables in priority order; false when the packet's fate is sealed.
    fn hook(&mut self, hook: Hook, tables: &[Table]) -> bool {
        self.hook = hook;
        for &table in tables {
            if !self.t.has_table[table_slot(table)] || (table == Table::Nat && self.untracked) {
                continue;
            }
            let Some(base) = self.t.base[table_slot(table)][hook_slot(hook)] else {
                continue;
            };
            match self.chain(base) {
                End::Accept | End::Nat => {}
                End::Drop(line) => {
                    self.end = Some((Verdict::Drop, Some(line)));
                    return false;
                }
                End::Reject(line) => {
                    self.end = Some((Verdict::Reject, Some(line)));
                    return false;
                }
                End::Unknown(line, why) => {
                    if self.record {
                        self.notes.push(format!("line {line}: {why}"));
                    }
                    self.end = Some((Verdict::Unknown, Some(line)));
                    return false;
                }
            }
        }
        true
    }

    /// A base chain, with its jumps, gotos and returns.
    fn chain(&mut self, base: usize) -> End {
        let t = self.t;
        // `stack` holds the callers to return to.
        let mut stack: Vec<Frame<'t>> = Vec::new();
        let mut cur = self.enter(base);
        loop {
            let Some(pos) = self.next_candidate(&cur) else {
                match stack.pop() {
                    Some(f) => {
                        cur = f;
                        continue;
                    }
                    None => return self.policy(base),
                }
            };
            cur.next = pos + 1;
            let r = &t.rules[t.chains[cur.chain].rules.start as usize + pos];
            let line = r.line;
            match self.matches(&r.rule) {
                Hit::No => continue,
                Hit::Unknown(why) => {
                    self.step(cur.chain, r);
                    return End::Unknown(line, why);
                }
                Hit::Yes => self.step(cur.chain, r),
            }
            match &r.rule.target {
                Target::None | Target::Continue => {}
                Target::Jump { goto, .. } => {
                    let to = r.jump.expect("jumps are resolved when compiled");
                    if t.chains[to].absent {
                        self.note(|| {
                            format!(
                                "chain {} ({}) is not in the dump: taken as empty",
                                t.chains[to].name, t.chains[to].table
                            )
                        });
                    }
                    if !goto {
                        if stack.len() >= MAX_DEPTH {
                            return End::Unknown(
                                line,
                                format!("jumps nested over {MAX_DEPTH} deep"),
                            );
                        }
                        stack.push(cur);
                    }
                    cur = self.enter(to);
                }
                Target::Return => match stack.pop() {
                    Some(f) => cur = f,
                    None => return self.policy(base),
                },
                Target::Accept => return End::Accept,
                Target::Drop => return End::Drop(line),
                Target::Reject => return End::Reject(line),
                Target::Dnat { ip, port } => {
                    let port = port.unwrap_or(self.dport);
                    self.dst = *ip;
                    self.dport = port;
                    self.ctstate |= ct::DNAT;
                    self.endpoint = Some((*ip, port));
                    return End::Nat;
                }
                Target::Snat { .. } => {
                    self.masquerade = true;
                    self.ctstate |= ct::SNAT;
                    return End::Nat;
                }
                Target::Mark { clear, xor } => self.mark = (self.mark & !clear) ^ xor,
                Target::NoTrack => {
                    self.untracked = true;
                    self.ctstate = ct::UNTRACKED;
                }
                Target::Unknown(why) => return End::Unknown(line, why.clone()),
            }
        }
    }

    /// A built-in chain's end: its policy.
    fn policy(&mut self, base: usize) -> End {
        let c = &self.t.chains[base];
        match c.drop_policy {
            Some(line) => {
                if self.record {
                    self.path.push(Step {
                        hook: self.hook,
                        table: c.table.name().to_string(),
                        chain: c.name.clone(),
                        rule: format!("-P {} DROP", c.name),
                        line,
                    });
                }
                End::Drop(line)
            }
            None => End::Accept,
        }
    }

    /// A rule that matched, on the path (when recording).
    fn step(&mut self, chain: usize, r: &Compiled) {
        if !self.record {
            return;
        }
        let c = &self.t.chains[chain];
        self.path.push(Step {
            hook: self.hook,
            table: c.table.name().to_string(),
            chain: c.name.clone(),
            rule: self.t.text(r),
            line: r.line,
        });
    }

    /// The start of `chain`; an indexed chain's rules this packet can match looked up once
    /// (its destination and port do not change within a base chain's walk: a DNAT ends it).
    fn enter(&self, chain: usize) -> Frame<'t> {
        let c = &self.t.chains[chain];
        let lists = c.index.as_deref().map(|ix| {
            let dst = ix.by_dst.get(&u32::from(self.dst));
            let port = ix.by_port.get(&self.dport);
            [
                ix.any.as_slice(),
                dst.map_or(&[][..], Vec::as_slice),
                port.map_or(&[][..], Vec::as_slice),
            ]
        });
        Frame {
            chain,
            next: 0,
            len: c.rules.len(),
            lists,
        }
    }

    /// The position of the next rule of a chain from `f.next` on that this packet can match.
    fn next_candidate(&self, f: &Frame<'t>) -> Option<usize> {
        let Some(lists) = f.lists else {
            return (f.next < f.len).then_some(f.next);
        };
        lists
            .iter()
            .filter_map(|v| {
                let k = v.partition_point(|&p| (p as usize) < f.next);
                v.get(k).map(|&p| p as usize)
            })
            .min()
    }

    /// The interfaces the packet came in on and goes out by, in this hook: `Some("lo")`,
    /// `Some("")` for one that is not `lo` (its name unknown), `None` where the hook has none.
    fn ifaces(&self) -> (Option<&'static str>, Option<&'static str>) {
        let out = || Some(if self.p.local(self.dst) { "lo" } else { "" });
        match (self.p.from, self.hook) {
            (Origin::Host, Hook::Output | Hook::Postrouting) => (None, out()),
            (Origin::Host, _) => (Some("lo"), None),
            (Origin::Pod, Hook::Prerouting | Hook::Input) => (Some(""), None),
            (Origin::Pod, Hook::Forward) => (Some(""), Some("")),
            (Origin::Pod, _) => (None, Some("")),
        }
    }

    /// Whether a rule matches this packet in the walk's state.
    fn matches(&mut self, r: &Rule) -> Hit {
        let p = self.p;
        if let Some((n, neg)) = r.src
            && n.contains(p.src) == neg
        {
            return Hit::No;
        }
        if let Some((n, neg)) = r.dst
            && n.contains(self.dst) == neg
        {
            return Hit::No;
        }
        if let Some((m, neg)) = r.proto {
            let is = match m {
                ProtoMatch::All => true,
                ProtoMatch::Tcp => p.proto == Proto::Tcp,
                ProtoMatch::Udp => p.proto == Proto::Udp,
                ProtoMatch::Sctp => p.proto == Proto::Sctp,
                ProtoMatch::Other => false,
            };
            if is == neg {
                return Hit::No;
            }
        }
        let (iif, oif) = self.ifaces();
        for (iface, have, opt) in [(&r.iif, iif, "-i"), (&r.oif, oif, "-o")] {
            let Some((pat, neg)) = iface else { continue };
            let is = match have {
                None => pat.0 == "+",
                Some("lo") => pat.matches("lo"),
                // A pod's interface, name unknown: only `lo`-only patterns and `+` can be told.
                Some(_) if pat.0 == "+" => true,
                Some(_) if pat.0 == "lo" || pat.0 == "l+" || pat.0 == "lo+" => false,
                Some(_) => {
                    return Hit::Unknown(format!(
                        "{opt} {}: the name of the interface the packet {} is not known",
                        pat.0,
                        if opt == "-i" {
                            "came in on"
                        } else {
                            "leaves by"
                        }
                    ));
                }
            };
            if is == *neg {
                return Hit::No;
            }
        }
        for m in &r.matches {
            match self.one(m) {
                Hit::Yes => {}
                other => return other,
            }
        }
        Hit::Yes
    }

    fn one(&mut self, m: &Match) -> Hit {
        let yes = |b: bool| if b { Hit::Yes } else { Hit::No };
        match m {
            Match::Ports {
                dst,
                src,
                ports,
                neg,
            } => {
                let is =
                    (*dst && ports.contains(self.dport)) || (*src && ports.contains(self.p.sport));
                yes(is != *neg)
            }
            Match::Syn { neg } => yes(!*neg),
            Match::Fragment { neg } => yes(*neg),
            Match::AddrType { src, dst, limited } => {
                if *limited {
                    self.note(|| "-m addrtype --limit-iface-in/out read as the node's addresses on any interface".to_string());
                }
                let of = |ip: Ipv4Addr, types: &[AddrType]| {
                    types.iter().any(|t| match t {
                        AddrType::Local => self.p.local(ip),
                        AddrType::Multicast => ip.is_multicast(),
                        AddrType::Unicast => {
                            !self.p.local(ip) && !ip.is_multicast() && !ip.is_broadcast()
                        }
                    })
                };
                if let Some((types, neg)) = src
                    && of(self.p.src, types) == *neg
                {
                    return Hit::No;
                }
                if let Some((types, neg)) = dst
                    && of(self.dst, types) == *neg
                {
                    return Hit::No;
                }
                Hit::Yes
            }
            Match::CtState { states, neg } => yes((states & self.ctstate != 0) != *neg),
            Match::Mark { value, mask, neg } => yes((self.mark & mask == *value) != *neg),
            Match::Statistic { neg } => {
                let take = self.choose();
                yes(take != *neg)
            }
            Match::RecentCheck { neg, .. } => yes(*neg),
            Match::RecentSet { name } => {
                let src = self.p.src;
                self.note(|| format!(
                    "recent --set {name}: later connections from {src} stick to this endpoint (session affinity)"
                ));
                Hit::Yes
            }
            Match::Unknown(why) => Hit::Unknown(why.clone()),
        }
    }

    /// A note for the reader, once (when recording).
    fn note(&mut self, n: impl FnOnce() -> String) {
        if !self.record {
            return;
        }
        let n = n();
        if !self.notes.contains(&n) {
            self.notes.push(n);
        }
    }

    /// The outcome of the next `statistic` match: given, or chosen (matched) and a fork noted.
    fn choose(&mut self) -> bool {
        let k = self.next_choice;
        self.next_choice += 1;
        if k < self.choices.len() {
            return self.choices[k];
        }
        self.choices.push(true);
        true
    }
}
