//! The iptables tracer against kube-proxy's own packet-flow expectations: the rule sets of
//! `pkg/proxy/iptables/proxier_test.go` (fixtures under tests/fixtures/trace/iptables, each
//! naming its source) and the `runPacketFlowTests` cases written for them, a row each.
//!
//! kube-proxy's tracer does not say where a packet starts; here a packet whose source is one
//! of the node's addresses starts at the host (output), any other at prerouting (a pod, or a
//! client outside the node). Its outputs map to verdicts: "IP:PORT, ..." is `dnat` to those
//! endpoints, "DROP" and "REJECT" are themselves, "" (no rule) and "ACCEPT" are `accept`. Its
//! `masq` is whether KUBE-MARK-MASQ was reached; here it is whether KUBE-POSTROUTING's
//! MASQUERADE was, the mark carried through the walk.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::fixture;
use kindred::rules::mixed::OneDump;
use kindred::rules::trace::{Origin, Packet, Proto, Trace, Tracer, Verdict};

/// The node's addresses in kube-proxy's tests (testNodeIPs, IPv4 only; `127.0.0.1` is always
/// local here).
const NODE_IPS_V131: &[&str] = &["192.168.0.2", "192.168.1.2", "192.168.99.11"];
/// testNodeIP, in the v1.28-era tests that pass one node IP.
const NODE_IP_V128: &[&str] = &["192.168.0.2"];

const TEST_EXTERNAL_CLIENT: &str = "203.0.113.2";
const TEST_EXTERNAL_CLIENT_BLOCKED: &str = "203.0.113.130";

/// One `packetFlowTest`: name, source, destination, port, expected output, masquerade.
type Flow = (
    &'static str,
    &'static str,
    &'static str,
    u16,
    &'static str,
    bool,
);

fn load(rel: &str) -> OneDump {
    let text = std::fs::read_to_string(fixture(rel)).unwrap();
    OneDump::parse(text).unwrap()
}

fn packet(src: &str, dst: &str, dport: u16, local: &[&str]) -> Packet {
    let local_ips: Vec<Ipv4Addr> = local.iter().map(|s| s.parse().unwrap()).collect();
    let src: Ipv4Addr = src.parse().unwrap();
    let from = if local_ips.contains(&src) || src.is_loopback() {
        Origin::Host
    } else {
        Origin::Pod
    };
    Packet {
        src,
        dst: dst.parse().unwrap(),
        dport,
        sport: 43210,
        proto: Proto::Tcp,
        from,
        local_ips,
    }
}

/// kube-proxy's output string for a trace.
fn output(t: &Trace) -> String {
    match t.verdict {
        Verdict::Dnat => t.endpoints.join(", "),
        Verdict::Drop => "DROP".into(),
        Verdict::Reject => "REJECT".into(),
        Verdict::Accept => "".into(),
        Verdict::Unknown => format!("UNKNOWN {:?}", t.notes),
    }
}

