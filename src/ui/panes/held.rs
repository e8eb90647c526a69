//! The Probes pane's section under a side's rows: the connections held across the side's last
//! change ("held across swap: 4 kept, 2 reset"), then each one that was not kept: its pod, the
//! address it went to, what became of it and why.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use crate::app::state::SideState;
use crate::backend::held::{Fate, HeldConn, tally};
use crate::rules::render::visible;
use crate::ui::Theme;

/// Connections not kept shown one a line, at most.
const SHOWN: usize = 3;

/// The rows the section takes for a side `width` columns wide (its lines wrapped): none until
/// it held connections across a change.
pub fn height(s: &SideState, width: u16, theme: &Theme) -> u16 {
    let w = usize::from(width.max(1));
    lines(s, theme)
        .iter()
        .map(|l| l.width().max(1).div_ceil(w) as u16)
        .sum()
}

fn style(fate: Fate, theme: &Theme) -> Style {
    match fate {
        Fate::Kept => theme.ok(),
        Fate::Reset | Fate::TimedOut => theme.bad(),
        Fate::NotOpened => theme.warn(),
    }
}

/// The counts as spans: "2 kept, 1 reset" (or "no connection").
fn counts<'a>(conns: &[HeldConn], theme: &Theme) -> Vec<Span<'a>> {
    let mut head = Vec::new();
    let t = tally(conns);
    if t.is_empty() {
        head.push(Span::styled("no connection", theme.dim()));
    }
    for (i, (fate, n)) in t.into_iter().enumerate() {
        if i > 0 {
            head.push(Span::styled(", ", theme.dim()));
        }
        head.push(Span::styled(
            format!("{n} {}", fate.label()),
            style(fate, theme),
        ));
    }
    head
}

/// The section in a side's heading, when no row is left under its probes.
pub fn heading<'a>(s: &SideState, theme: &Theme) -> Vec<Span<'a>> {
    let Some(h) = &s.held else {
        return Vec::new();
    };
    let mut out = vec![Span::styled(" · held: ", theme.dim())];
    out.extend(counts(&h.conns, theme));
    out
}

/// The section's lines for a side.
pub fn lines<'a>(s: &SideState, theme: &Theme) -> Vec<Line<'a>> {
    let Some(h) = &s.held else {
        return Vec::new();
    };
    let mut head = vec![Span::styled(
        format!("held across {}: ", h.change.label()),
        theme.dim(),
    )];
    head.extend(counts(&h.conns, theme));
    let mut out = vec![Line::from(head)];
    let lost: Vec<_> = h.conns.iter().filter(|c| c.fate != Fate::Kept).collect();
    for (i, c) in lost.iter().enumerate().take(SHOWN) {
        if i + 1 == SHOWN && lost.len() > SHOWN {
            let more = lost.len() - i;
            out.push(Line::styled(
                format!("  … {more} more not kept"),
                theme.dim(),
            ));
            break;
        }
        let detail = c.detail.as_deref().map(visible).unwrap_or_default();
        out.push(Line::from(vec![
            Span::styled(format!("  {} ", c.fate.label()), style(c.fate, theme)),
            Span::raw(format!(
                "{} → {} {}",
                visible(&s.short(&c.source)),
                c.via.label(),
                visible(&c.addr)
            )),
            Span::styled(format!(": {detail}"), theme.dim()),
        ]));
    }
    out
}

pub fn render(f: &mut Frame, area: Rect, s: &SideState, theme: &Theme) {
    if area.height > 0 {
        let p = Paragraph::new(lines(s, theme)).wrap(Wrap { trim: false });
        f.render_widget(p, area);
    }
}
