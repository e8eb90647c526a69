//! The dashboard's state. It changes only in [`super::update::update`]; the UI renders it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use super::diffs::{Computed, DiffKey};
use crate::backend::event::{PodInfo, ProbeResult, ServiceInfo, SessionInfo, SideInfo, WatchPath};
use crate::model::{
    BySide, NodePair, NodeRole, Outcome, Pane, Phase, PhaseState, ProxyMode, ServiceRef, Side,
    Target, without_cluster,
};
use crate::rules::group::{Canon, Group, GroupPair, Grouper, match_groups};
use crate::rules::render::visible;

/// The stages of `kind build node-image`, in the order kind prints them.
pub const BUILD_STAGES: [&str; 4] = [
    "compiling Kubernetes",
    "Kubernetes built",
    "building node image",
    "done",
];

/// Lines of output kept per phase.
pub const OUTPUT_LINES: usize = 200;
/// Probe results remembered per cell.
pub const HISTORY: usize = 8;

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
    /// The last outcomes, each with the session time it arrived (oldest first).
    pub history: VecDeque<(Duration, Outcome)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub role: NodeRole,
    pub ip: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct SideState {
    pub info: Option<SideInfo>,
    /// The commit the running node image was built from, once known.
    pub commit: Option<String>,
    /// The Kubernetes version that build carries, when known.
    pub version: Option<String>,
    /// What a `worktree` build was made of ("HEAD abc123 + 3 changed files").
    pub snapshot: Option<String>,
    /// The kube-proxy swapped into the running cluster: its image, and what it was built from
    /// ("HEAD abc1234 + 1 changed file", or the commit).
    pub proxy: Option<(String, String)>,
    pub phases: [PhaseView; 4],
    /// Per phase, how long the same work took last time (seconds), when known.
    pub estimate: [Option<u64>; 4],
    /// Where a node-image build is: the index of the stage kind last printed, of
    /// [`BUILD_STAGES`].
    pub stage: Option<usize>,
    pub output: [VecDeque<String>; 4],
    pub nodes: Vec<NodeInfo>,
    pub pods: BTreeMap<String, PodInfo>,
    pub service: Option<ServiceInfo>,
    /// (source pod, target) -> results.
    pub probes: BTreeMap<(String, String), ProbeCell>,
    pub probes_running: bool,
    /// The connections held across the side's last change (swap, rebuild, bisect step).
    pub held: Option<super::held::Held>,
    /// Rule dumps per node name, as last received.
    pub dumps: BTreeMap<String, Arc<str>>,
    /// When each node's dump was read (ms since the backend started), when the backend says.
    pub dump_at: BTreeMap<String, u64>,
    /// Per node: does its dump mention the Service under test (checked once per dump)?
    pub mentions_service: BTreeMap<String, bool>,
    /// Nodes whose dump holds no kube-proxy rule at all (normal before kube-proxy starts).
    pub no_rules: std::collections::BTreeSet<String>,
    /// Per node: the kube-proxy mode its dump is in (nodes whose dump holds kube-proxy rules).
    pub modes: BTreeMap<String, ProxyMode>,
    /// While watching: how each node's rules are followed (`nft monitor`, or polled and why).
    pub watching: BTreeMap<String, WatchPath>,
    /// The latest errors a backend reported, with the pane they belong to.
    pub errors: VecDeque<(Pane, String)>,
    /// What the rules predict for each probe (source pod, target), from the last answered
    /// [`super::predict::PredictRequest`].
    pub predictions: BTreeMap<(String, String), super::predict::Predicted>,
    /// The last prediction request sent off the loop (its answer is the one kept).
    pub predict_sent: Option<super::predict::PredictRequest>,
    /// The nodes grouped by their rules (each dump's canonical text made once, when it
    /// arrives; one kept per distinct rule set).
    pub grouper: Grouper,
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
        without_cluster(pod, self.name(), "*")
    }
    /// A pod's or node's name without this cluster's name, as the panes show it.
    pub fn short(&self, name: &str) -> String {
        without_cluster(name, self.name(), "")
    }
    /// The errors reported for `pane`, newest first.
    pub fn errors_in(&self, pane: Pane) -> impl Iterator<Item = &str> {
        self.errors
            .iter()
            .rev()
            .filter(move |(p, _)| *p == pane)
            .map(|(_, m)| m.as_str())
    }

    pub fn busy(&self) -> bool {
        self.probes_running || self.phases.iter().any(|p| p.state == PhaseState::Running)
    }

    /// A node's role: as its cluster labels it, else from its name (kind's
    /// `NAME-control-plane`, `NAME-worker2`).
    pub fn node_role(&self, node: &str) -> NodeRole {
        match self.nodes.iter().find(|n| n.name == node) {
            Some(n) if n.role != NodeRole::Unknown => n.role,
            _ if self.short(node).starts_with("control-plane") => NodeRole::ControlPlane,
            _ => NodeRole::Worker,
        }
    }

    /// What grouping `node`'s rules (its dump just arrived) needs, to be made off the UI loop
    /// ([`GroupRequest::canonical`]); its answer goes to [`SideState::grouped`].
    pub fn group_request(&self, side: Side, node: &str, dump: Arc<str>) -> GroupRequest {
        let ips: Vec<std::net::Ipv4Addr> = self
            .nodes
            .iter()
            .filter(|n| n.name == node)
            .filter_map(|n| n.ip.as_deref()?.parse().ok())
            .collect();
        GroupRequest {
            side,
            node: node.to_string(),
            role: self.node_role(node).to_string(),
            dump,
            ips,
        }
    }

    /// Group a node by its canonical rules, unless a newer dump of it arrived meanwhile (its
    /// own request follows). Whether it was grouped.
    pub fn grouped(&mut self, req: &GroupRequest, canon: Canon) -> bool {
        let current = self
            .dumps
            .get(&req.node)
            .is_some_and(|d| Arc::ptr_eq(d, &req.dump));
        if current {
            self.grouper.add(&req.role, &req.node, canon);
        }
        current
    }

    /// The side's groups, an outlier named as the panes name nodes (without the cluster's
    /// name).
    pub fn groups(&self) -> Vec<Group> {
        let mut gs = self.grouper.groups();
        for g in gs.iter_mut().filter(|g| !g.is_group()) {
            g.label = self.short(&g.nodes[0]);
        }
        gs
    }
}

