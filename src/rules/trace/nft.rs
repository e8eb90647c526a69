//! The tracer over nftables rules (`nft list table ip kube-proxy`, `nft list ruleset`, knftables'
//! transaction format).
//!
//! [`Tracer::new`] compiles the dump once: every `ip` and `inet` table's base chains (type, hook,
//! priority, policy), its chains' rules as typed expressions ([`expr`]), its sets and maps with
//! their elements (hash-indexed). [`Tracer::trace`] then walks one packet through the hooks as
//! the kernel does:
//!
//! - a pod's packet: prerouting, the routing decision on its (possibly DNATed) destination
//!   (one of the node's addresses: input; else forward), then postrouting when forwarded;
//! - a locally originated one: output, postrouting, and when it is addressed to the node
//!   itself, over `lo` into prerouting and input (nat chains skipped there: the connection's
//!   NAT was settled at output).
//!
//! At each hook every table's base chains run in priority order (ties: the dump's order, with
//! a note). nat chains run where the kernel's NAT hook runs them, at `dstnat` (-100) in
//! prerouting/output and `srcnat` (100) in input/postrouting, ordered among themselves by their
//! own priority; once one has NATed the packet the others of that hook are skipped. A drop or
//! reject ends the trace; an accept (or a `dnat`/`masquerade`, which accept) ends only that base
//! chain: the packet goes on to the hook's next base chain. A base chain's policy applies when
//! it ends without a verdict.
//!
//! The packet is a new connection's first (`ct state new` matches, affinity sets hold no entry
//! for it). `fib daddr|saddr type local` asks [`Packet::local`]. A pod's packet arrives on an
//! interface that is not `lo`; a forwarded one leaves on one that is not `lo`; a local one
//! leaves on `lo` exactly when it is addressed to the node, and has no input interface (an
//! empty name) until it comes back in over `lo`. Interface names other than `lo` are not
//! known: a rule naming one is [`Verdict::Unknown`].
//!
//! `numgen random mod N vmap { ... }` is followed down every branch. Each branch runs to its own
//! end; the trace's verdict is `unknown` when any branch's is, else `dnat` when any branch
//! reaches an endpoint (its endpoints are those branches'), else `accept`, `reject`, `drop` in
//! that order; branches that end otherwise are named in the notes. Masquerade: any branch. The
//! path is the first branch's, then each other branch's steps from where it forked.

mod expr;

use rustc_hash::FxHashMap as HashMap;

use super::{Hook, Origin, Packet, Step, Trace, Verdict};
use crate::rules::nft::{NftDump, declaration};
use expr::{Atom, Expr, Field, Key, MarkOp, SetRef, Target};

/// The table an item with no table of its own is in.
const KUBE_PROXY: &str = "ip kube-proxy";

/// Steps one branch may take before the tracer gives up on it (a loop nft would refuse).
const STEP_LIMIT: usize = 10_000;

const HOOKS: usize = 5;

fn hook_index(h: Hook) -> usize {
    match h {
        Hook::Prerouting => 0,
        Hook::Input => 1,
        Hook::Forward => 2,
        Hook::Output => 3,
        Hook::Postrouting => 4,
    }
}

struct Rule {
    /// As written, without its counter.
    text: String,
    line: u32,
    exprs: Vec<Expr>,
}

struct Chain {
    table: usize,
    name: String,
    rules: Vec<Rule>,
}

/// A named set or map.
#[derive(Default)]
struct NamedSet {
    /// Filled by packets (`flags dynamic`, affinity): the traced packet finds no entry.
    dynamic: bool,
    elements: Vec<(Key, Option<Target>)>,
    /// Each element's line.
    lines: Vec<u32>,
    /// Elements of single values by their values: the first of each.
    exact: HashMap<Vec<u64>, usize>,
    /// Elements with a range (CIDR, port range) in their key.
    ranges: Vec<usize>,
    /// The first element that could not be read: its line and text.
    unread: Option<(u32, String)>,
}

