//! Pods pane: per cluster, the test pods (node, network, IP, phase, restarts) and the
//! LoadBalancer Service.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use crate::app::State;
use crate::model::Pane;
use crate::model::{PodPhase, Side};
use crate::ui::columns::{self, Col};
use crate::ui::{Theme, layout, pane_block, side_heading};

pub fn render(f: &mut Frame, area: Rect, st: &State, theme: &Theme) {
    let block = pane_block(Pane::Pods, st, theme, "");
    let inner = block.inner(area);
    f.render_widget(block, area);
    let filter = st.filter(Pane::Pods);
    for (side, rect) in Side::BOTH.into_iter().zip(layout::sides(inner)) {
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
        let pods: Vec<_> = s
            .pods
            .values()
            .filter(|p| filter.is_empty() || p.name.contains(filter) || p.node.contains(filter))
            .skip(st.scroll[Pane::Pods.index()])
            .collect();
        let width = |f: &dyn Fn(&crate::backend::event::PodInfo) -> usize| {
            pods.iter().map(|p| f(p)).max().unwrap_or(0) as u16
        };
        let cols = [
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
        ];
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
