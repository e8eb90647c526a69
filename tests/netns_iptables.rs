//! Dumps that went through the real iptables: loaded with iptables-restore into a fresh network
//! namespace and read back with iptables-save, legacy on one side and nft on the other.
//! Needs root, iproute2 and Debian's iptables; ignored by plain `cargo test`, run by CI.

mod common;
use common::netns::Netns;
use common::synth::{Spec, dump};
use common::*;
use std::process::Command;

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
#[ignore = "needs root, ip netns and iptables (CI runs it)"]
fn real_iptables_round_trip_same_behaviour_is_equal() {
    let dir = tempfile::tempdir().unwrap();
    let base = Netns::new("base");
    let pr = Netns::new("pr");
    // Same behaviour, other NodePorts, IPs, endpoint hashes, service order, chain hashes.
    base.restore(
        "iptables-legacy-restore",
        &dump(&Spec {
            services: 150,
            seed: 41,
            ..Spec::default()
        }),
    );
    pr.restore(
        "iptables-nft-restore",
        &dump(&Spec {
            services: 150,
            seed: 42,
            hash_seed: 7,
            ..Spec::default()
        }),
    );
    let b = base.save("iptables-legacy-save", &[]);
    let p = pr.save("iptables-nft-save", &["-c"]); // counters on every rule: "[p:b] -A ..."
    assert!(p.contains("(nf_tables)"), "nft save format");
    assert!(
        p.lines().any(|l| l.starts_with("[0:0] -A KUBE-")),
        "counters on rules"
    );
    let (bf, pf) = (
        write(dir.path(), "base.txt", &b),
        write(dir.path(), "pr.txt", &p),
    );
    let o = kindred(&["diff", &bf, &pf]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("150 services compared (normalized): 0 changed, 150 equal"),
        "{}",
        stdout(&o)
    );
    // Raw: everything differs.
    assert_eq!(kindred(&["diff", &bf, &pf, "--raw"]).status.code(), Some(1));
}