impl NamedSet {
    fn add(&mut self, key: Key, value: Option<Target>, line: u32) {
        let i = self.elements.len();
        self.lines.push(line);
        match key.iter().map(Atom::exact).collect::<Option<Vec<u64>>>() {
            Some(v) => {
                self.exact.entry(v).or_insert(i);
            }
            None => self.ranges.push(i),
        }
        self.elements.push((key, value));
    }

    /// The index of the element `k` finds.
    fn find(&self, k: &[u64]) -> Option<usize> {
        if self.dynamic {
            return None;
        }
        if let Some(&i) = self.exact.get(k) {
            return Some(i);
        }
        self.ranges
            .iter()
            .copied()
            .find(|&i| matches(&self.elements[i].0, k))
    }
}

fn matches(key: &Key, k: &[u64]) -> bool {
    key.len() == k.len() && key.iter().zip(k).all(|(a, v)| a.contains(*v))
}

struct Table {
    name: String,
    chains: HashMap<String, usize>,
    sets: HashMap<String, NamedSet>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Filter,
    Nat,
}

struct Base {
    chain: usize,
    hook: Hook,
    kind: Kind,
    /// As declared (named priorities as numbers); `None` when it cannot be read.
    priority: Option<i64>,
    policy_drop: bool,
    /// The declaration as written, and its line.
    decl: String,
    line: u32,
}

impl Base {
    /// Where the kernel runs it: nat chains at the NAT hook's own priority.
    fn runs_at(&self) -> i64 {
        match (self.kind, self.hook) {
            (Kind::Nat, Hook::Prerouting | Hook::Output) => -100,
            (Kind::Nat, _) => 100,
            _ => self.priority.unwrap_or(0),
        }
    }
}

/// An nftables dump compiled for tracing.
pub struct Tracer<'a> {
    #[allow(dead_code)]
    dump: &'a NftDump,
    compiled: Box<Compiled>,
}

impl<'a> Tracer<'a> {
    pub fn new(dump: &'a NftDump) -> Tracer<'a> {
        Tracer {
            dump,
            compiled: Box::new(Compiled::new(dump)),
        }
    }

    /// Where one packet goes.
    pub fn trace(&self, p: &Packet) -> Trace {
        self.compiled.trace(p)
    }
}

/// The dump's tables, chains, sets and base chains in the kernel's order.
struct Compiled {
    tables: Vec<Table>,
    chains: Vec<Chain>,
    bases: Vec<Base>,
    /// Per hook, its base chains in the order the kernel runs them.
    order: [Vec<usize>; HOOKS],
    /// Per hook, what the reader should know about that order (ties).
    hook_notes: [Vec<String>; HOOKS],
    /// What every trace should say (tables not traced, declarations not read).
    notes: Vec<String>,
}

impl Compiled {
    fn new(dump: &NftDump) -> Compiled {
        let mut t = Compiled {
            tables: Vec::new(),
            chains: Vec::new(),
            bases: Vec::new(),
            order: Default::default(),
            hook_notes: Default::default(),
            notes: Vec::new(),
        };
        let mut table_ids: HashMap<String, usize> = HashMap::default();
        // Per chain: its declaration parts and their first line.
        let mut decls: HashMap<usize, (Vec<String>, u32)> = HashMap::default();
        for it in &dump.items {
            let tname = it.table.as_deref().map_or(KUBE_PROXY, |s| s.as_str());
            let ti = *table_ids.entry(tname.to_string()).or_insert_with(|| {
                t.tables.push(Table {
                    name: tname.to_string(),
                    chains: HashMap::default(),
                    sets: HashMap::default(),
                });
                t.tables.len() - 1
            });
            let chain: &str = &it.chain;
            if chain == "table" {
                continue;
            }
            if let Some(name) = chain
                .strip_prefix("map ")
                .or_else(|| chain.strip_prefix("set "))
            {
                let set = t.tables[ti].sets.entry(name.to_string()).or_default();
                if it.decl {
                    if it.text.starts_with("flags") && it.text.contains("dynamic") {
                        set.dynamic = true;
                    }
                } else {
                    match expr::element(&it.text) {
                        Some((k, v)) => set.add(k, v, it.line),
                        None => {
                            set.unread.get_or_insert((it.line, it.text.to_string()));
                        }
                    }
                }
                continue;
            }
            let ci = t.chain_id(ti, chain);
            if it.decl {
                let d = decls.entry(ci).or_insert((Vec::new(), it.line));
                d.0.push(it.text.to_string());
            } else {
                t.chains[ci].rules.push(Rule {
                    text: expr::without_counter(&it.text),
                    line: it.line,
                    exprs: expr::parse(&it.text),
                });
            }
        }
        let mut decls: Vec<(usize, (Vec<String>, u32))> = decls.into_iter().collect();
        decls.sort_by_key(|(c, _)| *c);
        for (ci, (parts, line)) in decls {
            t.base_chain(ci, &parts.join(" "), line);
        }
        t.sort_hooks();
        t
    }

