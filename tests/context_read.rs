//! Reading the nodes of a cluster kindred did not create, through its API server only (the
//! many-node stand-in, no Docker): concurrently with a bound, each node within a time limit, by
//! exec into its kube-proxy pod or in a debug pod, a node without kube-proxy said plainly.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::apiserver::{ApiServer, Req};
use common::cluster::{
    Cluster, Dump, Fault, IPTABLES_MASTER, IPTABLES_PR, NFT_V133, NFT_V134, Node,
};
use futures::StreamExt;
use kindred::backend::context::{
    self, ContextRef, NodeRules, ReadPath, ReadPolicy, ReadVia, cleanup, read_all, read_node,
    read_node_path,
};
use serde_json::{Value, json};

/// A client of the stand-in, through a kubeconfig context as a user has one.
async fn connect(s: &ApiServer) -> (kube::Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, s.kubeconfig("x")).unwrap();
    let c = ContextRef {
        context: "kind-x".into(),
        kubeconfig: Some(path),
    };
    (context::client(&c).await.unwrap(), dir)
}

fn policy(via: ReadVia, limit: Duration, bound: usize) -> ReadPolicy {
    ReadPolicy {
        via,
        limit,
        bound,
        debug_image: "example.com/netdebug:1.0".into(),
        ..ReadPolicy::default()
    }
}

fn rules(r: &anyhow::Result<NodeRules>) -> &str {
    match r {
        Ok(NodeRules::Rules(t)) => t,
        other => panic!("{other:?}"),
    }
}

/// Four nodes in both modes, read at once: each node's own dump, by exec into its own
/// kube-proxy pod with the tool of its mode.
#[tokio::test(flavor = "multi_thread")]
async fn several_nodes_are_read_each_with_its_own_rules() {
    let c = Cluster::new(vec![
        Node::new("p-control-plane", "10.0.0.2", Dump::nft(NFT_V134)),
        Node::new("p-worker", "10.0.0.3", Dump::iptables(IPTABLES_MASTER)),
        Node::new("p-worker2", "10.0.0.4", Dump::iptables(IPTABLES_PR)),
        Node::new("p-worker3", "10.0.0.5", Dump::nft(NFT_V133)),
    ]);
    let s = c.clone().serve().await;
    let (client, _dir) = connect(&s).await;
    let p = policy(ReadVia::Exec, Duration::from_secs(10), 16);
    let names: Vec<String> = c.nodes.iter().map(|n| n.name.clone()).collect();
    let got: BTreeMap<String, anyhow::Result<NodeRules>> =
        read_all(&client, &p, names).collect().await;
    assert_eq!(got.len(), 4);
    for n in &c.nodes {
        assert_eq!(
            rules(&got[&n.name]),
            &*n.rules.as_ref().unwrap().text,
            "{}",
            n.name
        );
    }
    let ran = c.state().ran.clone();
    let on = |pod: &str| -> Vec<Vec<String>> {
        let pod = format!("kube-system/kube-proxy-{pod}");
        ran.iter()
            .filter(|(p, _)| *p == pod)
            .map(|(_, a)| a.clone())
            .collect()
    };
    assert_eq!(
        on("p-worker3"),
        [["nft", "list", "table", "ip", "kube-proxy"]]
    );
    let w = on("p-worker");
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(w.contains(&vec!["iptables-nft-save".to_string()]), "{w:?}");
    assert!(s.requests().iter().all(|r| r.method == "GET"), "only reads");
}

/// A node whose exec never answers is said to within the limit, naming the node, its pod and
/// what did not answer; the others arrive long before.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_does_not_answer_is_named_at_the_limit_and_holds_no_other() {
    let mut c = Cluster::workers("h", 5, &[Dump::nft(NFT_V134)]);
    c.nodes[1].fault = Fault::Hangs;
    let s = c.clone().serve().await;
    let (client, _dir) = connect(&s).await;
    let limit = Duration::from_secs(3);
    let p = policy(ReadVia::Exec, limit, 16);
    let names: Vec<String> = c.nodes.iter().map(|n| n.name.clone()).collect();
    let t0 = Instant::now();
    let got: Vec<(String, anyhow::Result<NodeRules>, Duration)> = read_all(&client, &p, names)
        .map(|(n, r)| (n, r, t0.elapsed()))
        .collect()
        .await;
    assert_eq!(got.len(), 5);
    for (n, r, at) in &got[..4] {
        assert_ne!(n, "h-worker-1");
        assert_eq!(rules(r), &*c.nodes[0].rules.as_ref().unwrap().text);
        assert!(
            *at < limit / 2,
            "{n} arrived at {at:?}, behind the node that hangs"
        );
    }
    let (n, r, at) = &got[4];
    assert_eq!(n, "h-worker-1");
    let e = format!("{:#}", r.as_ref().unwrap_err());
    assert!(
        e.contains("node h-worker-1 did not answer within 3s: waiting for the exec of")
            && e.contains("`nft list table ip kube-proxy` in kube-system/kube-proxy-h-worker-1"),
        "{e}"
    );
    assert!(
        *at >= limit && *at < limit + Duration::from_secs(2),
        "{at:?}"
    );
}

