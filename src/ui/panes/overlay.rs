//! Overlays: help (from the keymap), confirmations, the probe target editor.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use crate::app::State;
use crate::app::keymap::BINDINGS;
use crate::app::state::Confirm;
use crate::ui::{Theme, layout};

pub fn render(f: &mut Frame, area: Rect, st: &State, theme: &Theme) {
    if st.help {
        let mut lines: Vec<Line> = BINDINGS
            .iter()
            .map(|b| {
                Line::from(vec![
                    Span::styled(format!(" {:>10}  ", b.keys), theme.key()),
                    Span::raw(b.help),
                ])
            })
            .collect();
        lines.push(Line::raw(""));
        lines.push(Line::styled(" Esc or ? closes this help", theme.dim()));
        let h = (lines.len() + 2) as u16;
        let r = layout::centered(area, 64, h);
        f.render_widget(Clear, r);
        f.render_widget(
            Paragraph::new(lines).block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(theme.focused_border())
                    .title(Span::styled(" Help: keys ", theme.title())),
            ),
            r,
        );
    }
    if let Some(c) = &st.confirm {
        let (b, p) = (st.sides.base.name(), st.sides.pr.name());
        let q = match c {
            Confirm::Delete => format!("Delete clusters {b} and {p} (only those kindred created)?"),
            Confirm::Quit => "Work is still running. Quit and cancel it?".to_string(),
        };
        let r = layout::centered(area, (q.len() as u16 + 6).max(30), 5);
        f.render_widget(Clear, r);
        f.render_widget(
            Paragraph::new(vec![
                Line::raw(format!(" {q}")),
                Line::raw(""),
                Line::from(vec![
                    Span::styled(" y", theme.key()),
                    Span::raw(" yes   "),
                    Span::styled("any other key", theme.key()),
                    Span::raw(" no"),
                ]),
            ])
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(theme.warn())
                    .title(" Confirm "),
            ),
            r,
        );
    }
    if let Some(ed) = &st.editor {
        let r = layout::centered(area, 70, 3);
        f.render_widget(Clear, r);
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(theme.focused_border())
            .title(" Probe target (lb = the LoadBalancer IP:port) · Enter run · Esc cancel ");
        let inner = block.inner(r);
        f.render_widget(block, r);
        f.render_widget(&ed.textarea, inner);
    }
}
