//! The one place the dashboard's state changes: `update(state, msg) -> Reaction`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::diffs::{Computed, DiffKey, DiffRequest, LineLayout, NodeIps, lines};
use super::keymap::{Action, HelpLayout, action_for};
use super::predict::{self, PredictRequest, Predicted, ProbeKey};
use super::state::{
    BUILD_STAGES, Confirm, Editing, Editor, GroupRequest, HISTORY, NodeInfo, OUTPUT_LINES,
    PathsView, PhaseView, ProbeCell, State,
};
use crate::backend::bisect::{BisectRequest, PathChoice};
use crate::backend::event::{Command, Event, ProbeResult, SessionInfo};
use crate::backend::kind::{Progress, progress};
use crate::model::{Job, Pane, Phase, PhaseState, ProxyMode, Side, Sides, Target};
use crate::rules::Options;
use crate::rules::group::Canon;
use crate::rules::render::visible;
use crate::scenario::{MERGE_BASE, WORKTREE};

/// Errors remembered per side.
const ERRORS: usize = 20;

/// Everything that can change the state.
#[derive(Debug)]
pub enum Msg {
    Key(KeyEvent),
    /// The mouse wheel over a pane (the front end knows where the panes are).
    Scroll {
        pane: Option<Pane>,
        lines: isize,
    },
    Paste(String),
    Resize(u16, u16),
    /// The app clock advanced to this time.
    Tick(Duration),
    Backend(Event),
    DiffReady {
        key: DiffKey,
        result: Result<Computed, String>,
    },
    /// The answer to [`Effect::Predict`].
    Predicted {
        side: Side,
        id: u64,
        result: BTreeMap<ProbeKey, Predicted>,
    },
    /// The answer to [`Effect::Group`]: the node's canonical rules.
    Grouped {
        req: Box<GroupRequest>,
        canon: Canon,
    },
    /// SIGTERM / SIGINT / SIGHUP.
    Terminate,
}

/// What the driver must do after an update.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Send(Command),
    /// Parse and compare these dumps off the UI loop, then answer with [`Msg::DiffReady`].
    ComputeDiff(Box<DiffRequest>),
    /// Trace these probes through their nodes' rules off the UI loop, then answer with
    /// [`Msg::Predicted`].
    Predict(Box<PredictRequest>),
    /// Make a node's canonical rules off the UI loop (a large dump takes tens of ms), then
    /// answer with [`Msg::Grouped`].
    Group(Box<GroupRequest>),
    SetMouseCapture(bool),
    Quit,
}

/// The outcome of an update: effects to run, and whether the screen must be redrawn.
#[derive(Debug, Default, PartialEq)]
pub struct Reaction {
    pub effects: Vec<Effect>,
    pub redraw: bool,
}

impl Reaction {
    fn redraw() -> Reaction {
        Reaction {
            effects: Vec::new(),
            redraw: true,
        }
    }
    fn with(mut self, e: Effect) -> Reaction {
        self.effects.push(e);
        self
    }
    /// Ask for `side`'s predictions again when what they are made from changed.
    fn with_predict(self, st: &mut State, side: Side) -> Reaction {
        match predict_request(st, side) {
            Some(r) => self.with(Effect::Predict(Box::new(r))),
            None => self,
        }
    }
    fn with_diff(self, st: &mut State) -> Reaction {
        match diff_request(st) {
            Some(r) => self.with(Effect::ComputeDiff(Box::new(r))),
            None => self,
        }
    }
}

pub fn update(st: &mut State, msg: Msg) -> Reaction {
    match msg {
        Msg::Tick(now) => tick(st, now),
        Msg::Resize(w, h) => {
            st.size = (w, h);
            Reaction::redraw()
        }
        Msg::Backend(ev) => backend_event(st, ev),
        Msg::DiffReady { key, result } => diff_ready(st, key, result),
        Msg::Predicted { side, id, result } => predicted(st, side, id, result),
        Msg::Grouped { req, canon } => grouped(st, &req, canon),
        Msg::Key(k) => {
            if k.kind == KeyEventKind::Release {
                return Reaction::default();
            }
            key(st, k)
        }
        Msg::Paste(text) => {
            let text = text.replace(['\n', '\r'], " ");
            if let Some(ed) = st.editor.as_mut() {
                ed.textarea.insert_str(text);
            } else if st.filter_editing {
                let f = st.focus.unwrap_or(Pane::Diff);
                st.filters[f.index()].push_str(&text);
                filter_changed(st, f);
            }
            Reaction::redraw()
        }
        Msg::Scroll { pane, lines } => {
            if let Some(p) = pane {
                st.focus = Some(p);
            }
            scroll_by(st, lines);
            Reaction::redraw()
        }
        Msg::Terminate => {
            st.quit = true;
            Reaction::redraw().with(Effect::Quit)
        }
    }
}

fn tick(st: &mut State, now: Duration) -> Reaction {
    st.now = now;
    // Redraw only when something moves (spinners and elapsed times while work runs): an idle
    // dashboard does not draw at all.
    if st.busy() {
        st.frame = st.frame.wrapping_add(1);
        Reaction::redraw()
    } else {
        Reaction::default()
    }
}

fn diff_ready(st: &mut State, key: DiffKey, result: Result<Computed, String>) -> Reaction {
    if st.diff.pending.as_ref() == Some(&key) {
        st.diff.pending = None;
    }
    // Not the view shown now (a live diff while a change is shown, or the other way round):
    // what is shown now is asked for instead.
    if key.step != st.diff.step {
        return Reaction::default().with_diff(st);
    }
    let shown = st.diff.result_for.as_ref().filter(|k| k.step.is_none());
    if key.step.is_none() && key.generation < shown.map_or(0, |k| k.generation) {
        return Reaction::default();
    }
    match result {
        Ok(c) => {
            st.diff.result = Some(c);
            st.diff.error = None;
            relayout(st);
        }
        Err(e) => st.diff.error = Some(e),
    }
    st.diff.result_for = Some(key);
    // Something newer may have arrived while this one was computed.
    Reaction::redraw().with_diff(st)
}

/// How the Diff pane lays out its lines now.
fn layout(st: &State) -> LineLayout {
    LineLayout {
        side_by_side: st.diff.side_by_side,
        filter: st.filter(Pane::Diff).to_string(),
    }
}

/// Rebuild the display lines when the layout or the filter changed (once, not per frame).
fn relayout(st: &mut State) {
    let want = layout(st);
    if let Some(c) = st.diff.result.as_mut()
        && c.layout != want
    {
        c.lines = Arc::new(lines(&c.comparison, &want));
        c.layout = want;
    }
}

fn filter_changed(st: &mut State, pane: Pane) {
    st.scroll[pane.index()] = 0;
    if pane == Pane::Diff {
        st.diff.scroll = 0;
        relayout(st);
    }
}

fn push_line(buf: &mut VecDeque<String>, line: String) {
    if buf.len() == OUTPUT_LINES {
        buf.pop_front();
    }
    buf.push_back(line);
}

/// A backend event, then the predictions asked for again when it changed what they are made
/// from (a node's address, a pod, the Service, a new probe, a node's rules).
fn backend_event(st: &mut State, ev: Event) -> Reaction {
    let side = match &ev {
        Event::Node { side, .. }
        | Event::Pod { side, .. }
        | Event::PodRemoved { side, .. }
        | Event::Service { side, .. }
        | Event::Probe { side, .. }
        | Event::RuleDump { side, .. } => Some(*side),
        _ => None,
    };
    let r = on_event(st, ev);
    match side {
        Some(side) => r.with_predict(st, side),
        None => r,
    }
}

