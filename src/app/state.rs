//! The dashboard's state. It changes only in [`super::update::update`]; the UI renders it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::backend::event::{
    Outcome, Phase, PhaseState, PodInfo, ProbeResult, ServiceInfo, SessionInfo, Side, SideInfo,
};
use crate::rules::Comparison;

/// Lines of output kept per phase.
pub const OUTPUT_LINES: usize = 200;
/// Probe results remembered per cell.
pub const HISTORY: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Build,
    Pods,
    Probes,
    Diff,
}

impl Pane {
    pub const ALL: [Pane; 4] = [Pane::Build, Pane::Pods, Pane::Probes, Pane::Diff];
    pub fn title(self) -> &'static str {
        match self {
            Pane::Build => "Build",
            Pane::Pods => "Pods",
            Pane::Probes => "Probes",
            Pane::Diff => "Diff",
        }
    }
    pub fn index(self) -> usize {
        Pane::ALL.iter().position(|p| *p == self).unwrap()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseView {
    pub state: PhaseState,
    /// When it started running (app clock).
    pub started: Option<Duration>,
    /// How long it ran, once over.
    pub took: Option<Duration>,
}

impl Default for PhaseView {
    fn default() -> Self {
        PhaseView {
            state: PhaseState::Pending,
            started: None,
            took: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeCell {
    pub last: ProbeResult,
    pub history: VecDeque<Outcome>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub role: String,
    pub ip: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct SideState {
    pub info: Option<SideInfo>,
    /// The commit the running node image was built from, once known.
    pub commit: Option<String>,
    pub phases: [PhaseView; 3],
    pub output: [VecDeque<String>; 3],
    pub nodes: Vec<NodeInfo>,
    pub pods: BTreeMap<String, PodInfo>,
    pub service: Option<ServiceInfo>,
    /// (source pod, target) -> results.
    pub probes: BTreeMap<(String, String), ProbeCell>,
    pub probes_running: bool,
    /// Rule dumps per node name, as last received.
    pub dumps: BTreeMap<String, Arc<str>>,
    /// Per node: does its dump mention the Service under test (checked once per dump)?
    pub mentions_service: BTreeMap<String, bool>,
    pub errors: Vec<(String, String)>,
}

impl SideState {
    pub fn name(&self) -> &str {
        self.info.as_ref().map_or("?", |i| i.name.as_str())
    }
    pub fn phase(&self, p: Phase) -> &PhaseView {
        &self.phases[p as usize]
    }
    /// A pod's name with this cluster's name replaced by `*`, so that "netshoot-master-worker"
    /// and "netshoot-77523-worker" are the same probe source on both sides.
    pub fn source_role(&self, pod: &str) -> String {
        pod.replace(&format!("-{}-", self.name()), "-*-")
    }

    pub fn busy(&self) -> bool {
        self.probes_running || self.phases.iter().any(|p| p.state == PhaseState::Running)
    }
}

#[derive(Debug, Clone, Default)]
pub struct DiffView {
    /// Normalized (default) or raw rules.
    pub raw: bool,
    pub side_by_side: bool,
    /// Index into [`State::diff_nodes`].
    pub node: usize,
    pub scroll: usize,
    pub hscroll: usize,
    /// The last computed comparison and the request it answers.
    pub result: Option<Arc<Comparison>>,
    pub result_for: Option<DiffKey>,
    pub error: Option<String>,
    /// The request in flight, if any.
    pub pending: Option<DiffKey>,
    pub generation: u64,
}

/// What a diff was computed from: a node pair, dump versions and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffKey {
    pub generation: u64,
    pub node: String,
    pub raw: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirm {
    Delete,
    Quit,
}

/// What the `e` text field edits.
pub struct Editor {
    pub textarea: ratatui_textarea::TextArea<'static>,
}

impl std::fmt::Debug for Editor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Editor")
            .field("text", &self.textarea.lines())
            .finish()
    }
}

#[derive(Debug, Default)]
pub struct State {
    pub session: Option<SessionInfo>,
    pub sides: [SideState; 2],
    pub focus: Option<Pane>,
    pub zoom: bool,
    pub help: bool,
    pub confirm: Option<Confirm>,
    /// Per pane: the filter text; `filter_editing` while typing it.
    pub filters: [String; 4],
    pub filter_editing: bool,
    pub editor: Option<Editor>,
    /// The probe target set with `e` (else the scenario's).
    pub probe_target: Option<String>,
    pub diff: DiffView,
    /// Vertical scroll of the other panes.
    pub scroll: [usize; 4],
    pub watch: bool,
    pub mouse_capture: bool,
    /// App clock: time since start, advanced by ticks.
    pub now: Duration,
    /// Spinner frame.
    pub frame: u64,
    /// Last thing that happened, for the header.
    pub activity: String,
    /// Last terminal size (for mouse hit-testing and page size).
    pub size: (u16, u16),
    pub quit: bool,
}

impl State {
    pub fn new() -> State {
        State {
            focus: Some(Pane::Diff),
            mouse_capture: true,
            activity: "starting".into(),
            size: (100, 30),
            ..State::default()
        }
    }

    pub fn side(&self, s: Side) -> &SideState {
        &self.sides[s.index()]
    }

    pub fn side_mut(&mut self, s: Side) -> &mut SideState {
        &mut self.sides[s.index()]
    }

    pub fn busy(&self) -> bool {
        self.sides.iter().any(SideState::busy)
    }

    pub fn filter(&self, p: Pane) -> &str {
        &self.filters[p.index()]
    }

    /// The service whose rules are compared.
    pub fn service(&self) -> &str {
        self.session.as_ref().map_or("", |s| s.service.as_str())
    }

    pub fn target(&self) -> String {
        self.probe_target
            .clone()
            .or_else(|| self.session.as_ref().map(|s| s.probe_target.clone()))
            .unwrap_or_else(|| "lb".into())
    }

    pub fn expected(&self, side: Side, source: &str) -> Option<Outcome> {
        self.session.as_ref().and_then(|s| {
            s.expectations
                .iter()
                .find(|e| e.side == side && e.source == source)
                .map(|e| e.outcome)
        })
    }

    /// Nodes with a rule dump on both sides, paired by role: "master-worker" and
    /// "77523-worker" are both "worker". Returns (role, base node, PR node); pairs whose dumps
    /// mention the Service under test come first.
    pub fn diff_nodes(&self) -> Vec<(String, String, String)> {
        let role = |side: &SideState, node: &str| -> String {
            let prefix = format!("{}-", side.name());
            node.strip_prefix(&prefix).unwrap_or(node).to_string()
        };
        let base = &self.sides[0];
        let pr = &self.sides[1];
        let mut out = Vec::new();
        for b in base.dumps.keys() {
            let r = role(base, b);
            if let Some(p) = pr.dumps.keys().find(|p| role(pr, p) == r) {
                out.push((r, b.clone(), p.clone()));
            }
        }
        let mentions = |s: &SideState, n: &str| s.mentions_service.get(n).copied().unwrap_or(false);
        out.sort_by_key(|(_, b, p)| !(mentions(base, b) || mentions(pr, p)));
        out
    }
}
