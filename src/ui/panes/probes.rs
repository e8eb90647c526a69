//! Probes pane: per cluster, source pod x target with the result, what the rules predict, HTTP
//! status, latency, a short history and the expected outcome. Results that differ between base
//! and PR stand out, and so do predictions an observed or expected outcome contradicts (`!`,
//! `✎`). A cursor selects a row; Enter shows its paths (see [`super::paths`]).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};

use crate::app::State;
use crate::app::state::{ProbeCell, ProbeCursor};
use crate::backend::event::ProbeResult;
use crate::backend::tries::{self, Judged, Quantiles, Summary, quantiles};
use crate::model::Pane;
use crate::model::{Outcome, Side};
use crate::rules::render::visible;
use crate::ui::columns::{self, Col};
use crate::ui::{Theme, area, pane_block, side_heading, spinner};

pub fn render(f: &mut Frame, area: Rect, st: &State, theme: &Theme) {
    let block = pane_block(Pane::Probes, st, theme, &format!("target {}", st.target()));
    let inner = block.inner(area);
    f.render_widget(block, area);
    // A heading and the table's header above the rows.
    let top = first_row(st, inner.height.saturating_sub(2) as usize);
    let shape = shape(st);
    for (side, rect) in Side::BOTH.into_iter().zip(area::sides(inner)) {
        let s = st.side(side);
        let [head, table] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(rect);
        let mut h = side_heading(s.name(), side.label(), theme);
        if s.probes_running {
            h.spans.push(Span::styled(
                format!(" {} probing", spinner(st.frame)),
                theme.running(),
            ));
        }
        // The connections held across the side's last change: at the foot of the side in the
        // lines its rows leave, else (none left) in its heading, before the latency (which is
        // shortened to the room left).
        let shown = st.probe_rows(side).len().saturating_sub(top) as u16 + 1;
        let held_rows = super::held::height(s, table.width, theme);
        let held_rows = held_rows.min(table.height.saturating_sub(shown));
        if held_rows == 0 {
            h.spans.extend(super::held::heading(s, theme));
        }
        let used: usize = h.spans.iter().map(|s| s.content.chars().count()).sum();
        let room = (head.width as usize).saturating_sub(used);
        h.spans.extend(latency_spans(st, side, room, theme));
        f.render_widget(Paragraph::new(h), head);
        let [table, held] =
            Layout::vertical([Constraint::Min(0), Constraint::Length(held_rows)]).areas(table);
        super::held::render(f, held, s, theme);
        let probes: Vec<Probe> = st.probe_rows(side).into_iter().skip(top).collect();
        let selected = cursor(st).filter(|c| c.side == side).map(|c| c.row);
        let chosen = selected.and_then(|r| r.checked_sub(top));
        // The lines about a repeated probe take no row's place: only lines the rows leave
        // (at most 3, wrapped).
        let spare = (table.height as usize).saturating_sub(probes.len() + 1);
        let table = match detail(st, side, &probes, chosen, theme) {
            Some(line) if spare > 0 => {
                let need = line.width().div_ceil(table.width.max(1) as usize);
                let n = need.min(spare).min(3) as u16;
                let [t, d] =
                    Layout::vertical([Constraint::Min(0), Constraint::Length(n)]).areas(table);
                f.render_widget(Paragraph::new(line).wrap(Wrap { trim: false }), d);
                t
            }
            _ => table,
        };
        let errors = crate::ui::error_lines(s, Pane::Probes, table.width as usize, 1, theme);
        if probes.is_empty() && !errors.is_empty() {
            f.render_widget(Paragraph::new(errors), table);
            continue;
        }
        let t = side_table(
            st,
            side,
            &probes,
            table.width,
            (top, selected),
            shape,
            theme,
        );
        f.render_widget(t, table);
    }
}

