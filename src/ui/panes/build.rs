//! Build pane: per side, the phases (image build, cluster create, deploy) with state and time,
//! then the last lines of output of the latest phase, and errors.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::State;
use crate::app::bisect::{BisectView, commit_words, path_word, role_word, short, verdict_words};
use crate::app::keymap::wrap_words;
use crate::app::state::{BUILD_STAGES, SideState};
use crate::backend::bisect::{BisectEnd, CommitInfo, Step, StepVerdict};
use crate::backend::event::{NoExecMonitor, PollReason, WatchPath};
use crate::model::Pane;
use crate::model::{Phase, PhaseState, Side};
use crate::rules::render::visible;
use crate::ui::{Theme, area, clip, fmt_duration, pane_block, side_heading, spinner};

pub fn render(f: &mut Frame, area: Rect, st: &State, theme: &Theme) {
    let block = pane_block(Pane::Build, st, theme, "");
    let inner = block.inner(area);
    f.render_widget(block, area);
    // A bisect takes the width below the sides (their phases, little of their output).
    let inner = if st.bisect.shown() {
        let sides = sides_height(st, inner.height);
        let [top, below] =
            Layout::vertical([Constraint::Length(sides), Constraint::Fill(1)]).areas(inner);
        let w = below.width.saturating_sub(1) as usize;
        let lines = bisect_lines(st, w, below.height as usize, theme);
        f.render_widget(Paragraph::new(lines), below);
        top
    } else {
        inner
    };
    for (side, rect) in Side::BOTH.into_iter().zip(area::sides(inner)) {
        let lines = side_lines(st, st.side(side), side, rect, theme);
        f.render_widget(Paragraph::new(lines), rect);
    }
}

/// A side's heading: its cluster, the commit and version it was built from, what a working-tree
/// build held, and its nodes by the names that fit.
fn heading<'a>(s: &SideState, side: Side, w: usize, theme: &Theme) -> Line<'a> {
    let which = side.label();
    let mut heading = side_heading(s.name(), which, theme);
    if let Some(c) = s.info.as_ref().and_then(|i| i.context.as_deref()) {
        let c = crate::rules::render::visible(c);
        heading
            .spans
            .push(Span::styled(format!(" context {c}"), theme.dim()));
    }
    if let Some(c) = &s.commit {
        heading.spans.push(Span::styled(
            format!(" @{}", &c[..c.len().min(12)]),
            theme.dim(),
        ));
    }
    if let Some(v) = &s.version {
        heading
            .spans
            .push(Span::styled(format!(" {v}"), theme.dim()));
    }
    if let Some(snap) = &s.snapshot {
        heading
            .spans
            .push(Span::styled(format!(" ({snap})"), theme.dim()));
    }
    if !s.nodes.is_empty() {
        let names: Vec<String> = s.nodes.iter().map(|n| s.short(&n.name)).collect();
        let room = w.saturating_sub(heading.width());
        heading
            .spans
            .push(Span::styled(node_list(&names, room), theme.dim()));
    }
    heading
}

fn side_lines<'a>(
    st: &State,
    s: &SideState,
    side: Side,
    rect: Rect,
    theme: &Theme,
) -> Vec<Line<'a>> {
    let w = rect.width.saturating_sub(1) as usize;
    let heading = heading(s, side, w, theme);
    let mut lines = vec![heading];
    let mut latest = None;
    let mut failures: Vec<String> = Vec::new();
    let shown: Vec<Phase> = Phase::ALL
        .into_iter()
        .filter(|p| *p != Phase::Swap || s.phase(*p).state != PhaseState::Pending)
        .collect();
    // Too short for a line per phase: all on one.
    let compact = (rect.height as usize) < 1 + shown.len();
    let mut row: Vec<Span> = Vec::new();
    for p in shown {
        let v = s.phase(p);
        let (mark, style, note) = phase_mark(st, &v.state, v, theme);
        if !matches!(v.state, PhaseState::Pending | PhaseState::Skipped { .. }) {
            latest = Some(p);
        }
        if let PhaseState::Failed { reason } = &v.state {
            failures.push(reason.clone());
        }
        if compact {
            let short = p.title().split(' ').next_back().unwrap_or("");
            row.push(Span::styled(format!("{mark} {short} {note}  "), style));
            continue;
        }
        let text = format!("{mark} {:<15} {note}", p.title());
        lines.push(Line::styled(clip(&text, 0, w), style));
        if let Some(g) = gauge(st, s, p, w, theme) {
            lines.push(g);
        }
        if p == Phase::Swap
            && let Some((image, from)) = &s.proxy
        {
            for l in [format!("  runs {image}"), format!("  from {from}")] {
                lines.push(Line::styled(clip(&l, 0, w), theme.dim()));
            }
        }
    }
    if compact {
        lines.push(Line::from(row));
    }
    lines.extend(watch_lines(s, w, theme));
    // Failure reasons in full (wrapped), then errors reported for this pane.
    if !failures.is_empty() {
        lines.push(Line::styled(
            "  b, c, d or p runs the phase again",
            theme.dim(),
        ));
    }
    for r in failures {
        let chars: Vec<char> = format!("  {r}").chars().collect();
        for chunk in chars.chunks(w.max(10)).take(3) {
            lines.push(Line::styled(chunk.iter().collect::<String>(), theme.bad()));
        }
    }
    lines.extend(crate::ui::error_lines(s, Pane::Build, w, 2, theme));
    // The tail of the latest phase's output fills the rest.
    let room = (rect.height as usize).saturating_sub(lines.len());
    // Before any phase has run, whatever the backend said (e.g. how to start).
    let latest = latest.or_else(|| {
        Phase::ALL
            .into_iter()
            .rev()
            .find(|p| !s.output[*p as usize].is_empty())
    });
    if let Some(p) = latest
        && room > 0
    {
        let out = &s.output[p as usize];
        let skip = out.len().saturating_sub(room);
        for l in out.iter().skip(skip) {
            lines.push(Line::from(Span::styled(clip(l, 0, w), theme.dim())));
        }
    }
    lines
}