fn on_event(st: &mut State, ev: Event) -> Reaction {
    match ev {
        Event::Session(info) => on_session(st, *info),
        Event::Phase { side, phase, state } => on_phase(st, side, phase, state),
        Event::Output { side, phase, line } => {
            let s = st.side_mut(side);
            if phase == Phase::Build
                && let Some(Progress::Stage(stage)) = progress(&line)
            {
                s.stage = BUILD_STAGES.iter().position(|x| *x == stage);
            }
            push_line(&mut s.output[phase as usize], line);
        }
        Event::Estimate {
            side,
            phase,
            seconds,
        } => st.side_mut(side).estimate[phase as usize] = Some(seconds),
        e @ (Event::Built { .. } | Event::ProxySwapped { .. }) => on_image(st, e),
        Event::Held {
            side,
            change,
            conns,
        } => super::held::on_held(st, side, change, conns),
        Event::Node {
            side,
            name,
            role,
            ip,
        } => {
            let s = st.side_mut(side);
            match s.nodes.iter_mut().find(|n| n.name == name) {
                Some(n) => {
                    n.role = role;
                    n.ip = ip;
                }
                None => s.nodes.push(NodeInfo { name, role, ip }),
            }
            // Its address may be new to the packet summary.
            return Reaction::redraw().with_diff(st);
        }
        Event::Pod { side, pod } => {
            st.side_mut(side).pods.insert(pod.name.clone(), pod);
        }
        Event::PodRemoved { side, name } => {
            st.side_mut(side).pods.remove(&name);
        }
        Event::Service { side, service } => {
            st.side_mut(side).service = Some(service);
            // Its LoadBalancer IP may be new to the diff.
            return Reaction::redraw().with_diff(st);
        }
        Event::ProbesStarted { side, target } => {
            st.side_mut(side).probes_running = true;
            st.activity = format!("{}: probing {target}", st.side(side).name());
        }
        Event::Probe { side, result } => on_probe(st, side, result),
        Event::ProbesDone { side } => {
            st.side_mut(side).probes_running = false;
            st.activity = format!("{}: probes done", st.side(side).name());
        }
        Event::RuleDump {
            side,
            node,
            text,
            at_ms,
        } => {
            // A dump read no later than the one held (a replay's second pass) is no news.
            let seen = st.side(side).dump_at.get(&node).copied();
            if let (Some(ms), Some(last)) = (at_ms, seen)
                && ms <= last
            {
                return Reaction::default();
            }
            if let Some(ms) = at_ms {
                st.side_mut(side).dump_at.insert(node.clone(), ms);
            }
            let at = at_ms.map_or(st.now, Duration::from_millis);
            return on_rule_dump(st, side, node, text, at);
        }
        Event::NoRules { side, node, why } => on_no_rules(st, side, node, why),
        Event::Watching { side, node, path } => {
            st.side_mut(side).watching.insert(node, path);
        }
        Event::ProxyMetrics { side, node, read } => {
            st.metrics.nodes[side].insert(node, read);
        }
        Event::Error {
            side,
            pane,
            message,
        } => on_error(st, side, pane, message),
        Event::Finished { job, error } => {
            if job == Job::Bisect {
                st.bisect.finished(error.clone());
            }
            // The read `m` asked for is over, whatever it found (the overlay says so).
            let metrics_read = job == Job::Rules && std::mem::take(&mut st.metrics.reading);
            match error {
                Some(e) => st.activity = format!("{job:?} did not finish: {e}").to_lowercase(),
                None if metrics_read => st.activity = "kube-proxy's metrics read".into(),
                None if job == Job::Bisect => {}
                None => return Reaction::default(),
            }
        }
        Event::Bisect(e) => {
            if let Some(line) = st.bisect.apply(e, st.now) {
                st.activity = line;
            }
        }
        Event::End | Event::Unknown => return Reaction::default(),
    }
    Reaction::redraw()
}

/// What a side runs now: the node image built (its commit, version, snapshot), or the
/// kube-proxy swapped into it.
fn on_image(st: &mut State, e: Event) {
    match e {
        Event::Built {
            side,
            commit,
            image,
            version,
            snapshot,
        } => {
            let s = st.side_mut(side);
            s.commit = Some(commit);
            s.version = version;
            s.snapshot = snapshot;
            if let Some(i) = s.info.as_mut() {
                i.image = Some(image);
            }
        }
        Event::ProxySwapped {
            side,
            image,
            commit,
            snapshot,
        } => {
            let from = snapshot.unwrap_or_else(|| commit[..commit.len().min(12)].to_string());
            st.side_mut(side).proxy = Some((image, from));
        }
        _ => {}
    }
}

fn on_phase(st: &mut State, side: Side, phase: Phase, state: PhaseState) {
    let now = st.now;
    let pv = &mut st.side_mut(side).phases[phase as usize];
    match &state {
        PhaseState::Running => {
            *pv = PhaseView {
                state: state.clone(),
                started: Some(now),
                took: None,
            };
            if phase == Phase::Build {
                st.side_mut(side).stage = None;
            }
        }
        PhaseState::Pending => *pv = PhaseView::default(),
        _ => {
            pv.took = pv.started.map(|s| now.saturating_sub(s));
            pv.state = state.clone();
        }
    }
    st.activity = format!("{}: {} {state}", st.side(side).name(), phase.title());
}

fn on_probe(st: &mut State, side: Side, result: ProbeResult) {
    let now = st.now;
    let s = st.side_mut(side);
    let key = (result.source.clone(), result.target.clone());
    let cell = s.probes.entry(key).or_insert_with(|| ProbeCell {
        last: result.clone(),
        history: Default::default(),
    });
    if cell.history.len() == HISTORY {
        cell.history.pop_front();
    }
    cell.history.push_back((now, result.outcome));
    cell.last = result;
}

fn on_rule_dump(st: &mut State, side: Side, node: String, text: String, at: Duration) -> Reaction {
    let changed = st
        .side(side)
        .dumps
        .get(&node)
        .is_none_or(|old| **old != *text);
    if !changed {
        return Reaction::default();
    }
    let needle = st.service().map(|s| s.qualified_name());
    let mentions =
        needle.is_some_and(|n| memchr::memmem::find(text.as_bytes(), n.as_bytes()).is_some());
    let no_rules = !crate::rules::mentions_kube_proxy(&text);
    let mode = if crate::rules::nft::looks_like_nft(&text) {
        ProxyMode::Nftables
    } else {
        ProxyMode::Iptables
    };
    let s = st.side_mut(side);
    if no_rules {
        s.no_rules.insert(node.clone());
        s.modes.remove(&node);
    } else {
        s.no_rules.remove(&node);
        s.modes.insert(node.clone(), mode);
    }
    s.mentions_service.insert(node.clone(), mentions);
    let after: Arc<str> = Arc::from(text);
    let group = s.group_request(side, &node, after.clone());
    if let Some(before) = s.dumps.insert(node.clone(), after.clone()) {
        st.timeline.record(at, side, &node, &before, &after);
    }
    st.grouping += 1;
    st.refresh_pairs();
    st.diff.generation += 1;
    st.activity = format!("rules of {node} updated");
    Reaction::redraw()
        .with(Effect::Group(Box::new(group)))
        .with_diff(st)
}

/// A node's canonical rules are back: it joins its group (unless a newer dump of it is on its
/// way), and the pairs and their diff follow.
fn grouped(st: &mut State, req: &GroupRequest, canon: Canon) -> Reaction {
    st.grouping = st.grouping.saturating_sub(1);
    if !st.side_mut(req.side).grouped(req, canon) {
        return Reaction::default();
    }
    st.refresh_pairs();
    st.diff.generation += 1;
    Reaction::redraw().with_diff(st)
}

/// A node without kube-proxy rules: marked as such, its old dump (if any) no longer compared,
/// and said in the Diff pane: never shown as every rule removed.
fn on_no_rules(st: &mut State, side: Side, node: String, why: String) {
    let s = st.side_mut(side);
    s.no_rules.insert(node.clone());
    s.modes.remove(&node);
    s.dumps.remove(&node);
    let short = s.short(&node);
    st.refresh_pairs();
    st.diff.generation += 1;
    let m = format!("{short}: no kube-proxy rules ({why}): not compared");
    on_error(st, Some(side), Pane::Diff, m);
}

/// The session: its sides, Service, targets and expectations. A later session event (a
/// recording may hold more than one) never drops or changes an expectation already set: those
/// stay (the Build pane says so), and its new ones are added.
fn on_session(st: &mut State, mut info: SessionInfo) {
    let dropped = st.session.as_ref().map_or(0, |s| s.dropped_by(&info).len());
    if let Some(old) = &st.session {
        old.keep_expectations(&mut info);
    }
    st.sides.base.info = Some(info.base.clone());
    st.sides.pr.info = Some(info.pr.clone());
    st.activity = format!("{} vs {}", info.base.name, info.pr.name);
    st.session = Some(info);
    if dropped > 0 {
        let m = crate::backend::event::later_session_note(dropped);
        tracing::warn!("{m}");
        on_error(st, None, Pane::Build, m);
    }
}

fn on_error(st: &mut State, side: Option<Side>, pane: Pane, message: String) {
    st.activity = match side {
        Some(s) => format!("{}: error in {pane}: {message}", st.side(s).name()),
        None => format!("error in {pane}: {message}"),
    };
    let sides = match side {
        Some(s) => vec![s],
        None => Side::BOTH.to_vec(),
    };
    for s in sides {
        let errs = &mut st.side_mut(s).errors;
        errs.push_back((pane, message.clone()));
        if errs.len() > ERRORS {
            errs.pop_front();
        }
    }
}

/// A diff computation to start, unless one for the same inputs is running or done.
/// `side`'s prediction request, numbered, when its inputs differ from the last one sent.
fn predict_request(st: &mut State, side: Side) -> Option<PredictRequest> {
    let s = st.side_mut(side);
    let mut req = predict::request(s, side);
    // Nothing to predict yet (no probe has run), or nothing new.
    let none_yet = req.inputs.is_empty() && s.predict_sent.is_none();
    if none_yet || s.predict_sent.as_ref().is_some_and(|o| o.same_inputs(&req)) {
        return None;
    }
    req.id = s.predict_sent.as_ref().map_or(1, |o| o.id + 1);
    s.predict_sent = Some(req.clone());
    Some(req)
}

