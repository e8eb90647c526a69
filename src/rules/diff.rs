//! Comparing the rules of base and PR, per service and per chain role.

use std::collections::BTreeMap;

use std::sync::Arc;

use serde::Serialize;
use similar::{Algorithm, ChangeTag, TextDiff};

use super::normalize::{NormRule, Raw, normalize, normalize_sharing};
use super::parse::{Dump, ParseError, Table};
use super::service::{SHARED, ServiceFilter, ServiceKey, ServiceRules, services, shared_rules};

/// How to compare.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Compare the rules as written: no normalization at all.
    pub raw: bool,
    /// Only this service (all ports, or one). Shared chains are compared all the same.
    pub service: Option<ServiceFilter>,
    /// Leave kube-proxy's shared chains out.
    pub no_shared: bool,
    /// nftables: read every table of a `nft list ruleset`, not only kube-proxy's.
    pub all_tables: bool,
    /// nftables: the LoadBalancer IPs each side's cluster reports (base, PR), when known: the
    /// other IPs its maps send to external chains are then written `<external-ip>`.
    pub lb_ips: (Vec<String>, Vec<String>),
    /// An equal service keeps only its rule count, not its chains and lines (freed as soon as
    /// it is compared): for output that lists no equal service's rules.
    pub summarize_equal: bool,
}

/// What kind of line of a chain diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Equal,
    Removed,
    Added,
}

pub use super::normalize::RuleText;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub op: Op,
    /// The base side's rule (equal and removed lines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<Arc<RuleText>>,
    /// The PR side's rule (equal and added lines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pr: Option<Arc<RuleText>>,
}

