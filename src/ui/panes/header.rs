//! The header: the two sides, the service, watch mode, a DEMO banner, the latest activity.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::State;
use crate::ui::Theme;

pub fn render(f: &mut Frame, area: Rect, st: &State, theme: &Theme) {
    let mut spans = vec![Span::styled(" kindred ", theme.title())];
    if let Some(b) = st.session.as_ref().and_then(|s| s.banner.clone()) {
        spans.push(Span::styled(format!(" {b} "), theme.banner()));
        spans.push(Span::raw(" "));
    }
    spans.push(Span::styled(
        st.sides.base.name().to_string(),
        theme.title(),
    ));
    spans.push(Span::styled(" (base) vs ", theme.dim()));
    spans.push(Span::styled(st.sides.pr.name().to_string(), theme.title()));
    spans.push(Span::styled(" (PR)", theme.dim()));
    if let Some(svc) = st.service() {
        spans.push(Span::styled("  svc ", theme.dim()));
        spans.push(Span::raw(svc.to_string()));
    }
    if st.watch {
        spans.push(Span::styled("  [watch]", theme.running()));
    }
    spans.push(Span::styled("  │ ", theme.dim()));
    spans.push(Span::raw(st.activity.clone()));
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}
