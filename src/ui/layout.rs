//! Where each pane goes. Shared by rendering and mouse hit-testing.

use ratatui::layout::{Constraint, Layout, Rect};

use crate::app::State;
use crate::model::Pane;

/// Below this the dashboard shows a message instead of panes.
pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

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

/// The Diff pane's narrowest useful width (a rule line and its markers).
pub const DIFF_MIN: u16 = 80;
/// Below this body width the panes are always stacked.
pub const WIDE_MIN: u16 = 140;

/// What the panes need to show their content.
struct Needs {
    /// The left column's width with names whole, and with every column.
    left: (u16, u16),
    /// The Build pane's rows: needed (its phases), wanted (and some output).
    build: (u16, u16),
    pods: u16,
    probes: u16,
}

fn needs(st: &State) -> Needs {
    use super::panes;
    let ((pods_min, pods_full), pods) = panes::pods::needs(st);
    let ((probes_min, probes_full), probes) = panes::probes::needs(st);
    // Two sides one column apart, in a border.
    let left = |w: u16| 2 * w + 1 + 2;
    Needs {
        left: (
            left(pods_min.max(probes_min)),
            left(pods_full.max(probes_full)),
        ),
        build: {
            let (need, want) = panes::build::rows(st);
            (need + 2, want + 2)
        },
        pods: pods + 2,
        probes: probes + 2,
    }
}

/// A pane's share of the rows: at least `min`; then, in `order`, what it `want`s while rows
/// remain; the pane at `rest` gets what is left after that.
#[derive(Debug, Clone, Copy)]
struct Share {
    min: u16,
    want: u16,
}

fn heights(total: u16, panes: &[Share], order: &[usize], rest: usize) -> Vec<u16> {
    let mut h: Vec<u16> = panes.iter().map(|p| p.min).collect();
    let mut left = total.saturating_sub(h.iter().sum());
    for &i in order {
        let more = panes[i].want.saturating_sub(h[i]).min(left);
        h[i] += more;
        left -= more;
    }
    h[rest] += left;
    h
}

fn stack(area: Rect, heights: &[u16]) -> Vec<Rect> {
    let mut y = area.y;
    heights
        .iter()
        .map(|&h| {
            let h = h.min(area.y + area.height - y);
            let r = Rect::new(area.x, y, area.width, h);
            y += h;
            r
        })
        .collect()
}

/// The panes and their areas inside `body`, from what their content needs: the Diff pane gets
/// a column of its own only when the left panes still show their names whole and the Diff at
/// least [`DIFF_MIN`] columns; Pods and Probes are as tall as their rows, the Build pane and the
/// Diff pane share the rest.
pub fn panes(st: &State, body: Rect) -> Vec<(Pane, Rect)> {
    if st.zoom {
        return vec![(st.focus.unwrap_or(Pane::Diff), body)];
    }
    let n = needs(st);
    if body.width >= WIDE_MIN && body.width >= n.left.0 + DIFF_MIN {
        // The left column: what every column wants, up to half the screen; never less than
        // what keeps the names whole.
        let left_w = n.left.1.min(body.width / 2).max(n.left.0);
        let left = Rect::new(body.x, body.y, left_w, body.height);
        let right = Rect::new(body.x + left_w, body.y, body.width - left_w, body.height);
        let shares = [
            Share {
                min: n.build.0,
                want: n.build.1,
            },
            Share {
                min: 4,
                want: n.pods,
            },
            Share {
                min: 4,
                want: n.probes,
            },
        ];
        let h = heights(body.height, &shares, &[1, 2, 0], 0);
        let r = stack(left, &h);
        return vec![
            (Pane::Build, r[0]),
            (Pane::Pods, r[1]),
            (Pane::Probes, r[2]),
            (Pane::Diff, right),
        ];
    }
    // Stacked: Pods and Probes whole first (the verdict), then a Diff pane of a third of the
    // body, then the Build pane; the Diff pane takes what is left.
    let shares = [
        Share {
            min: n.build.0,
            want: n.build.1,
        },
        Share {
            min: 4,
            want: n.pods,
        },
        Share {
            min: 4,
            want: n.probes,
        },
        Share {
            min: 6,
            want: body.height / 3,
        },
    ];
    let h = heights(body.height, &shares, &[1, 2, 3, 0], 3);
    let r = stack(body, &h);
    Pane::ALL.iter().copied().zip(r).collect()
}

/// The pane under a screen position.
pub fn pane_at(st: &State, area: Rect, x: u16, y: u16) -> Option<Pane> {
    let s = screen(area);
    panes(st, s.body)
        .into_iter()
        .find(|(_, r)| x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height)
        .map(|(p, _)| p)
}
