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
        help(f, area, theme);
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

/// The help overlay: every binding, in one column, or two when one does not fit the height
/// (each help text then cut to its column, with `…`).
fn help(f: &mut Frame, area: Rect, theme: &Theme) {
    let one_col = BINDINGS.len() as u16 + 4 <= area.height;
    let per_col = if one_col {
        BINDINGS.len()
    } else {
        BINDINGS.len().div_ceil(2)
    };
    let col_w = if one_col {
        62
    } else {
        (area.width.saturating_sub(2) / 2) as usize
    };
    let cell = |i: usize| -> Vec<Span<'static>> {
        let Some(b) = BINDINGS.get(i) else {
            return vec![];
        };
        let room = col_w.saturating_sub(13);
        let text: String = if b.help.chars().count() > room {
            let cut: String = b.help.chars().take(room.saturating_sub(1)).collect();
            format!("{cut}…")
        } else {
            b.help.to_string()
        };
        let pad = room.saturating_sub(text.chars().count());
        vec![
            Span::styled(format!(" {:>10}  ", b.keys), theme.key()),
            Span::raw(format!("{text}{}", " ".repeat(pad))),
        ]
    };
    let mut lines: Vec<Line> = (0..per_col)
        .map(|i| {
            let mut spans = cell(i);
            if !one_col {
                spans.extend(cell(i + per_col));
            }
            Line::from(spans)
        })
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::styled(" Esc or ? closes this help", theme.dim()));
    let h = (lines.len() + 2) as u16;
    let w = if one_col { 64 } else { area.width };
    let r = layout::centered(area, w, h);
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
