//! The nftables tracer against kube-proxy's own packet-flow expectations (the cases of
//! `runPacketFlowTests` in pkg/proxy/nftables/proxier_test.go, on the rule sets of
//! tests/fixtures/trace/nftables and tests/fixtures/nftables, each file naming its source), the
//! PR 132456 pair, a real k3s table, and a 10k-Service synthetic dump.

mod common;

use std::net::Ipv4Addr;

use common::fixture;
use kindred::rules::mixed::OneDump;
use kindred::rules::trace::{Hook, Origin, Packet, Pair, Proto, Trace, Tracer, Verdict};

const AFTER: &str = "trace/nftables/pr132456-after-v1.34.0-TestOverallNFTablesRules.nft";
const BEFORE: &str = "trace/nftables/pr132456-base-v1.33.0-TestOverallNFTablesRules.nft";
const K3S: &str = "nftables/k3s-real-nft-list-table-ip-kube-proxy.txt";

/// The node's addresses in kube-proxy's tests (`testNodeIPs`, IPv4 ones).
const NODE_IPS: [&str; 3] = ["192.168.0.2", "192.168.1.2", "192.168.99.11"];

fn dump(rel: &str) -> OneDump {
    let text = std::fs::read_to_string(fixture(rel)).unwrap();
    let d = OneDump::parse(text).unwrap();
    assert!(
        matches!(d, OneDump::Nftables(_)),
        "{rel} is an nftables dump"
    );
    d
}

/// One case: `from` `src` to `dst`:`port`, and what kube-proxy's tests expect.
struct Flow {
    name: &'static str,
    from: Origin,
    src: &'static str,
    dst: &'static str,
    port: u16,
    proto: Proto,
    verdict: Verdict,
    endpoints: &'static [&'static str],
    masq: bool,
}

const fn flow(
    name: &'static str,
    src: &'static str,
    dst: &'static str,
    port: u16,
    verdict: Verdict,
    endpoints: &'static [&'static str],
    masq: bool,
) -> Flow {
    Flow {
        name,
        from: Origin::Pod,
        src,
        dst,
        port,
        proto: Proto::Tcp,
        verdict,
        endpoints,
        masq,
    }
}

fn packet(f: &Flow, local: &[&str]) -> Packet {
    Packet {
        src: f.src.parse().unwrap(),
        dst: f.dst.parse().unwrap(),
        dport: f.port,
        sport: 40000,
        proto: f.proto,
        from: f.from,
        local_ips: local.iter().map(|s| s.parse().unwrap()).collect(),
    }
}

fn show(t: &Trace) -> String {
    let mut s = format!(
        "{} {:?} masq={}\n",
        t.verdict.name(),
        t.endpoints,
        t.masquerade
    );
    for p in &t.path {
        s += &format!(
            "  {} {} {} | {} (line {})\n",
            p.hook.name(),
            p.table,
            p.chain,
            p.rule,
            p.line
        );
    }
    for n in &t.notes {
        s += &format!("  note: {n}\n");
    }
    s
}

/// Every flow through `rel`; all failures reported at once.
fn run_flows(rel: &str, local: &[&str], flows: &[Flow]) {
    let d = dump(rel);
    let tracer = Tracer::new(&d);
    let mut bad = Vec::new();
    for f in flows {
        let t = tracer.trace(&packet(f, local));
        let want: Vec<String> = f.endpoints.iter().map(|s| s.to_string()).collect();
        if t.verdict != f.verdict || t.endpoints != want || t.masquerade != f.masq {
            bad.push(format!(
                "{}: want {} {:?} masq={}, got {}",
                f.name,
                f.verdict.name(),
                want,
                f.masq,
                show(&t)
            ));
        }
        if t.verdict != Verdict::Unknown {
            assert!(
                !t.notes.iter().any(|n| n.contains("cannot evaluate")),
                "{}: {}",
                f.name,
                show(&t)
            );
        }
    }
    assert!(bad.is_empty(), "{rel}:\n{}", bad.join("\n"));
}

use Verdict::{Accept, Dnat, Drop, Reject};

const EXTERNAL: &str = "203.0.113.2";
const BLOCKED: &str = "203.0.113.130";

