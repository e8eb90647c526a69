//! A Kubernetes-like repository made in the test, for `kindred bisect`: its build entry points
//! (stand-ins of `build/run.sh` and `make` that write a stand-in kube-proxy holding the tree's
//! kube-proxy code), and a history of first-parent merge commits ("Merge pull request #N from
//! dev/branch", each merging a side branch) where one breaks a probe, one does not build, one is
//! flaky, one fixes the break, one touches `staging/` (so a range over it rebuilds node images),
//! and a second one breaks another probe. What a cluster does when probed is decided from the
//! kube-proxy code it runs now ([`Running`]): the markers below, in
//! `pkg/proxy/nftables/proxier.go`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kindred::backend::bisect::{BisectEnd, BisectEvent, BisectRequest, PathChoice, Step, StepRole};
use kindred::backend::event::Event;
use kindred::backend::{Backend, Command};
use kindred::model::{Job, Target};
use kindred::scenario::Scenario;

use super::apiserver::{ApiServer, Cluster, ProxyDs};
use super::{
    Cleanup, IMAGE, Images, fixture, git, image, in_process_state, kubernetes_like, network_create,
    tie, until_finished,
};
// The stand-in API server's threads call docker: no time limit is armed on them.
use super::docker_unarmed as docker;

/// kube-proxy code with this line drops host-network traffic from `netshoot-*-worker`.
pub const DROPS_HOST: &str = "// kindred-test: drops host-network traffic";
/// kube-proxy code with this line drops the traffic of the pod `overlay-*-worker`.
pub const DROPS_POD: &str = "// kindred-test: drops pod traffic";
/// kube-proxy code with this line answers `netshoot-*-worker2` every other time.
pub const FLAKY: &str = "// kindred-test: flaky";
/// A tree with a Go file holding this line does not compile (the build stand-ins fail on it).
pub const DOES_NOT_COMPILE: &str = "// kindred-test: does not compile";

/// The merges of the history, numbered from 1 (`M1` is the first merge after the tag `BASE_TAG`).
/// M1..=SWAP_LAST change only kube-proxy's code (and docs, tests and a package only it imports).
pub const SWAP_LAST: usize = 13;
/// Does not compile (M7 removes the marker again).
pub const UNBUILDABLE: usize = 6;
/// Flaky (M9 removes the marker again).
pub const FLAKY_AT: usize = 8;
/// Drops host-network traffic, from here until FIX.
pub const BREAK: usize = 10;
/// Removes what BREAK added.
pub const FIX: usize = 14;
/// Changes `staging/src/k8s.io/api/core/v1/types.go`, imported by the kubelet too.
pub const STAGING: usize = 17;
/// Drops pod traffic, from here on.
pub const BREAK2: usize = 20;
/// The number of merges.
pub const MERGES: usize = 24;
/// The tag on the commit before M1.
pub const BASE_TAG: &str = "v1.35.0-alpha.0";

/// The repository: its directory, the commit tagged [`BASE_TAG`], and the merges.
pub struct KubeRepo {
    pub dir: PathBuf,
    pub base: String,
    /// Merge `i` is `merges[i - 1]`.
    pub merges: Vec<String>,
}

impl KubeRepo {
    /// Merge `i`'s SHA (numbered from 1).
    pub fn m(&self, i: usize) -> &str {
        &self.merges[i - 1]
    }

    /// The pull request merge `i` merged.
    pub fn pr(i: usize) -> u32 {
        132400 + i as u32
    }

    /// Which merge `sha` is (0: the base).
    pub fn which(&self, sha: &str) -> Option<usize> {
        if sha == self.base {
            return Some(0);
        }
        self.merges.iter().position(|m| m == sha).map(|i| i + 1)
    }
}

