//! The walk: one packet through the compiled dump, hook by hook, base chain by base chain,
//! rule by rule, every branch of a `numgen` map to its own end (see the parent module's doc).

use super::expr::{Expr, Field, MarkOp, SetRef, Target};
use super::{Compiled, Kind, Rule, STEP_LIMIT, hook_index, matches};
use crate::rules::trace::{Brief, Hook, Origin, Packet, Proto, Step, Trace, Verdict};

impl Compiled {
    pub(super) fn trace(&self, p: &Packet) -> Trace {
        merge(self.branches(p, true))
    }

    /// The verdict, endpoints and masquerade [`Compiled::trace`] gives, without its path or
    /// notes.
    pub(super) fn brief(&self, p: &Packet) -> Brief {
        let (verdict, endpoints, masquerade) = decide(&self.branches(p, false));
        Brief {
            verdict,
            endpoints: endpoints.len(),
            masquerade,
        }
    }

    /// Every branch of one packet's way to its end (`record`: with paths and notes).
    fn branches(&self, p: &Packet, record: bool) -> Vec<Branch> {
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
            record,
            path: Vec::new(),
            notes: Vec::new(),
            fork: 0,
            steps: 0,
        };
        let mut start = start;
        if record {
            start.notes = self.notes.clone();
            start
                .notes
                .extend(self.hook_notes[hook_index(start.hook)].iter().cloned());
        }
        let mut work = vec![Work::Run(start)];
        let mut done = Vec::new();
        while let Some(w) = work.pop() {
            done.push(match w {
                Work::Run(r) => self.walk(p, r, &mut work),
                Work::Done(b) => b,
            });
        }
        done
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
                    self.step(&mut run, c, rule);
                    let why = format!("line {}: {why}", rule.line);
                    return run.end(Verdict::Unknown, Some(why));
                }
                Eval::Matched(a) => a,
            };
            self.step(&mut run, c, rule);
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
        if run.record {
            run.path.push(Step {
                hook: run.hook,
                table: self.tables[chain.table].name.clone(),
                chain: chain.name.clone(),
                rule: b.decl.clone(),
                line: b.line,
            });
        }
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
                if run.record {
                    run.notes.push(format!(
                        "{} is the node's: delivered over lo through prerouting and input (their nat chains skipped: NAT was settled at output)",
                        std::net::Ipv4Addr::from(run.daddr)
                    ));
                }
                Hook::Prerouting
            }
            (Origin::Host, Hook::Prerouting) => Hook::Input,
            _ => return false,
        };
        run.hook = next;
        run.base = 0;
        run.nat_done = false;
        if run.record {
            run.notes
                .extend(self.hook_notes[hook_index(next)].iter().cloned());
        }
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

    /// A rule that matched, on the branch's path (when recording).
    fn step(&self, run: &mut Run, c: usize, rule: &Rule) {
        if !run.record {
            return;
        }
        let chain = &self.chains[c];
        run.path.push(Step {
            hook: run.hook,
            table: self.tables[chain.table].name.clone(),
            chain: chain.name.clone(),
            rule: rule.text.clone(),
            line: rule.line,
        });
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
                                && run.record
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
    /// Whether the path and notes are kept (a full trace), or only what decides the verdict.
    record: bool,
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
                    Proto::Tcp => 6,
                    Proto::Udp => 17,
                    Proto::Sctp => 132,
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
        notes.extend(why.filter(|_| self.record));
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

/// What the branches decide together (see the module's doc): the verdict, the endpoints of
/// the branches that DNAT when that is the verdict (sorted, each once), and whether any
/// masquerades.
fn decide(branches: &[Branch]) -> (Verdict, Vec<(u32, u16)>, bool) {
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
    let mut endpoints: Vec<(u32, u16)> = branches
        .iter()
        .filter(|b| b.verdict == Verdict::Dnat && verdict == Verdict::Dnat)
        .filter_map(|b| b.endpoint)
        .collect();
    endpoints.sort();
    endpoints.dedup();
    (verdict, endpoints, branches.iter().any(|b| b.masq))
}

/// The branches as one trace (see the module's doc for how they are decided).
fn merge(branches: Vec<Branch>) -> Trace {
    let (verdict, endpoints, masquerade) = decide(&branches);
    let endpoints: Vec<String> = endpoints
        .iter()
        .map(|(ip, port)| format!("{}:{port}", std::net::Ipv4Addr::from(*ip)))
        .collect();
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
        masquerade,
        path,
        notes,
    }
}
