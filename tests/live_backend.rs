//! The live backend's cluster pipeline against a real Docker engine, with a stand-in `kind` that
//! creates and deletes node containers as kind would (same names and labels): creation is
//! recorded, a cluster kindred did not create is never recreated nor deleted, rules of every node
//! are read through bollard and sent only when they change. Ignored by plain `cargo test`.

mod common;
use common::*;

use std::process::Command;

use kindred::backend::event::{Event, Phase, PhaseState, Side};
use kindred::backend::live::{LiveBackend, create, delete, rules};
use kindred::backend::owned::{Owned, default_path};
use kindred::scenario::Scenario;
use tokio_util::sync::CancellationToken;

fn drain(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>) -> Vec<Event> {
    let mut v = Vec::new();
    while let Ok(e) = rx.try_recv() {
        v.push(e);
    }
    v
}

#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn create_record_rules_and_delete_only_what_kindred_created() {
    image();
    let pid = std::process::id();
    let other = format!("lo{pid}");
    let mine = format!("lm{pid}");
    let network = format!("kindred-live-{pid}");
    docker(&["network", "create", &network]);
    let _cleanup = Cleanup {
        clusters: vec![other.clone(), mine.clone()],
        network: network.clone(),
    };
    let tmp = tempfile::tempdir().unwrap();
    // SAFETY: single test in this binary; the state dir is read from the environment.
    unsafe { std::env::set_var("XDG_STATE_HOME", tmp.path().join("state")) };
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
        |_| {},
        &CancellationToken::new(),
    ))
    .unwrap();

    let mut sc = Scenario::builtin();
    sc.base.name = other.clone();
    sc.pr.name = mine.clone();
    let backend = LiveBackend::new(sc, kind);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let ctx = backend.ctx(tx, CancellationToken::new());

    rt.block_on(async {
        // Not ours: refused, nothing touched.
        let e = create(&ctx, Side::Base).await.unwrap_err().to_string();
        assert!(e.contains("kindred did not create it"), "{e}");
        let ev = drain(&mut rx);
        assert!(ev.iter().any(|e| matches!(e, Event::Phase { side: Side::Base, phase: Phase::Create, state: PhaseState::Failed { .. } })));

        // Ours: created, recorded, nodes reported.
        create(&ctx, Side::Pr).await.unwrap();
        let ev = drain(&mut rx);
        let nodes: Vec<_> = ev.iter().filter_map(|e| match e { Event::Node { side: Side::Pr, name, role, .. } => Some((name.clone(), role.clone())), _ => None }).collect();
        assert_eq!(nodes.len(), 3, "{ev:?}");
        assert!(nodes.contains(&(format!("{mine}-control-plane"), "control-plane".to_string())));
        assert!(ev.iter().any(|e| matches!(e, Event::Output { line, .. } if line.contains("Preparing nodes"))));
        assert!(ev.iter().any(|e| matches!(e, Event::Phase { side: Side::Pr, phase: Phase::Create, state: PhaseState::Done })));
        let first_id = docker(&["inspect", "-f", "{{.Id}}", &format!("{mine}-control-plane")]);
        let owned = Owned::load(&default_path()).unwrap();
        assert_eq!(owned.clusters.len(), 1);
        assert_eq!(owned.clusters[0].name, mine);
        assert_eq!(owned.clusters[0].control_plane_id, first_id);

        // Recreate: ours, so deleted and created again.
        create(&ctx, Side::Pr).await.unwrap();
        let ev = drain(&mut rx);
        assert!(ev.iter().any(|e| matches!(e, Event::Output { line, .. } if line.starts_with("Deleting cluster"))));
        let second_id = docker(&["inspect", "-f", "{{.Id}}", &format!("{mine}-control-plane")]);
        assert_ne!(first_id, second_id);
        assert_eq!(Owned::load(&default_path()).unwrap().clusters[0].control_plane_id, second_id);

        // Rules of all six nodes, read at once; unchanged dumps are not sent again.
        rules(&ctx).await.unwrap();
        let dumps: Vec<_> = drain(&mut rx).into_iter().filter_map(|e| match e { Event::RuleDump { node, .. } => Some(node), _ => None }).collect();
        assert_eq!(dumps.len(), 6, "{dumps:?}");
        rules(&ctx).await.unwrap();
        assert!(drain(&mut rx).iter().all(|e| !matches!(e, Event::RuleDump { .. })));
        let w = format!("{mine}-worker");
        let o = Command::new("docker").args(["exec", &w, "iptables-legacy", "-t", "nat", "-N", "KUBE-SERVICES"]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        rules(&ctx).await.unwrap();
        let again: Vec<_> = drain(&mut rx).into_iter().filter_map(|e| match e { Event::RuleDump { node, text, .. } => Some((node, text)), _ => None }).collect();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].0, w);
        assert!(again[0].1.contains(":KUBE-SERVICES"));

        // Delete: ours goes, the other stays (and says so).
        delete(&ctx).await.unwrap();
        let ev = drain(&mut rx);
        assert!(ev.iter().any(|e| matches!(e, Event::Error { message, .. } if message.contains(&format!("cluster {other} was not created by kindred: left alone")))));
        assert!(Owned::load(&default_path()).unwrap().clusters.is_empty());
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