fn run(rel: &str, local: &[&str], flows: &[Flow]) {
    let d = load(rel);
    let tracer = Tracer::new(&d);
    let mut failed = Vec::new();
    for &(name, src, dst, port, want, masq) in flows {
        let t = tracer.trace(&packet(src, dst, port, local));
        let want = if want == "ACCEPT" { "" } else { want };
        if output(&t) != want || t.masquerade != masq {
            let path: Vec<String> = t
                .path
                .iter()
                .map(|s| format!("  {} {} {}: {}", s.hook.name(), s.table, s.line, s.rule))
                .collect();
            failed.push(format!(
                "{rel}: {name:?} ({src} -> {dst}:{port}): want {want:?} masq {masq}, got {:?} masq {} notes {:?}\n{}",
                output(&t),
                t.masquerade,
                t.notes,
                path.join("\n")
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// TestTracePacket's rules and all its flows.
#[test]
fn kube_proxy_test_trace_packet() {
    run(
        "trace/iptables/k8s-proxier_test-TestTracePacket.txt",
        NODE_IPS_V131,
        TRACE_PACKET_FLOWS,
    );
}

/// TestTracePacket's flows, as kube-proxy writes them.
const TRACE_PACKET_FLOWS: &[Flow] = &[
    ("no match", "10.0.0.2", "10.0.0.3", 80, "", false),
    (
        "single endpoint",
        "10.0.0.2",
        "172.30.0.41",
        80,
        "10.180.0.1:80",
        false,
    ),
    (
        "multiple endpoints",
        "10.0.0.2",
        "172.30.0.44",
        80,
        "10.180.0.4:80, 10.180.0.5:80",
        false,
    ),
    (
        "LOCAL, KUBE-MARK-MASQ",
        "192.168.0.2",
        "192.168.99.22",
        80,
        "10.180.0.2:80",
        true,
    ),
    (
        "DROP",
        TEST_EXTERNAL_CLIENT,
        "192.168.99.22",
        80,
        "DROP",
        false,
    ),
    (
        "ACCEPT (NodePortHealthCheck)",
        "192.168.0.2",
        "192.168.0.2",
        30000,
        "ACCEPT",
        false,
    ),
    ("REJECT", "10.0.0.2", "172.30.0.46", 80, "REJECT", false),
];

/// TestOverallIPTablesRules' rule set is TestTracePacket's plus localhost NodePorts, nfacct and
/// the session-affinity rules: the same flows hold, and so do these, written here from the
/// rules (TestLoadBalancer upstream expects the same of its LoadBalancer with source ranges).
#[test]
fn kube_proxy_overall_rules() {
    let rel = "trace/iptables/k8s-proxier_test-TestOverallIPTablesRules-with-base-chains.txt";
    run(rel, NODE_IPS_V131, TRACE_PACKET_FLOWS);
    run(
        rel,
        NODE_IPS_V131,
        &[
            (
                "allowed source to LB IP",
                TEST_EXTERNAL_CLIENT,
                "5.6.7.8",
                80,
                "10.180.0.3:80",
                true,
            ),
            (
                "blocked source to LB IP",
                TEST_EXTERNAL_CLIENT_BLOCKED,
                "5.6.7.8",
                80,
                "DROP",
                false,
            ),
            (
                "external to NodePort",
                TEST_EXTERNAL_CLIENT,
                "192.168.0.2",
                3003,
                "10.180.0.3:80",
                true,
            ),
            (
                "localhost to NodePort",
                "127.0.0.1",
                "127.0.0.1",
                3003,
                "10.180.0.3:80",
                true,
            ),
            (
                "external to eTP=Local NodePort, no local endpoint",
                TEST_EXTERNAL_CLIENT,
                "192.168.0.2",
                3001,
                "DROP",
                false,
            ),
            (
                "pod to eTP=Local LB IP",
                "10.0.0.2",
                "1.2.3.4",
                80,
                "10.180.0.2:80",
                false,
            ),
            (
                "hairpin: endpoint to its own Service",
                "10.180.0.1",
                "172.30.0.41",
                80,
                "10.180.0.1:80",
                true,
            ),
            (
                "pod to Service with no endpoints",
                "10.0.0.2",
                "172.30.0.46",
                80,
                "REJECT",
                false,
            ),
            ("wrong port", "10.0.0.2", "172.30.0.41", 81, "", false),
        ],
    );
}

/// TestExternalTrafficPolicyLocal: all its flows.
#[test]
fn kube_proxy_external_traffic_policy_local() {
    run(
        "trace/iptables/k8s-proxier_test-TestExternalTrafficPolicyLocal-with-base-chains.txt",
        NODE_IP_V128,
        &[
            (
                "pod to cluster IP hits both endpoints",
                "10.0.0.2",
                "172.30.0.41",
                80,
                "10.180.0.1:80, 10.180.2.1:80",
                false,
            ),
            (
                "external to external IP hits only local endpoint, unmasqueraded",
                TEST_EXTERNAL_CLIENT,
                "192.168.99.11",
                80,
                "10.180.2.1:80",
                false,
            ),
            (
                "external to LB IP hits only local endpoint, unmasqueraded",
                TEST_EXTERNAL_CLIENT,
                "1.2.3.4",
                80,
                "10.180.2.1:80",
                false,
            ),
            (
                "external to NodePort hits only local endpoint, unmasqueraded",
                TEST_EXTERNAL_CLIENT,
                "192.168.0.2",
                3001,
                "10.180.2.1:80",
                false,
            ),
        ],
    );
}

/// TestNonLocalExternalIPs (eTP=Cluster): all its flows.
#[test]
fn kube_proxy_external_traffic_policy_cluster() {
    run(
        "trace/iptables/k8s-proxier_test-TestNonLocalExternalIPs-with-base-chains.txt",
        NODE_IP_V128,
        &[
            (
                "pod to cluster IP",
                "10.0.0.2",
                "172.30.0.41",
                80,
                "10.180.0.1:80, 10.180.2.1:80",
                false,
            ),
            (
                "external to external IP",
                TEST_EXTERNAL_CLIENT,
                "192.168.99.11",
                80,
                "10.180.0.1:80, 10.180.2.1:80",
                true,
            ),
        ],
    );
}

/// A trace through a `statistic` cascade follows both branches, depth first: the path is the
/// matched branch's walk, then the fall-through branch's rules, each rule once.
#[test]
fn both_branches_of_a_cascade_are_in_the_path() {
    let d = load("trace/iptables/k8s-proxier_test-TestOverallIPTablesRules-with-base-chains.txt");
    let t = Tracer::new(&d).trace(&packet("10.0.0.2", "172.30.0.44", 80, NODE_IPS_V131));
    let steps: Vec<(&str, &str, u32)> = t
        .path
        .iter()
        .map(|s| (s.hook.name(), s.chain.as_str(), s.line))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("prerouting", "PREROUTING", 42),
            ("prerouting", "KUBE-SERVICES", 77),
            ("prerouting", "KUBE-SVC-4SW47YFZTEDKD3PK", 110),
            ("prerouting", "KUBE-SEP-UKSFD7AGPMPPLUHC", 108),
            ("forward", "FORWARD", 11),
            ("forward", "FORWARD", 12),
            ("forward", "FORWARD", 13),
            ("forward", "FORWARD", 14),
            ("postrouting", "POSTROUTING", 44),
            ("postrouting", "KUBE-POSTROUTING", 94),
            ("prerouting", "KUBE-SVC-4SW47YFZTEDKD3PK", 111),
            ("prerouting", "KUBE-SEP-C6EBXVWJJZMIWKLZ", 98),
        ]
    );
    assert_eq!(
        t.path[3].rule,
        "-A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.4:80"
    );
    assert_eq!(t.path[0].table, "nat");
    assert_eq!(t.path[4].table, "filter");
    assert!(t.notes.is_empty(), "{:?}", t.notes);
}

/// The 2019 walkthrough's dumps (kubernetes PR 77523) are grep'ed fragments: no table, no
/// built-in chain. Traced as they are, the tracer says so instead of inventing a verdict.
#[test]
fn the_2019_fragments_say_what_they_lack() {
    for rel in [
        "iptables/mauilion-blog-2019-master-cluster-KUBE-XLB.txt",
        "iptables/mauilion-blog-2019-pr77523-cluster-KUBE-XLB.txt",
    ] {
        let d = load(rel);
        let t = Tracer::new(&d).trace(&packet("172.17.0.3", "172.17.0.3", 30012, &["172.17.0.3"]));
        assert_eq!(t.verdict, Verdict::Accept, "{rel}");
        assert!(t.path.is_empty(), "{rel}: {:?}", t.path);
        assert!(
            t.notes.iter().any(|n| n.contains("no built-in chain")),
            "{rel}: {:?}",
            t.notes
        );
        assert!(
            t.notes.iter().any(|n| n.contains("names no table")),
            "{rel}: {:?}",
            t.notes
        );
    }
}

/// The shared rules a 2019 (v1.14) node had around a Service's chains, and an endpoint on
/// another node for `default/echo:` (the walkthrough's Service; its fragments leave out its
/// KUBE-SVC chain). Nothing here is from the walkthrough's dumps but the fragment appended.
fn node_2019(lb_ip: &str, fragment: &str) -> OneDump {
    let rules: Vec<&str> = fragment.lines().filter(|l| l.starts_with("-A ")).collect();
    let text = format!(
        r#"*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FIREWALL - [0:0]
-A INPUT -j KUBE-FIREWALL
-A OUTPUT -j KUBE-FIREWALL
-A KUBE-FIREWALL -m comment --comment "kubernetes firewall for dropping marked packets" -m mark --mark 0x8000/0x8000 -j DROP
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-DROP -j MARK --set-xmark 0x8000/0x8000
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -m mark --mark 0x4000/0x4000 -j MASQUERADE
-A KUBE-SERVICES -d {lb_ip}/32 -p tcp -m comment --comment "default/echo: loadbalancer IP" -m tcp --dport 8080 -j KUBE-FW-U52O5CQH2XXNVZ54
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-U52O5CQH2XXNVZ54 -j KUBE-SEP-ENDPOINTONWORKER2
-A KUBE-SEP-ENDPOINTONWORKER2 -p tcp -m tcp -j DNAT --to-destination 10.244.2.2:8080
{}
COMMIT
"#,
        rules.join(
            "
"
        )
    );
    OneDump::parse(text).unwrap()
}

/// PR 77523's point, in the tracer's words: from the host of a node without an endpoint, the
/// LB IP of an eTP=Local Service is dropped before it (KUBE-MARK-DROP, then KUBE-FIREWALL in
/// output) and DNATed, masqueraded, with it.
#[test]
fn the_2019_pair_base_drops_host_traffic_the_pr_dnats_it() {
    let read = |rel: &str| std::fs::read_to_string(fixture(rel)).unwrap();
    let node = ["172.17.0.3"];
    let base = node_2019(
        "172.17.255.1",
        &read("iptables/mauilion-blog-2019-master-cluster-KUBE-XLB.txt"),
    );
    let t = Tracer::new(&base).trace(&packet("172.17.0.3", "172.17.255.1", 8080, &node));
    assert_eq!(t.verdict, Verdict::Drop, "{t:?}");
    let last = t.path.last().unwrap();
    assert_eq!(
        (last.hook.name(), last.table.as_str(), last.chain.as_str()),
        ("output", "filter", "KUBE-FIREWALL")
    );
    assert!(
        t.path
            .iter()
            .any(|s| s.rule.contains("has no local endpoints"))
    );

    let pr = node_2019(
        "172.17.254.1",
        &read("iptables/mauilion-blog-2019-pr77523-cluster-KUBE-XLB.txt"),
    );
    let t = Tracer::new(&pr).trace(&packet("172.17.0.3", "172.17.254.1", 8080, &node));
    assert_eq!(t.verdict, Verdict::Dnat, "{t:?}");
    assert_eq!(t.endpoints, vec!["10.244.2.2:8080"]);
    assert!(t.masquerade);
    assert!(
        t.path
            .iter()
            .any(|s| s.rule.contains("route LOCAL traffic"))
    );
}

/// One packet through a dump of 10,000 Services, compiled once, takes under a millisecond
/// (in a release build; a debug build gets 50).
#[test]
fn ten_thousand_services_trace_fast() {
    let text = common::synth::dump(&common::synth::Spec {
        services: 10_000,
        ..Default::default()
    });
    // The destination (`-d`) or port (`--dport`) of the first rule of KUBE-SERVICES or
    // KUBE-NODEPORTS that mentions `what`.
    let grab = |chain: &str, what: &str, opt: &str| -> String {
        let line = text
            .lines()
            .find(|l| l.starts_with(chain) && l.contains(what))
            .unwrap();
        let words: Vec<&str> = line.split(' ').collect();
        let at = words.iter().position(|w| *w == opt).unwrap();
        words[at + 1].trim_end_matches("/32").to_string()
    };
    let cluster_ip = grab("-A KUBE-SERVICES ", "cluster IP", "-d");
    let lb_ip = grab("-A KUBE-SERVICES ", "loadbalancer IP", "-d");
    let node_port: u16 = grab("-A KUBE-NODEPORTS ", "-j KUBE-EXT-", "--dport")
        .parse()
        .unwrap();
    let d = OneDump::parse(text.clone()).unwrap();
    let tracer = Tracer::new(&d);
    let node = ["172.18.0.2"];
    let packets = [
        packet("10.244.1.9", &cluster_ip, 80, &node),
        packet("203.0.113.2", &lb_ip, 80, &node),
        packet("203.0.113.2", "172.18.0.2", node_port, &node),
    ];
    for p in &packets {
        let t = tracer.trace(p);
        assert_eq!(t.verdict, Verdict::Dnat, "{p:?}: {t:?}");
    }
    let n = 100;
    let start = Instant::now();
    for _ in 0..n {
        for p in &packets {
            std::hint::black_box(tracer.trace(std::hint::black_box(p)));
        }
    }
    let n = n * packets.len() as u32;
    let each = start.elapsed() / n;
    let limit = if cfg!(debug_assertions) {
        Duration::from_millis(50)
    } else {
        Duration::from_millis(1)
    };
    eprintln!("one trace through 10k Services: {each:?}");
    assert!(each < limit, "{each:?}");
}