/// One side's table of `probes` (scrolled to `top`; `selected` the cursor's row) in `width`:
/// its columns fitted, PREDICT as the verdict alone where the chain costs another column.
fn side_table<'a>(
    st: &State,
    side: Side,
    probes: &[Probe],
    width: u16,
    (top, selected): (usize, Option<usize>),
    shape: Shape,
    theme: &Theme,
) -> Table<'a> {
    let history = if width < 64 { 4 } else { 8 };
    let full = columns_of(st, side, probes, history, false, shape);
    let short = columns_of(st, side, probes, history, true, shape);
    let (kept, widths) = columns::fit(&full, width);
    let (kept_short, widths_short) = columns::fit(&short, width);
    let compact = kept_short.len() > kept.len() || !kept.contains(&PREDICT);
    let (cols, kept, widths) = match compact {
        true => (short, kept_short, widths_short),
        false => (full, kept, widths),
    };
    let cx = RowCx {
        st,
        side,
        keep: history as usize,
        name_w: columns::first_width(&widths),
        compact,
        shape,
        theme,
    };
    let rows: Vec<Row> = probes
        .iter()
        .enumerate()
        .map(|(i, (key, cell))| {
            let r = Row::new(columns::pick(row(&cx, key, cell), &kept));
            match selected == Some(top + i) {
                true => r.style(theme.selected()),
                false => r,
            }
        })
        .collect();
    let header = columns::pick(cols.iter().map(|c| c.header).collect(), &kept);
    Table::new(rows, widths).header(Row::new(header).style(theme.dim()))
}

type Probe<'a> = (&'a (String, String), &'a ProbeCell);

/// The index of the PREDICT column.
const PREDICT: usize = 2;

/// Which columns of repeated probes show (the same on both sides): TRIES (passes/N) when a
/// probe was tried more than once, CONNECT when a try measured its connect time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    tries: bool,
    connect: bool,
}

fn shape(st: &State) -> Shape {
    let all = || {
        Side::BOTH
            .into_iter()
            .flat_map(|s| st.side(s).probes.values())
    };
    Shape {
        tries: all().any(|c| c.last.tries.len() > 1),
        connect: all().any(|c| c.last.tries.iter().any(|t| t.connect_us.is_some())),
    }
}

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
/// the verdict alone when `compact`; TRIES and CONNECT as `shape` says).
fn columns_of(
    st: &State,
    side: Side,
    probes: &[Probe],
    history: u16,
    compact: bool,
    shape: Shape,
) -> Vec<Col> {
    let widest = |f: &dyn Fn(&Probe) -> String| {
        probes
            .iter()
            .map(|p| f(p).chars().count())
            .max()
            .unwrap_or(0) as u16
    };
    let col = |header, want, drop| Col { header, want, drop };
    let mut cols = vec![
        col(
            "SOURCE",
            widest(&|((src, _), c)| source_name(st, side, src, c)),
            None,
        ),
        col("RESULT", 9, None),
        col(
            "PREDICT",
            widest(&|(k, c)| predict_text(st, side, k, c, compact).0),
            Some(4),
        ),
    ];
    if shape.tries {
        cols.push(col("TRIES", widest(&|(_, c)| passes(&c.last)), Some(3)));
    }
    cols.push(col("HTTP", 4, Some(2)));
    if shape.connect {
        let w = widest(&|(_, c)| quantiles(Summary::of(&c.last).connect));
        cols.push(col("CONNECT", w, Some(2)));
    }
    // A PR row slower than the base's is marked: room for the mark.
    let w = widest(&|(_, c)| quantiles(Summary::of(&c.last).total)) + 2;
    let total = if shape.connect { "TOTAL" } else { "LATENCY" };
    cols.push(col(total, w, Some(3)));
    cols.push(col("HISTORY", history, Some(1)));
    cols.push(col("EXPECT", 9, None));
    cols
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
        let mut cols = columns_of(st, side, &probes, 8, true, shape(st));
        cols[PREDICT].drop = None;
        let (min, _) = columns::needs(&cols);
        let (_, full) = columns::needs(&columns_of(st, side, &probes, 8, false, shape(st)));
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

/// What a row needs besides its probe.
struct RowCx<'s> {
    st: &'s State,
    side: Side,
    /// Outcomes of the history kept.
    keep: usize,
    name_w: usize,
    compact: bool,
    shape: Shape,
    theme: &'s Theme,
}

