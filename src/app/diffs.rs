//! The Diff pane's data: what a diff is computed from, the computation (run off the UI loop by
//! the driver), and the display lines built once per result (not per frame, not per scroll).
//! With a Service under test, the computation also traces that Service's packet classes through
//! both dumps ([`crate::rules::packets`]): what changed for packets, the pane's heading.

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::model::NodePair;
use crate::rules::diff::{Changed, Hunk, Op, hunks};
use crate::rules::packets::{self, DestKind, Summary};
use crate::rules::{self, Comparison, Options};

/// The addresses of a node pair's nodes as the clusters report them (base, PR); empty: the
/// dump's own (see [`packets::Side::new`]).
pub type NodeIps = (Vec<Ipv4Addr>, Vec<Ipv4Addr>);

/// What a diff was computed from: dump versions (the generation), a node pair, the mode and the
/// LoadBalancer IPs known on each side (they are normalized away: a Service's IP arriving after
/// the dumps changes the result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffKey {
    pub generation: u64,
    /// The node pair's role ("worker").
    pub node: String,
    pub raw: bool,
    /// A timeline entry's before-vs-after, by id (`None`: base vs PR).
    pub step: Option<u64>,
    /// (base, PR).
    pub lb_ips: (Vec<String>, Vec<String>),
    /// The node pair's addresses as the clusters report them (the packet summary's): an
    /// address arriving after the dumps changes the result.
    pub node_ips: NodeIps,
}

/// A diff to compute: both dumps, the Service filter, and how the result will be shown.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffRequest {
    pub key: DiffKey,
    pub base: Arc<str>,
    pub pr: Arc<str>,
    pub options: Options,
    pub layout: LineLayout,
}

/// How display lines are laid out and filtered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineLayout {
    pub side_by_side: bool,
    pub filter: String,
}

/// A computed diff and its display lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Computed {
    pub comparison: Arc<Comparison>,
    pub lines: Arc<Vec<DLine>>,
    pub layout: LineLayout,
    /// What changed for packets of the Service under test (base vs PR; none without a Service,
    /// or for a timeline entry's before vs after).
    pub packets: Option<Arc<Summary>>,
}

/// Parse and compare two dumps, trace the Service's packets, and lay out the result (runs on a
/// blocking thread).
pub fn compute(req: &DiffRequest) -> Result<Computed, String> {
    let ips = req.key.step.is_none().then_some(&req.key.node_ips);
    let (c, packets) = compare_and_trace(&req.base, &req.pr, &req.options, ips)
        .map_err(|e| format!("rules: {e}"))?;
    let lines = lines(&c, &req.layout);
    Ok(Computed {
        comparison: Arc::new(c),
        lines: Arc::new(lines),
        layout: req.layout.clone(),
        packets: packets.map(Arc::new),
    })
}

/// The comparison of one node pair's dumps, and what changed for the Service's packets (for
/// reports: every pair, not just the one shown).
pub fn compare_pair(
    base: &str,
    pr: &str,
    pair: &NodePair,
    options: &Options,
    node_ips: &NodeIps,
) -> Result<(Comparison, Option<Summary>), String> {
    compare_and_trace(base, pr, options, Some(node_ips))
        .map_err(|e| format!("rules of {}: {e}", pair.role))
}

/// Compare two dumps; with `node_ips` and a Service in `options`, also trace that Service's
/// packet classes through both (each dump parsed once for both).
fn compare_and_trace(
    base: &str,
    pr: &str,
    options: &Options,
    node_ips: Option<&NodeIps>,
) -> Result<(Comparison, Option<Summary>), rules::TextError> {
    let (c, parsed) = rules::compare_texts_keep(base.to_string(), pr.to_string(), options)?;
    let packets = match (node_ips, &options.service, parsed.dumps()) {
        (Some((bi, pi)), Some(filter), Some((b, p))) => {
            let (b, p) = (packets::Side::new(b, bi), packets::Side::new(p, pi));
            let mut s = packets::compare(&b, &p, Some(filter));
            name_lbs(&mut s, &options.lb_ips);
            Some(s)
        }
        _ => None,
    };
    Ok((c, packets))
}

/// nftables writes LoadBalancer and external IPs alike (`LB/externalIP`): an address the
/// cluster reports as the Service's LoadBalancer IP is named `LB`.
fn name_lbs(s: &mut Summary, lb_ips: &(Vec<String>, Vec<String>)) {
    let is = |ips: &[String], d: &packets::Dest| {
        d.kind == DestKind::External && ips.iter().any(|ip| ip.parse() == Ok(d.ip))
    };
    for c in &mut s.changes {
        // Without a PR address of its own, the destination is both sides'.
        let both = c.pr_destination.is_none();
        let pr = c.pr_destination.as_mut();
        if is(&lb_ips.0, &c.destination) || (both && is(&lb_ips.1, &c.destination)) {
            c.destination.kind = DestKind::LoadBalancer;
        }
        if let Some(d) = pr
            && is(&lb_ips.1, d)
        {
            d.kind = DestKind::LoadBalancer;
        }
    }
}

/// At most this many classes in the Diff pane's heading (the reports list them all).
pub const PACKETS_SHOWN: usize = 3;

