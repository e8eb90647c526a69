//! `kindred check` on the live backend, every step real but the Kubernetes parts: real git
//! (a Kubernetes-like checkout), real Docker (kind-like node containers the stand-in `kind`
//! creates, their real iptables rules), and for each cluster an API server stand-in over TCP.
//! The script builds, creates, deploys, waits until the Service is ready and kube-proxy's rules
//! name its LoadBalancer IP on every node, reads the rules, probes through exec, judges, and
//! deletes the clusters it created. Ignored by plain `cargo test` (needs Docker).

mod common;
use common::apiserver::Cluster;
use common::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kindred::backend::live::LiveBackend;
use kindred::check::{CheckOptions, Limits, check};
use kindred::model::{ProxyMode, Side};
use kindred::scenario::Scenario;

/// kube-proxy's rules as the 2019 walkthrough's nodes had them (base without PR 77523, PR with
/// it), plus the Service's rule naming the LoadBalancer IP, loadable with iptables-restore.
fn node_rules(side: Side) -> String {
    let file = match side {
        Side::Base => "iptables/mauilion-blog-2019-master-cluster-KUBE-XLB.txt",
        Side::Pr => "iptables/mauilion-blog-2019-pr77523-cluster-KUBE-XLB.txt",
    };
    let mut text = std::fs::read_to_string(fixture(file)).unwrap();
    text.push_str("-A KUBE-SERVICES -d 172.17.255.1/32 -p tcp -m comment --comment \"default/echo: loadbalancer IP\" -m tcp --dport 8080 -j KUBE-FW-U52O5CQH2XXNVZ54\n");
    restorable(&text)
}

/// kube-proxy's nftables table as a real node lists it (k3s's, loadable with `nft -f`), with its
/// NodePort Service renamed default/echo and an element naming the scenario's LoadBalancer IP: no iptables rule at all, so only a read
/// through nft finds the LB IP.
fn node_nft_rules() -> String {
    let svc = "10.43.195.72 . tcp . 8000 : goto service-P6J77WGM-default/echo/tcp/,";
    let lb = "172.17.255.1 . tcp . 8080 : goto external-P6J77WGM-default/echo/tcp/,";
    // Its NodePort Service made the scenario's default/echo.
    let text = k3s_table("-110").replace("riset/hellopod-np-svc", "default/echo");
    assert!(text.contains(svc), "the fixture's Service element");
    text.replace(svc, &format!("{svc}\n{lb}"))
}

/// Load kube-proxy's rules for `mode` into `node`.
fn load_node_rules(node: &str, side: Side, mode: ProxyMode) {
    match mode {
        ProxyMode::Nftables => feed(node, &["nft", "-f", "-"], &node_nft_rules()),
        _ => restore_in(node, "iptables-legacy-restore", &node_rules(side)),
    }
}

/// What a run left to look at.
struct Run {
    verdict: anyhow::Result<kindred::check::Verdict>,
    progress: String,
    argv: String,
    names: [String; 2],
    /// The cluster configs the stand-in kind was given, one after the other.
    configs: String,
}

/// Once a cluster's nodes exist, kube-proxy's rules go on every node (a thread, until `stop`).
fn load_rules_when_nodes_run(
    names: [String; 2],
    mode: ProxyMode,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for (side, name) in Side::BOTH.into_iter().zip(names) {
            for n in ["control-plane", "worker", "worker2"] {
                let node = format!("{name}-{n}");
                let runs = || {
                    std::process::Command::new("docker")
                        .args(["exec", &node, "true"])
                        .output()
                        .is_ok_and(|o| o.status.success())
                };
                while !runs() {
                    if stop.load(Ordering::SeqCst) {
                        return; // the run ended before this node ran
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                // A failed run deletes its nodes, maybe under our feet.
                let loaded = std::panic::catch_unwind(|| load_node_rules(&node, side, mode));
                if loaded.is_err() && !runs() {
                    return;
                }
                loaded.unwrap();
            }
        }
    })
}