/// The flows kube-proxy's tests check on TestOverallNFTablesRules' Services (svc1 ClusterIP, svc2
/// LB eTP=Local without a local endpoint, svc3 NodePort, svc4 external IP with two endpoints,
/// svc5 LB with source ranges and affinity, svc6 no endpoints), from TestClusterIPGeneral,
/// TestLoadBalancer, TestNoEndpointsReject and TestExternalTrafficPolicy* cases; their
/// expectations hold for both versions of the base chains (pod and external traffic).
const OVERALL: &[Flow] = &[
    flow(
        "pod to cluster IP",
        "10.0.0.2",
        "172.30.0.41",
        80,
        Dnat,
        &["10.180.0.1:80"],
        false,
    ),
    flow(
        "hairpin to cluster IP",
        "10.180.0.1",
        "172.30.0.41",
        80,
        Dnat,
        &["10.180.0.1:80"],
        true,
    ),
    flow(
        "external to cluster IP",
        EXTERNAL,
        "172.30.0.41",
        80,
        Dnat,
        &["10.180.0.1:80"],
        true,
    ),
    flow(
        "svc1 does not accept other ports",
        "10.0.0.2",
        "172.30.0.41",
        443,
        Reject,
        &[],
        false,
    ),
    Flow {
        proto: Proto::Udp,
        ..flow(
            "TCP-only port does not match UDP traffic",
            "10.0.0.2",
            "172.30.0.41",
            80,
            Reject,
            &[],
            false,
        )
    },
    flow(
        "packet to unallocated cluster IP",
        "10.0.0.2",
        "172.30.0.50",
        80,
        Drop,
        &[],
        false,
    ),
    flow(
        "pod to cluster IP with no endpoints",
        "10.0.0.2",
        "172.30.0.46",
        80,
        Reject,
        &[],
        false,
    ),
    flow(
        "pod to eTP=Local LB IP without local endpoint: short-circuit",
        "10.0.0.2",
        "1.2.3.4",
        80,
        Dnat,
        &["10.180.0.2:80"],
        false,
    ),
    flow(
        "external to eTP=Local LB IP without local endpoint",
        EXTERNAL,
        "1.2.3.4",
        80,
        Drop,
        &[],
        false,
    ),
    flow(
        "external to eTP=Local external IP without local endpoint",
        EXTERNAL,
        "192.168.99.22",
        80,
        Drop,
        &[],
        false,
    ),
    flow(
        "external to eTP=Local NodePort without local endpoint",
        EXTERNAL,
        "192.168.0.2",
        3001,
        Drop,
        &[],
        false,
    ),
    flow(
        "pod to eTP=Local NodePort: short-circuit",
        "10.0.0.2",
        "192.168.0.2",
        3001,
        Dnat,
        &["10.180.0.2:80"],
        false,
    ),
    flow(
        "external to NodePort",
        EXTERNAL,
        "192.168.0.2",
        3003,
        Dnat,
        &["10.180.0.3:80"],
        true,
    ),
    flow(
        "pod to NodePort (eTP=Cluster masquerades)",
        "10.0.0.2",
        "192.168.0.2",
        3003,
        Dnat,
        &["10.180.0.3:80"],
        true,
    ),
    flow(
        "pod to NodePort on a port with no Service",
        "10.0.0.2",
        "192.168.0.2",
        3999,
        Accept,
        &[],
        false,
    ),
    flow(
        "pod to cluster IP with two endpoints",
        "10.0.0.2",
        "172.30.0.44",
        80,
        Dnat,
        &["10.180.0.4:80", "10.180.0.5:80"],
        false,
    ),
    flow(
        "hairpin through one of two endpoints",
        "10.180.0.5",
        "172.30.0.44",
        80,
        Dnat,
        &["10.180.0.4:80", "10.180.0.5:80"],
        true,
    ),
    flow(
        "external to external IP",
        EXTERNAL,
        "192.168.99.33",
        80,
        Dnat,
        &["10.180.0.4:80", "10.180.0.5:80"],
        true,
    ),
    flow(
        "accepted external to LB with source ranges",
        EXTERNAL,
        "5.6.7.8",
        80,
        Dnat,
        &["10.180.0.3:80"],
        true,
    ),
    flow(
        "blocked external to LB with source ranges",
        BLOCKED,
        "5.6.7.8",
        80,
        Drop,
        &[],
        false,
    ),
    flow(
        "NodePort bypasses LoadBalancerSourceRanges",
        BLOCKED,
        "192.168.0.2",
        3002,
        Dnat,
        &["10.180.0.3:80"],
        true,
    ),
    flow(
        "pod to cluster IP with affinity (no prior entry)",
        "10.0.0.2",
        "172.30.0.45",
        80,
        Dnat,
        &["10.180.0.3:80"],
        false,
    ),
    flow(
        "pod to a pod IP: no rule changes it",
        "10.0.0.2",
        "10.180.0.9",
        8080,
        Accept,
        &[],
        false,
    ),
];

