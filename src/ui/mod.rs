//! Rendering: a pure function of [`State`]. Each pane lives in its own file.

pub mod area;
pub mod columns;
pub mod layout;
pub mod panes;
pub mod theme;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use crate::app::State;
use crate::model::Pane;
pub use theme::Theme;

/// Draw the whole screen.
pub fn render(f: &mut Frame, st: &State, theme: &Theme) {
    let area = f.area();
    if area.width < layout::MIN_WIDTH || area.height < layout::MIN_HEIGHT {
        let msg = format!(
            "Terminal too small: {}x{}, kindred needs at least {}x{}. Enlarge the window or press q to quit.",
            area.width,
            area.height,
            layout::MIN_WIDTH,
            layout::MIN_HEIGHT
        );
        f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return;
    }
    let s = layout::screen(area);
    panes::header::render(f, s.header, st, theme);
    for (pane, rect) in layout::panes(st, s.body) {
        render_pane(f, pane, rect, st, theme);
    }
    panes::footer::render(f, s.footer, st, theme);
    panes::overlay::render(f, area, st, theme);
}

/// Draw one pane into `area`.
pub fn render_pane(f: &mut Frame, pane: Pane, area: Rect, st: &State, theme: &Theme) {
    match pane {
        Pane::Build => panes::build::render(f, area, st, theme),
        Pane::Pods => panes::pods::render(f, area, st, theme),
        Pane::Probes => panes::probes::render(f, area, st, theme),
        // A probe's two paths (Enter on a probe row) take the Diff pane's place until Esc.
        Pane::Diff if st.paths.is_some() => panes::paths::render(f, area, st, theme),
        Pane::Diff => panes::diff::render(f, area, st, theme),
    }
}

/// The block around a pane: its title, the filter when set, focus highlight.
pub fn pane_block<'a>(pane: Pane, st: &State, theme: &Theme, extra: &str) -> Block<'a> {
    let focused = st.focus == Some(pane);
    let mut title = vec![Span::styled(format!(" {} ", pane.title()), theme.title())];
    if !extra.is_empty() {
        title.push(Span::styled(format!("{extra} "), theme.dim()));
    }
    let filter = st.filter(pane);
    if !filter.is_empty() || (focused && st.filter_editing) {
        title.push(Span::styled(format!("/{filter} "), theme.warn()));
    }
    Block::default()
        .borders(Borders::ALL)
        .border_style(if focused {
            theme.focused_border()
        } else {
            theme.border()
        })
        .title(Line::from(title))
}

/// A side's heading line inside a pane: the cluster name (base / PR).
pub fn side_heading<'a>(name: &str, which: &str, theme: &Theme) -> Line<'a> {
    Line::from(vec![
        Span::styled(name.to_string(), theme.title()),
        Span::styled(format!(" ({which})"), theme.dim()),
    ])
}

/// Cut `s` to `w` columns (by chars), starting at column `from`.
pub fn clip(s: &str, from: usize, w: usize) -> String {
    s.chars().skip(from).take(w).collect()
}

/// The latest errors a backend reported for `pane` on one side, as red lines wrapped to `w`.
pub fn error_lines<'a>(
    side: &crate::app::state::SideState,
    pane: Pane,
    w: usize,
    max: usize,
    theme: &Theme,
) -> Vec<Line<'a>> {
    let mut out = Vec::new();
    for msg in side.errors_in(pane).take(max) {
        let text = format!("✗ {msg}");
        let chars: Vec<char> = text.chars().collect();
        for chunk in chars.chunks(w.max(10)).take(3) {
            out.push(Line::styled(chunk.iter().collect::<String>(), theme.bad()));
        }
    }
    out
}

pub fn spinner(frame: u64) -> &'static str {
    const F: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
    F[(frame % 10) as usize]
}

pub fn fmt_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    /// Whether a source file names the ui's `layout` module (a `use` of it or a `layout::` path;
    /// ratatui's own `ratatui::layout` is not it).
    fn names_layout(src: &str) -> bool {
        src.lines().any(|l| {
            let l = l.trim_start();
            let code = l.split("//").next().unwrap_or("");
            let without_ratatui = code.replace("ratatui::layout", "");
            let words = without_ratatui
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .any(|w| w == "layout");
            (l.starts_with("use ") && words) || without_ratatui.contains("layout::")
        })
    }

    /// The layout asks the panes what they need; the panes never reach back into the layout
    /// (what both use, such as splitting a pane into its two sides, is in `area`).
    #[test]
    fn panes_do_not_import_the_layout() {
        let panes = [
            ("build", include_str!("panes/build.rs")),
            ("diff", include_str!("panes/diff.rs")),
            ("footer", include_str!("panes/footer.rs")),
            ("header", include_str!("panes/header.rs")),
            ("overlay", include_str!("panes/overlay.rs")),
            ("paths", include_str!("panes/paths.rs")),
            ("pods", include_str!("panes/pods.rs")),
            ("probes", include_str!("panes/probes.rs")),
            ("area", include_str!("area.rs")),
        ];
        for (name, src) in panes {
            assert!(!names_layout(src), "{name} imports the ui layout: a cycle");
        }
        assert!(names_layout("use crate::ui::{Theme, layout};"));
        assert!(names_layout("    let r = layout::centered(a, 1, 1);"));
        assert!(!names_layout("use ratatui::layout::{Constraint, Rect};"));
        assert!(names_layout(include_str!("../tui.rs")));
    }
}
