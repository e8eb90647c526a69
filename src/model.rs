//! The shared vocabulary of every floor above the rule engine: which side, which phase and how
//! it stands, probe outcomes, pod phases, node roles, probe targets, panes, the Service under
//! test (parsed once), node pairs, kube-proxy's mode and the kinds of work a backend does.
//! Plain data with `Display` and serde; no I/O, no async, no UI.

use std::fmt;
use std::ops::{Index, IndexMut};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::rules::ServiceFilter;

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
    /// How the screen and reports call it: "base" or "PR".
    pub fn label(self) -> &'static str {
        match self {
            Side::Base => "base",
            Side::Pr => "PR",
        }
    }
    pub fn other(self) -> Side {
        match self {
            Side::Base => Side::Pr,
            Side::Pr => Side::Base,
        }
    }
}

/// Which sides a command is for: one, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sides {
    Base,
    Pr,
    Both,
}

impl Sides {
    /// The sides, base first.
    pub fn list(self) -> &'static [Side] {
        match self {
            Sides::Base => &[Side::Base],
            Sides::Pr => &[Side::Pr],
            Sides::Both => &Side::BOTH,
        }
    }
    /// "base", "PR" or "both sides".
    pub fn label(self) -> &'static str {
        match self {
            Sides::Base => Side::Base.label(),
            Sides::Pr => Side::Pr.label(),
            Sides::Both => "both sides",
        }
    }
}

impl From<Side> for Sides {
    fn from(s: Side) -> Sides {
        match s {
            Side::Base => Sides::Base,
            Side::Pr => Sides::Pr,
        }
    }
}

/// One value per side, indexed by [`Side`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BySide<T> {
    pub base: T,
    pub pr: T,
}

impl<T> BySide<T> {
    /// Both values, base first.
    pub fn iter(&self) -> impl Iterator<Item = (Side, &T)> {
        [(Side::Base, &self.base), (Side::Pr, &self.pr)].into_iter()
    }
    pub fn all(&self, mut f: impl FnMut(&T) -> bool) -> bool {
        f(&self.base) && f(&self.pr)
    }
    pub fn any(&self, mut f: impl FnMut(&T) -> bool) -> bool {
        f(&self.base) || f(&self.pr)
    }
}

impl<T> Index<Side> for BySide<T> {
    type Output = T;
    fn index(&self, s: Side) -> &T {
        match s {
            Side::Base => &self.base,
            Side::Pr => &self.pr,
        }
    }
}

impl<T> IndexMut<Side> for BySide<T> {
    fn index_mut(&mut self, s: Side) -> &mut T {
        match s {
            Side::Base => &mut self.base,
            Side::Pr => &mut self.pr,
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
    /// A new kube-proxy built from the side's source, swapped into its running cluster.
    Swap,
}

impl Phase {
    pub const ALL: [Phase; 4] = [Phase::Build, Phase::Create, Phase::Deploy, Phase::Swap];
    pub fn title(self) -> &'static str {
        match self {
            Phase::Build => "image build",
            Phase::Create => "cluster create",
            Phase::Deploy => "deploy",
            Phase::Swap => "kube-proxy swap",
        }
    }
}

/// How a phase stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum PhaseState {
    Pending,
    Running,
    Done,
    Skipped { reason: String },
    Failed { reason: String },
}

/// The wording every front end uses: "running", "done", "skipped (reason)", "failed: reason";
/// "reset" for a phase set back to pending.
impl fmt::Display for PhaseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PhaseState::Pending => f.write_str("reset"),
            PhaseState::Running => f.write_str("running"),
            PhaseState::Done => f.write_str("done"),
            PhaseState::Skipped { reason } => write!(f, "skipped ({reason})"),
            PhaseState::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

/// How one probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Fail,
    Timeout,
    /// Repeated tries that disagree: some answered, some did not (never a pass, never an
    /// expectation).
    Flaky,
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
            Outcome::Flaky => "FLAKY",
        }
    }
}

/// A share of tries, from 0 to 1 (an expectation `ok >= 0.99`). Compared exactly; its JSON is
/// the number.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rate(pub f64);

