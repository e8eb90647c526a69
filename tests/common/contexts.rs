//! Two clusters kindred did not create, each a [`Cluster`] stand-in on its own API server, named
//! by two contexts of one kubeconfig file; with what the live backend asks beyond nodes and
//! exec: the scenario's Service and its EndpointSlices (lists empty; a Service watch that
//! delivers one event when the test says), and namespace deletion (recorded).

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::apiserver::{ApiServer, Reply, Req, data};
use super::cluster::{Cluster, Dump, IPTABLES_MASTER, IPTABLES_PR, Node, list};

/// One side's cluster as served.
pub struct Served {
    pub server: ApiServer,
    pub cluster: Cluster,
    /// Lets the Service watch deliver its event (`notify_one`).
    pub service_event: Arc<tokio::sync::Notify>,
    /// Namespaces deleted through the API, in order.
    pub deleted_namespaces: Arc<Mutex<Vec<String>>>,
}

impl Served {
    /// Execs the server answered so far.
    pub fn execs(&self) -> usize {
        self.cluster.state().ran.len()
    }
}

/// `{prefix}-control-plane`, `{prefix}-worker` and `{prefix}-worker2` (without kube-proxy),
/// kube-proxy's rules from `dump`.
pub fn three_nodes(prefix: &str, dump: &Dump) -> Cluster {
    Cluster::new(vec![
        Node::new(&format!("{prefix}-control-plane"), "10.1.0.2", dump.clone()),
        Node::new(&format!("{prefix}-worker"), "10.1.0.3", dump.clone()),
        Node::new(&format!("{prefix}-worker2"), "10.1.0.4", dump.clone()).bare(),
    ])
}

/// A namespace object as the API server returns it, with `labels`.
pub fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": name, "labels": labels}, "status": {"phase": "Active"}})
}

/// Serve `cluster` with the answers it does not know in front: the Service and EndpointSlice
/// lists (empty) and watches (the Service's delivers `echo` when told), namespace deletion.
pub async fn serve(cluster: Cluster) -> Served {
    serve_with(cluster, |_| None).await
}

/// [`serve`] with `mine` answering first (what it returns `None` for goes on as there).
pub async fn serve_with(
    cluster: Cluster,
    mine: impl Fn(&Req) -> Option<Reply> + Send + Sync + 'static,
) -> Served {
    let service_event = Arc::new(tokio::sync::Notify::new());
    let deleted_namespaces = Arc::new(Mutex::new(Vec::new()));
    let (c, n, d) = (
        cluster.clone(),
        service_event.clone(),
        deleted_namespaces.clone(),
    );
    let server = ApiServer::start(move |r| {
        mine(r)
            .or_else(|| front(r, &c, &n, &d))
            .unwrap_or_else(|| c.answer(r))
    })
    .await;
    Served {
        server,
        cluster,
        service_event,
        deleted_namespaces,
    }
}

fn front(
    r: &Req,
    c: &Cluster,
    event: &Arc<tokio::sync::Notify>,
    deleted: &Arc<Mutex<Vec<String>>>,
) -> Option<Reply> {
    let parts: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
    let watch = r.query.contains("watch=true");
    match (r.method.as_str(), &parts[..]) {
        ("GET", ["api", "v1", "namespaces", ns, "services"]) if watch => Some(Reply::Watch {
            after: event.clone(),
            event: json!({"type": "ADDED", "object": {
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "echo", "namespace": ns, "resourceVersion": "7"},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
                "status": {"loadBalancer": {}}}}),
        }),
        ("GET", ["api", "v1", "namespaces", _, "services"]) => {
            Some(Reply::Json(200, list("Service", vec![])))
        }
        (
            "GET",
            [
                "apis",
                "discovery.k8s.io",
                "v1",
                "namespaces",
                _,
                "endpointslices",
            ],
        ) => Some(if watch {
            Reply::Hang
        } else {
            Reply::Json(200, list("EndpointSlice", vec![]))
        }),
        // Applying the test workloads (server-side apply): what the API server was sent.
        ("PATCH", ["api", "v1", "namespaces", _, _, _]) => Some(Reply::Json(200, r.body.clone())),
        ("GET", ["api", "v1"]) => Some(Reply::Json(200, core_resources())),
        ("DELETE", ["api", "v1", "namespaces", ns]) => {
            let gone = c.state().namespaces.remove(*ns)?;
            deleted.lock().unwrap().push(ns.to_string());
            Some(Reply::Json(200, gone))
        }
        _ => None,
    }
}

