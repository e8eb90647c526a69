//! The demo recording (assets/demo.jsonl) is made here from the 2019 walkthrough
//! (shared/seed) and the full dumps of both workers of both clusters in tests/fixtures/predict,
//! built around the blog's KUBE-XLB lines (tests/fixtures/iptables/mauilion-blog-2019-*), so
//! that everything it shows, the rules' predictions for every probe included, stays consistent
//! with them. `KINDRED_BLESS=1 cargo test --test demo_asset` rewrites the asset.

mod common;

use kindred::backend::event::*;
use kindred::backend::recording::{self, FORMAT, Header, Record, VERSION};
use kindred::model::*;

/// The rules of worker and worker2, per cluster (the demo's addresses).
const MASTER_DUMPS: [&str; 2] = [
    "tests/fixtures/predict/2019-master-worker.txt",
    "tests/fixtures/predict/2019-master-worker2.txt",
];
const PR_DUMPS: [&str; 2] = [
    "tests/fixtures/predict/2019-77523-worker.txt",
    "tests/fixtures/predict/2019-77523-worker2.txt",
];
/// The blog's KUBE-XLB lines of each cluster's worker.
const MASTER_BLOG: &str = "tests/fixtures/iptables/mauilion-blog-2019-master-cluster-KUBE-XLB.txt";
const PR_BLOG: &str = "tests/fixtures/iptables/mauilion-blog-2019-pr77523-cluster-KUBE-XLB.txt";

