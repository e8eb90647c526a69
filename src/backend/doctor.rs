//! `kindred doctor`: what on this box would stop a live run, found before any work starts.
//! Each check says ok, warn or fail, what it found, and the fix. `Depth::Quick` (run at the start
//! of `kindred`/`up` and `check`) touches no network: refs that need a fetch are left for the
//! build.

use std::path::Path;

use serde::Serialize;

use super::docker::{Docker, ImageStore};
use super::git;
use super::kind::Kind;
use super::process::{self, Overflow};
use crate::model::ProxyMode;
use crate::scenario::{MERGE_BASE, Scenario};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// What a check looks at: one name per check, written kebab-case (`image-store`) in the text
/// and JSON reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckName {
    Docker,
    ImageStore,
    Kind,
    Git,
    Curl,
    Source,
    Remote,
    Ref,
    Kubernetes,
    State,
    Disk,
    Memory,
    Inotify,
    /// A kubeconfig context kindred reads: found, and a client made for it.
    Context,
    /// That context's API server answers.
    ApiServer,
    /// What that context's user may do, against what kindred needs.
    Permission,
    /// That context's nodes: kube-proxy's mode and version on each.
    KubeProxy,
}

impl CheckName {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckName::Docker => "docker",
            CheckName::ImageStore => "image-store",
            CheckName::Kind => "kind",
            CheckName::Git => "git",
            CheckName::Curl => "curl",
            CheckName::Source => "source",
            CheckName::Remote => "remote",
            CheckName::Ref => "ref",
            CheckName::Kubernetes => "kubernetes",
            CheckName::State => "state",
            CheckName::Disk => "disk",
            CheckName::Memory => "memory",
            CheckName::Inotify => "inotify",
            CheckName::Context => "context",
            CheckName::ApiServer => "api-server",
            CheckName::Permission => "permission",
            CheckName::KubeProxy => "kube-proxy",
        }
    }
}

