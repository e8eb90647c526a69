//! Comparing the rules of base and PR, per service and per chain role.

use std::collections::BTreeMap;

use std::sync::Arc;

use serde::Serialize;
use similar::{Algorithm, ChangeTag, TextDiff};

use super::normalize::{NormRule, normalize};
use super::parse::{Dump, ParseError, Table};
use super::service::{ServiceFilter, ServiceKey, ServiceRules, services};

/// How to compare.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Compare the rules as written: no normalization at all.
    pub raw: bool,
    /// Only this service (all ports, or one).
    pub service: Option<ServiceFilter>,
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
            .map_or("", |r| r.rule.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainDiff {
    pub table: Table,
    /// The chain's role, the same on both sides (e.g. `KUBE-XLB-<hash>`, `KUBE-NODEPORTS`).
    pub chain: String,
    pub base_chain: Option<String>,
    pub pr_chain: Option<String>,
    pub equal: bool,
    pub lines: Vec<Line>,
}

impl ChainDiff {
    /// The chain's real names: one when both sides use the same, else both.
    pub fn names(&self) -> String {
        match (&self.base_chain, &self.pr_chain) {
            (Some(b), Some(p)) if b == p => b.clone(),
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
    pub added: Vec<Arc<RuleText>>,
    pub removed: Vec<Arc<RuleText>>,
    pub chains: Vec<ChainDiff>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comparison {
    pub equal: bool,
    pub normalized: bool,
    pub services: Vec<ServiceDiff>,
}

impl Comparison {
    pub fn changed(&self) -> impl Iterator<Item = &ServiceDiff> {
        self.services.iter().filter(|s| !s.equal)
    }
}

/// Compare two parsed dumps.
pub fn compare(base: &Dump, pr: &Dump, opts: &Options) -> Comparison {
    let (bs, ps) = std::thread::scope(|sc| {
        let b = sc.spawn(|| services(base, opts.service.as_ref()));
        let p = services(pr, opts.service.as_ref());
        (b.join().expect("service analysis thread"), p)
    });
    compare_services(base, &bs, pr, &ps, opts)
}

/// Which side a parse error is in.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("base: {0}")]
    Base(ParseError),
    #[error("PR: {0}")]
    Pr(ParseError),
    #[error("base and PR are different kinds of dump: {0}")]
    Mixed(&'static str),
}

/// The parsed dumps behind a comparison: dropping them frees them (a short-lived command may
/// rather leave that to its exit).
pub struct Parsed {
    _iptables: Option<(Dump, Dump)>,
    _nft: Option<(super::nft::NftDump, super::nft::NftDump)>,
}

/// Parse two dumps (iptables or nftables, detected) and compare them.
pub fn compare_texts(base: &str, pr: &str, opts: &Options) -> Result<Comparison, TextError> {
    compare_texts_keep(base, pr, opts).map(|(c, _)| c)
}

/// [`compare_texts`], also handing back the parsed dumps.
pub fn compare_texts_keep(
    base: &str,
    pr: &str,
    opts: &Options,
) -> Result<(Comparison, Parsed), TextError> {
    let (bn, pn) = (
        super::nft::looks_like_nft(base),
        super::nft::looks_like_nft(pr),
    );
    match (bn, pn) {
        (false, false) => {
            let (b, p) = std::thread::scope(|sc| {
                let h = sc.spawn(|| super::parse::parse(base));
                let p = super::parse::parse(pr);
                (h.join().expect("parser thread"), p)
            });
            let (b, p) = (b.map_err(TextError::Base)?, p.map_err(TextError::Pr)?);
            let c = compare(&b, &p, opts);
            Ok((
                c,
                Parsed {
                    _iptables: Some((b, p)),
                    _nft: None,
                },
            ))
        }
        (true, true) => {
            let b = super::nft::parse(base).map_err(TextError::Base)?;
            let p = super::nft::parse(pr).map_err(TextError::Pr)?;
            let c = compare_nft(&b, &p, opts);
            Ok((
                c,
                Parsed {
                    _iptables: None,
                    _nft: Some((b, p)),
                },
            ))
        }
        (true, false) => Err(TextError::Mixed("base is nftables, PR is iptables")),
        (false, true) => Err(TextError::Mixed("base is iptables, PR is nftables")),
    }
}

/// Compare two nftables dumps.
pub fn compare_nft(
    base: &super::nft::NftDump,
    pr: &super::nft::NftDump,
    opts: &Options,
) -> Comparison {
    use super::nft;
    let bs = nft::services(base, opts.service.as_ref());
    let ps = nft::services(pr, opts.service.as_ref());
    type Items<'a> = (Option<&'a Vec<usize>>, Option<&'a Vec<usize>>);
    let mut keys: BTreeMap<&ServiceKey, Items<'_>> = BTreeMap::new();
    for (k, v) in &bs {
        keys.entry(k).or_default().0 = Some(v);
    }
    for (k, v) in &ps {
        keys.entry(k).or_default().1 = Some(v);
    }
    let mut out: Vec<ServiceDiff> = keys
        .into_iter()
        .map(|(k, (b, p))| {
            let nb = b
                .map(|i| nft::normalize(base, i, opts.raw))
                .unwrap_or_default();
            let np = p
                .map(|i| nft::normalize(pr, i, opts.raw))
                .unwrap_or_default();
            diff_service(k.to_string(), b.is_some(), p.is_some(), &nb, &np)
        })
        .collect();
    out.sort_by_key(|s| s.equal);
    Comparison {
        equal: out.iter().all(|s| s.equal),
        normalized: !opts.raw,
        services: out,
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
    let mut keys: BTreeMap<&ServiceKey, (Option<&ServiceRules>, Option<&ServiceRules>)> =
        BTreeMap::new();
    for s in bs {
        keys.entry(&s.key).or_default().0 = Some(s);
    }
    for s in ps {
        keys.entry(&s.key).or_default().1 = Some(s);
    }
    let pairs: Vec<_> = keys.into_values().collect();
    let work = |(b, p): &(Option<&ServiceRules>, Option<&ServiceRules>)| -> ServiceDiff {
        let display = b.or(*p).map(|s| s.written.clone()).unwrap_or_default();
        let nb = b
            .map(|s| normalize(base, s, &display, opts.raw))
            .unwrap_or_default();
        let np = p
            .map(|s| normalize(pr, s, &display, opts.raw))
            .unwrap_or_default();
        diff_service(display, b.is_some(), p.is_some(), &nb, &np)
    };
    let mut out: Vec<ServiceDiff> = if pairs.len() > 64 {
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
    // Changed services first, each group in name order (already sorted by key).
    out.sort_by_key(|s| s.equal);
    Comparison {
        equal: out.iter().all(|s| s.equal),
        normalized: !opts.raw,
        services: out,
    }
}

/// Diff the normalized rules of one service.
pub fn diff_service(
    service: String,
    in_base: bool,
    in_pr: bool,
    base: &[NormRule],
    pr: &[NormRule],
) -> ServiceDiff {
    // Group by (table, role), in order of first appearance (base first). A service has a
    // handful of chains: a linear search beats hashing.
    type Group<'a> = ((Table, &'a str), Vec<&'a NormRule>, Vec<&'a NormRule>);
    let mut groups: Vec<Group<'_>> = Vec::new();
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
    let mut chains = Vec::with_capacity(groups.len());
    let mut added = Vec::new();
    let mut removed = Vec::new();
    for (k, b, p) in &groups {
        let k = *k;
        let equal_texts = b.len() == p.len()
            && b.iter()
                .zip(p.iter())
                .all(|(x, y)| x.rule.rule == y.rule.rule);
        let bt: Vec<&str> = if equal_texts {
            Vec::new()
        } else {
            b.iter().map(|r| r.rule.rule.as_str()).collect()
        };
        let pt: Vec<&str> = if equal_texts {
            Vec::new()
        } else {
            p.iter().map(|r| r.rule.rule.as_str()).collect()
        };
        let mut lines = Vec::with_capacity(b.len().max(p.len()));
        let equal_line = |x: &NormRule, y: &NormRule| Line {
            op: Op::Equal,
            base: Some(x.rule.clone()),
            pr: Some(y.rule.clone()),
        };
        if equal_texts {
            lines.extend(b.iter().zip(p.iter()).map(|(x, y)| equal_line(x, y)));
        } else {
            for op in similar::capture_diff_slices(Algorithm::Myers, &bt, &pt) {
                for change in op.iter_changes(&bt, &pt) {
                    let line = match change.tag() {
                        ChangeTag::Equal => equal_line(
                            b[change.old_index().unwrap()],
                            p[change.new_index().unwrap()],
                        ),
                        ChangeTag::Delete => {
                            let r = b[change.old_index().unwrap()].rule.clone();
                            removed.push(r.clone());
                            Line {
                                op: Op::Removed,
                                base: Some(r),
                                pr: None,
                            }
                        }
                        ChangeTag::Insert => {
                            let r = p[change.new_index().unwrap()].rule.clone();
                            added.push(r.clone());
                            Line {
                                op: Op::Added,
                                base: None,
                                pr: Some(r),
                            }
                        }
                    };
                    lines.push(line);
                }
            }
        }
        let equal = lines.iter().all(|l| l.op == Op::Equal);
        chains.push(ChainDiff {
            table: k.0,
            chain: k.1.to_string(),
            base_chain: b.first().map(|r| r.rule.chain.to_string()),
            pr_chain: p.first().map(|r| r.rule.chain.to_string()),
            equal,
            lines,
        });
    }
    ServiceDiff {
        service,
        equal: added.is_empty() && removed.is_empty(),
        in_base,
        in_pr,
        added,
        removed,
        chains,
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
}