/// A Kubernetes-like checkout whose build entry points (`build/run.sh` and `make`) write a
/// stand-in kube-proxy holding the tree's `proxier-wip.go` and kube-proxy's code (`pkg/proxy`,
/// `cmd/kube-proxy`), and record how they were called. A `build/fail` file, or a Go file with
/// [`DOES_NOT_COMPILE`], makes them fail as a compile error would.
pub fn kube_proxy_source(dir: &Path) {
    kubernetes_like(dir);
    let script = r##"#!/bin/sh
# Stand-in for Kubernetes' build entry points: build/run.sh make all WHAT=... KUBE_BUILD_PLATFORMS=linux/ARCH
root=$(cd "$(dirname "$0")/.." && pwd)
sub=${KINDRED_TEST_SUB:-dockerized}
plat=linux/amd64
for a in "$@"; do case "$a" in KUBE_BUILD_PLATFORMS=*) plat=${a#KUBE_BUILD_PLATFORMS=};; esac; done
echo "$0 $*" >> "$root/../build-calls.log"
echo "+++ [1128 10:00:00] Building go targets for $plat: cmd/kube-proxy"
# The marker, split so that this script does not hold it.
marker="kindred-test: does not"; marker="$marker compile"
bad=$(grep -rl --include='*.go' "$marker" "$root" 2>/dev/null | head -n 1)
if [ -n "$bad" ]; then
  echo "${bad#"$root"/}:3:1: syntax error: unexpected }" >&2
  echo "!!! [1128 10:00:01] Call tree:" >&2
  exit 1
fi
if [ -f "$root/build/fail" ]; then
  echo "pkg/proxy/nftables/proxier.go:42:1: syntax error: unexpected }" >&2
  echo "!!! [1128 10:00:01] Call tree:" >&2
  exit 1
fi
mkdir -p "$root/_output/$sub/bin/$plat"
out="$root/_output/$sub/bin/$plat/kube-proxy"
{ echo '#!/bin/sh'; echo "# kube-proxy built from:"; sed 's/^/# /' "$root/proxier-wip.go" 2>/dev/null
  for d in pkg/proxy cmd/kube-proxy; do
    [ -d "$root/$d" ] && (cd "$root" && find "$d" -type f -name '*.go' | LC_ALL=C sort | while read -r f; do echo "# == $f"; sed 's/^/# /' "$f"; done)
  done
} > "$out"
chmod +x "$out"
"##;
    std::fs::create_dir_all(dir.join("build")).unwrap();
    std::fs::write(dir.join("build/run.sh"), script).unwrap();
    std::fs::write(
        dir.join("Makefile"),
        "all:\n\tKINDRED_TEST_SUB=local sh build/run.sh $(MAKEFLAGS)\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("build/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(
        dir.join("proxier-wip.go"),
        "package nftables // committed\n",
    )
    .unwrap();
    git(dir, &["add", "."]);
    git(dir, &["commit", "-qm", "build entry points"]);
}

const PROXIER: &str = "pkg/proxy/nftables/proxier.go";

/// The files of the tree before M1: kube-proxy's code, a package only it imports
/// (`pkg/util/conntrack`), the API types in `staging/` (imported by kube-proxy and the kubelet),
/// the kubelet.
fn skeleton(dir: &Path) {
    let files = [
        (
            PROXIER,
            "package nftables\n\nimport (\n\t\"k8s.io/api/core/v1\"\n\t\"k8s.io/kubernetes/pkg/util/conntrack\"\n)\n",
        ),
        (
            "pkg/proxy/iptables/proxier.go",
            "package iptables\n\nimport \"k8s.io/api/core/v1\"\n",
        ),
        (
            "cmd/kube-proxy/proxy.go",
            "package main\n\nimport _ \"k8s.io/kubernetes/pkg/proxy/nftables\"\n",
        ),
        ("pkg/util/conntrack/conntrack.go", "package conntrack\n"),
        ("staging/src/k8s.io/api/core/v1/types.go", "package v1\n"),
        (
            "pkg/kubelet/kubelet.go",
            "package kubelet\n\nimport \"k8s.io/api/core/v1\"\n",
        ),
        ("pkg/kubelet/kubelet_test.go", "package kubelet\n"),
        ("CHANGELOG/CHANGELOG-1.35.md", "# v1.35\n"),
    ];
    for (f, text) in files {
        let p = dir.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    // Kubernetes reaches staging through vendor/.
    std::fs::create_dir_all(dir.join("vendor")).unwrap();
    std::os::unix::fs::symlink("../staging/src/k8s.io", dir.join("vendor/k8s.io")).unwrap();
}

/// What merge `i` changes: (file, how).
enum Change {
    Append(&'static str),
    AddLine(&'static str),
    RemoveLine(&'static str),
}

fn change_of(i: usize) -> (&'static str, Change) {
    use Change::*;
    match i {
        2 => ("CHANGELOG/CHANGELOG-1.35.md", Append("- docs only\n")),
        3 => (
            "pkg/util/conntrack/conntrack.go",
            Append("// conntrack: cleared per flow\n"),
        ),
        5 => (
            "pkg/kubelet/kubelet_test.go",
            Append("// a test of the kubelet\n"),
        ),
        UNBUILDABLE => (PROXIER, AddLine(DOES_NOT_COMPILE)),
        7 => (PROXIER, RemoveLine(DOES_NOT_COMPILE)),
        FLAKY_AT => (PROXIER, AddLine(FLAKY)),
        9 => (PROXIER, RemoveLine(FLAKY)),
        BREAK => (PROXIER, AddLine(DROPS_HOST)),
        12 => ("cmd/kube-proxy/proxy.go", Append("// flags\n")),
        FIX => (PROXIER, RemoveLine(DROPS_HOST)),
        STAGING => (
            "staging/src/k8s.io/api/core/v1/types.go",
            Append("// a new field\n"),
        ),
        BREAK2 => (PROXIER, AddLine(DROPS_POD)),
        22 => ("CHANGELOG/CHANGELOG-1.35.md", Append("- more docs\n")),
        24 => ("cmd/kube-proxy/proxy.go", Append("// more flags\n")),
        i if i % 2 == 0 => (
            "pkg/proxy/iptables/proxier.go",
            Append("// a harmless change\n"),
        ),
        _ => (PROXIER, Append("// a harmless change\n")),
    }
}

fn apply(dir: &Path, i: usize) {
    let (file, change) = change_of(i);
    let p = dir.join(file);
    let mut text = std::fs::read_to_string(&p).unwrap();
    match change {
        Change::Append(s) => {
            text.push_str(&s.replace("change", &format!("change (#{})", KubeRepo::pr(i))))
        }
        Change::AddLine(l) => text.push_str(&format!("{l}\n")),
        Change::RemoveLine(l) => {
            let before = text.len();
            text = text.replace(&format!("{l}\n"), "");
            assert_ne!(before, text.len(), "merge {i} removes {l}");
        }
    }
    std::fs::write(p, text).unwrap();
}

/// The repository in `dir` (made empty by the caller): [`kube_proxy_source`], the skeleton,
/// the tag [`BASE_TAG`], then [`MERGES`] merges on master, each of a side branch of one commit.
pub fn kube_repo(dir: &Path) -> KubeRepo {
    kube_proxy_source(dir);
    skeleton(dir);
    git(dir, &["add", "."]);
    git(
        dir,
        &["commit", "-qm", "kube-proxy, the kubelet and the API types"],
    );
    git(dir, &["tag", BASE_TAG]);
    let base = git(dir, &["rev-parse", "HEAD"]);
    let mut merges = Vec::new();
    for i in 1..=MERGES {
        let pr = KubeRepo::pr(i);
        let branch = format!("dev{i}/change-{i}");
        git(dir, &["checkout", "-qb", &branch]);
        apply(dir, i);
        git(dir, &["commit", "-qam", &format!("change {i}")]);
        git(dir, &["checkout", "-q", "master"]);
        let msg = format!("Merge pull request #{pr} from {branch}\n\nchange {i}");
        git(dir, &["merge", "-q", "--no-ff", "-m", &msg, &branch]);
        merges.push(git(dir, &["rev-parse", "HEAD"]));
    }
    KubeRepo {
        dir: dir.to_path_buf(),
        base,
        merges,
    }
}

/// The nftables table the kube-proxy built from `code` writes: the Service's rule, and with
/// [`DROPS_HOST`] a rule in `filter-output` that drops what the node itself sends to it.
pub fn proxy_table(code: &str) -> String {
    let drop = if code.contains(DROPS_HOST) {
        "\t\tip daddr 10.96.0.10 tcp dport 80 drop comment \"locally originated traffic to a Service without a local endpoint\"\n"
    } else {
        ""
    };
    format!(
        "table ip kube-proxy {{\n\tchain filter-output {{\n\t\ttype filter hook output priority -110; policy accept;\n{drop}\t}}\n\tchain services {{\n\t\tip daddr 10.96.0.10 tcp dport 80 accept comment \"default/echo:http\"\n\t}}\n}}\n"
    )
}

/// Replace table ip kube-proxy in `container` with `table` (nft -f, no time limit armed: see
/// [`docker`]).
fn nft_in(container: &str, table: &str) {
    use std::io::Write;
    let mut ch = std::process::Command::new("docker")
        .args(["exec", "-i", container, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let text = format!("table ip kube-proxy\ndelete table ip kube-proxy\n{table}");
    ch.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let o = ch.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "nft -f in {container}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// What a PR cluster of the stand-in kind runs now, and so how its probes answer: the
/// kube-proxy of its node image (the tree that image was built from, as the stand-in kind's
/// `build node-image` kept it), or, once a swap rolled out on those very nodes, the swapped
/// kube-proxy's binary (read out of its image).
pub struct Running {
    kind_dir: PathBuf,
    cluster: String,
    /// The node container the swap rolled out on, and the swapped binary.
    swapped: Mutex<Option<(String, String)>>,
    /// Probes of each pod so far (a flaky kube-proxy answers every other one).
    calls: Mutex<HashMap<String, u32>>,
    /// Every image a swap rolled out, in order.
    pub rolled_out: Mutex<Vec<String>>,
}

impl Running {
    pub fn new(kind_dir: &Path, cluster: &str) -> Arc<Running> {
        Arc::new(Running {
            kind_dir: kind_dir.to_path_buf(),
            cluster: cluster.into(),
            swapped: Mutex::new(None),
            calls: Mutex::new(HashMap::new()),
            rolled_out: Mutex::new(Vec::new()),
        })
    }

    /// The worker's container id and the tree its node image was built from.
    fn node(&self) -> (String, String) {
        let f = "{{.Id}} {{index .Config.Labels \"io.kindred.test.tree\"}}";
        let out = docker(&["inspect", "-f", f, &format!("{}-worker", self.cluster)]);
        let (id, sum) = out.split_once(' ').unwrap_or((&out, ""));
        (id.to_string(), sum.to_string())
    }

    /// The kube-proxy code the cluster runs now.
    pub fn code(&self) -> String {
        let (id, sum) = self.node();
        if let Some((node, bin)) = &*self.swapped.lock().unwrap()
            && *node == id
        {
            return bin.clone();
        }
        let tree = self.kind_dir.join(format!("built-tree-{sum}.txt"));
        std::fs::read_to_string(&tree)
            .unwrap_or_else(|e| panic!("{}: no tree for the node image: {e}", tree.display()))
    }

    /// Whether a curl from `pod` times out now.
    pub fn times_out(&self, pod: &str) -> bool {
        let code = self.code();
        let c = &self.cluster;
        if code.contains(DROPS_HOST) && pod == format!("netshoot-{c}-worker") {
            return true;
        }
        if code.contains(DROPS_POD) && pod == format!("overlay-{c}-worker") {
            return true;
        }
        if code.contains(FLAKY) && pod == format!("netshoot-{c}-worker2") {
            let mut calls = self.calls.lock().unwrap();
            let n = calls.entry(pod.to_string()).or_default();
            *n += 1;
            return n.is_multiple_of(2);
        }
        false
    }

    /// For [`super::apiserver::ProxyDs::on_rollout`]: the swapped kube-proxy now runs.
    pub fn on_rollout(self: &Arc<Self>) -> super::apiserver::OnRollout {
        let me = self.clone();
        Box::new(move |image: &str| {
            let bin = docker(&[
                "run",
                "--rm",
                "--entrypoint",
                "/bin/cat",
                image,
                "/usr/local/bin/kube-proxy",
            ]);
            // As a kube-proxy does once it runs: its rules on every node.
            let table = proxy_table(&bin);
            for n in ["control-plane", "worker", "worker2"] {
                nft_in(&format!("{}-{n}", me.cluster), &table);
            }
            let (id, _) = me.node();
            *me.swapped.lock().unwrap() = Some((id, bin));
            me.rolled_out.lock().unwrap().push(image.to_string());
        })
    }

    /// For [`super::apiserver::Cluster::decide`].
    pub fn decide(self: &Arc<Self>) -> super::apiserver::Decide {
        let me = self.clone();
        Arc::new(move |pod: &str| me.times_out(pod))
    }
}

// ---- A live PR side for bisects (tests/live_bisect.rs, benches/bisect.rs) ----

/// A bisect's events, sorted out.
#[derive(Debug, Default)]
pub struct BisectRun {
    pub started: Option<BisectEvent>,
    pub testing: Vec<(String, StepRole)>,
    pub steps: Vec<Step>,
    pub remaining: Vec<usize>,
    pub end: Option<BisectEnd>,
    pub error: Option<String>,
}

pub fn sort_out(ev: Vec<Event>, error: Option<String>) -> BisectRun {
    let mut run = BisectRun {
        error,
        ..BisectRun::default()
    };
    for e in ev {
        let Event::Bisect(b) = e else { continue };
        match b {
            BisectEvent::Started { .. } => {
                assert!(run.started.is_none(), "started twice");
                run.started = Some(b);
            }
            BisectEvent::Testing { commit, role } => run.testing.push((commit.sha, role)),
            BisectEvent::Step(s) => run.steps.push(s),
            BisectEvent::Remaining { candidates, .. } => run.remaining.push(candidates),
            BisectEvent::Done(end) => {
                assert!(run.end.is_none(), "done twice");
                run.end = Some(end);
            }
        }
    }
    run
}

/// A PR side of the stand-in kind built from a generated repository, and what a bisect over it
/// needs around it (see [`bisect_setup`]).
pub struct BisectSetup {
    pub _tmp: tempfile::TempDir,
    pub repo: KubeRepo,
    pub kind_dir: PathBuf,
    pub sc: Scenario,
    pub running: Arc<Running>,
    pub ds: Arc<ProxyDs>,
    pub _cleanup: Cleanup,
    pub images: Images,
}

impl Drop for BisectSetup {
    fn drop(&mut self) {
        // Every image the steps made: the node images by commit, the swapped kube-proxies.
        let mut tags: Vec<String> = std::iter::once(&self.repo.base)
            .chain(&self.repo.merges)
            .map(|c| kindred::backend::docker::commit_tag(c))
            .collect();
        tags.extend(self.running.rolled_out.lock().unwrap().iter().cloned());
        self.images.0.extend(tags);
    }
}

/// A PR side built from the generated repository, no cluster yet (the bisect makes it), its
/// API server stand-in answering by what the cluster runs.
pub fn bisect_setup(tag: &str, subnet: u8) -> BisectSetup {
    image();
    let pid = std::process::id();
    let network = format!("kindred-bisect-{tag}{pid}");
    network_create(&network, &["--subnet", &format!("172.{subnet}.0.0/16")]);
    let tmp = tempfile::tempdir().unwrap();
    in_process_state();
    let src = tmp.path().join("kubernetes");
    std::fs::create_dir_all(&src).unwrap();
    let repo = kube_repo(&src);
    let kind_dir = tmp.path().join("kind");
    std::fs::create_dir_all(&kind_dir).unwrap();
    let mut sc = Scenario::builtin();
    for (s, t, r) in [(&mut sc.base, "b", BASE_TAG), (&mut sc.pr, "p", "master")] {
        s.source = src.display().to_string();
        s.git_ref = r.into();
        s.image = format!("kindred-bisect-{tag}{t}{pid}:test");
        s.name = format!("bi{tag}{t}{pid}");
    }
    sc.load_balancer.manifest = Some(fixture("metallb/metallb-native.yaml").display().to_string());
    sc.load_balancer.network = network.clone();
    sc.probes.targets[0] = Target::Addr(format!("172.{subnet}.255.200:80"));
    let name = sc.pr.name.clone();
    // The kube-proxy image the node images run, as the swap finds it in the DaemonSet.
    let proxy = format!("kindred-test-kube-proxy:bisect{tag}{pid}");
    super::docker(&["tag", IMAGE, &proxy]);
    let running = Running::new(&kind_dir, &name);
    let mut ds = ProxyDs::new(&proxy, true);
    ds.on_rollout = Some(running.on_rollout());
    BisectSetup {
        _tmp: tmp,
        repo,
        kind_dir,
        running,
        ds: Arc::new(ds),
        _cleanup: Cleanup {
            clusters: vec![name],
            network,
        },
        images: Images(vec![proxy, sc.pr.image.clone(), sc.base.image.clone()]),
        sc,
    }
}

/// Serve the PR cluster's API server and tie it to the stand-in kind.
pub async fn serve_pr(s: &BisectSetup) -> ApiServer {
    let name = s.sc.pr.name.clone();
    let manifest = std::fs::read_to_string(fixture("metallb/metallb-native.yaml")).unwrap();
    let pool = kindred::backend::metallb::pool_yaml(
        "1.1.1.1".parse().unwrap(),
        "1.1.1.2".parse().unwrap(),
    );
    let yaml = format!(
        "{manifest}\n---\n{pool}\n---\n{}",
        s.sc.workloads_for(&name).unwrap()
    );
    let (server, _) = Cluster {
        name: name.clone(),
        yaml,
        proxy: Some(s.ds.clone()),
        decide: Some(s.running.decide()),
        ..Cluster::default()
    }
    .serve()
    .await;
    tie(&s.kind_dir, &name, &server);
    server
}

pub fn request(good: &str, bad: &str, repeat: u32) -> BisectRequest {
    BisectRequest {
        good: good.into(),
        bad: bad.into(),
        probe: None,
        repeat,
        path: PathChoice::Auto,
        all_commits: false,
    }
}

pub async fn bisect(
    backend: &mut kindred::backend::live::LiveBackend,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    req: BisectRequest,
) -> BisectRun {
    backend.send(Command::Bisect(Box::new(req)));
    let (ev, err) = until_finished(rx, Job::Bisect).await;
    sort_out(ev, err)
}
