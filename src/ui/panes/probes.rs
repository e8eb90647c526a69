//! Probes pane: per cluster, source pod x target with the result, what the rules predict, HTTP
//! status, latency, a short history and the expected outcome. Results that differ between base
//! and PR stand out, and so do predictions an observed or expected outcome contradicts (`!`,
//! `✎`). A cursor selects a row; Enter shows its paths (see [`super::paths`]).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use crate::app::State;
use crate::app::state::{ProbeCell, ProbeCursor};
use crate::model::Pane;
use crate::model::{Outcome, Side};
use crate::ui::columns::{self, Col};
use crate::ui::{Theme, area, pane_block, side_heading, spinner};

pub fn render(f: &mut Frame, area: Rect, st: &State, theme: &Theme) {
    let block = pane_block(Pane::Probes, st, theme, &format!("target {}", st.target()));
    let inner = block.inner(area);
    f.render_widget(block, area);
    // A heading and the table's header above the rows.
    let top = first_row(st, inner.height.saturating_sub(2) as usize);
    for (side, rect) in Side::BOTH.into_iter().zip(area::sides(inner)) {
        let s = st.side(side);
        let [head, table] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(rect);
        let which = side.label();
        let mut h = side_heading(s.name(), which, theme);
        if s.probes_running {
            h.spans.push(Span::styled(
                format!(" {} probing", spinner(st.frame)),
                theme.running(),
            ));
        }
        // The connections held across the side's last change: under its rows in the rows
        // they leave, else (none left) in its heading.
        let shown = st.probe_rows(side).len().saturating_sub(top) as u16 + 1;
        let held_rows = super::held::height(s, table.width, theme);
        let held_rows = held_rows.min(table.height.saturating_sub(shown));
        if held_rows == 0 {
            h.spans.extend(super::held::heading(s, theme));
        }
        f.render_widget(Paragraph::new(h), head);
        let [table, held, _] = Layout::vertical([
            Constraint::Length(shown.min(table.height.saturating_sub(held_rows))),
            Constraint::Length(held_rows),
            Constraint::Min(0),
        ])
        .areas(table);
        super::held::render(f, held, s, theme);
        let narrow = rect.width < 64;
        let probes: Vec<Probe> = st.probe_rows(side).into_iter().skip(top).collect();
        let history = if narrow { 4 } else { 8 };
        // PREDICT with the chain that decided a drop where that costs no other column, else
        // the verdict alone.
        let full = columns_of(st, side, &probes, history, false);
        let short = columns_of(st, side, &probes, history, true);
        let (kept, widths) = columns::fit(&full, table.width);
        let (kept_short, widths_short) = columns::fit(&short, table.width);
        let compact = kept_short.len() > kept.len() || !kept.contains(&PREDICT);
        let (cols, kept, widths) = match compact {
            true => (short, kept_short, widths_short),
            false => (full, kept, widths),
        };
        let name_w = columns::first_width(&widths);
        let selected = cursor(st).filter(|c| c.side == side).map(|c| c.row);
        let rows: Vec<Row> = probes
            .iter()
            .enumerate()
            .map(|(i, (key, cell))| {
                let cells = row(
                    st,
                    side,
                    key,
                    cell,
                    history as usize,
                    name_w,
                    compact,
                    theme,
                );
                let r = Row::new(columns::pick(cells, &kept));
                match selected == Some(top + i) {
                    true => r.style(theme.selected()),
                    false => r,
                }
            })
            .collect();
        let header = columns::pick(cols.iter().map(|c| c.header).collect(), &kept);
        let errors = crate::ui::error_lines(s, Pane::Probes, table.width as usize, 1, theme);
        if rows.is_empty() && !errors.is_empty() {
            f.render_widget(Paragraph::new(errors), table);
            continue;
        }
        let t = Table::new(rows, widths).header(Row::new(header).style(theme.dim()));
        f.render_widget(t, table);
    }
}

type Probe<'a> = (&'a (String, String), &'a ProbeCell);

/// The index of the PREDICT column.
const PREDICT: usize = 2;

/// The cursor, when it shows: while the pane is focused, or a probe's paths are open.
fn cursor(st: &State) -> Option<ProbeCursor> {
    (st.focus == Some(Pane::Probes) || st.paths.is_some()).then_some(st.probe_cursor)
}

