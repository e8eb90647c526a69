//! Swapping only kube-proxy, end to end in-process: real git (a `worktree` side with an
//! uncommitted edit), Kubernetes' containerized build entry point (`build/run.sh`, a stand-in
//! here that writes a stand-in binary), the image built through bollard on the kube-proxy image
//! the cluster runs (read out of a node with `ctr images export` when the engine lacks it), a
//! stand-in `kind` that checks and records the load, and an API server stand-in for the
//! DaemonSet patch and the rollout. A failed rollout sets kube-proxy back; a failed compile
//! touches nothing. Ignored by plain `cargo test` (needs Docker).

mod common;
use common::apiserver::{Cluster, ProxyDs, Req};
use common::kuberepo::kube_proxy_source;
use common::*;

use std::path::Path;
use std::sync::Arc;

use kindred::backend::event::Event;
use kindred::backend::{Backend, Command};
use kindred::model::{Job, Phase, PhaseState, Side, Sides, Target};
use kindred::scenario::Scenario;

/// The 2019 scenario for clusters `base` and `pr`, both built from `src`: the base from its
/// v1.34.0 tag, the PR from its working tree.
fn worktree_scenario(base: &str, pr: &str, src: &Path) -> String {
    scenario_2019(base, pr)
        .replace("~/go/src/k8s.io/kubernetes", src.to_str().unwrap())
        .replacen("ref: master", "ref: v1.34.0", 1)
        .replacen("ref: pr/77523", "ref: worktree", 1)
}

struct Setup {
    _tmp: tempfile::TempDir,
    src: std::path::PathBuf,
    kind_dir: std::path::PathBuf,
    sc: Scenario,
    base: String,
    _cleanup: Cleanup,
    images: Images,
}

