//! Splitting a rectangle: the geometry the panes and the overlays share. A leaf of the ui floor:
//! it imports only ratatui, so the panes use it and [`super::layout`] uses the panes without a
//! circle.

use ratatui::layout::{Constraint, Layout, Rect};

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