/// `check` on the live backend with clusters `<tag>b<pid>` and `<tag>p<pid>`; `manifest` is
/// MetalLB's (the real one when `None`); `second`: a second probe target, to which the PR's
/// hostNetwork pod on worker2 times out.
fn run_check(tag: &str, manifest: Option<&str>, second: Option<&str>) -> Run {
    run_check_in(tag, ProxyMode::Iptables, manifest, second)
}

/// [`run_check`] with kube-proxy in `mode`.
fn run_check_in(tag: &str, mode: ProxyMode, manifest: Option<&str>, second: Option<&str>) -> Run {
    // One run at a time: kindred keeps the clusters it created in one file of the state
    // directory, which two runs at once would both rewrite.
    static ONE: Mutex<()> = Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    image();
    in_process_state();
    let pid = std::process::id();
    let network = format!("kindred-{tag}-{pid}");
    network_create(&network, &[]);
    let names = [format!("{tag}b{pid}"), format!("{tag}p{pid}")];
    let _cleanup = Cleanup {
        clusters: names.to_vec(),
        network: network.clone(),
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("kubernetes");
    std::fs::create_dir_all(&src).unwrap();
    let (base_sha, pr_sha) = kubernetes_like(&src);
    let kind_dir = tmp.path().join("kind");
    std::fs::create_dir_all(&kind_dir).unwrap();
    let kind = standin(&kind_dir, &network);
    let real = fixture("metallb/metallb-native.yaml").display().to_string();
    let mut sc = Scenario::builtin();
    sc.cluster.proxy_mode = mode;
    sc.probes.targets.extend(second.map(|t| t.parse().unwrap()));
    sc.load_balancer.manifest = Some(manifest.map_or(real.clone(), str::to_string));
    sc.load_balancer.network = network.clone();
    for (s, name, r) in [
        (&mut sc.base, &names[0], "v1.34.0"),
        (&mut sc.pr, &names[1], "fix"),
    ] {
        s.name = name.clone();
        s.source = src.display().to_string();
        s.git_ref = r.to_string();
        s.image = format!("kindred-check-{name}:test");
    }
    let _images = built_images(&sc, &[&base_sha, &pr_sha]);
    let stop = Arc::new(AtomicBool::new(false));
    let loader = load_rules_when_nodes_run(names.clone(), mode, stop.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut progress = Vec::new();
    let verdict = rt.block_on(async {
        let mut servers = Vec::new();
        for (side, name) in Side::BOTH.into_iter().zip(&names) {
            let pool = kindred::backend::metallb::pool_yaml(
                "1.1.1.1".parse().unwrap(),
                "1.1.1.2".parse().unwrap(),
            );
            let yaml = format!(
                "{}\n---\n{pool}\n---\n{}",
                std::fs::read_to_string(&real).unwrap(),
                sc.workloads_for(name).unwrap()
            );
            // The base cluster drops the hostNetwork pod's traffic on the node without a local
            // endpoint (as the built-in scenario expects).
            let timeouts = match side {
                Side::Base => vec![format!("netshoot-{name}-worker")],
                Side::Pr => second
                    .map(|t| format!("netshoot-{name}-worker2@{t}"))
                    .into_iter()
                    .collect(),
            };
            let (server, _) = Cluster {
                name: name.clone(),
                yaml,
                lb_ip: Some("172.17.255.1".into()),
                timeouts,
                ..Cluster::default()
            }
            .serve()
            .await;
            tie(&kind_dir, name, &server);
            servers.push(server);
        }
        let backend = Box::new(LiveBackend::new(sc.clone(), kind));
        let limits = Limits {
            job: std::time::Duration::from_secs(120),
            ready: std::time::Duration::from_secs(60),
        };
        check(
            backend,
            CheckOptions {
                limits,
                cleanup: true,
            },
            |l| progress.push(l),
        )
        .await
    });
    stop.store(true, Ordering::SeqCst);
    loader.join().unwrap();
    Run {
        verdict,
        progress: progress.join("\n"),
        argv: std::fs::read_to_string(kind_dir.join("argv.log")).unwrap(),
        configs: names
            .iter()
            .map(|n| std::fs::read_to_string(kind_dir.join(format!("config-{n}.yaml"))))
            .collect::<Result<String, _>>()
            .unwrap_or_default(),
        names,
    }
}

/// Every cluster the run created was deleted, through kind.
fn deleted_what_it_created(r: &Run) {
    for name in &r.names {
        assert!(
            r.argv.contains(&format!("delete|cluster|--name|{name}|")),
            "{}",
            r.argv
        );
        let left = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=io.x-k8s.kind.cluster={name}"),
        ]);
        assert!(left.is_empty(), "{name}: {left}");
    }
}

