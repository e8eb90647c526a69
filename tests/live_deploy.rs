//! The live backend's deploy and probe commands, end to end: for each side an API server
//! stand-in over HTTPS (reached through the kubeconfig kind gives for the cluster: its CA, client
//! certificate and key), a real Docker network for the LoadBalancer range, MetalLB's real
//! manifest from a file. Deploy applies
//! MetalLB, waits for its controller, retries the pool while MetalLB's webhook refuses it, applies
//! the workloads, then watches the pods; Probe curls from every running pod through exec; watch
//! mode repeats the probes every period until it is turned off. One API server client per side
//! serves every round, and is made again when the side's API server moves.
//! Ignored by plain `cargo test` (needs Docker for the network).

mod common;
use common::apiserver::{Cluster, Req};
use common::*;

use std::sync::atomic::Ordering;

use kindred::backend::event::Event;
use kindred::backend::{Backend, Command};
use kindred::model::{Job, Outcome, Phase, PhaseState, PodPhase, Side, Target};
use kindred::scenario::Scenario;

#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn deploy_applies_metallb_pool_and_workloads_then_probes_run_through_exec() {
    let pid = std::process::id();
    let network = format!("kindred-deploy-{pid}");
    image();
    network_create(&network, &["--subnet", "172.31.0.0/16"]);
    struct Net(String);
    impl Drop for Net {
        fn drop(&mut self) {
            let _ = std::process::Command::new("docker")
                .args(["network", "rm", &self.0])
                .output();
        }
    }
    let _net = Net(network.clone());
    let tmp = tempfile::tempdir().unwrap();
    // SAFETY: single test in this binary; the state dir is read from the environment.
    unsafe { std::env::set_var("XDG_STATE_HOME", tmp.path()) };
    // The clusters exist already (attach): kind prints each one's kubeconfig.
    let kind_dir = tmp.path().join("kind");
    std::fs::create_dir_all(&kind_dir).unwrap();
    let kind = standin(&kind_dir, &network);
    let manifest = fixture("metallb/metallb-native.yaml");
    let mut sc = Scenario::builtin();
    sc.base.name = format!("db{pid}");
    sc.pr.name = format!("dp{pid}");
    sc.load_balancer.manifest = Some(manifest.display().to_string());
    sc.load_balancer.network = network.clone();
    // Watch mode probes the scenario's target: a fixed address here (no kube-proxy rules to wait for).
    sc.probes.targets[0] = Target::Addr("172.31.255.200:80".into());
    let pool = kindred::backend::metallb::pool_yaml(
        "1.1.1.1".parse().unwrap(),
        "1.1.1.2".parse().unwrap(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut servers = Vec::new();
        let mut yamls = Vec::new();
        for (side, refusals) in [(Side::Base, 0), (Side::Pr, 2)] {
            let name = sc.side(side).name.clone();
            let yaml = format!(
                "{}\n---\n{pool}\n---\n{}",
                std::fs::read_to_string(&manifest).unwrap(),
                sc.workloads_for(&name).unwrap()
            );
            yamls.push(yaml.clone());
            let (server, refused) = Cluster {
                name: name.clone(),
                yaml,
                refusals,
                ..Cluster::default()
            }
            .serve()
            .await;
            tie(&kind_dir, &name, &server);
            servers.push((side, server, refused));
        }
        let (mut backend, mut rx) = attached(sc.clone(), kind).await;

        backend.send(Command::Deploy);
        let (ev, err) = until_finished(&mut rx, Job::Deploy).await;
        assert_eq!(err, None, "{ev:#?}");
        let out = |side: Side| -> Vec<String> {
            ev.iter()
                .filter_map(|e| match e {
                    Event::Output { side: s, line, .. } if *s == side => Some(line.clone()),
                    _ => None,
                })
                .collect()
        };
        for side in Side::BOTH {
            let lines = out(side);
            let has = |want: &str| lines.iter().any(|l| l.contains(want));
            assert!(has("applied MetalLB ("), "{lines:#?}");
            assert!(has("metallb-system/controller: 1/1 ready") || has("1/1"), "{lines:#?}");
            // The second /16 of the network's last /24s: inside 172.31.0.0/16, one range per side.
            assert!(has("IPAddressPool kindred: 172.31."), "{lines:#?}");
            assert!(has("applied Service default/echo"), "{lines:#?}");
            assert!(
                ev.iter().any(|e| matches!(e, Event::Phase { side: s, phase: Phase::Deploy, state: PhaseState::Done } if *s == side)),
                "{side:?} deployed"
            );
        }
        // The PR side's pool was refused twice, then applied.
        let (_, pr_server, refused) = &servers[1];
        assert_eq!(refused.load(Ordering::SeqCst), 2);
        let pool_patches = pr_server.requests().iter().filter(|r| r.method == "PATCH" && r.path.contains("/ipaddresspools/")).count();
        assert_eq!(pool_patches, 3);
        // Every object applied by kindred's field manager.
        for (_, server, _) in &servers {
            let reqs = server.requests();
            let patches: Vec<&Req> = reqs.iter().filter(|r| r.method == "PATCH").collect();
            assert!(patches.len() > 30, "{}", patches.len());
            assert!(patches.iter().all(|r| r.query.contains("fieldManager=kindred")));
        }

        // The watchers report the running pods of both sides.
        let mut running = std::collections::BTreeSet::new();
        let mut seen = ev;
        loop {
            for e in &seen {
                if let Event::Pod { side, pod } = e
                    && pod.phase == PodPhase::Running
                {
                    running.insert((*side, pod.name.clone()));
                }
            }
            if running.len() == 10 {
                break;
            }
            let e = tokio::time::timeout(std::time::Duration::from_secs(30), rx.recv())
                .await
                .unwrap_or_else(|_| panic!("pods not reported: {running:?} {seen:#?}"))
                .unwrap();
            seen.push(e);
        }

        // Probe a fixed address from every running pod of both sides, through exec.
        backend.send(Command::Probe { target: Some(Target::Addr("172.31.255.200:80".into())), repeat: None });
        let (ev, err) = until_finished(&mut rx, Job::Probes).await;
        assert_eq!(err, None, "{ev:#?}");
        let results: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Probe { side, result } => Some((*side, result.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(results.len(), 10, "{results:#?}");
        for (_, r) in &results {
            assert_eq!((r.outcome, r.http_status, r.target.as_str()), (Outcome::Ok, Some(200), "172.31.255.200:80"), "{r:?}");
        }
        for (side, server, _) in &servers {
            let execs: Vec<Req> = server.requests().into_iter().filter(|r| r.path.ends_with("/exec")).collect();
            assert_eq!(execs.len(), 5, "{side:?}");
            for x in execs {
                assert_eq!(x.params("container"), [sc.probes.container.clone()]);
                assert_eq!(x.params("command").last().map(String::as_str), Some("http://172.31.255.200:80/hostname"));
            }
        }

        // Watch mode: the probes (and rules) run at once and again every period, until it is
        // turned off; then nothing more runs.
        let execs = || -> usize {
            servers
                .iter()
                .map(|(_, s, _)| s.requests().iter().filter(|r| r.path.ends_with("/exec")).count())
                .sum()
        };
        let before = execs();
        backend.send(Command::SetWatch(true));
        let mut rounds = 0;
        while rounds < 4 {
            let e = tokio::time::timeout(kindred::backend::live::WATCH_PERIOD * 2, rx.recv())
                .await
                .expect("watch rounds")
                .unwrap();
            if matches!(e, Event::ProbesDone { .. }) {
                rounds += 1;
            }
        }
        assert_eq!(execs() - before, 20, "two rounds of 5 pods on both sides");
        backend.send(Command::SetWatch(false));
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let after = execs();
        tokio::time::sleep(kindred::backend::live::WATCH_PERIOD + std::time::Duration::from_secs(2)).await;
        assert_eq!(execs(), after, "nothing runs once watching is off");

        // One API server client per side serves every round: with kind no longer giving the base
        // cluster's kubeconfig (its tie to the API server gone), the base side still probes.
        let base = sc.base.name.clone();
        std::fs::remove_file(kind_dir.join(format!("apiserver-{base}.yaml"))).unwrap();
        let base_results = |ev: &[Event]| -> Vec<(Outcome, Option<String>)> {
            ev.iter()
                .filter_map(|e| match e {
                    Event::Probe { side: Side::Base, result } => Some((result.outcome, result.detail.clone())),
                    _ => None,
                })
                .collect()
        };
        let probe = |backend: &mut kindred::backend::live::LiveBackend| {
            backend.send(Command::Probe {
        target: None,
        repeat: None,
    });
        };
        probe(&mut backend);
        let (ev, err) = until_finished(&mut rx, Job::Probes).await;
        assert_eq!(err, None, "{ev:#?}");
        let got = base_results(&ev);
        assert!(got.len() == 5 && got.iter().all(|(o, _)| *o == Outcome::Ok), "{got:#?}");

        // The base cluster is made again elsewhere (a new API server, a new kubeconfig): the
        // round whose execs fail drops the old client, and the next one reaches the new server.
        let (moved, _) = Cluster {
            name: base.clone(),
            yaml: yamls[0].clone(),
            ..Cluster::default()
        }
        .serve()
        .await;
        tie(&kind_dir, &base, &moved);
        drop(servers.remove(0));
        let mut rounds = Vec::new();
        for _ in 0..2 {
            probe(&mut backend);
            let (ev, err) = until_finished(&mut rx, Job::Probes).await;
            assert_eq!(err, None, "{ev:#?}");
            rounds.push(base_results(&ev));
            if rounds.last().unwrap().iter().all(|(o, _)| *o == Outcome::Ok) {
                break;
            }
        }
        let last = rounds.last().unwrap();
        assert!(last.len() == 5 && last.iter().all(|(o, _)| *o == Outcome::Ok), "{rounds:#?}");
        let moved_execs = moved.requests().iter().filter(|r| r.path.ends_with("/exec")).count();
        assert_eq!(moved_execs, 5, "{rounds:#?}");
        backend.shutdown();
    });
}
