//! A probe's two paths, in the Diff pane's place (Enter on a probe row, Esc back): the rules
//! its packet meets on the base side and on the PR side, step by step side by side, each
//! `hook chain: rule (line N)`, the first step where they part marked `▶` and highlighted;
//! above each, what the rules predict, what was observed and expected, or why there is no
//! prediction. Long rules are cut (`→`, scroll sideways) or, zoomed, wrapped whole (`↳`).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::State;
use crate::app::predict::{Predicted, ProbeKey, target_addr};
use crate::app::state::PathsView;
use crate::model::{Pane, Side};
use crate::rules::render::visible;
use crate::rules::trace::{Step, parted_at};
use crate::ui::panes::probes::{MARK_EXPECTED, MARK_OBSERVED};
use crate::ui::{Theme, area, pane_block};

/// The marker of the step where the paths part (and the room it and a blank take).
const PARTED: &str = "▶ ";

pub fn render(f: &mut Frame, area: Rect, st: &State, theme: &Theme) {
    let Some(pv) = &st.paths else {
        return;
    };
    let block = pane_block(Pane::Diff, st, theme, "paths of one probe · Esc back");
    let inner = block.inner(area);
    f.render_widget(block, area);
    let keys = keys(st, pv);
    let paths = Side::BOTH.map(|s| path(st, s, keys[s.index()].as_ref()));
    let parted = match (paths[0], paths[1]) {
        (Some(a), Some(b)) => Some(parted(st, &keys, a, b)),
        _ => None,
    };
    let [head, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
    f.render_widget(Paragraph::new(heading(st, pv, parted, theme)), head);
    let wrap = st.zoom;
    let halves = area::sides(body);
    let w = halves[0].width.min(halves[1].width) as usize;
    let mut cols = Side::BOTH.map(|s| about(st, s, keys[s.index()].as_ref(), w, wrap, theme));
    let top = cols[0].len().max(cols[1].len());
    for c in &mut cols {
        c.resize(top, Line::raw(""));
    }
    let at = parted.flatten();
    let longest = paths.iter().map(|p| p.map_or(0, |p| p.len())).max();
    let mut rows: [Vec<Line>; 2] = Default::default();
    for i in 0..longest.unwrap_or(0) {
        let [l, r] = Side::BOTH.map(|s| match paths[s.index()].and_then(|p| p.get(i)) {
            Some(step) => step_rows(step, at == Some(i), w, pv.hscroll, wrap, theme),
            None => Vec::new(),
        });
        let n = l.len().max(r.len());
        for (out, mut part) in rows.iter_mut().zip([l, r]) {
            part.resize(n, Line::raw(""));
            out.extend(part);
        }
    }
    let room = (body.height as usize).saturating_sub(top);
    let skip = pv.scroll.min(rows[0].len().saturating_sub(room.max(1)));
    for ((rect, mut col), steps) in halves.into_iter().zip(cols).zip(rows) {
        col.extend(steps.into_iter().skip(skip));
        f.render_widget(Paragraph::new(col), rect);
    }
}

/// The probe shown on each side: the one selected, and its counterpart on the other side.
fn keys(st: &State, pv: &PathsView) -> [Option<ProbeKey>; 2] {
    let other = st.counterpart_key(pv.side, &pv.key);
    let mine = Some(pv.key.clone());
    match pv.side {
        Side::Base => [mine, other],
        Side::Pr => [other, mine],
    }
}

fn prediction<'a>(st: &'a State, side: Side, key: Option<&ProbeKey>) -> Option<&'a Predicted> {
    st.side(side).predictions.get(key?)
}

fn path<'a>(st: &'a State, side: Side, key: Option<&ProbeKey>) -> Option<&'a [Step]> {
    match prediction(st, side, key)? {
        Ok(p) => Some(&p.trace.path),
        Err(_) => None,
    }
}

/// Where two paths part, each side's own addresses (its LoadBalancer IPs and the address its
/// probe curls: the clusters give the Service different ones) read as one placeholder.
fn parted(st: &State, keys: &[Option<ProbeKey>; 2], a: &[Step], b: &[Step]) -> Option<usize> {
    let (lb_base, lb_pr) = st.lb_ips();
    let addrs = |mut lbs: Vec<String>, key: &Option<ProbeKey>| {
        if let Some(Ok((ip, _))) = key.as_ref().map(|k| target_addr(&k.1)) {
            lbs.push(ip.to_string());
        }
        lbs
    };
    let a = same_form(a, &addrs(lb_base, &keys[0]));
    let b = same_form(b, &addrs(lb_pr, &keys[1]));
    parted_at(&a, &b)
}