/// A node's rules to group by their canonical text, made off the UI loop.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRequest {
    pub side: Side,
    pub node: String,
    pub role: String,
    /// The dump as the state holds it: an answer for an older dump is dropped.
    pub dump: Arc<str>,
    /// The node's addresses as its cluster reports them.
    pub ips: Vec<std::net::Ipv4Addr>,
}

impl GroupRequest {
    /// The rules' canonical text; a dump that does not parse is a group of its own (the Diff
    /// pane says why when it is shown).
    pub fn canonical(&self) -> Canon {
        crate::rules::group::canonical(&self.dump, &self.ips)
            .unwrap_or_else(|e| Canon::alone(&self.node, &e.to_string()))
    }
}

/// A node pair whose kube-proxy modes are not what the scenario says, or differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeNote {
    pub base: Option<ProxyMode>,
    pub pr: Option<ProxyMode>,
    pub scenario: Option<ProxyMode>,
}

impl std::fmt::Display for ModeNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = |m: Option<ProxyMode>| m.map_or("?".to_string(), |m| m.to_string());
        write!(
            f,
            "kube-proxy mode: base {}, PR {}",
            m(self.base),
            m(self.pr)
        )?;
        if let Some(s) = self.scenario {
            write!(f, "; the scenario says {s}")?;
        }
        if let (Some(b), Some(p)) = (self.base, self.pr)
            && b != p
        {
            f.write_str(" (the modes differ: each Service's rules as they are)")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default)]
