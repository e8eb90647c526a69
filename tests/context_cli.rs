//! `kindred diff ctx:CONTEXT/NODE …` and `kindred clusters --context`: any cluster, reached only
//! through its API server (the HTTPS stand-in with client certificates), its rules read by exec
//! into the node's kube-proxy pod. No Docker.

mod common;

use std::process::Output;

use common::apiserver::{ApiServer, Req};
use common::cluster::{Cluster, Dump, Node};
use serde_json::Value;

const MASTER: &str = common::cluster::IPTABLES_MASTER;
const PR: &str = common::cluster::IPTABLES_PR;
const NFT: &str = common::cluster::NFT_V134;

/// Three nodes with `dump`; the second worker has no kube-proxy.
fn cluster(dump: Dump) -> Cluster {
    Cluster::new(vec![
        Node::new("c-control-plane", "172.17.0.2", dump.clone()),
        Node::new("c-worker", "172.17.0.3", dump.clone()),
        Node::new("c-worker2", "172.17.0.4", dump).bare(),
    ])
}

async fn serve(c: Cluster) -> ApiServer {
    c.serve().await
}

/// Run kindred with KUBECONFIG naming one file per server, each with its context renamed to
/// `names[i]` (contexts as a user's kubeconfig has them, not kind's).
async fn kindred(servers: &[(&ApiServer, &str)], args: &[&str]) -> Output {
    common::time_limit();
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (i, (s, name)) in servers.iter().enumerate() {
        let kc = s.kubeconfig(&format!("x{i}")).replace(
            &format!("name: kind-x{i}\ncurrent"),
            &format!("name: {name}\ncurrent"),
        );
        let p = dir.path().join(format!("kc{i}"));
        std::fs::write(&p, kc).unwrap();
        paths.push(p.display().to_string());
    }
    let kubeconfig = paths.join(":");
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_kindred"))
            .args(&args)
            .env("KUBECONFIG", kubeconfig)
            .env("XDG_STATE_HOME", dir.path())
            .env("NO_COLOR", "1")
            .env("KINDRED_LOG", std::env::temp_dir().join("kindred-test.log"))
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn text(o: &Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        common::stdout(o),
        common::stderr(o),
    )
}

/// The same diff from two clusters' API servers as from the two dumps on disk: rules read by
/// exec into each node's kube-proxy pod, with the save tool that holds them.
#[tokio::test(flavor = "multi_thread")]
async fn a_diff_of_two_contexts_reads_each_nodes_rules_through_its_kube_proxy_pod() {
    let (a, b) = (
        serve(cluster(Dump::iptables(MASTER))).await,
        serve(cluster(Dump::iptables(PR))).await,
    );
    let got = kindred(
        &[(&a, "staging"), (&b, "prod/eu")],
        &["diff", "ctx:staging/c-worker", "ctx:prod/eu/c-worker"],
    )
    .await;
    let want = common::kindred(&["diff", MASTER, PR]);
    let (code, out, err) = text(&got);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(out, common::stdout(&want));
    assert!(out.contains("route LOCAL traffic"), "{out}");
    // Found by label and node, then the save tools run in that pod's kube-proxy container, as
    // separate words.
    let reqs = a.requests();
    let lists: Vec<&Req> = reqs.iter().filter(|r| r.path.ends_with("/pods")).collect();
    assert_eq!(lists[0].params("labelSelector"), ["k8s-app=kube-proxy"]);
    assert_eq!(lists[0].params("fieldSelector"), ["spec.nodeName=c-worker"]);
    let execs: Vec<Vec<String>> = reqs
        .iter()
        .filter(|r| r.path == "/api/v1/namespaces/kube-system/pods/kube-proxy-c-worker/exec")
        .map(|r| {
            assert_eq!(r.params("container"), ["kube-proxy"]);
            r.params("command")
        })
        .collect();
    assert_eq!(execs[0], ["nft", "list", "table", "ip", "kube-proxy"]);
    assert!(
        execs.iter().any(|c| c == &["iptables-nft-save"]),
        "{execs:?}"
    );
    assert!(reqs.iter().all(|r| r.method == "GET"), "only reads");
}

/// nftables mode: the kube-proxy table is read; no iptables save tool runs.
#[tokio::test(flavor = "multi_thread")]
async fn an_nftables_node_is_read_with_nft() {
    let a = serve(cluster(Dump::nft(NFT))).await;
    let got = kindred(&[(&a, "one")], &["diff", "ctx:one/c-worker", NFT]).await;
    let (code, out, err) = text(&got);
    assert_eq!(code, 0, "{out}{err}");
    let execs = a
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/exec"))
        .count();
    assert_eq!(execs, 1);
}

/// What goes wrong is named: a node without a kube-proxy pod, an unknown context.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_without_kube_proxy_and_an_unknown_context_are_named() {
    let a = serve(cluster(Dump::iptables(MASTER))).await;
    let got = kindred(&[(&a, "one")], &["diff", "ctx:one/c-worker2", MASTER]).await;
    let (code, _, err) = text(&got);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("ctx:one/c-worker2") && err.contains("no kube-proxy pod on node c-worker2"),
        "{err}"
    );
    let got = kindred(&[(&a, "one")], &["diff", "ctx:two/c-worker", MASTER]).await;
    let (code, _, err) = text(&got);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no context two in") && err.contains("contexts: one"),
        "{err}"
    );
    let got = kindred(&[(&a, "one")], &["diff", "ctx:one", MASTER]).await;
    let (code, _, err) = text(&got);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("expected ctx:CONTEXT/NODE"), "{err}");
}

/// `clusters --context`: the nodes, their addresses and kube-proxy pods, from the API server.
#[tokio::test(flavor = "multi_thread")]
async fn clusters_lists_a_contexts_nodes() {
    let a = serve(cluster(Dump::iptables(MASTER))).await;
    let got = kindred(&[(&a, "staging")], &["clusters", "--context", "staging"]).await;
    let (code, out, err) = text(&got);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("staging  (3 nodes, a kubeconfig context: kindred only reads it)"),
        "{out}"
    );
    assert!(
        out.contains("c-control-plane") && out.contains("control-plane"),
        "{out}"
    );
    assert!(
        out.contains("172.17.0.3") && out.contains("kube-proxy: kube-proxy-c-worker"),
        "{out}"
    );
    assert!(
        out.contains("c-worker2") && out.contains("no kube-proxy pod"),
        "{out}"
    );
    let got = kindred(
        &[(&a, "staging")],
        &["clusters", "--context", "staging", "--format", "json"],
    )
    .await;
    let v: Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(v["nodes"][1]["ip"], "172.17.0.3");
    assert_eq!(v["nodes"][1]["kube_proxy"], "kube-proxy-c-worker");
}