impl Line {
    /// The compared text (both sides have the same one on equal lines).
    pub fn rule(&self) -> &str {
        self.base
            .as_ref()
            .or(self.pr.as_ref())
            .map_or("", |r| r.rule())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainDiff {
    pub table: Table,
    /// The chain's role, the same on both sides (e.g. `KUBE-XLB-<hash>`, `KUBE-NODEPORTS`).
    pub chain: Arc<str>,
    pub base_chain: Option<Raw>,
    pub pr_chain: Option<Raw>,
    pub equal: bool,
    pub lines: Vec<Line>,
}

impl ChainDiff {
    /// The chain's real names: one when both sides use the same, else both.
    pub fn names(&self) -> String {
        match (&self.base_chain, &self.pr_chain) {
            (Some(b), Some(p)) if b == p => b.to_string(),
            (Some(b), Some(p)) => format!("base {b}, PR {p}"),
            (Some(b), None) => format!("base {b}, not in PR"),
            (None, Some(p)) => format!("not in base, PR {p}"),
            (None, None) => String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceDiff {
    /// The service as kube-proxy writes it (base's spelling), e.g. "default/echo:".
    pub service: String,
    pub equal: bool,
    pub in_base: bool,
    pub in_pr: bool,
    /// How many rules were compared (a rule on both sides counts once).
    pub rules: usize,
    pub added: Vec<Arc<RuleText>>,
    pub removed: Vec<Arc<RuleText>>,
    pub chains: Vec<ChainDiff>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comparison {
    pub equal: bool,
    pub normalized: bool,
    pub services: Vec<ServiceDiff>,
    /// kube-proxy's chains that no Service owns (base chains, shared dispatch chains), compared
    /// as one group; `None` when left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared: Option<ServiceDiff>,
    /// What was not compared but is worth saying (e.g. a rule in a built-in chain that is not
    /// kube-proxy's, on one side only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The dumps' modes, when base and PR are in different ones (iptables vs nftables): each
    /// Service is then compared as it is, and the two are never equal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modes: Option<super::mixed::Modes>,
    /// nftables: the tables only one dump lists, where the other is a single-table listing
    /// (`nft list table ip kube-proxy` against `nft list ruleset`): not compared, named in a
    /// note. Empty when every table is compared.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub one_sided_tables: Vec<OneSidedTable>,
}

/// Which dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ListedBy {
    Base,
    Pr,
}

impl ListedBy {
    pub fn label(self) -> &'static str {
        match self {
            ListedBy::Base => "base",
            ListedBy::Pr => "PR",
        }
    }
}

/// A table one dump lists and the other, listing one table only, does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OneSidedTable {
    /// "ip6 kube-proxy".
    pub table: String,
    /// The dump that lists it.
    pub listed_by: ListedBy,
}

impl Comparison {
    /// The note on tables only one dump listed (not compared), one line; `None` when there are
    /// none.
    pub fn tables_note(&self) -> Option<String> {
        if self.one_sided_tables.is_empty() {
            return None;
        }
        let mut parts: Vec<String> = Vec::new();
        for side in [ListedBy::Base, ListedBy::Pr] {
            let names: Vec<&str> = self
                .one_sided_tables
                .iter()
                .filter(|t| t.listed_by == side)
                .map(|t| t.table.as_str())
                .collect();
            if !names.is_empty() {
                let other = if side == ListedBy::Base {
                    ListedBy::Pr
                } else {
                    ListedBy::Base
                };
                parts.push(format!(
                    "table{} {} listed only by {} ({} lists one table): not compared",
                    if names.len() == 1 { "" } else { "s" },
                    names.join(", "),
                    side.label(),
                    other.label()
                ));
            }
        }
        Some(format!("note: {}", parts.join("; ")))
    }

    pub fn changed(&self) -> impl Iterator<Item = &ServiceDiff> {
        self.services.iter().filter(|s| !s.equal)
    }
    /// The services, then the shared group.
    pub fn groups(&self) -> impl Iterator<Item = &ServiceDiff> {
        self.services.iter().chain(self.shared.as_ref())
    }
}

/// Compare two parsed dumps.
pub fn compare(base: &Dump, pr: &Dump, opts: &Options) -> Comparison {
    // Each side's grouping, and its shared rules, on a thread of its own.
    let side = |d: &Dump| {
        let shared = (!opts.no_shared).then(|| {
            let rules = shared_rules(d);
            let mut n = normalize(d, &rules, SHARED, opts.raw);
            if opts.raw {
                n.splice(0..0, declarations(d));
            }
            (n, foreign_rules(d))
        });
        (services(d, opts.service.as_ref()), shared)
    };
    let ((bs, bshared), (ps, pshared)) = std::thread::scope(|sc| {
        let b = sc.spawn(|| side(base));
        let p = side(pr);
        (b.join().expect("service analysis thread"), p)
    });
    let mut c = compare_services(base, &bs, pr, &ps, opts);
    if let (Some((nb, fb)), Some((np, fp))) = (bshared, pshared) {
        set_shared(&mut c, diff_shared(&nb, &np));
        c.notes.extend(foreign_notes(&fb, &fp));
    }
    c
}

/// The rules of a dump's built-in chains that are not kube-proxy's, each as `-A CHAIN ...` in
/// canonical spelling, with its line.
fn foreign_rules(d: &Dump) -> Vec<(String, u32)> {
    super::service::foreign(d)
        .into_iter()
        .map(|i| {
            let r = &d.rules[i];
            let words = super::tokens::split(d.rule_body(r));
            let body = super::tokens::canonical(&words, &mut |_, _| None);
            (format!("-A {} {body}", d.rule_chain(r)), r.line)
        })
        .collect()
}

/// An iptables dump's chain declarations (`:CHAIN POLICY`), compared with `--raw` (a built-in
/// chain's policy, a chain declared with no rule): each an item of its chain, written
/// `:CHAIN POLICY` (`-` for a chain of the user's) without its counters.
fn declarations(d: &Dump) -> Vec<NormRule> {
    let source = Raw::handle(&d.text);
    // A fragment without `*table` lines: a chain is in its rules' table.
    let mut tables: rustc_hash::FxHashMap<&str, Table> = Default::default();
    if d.chains.iter().any(|c| c.table.is_none()) {
        for r in &d.rules {
            tables
                .entry(d.rule_chain(r))
                .or_insert_with(|| super::service::rule_table(d, r));
        }
    }
    d.chains
        .iter()
        .map(|c| {
            let name = d.str(&c.name);
            let policy = c.policy.as_ref().map_or("-", |p| d.str(p));
            let table = c
                .table
                .or_else(|| tables.get(name).copied())
                .unwrap_or(Table::Filter);
            NormRule {
                role: Arc::from(name),
                rule: Arc::new(RuleText {
                    text: None,
                    raw: Raw::owned(&format!(":{name} {policy}")),
                    line: c.line,
                    chain: Raw::within(&source, name),
                    table,
                }),
            }
        })
        .collect()
}

/// Notes on the rules of built-in chains that are not kube-proxy's and that one side has more
/// often than the other: not compared (they are not kube-proxy's), but not silently dropped.
fn foreign_notes(base: &[(String, u32)], pr: &[(String, u32)]) -> Vec<String> {
    const SHOWN: usize = 5;
    let mut notes = Vec::new();
    for (side, mine, theirs) in [("base", base, pr), ("PR", pr, base)] {
        let mut left: Vec<&str> = theirs.iter().map(|r| r.0.as_str()).collect();
        let only: Vec<&(String, u32)> = mine
            .iter()
            .filter(|r| match left.iter().position(|t| *t == r.0) {
                Some(k) => {
                    left.swap_remove(k);
                    false
                }
                None => true,
            })
            .collect();
        for (rule, line) in only.iter().take(SHOWN) {
            notes.push(format!(
                "not kube-proxy's, not compared: {side} only (line {line}): {rule}"
            ));
        }
        if only.len() > SHOWN {
            notes.push(format!(
                "not kube-proxy's, not compared: {} more rules in {side}'s built-in chains only",
                only.len() - SHOWN
            ));
        }
    }
    notes
}

/// The shared group's diff (present on both sides when either has shared rules).
fn diff_shared(base: &[NormRule], pr: &[NormRule]) -> Option<ServiceDiff> {
    if base.is_empty() && pr.is_empty() {
        return None;
    }
    Some(diff_service(SHARED.to_string(), true, true, base, pr))
}

pub(super) fn set_shared(c: &mut Comparison, shared: Option<ServiceDiff>) {
    c.equal &= shared.as_ref().is_none_or(|s| s.equal);
    c.shared = shared;
}

/// Which side a parse error is in.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("base: {0}")]
    Base(ParseError),
    #[error("PR: {0}")]
    Pr(ParseError),
}

/// The parsed dumps behind a comparison: dropping them frees them (a short-lived command may
/// rather leave that to its exit).
pub struct Parsed {
    _iptables: Option<(Dump, Dump)>,
    _nft: Option<(super::nft::NftDump, super::nft::NftDump)>,
    _mixed: Option<(super::mixed::OneDump, super::mixed::OneDump)>,
}

impl Parsed {
    /// The two dumps (base, PR), borrowed: what a packet summary traces through.
    pub fn dumps(&self) -> Option<(super::packets::DumpRef<'_>, super::packets::DumpRef<'_>)> {
        use super::mixed::OneDump;
        use super::packets::DumpRef;
        fn one(d: &OneDump) -> DumpRef<'_> {
            match d {
                OneDump::Iptables(d) => DumpRef::Iptables(d),
                OneDump::Nftables(d) => DumpRef::Nftables(d),
            }
        }
        match (&self._iptables, &self._nft, &self._mixed) {
            (Some((b, p)), _, _) => Some((DumpRef::Iptables(b), DumpRef::Iptables(p))),
            (_, Some((b, p)), _) => Some((DumpRef::Nftables(b), DumpRef::Nftables(p))),
            (_, _, Some((b, p))) => Some((one(b), one(p))),
            _ => None,
        }
    }

    /// Whether each side (base, PR) holds any kube-proxy rule at all: a KUBE-* chain in
    /// iptables, an item of kube-proxy's table in nftables. An empty dump, or a node before
    /// kube-proxy started, holds none.
    pub fn has_kube_proxy_rules(&self) -> (bool, bool) {
        let ipt = |d: &Dump| {
            d.rules.iter().any(|r| {
                d.rule_chain(r).starts_with("KUBE-")
                    || super::tokens::jump_target(d.rule_body(r))
                        .is_some_and(|t| t.starts_with("KUBE-"))
            })
        };
        let nft = |d: &super::nft::NftDump| {
            d.items.iter().filter(|i| i.is_content()).any(|i| {
                i.table.is_none()
                    || i.table
                        .as_deref()
                        .is_some_and(|t| t.ends_with("kube-proxy"))
            })
        };
        let one = |d: &super::mixed::OneDump| match d {
            super::mixed::OneDump::Iptables(d) => ipt(d),
            super::mixed::OneDump::Nftables(d) => nft(d),
        };
        match (&self._iptables, &self._nft, &self._mixed) {
            (Some((b, p)), _, _) => (ipt(b), ipt(p)),
            (_, Some((b, p)), _) => (nft(b), nft(p)),
            (_, _, Some((b, p))) => (one(b), one(p)),
            _ => (false, false),
        }
    }
}

/// Parse two dumps (iptables or nftables, detected) and compare them.
pub fn compare_texts(base: &str, pr: &str, opts: &Options) -> Result<Comparison, TextError> {
    compare_texts_keep(base.to_string(), pr.to_string(), opts).map(|(c, _)| c)
}

/// [`compare_texts`], also handing back the parsed dumps.
/// The texts are taken, not copied: an iptables dump keeps its text, and the rules compared
/// share it.
pub fn compare_texts_keep(
    base: String,
    pr: String,
    opts: &Options,
) -> Result<(Comparison, Parsed), TextError> {
    let parsed = parse_texts(base, pr, opts)?;
    Ok((parsed.compare(opts), parsed))
}

/// Parse two dumps, each in the mode its text is written (both at once when they are of one
/// mode).
pub fn parse_texts(base: String, pr: String, opts: &Options) -> Result<Parsed, TextError> {
    let (bn, pn) = (
        super::nft::looks_like_nft(&base),
        super::nft::looks_like_nft(&pr),
    );
    match (bn, pn) {
        (false, false) => {
            let (b, p) = std::thread::scope(|sc| {
                let h = sc.spawn(|| super::parse::parse(base));
                let p = super::parse::parse(pr);
                (h.join().expect("parser thread"), p)
            });
            let (b, p) = (b.map_err(TextError::Base)?, p.map_err(TextError::Pr)?);
            Ok(Parsed {
                _iptables: Some((b, p)),
                _nft: None,
                _mixed: None,
            })
        }
        (true, true) => {
            let (b, p) = std::thread::scope(|sc| {
                let h = sc.spawn(|| super::nft::parse_tables(base, opts.all_tables));
                let p = super::nft::parse_tables(pr, opts.all_tables);
                (h.join().expect("parser thread"), p)
            });
            let (b, p) = (b.map_err(TextError::Base)?, p.map_err(TextError::Pr)?);
            Ok(Parsed {
                _iptables: None,
                _nft: Some((b, p)),
                _mixed: None,
            })
        }
        // Different modes: each Service as it is (see `mixed`).
        (bn, _) => {
            use super::mixed::OneDump;
            let one = |text: String, nft: bool| {
                if nft {
                    super::nft::parse_tables(text, opts.all_tables).map(OneDump::Nftables)
                } else {
                    super::parse::parse(text).map(OneDump::Iptables)
                }
            };
            let b = one(base, bn).map_err(TextError::Base)?;
            let p = one(pr, !bn).map_err(TextError::Pr)?;
            Ok(Parsed {
                _iptables: None,
                _nft: None,
                _mixed: Some((b, p)),
            })
        }
    }
}

impl Parsed {
    /// Compare the two dumps parsed (by mode: iptables, nftables, or each Service as it is).
    pub fn compare(&self, opts: &Options) -> Comparison {
        match (&self._iptables, &self._nft, &self._mixed) {
            (Some((b, p)), _, _) => compare(b, p, opts),
            (_, Some((b, p)), _) => compare_nft(b, p, opts),
            (_, _, Some((b, p))) => super::mixed::compare_mixed(b, p, opts),
            _ => unreachable!("a Parsed holds one pair of dumps"),
        }
    }
}

/// The tables only one dump lists, when the other lists exactly one table (a single-table
/// listing) that the first lists too: only the tables both list are compared. Of the tables
/// compared at all (kube-proxy's, or every one with `all_tables`). Empty otherwise: two
/// whole-ruleset listings compare every table.
pub fn one_sided_tables(
    base: &super::nft::NftDump,
    pr: &super::nft::NftDump,
    all_tables: bool,
) -> Vec<OneSidedTable> {
    let (b, p) = (&base.tables, &pr.tables);
    let single = b.len() == 1 || p.len() == 1;
    if !single || !b.iter().any(|t| p.contains(t)) {
        return Vec::new();
    }
    let read = |t: &str| {
        all_tables
            || t.split_once(' ')
                .is_some_and(|(f, n)| super::nft::is_kube_proxy(f, n))
    };
    let only = |mine: &[String], theirs: &[String], side: ListedBy| -> Vec<OneSidedTable> {
        mine.iter()
            .filter(|t| !theirs.contains(t) && read(t))
            .map(|t| OneSidedTable {
                table: t.clone(),
                listed_by: side,
            })
            .collect()
    };
    let mut out = only(b, p, ListedBy::Base);
    out.extend(only(p, b, ListedBy::Pr));
    out
}

/// `d` without the items of these tables.
fn without_tables(d: &super::nft::NftDump, drop: &[OneSidedTable]) -> super::nft::NftDump {
    let gone = |it: &super::nft::Item| {
        let t = it.table.as_deref().map_or("ip kube-proxy", |t| t.as_str());
        drop.iter().any(|x| x.table == t)
    };
    super::nft::NftDump {
        text: d.text.clone(),
        items: d.items.iter().filter(|it| !gone(it)).cloned().collect(),
        tables: d.tables.clone(),
    }
}

/// Compare two nftables dumps: the tables both list, when one is a single-table listing (see
/// [`one_sided_tables`]), else every table read.
pub fn compare_nft(
    base: &super::nft::NftDump,
    pr: &super::nft::NftDump,
    opts: &Options,
) -> Comparison {
    let one_sided = one_sided_tables(base, pr, opts.all_tables);
    if one_sided.is_empty() {
        return compare_nft_tables(base, pr, opts);
    }
    let (b, p) = (
        without_tables(base, &one_sided),
        without_tables(pr, &one_sided),
    );
    let mut c = compare_nft_tables(&b, &p, opts);
    c.one_sided_tables = one_sided;
    c
}

/// Compare every table read of two nftables dumps.
fn compare_nft_tables(
    base: &super::nft::NftDump,
    pr: &super::nft::NftDump,
    opts: &Options,
) -> Comparison {
    use super::nft;
    // The shared chains (each side learns from its whole table) on threads of their own while
    // the Services are compared; the PR side's Services are grouped on one too.
    let shared =
        |d, lb_ips| move || (!opts.no_shared).then(|| nft::normalize_shared(d, opts.raw, lb_ips));
    let (out, shared) = std::thread::scope(|sc| {
        let nb = sc.spawn(shared(base, &opts.lb_ips.0));
        let np = sc.spawn(shared(pr, &opts.lb_ips.1));
        let ps = sc.spawn(|| nft::services(pr, opts.service.as_ref()));
        let bs = nft::services(base, opts.service.as_ref());
        let ps = ps.join().expect("grouping thread");
        let out = nft_services(base, pr, bs, ps, opts);
        let joined = |h: std::thread::ScopedJoinHandle<_>| h.join().expect("shared chains thread");
        (out, (joined(nb), joined(np)))
    });
    let mut c = finish(out, opts);
    if let (Some(nb), Some(np)) = shared {
        set_shared(&mut c, diff_shared(&nb, &np));
    }
    c
}

/// Each Service of two nftables dumps compared (its grouping freed once compared).
fn nft_services(
    base: &super::nft::NftDump,
    pr: &super::nft::NftDump,
    bs: Vec<(super::service::ServiceKey, Vec<usize>)>,
    ps: Vec<(super::service::ServiceKey, Vec<usize>)>,
    opts: &Options,
) -> Vec<ServiceDiff> {
    use super::nft;
    merge_sorted(bs, ps)
        .map(|(k, b, p)| {
            let (b, p) = (b.as_deref(), p.as_deref());
            let nb = b
                .map(|i| nft::normalize(base, i, opts.raw, &opts.lb_ips.0))
                .unwrap_or_default();
            let known = super::normalize::known(&nb);
            let np = p
                .map(|i| nft::normalize_sharing(pr, i, opts.raw, &opts.lb_ips.1, &known))
                .unwrap_or_default();
            let d = diff_service(k.to_string(), b.is_some(), p.is_some(), &nb, &np);
            summarized(d, opts)
        })
        .collect()
}

/// Pair two lists sorted by key, consuming them: (key, base's, PR's), in key order.
fn merge_sorted<K: Ord, V>(
    base: Vec<(K, V)>,
    pr: Vec<(K, V)>,
) -> impl Iterator<Item = (K, Option<V>, Option<V>)> {
    let (mut b, mut p) = (base.into_iter().peekable(), pr.into_iter().peekable());
    std::iter::from_fn(move || {
        let order = match (b.peek(), p.peek()) {
            (None, None) => return None,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => x.0.cmp(&y.0),
        };
        Some(match order {
            std::cmp::Ordering::Less => b.next().map(|(k, v)| (k, Some(v), None))?,
            std::cmp::Ordering::Greater => p.next().map(|(k, v)| (k, None, Some(v)))?,
            std::cmp::Ordering::Equal => {
                let ((k, v), (_, w)) = (b.next()?, p.next()?);
                (k, Some(v), Some(w))
            }
        })
    })
}

/// Pair the two sides' services by key, in key order: (key, base's, PR's).
fn join<'a, K: Ord + 'a, V: 'a>(
    base: impl Iterator<Item = (&'a K, V)>,
    pr: impl Iterator<Item = (&'a K, V)>,
) -> Vec<(&'a K, Option<V>, Option<V>)> {
    let mut keys: BTreeMap<&K, (Option<V>, Option<V>)> = BTreeMap::new();
    for (k, v) in base {
        keys.entry(k).or_insert((None, None)).0 = Some(v);
    }
    for (k, v) in pr {
        keys.entry(k).or_insert((None, None)).1 = Some(v);
    }
    keys.into_iter().map(|(k, (b, p))| (k, b, p)).collect()
}

/// `d`, without its chains when it is equal and `opts` asks for a summary of equal services.
pub(super) fn summarized(mut d: ServiceDiff, opts: &Options) -> ServiceDiff {
    if opts.summarize_equal && d.equal {
        d.chains = Vec::new();
    }
    d
}

/// The comparison of these service diffs: changed services first, each group in name order.
pub(super) fn finish(mut out: Vec<ServiceDiff>, opts: &Options) -> Comparison {
    out.sort_by_key(|s| s.equal);
    Comparison {
        equal: out.iter().all(|s| s.equal),
        normalized: !opts.raw,
        services: out,
        shared: None,
        notes: Vec::new(),
        modes: None,
        one_sided_tables: Vec::new(),
    }
}

/// Compare already grouped services (see [`services`]).
pub fn compare_services(
    base: &Dump,
    bs: &[ServiceRules],
    pr: &Dump,
    ps: &[ServiceRules],
    opts: &Options,
) -> Comparison {
    let pairs = join(
        bs.iter().map(|s| (&s.key, s)),
        ps.iter().map(|s| (&s.key, s)),
    );
    let work = |(_, b, p): &(&ServiceKey, Option<&ServiceRules>, Option<&ServiceRules>)| {
        let display = b.or(*p).map(|s| s.written.clone()).unwrap_or_default();
        let nb = b
            .map(|s| normalize(base, s, &display, opts.raw))
            .unwrap_or_default();
        let known = super::normalize::known(&nb);
        let np = p
            .map(|s| normalize_sharing(pr, s, &display, opts.raw, &known))
            .unwrap_or_default();
        summarized(
            diff_service(display, b.is_some(), p.is_some(), &nb, &np),
            opts,
        )
    };
    let out: Vec<ServiceDiff> = if pairs.len() > 64 {
        let mid = pairs.len() / 2;
        let (l, r) = pairs.split_at(mid);
        std::thread::scope(|sc| {
            let h = sc.spawn(|| l.iter().map(work).collect::<Vec<_>>());
            let mut right: Vec<_> = r.iter().map(work).collect();
            let mut left = h.join().expect("diff thread");
            left.append(&mut right);
            left
        })
    } else {
        pairs.iter().map(work).collect()
    };
    finish(out, opts)
}

/// One chain's rules on both sides: (table, role), base's rules, PR's rules.
type Group<'a> = ((Table, &'a str), Vec<&'a NormRule>, Vec<&'a NormRule>);