/// With a bound of 2, never more than 2 nodes are read at once (and 2 are).
#[tokio::test(flavor = "multi_thread")]
async fn reads_run_at_most_bound_at_a_time() {
    let mut c = Cluster::workers(
        "b",
        6,
        &[Dump::nft(NFT_V134), Dump::iptables(IPTABLES_MASTER)],
    );
    c.exec_time = Duration::from_millis(300);
    let s = c.clone().serve().await;
    let (client, _dir) = connect(&s).await;
    let p = policy(ReadVia::Exec, Duration::from_secs(20), 2);
    let names: Vec<String> = c.nodes.iter().map(|n| n.name.clone()).collect();
    let got: Vec<_> = read_all(&client, &p, names).collect().await;
    assert!(got.iter().all(|(_, r)| r.is_ok()), "{got:?}");
    let st = c.state();
    assert_eq!(st.peak_nodes, 2, "nodes read at once");
    // iptables nodes run their two save tools together: at most 2 execs per node.
    assert!(st.peak_execs <= 4, "{}", st.peak_execs);
    assert_eq!(st.execs, 0);
}

/// A node without kube-proxy (no pod, no rules) is `None` with the reason, not an error and not
/// an empty dump; through a debug pod, the host shows no kube-proxy rules either.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_without_kube_proxy_has_no_rules_said_plainly() {
    let c = Cluster::new(vec![
        Node::new("n-worker", "10.0.0.3", Dump::iptables(IPTABLES_MASTER)).bare(),
        Node::new("n-worker2", "10.0.0.4", Dump::iptables(IPTABLES_MASTER)),
    ]);
    let s = c.clone().serve().await;
    let (client, _dir) = connect(&s).await;
    let limit = Duration::from_secs(10);
    let r = read_node(&client, &policy(ReadVia::Exec, limit, 4), "n-worker").await;
    assert_eq!(
        r.unwrap(),
        NodeRules::None {
            why: "no kube-proxy pod on node n-worker (a CNI that replaces kube-proxy?)".into()
        }
    );
    assert!(c.state().created.is_empty(), "exec only: no debug pod");
    let r = read_node(&client, &policy(ReadVia::ExecOrDebug, limit, 4), "n-worker").await;
    assert_eq!(
        r.unwrap(),
        NodeRules::None {
            why: "no kube-proxy rules on n-worker: no table ip kube-proxy, no KUBE- chains".into()
        }
    );
    assert_eq!(c.state().created.len(), 1);
    assert!(c.state().pods.is_empty(), "the debug pod is deleted");
}

