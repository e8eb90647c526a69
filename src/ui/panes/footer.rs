//! The footer: key hints from the keymap, or the filter being typed.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::State;
use crate::app::keymap::footer_with;
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
        let (on, off) = footer_with(|a| st.disabled(a));
        // Why keys do nothing first: it is what a hint would hide.
        for (keys, why) in off {
            spans.push(Span::styled(keys.join(" "), theme.dim()));
            spans.push(Span::styled(format!(": {why}  "), theme.warn()));
        }
        for (k, h) in on {
            spans.push(Span::styled(k, theme.key()));
            spans.push(Span::styled(format!(" {h}  "), theme.dim()));
        }
        Line::from(spans)
    };
    f.render_widget(Paragraph::new(line), area);
}