pub struct DiffView {
    /// Normalized (default) or raw rules.
    pub raw: bool,
    pub side_by_side: bool,
    /// Long rules wrap (continuation rows marked `↳`) instead of scrolling sideways.
    pub wrap: bool,
    /// The dump's own line under each changed rule is left out (a denser view).
    pub hide_origin: bool,
    /// The timeline entry shown (that node's rules before vs after the change), by id; `None`
    /// is the live base-vs-PR view.
    pub step: Option<u64>,
    /// Nodes with a dump on both sides, paired by role (computed when a dump arrives); with
    /// [`DiffView::groups`] active, one pair per matched group pair (its nodes standing for
    /// their groups).
    pub pairs: Vec<NodePair>,
    /// Each side's nodes grouped by their rules, and the groups compared.
    pub groups: Groups,
    /// Index into `pairs`.
    pub node: usize,
    pub scroll: usize,
    pub hscroll: usize,
    /// The last computed diff (with its display lines) and the request it answers.
    pub result: Option<Computed>,
    pub result_for: Option<DiffKey>,
    pub error: Option<String>,
    /// The request in flight, if any.
    pub pending: Option<DiffKey>,
    /// Bumped by every new dump.
    pub generation: u64,
}

/// Each side's groups of nodes with the same rules, and which are compared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Groups {
    pub base: Vec<Group>,
    pub pr: Vec<Group>,
    /// Groups are shown (a side has several nodes of a role with the same rules): `pairs[i]`
    /// is what [`DiffView::pairs`]`[i]` compares. Empty otherwise (node by node, as kind's
    /// few nodes are).
    pub pairs: Vec<GroupPair>,
}

impl Groups {
    /// Whether the Diff pane compares groups rather than nodes.
    pub fn active(&self) -> bool {
        !self.pairs.is_empty()
    }
    pub fn side(&self, s: Side) -> &[Group] {
        match s {
            Side::Base => &self.base,
            Side::Pr => &self.pr,
        }
    }
    /// The groups of one node alone (outliers) on a side.
    pub fn outliers(&self, s: Side) -> impl Iterator<Item = &Group> {
        self.side(s).iter().filter(|g| !g.is_group())
    }
}

impl DiffView {
    /// The groups compared by the pair shown (group mode).
    pub fn group_pair(&self) -> Option<(&Group, &Group)> {
        let k = self.node.min(self.pairs.len().saturating_sub(1));
        let p = self.groups.pairs.get(k)?;
        Some((self.groups.base.get(p.base)?, self.groups.pr.get(p.pr)?))
    }

    /// The node pair shown.
    pub fn pair(&self) -> Option<&NodePair> {
        self.pairs
            .get(self.node.min(self.pairs.len().saturating_sub(1)))
    }
}

/// The Probes pane's selection: a row of one side's table (of the probes the filter keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeCursor {
    pub side: Side,
    pub row: usize,
}

impl Default for ProbeCursor {
    fn default() -> Self {
        ProbeCursor {
            side: Side::Base,
            row: 0,
        }
    }
}

/// Enter on a probe row: that probe's path through its node's rules on both sides, shown in
/// the Diff pane's place until Esc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathsView {
    /// The side the probe was selected on, and its key there (the other side's is its
    /// counterpart: the same source role to the same target).
    pub side: Side,
    pub key: super::predict::ProbeKey,
    pub scroll: usize,
    pub hscroll: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirm {
    Delete,
    Quit,
}

/// What a text field edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Editing {
    /// `e`: the probe target.
    Target,
    /// `f`: the `GOOD..BAD` range to bisect.
    Bisect,
    /// `R`: how many tries each probe runs.
    Repeat,
}

/// The text field `e`, `f` or `R` opened.
pub struct Editor {
    pub textarea: ratatui_textarea::TextArea<'static>,
    pub editing: Editing,
}

impl std::fmt::Debug for Editor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Editor")
            .field("text", &self.textarea.lines())
            .field("editing", &self.editing)
            .finish()
    }
}