impl Eq for Rate {}

/// How many times slower the PR side may be than the base before it is flagged (its p99 over
/// the base's: `probes.latency_factor`, `--latency-factor`); 2 unless set. Compared exactly.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Factor(pub f64);

impl Eq for Factor {}

impl Default for Factor {
    fn default() -> Self {
        Factor(2.0)
    }
}

impl fmt::Display for Factor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A pod's phase as the API server reports it, plus `Terminating` (a deletion timestamp).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Terminating,
    #[serde(other)]
    Unknown,
}

impl PodPhase {
    /// The API server's word for it ("Running", ...); anything else is `Unknown`.
    pub fn from_api(s: &str) -> PodPhase {
        match s {
            "Pending" => PodPhase::Pending,
            "Running" => PodPhase::Running,
            "Succeeded" => PodPhase::Succeeded,
            "Failed" => PodPhase::Failed,
            _ => PodPhase::Unknown,
        }
    }
}

impl fmt::Display for PodPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PodPhase::Pending => "Pending",
            PodPhase::Running => "Running",
            PodPhase::Succeeded => "Succeeded",
            PodPhase::Failed => "Failed",
            PodPhase::Terminating => "Terminating",
            PodPhase::Unknown => "Unknown",
        })
    }
}

/// A kind node's role, from kind's `io.x-k8s.kind.role` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeRole {
    ControlPlane,
    Worker,
    ExternalLoadBalancer,
    #[serde(other)]
    Unknown,
}

impl NodeRole {
    /// kind's label value ("control-plane", "worker", ...).
    pub fn from_label(s: &str) -> NodeRole {
        match s {
            "control-plane" => NodeRole::ControlPlane,
            "worker" => NodeRole::Worker,
            "external-load-balancer" => NodeRole::ExternalLoadBalancer,
            _ => NodeRole::Unknown,
        }
    }
}

impl fmt::Display for NodeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeRole::ControlPlane => "control-plane",
            NodeRole::Worker => "worker",
            NodeRole::ExternalLoadBalancer => "external-load-balancer",
            NodeRole::Unknown => "unknown",
        })
    }
}

/// Where probes go: the Service's LoadBalancer IP and port (`lb`), or an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Target {
    #[default]
    Lb,
    /// `HOST:PORT` or a URL.
    Addr(String),
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Target, String> {
        let s = s.trim();
        if s == "lb" {
            Ok(Target::Lb)
        } else if s.is_empty() || s.contains(char::is_whitespace) || s.chars().any(char::is_control)
        {
            Err(format!(
                "'{}' is not a probe target: expected lb, HOST:PORT or a URL",
                s.escape_debug()
            ))
        } else {
            Ok(Target::Addr(s.to_string()))
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Lb => f.write_str("lb"),
            Target::Addr(a) => f.write_str(a),
        }
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Target, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The dashboard's panes; also where a backend error belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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
        match self {
            Pane::Build => 0,
            Pane::Pods => 1,
            Pane::Probes => 2,
            Pane::Diff => 3,
        }
    }
}

impl fmt::Display for Pane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pane::Build => "build",
            Pane::Pods => "pods",
            Pane::Probes => "probes",
            Pane::Diff => "diff",
        })
    }
}

/// The Service under test, parsed once: `NS/NAME` (every port), `NS/NAME:` (the unnamed port)
/// or `NS/NAME:PORT`. Written and read as that text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    text: String,
    filter: ServiceFilter,
}

impl ServiceRef {
    pub fn filter(&self) -> &ServiceFilter {
        &self.filter
    }
    /// `NS/NAME`: what every rule of the Service mentions.
    pub fn qualified_name(&self) -> String {
        format!("{}/{}", self.filter.namespace, self.filter.name)
    }
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for ServiceRef {
    type Err = String;
    fn from_str(s: &str) -> Result<ServiceRef, String> {
        Ok(ServiceRef {
            filter: ServiceFilter::parse(s)?,
            text: s.to_string(),
        })
    }
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for ServiceRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for ServiceRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ServiceRef, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A node of the base cluster and the node of the PR cluster in the same role ("worker").
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct NodePair {
    /// The node's name without its cluster's: "worker", "control-plane".
    pub role: String,
    pub base: String,
    pub pr: String,
}

/// How kube-proxy programs a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    Iptables,
    Nftables,
}

impl fmt::Display for ProxyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyMode::Iptables => "iptables",
            ProxyMode::Nftables => "nftables",
        })
    }
}

