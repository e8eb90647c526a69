//! Overlays: help (from the keymap), confirmations, the probe target editor.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use crate::app::State;
use crate::app::keymap::{BINDINGS, HELP_COLUMN, HelpLayout, KEYS_WIDTH};
use crate::app::state::{Confirm, Editing};
use crate::model::Side;
use crate::ui::{Theme, area};

pub fn render(f: &mut Frame, area: Rect, st: &State, theme: &Theme) {
    super::metrics::render(f, area, st, theme);
    if st.help {
        help(f, area, st, theme);
    }
    if let Some(c) = &st.confirm {
        let (b, p) = (st.sides.base.name(), st.sides.pr.name());
        let q = match c {
            Confirm::Delete
                if st.context(Side::Base).is_none() && st.context(Side::Pr).is_none() =>
            {
                format!("Delete clusters {b} and {p} (only those kindred created)?")
            }
            Confirm::Delete => format!(
                "Delete {} (only what kindred created; never a context's cluster)?",
                st.deletes().join(" and ")
            ),
            Confirm::Quit => "Work is still running. Quit and cancel it?".to_string(),
        };
        let r = area::centered(area, (q.len() as u16 + 6).max(30), 5);
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
        let w = match ed.editing {
            Editing::Target => 70,
            Editing::Bisect => 86,
            Editing::Repeat => 70,
        };
        let r = area::centered(area, w, 3);
        f.render_widget(Clear, r);
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(theme.focused_border())
            .title(match ed.editing {
                Editing::Target => {
                    " Probe target (lb = the LoadBalancer IP:port) · Enter run · Esc cancel "
                }
                Editing::Bisect => {
                    " Bisect the PR side: GOOD..BAD (tag, branch, SHA, pr/N) · Enter start · Esc cancel "
                }
                Editing::Repeat => {
                    " Tries per probe (1 to 1000) · Enter run the probes · Esc cancel "
                }
            });
        let inner = block.inner(r);
        f.render_widget(block, r);
        f.render_widget(&ed.textarea, inner);
    }
}

/// The help overlay, laid out by [`HelpLayout`]; when taller than the screen it scrolls
/// (`st.help_scroll`) and its title says so.
fn help(f: &mut Frame, area: Rect, st: &State, theme: &Theme) {
    let l = HelpLayout::new((area.width, area.height), |a| st.disabled(a));
    let rows = |range: std::ops::Range<usize>| -> Vec<Vec<Span<'static>>> {
        range
            .flat_map(|b| {
                l.texts[b].iter().enumerate().map(move |(i, text)| {
                    let keys = if i == 0 { BINDINGS[b].keys } else { "" };
                    let pad = l.room.saturating_sub(text.chars().count());
                    vec![
                        Span::styled(format!(" {keys:>10}  "), theme.key()),
                        Span::raw(format!("{text}{}", " ".repeat(pad))),
                    ]
                })
            })
            .collect()
    };
    let (left, right) = (rows(0..l.split), rows(l.split..BINDINGS.len()));
    let blank = || vec![Span::raw(" ".repeat(l.room + KEYS_WIDTH))];
    let mut lines: Vec<Line> = (0..left.len().max(right.len()))
        .map(|i| {
            let mut spans = left.get(i).cloned().unwrap_or_else(blank);
            spans.extend(right.get(i).cloned().unwrap_or_default());
            Line::from(spans)
        })
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::styled(" Esc or ? closes this help", theme.dim()));
    let max = l.max_scroll(area.height);
    let title = if max > 0 {
        " Help: keys (↑/↓ scroll) "
    } else {
        " Help: keys "
    };
    let h = (lines.len() as u16 + 2).min(area.height);
    let w = if l.two_columns {
        area.width
    } else {
        HELP_COLUMN as u16 + 2
    };
    let r = area::centered(area, w, h);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines)
            .scroll((st.help_scroll.min(max), 0))
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(theme.focused_border())
                    .title(Span::styled(title, theme.title())),
            ),
        r,
    );
}