#[test]
#[ignore = "needs root, ip netns and iptables (CI runs it)"]
fn real_iptables_round_trip_behaviour_change_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let base = Netns::new("b2");
    let pr = Netns::new("p2");
    base.restore(
        "iptables-nft-restore",
        &dump(&Spec {
            services: 120,
            seed: 51,
            ..Spec::default()
        }),
    );
    pr.restore(
        "iptables-legacy-restore",
        &dump(&Spec {
            services: 120,
            seed: 52,
            change: true,
            ..Spec::default()
        }),
    );
    let bf = write(dir.path(), "base.txt", &base.save("iptables-nft-save", &[]));
    let pf = write(dir.path(), "pr.txt", &pr.save("iptables-legacy-save", &[]));
    let o = kindred(&["diff", &bf, &pf, "--format", "json-v1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let changed = changed_services(&v);
    assert_eq!(changed.len(), 2, "services 0 and 100");
    for s in changed {
        assert_eq!(s["removed"].as_array().unwrap().len(), 1);
        assert_eq!(s["added"].as_array().unwrap().len(), 0);
        assert!(
            s["removed"][0]["rule"]
                .as_str()
                .unwrap()
                .contains("masquerade LOCAL traffic")
        );
    }
}

#[test]
#[ignore = "needs root, ip netns and iptables (CI runs it)"]
fn kube_proxy_restore_input_equals_what_iptables_saves() {
    // kube-proxy's own test expectation, as restore input, vs what the kernel gives back.
    let dir = tempfile::tempdir().unwrap();
    let ns = Netns::new("kp");
    let input = std::fs::read_to_string(fixture(
        "iptables/k8s-proxier_test-TestExternalTrafficPolicyLocal.txt",
    ))
    .unwrap();
    ns.restore("iptables-nft-restore", &input);
    let saved = ns.save("iptables-nft-save", &[]);
    assert!(
        saved.contains("--set-xmark 0x4000/0x4000"),
        "save rewrites --or-mark"
    );
    let (a, b) = (
        write(dir.path(), "in.txt", &input),
        write(dir.path(), "saved.txt", &saved),
    );
    let o = kindred(&["diff", &a, &b]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

/// Load an nftables ruleset into a fresh namespace with `nft -f`, and list it back as `how`
/// says (`nft list table ip kube-proxy`, `nft -a list ...`, `nft list ruleset`).
fn nft_load_and_list(tag: &str, ruleset: &str, how: &[&str]) -> String {
    let ns = Netns::new(tag);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("rules.nft");
    std::fs::write(&f, ruleset).unwrap();
    let o = Command::new("ip")
        .args(["netns", "exec", &ns.0, "nft", "-f", f.to_str().unwrap()])
        .output()
        .expect("nft (Debian's nftables)");
    assert!(
        o.status.success(),
        "nft -f: {}\n{ruleset}",
        String::from_utf8_lossy(&o.stderr)
    );
    ns.save("nft", how)
}

fn nft_round_trip(tag: &str, ruleset: &str) -> String {
    nft_load_and_list(tag, ruleset, &["list", "table", "ip", "kube-proxy"])
}

#[test]
#[ignore = "needs root, ip netns and nft (CI runs it)"]
fn nftables_round_trip_same_behaviour_is_equal_and_changes_show() {
    let fixture = std::fs::read_to_string(fixture(
        "nftables/k3s-real-nft-list-table-ip-kube-proxy.txt",
    ))
    .unwrap();
    let fixture: String = fixture
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    // Another cluster: other chain hashes, cluster IP, NodePort and endpoint IP.
    let other = fixture
        .replace("P6J77WGM", "Q7K88XHN")
        .replace("VNXJG24O", "WOYKH35P")
        .replace("10.43.195.72", "10.43.7.7")
        .replace("tcp . 30000", "tcp . 31234")
        .replace("10.42.2.218", "10.42.2.250");
    assert_ne!(fixture, other);
    // A behaviour change: the external chain no longer marks for masquerade.
    let changed = other.replacen(
        "        chain external-Q7K88XHN-riset/hellopod-np-svc/tcp/ {\n                jump mark-for-masquerade\n",
        "        chain external-Q7K88XHN-riset/hellopod-np-svc/tcp/ {\n",
        1,
    );
    assert_ne!(changed, other);
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.nft", &nft_round_trip("nfa", &fixture));
    let b = write(dir.path(), "b.nft", &nft_round_trip("nfb", &other));
    let c = write(dir.path(), "c.nft", &nft_round_trip("nfc", &changed));
    let orig = write(dir.path(), "orig.nft", &fixture);

    let o = kindred(&["diff", &orig, &a]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "listing back changes nothing: {}{}",
        stdout(&o),
        stderr(&o)
    );
    let o = kindred(&["diff", &a, &b, "--service", "riset/hellopod-np-svc"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let o = kindred(&["diff", &a, &b]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let o = kindred(&["diff", &a, &c, "--format", "json-v1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let changed = changed_services(&v);
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["service"], "riset/hellopod-np-svc:");
    assert_eq!(changed[0]["removed"].as_array().unwrap().len(), 1);
    let removed = &changed[0]["removed"][0];
    assert_eq!(removed["rule"], "jump mark-for-masquerade");
    assert!(
        removed["chain"]
            .as_str()
            .unwrap()
            .starts_with("external-P6J77WGM-riset/hellopod-np-svc/tcp/"),
        "{removed}"
    );
    assert!(changed[0]["added"].as_array().unwrap().is_empty());
}

/// One cluster's kube-proxy nftables table, as kube-proxy writes it (a reduced but loadable
/// version of its proxier's output): Services `default/echo` (ports http and metrics, eTP=Local
/// LoadBalancer) and `default/other`, base chains before or after PR 132456.
#[derive(Clone)]
struct Kp {
    /// (endpoint IP, endpoint chain hash) of echo's two endpoints; the first is local.
    eps: [(&'static str, &'static str); 2],
    cluster_ip: &'static str,
    lb: &'static str,
    nodeport: u16,
    after_132456: bool,
    /// One more rule in echo:http's external chain.
    extra_rule: bool,
    /// echo's metrics port gone.
    no_metrics: bool,
    maps_first: bool,
}

impl Kp {
    fn base() -> Kp {
        Kp {
            eps: [("10.244.1.5", "ZZZZZZZZ"), ("10.244.2.7", "YYYYYYYY")],
            cluster_ip: "10.96.0.9",
            lb: "172.18.255.200",
            nodeport: 30001,
            after_132456: false,
            extra_rule: false,
            no_metrics: false,
            maps_first: false,
        }
    }

    /// The same behaviour in another cluster: every incidental value differs.
    fn elsewhere(&self) -> Kp {
        Kp {
            eps: [("10.244.2.9", "QQQQQQQQ"), ("10.244.1.3", "RRRRRRRR")],
            cluster_ip: "10.96.0.77",
            lb: "172.18.255.210",
            nodeport: 31002,
            maps_first: !self.maps_first,
            ..self.clone()
        }
    }

    fn port(
        &self,
        name: &str,
        hash: &str,
        port: u16,
        out: &mut Vec<String>,
        maps: &mut Vec<String>,
    ) {
        let svc = format!("default/echo/tcp/{name}");
        let ep = |i: usize| {
            format!(
                "endpoint-{}{hash}00-{svc}__{}/{port}",
                &self.eps[i].1[..4],
                self.eps[i].0
            )
        };
        out.push(format!(
            "chain service-{hash}SV0000-{svc} {{\n ip daddr {} tcp dport {port} ip saddr != 10.244.0.0/16 jump mark-for-masquerade\n numgen random mod 2 vmap {{ 0 : goto {}, 1 : goto {} }}\n}}",
            self.cluster_ip, ep(0), ep(1)
        ));
        let extra = if self.extra_rule && name == "http" {
            format!(" meta l4proto tcp ip saddr 10.244.0.0/16 goto service-{hash}SV0000-{svc}\n")
        } else {
            String::new()
        };
        out.push(format!(
            "chain external-{hash}EX0000-{svc} {{\n{extra} ip saddr 10.244.0.0/16 goto service-{hash}SV0000-{svc}\n goto local-{hash}LO0000-{svc}\n}}"
        ));
        out.push(format!(
            "chain local-{hash}LO0000-{svc} {{\n numgen random mod 1 vmap {{ 0 : goto {} }}\n}}",
            ep(0)
        ));
        for i in 0..2 {
            let ip = self.eps[i].0;
            out.push(format!(
                "chain {} {{\n ip saddr {ip} jump mark-for-masquerade\n meta l4proto tcp dnat to {ip}:{port}\n}}",
                ep(i)
            ));
        }
        maps.push(format!(
            "{} . tcp . {port} : goto service-{hash}SV0000-{svc}",
            self.cluster_ip
        ));
        maps.push(format!(
            "{} . tcp . {port} : goto external-{hash}EX0000-{svc}",
            self.lb
        ));
    }

    fn ruleset(&self) -> String {
        let (mut chains, mut elements) = (Vec::new(), Vec::new());
        self.port("http", "HT", 8080, &mut chains, &mut elements);
        if !self.no_metrics {
            self.port("metrics", "ME", 9090, &mut chains, &mut elements);
        }
        chains.push("chain mark-for-masquerade {\n mark set mark or 0x4000\n}".into());
        chains.push("chain masquerading {\n meta mark & 0x00004000 == 0x00000000 return\n meta mark set meta mark ^ 0x00004000\n masquerade fully-random\n}".into());
        chains.push(
            "chain services {\n ip daddr . meta l4proto . th dport vmap @service-ips\n}".into(),
        );
        chains.push("chain service-endpoints-check {\n ip daddr . meta l4proto . th dport vmap @no-endpoint-services\n}".into());
        chains.push("chain nat-prerouting {\n type nat hook prerouting priority dstnat; policy accept;\n jump services\n}".into());
        chains.push("chain nat-output {\n type nat hook output priority -100; policy accept;\n jump services\n}".into());
        chains.push("chain nat-postrouting {\n type nat hook postrouting priority srcnat; policy accept;\n jump masquerading\n}".into());
        if self.after_132456 {
            chains.push("chain filter-prerouting-pre-dnat {\n type filter hook prerouting priority dstnat - 10; policy accept;\n}".into());
            chains.push("chain filter-output-pre-dnat {\n type filter hook output priority -110; policy accept;\n}".into());
            chains.push("chain filter-output {\n type filter hook output priority filter; policy accept;\n ct state new jump service-endpoints-check\n}".into());
            chains.push("chain filter-forward {\n type filter hook forward priority filter; policy accept;\n ct state new jump service-endpoints-check\n}".into());
        } else {
            chains.push("chain filter-prerouting {\n type filter hook prerouting priority dstnat - 10; policy accept;\n ct state new jump service-endpoints-check\n}".into());
            chains.push("chain filter-output {\n type filter hook output priority -110; policy accept;\n ct state new jump service-endpoints-check\n}".into());
            chains.push("chain filter-forward {\n type filter hook forward priority -110; policy accept;\n ct state new jump service-endpoints-check\n}".into());
        }
        let other = "chain service-OTHERSVC-default/other/tcp/ {\n ip daddr 10.96.0.50 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade\n numgen random mod 1 vmap { 0 : goto endpoint-OTHEREP1-default/other/tcp/__10.244.3.3/80 }\n}\nchain endpoint-OTHEREP1-default/other/tcp/__10.244.3.3/80 {\n ip saddr 10.244.3.3 jump mark-for-masquerade\n meta l4proto tcp dnat to 10.244.3.3:80\n}";
        chains.push(other.replace(
            "10.96.0.50",
            if self.cluster_ip == "10.96.0.9" {
                "10.96.0.50"
            } else {
                "10.96.0.51"
            },
        ));
        elements.push(format!(
            "{} . tcp . 80 : goto service-OTHERSVC-default/other/tcp/",
            if self.cluster_ip == "10.96.0.9" {
                "10.96.0.50"
            } else {
                "10.96.0.51"
            }
        ));
        let maps = format!(
            "map service-ips {{\n type ipv4_addr . inet_proto . inet_service : verdict\n elements = {{ {} }}\n}}\nmap no-endpoint-services {{\n type ipv4_addr . inet_proto . inet_service : verdict\n}}\nmap service-nodeports {{\n type inet_proto . inet_service : verdict\n elements = {{ tcp . {} : goto external-HTEX0000-default/echo/tcp/http }}\n}}",
            elements.join(",\n "),
            self.nodeport
        );
        let body = if self.maps_first {
            format!("{maps}\n{}", chains.join("\n"))
        } else {
            format!("{}\n{maps}", chains.join("\n"))
        };
        format!(
            "table ip kube-proxy {{\ncomment \"rules for kube-proxy\"\n{body}\n}}\ntable inet filter {{\nchain input {{\n type filter hook input priority filter; policy accept;\n}}\n}}\n"
        )
    }
}

/// Load `kp` into a fresh network namespace with the real nft, and dump it back as `how` does.
fn nft_dump(tag: &str, kp: &Kp, how: &[&str]) -> String {
    nft_load_and_list(tag, &kp.ruleset(), how)
}

#[test]
#[ignore = "needs root, ip netns and nft (CI runs it)"]
fn real_nftables_noise_services_and_shared_chains() {
    let dir = tempfile::tempdir().unwrap();
    let table = ["list", "table", "ip", "kube-proxy"];
    let handles = ["-a", "list", "table", "ip", "kube-proxy"];
    let ruleset = ["list", "ruleset"];
    let base = Kp::base();
    let a = nft_dump("kpa", &base, &table);
    assert!(
        a.contains("chain external-HTEX0000-default/echo/tcp/http"),
        "{a}"
    );
    let a = write(dir.path(), "a.nft", &a);
    let diff = |b: &str, extra: &[&str]| {
        let mut args = vec!["diff", a.as_str(), b, "--format", "json-v1"];
        args.extend_from_slice(extra);
        let o = kindred(&args);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|_| panic!("{}{}", stdout(&o), stderr(&o)));
        (o.status.code(), v)
    };
    // Noise only, listed three ways: equal, shared chains included.
    for (tag, how) in [
        ("kpb", &table[..]),
        ("kpc", &handles[..]),
        ("kpd", &ruleset[..]),
    ] {
        let b = write(
            dir.path(),
            &format!("{tag}.nft"),
            &nft_dump(tag, &base.elsewhere(), how),
        );
        let (code, v) = diff(&b, &[]);
        assert_eq!(code, Some(0), "{how:?}: {v:#}");
        assert_eq!(v["shared"]["equal"], true, "{how:?}");
    }
    // One rule more in echo:http's external chain: exactly +1, in exactly that Service.
    let more = Kp {
        extra_rule: true,
        ..base.elsewhere()
    };
    let b = write(dir.path(), "more.nft", &nft_dump("kpe", &more, &handles));
    let (code, v) = diff(&b, &[]);
    assert_eq!(code, Some(1));
    let changed = changed_services(&v);
    assert_eq!(changed.len(), 1, "{v:#}");
    assert_eq!(changed[0]["service"], "default/echo:http");
    assert_eq!(changed[0]["added"].as_array().unwrap().len(), 1);
    assert!(changed[0]["removed"].as_array().unwrap().is_empty());
    assert_eq!(v["shared"]["equal"], true);
    // A port removed: that Service's port only.
    let fewer = Kp {
        no_metrics: true,
        ..base.elsewhere()
    };
    let b = write(dir.path(), "fewer.nft", &nft_dump("kpf", &fewer, &table));
    let (_, v) = diff(&b, &[]);
    let changed = changed_services(&v);
    assert_eq!(changed.len(), 1, "{v:#}");
    assert_eq!(changed[0]["service"], "default/echo:metrics");
    assert_eq!(changed[0]["in_pr"], false);
    // PR 132456's base chains: in the shared group and nowhere else; --no-shared hides them.
    let fixed = Kp {
        after_132456: true,
        ..base.elsewhere()
    };
    let b = write(dir.path(), "fixed.nft", &nft_dump("kpg", &fixed, &ruleset));
    let (code, v) = diff(&b, &["--service", "default/echo"]);
    assert_eq!(code, Some(1));
    assert!(changed_services(&v).is_empty(), "{v:#}");
    assert_eq!(v["shared"]["equal"], false);
    // Each rule with its chain's name on that side.
    let rules = |which: &str| -> Vec<String> {
        v["shared"][which]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{}: {}",
                    r["chain"].as_str().unwrap(),
                    r["rule"].as_str().unwrap()
                )
            })
            .collect()
    };
    let (removed, added) = (rules("removed"), rules("added"));
    let (removed, added): (Vec<&str>, Vec<&str>) = (
        removed.iter().map(String::as_str).collect(),
        added.iter().map(String::as_str).collect(),
    );
    assert!(
        removed.contains(&"filter-output: type filter hook output priority -110"),
        "{removed:?}"
    );
    assert!(
        added.contains(&"filter-output: type filter hook output priority 0"),
        "{added:?}"
    );
    assert!(
        added.contains(&"filter-output-pre-dnat: type filter hook output priority -110"),
        "{added:?}"
    );
    let (code, v) = diff(&b, &["--service", "default/echo", "--no-shared"]);
    assert_eq!(code, Some(0), "{v:#}");
    assert!(v.get("shared").is_none());
}

/// kube-proxy's iptables rules for `default/two` (cluster IP `cip`), as restore input: endpoints
/// (IP, KUBE-SEP hash) each with its chain, and a statistic cascade whose branch k jumps to
/// endpoint `to[k]`.
fn cascade_rules(eps: &[(&str, &str)], to: &[usize], cip: &str) -> String {
    let mut t = String::from(
        "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:KUBE-SVC-TWOTWOTWO - [0:0]\n",
    );
    for (_, h) in eps {
        t.push_str(&format!(":KUBE-SEP-{h} - [0:0]\n"));
    }
    t.push_str("-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n");
    t.push_str(&format!("-A KUBE-SERVICES -d {cip}/32 -p tcp -m comment --comment \"default/two cluster IP\" -m tcp --dport 80 -j KUBE-SVC-TWOTWOTWO\n"));
    for (k, &e) in to.iter().enumerate() {
        let left = to.len() - k;
        let p = if left > 1 {
            format!(
                "-m statistic --mode random --probability {:.11} ",
                1.0 / left as f64
            )
        } else {
            String::new()
        };
        let (ip, h) = eps[e];
        t.push_str(&format!("-A KUBE-SVC-TWOTWOTWO -m comment --comment \"default/two -> {ip}:80\" {p}-j KUBE-SEP-{h}\n"));
    }
    for (ip, h) in eps {
        t.push_str(&format!(
            "-A KUBE-SEP-{h} -s {ip}/32 -m comment --comment \"default/two\" -j KUBE-MARK-MASQ\n"
        ));
        t.push_str(&format!("-A KUBE-SEP-{h} -p tcp -m comment --comment \"default/two\" -m tcp -j DNAT --to-destination {ip}:80\n"));
    }
    t + "COMMIT\n"
}

#[test]
#[ignore = "needs root, ip netns and iptables (CI runs it)"]
fn real_iptables_cascade_to_one_endpoint_is_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        ("10.244.1.5", "AAAAAAAAAAAAAAAA"),
        ("10.244.2.7", "BBBBBBBBBBBBBBBB"),
    );
    let (c, d) = (
        ("10.244.1.9", "CCCCCCCCCCCCCCCC"),
        ("10.244.2.3", "DDDDDDDDDDDDDDDD"),
    );
    let saved = |tag: &str, rules: String| {
        let ns = Netns::new(tag);
        ns.restore("iptables-nft-restore", &rules);
        write(
            dir.path(),
            &format!("{tag}.txt"),
            &ns.save("iptables-nft-save", &["-t", "nat"]),
        )
    };
    let spread = saved("csa", cascade_rules(&[a, b], &[0, 1], "10.96.0.9"));
    let one = saved("csb", cascade_rules(&[a, b], &[0, 0], "10.96.0.9"));
    // The same mistake in another cluster: the other endpoint, other IPs and hashes.
    let one_elsewhere = saved("csc", cascade_rules(&[c, d], &[1, 1], "10.96.0.7"));
    let spread_elsewhere = saved("csd", cascade_rules(&[d, c], &[0, 1], "10.96.0.7"));
    let diff = |x: &str, y: &str| {
        let o = kindred(&["diff", x, y, "--format", "json-v1"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|_| panic!("{}{}", stdout(&o), stderr(&o)));
        (o.status.code(), v)
    };
    assert_eq!(diff(&spread, &spread_elsewhere).0, Some(0));
    assert_eq!(diff(&one, &one_elsewhere).0, Some(0));
    let (code, v) = diff(&spread, &one);
    assert_eq!(code, Some(1), "{v:#}");
    let changed = changed_services(&v);
    assert_eq!(changed.len(), 1, "{v:#}");
    let s = changed[0];
    assert_eq!(s["removed"].as_array().unwrap().len(), 1, "{s:#}");
    assert_eq!(s["added"].as_array().unwrap().len(), 1, "{s:#}");
    let added = s["added"][0]["rule"].as_str().unwrap();
    assert!(
        added.ends_with("-j KUBE-SEP-<endpoint> (same endpoint as rule 1)"),
        "{added}"
    );
}

/// Service `default/two` (two remote endpoints (IP, chain hash), cluster IP `cip`) as kube-proxy
/// writes it in nftables, its vmap sending branch k to endpoint `to[k]`.
fn spread_table(eps: [(&str, &str); 2], to: [usize; 2], cip: &str) -> String {
    let svc = "default/two/tcp/";
    let ep = |i: usize| format!("endpoint-{}-{svc}__{}/80", eps[i].1, eps[i].0);
    let mut t = format!(
        "table ip kube-proxy {{\nchain mark-for-masquerade {{\n mark set mark or 0x4000\n}}\nchain service-TWOTWOTW-{svc} {{\n ip daddr {cip} tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade\n numgen random mod 2 vmap {{ 0 : goto {}, 1 : goto {} }}\n}}\n",
        ep(to[0]),
        ep(to[1])
    );
    for (i, (ip, _)) in eps.iter().enumerate() {
        t.push_str(&format!(
            "chain {} {{\n ip saddr {ip} jump mark-for-masquerade\n meta l4proto tcp dnat to {ip}:80\n}}\n",
            ep(i)
        ));
    }
    t + &format!(
        "map service-ips {{\n type ipv4_addr . inet_proto . inet_service : verdict\n elements = {{ {cip} . tcp . 80 : goto service-TWOTWOTW-{svc} }}\n}}\n}}\n"
    )
}

#[test]
#[ignore = "needs root, ip netns and nft (CI runs it)"]
fn real_nftables_every_branch_to_one_endpoint_is_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (("10.244.1.5", "ZZZZZZZZ"), ("10.244.2.7", "YYYYYYYY"));
    let (c, d) = (("10.244.1.9", "QQQQQQQQ"), ("10.244.2.3", "RRRRRRRR"));
    let listed =
        |tag: &str, t: String| write(dir.path(), &format!("{tag}.nft"), &nft_round_trip(tag, &t));
    let spread = listed("nsa", spread_table([a, b], [0, 1], "10.96.0.9"));
    let one = listed("nsb", spread_table([a, b], [0, 0], "10.96.0.9"));
    let one_elsewhere = listed("nsc", spread_table([c, d], [1, 1], "10.96.0.7"));
    let spread_elsewhere = listed("nsd", spread_table([c, d], [1, 0], "10.96.0.7"));
    let diff = |x: &str, y: &str| {
        let o = kindred(&["diff", x, y, "--format", "json-v1"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|_| panic!("{}{}", stdout(&o), stderr(&o)));
        (o.status.code(), v)
    };
    assert_eq!(diff(&spread, &spread_elsewhere).0, Some(0));
    assert_eq!(diff(&one, &one_elsewhere).0, Some(0));
    let (code, v) = diff(&spread, &one);
    assert_eq!(code, Some(1), "{v:#}");
    let changed = changed_services(&v);
    assert_eq!(changed.len(), 1, "{v:#}");
    let s = changed[0];
    assert_eq!(s["removed"].as_array().unwrap().len(), 1, "{s:#}");
    assert_eq!(s["added"].as_array().unwrap().len(), 1, "{s:#}");
    let added = s["added"][0]["rule"].as_str().unwrap();
    assert!(
        added.ends_with("vmap { 0-1 : goto endpoint-<hash>-default/two/tcp/__<endpoint>/80 }"),
        "{added}"
    );
}

#[test]
#[ignore = "needs root, ip netns and nft (CI runs it)"]
fn knftables_input_equals_what_nft_lists() {
    // kube-proxy's own test expectation (knftables' `add ...` lines, as `nft -f` takes them:
    // declarations first) against what the kernel lists back: `mark or` vs `|`, `{ x }` vs `x`,
    // ` , ` vs `, `: spelling only.
    let input = std::fs::read_to_string(fixture(
        "nftables/k8s-nftables-proxier_test-TestOverallNFTablesRules.txt",
    ))
    .unwrap();
    let declaration = |l: &str| {
        ["add table ", "add chain ", "add set ", "add map "]
            .iter()
            .any(|p| l.starts_with(p))
    };
    let lines: Vec<&str> = input.lines().filter(|l| !l.starts_with('#')).collect();
    let input: String = lines
        .iter()
        .filter(|l| declaration(l))
        .chain(lines.iter().filter(|l| !declaration(l)))
        .map(|l| format!("{l}\n"))
        .collect();
    let listed = nft_round_trip("knft", &input);
    assert!(
        listed.contains("meta mark set meta mark | 0x00004000"),
        "{listed}"
    );
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        write(dir.path(), "in.nft", &input),
        write(dir.path(), "listed.nft", &listed),
    );
    let o = kindred(&["diff", &a, &b]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains(
            "6 services compared (normalized): 0 changed, 6 equal; kube-proxy's shared chains equal"
        ),
        "{}",
        stdout(&o)
    );
}
