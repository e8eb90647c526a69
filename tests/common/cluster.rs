//! A cluster of many nodes as its API server shows it to kindred reading a kubeconfig context:
//! nodes with roles and InternalIPs, a kube-proxy pod on each node that has one, kube-proxy's
//! rules (iptables or nftables, from the fixtures) behind exec, kindred's debug pods, and the
//! faults real clusters have: a node whose exec never answers, an exec RBAC refuses (403), a node
//! without kube-proxy.
//!
//! A plain struct: [`Cluster::answer`] answers one request (404 for what it does not know),
//! [`Cluster::try_answer`] only what it knows, so a test can put its own answers in front:
//! `ApiServer::start(move |r| mine(r).unwrap_or_else(|| c.answer(r)))`. [`Cluster::serve`]
//! serves it as is. Clones share what the cluster holds and counts ([`Cluster::state`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::apiserver::{ApiServer, Reply, Req};

/// Real dumps, as kube-proxy leaves them on a node.
pub const IPTABLES_MASTER: &str = "tests/fixtures/trace/kernel/iptables-2019-master.txt";
pub const IPTABLES_PR: &str = "tests/fixtures/trace/kernel/iptables-2019-pr77523.txt";
pub const IPTABLES_OVERALL: &str = "tests/fixtures/trace/kernel/iptables-overall.txt";
pub const NFT_V133: &str = "tests/fixtures/trace/kernel/nftables-overall-v1.33.txt";
pub const NFT_V134: &str = "tests/fixtures/trace/kernel/nftables-overall-v1.34.txt";

/// kube-proxy's rules on a node and the mode it runs in.
#[derive(Clone, Debug)]
pub struct Dump {
    pub text: Arc<str>,
    pub nft: bool,
}

impl Dump {
    /// An iptables-mode node's `iptables-nft-save`, read from `path` (relative to the crate).
    pub fn iptables(path: &str) -> Dump {
        Dump {
            text: read(path),
            nft: false,
        }
    }
    /// An nftables-mode node's `nft list table ip kube-proxy`, read from `path`.
    pub fn nft(path: &str) -> Dump {
        Dump {
            text: read(path),
            nft: true,
        }
    }
}

fn read(path: &str) -> Arc<str> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .into()
}

/// What goes wrong on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// Every exec for the node is accepted and never answered (a node that does not answer).
    Hangs,
    /// Exec into its kube-proxy pod is refused: 403, RBAC does not allow `pods/exec` in
    /// kube-system (exec into kindred's own debug pods is allowed).
    Forbidden,
}

/// One node.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub control_plane: bool,
    pub ip: String,
    /// kube-proxy's rules on it; `None`: no rules at all (a CNI that replaces kube-proxy).
    pub rules: Option<Dump>,
    /// A kube-proxy pod runs on it (kube-system, `k8s-app=kube-proxy`).
    pub proxy_pod: bool,
    pub fault: Fault,
}

impl Node {
    /// A node with a kube-proxy pod whose rules are `dump`.
    pub fn new(name: &str, ip: &str, dump: Dump) -> Node {
        Node {
            name: name.into(),
            control_plane: name.ends_with("control-plane"),
            ip: ip.into(),
            rules: Some(dump),
            proxy_pod: true,
            fault: Fault::None,
        }
    }
    /// No kube-proxy: no pod and no rules.
    pub fn bare(mut self) -> Node {
        self.rules = None;
        self.proxy_pod = false;
        self
    }
    /// kube-proxy's rules are there but it does not run in a pod (a systemd unit).
    pub fn outside(mut self) -> Node {
        self.proxy_pod = false;
        self
    }
    pub fn fault(mut self, f: Fault) -> Node {
        self.fault = f;
        self
    }
    pub fn proxy_pod_name(&self) -> String {
        format!("kube-proxy-{}", self.name)
    }
}

/// What the cluster holds and counts while it serves; clones of a [`Cluster`] share it.
#[derive(Default, Debug)]
pub struct State {
    /// Namespaces created through the API (kube-system and default always exist).
    pub namespaces: BTreeMap<String, Value>,
    /// Pods created through the API, by (namespace, name), as created (status added).
    pub pods: BTreeMap<(String, String), Value>,
    /// Every pod ever created, in order (the log survives deletion).
    pub created: Vec<Value>,
    /// Pods deleted, (namespace, name), in order.
    pub deleted: Vec<(String, String)>,
    /// Execs in flight now, and the most at once.
    pub execs: usize,
    pub peak_execs: usize,
    /// Execs per node in flight now, and the most nodes with an exec in flight at once.
    pub busy: HashMap<String, usize>,
    pub peak_nodes: usize,
    /// Exec commands answered, as (namespace/pod, argv).
    pub ran: Vec<(String, Vec<String>)>,
}