/// Group a service's rules by (table, role), in order of first appearance (base first). A
/// service has a handful of chains: a linear search beats hashing.
fn group_chains<'a>(base: &'a [NormRule], pr: &'a [NormRule]) -> Vec<Group<'a>> {
    let mut groups: Vec<Group<'a>> = Vec::new();
    for (side, rules) in [(0, base), (1, pr)] {
        for r in rules {
            let k = (r.rule.table, &*r.role);
            let g = match groups.iter().position(|g| g.0 == k) {
                Some(i) => &mut groups[i],
                None => {
                    groups.push((k, Vec::new(), Vec::new()));
                    groups.last_mut().unwrap()
                }
            };
            if side == 0 { g.1.push(r) } else { g.2.push(r) }
        }
    }
    groups
}

/// Diff the normalized rules of one service.
pub fn diff_service(
    service: String,
    in_base: bool,
    in_pr: bool,
    base: &[NormRule],
    pr: &[NormRule],
) -> ServiceDiff {
    let groups = group_chains(base, pr);
    let mut chains = Vec::with_capacity(groups.len());
    let mut added = Vec::new();
    let mut removed = Vec::new();
    for (k, b, p) in &groups {
        let lines = diff_chain(b, p);
        for l in &lines {
            match l.op {
                Op::Equal => {}
                Op::Removed => removed.extend(l.base.clone()),
                Op::Added => added.extend(l.pr.clone()),
            }
        }
        chains.push(ChainDiff {
            table: k.0,
            chain: b
                .first()
                .or(p.first())
                .map_or_else(|| Arc::from(k.1), |r| r.role.clone()),
            base_chain: b.first().map(|r| r.rule.chain.clone()),
            pr_chain: p.first().map(|r| r.rule.chain.clone()),
            equal: lines.iter().all(|l| l.op == Op::Equal),
            lines,
        });
    }
    ServiceDiff {
        service,
        equal: added.is_empty() && removed.is_empty(),
        in_base,
        in_pr,
        rules: chains.iter().map(|c| c.lines.len()).sum(),
        added,
        removed,
        chains,
    }
}