#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn check_runs_the_whole_pipeline_judges_and_deletes_its_clusters() {
    let r = run_check("ck", None, None);
    let log = &r.progress;
    let v = r
        .verdict
        .as_ref()
        .unwrap_or_else(|e| panic!("{e:#}\n{log}"));
    assert!(
        v.ok,
        "every expectation holds: {:#?}\n{log}",
        v.expectations
    );
    assert_eq!(v.expectations.len(), 10);
    // The rules of the node pair without a local endpoint differ, as in 2019.
    assert!(!v.rules.is_empty(), "{log}");
    // Progress: a line per phase change, and the probes.
    for want in [
        "image build: done",
        "cluster create: done",
        "deploy: done",
        "probing",
        "probes done",
    ] {
        assert!(log.contains(want), "{want}: {log}");
    }
    deleted_what_it_created(&r);
}

/// The built-in default, nftables: the clusters are created in nftables mode, kube-proxy's
/// table (loaded with `nft -f`, no iptables rule anywhere) is what the readiness gate and the
/// rules reading find, and the check runs to its verdict.
#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn check_runs_end_to_end_in_nftables_mode() {
    let r = run_check_in("cn", ProxyMode::Nftables, None, None);
    let log = &r.progress;
    let v = r
        .verdict
        .as_ref()
        .unwrap_or_else(|e| panic!("{e:#}\n{log}"));
    assert!(
        v.ok,
        "every expectation holds: {:#?}\n{log}",
        v.expectations
    );
    assert_eq!(v.expectations.len(), 10);
    assert_eq!(
        r.configs.matches("kubeProxyMode: nftables").count(),
        2,
        "both clusters in nftables mode: {}",
        r.configs
    );
    for want in ["cluster create: done", "deploy: done", "probes done"] {
        assert!(log.contains(want), "{want}: {log}");
    }
    deleted_what_it_created(&r);
}

#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn a_failed_deploy_is_trouble_and_the_clusters_are_deleted_all_the_same() {
    let r = run_check("cf", Some("/nonexistent/metallb-native.yaml"), None);
    let Err(e) = &r.verdict else {
        panic!("the run succeeded: {}", r.progress)
    };
    let e = format!("{e:#}");
    assert!(
        e.contains("deploy") && e.contains("/nonexistent/metallb-native.yaml"),
        "{e}\n{}",
        r.progress
    );
    assert!(
        r.progress.contains("cluster create: done"),
        "{}",
        r.progress
    );
    deleted_what_it_created(&r);
}

/// With two probe targets, every pod probes both (live, through exec) and every expectation is
/// judged on both: a timeout to the second target alone fails the check.
#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn check_probes_and_judges_every_target() {
    let second = "192.0.2.10:80";
    let r = run_check("ct", None, Some(second));
    let log = &r.progress;
    let v = r
        .verdict
        .as_ref()
        .unwrap_or_else(|e| panic!("{e:#}\n{log}"));
    assert!(!v.ok, "{:#?}\n{log}", v.expectations);
    assert_eq!(v.expectations.len(), 20, "10 rows on 2 targets");
    assert!(
        v.expectations.iter().all(|e| e.actual.is_some()),
        "every pod probed every target: {:#?}",
        v.expectations
    );
    let bad: Vec<_> = v.expectations.iter().filter(|e| !e.holds).collect();
    assert_eq!(bad.len(), 1, "{bad:#?}");
    assert_eq!(bad[0].source, format!("netshoot-{}-worker2", r.names[1]));
    assert_eq!(bad[0].target.to_string(), second);
    assert!(log.contains(&format!("probing {second}")), "{log}");
    deleted_what_it_created(&r);
}