    fn chain_id(&mut self, ti: usize, name: &str) -> usize {
        if let Some(&c) = self.tables[ti].chains.get(name) {
            return c;
        }
        self.chains.push(Chain {
            table: ti,
            name: name.to_string(),
            rules: Vec::new(),
        });
        let c = self.chains.len() - 1;
        self.tables[ti].chains.insert(name.to_string(), c);
        c
    }

    /// A chain's declaration: a base chain when it names a hook.
    fn base_chain(&mut self, ci: usize, decl: &str, line: u32) {
        let norm = declaration(decl);
        let words: Vec<&str> = norm.split_whitespace().collect();
        let after = |k: &str| {
            words
                .iter()
                .position(|w| *w == k)
                .and_then(|i| words.get(i + 1))
        };
        let Some(hook) = after("hook") else { return };
        let table = &self.tables[self.chains[ci].table].name;
        let family = table.split_whitespace().next().unwrap_or("");
        let shown = format!("{table} {}", self.chains[ci].name);
        if !matches!(family, "ip" | "inet") {
            if !matches!(family, "ip6" | "arp") {
                self.notes.push(format!(
                    "base chain {shown} (family {family}, line {line}) is not traced"
                ));
            }
            return;
        }
        let Some(hook) = Hook::from_name(hook) else {
            self.notes.push(format!(
                "base chain {shown} (hook {hook}, line {line}) is not traced"
            ));
            return;
        };
        let kind = match after("type").copied() {
            Some("nat") => Kind::Nat,
            _ => Kind::Filter,
        };
        let priority = after("priority").and_then(|p| p.parse().ok());
        self.bases.push(Base {
            chain: ci,
            hook,
            kind,
            priority,
            policy_drop: after("policy").is_some_and(|p| *p == "drop"),
            decl: decl.to_string(),
            line,
        });
    }

    /// Each hook's base chains in the kernel's order, and a note where two tie.
    fn sort_hooks(&mut self) {
        for (bi, b) in self.bases.iter().enumerate() {
            self.order[hook_index(b.hook)].push(bi);
        }
        for h in 0..HOOKS {
            let bases = &self.bases;
            let key = |&i: &usize| {
                let b = &bases[i];
                (b.runs_at(), b.kind == Kind::Nat, b.priority, b.line)
            };
            self.order[h].sort_by_key(key);
            for w in self.order[h].windows(2) {
                let (a, b) = (&bases[w[0]], &bases[w[1]]);
                if a.runs_at() == b.runs_at() && (a.kind == b.kind) && a.priority == b.priority {
                    self.hook_notes[h].push(format!(
                        "{} and {} both run at {} priority {}: the dump's order kept (the kernel's is the order they were added in)",
                        self.chains[a.chain].name,
                        self.chains[b.chain].name,
                        a.hook.name(),
                        a.runs_at()
                    ));
                }
            }
            for &i in &self.order[h] {
                let b = &bases[i];
                if b.kind == Kind::Nat && b.priority.is_some_and(|p| p != b.runs_at()) {
                    self.hook_notes[h].push(format!(
                        "nat chain {} (priority {}) runs at the kernel's NAT hook, priority {}",
                        self.chains[b.chain].name,
                        b.priority.unwrap_or_default(),
                        b.runs_at()
                    ));
                }
            }
        }
    }

