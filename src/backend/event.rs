//! The typed messages between the dashboard and a backend. Events are also the records of a
//! session recording (see [`super::recording`]), so they are serializable and stable: fields are
//! only ever added, with defaults.

use serde::{Deserialize, Serialize};

use crate::model::{
    Job, NodeRole, Outcome, Pane, Phase, PhaseState, PodPhase, ProxyMode, Rate, ServiceRef, Side,
    Sides, Target,
};

/// A pod of the test workload as the Pods pane shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInfo {
    pub name: String,
    pub node: String,
    pub host_network: bool,
    #[serde(default)]
    pub ip: Option<String>,
    pub phase: PodPhase,
    #[serde(default)]
    pub restarts: u32,
}

/// The LoadBalancer Service under test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// "namespace/name".
    pub name: String,
    #[serde(default)]
    pub lb_ip: Option<String>,
    pub port: u16,
    #[serde(default)]
    pub external_traffic_policy: Option<String>,
    /// e.g. ingress ipMode: Proxy (cloud-provider-kind), which bypasses kube-proxy's rules.
    #[serde(default)]
    pub warning: Option<String>,
}

/// The result of one probe (curl from a source pod to a target).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub source: String,
    pub target: String,
    pub outcome: Outcome,
    #[serde(default)]
    pub http_status: Option<u16>,
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// curl's exit code or message, for failures.
    #[serde(default)]
    pub detail: Option<String>,
    /// The probe target this result is for, as the scenario names it (`lb` when `target` is the
    /// LoadBalancer's address). Absent in recordings made before targets were named: their
    /// results are for the session's `probe_target`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario_target: Option<Target>,
    /// Each try of a repeated probe (`probes.repeat`), in order; `outcome` then sums them up
    /// (`Flaky` when they disagree). Empty in recordings made before probes were repeated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tries: Vec<Try>,
    /// Endpoints ready behind the target when it was probed (the Service's EndpointSlices),
    /// when known: "2/3 endpoints answered".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_endpoints: Option<u32>,
}

/// One try of a probe: one connection, one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Try {
    /// Ok, Fail or Timeout (never Flaky).
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Time to connect, in microseconds (curl's `time_connect`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_us: Option<u64>,
    /// Time for the whole request, in microseconds (curl's `time_total`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_us: Option<u64>,
    /// The endpoint that answered: the echo server's pod name, as it reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// curl's error, for a try that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[cfg(test)]
impl ProbeResult {
    /// A result with only its outcome (no HTTP status, latency or detail).
    pub fn bare(source: &str, target: &str, outcome: Outcome) -> ProbeResult {
        ProbeResult {
            source: source.into(),
            target: target.into(),
            outcome,
            http_status: None,
            latency_ms: None,
            detail: None,
            scenario_target: None,
            tries: Vec::new(),
            ready_endpoints: None,
        }
    }
}

/// The two sides as the scenario names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideInfo {
    /// Cluster name, e.g. "master" or "77523".
    pub name: String,
    /// Git ref the node image is built from.
    #[serde(default)]
    pub git_ref: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    /// The kubeconfig context of a side kindred did not create (`context:` in the scenario):
    /// kindred only reads it, and never builds, creates, recreates, swaps or deletes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// kindred's namespace in that context when the scenario deploys there (`deploy: true`):
    /// all kindred creates there, and what `x` removes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[cfg(test)]
impl SideInfo {
    /// A side with only its name (no ref, image or context).
    pub fn named(name: &str) -> SideInfo {
        SideInfo {
            name: name.into(),
            git_ref: None,
            image: None,
            context: None,
            namespace: None,
        }
    }
}

/// What a session is about: written first in a recording and sent first by every backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub base: SideInfo,
    pub pr: SideInfo,
    /// The service whose rules are compared, "ns/name" (all ports) or "ns/name:port".
    pub service: ServiceRef,
    /// Default probe target: `lb` (the LoadBalancer IP:port) or an address such as
    /// "10.0.0.1:80".
    #[serde(default)]
    pub probe_target: Target,
    /// Every probe target, in the scenario's order (the first is `probe_target`). Empty in
    /// recordings made before several targets were probed: then `probe_target` alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probe_targets: Vec<Target>,
    /// Expected outcomes: (side, source pod) -> outcome.
    #[serde(default)]
    pub expectations: Vec<Expectation>,
    /// Shown plainly on screen when set (e.g. "DEMO").
    #[serde(default)]
    pub banner: Option<String>,
    /// The kube-proxy mode the scenario asks for (`cluster.proxy_mode`): a node whose rules are
    /// in the other mode is pointed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_mode: Option<ProxyMode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expectation {
    pub side: Side,
    pub source: String,
    pub outcome: Outcome,
    /// The probe target it is about; `None`: every target of the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// `ok >= RATE`: met when at least this share of the tries answered (`outcome` is then
    /// `Ok`). Without it, every try must have the outcome, and tries that disagree are Flaky.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_rate: Option<Rate>,
}