/// The lines of one chain's diff (order inside a chain counts).
fn diff_chain(b: &[&NormRule], p: &[&NormRule]) -> Vec<Line> {
    let equal_line = |x: &NormRule, y: &NormRule| Line {
        op: Op::Equal,
        base: Some(x.rule.clone()),
        pr: Some(y.rule.clone()),
    };
    let equal_texts =
        b.len() == p.len() && b.iter().zip(p).all(|(x, y)| x.rule.rule() == y.rule.rule());
    if equal_texts {
        return b.iter().zip(p).map(|(x, y)| equal_line(x, y)).collect();
    }
    let bt: Vec<&str> = b.iter().map(|r| r.rule.rule()).collect();
    let pt: Vec<&str> = p.iter().map(|r| r.rule.rule()).collect();
    let mut lines = Vec::with_capacity(b.len().max(p.len()));
    for op in similar::capture_diff_slices(Algorithm::Myers, &bt, &pt) {
        for change in op.iter_changes(&bt, &pt) {
            lines.push(match change.tag() {
                ChangeTag::Equal => equal_line(
                    b[change.old_index().unwrap()],
                    p[change.new_index().unwrap()],
                ),
                ChangeTag::Delete => Line {
                    op: Op::Removed,
                    base: Some(b[change.old_index().unwrap()].rule.clone()),
                    pr: None,
                },
                ChangeTag::Insert => Line {
                    op: Op::Added,
                    base: None,
                    pr: Some(p[change.new_index().unwrap()].rule.clone()),
                },
            });
        }
    }
    lines
}

