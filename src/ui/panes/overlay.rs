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
        help(f, area, st, theme);
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

/// Rows of a help overlay's column: each row's spans.
type Rows = Vec<Vec<Span<'static>>>;

/// The help overlay: every binding, in one column, or two when one does not fit the height
/// (balanced by height); help texts wrapped at words within their column. When even two columns
/// are taller than the screen, the overlay scrolls (`st.help_scroll`) and its title says so.
fn help(f: &mut Frame, area: Rect, st: &State, theme: &Theme) {
    let one_col = BINDINGS.len() as u16 + 4 <= area.height;
    let col_w = if one_col {
        62
    } else {
        (area.width.saturating_sub(2) / 2) as usize
    };
    let room = col_w.saturating_sub(13);
    let cells: Vec<Rows> = BINDINGS
        .iter()
        .map(|b| help_cell(b.keys, b.help, room, theme))
        .collect();
    let mut lines: Vec<Line> = if one_col {
        cells.into_iter().flatten().map(Line::from).collect()
    } else {
        let (left, right) = balanced(&cells);
        let blank = || vec![Span::raw(" ".repeat(room + 13))];
        (0..left.len().max(right.len()))
            .map(|i| {
                let mut spans = left.get(i).cloned().unwrap_or_else(blank);
                spans.extend(right.get(i).cloned().unwrap_or_default());
                Line::from(spans)
            })
            .collect()
    };
    lines.push(Line::raw(""));
    lines.push(Line::styled(" Esc or ? closes this help", theme.dim()));
    let visible = area.height.saturating_sub(2);
    let tall = lines.len() as u16 > visible;
    let scroll = if tall {
        st.help_scroll.min(lines.len() as u16 - visible)
    } else {
        0
    };
    let title = if tall {
        " Help: keys (↑/↓ scroll) "
    } else {
        " Help: keys "
    };
    let h = (lines.len() as u16 + 2).min(area.height);
    let w = if one_col { 64 } else { area.width };
    let r = layout::centered(area, w, h);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).scroll((scroll, 0)).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(theme.focused_border())
                .title(Span::styled(title, theme.title())),
        ),
        r,
    );
}

/// One binding's rows: its keys, then its help text padded to `room`, wrapped at words onto
/// more rows (under the text).
fn help_cell(keys: &str, help: &str, room: usize, theme: &Theme) -> Rows {
    wrap_words(help, room)
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let pad = room.saturating_sub(text.chars().count());
            let k = if i == 0 { keys } else { "" };
            vec![
                Span::styled(format!(" {k:>10}  "), theme.key()),
                Span::raw(format!("{text}{}", " ".repeat(pad))),
            ]
        })
        .collect()
}

/// `text` in rows of at most `room` characters, broken at spaces (a longer word is cut).
fn wrap_words(text: &str, room: usize) -> Vec<String> {
    let room = room.max(1);
    let mut rows: Vec<String> = vec![String::new()];
    for word in text.split(' ') {
        let row = rows.last_mut().expect("a row");
        let (have, len) = (row.chars().count(), word.chars().count());
        if have > 0 && have + 1 + len <= room {
            row.push(' ');
            row.push_str(word);
        } else if have == 0 && len <= room {
            row.push_str(word);
        } else {
            let mut chars: Vec<char> = word.chars().collect();
            if have == 0 {
                rows.pop();
            }
            while !chars.is_empty() {
                let rest = chars.split_off(chars.len().min(room));
                rows.push(chars.into_iter().collect());
                chars = rest;
            }
        }
    }
    rows
}

/// Two columns of cells, split where their heights are closest (cells stay in order).
fn balanced(cells: &[Rows]) -> (Rows, Rows) {
    let total: usize = cells.iter().map(Vec::len).sum();
    let mut above = 0;
    let mut split = cells.len();
    for (i, c) in cells.iter().enumerate() {
        if above >= total - above {
            split = i;
            break;
        }
        above += c.len();
    }
    // The split one cell earlier may be closer.
    let height = |k: usize| {
        let a: usize = cells[..k].iter().map(Vec::len).sum();
        a.max(total - a)
    };
    if split > 0 && height(split - 1) < height(split) {
        split -= 1;
    }
    (cells[..split].concat(), cells[split..].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_texts_wrap_at_words_and_columns_balance() {
        let rows = wrap_words("swap in kube-proxy built from the PR source", 20);
        assert_eq!(rows, ["swap in kube-proxy", "built from the PR", "source"]);
        assert_eq!(wrap_words("short", 20), ["short"]);
        // A word longer than the room is cut, never lost.
        assert_eq!(
            wrap_words("a abcdefghij b", 4),
            ["a", "abcd", "efgh", "ij b"]
        );
        let cell = |n: usize| -> Rows { vec![vec![Span::raw("x")]; n] };
        let (l, r) = balanced(&[cell(2), cell(1), cell(1), cell(2), cell(1)]);
        assert_eq!((l.len(), r.len()), (4, 3));
        let (l, r) = balanced(&[cell(1), cell(1)]);
        assert_eq!((l.len(), r.len()), (1, 1));
    }
}