/// The Diff pane's heading from a packet summary: one line per class that differs (aligned;
/// the Service port named when several differ), the first `packets: `, at most
/// [`PACKETS_SHOWN`] and a count of the rest; or `packets: no class differs (N classes)`.
/// Untrusted text made visible.
pub fn packet_lines(s: &Summary) -> Vec<String> {
    use crate::rules::render::visible;
    let mut tail = String::new();
    if s.unknown > 0 {
        tail = format!(", {} traced to unknown", s.unknown);
    }
    if s.changes.is_empty() {
        return vec![format!(
            "packets: no class differs ({} classes{tail})",
            s.classes
        )];
    }
    let several = s.changes.iter().any(|c| c.service != s.changes[0].service);
    let rows: Vec<[String; 3]> = s
        .changes
        .iter()
        .take(PACKETS_SHOWN)
        .map(|c| {
            let class = packets::class_words(c);
            [
                if several {
                    format!("{} {class}", visible(&c.service))
                } else {
                    class
                },
                format!("base {}", visible(&c.base.to_string())),
                format!("PR {}", visible(&c.pr.to_string())),
            ]
        })
        .collect();
    let w = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let (w0, w1) = (w(0), w(1));
    let mut out: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let head = if i == 0 { "packets: " } else { "         " };
            let line = format!("{head}{:<w0$}   {:<w1$}   {}", r[0], r[1], r[2]);
            line.trim_end().to_string()
        })
        .collect();
    let rest = s.changes.len() - rows.len();
    if rest > 0 || !tail.is_empty() {
        out.push(format!(
            "         … {} of {} classes differ{tail}",
            s.changes.len(),
            s.classes
        ));
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Service,
    Chain,
    Equal,
    Removed,
    Added,
    Raw,
    Blank,
}

/// One half of a display line: its kind, text and which pieces to emphasize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Half {
    pub kind: Kind,
    pub text: String,
    /// (text, emphasized) pieces; empty means "all of `text`, plain".
    pub segs: Vec<(String, bool)>,
}

impl Half {
    fn new(kind: Kind, text: impl Into<String>) -> Half {
        Half {
            kind,
            text: text.into(),
            segs: Vec::new(),
        }
    }
    fn blank() -> Half {
        Half::new(Kind::Blank, "")
    }
}

/// A display line: unified uses `left` only; side by side uses both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DLine {
    pub left: Half,
    pub right: Option<Half>,
}

fn full(h: Half) -> DLine {
    DLine {
        left: h,
        right: None,
    }
}

/// Display lines for a comparison (pure).
pub fn lines(c: &Comparison, layout: &LineLayout) -> Vec<DLine> {
    let mut out = Vec::new();
    for s in c.groups() {
        let state = if s.equal {
            "equal".to_string()
        } else {
            format!("changed, +{} -{}", s.added.len(), s.removed.len())
        };
        out.push(full(Half::new(
            Kind::Service,
            format!("=== {} ({state})", s.service),
        )));
        for ch in &s.chains {
            out.push(full(Half::new(
                Kind::Chain,
                format!("--- {} {}  {}", ch.table, ch.chain, ch.names()),
            )));
            for h in hunks(&ch.lines) {
                match h {
                    Hunk::Equal(l) => equal_line(&mut out, l.rule(), layout),
                    Hunk::Change { removed, added } => {
                        change_lines(&mut out, removed, added, layout)
                    }
                }
            }
        }
    }
    out
}

fn equal_line(out: &mut Vec<DLine>, t: &str, layout: &LineLayout) {
    if !(layout.filter.is_empty() || t.contains(&layout.filter)) {
        return;
    }
    if layout.side_by_side {
        out.push(DLine {
            left: Half::new(Kind::Equal, t),
            right: Some(Half::new(Kind::Equal, t)),
        });
    } else {
        out.push(full(Half::new(Kind::Equal, format!("  {t}"))));
    }
}

fn half(c: &Changed<'_>) -> Half {
    let kind = if c.line.op == Op::Added {
        Kind::Added
    } else {
        Kind::Removed
    };
    let mut h = Half::new(kind, c.line.rule());
    if let Some(segs) = c.segments() {
        h.segs = segs.into_iter().map(|s| (s.text, s.emphasized)).collect();
    }
    h
}

fn change_lines(
    out: &mut Vec<DLine>,
    removed: &[rules::diff::Line],
    added: &[rules::diff::Line],
    layout: &LineLayout,
) {
    let keep = |h: &Half| layout.filter.is_empty() || h.text.contains(&layout.filter);
    if layout.side_by_side {
        let all: Vec<Half> = Changed::all(removed, added).map(|c| half(&c)).collect();
        let (left, right) = all.split_at(removed.len());
        for k in 0..left.len().max(right.len()) {
            let l = left.get(k).cloned().unwrap_or_else(Half::blank);
            let r = right.get(k).cloned().unwrap_or_else(Half::blank);
            if keep(&l) || keep(&r) {
                out.push(DLine {
                    left: l,
                    right: Some(r),
                });
            }
        }
        return;
    }
    for c in Changed::all(removed, added) {
        let h = half(&c);
        if !keep(&h) {
            continue;
        }
        let (sign, who) = if h.kind == Kind::Added {
            ("+ ", "PR")
        } else {
            ("- ", "base")
        };
        let mut shown = h.clone();
        shown.text = format!("{sign}{}", h.text);
        if !shown.segs.is_empty() {
            shown.segs.insert(0, (sign.to_string(), false));
        }
        out.push(full(shown));
        if let Some(r) = c.raw() {
            out.push(full(Half::new(
                Kind::Raw,
                format!("    {who} line {}: {}", r.line, r.raw),
            )));
        }
    }
}
