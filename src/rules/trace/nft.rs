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
mod walk;

use rustc_hash::FxHashMap as HashMap;

use super::{Brief, Hook, Packet, Trace};
use crate::rules::nft::{NftDump, declaration};
use expr::{Atom, Expr, Key, Target};

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

    /// What decides whether two traces agree (the verdict, endpoints and masquerade of
    /// [`Tracer::trace`]), without recording the path or the notes.
    pub fn brief(&self, p: &Packet) -> Brief {
        self.compiled.brief(p)
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
}
