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
pub struct Outcome {
    pub effects: Vec<Effect>,
    pub redraw: bool,
}

impl Outcome {
    fn redraw() -> Outcome {
        Outcome {
            effects: Vec::new(),
            redraw: true,
        }
    }
    fn with(mut self, e: Effect) -> Outcome {
        self.effects.push(e);
        self
    }
}

pub fn update(st: &mut State, msg: Msg) -> Outcome {
    match msg {
        Msg::Tick(now) => tick(st, now),
        Msg::Resize(w, h) => {
            st.size = (w, h);
            Outcome::redraw()
        }
        Msg::Backend(ev) => backend_event(st, ev),
        Msg::DiffReady { key, result } => {
            if st.diff.pending.as_ref() == Some(&key) {
                st.diff.pending = None;
            }
            if key.generation < st.diff.result_for.as_ref().map_or(0, |k| k.generation) {
                return Outcome::default();
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
            let mut o = Outcome::redraw();
            if let Some(req) = diff_request(st) {
                o = o.with(Effect::ComputeDiff(req));
            }
            o
        }
        Msg::Key(k) => {
            if k.kind == KeyEventKind::Release {
                return Outcome::default();
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
            Outcome::redraw()
        }
        Msg::Mouse(m) => mouse(st, m),
        Msg::Terminate => {
            st.quit = true;
            Outcome::redraw().with(Effect::Quit)
        }
    }
}

fn tick(st: &mut State, now: Duration) -> Outcome {
    st.now = now;
    // Redraw only when something moves (spinners and elapsed times while work runs): an idle
    // dashboard does not draw at all.
    if st.busy() {
        st.frame = st.frame.wrapping_add(1);
        Outcome::redraw()
    } else {
        Outcome::default()
    }
}

fn push_line(buf: &mut std::collections::VecDeque<String>, line: String) {
    if buf.len() == OUTPUT_LINES {
        buf.pop_front();
    }
    buf.push_back(line);
}

fn backend_event(st: &mut State, ev: Event) -> Outcome {
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
        Event::Node { side, name, role, ip } => {
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
                return Outcome::default();
            }
            s.dumps.insert(node.clone(), Arc::from(text));
            st.diff.generation += 1;
            st.activity = format!("rules of {node} updated");
            let mut o = Outcome::redraw();
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
    Outcome::redraw()
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
    st.diff.pending = Some(key.clone());
    Some(DiffRequest {
        key,
        base: st.sides[0].dumps[b].clone(),
        pr: st.sides[1].dumps[p].clone(),
        service: st.service().to_string(),
    })
}

fn key(st: &mut State, k: KeyEvent) -> Outcome {
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
                return Outcome::redraw().with(Effect::Send(Command::Probe {
                    target: Some(target),
                }));
            }
            _ => {
                ed.textarea.input(k);
            }
        }
        return Outcome::redraw();
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
        return Outcome::redraw();
    }
    if let Some(c) = st.confirm.clone() {
        match k.code {
            KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => {
                st.confirm = None;
                return match c {
                    Confirm::Delete => {
                        st.activity = "deleting clusters".into();
                        Outcome::redraw().with(Effect::Send(Command::DeleteClusters))
                    }
                    Confirm::Quit => {
                        st.quit = true;
                        Outcome::redraw()
                            .with(Effect::Send(Command::Cancel))
                            .with(Effect::Quit)
                    }
                };
            }
            _ => st.confirm = None,
        }
        return Outcome::redraw();
    }
    let Some(action) = action_for(&k) else {
        if k.code == KeyCode::Esc {
            let changed = st.help || st.zoom;
            st.help = false;
            st.zoom = false;
            return Outcome {
                effects: vec![],
                redraw: changed,
            };
        }
        return Outcome::default();
    };
    if st.help && !matches!(action, Action::Help | Action::Quit) {
        st.help = false;
        return Outcome::redraw();
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

pub fn act(st: &mut State, a: Action) -> Outcome {
    let send = |st: &mut State, c: Command, what: &str| {
        st.activity = what.to_string();
        Outcome::redraw().with(Effect::Send(c))
    };
    match a {
        Action::Rebuild => send(st, Command::Build, "rebuilding node images"),
        Action::Create => send(st, Command::CreateClusters, "creating clusters"),
        Action::Deploy => send(st, Command::Deploy, "deploying workloads"),
        Action::Retest => {
            let target = st.target();
            send(st, Command::Probe { target: Some(target) }, "probing")
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
            Outcome::redraw()
        }
        Action::FocusNext | Action::FocusPrev => {
            let i = st.focus.unwrap_or(Pane::Diff).index();
            let n = if a == Action::FocusNext { i + 1 } else { i + 3 };
            st.focus = Some(Pane::ALL[n % 4]);
            Outcome::redraw()
        }
        Action::Up => {
            scroll_by(st, -1);
            Outcome::redraw()
        }
        Action::Down => {
            scroll_by(st, 1);
            Outcome::redraw()
        }
        Action::PageUp => {
            let p = page(st) as isize;
            scroll_by(st, -p);
            Outcome::redraw()
        }
        Action::PageDown => {
            let p = page(st) as isize;
            scroll_by(st, p);
            Outcome::redraw()
        }
        Action::Top => {
            scroll_by(st, isize::MIN / 2);
            Outcome::redraw()
        }
        Action::Bottom => {
            scroll_by(st, isize::MAX / 2);
            Outcome::redraw()
        }
        Action::Left => {
            st.diff.hscroll = st.diff.hscroll.saturating_sub(8);
            Outcome::redraw()
        }
        Action::Right => {
            st.diff.hscroll += 8;
            Outcome::redraw()
        }
        Action::Zoom => {
            st.zoom = !st.zoom;
            Outcome::redraw()
        }
        Action::Filter => {
            st.filter_editing = true;
            Outcome::redraw()
        }
        Action::Edit => {
            let mut ta = ratatui_textarea::TextArea::new(vec![st.target()]);
            ta.move_cursor(ratatui_textarea::CursorMove::End);
            st.editor = Some(Editor { textarea: ta });
            Outcome::redraw()
        }
        Action::ToggleRaw => {
            st.diff.raw = !st.diff.raw;
            let mut o = Outcome::redraw();
            if let Some(r) = diff_request(st) {
                o = o.with(Effect::ComputeDiff(r));
            }
            o
        }
        Action::ToggleLayout => {
            st.diff.side_by_side = !st.diff.side_by_side;
            Outcome::redraw()
        }
        Action::NextNode => {
            let n = st.diff_nodes().len().max(1);
            st.diff.node = (st.diff.node + 1) % n;
            st.diff.scroll = 0;
            let mut o = Outcome::redraw();
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
            Outcome::redraw().with(Effect::SetMouseCapture(m))
        }
        Action::Help => {
            st.help = !st.help;
            Outcome::redraw()
        }
        Action::Quit => {
            if st.busy() {
                st.confirm = Some(Confirm::Quit);
                Outcome::redraw()
            } else {
                st.quit = true;
                Outcome::redraw().with(Effect::Quit)
            }
        }
    }
}

fn mouse(st: &mut State, m: MouseEvent) -> Outcome {
    let delta = match m.kind {
        MouseEventKind::ScrollUp => -3,
        MouseEventKind::ScrollDown => 3,
        _ => return Outcome::default(),
    };
    // Scroll the pane under the pointer.
    let area = ratatui::layout::Rect::new(0, 0, st.size.0, st.size.1);
    if let Some(p) = crate::ui::layout::pane_at(st, area, m.column, m.row) {
        st.focus = Some(p);
    }
    scroll_by(st, delta);
    Outcome::redraw()
}