/// How a context side's rules may be read (the scenario's `read:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadVia {
    /// Exec into the node's kube-proxy pod only.
    #[default]
    Exec,
    /// A short-lived debug pod on the node only (host network, NET_ADMIN+NET_RAW).
    Debug,
    /// Exec, and a debug pod where exec is refused or there is no kube-proxy pod.
    ExecOrDebug,
}

/// The kinds of work a backend does, one per command (and `Attach`: finding what exists at
/// start). A backend says when one is over with `Event::Finished`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Job {
    Attach,
    Build,
    Create,
    Deploy,
    Probes,
    Rules,
    Watch,
    Delete,
    /// Swapping kube-proxy into running clusters.
    Swap,
    /// Bisecting a range of commits on the PR side (`kindred bisect`).
    Bisect,
}

/// A duration as steps report it: "0.4s", "12.3s", "2m05s".
pub fn seconds(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        let s = d.as_secs();
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// A node's or pod's name without its cluster's name, the one way every pane and report does
/// it: "master-worker" on cluster "master" is "worker"; in "netshoot-master-worker" the
/// cluster's name becomes `mark` ("netshoot-*-worker"), or goes ("netshoot-worker") when `mark`
/// is empty.
pub fn without_cluster(name: &str, cluster: &str, mark: &str) -> String {
    if cluster.is_empty() {
        return name.to_string();
    }
    if let Some(rest) = name.strip_prefix(cluster).and_then(|r| r.strip_prefix('-')) {
        return rest.to_string();
    }
    let infix = format!("-{cluster}-");
    if mark.is_empty() {
        name.replacen(&infix, "-", 1)
    } else {
        name.replacen(&infix, &format!("-{mark}-"), 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_without_their_cluster() {
        assert_eq!(without_cluster("master-worker2", "master", ""), "worker2");
        assert_eq!(
            without_cluster("netshoot-77523-worker", "77523", "*"),
            "netshoot-*-worker"
        );
        assert_eq!(
            without_cluster("netshoot-77523-worker", "77523", ""),
            "netshoot-worker"
        );
        assert_eq!(without_cluster("echo-abc", "master", "*"), "echo-abc");
        assert_eq!(without_cluster("x", "", "*"), "x");
    }

    #[test]
    fn typed_words_round_trip() {
        let t: Target = "lb".parse().unwrap();
        assert_eq!(t, Target::Lb);
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"lb\"");
        let a: Target = serde_json::from_str("\"10.0.0.1:80\"").unwrap();
        assert_eq!(a, Target::Addr("10.0.0.1:80".into()));
        assert!("a b".parse::<Target>().is_err());
        let s: ServiceRef = serde_json::from_str("\"default/echo:\"").unwrap();
        assert_eq!(s.filter().port.as_deref(), Some(""));
        assert_eq!(s.qualified_name(), "default/echo");
        assert!(serde_json::from_str::<ServiceRef>("\"echo\"").is_err());
        let p: PodPhase = serde_json::from_str("\"CrashLoop\"").unwrap();
        assert_eq!(p, PodPhase::Unknown);
        assert_eq!(
            serde_json::from_str::<NodeRole>("\"control-plane\"").unwrap(),
            NodeRole::ControlPlane
        );
        assert_eq!(
            PhaseState::Failed {
                reason: "exit 1".into()
            }
            .to_string(),
            "failed: exit 1"
        );
        let mut b = BySide { base: 1, pr: 2 };
        b[Side::Pr] += 1;
        assert_eq!(b.pr, 3);
    }
}