    fn trace(&self, p: &Packet) -> Trace {
        let start = Run {
            hook: match p.from {
                Origin::Pod => Hook::Prerouting,
                Origin::Host => Hook::Output,
            },
            lo: false,
            base: 0,
            stack: Vec::new(),
            saddr: u32::from(p.src),
            daddr: u32::from(p.dst),
            dport: p.dport,
            mark: 0,
            dnat: None,
            nat_done: false,
            masq: false,
            path: Vec::new(),
            notes: self.notes.clone(),
            fork: 0,
            steps: 0,
        };
        let mut start = start;
        start
            .notes
            .extend(self.hook_notes[hook_index(start.hook)].iter().cloned());
        let mut work = vec![Work::Run(start)];
        let mut done = Vec::new();
        while let Some(w) = work.pop() {
            done.push(match w {
                Work::Run(r) => self.walk(p, r, &mut work),
                Work::Done(b) => b,
            });
        }
        merge(done)
    }

    /// One branch to its end; branches it forks go to `work`.
    fn walk(&self, p: &Packet, mut run: Run, work: &mut Vec<Work>) -> Branch {
        loop {
            run.steps += 1;
            if run.steps > STEP_LIMIT {
                return run.end(
                    Verdict::Unknown,
                    Some("the trace does not end (a loop?)".into()),
                );
            }
            let Some(&(c, i)) = run.stack.last() else {
                if let Some(b) = self.between_chains(p, &mut run) {
                    return b;
                }
                continue;
            };
            let chain = &self.chains[c];
            let Some(rule) = chain.rules.get(i) else {
                run.stack.pop();
                if let Some(b) = self.chain_end(&mut run) {
                    return b;
                }
                continue;
            };
            if let Some(top) = run.stack.last_mut() {
                top.1 += 1;
            }
            let action = match self.eval(p, &mut run, chain.table, rule) {
                Eval::NoMatch => continue,
                Eval::Unknown(why) => {
                    run.path.push(self.step(&run, c, rule));
                    let why = format!("line {}: {why}", rule.line);
                    return run.end(Verdict::Unknown, Some(why));
                }
                Eval::Matched(a) => a,
            };
            run.path.push(self.step(&run, c, rule));
            let jumps = match action {
                Action::None => continue,
                Action::Nat => {
                    // dnat and masquerade accept: the base chain is done.
                    run.stack.clear();
                    run.base += 1;
                    continue;
                }
                Action::Jump(j) => vec![j],
                Action::Fork(js) => js,
            };
            let table = chain.table;
            for j in jumps.iter().skip(1).rev() {
                let mut r = run.clone();
                r.fork = r.path.len();
                work.push(match self.apply(&mut r, table, j) {
                    Some(b) => Work::Done(b),
                    None => Work::Run(r),
                });
            }
            if let Some(j) = jumps.first()
                && let Some(b) = self.apply(&mut run, table, j)
            {
                return b;
            }
        }
    }

    /// Between base chains: enter the hook's next one, or route to the next hook, or end.
    fn between_chains(&self, p: &Packet, run: &mut Run) -> Option<Branch> {
        let order = &self.order[hook_index(run.hook)];
        let Some(&bi) = order.get(run.base) else {
            if self.next_hook(p, run) {
                return None;
            }
            return Some(run.clone().end(Verdict::Accept, None));
        };
        let b = &self.bases[bi];
        if b.kind == Kind::Nat && (run.lo || run.nat_done) {
            run.base += 1;
            return None;
        }
        let chain = &self.chains[b.chain];
        run.path.push(Step {
            hook: run.hook,
            table: self.tables[chain.table].name.clone(),
            chain: chain.name.clone(),
            rule: b.decl.clone(),
            line: b.line,
        });
        if b.priority.is_none() {
            let why = format!(
                "line {}: priority of base chain {} not read",
                b.line, chain.name
            );
            return Some(run.clone().end(Verdict::Unknown, Some(why)));
        }
        run.stack.push((b.chain, 0));
        None
    }