/// A piece of a chain's diff: an equal line, or a change (a run of removed lines and the run
/// of added lines right after it, paired line by line for word-level emphasis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hunk<'a> {
    Equal(&'a Line),
    Change {
        removed: &'a [Line],
        added: &'a [Line],
    },
}

/// The hunks of a chain's lines, in order: what every renderer (the Diff pane, the text output,
/// the reports) walks.
pub fn hunks(lines: &[Line]) -> impl Iterator<Item = Hunk<'_>> {
    let mut i = 0;
    std::iter::from_fn(move || {
        let l = lines.get(i)?;
        if l.op == Op::Equal {
            i += 1;
            return Some(Hunk::Equal(l));
        }
        let start = i;
        while i < lines.len() && lines[i].op == Op::Removed {
            i += 1;
        }
        let mid = i;
        while i < lines.len() && lines[i].op == Op::Added {
            i += 1;
        }
        Some(Hunk::Change {
            removed: &lines[start..mid],
            added: &lines[mid..i],
        })
    })
}

/// A changed line of a hunk with its partner on the other side (same position in the other
/// run), for word-level emphasis.
#[derive(Debug, Clone, Copy)]
pub struct Changed<'a> {
    pub line: &'a Line,
    pub partner: Option<&'a Line>,
}

impl<'a> Changed<'a> {
    /// The removed lines then the added ones, each with its partner.
    pub fn all(removed: &'a [Line], added: &'a [Line]) -> impl Iterator<Item = Changed<'a>> {
        let r = removed.iter().enumerate().map(move |(k, l)| Changed {
            line: l,
            partner: added.get(k),
        });
        let a = added.iter().enumerate().map(move |(k, l)| Changed {
            line: l,
            partner: removed.get(k),
        });
        r.chain(a)
    }

    /// This line's segments, the words that differ from its partner emphasized; `None` when it
    /// has no partner.
    pub fn segments(&self) -> Option<Vec<Segment>> {
        let p = self.partner?;
        Some(if self.line.op == Op::Added {
            word_diff(p.rule(), self.line.rule()).1
        } else {
            word_diff(self.line.rule(), p.rule()).0
        })
    }

    /// The line as written on its side, when normalization changed it.
    pub fn raw(&self) -> Option<&'a RuleText> {
        let r = if self.line.op == Op::Added {
            self.line.pr.as_deref()
        } else {
            self.line.base.as_deref()
        }?;
        (r.raw.as_str() != r.rule()).then_some(r)
    }
}

