//! Where each pane goes. Shared by rendering and mouse hit-testing.

use ratatui::layout::{Constraint, Direction, Layout, Rect};

use crate::app::State;
use crate::model::Pane;

/// Below this the dashboard shows a message instead of panes.
pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;
/// From this width on, the Diff pane gets a column of its own.
pub const WIDE: u16 = 160;

pub struct Screen {
    pub header: Rect,
    pub body: Rect,
    pub footer: Rect,
}

pub fn screen(area: Rect) -> Screen {
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);
    Screen {
        header,
        body,
        footer,
    }
}

/// The panes and their areas inside `body`.
pub fn panes(st: &State, body: Rect) -> Vec<(Pane, Rect)> {
    if st.zoom {
        return vec![(st.focus.unwrap_or(Pane::Diff), body)];
    }
    if body.width >= WIDE {
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(body);
        let [b, p, q] = Layout::vertical([
            Constraint::Percentage(30),
            Constraint::Percentage(35),
            Constraint::Percentage(35),
        ])
        .areas(left);
        return vec![
            (Pane::Build, b),
            (Pane::Pods, p),
            (Pane::Probes, q),
            (Pane::Diff, right),
        ];
    }
    // Pods and Probes need a heading, a table header and five pods; the Diff pane gets the rest.
    let constraints = if body.height < 45 {
        [
            Constraint::Length(6),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Min(3),
        ]
    } else {
        [
            Constraint::Percentage(20),
            Constraint::Min(9),
            Constraint::Min(9),
            Constraint::Percentage(45),
        ]
    };
    let rects = Layout::default()
        .direction(Direction::Vertical)
        .constraints(constraints)
        .split(body);
    Pane::ALL
        .iter()
        .copied()
        .zip(rects.iter().copied())
        .collect()
}

/// The pane under a screen position.
pub fn pane_at(st: &State, area: Rect, x: u16, y: u16) -> Option<Pane> {
    let s = screen(area);
    panes(st, s.body)
        .into_iter()
        .find(|(_, r)| x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height)
        .map(|(p, _)| p)
}

/// Split a pane's inner area into base (left) and PR (right).
pub fn sides(inner: Rect) -> [Rect; 2] {
    Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
        .spacing(1)
        .areas(inner)
}

/// A centred rectangle for overlays.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}