/// The pod kindred asked for, as the stand-in saw it created.
fn assert_debug_pod(p: &Value, node: &str) {
    let spec = &p["spec"];
    assert_eq!(spec["nodeName"], node, "{p}");
    assert_eq!(spec["hostNetwork"], true, "{p}");
    assert_eq!(spec["tolerations"], json!([{"operator": "Exists"}]), "{p}");
    let c = &spec["containers"][0];
    assert_eq!(c["image"], "example.com/netdebug:1.0", "{p}");
    assert_eq!(
        c["securityContext"]["capabilities"]["add"],
        json!(["NET_ADMIN", "NET_RAW"]),
        "{p}"
    );
    let labels = &p["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "kindred", "{p}");
    assert_eq!(labels["kindred.io/debug"], "true", "{p}");
    assert_eq!(p["metadata"]["namespace"], "kindred", "{p}");
}

/// Exec into kube-system refused (403): under `exec` an error naming the node, the pod, RBAC and
/// the way out; under `exec-or-debug` the rules read in a debug pod on that node (kindred's
/// namespace made first), the pod deleted after.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_exec_names_rbac_or_reads_through_a_debug_pod() {
    let dump = Dump::iptables(IPTABLES_PR);
    let c = Cluster::new(vec![
        Node::new("r-worker", "10.0.0.3", dump.clone()).fault(Fault::Forbidden),
    ]);
    let s = c.clone().serve().await;
    let (client, _dir) = connect(&s).await;
    let limit = Duration::from_secs(10);
    let e = read_node(&client, &policy(ReadVia::Exec, limit, 4), "r-worker")
        .await
        .unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains(
            "node r-worker: the API server refused exec into kube-system/kube-proxy-r-worker"
        ) && e.contains("403 Forbidden: RBAC does not allow pods/exec in kube-system")
            && e.contains(
                "`read: exec-or-debug` in the scenario would read it through a debug pod"
            )
            && e.contains("cannot create resource \"pods/exec\"")
            && !e.contains("Status {"),
        "{e}"
    );
    assert!(c.state().created.is_empty() && c.state().namespaces.is_empty());

    let before = s.requests().len();
    let p = policy(ReadVia::ExecOrDebug, limit, 4);
    let (r, path) = read_node_path(&client, &p, "r-worker").await.unwrap();
    assert_eq!(r, NodeRules::Rules(dump.text.to_string()));
    let ReadPath::DebugPod { pod, because } = &path else {
        panic!("{path:?}")
    };
    assert_eq!(
        because.as_deref(),
        Some("exec into kube-system/kube-proxy-r-worker refused: 403 Forbidden")
    );
    let st = c.state();
    assert_eq!(
        st.namespaces["kindred"]["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "kindred"
    );
    assert_eq!(st.created.len(), 1);
    let created = &st.created[0];
    assert_debug_pod(created, "r-worker");
    let name = created["metadata"]["name"].as_str().unwrap().to_string();
    assert_eq!(*pod, format!("kindred/{name}"));
    assert!(name.starts_with("kindred-debug-r-worker-"), "{name}");
    assert!(st.pods.is_empty() && st.deleted == [("kindred".into(), name.clone())]);
    // In order: namespace made, pod created, the save tools run in it, then it is deleted.
    let reqs: Vec<Req> = s.requests()[before..].to_vec();
    let pod_path = format!("/api/v1/namespaces/kindred/pods/{name}");
    let at = |m: &str, p: &str| {
        reqs.iter()
            .position(|r| r.method == m && r.path == p)
            .unwrap_or_else(|| panic!("no {m} {p}"))
    };
    let exec = reqs
        .iter()
        .rposition(|r| r.path == format!("{pod_path}/exec"))
        .unwrap();
    assert_eq!(reqs[exec].params("container"), ["debug"]);
    assert!(at("POST", "/api/v1/namespaces") < at("POST", "/api/v1/namespaces/kindred/pods"));
    assert!(at("POST", "/api/v1/namespaces/kindred/pods") < exec);
    assert!(exec < at("DELETE", &pod_path));
}

/// `debug` reads in a debug pod even where a kube-proxy pod runs (a control-plane node: its
/// taint tolerated), and where kube-proxy runs outside a pod.
#[tokio::test(flavor = "multi_thread")]
async fn debug_reads_in_a_debug_pod_on_any_node() {
    let c = Cluster::new(vec![
        Node::new("d-control-plane", "10.0.0.2", Dump::nft(NFT_V134)),
        Node::new("d-worker", "10.0.0.3", Dump::iptables(IPTABLES_MASTER)).outside(),
    ]);
    let s = c.clone().serve().await;
    let (client, _dir) = connect(&s).await;
    let p = policy(ReadVia::Debug, Duration::from_secs(10), 4);
    let names = vec!["d-control-plane".to_string(), "d-worker".to_string()];
    let got: BTreeMap<_, _> = read_all(&client, &p, names).collect().await;
    for n in &c.nodes {
        assert_eq!(
            rules(&got[&n.name]),
            &*n.rules.as_ref().unwrap().text,
            "{}",
            n.name
        );
    }
    let st = c.state().created.clone();
    assert_eq!(st.len(), 2);
    for p in &st {
        let node = p["spec"]["nodeName"].as_str().unwrap();
        assert_debug_pod(p, node);
    }
    assert!(c.state().pods.is_empty(), "deleted");
    let ran = c.state().ran.clone();
    assert!(
        ran.iter().all(|(p, _)| p.starts_with("kindred/")),
        "{ran:?}"
    );
    // ExecOrDebug on the node whose kube-proxy runs outside a pod: the debug pod too.
    let p = policy(ReadVia::ExecOrDebug, Duration::from_secs(10), 4);
    let (r, path) = read_node_path(&client, &p, "d-worker").await.unwrap();
    assert_eq!(
        r,
        NodeRules::Rules(c.nodes[1].rules.as_ref().unwrap().text.to_string())
    );
    assert!(
        matches!(&path, ReadPath::DebugPod { because: Some(b), .. } if b == "no kube-proxy pod"),
        "{path:?}"
    );
}

