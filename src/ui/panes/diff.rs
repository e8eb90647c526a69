//! Diff pane: the Service's rules, base vs PR, chain by chain, from the rule engine. Unified or
//! side by side, normalized or raw, word-level emphasis inside changed rules, scrollable.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::State;
use crate::app::diffs::{DLine, Half, Kind, packet_lines};
use crate::app::state::DiffView;
use crate::model::Pane;
use crate::rules::packets::Summary;
use crate::rules::render::visible;
use crate::ui::{Theme, pane_block};

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
    let strip = !st.timeline.entries.is_empty();
    // Live, a node pair whose kube-proxy modes are not the scenario's (or differ): a line of
    // its own, never cut off by the node line.
    let modes = match (d.step, d.pair()) {
        (None, Some(p)) => st.mode_note(p),
        _ => None,
    };
    // Nodes that have no kube-proxy rules at all (no dump, so in no pair): never compared,
    // said plainly.
    let bare = no_rules_note(st);
    let groups = st.diff.step.is_none() && d.groups.active();
    let rows = 1
        + u16::from(groups)
        + u16::from(strip)
        + u16::from(modes.is_some())
        + u16::from(bare.is_some());
    let [head, body] =
        Layout::vertical([Constraint::Length(rows), Constraint::Min(0)]).areas(inner);
    let mut top = vec![match st.diff.step {
        Some(id) => step_line(st, id, theme),
        None => node_line(st, theme),
    }];
    if groups {
        top.push(outliers_line(st, head.width as usize, theme));
    }
    if let Some(m) = modes {
        let text = crate::ui::clip(&format!("⚠ {m}"), 0, head.width as usize);
        top.push(Line::styled(text, theme.warn()));
    }
    if let Some(b) = bare {
        top.push(Line::styled(
            crate::ui::clip(&b, 0, head.width as usize),
            theme.warn(),
        ));
    }
    if strip {
        top.push(strip_line(st, head.width as usize, theme));
    }
    f.render_widget(Paragraph::new(top), head);

    if let Some(e) = &d.error {
        f.render_widget(
            Paragraph::new(Line::styled(format!("✗ {e}"), theme.bad())),
            body,
        );
        return;
    }
    let Some(c) = &d.result else {
        let mut errs: Vec<Line> = Vec::new();
        for (_, side) in st.sides.iter() {
            for l in crate::ui::error_lines(side, Pane::Diff, body.width as usize, 2, theme) {
                if !errs.contains(&l) {
                    errs.push(l);
                }
            }
        }
        f.render_widget(Paragraph::new(errs), body);
        return;
    };
    // What changed for the Service's packets heads the rules.
    let body = match &c.packets {
        Some(p) => packets_heading(f, body, p, theme),
        None => body,
    };
    // What was not compared (tables only one side listed, rules in built-in chains that are
    // not kube-proxy's): said here, a line each, the first few.
    let notes: Vec<Line> = (c.comparison.tables_note().into_iter())
        .chain(c.comparison.notes.iter().cloned())
        .take(NOTES_SHOWN)
        .map(|n| Line::styled(crate::rules::render::visible(&n).into_owned(), theme.warn()))
        .collect();
    let body = if notes.is_empty() {
        body
    } else {
        let [n, rest] =
            Layout::vertical([Constraint::Length(notes.len() as u16), Constraint::Min(0)])
                .areas(body);
        f.render_widget(Paragraph::new(notes), n);
        rest
    };
    if c.comparison.services.is_empty() {
        let svc = st.service().map_or(String::new(), |s| s.to_string());
        let msg = format!("no rules for {svc} in these dumps");
        f.render_widget(Paragraph::new(Line::styled(msg, theme.warn())), body);
        return;
    }
    body_lines(f, body, &c.lines, st, theme);
}

/// The packet summary's lines at the top of `body`; what is left of it below.
fn packets_heading(f: &mut Frame, body: Rect, s: &Summary, theme: &Theme) -> Rect {
    let style = if s.equal() {
        theme.dim()
    } else {
        theme.differs()
    };
    let w = body.width as usize;
    let lines: Vec<Line> = packet_lines(s)
        .iter()
        .map(|l| Line::styled(crate::ui::clip(l, 0, w), style))
        .collect();
    let n = (lines.len() as u16).min(body.height);
    let [top, rest] = Layout::vertical([Constraint::Length(n), Constraint::Min(0)]).areas(body);
    f.render_widget(Paragraph::new(lines), top);
    rest
}