/// While watching, how each node's rules are followed: one entry per path, naming its nodes;
/// polled nodes are marked and say why (the preferred path, `nft monitor`, is not theirs). An
/// entry wraps at words, on up to three rows.
fn watch_lines<'a>(s: &SideState, w: usize, theme: &Theme) -> Vec<Line<'a>> {
    let mut paths: Vec<(&WatchPath, Vec<String>)> = Vec::new();
    for (node, path) in &s.watching {
        match paths.iter_mut().find(|(p, _)| *p == path) {
            Some((_, names)) => names.push(s.short(node)),
            None => paths.push((path, vec![s.short(node)])),
        }
    }
    // The monitored nodes first.
    paths.sort_by_key(|(p, _)| {
        !matches!(
            p,
            WatchPath::Monitor | WatchPath::ApiEvents | WatchPath::ExecMonitor
        )
    });
    let mut out = Vec::new();
    for (path, names) in paths {
        let names = names.join(", ");
        let (mark, text, style) = match path {
            WatchPath::Monitor => ("  ", format!("watch: nft monitor on {names}"), theme.ok()),
            WatchPath::ApiEvents => (
                "  ",
                format!(
                    "watch: re-read on API server events (Services, EndpointSlices, pods): {names}"
                ),
                theme.ok(),
            ),
            WatchPath::ExecMonitor => (
                "  ",
                format!("watch: nft monitor by exec in kube-proxy pods on {names}"),
                theme.ok(),
            ),
            WatchPath::ApiEventsOnly { why } => {
                let why = match why {
                    NoExecMonitor::Failed { error } => format!("no nft monitor: {error}"),
                    NoExecMonitor::OverCap { cap } => {
                        format!("no nft monitor: more nodes than {cap} monitors")
                    }
                };
                let text = format!("watch: {names} re-read on API server events only ({why})");
                ("! ", text, theme.warn())
            }
            WatchPath::Polled { every_ms, why } => {
                let why = match why {
                    PollReason::Legacy => {
                        "rules in iptables-legacy, which nft monitor cannot see".to_string()
                    }
                    PollReason::NoMonitor { error } => format!("no nft monitor: {error}"),
                };
                let every = every(*every_ms);
                let text = format!("watch: {names} polled every {every} ({why})");
                ("! ", text, theme.warn())
            }
        };
        for (k, row) in wrap_words(&text, w.saturating_sub(4).max(10))
            .into_iter()
            .take(3)
            .enumerate()
        {
            let indent = if k == 0 { mark } else { "    " };
            let row = format!("{indent}{row}");
            out.push(Line::styled(clip(&row, 0, w), style));
        }
    }
    out
}