/// A piece of a rule for word-level emphasis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub text: String,
    /// Differs from the other side.
    pub emphasized: bool,
}

/// Word-level difference between a removed and an added rule: (old segments, new segments).
pub fn word_diff(old: &str, new: &str) -> (Vec<Segment>, Vec<Segment>) {
    let d = TextDiff::configure()
        .algorithm(Algorithm::Myers)
        .diff_words(old, new);
    let mut o: Vec<Segment> = Vec::new();
    let mut n: Vec<Segment> = Vec::new();
    let push = |v: &mut Vec<Segment>, t: &str, e: bool| match v.last_mut() {
        Some(last) if last.emphasized == e => last.text.push_str(t),
        _ => v.push(Segment {
            text: t.to_string(),
            emphasized: e,
        }),
    };
    for c in d.iter_all_changes() {
        let t = c.value();
        match c.tag() {
            ChangeTag::Equal => {
                push(&mut o, t, false);
                push(&mut n, t, false);
            }
            ChangeTag::Delete => push(&mut o, t, !t.trim().is_empty()),
            ChangeTag::Insert => push(&mut n, t, !t.trim().is_empty()),
        }
    }
    (o, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::parse::parse;
    use crate::rules::render;

    #[test]
    fn order_inside_a_chain_matters_interleaving_does_not() {
        let a = parse("*nat\n-A KUBE-SERVICES -m comment --comment \"a/x:\" -j KUBE-SVC-A\n-A KUBE-SERVICES -m comment --comment \"b/y:\" -j KUBE-SVC-B\n-A KUBE-SVC-A -m comment --comment \"a/x: one\" -j KUBE-MARK-MASQ\n-A KUBE-SVC-A -m comment --comment \"a/x: two\" -j KUBE-MARK-DROP\nCOMMIT\n").unwrap();
        let b = parse("*nat\n-A KUBE-SERVICES -m comment --comment \"b/y:\" -j KUBE-SVC-B\n-A KUBE-SERVICES -m comment --comment \"a/x:\" -j KUBE-SVC-A\n-A KUBE-SVC-A -m comment --comment \"a/x: one\" -j KUBE-MARK-MASQ\n-A KUBE-SVC-A -m comment --comment \"a/x: two\" -j KUBE-MARK-DROP\nCOMMIT\n").unwrap();
        assert!(compare(&a, &b, &Options::default()).equal);
        let c = parse("*nat\n-A KUBE-SERVICES -m comment --comment \"a/x:\" -j KUBE-SVC-A\n-A KUBE-SERVICES -m comment --comment \"b/y:\" -j KUBE-SVC-B\n-A KUBE-SVC-A -m comment --comment \"a/x: two\" -j KUBE-MARK-DROP\n-A KUBE-SVC-A -m comment --comment \"a/x: one\" -j KUBE-MARK-MASQ\nCOMMIT\n").unwrap();
        let cmp = compare(&a, &c, &Options::default());
        assert!(!cmp.equal);
        assert_eq!(cmp.services[0].service, "a/x:");
        assert!(cmp.services[1].equal);
    }

    #[test]
    fn word_level() {
        let (o, n) = word_diff("-A X -j KUBE-MARK-DROP", "-A X -j KUBE-MARK-MASQ");
        assert_eq!(o.last().unwrap().text, "KUBE-MARK-DROP");
        assert!(o.last().unwrap().emphasized);
        assert!(n.last().unwrap().emphasized);
        assert!(!n[0].emphasized);
    }

    /// A Service with these endpoints (IP, SEP chain suffix), dispatched by a statistic cascade.
    fn cascade(eps: &[(&str, &str)]) -> String {
        cascade_to(eps, &(0..eps.len()).collect::<Vec<_>>())
    }

    /// [`cascade`], its branches jumping to these endpoints (`targets[k]`: branch k's).
    fn cascade_to(eps: &[(&str, &str)], targets: &[usize]) -> String {
        let n = targets.len();
        let mut t = String::from("*nat\n");
        for (k, h) in targets.iter().map(|&e| eps[e].1).enumerate() {
            let left = n - k;
            let p = if left > 1 {
                format!(
                    "-m statistic --mode random --probability {:.11} ",
                    1.0 / left as f64
                )
            } else {
                String::new()
            };
            t.push_str(&format!(
                "-A KUBE-SVC-AAAA -m comment --comment \"d/e:\" {p}-j KUBE-SEP-{h}\n"
            ));
        }
        for (ip, h) in eps {
            t.push_str(&format!(
                "-A KUBE-SEP-{h} -s {ip}/32 -m comment --comment \"d/e:\" -j KUBE-MARK-MASQ\n"
            ));
            t.push_str(&format!("-A KUBE-SEP-{h} -p tcp -m comment --comment \"d/e:\" -m tcp -j DNAT --to-destination {ip}:80\n"));
        }
        t + "COMMIT\n"
    }

    #[test]
    fn statistic_cascade_endpoints_are_a_set() {
        let a = parse(cascade(&[("10.0.1.1", "X1"), ("10.0.2.2", "X2")])).unwrap();
        // Other IPs and hashes, listed the other way round: equal.
        let b = parse(cascade(&[("10.9.2.9", "Y2"), ("10.9.1.9", "Y1")])).unwrap();
        assert!(compare(&a, &b, &Options::default()).equal);
        // One endpoint more, in the middle: exactly one dispatch rule and its chain's two rules.
        let c = parse(cascade(&[
            ("10.9.1.9", "Y1"),
            ("10.9.3.3", "Y3"),
            ("10.9.2.9", "Y2"),
        ]))
        .unwrap();
        let cmp = compare(&a, &c, &Options::default());
        let s = &cmp.services[0];
        assert_eq!(
            (s.added.len(), s.removed.len()),
            (3, 0),
            "{}",
            crate::rules::render::text(&cmp, false)
        );
    }

    #[test]
    fn a_cascade_to_one_endpoint_is_not_one_to_many() {
        let eps = [("10.0.1.1", "X1"), ("10.0.2.2", "X2")];
        let spread = parse(cascade(&eps)).unwrap();
        // Both branches jump to the first endpoint (the other's chain is still there).
        let one = parse(cascade_to(&eps, &[0, 0])).unwrap();
        let cmp = compare(&spread, &one, &Options::default());
        let s = &cmp.services[0];
        assert!(!s.equal, "{}", crate::rules::render::text(&cmp, false));
        assert_eq!((s.removed.len(), s.added.len()), (1, 1));
        assert!(
            s.added[0]
                .rule()
                .ends_with("-j KUBE-SEP-<endpoint> (same endpoint as rule 1)"),
            "{}",
            s.added[0].rule()
        );
        // The same state in another cluster (other IPs and hashes, the other endpoint chosen).
        let other = [("10.9.2.9", "Y2"), ("10.9.1.9", "Y1")];
        let elsewhere = parse(cascade_to(&other, &[1, 1])).unwrap();
        assert!(compare(&one, &elsewhere, &Options::default()).equal);
        // Three branches over two endpoints is not three endpoints either.
        let eps3 = [eps[0], eps[1], ("10.0.3.3", "X3")];
        let a = parse(cascade(&eps3)).unwrap();
        let b = parse(cascade_to(&eps3, &[0, 1, 0])).unwrap();
        assert!(!compare(&a, &b, &Options::default()).equal);
    }

    /// Two Services' rules in KUBE-SERVICES, kube-proxy's NodePort jump after `np_at` of them
    /// (2: after both, where kube-proxy writes it), and `extra` rules in the filter table.
    fn services_chain(np_at: usize, extra: &str) -> Dump {
        let np = "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n";
        let mut chain: Vec<&str> = vec![
            "-A KUBE-SERVICES -d 10.96.0.5/32 -p tcp -m comment --comment \"d/a: cluster IP\" -m tcp --dport 80 -j KUBE-SVC-AAAA\n",
            "-A KUBE-SERVICES -d 10.96.0.6/32 -p tcp -m comment --comment \"d/b: cluster IP\" -m tcp --dport 80 -j KUBE-SVC-BBBB\n",
        ];
        chain.insert(np_at, np);
        let chain = chain.concat();
        parse(format!(
            "*nat\n-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n{chain}\
             -A KUBE-SVC-AAAA -m comment --comment \"d/a: -> 10.244.1.1:80\" -j KUBE-SEP-A1\n\
             -A KUBE-SEP-A1 -p tcp -m comment --comment \"d/a:\" -m tcp -j DNAT --to-destination 10.244.1.1:80\n\
             -A KUBE-SVC-BBBB -m comment --comment \"d/b: -> 10.244.1.2:80\" -j KUBE-SEP-B1\n\
             -A KUBE-SEP-B1 -p tcp -m comment --comment \"d/b:\" -m tcp -j DNAT --to-destination 10.244.1.2:80\n\
             COMMIT\n*filter\n{extra}COMMIT\n"
        ))
        .unwrap()
    }

    #[test]
    fn a_shared_rule_moved_before_the_services_is_one_change() {
        let base = services_chain(2, "");
        let moved = services_chain(0, "");
        let c = compare(&base, &moved, &Options::default());
        assert!(!c.equal);
        assert!(c.services.iter().all(|s| s.equal));
        let sh = c.shared.as_ref().unwrap();
        assert_eq!(
            (sh.removed.len(), sh.added.len()),
            (1, 1),
            "{}",
            render::text(&c, false)
        );
        assert!(
            sh.added[0]
                .rule()
                .ends_with("-j KUBE-NODEPORTS (before the Services' rules)")
        );
        // Never one text both equal and changed.
        for ch in &sh.chains {
            for l in ch.lines.iter().filter(|l| l.op != Op::Equal) {
                assert!(
                    !ch.lines
                        .iter()
                        .any(|e| e.op == Op::Equal && e.rule() == l.rule()),
                    "{}",
                    render::text(&c, false)
                );
            }
        }
        // Between the Services' rules: says so.
        let c = compare(&base, &services_chain(1, ""), &Options::default());
        let sh = c.shared.as_ref().unwrap();
        assert_eq!((sh.removed.len(), sh.added.len()), (1, 1));
        assert!(
            sh.added[0]
                .rule()
                .ends_with("-j KUBE-NODEPORTS (among the Services' rules)")
        );
        // Kept where kube-proxy writes it: equal.
        assert!(compare(&base, &services_chain(2, ""), &Options::default()).equal);
    }

    #[test]
    fn rules_of_built_in_chains_are_shared_or_noted() {
        let base = services_chain(2, "");
        // kube-proxy's (its comment says so), not a jump: in the shared group.
        let ours = services_chain(
            2,
            "-A INPUT -m comment --comment \"kubernetes firewall for dropping marked packets\" -m mark --mark 0x8000/0x8000 -j DROP\n",
        );
        let c = compare(&base, &ours, &Options::default());
        let sh = c.shared.as_ref().unwrap();
        assert_eq!((sh.removed.len(), sh.added.len()), (0, 1));
        assert_eq!(&*sh.added[0].chain, "INPUT");
        assert!(c.notes.is_empty(), "{:?}", c.notes);
        assert!(!c.equal);
        // Not kube-proxy's: not compared, but noted.
        let theirs = services_chain(2, "-A INPUT -p tcp --dport 22 -j DROP\n");
        let c = compare(&base, &theirs, &Options::default());
        assert!(c.equal, "{}", render::text(&c, false));
        assert_eq!(
            c.notes,
            [
                "not kube-proxy's, not compared: PR only (line 12): -A INPUT -p tcp -m tcp --dport 22 -j DROP"
            ]
        );
        assert!(render::text(&c, false).contains("\nnote: not kube-proxy's"));
        // On both sides: nothing to say.
        assert!(
            compare(&theirs, &theirs, &Options::default())
                .notes
                .is_empty()
        );
    }

    /// `--raw` compares an iptables dump's chain declarations too: a built-in chain's policy
    /// changed, a chain declared with no rule, are changes.
    #[test]
    fn raw_iptables_compares_chain_declarations() {
        let a = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [3:120]\n:KUBE-FORWARD - [0:0]\n-A FORWARD -j KUBE-FORWARD\n-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\nCOMMIT\n";
        let raw = Options {
            raw: true,
            ..Options::default()
        };
        let cmp = |b: &str, o: &Options| compare(&parse(a).unwrap(), &parse(b).unwrap(), o);
        // Counters are not rules.
        assert!(cmp(&a.replace("[3:120]", "[9:999]"), &raw).equal);
        let policy = a.replace(":FORWARD ACCEPT", ":FORWARD DROP");
        let c = cmp(&policy, &raw);
        assert!(!c.equal);
        let sh = c.shared.unwrap();
        assert_eq!(
            (sh.removed[0].rule(), sh.added[0].rule()),
            (":FORWARD ACCEPT", ":FORWARD DROP")
        );
        let extra = a.replace(":KUBE-FORWARD", ":KUBE-EXTRA - [0:0]\n:KUBE-FORWARD");
        assert!(!cmp(&extra, &raw).equal);
    }
}
