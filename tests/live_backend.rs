//! The live backend's cluster pipeline against a real Docker engine, with a stand-in `kind` that
//! creates and deletes node containers as kind would (same names and labels): creation is
//! recorded, a cluster kindred did not create is never recreated nor deleted, rules of every node
//! are read through bollard and sent only when they change. Ignored by plain `cargo test`.

mod common;
use common::*;

use kindred::backend::event::Event;
use kindred::backend::live::LiveBackend;
use kindred::backend::owned::{Owned, default_path};
use kindred::backend::{Backend, Command};
use kindred::model::{Job, NodeRole, Phase, PhaseState, ProxyMode, Side};
use kindred::scenario::Scenario;
use tokio_util::sync::CancellationToken;

fn dumps(ev: &[Event]) -> Vec<(String, String)> {
    ev.iter()
        .filter_map(|e| match e {
            Event::RuleDump { node, text, .. } => Some((node.clone(), text.clone())),
            _ => None,
        })
        .collect()
}

#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn create_record_rules_and_delete_only_what_kindred_created() {
    image();
    let pid = std::process::id();
    let other = format!("lo{pid}");
    let mine = format!("lm{pid}");
    let network = format!("kindred-live-{pid}");
    network_create(&network, &[]);
    let _cleanup = Cleanup {
        clusters: vec![other.clone(), mine.clone()],
        network: network.clone(),
    };
    let tmp = tempfile::tempdir().unwrap();
    // SAFETY: single test in this binary; the state dir is read from the environment.
    unsafe {
        std::env::set_var("XDG_STATE_HOME", tmp.path().join("state"));
        std::env::set_var("KUBECONFIG", tmp.path().join("user-kubeconfig"));
    }
    // The user's kubeconfig, pointing kubectl at a cluster of theirs.
    let user_kc = tmp.path().join("user-kubeconfig");
    let user_text = "apiVersion: v1\nclusters:\n- cluster:\n    server: https://work.example:6443\n  name: work\ncontexts:\n- context:\n    cluster: work\n    user: me\n  name: work\ncurrent-context: work\nkind: Config\npreferences: {}\nusers:\n- name: me\n  user:\n    token: t\n";
    std::fs::write(&user_kc, user_text).unwrap();
    let kind = standin(tmp.path(), &network);

    // A cluster somebody else made (with the same stand-in, but not through kindred).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(kind.create_cluster(
        &other,
        "img",
        &tmp.path().join("cfg"),
        &tmp.path().join("kubeconfig"),
        |_| {},
        &CancellationToken::new(),
    ))
    .unwrap();

    let mut sc = Scenario::builtin();
    sc.base.name = other.clone();
    sc.pr.name = mine.clone();
    // The kind-like nodes hold iptables rules.
    sc.cluster.proxy_mode = ProxyMode::Iptables;
    let pr_image = sc.pr.image.clone();
    let mut backend = LiveBackend::new(sc, kind);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();

    rt.block_on(async {
        // On start: the other cluster is found and its rules read; nothing of ours exists.
        backend.start(tx);
        let (ev, err) = until_finished(&mut rx, Job::Attach).await;
        assert_eq!(err, None, "{ev:?}");
        assert!(ev.iter().any(|e| matches!(e, Event::Phase { side: Side::Base, phase: Phase::Create, state: PhaseState::Skipped { .. } })));
        let mut read: Vec<String> = dumps(&ev).into_iter().map(|(n, _)| n).collect();
        assert_eq!(read.len(), 3, "{read:?}");

        // Create: the other cluster is refused and untouched; ours is created and recorded.
        backend.send(Command::CreateClusters);
        let (ev, err) = until_finished(&mut rx, Job::Create).await;
        let err = err.expect("the base side failed");
        assert!(err.contains("kindred did not create it") && err.contains(&other), "{err}");
        assert!(ev.iter().any(|e| matches!(e, Event::Phase { side: Side::Base, phase: Phase::Create, state: PhaseState::Failed { .. } })));
        let nodes: Vec<_> = ev.iter().filter_map(|e| match e { Event::Node { side: Side::Pr, name, role, .. } => Some((name.clone(), *role)), _ => None }).collect();
        assert_eq!(nodes.len(), 3, "{ev:?}");
        assert!(nodes.contains(&(format!("{mine}-control-plane"), NodeRole::ControlPlane)));
        assert!(ev.iter().any(|e| matches!(e, Event::Output { line, .. } if line.contains("Preparing nodes"))));
        assert!(ev.iter().any(|e| matches!(e, Event::Phase { side: Side::Pr, phase: Phase::Create, state: PhaseState::Done })));
        // Its own kubeconfig file for kind to lock and write; then the context exported.
        let argv = std::fs::read_to_string(tmp.path().join("argv.log")).unwrap();
        let kc = tmp.path().join("state/kindred/kubeconfig").join(&mine);
        assert!(argv.contains(&format!("create|cluster|--name|{mine}|--image|{pr_image}|--config|")), "{argv}");
        assert!(argv.contains(&format!("|--kubeconfig|{}|--wait|5m|", kc.display())), "{argv}");
        assert!(argv.contains(&format!("export|kubeconfig|--name|{mine}|")), "{argv}");
        // kind's export set the user's current context; kubectl still points where it did, and
        // the Build pane says so.
        let kept = format!("kubectl's current context still work; kind-{mine} added");
        assert!(ev.iter().any(|e| matches!(e, Event::Output { side: Side::Pr, line, .. } if *line == kept)), "{ev:?}");
        let after = std::fs::read_to_string(&user_kc).unwrap();
        assert!(after.contains("current-context: work\n") && after.contains(&format!("  name: kind-{mine}\n")), "{after}");
        // The cluster config kind got: the scenario's proxy mode, one control plane, 2 workers.
        let cfg = std::fs::read_to_string(tmp.path().join(format!("config-{mine}.yaml"))).unwrap();
        assert!(cfg.contains("kind: Cluster") && cfg.contains("kubeProxyMode: iptables"), "{cfg}");
        assert_eq!(cfg.matches("- role: control-plane").count(), 1, "{cfg}");
        assert_eq!(cfg.matches("- role: worker").count(), 2, "{cfg}");
        let first_id = docker(&["inspect", "-f", "{{.Id}}", &format!("{mine}-control-plane")]);
        let owned = Owned::load(&default_path()).unwrap();
        assert_eq!(owned.clusters.len(), 1);
        assert_eq!(owned.clusters[0].name, mine);
        assert_eq!(owned.clusters[0].control_plane_id, first_id);

        // Recreate: ours, so deleted and created again.
        backend.send(Command::CreateClusters);
        let (ev, _) = until_finished(&mut rx, Job::Create).await;
        assert!(ev.iter().any(|e| matches!(e, Event::Output { line, .. } if line.starts_with("Deleting cluster"))));
        let second_id = docker(&["inspect", "-f", "{{.Id}}", &format!("{mine}-control-plane")]);
        assert_ne!(first_id, second_id);
        assert_eq!(Owned::load(&default_path()).unwrap().clusters[0].control_plane_id, second_id);

        // Rules of all six nodes; unchanged dumps are not sent again.
        backend.send(Command::RefreshRules);
        let (ev, err) = until_finished(&mut rx, Job::Rules).await;
        assert_eq!(err, None);
        read.extend(dumps(&ev).into_iter().map(|(n, _)| n));
        read.sort();
        read.dedup();
        assert_eq!(read.len(), 6, "{read:?}");
        backend.send(Command::RefreshRules);
        let (ev, _) = until_finished(&mut rx, Job::Rules).await;
        assert!(dumps(&ev).is_empty(), "{ev:?}");
        let w = format!("{mine}-worker");
        let o = std::process::Command::new("docker").args(["exec", &w, "iptables-legacy", "-t", "nat", "-N", "KUBE-SERVICES"]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        backend.send(Command::RefreshRules);
        let (ev, _) = until_finished(&mut rx, Job::Rules).await;
        let again = dumps(&ev);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].0, w);
        assert!(again[0].1.contains(":KUBE-SERVICES"));

        // Delete: ours goes, the other stays (and says so).
        backend.send(Command::DeleteClusters);
        let (ev, err) = until_finished(&mut rx, Job::Delete).await;
        assert_eq!(err, None);
        assert!(ev.iter().any(|e| matches!(e, Event::Error { message, .. } if message.contains(&format!("cluster {other} was not created by kindred: left alone")))));
        assert!(Owned::load(&default_path()).unwrap().clusters.is_empty());
        backend.shutdown();
    });
    let left = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=io.x-k8s.kind.cluster={mine}"),
        "-q",
    ]);
    assert!(left.is_empty(), "kindred's cluster deleted");
    let kept = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=io.x-k8s.kind.cluster={other}"),
        "-q",
    ]);
    assert_eq!(kept.lines().count(), 3, "the other cluster kept");
}
