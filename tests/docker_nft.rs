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
