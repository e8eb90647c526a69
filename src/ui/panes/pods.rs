//! Pods pane: per cluster, the test pods (node, network, IP, phase, restarts) and the
//! LoadBalancer Service.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use crate::app::{Pane, State};
use crate::backend::event::Side;
use crate::ui::{Theme, layout, pane_block, side_heading};

pub fn render(f: &mut Frame, area: Rect, st: &State, theme: &Theme) {
    let block = pane_block(Pane::Pods, st, theme, "");
    let inner = block.inner(area);
    f.render_widget(block, area);
    let filter = st.filter(Pane::Pods);
    for (side, rect) in Side::BOTH.into_iter().zip(layout::sides(inner)) {
        let s = st.side(side);
        let [head, svc, table] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Min(0),
        ])
        .areas(rect);
        let which = if side == Side::Base { "base" } else { "PR" };
        f.render_widget(Paragraph::new(side_heading(s.name(), which, theme)), head);
        let svc_line = match &s.service {
            Some(sv) => {
                let mut spans = vec![
                    Span::styled("svc ", theme.dim()),
                    Span::raw(sv.name.clone()),
                    Span::styled(" LB ", theme.dim()),
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
            None => Line::styled("svc: not deployed", theme.dim()),
        };
        f.render_widget(Paragraph::new(svc_line), svc);
        let rows: Vec<Row> = s
            .pods
            .values()
            .filter(|p| filter.is_empty() || p.name.contains(filter) || p.node.contains(filter))
            .skip(st.scroll[Pane::Pods.index()])
            .map(|p| {
                let phase_style = match p.phase.as_str() {
                    "Running" => theme.ok(),
                    "Pending" => theme.warn(),
                    _ => theme.bad(),
                };
                Row::new(vec![
                    Cell::from(p.name.clone()),
                    Cell::from(p.node.clone()),
                    Cell::from(if p.host_network { "host" } else { "overlay" }),
                    Cell::from(p.ip.clone().unwrap_or_else(|| "-".into())),
                    Cell::from(Span::styled(p.phase.clone(), phase_style)),
                    Cell::from(p.restarts.to_string()),
                ])
            })
            .collect();
        let t = Table::new(
            rows,
            [
                Constraint::Fill(3),
                Constraint::Fill(2),
                Constraint::Length(7),
                Constraint::Length(15),
                Constraint::Length(8),
                Constraint::Length(3),
            ],
        )
        .header(Row::new(["POD", "NODE", "NET", "IP", "PHASE", "RS"]).style(theme.dim()));
        f.render_widget(t, table);
    }
}
