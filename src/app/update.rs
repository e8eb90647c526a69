//! The one place the dashboard's state changes: `update(state, msg) -> effects`.

use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};

use super::keymap::{Action, action_for};
use super::state::{
    Confirm, DiffKey, Editor, HISTORY, NodeInfo, OUTPUT_LINES, Pane, PhaseView, ProbeCell, State,
};
use crate::backend::event::{Command, Event, PhaseState, Side};
use crate::rules::Comparison;

/// Everything that can change the state.
#[derive(Debug)]
pub enum Msg {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Paste(String),
    Resize(u16, u16),
    /// The app clock advanced to this time.
    Tick(Duration),
    Backend(Event),
    DiffReady {
        key: DiffKey,
        result: Result<Arc<Comparison>, String>,
    },
    /// SIGTERM / SIGINT / SIGHUP.
    Terminate,
}

/// What the event loop must do after an update.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Send(Command),
    /// Parse and compare these dumps off the UI loop, then answer with [`Msg::DiffReady`].
    ComputeDiff(DiffRequest),
    SetMouseCapture(bool),
    Quit,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DiffRequest {
    pub key: DiffKey,
    pub base: Arc<str>,
    pub pr: Arc<str>,
    pub service: String,
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
}

pub fn update(st: &mut State, msg: Msg) -> Reaction {
    match msg {
        Msg::Tick(now) => tick(st, now),
        Msg::Resize(w, h) => {
            st.size = (w, h);
            Reaction::redraw()
        }
        Msg::Backend(ev) => backend_event(st, ev),
        Msg::DiffReady { key, result } => {
            if st.diff.pending.as_ref() == Some(&key) {
                st.diff.pending = None;
            }
            if key.generation < st.diff.result_for.as_ref().map_or(0, |k| k.generation) {
                return Reaction::default();
            }
            match result {
                Ok(c) => {
                    st.diff.result = Some(c);
                    st.diff.error = None;
                }
                Err(e) => st.diff.error = Some(e),
            }
            st.diff.result_for = Some(key);
            // Something newer may have arrived while this one was computed.
            let mut o = Reaction::redraw();
            if let Some(req) = diff_request(st) {
                o = o.with(Effect::ComputeDiff(req));
            }
            o
        }
        Msg::Key(k) => {
            if k.kind == KeyEventKind::Release {
                return Reaction::default();
            }
            key(st, k)
        }
        Msg::Paste(text) => {
            if let Some(ed) = st.editor.as_mut() {
                ed.textarea.insert_str(text.replace(['\n', '\r'], " "));
            } else if st.filter_editing {
                let f = st.focus.unwrap_or(Pane::Diff).index();
                st.filters[f].push_str(&text.replace(['\n', '\r'], " "));
            }
            Reaction::redraw()
        }
        Msg::Mouse(m) => mouse(st, m),
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

fn push_line(buf: &mut std::collections::VecDeque<String>, line: String) {
    if buf.len() == OUTPUT_LINES {
        buf.pop_front();
    }
    buf.push_back(line);
}

fn backend_event(st: &mut State, ev: Event) -> Reaction {
    let now = st.now;
    match ev {
        Event::Session(info) => {
            st.sides[0].info = Some(info.base.clone());
            st.sides[1].info = Some(info.pr.clone());
            st.activity = format!("{} vs {}", info.base.name, info.pr.name);
            st.session = Some(info);
        }
        Event::Phase { side, phase, state } => {
            let name = st.side(side).name().to_string();
            let pv = &mut st.side_mut(side).phases[phase as usize];
            match &state {
                PhaseState::Running => {
                    *pv = PhaseView {
                        state: state.clone(),
                        started: Some(now),
                        took: None,
                    };
                }
                PhaseState::Pending => *pv = PhaseView::default(),
                _ => {
                    pv.took = pv.started.map(|s| now.saturating_sub(s));
                    pv.state = state.clone();
                }
            }
            st.activity = match &state {
                PhaseState::Running => format!("{name}: {} running", phase.title()),
                PhaseState::Done => format!("{name}: {} done", phase.title()),
                PhaseState::Failed { reason } => {
                    format!("{name}: {} failed: {reason}", phase.title())
                }
                PhaseState::Skipped { reason } => {
                    format!("{name}: {} skipped ({reason})", phase.title())
                }
                PhaseState::Pending => format!("{name}: {} reset", phase.title()),
            };
        }
        Event::Output { side, phase, line } => {
            push_line(&mut st.side_mut(side).output[phase as usize], line);
        }
        Event::Built {
            side,
            commit,
            image,
        } => {
            let s = st.side_mut(side);
            s.commit = Some(commit);
            if let Some(i) = s.info.as_mut() {
                i.image = Some(image);
            }
        }
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
        }
        Event::Pod { side, pod } => {
            st.side_mut(side).pods.insert(pod.name.clone(), pod);
        }
        Event::PodRemoved { side, name } => {
            st.side_mut(side).pods.remove(&name);
        }
        Event::Service { side, service } => {
            st.side_mut(side).service = Some(service);
        }
        Event::ProbesStarted { side, target } => {
            let name = st.side(side).name().to_string();
            st.side_mut(side).probes_running = true;
            st.activity = format!("{name}: probing {target}");
        }
        Event::Probe { side, result } => {
            let s = st.side_mut(side);
            let key = (result.source.clone(), result.target.clone());
            let cell = s.probes.entry(key).or_insert_with(|| ProbeCell {
                last: result.clone(),
                history: Default::default(),
            });
            if cell.history.len() == HISTORY {
                cell.history.pop_front();
            }
            cell.history.push_back(result.outcome);
            cell.last = result;
        }
        Event::ProbesDone { side } => {
            let name = st.side(side).name().to_string();
            st.side_mut(side).probes_running = false;
            st.activity = format!("{name}: probes done");
        }
        Event::RuleDump { side, node, text } => {
            let s = st.side_mut(side);
            let changed = s.dumps.get(&node).is_none_or(|old| **old != *text);
            if !changed {
                return Reaction::default();
            }
            let needle = st
                .session
                .as_ref()
                .and_then(|x| crate::rules::ServiceFilter::parse(&x.service).ok())
                .map(|f| format!("{}/{}", f.namespace, f.name));
            let mentions = needle
                .is_some_and(|n| memchr::memmem::find(text.as_bytes(), n.as_bytes()).is_some());
            let s = st.side_mut(side);
            s.mentions_service.insert(node.clone(), mentions);
            s.dumps.insert(node.clone(), Arc::from(text));
            st.diff.generation += 1;
            st.activity = format!("rules of {node} updated");
            let mut o = Reaction::redraw();
            if let Some(req) = diff_request(st) {
                o = o.with(Effect::ComputeDiff(req));
            }
            return o;
        }
        Event::Error {
            side,
            pane,
            message,
        } => {
            let who = side.map(|s| st.side(s).name().to_string());
            st.activity = match &who {
                Some(n) => format!("{n}: error in {pane}: {message}"),
                None => format!("error in {pane}: {message}"),
            };
            for s in side.map_or(vec![Side::Base, Side::Pr], |s| vec![s]) {
                let errs = &mut st.side_mut(s).errors;
                errs.push((pane.clone(), message.clone()));
                if errs.len() > 20 {
                    errs.remove(0);
                }
            }
        }
    }
    Reaction::redraw()
}

/// A diff computation to start, unless one for the same inputs is running or done.
pub fn diff_request(st: &mut State) -> Option<DiffRequest> {
    let nodes = st.diff_nodes();
    if nodes.is_empty() {
        return None;
    }
    if st.diff.node >= nodes.len() {
        st.diff.node = 0;
    }
    let (role, b, p) = &nodes[st.diff.node];
    let key = DiffKey {
        generation: st.diff.generation,
        node: role.clone(),
        raw: st.diff.raw,
    };
    if st.diff.result_for.as_ref() == Some(&key) || st.diff.pending.is_some() {
        // Done already, or one is running: its answer triggers the next request.
        return None;
    }
    st.diff.pending = Some(key);
    let pair = (role.clone(), b.clone(), p.clone());
    Some(request_for(st, &pair, st.diff.generation, st.diff.raw))
}

/// The diff request for one node pair (role, base node, PR node) of `diff_nodes`.
pub fn request_for(
    st: &State,
    (role, b, p): &(String, String, String),
    generation: u64,
    raw: bool,
) -> DiffRequest {
    DiffRequest {
        key: DiffKey {
            generation,
            node: role.clone(),
            raw,
        },
        base: st.sides[0].dumps[b].clone(),
        pr: st.sides[1].dumps[p].clone(),
        service: st.service().to_string(),
    }
}

fn key(st: &mut State, k: KeyEvent) -> Reaction {
    // Modal layers first: editor, filter input, confirmation, help.
    if let Some(ed) = st.editor.as_mut() {
        match k.code {
            KeyCode::Esc => st.editor = None,
            KeyCode::Enter => {
                let text = ed.textarea.lines().join(" ").trim().to_string();
                st.editor = None;
                st.probe_target = (!text.is_empty()).then_some(text.clone());
                let target = st.target();
                st.activity = format!("probe target: {target}");
                return Reaction::redraw().with(Effect::Send(Command::Probe {
                    target: Some(target),
                }));
            }
            _ => {
                ed.textarea.input(k);
            }
        }
        return Reaction::redraw();
    }
    if st.filter_editing {
        let f = st.focus.unwrap_or(Pane::Diff).index();
        match k.code {
            KeyCode::Esc => {
                st.filters[f].clear();
                st.filter_editing = false;
            }
            KeyCode::Enter => st.filter_editing = false,
            KeyCode::Backspace => {
                st.filters[f].pop();
            }
            KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => {
                st.filters[f].push(c)
            }
            _ => {}
        }
        st.scroll[f] = 0;
        if f == Pane::Diff.index() {
            st.diff.scroll = 0;
        }
        return Reaction::redraw();
    }
    if let Some(c) = st.confirm.clone() {
        match k.code {
            KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => {
                st.confirm = None;
                return match c {
                    Confirm::Delete => {
                        st.activity = "deleting clusters".into();
                        Reaction::redraw().with(Effect::Send(Command::DeleteClusters))
                    }
                    Confirm::Quit => {
                        st.quit = true;
                        Reaction::redraw()
                            .with(Effect::Send(Command::Cancel))
                            .with(Effect::Quit)
                    }
                };
            }
            _ => st.confirm = None,
        }
        return Reaction::redraw();
    }
    let Some(action) = action_for(&k) else {
        if k.code == KeyCode::Esc {
            let changed = st.help || st.zoom;
            st.help = false;
            st.zoom = false;
            return Reaction {
                effects: vec![],
                redraw: changed,
            };
        }
        return Reaction::default();
    };
    if st.help && !matches!(action, Action::Help | Action::Quit) {
        st.help = false;
        return Reaction::redraw();
    }
    act(st, action)
}

fn page(st: &State) -> usize {
    (st.size.1 as usize / 2).saturating_sub(4).max(1)
}

fn scroll_by(st: &mut State, delta: isize) {
    let pane = st.focus.unwrap_or(Pane::Diff);
    let v = if pane == Pane::Diff {
        &mut st.diff.scroll
    } else {
        &mut st.scroll[pane.index()]
    };
    *v = v.saturating_add_signed(delta);
}

pub fn act(st: &mut State, a: Action) -> Reaction {
    let send = |st: &mut State, c: Command, what: &str| {
        st.activity = what.to_string();
        Reaction::redraw().with(Effect::Send(c))
    };
    match a {
        Action::Rebuild => send(st, Command::Build, "rebuilding node images"),
        Action::Create => send(st, Command::CreateClusters, "creating clusters"),
        Action::Deploy => send(st, Command::Deploy, "deploying workloads"),
        Action::Retest => {
            let target = st.target();
            send(
                st,
                Command::Probe {
                    target: Some(target),
                },
                "probing",
            )
        }
        Action::Refresh => send(st, Command::RefreshRules, "refreshing rules"),
        Action::Watch => {
            st.watch = !st.watch;
            let w = st.watch;
            send(
                st,
                Command::SetWatch(w),
                if w { "watch mode on" } else { "watch mode off" },
            )
        }
        Action::Delete => {
            st.confirm = Some(Confirm::Delete);
            Reaction::redraw()
        }
        Action::FocusNext | Action::FocusPrev => {
            let i = st.focus.unwrap_or(Pane::Diff).index();
            let n = if a == Action::FocusNext { i + 1 } else { i + 3 };
            st.focus = Some(Pane::ALL[n % 4]);
            Reaction::redraw()
        }
        Action::Up => {
            scroll_by(st, -1);
            Reaction::redraw()
        }
        Action::Down => {
            scroll_by(st, 1);
            Reaction::redraw()
        }
        Action::PageUp => {
            let p = page(st) as isize;
            scroll_by(st, -p);
            Reaction::redraw()
        }
        Action::PageDown => {
            let p = page(st) as isize;
            scroll_by(st, p);
            Reaction::redraw()
        }
        Action::Top => {
            scroll_by(st, isize::MIN / 2);
            Reaction::redraw()
        }
        Action::Bottom => {
            scroll_by(st, isize::MAX / 2);
            Reaction::redraw()
        }
        Action::Left => {
            st.diff.hscroll = st.diff.hscroll.saturating_sub(8);
            Reaction::redraw()
        }
        Action::Right => {
            st.diff.hscroll += 8;
            Reaction::redraw()
        }
        Action::Zoom => {
            st.zoom = !st.zoom;
            Reaction::redraw()
        }
        Action::Filter => {
            st.filter_editing = true;
            Reaction::redraw()
        }
        Action::Edit => {
            let mut ta = ratatui_textarea::TextArea::new(vec![st.target()]);
            ta.move_cursor(ratatui_textarea::CursorMove::End);
            st.editor = Some(Editor { textarea: ta });
            Reaction::redraw()
        }
        Action::ToggleRaw => {
            st.diff.raw = !st.diff.raw;
            let mut o = Reaction::redraw();
            if let Some(r) = diff_request(st) {
                o = o.with(Effect::ComputeDiff(r));
            }
            o
        }
        Action::ToggleLayout => {
            st.diff.side_by_side = !st.diff.side_by_side;
            Reaction::redraw()
        }
        Action::NextNode => {
            let n = st.diff_nodes().len().max(1);
            st.diff.node = (st.diff.node + 1) % n;
            st.diff.scroll = 0;
            let mut o = Reaction::redraw();
            if let Some(r) = diff_request(st) {
                o = o.with(Effect::ComputeDiff(r));
            }
            o
        }
        Action::Mouse => {
            st.mouse_capture = !st.mouse_capture;
            st.activity = if st.mouse_capture {
                "mouse capture on".into()
            } else {
                "mouse capture off: select text with the mouse".into()
            };
            let m = st.mouse_capture;
            Reaction::redraw().with(Effect::SetMouseCapture(m))
        }
        Action::Help => {
            st.help = !st.help;
            Reaction::redraw()
        }
        Action::Quit => {
            if st.busy() {
                st.confirm = Some(Confirm::Quit);
                Reaction::redraw()
            } else {
                st.quit = true;
                Reaction::redraw().with(Effect::Quit)
            }
        }
    }
}

fn mouse(st: &mut State, m: MouseEvent) -> Reaction {
    let delta = match m.kind {
        MouseEventKind::ScrollUp => -3,
        MouseEventKind::ScrollDown => 3,
        _ => return Reaction::default(),
    };
    // Scroll the pane under the pointer.
    let area = ratatui::layout::Rect::new(0, 0, st.size.0, st.size.1);
    if let Some(p) = crate::ui::layout::pane_at(st, area, m.column, m.row) {
        st.focus = Some(p);
    }
    scroll_by(st, delta);
    Reaction::redraw()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::event::*;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    fn key(c: char) -> Msg {
        Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
    }

    fn session() -> Event {
        Event::Session(SessionInfo {
            base: SideInfo {
                name: "master".into(),
                git_ref: None,
                image: None,
            },
            pr: SideInfo {
                name: "77523".into(),
                git_ref: None,
                image: None,
            },
            service: "default/echo".into(),
            probe_target: "lb".into(),
            expectations: vec![],
            banner: None,
        })
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
            vec![Effect::Send(Command::Build)]
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
                target: Some("lb".into())
            })]
        );
        assert_eq!(
            update(&mut st, key('w')).effects,
            vec![Effect::Send(Command::SetWatch(true))]
        );
        assert!(st.watch);
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
                    result: ProbeResult {
                        source: "a".into(),
                        target: "lb".into(),
                        outcome: o,
                        http_status: None,
                        latency_ms: None,
                        detail: None,
                    },
                }),
            );
        }
        let c = &st.side(Side::Pr).probes[&("a".to_string(), "lb".to_string())];
        assert_eq!(
            c.history.iter().copied().collect::<Vec<_>>(),
            vec![Outcome::Ok, Outcome::Timeout, Outcome::Ok]
        );
    }

    #[test]
    fn rule_dumps_request_one_diff_at_a_time_and_skip_unchanged() {
        let mut st = state();
        let dump = |side, node: &str| {
            Msg::Backend(Event::RuleDump {
                side,
                node: node.into(),
                text: "-A KUBE-SERVICES -j X\n".into(),
            })
        };
        assert!(
            update(&mut st, dump(Side::Base, "master-worker"))
                .effects
                .is_empty(),
            "needs both sides"
        );
        let e = update(&mut st, dump(Side::Pr, "77523-worker")).effects;
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
        });
        assert!(update(&mut st, m).effects.is_empty());
        let key = st.diff.pending.clone().unwrap();
        let out = update(
            &mut st,
            Msg::DiffReady {
                key,
                result: Err("x".into()),
            },
        );
        assert!(matches!(&out.effects[..], [Effect::ComputeDiff(r)] if r.key.generation == 3));
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
                target: Some("10.96.0.10:80".into())
            })]
        );
        assert_eq!(st.target(), "10.96.0.10:80");
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
        update(&mut st, key('?'));
        assert!(st.help);
        update(&mut st, key('j'));
        assert!(!st.help, "a key closes help");
        assert_eq!(st.diff.scroll, 0, "and does nothing else");
        update(
            &mut st,
            Msg::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        );
        assert!(st.quit);
    }
}