    /// The routing decision after a hook: the next hook, when there is one.
    fn next_hook(&self, p: &Packet, run: &mut Run) -> bool {
        let local = p.local(run.daddr.into());
        let next = match (p.from, run.hook) {
            (Origin::Pod, Hook::Prerouting) if local => Hook::Input,
            (Origin::Pod, Hook::Prerouting) => Hook::Forward,
            (Origin::Pod, Hook::Forward) => Hook::Postrouting,
            (Origin::Host, Hook::Output) => Hook::Postrouting,
            (Origin::Host, Hook::Postrouting) if local && !run.lo => {
                run.lo = true;
                run.notes.push(format!(
                    "{} is the node's: delivered over lo through prerouting and input (their nat chains skipped: NAT was settled at output)",
                    std::net::Ipv4Addr::from(run.daddr)
                ));
                Hook::Prerouting
            }
            (Origin::Host, Hook::Prerouting) => Hook::Input,
            _ => return false,
        };
        run.hook = next;
        run.base = 0;
        run.nat_done = false;
        run.notes
            .extend(self.hook_notes[hook_index(next)].iter().cloned());
        true
    }

    /// A chain ended (or returned) and was popped: a base chain's end applies its policy.
    fn chain_end(&self, run: &mut Run) -> Option<Branch> {
        if !run.stack.is_empty() {
            return None;
        }
        let bi = self.order[hook_index(run.hook)][run.base];
        let b = &self.bases[bi];
        if b.policy_drop {
            let why = format!(
                "base chain {} ends: its policy drops",
                self.chains[b.chain].name
            );
            return Some(run.clone().end(Verdict::Drop, Some(why)));
        }
        run.base += 1;
        None
    }

    /// A verdict taken: the branch's end, or `None` to go on.
    fn apply(&self, run: &mut Run, table: usize, j: &Target) -> Option<Branch> {
        match j {
            Target::Accept => {
                run.stack.clear();
                run.base += 1;
                None
            }
            Target::Drop => Some(run.clone().end(Verdict::Drop, None)),
            Target::Reject => Some(run.clone().end(Verdict::Reject, None)),
            Target::Continue => None,
            Target::Return => {
                run.stack.pop();
                self.chain_end(run)
            }
            Target::Jump(name) => {
                // A chain with no rules is not in the dump: it returns at once.
                if let Some(&c) = self.tables[table].chains.get(name) {
                    if run.stack.len() >= 64 {
                        let why = format!("jumps nest deeper than 64 at {name}");
                        return Some(run.clone().end(Verdict::Unknown, Some(why)));
                    }
                    run.stack.push((c, 0));
                }
                None
            }
            Target::Goto(name) => {
                run.stack.pop();
                match self.tables[table].chains.get(name) {
                    Some(&c) => {
                        run.stack.push((c, 0));
                        None
                    }
                    None => self.chain_end(run),
                }
            }
        }
    }

    fn step(&self, run: &Run, c: usize, rule: &Rule) -> Step {
        let chain = &self.chains[c];
        Step {
            hook: run.hook,
            table: self.tables[chain.table].name.clone(),
            chain: chain.name.clone(),
            rule: rule.text.clone(),
            line: rule.line,
        }
    }

