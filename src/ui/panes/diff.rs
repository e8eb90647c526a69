//! Diff pane: the Service's rules, base vs PR, chain by chain, from the rule engine. Unified or
//! side by side, normalized or raw, word-level emphasis inside changed rules, scrollable.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::{Pane, State};
use crate::rules::Comparison;
use crate::rules::diff::{Op, word_diff};
use crate::ui::{Theme, pane_block};

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

/// One half of a display line: its kind, text and which character ranges to emphasize.
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

/// Display lines for a comparison (pure; also used by tests and benchmarks).
pub fn lines(c: &Comparison, side_by_side: bool, filter: &str) -> Vec<DLine> {
    let mut out = Vec::new();
    for s in &c.services {
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
            let names = ch.names();
            out.push(full(Half::new(
                Kind::Chain,
                format!("--- {} {}  {names}", ch.table, ch.chain),
            )));
            let mut i = 0;
            let ls = &ch.lines;
            while i < ls.len() {
                if ls[i].op == Op::Equal {
                    let t = ls[i].rule().to_string();
                    if filter.is_empty() || t.contains(filter) {
                        if side_by_side {
                            out.push(DLine {
                                left: Half::new(Kind::Equal, t.clone()),
                                right: Some(Half::new(Kind::Equal, t)),
                            });
                        } else {
                            out.push(full(Half::new(Kind::Equal, format!("  {t}"))));
                        }
                    }
                    i += 1;
                    continue;
                }
                let start = i;
                while i < ls.len() && ls[i].op == Op::Removed {
                    i += 1;
                }
                let mid = i;
                while i < ls.len() && ls[i].op == Op::Added {
                    i += 1;
                }
                let (rem, add) = (&ls[start..mid], &ls[mid..i]);
                let mut left: Vec<Half> = Vec::new();
                let mut right: Vec<Half> = Vec::new();
                for (k, r) in rem.iter().enumerate() {
                    let mut h = Half::new(Kind::Removed, r.rule());
                    if let Some(a) = add.get(k) {
                        h.segs = word_diff(r.rule(), a.rule())
                            .0
                            .into_iter()
                            .map(|s| (s.text, s.emphasized))
                            .collect();
                    }
                    left.push(h);
                }
                for (k, a) in add.iter().enumerate() {
                    let mut h = Half::new(Kind::Added, a.rule());
                    if let Some(r) = rem.get(k) {
                        h.segs = word_diff(r.rule(), a.rule())
                            .1
                            .into_iter()
                            .map(|s| (s.text, s.emphasized))
                            .collect();
                    }
                    right.push(h);
                }
                let keep = |h: &Half| filter.is_empty() || h.text.contains(filter);
                if side_by_side {
                    let n = left.len().max(right.len());
                    for k in 0..n {
                        let l = left.get(k).cloned().unwrap_or_else(Half::blank);
                        let r = right.get(k).cloned().unwrap_or_else(Half::blank);
                        if keep(&l) || keep(&r) {
                            out.push(DLine {
                                left: l,
                                right: Some(r),
                            });
                        }
                    }
                } else {
                    let raws = rem
                        .iter()
                        .map(|l| l.base.as_ref())
                        .chain(add.iter().map(|l| l.pr.as_ref()));
                    for (h, raw) in left.into_iter().chain(right).zip(raws) {
                        if !keep(&h) {
                            continue;
                        }
                        let sign = if h.kind == Kind::Added { "+ " } else { "- " };
                        let mut h2 = h.clone();
                        h2.text = format!("{sign}{}", h.text);
                        if !h2.segs.is_empty() {
                            h2.segs.insert(0, (sign.to_string(), false));
                        }
                        out.push(full(h2));
                        if let Some(r) = raw
                            && r.raw != r.rule
                        {
                            let who = if h.kind == Kind::Added { "PR" } else { "base" };
                            out.push(full(Half::new(
                                Kind::Raw,
                                format!("    {who} line {}: {}", r.line, r.raw),
                            )));
                        }
                    }
                }
            }
        }
    }
    out
}