/// A probe's cells: source, result, prediction, passes/N (with `shape.tries`), HTTP status,
/// connect (with `shape.connect`) and total p50/p99, the last `keep` outcomes, expected.
fn row<'a>(cx: &RowCx, key: &(String, String), cell: &ProbeCell) -> Vec<Cell<'a>> {
    let (st, side, theme) = (cx.st, cx.side, cx.theme);
    let src = key.0.as_str();
    let r = &cell.last;
    let differs = st.differs(side, src, r);
    let style = match r.outcome {
        _ if differs => theme.differs(),
        Outcome::Ok => theme.ok(),
        Outcome::Flaky => theme.warn(),
        _ => theme.bad(),
    };
    let hist = history(st, side, cell, cx.keep);
    let name = source_name(st, side, src, cell);
    let label = if differs {
        format!("{} ≠", r.outcome.label())
    } else {
        r.outcome.label().to_string()
    };
    let predict = match predict_text(st, side, key, cell, cx.compact) {
        (t, true) => Span::styled(t, theme.surprise()),
        (t, false) if t == "?" => Span::styled(t, theme.dim()),
        (t, false) => Span::raw(t),
    };
    let sum = Summary::of(r);
    let mut cells = vec![
        Cell::from(columns::middle(&name, cx.name_w)),
        Cell::from(Span::styled(label, style)),
        Cell::from(predict),
    ];
    if cx.shape.tries {
        let s = if sum.passes < sum.tries {
            style
        } else {
            theme.dim()
        };
        cells.push(Cell::from(Span::styled(passes(r), s)));
    }
    cells.push(Cell::from(
        r.http_status.map_or("-".into(), |s| s.to_string()),
    ));
    if cx.shape.connect {
        cells.push(Cell::from(quantiles(sum.connect)));
    }
    cells.push(match row_slower(st, side, src, r) {
        true => Cell::from(Span::styled(
            format!("{} {SLOWER}", quantiles(sum.total)),
            theme.bad(),
        )),
        false => Cell::from(quantiles(sum.total)),
    });
    cells.push(Cell::from(Span::styled(hist, theme.dim())));
    cells.push(Cell::from(expect_span(cx, src, r)));
    cells
}

/// The mark of a PR row (or side) whose p99 total time is more than the latency factor times
/// the base's.
pub const SLOWER: char = '▲';

/// The EXPECT cell: the expectation (`OK≥0.99` for a rate) and how the result stands against
/// it: ✓ met, ✗ missed, ◐ flaky (tries disagree; never a pass).
fn expect_span<'a>(cx: &RowCx, src: &str, r: &ProbeResult) -> Span<'a> {
    let theme = cx.theme;
    let Some(e) = cx.st.expectation(cx.side, src, &cx.st.target_of(r)) else {
        return Span::styled("-".to_string(), theme.dim());
    };
    let label = match e.min_rate {
        Some(rate) => format!("OK≥{rate}"),
        None => e.outcome.label().to_string(),
    };
    match tries::judge(e.outcome, e.min_rate, r) {
        Judged::Met => Span::styled(format!("{label} ✓"), theme.ok()),
        Judged::Missed => Span::styled(format!("{label} ✗"), theme.bad()),
        Judged::Flaky => Span::styled(format!("{label} ◐"), theme.warn()),
    }
}

