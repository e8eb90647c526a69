//! kube-proxy's nftables rules read from kind-like node containers: `kindred diff node:A node:B`
//! finds no kube-proxy chain in iptables and falls back to `nft list table ip kube-proxy`, and
//! the base-chain change of PR 132456's kind (a hook priority) shows as a change of kube-proxy's
//! shared chains, no Service changed. Ignored by plain `cargo test` (needs Docker and nft).

mod common;
use common::*;

/// The k3s cluster's real table (see [`k3s_table`]).
fn table(priority: &str) -> String {
    k3s_table(priority)
}

#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn nft_rules_are_read_from_nodes_and_a_base_chain_change_is_shared() {
    image();
    let pid = std::process::id();
    let network = format!("kindred-nft-{pid}");
    network_create(&network, &[]);
    let (a, b) = (format!("nb{pid}"), format!("np{pid}"));
    let _cleanup = Cleanup {
        clusters: vec![a.clone(), b.clone()],
        network: network.clone(),
    };
    let (an, bn) = (format!("{a}-worker"), format!("{b}-worker"));
    run_node(&an, &a, "worker", &network);
    run_node(&bn, &b, "worker", &network);
    feed(&an, &["nft", "-f", "-"], &table("-110"));
    feed(&bn, &["nft", "-f", "-"], &table("0"));

    let o = kindred(&[
        "diff",
        &format!("node:{an}"),
        &format!("node:{bn}"),
        "--format",
        "json-v1",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(changed_services(&v).is_empty(), "no Service changed: {v:#}");
    assert!(v["services"].as_array().unwrap().len() >= 5, "{v:#}");
    let shared = &v["shared"];
    assert_eq!(shared["equal"], false);
    let one = |k: &str| -> (String, String) {
        let r = &shared[k][0];
        (
            r["chain"].as_str().unwrap().to_string(),
            r["rule"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(
        one("removed"),
        (
            "filter-output".into(),
            "type filter hook output priority -110".into()
        )
    );
    assert_eq!(
        one("added"),
        (
            "filter-output".into(),
            "type filter hook output priority 0".into()
        )
    );
    // The same node against itself: equal.
    let o = kindred(&["diff", &format!("node:{an}"), &format!("node:{an}")]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

/// A node container whose nftables rules are replaced with `text` (`nft -f`) and listed back as
/// `how` says: what kube-proxy's table looks like after the kernel had it.
fn load_and_list(node: &str, text: &str, how: &[&str]) -> String {
    feed(node, &["nft", "-f", "-"], &format!("flush ruleset\n{text}"));
    let mut argv = vec!["exec", node, "nft"];
    argv.extend_from_slice(how);
    docker(&argv) + "\n"
}

/// kube-proxy's IPv6 skeleton table and another table: what `nft list ruleset` shows besides
/// `table ip kube-proxy` on a node.
const OTHER_TABLES: &str = "table ip6 kube-proxy {\n\tcomment \"rules for kube-proxy\"\n\tchain nat-output {\n\t\ttype nat hook output priority -100; policy accept;\n\t}\n}\ntable inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n";

/// Session affinity through the real nft (`nft -f`, then `nft list`, which writes `3h` and adds
/// `size 65535`): two clusters in the same state are equal; one Service's affinity timeout
/// changed is found in exactly that Service, raw too. `nft list table ip kube-proxy` against
/// `nft list ruleset`: equal, the tables only the ruleset lists named in a note.
#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn nft_session_affinity_and_single_table_listings() {
    use common::synth::{AFFINITY_CHANGED, Affinity, Spec, nft_dump_with};
    image();
    let pid = std::process::id();
    let network = format!("kindred-nfa-{pid}");
    network_create(&network, &[]);
    let cluster = format!("nfa{pid}");
    let _cleanup = Cleanup {
        clusters: vec![cluster.clone()],
        network: network.clone(),
    };
    let node = format!("{cluster}-worker");
    run_node(&node, &cluster, "worker", &network);
    let spec = |seed| Spec {
        services: 30,
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
    let table = ["list", "table", "ip", "kube-proxy"];
    let ruleset = ["list", "ruleset"];
    let dir = tempfile::tempdir().unwrap();
    let listed = |name: &str, text: &str, how: &[&str]| -> String {
        let p = dir.path().join(name);
        std::fs::write(&p, load_and_list(&node, text, how)).unwrap();
        p.to_str().unwrap().to_string()
    };
    let a = listed("a.nft", &nft_dump_with(&spec(1), sticky), &table);
    let a_text = std::fs::read_to_string(&a).unwrap();
    assert!(
        a_text.contains("timeout 3h") && a_text.contains("size 65535"),
        "{a_text}"
    );
    let b = listed("b.nft", &nft_dump_with(&spec(2), sticky), &table);
    let c = listed("c.nft", &nft_dump_with(&spec(3), changed), &table);
    let a_changed = listed("a2.nft", &nft_dump_with(&spec(1), changed), &table);
    let diff = |x: &str, y: &str, extra: &[&str]| {
        let mut args = vec!["diff", x, y, "--format", "json-v1"];
        args.extend_from_slice(extra);
        let o = kindred(&args);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|_| panic!("{}{}", stdout(&o), stderr(&o)));
        (o.status.code(), v)
    };
    let rules = |s: &serde_json::Value, k: &str| -> Vec<String> {
        s[k].as_array()
            .unwrap()
            .iter()
            .map(|r| r["rule"].as_str().unwrap().to_string())
            .collect()
    };
    // Noise only: equal, shared chains too.
    let (code, v) = diff(&a, &b, &[]);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["shared"]["equal"], true);
    // One timeout changed: exactly that Service, exactly its sets' timeouts.
    for (y, extra, was) in [
        (&c, &[][..], "timeout 10800s"),
        (&a_changed, &["--raw"][..], "timeout 3h"),
    ] {
        let (code, v) = diff(&a, y, extra);
        assert_eq!(code, Some(1), "{extra:?}: {v:#}");
        let changed = changed_services(&v);
        assert_eq!(changed.len(), 1, "{extra:?}: {v:#}");
        assert_eq!(changed[0]["service"], AFFINITY_CHANGED);
        assert_eq!(rules(changed[0], "removed"), [was, was], "{extra:?}");
        assert_eq!(
            rules(changed[0], "added"),
            ["timeout 10s", "timeout 10s"],
            "{extra:?}"
        );
        assert_eq!(v["shared"]["equal"], true, "{extra:?}");
    }
    // One node's table against another's whole ruleset: equal, with the note.
    let with_others = format!("{}{OTHER_TABLES}", nft_dump_with(&spec(2), sticky));
    let r = listed("r.nft", &with_others, &ruleset);
    let o = kindred(&["diff", &a, &r]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(
        out.contains(
            "note: table ip6 kube-proxy listed only by PR (base lists one table): not compared"
        ),
        "{out}"
    );
    let (code, v) = diff(&r, &a, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(
        v["one_sided_tables"],
        serde_json::json!([{"table": "ip6 kube-proxy", "listed_by": "base"}])
    );
    // Two whole rulesets, one without kube-proxy's ip6 table: that table's chain is removed.
    let without = format!(
        "{}table inet filter {{\n}}\n",
        nft_dump_with(&spec(1), sticky)
    );
    let r2 = listed("r2.nft", &without, &ruleset);
    let (code, v) = diff(&r, &r2, &[]);
    assert_eq!(code, Some(1), "{v:#}");
    assert!(v.get("one_sided_tables").is_none(), "{v:#}");
    assert!(changed_services(&v).is_empty(), "{v:#}");
    assert_eq!(
        rules(&v["shared"], "removed"),
        ["type nat hook output priority -100"]
    );
}