fn style_of(k: Kind, theme: &Theme) -> Style {
    match k {
        Kind::Service => theme.title(),
        Kind::Chain => theme.chain(),
        Kind::Equal | Kind::Blank => Style::default(),
        Kind::Removed => theme.removed(),
        Kind::Added => theme.added(),
        Kind::Raw => theme.dim(),
    }
}

fn spans<'a>(h: &Half, from: usize, width: usize, theme: &Theme) -> Line<'a> {
    let base = style_of(h.kind, theme);
    if h.segs.is_empty() {
        return Line::styled(crate::ui::clip(&h.text, from, width), base);
    }
    // Walk the segments, skipping `from` chars and keeping `width`.
    let mut out = Vec::new();
    let mut skip = from;
    let mut room = width;
    for (t, em) in &h.segs {
        let n = t.chars().count();
        if skip >= n {
            skip -= n;
            continue;
        }
        let piece: String = t.chars().skip(skip).take(room).collect();
        skip = 0;
        room -= piece.chars().count();
        let st = if *em {
            base.patch(theme.emphasis())
        } else {
            base
        };
        out.push(Span::styled(piece, st));
        if room == 0 {
            break;
        }
    }
    Line::from(out)
}

pub fn render(f: &mut Frame, area: Rect, st: &State, theme: &Theme) {
    let d = &st.diff;
    let nodes = st.diff_nodes();
    let mode = format!(
        "{} · {}",
        if d.raw { "raw" } else { "normalized" },
        if d.side_by_side {
            "side by side"
        } else {
            "unified"
        }
    );
    let block = pane_block(Pane::Diff, st, theme, &mode);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [head, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);

    let node_line = match nodes.get(d.node.min(nodes.len().saturating_sub(1))) {
        Some((role, b, p)) => Line::from(vec![
            Span::styled("node ", theme.dim()),
            Span::styled(role.clone(), theme.title()),
            Span::styled(format!(": {b} ↔ {p}"), theme.dim()),
            Span::styled(
                format!("  ({}/{})", d.node.min(nodes.len() - 1) + 1, nodes.len()),
                theme.dim(),
            ),
            if d.pending.is_some() {
                Span::styled("  computing…", theme.running())
            } else {
                Span::raw("")
            },
        ]),
        None => Line::styled("waiting for rule dumps from both clusters", theme.dim()),
    };
    f.render_widget(Paragraph::new(node_line), head);

    if let Some(e) = &d.error {
        f.render_widget(
            Paragraph::new(Line::styled(format!("✗ {e}"), theme.bad())),
            body,
        );
        return;
    }
    let Some(c) = &d.result else {
        let mut errs: Vec<Line> = Vec::new();
        for side in &st.sides {
            for l in crate::ui::error_lines(side, "diff", body.width as usize, 2, theme) {
                if !errs.contains(&l) {
                    errs.push(l);
                }
            }
        }
        f.render_widget(Paragraph::new(errs), body);
        return;
    };
    if c.services.is_empty() {
        let msg = format!("no rules for {} in these dumps", st.service());
        f.render_widget(Paragraph::new(Line::styled(msg, theme.warn())), body);
        return;
    }
    let all = lines(c, d.side_by_side, st.filter(Pane::Diff));
    let h = body.height as usize;
    let top = d.scroll.min(all.len().saturating_sub(h.max(1)));
    let visible = &all[top..(top + h).min(all.len())];
    if d.side_by_side {
        let [l, r] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .areas(body);
        let w = l.width.saturating_sub(1) as usize;
        let (mut left, mut right) = (Vec::new(), Vec::new());
        for dl in visible {
            match &dl.right {
                Some(rh) => {
                    left.push(spans(&dl.left, d.hscroll, w, theme));
                    right.push(spans(rh, d.hscroll, w, theme));
                }
                None => {
                    left.push(spans(&dl.left, d.hscroll, w, theme));
                    right.push(Line::raw(""));
                }
            }
        }
        f.render_widget(Paragraph::new(left), l);
        f.render_widget(Paragraph::new(right), r);
    } else {
        let w = body.width as usize;
        let out: Vec<Line> = visible
            .iter()
            .map(|dl| spans(&dl.left, d.hscroll, w, theme))
            .collect();
        f.render_widget(Paragraph::new(out), body);
    }
}
