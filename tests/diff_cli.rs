//! `kindred diff` on the real dumps in tests/fixtures and on synthetic pairs.

mod common;
use common::synth::{Spec, dump};
use common::*;

const MASTER: &str = "iptables/mauilion-blog-2019-master-cluster-KUBE-XLB.txt";
const PR: &str = "iptables/mauilion-blog-2019-pr77523-cluster-KUBE-XLB.txt";

/// `--format json` (v2) on the 2019 pair: the same two added rules, each rule written once
/// (smaller than v1's `v1_len` bytes), a rule line per text line.
fn json_v2_says_the_same(b: &std::path::Path, p: &std::path::Path, v1_len: usize) {
    let o = kindred(&[
        "diff",
        b.to_str().unwrap(),
        p.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["schema"], "kindred.diff/v2");
    let s = &v["services"][0];
    assert_eq!(
        (s["added"].as_u64(), s["removed"].as_u64()),
        (Some(2), Some(0))
    );
    let lines: Vec<&serde_json::Value> = s["chains"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["lines"].as_array().unwrap())
        .collect();
    let added: Vec<_> = lines.iter().filter(|l| l["op"] == "added").collect();
    assert_eq!(added.len(), 2);
    assert!(
        added[1]["raw"]
            .as_str()
            .unwrap()
            .contains("route LOCAL traffic")
    );
    assert!(
        added
            .iter()
            .all(|l| l["pr_line"].is_u64() && l.get("base_line").is_none())
    );
    let equal: Vec<_> = lines.iter().filter(|l| l["op"] == "equal").collect();
    assert!(!equal.is_empty());
    assert!(
        equal
            .iter()
            .all(|l| l["base_line"].is_u64() && l["pr_line"].is_u64() && l.get("raw").is_none())
    );
    assert!(
        o.stdout.len() < v1_len / 2,
        "{} vs v1 {v1_len}",
        o.stdout.len()
    );
    let text = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        text.lines()
            .filter(|l| l.trim_start().starts_with("{\"op\":"))
            .count(),
        lines.len()
    );
}

#[test]
fn walkthrough_2019_is_exactly_two_added_local_rules() {
    let (b, p) = (fixture(MASTER), fixture(PR));
    let o = kindred(&[
        "diff",
        b.to_str().unwrap(),
        p.to_str().unwrap(),
        "--format",
        "json-v1",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["schema"], "kindred.diff/v1");
    assert_eq!(v["equal"], false);
    let svcs = v["services"].as_array().unwrap();
    assert_eq!(svcs.len(), 1);
    let s = &svcs[0];
    assert_eq!(s["service"], "default/echo:");
    assert_eq!(s["removed"].as_array().unwrap().len(), 0);
    let added = s["added"].as_array().unwrap();
    assert_eq!(added.len(), 2);
    assert!(
        added[0]["raw"]
            .as_str()
            .unwrap()
            .contains("masquerade LOCAL traffic for default/echo: LB IP")
    );
    assert!(
        added[1]["raw"]
            .as_str()
            .unwrap()
            .contains("route LOCAL traffic for default/echo: LB IP to service chain")
    );
    assert_eq!(
        added[1]["rule"],
        "-A KUBE-XLB-<hash> -m comment --comment \"route LOCAL traffic for default/echo: LB IP to service chain\" -m addrtype --src-type LOCAL -j KUBE-SVC-<hash>"
    );
    // The NodePort rule (30012 vs 31972) is equal after normalization.
    let np = s["chains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["chain"] == "KUBE-NODEPORTS")
        .unwrap();
    assert_eq!(np["equal"], true);

    json_v2_says_the_same(&b, &p, o.stdout.len());

    let text = stdout(&kindred(&[
        "diff",
        b.to_str().unwrap(),
        p.to_str().unwrap(),
        "--service",
        "default/echo",
    ]));
    assert!(
        text.contains("=== default/echo: (changed, +2 -0)"),
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("+ ")).count(),
        2,
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("- ")).count(),
        0,
        "{text}"
    );
    assert!(!text.contains('\x1b'), "NO_COLOR honoured");

    // --raw shows the NodePort difference.
    let raw = stdout(&kindred(&[
        "diff",
        b.to_str().unwrap(),
        p.to_str().unwrap(),
        "--raw",
    ]));
    assert!(
        raw.contains("--dport 30012") && raw.contains("--dport 31972"),
        "{raw}"
    );
}

