//! Pods pane: per cluster, the test pods (node, network, IP, phase, restarts) and the
//! LoadBalancer Service.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use crate::app::State;
use crate::app::state::SideState;
use crate::backend::event::PodInfo;
use crate::model::Pane;
use crate::model::{PodPhase, Side};
use crate::ui::columns::{self, Col};
use crate::ui::{Theme, area, pane_block, side_heading};

pub fn render(f: &mut Frame, area: Rect, st: &State, theme: &Theme) {
    let block = pane_block(Pane::Pods, st, theme, "");
    let inner = block.inner(area);
    f.render_widget(block, area);
    for (side, rect) in Side::BOTH.into_iter().zip(area::sides(inner)) {
        let s = st.side(side);
        let [head, table] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(rect);
        let which = side.label();
        let mut heading = side_heading(s.name(), which, theme);
        let svc_line = match &s.service {
            Some(sv) => {
                let mut spans = vec![
                    Span::styled(" · svc ", theme.dim()),
                    Span::raw(sv.name.clone()),
                    Span::styled(" ", theme.dim()),
                    match &sv.lb_ip {
                        Some(ip) => Span::styled(format!("{ip}:{}", sv.port), theme.ok()),
                        None => Span::styled("<pending>".to_string(), theme.warn()),
                    },
                ];
                if let Some(p) = &sv.external_traffic_policy {
                    spans.push(Span::styled(format!(" eTP={p}"), theme.dim()));
                }
                if let Some(w) = &sv.warning {
                    spans.push(Span::styled(format!(" ⚠ {w}"), theme.warn()));
                }
                Line::from(spans)
            }
            None => Line::styled(" · svc not deployed", theme.dim()),
        };
        heading.spans.extend(svc_line.spans);
        f.render_widget(Paragraph::new(heading), head);
        let pods: Vec<_> = visible(st, side);
        let cols = columns_of(s, &pods);
        let (kept, widths) = columns::fit(&cols, table.width);
        let name_w = columns::first_width(&widths);
        let rows: Vec<Row> = pods
            .iter()
            .map(|p| {
                let phase_style = match p.phase {
                    PodPhase::Running | PodPhase::Succeeded => theme.ok(),
                    PodPhase::Pending => theme.warn(),
                    _ => theme.bad(),
                };
                let cells = vec![
                    Cell::from(columns::middle(&s.short(&p.name), name_w)),
                    Cell::from(s.short(&p.node)),
                    Cell::from(if p.host_network { "host" } else { "pod" }),
                    Cell::from(p.ip.clone().unwrap_or_else(|| "-".into())),
                    Cell::from(Span::styled(p.phase.to_string(), phase_style)),
                    Cell::from(p.restarts.to_string()),
                ];
                Row::new(columns::pick(cells, &kept))
            })
            .collect();
        let header = columns::pick(cols.iter().map(|c| c.header).collect(), &kept);
        let errors = crate::ui::error_lines(s, Pane::Pods, table.width as usize, 1, theme);
        if rows.is_empty() && !errors.is_empty() {
            f.render_widget(Paragraph::new(errors), table);
            continue;
        }
        let t = Table::new(rows, widths).header(Row::new(header).style(theme.dim()));
        f.render_widget(t, table);
    }
}

/// The pods a side shows: filtered, scrolled.
fn visible(st: &State, side: Side) -> Vec<&PodInfo> {
    let filter = st.filter(Pane::Pods);
    st.side(side)
        .pods
        .values()
        .filter(|p| filter.is_empty() || p.name.contains(filter) || p.node.contains(filter))
        .skip(st.scroll[Pane::Pods.index()])
        .collect()
}

/// The table's columns, sized from the pods it shows.
fn columns_of(s: &SideState, pods: &[&PodInfo]) -> [Col; 6] {
    let width = |f: &dyn Fn(&PodInfo) -> usize| pods.iter().map(|p| f(p)).max().unwrap_or(0) as u16;
    [
        Col {
            header: "POD",
            want: width(&|p| s.short(&p.name).chars().count()),
            drop: None,
        },
        Col {
            header: "NODE",
            want: width(&|p| s.short(&p.node).chars().count()),
            drop: Some(3),
        },
        Col {
            header: "NET",
            want: 4,
            drop: Some(2),
        },
        Col {
            header: "IP",
            want: width(&|p| p.ip.as_ref().map_or(1, |i| i.len())),
            drop: Some(4),
        },
        Col {
            header: "PHASE",
            want: 11,
            drop: None,
        },
        Col {
            header: "RESTARTS",
            want: 2,
            drop: Some(1),
        },
    ]
}

/// What the pane needs to show its content: the width of one side's table with its names whole
/// and with every column, and the rows of the longer side (pods, a heading and a table header).
pub fn needs(st: &State) -> ((u16, u16), u16) {
    let mut w = (0, 0);
    let mut rows = 1;
    for side in Side::BOTH {
        let s = st.side(side);
        let pods: Vec<&PodInfo> = s.pods.values().collect();
        let (min, full) = columns::needs(&columns_of(s, &pods));
        w = (w.0.max(min), w.1.max(full));
        rows = rows.max(pods.len() as u16);
    }
    (w, rows + 2)
}
