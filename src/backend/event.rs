//! The typed messages between the dashboard and a backend. Events are also the records of a
//! session recording (see [`super::recording`]), so they are serializable and stable: fields are
//! only ever added, with defaults.

use serde::{Deserialize, Serialize};

/// Which cluster: the base build (left) or the PR build (right).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Base,
    Pr,
}

impl Side {
    pub const BOTH: [Side; 2] = [Side::Base, Side::Pr];
    pub fn index(self) -> usize {
        match self {
            Side::Base => 0,
            Side::Pr => 1,
        }
    }
}

/// The pipeline phases shown in the Build pane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Build,
    Create,
    Deploy,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Build, Phase::Create, Phase::Deploy];
    pub fn title(self) -> &'static str {
        match self {
            Phase::Build => "image build",
            Phase::Create => "cluster create",
            Phase::Deploy => "deploy",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum PhaseState {
    Pending,
    Running,
    Done,
    Skipped { reason: String },
    Failed { reason: String },
}

/// A pod of the test workload as the Pods pane shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInfo {
    pub name: String,
    pub node: String,
    pub host_network: bool,
    #[serde(default)]
    pub ip: Option<String>,
    pub phase: String,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Fail,
    Timeout,
}

impl Outcome {
    /// Whether a result meets this expectation: an expected failure is met by a timeout too
    /// (dropped packets make curl time out).
    pub fn met_by(self, got: Outcome) -> bool {
        self == got || (self == Outcome::Fail && got == Outcome::Timeout)
    }

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "OK",
            Outcome::Fail => "FAIL",
            Outcome::Timeout => "timeout",
        }
    }
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
}

/// What a session is about: written first in a recording and sent first by every backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub base: SideInfo,
    pub pr: SideInfo,
    /// The service whose rules are compared, "ns/name" (all ports) or "ns/name:port".
    pub service: String,
    /// Default probe target, e.g. "lb" (the LoadBalancer IP:port) or "10.0.0.1:80".
    #[serde(default = "default_target")]
    pub probe_target: String,
    /// Expected outcomes: (side, source pod) -> outcome.
    #[serde(default)]
    pub expectations: Vec<Expectation>,
    /// Shown plainly on screen when set (e.g. "DEMO").
    #[serde(default)]
    pub banner: Option<String>,
}

fn default_target() -> String {
    "lb".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expectation {
    pub side: Side,
    pub source: String,
    pub outcome: Outcome,
}

/// Backend -> UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Session(SessionInfo),
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
    },
    Node {
        side: Side,
        name: String,
        role: String,
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
    },
    Error {
        #[serde(default)]
        side: Option<Side>,
        /// The pane concerned: "build", "pods", "probes" or "diff".
        pane: String,
        message: String,
    },
}

/// UI -> backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Build,
    CreateClusters,
    Deploy,
    /// Run the probes, against `target` when given (else the scenario's default).
    Probe {
        target: Option<String>,
    },
    RefreshRules,
    SetWatch(bool),
    DeleteClusters,
    Cancel,
}
