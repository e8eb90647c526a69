//! The dashboard attached to two sides that are clusters kindred did not create: two contexts
//! of one kubeconfig, each an API server stand-in in this test process. Both sides' nodes and
//! the Diff pane come through the API servers; the keys that would build or create say why
//! they do nothing; Docker (a socket that counts connections) and kind (a script that logs)
//! are never asked.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::Tmux;
use common::cluster::{Dump, IPTABLES_MASTER, IPTABLES_PR};
use common::contexts::{many_nodes, two_contexts, two_contexts_of};

#[test]
#[ignore = "needs tmux (CI runs it)"]
fn the_dashboard_on_two_contexts_reads_them_and_says_why_b_and_c_do_nothing() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let t = rt.block_on(two_contexts("", ""));
    let dir = t.dir.path();
    // Docker: a socket that counts who connects; kind: a script that logs its argv.
    let sock = dir.join("docker.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let docker = Arc::new(AtomicUsize::new(0));
    let d = docker.clone();
    std::thread::spawn(move || {
        for c in listener.incoming() {
            d.fetch_add(1, Ordering::SeqCst);
            drop(c);
        }
    });
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let kind_log = dir.join("kind.log");
    let script = format!(
        "#!/bin/sh\necho \"$@\" >> '{}'\nexit 1\n",
        kind_log.display()
    );
    std::fs::write(bin.join("kind"), script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("kind"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cmd = format!(
        "PATH={}:$PATH DOCKER_HOST=unix://{} KUBECONFIG={} {} -f {} up --no-mouse",
        bin.display(),
        sock.display(),
        dir.join("no-kubeconfig").display(),
        env!("CARGO_BIN_EXE_kindred"),
        t.scenario.display()
    );
    let tmux = Tmux::start_sized("ctx", &cmd, 160, 48);
    // Both sides' nodes, paired in the Diff pane, and the diff of their rules.
    let s = tmux.wait_for("=== default/echo: (changed", 30);
    for want in [
        "staging (base) context ctx-staging",
        "prod (PR) context ctx-prod",
        "node control-plane: staging-control-plane ↔ prod-control-plane",
        "b p f c: base is context ctx-staging, PR is context ctx-prod (read only)",
    ] {
        assert!(s.contains(want), "{want}:\n{s}");
    }
    // The node without kube-proxy is named on its side, never diffed as all rules removed.
    tmux.keys(&["N"]);
    let s = tmux.wait_for("node worker:", 10);
    assert!(!s.contains("worker2 ↔"), "{s}");
    for (key, what) in [
        ("b", "b does nothing"),
        ("f", "f does nothing"),
        ("c", "c does nothing"),
    ] {
        tmux.keys(&[key]);
        let s = tmux.wait_for(what, 10);
        assert!(
            s.contains(&format!("{what}: base is context ctx-staging")),
            "{s}"
        );
    }
    tmux.keys(&["q"]);
    tmux.wait_for("KINDRED-EXIT=0", 15);
    assert_eq!(docker.load(Ordering::SeqCst), 0, "Docker was called");
    let kind = std::fs::read_to_string(&kind_log).unwrap_or_default();
    assert_eq!(kind, "", "kind was called");
    // Nothing was created in either cluster.
    for s in [&t.staging, &t.prod] {
        let writes: Vec<String> = s
            .server
            .requests()
            .into_iter()
            .filter(|r| {
                r.method != "GET"
                    && !r.path.ends_with("/exec")
                    && !r.path.ends_with("/selfsubjectaccessreviews")
            })
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(writes.is_empty(), "{writes:?}");
    }
}

/// Two contexts of six workers each, every worker of a side with the same rules: the Diff pane
/// compares group to group (`worker group A: 6 nodes, same rules`), not six node pairs.
#[test]
#[ignore = "needs tmux (CI runs it)"]
fn the_dashboard_on_two_contexts_of_many_nodes_shows_groups() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let staging = many_nodes("staging", 6, &Dump::iptables(IPTABLES_MASTER));
    let prod = many_nodes("prod", 6, &Dump::iptables(IPTABLES_PR));
    let t = rt.block_on(two_contexts_of(staging, prod, "", ""));
    let dir = t.dir.path();
    let cmd = format!(
        "DOCKER_HOST=unix://{} KUBECONFIG={} {} -f {} up --no-mouse",
        dir.join("no-docker.sock").display(),
        dir.join("no-kubeconfig").display(),
        env!("CARGO_BIN_EXE_kindred"),
        t.scenario.display()
    );
    let tmux = Tmux::start_sized("ctxg", &cmd, 160, 48);
    // Two pairs: the control planes (each alone), then the worker groups.
    tmux.wait_for("(1/2)", 30);
    tmux.keys(&["N"]);
    let s = tmux.wait_for("worker group A: 6 nodes, same rules", 10);
    assert!(
        s.contains("↔ PR worker group A: 6 nodes"),
        "the PR's group:\n{s}"
    );
    assert!(!s.contains("node worker2:"), "node by node:\n{s}");
    tmux.keys(&["q"]);
    tmux.wait_for("KINDRED-EXIT=0", 15);
    drop(rt);
}
