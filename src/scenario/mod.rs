//! The scenario file (YAML): the two sides, the clusters, the LoadBalancer provider, workloads,
//! probes, the Service to diff and expected outcomes. Errors name the file, line and field.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{Factor, Outcome, ProxyMode, Rate, ReadVia, ServiceRef, Side, Target};

/// The built-in default: kubernetes issue 131765 / PR 132456 in nftables mode, the modern
/// analogue of the 2019 walkthrough. `kindred init` writes it.
pub const DEFAULT: &str = include_str!("../../assets/scenario.yaml");
/// The 2019 walkthrough (PR 77523, iptables), which needs 2019-era kind and hosts.
pub const WALKTHROUGH_2019: &str = include_str!("../../assets/scenario-2019.yaml");
/// A side's ref that means "where the other side's PR branched from the default branch".
pub const MERGE_BASE: &str = "merge-base";
/// A side's ref that means "the source checkout as it is now": uncommitted and untracked
/// (not ignored) files included, snapshotted without touching the checkout.
pub const WORKTREE: &str = "worktree";
/// The built-in workloads, with `{{cluster}}` for the cluster name.
pub const WORKLOADS: &str = include_str!("../../assets/workloads.yaml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub service: ServiceRef,
    pub base: SideSpec,
    pub pr: SideSpec,
    #[serde(default)]
    pub cluster: ClusterSpec,
    #[serde(default)]
    pub build: BuildSpec,
    #[serde(default)]
    pub load_balancer: LoadBalancer,
    #[serde(default = "builtin")]
    pub workloads: String,
    #[serde(default)]
    pub probes: Probes,
    #[serde(default)]
    pub watch: WatchSpec,
    #[serde(default)]
    pub expect: Vec<Expect>,
    /// Nodes of a context side read at once (also accepted under `cluster:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    read_concurrency: Option<usize>,
    /// Seconds one node's read may take on a context side (also accepted under `cluster:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    read_timeout: Option<f64>,
    /// Where the file was read from (not in the file).
    #[serde(skip)]
    pub path: Option<PathBuf>,
    /// The file's text, for errors found after parsing (see [`Scenario::field_error`]).
    #[serde(skip)]
    text: Option<std::sync::Arc<str>>,
}

fn builtin() -> String {
    "builtin".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SideSpec {
    pub name: String,
    /// A kind side's Kubernetes checkout, ref and node image (empty on a context side).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(default, rename = "ref", skip_serializing_if = "String::is_empty")]
    pub git_ref: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    /// The git remote `pr/N` is fetched from and whose default branch `merge-base` uses; without
    /// it, the remote whose URL is kubernetes/kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteName>,
    /// An existing cluster named by a kubeconfig context instead of a kind cluster kindred
    /// builds and creates (see [`Scenario::context`] for the typed view of these fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The kubeconfig holding `context`, relative to the scenario file (default: KUBECONFIG or
    /// ~/.kube/config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    /// kindred's namespace in that cluster (default `kindred`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Whether kindred deploys its test workloads there (default: it only reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<bool>,
    /// How its nodes' rules may be read (default `exec`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<ReadVia>,
    /// The debug pod's image, when `read` allows debug pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_image: Option<String>,
}

/// A side that is an existing cluster named by a kubeconfig context: kindred never builds,
/// creates, recreates, swaps or deletes it, and only reads it unless `deploy` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextSide {
    pub context: String,
    /// Resolved against the scenario file's directory.
    pub kubeconfig: Option<PathBuf>,
    pub namespace: String,
    pub deploy: bool,
    pub read: ReadVia,
    pub debug_image: Option<String>,
}

/// kindred's namespace in a context side unless the scenario names another.
pub const CONTEXT_NAMESPACE: &str = "kindred";

/// The fields of a kind side, and those of a context side (`context:` and what goes with it).
const KIND_FIELDS: [&str; 4] = ["source", "ref", "image", "remote"];
const CONTEXT_FIELDS: [&str; 5] = ["kubeconfig", "namespace", "deploy", "read", "debug_image"];

/// Nodes of a context side read at once unless the scenario says (`read_concurrency`).
pub const READ_CONCURRENCY: usize = 16;

/// A git remote's name (`upstream`), as a side's `remote:` gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RemoteName(String);

impl RemoteName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether git could have a remote of this name (its config key and the refs under
    /// `refs/remotes/NAME/` are well formed); the reason when not.
    fn check(&self) -> Result<(), String> {
        let n = &self.0;
        let bad = n.is_empty()
            || n.len() > 100
            || n.starts_with(['-', '.', '/'])
            || n.ends_with(['/', '.'])
            || n.ends_with(".lock")
            || n.contains("..")
            || n.contains("//")
            || n.contains("@{")
            || n.chars()
                .any(|c| c.is_whitespace() || c.is_control() || ":?*[\\^~".contains(c));
        if bad {
            return Err(format!(
                "'{}' is not a git remote name (e.g. upstream)",
                n.escape_debug()
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for RemoteName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    #[serde(default = "two")]
    pub workers: u8,
    #[serde(default = "iptables")]
    pub proxy_mode: ProxyMode,
    /// See [`Scenario::read_concurrency`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    read_concurrency: Option<usize>,
    /// See [`Scenario::read_timeout`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    read_timeout: Option<f64>,
}

fn two() -> u8 {
    2
}
fn iptables() -> ProxyMode {
    ProxyMode::Iptables
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            workers: 2,
            proxy_mode: ProxyMode::Iptables,
            read_concurrency: None,
            read_timeout: None,
        }
    }
}

/// Watch mode (`w`): rules are re-read when they change (`nft monitor` in nodes whose rules live
/// in nf_tables, the API server's pod, Service and endpoint events) and every `interval` seconds
/// where no event source exists; probes run every `probe_interval` seconds, never overlapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchSpec {
    #[serde(default = "one")]
    pub interval: f64,
    #[serde(default = "five")]
    pub probe_interval: f64,
}

fn one() -> f64 {
    1.0
}
fn five() -> f64 {
    5.0
}

impl Default for WatchSpec {
    fn default() -> Self {
        WatchSpec {
            interval: one(),
            probe_interval: five(),
        }
    }
}

/// How node images are built, and kube-proxy swapped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSpec {
    /// Both sides at once (default: one after the other).
    #[serde(default)]
    pub parallel: bool,
    /// Seconds a kube-proxy swap waits for its rollout before setting the DaemonSet back.
    #[serde(default = "rollout_timeout")]
    pub rollout_timeout: f64,
}

