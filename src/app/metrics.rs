//! kube-proxy's own numbers per node and side (from [`Event::ProxyMetrics`]), paired node to
//! node, and where the PR side is markedly worse: the `m` overlay and `check`'s reports both
//! read them from here.
//!
//! [`Event::ProxyMetrics`]: crate::backend::event::Event::ProxyMetrics

use std::collections::BTreeMap;

use serde::Serialize;

use super::State;
use crate::backend::event::MetricsRead;
use crate::backend::metrics::ProxyMetrics;
use crate::model::{BySide, Factor, Side};

/// What the dashboard holds of kube-proxy's metrics.
#[derive(Debug, Default, Clone)]
pub struct MetricsView {
    /// The overlay (`m`) is open.
    pub open: bool,
    /// A read asked with `m` has not finished yet (its rules job is running).
    pub reading: bool,
    /// Per side, per node: what its metrics read gave last.
    pub nodes: BySide<BTreeMap<String, MetricsRead>>,
}

/// Where the rule count comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RulesFrom {
    /// `kubeproxy_sync_proxy_rules_iptables_total` (iptables mode).
    Metrics,
    /// The node's rule dump (nftables mode has no such metric).
    Dump,
}

/// One node's numbers as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "read", rename_all = "snake_case")]
pub enum Cell {
    Read {
        node: String,
        #[serde(flatten)]
        metrics: ProxyMetrics,
        #[serde(skip_serializing_if = "Option::is_none")]
        rules_from: Option<RulesFrom>,
    },
    Failed {
        node: String,
        error: String,
    },
}

/// How the PR side's node is markedly worse than the base's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Worse {
    /// Its sync p99 is more than the factor times the base's.
    SlowerSync,
    /// It counted more sync failures.
    MoreFailures,
}

impl Worse {
    pub fn words(self, factor: Factor) -> String {
        match self {
            Worse::SlowerSync => format!("PR sync p99 > {factor}x base"),
            Worse::MoreFailures => "PR more sync failures".into(),
        }
    }
}

/// A node pair: the same node (its name without its cluster's) on both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub node: String,
    pub base: Option<Cell>,
    pub pr: Option<Cell>,
    pub worse: Vec<Worse>,
}

/// The rows, node pairs by name (a node on one side only has a row of its own).
pub fn rows(st: &State) -> Vec<Row> {
    let mut by: BTreeMap<String, Row> = BTreeMap::new();
    for side in Side::BOTH {
        for (node, read) in &st.metrics.nodes[side] {
            let short = st.side(side).short(node);
            let row = by.entry(short.clone()).or_insert_with(|| Row {
                node: short,
                base: None,
                pr: None,
                worse: Vec::new(),
            });
            let cell = Some(cell(st, side, node, read));
            match side {
                Side::Base => row.base = cell,
                Side::Pr => row.pr = cell,
            }
        }
    }
    let mut out: Vec<Row> = by.into_values().collect();
    for r in &mut out {
        r.worse = worse(r.base.as_ref(), r.pr.as_ref(), st.latency_factor);
    }
    out
}

fn cell(st: &State, side: Side, node: &str, read: &MetricsRead) -> Cell {
    match read {
        MetricsRead::Failed(e) => Cell::Failed {
            node: node.to_string(),
            error: e.clone(),
        },
        MetricsRead::Read(m) => {
            let mut metrics = m.clone();
            let mut rules_from = metrics.rules.map(|_| RulesFrom::Metrics);
            if metrics.rules.is_none()
                && let Some(d) = st.side(side).dumps.get(node)
            {
                metrics.rules = Some(rules_in(d));
                rules_from = Some(RulesFrom::Dump);
            }
            Cell::Read {
                node: node.to_string(),
                metrics,
                rules_from,
            }
        }
    }
}

/// The rules of a dump: `-A` lines of an iptables dump; the statements inside the chains of
/// an nftables one.
pub fn rules_in(dump: &str) -> u64 {
    if !crate::rules::nft::looks_like_nft(dump) {
        return dump.lines().filter(|l| l.starts_with("-A ")).count() as u64;
    }
    let mut in_chain = false;
    let mut n = 0;
    for l in dump.lines().map(str::trim) {
        if l.starts_with("chain ") && l.ends_with('{') {
            in_chain = true;
        } else if l == "}" {
            in_chain = false;
        } else if in_chain && !l.is_empty() && !l.starts_with("type ") && !l.starts_with('#') {
            n += 1;
        }
    }
    n
}