#[derive(Debug, Default)]
pub struct State {
    pub session: Option<SessionInfo>,
    pub sides: BySide<SideState>,
    pub focus: Option<Pane>,
    pub zoom: bool,
    pub help: bool,
    /// How far the help overlay is scrolled (when it is taller than the screen).
    pub help_scroll: u16,
    pub confirm: Option<Confirm>,
    /// Per pane: the filter text; `filter_editing` while typing it.
    pub filters: [String; 4],
    pub filter_editing: bool,
    pub editor: Option<Editor>,
    /// The bisect of this session (`f`, `kindred bisect`, or a recording's).
    pub bisect: super::bisect::BisectView,
    /// The probe target set with `e` (else the scenario's).
    pub probe_target: Option<Target>,
    pub diff: DiffView,
    /// Nodes whose rules are being grouped off the UI loop ([`super::Effect::Group`] sent,
    /// [`super::Msg::Grouped`] not yet back): `check` judges only once none is.
    pub grouping: usize,
    /// Every change of a node's rules, oldest first.
    pub timeline: super::timeline::Timeline,
    /// Vertical scroll of the other panes (the Probes pane's: its first row shown).
    pub scroll: [usize; 4],
    /// The selected probe row (shown while the Probes pane is focused or a probe's paths are).
    pub probe_cursor: ProbeCursor,
    /// A probe's two paths, shown in the Diff pane's place.
    pub paths: Option<PathsView>,
    pub watch: bool,
    pub mouse_capture: bool,
    /// The PR side's p99 latency over the base's above which it is flagged (the scenario's
    /// `probes.latency_factor` or `--latency-factor`, set by the front end).
    pub latency_factor: crate::model::Factor,
    /// The tries per probe asked with `R` (the backend keeps it for the session); `None`: the
    /// scenario's `probes.repeat`.
    pub probe_repeat: Option<u32>,
    /// kube-proxy's own numbers per node (`m` shows them).
    pub metrics: super::metrics::MetricsView,
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
    /// The context a side is (a cluster kindred did not create), when it is one.
    pub fn context(&self, side: Side) -> Option<&str> {
        self.side(side).info.as_ref()?.context.as_deref()
    }

    /// "PR is context prod-eu (read only)" when `side` is a context.
    fn read_only(&self, side: Side) -> Option<String> {
        let c = visible(self.context(side)?);
        Some(format!("{} is context {c} (read only)", side.label()))
    }

    /// Why `a` does nothing in this session: every side it would build, create, recreate, swap
    /// or delete is a cluster kindred did not create. `None`: it does its work (on a mixed pair,
    /// on the kind side; the backend says so for the other).
    pub fn disabled(&self, a: super::keymap::Action) -> Option<String> {
        use super::keymap::Action;
        let both = || {
            let (b, p) = (self.context(Side::Base)?, self.context(Side::Pr)?);
            let (b, p) = (visible(b), visible(p));
            Some(format!(
                "base is context {b}, PR is context {p} (read only)"
            ))
        };
        match a {
            Action::Rebuild | Action::SwapProxy | Action::Bisect => {
                both().or_else(|| self.read_only(Side::Pr))
            }
            Action::RebuildBoth | Action::SwapProxyBoth | Action::Create => both(),
            Action::Delete if self.deletes().is_empty() => {
                both().map(|w| format!("{w}, and kindred deploys nothing there"))
            }
            _ => None,
        }
    }

