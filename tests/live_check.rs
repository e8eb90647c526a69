//! `kindred check` on the live backend, every step real but the Kubernetes parts: real git
//! (a Kubernetes-like checkout), real Docker (kind-like node containers the stand-in `kind`
//! creates, their real iptables rules), and for each cluster an API server stand-in over TCP.
//! The script builds, creates, deploys, waits until the Service is ready and kube-proxy's rules
//! name its LoadBalancer IP on every node, reads the rules, probes through exec, judges, and
//! deletes the clusters it created. Ignored by plain `cargo test` (needs Docker).

mod common;
use common::apiserver::{ApiServer, Cluster, Req};
use common::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

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
    /// With [`Late::By`]: what the PR side's API server had been asked before its late node got
    /// kube-proxy's rules.
    before_late: Option<Vec<Req>>,
    progress: String,
    /// Each progress line with when it came, from the start of the run.
    timed: Vec<(std::time::Duration, String)>,
    argv: String,
    names: [String; 2],
    /// The cluster configs the stand-in kind was given, one after the other.
    configs: String,
}

/// When the PR cluster's `worker2` gets kube-proxy's rules; every other node gets them as soon
/// as it runs.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Late {
    /// With the others.
    No,
    /// This long after the PR side's readiness gate began (its first read of the Service), and
    /// so after the other nodes.
    By(std::time::Duration),
    /// Never.
    Never,
}

