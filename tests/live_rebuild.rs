//! The inner loop's rebuild, end to end with real git and Docker, a stand-in `kind` and an API
//! server stand-in: a `worktree` side is built from the checkout as it is (staged, unstaged and
//! untracked edits), which is left byte for byte as it was; the same tree is not built again; a
//! rebuild of one side whose image did not change leaves its cluster alone, and one whose image
//! changed recreates and redeploys that side's cluster only.
//! Ignored by plain `cargo test` (needs Docker).

mod common;
use common::apiserver::Cluster;
use common::*;

use std::path::Path;
use std::time::Instant;

use kindred::backend::event::Event;
use kindred::backend::held::{Change, Fate};
use kindred::backend::{Backend, Command};
use kindred::model::{Job, Phase, PhaseState, Side, Sides, Target};
use kindred::scenario::Scenario;

/// What must not change in the user's checkout.
#[derive(Debug, PartialEq)]
struct Checkout {
    index: Vec<u8>,
    head: String,
    stash: String,
    status: String,
    files: Vec<(String, Vec<u8>)>,
}

/// The checkout's index bytes, HEAD, stash list, status and files.
fn checkout_state(dir: &Path) -> Checkout {
    let index = std::fs::read(dir.join(".git/index")).unwrap();
    let head = git(dir, &["rev-parse", "HEAD"]);
    let stash = git(dir, &["stash", "list"]);
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            files.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    files.sort();
    // Last: `git status` may refresh the index's stat data (kindred must not need it to).
    let status = git(dir, &["status", "--porcelain=v2", "--untracked-files=all"]);
    Checkout {
        index,
        head,
        stash,
        status,
        files,
    }
}

fn count(log: &Path, prefix: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .count()
}

fn phase_is(ev: &[Event], side: Side, phase: Phase, f: impl Fn(&PhaseState) -> bool) -> bool {
    ev.iter().any(
        |e| matches!(e, Event::Phase { side: s, phase: p, state } if *s == side && *p == phase && f(state)),
    )
}

fn said(ev: &[Event], side: Side, what: &str) -> bool {
    ev.iter().any(
        |e| matches!(e, Event::Output { side: s, line, .. } if *s == side && line.contains(what)),
    )
}