#[test]
fn color_always_marks_added_rules_green() {
    let (b, p) = (fixture(MASTER), fixture(PR));
    let o = kindred(&[
        "diff",
        b.to_str().unwrap(),
        p.to_str().unwrap(),
        "--color",
        "always",
    ]);
    let t = stdout(&o);
    assert!(t.contains("\x1b[32m+ \x1b[0m"), "{t:?}");
}

#[test]
fn same_file_is_equal_exit_0() {
    for f in [
        MASTER,
        PR,
        "iptables/http-svc-v1.24-KUBE-EXT-KUBE-SVL-MARK-DROP.txt",
        "iptables/ishswar-katacoda-kind-worker-KUBE-XLB.txt",
        "iptables/k8s-proxier_test-TestExternalTrafficPolicyLocal.txt",
        "iptables/k8s-proxier_test-TestOverallIPTablesRules.txt",
        "iptables/robric-multipass-metallb-KUBE-EXT-KUBE-SVL-iptables-S-v.txt",
        "iptables/sn0rt-blog-2020-eks-KUBE-XLB-pre77523-format.txt",
    ] {
        let p = fixture(f);
        let o = kindred(&["diff", p.to_str().unwrap(), p.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{f}: {}", stderr(&o));
        assert!(stdout(&o).contains("0 changed"), "{f}");
    }
}

#[test]
fn fixtures_find_their_services() {
    use kindred::rules::{parse, service::services};
    let cases: &[(&str, &[&str])] = &[
        (
            "iptables/http-svc-v1.24-KUBE-EXT-KUBE-SVL-MARK-DROP.txt",
            &["default/http-svc:http-svc", "default/kubernetes:https"],
        ),
        (
            "iptables/ishswar-katacoda-kind-worker-KUBE-XLB.txt",
            &["default/test-svc:"],
        ),
        (
            "iptables/k8s-proxier_test-TestOverallIPTablesRules.txt",
            &[
                "ns1/svc1:p80",
                "ns2/svc2:p80",
                "ns3/svc3:p80",
                "ns4/svc4:p80",
                "ns5/svc5:p80",
                "ns6/svc6:p80",
            ],
        ),
        (
            "iptables/robric-multipass-metallb-KUBE-EXT-KUBE-SVL-iptables-S-v.txt",
            &["default/nginx-mlb-l2-service:"],
        ),
        (
            "iptables/sn0rt-blog-2020-eks-KUBE-XLB-pre77523-format.txt",
            &["2048-game/service-2048-local:"],
        ),
    ];
    for (f, want) in cases {
        let d = parse(std::fs::read_to_string(fixture(f)).unwrap()).unwrap();
        let s = services(&d, None);
        let keys: Vec<String> = s.iter().map(|s| s.key.to_string()).collect();
        for w in *want {
            assert!(keys.iter().any(|k| k == w), "{f}: {w} not in {keys:?}");
        }
    }
    // The sn0rt excerpt: the SEP chains reached only through KUBE-XLB (no comments) belong to it.
    let d = parse(std::fs::read_to_string(fixture(cases[4].0)).unwrap()).unwrap();
    let s = &services(&d, None)[0];
    assert!(
        s.chains.iter().any(|c| c == "KUBE-SEP-TVXZJYL67XY2CHS2"),
        "{:?}",
        s.chains
    );
    // ns2/svc2 in TestOverallIPTablesRules: filter-table DROPs in KUBE-EXTERNAL-SERVICES are its rules.
    let d = parse(std::fs::read_to_string(fixture(cases[2].0)).unwrap()).unwrap();
    let s = services(
        &d,
        Some(&kindred::rules::ServiceFilter::parse("ns2/svc2").unwrap()),
    );
    let filter_rules = s[0]
        .rules
        .iter()
        .filter(|&&i| d.rules[i].table == Some(kindred::rules::parse::Table::Filter))
        .count();
    assert_eq!(filter_rules, 4);
}

#[test]
fn v124_local_vs_cluster_policy_difference() {
    // Same service (unnamed port), KUBE-XLB era vs EXT/SVL era: old "ns/svc:" and new "ns/svc"
    // spellings pair up as one service.
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a");
    let b = d.path().join("b");
    std::fs::write(&a, "-A KUBE-NODEPORTS -p tcp -m comment --comment \"default/web:\" -m tcp --dport 30001 -j KUBE-XLB-AAAAAAAAAAAAAAAA\n-A KUBE-XLB-AAAAAAAAAAAAAAAA -m comment --comment \"default/web: has no local endpoints\" -j KUBE-MARK-DROP\n").unwrap();
    std::fs::write(&b, "-A KUBE-NODEPORTS -p tcp -m comment --comment \"default/web\" -m tcp --dport 31001 -j KUBE-XLB-BBBBBBBBBBBBBBBB\n-A KUBE-XLB-BBBBBBBBBBBBBBBB -m comment --comment \"default/web has no local endpoints\" -j KUBE-MARK-DROP\n").unwrap();
    let o = kindred(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn trouble_is_exit_2_with_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("bad.txt");
    std::fs::write(
        &bad,
        "*nat\n-A KUBE-SERVICES -j X\nthis is not a rule\nCOMMIT\n",
    )
    .unwrap();
    let good = fixture(MASTER);
    let o = kindred(&["diff", good.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains(&format!("{}:3:", bad.display())), "{e}");
    let o = kindred(&["diff", "/nonexistent/x", good.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent/x"));
    let o = kindred(&[
        "diff",
        good.to_str().unwrap(),
        good.to_str().unwrap(),
        "--service",
        "nope",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--service"));
    let o = kindred(&[
        "diff",
        good.to_str().unwrap(),
        good.to_str().unwrap(),
        "--service",
        "default/absent",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn stdin_as_one_side() {
    time_limit();
    use std::io::Write;
    use std::process::{Command, Stdio};
    let p = fixture(PR);
    let mut child = Command::new(env!("CARGO_BIN_EXE_kindred"))
        .env("XDG_STATE_HOME", common::test_state())
        .args(["diff", "-", p.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(fixture(MASTER)).unwrap())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn synthetic_pairs_equal_and_changed() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a");
    let b = d.path().join("b");
    let c = d.path().join("c");
    std::fs::write(
        &a,
        dump(&Spec {
            services: 300,
            seed: 11,
            ..Spec::default()
        }),
    )
    .unwrap();
    std::fs::write(
        &b,
        dump(&Spec {
            services: 300,
            seed: 12,
            hash_seed: 5,
            ..Spec::default()
        }),
    )
    .unwrap();
    std::fs::write(
        &c,
        dump(&Spec {
            services: 300,
            seed: 13,
            change: true,
            ..Spec::default()
        }),
    )
    .unwrap();
    let o = kindred(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = kindred(&[
        "diff",
        a.to_str().unwrap(),
        c.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let changed = changed_services(&v);
    assert_eq!(changed.len(), 3, "services 0, 100, 200");
    assert_eq!(
        changed[0]["service"], "ns0/svc0:p80",
        "changed services come first"
    );
    let o = kindred(&[
        "diff",
        a.to_str().unwrap(),
        c.to_str().unwrap(),
        "--service",
        "ns6/svc200:p80",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("- -A KUBE-EXT-<hash> -m comment --comment \"masquerade LOCAL traffic for ns6/svc200:p80 external destinations\""), "{}", stdout(&o));
}

#[test]
fn nftables_dumps_compare_and_mixed_kinds_compare_per_service() {
    let list = fixture("nftables/k3s-real-nft-list-table-ip-kube-proxy.txt");
    let txn = fixture("nftables/k8s-nftables-proxier_test-TestOverallNFTablesRules.txt");
    let ipt = fixture(MASTER);
    for f in [&list, &txn] {
        let o = kindred(&["diff", f.to_str().unwrap(), f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let o = kindred(&[
        "diff",
        txn.to_str().unwrap(),
        txn.to_str().unwrap(),
        "--service",
        "ns2/svc2",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["services"].as_array().unwrap().len(), 1);
    assert_eq!(v["services"][0]["service"], "ns2/svc2:p80");
    // Two modes: each Service's rules as they are, never equal, and the output says why.
    let o = kindred(&["diff", ipt.to_str().unwrap(), list.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("note: the modes differ (base iptables, PR nftables)"),
        "{}",
        stdout(&o)
    );
}

mod synthetic {
    use super::common::synth::{AFFINITY_CHANGED, Affinity, Spec, dump, nft_dump, nft_dump_with};
    use kindred::rules::{Options, compare, compare_texts, parse};

    #[test]
    fn seeds_differ_only_in_incidentals() {
        let a = dump(&Spec {
            seed: 1,
            ..Spec::default()
        });
        let b = dump(&Spec {
            seed: 2,
            hash_seed: 9,
            ..Spec::default()
        });
        assert_ne!(a, b);
        let (a, b) = (parse(a).unwrap(), parse(b).unwrap());
        let c = compare(&a, &b, &Options::default());
        assert!(c.equal, "{}", kindred::rules::render::text(&c, false));
        assert_eq!(c.services.len(), 100);
        let raw = compare(
            &a,
            &b,
            &Options {
                raw: true,
                ..Options::default()
            },
        );
        assert!(!raw.equal);
    }

    #[test]
    fn change_is_found() {
        let a = parse(dump(&Spec {
            seed: 1,
            ..Spec::default()
        }))
        .unwrap();
        let b = parse(dump(&Spec {
            seed: 3,
            change: true,
            ..Spec::default()
        }))
        .unwrap();
        let c = compare(&a, &b, &Options::default());
        assert!(!c.equal);
        let changed: Vec<_> = c.changed().collect();
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].service, "ns0/svc0:p80");
        assert_eq!(changed[0].removed.len(), 1);
        assert!(
            changed[0].removed[0]
                .rule()
                .contains("masquerade LOCAL traffic")
        );
        assert!(changed[0].added.is_empty());
    }

    /// Two nftables dumps of the same services from different clusters (other IPs, NodePorts,
    /// endpoint hashes, element and chain order, counters): equal; the raw text is not.
    #[test]
    fn nftables_seeds_differ_only_in_noise() {
        let spec = |seed, change| Spec {
            services: 300,
            seed,
            change,
            ..Spec::default()
        };
        let (a, b) = (nft_dump(&spec(1, false)), nft_dump(&spec(2, false)));
        assert_ne!(a, b);
        let c = compare_texts(&a, &b, &Options::default()).unwrap();
        assert!(c.equal, "{}", kindred::rules::render::text(&c, false));
        assert_eq!(c.services.len(), 300);
        assert!(c.shared.as_ref().is_some_and(|s| s.equal));
        let raw = Options {
            raw: true,
            ..Options::default()
        };
        assert!(!compare_texts(&a, &b, &raw).unwrap().equal);
    }

    /// The same change as in iptables (every 100th eTP=Local LoadBalancer Service loses its
    /// "masquerade local traffic" rule) is found, in its chain, and nothing else.
    #[test]
    fn nftables_change_is_found_in_its_chain() {
        let spec = |seed, change| Spec {
            services: 300,
            seed,
            change,
            ..Spec::default()
        };
        let (a, b) = (nft_dump(&spec(1, false)), nft_dump(&spec(3, true)));
        let c = compare_texts(&a, &b, &Options::default()).unwrap();
        let changed: Vec<_> = c.changed().collect();
        let names: Vec<&str> = changed.iter().map(|s| s.service.as_str()).collect();
        assert_eq!(names, ["ns0/svc0:p80", "ns3/svc100:p80", "ns6/svc200:p80"]);
        for s in changed {
            assert!(s.added.is_empty());
            assert_eq!(s.removed.len(), 1);
            assert_eq!(
                s.removed[0].rule(),
                "fib saddr type local jump mark-for-masquerade"
            );
            assert!(
                s.removed[0].chain.starts_with("external-"),
                "{:?}",
                s.removed[0]
            );
            let ch = s.chains.iter().find(|ch| !ch.equal).unwrap();
            assert!(ch.chain.starts_with("external-<hash>-"), "{}", ch.chain);
            // An nftables chain is named as such, not as one of iptables' tables.
            assert_eq!(ch.table.name(), "nft");
        }
    }

    /// Session affinity (every fifth Service): two clusters in the same state are equal; one
    /// Service's affinity timeout changed is found in exactly that Service, raw or not.
    #[test]
    fn nftables_session_affinity_noise_and_timeout() {
        let spec = |seed| Spec {
            services: 40,
            seed,
            ..Spec::default()
        };
        let sticky = Affinity {
            timeout: 10800,
            changed: None,
        };
        let changed = Affinity {
            changed: Some(10),
            ..sticky
        };
        let a = nft_dump_with(&spec(1), sticky);
        assert!(a.contains("update @affinity-"), "{a}");
        let b = nft_dump_with(&spec(2), sticky);
        let c = compare_texts(&a, &b, &Options::default()).unwrap();
        assert!(c.equal, "{}", kindred::rules::render::text(&c, false));
        let found = |c: &kindred::rules::Comparison| -> Vec<(String, Vec<String>, Vec<String>)> {
            let rules = |v: &[std::sync::Arc<kindred::rules::diff::RuleText>]| {
                v.iter().map(|r| r.rule().to_string()).collect::<Vec<_>>()
            };
            c.changed()
                .map(|s| (s.service.clone(), rules(&s.removed), rules(&s.added)))
                .collect()
        };
        let c = compare_texts(&a, &nft_dump_with(&spec(3), changed), &Options::default()).unwrap();
        assert_eq!(
            found(&c),
            [(
                AFFINITY_CHANGED.to_string(),
                vec!["timeout 10800s".to_string(); 2],
                vec!["timeout 10s".to_string(); 2]
            )]
        );
        assert!(c.shared.as_ref().is_some_and(|s| s.equal));
        // Raw, the same cluster with that one timeout changed: that change only.
        let raw = Options {
            raw: true,
            ..Options::default()
        };
        let c = compare_texts(&a, &nft_dump_with(&spec(1), changed), &raw).unwrap();
        assert_eq!(
            found(&c),
            [(
                AFFINITY_CHANGED.to_string(),
                vec!["timeout 10800s".to_string(); 2],
                vec!["timeout 10s".to_string(); 2]
            )]
        );
    }

    /// `nft list table ip kube-proxy` against `nft list ruleset` (kube-proxy's ip6 table and
    /// another table too): equal, the ip6 table named in a note in text and JSON, exit 0.
    #[test]
    fn single_table_against_ruleset_is_equal_with_a_note() {
        let spec = |seed| Spec {
            services: 20,
            seed,
            ..Spec::default()
        };
        let table = nft_dump(&spec(1));
        let ruleset = format!("{}{IP6}table inet filter {{\n}}\n", nft_dump(&spec(2)));
        let dir = tempfile::tempdir().unwrap();
        let (t, r) = (dir.path().join("table.nft"), dir.path().join("ruleset.nft"));
        std::fs::write(&t, &table).unwrap();
        std::fs::write(&r, &ruleset).unwrap();
        let (t, r) = (t.to_str().unwrap(), r.to_str().unwrap());
        let o = super::kindred(&["diff", t, r]);
        let out = super::stdout(&o);
        assert_eq!(o.status.code(), Some(0), "{out}{}", super::stderr(&o));
        assert!(
            out.contains(
                "note: table ip6 kube-proxy listed only by PR (base lists one table): not compared"
            ),
            "{out}"
        );
        let o = super::kindred(&["diff", r, t, "--format", "json"]);
        assert_eq!(o.status.code(), Some(0));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            v["one_sided_tables"],
            serde_json::json!([{"table": "ip6 kube-proxy", "listed_by": "base"}])
        );
        // Two whole rulesets: every kube-proxy table compared, the ip6 one's chain removed.
        let other = format!("{table}table inet filter {{\n}}\n");
        let c = compare_texts(&ruleset, &other, &Options::default()).unwrap();
        assert!(!c.equal && c.one_sided_tables.is_empty());
        assert_eq!(c.shared.as_ref().unwrap().removed.len(), 1);
    }

    /// kube-proxy's IPv6 skeleton table, as `nft list ruleset` shows it on a node.
    const IP6: &str = "table ip6 kube-proxy {\n\tcomment \"rules for kube-proxy\"\n\tchain nat-output {\n\t\ttype nat hook output priority -100; policy accept;\n\t}\n}\n";
}
