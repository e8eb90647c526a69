//! The tracer over iptables rules (iptables-save, `iptables -S`, legacy or nft backend).
//!
//! [`Tracer::new`] compiles a dump once: each table's chains (rules in order, the built-in
//! chains' policies), each rule parsed into typed matches and a target ([`rule`]), and, for long
//! chains such as `KUBE-SERVICES` and `KUBE-NODEPORTS`, an index of their rules by destination
//! address and port so that a trace through a dump of 10,000 Services looks at a handful of
//! rules. [`Tracer::trace`] then walks one packet through the hooks in the kernel's order:
//!
//! - from a pod (or from outside the node): prerouting (raw, mangle, nat), the routing decision
//!   on the destination after DNAT ([`Packet::local`]: input, else forward), then input (mangle,
//!   filter, security, nat) or forward (mangle, filter, security) and postrouting (mangle, nat);
//! - from the host: output (raw, mangle, nat, filter, security), postrouting (mangle, nat); when
//!   the destination (after DNAT) is the node's own, the packet comes back through `lo`:
//!   prerouting (raw, mangle) and input (mangle, filter, security). NAT rules are not consulted
//!   again there: the kernel decides NAT once a connection, on its first pass.
//!
//! What it assumes of a packet: it is the first of a new connection (`--ctstate NEW`, plus
//! `DNAT` once destination-NATed); no `recent` entry exists (`--rcheck` never matches; `--set`
//! is noted); it has no mark when it starts. A pod's packet comes in on an interface that is not
//! `lo` (its name unknown: `-i NAME` for any other name is unknown) and leaves by one that is not
//! `lo`; a host's packet to a local address leaves by `lo`. `-m addrtype --limit-iface-in/out`
//! is read as plain `addrtype` (the node's addresses on the interface in question).
//!
//! A `statistic` match is a fork: both outcomes are traced, depth first (matched first). The
//! trace's endpoints are the union of every DNAT a branch reaches; its verdict: `unknown` if a
//! branch hits a construct the tracer cannot evaluate, else `dnat` if a branch is DNATed (and
//! accepted), else the first branch's; branches ending otherwise are named in the notes.
//! `masquerade` is true when a branch reaches a MASQUERADE or SNAT rule. The path is the first
//! branch's steps, then each later branch's steps not already in it, in the order visited.

mod rule;
mod walk;

use rustc_hash::FxHashMap;

use self::rule::{Match, Rule, Target};
use self::walk::{Outcome, Walk, combine, decide};
use super::{Brief, Hook, Packet, Trace, Verdict};
use crate::rules::parse::{Dump, Table};

/// Chains longer than this get an index by destination address and port.
const INDEXED: usize = 16;
/// Deepest jump nesting followed (the kernel's own limit is about as deep).
const MAX_DEPTH: usize = 64;
/// Most branches (`statistic` outcomes) followed for one packet.
const MAX_BRANCHES: usize = 4096;

/// The hooks, in an array's order.
const HOOKS: [Hook; 5] = [
    Hook::Prerouting,
    Hook::Input,
    Hook::Forward,
    Hook::Output,
    Hook::Postrouting,
];

fn hook_slot(h: Hook) -> usize {
    HOOKS.iter().position(|x| *x == h).unwrap_or(0)
}

/// The built-in chain of a hook.
fn hook_chain(h: Hook) -> &'static str {
    match h {
        Hook::Prerouting => "PREROUTING",
        Hook::Input => "INPUT",
        Hook::Forward => "FORWARD",
        Hook::Output => "OUTPUT",
        Hook::Postrouting => "POSTROUTING",
    }
}

fn table_slot(t: Table) -> usize {
    match t {
        Table::Raw => 0,
        Table::Mangle => 1,
        Table::Nat => 2,
        Table::Filter => 3,
        Table::Security => 4,
        Table::Nft => 2,
    }
}

/// The table of a dump that names none (`iptables -S`, a fragment): filter when it has the
/// FORWARD chain and nothing of nat's (PREROUTING, POSTROUTING, DNAT, MASQUERADE), else nat
/// (kube-proxy's fragments are nat's).
fn untabled_table(dump: &Dump) -> Table {
    let chain_named = |n: &str| {
        dump.chains.iter().any(|c| dump.str(&c.name) == n)
            || dump.rules.iter().any(|r| dump.rule_chain(r) == n)
    };
    let nat_like = chain_named("PREROUTING")
        || chain_named("POSTROUTING")
        || dump.rules.iter().any(|r| {
            let b = dump.rule_body(r);
            b.contains("-j DNAT") || b.contains("-j MASQUERADE") || b.contains("-j SNAT")
        });
    if chain_named("FORWARD") && !nat_like {
        Table::Filter
    } else {
        Table::Nat
    }
}

