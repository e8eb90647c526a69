//! The Diff pane's data: what a diff is computed from, the computation (run off the UI loop by
//! the driver), and the display lines built once per result (not per frame, not per scroll).

use std::sync::Arc;

use crate::model::NodePair;
use crate::rules::diff::{Changed, Hunk, Op, hunks};
use crate::rules::{self, Comparison, Options};

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
}

/// Parse and compare two dumps, and lay out the result (runs on a blocking thread).
pub fn compute(req: &DiffRequest) -> Result<Computed, String> {
    let c = rules::compare_texts(&req.base, &req.pr, &req.options)
        .map_err(|e| format!("rules: {e}"))?;
    let lines = lines(&c, &req.layout);
    Ok(Computed {
        comparison: Arc::new(c),
        lines: Arc::new(lines),
        layout: req.layout.clone(),
    })
}

/// The comparison of one node pair's dumps (for reports: every pair, not just the one shown).
pub fn compare_pair(
    base: &str,
    pr: &str,
    pair: &NodePair,
    options: &Options,
) -> Result<Comparison, String> {
    rules::compare_texts(base, pr, options).map_err(|e| format!("rules of {}: {e}", pair.role))
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