#[test]
fn kube_proxy_flows_after_pr_132456() {
    run_flows(AFTER, &NODE_IPS, OVERALL);
}

#[test]
fn kube_proxy_flows_before_pr_132456() {
    run_flows(BEFORE, &NODE_IPS, OVERALL);
}

/// Locally originated traffic (a hostNetwork pod on the node, source the node's IP).
const fn host(mut f: Flow) -> Flow {
    f.from = Origin::Host;
    f
}

/// Host traffic that both versions treat alike.
const HOST_SAME: &[Flow] = &[
    host(flow(
        "host to cluster IP",
        "192.168.0.2",
        "172.30.0.41",
        80,
        Dnat,
        &["10.180.0.1:80"],
        true,
    )),
    host(flow(
        "host to cluster IP, wrong port",
        "192.168.0.2",
        "172.30.0.41",
        443,
        Reject,
        &[],
        false,
    )),
    host(flow(
        "host to NodePort (eTP=Cluster)",
        "192.168.0.2",
        "192.168.0.2",
        3003,
        Dnat,
        &["10.180.0.3:80"],
        true,
    )),
    host(flow(
        "host to cluster IP with no endpoints",
        "192.168.0.2",
        "172.30.0.46",
        80,
        Reject,
        &[],
        false,
    )),
];

#[test]
fn host_flows_both_versions() {
    run_flows(AFTER, &NODE_IPS, HOST_SAME);
    run_flows(BEFORE, &NODE_IPS, HOST_SAME);
}

fn trace_one(rel: &str, from: Origin, src: &str, dst: &str, port: u16) -> Trace {
    let d = dump(rel);
    let f = Flow {
        from,
        ..flow("", "0.0.0.0", "0.0.0.0", port, Accept, &[], false)
    };
    let mut p = packet(&f, &NODE_IPS);
    p.src = src.parse().unwrap();
    p.dst = dst.parse().unwrap();
    Tracer::new(&d).trace(&p)
}

/// Issue 131765 / PR 132456: host traffic to an eTP=Local LB IP from a node without a local
/// endpoint. Before the PR, filter-output (-110) runs before nat-output (-100) and
/// service-endpoints-check drops it; after it, nat-output DNATs it first (local traffic
/// short-circuits to all endpoints) and filter-output (0) sees the endpoint.
#[test]
fn pr_132456_host_traffic_to_local_lb_ip() {
    let base = trace_one(BEFORE, Origin::Host, "192.168.0.2", "1.2.3.4", 80);
    let pr = trace_one(AFTER, Origin::Host, "192.168.0.2", "1.2.3.4", 80);
    assert_eq!(base.verdict, Drop, "{}", show(&base));
    let last = base.path.last().unwrap();
    assert_eq!(
        (last.hook, last.chain.as_str()),
        (Hook::Output, "service-endpoints-check"),
        "{}",
        show(&base)
    );
    // The drop comes from filter-output, entered before nat-output was.
    let entered: Vec<&str> = base
        .path
        .iter()
        .filter(|s| s.rule.starts_with("type "))
        .map(|s| s.chain.as_str())
        .collect();
    assert_eq!(entered, ["filter-output"], "{}", show(&base));
    assert!(base.path[0].rule.contains("priority -110"));
    assert!(
        base.notes
            .iter()
            .any(|n| n.contains("@no-endpoint-services maps the packet to drop")),
        "{}",
        show(&base)
    );

    assert_eq!(pr.verdict, Dnat, "{}", show(&pr));
    assert_eq!(pr.endpoints, ["10.180.0.2:80"]);
    assert!(pr.masquerade, "local traffic is masqueraded: {}", show(&pr));
    let entered: Vec<&str> = pr
        .path
        .iter()
        .filter(|s| s.rule.starts_with("type "))
        .map(|s| s.chain.as_str())
        .collect();
    assert_eq!(
        entered,
        [
            "filter-output-pre-dnat",
            "nat-output",
            "filter-output",
            "nat-postrouting"
        ],
        "{}",
        show(&pr)
    );
    let pair = Pair::new(base, pr);
    assert!(!pair.equal);
    assert_eq!(pair.parted_at, Some(0));
}