/// At most this many notes above the rules (the text and JSON output list them all).
const NOTES_SHOWN: usize = 3;

/// "m:ss" of a session time.
fn clock(d: std::time::Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

/// The timeline entry shown: which change, of how many, on which node, and how to go on.
fn step_line<'a>(st: &State, id: u64, theme: &Theme) -> Line<'a> {
    let n = st.timeline.entries.len();
    let Some((i, c)) = st.timeline.by_id(id) else {
        return Line::styled(
            "that rule change is no longer kept: ] for live",
            theme.warn(),
        );
    };
    let name = st.side(c.side).name().to_string();
    Line::from(vec![
        Span::styled(format!("change {}/{n} ", i + 1), theme.title()),
        Span::styled(format!("at {} ", clock(c.at)), theme.dim()),
        Span::raw(format!("{name} ({}) {}: ", c.side.label(), c.node)),
        Span::styled(format!("+{}", c.added), theme.added()),
        Span::raw(" "),
        Span::styled(format!("-{}", c.removed), theme.removed()),
        Span::styled("  before → after · [ older · ] newer / live", theme.dim()),
        if st.diff.pending.is_some() {
            Span::styled("  computing…", theme.running())
        } else {
            Span::raw("")
        },
    ])
}

/// The latest rule changes, newest first, as far as the line goes.
fn strip_line<'a>(st: &State, width: usize, theme: &Theme) -> Line<'a> {
    let mut spans = vec![Span::styled("changes ", theme.dim())];
    let mut used = 8;
    for c in st.timeline.entries.iter().rev() {
        let short = st.side(c.side).short(&c.node);
        let item = format!(
            "{} {} {short} +{} -{}  ",
            clock(c.at),
            c.side.label(),
            c.added,
            c.removed
        );
        let n = item.chars().count();
        if used + n > width {
            break;
        }
        used += n;
        let style = if st.diff.step == Some(c.id) {
            theme.differs()
        } else {
            Style::default()
        };
        spans.push(Span::styled(item, style));
    }
    Line::from(spans)
}

/// "⚠ no kube-proxy rules, not compared: staging-worker2": the nodes a backend said have no
/// kube-proxy rules at all (they have no dump).
fn no_rules_note(st: &State) -> Option<String> {
    let names: Vec<&str> = st
        .sides
        .iter()
        .flat_map(|(_, s)| {
            s.no_rules
                .iter()
                .filter(|n| !s.dumps.contains_key(*n))
                .map(String::as_str)
        })
        .collect();
    if names.is_empty() {
        return None;
    }
    let names = crate::rules::render::visible(&names.join(", ")).into_owned();
    Some(format!("⚠ no kube-proxy rules, not compared: {names}"))
}

/// Which node pair is shown, of how many.
/// Group mode's second line: the nodes compared for the groups shown, and each side's
/// outliers (nodes whose rules no other node of their role has).
fn outliers_line<'a>(st: &State, width: usize, theme: &Theme) -> Line<'a> {
    use crate::model::Side;
    let d = &st.diff;
    let mut text = match d.pair() {
        Some(p) => format!("compared: {} ↔ {}", p.base, p.pr),
        None => String::new(),
    };
    let list = |s: Side| {
        let names: Vec<&str> = d.groups.outliers(s).map(|g| g.label.as_str()).collect();
        match names.len() {
            0 => "none".to_string(),
            n => format!("{n} ({})", names.join(", ")),
        }
    };
    text.push_str(&format!(
        " · outliers: base {}, PR {}",
        list(Side::Base),
        list(Side::Pr)
    ));
    Line::styled(crate::ui::clip(&visible(&text), 0, width), theme.dim())
}

fn node_line<'a>(st: &State, theme: &Theme) -> Line<'a> {
    let d = &st.diff;
    let Some(pair) = d.pair() else {
        return Line::styled("waiting for rule dumps from both clusters", theme.dim());
    };
    if let Some((b, p)) = d.group_pair() {
        let n = d.pairs.len();
        return Line::from(vec![
            Span::styled("base ", theme.dim()),
            Span::styled(visible(&b.title()).into_owned(), theme.title()),
            Span::styled(" ↔ PR ", theme.dim()),
            Span::styled(visible(&p.title()).into_owned(), theme.title()),
            Span::styled(format!("  ({}/{n})", d.node.min(n - 1) + 1), theme.dim()),
            if d.pending.is_some() {
                Span::styled("  computing…", theme.running())
            } else {
                Span::raw("")
            },
        ]);
    }
    let n = d.pairs.len();
    let empty: Vec<&str> = [(&st.sides.base, &pair.base), (&st.sides.pr, &pair.pr)]
        .into_iter()
        .filter(|(s, node)| s.no_rules.contains(*node))
        .map(|(_, node)| node.as_str())
        .collect();
    let note = if empty.is_empty() {
        Span::raw("")
    } else {
        Span::styled(
            format!(
                "  ⚠ no kube-proxy rules on {} (is kube-proxy running?)",
                empty.join(", ")
            ),
            theme.warn(),
        )
    };
    Line::from(vec![
        Span::styled("node ", theme.dim()),
        Span::styled(pair.role.clone(), theme.title()),
        Span::styled(format!(": {} ↔ {}", pair.base, pair.pr), theme.dim()),
        Span::styled(format!("  ({}/{n})", d.node.min(n - 1) + 1), theme.dim()),
        if d.pending.is_some() {
            Span::styled("  computing…", theme.running())
        } else {
            Span::raw("")
        },
        note,
    ])
}

/// The rows one half of a display line takes in `width` columns. Scrolling sideways: one row
/// from column `from`, a `←` where text is hidden on the left and a `→` where more follows.
/// Wrapping: the whole text, continuation rows marked `↳`.
fn rows<'a>(h: &Half, d: &DiffView, width: usize, theme: &Theme) -> Vec<Line<'a>> {
    let n = h.text.chars().count();
    if width < 4 {
        return vec![spans(h, 0, width, theme)];
    }
    if !d.wrap {
        let from = d.hscroll.min(n);
        let left = from > 0 && n > 0;
        let right = n > from + width - usize::from(left);
        let take = width - usize::from(left) - usize::from(right);
        let mut line = spans(h, from, take, theme);
        if left {
            line.spans.insert(0, Span::styled("←", theme.dim()));
        }
        if right {
            line.spans.push(Span::styled("→", theme.dim()));
        }
        return vec![line];
    }
    let mut out = vec![spans(h, 0, width, theme)];
    let mut at = width;
    while at < n {
        let mut line = spans(h, at, width - 2, theme);
        line.spans.insert(0, Span::styled("↳ ", theme.dim()));
        out.push(line);
        at += width - 2;
    }
    out
}

/// The lines shown: all, or without the dump lines under changed rules.
fn shown<'a>(all: &'a [DLine], d: &DiffView) -> Vec<&'a DLine> {
    all.iter()
        .filter(|dl| !(d.hide_origin && dl.left.kind == Kind::Raw))
        .collect()
}