/// The first row shown when `rows` fit: where the pane is scrolled to, moved as far as needed
/// to show the cursor's row.
fn first_row(st: &State, rows: usize) -> usize {
    let top = st.scroll[Pane::Probes.index()];
    match cursor(st) {
        Some(c) => {
            let n = st.probe_rows(c.side).len();
            let row = c.row.min(n.saturating_sub(1));
            top.min(row).max((row + 1).saturating_sub(rows.max(1)))
        }
        None => top,
    }
}

/// The table's columns, sized from the probes it shows (`history` outcomes kept; PREDICT as
/// the verdict alone when `compact`).
fn columns_of(st: &State, side: Side, probes: &[Probe], history: u16, compact: bool) -> [Col; 7] {
    let name = probes
        .iter()
        .map(|((src, _), c)| source_name(st, side, src, c).chars().count())
        .max()
        .unwrap_or(0);
    let predict = probes
        .iter()
        .map(|(k, c)| predict_text(st, side, k, c, compact).0.chars().count())
        .max()
        .unwrap_or(0);
    [
        Col {
            header: "SOURCE",
            want: name as u16,
            drop: None,
        },
        Col {
            header: "RESULT",
            want: 9,
            drop: None,
        },
        Col {
            header: "PREDICT",
            want: predict as u16,
            drop: Some(4),
        },
        Col {
            header: "HTTP",
            want: 4,
            drop: Some(2),
        },
        Col {
            header: "LATENCY",
            want: 7,
            drop: Some(3),
        },
        Col {
            header: "HISTORY",
            want: history,
            drop: Some(1),
        },
        Col {
            header: "EXPECT",
            want: 9,
            drop: None,
        },
    ]
}

/// What the pane needs to show its content: one side's table width with its names whole and
/// with every column, and the rows of the longer side (probes, a heading, a table header).
pub fn needs(st: &State) -> ((u16, u16), u16) {
    let mut w = (0, 0);
    let mut rows = 1;
    for side in Side::BOTH {
        let s = st.side(side);
        let probes: Vec<Probe> = s.probes.iter().collect();
        // PREDICT counts as needed here (the layout gives it room: a stacked screen rather
        // than a left column without it), though a table too narrow still drops it.
        // (Its verdict alone, as a narrow table shows it.)
        let mut cols = columns_of(st, side, &probes, 8, true);
        cols[2].drop = None;
        let (min, _) = columns::needs(&cols);
        let (_, full) = columns::needs(&columns_of(st, side, &probes, 8, false));
        w = (w.0.max(min), w.1.max(full));
        rows = rows.max(probes.len() as u16);
    }
    // The held connections' sections, wrapped at the table's full width.
    let theme = Theme::new(false);
    let rows = Side::BOTH
        .into_iter()
        .map(|side| {
            let s = st.side(side);
            s.probes.len() as u16 + super::held::height(s, w.1, &theme)
        })
        .fold(rows, u16::max);
    (w, rows + 2)
}

/// Marks on a prediction: where the observed outcome contradicts it, and where the expected.
pub const MARK_OBSERVED: char = '!';
pub const MARK_EXPECTED: char = '✎';

/// A probe's PREDICT cell: the prediction's label (its verdict alone when `compact`) and its
/// marks, and whether it has any; `?` without a prediction (the paths view says why).
pub fn predict_text(
    st: &State,
    side: Side,
    key: &(String, String),
    cell: &ProbeCell,
    compact: bool,
) -> (String, bool) {
    let Some(Ok(p)) = st.side(side).predictions.get(key) else {
        return ("?".into(), false);
    };
    let mut text = match compact {
        true => p.outcome.verdict.name().to_string(),
        // The chain's name is the dump's.
        false => crate::rules::render::visible(&p.label()).into_owned(),
    };
    let observed = p.contradicts(cell.last.outcome);
    let expected = st
        .expected(side, &key.0, &st.target_of(&cell.last))
        .is_some_and(|e| p.contradicts(e));
    if observed || expected {
        text.push(' ');
    }
    if observed {
        text.push(MARK_OBSERVED);
    }
    if expected {
        text.push(MARK_EXPECTED);
    }
    (text, observed || expected)
}

