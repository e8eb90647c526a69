//! The live dashboard as a person uses it: tmux runs `kindred up` with a stand-in `kind` on PATH
//! and a real Docker engine; keys create the clusters, read the rules and delete the clusters.
//! Needs Docker and tmux; ignored by plain `cargo test`, run by CI.

mod common;
use common::*;

use std::time::{Duration, Instant};

/// Test clusters' containers and network, removed on drop.
fn containers_of(cluster: &str) -> String {
    docker(&[
        "ps",
        "-a",
        "-q",
        "--filter",
        &format!("label=io.x-k8s.kind.cluster={cluster}"),
    ])
}

#[test]
#[ignore = "needs Docker and tmux (CI runs both)"]
fn create_read_rules_and_delete_from_the_keyboard() {
    image();
    let pid = std::process::id();
    let (a, b) = (format!("ua{pid}"), format!("ub{pid}"));
    let network = format!("kindred-dash-{pid}");
    network_create(&network, &[]);
    let _cleanup = Cleanup {
        clusters: vec![a.clone(), b.clone()],
        network: network.clone(),
    };
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    standin(&bin, &network);
    let scenario = kindred::scenario::WALKTHROUGH_2019
        .replacen("  name: master", &format!("  name: {a}"), 1)
        .replacen("  name: \"77523\"", &format!("  name: \"{b}\""), 1);
    let sc = tmp.path().join("kindred.yaml");
    std::fs::write(&sc, scenario).unwrap();
    let cmd = format!(
        "PATH={}:$PATH XDG_STATE_HOME={} KUBECONFIG={} {} -f {} up",
        bin.display(),
        tmp.path().join("state").display(),
        tmp.path().join("user-kubeconfig").display(),
        env!("CARGO_BIN_EXE_kindred"),
        sc.display()
    );
    let t = Tmux::start_sized("dash", &cmd, 160, 50);

    let s = t.wait_until("the start-up hint", 20, |s| {
        s.contains(&format!("no cluster {a}: B build"))
    });
    assert!(
        s.contains(&format!("{a} (base)")) && s.contains(&format!("{b} (PR)")),
        "{s}"
    );

    // c: both clusters created (by the stand-in kind), their nodes named in the Build pane.
    t.keys(&["c"]);
    let s = t.wait_until("both clusters", 60, |s| {
        s.matches("✓ cluster create").count() == 2
    });
    assert!(s.contains("· nodes control-plane"), "{s}");
    // kind's export set the current context of the (new) user kubeconfig: the pane says so.
    assert!(s.contains("kubectl's current context now kind-u"), "{s}");

    // Rules on the workers, as kube-proxy before and after PR 77523 would have written them.
    let master = std::fs::read_to_string(fixture(
        "iptables/mauilion-blog-2019-master-cluster-KUBE-XLB.txt",
    ))
    .unwrap();
    let pr = std::fs::read_to_string(fixture(
        "iptables/mauilion-blog-2019-pr77523-cluster-KUBE-XLB.txt",
    ))
    .unwrap();
    restore_in(
        &format!("{a}-worker"),
        "iptables-legacy-restore",
        &restorable(&master),
    );
    restore_in(
        &format!("{b}-worker"),
        "iptables-legacy-restore",
        &restorable(&pr),
    );
    // r: the rules of all six nodes are read; the Diff pane shows the two LOCAL rules.
    t.keys(&["r"]);
    let s = t.wait_for("=== default/echo: (changed, +2 -0)", 30);
    assert!(
        s.contains("+ -A KUBE-XLB-<hash> -m comment --comment \"route LOCAL traffic"),
        "{s}"
    );
    assert!(
        s.contains(&format!("node worker: {a}-worker ↔ {b}-worker")),
        "{s}"
    );

    // x asks, y deletes both (kindred created them).
    t.keys(&["x"]);
    t.wait_for("Delete clusters", 10);
    t.keys(&["y"]);
    t.wait_for("Deleting cluster", 30);
    let end = Instant::now() + Duration::from_secs(30);
    while !(containers_of(&a).is_empty() && containers_of(&b).is_empty()) {
        assert!(Instant::now() < end, "clusters not deleted");
        std::thread::sleep(Duration::from_millis(200));
    }
    t.keys(&["q"]);
    let s = t.wait_for("KINDRED-EXIT=", 15);
    assert!(s.contains("KINDRED-EXIT=0"), "{s}");
}