/// What a later session event that would drop or change `n` expectations is told: it does not.
pub fn later_session_note(n: usize) -> String {
    format!("{LATER_SESSION} drops or changes {n} expectation(s) set before: kept them")
}
/// How [`later_session_note`] begins.
pub const LATER_SESSION: &str = "a later session event";

impl SessionInfo {
    /// The targets probed and judged: `probe_targets`, or `probe_target` alone.
    pub fn targets(&self) -> Vec<Target> {
        if self.probe_targets.is_empty() {
            vec![self.probe_target.clone()]
        } else {
            self.probe_targets.clone()
        }
    }

    /// The expectations of this session that a `later` session event does not hold (it
    /// drops them, or changes their outcome).
    pub fn dropped_by<'a>(&'a self, later: &SessionInfo) -> Vec<&'a Expectation> {
        let held = |e: &Expectation| later.expectations.contains(e);
        self.expectations.iter().filter(|e| !held(e)).collect()
    }

    /// This session's expectations, then the `later` one's that ask about another probe (side,
    /// source, target): a later session event never drops or changes an expectation.
    pub fn keep_expectations(&self, later: &mut SessionInfo) {
        let mut all = self.expectations.clone();
        for e in later.expectations.drain(..) {
            let same =
                |x: &Expectation| x.side == e.side && x.source == e.source && x.target == e.target;
            if !all.iter().any(same) {
                all.push(e);
            }
        }
        later.expectations = all;
    }

    /// Whether `e` judges probes to `t`: it names `t`, or names no target and `t` is one of
    /// the session's.
    pub fn applies(&self, e: &Expectation, t: &Target) -> bool {
        match &e.target {
            Some(x) => x == t,
            None => self.targets().contains(t),
        }
    }
}

/// A node's kube-proxy metrics as read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricsRead {
    Read(super::metrics::ProxyMetrics),
    /// What did not answer, or what in the text was wrong (line N).
    Failed(String),
}

/// How watch mode follows one node's rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "path", rename_all = "snake_case")]
pub enum WatchPath {
    /// `nft monitor` in the node reports each change at once.
    Monitor,
    /// The rules are read again every `every_ms` milliseconds (`watch.interval`).
    Polled { every_ms: u64, why: PollReason },
    /// A cluster kindred did not create (a kubeconfig context): its API server's Service,
    /// EndpointSlice and pod events trigger a re-read of its nodes' rules.
    ApiEvents,
    /// A context node in nftables mode: `nft monitor`, run by exec in its kube-proxy pod,
    /// reports each change of its rules at once (the API server's events still count too).
    ExecMonitor,
    /// A context node in nftables mode followed by the API server's events only, since its
    /// `nft monitor` by exec does not run, for this reason.
    ApiEventsOnly { why: NoExecMonitor },
}

/// Why a context node in nftables mode has no `nft monitor` by exec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum NoExecMonitor {
    /// It could not start (exec refused, no nft, no kube-proxy pod) or it ended (the pod
    /// restarted): what happened.
    Failed { error: String },
    /// The side has more nftables nodes than monitors allowed (`read_concurrency`).
    OverCap { cap: usize },
}

/// Why a node's rules are polled instead of monitored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum PollReason {
    /// They live in iptables-legacy, which is not nf_tables: `nft monitor` cannot see them.
    Legacy,
    /// `nft monitor` could not run in the node, or ended: what it said.
    NoMonitor { error: String },
}