/// A PR cluster of three kind-like nodes (no base cluster), its kube-proxy image in the engine
/// (or, with `in_node`, only in the control plane's containerd stand-in).
fn setup(tag: &str, in_node: bool) -> Setup {
    image();
    let pid = std::process::id();
    let network = format!("kindred-swap-{tag}{pid}");
    network_create(&network, &[]);
    let tmp = tempfile::tempdir().unwrap();
    in_process_state();
    let src = tmp.path().join("kubernetes");
    std::fs::create_dir_all(&src).unwrap();
    kube_proxy_source(&src);
    let kind_dir = tmp.path().join("kind");
    std::fs::create_dir_all(&kind_dir).unwrap();
    let mut sc = Scenario::builtin();
    for (s, t, r) in [
        (&mut sc.base, "b", "v1.34.0"),
        (&mut sc.pr, "p", "worktree"),
    ] {
        s.source = src.display().to_string();
        s.git_ref = r.into();
        s.image = format!("kindred-swap-{tag}{t}{pid}:test");
        s.name = format!("s{tag}{t}{pid}");
    }
    sc.probes.targets[0] = Target::Addr("10.96.0.10:80".into());
    let name = sc.pr.name.clone();
    kind_like_cluster(&name, &network);
    if in_node {
        // The control plane again, with /bin (where the `ctr` stand-in goes) first on its PATH:
        // the host's /usr/bin may have a real ctr.
        let cp = format!("{name}-control-plane");
        docker(&["rm", "-f", &cp]);
        let labels = [
            format!("io.x-k8s.kind.cluster={name}"),
            "io.x-k8s.kind.role=control-plane".to_string(),
            format!("{TEST_LABEL}={pid}"),
        ];
        docker(&[
            "run",
            "-d",
            "--name",
            &cp,
            "--hostname",
            &cp,
            "--label",
            &labels[0],
            "--label",
            &labels[1],
            "--label",
            &labels[2],
            "--network",
            &network,
            "--cap-add",
            "NET_ADMIN",
            "-v",
            "/usr:/usr:ro",
            "-e",
            "PATH=/bin:/usr/sbin:/usr/bin",
            IMAGE,
            "sleep",
            "3600",
        ]);
    }
    let cleanup = Cleanup {
        clusters: vec![name.clone()],
        network,
    };
    let base = format!("kindred-test-kube-proxy:{tag}{pid}");
    docker(&["tag", IMAGE, &base]);
    if in_node {
        // `ctr images export - IMAGE` in the node prints the image's archive.
        let tar = tmp.path().join("base.tar");
        docker(&["save", "-o", tar.to_str().unwrap(), &base]);
        docker(&["rmi", &base]);
        let cp = format!("{name}-control-plane");
        docker(&["cp", tar.to_str().unwrap(), &format!("{cp}:/base.tar")]);
        let ctr = tmp.path().join("ctr");
        std::fs::write(
            &ctr,
            "#!/bin/sh\necho \"$@\" > /ctr-args\n[ \"$4\" = - ] || exit 2\ncat /base.tar\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ctr, std::fs::Permissions::from_mode(0o755)).unwrap();
        docker(&["cp", ctr.to_str().unwrap(), &format!("{cp}:/bin/ctr")]);
    }
    let images = Images(vec![base.clone()]);
    Setup {
        _tmp: tmp,
        src,
        kind_dir,
        sc,
        base,
        _cleanup: cleanup,
        images,
    }
}

fn outputs(ev: &[Event]) -> Vec<String> {
    ev.iter()
        .filter_map(|e| match e {
            Event::Output {
                side: Side::Pr,
                phase: Phase::Swap,
                line,
            } => Some(line.clone()),
            _ => None,
        })
        .collect()
}

fn patches(reqs: &[Req]) -> Vec<Req> {
    reqs.iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/daemonsets/kube-proxy"))
        .cloned()
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn a_swap_builds_packages_loads_patches_and_waits_for_the_rollout() {
    let mut s = setup("ok", true);
    // The user's uncommitted edit is what gets built.
    std::fs::write(
        s.src.join("proxier-wip.go"),
        "package nftables // uncommitted fix\n",
    )
    .unwrap();
    let kind = standin(&s.kind_dir, "bridge");
    // Docker's containerd image store: `kind load docker-image` fails there; the swap loads an
    // image archive instead.
    std::fs::write(s.kind_dir.join("containerd-store"), "").unwrap();
    let ds = Arc::new(ProxyDs::new(&s.base, true));
    runtime().block_on(async {
        let name = s.sc.pr.name.clone();
        let (server, _) = Cluster { name: name.clone(), proxy: Some(ds.clone()), ..Cluster::default() }.serve().await;
        tie(&s.kind_dir, &name, &server);
        let (mut backend, mut rx) = attached(s.sc.clone(), kind).await;

        backend.send(Command::SwapProxy { sides: Sides::Pr });
        let (ev, err) = until_finished(&mut rx, Job::Swap).await;
        let out = outputs(&ev);
        assert_eq!(err, None, "{out:#?}");
        let tag = ev.iter().find_map(|e| match e {
            Event::ProxySwapped { side: Side::Pr, image, snapshot, .. } => {
                assert!(snapshot.as_deref().is_some_and(|x| x.ends_with("+ 1 changed file")), "{snapshot:?}");
                Some(image.clone())
            }
            _ => None,
        });
        let tag = tag.expect("swapped");
        s.images.0.push(tag.clone());
        assert!(tag.starts_with("kindred/kube-proxy:"), "{tag}");
        // Every step said, with its time, in order.
        let steps: Vec<&str> = out.iter().filter(|l| l.starts_with('✓')).map(|l| l.as_str()).collect();
        for (i, want) in ["✓ source", "✓ read the kube-proxy DaemonSet", "✓ compile kube-proxy (", "✓ base image (", "✓ image kindred/kube-proxy:", "✓ load (image archive) into 3 nodes", "✓ point the DaemonSet at it", "✓ rollout"].iter().enumerate() {
            assert!(steps.get(i).is_some_and(|l| l.starts_with(want) && l.ends_with("s)")), "step {i} {want}: {steps:#?}");
        }
        assert!(out.iter().any(|l| l.contains("Building go targets for linux/")), "{out:#?}");
        assert!(out.iter().any(|l| l.starts_with("  compiling with ")), "which build: {out:#?}");
        assert!(ev.iter().any(|e| matches!(e, Event::Phase { side: Side::Pr, phase: Phase::Swap, state: PhaseState::Done })));
        // The base image came out of the node's containerd.
        let args = docker(&["exec", &format!("{name}-control-plane"), "cat", "/ctr-args"]);
        assert_eq!(args, format!("--namespace=k8s.io images export - {}", s.base));
        // The image: the running one plus the binary built from the working tree, where the
        // DaemonSet's command runs it.
        let bin = docker(&["run", "--rm", "--entrypoint", "/bin/cat", &tag, "/usr/local/bin/kube-proxy"]);
        assert!(bin.contains("# package nftables // uncommitted fix"), "{bin}");
        let label = docker(&["image", "inspect", "-f", "{{index .Config.Labels \"io.kindred.kube-proxy\"}}", &tag]);
        assert_eq!(label, "swapped");
        // kind loaded it into the cluster from an archive saved in kindred's state dir (the
        // stand-in reads the archive's manifest.json for the image), removed after.
        let argv = std::fs::read_to_string(s.kind_dir.join("argv.log")).unwrap();
        assert!(!argv.contains("load|docker-image|"), "{argv}");
        let load = argv.lines().find(|l| l.starts_with("load|image-archive|")).expect(&argv);
        let fields: Vec<&str> = load.split('|').collect();
        assert_eq!(&fields[3..5], ["--name", name.as_str()], "{load}");
        let archive = Path::new(fields[2]);
        assert!(archive.starts_with(in_process_state().join("kindred")), "{load}");
        assert!(!archive.exists(), "the archive is removed: {load}");
        let loaded = std::fs::read_to_string(s.kind_dir.join(format!("loaded-{name}.txt"))).unwrap();
        assert_eq!(loaded.lines().collect::<Vec<_>>(), [tag.as_str()]);
        // The patch: the container by name, the new image, never pulled; kindred's field manager.
        let reqs = server.requests();
        let p = patches(&reqs);
        assert_eq!(p.len(), 1, "{p:#?}");
        let c = &p[0].body["spec"]["template"]["spec"]["containers"][0];
        assert_eq!((c["name"].as_str(), c["image"].as_str(), c["imagePullPolicy"].as_str()), (Some("kube-proxy"), Some(tag.as_str()), Some("IfNotPresent")));
        assert_eq!(p[0].params("fieldManager"), ["kindred"]);
        assert_eq!(p[0].header("content-type"), Some("application/strategic-merge-patch+json"));
        assert_eq!(*ds.image.lock().unwrap(), tag);
        // Then the rules and probes again.
        assert!(ev.iter().any(|e| matches!(e, Event::ProbesDone { side: Side::Pr })), "probed again");

        // Again with nothing changed: nothing to load, nothing to patch.
        backend.send(Command::SwapProxy { sides: Sides::Pr });
        let (ev, err) = until_finished(&mut rx, Job::Swap).await;
        assert_eq!(err, None, "{:#?}", outputs(&ev));
        assert!(ev.iter().any(|e| matches!(e, Event::Phase { side: Side::Pr, phase: Phase::Swap, state: PhaseState::Skipped { reason } } if reason.contains("runs already"))), "{:#?}", outputs(&ev));
        assert!(ev.iter().any(|e| matches!(e, Event::Estimate { side: Side::Pr, phase: Phase::Swap, .. })), "the last compile's time: {ev:#?}");
        assert_eq!(patches(&server.requests()).len(), 1);
        let argv = std::fs::read_to_string(s.kind_dir.join("argv.log")).unwrap();
        assert_eq!(argv.matches("load|image-archive|").count(), 1, "{argv}");
        backend.shutdown();
    });
}

#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn a_failed_rollout_sets_kube_proxy_back_and_a_failed_compile_touches_nothing() {
    let mut s = setup("bad", false);
    s.sc.build.rollout_timeout = 2.0;
    let kind = standin(&s.kind_dir, "bridge");
    let ds = Arc::new(ProxyDs::new(&s.base, false));
    runtime().block_on(async {
        let name = s.sc.pr.name.clone();
        let (server, _) = Cluster {
            name: name.clone(),
            proxy: Some(ds.clone()),
            ..Cluster::default()
        }
        .serve()
        .await;
        tie(&s.kind_dir, &name, &server);
        let (mut backend, mut rx) = attached(s.sc.clone(), kind).await;

        // The new pods never come up: after rollout_timeout, the DaemonSet is set back.
        backend.send(Command::SwapProxy { sides: Sides::Pr });
        let (ev, err) = until_finished(&mut rx, Job::Swap).await;
        let err = err.expect("the swap failed");
        let reason = ev.iter().find_map(|e| match e {
            Event::Phase {
                side: Side::Pr,
                phase: Phase::Swap,
                state: PhaseState::Failed { reason },
            } => Some(reason.clone()),
            _ => None,
        });
        let reason = reason.expect("failed phase");
        assert!(
            reason.contains("rollout not done after 2s")
                && reason.contains("kube-proxy-x7k2p: ErrImageNeverPull"),
            "{reason}"
        );
        assert!(
            reason.contains(&format!("kube-proxy set back to {}", s.base)),
            "{reason}"
        );
        assert!(err.contains(&name), "{err}");
        let p = patches(&server.requests());
        assert_eq!(p.len(), 2, "{p:#?}");
        let img = |r: &Req| {
            r.body["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap()
                .to_string()
        };
        s.images.0.push(img(&p[0]));
        assert_eq!(img(&p[1]), s.base);
        assert_eq!(*ds.image.lock().unwrap(), s.base);
        assert!(
            outputs(&ev).iter().any(|l| l.starts_with("✗ rollout (")),
            "{:#?}",
            outputs(&ev)
        );

        // A compile error: no image, no load, no patch; the pane says why.
        std::fs::write(s.src.join("build/fail"), "").unwrap();
        let loads = std::fs::read_to_string(s.kind_dir.join("argv.log"))
            .unwrap()
            .matches("load|")
            .count();
        backend.send(Command::SwapProxy { sides: Sides::Pr });
        let (ev, err) = until_finished(&mut rx, Job::Swap).await;
        assert!(err.is_some());
        let out = outputs(&ev);
        assert!(
            out.iter().any(|l| l.starts_with("✗ compile kube-proxy (")
                && l.contains("build/run.sh make all WHAT=cmd/kube-proxy")
                && l.contains("failed (exit 1)")),
            "{out:#?}"
        );
        assert!(
            out.iter().any(|l| l.contains("syntax error: unexpected }")),
            "{out:#?}"
        );
        assert_eq!(patches(&server.requests()).len(), 2);
        let argv = std::fs::read_to_string(s.kind_dir.join("argv.log")).unwrap();
        assert_eq!(argv.matches("load|").count(), loads);
        backend.shutdown();
    });
}

/// The whole inner loop from the keyboard: tmux runs `kindred up` (a stand-in `kind` on PATH),
/// the PR side is the working tree; `p` swaps kube-proxy into the PR cluster, whose new
/// kube-proxy (the API server stand-in's rollout) programs the rules PR 77523 made; the Diff
/// pane shows them. The time from the key to the new rules on screen is printed.
#[test]
#[ignore = "needs Docker and tmux (CI runs both)"]
fn p_swaps_kube_proxy_and_the_new_rules_show_up() {
    let (a, b, cleanup) = two_clusters("t");
    let network = cleanup.network.clone();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("kubernetes");
    std::fs::create_dir_all(&src).unwrap();
    kube_proxy_source(&src);
    std::fs::write(
        src.join("proxier-wip.go"),
        "package iptables // the fix, not committed\n",
    )
    .unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    standin(&bin, &network);
    let base = format!("kindred-test-kube-proxy:dash{}", std::process::id());
    docker(&["tag", IMAGE, &base]);
    let mut images = Images(vec![base.clone()]);
    let fixture_text = |f: &str| restorable(&std::fs::read_to_string(fixture(f)).unwrap());
    let master = fixture_text("iptables/mauilion-blog-2019-master-cluster-KUBE-XLB.txt");
    let fixed = fixture_text("iptables/mauilion-blog-2019-pr77523-cluster-KUBE-XLB.txt");
    for c in [&a, &b] {
        restore_in(&format!("{c}-worker"), "iptables-legacy-restore", &master);
    }
    // The PR cluster's new kube-proxy writes the fixed rules when its rollout completes.
    let mut ds = ProxyDs::new(&base, true);
    let worker = format!("{b}-worker");
    ds.on_rollout = Some(Box::new(move |_| {
        restore_in(&worker, "iptables-legacy-restore", &fixed)
    }));
    let state = tmp.path().join("state");
    let rt = runtime();
    let _servers: Vec<_> = [(&a, None), (&b, Some(Arc::new(ds)))]
        .into_iter()
        .map(|(name, proxy)| {
            let (server, _) = rt.block_on(
                Cluster {
                    name: name.clone(),
                    proxy,
                    ..Cluster::default()
                }
                .serve(),
            );
            tie(&bin, name, &server);
            server
        })
        .collect();
    let scenario = worktree_scenario(&a, &b, &src);
    let sc = tmp.path().join("kindred.yaml");
    std::fs::write(&sc, scenario).unwrap();
    let cmd = format!(
        "PATH={}:$PATH XDG_STATE_HOME={} {} -f {} up",
        bin.display(),
        state.display(),
        env!("CARGO_BIN_EXE_kindred"),
        sc.display()
    );
    let t = Tmux::start_sized("swap", &cmd, 160, 50);
    t.wait_for("node worker:", 30);
    let s = t.wait_for("=== default/echo: (equal)", 30);
    assert!(!s.contains("+2 -0"), "{s}");
    assert!(s.contains("p swap proxy"), "the footer names the key: {s}");

    let pressed = std::time::Instant::now();
    t.keys(&["p"]);
    let s = t.wait_for("=== default/echo: (changed, +2 -0)", 60);
    let took = pressed.elapsed();
    assert!(
        s.contains("route LOCAL traffic"),
        "the new rule itself: {s}"
    );
    let s = t.wait_until("the swap done", 30, |s| s.contains("✓ kube-proxy swap"));
    assert!(
        s.contains("runs kindred/kube-proxy:"),
        "the Build pane names the image: {s}"
    );
    assert!(
        s.contains("from HEAD ") && s.contains("+ 1 changed file"),
        "{s}"
    );
    eprintln!("swap: key press to new rules on screen: {took:?}");
    let tag = s
        .lines()
        .find_map(|l| l.split("runs ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    images.0.push(tag);
    // The probes after the swap may still run: quitting then asks first.
    t.keys(&["q"]);
    let s = t.wait_until("the exit or its question", 15, |s| {
        s.contains("KINDRED-EXIT=") || s.contains("Quit and cancel it?")
    });
    if !s.contains("KINDRED-EXIT=") {
        t.keys(&["y"]);
    }
    let s = t.wait_for("KINDRED-EXIT=", 15);
    assert!(s.contains("KINDRED-EXIT=0"), "{s}");
}

/// `kindred swap-proxy` for scripts: the same swap, its steps on standard error, exit 0; a side
/// without a running cluster fails with exit 1 and says why.
#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn swap_proxy_on_the_command_line() {
    let mut s = setup("cli", false);
    let bin = s.kind_dir.clone();
    standin(&bin, "bridge");
    let ds = Arc::new(ProxyDs::new(&s.base, true));
    let state = s._tmp.path().join("state");
    let rt = runtime();
    let name = s.sc.pr.name.clone();
    // The test pods hold connections to the echo stand-in across the swap.
    let echo = common::echo::Echo::start(&[common::echo::Endpoint::up("echo-1")]);
    let route = vec![
        ("172.18.255.200:8080".to_string(), echo.host_port()),
        ("10.96.41.7:8080".to_string(), echo.host_port()),
    ];
    let (server, _) = rt.block_on(
        Cluster {
            name: name.clone(),
            proxy: Some(ds.clone()),
            lb_ip: Some("172.18.255.200".into()),
            route,
            ..Cluster::default()
        }
        .serve(),
    );
    tie(&bin, &name, &server);
    let scenario = worktree_scenario(&s.sc.base.name, &name, &s.src);
    let file = s._tmp.path().join("kindred.yaml");
    std::fs::write(&file, scenario).unwrap();
    let run = |side: &str| {
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        std::process::Command::new(env!("CARGO_BIN_EXE_kindred"))
            .args(["-f", file.to_str().unwrap(), "swap-proxy", side])
            .env("PATH", path)
            .env("XDG_STATE_HOME", &state)
            .output()
            .unwrap()
    };
    let o = run("pr");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    for want in [
        "✓ compile kube-proxy (",
        "✓ load (image archive) into 3 nodes",
        "✓ rollout (",
        "kube-proxy swap: done",
    ] {
        assert!(err.contains(&format!("[{name}] {want}")), "{want}: {err}");
    }
    let tag = err
        .lines()
        .find_map(|l| l.split("kube-proxy runs ").nth(1))
        .expect("the image named")
        .to_string();
    assert_eq!(*ds.image.lock().unwrap(), tag);
    s.images.0.push(tag);
    // What became of the connections held across it: the count, then each one.
    assert!(
        err.contains(&format!("[{name}] held across swap: 10 kept\n")),
        "{err}"
    );
    let pod = format!("netshoot-{name}-worker");
    for via in ["LB 172.18.255.200:8080", "ClusterIP 10.96.41.7:8080"] {
        let line = format!("[{name}]   {pod} -> {via}: kept (");
        assert!(err.contains(&line), "{line}: {err}");
    }
    assert!(
        !err.contains("Building go targets"),
        "steps, not the build's own output: {err}"
    );
    assert!(
        !err.contains("error"),
        "the base side has no cluster and is not probed: {err}"
    );

    let o = run("base");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("no running cluster"), "{}", stderr(&o));
    let o = run("sideways");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// The test node image with `/kind/version` holding `version`, tagged `tag`.
fn node_image_with_version(tag: &str, version: &str, dir: &Path) {
    let c = docker(&["create", IMAGE, "sleep", "1"]);
    std::fs::create_dir_all(dir.join("kind")).unwrap();
    std::fs::write(dir.join("kind/version"), format!("{version}\n")).unwrap();
    docker(&["cp", dir.join("kind").to_str().unwrap(), &format!("{c}:/")]);
    docker(&["commit", &c, tag]);
    docker(&["rm", "-f", &c]);
}

#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn c_on_a_1_30_node_image_turns_on_the_nftables_gate_without_a_build() {
    image();
    let pid = std::process::id();
    let network = format!("kindred-gate-{pid}");
    network_create(&network, &[]);
    let tmp = tempfile::tempdir().unwrap();
    in_process_state();
    let mut sc = Scenario::builtin();
    assert_eq!(sc.cluster.proxy_mode, kindred::model::ProxyMode::Nftables);
    let old = format!("kindred-gate-old{pid}:test");
    let new = format!("kindred-gate-new{pid}:test");
    node_image_with_version(&old, "v1.30.2", &tmp.path().join("old"));
    node_image_with_version(&new, "v1.34.1", &tmp.path().join("new"));
    let _images = Images(vec![old.clone(), new.clone()]);
    sc.base.image = old.clone();
    sc.pr.image = new.clone();
    sc.base.name = format!("gb{pid}");
    sc.pr.name = format!("gp{pid}");
    let _cleanup = Cleanup {
        clusters: vec![sc.base.name.clone(), sc.pr.name.clone()],
        network: network.clone(),
    };
    let kind = standin(tmp.path(), &network);
    runtime().block_on(async {
        let (mut backend, mut rx) = attached(sc.clone(), kind).await;
        backend.send(Command::CreateClusters);
        let (ev, _) = until_finished(&mut rx, Job::Create).await;
        let said = |side: Side, want: &str| {
            ev.iter().any(|e| matches!(e, Event::Output { side: s, phase: Phase::Create, line } if *s == side && line.contains(want)))
        };
        assert!(said(Side::Base, "Kubernetes v1.30.2 (its /kind/version)"), "{ev:#?}");
        assert!(said(Side::Base, "turning on the NFTablesProxyMode feature gate"), "{ev:#?}");
        assert!(said(Side::Pr, "Kubernetes v1.34.1 (its /kind/version)"), "{ev:#?}");
        assert!(!said(Side::Pr, "feature gate"), "{ev:#?}");
        let cfg = |n: &str| std::fs::read_to_string(tmp.path().join(format!("config-{n}.yaml"))).unwrap();
        let base = cfg(&sc.base.name);
        assert!(base.contains("featureGates:\n  NFTablesProxyMode: true\n") && base.contains("kubeProxyMode: nftables"), "{base}");
        let pr = cfg(&sc.pr.name);
        assert!(!pr.contains("NFTablesProxyMode") && pr.contains("kubeProxyMode: nftables"), "{pr}");
        // No container is left behind by the read.
        let left = docker(&["ps", "-aq", "--filter", "label=io.kindred.version-read", "--filter", &format!("ancestor={old}")]);
        assert_eq!(left, "");
        backend.shutdown();
    });
}

/// What a rollout does to the echo stand-in's connections.
#[derive(Clone, Copy)]
enum AtRollout {
    Nothing,
    Reset,
    Blackhole,
}

/// A swap of the PR side while each test pod holds a connection to the LB IP and the ClusterIP:
/// the held curls are kindred's own argv, run for real by the API server stand-in against the
/// echo stand-in (both addresses routed to it); the rollout does `at` to its connections.
/// The swap's events and the echo stand-in's count of connections accepted.
fn swap_holding(tag: &str, at: AtRollout) -> (Vec<Event>, usize) {
    use common::echo::{Echo, Endpoint};
    let mut s = setup(tag, false);
    s.sc.probes.timeout = 2.0;
    let kind = standin(&s.kind_dir, "bridge");
    let echo = Arc::new(Echo::start(&[
        Endpoint::up("echo-1"),
        Endpoint::up("echo-2"),
    ]));
    let mut ds = ProxyDs::new(&s.base, true);
    let e = echo.clone();
    ds.on_rollout = Some(Box::new(move |_| match at {
        AtRollout::Nothing => {}
        AtRollout::Reset => e.reset_all(),
        AtRollout::Blackhole => e.blackhole(true),
    }));
    let route = vec![
        ("172.18.255.200:8080".to_string(), echo.host_port()),
        ("10.96.41.7:8080".to_string(), echo.host_port()),
    ];
    let ev = runtime().block_on(async {
        let name = s.sc.pr.name.clone();
        let cluster = Cluster {
            name: name.clone(),
            proxy: Some(Arc::new(ds)),
            lb_ip: Some("172.18.255.200".into()),
            route,
            ..Cluster::default()
        };
        let (server, _) = cluster.serve().await;
        tie(&s.kind_dir, &name, &server);
        let (mut backend, mut rx) = attached(s.sc.clone(), kind).await;
        backend.send(Command::SwapProxy { sides: Sides::Pr });
        let (ev, err) = until_finished(&mut rx, Job::Swap).await;
        assert_eq!(err, None, "{:#?}", outputs(&ev));
        backend.shutdown();
        ev
    });
    if let Some(tag) = ev.iter().find_map(|e| match e {
        Event::ProxySwapped { image, .. } => Some(image.clone()),
        _ => None,
    }) {
        s.images.0.push(tag);
    }
    (ev, echo.accepted())
}

/// The connections the swap reported held, with its summary line in the Swap output.
fn held(ev: &[Event]) -> Vec<kindred::backend::held::HeldConn> {
    use kindred::backend::held::Change;
    let held: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Held {
                side: Side::Pr,
                change: Change::Swap,
                conns,
            } => Some(conns.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(held.len(), 1, "one report per swap: {:#?}", outputs(ev));
    let conns = held[0].clone();
    // Five test pods, each to the LB IP and the ClusterIP.
    assert_eq!(conns.len(), 10, "{conns:#?}");
    let vias: std::collections::BTreeSet<_> = conns.iter().map(|c| c.via).collect();
    assert_eq!(vias.len(), 2, "{conns:#?}");
    let out = outputs(ev);
    assert!(
        out.iter().any(|l| l.starts_with("  holding 10 connections (5 pods to LB 172.18.255.200:8080 and ClusterIP 10.96.41.7:8080)")),
        "{out:#?}"
    );
    conns
}

#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn a_swap_whose_rollout_resets_connections_reports_them_reset() {
    use kindred::backend::held::Fate;
    let (ev, accepted) = swap_holding("hr", AtRollout::Reset);
    let conns = held(&ev);
    for c in &conns {
        assert_eq!(c.fate, Fate::Reset, "{c:#?}");
    }
    // curl connected again after the reset: more connections than held.
    assert!(accepted > 10, "{accepted}");
    let out = outputs(&ev);
    assert!(
        out.iter().any(|l| l == "  held across swap: 10 reset"),
        "{out:#?}"
    );
}

#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn a_swap_that_keeps_connections_reports_them_kept() {
    use kindred::backend::held::Fate;
    let (ev, accepted) = swap_holding("hk", AtRollout::Nothing);
    let conns = held(&ev);
    for c in &conns {
        assert_eq!(c.fate, Fate::Kept, "{c:#?}");
        assert!(
            c.detail
                .as_deref()
                .is_some_and(|d| d.ends_with("requests on one connection")),
            "{c:#?}"
        );
    }
    // Each held curl made one connection (the probes after the swap are their own).
    let out = outputs(&ev);
    assert!(
        out.iter().any(|l| l == "  held across swap: 10 kept"),
        "{out:#?}"
    );
    assert!(accepted >= 10, "{accepted}");
}

#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn a_swap_that_blackholes_connections_reports_them_timed_out() {
    use kindred::backend::held::Fate;
    let (ev, _) = swap_holding("hb", AtRollout::Blackhole);
    let conns = held(&ev);
    for c in &conns {
        assert_eq!(c.fate, Fate::TimedOut, "{c:#?}");
    }
}