/// Predictions computed: kept when they answer the last request sent for that side.
fn predicted(
    st: &mut State,
    side: Side,
    id: u64,
    result: BTreeMap<ProbeKey, Predicted>,
) -> Reaction {
    let s = st.side_mut(side);
    if s.predict_sent.as_ref().is_none_or(|r| r.id != id) {
        return Reaction::default();
    }
    if s.predictions == result {
        return Reaction::default();
    }
    s.predictions = result;
    Reaction::redraw()
}

pub fn diff_request(st: &mut State) -> Option<DiffRequest> {
    if st.diff.pairs.is_empty() {
        return None;
    }
    if st.diff.node >= st.diff.pairs.len() {
        st.diff.node = 0;
    }
    // What is shown: a timeline entry (that node's rules before vs after the change), or the
    // live node pair (base vs PR).
    let lb_ips = st.lb_ips();
    let (key, base, pr) = match st.diff.step {
        Some(id) => {
            let (_, c) = st.timeline.by_id(id)?;
            let key = DiffKey {
                generation: 0,
                node: c.node.clone(),
                raw: st.diff.raw,
                step: Some(id),
                lb_ips,
                node_ips: NodeIps::default(),
            };
            (key, c.before.clone(), c.after.clone())
        }
        None => {
            let pair = &st.diff.pairs[st.diff.node];
            let key = DiffKey {
                generation: st.diff.generation,
                node: pair.role.clone(),
                raw: st.diff.raw,
                step: None,
                lb_ips,
                node_ips: st.node_ips(pair),
            };
            let dumps = (
                &st.sides.base.dumps[&pair.base],
                &st.sides.pr.dumps[&pair.pr],
            );
            (key, dumps.0.clone(), dumps.1.clone())
        }
    };
    if st.diff.result_for.as_ref() == Some(&key) || st.diff.pending.is_some() {
        // Done already, or one is running: its answer triggers the next request.
        return None;
    }
    let req = DiffRequest {
        key: key.clone(),
        base,
        pr,
        options: Options {
            raw: st.diff.raw,
            service: st.service().map(|s| s.filter().clone()),
            lb_ips: key.lb_ips.clone(),
            ..Options::default()
        },
        layout: layout(st),
    };
    st.diff.pending = Some(key);
    Some(req)
}

/// `[` and `]`: step back and forth through the timeline; past the newest entry is the live
/// view again.
fn step(st: &mut State, back: bool) -> Reaction {
    let ids: Vec<u64> = st.timeline.entries.iter().map(|c| c.id).collect();
    let at = st
        .diff
        .step
        .and_then(|id| ids.iter().position(|x| *x == id));
    st.diff.step = match (at, back) {
        (None, true) => ids.last().copied(),
        (Some(i), true) => Some(ids[i.saturating_sub(1)]),
        (Some(i), false) => ids.get(i + 1).copied(),
        (None, false) => None,
    };
    st.diff.scroll = 0;
    st.activity = match st.diff.step.and_then(|id| st.timeline.by_id(id)) {
        Some((i, c)) => format!(
            "rule change {}/{}: {} +{} -{}",
            i + 1,
            ids.len(),
            c.node,
            c.added,
            c.removed
        ),
        None if ids.is_empty() => "no rule changes yet".into(),
        None => "diff: live".into(),
    };
    Reaction::redraw().with_diff(st)
}

fn key(st: &mut State, k: KeyEvent) -> Reaction {
    // Modal layers first: editor, filter input, confirmation, help.
    if st.editor.is_some() {
        return editor_key(st, k);
    }
    if st.filter_editing {
        return filter_key(st, k);
    }
    if let Some(c) = st.confirm.take() {
        return confirm_key(st, c, k);
    }
    let Some(action) = action_for(&k) else {
        return Reaction::default();
    };
    if st.help && !matches!(action, Action::Help | Action::Quit) {
        return help_key(st, action);
    }
    if st.metrics.open && matches!(action, Action::Back | Action::Metrics) {
        st.metrics.open = false;
        return Reaction::redraw();
    }
    act(st, action)
}

/// A key while the help is open: the scroll keys scroll it (as far as it is taller than the
/// screen), any other closes it and does nothing else.
fn help_key(st: &mut State, action: Action) -> Reaction {
    let limit = HelpLayout::new(st.size, |a| st.disabled(a)).max_scroll(st.size.1);
    let s = &mut st.help_scroll;
    *s = (*s).min(limit);
    match action {
        Action::Up => *s = s.saturating_sub(1),
        Action::Down => *s = (*s + 1).min(limit),
        Action::PageUp => *s = s.saturating_sub(10),
        Action::PageDown => *s = (*s + 10).min(limit),
        Action::Top => *s = 0,
        Action::Bottom => *s = limit,
        _ => st.help = false,
    }
    Reaction::redraw()
}

fn editor_key(st: &mut State, k: KeyEvent) -> Reaction {
    let Some(ed) = st.editor.as_mut() else {
        return Reaction::default();
    };
    match k.code {
        KeyCode::Esc => st.editor = None,
        KeyCode::Enter if ed.editing == Editing::Bisect => {
            let text = ed.textarea.lines().join(" ");
            return bisect_asked(st, &text);
        }
        KeyCode::Enter if ed.editing == Editing::Repeat => {
            let text = ed.textarea.lines().join(" ");
            return repeat_asked(st, &text);
        }
        KeyCode::Enter => {
            let text = ed.textarea.lines().join(" ");
            match text.parse::<Target>() {
                Ok(t) => {
                    st.editor = None;
                    st.probe_target = Some(t);
                }
                Err(_) if text.trim().is_empty() => {
                    st.editor = None;
                    st.probe_target = None;
                }
                Err(e) => {
                    st.activity = e;
                    return Reaction::redraw();
                }
            }
            let target = st.target();
            st.activity = format!("probe target: {target}");
            return Reaction::redraw().with(Effect::Send(Command::Probe {
                target: Some(target),
                repeat: None,
            }));
        }
        _ => {
            ed.textarea.input(k);
        }
    }
    Reaction::redraw()
}

fn filter_key(st: &mut State, k: KeyEvent) -> Reaction {
    let f = st.focus.unwrap_or(Pane::Diff);
    let text = &mut st.filters[f.index()];
    match k.code {
        KeyCode::Esc => {
            text.clear();
            st.filter_editing = false;
        }
        KeyCode::Enter => st.filter_editing = false,
        KeyCode::Backspace => {
            text.pop();
        }
        KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => text.push(c),
        _ => {}
    }
    filter_changed(st, f);
    Reaction::redraw()
}

fn confirm_key(st: &mut State, c: Confirm, k: KeyEvent) -> Reaction {
    if !matches!(
        k.code,
        KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter
    ) {
        return Reaction::redraw();
    }
    match c {
        Confirm::Delete => {
            st.activity = format!("deleting {}", st.deletes().join(" and "));
            Reaction::redraw().with(Effect::Send(Command::DeleteClusters))
        }
        Confirm::Quit => {
            st.quit = true;
            Reaction::redraw()
                .with(Effect::Send(Command::Cancel))
                .with(Effect::Quit)
        }
    }
}

fn page(st: &State) -> usize {
    (st.size.1 as usize / 2).saturating_sub(4).max(1)
}

fn scroll_by(st: &mut State, delta: isize) {
    let pane = st.focus.unwrap_or(Pane::Diff);
    let v = match (pane, st.paths.as_mut()) {
        (Pane::Probes, _) => return move_cursor(st, delta),
        (Pane::Diff, Some(p)) => &mut p.scroll,
        (Pane::Diff, None) => &mut st.diff.scroll,
        _ => &mut st.scroll[pane.index()],
    };
    *v = v.saturating_add_signed(delta);
}

/// Move the Probes pane's cursor `delta` rows within its side's rows; the first row shown
/// follows it up (and the pane, when drawn, scrolls down to it).
fn move_cursor(st: &mut State, delta: isize) {
    let last = st.probe_rows(st.probe_cursor.side).len().saturating_sub(1);
    let c = &mut st.probe_cursor;
    c.row = c.row.min(last).saturating_add_signed(delta).min(last);
    let top = &mut st.scroll[Pane::Probes.index()];
    *top = (*top).min(c.row);
}

/// The Probes pane's cursor to the other side's table: onto the selected probe's counterpart
/// there when it has one.
fn cursor_to(st: &mut State, side: Side) {
    if st.probe_cursor.side == side {
        return;
    }
    let there = st
        .selected_probe()
        .and_then(|(s, k)| st.counterpart_key(s, &k))
        .and_then(|k| st.probe_rows(side).iter().position(|(r, _)| **r == k));
    st.probe_cursor.side = side;
    if let Some(row) = there {
        st.probe_cursor.row = row;
    }
    move_cursor(st, 0);
}