/// Pod traffic to the same LB IP is DNATed in both: nat-prerouting short-circuits it before
/// the forward hook's checks.
#[test]
fn pr_132456_pod_traffic_to_local_lb_ip() {
    for rel in [BEFORE, AFTER] {
        let t = trace_one(rel, Origin::Pod, "10.0.0.2", "1.2.3.4", 80);
        assert_eq!(t.verdict, Dnat, "{rel}: {}", show(&t));
        assert_eq!(t.endpoints, ["10.180.0.2:80"]);
        assert!(!t.masquerade);
        assert!(
            t.path
                .iter()
                .any(|s| s.rule.contains("short-circuit pod traffic")),
            "{}",
            show(&t)
        );
        assert!(t.path.iter().any(|s| s.hook == Hook::Forward));
    }
    let base = trace_one(BEFORE, Origin::Pod, "10.0.0.2", "1.2.3.4", 80);
    let pr = trace_one(AFTER, Origin::Pod, "10.0.0.2", "1.2.3.4", 80);
    assert!(Pair::new(base, pr).equal);
}

/// An accept ends only its own base chain: a table whose prerouting chain accepts everything
/// first does not stop kube-proxy's nat-prerouting from DNATing.
#[test]
fn accept_ends_only_its_base_chain() {
    let text = format!(
        "table inet early {{\n\tchain pre {{\n\t\ttype filter hook prerouting priority -300; policy accept;\n\t\taccept\n\t}}\n}}\n{}",
        std::fs::read_to_string(fixture(K3S)).unwrap()
    );
    let d = OneDump::parse(text).unwrap();
    let t = Tracer::new(&d).trace(&Packet {
        src: "10.42.0.5".parse().unwrap(),
        dst: "10.43.0.10".parse().unwrap(),
        dport: 53,
        sport: 40000,
        proto: Proto::Udp,
        from: Origin::Pod,
        local_ips: vec!["10.34.4.246".parse().unwrap()],
    });
    assert_eq!(t.verdict, Dnat, "{}", show(&t));
    assert_eq!(t.endpoints, ["10.42.0.171:53"]);
    assert_eq!(t.path[0].table, "inet early");
    assert_eq!(t.path[1].rule, "accept");
}

/// Base chains of all tables run by priority, not by table: a drop in another table's chain at
/// a priority after kube-proxy's DNAT sees the endpoint, one before it sees the Service IP.
#[test]
fn priority_orders_base_chains_across_tables() {
    let k3s = std::fs::read_to_string(fixture(K3S)).unwrap();
    let with = |prio: &str| {
        format!(
            "{k3s}table ip guard {{\n\tchain fwd {{\n\t\ttype filter hook prerouting priority {prio}; policy accept;\n\t\tip daddr 10.43.0.10 drop\n\t}}\n}}\n"
        )
    };
    let pkt = Packet {
        src: "10.42.0.5".parse().unwrap(),
        dst: "10.43.0.10".parse().unwrap(),
        dport: 53,
        sport: 40000,
        proto: Proto::Udp,
        from: Origin::Pod,
        local_ips: vec![],
    };
    let before = OneDump::parse(with("dstnat - 5")).unwrap();
    let t = Tracer::new(&before).trace(&pkt);
    assert_eq!(t.verdict, Drop, "{}", show(&t));
    assert_eq!(t.path.last().unwrap().table, "ip guard");
    let after = OneDump::parse(with("mangle")).unwrap();
    assert_eq!(Tracer::new(&after).trace(&pkt).verdict, Drop);
    let late = OneDump::parse(with("0")).unwrap();
    let t = Tracer::new(&late).trace(&pkt);
    assert_eq!(t.verdict, Dnat, "{}", show(&t));
}