/// A chain of one table.
struct Chain {
    table: Table,
    name: String,
    /// Its rules: indices into [`Tracer::rules`], where a chain's rules lie together, in order
    /// (a walk through a chain reads one stretch of memory).
    rules: std::ops::Range<u32>,
    /// `DROP` policy of a built-in chain, and the line that declares it.
    drop_policy: Option<u32>,
    /// Jumped to but never declared nor given a rule.
    absent: bool,
    /// Boxed: most chains have none, and a small chain is read in fewer cache lines.
    index: Option<Box<Index>>,
}

/// Where in a long chain the rules a packet can match are: positions (into [`Chain::rules`]),
/// ascending.
#[derive(Default)]
struct Index {
    /// Rules with no single destination address or port: every packet meets them.
    any: Vec<u32>,
    /// Rules for one destination address (`-d IP/32`).
    by_dst: FxHashMap<u32, Vec<u32>>,
    /// Rules for one destination port (and no single address).
    by_port: FxHashMap<u16, Vec<u32>>,
}

/// A compiled rule: the typed rule, its chain and where it is in the dump.
struct Compiled {
    rule: Rule,
    /// The chain a jump or goto leads to (an index into [`Tracer::chains`]).
    jump: Option<usize>,
    /// Index into [`Dump::rules`].
    at: u32,
    /// Its 1-based line in the dump.
    line: u32,
}

/// An iptables dump compiled for tracing.
pub struct Tracer<'a> {
    dump: &'a Dump,
    chains: Vec<Chain>,
    /// Per table slot: chain name -> index into `chains`.
    names: Box<[FxHashMap<String, usize>; 5]>,
    /// Per table slot and hook: the built-in chain, if the dump has it.
    base: Box<[[Option<usize>; 5]; 5]>,
    rules: Vec<Compiled>,
    /// Which tables the dump has.
    has_table: [bool; 5],
    /// The dump names no table (`iptables -S`, a fragment): the table its rules are read as.
    untabled: Option<Table>,
    /// Some built-in chain has a rule: something leads packets into the dump's chains.
    hooked: bool,
}