/// Enter in the Probes pane: the selected probe's two paths in the Diff pane's place (focused,
/// so that the zoom key shows them whole and the scroll keys scroll them).
fn open_paths(st: &mut State) -> Reaction {
    if st.focus != Some(Pane::Probes) {
        return Reaction::default();
    }
    let Some((side, key)) = st.selected_probe() else {
        st.activity = "no probe selected".into();
        return Reaction::redraw();
    };
    let what = format!("{} → {}", st.side(side).short(&key.0), key.1);
    st.activity = format!(
        "paths of {} (Esc: back)",
        crate::rules::render::visible(&what)
    );
    st.paths = Some(PathsView {
        side,
        key,
        scroll: 0,
        hscroll: 0,
    });
    st.focus = Some(Pane::Diff);
    Reaction::redraw()
}

/// Esc: the usual view again. A probe's paths close (focus back on the Probes pane) and the
/// zoom ends; with nothing open, nothing to draw.
fn back(st: &mut State) -> Reaction {
    let changed = st.zoom || st.paths.is_some();
    st.zoom = false;
    if st.paths.take().is_some() {
        st.focus = Some(Pane::Probes);
    }
    Reaction {
        effects: vec![],
        redraw: changed,
    }
}

/// What a key's action does.
pub fn act(st: &mut State, a: Action) -> Reaction {
    match a {
        Action::Rebuild
        | Action::RebuildBoth
        | Action::SwapProxy
        | Action::SwapProxyBoth
        | Action::Create
        | Action::Deploy
        | Action::Retest
        | Action::Refresh
        | Action::Watch => command(st, a),
        Action::Up
        | Action::Down
        | Action::PageUp
        | Action::PageDown
        | Action::Top
        | Action::Bottom
        | Action::Left
        | Action::Right => scroll(st, a),
        Action::ToggleRaw | Action::ToggleLayout | Action::NextNode => diff_action(st, a),
        Action::ToggleWrap => {
            st.diff.wrap = !st.diff.wrap;
            st.diff.hscroll = 0;
            st.activity = if st.diff.wrap {
                "diff: long rules wrap".into()
            } else {
                "diff: long rules scroll sideways (←/→)".into()
            };
            Reaction::redraw()
        }
        Action::Open => open_paths(st),
        Action::Back => back(st),
        Action::Metrics => {
            // Opened: read again (the rules and, with them, every node's metrics).
            st.metrics.open = true;
            st.metrics.reading = true;
            st.activity = "reading kube-proxy's metrics".into();
            Reaction::redraw().with(Effect::Send(Command::RefreshRules))
        }
        Action::StepBack => step(st, true),
        Action::StepForward => step(st, false),
        Action::ToggleOrigin => {
            st.diff.hide_origin = !st.diff.hide_origin;
            Reaction::redraw()
        }
        _ => view(st, a),
    }
}

/// The actions that send the backend a command.
fn command(st: &mut State, a: Action) -> Reaction {
    if let Some(why) = st.disabled(a) {
        st.activity = format!("{} does nothing: {why}", super::keymap::keys_of(a));
        return Reaction::redraw();
    }
    let (c, what) = match a {
        Action::Rebuild | Action::RebuildBoth => {
            let sides = if a == Action::Rebuild {
                Sides::Pr
            } else {
                Sides::Both
            };
            let what = format!("rebuilding the node image ({})", sides.label());
            let recreate = true;
            (Command::Build { sides, recreate }, what)
        }
        Action::SwapProxy | Action::SwapProxyBoth => {
            let sides = if a == Action::SwapProxy {
                Sides::Pr
            } else {
                Sides::Both
            };
            let what = format!("swapping kube-proxy ({})", sides.label());
            (Command::SwapProxy { sides }, what)
        }
        Action::Create => (Command::CreateClusters, "creating clusters".into()),
        Action::Deploy => (Command::Deploy, "deploying workloads".into()),
        Action::Retest => (
            Command::Probe {
                target: Some(st.target()),
                repeat: None,
            },
            "probing".into(),
        ),
        Action::Refresh => (Command::RefreshRules, "refreshing rules".into()),
        _ => {
            st.watch = !st.watch;
            // The backend says again how it follows each node.
            for side in Side::BOTH {
                st.side_mut(side).watching.clear();
            }
            let w = if st.watch { "on" } else { "off" };
            (Command::SetWatch(st.watch), format!("watch mode {w}"))
        }
    };
    st.activity = what;
    Reaction::redraw().with(Effect::Send(c))
}

fn scroll(st: &mut State, a: Action) -> Reaction {
    let p = page(st) as isize;
    match a {
        Action::Up => scroll_by(st, -1),
        Action::Down => scroll_by(st, 1),
        Action::PageUp => scroll_by(st, -p),
        Action::PageDown => scroll_by(st, p),
        Action::Top => scroll_by(st, isize::MIN / 2),
        Action::Bottom => scroll_by(st, isize::MAX / 2),
        Action::Left | Action::Right => sideways(st, a == Action::Left),
        _ => {}
    }
    Reaction::redraw()
}

/// ← and →: the Probes pane's cursor to the base or the PR side; elsewhere the Diff pane (or
/// the paths shown in its place) scrolls sideways.
fn sideways(st: &mut State, left: bool) {
    if st.focus == Some(Pane::Probes) {
        return cursor_to(st, if left { Side::Base } else { Side::Pr });
    }
    let h = match st.paths.as_mut() {
        Some(p) if st.focus == Some(Pane::Diff) => &mut p.hscroll,
        _ => &mut st.diff.hscroll,
    };
    *h = if left { h.saturating_sub(8) } else { *h + 8 };
}

fn diff_action(st: &mut State, a: Action) -> Reaction {
    match a {
        Action::ToggleRaw => st.diff.raw = !st.diff.raw,
        Action::ToggleLayout => {
            st.diff.side_by_side = !st.diff.side_by_side;
            relayout(st);
        }
        _ => {
            let n = st.diff.pairs.len().max(1);
            st.diff.node = (st.diff.node + 1) % n;
            st.diff.scroll = 0;
        }
    }
    Reaction::redraw().with_diff(st)
}

/// `f`: the prompt for `GOOD..BAD`, filled with the last range asked, else the two sides'
/// refs (base good, PR bad); refused with the reason when the PR side is a context, or while a
/// bisect runs.
fn bisect_prompt(st: &mut State) {
    if let Some(why) = st.disabled(Action::Bisect) {
        st.activity = format!("f does nothing: {why}");
        return;
    }
    if st.bisect.running {
        st.activity = "f does nothing: a bisect is running (q stops it)".into();
        return;
    }
    let last = st
        .bisect
        .request
        .as_ref()
        .map(|r| (r.good.clone(), r.bad.clone()));
    let refs = last.or_else(|| {
        let s = st.session.as_ref()?;
        let good = s.base.git_ref.clone().unwrap_or_default();
        // merge-base and the working tree are not refs a range can start from.
        let good = if [MERGE_BASE, WORKTREE].contains(&good.as_str()) {
            String::new()
        } else {
            good
        };
        Some((good, s.pr.git_ref.clone()?))
    });
    let text = refs.map_or_else(String::new, |(g, b)| format!("{g}..{b}"));
    let mut ta = ratatui_textarea::TextArea::new(vec![visible(&text).into_owned()]);
    ta.move_cursor(ratatui_textarea::CursorMove::End);
    st.editor = Some(Editor {
        textarea: ta,
        editing: Editing::Bisect,
    });
}

/// Enter in the bisect prompt: a well-formed `GOOD..BAD` starts the bisect (the prompt
/// closes); anything else keeps the prompt open and says what is wrong.
fn bisect_asked(st: &mut State, text: &str) -> Reaction {
    match crate::app::bisect::parse_range(text) {
        Ok((good, bad)) => {
            st.editor = None;
            let req = BisectRequest {
                good,
                bad,
                probe: None,
                repeat: 1,
                path: PathChoice::Auto,
                all_commits: false,
            };
            st.activity = format!("bisecting {}..{}", req.good, req.bad);
            st.bisect.asked(req.clone());
            Reaction::redraw().with(Effect::Send(Command::Bisect(Box::new(req))))
        }
        Err(e) => {
            st.activity = e;
            Reaction::redraw()
        }
    }
}

/// The most tries a probe runs (as `probes.repeat` allows).
pub const MAX_REPEAT: u32 = 1000;

/// `R`: the prompt for the tries per probe, filled with the count asked last, else the most
/// tries a probe's last result has (the scenario's `probes.repeat`, as it ran).
fn repeat_prompt(st: &mut State) {
    let ran = Side::BOTH
        .into_iter()
        .flat_map(|s| st.side(s).probes.values())
        .map(|c| c.last.tries.len().max(1) as u32)
        .max();
    let n = st.probe_repeat.or(ran).unwrap_or(1);
    let mut ta = ratatui_textarea::TextArea::new(vec![n.to_string()]);
    ta.move_cursor(ratatui_textarea::CursorMove::End);
    st.editor = Some(Editor {
        textarea: ta,
        editing: Editing::Repeat,
    });
}