    /// What `x` deletes: the kind clusters (those kindred created), and kindred's namespace
    /// in a context it deploys into; never a context's cluster.
    pub fn deletes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for side in Side::BOTH {
            let s = self.side(side);
            match s.info.as_ref().and_then(|i| i.context.as_deref()) {
                None => out.push(format!("cluster {}", s.name())),
                Some(c) => {
                    if let Some(ns) = s.info.as_ref().and_then(|i| i.namespace.as_deref()) {
                        let c = visible(c);
                        out.push(format!("namespace {ns} in context {c}"));
                    }
                }
            }
        }
        out
    }

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
        &self.sides[s]
    }

    pub fn side_mut(&mut self, s: Side) -> &mut SideState {
        &mut self.sides[s]
    }

    pub fn busy(&self) -> bool {
        self.sides.any(SideState::busy) || self.bisect.running
    }

    pub fn filter(&self, p: Pane) -> &str {
        &self.filters[p.index()]
    }

    /// The LoadBalancer IP each side's Service has, when known (base, PR).
    pub fn lb_ips(&self) -> (Vec<String>, Vec<String>) {
        let ip = |s: &SideState| {
            s.service
                .as_ref()
                .and_then(|v| v.lb_ip.clone())
                .into_iter()
                .collect()
        };
        (ip(&self.sides.base), ip(&self.sides.pr))
    }

    /// A node pair's addresses as the clusters report them (base, PR): the packet summary's
    /// node addresses (empty when not known yet: the dump's own are used).
    pub fn node_ips(&self, pair: &NodePair) -> super::diffs::NodeIps {
        let ip = |s: &SideState, node: &str| {
            s.nodes
                .iter()
                .filter(|n| n.name == node)
                .filter_map(|n| n.ip.as_deref()?.parse().ok())
                .collect()
        };
        (
            ip(&self.sides.base, &pair.base),
            ip(&self.sides.pr, &pair.pr),
        )
    }

    /// The service whose rules are compared.
    pub fn service(&self) -> Option<&ServiceRef> {
        self.session.as_ref().map(|s| &s.service)
    }

    pub fn target(&self) -> Target {
        self.probe_target
            .clone()
            .or_else(|| self.session.as_ref().map(|s| s.probe_target.clone()))
            .unwrap_or_default()
    }

    /// The outcome expected of `source` on `side` probing `target`: an expectation naming that
    /// target first, else one for every target.
    pub fn expected(&self, side: Side, source: &str, target: &Target) -> Option<Outcome> {
        self.expectation(side, source, target).map(|e| e.outcome)
    }

    /// The expectation [`State::expected`] finds, whole (with its rate, if any).
    pub fn expectation(
        &self,
        side: Side,
        source: &str,
        target: &Target,
    ) -> Option<&crate::backend::event::Expectation> {
        let s = self.session.as_ref()?;
        let mine = |e: &&crate::backend::event::Expectation| {
            e.side == side && e.source == source && s.applies(e, target)
        };
        let all = s.expectations.iter().filter(mine);
        all.clone()
            .find(|e| e.target.is_some())
            .or_else(|| all.clone().next())
    }

    /// The probe target a result is for: the one it names, else (an older recording) the
    /// session's default.
    pub fn target_of(&self, r: &ProbeResult) -> Target {
        r.scenario_target.clone().unwrap_or_else(|| {
            self.session
                .as_ref()
                .map(|s| s.probe_target.clone())
                .unwrap_or_default()
        })
    }

    /// The latest result of `source` on `side` to `target` (a LoadBalancer IP that changed
    /// leaves an older cell for the same target).
    pub fn probe_for(&self, side: Side, source: &str, target: &Target) -> Option<&ProbeCell> {
        self.probe_entry(side, source, target).map(|(_, c)| c)
    }

    /// [`State::probe_for`] with the cell's key (source pod, target as probed): what its
    /// prediction is kept under.
    pub fn probe_entry(
        &self,
        side: Side,
        source: &str,
        target: &Target,
    ) -> Option<(&(String, String), &ProbeCell)> {
        self.side(side)
            .probes
            .iter()
            .filter(|((src, _), c)| src == source && self.target_of(&c.last) == *target)
            .max_by_key(|(_, c)| c.history.back().map(|(at, _)| *at))
    }

    /// The same probe on the other side: the same source (by role) to the same target (as the
    /// scenario names it: the LoadBalancer IP differs between the clusters).
    pub fn counterpart(
        &self,
        side: Side,
        source: &str,
        result: &ProbeResult,
    ) -> Option<&ProbeCell> {
        let role = self.side(side).source_role(source);
        let other_side = side.other();
        let other = self.side(other_side);
        let target = self.target_of(result);
        let src = other
            .probes
            .keys()
            .map(|(src, _)| src)
            .find(|src| other.source_role(src) == role)?;
        self.probe_for(other_side, src, &target)
    }

    /// The probes a side's table lists: those whose source the Probes pane's filter keeps.
    pub fn probe_rows(&self, side: Side) -> Vec<(&(String, String), &ProbeCell)> {
        let filter = self.filter(Pane::Probes);
        self.side(side)
            .probes
            .iter()
            .filter(|((src, _), _)| filter.is_empty() || src.contains(filter))
            .collect()
    }

    /// The probe under the Probes pane's cursor, if its side has that row.
    pub fn selected_probe(&self) -> Option<(Side, (String, String))> {
        let c = self.probe_cursor;
        let rows = self.probe_rows(c.side);
        rows.get(c.row).map(|(k, _)| (c.side, (*k).clone()))
    }

    /// The key of a probe's counterpart on the other side (see [`State::counterpart`]).
    pub fn counterpart_key(&self, side: Side, key: &(String, String)) -> Option<(String, String)> {
        let cell = self.side(side).probes.get(key)?;
        let c = self.counterpart(side, &key.0, &cell.last)?;
        Some((c.last.source.clone(), c.last.target.clone()))
    }

    /// Whether this probe's last outcome differs from its counterpart's on the other side.
    pub fn differs(&self, side: Side, source: &str, result: &ProbeResult) -> bool {
        self.counterpart(side, source, result)
            .is_some_and(|c| c.last.outcome != result.outcome)
    }

    /// The kube-proxy modes of a node pair's dumps, when they are not both the scenario's (or,
    /// without one, differ from each other): what the Diff pane points out.
    pub fn mode_note(&self, pair: &NodePair) -> Option<ModeNote> {
        let base = self.sides.base.modes.get(&pair.base).copied();
        let pr = self.sides.pr.modes.get(&pair.pr).copied();
        let scenario = self.session.as_ref().and_then(|s| s.proxy_mode);
        let off = |m: Option<ProxyMode>| match (m, scenario) {
            (Some(m), Some(want)) => m != want,
            _ => false,
        };
        let differ = matches!((base, pr), (Some(b), Some(p)) if b != p);
        (off(base) || off(pr) || differ).then_some(ModeNote { base, pr, scenario })
    }

    /// Nodes with a rule dump on both sides, paired by role: "master-worker" and
    /// "77523-worker" are both "worker"; pairs whose dumps mention the Service under test come
    /// first. Called when a dump arrives; panes read `diff.pairs`.
    pub fn refresh_pairs(&mut self) {
        let (base, pr) = (&self.sides.base, &self.sides.pr);
        let groups = Groups {
            base: base.groups(),
            pr: pr.groups(),
            pairs: Vec::new(),
        };
        let several = |gs: &[Group]| gs.iter().any(Group::is_group);
        if several(&groups.base) || several(&groups.pr) {
            self.refresh_group_pairs(groups);
            return;
        }
        self.diff.groups = groups;
        let mut out = Vec::new();
        for b in base.dumps.keys() {
            let role = base.short(b);
            if let Some(p) = pr.dumps.keys().find(|p| pr.short(p) == role) {
                out.push(NodePair {
                    role,
                    base: b.clone(),
                    pr: p.clone(),
                });
            }
        }
        let mentions = |s: &SideState, n: &str| s.mentions_service.get(n).copied().unwrap_or(false);
        out.sort_by_key(|p| !(mentions(base, &p.base) || mentions(pr, &p.pr)));
        self.diff.pairs = out;
    }

    /// [`State::refresh_pairs`] with groups: base groups matched to PR groups (by role, then
    /// by the node names they share, then by size), each pair compared once through its
    /// groups' first nodes; pairs whose dumps mention the Service under test first.
    fn refresh_group_pairs(&mut self, mut groups: Groups) {
        let (base, pr) = (&self.sides.base, &self.sides.pr);
        let matched = match_groups(&groups.base, &groups.pr, |n| base.short(n), |n| pr.short(n));
        let mentions = |s: &SideState, n: &str| s.mentions_service.get(n).copied().unwrap_or(false);
        let mut both: Vec<(NodePair, GroupPair)> = matched
            .into_iter()
            .map(|m| {
                let (b, p) = (&groups.base[m.base], &groups.pr[m.pr]);
                let role = if b.label == p.label {
                    b.label.clone()
                } else {
                    format!("{} ↔ {}", b.label, p.label)
                };
                let pair = NodePair {
                    role,
                    base: b.representative().to_string(),
                    pr: p.representative().to_string(),
                };
                (pair, m)
            })
            .collect();
        both.sort_by_key(|(p, _)| !(mentions(base, &p.base) || mentions(pr, &p.pr)));
        let (pairs, matched): (Vec<NodePair>, Vec<GroupPair>) = both.into_iter().unzip();
        groups.pairs = matched;
        self.diff.pairs = pairs;
        self.diff.groups = groups;
    }
}
