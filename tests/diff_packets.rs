//! `kindred diff --packets`: what changed for packets, on the tracer's fixture pairs.

mod common;
use common::*;

const K33: &str = "trace/kernel/nftables-overall-v1.33.txt";
const K34: &str = "trace/kernel/nftables-overall-v1.34.txt";
const T33: &str = "trace/nftables/pr132456-base-v1.33.0-TestOverallNFTablesRules.nft";
const T34: &str = "trace/nftables/pr132456-after-v1.34.0-TestOverallNFTablesRules.nft";
const M2019: &str = "trace/kernel/iptables-2019-master.txt";
const P2019: &str = "trace/kernel/iptables-2019-pr77523.txt";

fn diff(base: &str, pr: &str, extra: &[&str]) -> std::process::Output {
    let (b, p) = (fixture(base), fixture(pr));
    let mut args = vec![
        "diff",
        b.to_str().unwrap(),
        p.to_str().unwrap(),
        "--packets",
    ];
    args.extend_from_slice(extra);
    kindred(&args)
}

/// The lines of the summary that name a class (`  ns/name:port  SOURCE → ...`).
fn change_lines(out: &str) -> Vec<String> {
    out.lines()
        .take_while(|l| !l.is_empty())
        .filter(|l| l.contains(" → "))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// PR 132456 (v1.33 → v1.34): host traffic to the eTP=Local Service without a local endpoint
/// was dropped in filter-output; now it is DNATed. Pod traffic never was dropped: no line.
#[test]
fn pr132456_the_host_to_the_lb_of_the_etp_local_service_and_nothing_else() {
    let o = diff(K33, K34, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("packets: 2 of "), "{out}");
    assert_eq!(
        change_lines(&out),
        [
            "ns2/svc2:p80 host → LB/externalIP 1.2.3.4:80 base drop (filter-output, service-endpoints-check) PR dnat 1 endpoint masqueraded",
            "ns2/svc2:p80 host → LB/externalIP 192.168.99.22:80 base drop (filter-output, service-endpoints-check) PR dnat 1 endpoint masqueraded",
        ],
        "{out}"
    );
    assert!(out.contains("sources: pod 10.0.0.2, host 192.168.0.2, outside 198.51.100.10"));
    // The rule diff follows the summary.
    assert!(out.contains("=== kube-proxy (shared chains)"), "{out}");
}

/// The same change in knftables' transaction format, as JSON under `packets`, one Service.
#[test]
fn pr132456_transaction_format_json_under_packets() {
    let o = diff(T33, T34, &["--format", "json", "--service", "ns2/svc2"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["schema"], "kindred.diff/v2");
    let p = &v["packets"];
    assert_eq!(p["services"], 1);
    let ch = p["changes"].as_array().unwrap();
    let got: Vec<(&str, &str, &str, &str, &str, u64)> = ch
        .iter()
        .map(|c| {
            (
                c["source"].as_str().unwrap(),
                c["destination"]["ip"].as_str().unwrap(),
                c["base"]["verdict"].as_str().unwrap(),
                c["base"]["hook_chain"].as_str().unwrap(),
                c["pr"]["verdict"].as_str().unwrap(),
                c["pr"]["endpoints"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("host", "1.2.3.4", "drop", "filter-output", "dnat", 1),
            ("host", "192.168.99.22", "drop", "filter-output", "dnat", 1)
        ]
    );
    assert_eq!(ch[0]["destination"]["port"], 80);
    assert_eq!(
        ch[0]["pr"]["chain"],
        "endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80"
    );
    // ClusterIP, two external addresses, the NodePort: 4 destinations × 3 sources.
    assert_eq!(p["classes"], 12);
}

/// The 2019 walkthrough (PR 77523): the two clusters gave the Service different LB IPs and
/// NodePorts; the classes pair them. The host's packets to both were dropped and are DNATed.
#[test]
fn the_2019_pair_host_to_lb_and_nodeport_paired_across_clusters() {
    let o = diff(M2019, P2019, &["--node-ip", "172.17.0.3"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(
        change_lines(&out),
        [
            "default/echo: host → LB 172.17.255.1:8080 (PR 172.17.254.1:8080) base drop (filter/OUTPUT, KUBE-FIREWALL) PR dnat 1 endpoint masqueraded",
            "default/echo: host → NodePort 172.17.0.3:30012 (PR 172.17.0.3:31972) base drop (filter/OUTPUT, KUBE-FIREWALL) PR dnat 1 endpoint masqueraded",
        ],
        "{out}"
    );
    // No pod CIDR in these rules: the assumed pod address is said.
    assert!(out.contains("note: base: the rules name no pod CIDR: a pod at 10.244.0.2 assumed"));
    assert!(!out.contains("no node address"), "{out}");
}

/// Equal dumps: no class line, exit 0; without --node-ip the assumed node address is said.
#[test]
fn equal_dumps_no_lines_exit_0() {
    let f = "trace/kernel/iptables-overall.txt";
    let o = diff(f, f, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(change_lines(&out).is_empty(), "{out}");
    assert!(out.starts_with("packets: no class differs ("), "{out}");
    assert!(out.contains("the dump names no node address: 192.0.2.10 assumed"));
    let o = diff(K34, K34, &["--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["packets"]["changes"].as_array().map(Vec::len), Some(0));
}

/// --node-ip needs --packets; a bad address is named: exit 2.
#[test]
fn node_ip_flag_errors() {
    let (b, p) = (fixture(K33), fixture(K34));
    let (b, p) = (b.to_str().unwrap(), p.to_str().unwrap());
    let o = kindred(&["diff", b, p, "--node-ip", "1.2.3.4"]);
    assert_eq!(o.status.code(), Some(2));
    let o = kindred(&["diff", b, p, "--packets", "--node-ip", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("'nope' is not an IPv4 address"),
        "{}",
        stderr(&o)
    );
}

/// The exit status counts packets: ns2/svc2's own rules are the same in both (PR 132456 moved
/// shared base chains), so without the shared chains the rules are equal and the packets are
/// not: exit 1.
#[test]
fn packets_that_differ_under_equal_rules_exit_1() {
    let o = diff(T33, T34, &["--service", "ns2/svc2", "--no-shared"]);
    let out = stdout(&o);
    assert!(out.contains("0 changed, 1 equal"), "{out}");
    assert_eq!(change_lines(&out).len(), 2, "{out}");
    assert_eq!(o.status.code(), Some(1), "{out}");
}

/// One Service written by both proxiers (iptables base, nftables PR; the modes differ): every
/// class, LB and external IP paired by address across the modes' spellings, ends alike.
#[test]
fn the_same_service_in_iptables_and_nftables_no_class_differs() {
    let o = diff(
        "trace/kernel/iptables-etp-local.txt",
        "trace/kernel/nftables-etp-local.txt",
        &["--node-ip", "192.168.0.2", "--format", "json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let p = &v["packets"];
    assert_eq!(p["changes"].as_array().map(Vec::len), Some(0), "{p}");
    // ClusterIP, LB, external IP, NodePort × pod, host, outside.
    assert_eq!(
        (p["services"].as_u64(), p["classes"].as_u64()),
        (Some(1), Some(12))
    );
    assert_eq!(p["unknown"], 0);
    assert_eq!(v["modes"]["base"], "iptables");
}