#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn worktree_builds_hold_every_edit_and_only_a_changed_image_recreates_its_cluster() {
    image();
    let pid = std::process::id();
    let network = format!("kindred-rebuild-{pid}");
    network_create(&network, &["--subnet", "172.29.0.0/16"]);
    let tmp = tempfile::tempdir().unwrap();
    in_process_state();
    let src = tmp.path().join("kubernetes");
    std::fs::create_dir_all(&src).unwrap();
    let (base_sha, _) = kubernetes_like(&src);
    // The user is mid-change: a staged edit, an unstaged one, an untracked file, a stash entry.
    std::fs::write(src.join("OWNER"), "stashed\n").unwrap();
    git(&src, &["stash", "-q"]);
    std::fs::write(src.join("OWNER"), "staged edit\n").unwrap();
    git(&src, &["add", "OWNER"]);
    std::fs::write(
        src.join("go.mod"),
        "module k8s.io/kubernetes\n\ngo 1.24\n// unstaged edit\n",
    )
    .unwrap();
    std::fs::write(
        src.join("proxier-wip.go"),
        "package nftables // untracked\n",
    )
    .unwrap();
    let before = checkout_state(&src);

    let kind_dir = tmp.path().join("kind");
    std::fs::create_dir_all(&kind_dir).unwrap();
    let kind = standin(&kind_dir, &network);
    let log = kind_dir.join("argv.log");
    let mut sc = Scenario::builtin();
    for (s, tag, r) in [
        (&mut sc.base, "wb", "v1.34.0"),
        (&mut sc.pr, "wp", "worktree"),
    ] {
        s.source = src.display().to_string();
        s.git_ref = r.into();
        s.image = format!("kindred-worktree-{tag}{pid}:test");
        s.name = format!("{tag}{pid}");
    }
    sc.load_balancer.manifest = Some(fixture("metallb/metallb-native.yaml").display().to_string());
    sc.load_balancer.network = network.clone();
    sc.probes.targets[0] = Target::Addr("172.29.255.200:80".into());
    let _cleanup = Cleanup {
        clusters: vec![sc.base.name.clone(), sc.pr.name.clone()],
        network: network.clone(),
    };
    let mut images = built_images(&sc, &[&base_sha]);
    let pr_img = sc.pr.image.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut servers = Vec::new();
        for side in Side::BOTH {
            let name = sc.side(side).name.clone();
            let manifest = std::fs::read_to_string(fixture("metallb/metallb-native.yaml")).unwrap();
            let pool = kindred::backend::metallb::pool_yaml("1.1.1.1".parse().unwrap(), "1.1.1.2".parse().unwrap());
            let yaml = format!("{manifest}\n---\n{pool}\n---\n{}", sc.workloads_for(&name).unwrap());
            let (server, _) = Cluster { name: name.clone(), yaml, ..Cluster::default() }.serve().await;
            tie(&kind_dir, &name, &server);
            servers.push(server);
        }
        let (mut backend, mut rx) = attached(sc.clone(), kind).await;

        // The images: the PR side from the working tree as it is.
        backend.send(Command::Build { sides: Sides::Both, recreate: false });
        let (ev, err) = until_finished(&mut rx, Job::Build).await;
        assert_eq!(err, None, "{ev:#?}");
        let snap = ev.iter().find_map(|e| match e {
            Event::Built { side: Side::Pr, commit, snapshot, version, .. } => Some((commit.clone(), snapshot.clone(), version.clone())),
            _ => None,
        });
        let (commit, snapshot, version) = snap.expect("the PR side built");
        images.0.push(kindred::backend::docker::commit_tag(&commit));
        let head = &base_sha[..7];
        assert_eq!(snapshot.as_deref(), Some(format!("HEAD {head} + 3 changed files").as_str()));
        assert!(version.is_some_and(|v| v.starts_with("v1.34.0")));
        let content = std::fs::read_to_string(kind_dir.join(format!("content-{pr_img}.txt"))).unwrap();
        for edit in ["staged edit", "// unstaged edit", "package nftables // untracked"] {
            assert!(content.contains(edit), "{edit}: {content}");
        }
        let vf = std::fs::read_to_string(kind_dir.join(format!("version-{pr_img}.txt"))).unwrap();
        assert!(vf.contains("KUBE_GIT_TREE_STATE='dirty'") && vf.contains("-dirty'"), "{vf}");
        assert_eq!(checkout_state(&src), before, "the checkout is as it was");
        assert_eq!(count(&log, "build|node-image|"), 2, "{ev:#?}");

        // Clusters from those images.
        backend.send(Command::CreateClusters);
        let (ev, err) = until_finished(&mut rx, Job::Create).await;
        assert_eq!(err, None, "{ev:#?}");
        assert_eq!(count(&log, "create|cluster|"), 2);

        // b with nothing changed: no build, no recreate.
        backend.send(Command::Build { sides: Sides::Pr, recreate: true });
        let (ev, err) = until_finished(&mut rx, Job::Build).await;
        assert_eq!(err, None, "{ev:#?}");
        assert!(phase_is(&ev, Side::Pr, Phase::Build, |s| matches!(s, PhaseState::Skipped { reason } if reason.contains("exists"))), "{ev:#?}");
        assert!(said(&ev, Side::Pr, "runs this image already: not recreated"), "{ev:#?}");
        assert!(!phase_is(&ev, Side::Base, Phase::Build, |_| true), "the base side is not rebuilt");
        assert_eq!((count(&log, "build|node-image|"), count(&log, "create|cluster|")), (2, 2));

        // A new edit: built again, and only the PR cluster recreated and redeployed.
        std::fs::write(src.join("proxier-wip.go"), "package nftables // edited again\n").unwrap();
        let edited = checkout_state(&src);
        let t = Instant::now();
        backend.send(Command::Build { sides: Sides::Pr, recreate: true });
        let (ev, err) = until_finished(&mut rx, Job::Build).await;
        let took = t.elapsed();
        assert_eq!(err, None, "{ev:#?}");
        let commit2 = ev.iter().find_map(|e| match e {
            Event::Built { side: Side::Pr, commit, .. } => Some(commit.clone()),
            _ => None,
        });
        let commit2 = commit2.expect("built again");
        images.0.push(kindred::backend::docker::commit_tag(&commit2));
        assert_ne!(commit2, commit);
        assert_eq!(count(&log, "build|node-image|"), 3);
        assert!(said(&ev, Side::Pr, "runs another image: recreating it"), "{ev:#?}");
        // Connections held from the old cluster's pods end with it, and are said to.
        let held: Vec<_> = ev.iter().filter_map(|e| match e {
            Event::Held { side: Side::Pr, change: Change::Rebuild, conns } => Some(conns),
            _ => None,
        }).collect();
        assert_eq!(held.len(), 1, "{ev:#?}");
        assert!(!held[0].is_empty(), "{ev:#?}");
        for c in held[0] {
            let ended = c.fate == Fate::Reset && c.detail.as_deref() == Some("cluster recreated");
            assert!(ended || c.fate == Fate::NotOpened, "{c:?}");
        }
        // The first builds' time came back as the estimate for this one.
        assert!(ev.iter().any(|e| matches!(e, Event::Estimate { side: Side::Pr, phase: Phase::Build, .. })), "{ev:#?}");
        assert!(phase_is(&ev, Side::Pr, Phase::Create, |s| *s == PhaseState::Done), "{ev:#?}");
        assert!(phase_is(&ev, Side::Pr, Phase::Deploy, |s| *s == PhaseState::Done), "{ev:#?}");
        assert!(!phase_is(&ev, Side::Base, Phase::Create, |_| true), "base untouched");
        let argv = std::fs::read_to_string(&log).unwrap();
        assert_eq!(argv.matches(&format!("delete|cluster|--name|{}|", sc.pr.name)).count(), 1, "{argv}");
        assert!(!argv.contains(&format!("delete|cluster|--name|{}|", sc.base.name)), "{argv}");
        // Rules and probes were read again.
        assert!(ev.iter().any(|e| matches!(e, Event::ProbesDone { .. })), "{ev:#?}");
        // The recreated cluster runs the new image.
        let node_image = docker(&["inspect", "-f", "{{.Image}}", &format!("{}-worker", sc.pr.name)]);
        assert_eq!(node_image, docker(&["image", "inspect", "-f", "{{.Id}}", &pr_img]));
        assert_eq!(checkout_state(&src), edited);
        eprintln!("rebuild + recreate + redeploy of one side (stand-in kind, API server stand-in): {took:?}");
        backend.shutdown();
        drop(servers);
    });
}
