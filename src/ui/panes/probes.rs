//! Probes pane: per cluster, source pod x target with the result, HTTP status, latency, a short
//! history and the expected outcome. Results that differ between base and PR stand out.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use crate::app::State;
use crate::app::state::ProbeCell;
use crate::model::Pane;
use crate::model::{Outcome, Side};
use crate::ui::{Theme, layout, pane_block, side_heading, spinner};

pub fn render(f: &mut Frame, area: Rect, st: &State, theme: &Theme) {
    let block = pane_block(Pane::Probes, st, theme, &format!("target {}", st.target()));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let filter = st.filter(Pane::Probes);
    for (side, rect) in Side::BOTH.into_iter().zip(layout::sides(inner)) {
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
        f.render_widget(Paragraph::new(h), head);
        let narrow = rect.width < 64;
        let rows: Vec<Row> = s
            .probes
            .iter()
            .filter(|((src, _), _)| filter.is_empty() || src.contains(filter))
            .skip(st.scroll[Pane::Probes.index()])
            .map(|((src, target), cell)| row(st, side, src, target, cell, narrow, theme))
            .collect();
        let (widths, header): (Vec<Constraint>, Vec<&str>) = if narrow {
            (
                vec![
                    Constraint::Fill(1),
                    Constraint::Length(9),
                    Constraint::Length(6),
                    Constraint::Length(4),
                    Constraint::Length(8),
                ],
                vec!["SOURCE", "RESULT", "TIME", "LAST", "EXPECT"],
            )
        } else {
            (
                vec![
                    Constraint::Fill(1),
                    Constraint::Length(9),
                    Constraint::Length(4),
                    Constraint::Length(7),
                    Constraint::Length(8),
                    Constraint::Length(9),
                ],
                vec!["SOURCE", "RESULT", "HTTP", "LATENCY", "HISTORY", "EXPECT"],
            )
        };
        let errors = crate::ui::error_lines(s, Pane::Probes, table.width as usize, 1, theme);
        if rows.is_empty() && !errors.is_empty() {
            f.render_widget(Paragraph::new(errors), table);
            continue;
        }
        let t = Table::new(rows, widths).header(Row::new(header).style(theme.dim()));
        f.render_widget(t, table);
    }
}

fn row<'a>(
    st: &State,
    side: Side,
    src: &str,
    target: &str,
    cell: &ProbeCell,
    narrow: bool,
    theme: &Theme,
) -> Row<'a> {
    let r = &cell.last;
    let differs = st.differs(side, src, target, r.outcome);
    let style = if differs {
        theme.differs()
    } else if r.outcome == Outcome::Ok {
        theme.ok()
    } else {
        theme.bad()
    };
    let keep = if narrow { 4 } else { cell.history.len() };
    let hist: String = cell
        .history
        .iter()
        .skip(cell.history.len().saturating_sub(keep))
        .map(|o| match o {
            Outcome::Ok => '●',
            Outcome::Fail => '✗',
            Outcome::Timeout => '○',
        })
        .collect();
    let expected = st.expected(side, src);
    let exp = match expected {
        Some(e) if e.met_by(r.outcome) => Span::styled(format!("{} ✓", e.label()), theme.ok()),
        Some(e) => Span::styled(format!("{} ✗", e.label()), theme.bad()),
        None => Span::styled("-".to_string(), theme.dim()),
    };
    let label = if differs {
        format!("{} ≠", r.outcome.label())
    } else {
        r.outcome.label().to_string()
    };
    let mut cells = vec![
        Cell::from(st.side(side).short(src)),
        Cell::from(Span::styled(label, style)),
    ];
    if !narrow {
        cells.push(Cell::from(
            r.http_status.map_or("-".into(), |s| s.to_string()),
        ));
    }
    cells.push(Cell::from(
        r.latency_ms.map_or("-".into(), |l| format!("{l}ms")),
    ));
    cells.push(Cell::from(Span::styled(hist, theme.dim())));
    cells.push(Cell::from(exp));
    Row::new(cells)
}