/// Backend -> UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Session(Box<SessionInfo>),
    Phase {
        side: Side,
        phase: Phase,
        #[serde(flatten)]
        state: PhaseState,
    },
    Output {
        side: Side,
        phase: Phase,
        line: String,
    },
    /// The node image a side runs: the commit it was built from.
    Built {
        side: Side,
        commit: String,
        image: String,
        /// The Kubernetes version the build carries ("v1.34.0-alpha.1.123+0123456789abcd").
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
        /// What was built when the ref is `worktree`: "HEAD abc123 + 3 changed files".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<String>,
    },
    /// How long the same kind of work took last time (a node-image build, a kube-proxy
    /// compile): the Build pane shows the running one against it.
    Estimate {
        side: Side,
        phase: Phase,
        seconds: u64,
    },
    /// kube-proxy was swapped: the side's cluster runs `image` now, built from `commit`.
    ProxySwapped {
        side: Side,
        image: String,
        commit: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<String>,
    },
    /// Connections held open across a change on a side, and what became of each.
    Held {
        side: Side,
        change: super::held::Change,
        conns: Vec<super::held::HeldConn>,
    },
    Node {
        side: Side,
        name: String,
        role: NodeRole,
        #[serde(default)]
        ip: Option<String>,
    },
    Pod {
        side: Side,
        pod: PodInfo,
    },
    PodRemoved {
        side: Side,
        name: String,
    },
    Service {
        side: Side,
        service: ServiceInfo,
    },
    ProbesStarted {
        side: Side,
        target: String,
    },
    Probe {
        side: Side,
        result: ProbeResult,
    },
    ProbesDone {
        side: Side,
    },
    RuleDump {
        side: Side,
        node: String,
        text: String,
        /// When it was read, in milliseconds since the backend started: the rule-change
        /// timeline's clock, the same when a recording is replayed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_ms: Option<u64>,
    },
    /// A node without kube-proxy rules (a CNI that replaces kube-proxy, or kube-proxy not
    /// running there): said plainly, never compared as every rule removed.
    NoRules {
        side: Side,
        node: String,
        why: String,
    },
    /// kube-proxy's own numbers on a node (its metrics endpoint), or why they were not read.
    ProxyMetrics {
        side: Side,
        node: String,
        read: MetricsRead,
    },
    /// How watch mode follows a node's rules now (sent when it starts and when it changes).
    Watching {
        side: Side,
        node: String,
        #[serde(flatten)]
        path: WatchPath,
    },
    Error {
        #[serde(default)]
        side: Option<Side>,
        /// The pane concerned.
        pane: Pane,
        message: String,
    },
    /// A job is over (`error` says why it did not do its work, when it did not). Every command
    /// ends with one, and the work a backend does at start with `Finished { job: Attach }`:
    /// scripts such as `check` wait for these.
    Finished {
        job: Job,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A bisect's progress and end (see [`crate::backend::bisect`]).
    Bisect(crate::backend::bisect::BisectEvent),
    /// The session was closed cleanly: the last line a recorder writes. A recording without it
    /// was cut short (a crash, a full disk) and is replayed as truncated.
    End,
    /// An event of a type this version does not know (from a later version's recording);
    /// never sent, skipped when read.
    #[serde(other, skip_serializing)]
    Unknown,
}

/// UI -> backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Build the node images of `sides` (an image for the exact source is reused). With
    /// `recreate`, a side whose cluster exists and runs another image is then recreated and
    /// deployed again, and the rules and probes are read again.
    Build {
        sides: Sides,
        recreate: bool,
    },
    /// Build kube-proxy from each side's source, load it into every node of its running cluster,
    /// point the kube-proxy DaemonSet at it and wait for the rollout; then read the rules and
    /// probe again.
    SwapProxy {
        sides: Sides,
    },
    CreateClusters,
    Deploy,
    /// Run the probes, against `target` when given (else the scenario's default). `repeat`
    /// (`R` in the dashboard) sets how many tries each probe makes, from now on in the session;
    /// `None` keeps the current count (`probes.repeat`, default 1).
    Probe {
        target: Option<Target>,
        repeat: Option<u32>,
    },
    RefreshRules,
    SetWatch(bool),
    /// Bisect the PR side between a good and a bad ref (see [`crate::backend::bisect`]).
    Bisect(Box<crate::backend::bisect::BisectRequest>),
    DeleteClusters,
    Cancel,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A watch path is a recording line like any event, and reads back the same.
    #[test]
    fn watching_events_round_trip_through_json() {
        for path in [
            WatchPath::Monitor,
            WatchPath::Polled {
                every_ms: 1000,
                why: PollReason::Legacy,
            },
            WatchPath::Polled {
                every_ms: 30_000,
                why: PollReason::NoMonitor {
                    error: "`nft monitor` ended: sh: nft: not found".into(),
                },
            },
            WatchPath::ExecMonitor,
            WatchPath::ApiEventsOnly {
                why: NoExecMonitor::Failed {
                    error: "exec in kube-system/kube-proxy-x: 403 Forbidden".into(),
                },
            },
            WatchPath::ApiEventsOnly {
                why: NoExecMonitor::OverCap { cap: 16 },
            },
        ] {
            let e = Event::Watching {
                side: Side::Pr,
                node: "77523-worker".into(),
                path,
            };
            let line = serde_json::to_string(&e).unwrap();
            assert!(line.contains(r#""type":"watching""#), "{line}");
            assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), e, "{line}");
        }
    }
}