/// Load kube-proxy's rules into `node` once it runs; false when the run ended (`stop`) first,
/// or deleted the node under our feet.
fn load_when_running(node: &str, side: Side, mode: ProxyMode, stop: &AtomicBool) -> bool {
    let runs = || {
        std::process::Command::new("docker")
            .args(["exec", node, "true"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    while !runs() {
        if stop.load(Ordering::SeqCst) {
            return false; // the run ended before this node ran
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A failed run deletes its nodes, maybe under our feet.
    let loaded = std::panic::catch_unwind(|| load_node_rules(node, side, mode));
    if loaded.is_err() && !runs() {
        return false;
    }
    loaded.unwrap();
    true
}

/// The PR side's API server, once the run serves it.
type PrServer = Arc<OnceLock<Arc<ApiServer>>>;

/// Once a cluster's nodes exist, kube-proxy's rules go on every node (a thread, until `stop`),
/// the PR cluster's `worker2` as `late` says. With [`Late::By`], the thread's result is what the
/// PR side's API server had been asked just before that node got its rules.
fn load_rules_when_nodes_run(
    names: [String; 2],
    mode: ProxyMode,
    late: Late,
    pr_server: PrServer,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Option<Vec<Req>>> {
    std::thread::spawn(move || {
        let late_node = format!("{}-worker2", names[1]);
        for (side, name) in Side::BOTH.into_iter().zip(&names) {
            for n in ["control-plane", "worker", "worker2"] {
                let node = format!("{name}-{n}");
                if node == late_node && late != Late::No {
                    continue;
                }
                if !load_when_running(&node, side, mode, &stop) {
                    return None;
                }
            }
        }
        let Late::By(delay) = late else { return None };
        // The PR side's gate began: it reads the Service (kindred reads it only there).
        let began =
            |r: &Req| r.method == "GET" && r.path == "/api/v1/namespaces/default/services/echo";
        while !pr_server
            .get()
            .is_some_and(|s| s.requests().iter().any(began))
        {
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let end = std::time::Instant::now() + delay;
        while std::time::Instant::now() < end {
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let before = pr_server.get().unwrap().requests();
        load_when_running(&late_node, Side::Pr, mode, &stop).then_some(before)
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
    run_check_with(
        tag,
        Setup {
            mode,
            manifest,
            second,
            ..Setup::default()
        },
    )
}

/// How a run is set up (see [`run_check`]).
struct Setup<'a> {
    mode: ProxyMode,
    manifest: Option<&'a str>,
    second: Option<&'a str>,
    /// When the PR cluster's `worker2` gets kube-proxy's rules.
    late: Late,
    /// The scenario's `probes.ready_timeout`, when not its default.
    ready_timeout: Option<f64>,
    /// Record the run's events to this file.
    record: Option<std::path::PathBuf>,
    /// An echo stand-in (host:port) that every exec's curl to the LB IP:port runs against, for
    /// real; with how many endpoints the Service has ready.
    echo: Option<(String, u32)>,
    /// Changes to the scenario (tries, expectations).
    tweak: Option<fn(&mut Scenario)>,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Setup {
            mode: ProxyMode::Iptables,
            manifest: None,
            second: None,
            late: Late::No,
            ready_timeout: None,
            record: None,
            echo: None,
            tweak: None,
        }
    }
}

/// [`run_check`] as `setup` says.
fn run_check_with(tag: &str, setup: Setup) -> Run {
    let Setup {
        mode,
        manifest,
        second,
        late,
        ready_timeout,
        record,
        echo,
        tweak,
    } = setup;
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
    if let Some(t) = ready_timeout {
        sc.probes.ready_timeout = t;
    }
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
    if let Some(f) = tweak {
        f(&mut sc);
    }
    let _images = built_images(&sc, &[&base_sha, &pr_sha]);
    let stop = Arc::new(AtomicBool::new(false));
    let pr_server = PrServer::default();
    let loader =
        load_rules_when_nodes_run(names.clone(), mode, late, pr_server.clone(), stop.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut progress = Vec::new();
    let start = std::time::Instant::now();
    let serial = Arc::new(tokio::sync::Mutex::new(()));
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
                route: echo
                    .iter()
                    .map(|(to, _)| ("172.17.255.1:8080".to_string(), to.clone()))
                    .collect(),
                endpoints: echo.as_ref().map(|(_, n)| *n),
                serial: Some(serial.clone()),
                ..Cluster::default()
            }
            .serve()
            .await;
            tie(&kind_dir, name, &server);
            let server = Arc::new(server);
            if side == Side::Pr {
                let _ = pr_server.set(server.clone());
            }
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
                record: record.clone(),
                latency_factor: Default::default(),
            },
            |l| progress.push((start.elapsed(), l)),
        )
        .await
    });
    stop.store(true, Ordering::SeqCst);
    let before_late = loader.join().unwrap();
    // The PR side's API server stops here, while its runtime still runs.
    drop(pr_server);
    Run {
        verdict,
        before_late,
        progress: progress
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        timed: progress,
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

/// The readiness gate waits for kube-proxy's rules for the LB IP on every node: the PR
/// cluster's `worker2` gets them 6 s after the PR side began waiting (and after every other
/// node), and until then no probe runs on that side (its API server was asked for no exec);
/// then the check runs to its verdict.
#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn no_probe_runs_before_every_node_has_the_rules_for_the_lb_ip() {
    let late = Late::By(std::time::Duration::from_secs(6));
    let r = run_check_with(
        "cg",
        Setup {
            late,
            ..Setup::default()
        },
    );
    let log = &r.progress;
    let v = r
        .verdict
        .as_ref()
        .unwrap_or_else(|e| panic!("{e:#}\n{log}"));
    let before = r.before_late.as_ref().unwrap_or_else(|| {
        panic!(
            "the run ended before {}-worker2 got its rules: it did not wait for them\n{log}",
            r.names[1]
        )
    });
    let execs: Vec<&str> = before
        .iter()
        .filter(|q| q.path.ends_with("/exec"))
        .map(|q| q.path.as_str())
        .collect();
    assert!(
        execs.is_empty(),
        "probes ran on {} before its worker2 had the rules: {execs:#?}\n{log}",
        r.names[1]
    );
    assert!(
        v.ok,
        "every expectation holds: {:#?}\n{log}",
        v.expectations
    );
    assert_eq!(v.expectations.len(), 10);
    assert!(
        v.expectations.iter().all(|e| e.actual.is_some()),
        "every pod probed once the rules were there: {:#?}",
        v.expectations
    );
    deleted_what_it_created(&r);
}

/// A node that never gets kube-proxy's rules for the LB IP: past `probes.ready_timeout` (5 s
/// here) that side's probes end in an error naming the node, and none of them runs.
#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn a_node_that_never_gets_the_rules_ends_the_wait_naming_it() {
    let r = run_check_with(
        "cw",
        Setup {
            late: Late::Never,
            ready_timeout: Some(5.0),
            ..Setup::default()
        },
    );
    let log = &r.progress;
    let want = format!(
        "[{pr}] error (probes): lb: kube-proxy on {pr}-worker2 has no rules for 172.17.255.1 after 5s",
        pr = r.names[1]
    );
    assert!(log.contains(&want), "{want}\n{log}");
    // The wait is the scenario's: 5 s from the gates' start (the base side's passed at once and
    // probed), not the default 120 s.
    let at = |what: &str| {
        r.timed
            .iter()
            .find(|(_, l)| l.contains(what))
            .unwrap_or_else(|| panic!("{what}\n{log}"))
            .0
    };
    let waited = at(&want) - at(&format!("[{}] probing lb", r.names[0]));
    assert!(
        (4.0..60.0).contains(&waited.as_secs_f64()),
        "waited {waited:?}\n{log}"
    );
    let v = r
        .verdict
        .as_ref()
        .unwrap_or_else(|e| panic!("{e:#}\n{log}"));
    assert!(!v.ok, "{:#?}", v.expectations);
    for e in &v.expectations {
        assert_eq!(
            e.actual.is_some(),
            e.side == Side::Base,
            "only the base side probed: {e:#?}"
        );
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

/// A live run's recording replays to the same predictions: `check --replay` of the events the
/// run recorded predicts every probe as the live run did (the nodes' addresses, the pods, the
/// Service and each node's rules are all in the recording), and says the same of the packets.
#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn a_recorded_run_replays_to_the_same_predictions() {
    let d = tempfile::tempdir().unwrap();
    let rec = d.path().join("run.jsonl");
    let r = run_check_with(
        "cr",
        Setup {
            mode: ProxyMode::Nftables,
            record: Some(rec.clone()),
            ..Setup::default()
        },
    );
    let log = &r.progress;
    let v = r
        .verdict
        .as_ref()
        .unwrap_or_else(|e| panic!("{e:#}\n{log}"));
    // Predictions from rules on both sides, not reasons why there are none.
    for p in &v.probes {
        for c in [&p.predicted_base, &p.predicted_pr] {
            let c = c
                .as_ref()
                .unwrap_or_else(|| panic!("a probe on each side: {p:#?}"));
            assert!(c.label.is_some(), "predicted from the node's rules: {p:#?}");
        }
    }
    // kube-proxy's table (k3s's, its Service made default/echo) DNATs the LoadBalancer
    // address: a rule decides, on both sides.
    for p in &v.probes {
        for c in [&p.predicted_base, &p.predicted_pr] {
            let c = c.as_ref().unwrap();
            assert_eq!(c.label.as_deref(), Some("dnat"), "{p:#?}");
            assert!(c.rule.is_some(), "{p:#?}");
        }
    }
    assert!(!v.packets.is_empty(), "{log}");

    let js = d.path().join("replayed.json");
    let o = kindred(&[
        "check",
        "--replay",
        rec.to_str().unwrap(),
        "--report-json",
        js.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let replayed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&js).unwrap()).unwrap();
    let live = serde_json::to_value(v).unwrap();
    let predicted = |j: &serde_json::Value| -> Vec<serde_json::Value> {
        j["probes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                serde_json::json!([
                    p["source"],
                    p["target"],
                    p["predicted_base"],
                    p["predicted_pr"]
                ])
            })
            .collect()
    };
    assert_eq!(predicted(&replayed), predicted(&live));
    for key in ["disagreements", "packets"] {
        assert_eq!(replayed[key], live[key], "{key}");
    }
    deleted_what_it_created(&r);
}

/// One endpoint of three unreachable (the echo stand-in resets its connections), each probe 9
/// tries, kindred's own curl run for real against it through exec (one exec at a time, so each
/// probe's tries go round the endpoints in turn): every row that should
/// answer is FLAKY with 6/9 tries and "2/3 endpoints answered in 9 tries", the verdict FLAKY
/// (exit 3), and the PR's `ok >= 0.6` expectation on the same kind of result holds.
#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn one_endpoint_of_three_unreachable_is_a_flaky_verdict_with_its_spread() {
    use common::echo::{Echo, Endpoint};
    use kindred::backend::tries::Judged;
    use kindred::check::verdict::Overall;
    use kindred::model::{Outcome, Rate};
    let echo = Echo::start(&[
        Endpoint::up("echo-a"),
        Endpoint::up("echo-b"),
        Endpoint::down("echo-c"),
    ]);
    fn tweak(sc: &mut Scenario) {
        sc.probes.repeat = 9;
        let rated = sc
            .expect
            .iter_mut()
            .find(|e| e.side == Side::Pr && e.source == "overlay-{{cluster}}-worker")
            .unwrap();
        rated.outcome = "ok >= 0.6".parse().unwrap();
    }
    let r = run_check_with(
        "ft",
        Setup {
            echo: Some((echo.host_port(), 3)),
            tweak: Some(tweak),
            ..Setup::default()
        },
    );
    let log = &r.progress;
    let v = r
        .verdict
        .as_ref()
        .unwrap_or_else(|e| panic!("{e:#}\n{log}"));
    assert_eq!(v.overall, Overall::Flaky, "{:#?}\n{log}", v.expectations);
    assert!(!v.ok);
    assert_eq!(kindred::cli::exit_code(v.overall), 3);
    assert!(v.summary().starts_with("FLAKY: "), "{}", v.summary());
    let rated = v
        .expectations
        .iter()
        .find(|e| {
            e.side == Side::Pr && e.source.starts_with("overlay-") && e.source.ends_with("-worker")
        })
        .unwrap();
    assert_eq!(rated.min_rate, Some(Rate(0.6)));
    assert_eq!(
        (rated.judged, rated.passes, rated.tries),
        (Some(Judged::Met), Some(6), Some(9))
    );
    // The base's hostNetwork pod on worker times out on every try: met (fail), not flaky.
    let dropped = v
        .expectations
        .iter()
        .find(|e| {
            e.side == Side::Base
                && e.source.starts_with("netshoot-")
                && e.source.ends_with("-worker")
        })
        .unwrap();
    assert_eq!(
        (dropped.judged, dropped.actual),
        (Some(Judged::Met), Some(Outcome::Timeout))
    );
    // Every other expectation is flaky: 6 of 9 tries, two endpoints of three.
    assert_eq!(v.flaky, v.expectations.len() - 2, "{:#?}", v.expectations);
    for e in v
        .expectations
        .iter()
        .filter(|e| e.judged == Some(Judged::Flaky))
    {
        assert_eq!(
            (e.passes, e.tries, e.actual),
            (Some(6), Some(9), Some(Outcome::Flaky))
        );
    }
    let row = v
        .probes
        .iter()
        .find(|p| p.source == "overlay-*-worker")
        .unwrap();
    let base = row.base_summary.as_ref().unwrap();
    assert_eq!(
        base.spread().as_deref(),
        Some("2/3 endpoints answered in 9 tries")
    );
    assert_eq!((base.endpoints["echo-a"], base.endpoints["echo-b"]), (3, 3));
    assert!(v.latency.base.total.is_some() && v.latency.pr.total.is_some());
    // Real connections: 9 per probe, the answering two thirds answered.
    assert_eq!(
        echo.answered().values().sum::<usize>() * 3,
        echo.accepted() * 2
    );
    deleted_what_it_created(&r);
}