/// A debug read that does not finish in time names the node, the pod and what did not answer,
/// and its pod is deleted all the same.
#[tokio::test(flavor = "multi_thread")]
async fn a_debug_read_cut_short_deletes_its_pod() {
    let c = Cluster::new(vec![
        Node::new("t-worker", "10.0.0.3", Dump::nft(NFT_V134)).fault(Fault::Hangs),
    ]);
    let s = c.clone().serve().await;
    let (client, _dir) = connect(&s).await;
    let p = policy(ReadVia::Debug, Duration::from_secs(2), 4);
    let e = format!(
        "{:#}",
        read_node(&client, &p, "t-worker").await.unwrap_err()
    );
    let name = c.state().created[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        e.contains("node t-worker did not answer within 2s: waiting for the exec of")
            && e.contains(&format!("`nft list table ip kube-proxy` in kindred/{name}")),
        "{e}"
    );
    let t0 = Instant::now();
    while !c.state().pods.is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "debug pod {name} left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c.state().deleted, [("kindred".to_string(), name)]);
    drop(s);
}

/// `cleanup` deletes every debug pod kindred left in its namespace, and nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn cleanup_deletes_the_debug_pods_left() {
    let c = Cluster::new(vec![Node::new("l-worker", "10.0.0.3", Dump::nft(NFT_V134))]);
    {
        let mut st = c.state();
        st.namespaces
            .insert("kindred".into(), json!({"metadata": {"name": "kindred"}}));
        for (name, debug) in [
            ("kindred-debug-a", true),
            ("kindred-debug-b", true),
            ("echo", false),
        ] {
            let labels = if debug {
                json!({"app.kubernetes.io/managed-by": "kindred", "kindred.io/debug": "true"})
            } else {
                json!({"app.kubernetes.io/managed-by": "kindred"})
            };
            let p = json!({"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": name, "namespace": "kindred", "labels": labels},
                           "spec": {"nodeName": "l-worker", "containers": [{"name": "debug"}]},
                           "status": {"phase": "Running"}});
            st.pods.insert(("kindred".into(), name.into()), p);
        }
    }
    let s = c.clone().serve().await;
    let (client, _dir) = connect(&s).await;
    assert_eq!(cleanup(&client, "kindred").await.unwrap(), 2);
    let left: Vec<String> = c.state().pods.keys().map(|(_, n)| n.clone()).collect();
    assert_eq!(left, ["echo"]);
    assert_eq!(cleanup(&client, "kindred").await.unwrap(), 0);
}

/// A debug pod whose image cannot be pulled is an error at once (not at the limit) naming the
/// node, the pod, the image and why; the pod is deleted.
#[tokio::test(flavor = "multi_thread")]
async fn a_debug_pod_that_cannot_start_is_named_at_once() {
    let mut c = Cluster::new(vec![Node::new("i-worker", "10.0.0.3", Dump::nft(NFT_V134))]);
    c.missing_images = vec!["example.com/netdebug:1.0".into()];
    let s = c.clone().serve().await;
    let (client, _dir) = connect(&s).await;
    let limit = Duration::from_secs(10);
    let t0 = Instant::now();
    let e = read_node(&client, &policy(ReadVia::Debug, limit, 4), "i-worker")
        .await
        .unwrap_err();
    assert!(t0.elapsed() < limit / 2, "{:?}", t0.elapsed());
    let e = format!("{e:#}");
    let name = c.state().created[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        e.contains(&format!(
            "node i-worker: reading through debug pod kindred/{name}"
        )) && e.contains("cannot start: ErrImagePull")
            && e.contains("example.com/netdebug:1.0"),
        "{e}"
    );
    assert!(c.state().pods.is_empty(), "deleted");
}

/// A context node's kube-proxy metrics are read by exec in its kube-proxy pod; its image (as
/// kube-proxy's own, distroless) runs neither curl nor wget: said plainly, naming the node and
/// the pod, never a silent blank.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_without_an_http_client_in_kube_proxys_image_are_said_plainly() {
    let c = Cluster::new(vec![Node::new(
        "m-worker",
        "10.0.0.3",
        Dump::iptables(IPTABLES_MASTER),
    )]);
    let pod = c.node("m-worker").unwrap().proxy_pod_name();
    let s = c.clone().serve().await;
    let (client, _kc) = connect(&s).await;
    let e = context::read_metrics(&client, "m-worker", Duration::from_secs(5))
        .await
        .unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("node m-worker") && e.contains(&pod), "{e}");
    assert!(
        e.contains("no HTTP client") && e.contains("neither curl nor wget"),
        "{e}"
    );
}
