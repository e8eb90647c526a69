//! The scenarios' expectation tables follow from kube-proxy's rules: a state is fed what a real
//! run of a scenario reports (its session from the scenario file, the nodes with their
//! addresses, the test pods, the Service with its LB IP, each worker's rule dump, a probe
//! result from every pod) and every expectation must agree with the prediction the rules make
//! for its probe on its side.
//!
//! Dumps: tests/fixtures/predict/ (each names what it follows): the built-in scenario
//! (assets/scenario.yaml, nftables) on both workers at PR 132456's merge-base and with it, and
//! the 2019 walkthrough (assets/scenario-2019.yaml, iptables) on both workers of both clusters,
//! with the demo's addresses. The kernel test at the end loads each into a network namespace.

mod common;
use common::headless::apply_sync;

use kindred::app::predict::Prediction;
use kindred::app::{Msg, State};
use kindred::backend::event::*;
use kindred::model::*;
use kindred::scenario::Scenario;

/// One cluster as a run of a scenario reports it.
struct Cluster {
    /// Control plane, worker, worker2: their addresses.
    nodes: [&'static str; 3],
    /// overlay on worker, overlay on worker2, echo on worker2.
    pod_ips: [&'static str; 3],
    /// The Service's LoadBalancer IP and port.
    lb: &'static str,
    /// The rule dumps of worker and worker2 (under tests/fixtures/predict).
    dumps: [&'static str; 2],
}

/// The built-in scenario on kind's network 172.18.0.0/16 (the fixtures' headers say the same).
const BUILTIN_BASE: Cluster = Cluster {
    nodes: ["172.18.0.2", "172.18.0.3", "172.18.0.4"],
    pod_ips: ["10.244.1.3", "10.244.2.3", "10.244.2.2"],
    lb: "172.18.255.200:8080",
    dumps: ["builtin-base-worker.nft", "builtin-base-worker2.nft"],
};
const BUILTIN_PR: Cluster = Cluster {
    nodes: ["172.18.0.5", "172.18.0.6", "172.18.0.7"],
    pod_ips: ["10.244.1.3", "10.244.2.3", "10.244.2.2"],
    lb: "172.18.255.210:8080",
    dumps: ["builtin-pr-worker.nft", "builtin-pr-worker2.nft"],
};

/// The 2019 walkthrough with the demo's addresses (tests/demo_asset.rs).
const WALK_MASTER: Cluster = Cluster {
    nodes: ["172.17.0.2", "172.17.0.3", "172.17.0.4"],
    pod_ips: ["10.244.1.2", "10.244.2.3", "10.244.2.2"],
    lb: "172.17.255.1:8080",
    dumps: ["2019-master-worker.txt", "2019-master-worker2.txt"],
};
const WALK_77523: Cluster = Cluster {
    nodes: ["172.17.0.5", "172.17.0.6", "172.17.0.7"],
    pod_ips: ["10.244.1.2", "10.244.2.3", "10.244.2.2"],
    lb: "172.17.254.1:8080",
    dumps: ["2019-77523-worker.txt", "2019-77523-worker2.txt"],
};

fn scenario(file: &str) -> Scenario {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    Scenario::load(&path).unwrap_or_else(|e| panic!("{file}: {e:#}"))
}

fn fixture(name: &str) -> String {
    let p = common::fixture(&format!("predict/{name}"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn send(st: &mut State, ev: Event) {
    apply_sync(st, Msg::Backend(ev));
}

/// The scenario's test pods on one side: (name, node suffix, hostNetwork, IP).
fn test_pods(name: &str, c: &Cluster) -> [(String, &'static str, bool, &'static str); 5] {
    [
        (
            format!("echo-{name}-worker2"),
            "worker2",
            false,
            c.pod_ips[2],
        ),
        (
            format!("netshoot-{name}-worker"),
            "worker",
            true,
            c.nodes[1],
        ),
        (
            format!("netshoot-{name}-worker2"),
            "worker2",
            true,
            c.nodes[2],
        ),
        (
            format!("overlay-{name}-worker"),
            "worker",
            false,
            c.pod_ips[0],
        ),
        (
            format!("overlay-{name}-worker2"),
            "worker2",
            false,
            c.pod_ips[1],
        ),
    ]
}

/// What one side of a run reports: its nodes, pods, Service, both workers' rules, then a probe
/// result from every test pod ([`probe_results`]).
fn feed_side(st: &mut State, sc: &Scenario, side: Side, c: &Cluster) {
    let name = &sc.side(side).name;
    let node = |suffix: &str| format!("{name}-{suffix}");
    let roles = [
        ("control-plane", "control-plane"),
        ("worker", "worker"),
        ("worker2", "worker"),
    ];
    for ((suffix, role), ip) in roles.iter().zip(c.nodes) {
        let (name, role, ip) = (node(suffix), NodeRole::from_label(role), Some(ip.into()));
        send(
            st,
            Event::Node {
                side,
                name,
                role,
                ip,
            },
        );
    }
    let pods = test_pods(name, c);
    for (pod, on, host_network, ip) in &pods {
        let pod = PodInfo {
            name: pod.clone(),
            node: node(on),
            host_network: *host_network,
            ip: Some(ip.to_string()),
            phase: PodPhase::Running,
            restarts: 0,
        };
        send(st, Event::Pod { side, pod });
    }
    let (lb_ip, port) = c.lb.split_once(':').unwrap();
    let service = ServiceInfo {
        name: sc.service.to_string(),
        lb_ip: Some(lb_ip.into()),
        port: port.parse().unwrap(),
        external_traffic_policy: Some("Local".into()),
        warning: None,
    };
    send(st, Event::Service { side, service });
    for (suffix, dump) in ["worker", "worker2"].iter().zip(c.dumps) {
        let (node, text, at_ms) = (node(suffix), fixture(dump), None);
        send(
            st,
            Event::RuleDump {
                side,
                node,
                text,
                at_ms,
            },
        );
    }
    let target = format!("lb {}", c.lb);
    send(st, Event::ProbesStarted { side, target });
    for result in probe_results(sc, side, &pods, c) {
        send(st, Event::Probe { side, result });
    }
    send(st, Event::ProbesDone { side });
}

/// A probe result from every test pod: the outcome the scenario expects (a timeout where it
/// expects `fail`), else as the walkthrough saw it (the 2019 scenario expects only the
/// hostNetwork pods): reached from worker2, timed out from the worker. Predictions do not
/// depend on outcomes; the results make the probes known.
fn probe_results(
    sc: &Scenario,
    side: Side,
    pods: &[(String, &str, bool, &str)],
    c: &Cluster,
) -> Vec<ProbeResult> {
    let expected = sc.expectations();
    let outcome = |pod: &str, on: &str| {
        let e = expected.iter().find(|e| e.side == side && e.source == pod);
        match e.map(|e| e.outcome.outcome) {
            Some(Outcome::Fail) => Outcome::Timeout,
            Some(o) => o,
            None if on == "worker" => Outcome::Timeout,
            None => Outcome::Ok,
        }
    };
    pods.iter()
        .map(|(pod, on, ..)| {
            let outcome = outcome(pod, on);
            ProbeResult {
                source: pod.clone(),
                target: c.lb.into(),
                outcome,
                http_status: (outcome == Outcome::Ok).then_some(200),
                latency_ms: Some(3),
                detail: None,
                scenario_target: Some(Target::Lb),
                tries: Vec::new(),
                ready_endpoints: None,
            }
        })
        .collect()
}

/// A state fed a whole run of `sc` on the two clusters.
fn run(sc: &Scenario, base: &Cluster, pr: &Cluster) -> State {
    let mut st = State::new();
    send(
        &mut st,
        Event::Session(Box::new(kindred::backend::live::session(sc))),
    );
    feed_side(&mut st, sc, Side::Base, base);
    feed_side(&mut st, sc, Side::Pr, pr);
    st
}

/// The prediction the state holds for `source`'s probe of the LB on `side`.
fn prediction<'a>(st: &'a State, side: Side, source: &str, c: &Cluster) -> &'a Prediction {
    let key = (source.to_string(), c.lb.to_string());
    match st.side(side).predictions.get(&key) {
        Some(Ok(p)) => p,
        Some(Err(why)) => panic!("{side:?} {source}: no prediction: {why}"),
        None => panic!("{side:?} {source}: no prediction asked for"),
    }
}

/// Every expectation of `sc` against the prediction for its probe: the ones that disagree, in
/// words (empty: the table follows from the rules).
fn disagreements(st: &State, sc: &Scenario, base: &Cluster, pr: &Cluster) -> Vec<String> {
    let expected = sc.expectations();
    assert!(!expected.is_empty());
    let mut wrong = Vec::new();
    for e in &expected {
        let c = if e.side == Side::Base { base } else { pr };
        let p = prediction(st, e.side, &e.source, c);
        if p.reaches() != Some(e.outcome.outcome == Outcome::Ok) {
            wrong.push(format!(
                "{:?} {}: expected {:?}, the rules of {} say {} ({})",
                e.side,
                e.source,
                e.outcome.outcome,
                p.node,
                p.label(),
                p.deciding_rule().unwrap_or_default()
            ));
        }
    }
    wrong
}

#[test]
fn builtin_expectations_follow_from_kube_proxys_nftables_rules() {
    let sc = scenario("assets/scenario.yaml");
    assert_eq!(sc.workloads, "builtin");
    assert_eq!(sc.expectations().len(), 10, "five probes, two sides");
    let st = run(&sc, &BUILTIN_BASE, &BUILTIN_PR);
    let wrong = disagreements(&st, &sc, &BUILTIN_BASE, &BUILTIN_PR);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    let label = |side, source: &str, c| prediction(&st, side, source, c).label();
    // Before PR 132456 filter-output (dstnat-10) drops the node's own packet to the LB IP
    // through no-endpoint-services; the overlay pod's is DNATed in nat-prerouting first.
    let base_host = prediction(&st, Side::Base, "netshoot-base-worker", &BUILTIN_BASE);
    assert_eq!(base_host.label(), "drop filter-output");
    assert!(
        base_host
            .deciding_rule()
            .unwrap()
            .contains("@no-endpoint-services"),
        "{:?}",
        base_host.deciding_rule()
    );
    assert_eq!(base_host.node, "base-worker");
    assert_eq!(
        label(Side::Base, "overlay-base-worker", &BUILTIN_BASE),
        "dnat"
    );
    // With it, filter-output runs after the DNAT.
    assert_eq!(
        label(Side::Pr, "netshoot-132456-worker", &BUILTIN_PR),
        "dnat"
    );
    for (side, source, c) in [
        (Side::Base, "netshoot-base-worker2", &BUILTIN_BASE),
        (Side::Base, "echo-base-worker2", &BUILTIN_BASE),
        (Side::Pr, "overlay-132456-worker", &BUILTIN_PR),
    ] {
        let p = prediction(&st, side, source, c);
        assert_eq!(p.trace.endpoints, ["10.244.2.2:8080"], "{source}");
    }
}

#[test]
fn walkthrough_2019_expectations_follow_from_its_iptables_dumps() {
    let sc = scenario("assets/scenario-2019.yaml");
    assert_eq!(sc.expectations().len(), 4);
    let st = run(&sc, &WALK_MASTER, &WALK_77523);
    let wrong = disagreements(&st, &sc, &WALK_MASTER, &WALK_77523);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // Without PR 77523 KUBE-XLB marks the node's own packet for drop and kubelet's
    // KUBE-FIREWALL drops it in filter OUTPUT; with it, it goes to KUBE-SVC.
    let master = prediction(&st, Side::Base, "netshoot-master-worker", &WALK_MASTER);
    assert_eq!(master.label(), "drop filter/OUTPUT");
    assert!(
        master.deciding_rule().unwrap().contains("KUBE-FIREWALL"),
        "{:?}",
        master.deciding_rule()
    );
    let pr = prediction(&st, Side::Pr, "netshoot-77523-worker", &WALK_77523);
    assert_eq!(pr.label(), "dnat");
    assert_eq!(pr.trace.endpoints, ["10.244.2.2:8080"]);
}

/// The check can fail: the PR's rules fed as the base's contradict the base's expectation that
/// the node's own probe from the worker is dropped (and only that one), in both scenarios.
#[test]
fn the_prs_rules_on_the_base_side_contradict_the_base_expectations() {
    let sc = scenario("assets/scenario.yaml");
    let pr_as_base = Cluster {
        dumps: ["builtin-pr-worker.nft", "builtin-pr-worker2.nft"],
        lb: "172.18.255.210:8080",
        ..BUILTIN_BASE
    };
    let st = run(&sc, &pr_as_base, &BUILTIN_PR);
    let wrong = disagreements(&st, &sc, &pr_as_base, &BUILTIN_PR);
    assert_eq!(wrong.len(), 1, "{wrong:?}");
    assert!(wrong[0].starts_with("Base netshoot-base-worker: expected Fail"));

    let sc = scenario("assets/scenario-2019.yaml");
    let pr_as_base = Cluster {
        dumps: ["2019-77523-worker.txt", "2019-77523-worker2.txt"],
        lb: "172.17.254.1:8080",
        ..WALK_MASTER
    };
    let st = run(&sc, &pr_as_base, &WALK_77523);
    let wrong = disagreements(&st, &sc, &pr_as_base, &WALK_77523);
    assert_eq!(wrong.len(), 1, "{wrong:?}");
    assert!(wrong[0].starts_with("Base netshoot-master-worker: expected Fail"));
}

/// Each fixture is what the kernel makes of it: the nftables listings load with `nft -f` and
/// list back unchanged; the iptables dumps load with iptables-legacy-restore and save back
/// unchanged, table by table.
#[test]
#[ignore = "needs root, ip netns, nft and iptables-legacy (CI runs it)"]
fn the_fixtures_are_what_the_kernel_lists_back() {
    let body = |text: &str| -> String {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    for side in ["base", "pr"] {
        for node in ["worker", "worker2"] {
            let name = format!("builtin-{side}-{node}.nft");
            let text = body(&fixture(&name));
            let ns = common::netns::Netns::new(&format!("pe-{side}-{node}"));
            ns.feed(&["nft", "-f", "-"], &text);
            let listed = ns.save("nft", &["list", "table", "ip", "kube-proxy"]);
            assert!(listed == text, "{name}: nft lists it back as\n{listed}");
        }
    }
    for cluster in ["master", "77523"] {
        for node in ["worker", "worker2"] {
            let name = format!("2019-{cluster}-{node}.txt");
            let text = body(&fixture(&name));
            let ns = common::netns::Netns::new(&format!("pe19-{cluster}-{node}"));
            ns.restore("iptables-legacy-restore", &text);
            let saved: String = ["filter", "nat"]
                .iter()
                .map(|t| body(&ns.save("iptables-legacy-save", &["-t", t])))
                .collect();
            assert!(saved == text, "{name}: iptables-legacy-save gives\n{saved}");
        }
    }
}