/// The cluster: its nodes, how long an exec takes, and the shared state.
#[derive(Clone, Default)]
pub struct Cluster {
    pub nodes: Vec<Node>,
    /// How long each exec takes before it answers (so concurrent reads overlap).
    pub exec_time: Duration,
    /// Images no node can pull: a pod with one stays Pending, waiting in `ErrImagePull`.
    pub missing_images: Vec<String>,
    pub state: Arc<Mutex<State>>,
}

/// Marks one exec in flight; dropped once its answer has been played.
struct InFlight {
    state: Arc<Mutex<State>>,
    node: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.state.lock().unwrap();
        s.execs -= 1;
        let n = s.busy.get_mut(&self.node).unwrap();
        *n -= 1;
        if *n == 0 {
            s.busy.remove(&self.node);
        }
    }
}

pub fn success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
}

/// An exec's final status for exit code `code`.
pub fn exit(code: u32) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("command terminated with non-zero exit code: exit code {code}"),
           "reason": "NonZeroExitCode",
           "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
}

pub fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
           "items": items})
}

pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "code": code, "reason": reason, "message": message})
}

/// Whether `labels` has every `k=v` of a label selector (`k` alone: the key is there).
pub fn selects(selector: &str, labels: &Value) -> bool {
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|s| match s.split_once('=') {
            Some((k, v)) => labels[k].as_str() == Some(v),
            None => labels.get(s).is_some(),
        })
}

impl Cluster {
    /// A cluster of `nodes`, each exec answering at once.
    pub fn new(nodes: Vec<Node>) -> Cluster {
        Cluster {
            nodes,
            ..Default::default()
        }
    }