/// Steps with each of `addrs` in their rules replaced by `<LB IP>` (a whole address only:
/// `10.0.0.1` is not part of `10.0.0.10`).
fn same_form(steps: &[Step], addrs: &[String]) -> Vec<Step> {
    let mut out = steps.to_vec();
    for s in &mut out {
        for a in addrs.iter().filter(|a| !a.is_empty()) {
            s.rule = replace_addr(&s.rule, a);
        }
    }
    out
}

fn replace_addr(text: &str, addr: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(addr) {
        let before = rest[..i].chars().last().or_else(|| out.chars().last());
        let after = rest[i + addr.len()..].chars().next();
        let part = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit() || c == '.');
        out.push_str(&rest[..i]);
        out.push_str(if part(before) || part(after) {
            addr
        } else {
            "<LB IP>"
        });
        rest = &rest[i + addr.len()..];
    }
    out.push_str(rest);
    out
}

/// What is shown, and whether (where) the paths part.
fn heading<'a>(
    st: &State,
    pv: &PathsView,
    parted: Option<Option<usize>>,
    theme: &Theme,
) -> Line<'a> {
    let target = st
        .side(pv.side)
        .probes
        .get(&pv.key)
        .map_or_else(|| pv.key.1.clone(), |c| st.target_of(&c.last).to_string());
    let who = format!("{} → {target}", st.side(pv.side).short(&pv.key.0));
    let part = match parted {
        Some(Some(i)) => Span::styled(
            format!("the paths part at step {} ({})", i + 1, PARTED.trim_end()),
            theme.warn(),
        ),
        Some(None) => Span::styled("the same path on both sides", theme.dim()),
        None => Span::styled("a side has no prediction", theme.dim()),
    };
    Line::from(vec![
        Span::styled("probe ", theme.dim()),
        Span::styled(visible(&who).into_owned(), theme.title()),
        Span::styled(" · ", theme.dim()),
        part,
        Span::styled(" · z whole · Esc back", theme.dim()),
    ])
}

/// A column's head: the cluster and its verdict, what the probe curled with what was observed
/// and expected, marks where those contradict the prediction; or why there is no prediction.
fn about<'a>(
    st: &State,
    side: Side,
    key: Option<&ProbeKey>,
    w: usize,
    wrap: bool,
    theme: &Theme,
) -> Vec<Line<'a>> {
    let s = st.side(side);
    let who = format!("{} ({}): ", s.name(), side.label());
    let text = |t: String, style: Style| -> Vec<Line<'a>> {
        cut(&visible(&t), 0, w, wrap)
            .into_iter()
            .map(|r| Line::styled(r, style))
            .collect()
    };
    let Some(key) = key else {
        return text(format!("{who}no such probe on this side"), theme.warn());
    };
    let cell = s.probes.get(key);
    let observed = cell.map(|c| c.last.outcome);
    let expected = cell.and_then(|c| st.expected(side, &key.0, &st.target_of(&c.last)));
    let mut seen = vec![key.1.clone()];
    seen.extend(observed.map(|o| format!("observed {}", o.label())));
    seen.extend(expected.map(|e| format!("expected {}", e.label())));
    let p = match prediction(st, side, Some(key)) {
        Some(Ok(p)) => p,
        Some(Err(why)) => {
            let mut out = text(format!("{who}no prediction"), theme.title());
            out.extend(text(seen.join(" · "), theme.dim()));
            out.extend(text(format!("why: {why}"), theme.warn()));
            return out;
        }
        None => {
            let mut out = text(format!("{who}no prediction yet"), theme.title());
            out.extend(text(seen.join(" · "), theme.dim()));
            return out;
        }
    };
    let mut verdict = p.label();
    if !p.trace.endpoints.is_empty() {
        verdict.push_str(&format!(" to {}", p.trace.endpoints.join(", ")));
    }
    if p.trace.masquerade {
        verdict.push_str(", masquerade");
    }
    let mut out = text(format!("{who}{verdict}"), theme.title());
    seen.push(format!("rules of {}", s.short(&p.node)));
    out.extend(text(seen.join(" · "), theme.dim()));
    if observed.is_some_and(|o| p.contradicts(o)) {
        let m = format!("{MARK_OBSERVED} observed contradicts the prediction");
        out.extend(text(m, theme.surprise()));
    }
    if expected.is_some_and(|e| p.contradicts(e)) {
        let m = format!("{MARK_EXPECTED} the expectation contradicts the prediction");
        out.extend(text(m, theme.surprise()));
    }
    for n in &p.trace.notes {
        out.extend(text(format!("note: {n}"), theme.warn()));
    }
    if p.trace.path.is_empty() {
        out.extend(text("no rule of kube-proxy's matched".into(), theme.dim()));
    }
    out
}