/// Whether a PR row's p99 total time is more than the latency factor times its base
/// counterpart's.
fn row_slower(st: &State, side: Side, src: &str, r: &ProbeResult) -> bool {
    if side != Side::Pr {
        return false;
    }
    let Some(base) = st.counterpart(side, src, r) else {
        return false;
    };
    match (Summary::of(&base.last).total, Summary::of(r).total) {
        (Some(b), Some(p)) => tries::slower(b, p, st.latency_factor.0),
        _ => false,
    }
}

/// passes/N: "20/30".
fn passes(r: &ProbeResult) -> String {
    let s = Summary::of(r);
    format!("{}/{}", s.passes, s.tries)
}

/// A side's latency after its heading, in `room` characters: p50/p99 of connect and total
/// times over every try that answered (as much of it as fits); the PR side's marked when its
/// p99 total is more than the latency factor times the base's.
fn latency_spans<'a>(st: &State, side: Side, room: usize, theme: &Theme) -> Vec<Span<'a>> {
    let of = |s: Side| tries::latency_of(st.side(s).probes.values().map(|c| &c.last));
    let (connect, total) = of(side);
    let Some(t) = total else {
        return Vec::new();
    };
    let flag = match (side, of(Side::Base).1) {
        (Side::Pr, Some(b)) if tries::slower(b, t, st.latency_factor.0) => {
            let ratio = t.p99_us as f64 / b.p99_us.max(1) as f64;
            let factor = st.latency_factor;
            vec![
                format!(" {SLOWER} p99 {ratio:.1}× base's (> {factor}×)"),
                format!(" {SLOWER} p99 {ratio:.1}×"),
                format!(" {SLOWER}"),
            ]
        }
        _ => vec![String::new()],
    };
    let total = quantiles(Some(t));
    let mut texts = Vec::new();
    if connect.is_some() {
        let c = quantiles(connect);
        texts.push(format!("  p50/p99 connect {c} total {total}"));
    }
    texts.push(format!("  p50/p99 total {total}"));
    texts.push(format!(
        "  p99 {}",
        quantiles(Some(Quantiles {
            p50_us: t.p99_us,
            ..t
        }))
    ));
    let len = |s: &String| s.chars().count();
    // The flag first: the longest text that leaves room for the flag, the flag as long as fits.
    for f in &flag {
        if let Some(text) = texts.iter().find(|x| len(x) + len(f) <= room) {
            return vec![
                Span::styled(text.clone(), theme.dim()),
                Span::styled(f.clone(), theme.bad()),
            ];
        }
    }
    Vec::new()
}

/// The line under a side's table about one repeated probe: the cursor's row when it was
/// tried more than once, else the first flaky row: passes, timeouts and which endpoints
/// answered (their names come from the network: shown visible only).
fn detail<'a>(
    st: &State,
    side: Side,
    probes: &[Probe],
    chosen: Option<usize>,
    theme: &Theme,
) -> Option<Line<'a>> {
    let repeated = |(_, c): &&Probe| c.last.tries.len() > 1;
    let pick = chosen
        .and_then(|i| probes.get(i))
        .filter(repeated)
        .or_else(|| {
            probes
                .iter()
                .find(|(_, c)| c.last.outcome == Outcome::Flaky)
        })?;
    let ((src, _), cell) = pick;
    let s = Summary::of(&cell.last);
    let mut text = format!(
        "{}: {}/{} answered",
        source_name(st, side, src, cell),
        s.passes,
        s.tries
    );
    if s.timeouts > 0 {
        text.push_str(&format!(", {} timed out", s.timeouts));
    }
    if let Some(spread) = s.spread() {
        let each: Vec<String> = s
            .endpoints
            .iter()
            .map(|(e, n)| format!("{} {n}", visible(&st.side(side).short(e))))
            .collect();
        text.push_str(&format!(" · {spread}: {}", each.join(", ")));
    }
    let style = match cell.last.outcome {
        Outcome::Flaky => theme.warn(),
        _ => theme.dim(),
    };
    Some(Line::styled(text, style))
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