/// Enter in the `R` prompt: a whole number from 1 to [`MAX_REPEAT`] sets the tries per probe
/// and runs the probes again (the prompt closes); anything else keeps the prompt open and
/// says what is wrong.
fn repeat_asked(st: &mut State, text: &str) -> Reaction {
    let n = match parse_repeat(text) {
        Ok(n) => n,
        Err(e) => {
            st.activity = e;
            return Reaction::redraw();
        }
    };
    st.editor = None;
    st.probe_repeat = Some(n);
    st.activity = format!("probing with {n} tries per probe");
    Reaction::redraw().with(Effect::Send(Command::Probe {
        target: None,
        repeat: Some(n),
    }))
}

/// The tries per probe the `R` prompt's text asks for.
fn parse_repeat(text: &str) -> Result<u32, String> {
    let t = text.trim();
    match t.parse::<u32>() {
        Ok(n) if (1..=MAX_REPEAT).contains(&n) => Ok(n),
        _ => Err(format!(
            "'{}': tries per probe is a whole number from 1 to {MAX_REPEAT}",
            visible(t)
        )),
    }
}

/// Focus, zoom, overlays and the other actions that change only the view.
fn view(st: &mut State, a: Action) -> Reaction {
    match a {
        Action::Delete => match st.disabled(a) {
            Some(why) => st.activity = format!("x does nothing: {why}"),
            None => st.confirm = Some(Confirm::Delete),
        },
        Action::FocusNext | Action::FocusPrev => {
            let i = st.focus.unwrap_or(Pane::Diff).index();
            let n = if a == Action::FocusNext { i + 1 } else { i + 3 };
            st.focus = Some(Pane::ALL[n % 4]);
        }
        Action::Zoom => st.zoom = !st.zoom,
        Action::Filter => st.filter_editing = true,
        Action::Edit => {
            let mut ta = ratatui_textarea::TextArea::new(vec![st.target().to_string()]);
            ta.move_cursor(ratatui_textarea::CursorMove::End);
            st.editor = Some(Editor {
                textarea: ta,
                editing: Editing::Target,
            });
        }
        Action::Bisect => bisect_prompt(st),
        Action::Repeat => repeat_prompt(st),
        Action::Mouse => {
            st.mouse_capture = !st.mouse_capture;
            st.activity = if st.mouse_capture {
                "mouse capture on".into()
            } else {
                "mouse capture off: select text with the mouse".into()
            };
            let m = st.mouse_capture;
            return Reaction::redraw().with(Effect::SetMouseCapture(m));
        }
        Action::Help => {
            st.help = !st.help;
            st.help_scroll = 0;
        }
        Action::Quit if st.busy() => st.confirm = Some(Confirm::Quit),
        Action::Quit => {
            st.quit = true;
            return Reaction::redraw().with(Effect::Quit);
        }
        _ => {}
    }
    Reaction::redraw()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::event::*;
    use crate::model::Outcome;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    fn key(c: char) -> Msg {
        Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
    }

    fn session() -> Event {
        Event::Session(Box::new(SessionInfo {
            base: SideInfo {
                name: "master".into(),
                git_ref: None,
                image: None,
                context: None,
                namespace: None,
            },
            pr: SideInfo {
                name: "77523".into(),
                git_ref: None,
                image: None,
                context: None,
                namespace: None,
            },
            service: "default/echo".parse().unwrap(),
            probe_target: Target::Lb,
            probe_targets: vec![],
            expectations: vec![],
            banner: None,
            proxy_mode: None,
        }))
    }

    fn state() -> State {
        let mut st = State::new();
        update(&mut st, Msg::Backend(session()));
        st
    }

    #[test]
    fn keys_send_commands() {
        let mut st = state();
        assert_eq!(
            update(&mut st, key('b')).effects,
            vec![Effect::Send(Command::Build {
                sides: Sides::Pr,
                recreate: true
            })]
        );
        assert_eq!(
            update(&mut st, key('B')).effects,
            vec![Effect::Send(Command::Build {
                sides: Sides::Both,
                recreate: true
            })]
        );
        assert_eq!(
            update(&mut st, key('p')).effects,
            vec![Effect::Send(Command::SwapProxy { sides: Sides::Pr })]
        );
        assert_eq!(
            update(&mut st, key('P')).effects,
            vec![Effect::Send(Command::SwapProxy { sides: Sides::Both })]
        );
        assert_eq!(
            update(&mut st, key('c')).effects,
            vec![Effect::Send(Command::CreateClusters)]
        );
        assert_eq!(
            update(&mut st, key('d')).effects,
            vec![Effect::Send(Command::Deploy)]
        );
        assert_eq!(
            update(&mut st, key('r')).effects,
            vec![Effect::Send(Command::RefreshRules)]
        );
        assert_eq!(
            update(&mut st, key('t')).effects,
            vec![Effect::Send(Command::Probe {
                target: Some(Target::Lb),
                repeat: None,
            })]
        );
        assert_eq!(
            update(&mut st, key('w')).effects,
            vec![Effect::Send(Command::SetWatch(true))]
        );
        assert!(st.watch);
    }

    /// A session whose sides are these contexts (`None`: a kind side), the PR's deploying
    /// into namespace `kindred`.
    fn contexts(base: Option<&str>, pr: Option<&str>) -> State {
        let mut st = State::new();
        let Event::Session(mut info) = session() else {
            unreachable!()
        };
        info.base.context = base.map(String::from);
        info.pr.context = pr.map(String::from);
        info.pr.namespace = pr.map(|_| "kindred".into());
        update(&mut st, Msg::Backend(Event::Session(info)));
        st
    }

    /// Keys that would build, create, recreate, swap or delete a context side do nothing and
    /// say why; on a mixed pair the ones for both sides still go (the backend skips the
    /// context); `x` asks, naming kindred's namespace and the context.
    #[test]
    fn keys_for_a_context_side_are_disabled_with_the_reason() {
        let mut st = contexts(None, Some("prod-eu"));
        for c in ['b', 'p', 'f'] {
            let r = update(&mut st, key(c));
            assert!(r.effects.is_empty(), "{c}: {:?}", r.effects);
            assert_eq!(
                st.activity,
                format!("{c} does nothing: PR is context prod-eu (read only)")
            );
        }
        let r = update(&mut st, key('c'));
        assert_eq!(r.effects, vec![Effect::Send(Command::CreateClusters)]);
        update(&mut st, key('x'));
        assert_eq!(st.confirm, Some(Confirm::Delete));
        assert_eq!(
            st.deletes(),
            ["cluster master", "namespace kindred in context prod-eu"]
        );
        let r = update(&mut st, key('y'));
        assert_eq!(r.effects, vec![Effect::Send(Command::DeleteClusters)]);

        let mut st = contexts(Some("staging"), Some("prod-eu"));
        let why = "base is context staging, PR is context prod-eu (read only)";
        for c in ['b', 'B', 'p', 'P', 'f', 'c'] {
            let r = update(&mut st, key(c));
            assert!(r.effects.is_empty(), "{c}: {:?}", r.effects);
            assert_eq!(st.activity, format!("{c} does nothing: {why}"));
        }
        // x: only the PR's namespace is kindred's to delete.
        update(&mut st, key('x'));
        assert_eq!(st.confirm, Some(Confirm::Delete));
        assert_eq!(st.deletes(), ["namespace kindred in context prod-eu"]);
        update(&mut st, key('n'));
        // With nothing deployed anywhere, x does nothing either.
        st.sides.pr.info.as_mut().unwrap().namespace = None;
        update(&mut st, key('x'));
        assert_eq!(st.confirm, None);
        assert!(
            st.activity
                .starts_with("x does nothing: base is context staging")
        );
        // The footer and the help say it.
        let (on, off) = super::super::keymap::footer_with(|a| st.disabled(a));
        assert_eq!(off, [(vec!["b", "p", "f", "c"], why.to_string())]);
        assert!(!on.iter().any(|(k, _)| ["b", "p", "c"].contains(k)));
        let help = HelpLayout::new((200, 60), |a| st.disabled(a));
        assert!(
            help.texts[0]
                .join(" ")
                .starts_with("disabled: base is context staging")
        );
    }

    /// `R` asks the tries per probe (filled with the count the last results ran), refuses
    /// what is not a whole number from 1 to 1000 (the prompt stays, the header says why), and
    /// sends the probes with that count; the next `R` offers it.
    #[test]
    fn r_asks_the_tries_per_probe_and_probes_with_them() {
        let mut st = state();
        let mut r = ProbeResult::bare("netshoot-master-worker", "lb", Outcome::Ok);
        r.tries = vec![
            crate::backend::event::Try {
                outcome: Outcome::Ok,
                http_status: Some(200),
                connect_us: Some(1),
                total_us: Some(2),
                endpoint: None,
                detail: None,
            };
            5
        ];
        update(
            &mut st,
            Msg::Backend(Event::Probe {
                side: Side::Base,
                result: r,
            }),
        );
        update(&mut st, key('R'));
        let ed = st.editor.as_ref().expect("the prompt");
        assert_eq!(ed.editing, Editing::Repeat);
        assert_eq!(ed.textarea.lines(), ["5"]);
        let enter = || Msg::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
        let backspace = || Msg::Key(KeyEvent::new(KeyCode::Backspace, KeyModifiers::NONE));
        for bad in ["0", "1001", "x", "-3", "2.5"] {
            update(&mut st, backspace());
            update(&mut st, backspace());
            update(&mut st, backspace());
            update(&mut st, backspace());
            for c in bad.chars() {
                update(&mut st, key(c));
            }
            let r = update(&mut st, enter());
            assert!(r.effects.is_empty() && st.editor.is_some(), "{bad}");
            assert_eq!(
                st.activity,
                format!("'{bad}': tries per probe is a whole number from 1 to 1000")
            );
        }
        for _ in 0..4 {
            update(&mut st, backspace());
        }
        for c in "30".chars() {
            update(&mut st, key(c));
        }
        let r = update(&mut st, enter());
        assert_eq!(
            r.effects,
            vec![Effect::Send(Command::Probe {
                target: None,
                repeat: Some(30),
            })]
        );
        assert!(st.editor.is_none());
        assert_eq!(st.activity, "probing with 30 tries per probe");
        update(&mut st, key('R'));
        assert_eq!(st.editor.as_ref().unwrap().textarea.lines(), ["30"]);
    }

    /// `f` asks GOOD..BAD (filled with the sides' refs), refuses what is not a range (the
    /// prompt stays, the header says why), sends the bisect for one; while it runs, `f` says
    /// so; the job's refusal is kept for the Build pane.
    #[test]
    fn f_asks_a_range_and_sends_the_bisect() {
        let mut st = state();
        let s = st.session.as_mut().unwrap();
        s.base.git_ref = Some("master".into());
        s.pr.git_ref = Some("pr/77523".into());
        update(&mut st, key('f'));
        let ed = st.editor.as_ref().expect("the prompt");
        assert_eq!(ed.editing, Editing::Bisect);
        assert_eq!(ed.textarea.lines(), ["master..pr/77523"]);
        let enter = || Msg::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
        let backspace = || Msg::Key(KeyEvent::new(KeyCode::Backspace, KeyModifiers::NONE));
        for _ in 0..8 {
            update(&mut st, backspace());
        }
        update(&mut st, key('.'));
        let r = update(&mut st, enter());
        assert!(r.effects.is_empty() && st.editor.is_some());
        assert_eq!(
            st.activity,
            "'master...': GOOD..BAD takes two dots, not three"
        );
        update(&mut st, backspace());
        for c in "v1.34.0".chars() {
            update(&mut st, key(c));
        }
        let r = update(&mut st, enter());
        let want = BisectRequest {
            good: "master".into(),
            bad: "v1.34.0".into(),
            probe: None,
            repeat: 1,
            path: PathChoice::Auto,
            all_commits: false,
        };
        assert_eq!(
            r.effects,
            vec![Effect::Send(Command::Bisect(Box::new(want)))]
        );
        assert!(st.editor.is_none() && st.bisect.running && st.busy());
        update(&mut st, key('f'));
        assert!(st.editor.is_none());
        assert_eq!(
            st.activity,
            "f does nothing: a bisect is running (q stops it)"
        );
        update(
            &mut st,
            Msg::Backend(Event::Finished {
                job: Job::Bisect,
                error: Some("PR is context prod (read only)".into()),
            }),
        );
        assert!(!st.bisect.running && !st.busy());
        assert_eq!(
            st.bisect.error.as_deref(),
            Some("PR is context prod (read only)")
        );
        // The prompt again: the last range asked.
        update(&mut st, key('f'));
        assert_eq!(st.editor.unwrap().textarea.lines(), ["master..v1.34.0"]);
    }

    #[test]
    fn delete_asks_first() {
        let mut st = state();
        assert!(update(&mut st, key('x')).effects.is_empty());
        assert_eq!(st.confirm, Some(Confirm::Delete));
        // Anything but y cancels.
        assert!(update(&mut st, key('n')).effects.is_empty());
        assert_eq!(st.confirm, None);
        update(&mut st, key('x'));
        assert_eq!(
            update(&mut st, key('y')).effects,
            vec![Effect::Send(Command::DeleteClusters)]
        );
    }

    #[test]
    fn quit_asks_only_when_busy() {
        let mut st = state();
        assert_eq!(update(&mut st, key('q')).effects, vec![Effect::Quit]);
        let mut st = state();
        update(
            &mut st,
            Msg::Backend(Event::ProbesStarted {
                side: Side::Pr,
                target: "lb".into(),
            }),
        );
        assert!(update(&mut st, key('q')).effects.is_empty());
        assert_eq!(st.confirm, Some(Confirm::Quit));
        assert_eq!(
            update(&mut st, key('y')).effects,
            vec![Effect::Send(Command::Cancel), Effect::Quit]
        );
    }

    #[test]
    fn phases_time_and_fail() {
        let mut st = state();
        update(&mut st, Msg::Tick(Duration::from_secs(10)));
        update(
            &mut st,
            Msg::Backend(Event::Phase {
                side: Side::Base,
                phase: Phase::Build,
                state: PhaseState::Running,
            }),
        );
        assert!(st.busy());
        update(&mut st, Msg::Tick(Duration::from_secs(70)));
        update(
            &mut st,
            Msg::Backend(Event::Phase {
                side: Side::Base,
                phase: Phase::Build,
                state: PhaseState::Failed {
                    reason: "exit 1".into(),
                },
            }),
        );
        let p = st.side(Side::Base).phase(Phase::Build);
        assert_eq!(p.took, Some(Duration::from_secs(60)));
        assert!(matches!(p.state, PhaseState::Failed { .. }));
        assert!(st.activity.contains("failed: exit 1"));
        assert!(!st.busy());
    }

    #[test]
    fn idle_ticks_do_not_redraw() {
        let mut st = state();
        assert!(!update(&mut st, Msg::Tick(Duration::from_millis(250))).redraw);
        update(
            &mut st,
            Msg::Backend(Event::ProbesStarted {
                side: Side::Base,
                target: "lb".into(),
            }),
        );
        assert!(update(&mut st, Msg::Tick(Duration::from_millis(500))).redraw);
    }

    #[test]
    fn probes_keep_history() {
        let mut st = state();
        for o in [Outcome::Ok, Outcome::Timeout, Outcome::Ok] {
            update(
                &mut st,
                Msg::Backend(Event::Probe {
                    side: Side::Pr,
                    result: ProbeResult::bare("a", "lb", o),
                }),
            );
        }
        let c = &st.side(Side::Pr).probes[&("a".to_string(), "lb".to_string())];
        assert_eq!(
            c.history.iter().map(|h| h.1).collect::<Vec<_>>(),
            vec![Outcome::Ok, Outcome::Timeout, Outcome::Ok]
        );
    }

    fn dump(side: Side, node: &str, text: &str) -> Msg {
        Msg::Backend(Event::RuleDump {
            side,
            node: node.to_string(),
            text: text.to_string(),
            at_ms: None,
        })
    }

    /// The group requests of a reaction.
    fn group_requests(r: Reaction) -> Vec<GroupRequest> {
        r.effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::Group(req) => Some(*req),
                _ => None,
            })
            .collect()
    }

    /// Dumps arrive, each grouped as the driver does it (off the loop, answered at once).
    fn dumps(st: &mut State, side: Side, nodes: &[(&str, &str)]) {
        for (node, text) in nodes {
            for req in group_requests(update(st, dump(side, node, text))) {
                let canon = req.canonical();
                update(
                    st,
                    Msg::Grouped {
                        req: Box::new(req),
                        canon,
                    },
                );
            }
        }
    }

    /// A dump is grouped off the UI loop: its arrival only asks for it; the answer groups it,
    /// unless a newer dump of the node came meanwhile (its own answer follows).
    #[test]
    fn grouping_is_asked_for_off_the_loop_and_a_stale_answer_is_dropped() {
        let (x, y) = ("-A KUBE-SERVICES -j X\n", "-A KUBE-SERVICES -j Y\n");
        let mut st = state();
        dumps(&mut st, Side::Pr, &[("77523-worker", x)]);
        dumps(&mut st, Side::Base, &[("master-worker", x)]);
        let mut asked = group_requests(update(&mut st, dump(Side::Base, "master-worker2", x)));
        assert_eq!(asked.len(), 1);
        assert_eq!(st.grouping, 1);
        let on_loop: usize = st
            .side(Side::Base)
            .groups()
            .iter()
            .map(|g| g.nodes.len())
            .sum();
        assert_eq!(on_loop, 1, "grouped on the loop");
        let stale = asked.pop().unwrap();
        // A newer dump of the node, answered first; the stale answer after it changes nothing.
        for req in group_requests(update(&mut st, dump(Side::Base, "master-worker2", y))) {
            let canon = req.canonical();
            update(
                &mut st,
                Msg::Grouped {
                    req: Box::new(req),
                    canon,
                },
            );
        }
        let canon = stale.canonical();
        update(
            &mut st,
            Msg::Grouped {
                req: Box::new(stale),
                canon,
            },
        );
        assert_eq!(st.grouping, 0);
        let sizes: Vec<usize> = st
            .side(Side::Base)
            .groups()
            .iter()
            .map(|g| g.nodes.len())
            .collect();
        assert_eq!(sizes, [1, 1], "a stale answer grouped");
        assert!(!st.diff.groups.active());
        dumps(&mut st, Side::Base, &[("master-worker2", x)]);
        assert!(st.diff.groups.active());
    }

    #[test]
    fn nodes_of_a_role_with_the_same_rules_are_compared_as_a_group() {
        let (x, y, z) = (
            "-A KUBE-SERVICES -j X\n",
            "-A KUBE-SERVICES -j Y\n",
            "-A KUBE-SERVICES -j Z\n",
        );
        let mut st = state();
        // kind's few nodes, each with rules of its own: node by node, as ever.
        dumps(
            &mut st,
            Side::Base,
            &[("master-worker", x), ("master-worker2", z)],
        );
        dumps(
            &mut st,
            Side::Pr,
            &[("77523-worker", x), ("77523-worker2", z)],
        );
        assert!(!st.diff.groups.active());
        let roles: Vec<&str> = st.diff.pairs.iter().map(|p| p.role.as_str()).collect();
        assert_eq!(roles, ["worker", "worker2"]);
        // Both base workers now have the same rules: one group, compared with each PR worker.
        dumps(
            &mut st,
            Side::Base,
            &[("master-worker2", x), ("master-control-plane", y)],
        );
        dumps(&mut st, Side::Pr, &[("77523-control-plane", y)]);
        assert!(st.diff.groups.active());
        let pairs: Vec<(&str, &str, &str)> = st
            .diff
            .pairs
            .iter()
            .map(|p| (p.role.as_str(), p.base.as_str(), p.pr.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                (
                    "control-plane",
                    "master-control-plane",
                    "77523-control-plane"
                ),
                ("worker group A ↔ worker", "master-worker", "77523-worker"),
                ("worker group A ↔ worker2", "master-worker", "77523-worker2"),
            ]
        );
        let (b, p) = st.diff.group_pair().unwrap();
        assert_eq!(
            (b.title().as_str(), p.title().as_str()),
            ("control-plane", "control-plane")
        );
        assert_eq!(st.diff.groups.outliers(Side::Pr).count(), 3);
    }

    #[test]
    fn rule_dumps_request_one_diff_at_a_time_and_skip_unchanged() {
        let mut st = state();
        let dump = |side, node: &str| {
            Msg::Backend(Event::RuleDump {
                side,
                node: node.into(),
                text: "-A KUBE-SERVICES -j X\n".into(),
                at_ms: None,
            })
        };
        let diffs = |r: Reaction| -> Vec<Effect> {
            r.effects
                .into_iter()
                .filter(|e| !matches!(e, Effect::Group(_)))
                .collect()
        };
        assert!(
            diffs(update(&mut st, dump(Side::Base, "master-worker"))).is_empty(),
            "needs both sides"
        );
        let e = diffs(update(&mut st, dump(Side::Pr, "77523-worker")));
        assert!(matches!(&e[..], [Effect::ComputeDiff(r)] if r.key.node == "worker"));
        // The same dump again changes nothing.
        assert_eq!(
            update(&mut st, dump(Side::Pr, "77523-worker")),
            Reaction::default()
        );
        // A new dump while one is computing waits for it.
        let m = Msg::Backend(Event::RuleDump {
            side: Side::Pr,
            node: "77523-worker".into(),
            text: "-A KUBE-SERVICES -j Y\n".into(),
            at_ms: None,
        });
        assert!(diffs(update(&mut st, m)).is_empty());
        // The diff running now answers (an error will do).
        let answer = |st: &mut State| {
            let key = st.diff.pending.clone().unwrap();
            let result = Err("x".into());
            update(st, Msg::DiffReady { key, result })
        };
        let out = answer(&mut st);
        assert!(matches!(&out.effects[..], [Effect::ComputeDiff(r)] if r.key.generation == 3));
        // The Service's LoadBalancer IP, arriving after the dumps, is one more input.
        let out = answer(&mut st);
        assert!(out.effects.is_empty(), "done: {out:?}");
        let service = |ip: &str| {
            Msg::Backend(Event::Service {
                side: Side::Pr,
                service: ServiceInfo {
                    name: "default/echo".into(),
                    lb_ip: Some(ip.into()),
                    port: 80,
                    external_traffic_policy: Some("Local".into()),
                    warning: None,
                },
            })
        };
        let e = update(&mut st, service("172.18.255.210")).effects;
        assert!(
            matches!(&e[..], [Effect::ComputeDiff(r)]
                if r.options.lb_ips.1 == ["172.18.255.210"] && r.key.lb_ips.1 == ["172.18.255.210"]),
            "{e:?}"
        );
    }

    #[test]
    fn filter_and_editor_capture_keys() {
        let mut st = state();
        update(&mut st, key('/'));
        for c in "echo".chars() {
            // 'e' and 'c' would be commands outside the filter.
            assert!(update(&mut st, key(c)).effects.is_empty());
        }
        update(
            &mut st,
            Msg::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
        );
        assert_eq!(st.filter(Pane::Diff), "echo");
        update(&mut st, key('e'));
        assert!(st.editor.is_some());
        for _ in 0..2 {
            update(
                &mut st,
                Msg::Key(KeyEvent::new(KeyCode::Backspace, KeyModifiers::NONE)),
            );
        }
        for c in "10.96.0.10:80".chars() {
            update(&mut st, key(c));
        }
        let e = update(
            &mut st,
            Msg::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
        )
        .effects;
        assert_eq!(
            e,
            vec![Effect::Send(Command::Probe {
                target: Some(Target::Addr("10.96.0.10:80".into())),
                repeat: None,
            })]
        );
        assert_eq!(st.target().to_string(), "10.96.0.10:80");
    }

    #[test]
    fn focus_zoom_help_scroll() {
        let mut st = state();
        assert_eq!(st.focus, Some(Pane::Diff));
        update(
            &mut st,
            Msg::Key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE)),
        );
        assert_eq!(st.focus, Some(Pane::Build));
        update(
            &mut st,
            Msg::Key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::NONE)),
        );
        assert_eq!(st.focus, Some(Pane::Diff));
        update(&mut st, key('z'));
        assert!(st.zoom);
        update(&mut st, key('j'));
        update(&mut st, key('j'));
        assert_eq!(st.diff.scroll, 2);
        update(&mut st, key('g'));
        assert_eq!(st.diff.scroll, 0);
        // On the smallest screen the help is taller than the screen: the scroll keys scroll it.
        st.size = (80, 24);
        update(&mut st, key('?'));
        assert!(st.help);
        update(&mut st, key('j'));
        update(&mut st, key('j'));
        update(&mut st, key('k'));
        assert!(st.help);
        assert_eq!((st.help_scroll, st.diff.scroll), (1, 0));
        let raw = st.diff.raw;
        update(&mut st, key('n'));
        assert!(!st.help, "another key closes help");
        assert_eq!(st.diff.raw, raw, "and does nothing else");
        update(&mut st, key('?'));
        assert_eq!(st.help_scroll, 0, "help opens at its top");
        // As far as it goes, and one step back is one row up from there.
        update(&mut st, key('G'));
        let end = st.help_scroll;
        assert!(end > 0);
        update(&mut st, key('k'));
        assert_eq!(st.help_scroll, end - 1);
        update(&mut st, key('?'));
        update(
            &mut st,
            Msg::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        );
        assert!(st.quit);
    }

    #[test]
    fn rule_changes_make_a_timeline_to_step_through_and_back_to_live() {
        let mut st = state();
        let dump = |side, node: &str, text: &str| {
            Msg::Backend(Event::RuleDump {
                side,
                node: node.into(),
                text: text.into(),
                at_ms: None,
            })
        };
        let finish = |st: &mut State| {
            // Answer the diff in flight (the driver would).
            if let Some(key) = st.diff.pending.clone() {
                update(
                    st,
                    Msg::DiffReady {
                        key,
                        result: Err("not computed in this test".into()),
                    },
                );
            }
        };
        update(
            &mut st,
            dump(Side::Base, "master-worker", "-A KUBE-SVC-X -j A\n"),
        );
        update(
            &mut st,
            dump(Side::Pr, "77523-worker", "-A KUBE-SVC-X -j A\n"),
        );
        finish(&mut st);
        assert!(st.timeline.entries.is_empty(), "first dumps are no change");
        update(&mut st, Msg::Tick(Duration::from_secs(42)));
        update(
            &mut st,
            dump(
                Side::Pr,
                "77523-worker",
                "-A KUBE-SVC-X -j A\n-A KUBE-SVC-X -j B\n",
            ),
        );
        finish(&mut st);
        update(&mut st, Msg::Tick(Duration::from_secs(50)));
        update(
            &mut st,
            dump(Side::Base, "master-worker", "-A KUBE-SVC-X -j C\n"),
        );
        finish(&mut st);
        let e: Vec<_> = st
            .timeline
            .entries
            .iter()
            .map(|c| (c.at.as_secs(), c.side, c.node.as_str(), c.added, c.removed))
            .collect();
        assert_eq!(
            e,
            [
                (42, Side::Pr, "77523-worker", 1, 0),
                (50, Side::Base, "master-worker", 1, 1)
            ]
        );
        // [ : the newest change, its before vs after.
        let r = update(&mut st, key('['));
        let req = match &r.effects[..] {
            [Effect::ComputeDiff(req)] => req.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(req.key.step, Some(st.timeline.entries[1].id));
        assert_eq!(
            (&*req.base, &*req.pr),
            ("-A KUBE-SVC-X -j A\n", "-A KUBE-SVC-X -j C\n")
        );
        finish(&mut st);
        // [ again: the one before; [ at the oldest stays there.
        update(&mut st, key('['));
        assert_eq!(st.diff.step, Some(st.timeline.entries[0].id));
        finish(&mut st);
        update(&mut st, key('['));
        assert_eq!(st.diff.step, Some(st.timeline.entries[0].id));
        finish(&mut st);
        // A new dump while a change is shown: recorded, the view stays on the change.
        update(
            &mut st,
            dump(Side::Pr, "77523-worker", "-A KUBE-SVC-X -j D\n"),
        );
        assert_eq!(st.timeline.entries.len(), 3);
        assert_eq!(st.diff.step, Some(st.timeline.entries[0].id));
        // ] ] ] : forward to the newest, then live base vs PR.
        for _ in 0..2 {
            update(&mut st, key(']'));
            finish(&mut st);
        }
        assert_eq!(st.diff.step, Some(st.timeline.entries[2].id));
        let r = update(&mut st, key(']'));
        assert_eq!(st.diff.step, None);
        assert!(
            matches!(&r.effects[..], [Effect::ComputeDiff(req)] if req.key.step.is_none() && req.key.node == "worker"),
            "{:?}",
            r.effects
        );
    }

    fn press(st: &mut State, code: KeyCode) -> Reaction {
        update(st, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)))
    }

    /// Probes on both sides: base has three rows, PR two (base's first, `netshoot` on
    /// worker, has no counterpart there: the rows of a probe and its counterpart differ).
    fn probed() -> State {
        let mut st = state();
        for (side, cluster, pods) in [
            (
                Side::Base,
                "master",
                &["netshoot", "netshoot2", "overlay"][..],
            ),
            (Side::Pr, "77523", &["netshoot2", "overlay"][..]),
        ] {
            for p in pods {
                let (role, node) = match p.strip_suffix('2') {
                    Some(r) => (r, "worker2"),
                    None => (*p, "worker"),
                };
                let src = format!("{role}-{cluster}-{node}");
                let result = ProbeResult::bare(&src, "lb", Outcome::Ok);
                update(&mut st, Msg::Backend(Event::Probe { side, result }));
            }
        }
        st
    }

    fn key_of(src: &str) -> ProbeKey {
        (src.to_string(), "lb".to_string())
    }

    #[test]
    fn the_probe_cursor_moves_within_its_sides_rows_and_the_pane_scrolls_to_it() {
        let mut st = probed();
        press(&mut st, KeyCode::BackTab);
        assert_eq!(st.focus, Some(Pane::Probes));
        assert_eq!(
            st.selected_probe(),
            Some((Side::Base, key_of("netshoot-master-worker")))
        );
        update(&mut st, key('j'));
        assert_eq!(st.probe_cursor.row, 1);
        assert_eq!(st.diff.scroll, 0, "the Diff pane did not scroll");
        for _ in 0..3 {
            press(&mut st, KeyCode::Down);
        }
        assert_eq!(st.probe_cursor.row, 2, "the last row is as far as it goes");
        update(&mut st, key('k'));
        assert_eq!(st.probe_cursor.row, 1);
        update(&mut st, key('G'));
        assert_eq!(st.probe_cursor.row, 2);
        update(&mut st, key('g'));
        assert_eq!(st.probe_cursor.row, 0);
        // The mouse wheel over the pane moves it too.
        update(
            &mut st,
            Msg::Scroll {
                pane: Some(Pane::Probes),
                lines: 2,
            },
        );
        assert_eq!(st.probe_cursor.row, 2);
        // Scrolled past the cursor: moving it up brings the first row shown up to it.
        st.scroll[Pane::Probes.index()] = 2;
        update(&mut st, key('k'));
        assert_eq!(
            (st.probe_cursor.row, st.scroll[Pane::Probes.index()]),
            (1, 1)
        );
        // → : the PR side, on the selected probe's counterpart; ← back.
        update(&mut st, key('l'));
        assert_eq!(
            st.selected_probe(),
            Some((Side::Pr, key_of("netshoot-77523-worker2")))
        );
        assert_eq!(st.diff.hscroll, 0, "the Diff pane did not scroll sideways");
        update(&mut st, key('h'));
        assert_eq!(
            st.selected_probe(),
            Some((Side::Base, key_of("netshoot-master-worker2")))
        );
        // Base's first probe has no counterpart: on the PR side the cursor keeps its row.
        update(&mut st, key('g'));
        update(&mut st, key('l'));
        assert_eq!(
            st.selected_probe(),
            Some((Side::Pr, key_of("netshoot-77523-worker2")))
        );
        update(&mut st, key('G'));
        update(&mut st, key('h'));
        assert_eq!(
            st.selected_probe(),
            Some((Side::Base, key_of("overlay-master-worker")))
        );
        // A filter keeps fewer rows: the cursor stays on one of them.
        st.filters[Pane::Probes.index()] = "worker2".into();
        update(&mut st, key('j'));
        assert_eq!(
            st.selected_probe(),
            Some((Side::Base, key_of("netshoot-master-worker2")))
        );
    }

    /// `m` reads the metrics again; once that read is over the overlay no longer says it is
    /// reading, also when none came (a recording made before kindred read them).
    #[test]
    fn the_metrics_read_m_asks_for_ends_with_its_rules_job() {
        let mut st = State::new();
        update(&mut st, key('m'));
        assert!(st.metrics.open && st.metrics.reading);
        let r = update(
            &mut st,
            Msg::Backend(Event::Finished {
                job: Job::Rules,
                error: None,
            }),
        );
        assert!(r.redraw && !st.metrics.reading);
        assert_eq!(st.activity, "kube-proxy's metrics read");
    }

    #[test]
    fn enter_on_a_probe_row_opens_its_paths_and_esc_returns() {
        let mut st = probed();
        // Enter elsewhere than the Probes pane does nothing.
        assert_eq!(press(&mut st, KeyCode::Enter), Reaction::default());
        assert_eq!(st.paths, None);
        press(&mut st, KeyCode::BackTab);
        update(&mut st, key('j'));
        assert!(press(&mut st, KeyCode::Enter).redraw);
        let pv = st.paths.clone().expect("the paths view");
        assert_eq!(
            (pv.side, pv.key.clone()),
            (Side::Base, key_of("netshoot-master-worker2"))
        );
        assert_eq!(
            st.counterpart_key(pv.side, &pv.key),
            Some(key_of("netshoot-77523-worker2"))
        );
        assert_eq!(
            st.focus,
            Some(Pane::Diff),
            "in the Diff pane's place, focused"
        );
        // Zoomed it shows whole; the scroll keys scroll it, not the diff.
        update(&mut st, key('z'));
        assert!(st.zoom);
        update(&mut st, key('j'));
        update(&mut st, key('l'));
        let pv = st.paths.as_ref().unwrap();
        assert_eq!((pv.scroll, pv.hscroll), (1, 8));
        assert_eq!((st.diff.scroll, st.diff.hscroll), (0, 0));
        // Esc with the help open closes the help only.
        update(&mut st, key('?'));
        press(&mut st, KeyCode::Esc);
        assert!(!st.help && st.paths.is_some());
        // Esc: the usual Diff pane, unzoomed, the focus back on the Probes pane.
        assert!(press(&mut st, KeyCode::Esc).redraw);
        assert_eq!(st.paths, None);
        assert!(!st.zoom);
        assert_eq!(st.focus, Some(Pane::Probes));
        assert_eq!(st.probe_cursor.row, 1, "the same row still selected");
        // With nothing open, Esc draws nothing.
        assert_eq!(press(&mut st, KeyCode::Esc), Reaction::default());
        // A side with no rows: Enter says so and opens nothing.
        let mut empty = state();
        press(&mut empty, KeyCode::BackTab);
        press(&mut empty, KeyCode::Enter);
        assert_eq!(empty.paths, None);
        assert_eq!(empty.activity, "no probe selected");
    }
}