/// A real k3s table (`nft list table ip kube-proxy`, before PR 132456).
const K3S_FLOWS: &[Flow] = &[
    Flow {
        proto: Proto::Udp,
        ..flow(
            "pod to kube-dns over UDP",
            "10.42.0.5",
            "10.43.0.10",
            53,
            Dnat,
            &["10.42.0.171:53"],
            false,
        )
    },
    flow(
        "pod to a Service with nine endpoints",
        "10.42.0.5",
        "10.43.195.72",
        8000,
        Dnat,
        &[
            "10.42.2.218:8080",
            "10.42.4.201:8080",
            "10.42.4.202:8080",
            "10.42.4.203:8080",
            "10.42.4.204:8080",
            "10.42.4.205:8080",
            "10.42.4.206:8080",
            "10.42.4.207:8080",
            "10.42.5.164:8080",
        ],
        false,
    ),
    flow(
        "external to NodePort 30000",
        "10.34.4.200",
        "10.34.4.246",
        30000,
        Dnat,
        &[
            "10.42.2.218:8080",
            "10.42.4.201:8080",
            "10.42.4.202:8080",
            "10.42.4.203:8080",
            "10.42.4.204:8080",
            "10.42.4.205:8080",
            "10.42.4.206:8080",
            "10.42.4.207:8080",
            "10.42.5.164:8080",
        ],
        true,
    ),
    flow(
        "pod to a Service without endpoints",
        "10.42.0.5",
        "10.43.21.102",
        4317,
        Reject,
        &[],
        false,
    ),
    flow(
        "pod to an unallocated cluster IP",
        "10.42.0.5",
        "10.43.99.99",
        80,
        Drop,
        &[],
        false,
    ),
];

#[test]
fn k3s_real_table_flows() {
    run_flows(K3S, &["10.34.4.246"], K3S_FLOWS);
    let host = [host(flow(
        "host to the API server's Service",
        "10.34.4.246",
        "10.43.0.1",
        443,
        Dnat,
        &["10.34.4.142:6443"],
        true,
    ))];
    run_flows(K3S, &["10.34.4.246"], &host);
}

