//! The `m` overlay: kube-proxy's own numbers per node, base and PR side by side (sync p50/p99,
//! age of the last sync, the mode's sync failures, rules), the PR's markedly worse flagged, and
//! the nodes whose metrics were not read with why.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use crate::app::State;
use crate::app::metrics::{Cell, Row, RulesFrom, SIDE_W, numbers, rows, side_head, side_title};
use crate::model::Side;
use crate::rules::render::visible;
use crate::ui::{Theme, area};

pub fn render(f: &mut Frame, area: Rect, st: &State, theme: &Theme) -> Option<()> {
    st.metrics.open.then_some(())?;
    let rows = rows(st);
    let node_w = rows
        .iter()
        .map(|r| r.node.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 24);
    let w = (node_w + 2 * SIDE_W + 7) as u16;
    let lines = lines(st, &rows, node_w, theme);
    let r = area::centered(area, w.max(60), lines.len() as u16 + 4);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" kube-proxy metrics (127.0.0.1:10249) · m/Esc close "),
        ),
        r,
    );
    Some(())
}

fn lines<'a>(st: &State, rows: &[Row], node_w: usize, theme: &Theme) -> Vec<Line<'a>> {
    let (b, p) = (st.sides.base.name(), st.sides.pr.name());
    let (tb, tp) = (
        side_title(rows, Side::Base, b),
        side_title(rows, Side::Pr, p),
    );
    let title = |a: &str, b: &str, c: &str| format!("{a:<node_w$}  {b:<SIDE_W$} │ {c}");
    let mut out = vec![
        Line::from(Span::styled(title("", &tb, &tp), theme.title())),
        Line::from(Span::styled(
            title("NODE", &side_head(), &side_head()),
            theme.title(),
        )),
    ];
    if rows.is_empty() {
        out.push(Line::raw(if st.metrics.reading {
            "no node's metrics read yet (reading…)"
        } else {
            "no node's metrics were read (no running node, or a recording made without them)"
        }));
    }
    for r in rows {
        let name: String = r.node.chars().take(node_w).collect();
        out.push(Line::raw(format!(
            "{:<node_w$}  {:<SIDE_W$} │ {}",
            visible(&name),
            numbers(r.base.as_ref()),
            numbers(r.pr.as_ref())
        )));
        if !r.worse.is_empty() {
            let words: Vec<String> = r.worse.iter().map(|w| w.words(st.latency_factor)).collect();
            out.push(Line::from(Span::styled(
                format!("{:<node_w$}  ⚠ {}", "", words.join("; ")),
                theme.warn(),
            )));
        }
    }
    let from_dump = |c: &Option<Cell>| {
        matches!(
            c,
            Some(Cell::Read {
                rules_from: Some(RulesFrom::Dump),
                ..
            })
        )
    };
    if rows.iter().any(|r| from_dump(&r.base) || from_dump(&r.pr)) {
        out.push(Line::from(Span::styled(
            "* rules counted in the node's dump (nftables mode has no rule-count metric)",
            theme.dim(),
        )));
    }
    for c in rows.iter().flat_map(|r| [&r.base, &r.pr]).flatten() {
        if let Cell::Failed { error, .. } = c {
            out.push(Line::from(Span::styled(
                format!("✗ {}", visible(error)),
                theme.bad(),
            )));
        }
    }
    out
}