fn rollout_timeout() -> f64 {
    180.0
}

impl Default for BuildSpec {
    fn default() -> Self {
        BuildSpec {
            parallel: false,
            rollout_timeout: rollout_timeout(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancer {
    #[serde(default = "metallb")]
    pub provider: String,
    #[serde(default)]
    pub manifest: Option<String>,
    #[serde(default = "kind_network")]
    pub network: String,
}

fn metallb() -> String {
    "metallb".into()
}
fn kind_network() -> String {
    "kind".into()
}

impl Default for LoadBalancer {
    fn default() -> Self {
        LoadBalancer {
            provider: metallb(),
            manifest: None,
            network: kind_network(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probes {
    #[serde(default = "lb")]
    pub targets: Vec<Target>,
    /// The container curl runs in.
    #[serde(default = "netshoot")]
    pub container: String,
    #[serde(default = "connect")]
    pub connect_timeout: f64,
    #[serde(default = "total")]
    pub timeout: f64,
    /// Seconds each side waits, before its probes, for the Service to be ready: a LoadBalancer
    /// IP, a ready endpoint, and kube-proxy's rules for that IP on every node.
    #[serde(default = "ready_timeout")]
    pub ready_timeout: f64,
    /// Tries per probe (1 to 1000): each a new connection, so they spread over the endpoints.
    #[serde(default = "one_try")]
    pub repeat: u32,
    /// The path asked of a target given as `host:port` (a target given as a URL keeps its
    /// own): agnhost netexec answers its pod name at `/hostname`.
    #[serde(default = "hostname_path")]
    pub path: String,
    /// How many times the base's p99 the PR side's may be before it is flagged (above 1).
    #[serde(default)]
    pub latency_factor: Factor,
}

fn one_try() -> u32 {
    1
}
fn hostname_path() -> String {
    "/hostname".into()
}

fn netshoot() -> String {
    "netshoot".into()
}
fn lb() -> Vec<Target> {
    vec![Target::Lb]
}
fn connect() -> f64 {
    2.0
}
fn total() -> f64 {
    5.0
}
fn ready_timeout() -> f64 {
    120.0
}

impl Probes {
    /// The tries, path and latency factor in range.
    fn check(&self) -> Result<(), (&'static str, String)> {
        if !(1..=1000).contains(&self.repeat) {
            return Err((
                "repeat",
                format!("{}: tries per probe, 1 to 1000", self.repeat),
            ));
        }
        let p = &self.path;
        if !p.starts_with('/') || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err((
                "path",
                format!("'{p}': a URL path starting with /, no spaces"),
            ));
        }
        let f = self.latency_factor.0;
        if !(f > 1.0 && f.is_finite()) {
            return Err(("latency_factor", format!("{f}: a factor above 1")));
        }
        Ok(())
    }
}

impl Default for Probes {
    fn default() -> Self {
        Probes {
            targets: lb(),
            container: netshoot(),
            connect_timeout: 2.0,
            timeout: 5.0,
            ready_timeout: ready_timeout(),
            repeat: one_try(),
            path: hostname_path(),
            latency_factor: Factor::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub side: Side,
    pub source: String,
    pub outcome: Expected,
    /// One of `probes.targets`; without it the expectation holds for every target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
}

/// An expected outcome as a scenario writes it: `ok`, `fail`, `timeout`, or `ok >= RATE`
/// (0 < RATE <= 1: at least that share of a probe's tries answered). Never `flaky`: tries
/// that disagree are what an expectation is judged against, not something to expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub outcome: Outcome,
    pub min_rate: Option<Rate>,
}

impl Expected {
    /// All tries have `outcome`.
    pub fn all(outcome: Outcome) -> Expected {
        Expected {
            outcome,
            min_rate: None,
        }
    }
}

impl std::str::FromStr for Expected {
    type Err = String;
    fn from_str(s: &str) -> Result<Expected, String> {
        const WANT: &str = "expected ok, fail, timeout or ok >= RATE (0 < RATE <= 1)";
        let t = s.trim();
        let outcome = match t {
            "ok" => Outcome::Ok,
            "fail" => Outcome::Fail,
            "timeout" => Outcome::Timeout,
            "flaky" => {
                return Err(format!(
                    "'flaky' is not an expectation (tries that disagree are judged FLAKY); {WANT}"
                ));
            }
            _ => {
                let rate = t
                    .strip_prefix("ok")
                    .map(str::trim_start)
                    .and_then(|r| r.strip_prefix(">="))
                    .ok_or_else(|| format!("'{t}': {WANT}"))?;
                let r: f64 = rate
                    .trim()
                    .parse()
                    .map_err(|_| format!("'{t}': the rate is not a number; {WANT}"))?;
                if !(r > 0.0 && r <= 1.0) {
                    return Err(format!("'{t}': the rate must be above 0 and at most 1"));
                }
                return Ok(Expected {
                    outcome: Outcome::Ok,
                    min_rate: Some(Rate(r)),
                });
            }
        };
        Ok(Expected::all(outcome))
    }
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.min_rate {
            Some(r) => write!(f, "ok >= {r}"),
            None => f.write_str(&self.outcome.label().to_lowercase()),
        }
    }
}

impl Serialize for Expected {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Expected {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Expected, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A scenario that cannot be used: file, line, field and reason.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {field}{reason}")]
pub struct ScenarioError {
    pub file: String,
    pub line: usize,
    /// "field: " or "".
    pub field: String,
    pub reason: String,
}

/// The line where a dotted path ("pr.name") is written, found by indentation.
fn line_of(text: &str, path: &[&str]) -> usize {
    let mut want = 0;
    let mut indent: Option<usize> = None;
    let mut found = 0;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim_start();
        if t.starts_with('#') || t.is_empty() {
            continue;
        }
        let ind = l.len() - t.len();
        if let Some(pi) = indent
            && ind <= pi
            && want < path.len()
        {
            // Left the parent's block without finding the key.
            if want > 0 {
                break;
            }
        }
        let key = path[want];
        if t.starts_with(&format!("{key}:")) && indent.is_none_or(|pi| ind > pi) {
            found = i + 1;
            want += 1;
            indent = Some(ind);
            if want == path.len() {
                return found;
            }
        }
    }
    found.max(1)
}

/// The dotted path of the key written on `line` (1-based), from indentation: "cluster.workers".
fn path_at(text: &str, line: usize) -> Vec<&str> {
    let mut stack: Vec<(usize, &str)> = Vec::new();
    for l in text.lines().take(line) {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let indent = l.len() - t.len();
        let t = t.strip_prefix("- ").unwrap_or(t);
        let Some((key, _)) = t.split_once(':') else {
            continue;
        };
        if key.is_empty() || key.contains([' ', '{', '[', '"']) {
            continue;
        }
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        stack.push((indent, key));
    }
    stack.into_iter().map(|(_, k)| k).collect()
}

/// The line of the `index`th item ("- ...") of the top-level list `key`; the key's line when
/// there are fewer items.
fn item_line(text: &str, key: &str, index: usize) -> usize {
    let start = line_of(text, &[key]);
    text.lines()
        .enumerate()
        .skip(start)
        .take_while(|(_, l)| l.is_empty() || l.starts_with([' ', '-', '#']))
        .filter(|(_, l)| l.trim_start().starts_with("- "))
        .nth(index)
        .map_or(start, |(i, _)| i + 1)
}

/// A scenario file larger than this is refused before it is parsed.
pub const MAX_BYTES: usize = 1 << 20;

/// Deserialize YAML with budgets (depth, nodes, size): hostile input is refused quickly, never
/// parsed for long. Errors are (line, reason).
pub fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, (usize, String)> {
    if text.len() > MAX_BYTES {
        return Err((1, format!("{} bytes: larger than {MAX_BYTES}", text.len())));
    }
    serde_saphyr::from_str_with_options(text, options(32, 100_000)).map_err(located)
}

/// YAML budgets: nesting depth and nodes (a scenario is small and flat; a manifest with CRD
/// schemas nests deeper), few aliases and anchors, no snippets in messages.
pub fn options(max_depth: usize, max_nodes: usize) -> serde_saphyr::Options {
    let mut b = serde_saphyr::Budget::default();
    b.max_depth = max_depth;
    b.max_nodes = max_nodes;
    b.max_aliases = 100;
    b.max_anchors = 100;
    let mut o = serde_saphyr::Options::default();
    o.budget = Some(b);
    o.with_snippet = false;
    o
}

/// A YAML error as (line, reason without its own location suffix).
pub fn located(e: serde_saphyr::Error) -> (usize, String) {
    let line = e.location().map_or(1, |l| l.line() as usize).max(1);
    let msg = e.to_string();
    let msg = match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    };
    (line, msg.trim().to_string())
}

/// A side's fields that must hold: (field, reason) when one does not.
fn check_side(side: &SideSpec) -> Result<(), (&'static str, String)> {
    let ok_name = !side.name.is_empty()
        && side.name.len() <= 50
        && side
            .name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        && !side.name.starts_with('-');
    if !ok_name {
        return Err((
            "name",
            format!(
                "'{}' is not a valid kind cluster name (lowercase letters, digits, '-', '.')",
                side.name
            ),
        ));
    }
    match &side.context {
        Some(c) => check_context_side(side, c),
        None => check_kind_side(side),
    }
}

/// The fields of `side` that are written (non-empty), among `fields`.
fn written(side: &SideSpec, fields: &[&'static str]) -> Option<&'static str> {
    fields.iter().copied().find(|f| match *f {
        "source" => !side.source.is_empty(),
        "ref" => !side.git_ref.is_empty(),
        "image" => !side.image.is_empty(),
        "remote" => side.remote.is_some(),
        "kubeconfig" => side.kubeconfig.is_some(),
        "namespace" => side.namespace.is_some(),
        "deploy" => side.deploy.is_some(),
        "read" => side.read.is_some(),
        "debug_image" => side.debug_image.is_some(),
        _ => false,
    })
}

/// A kind side: source, ref and image, none of a context side's fields.
fn check_kind_side(side: &SideSpec) -> Result<(), (&'static str, String)> {
    if let Some(f) = written(side, &CONTEXT_FIELDS) {
        return Err((
            f,
            "only a side with context: (an existing cluster) has it; this side is a kind \
             cluster kindred builds"
                .into(),
        ));
    }
    for (f, v) in [
        ("source", &side.source),
        ("ref", &side.git_ref),
        ("image", &side.image),
    ] {
        if v.is_empty() {
            return Err((
                f,
                "missing: a kind side needs source, ref and image (or context: NAME for an \
                 existing cluster)"
                    .into(),
            ));
        }
    }
    if side.image.contains(char::is_whitespace) {
        return Err(("image", format!("'{}' is not an image tag", side.image)));
    }
    if side.git_ref.starts_with('-') {
        return Err(("ref", format!("'{}' is not a git ref", side.git_ref)));
    }
    if let Some(n) = side.git_ref.strip_prefix("pr/")
        && (n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()))
    {
        return Err(("ref", format!("'{}': expected pr/NUMBER", side.git_ref)));
    }
    if let Some(r) = &side.remote {
        r.check().map_err(|reason| ("remote", reason))?;
    }
    Ok(())
}

/// A context side: a context name, none of a kind side's fields, and its own fields well formed.
fn check_context_side(side: &SideSpec, context: &str) -> Result<(), (&'static str, String)> {
    let shown = context.escape_debug();
    if let Some(f) = written(side, &KIND_FIELDS) {
        return Err((
            f,
            format!(
                "this side is the existing cluster of context '{shown}': kindred never builds \
                 it, so it has no source, ref, image or remote (remove {f}, or context: for a \
                 kind side)"
            ),
        ));
    }
    if context.is_empty() || context.len() > 253 || context.chars().any(char::is_control) {
        return Err((
            "context",
            format!("'{shown}' is not a kubeconfig context name"),
        ));
    }
    if side.kubeconfig.as_deref().is_some_and(str::is_empty) {
        return Err(("kubeconfig", "empty: a kubeconfig file's path".into()));
    }
    if let Some(ns) = &side.namespace
        && !is_dns_label(ns)
    {
        return Err((
            "namespace",
            format!(
                "'{}' is not a namespace name (lowercase letters, digits and '-', at most 63)",
                ns.escape_debug()
            ),
        ));
    }
    if let Some(i) = &side.debug_image {
        if i.is_empty() || i.contains(char::is_whitespace) || i.chars().any(char::is_control) {
            return Err((
                "debug_image",
                format!("'{}' is not an image", i.escape_debug()),
            ));
        }
        if side.read.unwrap_or_default() == ReadVia::Exec {
            return Err((
                "debug_image",
                "read: exec runs no debug pod: give read: debug or exec-or-debug, or remove \
                 debug_image"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// A DNS-1123 label: what a namespace's name must be.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl Scenario {
    /// Parse and check a scenario; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
        let mut s: Scenario = yaml(text).map_err(|(line, reason)| {
            let path = path_at(text, line);
            ScenarioError {
                file: file.into(),
                line,
                field: if path.is_empty() {
                    String::new()
                } else {
                    format!("{}: ", path.join("."))
                },
                reason,
            }
        })?;
        let err = |path: &[&str], reason: String| ScenarioError {
            file: file.into(),
            line: line_of(text, path),
            field: format!("{}: ", path.join(".")),
            reason,
        };
        for (key, side) in [("base", &s.base), ("pr", &s.pr)] {
            check_side(side).map_err(|(field, reason)| err(&[key, field], reason))?;
        }
        if s.base.git_ref == MERGE_BASE && s.pr.git_ref == MERGE_BASE {
            return Err(err(
                &["pr", "ref"],
                "both sides are merge-base: one side must name the PR the other is the base of"
                    .into(),
            ));
        }
        if s.base.name == s.pr.name {
            return Err(err(
                &["pr", "name"],
                format!(
                    "both sides are named '{}': the clusters need two names",
                    s.pr.name
                ),
            ));
        }
        s.check_contexts()
            .map_err(|(path, reason)| err(&path, reason))?;
        if s.cluster.workers == 0 || s.cluster.workers > 10 {
            return Err(err(
                &["cluster", "workers"],
                format!("{} workers: expected 1 to 10", s.cluster.workers),
            ));
        }
        if s.workloads == "builtin" && s.cluster.workers < 2 {
            return Err(err(
                &["cluster", "workers"],
                format!(
                    "{} worker: the built-in workloads pin pods to worker and worker2, so they need at least 2",
                    s.cluster.workers
                ),
            ));
        }
        if s.load_balancer.provider != "metallb" {
            return Err(err(
                &["load_balancer", "provider"],
                format!(
                    "'{}' is not supported (supported: metallb)",
                    s.load_balancer.provider
                ),
            ));
        }
        if !(s.probes.connect_timeout > 0.0 && s.probes.timeout >= s.probes.connect_timeout) {
            return Err(err(
                &["probes", "timeout"],
                "timeouts must be positive, and timeout at least connect_timeout".into(),
            ));
        }
        if s.probes.targets.is_empty() {
            return Err(err(&["probes", "targets"], "at least one target".into()));
        }
        s.probes
            .check()
            .map_err(|(field, reason)| err(&["probes", field], reason))?;
        for (i, e) in s.expect.iter().enumerate() {
            if let Some(t) = e.target.as_ref().filter(|t| !s.probes.targets.contains(t)) {
                let list: Vec<String> = s.probes.targets.iter().map(|t| t.to_string()).collect();
                return Err(ScenarioError {
                    file: file.into(),
                    line: item_line(text, "expect", i),
                    field: format!("expect[{i}].target: "),
                    reason: format!("'{t}' is not one of probes.targets ({})", list.join(", ")),
                });
            }
        }
        for (field, v) in [
            ("interval", s.watch.interval),
            ("probe_interval", s.watch.probe_interval),
        ] {
            if !(0.1..=3600.0).contains(&v) {
                return Err(err(
                    &["watch", field],
                    format!("{v}: seconds, from 0.1 to 3600"),
                ));
            }
        }
        for (path, r) in [
            (["build", "rollout_timeout"], s.build.rollout_timeout),
            (["probes", "ready_timeout"], s.probes.ready_timeout),
        ] {
            if !(r > 0.0 && r <= 86400.0) {
                return Err(err(
                    &path,
                    format!("{r}: seconds, more than 0 and at most a day"),
                ));
            }
        }
        s.path = Some(PathBuf::from(file));
        s.text = Some(text.into());
        Ok(s)
    }

    /// What context sides need of the rest of the scenario: a `merge-base` side needs the other
    /// side's PR ref (a context side has none); workloads kindred deploys into an existing
    /// cluster cannot be the built-in ones (they pin pods to kind's node names); the read
    /// limits are given once and in range.
    fn check_contexts(&self) -> Result<(), (Vec<&'static str>, String)> {
        for (key, side) in [("base", Side::Base), ("pr", Side::Pr)] {
            let other = self.side(side.other());
            if self.side(side).git_ref == MERGE_BASE && other.context.is_some() {
                let reason = "merge-base needs the other side's PR ref, and the other side is \
                              an existing cluster (context:): name a ref"
                    .into();
                return Err((vec![key, "ref"], reason));
            }
            if self.side(side).deploy == Some(true) && self.workloads == "builtin" {
                let reason = "the built-in workloads pin pods to kind's node names: give \
                              workloads: FILE for an existing cluster, or deploy: false"
                    .into();
                return Err((vec![key, "deploy"], reason));
            }
        }
        let both = |top: bool, under: bool, f: &'static str| {
            (top && under).then(|| {
                (
                    vec!["cluster", f],
                    format!("{f} is given at the top level too: once"),
                )
            })
        };
        if let Some(e) = both(
            self.read_concurrency.is_some(),
            self.cluster.read_concurrency.is_some(),
            "read_concurrency",
        )
        .or(both(
            self.read_timeout.is_some(),
            self.cluster.read_timeout.is_some(),
            "read_timeout",
        )) {
            return Err(e);
        }
        let at = |f: &'static str, under: bool| {
            if under { vec!["cluster", f] } else { vec![f] }
        };
        if let Some(n) = self.read_concurrency.or(self.cluster.read_concurrency)
            && !(1..=1024).contains(&n)
        {
            let under = self.cluster.read_concurrency.is_some();
            return Err((
                at("read_concurrency", under),
                format!("{n}: nodes read at once, from 1 to 1024"),
            ));
        }
        if let Some(t) = self.read_timeout.or(self.cluster.read_timeout)
            && !(t > 0.0 && t <= 3600.0)
        {
            let under = self.cluster.read_timeout.is_some();
            return Err((
                at("read_timeout", under),
                format!("{t}: seconds, more than 0 and at most 3600"),
            ));
        }
        Ok(())
    }

    /// A side that is an existing cluster (`context:`), its fields typed and defaulted.
    pub fn context(&self, side: Side) -> Option<ContextSide> {
        let s = self.side(side);
        Some(ContextSide {
            context: s.context.clone()?,
            kubeconfig: s.kubeconfig.as_deref().map(|p| self.resolve(p)),
            namespace: s
                .namespace
                .clone()
                .unwrap_or_else(|| CONTEXT_NAMESPACE.into()),
            deploy: s.deploy.unwrap_or(false),
            read: s.read.unwrap_or_default(),
            debug_image: s.debug_image.clone(),
        })
    }

    /// Whether `side` is an existing cluster kindred only reads or deploys into.
    pub fn is_context(&self, side: Side) -> bool {
        self.side(side).context.is_some()
    }

    /// Nodes of a context side read at once (`read_concurrency`, default 16).
    pub fn read_concurrency(&self) -> usize {
        self.read_concurrency
            .or(self.cluster.read_concurrency)
            .unwrap_or(READ_CONCURRENCY)
    }

    /// How long one node's read may take on a context side (`read_timeout`), when the scenario
    /// says.
    pub fn read_timeout(&self) -> Option<std::time::Duration> {
        self.read_timeout
            .or(self.cluster.read_timeout)
            .map(std::time::Duration::from_secs_f64)
    }

    /// An error about a field found after parsing (a `source` that is not a checkout's top
    /// level), at the line where the file writes it: `kindred.yaml:7: pr.source: reason`.
    pub fn field_error(&self, path: &[&str], reason: impl Into<String>) -> ScenarioError {
        let text = self.text.as_deref().unwrap_or("");
        ScenarioError {
            file: self
                .path
                .as_ref()
                .map_or_else(|| "<scenario>".into(), |p| p.display().to_string()),
            line: line_of(text, path),
            field: format!("{}: ", path.join(".")),
            reason: reason.into(),
        }
    }

    /// Read `path`.
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
        Ok(Scenario::parse(&text, &path.display().to_string())?)
    }

    /// The built-in default.
    pub fn builtin() -> Scenario {
        Scenario::parse(DEFAULT, "<built-in scenario>").expect("the built-in scenario is valid")
    }

    /// [`Scenario::field_error`] for a field of one side (`pr.source`).
    pub fn side_field_error(
        &self,
        side: Side,
        field: &str,
        reason: impl Into<String>,
    ) -> ScenarioError {
        let key = match side {
            Side::Base => "base",
            Side::Pr => "pr",
        };
        self.field_error(&[key, field], reason)
    }

    pub fn side(&self, s: Side) -> &SideSpec {
        match s {
            Side::Base => &self.base,
            Side::Pr => &self.pr,
        }
    }

    /// The workload manifests for one cluster.
    pub fn workloads_for(&self, cluster: &str) -> anyhow::Result<String> {
        let text = if self.workloads == "builtin" {
            WORKLOADS.to_string()
        } else {
            let p = self.resolve(&self.workloads);
            std::fs::read_to_string(&p)
                .map_err(|e| anyhow::anyhow!("workloads: {}: cannot read: {e}", p.display()))?
        };
        Ok(text.replace("{{cluster}}", cluster))
    }

    /// A path from the file, relative to the file's directory; `~` is the home directory.
    pub fn resolve(&self, p: &str) -> PathBuf {
        if let Some(rest) = p.strip_prefix("~/")
            && let Some(home) = std::env::var_os("HOME")
        {
            return PathBuf::from(home).join(rest);
        }
        let p = PathBuf::from(p);
        if p.is_absolute() {
            return p;
        }
        match self.path.as_ref().and_then(|f| f.parent()) {
            Some(dir) => dir.join(p),
            None => p,
        }
    }

    /// The kind cluster config for this scenario; `nft_gate` turns on the NFTablesProxyMode
    /// feature gate (nftables mode on Kubernetes 1.29 and 1.30).
    pub fn kind_config(&self, nft_gate: bool) -> String {
        let mode = self.cluster.proxy_mode;
        let mut s = String::from("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n");
        if nft_gate {
            s.push_str("featureGates:\n  NFTablesProxyMode: true\n");
        }
        s.push_str(&format!(
            "networking:\n  kubeProxyMode: {mode}\nnodes:\n- role: control-plane\n"
        ));
        for _ in 0..self.cluster.workers {
            s.push_str("- role: worker\n");
        }
        s
    }

    /// The expectations, with `{{cluster}}` replaced by each side's cluster name.
    pub fn expectations(&self) -> Vec<Expect> {
        self.expect
            .iter()
            .map(|e| Expect {
                side: e.side,
                source: e.source.replace("{{cluster}}", &self.side(e.side).name),
                outcome: e.outcome,
                target: e.target.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_is_the_modern_analogue_and_2019_is_kept() {
        let s = Scenario::builtin();
        assert_eq!(s.base.name, "base");
        assert_eq!(s.base.git_ref, MERGE_BASE);
        assert_eq!(s.pr.git_ref, "pr/132456");
        assert_eq!(s.cluster.proxy_mode, ProxyMode::Nftables);
        assert_eq!(s.cluster.workers, 2);
        assert!(!s.build.parallel);
        // From kube-proxy's nftables proxier before PR 132456: only the locally originated
        // (hostNetwork) probe on the node without a local endpoint is dropped on the base; the
        // overlay pod's is short-circuited in nat-prerouting; the PR drops nothing.
        let exp = s.expectations();
        assert_eq!(exp.len(), 10);
        let base_fails: Vec<&str> = exp
            .iter()
            .filter(|e| e.side == Side::Base && e.outcome.outcome != Outcome::Ok)
            .map(|e| e.source.as_str())
            .collect();
        assert_eq!(base_fails, ["netshoot-base-worker"]);
        assert!(
            exp.iter()
                .filter(|e| e.side == Side::Pr)
                .all(|e| e.outcome.outcome == Outcome::Ok)
        );
        // Every pod the built-in workloads probe from (each has the probe container) has a row
        // on each side.
        let w = s.workloads_for("base").unwrap();
        let pods: Vec<&str> = w
            .split("\n---\n")
            .filter(|m| m.contains("kind: Pod") && m.contains("- name: netshoot"))
            .filter_map(|m| m.lines().find_map(|l| l.trim().strip_prefix("name: ")))
            .collect();
        assert_eq!(pods.len(), 5, "{pods:?}");
        for p in &pods {
            let rows = exp
                .iter()
                .filter(|e| e.source == *p && e.side == Side::Base);
            assert_eq!(rows.count(), 1, "{p}: one base row");
            let pr = p.replace("base", &s.pr.name);
            assert!(
                exp.iter().any(|e| e.source == pr && e.side == Side::Pr),
                "{pr}"
            );
        }
        for why in [
            "pkg/proxy/nftables/proxier.go",
            "nftablesBaseChains",
            "nftablesJumpChains",
            "syncProxyRules",
            "still open upstream",
        ] {
            assert!(DEFAULT.contains(why), "the scenario's comments name {why}");
        }
        let cfg = s.kind_config(false);
        assert!(
            cfg.matches("role: worker").count() == 2 && cfg.contains("kubeProxyMode: nftables")
        );
        assert!(!cfg.contains("featureGates"));
        assert!(
            s.kind_config(true)
                .contains("featureGates:\n  NFTablesProxyMode: true\n")
        );
        let w = s.workloads_for("132456").unwrap();
        assert!(w.contains("nodeName: 132456-worker2") && !w.contains("{{"));

        let old = Scenario::parse(WALKTHROUGH_2019, "2019.yaml").unwrap();
        assert_eq!(
            (old.base.name.as_str(), old.pr.git_ref.as_str()),
            ("master", "pr/77523")
        );
        assert!(WALKTHROUGH_2019.contains("NEEDS 2019-ERA TOOLS"));
    }

    fn with(replace: &str, by: &str) -> String {
        assert!(DEFAULT.contains(replace), "{replace}");
        DEFAULT.replacen(replace, by, 1)
    }

    /// `outcome:` takes ok, fail, timeout or `ok >= RATE` (into the session's expectation);
    /// `flaky`, a rate out of range or anything else is refused at its line.
    #[test]
    fn expected_outcomes_take_a_rate_and_refuse_flaky_at_their_line() {
        let line = "  - { side: base, source: \"netshoot-{{cluster}}-worker\", outcome: fail }";
        let rate = line.replace("outcome: fail", "outcome: ok >= 0.99");
        let s = Scenario::parse(&with(line, &rate), "k.yaml").unwrap();
        let e = &s.expectations()[0];
        assert_eq!(
            e.outcome,
            Expected {
                outcome: Outcome::Ok,
                min_rate: Some(Rate(0.99))
            }
        );
        assert_eq!(e.outcome.to_string(), "ok >= 0.99");
        assert_eq!(s.expectations()[1].outcome, Expected::all(Outcome::Ok));
        let spaced = line.replace("outcome: fail", "outcome: \"ok>=1\"");
        let s = Scenario::parse(&with(line, &spaced), "k.yaml").unwrap();
        assert_eq!(s.expectations()[0].outcome.min_rate, Some(Rate(1.0)));
        for (bad, says) in [
            ("flaky", "'flaky' is not an expectation"),
            ("ok >= 0", "above 0 and at most 1"),
            ("ok >= 1.5", "above 0 and at most 1"),
            ("ok >= most", "not a number"),
            ("fail >= 0.5", "expected ok, fail, timeout or ok >= RATE"),
            ("OK", "expected ok, fail, timeout"),
        ] {
            let t = with(
                line,
                &line.replace("outcome: fail", &format!("outcome: {bad}")),
            );
            let e = Scenario::parse(&t, "k.yaml").unwrap_err();
            assert!(e.reason.contains(says), "{bad}: {e}");
            let at = t.lines().nth(e.line - 1).unwrap();
            assert!(
                at.contains(&format!("outcome: {bad}")),
                "{bad}: {e} at {at}"
            );
            assert!(e.to_string().starts_with(&format!("k.yaml:{}: ", e.line)));
        }
    }

    /// `probes.repeat`, `path` and `latency_factor` default to 1, /hostname and 2, and are
    /// refused out of range at their line.
    #[test]
    fn repeat_path_and_latency_factor_are_read_and_bounded() {
        let s = Scenario::parse(DEFAULT, "k.yaml").unwrap();
        assert_eq!(
            (
                s.probes.repeat,
                s.probes.path.as_str(),
                s.probes.latency_factor
            ),
            (1, "/hostname", Factor(2.0))
        );
        let t = with("  repeat: 1\n", "  repeat: 30\n  ").replace("  path: /hostname", "path: /x");
        let s = Scenario::parse(&t, "k.yaml").unwrap();
        assert_eq!((s.probes.repeat, s.probes.path.as_str()), (30, "/x"));
        for (from, to, field) in [
            ("  repeat: 1", "  repeat: 0", "probes.repeat: "),
            ("  repeat: 1", "  repeat: 1001", "probes.repeat: "),
            ("  path: /hostname", "  path: hostname", "probes.path: "),
            ("  path: /hostname", "  path: \"/a b\"", "probes.path: "),
            (
                "  latency_factor: 2",
                "  latency_factor: 1",
                "probes.latency_factor: ",
            ),
            (
                "  latency_factor: 2",
                "  latency_factor: 0.5",
                "probes.latency_factor: ",
            ),
        ] {
            let t = with(from, to);
            let e = Scenario::parse(&t, "k.yaml").unwrap_err();
            assert_eq!(e.field, field, "{to}: {e}");
            assert_eq!(t.lines().nth(e.line - 1).unwrap(), to, "{e}");
        }
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let t = with("  name: \"132456\"", "  name: base");
        let e = Scenario::parse(&t, "k.yaml").unwrap_err();
        assert_eq!(e.to_string().split(':').next(), Some("k.yaml"));
        assert_eq!(e.field, "pr.name: ");
        assert_eq!(t.lines().nth(e.line - 1).unwrap().trim(), "name: base");
        assert_eq!(
            t.lines().nth(e.line - 2).unwrap().trim(),
            "pr:",
            "the pr block, not the base block"
        );

        let t = with("  workers: 2", "  workers: two");
        let e = Scenario::parse(&t, "k.yaml").unwrap_err();
        assert_eq!(e.field, "cluster.workers: ", "{e}");
        assert_eq!(t.lines().nth(e.line - 1).unwrap().trim(), "workers: two");

        let e = Scenario::parse(&with("  ref: pr/132456", "  ref: pr/abc"), "k.yaml").unwrap_err();
        assert_eq!(e.field, "pr.ref: ");
        assert!(e.to_string().contains("expected pr/NUMBER"));

        let e = Scenario::parse(
            &with("  proxy_mode: nftables", "  proxy_mode: ipvs"),
            "k.yaml",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("proxy_mode") && e.to_string().contains("ipvs"),
            "{e}"
        );

        let e = Scenario::parse(
            &with("workloads: builtin", "workloads: builtin\ncolour: red"),
            "k.yaml",
        )
        .unwrap_err();
        assert!(e.reason.contains("colour"), "{e}");
        // The built-in workloads pin pods to worker2; one merge-base at most.
        let t = with("  workers: 2", "  workers: 1");
        let e = Scenario::parse(&t, "k.yaml").unwrap_err();
        assert_eq!(e.field, "cluster.workers: ");
        assert!(e.reason.contains("need at least 2"), "{e}");
        assert_eq!(t.lines().nth(e.line - 1).unwrap().trim(), "workers: 1");
        let e =
            Scenario::parse(&with("  ref: pr/132456", "  ref: merge-base"), "k.yaml").unwrap_err();
        assert_eq!(e.field, "pr.ref: ");
        // An expectation's target is one of the probe targets; the error points at its row.
        let t = with(
            "  - { side: pr, source: \"echo-{{cluster}}-worker2\", outcome: ok }",
            "  - { side: pr, source: \"echo-{{cluster}}-worker2\", outcome: ok, target: \"10.0.0.1:80\" }",
        );
        let e = Scenario::parse(&t, "k.yaml").unwrap_err();
        assert_eq!(e.field, "expect[9].target: ", "{e}");
        assert!(e.reason.contains("not one of probes.targets (lb)"), "{e}");
        assert!(
            t.lines().nth(e.line - 1).unwrap().contains("10.0.0.1:80"),
            "{e}"
        );
        let t = t.replace("targets: [lb]", "targets: [lb, \"10.0.0.1:80\"]");
        let s = Scenario::parse(&t, "k.yaml").unwrap();
        let named: Vec<_> = s
            .expectations()
            .into_iter()
            .filter_map(|e| e.target)
            .collect();
        assert_eq!(named, [Target::Addr("10.0.0.1:80".into())]);
        let e = Scenario::parse(
            &t.replace("target: \"10.0.0.1:80\"", "target: \"a b\""),
            "k.yaml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a probe target"), "{e}");
        let e = Scenario::parse("service: [", "bad.yaml").unwrap_err();
        assert!(e.to_string().starts_with("bad.yaml:"), "{e}");
    }

    /// How long probes wait for the Service to be ready: 120 s unless the scenario says;
    /// a wait of nothing, or of more than a day, is refused at its line.
    #[test]
    fn the_ready_timeout_is_read_and_bounded() {
        assert_eq!(Scenario::builtin().probes.ready_timeout, 120.0);
        let old = Scenario::parse(WALKTHROUGH_2019, "2019.yaml").unwrap();
        assert_eq!(
            old.probes.ready_timeout, 120.0,
            "the default without the field"
        );
        let t = with("  ready_timeout: 120", "  ready_timeout: 7.5");
        let s = Scenario::parse(&t, "k.yaml").unwrap();
        assert_eq!(s.probes.ready_timeout, 7.5);
        for bad in ["0", "-1", "86401"] {
            let t = with("  ready_timeout: 120", &format!("  ready_timeout: {bad}"));
            let e = Scenario::parse(&t, "k.yaml").unwrap_err();
            assert_eq!(e.field, "probes.ready_timeout: ", "{e}");
            assert!(e.reason.contains("at most a day"), "{e}");
            assert_eq!(
                t.lines().nth(e.line - 1).unwrap().trim(),
                format!("ready_timeout: {bad}")
            );
        }
    }

    #[test]
    fn a_sides_remote_is_a_remote_name_at_its_line() {
        let t = with(
            "  ref: pr/132456\n",
            "  ref: pr/132456\n  remote: upstream\n",
        );
        let s = Scenario::parse(&t, "k.yaml").unwrap();
        assert_eq!(
            s.pr.remote.as_ref().map(RemoteName::as_str),
            Some("upstream")
        );
        assert_eq!(s.base.remote, None);
        for bad in ["\"-x\"", "\"my fork\"", "\"a..b\"", "\"\""] {
            let t = with(
                "  ref: pr/132456\n",
                &format!("  ref: pr/132456\n  remote: {bad}\n"),
            );
            let e = Scenario::parse(&t, "k.yaml").unwrap_err();
            assert_eq!(e.field, "pr.remote: ", "{e}");
            assert!(e.reason.contains("not a git remote name"), "{e}");
            assert!(
                t.lines().nth(e.line - 1).unwrap().contains("remote:"),
                "{e}"
            );
        }
        // A list is not a name.
        let t = with("  ref: merge-base\n", "  ref: merge-base\n  remote: [a]\n");
        let e = Scenario::parse(&t, "k.yaml").unwrap_err();
        assert!(e.field.starts_with("base"), "{e}");
    }

    /// The built-in scenario with its PR side replaced by `pr` (a YAML block under `pr:`) and
    /// the base at a plain ref.
    fn context_pr(pr: &str) -> String {
        let t = with("  ref: merge-base", "  ref: master");
        let start = t.find("pr:\n").unwrap();
        let end = start + t[start..].find("\n\n").unwrap();
        format!("{}pr:\n{pr}{}", &t[..start], &t[end..])
    }

    /// A side may be an existing cluster named by a kubeconfig context: no source, ref or
    /// image; its namespace, deploy, read and debug image default; a kind base beside it.
    #[test]
    fn a_side_may_be_an_existing_cluster_by_context() {
        let t = context_pr("  name: prod\n  context: prod-eu\n");
        let s = Scenario::parse(&t, "/tmp/k/k.yaml").unwrap();
        assert!(s.is_context(Side::Pr) && !s.is_context(Side::Base));
        assert_eq!(s.context(Side::Base), None);
        assert_eq!(
            s.context(Side::Pr).unwrap(),
            ContextSide {
                context: "prod-eu".into(),
                kubeconfig: None,
                namespace: "kindred".into(),
                deploy: false,
                read: ReadVia::Exec,
                debug_image: None,
            }
        );
        assert_eq!(s.read_concurrency(), 16);
        assert_eq!(s.read_timeout(), None);
        let t = context_pr(
            "  name: prod\n  context: prod-eu\n  kubeconfig: kube/prod.yaml\n  namespace: kd-test\n  \
             deploy: true\n  read: exec-or-debug\n  debug_image: nicolaka/netshoot:v0.14\n",
        )
        .replace("workloads: builtin", "workloads: w.yaml")
        .replace("cluster:\n", "cluster:\n  read_timeout: 7.5\n")
            + "read_concurrency: 4\n";
        let s = Scenario::parse(&t, "/tmp/k/k.yaml").unwrap();
        let c = s.context(Side::Pr).unwrap();
        assert_eq!(c.kubeconfig, Some(PathBuf::from("/tmp/k/kube/prod.yaml")));
        assert_eq!((c.namespace.as_str(), c.deploy), ("kd-test", true));
        assert_eq!(c.read, ReadVia::ExecOrDebug);
        assert_eq!(c.debug_image.as_deref(), Some("nicolaka/netshoot:v0.14"));
        assert_eq!(s.read_concurrency(), 4);
        assert_eq!(
            s.read_timeout(),
            Some(std::time::Duration::from_millis(7500))
        );
        // Both sides contexts (the base's ref line goes too).
        let t = context_pr("  name: prod\n  context: prod-eu\n").replace(
            "  source: ~/go/src/k8s.io/kubernetes\n  ref: master\n  image: kindred/node:132456-base\n",
            "  context: staging\n",
        );
        let s = Scenario::parse(&t, "k.yaml").unwrap();
        assert!(s.is_context(Side::Base) && s.is_context(Side::Pr));
    }

    /// Fields of the two kinds of side mixed, or bad values, are refused at their line.
    #[test]
    fn context_sides_refuse_mixed_fields_and_bad_values() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "  name: prod\n  context: prod-eu\n  image: x:1\n",
                "pr.image: ",
                "kindred never builds",
            ),
            (
                "  name: prod\n  context: prod-eu\n  ref: pr/1\n",
                "pr.ref: ",
                "no source, ref",
            ),
            (
                "  name: prod\n  context: \"\"\n",
                "pr.context: ",
                "not a kubeconfig context",
            ),
            (
                "  name: prod\n  context: prod-eu\n  namespace: Kindred_1\n",
                "pr.namespace: ",
                "not a namespace name",
            ),
            (
                "  name: prod\n  context: prod-eu\n  read: ssh\n",
                "pr.read: ",
                "ssh",
            ),
            (
                "  name: prod\n  context: prod-eu\n  debug_image: img:1\n",
                "pr.debug_image: ",
                "read: exec runs no debug pod",
            ),
            (
                "  name: prod\n  context: prod-eu\n  deploy: true\n",
                "pr.deploy: ",
                "built-in workloads",
            ),
            (
                "  name: prod\n  context: prod-eu\n  deploy: maybe\n",
                "pr.deploy: ",
                "",
            ),
            (
                "  name: prod\n  namespace: kindred\n  source: ~/k\n  ref: pr/1\n  image: i:1\n",
                "pr.namespace: ",
                "only a side with context:",
            ),
            (
                "  name: prod\n  source: ~/k\n  ref: pr/1\n",
                "pr.image: ",
                "missing: a kind side needs",
            ),
        ];
        for (pr, field, why) in cases {
            let t = context_pr(pr);
            let e = Scenario::parse(&t, "k.yaml").unwrap_err();
            assert_eq!(e.field, *field, "{pr}: {e}");
            assert!(e.reason.contains(why), "{pr}: {e}");
            let key = field.trim_end_matches(": ").rsplit('.').next().unwrap();
            let at = t.lines().nth(e.line - 1).unwrap().trim();
            assert!(
                at.starts_with(&format!("{key}:")) || (why.starts_with("missing") && at == "pr:"),
                "{pr}: line {}: {at}",
                e.line
            );
        }
        // merge-base needs the other side's PR ref.
        let t = context_pr("  name: prod\n  context: prod-eu\n")
            .replace("ref: master", "ref: merge-base");
        let e = Scenario::parse(&t, "k.yaml").unwrap_err();
        assert_eq!(e.field, "base.ref: ", "{e}");
        assert!(e.reason.contains("merge-base needs"), "{e}");
        // The read limits: in range, and given once.
        let ok = context_pr("  name: prod\n  context: prod-eu\n");
        for (extra, field) in [
            ("read_concurrency: 0\n", "read_concurrency: "),
            ("read_timeout: -1\n", "read_timeout: "),
        ] {
            let e = Scenario::parse(&format!("{ok}{extra}"), "k.yaml").unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
        let t =
            ok.replace("cluster:\n", "cluster:\n  read_concurrency: 8\n") + "read_concurrency: 4\n";
        let e = Scenario::parse(&t, "k.yaml").unwrap_err();
        assert_eq!(e.field, "cluster.read_concurrency: ", "{e}");
        assert_eq!(
            t.lines().nth(e.line - 1).unwrap().trim(),
            "read_concurrency: 8"
        );
    }
}