/// A probe's cells: source, result, prediction, HTTP status, latency, the last `keep` outcomes,
/// expected.
#[allow(clippy::too_many_arguments)]
fn row<'a>(
    st: &State,
    side: Side,
    key: &(String, String),
    cell: &ProbeCell,
    keep: usize,
    name_w: usize,
    compact: bool,
    theme: &Theme,
) -> Vec<Cell<'a>> {
    let src = key.0.as_str();
    let r = &cell.last;
    let differs = st.differs(side, src, r);
    let style = if differs {
        theme.differs()
    } else if r.outcome == Outcome::Ok {
        theme.ok()
    } else {
        theme.bad()
    };
    let hist = history(st, side, cell, keep);
    let aim = st.target_of(r);
    let expected = st.expected(side, src, &aim);
    let exp = match expected {
        Some(e) if e.met_by(r.outcome) => Span::styled(format!("{} ✓", e.label()), theme.ok()),
        Some(e) => Span::styled(format!("{} ✗", e.label()), theme.bad()),
        None => Span::styled("-".to_string(), theme.dim()),
    };
    let name = source_name(st, side, src, cell);
    let label = if differs {
        format!("{} ≠", r.outcome.label())
    } else {
        r.outcome.label().to_string()
    };
    let predict = match predict_text(st, side, key, cell, compact) {
        (t, true) => Span::styled(t, theme.surprise()),
        (t, false) if t == "?" => Span::styled(t, theme.dim()),
        (t, false) => Span::raw(t),
    };
    vec![
        Cell::from(columns::middle(&name, name_w)),
        Cell::from(Span::styled(label, style)),
        Cell::from(predict),
        Cell::from(r.http_status.map_or("-".into(), |s| s.to_string())),
        Cell::from(r.latency_ms.map_or("-".into(), |l| format!("{l}ms"))),
        Cell::from(Span::styled(hist, theme.dim())),
        Cell::from(exp),
    ]
}

/// A probe's source as its row names it; with several targets a source has a row per target,
/// and the row says which.
fn source_name(st: &State, side: Side, src: &str, cell: &ProbeCell) -> String {
    let short = st.side(side).short(src);
    match st.session.as_ref().is_some_and(|s| s.targets().len() > 1) {
        true => format!("{short} → {}", st.target_of(&cell.last)),
        false => short,
    }
}

/// A probe's last outcomes, oldest first, at most `keep` characters: `│` stands between two
/// outcomes where that side's rules changed (a timeline entry), so a flip lines up with the
/// rule change that came before it.
pub fn history(st: &State, side: Side, cell: &ProbeCell, keep: usize) -> String {
    let changed_between = |from, to| {
        st.timeline
            .entries
            .iter()
            .any(|c| c.side == side && c.at > from && c.at <= to)
    };
    let mut out: Vec<char> = Vec::with_capacity(cell.history.len() * 2);
    let mut prev: Option<std::time::Duration> = None;
    for &(at, o) in &cell.history {
        if prev.is_some_and(|p| changed_between(p, at)) {
            out.push('│');
        }
        out.push(match o {
            Outcome::Ok => '●',
            Outcome::Fail => '✗',
            Outcome::Timeout => '○',
            Outcome::Flaky => '◐',
        });
        prev = Some(at);
    }
    out[out.len().saturating_sub(keep)..].iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::event::ProbeResult;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_flip_lines_up_with_the_rule_change_before_it() {
        let mut st = State::default();
        let secs = Duration::from_secs;
        let cell = ProbeCell {
            last: ProbeResult::bare("a", "lb", Outcome::Fail),
            history: [
                (1, Outcome::Ok),
                (6, Outcome::Ok),
                (11, Outcome::Fail),
                (16, Outcome::Fail),
            ]
            .into_iter()
            .map(|(t, o)| (secs(t), o))
            .collect(),
        };
        assert_eq!(history(&st, Side::Pr, &cell, 8), "●●✗✗");
        let (before, after): (Arc<str>, Arc<str>) = ("-A X -j A\n".into(), "-A X -j B\n".into());
        // The PR side's rules changed at 9 s; the base side's at 3 s counts only for base.
        st.timeline
            .record(secs(9), Side::Pr, "pr-worker", &before, &after);
        st.timeline
            .record(secs(3), Side::Base, "base-worker", &before, &after);
        assert_eq!(history(&st, Side::Pr, &cell, 8), "●●│✗✗");
        assert_eq!(history(&st, Side::Base, &cell, 8), "●│●✗✗");
        // Narrow: the newest characters, markers included, stay within `keep`.
        assert_eq!(history(&st, Side::Pr, &cell, 3), "│✗✗");
    }
}