    /// One rule against the packet as it stands (its statements change it as they run).
    fn eval(&self, p: &Packet, run: &mut Run, table: usize, rule: &Rule) -> Eval {
        for e in &rule.exprs {
            match e {
                Expr::Lookup { fields, neg, set } => {
                    let k = run.key(p, fields);
                    match self.lookup(table, set, &k) {
                        Ok(found) if found.is_some() != *neg => {}
                        Ok(_) => return Eval::NoMatch,
                        Err(why) => return Eval::Unknown(why),
                    }
                }
                Expr::Mark { mask, neg, value } => {
                    if ((run.mark & mask) == *value) == *neg {
                        return Eval::NoMatch;
                    }
                }
                Expr::FibLocal { daddr, neg } => {
                    let ip = if *daddr { run.daddr } else { run.saddr };
                    if p.local(ip.into()) == *neg {
                        return Eval::NoMatch;
                    }
                }
                Expr::CtState { neg, states } => {
                    if states.iter().any(|s| s == "new") == *neg {
                        return Eval::NoMatch;
                    }
                }
                Expr::Iface { out, neg, name } => {
                    if name != "lo" {
                        let which = if *out { "oifname" } else { "iifname" };
                        return Eval::Unknown(format!(
                            "{which} \"{name}\" at {}: interfaces other than lo are not known",
                            run.hook.name()
                        ));
                    }
                    if run.iface_is_lo(p, *out) == *neg {
                        return Eval::NoMatch;
                    }
                }
                Expr::Vmap { fields, map } => {
                    let k = run.key(p, fields);
                    return match self.lookup(table, map, &k) {
                        Ok(Some((Some(j), line))) => {
                            if let (Target::Drop | Target::Accept, SetRef::Named(name), Some(l)) =
                                (j, map, line)
                            {
                                run.notes.push(format!(
                                    "line {}: @{name} maps the packet to {} (its element at line {l})",
                                    rule.line,
                                    if *j == Target::Drop { "drop" } else { "accept" }
                                ));
                            }
                            Eval::Matched(Action::Jump(j.clone()))
                        }
                        Ok(Some((None, _))) => {
                            Eval::Unknown("a map element without a verdict".into())
                        }
                        Ok(None) => Eval::NoMatch,
                        Err(why) => Eval::Unknown(why),
                    };
                }
                Expr::Numgen(js) => return Eval::Matched(Action::Fork(js.clone())),
                Expr::MarkSet(op) => {
                    run.mark = match *op {
                        MarkOp::Set(v) => v,
                        MarkOp::Or(v) => run.mark | v,
                        MarkOp::Xor(v) => run.mark ^ v,
                        MarkOp::And(v) => run.mark & v,
                    }
                }
                Expr::Dnat { ip, port } => {
                    run.daddr = *ip;
                    run.dport = port.unwrap_or(run.dport);
                    run.dnat = Some((run.daddr, run.dport));
                    run.nat_done = true;
                    return Eval::Matched(Action::Nat);
                }
                Expr::Masquerade => {
                    run.masq = true;
                    run.nat_done = true;
                    return Eval::Matched(Action::Nat);
                }
                Expr::Verdict(j) => return Eval::Matched(Action::Jump(j.clone())),
                Expr::Nop => {}
                Expr::Unknown(s) => return Eval::Unknown(format!("cannot evaluate '{s}'")),
            }
        }
        Eval::Matched(Action::None)
    }

    /// The element `k` finds in a set or map: `Ok(None)` when none; `Err` when the set is not
    /// there or holds an element that could not be read (it might be the one).
    fn lookup<'s>(&'s self, table: usize, set: &'s SetRef, k: &[u64]) -> Result<Found<'s>, String> {
        match set {
            SetRef::Anon(elements) => Ok(elements
                .iter()
                .find(|(key, _)| matches(key, k))
                .map(|(_, v)| (v, None))),
            SetRef::Named(name) => {
                let t = &self.tables[table];
                let Some(s) = t.sets.get(name) else {
                    return Err(format!("no set or map @{name} in table {}", t.name));
                };
                match (s.find(k), &s.unread) {
                    (Some(i), _) => Ok(Some((&s.elements[i].1, Some(s.lines[i])))),
                    (None, Some((line, text))) => Err(format!(
                        "@{name} holds an element not read (line {line}: '{text}')"
                    )),
                    (None, None) => Ok(None),
                }
            }
        }
    }
}

/// A branch still to walk, or one that ended as soon as it forked.
enum Work {
    Run(Run),
    Done(Branch),
}

/// An element found: its verdict (in a map) and, in a named set, its line.
type Found<'s> = Option<(&'s Option<Target>, Option<u32>)>;

/// What a rule does when it matches.
enum Action {
    None,
    Nat,
    Jump(Target),
    Fork(Vec<Target>),
}

enum Eval {
    NoMatch,
    Matched(Action),
    Unknown(String),
}