/// The workloads the tests deploy into a context: a pod and the Service, no namespace named.
pub const WORKLOADS: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: netshoot-{{cluster}}\n  labels: {kindred.io/test: \"true\"}\nspec:\n  containers: [{name: netshoot, image: nicolaka/netshoot:v0.13}]\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: echo\nspec:\n  type: LoadBalancer\n  ports: [{port: 80}]\n";

/// Discovery of the core group: pods and services are namespaced.
fn core_resources() -> Value {
    super::apiserver::discovery(WORKLOADS)
        .into_iter()
        .next()
        .map(|(_, v)| v)
        .unwrap()
}

/// A kubeconfig with a context per server: `ctx-{name}`.
pub fn kubeconfig(servers: &[(&str, &ApiServer)]) -> String {
    let mut clusters = String::new();
    let mut contexts = String::new();
    let mut users = String::new();
    for (name, s) in servers {
        let ca = data(&s.pki.ca);
        let (cert, key) = (data(&s.pki.client_cert), data(&s.pki.client_key));
        clusters.push_str(&format!(
            "- cluster:\n    certificate-authority-data: {ca}\n    server: https://{}\n  name: c-{name}\n",
            s.addr
        ));
        contexts.push_str(&format!(
            "- context:\n    cluster: c-{name}\n    user: u-{name}\n  name: ctx-{name}\n"
        ));
        users.push_str(&format!(
            "- name: u-{name}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n"
        ));
    }
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n{clusters}contexts:\n{contexts}users:\n{users}"
    )
}

/// Two context sides, `staging` (base, the 2019 master dump) and `prod` (PR, the PR 77523
/// dump), each a [`three_nodes`] cluster; `base_extra`/`pr_extra`: more YAML for each side.
pub struct TwoContexts {
    pub staging: Served,
    pub prod: Served,
    pub dir: tempfile::TempDir,
    pub scenario: std::path::PathBuf,
}

pub async fn two_contexts(base_extra: &str, pr_extra: &str) -> TwoContexts {
    let staging = three_nodes("staging", &Dump::iptables(IPTABLES_MASTER));
    let prod = three_nodes("prod", &Dump::iptables(IPTABLES_PR));
    two_contexts_of(staging, prod, base_extra, pr_extra).await
}

/// `{prefix}-control-plane` and `workers` workers `{prefix}-worker`, `{prefix}-worker2`, …,
/// every node with kube-proxy's rules from `dump`.
pub fn many_nodes(prefix: &str, workers: usize, dump: &Dump) -> Cluster {
    let mut nodes = vec![Node::new(
        &format!("{prefix}-control-plane"),
        "10.1.0.2",
        dump.clone(),
    )];
    for i in 1..=workers {
        let name = match i {
            1 => format!("{prefix}-worker"),
            i => format!("{prefix}-worker{i}"),
        };
        nodes.push(Node::new(&name, &format!("10.1.0.{}", i + 2), dump.clone()));
    }
    Cluster::new(nodes)
}

/// [`two_contexts`] with these clusters as `staging` and `prod`.
pub async fn two_contexts_of(
    staging: Cluster,
    prod: Cluster,
    base_extra: &str,
    pr_extra: &str,
) -> TwoContexts {
    let staging = serve(staging).await;
    let prod = serve(prod).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(&[("staging", &staging.server), ("prod", &prod.server)]);
    std::fs::write(dir.path().join("kc.yaml"), kc).unwrap();
    let scenario = dir.path().join("kindred.yaml");
    std::fs::write(&scenario, scenario_text(base_extra, pr_extra)).unwrap();
    std::fs::write(dir.path().join("w.yaml"), WORKLOADS).unwrap();
    TwoContexts {
        staging,
        prod,
        dir,
        scenario,
    }
}

/// The scenario of [`two_contexts`].
pub fn scenario_text(base_extra: &str, pr_extra: &str) -> String {
    format!(
        "service: default/echo\nbase:\n  name: staging\n  context: ctx-staging\n  kubeconfig: kc.yaml\n{base_extra}\
         pr:\n  name: prod\n  context: ctx-prod\n  kubeconfig: kc.yaml\n{pr_extra}\
         cluster:\n  proxy_mode: iptables\nworkloads: w.yaml\nread_timeout: 10\n"
    )
}
