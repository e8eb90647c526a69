//! The footer: key hints from the keymap, or the filter being typed.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::State;
use crate::app::keymap::footer_hints;
use crate::ui::Theme;

pub fn render(f: &mut Frame, area: Rect, st: &State, theme: &Theme) {
    let line = if st.filter_editing {
        let pane = st.focus.unwrap_or(crate::model::Pane::Diff);
        Line::from(vec![
            Span::styled(format!(" filter {}: /", pane.title()), theme.key()),
            Span::raw(st.filter(pane).to_string()),
            Span::styled("▏  Enter keep · Esc clear", theme.dim()),
        ])
    } else {
        let mut spans = vec![Span::raw(" ")];
        for (k, h) in footer_hints() {
            spans.push(Span::styled(k, theme.key()));
            spans.push(Span::styled(format!(" {h}  "), theme.dim()));
        }
        Line::from(spans)
    };
    f.render_widget(Paragraph::new(line), area);
}
