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

use super::{git, kubernetes_like};

/// The docker CLI's output, trimmed; panics naming the call when it fails. Unlike
/// [`super::docker`] it arms no time limit: it runs on the API server stand-in's threads.
fn docker(args: &[&str]) -> String {
    let o = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(
        o.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

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