/// Where the PR node is markedly worse: its sync p99 above `factor` times the base's, more
/// sync failures.
pub fn worse(base: Option<&Cell>, pr: Option<&Cell>, factor: Factor) -> Vec<Worse> {
    let (Some(Cell::Read { metrics: b, .. }), Some(Cell::Read { metrics: p, .. })) = (base, pr)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let (Some(b), Some(p)) = (b.sync, p.sync)
        && p.p99_us as f64 > factor.0 * b.p99_us as f64
    {
        out.push(Worse::SlowerSync);
    }
    if let (Some(b), Some(p)) = (b.failures, p.failures)
        && p > b
    {
        out.push(Worse::MoreFailures);
    }
    out
}

/// Width of one side's numbers: p50, p99, last sync, failures, rules.
pub const SIDE_W: usize = 32;

/// The head of one side's columns.
pub fn side_head() -> String {
    format!(
        "{:>7} {:>7} {:>5} {:>4} {:>5}",
        "p50", "p99", "last", "fail", "rules"
    )
}

/// A side's title over its columns: "master (base) iptables", the modes its nodes' counters
/// show.
pub fn side_title(rows: &[Row], side: Side, name: &str) -> String {
    let mut modes: Vec<String> = Vec::new();
    for r in rows {
        let c = match side {
            Side::Base => &r.base,
            Side::Pr => &r.pr,
        };
        if let Some(Cell::Read {
            metrics: ProxyMetrics { mode: Some(m), .. },
            ..
        }) = c
            && !modes.contains(&m.to_string())
        {
            modes.push(m.to_string());
        }
    }
    let name = crate::rules::render::visible(name);
    format!("{name} ({}) {}", side.label(), modes.join("+"))
        .trim_end()
        .to_string()
}

/// One side's numbers of a node, in the columns of [`side_head`].
pub fn numbers(c: Option<&Cell>) -> String {
    match c {
        None => "(no such node)".into(),
        Some(Cell::Failed { .. }) => "not read (below)".into(),
        Some(Cell::Read {
            metrics: m,
            rules_from,
            ..
        }) => {
            let q = |f: fn(&crate::backend::tries::Quantiles) -> u64| {
                m.sync.as_ref().map_or("-".into(), |s| duration(f(s)))
            };
            let rules = match (m.rules, rules_from) {
                (Some(n), Some(RulesFrom::Dump)) => format!("{n}*"),
                (Some(n), _) => n.to_string(),
                (None, _) => "-".into(),
            };
            format!(
                "{:>7} {:>7} {:>5} {:>4} {:>5}",
                q(|s| s.p50_us),
                q(|s| s.p99_us),
                m.last_sync_age_ms.map_or("-".into(), age),
                m.failures.map_or("-".into(), |n| n.to_string()),
                rules
            )
        }
    }
}

/// A duration in microseconds, short: "850µs", "12.0ms", "16.38s".
pub fn duration(us: u64) -> String {
    match us {
        0..1_000 => format!("{us}µs"),
        1_000..1_000_000 => format!("{:.1}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

/// An age in milliseconds, short: "5s", "3m20s", "2h05m".
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::tries::Quantiles;

    fn read(p99_us: u64, failures: u64) -> Cell {
        Cell::Read {
            node: "n".into(),
            metrics: ProxyMetrics {
                mode: None,
                syncs: 10,
                sync: Some(Quantiles { p50_us: 1, p99_us }),
                last_sync_age_ms: None,
                failures: Some(failures),
                rules: None,
            },
            rules_from: None,
        }
    }

    #[test]
    fn the_pr_is_worse_past_the_factor_or_with_more_failures() {
        let f = Factor(2.0);
        let w = |b: Cell, p: Cell| worse(Some(&b), Some(&p), f);
        assert_eq!(w(read(1000, 0), read(2000, 0)), vec![]);
        assert_eq!(w(read(1000, 0), read(2001, 0)), vec![Worse::SlowerSync]);
        assert_eq!(w(read(1000, 1), read(1000, 2)), vec![Worse::MoreFailures]);
        assert_eq!(w(read(1000, 2), read(1000, 1)), vec![]);
        let failed = Cell::Failed {
            node: "n".into(),
            error: "x".into(),
        };
        assert_eq!(worse(Some(&read(1, 0)), Some(&failed), f), vec![]);
    }

    #[test]
    fn rules_are_counted_in_either_dump() {
        let ipt = "*nat\n:KUBE-SVC - [0:0]\n-A KUBE-SVC -j X\n-A KUBE-SVC -j Y\nCOMMIT\n";
        assert_eq!(rules_in(ipt), 2);
        let nft = "table ip kube-proxy {\n\tchain a {\n\t\ttype nat hook output priority -100; policy accept;\n\t\tip daddr 1.2.3.4 jump b\n\t\tcounter\n\t}\n\tset s {\n\t\ttype ipv4_addr\n\t}\n}\n";
        assert_eq!(rules_in(nft), 2);
    }
}