/// One branch of the packet's way, as it goes.
#[derive(Clone)]
struct Run {
    hook: Hook,
    /// Delivered over `lo` (a local packet addressed to the node).
    lo: bool,
    /// Position in the hook's base chains.
    base: usize,
    /// (chain, next rule) frames; empty between base chains.
    stack: Vec<(usize, usize)>,
    saddr: u32,
    daddr: u32,
    dport: u16,
    mark: u32,
    dnat: Option<(u32, u16)>,
    /// NAT done at this hook: its other nat chains are skipped.
    nat_done: bool,
    masq: bool,
    path: Vec<Step>,
    notes: Vec<String>,
    /// Where this branch parted from the one it was forked from (index into `path`).
    fork: usize,
    steps: usize,
}

impl Run {
    fn key(&self, p: &Packet, fields: &[Field]) -> Vec<u64> {
        fields
            .iter()
            .map(|f| match f {
                Field::Saddr => self.saddr as u64,
                Field::Daddr => self.daddr as u64,
                Field::L4proto => match p.proto {
                    super::Proto::Tcp => 6,
                    super::Proto::Udp => 17,
                    super::Proto::Sctp => 132,
                },
                Field::Dport => self.dport as u64,
                Field::Sport => p.sport as u64,
            })
            .collect()
    }

    /// Whether the input (or output) interface is `lo`. A packet has an input interface only
    /// in prerouting, input and forward (`lo` when delivered over it); elsewhere its name is
    /// empty. It leaves on `lo` (output, postrouting) exactly when it is addressed to the node.
    /// As the kernel does (checked with counters in a network namespace).
    fn iface_is_lo(&self, p: &Packet, out: bool) -> bool {
        match (out, self.hook) {
            (false, Hook::Prerouting | Hook::Input) => self.lo,
            (true, Hook::Output | Hook::Postrouting) => p.local(self.daddr.into()),
            _ => false,
        }
    }

    fn end(self, verdict: Verdict, why: Option<String>) -> Branch {
        let mut notes = self.notes;
        notes.extend(why);
        let verdict = match (verdict, self.dnat) {
            (Verdict::Accept, Some(_)) => Verdict::Dnat,
            (v, _) => v,
        };
        Branch {
            verdict,
            endpoint: self.dnat,
            masq: self.masq,
            path: self.path,
            notes,
            fork: self.fork,
        }
    }
}

/// How one branch ended.
struct Branch {
    verdict: Verdict,
    endpoint: Option<(u32, u16)>,
    masq: bool,
    path: Vec<Step>,
    notes: Vec<String>,
    fork: usize,
}

/// The branches as one trace (see the module's doc for how they are decided).
fn merge(branches: Vec<Branch>) -> Trace {
    let has = |v: Verdict| branches.iter().any(|b| b.verdict == v);
    let verdict = [
        Verdict::Unknown,
        Verdict::Dnat,
        Verdict::Accept,
        Verdict::Reject,
        Verdict::Drop,
    ]
    .into_iter()
    .find(|v| has(*v))
    .unwrap_or(Verdict::Accept);
    let mut endpoints: Vec<String> = branches
        .iter()
        .filter(|b| b.verdict == Verdict::Dnat && verdict == Verdict::Dnat)
        .filter_map(|b| b.endpoint)
        .map(|(ip, port)| format!("{}:{port}", std::net::Ipv4Addr::from(ip)))
        .collect();
    endpoints.sort_by_key(|e| {
        let (ip, port) = e.rsplit_once(':').unwrap_or((e, "0"));
        (
            ip.parse::<std::net::Ipv4Addr>().ok(),
            port.parse::<u16>().unwrap_or(0),
        )
    });
    endpoints.dedup();
    let mut path = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for (n, b) in branches.iter().enumerate() {
        let from = if n == 0 { 0 } else { b.fork.min(b.path.len()) };
        path.extend(b.path[from..].iter().cloned());
        for note in &b.notes {
            if !notes.contains(note) {
                notes.push(note.clone());
            }
        }
        if b.verdict != verdict {
            let at = b.path.last().map_or(String::new(), |s| {
                format!(" at {} line {}", s.chain, s.line)
            });
            notes.push(format!(
                "branch {} of {} ends in {}{at}, not {}",
                n + 1,
                branches.len(),
                b.verdict.name(),
                verdict.name()
            ));
        }
    }
    Trace {
        verdict,
        endpoints,
        masquerade: branches.iter().any(|b| b.masq),
        path,
        notes,
    }
}