/// A dump as a node gives it: the fixture without its comment lines.
fn node_dump(path: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

struct Rec {
    out: Vec<Record>,
}

impl Rec {
    fn at(&mut self, t: u64, event: Event) {
        self.out.push(Record { t, event });
    }
}

struct SideSpec {
    side: Side,
    name: &'static str,
    image: &'static str,
    git_ref: &'static str,
    lb: &'static str,
    nodes: [(&'static str, &'static str, &'static str); 3],
    /// Pod IPs: overlay on worker, overlay on worker2, echo on worker2.
    pod_ips: [&'static str; 3],
    /// The rules of worker and worker2.
    dumps: [&'static str; 2],
    /// Offset so the two sides interleave.
    skew: u64,
    /// Does the hostNetwork pod on the worker without the echo pod reach the LB?
    host_worker_ok: bool,
}

fn build(r: &mut Rec, s: &SideSpec) {
    let t = s.skew;
    let side = s.side;
    let out = |r: &mut Rec, dt: u64, phase: Phase, line: String| {
        r.at(t + dt, Event::Output { side, phase, line })
    };
    r.at(
        t,
        Event::Phase {
            side,
            phase: Phase::Build,
            state: PhaseState::Running,
        },
    );
    let lines = [
        "Detected build type: \"source\"".to_string(),
        "Building using source: \"/home/dcooley/k8s-dev/src/k8s.io/kubernetes\"".to_string(),
        "Starting to build Kubernetes".to_string(),
        "+++ [0508 09:12:03] Verifying Prerequisites....".to_string(),
        "+++ [0508 09:12:05] Building Docker image kube-build:build-4a8f3d1e0c-5-v1.12.5-1"
            .to_string(),
        "+++ [0508 09:13:31] Syncing sources to container".to_string(),
        "+++ [0508 09:13:40] Running build command...".to_string(),
        "+++ [0508 09:13:52] Building go targets for linux/amd64:".to_string(),
        "    cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kube-proxy"
            .to_string(),
        "+++ [0508 09:19:11] Building go targets for linux/amd64:".to_string(),
        "    cmd/kubelet cmd/kubeadm cmd/kubectl".to_string(),
        "Finished building Kubernetes".to_string(),
        "Building node image ...".to_string(),
        format!(
            "Building in container: {}",
            if side == Side::Base {
                "6f0c2d9a1b7e"
            } else {
                "a41e77c09d3f"
            }
        ),
        format!("Image \"{}\" build completed.", s.image),
    ];
    for (i, l) in lines.into_iter().enumerate() {
        out(r, 300 + i as u64 * 350, Phase::Build, l);
    }
    r.at(
        t + 5600,
        Event::Phase {
            side,
            phase: Phase::Build,
            state: PhaseState::Done,
        },
    );

    // kind create cluster, as printed when stderr is not a terminal.
    let c0 = t + 5800;
    r.at(
        c0,
        Event::Phase {
            side,
            phase: Phase::Create,
            state: PhaseState::Running,
        },
    );
    let steps = [
        format!("Ensuring node image ({}) 🖼", s.image),
        "Preparing nodes 📦 📦 📦".to_string(),
        "Writing configuration 📜".to_string(),
        "Starting control-plane 🕹️".to_string(),
        "Installing CNI 🔌".to_string(),
        "Installing StorageClass 💾".to_string(),
        "Joining worker nodes 🚜".to_string(),
    ];
    out(
        r,
        5800,
        Phase::Create,
        format!("Creating cluster \"{}\" ...", s.name),
    );
    let mut dt = 5900;
    for (i, step) in steps.iter().enumerate() {
        out(r, dt, Phase::Create, format!(" • {step}  ..."));
        dt += 400;
        out(r, dt, Phase::Create, format!(" ✓ {step}"));
        dt += 50;
        if i == 1 {
            for (n, role, ip) in s.nodes {
                r.at(
                    t + dt,
                    Event::Node {
                        side,
                        name: n.into(),
                        role: NodeRole::from_label(role),
                        ip: Some(ip.into()),
                    },
                );
            }
        }
    }
    out(
        r,
        dt,
        Phase::Create,
        format!("Set kubectl context to \"kind-{}\"", s.name),
    );
    r.at(
        t + dt + 50,
        Event::Phase {
            side,
            phase: Phase::Create,
            state: PhaseState::Done,
        },
    );

    // Deploy: MetalLB, its pool, the five pinned pods and the Service.
    let d0 = t + dt + 200;
    r.at(
        d0,
        Event::Phase {
            side,
            phase: Phase::Deploy,
            state: PhaseState::Running,
        },
    );
    let (lb_ip, port) = s.lb.split_once(':').unwrap();
    let deploy_lines = [
        "applied namespace/metallb-system".to_string(),
        "applied deployment.apps/controller, daemonset.apps/speaker (metallb-system)".to_string(),
        "waiting for metallb-system/controller ... ready".to_string(),
        format!(
            "applied ipaddresspool.metallb.io/kindred ({lb_ip}/32), l2advertisement.metallb.io/kindred"
        ),
        "applied default/echo (Service, LoadBalancer, externalTrafficPolicy: Local)".to_string(),
        "applied 5 pods pinned with nodeName".to_string(),
    ];
    for (i, l) in deploy_lines.into_iter().enumerate() {
        out(r, d0 - t + 100 + i as u64 * 250, Phase::Deploy, l);
    }
    let w = format!("{}-worker", s.name);
    let w2 = format!("{}-worker2", s.name);
    let pods = [
        (
            format!("echo-{}-worker2", s.name),
            w2.clone(),
            false,
            s.pod_ips[2],
        ),
        (
            format!("netshoot-{}-worker", s.name),
            w.clone(),
            true,
            s.nodes[1].2,
        ),
        (
            format!("netshoot-{}-worker2", s.name),
            w2.clone(),
            true,
            s.nodes[2].2,
        ),
        (
            format!("overlay-{}-worker", s.name),
            w.clone(),
            false,
            s.pod_ips[0],
        ),
        (
            format!("overlay-{}-worker2", s.name),
            w2.clone(),
            false,
            s.pod_ips[1],
        ),
    ];
    let p0 = d0 + 1700;
    for (i, (name, node, host, _)) in pods.iter().enumerate() {
        r.at(
            p0 + i as u64 * 30,
            Event::Pod {
                side,
                pod: PodInfo {
                    name: name.clone(),
                    node: node.clone(),
                    host_network: *host,
                    ip: None,
                    phase: PodPhase::Pending,
                    restarts: 0,
                },
            },
        );
    }
    r.at(
        p0 + 200,
        Event::Service {
            side,
            service: ServiceInfo {
                name: "default/echo".into(),
                lb_ip: None,
                port: port.parse().unwrap(),
                external_traffic_policy: Some("Local".into()),
                warning: None,
            },
        },
    );
    for (i, (name, node, host, ip)) in pods.iter().enumerate() {
        r.at(
            p0 + 900 + i as u64 * 120,
            Event::Pod {
                side,
                pod: PodInfo {
                    name: name.clone(),
                    node: node.clone(),
                    host_network: *host,
                    ip: Some(ip.to_string()),
                    phase: PodPhase::Running,
                    restarts: 0,
                },
            },
        );
    }
    r.at(
        p0 + 1600,
        Event::Service {
            side,
            service: ServiceInfo {
                name: "default/echo".into(),
                lb_ip: Some(lb_ip.into()),
                port: port.parse().unwrap(),
                external_traffic_policy: Some("Local".into()),
                warning: None,
            },
        },
    );
    r.at(
        p0 + 1700,
        Event::Phase {
            side,
            phase: Phase::Deploy,
            state: PhaseState::Done,
        },
    );

    // Rules of the worker without the echo pod and of worker2 with it.
    for (i, (node, path)) in [&w, &w2].into_iter().zip(s.dumps).enumerate() {
        r.at(
            p0 + 1900 + i as u64 * 40,
            Event::RuleDump {
                side,
                node: node.clone(),
                text: node_dump(path),
                at_ms: None,
            },
        );
    }

    // Probes: curl the LB from every pod. Worker2 has the endpoint: traffic stays local and
    // works. On the worker, KUBE-XLB has no local endpoint and marks the packet for drop:
    // kubelet's KUBE-FIREWALL drops the host-network pod's in OUTPUT (curl times out), except on
    // the PR build, whose two LOCAL rules send it to KUBE-SVC first. The overlay pod's is
    // forwarded unchanged towards the LB IP (the mark is acted on in INPUT and OUTPUT only): the
    // rules leave it undecided; the recording has it time out.
    let q0 = p0 + 2300;
    r.at(
        q0,
        Event::ProbesStarted {
            side,
            target: format!("lb {}", s.lb),
        },
    );
    let echo = pods
        .iter()
        .map(|(name, ..)| name)
        .find(|n| n.starts_with("echo-"))
        .expect("the echo pod");
    for (i, (name, node, host, _)) in pods.iter().enumerate() {
        let on_worker = *node == w;
        let ok = !on_worker || (*host && s.host_worker_ok);
        let result = probe_result(name, s.lb, ok, i as u64, echo);
        // Each try that times out waits 2 s.
        let dt = if ok {
            80 + i as u64 * 40
        } else {
            2000 * TRIES + i as u64 * 10
        };
        r.at(q0 + dt, Event::Probe { side, result });
    }
    r.at(q0 + 2000 * TRIES + 100, Event::ProbesDone { side });
}

/// Tries per probe in the demo (`probes.repeat`).
const TRIES: u64 = 5;

/// The `i`th pod's probe of the LB: `TRIES` tries that all answer from the echo pod (the 4th
/// about three times slower: p99 above p50) or all time out.
fn probe_result(name: &str, lb: &str, ok: bool, i: u64, echo: &str) -> ProbeResult {
    let tries: Vec<Try> = (0..TRIES)
        .map(|k| match ok {
            true => {
                let jitter = (i * 7 + k * 13) % 9 * 100;
                let total = (2 + i) * 1000 * if k == 3 { 3 } else { 1 } + jitter;
                Try {
                    outcome: Outcome::Ok,
                    http_status: Some(200),
                    connect_us: Some(total / 3 + 40 * k),
                    total_us: Some(total),
                    endpoint: Some(echo.to_string()),
                    detail: None,
                }
            }
            false => Try {
                outcome: Outcome::Timeout,
                http_status: None,
                connect_us: None,
                total_us: Some(2_000_000 + (i * 31 + k * 17) % 1000),
                endpoint: None,
                detail: Some("curl: (28) Connection timed out after 2001 milliseconds".into()),
            },
        })
        .collect();
    let mut totals: Vec<u64> = tries.iter().filter_map(|t| t.total_us).collect();
    totals.sort_unstable();
    ProbeResult {
        source: name.into(),
        target: lb.into(),
        outcome: if ok { Outcome::Ok } else { Outcome::Timeout },
        http_status: ok.then_some(200),
        // The median try's total time.
        latency_ms: Some((totals[totals.len() / 2] + 500) / 1000),
        detail: (!ok).then(|| "curl: (28) Connection timed out after 2001 milliseconds".into()),
        scenario_target: None,
        tries,
        ready_endpoints: Some(1),
    }
}

fn demo() -> String {
    let base = SideSpec {
        side: Side::Base,
        name: "master",
        image: "mauilion/node:master",
        git_ref: "master",
        lb: "172.17.255.1:8080",
        nodes: [
            ("master-control-plane", "control-plane", "172.17.0.2"),
            ("master-worker", "worker", "172.17.0.3"),
            ("master-worker2", "worker", "172.17.0.4"),
        ],
        pod_ips: ["10.244.1.2", "10.244.2.3", "10.244.2.2"],
        dumps: MASTER_DUMPS,
        skew: 0,
        host_worker_ok: false,
    };
    let pr = SideSpec {
        side: Side::Pr,
        name: "77523",
        image: "mauilion/node:77523",
        git_ref: "pr/77523",
        lb: "172.17.254.1:8080",
        nodes: [
            ("77523-control-plane", "control-plane", "172.17.0.5"),
            ("77523-worker", "worker", "172.17.0.6"),
            ("77523-worker2", "worker", "172.17.0.7"),
        ],
        pod_ips: ["10.244.1.2", "10.244.2.3", "10.244.2.2"],
        dumps: PR_DUMPS,
        skew: 400,
        host_worker_ok: true,
    };
    let mut r = Rec { out: Vec::new() };
    let side_info = |s: &SideSpec| SideInfo {
        name: s.name.into(),
        git_ref: Some(s.git_ref.into()),
        image: Some(s.image.into()),
        context: None,
        namespace: None,
    };
    r.at(
        0,
        Event::Session(Box::new(SessionInfo {
            base: side_info(&base),
            pr: side_info(&pr),
            service: "default/echo".parse().unwrap(),
            probe_target: Target::Lb,
            probe_targets: vec![],
            expectations: vec![
                Expectation {
                    side: Side::Base,
                    source: "netshoot-master-worker".into(),
                    outcome: Outcome::Fail,
                    target: None,
                    min_rate: None,
                },
                Expectation {
                    side: Side::Pr,
                    source: "netshoot-77523-worker".into(),
                    outcome: Outcome::Ok,
                    target: None,
                    min_rate: None,
                },
                Expectation {
                    side: Side::Base,
                    source: "netshoot-master-worker2".into(),
                    outcome: Outcome::Ok,
                    target: None,
                    min_rate: None,
                },
                Expectation {
                    side: Side::Pr,
                    source: "netshoot-77523-worker2".into(),
                    outcome: Outcome::Ok,
                    target: None,
                    min_rate: None,
                },
            ],
            banner: Some("DEMO".into()),
            proxy_mode: None,
        })),
    );
    build(&mut r, &base);
    build(&mut r, &pr);
    r.out.sort_by_key(|x| x.t);
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        kindred: Some(env!("CARGO_PKG_VERSION").into()),
        note: Some("kindred demo: the 2019 walkthrough of kubernetes PR 77523 (clusters master and 77523); rule dumps of both workers from tests/fixtures/predict/2019-*, built around the blog's KUBE-XLB lines (tests/fixtures/iptables/mauilion-blog-2019-*); each probe tried 5 times".into()),
    };
    recording::Recording {
        header,
        records: r.out,
        skipped: 0,
        complete: true,
    }
    .to_jsonl()
}

#[test]
fn demo_asset_is_current() {
    let want = demo();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/demo.jsonl");
    if std::env::var_os("KINDRED_BLESS").is_some() {
        std::fs::write(path, &want).unwrap();
    }
    let have =
        std::fs::read_to_string(path).expect("assets/demo.jsonl (KINDRED_BLESS=1 writes it)");
    assert!(
        have == want,
        "assets/demo.jsonl is stale: run KINDRED_BLESS=1 cargo test --test demo_asset"
    );
    let rec = recording::parse(&have, "assets/demo.jsonl").unwrap();
    assert_eq!(rec.skipped, 0);
}

#[test]
fn demo_dumps_are_the_walkthrough_fixtures() {
    let rec = recording::parse(&demo(), "demo").unwrap();
    let dumps: Vec<_> = rec
        .records
        .iter()
        .filter_map(|r| match &r.event {
            Event::RuleDump {
                side, node, text, ..
            } => Some((*side, node.clone(), text.clone())),
            _ => None,
        })
        .collect();
    let nodes: Vec<_> = dumps.iter().map(|(s, n, _)| (*s, n.as_str())).collect();
    assert_eq!(
        nodes,
        [
            (Side::Base, "master-worker"),
            (Side::Base, "master-worker2"),
            (Side::Pr, "77523-worker"),
            (Side::Pr, "77523-worker2"),
        ]
    );
    let files = MASTER_DUMPS.iter().chain(&PR_DUMPS);
    for ((_, node, text), path) in dumps.iter().zip(files) {
        assert_eq!(*text, node_dump(path), "{node}");
    }
    // The workers' dumps hold the blog's KUBE-XLB lines, each one whole.
    for (blog, (_, node, text)) in [MASTER_BLOG, PR_BLOG].iter().zip([&dumps[0], &dumps[2]]) {
        let lines: Vec<&str> = text.lines().collect();
        for l in std::fs::read_to_string(blog).unwrap().lines() {
            if !l.starts_with('#') {
                assert!(lines.contains(&l), "{node}: no line {l:?} of {blog}");
            }
        }
    }
    // Between the clusters, on either node, the rules differ by the two LOCAL rules of PR
    // 77523 and nothing else.
    use kindred::rules::diff::{Options, compare_texts};
    for (b, p) in [(&dumps[0], &dumps[2]), (&dumps[1], &dumps[3])] {
        let c = compare_texts(&b.2, &p.2, &Options::default()).unwrap();
        let changed: Vec<_> = c.services.iter().filter(|s| !s.equal).collect();
        assert_eq!(changed.len(), 1, "{}", b.1);
        assert_eq!(changed[0].service, "default/echo:");
        assert!(changed[0].removed.is_empty(), "{}", b.1);
        let added: Vec<&str> = changed[0].added.iter().map(|r| r.rule()).collect();
        assert_eq!(
            added,
            [
                "-A KUBE-XLB-<hash> -m comment --comment \"masquerade LOCAL traffic for default/echo: LB IP\" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ",
                "-A KUBE-XLB-<hash> -m comment --comment \"route LOCAL traffic for default/echo: LB IP to service chain\" -m addrtype --src-type LOCAL -j KUBE-SVC-<hash>",
            ],
            "{}",
            b.1
        );
        assert!(c.shared.as_ref().is_some_and(|s| s.equal), "{}", b.1);
    }
}

/// The demo shows a prediction for every probe, and where the rules decide (a DNAT or a drop)
/// it is what the walkthrough observed. The overlay pods on the worker are left undecided: no
/// clusterCIDR, so KUBE-XLB only marks their packet for drop (0x8000) and no DNAT happens; the
/// mark is acted on by KUBE-FIREWALL in INPUT and OUTPUT only, so the node forwards the packet
/// to the LB IP unchanged (`accept`), and what becomes of it is the network's business.
#[test]
fn demo_predictions_match_what_was_observed_where_the_rules_decide() {
    // The recording assets/demo.jsonl holds (demo_asset_is_current), made afresh so that a
    // bless rewriting the file meanwhile does not matter.
    let rec = recording::parse(&demo(), "demo").unwrap();
    let st = common::headless::state_from(&rec);
    let mut undecided = Vec::new();
    for side in [Side::Base, Side::Pr] {
        let s = st.side(side);
        assert_eq!(s.probes.len(), 5, "{side:?}");
        for (key, cell) in &s.probes {
            let p = match s.predictions.get(key) {
                Some(Ok(p)) => p,
                other => panic!("{side:?} {key:?}: {other:?}"),
            };
            match p.reaches() {
                Some(reaches) => assert_eq!(
                    reaches,
                    cell.last.outcome == Outcome::Ok,
                    "{side:?} {}: predicted {}, observed {:?}",
                    key.0,
                    p.label(),
                    cell.last.outcome
                ),
                None => undecided.push((side, key.0.clone(), p.label())),
            }
        }
    }
    let accept = |side, pod: &str| (side, pod.to_string(), "accept".to_string());
    assert_eq!(
        undecided,
        [
            accept(Side::Base, "overlay-master-worker"),
            accept(Side::Pr, "overlay-77523-worker")
        ]
    );
    let label =
        |side, pod: &str, lb: &str| match &st.side(side).predictions[&(pod.into(), lb.into())] {
            Ok(p) => p.label(),
            Err(e) => e.clone(),
        };
    assert_eq!(
        label(Side::Base, "netshoot-master-worker", "172.17.255.1:8080"),
        "drop filter/OUTPUT"
    );
    assert_eq!(
        label(Side::Pr, "netshoot-77523-worker", "172.17.254.1:8080"),
        "dnat"
    );
}