/// A step as `hook chain: rule (line N)` (an iptables chain with its table: `nat/OUTPUT`).
pub fn step_text(s: &Step) -> String {
    let chain = if s.table.contains(' ') || s.table.is_empty() {
        s.chain.clone()
    } else {
        format!("{}/{}", s.table, s.chain)
    };
    let text = format!("{} {chain}: {} (line {})", s.hook.name(), s.rule, s.line);
    visible(&text).into_owned()
}

/// A step's rows: after the `▶ ` gutter, cut at `w` from column `from`, or wrapped.
fn step_rows<'a>(
    s: &Step,
    parted: bool,
    w: usize,
    from: usize,
    wrap: bool,
    theme: &Theme,
) -> Vec<Line<'a>> {
    let gutter = PARTED.chars().count();
    let (mark, style) = match parted {
        true => (PARTED, theme.parted()),
        false => ("  ", Style::default()),
    };
    cut(&step_text(s), from, w.saturating_sub(gutter), wrap)
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let g = if i == 0 { mark } else { "  " };
            Line::from(vec![Span::styled(g, style), Span::styled(r, style)])
        })
        .collect()
}

/// `text` in rows of `w` characters: wrapped whole (continuation rows `↳ `), or one row from
/// column `from` with `←` where text is hidden on the left and `→` where more follows.
fn cut(text: &str, from: usize, w: usize, wrap: bool) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len();
    if w < 4 {
        return vec![chars.iter().take(w).collect()];
    }
    if wrap {
        let mut out = vec![chars.iter().take(w).collect::<String>()];
        let mut at = w;
        while at < n {
            let piece: String = chars[at..].iter().take(w - 2).collect();
            out.push(format!("↳ {piece}"));
            at += w - 2;
        }
        return out;
    }
    let from = from.min(n);
    let left = from > 0;
    let right = n > from + w - usize::from(left);
    let take = w - usize::from(left) - usize::from(right);
    let mut row: String = chars[from..].iter().take(take).collect();
    if left {
        row.insert(0, '←');
    }
    if right {
        row.push('→');
    }
    vec![row]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_replaced_whole() {
        let r = replace_addr(
            "-d 172.17.255.1/32 -d 172.17.255.10 x172.17.255.1",
            "172.17.255.1",
        );
        assert_eq!(r, "-d <LB IP>/32 -d 172.17.255.10 x<LB IP>");
        assert_eq!(replace_addr("1.2.3.4", "1.2.3.4"), "<LB IP>");
        assert_eq!(replace_addr("11.2.3.4", "1.2.3.4"), "11.2.3.4");
    }

    #[test]
    fn long_text_is_cut_with_arrows_or_wrapped_whole() {
        assert_eq!(cut("abcdefghij", 0, 6, false), ["abcde→"]);
        assert_eq!(cut("abcdefghij", 3, 6, false), ["←defg→"]);
        assert_eq!(cut("abcdefghij", 6, 6, false), ["←ghij"]);
        assert_eq!(cut("abc", 0, 6, false), ["abc"]);
        assert_eq!(cut("abcdefghij", 0, 6, true), ["abcdef", "↳ ghij"]);
        let whole: String = cut("abcdefghijklmnop", 0, 6, true)
            .iter()
            .map(|r| r.trim_start_matches("↳ "))
            .collect();
        assert_eq!(whole, "abcdefghijklmnop");
    }
}