impl<'a> Tracer<'a> {
    pub fn new(dump: &'a Dump) -> Tracer<'a> {
        let mut t = Tracer {
            dump,
            chains: Vec::new(),
            names: Default::default(),
            base: Box::new([[None; 5]; 5]),
            rules: Vec::with_capacity(dump.rules.len()),
            has_table: [false; 5],
            untabled: None,
            hooked: false,
        };
        let guess = untabled_table(dump);
        for d in &dump.chains {
            let table = d.table.unwrap_or(guess);
            let c = t.chain(table, dump.str(&d.name));
            if d.policy.as_ref().is_some_and(|p| dump.str(p) == "DROP") {
                t.chains[c].drop_policy = Some(d.line);
            }
        }
        // Per chain: its rules' indices into the dump, in order.
        let mut members: Vec<Vec<u32>> = Vec::new();
        // The previous rule's table, chain name and chain: a dump lists a chain's rules together.
        let mut last: Option<(Table, &str, usize)> = None;
        for (at, r) in dump.rules.iter().enumerate() {
            if r.table.is_none() {
                t.untabled = Some(guess);
            }
            let table = r.table.unwrap_or(guess);
            let name = dump.rule_chain(r);
            let c = match last {
                Some((lt, ln, c)) if lt == table && ln == name => c,
                _ => t.chain(table, name),
            };
            last = Some((table, name, c));
            if members.len() <= c {
                members.resize_with(c + 1, Vec::new);
            }
            members[c].push(at as u32);
        }
        t.lay_out(members);
        for tb in &dump.tables {
            t.has_table[table_slot(*tb)] = true;
        }
        if t.untabled.is_some() || dump.tables.is_empty() {
            t.has_table[table_slot(guess)] = true;
        }
        t.resolve_jumps();
        t.build_indices();
        for (slot, names) in t.names.iter().enumerate() {
            for (h, hook) in HOOKS.iter().enumerate() {
                t.base[slot][h] = names.get(hook_chain(*hook)).copied();
            }
        }
        t.hooked = t
            .base
            .iter()
            .flatten()
            .flatten()
            .any(|&c| !t.chains[c].rules.is_empty());
        t
    }

    /// Each chain's rules compiled, one chain after another (`members`: per chain, its rules'
    /// indices into the dump).
    fn lay_out(&mut self, members: Vec<Vec<u32>>) {
        for (c, ats) in members.into_iter().enumerate() {
            let start = self.rules.len() as u32;
            for at in ats {
                let r = &self.dump.rules[at as usize];
                self.rules.push(Compiled {
                    rule: Rule::parse(self.dump.rule_body(r)),
                    jump: None,
                    at,
                    line: r.line,
                });
            }
            self.chains[c].rules = start..self.rules.len() as u32;
        }
    }

    /// The chain `name` of `table`, created (empty) if new.
    fn chain(&mut self, table: Table, name: &str) -> usize {
        if let Some(&c) = self.names[table_slot(table)].get(name) {
            return c;
        }
        self.chains.push(Chain {
            table,
            name: name.to_string(),
            rules: 0..0,
            drop_policy: None,
            absent: false,
            index: None,
        });
        self.names[table_slot(table)].insert(name.to_string(), self.chains.len() - 1);
        self.chains.len() - 1
    }

    fn resolve_jumps(&mut self) {
        for c in 0..self.chains.len() {
            let table = self.chains[c].table;
            for r in self.chains[c].rules.clone() {
                let r = r as usize;
                let Target::Jump { chain, .. } = &self.rules[r].rule.target else {
                    continue;
                };
                let target = match self.names[table_slot(table)].get(chain.as_str()) {
                    Some(&t) => t,
                    None => {
                        let chain = chain.clone();
                        let t = self.chain(table, &chain);
                        self.chains[t].absent = true;
                        t
                    }
                };
                self.rules[r].jump = Some(target);
            }
        }
    }

    fn build_indices(&mut self) {
        for c in &mut self.chains {
            if c.rules.len() <= INDEXED {
                continue;
            }
            let mut ix = Index::default();
            for (pos, r) in c.rules.clone().enumerate() {
                let rule = &self.rules[r as usize].rule;
                let pos = pos as u32;
                let dst = rule
                    .dst
                    .and_then(|(n, neg)| if neg { None } else { n.host() });
                let port = rule.matches.iter().find_map(|m| match m {
                    Match::Ports {
                        dst: true,
                        src: false,
                        ports,
                        neg: false,
                    } => ports.single(),
                    _ => None,
                });
                match (dst, port) {
                    (Some(d), _) => ix.by_dst.entry(d).or_default().push(pos),
                    (None, Some(p)) => ix.by_port.entry(p).or_default().push(pos),
                    (None, None) => ix.any.push(pos),
                }
            }
            c.index = Some(Box::new(ix));
        }
    }

    /// The rule text as written, without counters.
    fn text(&self, r: &Compiled) -> String {
        let rule = &self.dump.rules[r.at as usize];
        let body = self.dump.rule_body(rule);
        let chain = self.dump.rule_chain(rule);
        if !body.contains("-c ") {
            return format!("-A {chain} {body}");
        }
        // `iptables -S -v` counters in the middle of the rule: write it without them.
        let words = crate::rules::tokens::split(body);
        let mut out = format!("-A {chain}");
        let mut i = 0;
        while i < words.len() {
            if words[i] == "-c" {
                i += 3;
                continue;
            }
            out.push(' ');
            if words[i].contains(' ') || words[i].is_empty() {
                out.push('"');
                out.push_str(words[i]);
                out.push('"');
            } else {
                out.push_str(words[i]);
            }
            i += 1;
        }
        out
    }

    /// Where one packet goes, with its path and notes.
    pub fn trace(&self, p: &Packet) -> Trace {
        let (outcomes, cut) = self.branches(p, true);
        let mut t = combine(outcomes);
        if let Some(table) = self.untabled {
            t.notes.insert(
                0,
                format!("the dump names no table (iptables -S or a fragment): its rules are read as the {table} table's"),
            );
        }
        if !self.hooked {
            t.notes.push(
                "no built-in chain (PREROUTING, OUTPUT, ...) has a rule in this dump: nothing leads a packet into its chains"
                    .into(),
            );
        }
        if cut {
            t.verdict = Verdict::Unknown;
            t.notes.push(format!(
                "more than {MAX_BRANCHES} statistic branches: the trace stopped there"
            ));
        }
        t
    }

    /// What decides whether two traces agree (the verdict, endpoints and masquerade of
    /// [`Tracer::trace`]), without recording the path or the notes.
    pub fn brief(&self, p: &Packet) -> Brief {
        let (outcomes, cut) = self.branches(p, false);
        let (verdict, endpoints, masquerade) = decide(&outcomes);
        Brief {
            verdict: if cut { Verdict::Unknown } else { verdict },
            endpoints: endpoints.len(),
            masquerade,
        }
    }

    /// Every branch of one packet's walk (`record`: with paths and notes), and whether there
    /// were more than [`MAX_BRANCHES`].
    fn branches(&self, p: &Packet, record: bool) -> (Vec<Outcome>, bool) {
        let mut outcomes: Vec<Outcome> = Vec::new();
        let mut stack: Vec<Vec<bool>> = vec![Vec::new()];
        let mut runs = 0;
        while let Some(choices) = stack.pop() {
            runs += 1;
            if runs > MAX_BRANCHES {
                return (outcomes, true);
            }
            let mut w = Walk::new(self, p, choices, record);
            w.run();
            // Later forks first on the stack's top: depth first, matched before fall-through.
            for k in (w.prefix..w.choices.len()).rev() {
                let mut alt = w.choices[..k].to_vec();
                alt.push(false);
                stack.push(alt);
            }
            outcomes.push(w.outcome());
        }
        (outcomes, false)
    }
}

#[cfg(test)]
mod tests;
