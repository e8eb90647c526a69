//! The live dashboard as a person uses it: tmux runs `kindred up` with a stand-in `kind` on PATH
//! and a real Docker engine; keys create the clusters, read the rules and delete the clusters.
//! Needs Docker and tmux; ignored by plain `cargo test`, run by CI.

mod common;
use common::*;

use std::process::Command;
use std::time::{Duration, Instant};

struct Session {
    name: String,
    cleanup: Vec<String>,
    network: String,
}

impl Session {
    fn screen(&self) -> String {
        let o = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
    fn keys(&self, k: &str) {
        assert!(
            Command::new("tmux")
                .args(["send-keys", "-t", &self.name, k])
                .status()
                .unwrap()
                .success()
        );
    }
    fn wait(&self, what: &str, ok: impl Fn(&str) -> bool, secs: u64) -> String {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}:\n{s}");
            std::thread::sleep(Duration::from_millis(150));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
        for c in &self.cleanup {
            for n in ["control-plane", "worker", "worker2"] {
                let _ = Command::new("docker")
                    .args(["rm", "-f", &format!("{c}-{n}")])
                    .output();
            }
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
    }
}

#[test]
#[ignore = "needs Docker and tmux (CI runs both)"]
fn create_read_rules_and_delete_from_the_keyboard() {
    image();
    let pid = std::process::id();
    let (a, b) = (format!("ua{pid}"), format!("ub{pid}"));
    let network = format!("kindred-dash-{pid}");
    docker(&["network", "create", &network]);
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    standin(&bin, &network);
    let scenario = kindred::scenario::DEFAULT
        .replacen("  name: master", &format!("  name: {a}"), 1)
        .replacen("  name: \"77523\"", &format!("  name: \"{b}\""), 1);
    let sc = tmp.path().join("kindred.yaml");
    std::fs::write(&sc, scenario).unwrap();
    let cmd = format!(
        "PATH={}:$PATH XDG_STATE_HOME={} KINDRED_LOG={} {} -f {} up; echo KINDRED-EXIT=$?; sleep 60",
        bin.display(),
        tmp.path().join("state").display(),
        tmp.path().join("log").display(),
        env!("CARGO_BIN_EXE_kindred"),
        sc.display()
    );
    let name = format!("kindred-dash-{pid}");
    assert!(
        Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                "160",
                "-y",
                "50",
                &cmd
            ])
            .env_remove("TMUX")
            .status()
            .unwrap()
            .success()
    );
    let t = Session {
        name,
        cleanup: vec![a.clone(), b.clone()],
        network,
    };

    let s = t.wait(
        "the start-up hint",
        |s| s.contains(&format!("no cluster {a}: b build")),
        20,
    );
    assert!(
        s.contains(&format!("{a} (base)")) && s.contains(&format!("{b} (PR)")),
        "{s}"
    );

    // c: both clusters created (by the stand-in kind), their nodes named in the Build pane.
    t.keys("c");
    let s = t.wait(
        "both clusters",
        |s| s.matches("✓ cluster create").count() == 2,
        60,
    );
    assert!(s.contains("· nodes control-plane"), "{s}");

    // Rules on the workers, as kube-proxy before and after PR 77523 would have written them.
    let master = std::fs::read_to_string(fixture(
        "iptables/mauilion-blog-2019-master-cluster-KUBE-XLB.txt",
    ))
    .unwrap();
    let pr = std::fs::read_to_string(fixture(
        "iptables/mauilion-blog-2019-pr77523-cluster-KUBE-XLB.txt",
    ))
    .unwrap();
    for (node, rules) in [(format!("{a}-worker"), master), (format!("{b}-worker"), pr)] {
        use std::io::Write;
        let mut ch = Command::new("docker")
            .args(["exec", "-i", &node, "iptables-legacy-restore"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        ch.stdin
            .take()
            .unwrap()
            .write_all(restorable(&rules).as_bytes())
            .unwrap();
        assert!(ch.wait().unwrap().success());
    }
    // r: the rules of all six nodes are read; the Diff pane shows the two LOCAL rules.
    t.keys("r");
    let s = t.wait(
        "the diff",
        |s| s.contains("=== default/echo: (changed, +2 -0)"),
        30,
    );
    assert!(
        s.contains("+ -A KUBE-XLB-<hash> -m comment --comment \"route LOCAL traffic"),
        "{s}"
    );
    assert!(
        s.contains(&format!("node worker: {a}-worker ↔ {b}-worker")),
        "{s}"
    );

    // x asks, y deletes both (kindred created them).
    t.keys("x");
    t.wait("the question", |s| s.contains("Delete clusters"), 10);
    t.keys("y");
    t.wait(
        "deletion",
        |s| s.matches("Deleting cluster").count() >= 1,
        30,
    );
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let left = docker(&[
            "ps",
            "-a",
            "-q",
            "--filter",
            &format!("label=io.x-k8s.kind.cluster={a}"),
        ]);
        let left2 = docker(&[
            "ps",
            "-a",
            "-q",
            "--filter",
            &format!("label=io.x-k8s.kind.cluster={b}"),
        ]);
        if left.is_empty() && left2.is_empty() {
            break;
        }
        assert!(Instant::now() < end, "clusters not deleted");
        std::thread::sleep(Duration::from_millis(200));
    }
    t.keys("q");
    let s = t.wait("exit", |s| s.contains("KINDRED-EXIT="), 15);
    assert!(s.contains("KINDRED-EXIT=0"), "{s}");
}