/// The visible part of the display lines (built once per result, not per frame), from the
/// scroll position down as far as the pane goes.
fn body_lines(f: &mut Frame, body: Rect, all: &[DLine], st: &State, theme: &Theme) {
    let d = &st.diff;
    let h = body.height as usize;
    let lines = shown(all, d);
    let top = d.scroll.min(lines.len().saturating_sub(h.max(1)));
    let (mut left, mut right) = (Vec::new(), Vec::new());
    let halves = if d.side_by_side {
        let [l, r] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .areas(body);
        Some((l, r))
    } else {
        None
    };
    let w = match halves {
        Some((l, _)) => l.width.saturating_sub(1) as usize,
        None => body.width as usize,
    };
    for dl in lines.iter().skip(top) {
        if left.len() >= h {
            break;
        }
        let mut l = rows(&dl.left, d, w, theme);
        let mut r = match (&dl.right, halves) {
            (Some(rh), Some(_)) => rows(rh, d, w, theme),
            _ => Vec::new(),
        };
        let n = l.len().max(r.len());
        l.resize(n, Line::raw(""));
        r.resize(n, Line::raw(""));
        left.extend(l);
        right.extend(r);
    }
    left.truncate(h);
    right.truncate(h);
    match halves {
        Some((l, r)) => {
            f.render_widget(Paragraph::new(left), l);
            f.render_widget(Paragraph::new(right), r);
        }
        None => f.render_widget(Paragraph::new(left), body),
    }
}