/// A poll period: "30s", "2m00s", "0.5s".
fn every(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        fmt_duration(std::time::Duration::from_millis(ms))
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// " · nodes a, b, c" in `room` columns: the names that fit, whole, and how many more ("+1");
/// only the count when not even one fits. Never a name cut short.
fn node_list(names: &[String], room: usize) -> String {
    let full = format!(" · nodes {}", names.join(", "));
    if full.chars().count() <= room {
        return full;
    }
    let mut shown = String::from(" · nodes");
    for (k, n) in names.iter().enumerate() {
        let more = format!(" +{}", names.len() - k - 1);
        let sep = if k == 0 { " " } else { ", " };
        if shown.chars().count() + sep.len() + n.chars().count() + more.len() > room {
            return if k == 0 {
                format!(" · {} nodes", names.len())
            } else {
                format!("{shown} +{}", names.len() - k)
            };
        }
        shown.push_str(sep);
        shown.push_str(n);
    }
    shown
}

/// Where a running phase is: kind's stage of a node-image build ("compiling Kubernetes 1/4"),
/// and against the last time the same work took, a bar and "12m03s/~20m00s" (past it:
/// "25m02s (last 20m00s)").
fn gauge<'a>(st: &State, s: &SideState, p: Phase, w: usize, theme: &Theme) -> Option<Line<'a>> {
    let v = s.phase(p);
    if v.state != PhaseState::Running {
        return None;
    }
    let stage = s
        .stage
        .filter(|_| p == Phase::Build)
        .map(|i| format!("{} {}/{}", BUILD_STAGES[i], i + 1, BUILD_STAGES.len()));
    let estimate = s.estimate[p as usize].filter(|e| *e > 0);
    if stage.is_none() && estimate.is_none() {
        return None;
    }
    let elapsed = v
        .started
        .map(|t| st.now.saturating_sub(t))
        .unwrap_or_default();
    let mut spans = vec![Span::raw(" ")];
    if let Some(stage) = stage {
        spans.push(Span::styled(format!(" {stage}"), theme.running()));
    }
    if let Some(e) = estimate {
        spans.push(Span::raw(" "));
        const BAR: usize = 8;
        let ratio = (elapsed.as_secs_f64() / e as f64).min(1.0);
        let full = ((ratio * BAR as f64).round() as usize).min(BAR);
        spans.push(Span::styled("█".repeat(full), theme.running()));
        spans.push(Span::styled("░".repeat(BAR - full), theme.dim()));
        let last = fmt_duration(std::time::Duration::from_secs(e));
        let note = if elapsed.as_secs() > e {
            format!(" {} (last {last})", fmt_duration(elapsed))
        } else {
            format!(" {}/~{last}", fmt_duration(elapsed))
        };
        spans.push(Span::styled(note, theme.dim()));
    }
    let line = Line::from(spans);
    Some(if line.width() > w {
        Line::styled(clip(&line.to_string(), 0, w), theme.dim())
    } else {
        line
    })
}

/// A phase's mark, style and note: "⠙ 47s", "✓ 5s", "– skipped: …", "✗ failed".
fn phase_mark(
    st: &State,
    state: &PhaseState,
    v: &crate::app::state::PhaseView,
    theme: &Theme,
) -> (&'static str, ratatui::style::Style, String) {
    match state {
        PhaseState::Pending => ("·", theme.dim(), String::new()),
        PhaseState::Running => {
            let el = v
                .started
                .map(|t| st.now.saturating_sub(t))
                .unwrap_or_default();
            (spinner(st.frame), theme.running(), fmt_duration(el))
        }
        PhaseState::Done => (
            "✓",
            theme.ok(),
            v.took.map(fmt_duration).unwrap_or_default(),
        ),
        PhaseState::Skipped { reason } => ("–", theme.dim(), format!("skipped: {reason}")),
        PhaseState::Failed { .. } => ("✗", theme.bad(), "failed".to_string()),
    }
}

/// The rows the pane needs inside its border (a heading and its phases on one line) and wants
/// (a line per phase, the swapped kube-proxy, a few lines of output; a bisect's lines).
pub fn rows(st: &State) -> (u16, u16) {
    if st.bisect.shown() {
        return (6, phase_rows(st) + bisect_rows(&st.bisect));
    }
    (2, phase_rows(st) + 4)
}

/// The sides' rows above a bisect: a line per phase when the bisect keeps 6 rows, else the
/// heading and the phases on one line.
fn sides_height(st: &State, height: u16) -> u16 {
    let full = phase_rows(st);
    if height >= full + 6 {
        full
    } else {
        2.min(height)
    }
}

/// The rows a bisect wants: its heading, steps, the one testing, what is left, the end and
/// some of the rules diff.
fn bisect_rows(v: &BisectView) -> u16 {
    let diff = match &v.end {
        Some(BisectEnd::Found { rules_diff, .. }) => rules_diff.lines().count().min(8),
        Some(BisectEnd::NotFound { .. }) => 1,
        _ => 0,
    };
    let n = 3 + v.steps.len() + 3 + diff;
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// The bisect, in `height` rows of `w` columns: the range, how each step puts its commit in
/// and what judges it; the steps (the latest when they do not all fit); the one being tested;
/// what is left; the end, with as much of the rules diff as fits.
fn bisect_lines<'a>(st: &State, w: usize, height: usize, theme: &Theme) -> Vec<Line<'a>> {
    let v = &st.bisect;
    let mut lines = bisect_heading(v, w, theme);
    let mut tail: Vec<Line> = Vec::new();
    if let Some(t) = &v.testing {
        let el = fmt_duration(st.now.saturating_sub(t.since));
        let text = format!(
            "{} {}  {:<8}  testing…  {el}",
            spinner(st.frame),
            commit_cells(&t.commit),
            role_word(t.role)
        );
        tail.push(Line::styled(clip(&text, 0, w), theme.running()));
    }
    if let Some(r) = &v.remaining
        && v.end.is_none()
    {
        let text = format!(
            "  left: {} candidate{} {}..{}",
            r.candidates,
            if r.candidates == 1 { "" } else { "s" },
            visible(short(&r.first)),
            visible(short(&r.last))
        );
        tail.push(Line::styled(clip(&text, 0, w), theme.dim()));
    }
    tail.extend(end_lines(v, w, theme));
    let steps = v.steps.len();
    // The columns' names, when a step's row fits below them.
    if steps > 0 && height > lines.len() + 1 + tail.len().min(3) {
        let cols = format!(
            "  {:<12}  {:<8}  {:<8}  {:<18}  {:>6}  {:>6}  why",
            "commit", "PR", "role", "verdict", "rounds", "time"
        );
        lines.push(Line::styled(clip(&cols, 0, w), theme.dim()));
    }
    let room = height.saturating_sub(lines.len() + tail.len().min(3));
    // No room for a step: the end (or the one testing) says more than "… N steps" would.
    let (skip, more) = if steps > room {
        let shown = room.saturating_sub(1);
        (steps - shown, room > 0)
    } else {
        (0, false)
    };
    if more {
        let text = format!(
            "  … {skip} earlier step{}",
            if skip == 1 { "" } else { "s" }
        );
        lines.push(Line::styled(text, theme.dim()));
    }
    lines.extend(v.steps.iter().skip(skip).map(|s| step_line(s, w, theme)));
    lines.extend(tail);
    lines.truncate(height);
    lines
}

/// The bisect's first two rows: the range, then the path and the judge.
fn bisect_heading<'a>(v: &BisectView, w: usize, theme: &Theme) -> Vec<Line<'a>> {
    let asked = |r: Option<&str>, c: Option<&CommitInfo>| match (r, c) {
        (Some(r), Some(c)) if r != c.sha => format!("{} ({})", visible(r), visible(short(&c.sha))),
        (_, Some(c)) => visible(short(&c.sha)).into_owned(),
        (Some(r), None) => visible(r).into_owned(),
        (None, None) => "?".into(),
    };
    let (req, s) = (v.request.as_ref(), v.started.as_ref());
    let mut title = format!(
        "Bisect PR side {}..{}",
        asked(req.map(|q| q.good.as_str()), s.map(|s| &s.good)),
        asked(req.map(|q| q.bad.as_str()), s.map(|s| &s.bad))
    );
    let Some(s) = s else {
        let what = if v.running {
            ": resolving the range…"
        } else {
            ""
        };
        title.push_str(what);
        return vec![Line::styled(clip(&title, 0, w), theme.title())];
    };
    title.push_str(&format!(
        " · {} commits · at most {} steps · {} done",
        s.commits,
        s.expected_steps,
        v.steps.len()
    ));
    let how = format!(
        "  path {}: {} · judged by {}",
        path_word(s.path),
        visible(&s.why),
        visible(&s.judge)
    );
    vec![
        Line::styled(clip(&title, 0, w), theme.title()),
        Line::styled(clip(&how, 0, w), theme.dim()),
    ]
}

/// "0123456789ab  #132456 " (the PR column as wide as a Kubernetes PR number).
fn commit_cells(c: &CommitInfo) -> String {
    let pr = c.pr.map_or("-".to_string(), |n| format!("#{n}"));
    format!("{}  {pr:<8}", visible(short(&c.sha)))
}

/// A step's row: mark, commit, PR, role, verdict, rounds, time (or cached), and why.
fn step_line<'a>(s: &Step, w: usize, theme: &Theme) -> Line<'a> {
    let (mark, style) = match s.verdict {
        StepVerdict::Good => ("✓", theme.ok()),
        StepVerdict::Bad => ("✗", theme.bad()),
        StepVerdict::Skip => ("–", theme.warn()),
    };
    let time = if s.cached {
        "cached".to_string()
    } else {
        crate::model::seconds(std::time::Duration::from_millis(s.millis))
    };
    let mut text = format!(
        "{mark} {}  {:<8}  {:<18}  {:>6}  {time:>6}",
        commit_cells(&s.commit),
        role_word(s.role),
        verdict_words(s),
        format!("{}/{}", s.good_rounds, s.rounds),
    );
    if let Some(why) = &s.why {
        text.push_str(&format!("  {}", visible(why)));
    }
    Line::styled(clip(&text, 0, w), style)
}

/// How the bisect ended (or why it did not run), and the rules diff of a found one.
fn end_lines<'a>(v: &BisectView, w: usize, theme: &Theme) -> Vec<Line<'a>> {
    let one = |c: &CommitInfo| format!("{} {}", commit_cells(c), visible(&c.subject));
    let mut out = Vec::new();
    let mut push = |text: String, style| out.push(Line::styled(clip(&text, 0, w), style));
    match &v.end {
        Some(BisectEnd::Found {
            first_bad,
            last_good,
            rules_diff,
        }) => {
            push(format!("✗ first bad  {}", one(first_bad)), theme.bad());
            push(format!("✓ last good  {}", one(last_good)), theme.ok());
            if rules_diff.trim().is_empty() {
                push(
                    "  rules: the same at both (canonical form)".into(),
                    theme.dim(),
                );
            }
            for l in rules_diff.lines() {
                let style = match l.as_bytes().first() {
                    Some(b'+') if !l.starts_with("+++") => theme.added(),
                    Some(b'-') if !l.starts_with("---") => theme.removed(),
                    _ => theme.dim(),
                };
                push(format!("  {}", visible(&l.replace('\t', "    "))), style);
            }
        }
        Some(BisectEnd::NotFound {
            candidates,
            last_good,
        }) => {
            let names: Vec<String> = candidates.iter().map(commit_words).collect();
            push(
                format!(
                    "! not found: skipped commits hide the first bad, one of {}",
                    names.join(", ")
                ),
                theme.warn(),
            );
            push(format!("✓ last good  {}", one(last_good)), theme.ok());
        }
        Some(BisectEnd::Stopped { why }) => {
            push(format!("✗ stopped: {}", visible(why)), theme.bad());
        }
        None => {
            if let Some(e) = &v.error {
                push(
                    format!("✗ the bisect did not run: {}", visible(e)),
                    theme.bad(),
                );
            }
        }
    }
    out
}

fn phase_rows(st: &State) -> u16 {
    Side::BOTH
        .iter()
        .map(|side| {
            let s = st.side(*side);
            let swap = s.phase(Phase::Swap).state != PhaseState::Pending;
            let phases = if swap { 4 } else { 3 };
            let proxy = if s.proxy.is_some() { 2 } else { 0 };
            let running = |p: Phase| s.phase(p).state == PhaseState::Running;
            let gauge = u16::from(running(Phase::Build) || running(Phase::Swap));
            let watch = watch_rows(s);
            1 + phases + proxy + gauge + watch
        })
        .max()
        .unwrap_or(4)
}

/// About how many watch rows a side shows: one per distinct path, two for a polled one (its
/// reason wraps).
fn watch_rows(s: &SideState) -> u16 {
    let mut distinct: Vec<&WatchPath> = Vec::new();
    for p in s.watching.values() {
        if !distinct.contains(&p) {
            distinct.push(p);
        }
    }
    distinct
        .iter()
        .map(|p| {
            if matches!(p, WatchPath::Monitor | WatchPath::ExecMonitor) {
                1
            } else {
                2
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::node_list;

    #[test]
    fn node_names_fit_whole_or_are_counted() {
        let n: Vec<String> = ["control-plane", "worker", "worker2"]
            .map(String::from)
            .to_vec();
        assert_eq!(node_list(&n, 80), " · nodes control-plane, worker, worker2");
        assert_eq!(node_list(&n, 35), " · nodes control-plane, worker +1");
        assert_eq!(node_list(&n, 25), " · nodes control-plane +2");
        assert_eq!(node_list(&n, 10), " · 3 nodes");
        for room in 0..60 {
            let s = node_list(&n, room);
            assert!(!s.contains("work,") && !s.ends_with("work"), "{room}: {s}");
        }
    }
}