/// The path names every base chain entered and every rule matched, with its dump line.
#[test]
fn path_names_rules_as_written_with_lines() {
    let t = trace_one(K3S, Origin::Pod, "10.42.0.5", "10.43.0.1", 443);
    let text = std::fs::read_to_string(fixture(K3S)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for s in &t.path {
        let line = lines[s.line as usize - 1].trim();
        assert!(
            line.contains(s.rule.split(';').next().unwrap()),
            "line {} is '{line}', step says '{}'",
            s.line,
            s.rule
        );
    }
    let rules: Vec<(&str, &str)> = t
        .path
        .iter()
        .map(|s| (s.chain.as_str(), s.rule.as_str()))
        .collect();
    assert_eq!(
        rules[..3],
        [
            (
                "filter-prerouting",
                "type filter hook prerouting priority dstnat - 10; policy accept;"
            ),
            ("filter-prerouting", "ct state new jump firewall-check"),
            (
                "nat-prerouting",
                "type nat hook prerouting priority dstnat; policy accept;"
            ),
        ]
    );
}

/// What the tracer cannot evaluate ends the trace as unknown at that rule, naming its line.
#[test]
fn unknown_construct_names_its_line() {
    let text = "table ip t {\n\tchain pre {\n\t\ttype filter hook prerouting priority 0; policy accept;\n\t\tip daddr 10.0.0.1 ct original proto-dst 80 drop\n\t}\n}\n";
    let d = OneDump::parse(text.to_string()).unwrap();
    let tracer = Tracer::new(&d);
    let mut p = Packet {
        src: "10.1.0.2".parse().unwrap(),
        dst: Ipv4Addr::new(10, 0, 0, 1),
        dport: 80,
        sport: 1,
        proto: Proto::Tcp,
        from: Origin::Pod,
        local_ips: vec![],
    };
    let t = tracer.trace(&p);
    assert_eq!(t.verdict, Verdict::Unknown, "{}", show(&t));
    assert!(t.notes.iter().any(|n| n.starts_with("line 4:")), "{t:?}");
    assert_eq!(t.path.last().unwrap().line, 4);
    // A match that fails before it is decided without it.
    p.dst = Ipv4Addr::new(10, 0, 0, 2);
    assert_eq!(tracer.trace(&p).verdict, Accept);
}

/// A 10k-Service dump compiles once; a packet through it finds its Service.
#[test]
fn ten_thousand_services() {
    let text = common::synth::nft_dump(&common::synth::Spec {
        services: 10_000,
        ..Default::default()
    });
    let (ip, chain) = text
        .lines()
        .find_map(|l| {
            let l = l.trim().trim_start_matches("elements = {").trim();
            let (k, v) = l.split_once(" : goto service-")?;
            Some((
                k.split(" . ").next()?.to_string(),
                v.trim_end_matches([',', '}', ' ']).to_string(),
            ))
        })
        .unwrap();
    let d = OneDump::parse(text).unwrap();
    let compile = std::time::Instant::now();
    let tracer = Tracer::new(&d);
    let compiled = compile.elapsed();
    let p = Packet {
        src: "10.244.1.5".parse().unwrap(),
        dst: ip.parse().unwrap(),
        dport: 80,
        sport: 40000,
        proto: Proto::Tcp,
        from: Origin::Pod,
        local_ips: vec![],
    };
    let start = std::time::Instant::now();
    let t = tracer.trace(&p);
    let took = start.elapsed();
    assert_eq!(t.verdict, Dnat, "{}", show(&t));
    assert!(!t.endpoints.is_empty());
    assert!(
        t.path.iter().any(|s| s.chain == format!("service-{chain}")),
        "{}",
        show(&t)
    );
    let start = std::time::Instant::now();
    for _ in 0..100 {
        std::hint::black_box(tracer.trace(std::hint::black_box(&p)));
    }
    eprintln!(
        "10k Services: compiled in {compiled:?}; one trace {took:?}, then {:?} each over 100",
        start.elapsed() / 100
    );
}

fn trace_text(text: &str, p: &Packet) -> Trace {
    let d = OneDump::parse(text.to_string()).unwrap();
    Tracer::new(&d).trace(p)
}

fn local_udp(dst: [u8; 4]) -> Packet {
    Packet {
        src: Ipv4Addr::new(10, 99, 0, 10),
        dst: Ipv4Addr::from(dst),
        dport: 9,
        sport: 40000,
        proto: Proto::Udp,
        from: Origin::Host,
        local_ips: vec![Ipv4Addr::new(10, 99, 0, 10)],
    }
}

/// A nat chain runs at the kernel's NAT hook (dstnat, -100), whatever priority it declares:
/// a filter chain at mangle (-150) after a nat chain declared at -180 still sees the address
/// before DNAT. (Checked by hand in a network namespace, kernel 6.18: the filter chain's
/// counter for the Service address counted the packet, the one for the endpoint did not.)
#[test]
fn nat_chains_run_at_the_kernels_nat_hook() {
    let text = "table ip natfirst {\n\tchain out_nat {\n\t\ttype nat hook output priority -180; policy accept;\n\t\tip daddr 10.99.0.1 counter dnat to 10.99.0.2\n\t}\n}\ntable ip filt {\n\tchain out_filter {\n\t\ttype filter hook output priority mangle; policy accept;\n\t\tip daddr 10.99.0.1 counter\n\t\tip daddr 10.99.0.2 counter\n\t}\n}\n";
    let t = trace_text(text, &local_udp([10, 99, 0, 1]));
    assert_eq!(t.verdict, Dnat, "{}", show(&t));
    assert_eq!(t.endpoints, ["10.99.0.2:9"]);
    let rules: Vec<&str> = t.path.iter().map(|s| s.rule.as_str()).collect();
    assert_eq!(
        rules,
        [
            "type filter hook output priority mangle; policy accept;",
            "ip daddr 10.99.0.1",
            "type nat hook output priority -180; policy accept;",
            "ip daddr 10.99.0.1 dnat to 10.99.0.2",
        ],
        "{}",
        show(&t)
    );
    assert!(
        t.notes
            .iter()
            .any(|n| n.contains("runs at the kernel's NAT hook"))
    );
}

/// A local packet to the node's own address goes out on lo (oifname "lo"; no input interface)
/// and comes back in through prerouting (iifname "lo"; its nat chain skipped) and input, as
/// counters in a network namespace showed.
#[test]
fn local_packet_to_the_node_comes_back_over_lo() {
    let text = "table ip t {\n\tchain pre_f {\n\t\ttype filter hook prerouting priority -110; policy accept;\n\t\tiifname \"lo\" counter\n\t}\n\tchain pre_nat {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tcounter\n\t}\n\tchain in_f {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tcounter\n\t}\n\tchain out_f {\n\t\ttype filter hook output priority 0; policy accept;\n\t\toifname \"lo\" counter\n\t\tiifname \"lo\" counter\n\t\tiifname != \"lo\" counter\n\t}\n}\n";
    let t = trace_text(text, &local_udp([10, 99, 0, 10]));
    assert_eq!(t.verdict, Accept, "{}", show(&t));
    let steps: Vec<(Hook, &str, u32)> = t
        .path
        .iter()
        .map(|s| (s.hook, s.chain.as_str(), s.line))
        .collect();
    assert_eq!(
        steps,
        [
            (Hook::Output, "out_f", 15),
            (Hook::Output, "out_f", 16),
            (Hook::Output, "out_f", 18),
            (Hook::Prerouting, "pre_f", 3),
            (Hook::Prerouting, "pre_f", 4),
            (Hook::Input, "in_f", 11),
            (Hook::Input, "in_f", 12),
        ],
        "{}",
        show(&t)
    );
}

/// Branches that end differently: the verdict is dnat to the endpoints reached, the other
/// branch is named in the notes, and the path holds both branches (the second from its fork).
#[test]
fn numgen_branches_that_disagree_are_noted() {
    let text = "table ip t {\n\tchain pre {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tip daddr 10.96.0.1 numgen random mod 2 vmap { 0 : goto ep-a, 1 : goto ep-b }\n\t}\n\tchain ep-a {\n\t\tdnat to 10.1.0.1:80\n\t}\n\tchain ep-b {\n\t\tdrop\n\t}\n}\n";
    let p = Packet {
        src: Ipv4Addr::new(10, 1, 0, 9),
        dst: Ipv4Addr::new(10, 96, 0, 1),
        dport: 80,
        sport: 40000,
        proto: Proto::Tcp,
        from: Origin::Pod,
        local_ips: vec![],
    };
    let t = trace_text(text, &p);
    assert_eq!(t.verdict, Dnat, "{}", show(&t));
    assert_eq!(t.endpoints, ["10.1.0.1:80"]);
    assert!(
        t.notes
            .iter()
            .any(|n| n.starts_with("branch 2 of 2 ends in drop at ep-b line 10")),
        "{}",
        show(&t)
    );
    let lines: Vec<u32> = t.path.iter().map(|s| s.line).collect();
    assert_eq!(lines, [3, 4, 7, 10], "{}", show(&t));
}

/// Two base chains of a hook at one priority: the dump's order, and a note saying so.
#[test]
fn priority_ties_keep_the_dump_order_and_say_so() {
    let text = "table ip a {\n\tchain one {\n\t\ttype filter hook prerouting priority 0; policy accept;\n\t\tcounter\n\t}\n}\ntable ip b {\n\tchain two {\n\t\ttype filter hook prerouting priority filter; policy accept;\n\t\tdrop\n\t}\n}\n";
    let p = Packet {
        src: Ipv4Addr::new(10, 1, 0, 9),
        dst: Ipv4Addr::new(10, 1, 0, 1),
        dport: 80,
        sport: 40000,
        proto: Proto::Tcp,
        from: Origin::Pod,
        local_ips: vec![],
    };
    let t = trace_text(text, &p);
    assert_eq!(t.verdict, Drop);
    let chains: Vec<&str> = t.path.iter().map(|s| s.chain.as_str()).collect();
    assert_eq!(chains, ["one", "one", "two", "two"]);
    assert!(
        t.notes
            .iter()
            .any(|n| n.contains("one and two both run at prerouting priority 0")),
        "{}",
        show(&t)
    );
}

/// A base chain that ends without a verdict applies its policy: `policy drop` drops, a `return`
/// from the base chain too; an accept before it does not. (knftables' transaction format.)
#[test]
fn base_chain_policy_applies_at_its_end() {
    let text = "add table ip t\nadd chain ip t fwd { type filter hook forward priority 0 ; policy drop ; }\nadd rule ip t fwd ip daddr 10.2.0.1 accept\nadd rule ip t fwd ip daddr 10.2.0.2 return\n";
    let mut p = Packet {
        src: Ipv4Addr::new(10, 1, 0, 9),
        dst: Ipv4Addr::new(10, 2, 0, 1),
        dport: 80,
        sport: 40000,
        proto: Proto::Tcp,
        from: Origin::Pod,
        local_ips: vec![],
    };
    assert_eq!(trace_text(text, &p).verdict, Accept);
    p.dst = Ipv4Addr::new(10, 2, 0, 2);
    let t = trace_text(text, &p);
    assert_eq!(t.verdict, Drop, "{}", show(&t));
    assert!(
        t.notes
            .iter()
            .any(|n| n.contains("fwd ends: its policy drops"))
    );
    p.dst = Ipv4Addr::new(10, 2, 0, 3);
    assert_eq!(trace_text(text, &p).verdict, Drop);
}

/// TestNoEndpointsReject: every way to a Service without endpoints is rejected.
#[test]
fn kube_proxy_no_endpoints_reject() {
    const REL: &str = "trace/nftables/v1.34.0-TestNoEndpointsReject.nft";
    let flows = [
        (
            "pod to cluster IP with no endpoints",
            "10.0.0.2",
            "172.30.0.41",
            80,
        ),
        (
            "external to external IP with no endpoints",
            EXTERNAL,
            "192.168.99.11",
            80,
        ),
        (
            "pod to NodePort with no endpoints",
            "10.0.0.2",
            "192.168.0.2",
            3001,
        ),
        (
            "external to NodePort with no endpoints",
            EXTERNAL,
            "192.168.0.2",
            3001,
        ),
        (
            "pod to LoadBalancer IP with no endpoints",
            "10.0.0.2",
            "1.2.3.4",
            80,
        ),
        (
            "external to LoadBalancer IP with no endpoints",
            EXTERNAL,
            "1.2.3.4",
            80,
        ),
    ];
    let flows: Vec<Flow> = flows
        .iter()
        .map(|&(name, src, dst, port)| flow(name, src, dst, port, Reject, &[], false))
        .collect();
    run_flows(REL, &NODE_IPS, &flows);
}

/// `nft -a list` (handles) and counters change nothing: the same path, rules as written
/// without their counters.
#[test]
fn handles_and_counters_change_nothing() {
    let text = std::fs::read_to_string(fixture(K3S)).unwrap();
    let noisy: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let t = l.trim();
            let rule = !t.is_empty()
                && !t.starts_with('#')
                && !t.ends_with('{')
                && !t.ends_with('}')
                && !t.ends_with(',')
                && !t.starts_with("type ")
                && !t.starts_with("comment ")
                && !t.starts_with("elements ");
            if rule && t.contains(" jump ") {
                format!(
                    "{} # handle {i}\n",
                    l.replacen(" jump ", " counter packets 3 bytes 180 jump ", 1)
                )
            } else if rule {
                format!("{l} # handle {i}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let (a, b) = (
        OneDump::parse(text).unwrap(),
        OneDump::parse(noisy).unwrap(),
    );
    let p = packet(&K3S_FLOWS[2], &["10.34.4.246"]);
    let (ta, tb) = (Tracer::new(&a).trace(&p), Tracer::new(&b).trace(&p));
    assert_eq!(ta, tb, "{}\n{}", show(&ta), show(&tb));
    assert!(ta.path.iter().any(|s| s.rule.contains(" jump ")));
}