impl std::fmt::Display for CheckName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`: the text report aligns names in a column.
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: CheckName,
    pub status: Status,
    pub message: String,
    /// What to do about it (`None` when nothing needs doing).
    pub fix: Option<String>,
}

impl Check {
    pub(crate) fn ok(name: CheckName, message: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Ok,
            message: message.into(),
            fix: None,
        }
    }
    pub(crate) fn warn(
        name: CheckName,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            name,
            status: Status::Warn,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
    pub(crate) fn fail(
        name: CheckName,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            name,
            status: Status::Fail,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// No check failed.
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl Report {
    /// A report of these checks: ok when none failed.
    pub fn new(checks: Vec<Check>) -> Report {
        Report {
            ok: checks.iter().all(|c| c.status != Status::Fail),
            checks,
        }
    }

    /// The check named `name` failed.
    pub fn failed(&self, name: CheckName) -> Option<&Check> {
        self.checks
            .iter()
            .find(|c| c.name == name && c.status == Status::Fail)
    }
}

/// Quick: no network (at the start of every live session). Full: refs are fetched too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    Quick,
    Full,
}

/// kind versions that matter.
pub const KIND_SOURCE_ARG: (u32, u32, u32) = (0, 11, 0);
pub const KIND_NFTABLES: (u32, u32, u32) = (0, 23, 0);
pub const KIND_CONTAINERD2: (u32, u32, u32) = (0, 27, 0);
/// Free disk a node-image build needs (Kubernetes' build output and images).
pub const DISK_NEEDED: u64 = 30 << 30;
/// Memory one Kubernetes build needs.
pub const MEMORY_NEEDED: u64 = 8 << 30;

/// Run every check for this scenario: the tools and sources of its kind sides, and each context
/// side's API server, permissions and kube-proxy (`doctor_context`).
pub async fn run(sc: &Scenario, kind: &Kind, depth: Depth) -> Report {
    let contexts = crate::model::Side::BOTH.map(|s| sc.context(s));
    let mut checks = Vec::new();
    for c in contexts.iter().flatten() {
        let r = super::context::ContextRef {
            context: c.context.clone(),
            kubeconfig: c.kubeconfig.clone(),
        };
        checks.extend(super::doctor_context::context_checks(&r, &c.namespace, c.read).await);
    }
    if contexts.iter().all(Option::is_some) {
        checks.push(state_dir());
        return Report::new(checks);
    }
    checks.extend(kind_side_checks(sc, kind, depth).await);
    Report::new(checks)
}

/// What building and running kind clusters needs: Docker, kind, git, the sources, disk, memory.
async fn kind_side_checks(sc: &Scenario, kind: &Kind, depth: Depth) -> Vec<Check> {
    let mut checks = docker().await;
    let kind_version = match kind.version().await {
        Ok((v, line)) => {
            checks.push(kind_check(v, &line, sc.cluster.proxy_mode));
            Some(v)
        }
        Err(e) => {
            checks.push(Check::fail(
                CheckName::Kind,
                format!("{e:#}"),
                "install kind >= v0.23 (https://kind.sigs.k8s.io/) and put it on PATH",
            ));
            None
        }
    };
    checks.push(tool(CheckName::Git, &["--version"], "install git").await);
    if sc
        .load_balancer
        .manifest
        .as_deref()
        .is_some_and(super::metallb::is_url)
    {
        checks.push(
            tool(
                CheckName::Curl,
                &["--version"],
                "install curl (it fetches MetalLB's manifest), or give a local file",
            )
            .await,
        );
    }
    checks.extend(sources(sc, kind_version, depth).await);
    checks.push(state_dir());
    checks.push(disk(&super::state_dir()));
    checks.push(memory(sc.build.parallel));
    checks.push(inotify());
    checks
}

/// The engine, and (when it answers) the image store it uses.
async fn docker() -> Vec<Check> {
    let ep = super::docker::endpoint();
    match Docker::connect().await {
        Ok(d) => {
            let version = match d.version().await {
                Ok((v, api)) => {
                    Check::ok(CheckName::Docker, format!("Docker {v} (API {api}) at {ep}"))
                }
                Err(e) => Check::warn(
                    CheckName::Docker,
                    format!("{e:#}"),
                    "check the Docker engine",
                ),
            };
            let store = match d.image_store().await {
                Ok(s) => image_store_check(&s),
                Err(e) => Check::warn(
                    CheckName::ImageStore,
                    format!("{e:#}"),
                    "check the Docker engine (`docker info` shows its storage driver)",
                ),
            };
            vec![version, store]
        }
        Err(e) => vec![Check::fail(
            CheckName::Docker,
            format!("{e:#}"),
            format!(
                "start the Docker engine, or point DOCKER_HOST or the docker context at it (tried {ep})"
            ),
        )],
    }
}

/// The engine's image store against `kind load docker-image`, which fails on containerd's
/// store ("content digest ... not found": kind issues 3795, 4066, 4224). kindred loads the
/// kube-proxy image that way.
pub fn image_store_check(store: &ImageStore) -> Check {
    match store {
        ImageStore::Classic { driver } => Check::ok(
            CheckName::ImageStore,
            format!("classic image store ({driver}): `kind load docker-image` works"),
        ),
        ImageStore::Containerd { snapshotter } => Check::ok(
            CheckName::ImageStore,
            format!(
                "containerd image store (snapshotter {snapshotter}): `kind load docker-image` fails there (content digest not found; kind issues 3795, 4066, 4224); kindred loads images with `kind load image-archive`, which works on either store"
            ),
        ),
    }
}

/// kind's recommended inotify limits (kind's known issues, "Pod errors due to too many open
/// files"): two clusters of three nodes exceed common defaults.
pub const INOTIFY_WATCHES: u64 = 524_288;
pub const INOTIFY_INSTANCES: u64 = 512;

/// `fs.inotify.max_user_watches` and `max_user_instances` of this box.
fn inotify() -> Check {
    let read = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/fs/inotify/{name}"))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
    };
    inotify_check(read("max_user_watches"), read("max_user_instances"))
}

/// The inotify limits against kind's recommended values, with the `sysctl` that raises those
/// below them (never lowers one).
pub fn inotify_check(watches: Option<u64>, instances: Option<u64>) -> Check {
    let (Some(w), Some(i)) = (watches, instances) else {
        return Check::warn(
            CheckName::Inotify,
            "inotify limits unknown (/proc/sys/fs/inotify not readable)",
            format!(
                "kind recommends fs.inotify.max_user_watches >= {INOTIFY_WATCHES} and fs.inotify.max_user_instances >= {INOTIFY_INSTANCES}"
            ),
        );
    };
    let msg = format!(
        "max_user_watches {w}, max_user_instances {i} (kind recommends {INOTIFY_WATCHES} and {INOTIFY_INSTANCES})"
    );
    let low: Vec<String> = [
        ("max_user_watches", w, INOTIFY_WATCHES),
        ("max_user_instances", i, INOTIFY_INSTANCES),
    ]
    .into_iter()
    .filter(|(_, have, want)| have < want)
    .map(|(name, _, want)| format!("fs.inotify.{name}={want}"))
    .collect();
    if low.is_empty() {
        return Check::ok(CheckName::Inotify, msg);
    }
    let persist: Vec<String> = low.iter().map(|s| s.replace('=', " = ")).collect();
    Check::warn(
        CheckName::Inotify,
        format!("{msg}: nodes may fail with \"too many open files\""),
        format!(
            "sudo sysctl {}; to keep it after a reboot: printf '{}\\n' | sudo tee /etc/sysctl.d/99-kind-inotify.conf",
            low.join(" "),
            persist.join("\\n")
        ),
    )
}

/// What this kind can do for the scenario.
pub fn kind_check(v: (u32, u32, u32), line: &str, mode: ProxyMode) -> Check {
    let shown = format!("v{}.{}.{}", v.0, v.1, v.2);
    if v < KIND_SOURCE_ARG {
        return Check::fail(
            CheckName::Kind,
            format!(
                "kind {shown}: older than v0.11, it cannot build a node image from a source directory"
            ),
            "install kind >= v0.23",
        );
    }
    if mode == ProxyMode::Nftables && v < KIND_NFTABLES {
        return Check::fail(
            CheckName::Kind,
            format!("kind {shown}: nftables mode needs kind >= v0.23"),
            "install kind >= v0.23, or set cluster.proxy_mode: iptables",
        );
    }
    Check::ok(CheckName::Kind, line.to_string())
}

/// Whether `bin` runs: the first line of its version output (at most
/// [`process::MAX_VERSION`] bytes read, shown escaped).
async fn tool(check: CheckName, args: &[&str], fix: &str) -> Check {
    let name = check.as_str();
    let mut cmd = tokio::process::Command::new(name);
    cmd.args(args);
    let limit = std::time::Duration::from_secs(10);
    let what = format!("{name} {}", args.join(" "));
    let run = process::capture(cmd, &what, process::MAX_VERSION, Overflow::Stop, limit).await;
    match run {
        Ok(Ok(o)) if o.status.success() || o.stdout_cut => {
            let first = process::first_line(&o.stdout);
            Check::ok(check, if first.is_empty() { name.into() } else { first })
        }
        Ok(Ok(o)) => Check::fail(check, format!("{what}: {}", o.status), fix),
        Ok(Err(e)) => Check::fail(check, format!("{e:#}"), fix),
        Err(e) => Check::fail(check, format!("{name}: {e}"), fix),
    }
}

/// The sources, their refs, and the Kubernetes version of each side against what kind can boot
/// and the proxy mode needs.
async fn sources(sc: &Scenario, kind: Option<(u32, u32, u32)>, depth: Depth) -> Vec<Check> {
    let mut out = Vec::new();
    for side in crate::model::Side::BOTH {
        // A cluster kindred did not create has no source to build (`context:`).
        if sc.is_context(side) {
            continue;
        }
        let spec = sc.side(side);
        let who = format!("{} ({})", spec.name, side.label());
        let source = sc.resolve(&spec.source);
        if let Err(e) = git::check_source(&source).await {
            out.push(Check::fail(
                CheckName::Source,
                format!(
                    "{who}: {}",
                    sc.side_field_error(side, "source", format!("{e:#}"))
                ),
                "git clone https://github.com/kubernetes/kubernetes and set `source`",
            ));
            continue;
        }
        out.push(Check::ok(
            CheckName::Source,
            format!("{who}: {}", source.display()),
        ));
        out.push(remote_check(sc, side, &source, &who).await);
        match side_commit(sc, side, &source, depth).await {
            Ok(Some(sha)) => {
                out.push(Check::ok(
                    CheckName::Ref,
                    format!("{who}: {} is {}", spec.git_ref, &sha[..12]),
                ));
                let v = git::describe(&source, &sha).await.ok().flatten();
                let wanted = spec.remote.as_ref().map(|r| r.as_str());
                let remote = git::remote(&source, wanted).await.ok().map(|r| r.name);
                out.push(version_check(
                    &who,
                    v.map(|v| (v.major, v.minor)),
                    kind,
                    sc.cluster.proxy_mode,
                    remote.as_deref(),
                ));
            }
            Ok(None) => out.push(Check::ok(
                CheckName::Ref,
                format!("{who}: {} is fetched when building", spec.git_ref),
            )),
            Err(e) => out.push(Check::fail(
                CheckName::Ref,
                format!("{who}: {e:#}"),
                "fix the ref (or the remote), or `git fetch` the remote in the source",
            )),
        }
    }
    out
}

/// The remote a side's `pr/N` is fetched from and whose default branch its `merge-base` uses,
/// or why none fits (a failure only for a side whose ref needs one).
async fn remote_check(sc: &Scenario, side: crate::model::Side, source: &Path, who: &str) -> Check {
    let spec = sc.side(side);
    let needs = spec.git_ref.starts_with("pr/") || spec.git_ref == MERGE_BASE;
    let wanted = spec.remote.as_ref().map(|r| r.as_str());
    match git::remote(source, wanted).await {
        Ok(r) => Check::ok(
            CheckName::Remote,
            format!("{who}: PRs and the default branch from {}", r.describe()),
        ),
        Err(e) if needs => Check::fail(
            CheckName::Remote,
            format!("{who}: {:#}", git::remote_error_at(sc, side, e)),
            "git remote add upstream https://github.com/kubernetes/kubernetes.git in the source, or set the side's `remote:` in the scenario",
        ),
        Err(e) => Check::ok(
            CheckName::Remote,
            format!("{who}: ref {} needs no remote ({e:#})", spec.git_ref),
        ),
    }
}

/// The commit of a side's ref; `None` when finding it needs the network and `depth` is quick.
async fn side_commit(
    sc: &Scenario,
    side: crate::model::Side,
    source: &Path,
    depth: Depth,
) -> anyhow::Result<Option<String>> {
    let spec = sc.side(side);
    let needs_fetch = |r: &str| r.starts_with("pr/");
    let (r, other) = (&spec.git_ref, &sc.side(side.other()).git_ref);
    if depth == Depth::Quick && (needs_fetch(r) || (r == MERGE_BASE && needs_fetch(other))) {
        return Ok(None);
    }
    let wanted = |s: crate::model::Side| sc.side(s).remote.as_ref().map(|r| r.as_str());
    let at = |s, e| git::remote_error_at(sc, s, e);
    if r == MERGE_BASE {
        let o = side.other();
        let other_source = sc.resolve(&sc.side(o).source);
        let pr = git::resolve(&other_source, other, wanted(o))
            .await
            .map_err(|e| at(o, e))?;
        let remote = git::remote(source, wanted(side))
            .await
            .map_err(|e| at(side, e))?;
        return Ok(Some(git::merge_base(source, &pr, &remote).await?.0));
    }
    Ok(Some(
        git::resolve(source, r, wanted(side))
            .await
            .map_err(|e| at(side, e))?,
    ))
}

/// A side's Kubernetes version against what kind boots and what the proxy mode needs. `remote`
/// is the source's kubernetes/kubernetes remote (the one tags come from), when one fits.
pub fn version_check(
    who: &str,
    v: Option<(u32, u32)>,
    kind: Option<(u32, u32, u32)>,
    mode: ProxyMode,
    remote: Option<&str>,
) -> Check {
    let Some((major, minor)) = v else {
        return Check::warn(
            CheckName::Kubernetes,
            format!("{who}: the Kubernetes version cannot be told (no v* tag reaches the ref)"),
            match remote {
                Some(r) => format!("git fetch --tags {r} in the source"),
                None => "add kubernetes/kubernetes as a remote in the source (git remote add upstream https://github.com/kubernetes/kubernetes) and git fetch --tags upstream".to_string(),
            },
        );
    };
    let shown = format!("{who}: Kubernetes {major}.{minor}");
    if (major, minor) < (1, 24) && kind.is_some_and(|k| k >= KIND_CONTAINERD2) {
        return Check::fail(
            CheckName::Kubernetes,
            format!(
                "{shown} cannot boot on kind >= v0.27: its kubelet speaks only CRI v1alpha2, which containerd 2.x removed"
            ),
            "use kind v0.26 or older on a cgroup v1 host, or a newer Kubernetes ref",
        );
    }
    if mode == ProxyMode::Nftables {
        if (major, minor) < (1, 29) {
            return Check::fail(
                CheckName::Kubernetes,
                format!("{shown} has no nftables proxy mode (alpha in 1.29, GA in 1.33)"),
                "use iptables mode, or a ref from 1.29 on",
            );
        }
        if (major, minor) < (1, 31) {
            return Check::warn(
                CheckName::Kubernetes,
                format!("{shown}: nftables mode is behind the NFTablesProxyMode feature gate"),
                "none needed: kindred turns the gate on in the kind config",
            );
        }
    }
    Check::ok(CheckName::Kubernetes, shown)
}

/// kindred's state dir (worktrees, kubeconfigs, the record of its clusters): created private,
/// refused when it is a symbolic link, someone else's, writable by others, or read-only.
fn state_dir() -> Check {
    match super::state::ensure_state_dir() {
        Ok(d) => Check::ok(
            CheckName::State,
            format!("{} is kindred's own", d.display()),
        ),
        Err(e) => Check::fail(
            CheckName::State,
            format!("{e:#}"),
            "as the message says, or set XDG_STATE_HOME to a directory of your own",
        ),
    }
}

/// Free disk where kindred keeps its worktrees.
fn disk(dir: &Path) -> Check {
    let probe = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let Some(free) = free_bytes(probe) else {
        return Check::warn(
            CheckName::Disk,
            format!("{}: free space unknown", probe.display()),
            "check free disk space",
        );
    };
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let msg = format!("{:.0} GiB free on {}", gib(free), probe.display());
    if free < DISK_NEEDED {
        Check::warn(
            CheckName::Disk,
            msg,
            format!(
                "a node-image build wants about {:.0} GiB: free some space",
                gib(DISK_NEEDED)
            ),
        )
    } else {
        Check::ok(CheckName::Disk, msg)
    }
}

fn free_bytes(p: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(s.f_bavail as u64 * s.f_frsize as u64)
}

/// Available memory, against one build (two when building in parallel).
fn memory(parallel: bool) -> Check {
    let avail = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    let Some(avail) = avail else {
        return Check::warn(
            CheckName::Memory,
            "available memory unknown",
            "check free memory",
        );
    };
    let need = if parallel {
        2 * MEMORY_NEEDED
    } else {
        MEMORY_NEEDED
    };
    let gib = |b: u64| b >> 30;
    let msg = format!("{} GiB available", gib(avail));
    if avail < need {
        Check::warn(
            CheckName::Memory,
            msg,
            format!(
                "a Kubernetes build wants about {} GiB{}",
                gib(need),
                if parallel {
                    " per side at once: set build.parallel: false"
                } else {
                    ""
                }
            ),
        )
    } else {
        Check::ok(CheckName::Memory, msg)
    }
}

/// The report as a table: status, check, what was found, and the fix under it.
pub fn table(r: &Report) -> String {
    use crate::rules::render::visible;
    use std::fmt::Write as _;
    let mut o = String::new();
    // The names' column as wide as the widest name (at least 10).
    let w = r
        .checks
        .iter()
        .map(|c| c.name.as_str().len())
        .max()
        .unwrap_or(0)
        .max(10);
    for c in &r.checks {
        let mark = match c.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        // One line each: a newline in a tool's output or a ref never forges another.
        let _ = writeln!(o, "{mark}  {:<w$} {}", c.name, visible(&c.message));
        if let Some(f) = &c.fix {
            let _ = writeln!(o, "      {:<w$} fix: {}", "", visible(f));
        }
    }
    let fails = r.checks.iter().filter(|c| c.status == Status::Fail).count();
    let warns = r.checks.iter().filter(|c| c.status == Status::Warn).count();
    let _ = writeln!(
        o,
        "{fails} failed, {warns} warnings, {} checks",
        r.checks.len()
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_and_kubernetes_versions_against_the_scenario() {
        let k = |v| kind_check(v, "kind", ProxyMode::Nftables).status;
        assert_eq!(k((0, 10, 0)), Status::Fail);
        assert_eq!(k((0, 22, 0)), Status::Fail);
        assert_eq!(
            kind_check((0, 22, 0), "kind", ProxyMode::Iptables).status,
            Status::Ok
        );
        assert_eq!(k((0, 30, 0)), Status::Ok);
        let v = |kube, kind| version_check("pr", kube, Some(kind), ProxyMode::Nftables, None);
        assert_eq!(v(Some((1, 15)), (0, 30, 0)).status, Status::Fail);
        assert!(
            v(Some((1, 15)), (0, 30, 0))
                .message
                .contains("CRI v1alpha2")
        );
        assert_eq!(v(Some((1, 28)), (0, 30, 0)).status, Status::Fail);
        assert_eq!(v(Some((1, 30)), (0, 30, 0)).status, Status::Warn);
        assert_eq!(v(Some((1, 34)), (0, 30, 0)).status, Status::Ok);
        assert_eq!(v(None, (0, 30, 0)).status, Status::Warn);
        // Tags come from the kubernetes/kubernetes remote (`upstream` in a fork's checkout).
        let fix = |remote| {
            version_check("pr", None, None, ProxyMode::Nftables, remote)
                .fix
                .unwrap()
        };
        assert_eq!(
            fix(Some("upstream")),
            "git fetch --tags upstream in the source"
        );
        assert!(
            fix(None).contains("git remote add upstream"),
            "{}",
            fix(None)
        );
        let old = version_check(
            "base",
            Some((1, 15)),
            Some((0, 26, 0)),
            ProxyMode::Iptables,
            None,
        );
        assert_eq!(old.status, Status::Ok);
    }

    #[test]
    fn the_table_aligns_messages_and_fixes_after_the_widest_name() {
        let r = Report::new(vec![
            Check::ok(CheckName::ImageStore, "classic"),
            Check::fail(CheckName::Permission, "may not", "grant it"),
            Check::warn(CheckName::Kind, "old", "upgrade"),
        ]);
        let t = table(&r);
        let col = |l: &str, word: &str| l.find(word).unwrap();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "ok    image-store classic", "{t}");
        assert_eq!(col(lines[1], "may not"), col(lines[0], "classic"), "{t}");
        assert_eq!(
            col(lines[2], "grant it"),
            col(lines[0], "classic") + 5,
            "{t}"
        );
        assert_eq!(col(lines[3], "old"), col(lines[0], "classic"), "{t}");
        assert!(!r.ok);
    }

    #[test]
    fn inotify_limits_against_kinds_recommendation() {
        let c = inotify_check(Some(8192), Some(128));
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.message
                .contains("max_user_watches 8192, max_user_instances 128"),
            "{}",
            c.message
        );
        let fix = c.fix.unwrap();
        assert!(
            fix.starts_with(
                "sudo sysctl fs.inotify.max_user_watches=524288 fs.inotify.max_user_instances=512;"
            ),
            "{fix}"
        );
        assert!(fix.contains("/etc/sysctl.d/"), "{fix}");
        // Only what is below is raised; nothing is lowered.
        let c = inotify_check(Some(1_048_576), Some(128));
        assert_eq!(c.status, Status::Warn);
        let fix = c.fix.unwrap();
        assert!(
            fix.starts_with("sudo sysctl fs.inotify.max_user_instances=512;"),
            "{fix}"
        );
        assert!(!fix.contains("max_user_watches"), "{fix}");
        assert_eq!(inotify_check(Some(524_288), Some(512)).status, Status::Ok);
        assert_eq!(inotify_check(None, Some(512)).status, Status::Warn);
    }

    #[test]
    fn the_image_store_is_told_from_the_engines_driver_status() {
        use bollard::models::SystemInfo;
        let info = |driver: &str, status: &[[&str; 2]]| SystemInfo {
            driver: Some(driver.into()),
            driver_status: Some(
                status
                    .iter()
                    .map(|kv| kv.iter().map(|s| s.to_string()).collect())
                    .collect(),
            ),
            ..Default::default()
        };
        // What Docker 29 with the containerd store and Docker with overlay2 answer.
        let containerd = super::super::docker::image_store(&info(
            "overlayfs",
            &[["driver-type", "io.containerd.snapshotter.v1"]],
        ));
        assert_eq!(
            containerd,
            ImageStore::Containerd {
                snapshotter: "overlayfs".into()
            }
        );
        let c = image_store_check(&containerd);
        assert_eq!(c.status, Status::Ok);
        assert!(
            c.message.contains("`kind load docker-image` fails")
                && c.message
                    .contains("kindred loads images with `kind load image-archive`"),
            "{}",
            c.message
        );
        let classic = super::super::docker::image_store(&info(
            "overlay2",
            &[["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
        ));
        assert_eq!(
            classic,
            ImageStore::Classic {
                driver: "overlay2".into()
            }
        );
        assert_eq!(image_store_check(&classic).status, Status::Ok);
    }

    /// Run git in `dir` (as a test user); it must succeed.
    fn git_in(dir: &Path, args: &[&str]) {
        let o = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
    }

    #[tokio::test]
    async fn a_source_inside_another_repository_fails_at_its_line() {
        let t = tempfile::tempdir().unwrap();
        let outer = t.path().join("home");
        std::fs::create_dir_all(outer.join("src/kubernetes")).unwrap();
        let git = |args: &[&str]| git_in(&outer, args);
        git(&["init", "-q"]);
        std::fs::write(outer.join("secrets.env"), "TOKEN=x\n").unwrap();
        git(&["add", "."]);
        git(&["commit", "-qm", "dotfiles"]);
        let inner = outer.join("src/kubernetes");
        std::fs::write(inner.join("go.mod"), "module k8s.io/kubernetes\n").unwrap();
        let text =
            crate::scenario::DEFAULT.replace("~/go/src/k8s.io/kubernetes", inner.to_str().unwrap());
        let file = t.path().join("k.yaml");
        let sc = Scenario::parse(&text, file.to_str().unwrap()).unwrap();
        let checks = sources(&sc, None, Depth::Quick).await;
        let failed: Vec<&Check> = checks
            .iter()
            .filter(|c| c.name == CheckName::Source && c.status == Status::Fail)
            .collect();
        assert_eq!(failed.len(), 2, "{checks:#?}");
        for (c, key) in failed.iter().zip(["base", "pr"]) {
            // The line where that side's `source:` is written.
            let mut in_side = false;
            let line = text
                .lines()
                .position(|l| {
                    in_side |= l.starts_with(&format!("{key}:"));
                    in_side && l.trim_start().starts_with("source:")
                })
                .unwrap()
                + 1;
            let at = format!("{}:{line}: {key}.source: ", file.display());
            assert!(c.message.contains(&at), "{at} in {}", c.message);
            assert!(c.message.contains("not its top level"), "{}", c.message);
        }
    }

    #[tokio::test]
    async fn the_remote_for_prs_is_named_or_why_none_fits() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("kubernetes");
        std::fs::create_dir_all(&src).unwrap();
        let git = |args: &[&str]| git_in(&src, args);
        git(&["init", "-q"]);
        std::fs::write(src.join("go.mod"), "module k8s.io/kubernetes\n").unwrap();
        git(&["add", "."]);
        git(&["commit", "-qm", "k"]);
        git(&[
            "remote",
            "add",
            "origin",
            "https://github.com/me/kubernetes.git",
        ]);
        let text =
            crate::scenario::DEFAULT.replace("~/go/src/k8s.io/kubernetes", src.to_str().unwrap());
        let file = t.path().join("k.yaml");
        let remotes = |text: &str| {
            let sc = Scenario::parse(text, file.to_str().unwrap()).unwrap();
            async move {
                let checks = sources(&sc, None, Depth::Quick).await;
                let r: Vec<Check> = checks
                    .into_iter()
                    .filter(|c| c.name == CheckName::Remote)
                    .collect();
                assert_eq!(r.len(), 2, "{r:#?}");
                r
            }
        };
        let line_of = |text: &str, key: &str, field: &str| {
            let mut in_side = false;
            text.lines()
                .position(|l| {
                    in_side |= l.starts_with(&format!("{key}:"));
                    in_side && l.trim_start().starts_with(&format!("{field}:"))
                })
                .unwrap()
                + 1
        };
        // Only the fork: both sides need a remote (pr/N, merge-base), none fits.
        let r = remotes(&text).await;
        for (c, key) in r.iter().zip(["base", "pr"]) {
            assert_eq!(c.status, Status::Fail, "{c:?}");
            let at = format!(
                "{}:{}: {key}.ref: ",
                file.display(),
                line_of(&text, key, "ref")
            );
            assert!(c.message.contains(&at), "{at} in {}", c.message);
            assert!(
                c.message.contains("no remote is kubernetes/kubernetes"),
                "{c:?}"
            );
            assert!(
                c.message
                    .contains("origin https://github.com/me/kubernetes.git"),
                "{c:?}"
            );
            assert!(
                c.fix
                    .as_deref()
                    .unwrap()
                    .contains("git remote add upstream"),
                "{c:?}"
            );
        }
        // kubernetes/kubernetes as upstream: named, with its URL.
        git(&[
            "remote",
            "add",
            "upstream",
            "git@github.com:kubernetes/kubernetes.git",
        ]);
        for c in remotes(&text).await {
            assert_eq!(c.status, Status::Ok, "{c:?}");
            assert!(
                c.message.contains("remote upstream (git@github.com:kubernetes/kubernetes.git): its URL is kubernetes/kubernetes"),
                "{c:?}"
            );
        }
        // The scenario names a remote that is not there: at its line.
        let named = text.replacen("  ref: pr/132456\n", "  ref: pr/132456\n  remote: k8s\n", 1);
        let r = remotes(&named).await;
        assert_eq!(r[0].status, Status::Ok);
        let at = format!(
            "{}:{}: pr.remote: ",
            file.display(),
            line_of(&named, "pr", "remote")
        );
        assert!(
            r[1].message.contains(&at) && r[1].message.contains("`k8s` is not a remote"),
            "{:?}",
            r[1]
        );
        // A side whose ref needs no remote is not failed for want of one.
        git(&["remote", "remove", "upstream"]);
        let branch = text.replacen("ref: merge-base", "ref: master", 1);
        let r = remotes(&branch).await;
        assert_eq!(r[0].status, Status::Ok, "{:?}", r[0]);
        assert!(
            r[0].message.contains("ref master needs no remote"),
            "{:?}",
            r[0]
        );
        assert_eq!(r[1].status, Status::Fail);
        // And in the JSON report.
        let json = serde_json::to_string(&Report {
            ok: false,
            checks: r,
        })
        .unwrap();
        assert!(json.contains("\"name\":\"remote\""), "{json}");
    }

    /// A context side (a cluster kindred did not create) has no source: the doctor checks only
    /// the kind side's, so its missing source blocks nothing of the kind side's.
    #[tokio::test]
    async fn a_context_side_has_no_source_to_check() {
        let t = crate::scenario::DEFAULT
            .replace("  ref: merge-base", "  ref: master")
            .replace(
                "  source: ~/go/src/k8s.io/kubernetes\n  ref: pr/132456\n  image: kindred/node:pr-132456\n",
                "  context: prod-eu\n",
            );
        let sc = Scenario::parse(&t, "k.yaml").unwrap();
        assert!(sc.is_context(crate::model::Side::Pr));
        let checks = sources(&sc, None, Depth::Quick).await;
        assert!(!checks.is_empty());
        assert!(
            checks.iter().all(|c| !c.message.contains("(PR)")),
            "{checks:?}"
        );
    }
}