    /// `n` workers `{prefix}-worker-{i}` (10.0.x.y), the `i`th with `dumps[i % len]`.
    pub fn workers(prefix: &str, n: usize, dumps: &[Dump]) -> Cluster {
        let nodes = (0..n)
            .map(|i| {
                let ip = format!("10.0.{}.{}", i / 250, i % 250 + 2);
                Node::new(
                    &format!("{prefix}-worker-{i}"),
                    &ip,
                    dumps[i % dumps.len()].clone(),
                )
            })
            .collect();
        Cluster::new(nodes)
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// What the cluster holds and counts now.
    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Serve it on a stand-in API server.
    pub async fn serve(self) -> ApiServer {
        ApiServer::start(move |r| self.answer(r)).await
    }

    /// Answer a request: [`Cluster::try_answer`], else 404.
    pub fn answer(&self, r: &Req) -> Reply {
        self.try_answer(r).unwrap_or_else(|| {
            Reply::Json(
                404,
                status(404, "NotFound", &format!("{} not found", r.path)),
            )
        })
    }

    /// Answer what this cluster knows: nodes, kube-system's kube-proxy pods, namespaces and
    /// pods created through the API, exec into either; watches hang (nothing changes).
    pub fn try_answer(&self, r: &Req) -> Option<Reply> {
        if r.query.contains("watch=true") {
            return Some(Reply::Hang);
        }
        let parts: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
        match (r.method.as_str(), &parts[..]) {
            ("GET", ["api", "v1", "nodes"]) => Some(Reply::Json(200, self.node_list())),
            ("GET", ["version"]) => Some(Reply::Json(
                200,
                serde_json::json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0",
                                   "platform": "linux/amd64"}),
            )),
            ("GET", ["api", "v1", "namespaces", ns]) => Some(self.get_namespace(ns)),
            ("POST", ["api", "v1", "namespaces"]) => Some(self.create_namespace(&r.body)),
            ("GET", ["api", "v1", "namespaces", "kube-system", "pods"]) => {
                Some(Reply::Json(200, list("Pod", self.proxy_pods(r))))
            }
            ("GET", ["api", "v1", "namespaces", ns, "pods"]) => Some(self.pod_list(ns, r)),
            ("POST", ["api", "v1", "namespaces", ns, "pods"]) => Some(self.create_pod(ns, &r.body)),
            ("GET", ["api", "v1", "namespaces", ns, "pods", name]) => Some(self.get_pod(ns, name)),
            ("DELETE", ["api", "v1", "namespaces", ns, "pods", name]) => {
                Some(self.delete_pod(ns, name))
            }
            (_, ["api", "v1", "namespaces", ns, "pods", pod, "exec"]) => {
                Some(self.exec(ns, pod, r.params("command")))
            }
            _ => None,
        }
    }

    fn node_list(&self) -> Value {
        let items = self
            .nodes
            .iter()
            .map(|n| {
                let (labels, taints) = if n.control_plane {
                    (
                        json!({"kubernetes.io/hostname": n.name,
                               "node-role.kubernetes.io/control-plane": ""}),
                        json!([{"key": "node-role.kubernetes.io/control-plane",
                                "effect": "NoSchedule"}]),
                    )
                } else {
                    (json!({"kubernetes.io/hostname": n.name}), json!([]))
                };
                json!({"metadata": {"name": n.name, "labels": labels},
                       "spec": {"taints": taints},
                       "status": {"addresses": [{"type": "InternalIP", "address": n.ip},
                                                {"type": "Hostname", "address": n.name}]}})
            })
            .collect();
        list("Node", items)
    }

    fn proxy_pod(n: &Node) -> Value {
        json!({"metadata": {"name": n.proxy_pod_name(), "namespace": "kube-system",
                            "labels": {"k8s-app": "kube-proxy"}},
               "spec": {"nodeName": n.name, "containers": [{"name": "kube-proxy",
                        "image": "registry.k8s.io/kube-proxy:v1.34.0"}]},
               "status": {"phase": "Running"}})
    }

    /// kube-system's kube-proxy pods, by label and `spec.nodeName` field selector.
    fn proxy_pods(&self, r: &Req) -> Vec<Value> {
        let on = r
            .params("fieldSelector")
            .first()
            .and_then(|f| f.strip_prefix("spec.nodeName=").map(String::from));
        let labels = r.params("labelSelector");
        let sel = labels.first().map(String::as_str).unwrap_or("");
        self.nodes
            .iter()
            .filter(|n| n.proxy_pod && on.as_deref().is_none_or(|o| o == n.name))
            .map(Cluster::proxy_pod)
            .filter(|p| selects(sel, &p["metadata"]["labels"]))
            .collect()
    }

    fn namespace_exists(&self, ns: &str) -> bool {
        ["kube-system", "default"].contains(&ns) || self.state().namespaces.contains_key(ns)
    }

    fn get_namespace(&self, ns: &str) -> Reply {
        if let Some(v) = self.state().namespaces.get(ns) {
            return Reply::Json(200, v.clone());
        }
        if self.namespace_exists(ns) {
            return Reply::Json(
                200,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            );
        }
        Reply::Json(
            404,
            status(404, "NotFound", &format!("namespaces \"{ns}\" not found")),
        )
    }

    fn create_namespace(&self, body: &Value) -> Reply {
        let name = body["metadata"]["name"].as_str().unwrap_or("").to_string();
        if self.namespace_exists(&name) {
            let msg = format!("namespaces \"{name}\" already exists");
            return Reply::Json(409, status(409, "AlreadyExists", &msg));
        }
        let mut v = body.clone();
        v["status"] = json!({"phase": "Active"});
        self.state().namespaces.insert(name, v.clone());
        Reply::Json(201, v)
    }

    fn pod_list(&self, ns: &str, r: &Req) -> Reply {
        let labels = r.params("labelSelector");
        let sel = labels.first().map(String::as_str).unwrap_or("");
        let items = self
            .state()
            .pods
            .iter()
            .filter(|((n, _), p)| n == ns && selects(sel, &p["metadata"]["labels"]))
            .map(|(_, p)| p.clone())
            .collect();
        Reply::Json(200, list("Pod", items))
    }

    /// Create a pod: in a namespace that exists, once; it runs at once (Running from the
    /// first read on) unless its image is missing.
    fn create_pod(&self, ns: &str, body: &Value) -> Reply {
        if !self.namespace_exists(ns) {
            let msg = format!("namespaces \"{ns}\" not found");
            return Reply::Json(404, status(404, "NotFound", &msg));
        }
        let name = body["metadata"]["name"].as_str().unwrap_or("").to_string();
        let key = (ns.to_string(), name.clone());
        let mut s = self.state();
        if s.pods.contains_key(&key) {
            let msg = format!("pods \"{name}\" already exists");
            return Reply::Json(409, status(409, "AlreadyExists", &msg));
        }
        let mut v = body.clone();
        v["metadata"]["namespace"] = json!(ns);
        s.created.push(v.clone());
        v["status"] = json!({"phase": "Pending"});
        let created = v.clone();
        let image = v["spec"]["containers"][0]["image"].as_str().unwrap_or("");
        v["status"] = if self.missing_images.iter().any(|m| m == image) {
            json!({"phase": "Pending", "containerStatuses": [{
                "name": v["spec"]["containers"][0]["name"], "image": image, "imageID": "",
                "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ErrImagePull",
                    "message": format!("failed to pull and unpack image \"{image}\": not found")}}}]})
        } else {
            json!({"phase": "Running"})
        };
        s.pods.insert(key, v);
        Reply::Json(201, created)
    }

    fn get_pod(&self, ns: &str, name: &str) -> Reply {
        if ns == "kube-system"
            && let Some(n) = self.nodes.iter().find(|n| n.proxy_pod_name() == name)
            && n.proxy_pod
        {
            return Reply::Json(200, Cluster::proxy_pod(n));
        }
        match self.state().pods.get(&(ns.to_string(), name.to_string())) {
            Some(p) => Reply::Json(200, p.clone()),
            None => Reply::Json(
                404,
                status(404, "NotFound", &format!("pods \"{name}\" not found")),
            ),
        }
    }

    fn delete_pod(&self, ns: &str, name: &str) -> Reply {
        let key = (ns.to_string(), name.to_string());
        let mut s = self.state();
        match s.pods.remove(&key) {
            Some(p) => {
                s.deleted.push(key);
                Reply::Json(200, p)
            }
            None => Reply::Json(
                404,
                status(404, "NotFound", &format!("pods \"{name}\" not found")),
            ),
        }
    }

    /// The node a pod runs on, and whether it is its kube-proxy pod.
    fn pod_node(&self, ns: &str, pod: &str) -> Option<(&Node, bool)> {
        if ns == "kube-system" {
            let n = self.nodes.iter().find(|n| n.proxy_pod_name() == pod)?;
            return n.proxy_pod.then_some((n, true));
        }
        let s = self.state();
        let p = s.pods.get(&(ns.to_string(), pod.to_string()))?;
        let on = p["spec"]["nodeName"].as_str()?.to_string();
        drop(s);
        self.node(&on).map(|n| (n, false))
    }

    /// Exec in a pod: the save tools print the node's rules; faults as the node has them.
    fn exec(&self, ns: &str, pod: &str, argv: Vec<String>) -> Reply {
        let Some((node, proxy)) = self.pod_node(ns, pod) else {
            let msg = format!("pods \"{pod}\" not found");
            return Reply::Json(404, status(404, "NotFound", &msg));
        };
        match node.fault {
            Fault::Hangs => return Reply::Hang,
            Fault::Forbidden if proxy => {
                let msg = format!(
                    "pods \"{pod}\" is forbidden: User \"kubernetes-admin\" cannot create \
                     resource \"pods/exec\" in API group \"\" in the namespace \"{ns}\""
                );
                return Reply::Json(403, status(403, "Forbidden", &msg));
            }
            _ => {}
        }
        let reply = save_tool(node.rules.as_ref(), &argv);
        let guard = {
            let mut s = self.state();
            s.ran.push((format!("{ns}/{pod}"), argv));
            s.execs += 1;
            s.peak_execs = s.peak_execs.max(s.execs);
            *s.busy.entry(node.name.clone()).or_default() += 1;
            s.peak_nodes = s.peak_nodes.max(s.busy.len());
            InFlight {
                state: self.state.clone(),
                node: node.name.clone(),
            }
        };
        Reply::Later {
            wait: self.exec_time,
            reply: Box::new(reply),
            done: Some(Box::new(guard)),
        }
    }
}

/// What `argv` prints on a node whose kube-proxy rules are `rules`.
fn save_tool(rules: Option<&Dump>, argv: &[String]) -> Reply {
    let out = |stdout: &str, stderr: &str, status| Reply::Exec {
        stdout: stdout.into(),
        stderr: stderr.into(),
        status,
    };
    let nft = rules.is_some_and(|d| d.nft);
    let text = rules.map(|d| &*d.text).unwrap_or("");
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    match &argv[..] {
        ["nft", "list", "table", "ip", "kube-proxy"] if nft => out(text, "", success()),
        ["nft", ..] => out(
            "",
            "Error: No such file or directory\nlist table ip kube-proxy\n                  ^^^^^^^^^^\n",
            exit(1),
        ),
        ["iptables-nft-save"] if rules.is_some() && !nft => out(text, "", success()),
        ["iptables-nft-save" | "iptables-legacy-save" | "iptables-save"] => out(
            "# Generated by iptables-nft-save v1.8.11 (nf_tables)\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
            "",
            success(),
        ),
        [cmd, ..] => out(
            "",
            &format!("exec: \"{cmd}\": executable file not found in $PATH"),
            exit(127),
        ),
        [] => out("", "no command", exit(1)),
    }
}
