//! A cluster kindred did not create, reached only through its API server: a kubeconfig context.
//! Its nodes, and each node's kube-proxy rules, read by exec into the node's kube-proxy pod
//! (`kube-system`, label `k8s-app=kube-proxy`) with the save tool kube-proxy itself uses, or,
//! where the scenario allows it, in a short-lived debug pod on the node (kindred's namespace,
//! host network, NET_ADMIN+NET_RAW, deleted after the read and by [`cleanup`] on exit). Nothing
//! else is created, changed or deleted in such a cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::kube::{ExecNotStarted, exec_in, within};
use crate::rules::render::visible;

/// How long one save tool may take in a kube-proxy pod (a large cluster's dump is tens of MB).
const READ_LIMIT: Duration = Duration::from_secs(60);
/// kube-proxy's pods, as kubeadm's DaemonSet labels them.
pub const PROXY_LABEL: &str = "k8s-app=kube-proxy";

/// A cluster named by a kubeconfig context: `CONTEXT` in KUBECONFIG (or ~/.kube/config), or in
/// the file given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextRef {
    pub context: String,
    pub kubeconfig: Option<PathBuf>,
}

/// A client for a context, checked to exist in the kubeconfig read.
pub async fn client(c: &ContextRef) -> Result<Client> {
    let (kc, from) = match &c.kubeconfig {
        Some(p) => (
            Kubeconfig::read_from(p).with_context(|| format!("kubeconfig {}", p.display()))?,
            p.display().to_string(),
        ),
        None => (
            Kubeconfig::read().context("reading the kubeconfig (KUBECONFIG or ~/.kube/config)")?,
            "the kubeconfig (KUBECONFIG or ~/.kube/config)".to_string(),
        ),
    };
    if !kc.contexts.iter().any(|x| x.name == c.context) {
        let known: Vec<String> = kc
            .contexts
            .iter()
            .map(|x| visible(&x.name).into())
            .collect();
        bail!(
            "no context {} in {from} (contexts: {})",
            visible(&c.context),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    }
    let opts = KubeConfigOptions {
        context: Some(c.context.clone()),
        ..Default::default()
    };
    let config = Config::from_custom_kubeconfig(kc, &opts)
        .await
        .with_context(|| format!("kubeconfig context {}", visible(&c.context)))?;
    Client::try_from(config).with_context(|| format!("client for context {}", c.context))
}

/// One node as `kindred clusters --context` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeRow {
    pub name: String,
    /// `control-plane` when the node carries the control-plane role label, else `worker`.
    pub role: String,
    pub ip: Option<String>,
    /// The kube-proxy pod on it, if any.
    pub kube_proxy: Option<String>,
}

/// The cluster's nodes with their InternalIP and kube-proxy pod.
pub async fn nodes(client: &Client) -> Result<Vec<NodeRow>> {
    let api: Api<Node> = Api::all(client.clone());
    let list = within("listing nodes", api.list(&ListParams::default())).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let proxies = within(
        "listing kube-proxy pods in kube-system",
        pods.list(&ListParams::default().labels(PROXY_LABEL)),
    )
    .await?;
    let proxy_on = |node: &str| {
        proxies.items.iter().find_map(|p| {
            let on = p.spec.as_ref()?.node_name.as_deref()? == node;
            on.then(|| p.metadata.name.clone()).flatten()
        })
    };
    Ok(list
        .items
        .iter()
        .map(|n| {
            let name = n.metadata.name.clone().unwrap_or_default();
            let labels = n.metadata.labels.as_ref();
            let cp =
                labels.is_some_and(|l| l.contains_key("node-role.kubernetes.io/control-plane"));
            let ip = n
                .status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .and_then(|a| {
                    a.iter()
                        .find(|x| x.type_ == "InternalIP")
                        .map(|x| x.address.clone())
                });
            NodeRow {
                kube_proxy: proxy_on(&name),
                role: if cp { "control-plane" } else { "worker" }.into(),
                name,
                ip,
            }
        })
        .collect())
}

/// The kube-proxy pod on `node` and its container (the one named `kube-proxy`, else the first).
pub async fn proxy_pod(client: &Client, node: &str) -> Result<(String, String)> {
    find_proxy_pod(client, node).await?.ok_or_else(|| {
        anyhow!(
            "no kube-proxy pod on node {} (kube-system, label {PROXY_LABEL}): the node may \
             not exist, or kube-proxy does not run there (a CNI that replaces it?)",
            visible(node)
        )
    })
}

/// The kube-proxy pod on `node` (a running one first) and its container, if there is one.
async fn find_proxy_pod(client: &Client, node: &str) -> Result<Option<(String, String)>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let lp = ListParams::default()
        .labels(PROXY_LABEL)
        .fields(&format!("spec.nodeName={node}"));
    let what = format!("listing kube-proxy pods on {}", visible(node));
    let list = within(&what, api.list(&lp)).await?;
    let running = |p: &&Pod| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            && p.metadata.deletion_timestamp.is_none()
    };
    let Some(pod) = list.items.iter().find(running).or(list.items.first()) else {
        return Ok(None);
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    let containers = pod.spec.as_ref().map(|s| &s.containers[..]).unwrap_or(&[]);
    let c = containers
        .iter()
        .find(|c| c.name == "kube-proxy")
        .or(containers.first())
        .ok_or_else(|| anyhow!("kube-system/{} has no container", visible(&name)))?;
    Ok(Some((name, c.name.clone())))
}

/// A node's kube-proxy metrics text, by exec in its kube-proxy pod (kube-proxy serves them on
/// 127.0.0.1:10249 in the host network): curl, else wget. kube-proxy's own image (distroless)
/// has neither: that is said plainly, as is what did not answer.
pub async fn read_metrics(client: &Client, node: &str, limit: Duration) -> Result<String> {
    let (pod, container) = proxy_pod(client, node).await?;
    let url = super::metrics::METRICS_URL;
    let secs = limit.as_secs().saturating_sub(1).max(1).to_string();
    let clients: [&[&str]; 2] = [
        &["curl", "-sS", "--max-time", &secs, url],
        &["wget", "-q", "-O-", "-T", &secs, url],
    ];
    let (node, pod) = (visible(node), visible(&pod));
    for argv in clients {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let o = exec_in(client, "kube-system", &pod, Some(&container), &argv, limit)
            .await
            .with_context(|| format!("node {node}: reading kube-proxy's metrics"))?;
        match o.code {
            0 => return Ok(o.stdout),
            // It did not start (no such program), or the shell found none.
            -1 | 126 | 127 => continue,
            code => bail!(
                "node {node}: kube-proxy's metrics at {url} did not answer ({} in \
                 kube-system/{pod} exited {code}): {}",
                argv[0],
                visible(o.stderr.trim())
            ),
        }
    }
    Err(NoHttpClient {
        node: node.into_owned(),
        pod: pod.into_owned(),
    }
    .into())
}

/// A kube-proxy pod whose image runs neither curl nor wget (kube-proxy's own image is
/// distroless): its node's metrics cannot be read by exec.
#[derive(Debug, thiserror::Error)]
#[error(
    "node {node}: kube-system/{pod} has no HTTP client (neither curl nor wget runs in \
     kube-proxy's image, which is distroless): its metrics on 127.0.0.1:10249 cannot be read by exec"
)]
pub struct NoHttpClient {
    pub node: String,
    pub pod: String,
}

/// The lines of an iptables dump that name a KUBE- chain.
fn kube_rules(text: &str) -> usize {
    text.lines().filter(|l| l.contains("KUBE-")).count()
}

/// A node's kube-proxy rules, read in its kube-proxy pod (as [`read_node`] with the default
/// policy: exec only); a node without them is an error saying why.
pub async fn read_rules(client: &Client, node: &str) -> Result<String> {
    match read_node(client, &ReadPolicy::default(), node).await? {
        NodeRules::Rules(text) => Ok(text),
        NodeRules::None { why } => Err(anyhow!(why)),
    }
}

/// Where a pod to read a node's rules in is, and what the read is doing now (named when the
/// node does not answer).
struct Target<'a> {
    client: &'a Client,
    node: &'a str,
    ns: &'a str,
    pod: &'a str,
    container: &'a str,
    limit: Duration,
    doing: &'a Doing,
}

/// What a node's read is waiting for, for the message when it does not answer in time.
#[derive(Default)]
struct Doing(std::sync::Mutex<String>);

impl Doing {
    fn set(&self, what: String) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = what;
    }
    fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Run one save tool in the target pod.
async fn run_tool(t: &Target<'_>, argv: &[&str]) -> Result<super::docker::ExecOutput> {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    exec_in(t.client, t.ns, t.pod, Some(t.container), &argv, t.limit).await
}

/// kube-proxy's rules as the save tools in the target pod print them: `nft list table ip
/// kube-proxy` when that table exists (nftables mode), else the iptables dump
/// (`iptables-nft-save` or `iptables-legacy-save`, whichever holds kube-proxy's chains); neither:
/// the node has no kube-proxy rules.
async fn save_tools(t: &Target<'_>) -> Result<NodeRules> {
    let (ns, pod) = (t.ns, visible(t.pod));
    t.doing.set(format!(
        "the exec of `nft list table ip kube-proxy` in {ns}/{pod}"
    ));
    let nft = run_tool(t, &["nft", "list", "table", "ip", "kube-proxy"]).await?;
    if nft.code == 0 && !nft.stdout.trim().is_empty() {
        return Ok(NodeRules::Rules(nft.stdout));
    }
    t.doing.set(format!(
        "the exec of `iptables-nft-save` and `iptables-legacy-save` in {ns}/{pod}"
    ));
    let (a, b) = tokio::join!(
        run_tool(t, &["iptables-nft-save"]),
        run_tool(t, &["iptables-legacy-save"])
    );
    let mut best: Option<String> = None;
    let mut why = Vec::new();
    for (tool, r) in [("iptables-nft-save", a), ("iptables-legacy-save", b)] {
        match r {
            Ok(o) if o.code == 0 => {
                if best
                    .as_ref()
                    .is_none_or(|t| kube_rules(&o.stdout) > kube_rules(t))
                {
                    best = Some(o.stdout);
                }
            }
            Ok(o) => why.push(format!("{tool}: exit {}: {}", o.code, o.stderr.trim())),
            Err(e) => why.push(format!("{tool}: {e:#}")),
        }
    }
    match best {
        Some(text) if kube_rules(&text) > 0 => Ok(NodeRules::Rules(text)),
        Some(_) => Ok(NodeRules::None {
            why: format!(
                "no kube-proxy rules on {}: no table ip kube-proxy, no KUBE- chains",
                visible(t.node)
            ),
        }),
        None => bail!(
            "{ns}/{pod} on {}: no save tool answered ({})",
            visible(t.node),
            visible(&why.join("; "))
        ),
    }
}

pub use crate::model::ReadVia;

/// How a context side's nodes are read: which way, where debug pods live, with what image,
/// how long one node may take and how many are read at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPolicy {
    pub via: ReadVia,
    /// kindred's namespace in that cluster (debug pods, workloads).
    pub namespace: String,
    /// The debug pod's image (it needs `nft` and the iptables save tools).
    pub debug_image: String,
    /// One node's read, all tries included.
    pub limit: Duration,
    /// Nodes read at once.
    pub bound: usize,
}

impl Default for ReadPolicy {
    fn default() -> ReadPolicy {
        ReadPolicy {
            via: ReadVia::Exec,
            namespace: "kindred".into(),
            debug_image: DEBUG_IMAGE.into(),
            limit: READ_LIMIT,
            bound: 16,
        }
    }
}

/// The debug pod's image unless the scenario names another: it has `nft` and both iptables
/// save tools.
pub const DEBUG_IMAGE: &str = "nicolaka/netshoot:v0.13";

/// What one node's read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRules {
    /// kube-proxy's rules, as the save tool printed them.
    Rules(String),
    /// The node has no kube-proxy rules at all (a CNI that replaces kube-proxy, or kube-proxy
    /// not running there): said plainly, never compared as every rule removed.
    None { why: String },
}

/// Which way a node's rules were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadPath {
    /// By exec into its kube-proxy pod (kube-system/POD), or not at all (no kube-proxy pod,
    /// `pod` empty).
    ProxyPod { pod: String },
    /// In a debug pod (NAMESPACE/POD, deleted since); `because` says why not the kube-proxy pod
    /// (`None`: the policy is `debug`).
    DebugPod {
        pod: String,
        because: Option<String>,
    },
}

impl std::fmt::Display for ReadPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadPath::ProxyPod { pod } if pod.is_empty() => write!(f, "no kube-proxy pod"),
            ReadPath::ProxyPod { pod } => write!(f, "exec in kube-system/{}", visible(pod)),
            ReadPath::DebugPod { pod, because: None } => write!(f, "debug pod {}", visible(pod)),
            ReadPath::DebugPod {
                pod,
                because: Some(b),
            } => write!(f, "debug pod {} ({})", visible(pod), visible(b)),
        }
    }
}

/// One node's rules, read as `policy` allows, within `policy.limit`.
pub async fn read_node(client: &Client, policy: &ReadPolicy, node: &str) -> Result<NodeRules> {
    read_node_path(client, policy, node).await.map(|(r, _)| r)
}

/// [`read_node`], and which way it read them.
pub async fn read_node_path(
    client: &Client,
    policy: &ReadPolicy,
    node: &str,
) -> Result<(NodeRules, ReadPath)> {
    let doing = Doing::default();
    doing.set(format!(
        "the API server listing kube-proxy pods on {}",
        visible(node)
    ));
    let read = read_as(client, policy, node, &doing);
    match tokio::time::timeout(policy.limit, read).await {
        Ok(r) => r,
        Err(_) => bail!(
            "node {} did not answer within {}s: waiting for {}",
            visible(node),
            policy.limit.as_secs_f64(),
            doing.get()
        ),
    }
}

async fn read_as(
    client: &Client,
    policy: &ReadPolicy,
    node: &str,
    doing: &Doing,
) -> Result<(NodeRules, ReadPath)> {
    if policy.via == ReadVia::Debug {
        return debug_read(client, policy, node, doing, None).await;
    }
    let why = match via_proxy_pod(client, policy, node, doing).await? {
        Proxied::Read(r, pod) => return Ok((r, ReadPath::ProxyPod { pod })),
        Proxied::NoPod if policy.via == ReadVia::Exec => {
            let why = format!(
                "no kube-proxy pod on node {} (a CNI that replaces kube-proxy?)",
                visible(node)
            );
            let pod = String::new();
            return Ok((NodeRules::None { why }, ReadPath::ProxyPod { pod }));
        }
        Proxied::Forbidden { pod, message } if policy.via == ReadVia::Exec => bail!(
            "node {}: the API server refused exec into kube-system/{} (403 Forbidden: RBAC \
             does not allow pods/exec in kube-system: {}); `read: exec-or-debug` in the \
             scenario would read it through a debug pod in namespace {}",
            visible(node),
            visible(&pod),
            visible(&message),
            visible(&policy.namespace)
        ),
        Proxied::NoPod => "no kube-proxy pod".to_string(),
        Proxied::Forbidden { pod, .. } => {
            format!(
                "exec into kube-system/{} refused: 403 Forbidden",
                visible(&pod)
            )
        }
    };
    debug_read(client, policy, node, doing, Some(why)).await
}

/// What exec into a node's kube-proxy pod gave.
enum Proxied {
    Read(NodeRules, String),
    NoPod,
    Forbidden { pod: String, message: String },
}

async fn via_proxy_pod(
    client: &Client,
    policy: &ReadPolicy,
    node: &str,
    doing: &Doing,
) -> Result<Proxied> {
    let Some((pod, container)) = find_proxy_pod(client, node).await? else {
        return Ok(Proxied::NoPod);
    };
    let t = Target {
        client,
        node,
        ns: "kube-system",
        pod: &pod,
        container: &container,
        limit: policy.limit,
        doing,
    };
    match save_tools(&t).await {
        Ok(r) => Ok(Proxied::Read(r, pod)),
        Err(e) => match e.downcast_ref::<ExecNotStarted>() {
            Some(x) if x.status == Some(403) => Ok(Proxied::Forbidden {
                message: x.message.clone(),
                pod,
            }),
            _ => Err(e.context(format!("node {}", visible(node)))),
        },
    }
}

/// Every node's rules, at most `policy.bound` at a time, each as soon as it is read: a node that
/// does not answer holds only its own slot, until `policy.limit`.
pub fn read_all<'a>(
    client: &'a Client,
    policy: &'a ReadPolicy,
    nodes: Vec<String>,
) -> impl futures::Stream<Item = (String, Result<NodeRules>)> + 'a {
    use futures::StreamExt;
    futures::stream::iter(nodes)
        .map(move |node| async move {
            let r = read_node(client, policy, &node).await;
            (node, r)
        })
        .buffer_unordered(policy.bound.max(1))
}

/// Labels of every debug pod kindred makes.
pub const DEBUG_LABELS: &str = "app.kubernetes.io/managed-by=kindred,kindred.io/debug=true";
/// How long deleting a debug pod may take.
const DELETE_LIMIT: Duration = Duration::from_secs(10);
/// How often a debug pod's phase is read while it starts.
const POLL: Duration = Duration::from_millis(200);

/// Read `node`'s rules in a debug pod of its own: created in `policy.namespace` (made if
/// absent), waited for, its save tools run, deleted whatever happens.
async fn debug_read(
    client: &Client,
    policy: &ReadPolicy,
    node: &str,
    doing: &Doing,
    because: Option<String>,
) -> Result<(NodeRules, ReadPath)> {
    let ns = &policy.namespace;
    doing.set(format!(
        "the API server to get or create namespace {}",
        visible(ns)
    ));
    ensure_namespace(client, ns).await?;
    let pod = DebugPod::new(client, ns, node);
    let read = async {
        doing.set(format!(
            "the API server to create debug pod {ns}/{} on node {}",
            pod.name,
            visible(node)
        ));
        pod.create(policy, node).await?;
        doing.set(format!(
            "debug pod {ns}/{} on node {} to start (image {})",
            pod.name,
            visible(node),
            visible(&policy.debug_image)
        ));
        pod.running(node).await?;
        let t = Target {
            client,
            node,
            ns,
            pod: &pod.name,
            container: "debug",
            limit: policy.limit,
            doing,
        };
        save_tools(&t).await
    };
    let r = read.await;
    let name = format!("{ns}/{}", pod.name);
    pod.delete().await;
    let r = r.with_context(|| {
        let why = because
            .as_deref()
            .map(|b| format!(" ({b})"))
            .unwrap_or_default();
        format!(
            "node {}: reading through debug pod {name}{why}",
            visible(node)
        )
    })?;
    Ok((r, ReadPath::DebugPod { pod: name, because }))
}

/// kindred's namespace in the cluster, created (labelled as kindred's) when absent.
async fn ensure_namespace(client: &Client, ns: &str) -> Result<()> {
    use k8s_openapi::api::core::v1::Namespace;
    let api: Api<Namespace> = Api::all(client.clone());
    let what = format!("namespace {}", visible(ns));
    if within(&what, api.get_opt(ns)).await?.is_some() {
        return Ok(());
    }
    let obj: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": ns, "labels": {"app.kubernetes.io/managed-by": "kindred"}}
    }))?;
    let what = format!("creating namespace {}", visible(ns));
    match within(&what, api.create(&PostParams::default(), &obj)).await {
        Ok(_) => Ok(()),
        Err(e) if status_of(&e) == Some(409) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The API server's status code of a failed call, if it answered one.
fn status_of(e: &anyhow::Error) -> Option<u16> {
    e.chain()
        .find_map(|c| match c.downcast_ref::<kube::Error>() {
            Some(kube::Error::Api(s)) => Some(s.code),
            _ => None,
        })
}

/// A debug pod on one node, deleted when dropped unless [`DebugPod::delete`] already did (a
/// read that timed out or was cancelled leaves nothing behind).
struct DebugPod {
    api: Api<Pod>,
    name: String,
    deleted: bool,
}

impl DebugPod {
    fn new(client: &Client, ns: &str, node: &str) -> DebugPod {
        DebugPod {
            api: Api::namespaced(client.clone(), ns),
            name: debug_pod_name(node),
            deleted: false,
        }
    }

    async fn create(&self, policy: &ReadPolicy, node: &str) -> Result<()> {
        let pod = debug_pod(&self.name, node, &policy.debug_image)?;
        let what = format!("creating debug pod {}/{}", policy.namespace, self.name);
        within(&what, self.api.create(&PostParams::default(), &pod)).await?;
        Ok(())
    }

    /// Wait until it runs; a pod that cannot (its image not pulled, it failed) is an error
    /// saying why.
    async fn running(&self, node: &str) -> Result<()> {
        let what = format!("debug pod {} on node {}", self.name, visible(node));
        loop {
            let p = within(&what, self.api.get(&self.name)).await?;
            let st = p.status.unwrap_or_default();
            match st.phase.as_deref() {
                Some("Running") => return Ok(()),
                Some(ph @ ("Failed" | "Succeeded")) => bail!("{what}: {ph}"),
                _ => {}
            }
            let waiting = st.container_statuses.iter().flatten().find_map(|c| {
                let w = c.state.as_ref()?.waiting.as_ref()?;
                let reason = w.reason.as_deref()?;
                let stuck = [
                    "ErrImagePull",
                    "ImagePullBackOff",
                    "InvalidImageName",
                    "ErrImageNeverPull",
                    "CreateContainerConfigError",
                    "CreateContainerError",
                ];
                stuck
                    .contains(&reason)
                    .then(|| format!("{reason}: {}", w.message.as_deref().unwrap_or("")))
            });
            if let Some(w) = waiting {
                bail!("{what} cannot start: {}", visible(&w));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Delete it now (and not again when dropped); a failure is logged, and `cleanup` on exit
    /// tries again.
    async fn delete(mut self) {
        self.deleted = true;
        let dp = DeleteParams::default().grace_period(0);
        match tokio::time::timeout(DELETE_LIMIT, self.api.delete(&self.name, &dp)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("deleting debug pod {}: {e}", self.name),
            Err(_) => tracing::warn!(
                "deleting debug pod {}: no answer within {}s",
                self.name,
                DELETE_LIMIT.as_secs()
            ),
        }
    }
}

impl Drop for DebugPod {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("debug pod {} left: no runtime to delete it on", self.name);
            return;
        };
        let (api, name) = (self.api.clone(), self.name.clone());
        rt.spawn(async move {
            let dp = DeleteParams::default().grace_period(0);
            match tokio::time::timeout(DELETE_LIMIT, api.delete(&name, &dp)).await {
                Ok(Ok(_)) => tracing::info!("deleted debug pod {name} of a read cut short"),
                Ok(Err(e)) => tracing::warn!("deleting debug pod {name}: {e}"),
                Err(_) => tracing::warn!("deleting debug pod {name}: no answer"),
            }
        });
    }
}

/// A debug pod's name: `kindred-debug-NODE-XXXXX` (NODE cut to fit, XXXXX unique to this
/// process and read).
fn debug_pod_name(node: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut part: String = node
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    while part.ends_with('-') {
        part.pop();
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let seed = u64::from(std::process::id()) << 32 ^ u64::from(nanos);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let h = (seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % 0x10_0000;
    format!("kindred-debug-{part}-{h:05x}")
}

/// The debug pod: on `node`, in the host's network namespace with the capabilities the save
/// tools need, tolerating every taint (control-plane nodes too), sleeping until deleted.
fn debug_pod(name: &str, node: &str, image: &str) -> Result<Pod> {
    let v = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/managed-by": "kindred", "kindred.io/debug": "true"}
        },
        "spec": {
            "nodeName": node,
            "hostNetwork": true,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": false,
            "tolerations": [{"operator": "Exists"}],
            "containers": [{
                "name": "debug",
                "image": image,
                "command": ["sleep", "3600"],
                "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}}
            }]
        }
    });
    Ok(serde_json::from_value(v)?)
}

/// Delete every debug pod kindred left in `namespace` (on exit); how many it deleted.
pub async fn cleanup(client: &Client, namespace: &str) -> Result<usize> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let what = format!("listing kindred's debug pods in {}", visible(namespace));
    let left = within(&what, api.list(&ListParams::default().labels(DEBUG_LABELS))).await?;
    let dp = DeleteParams::default().grace_period(0);
    let mut n = 0;
    for p in left.items {
        let name = p.metadata.name.unwrap_or_default();
        let what = format!(
            "deleting debug pod {}/{}",
            visible(namespace),
            visible(&name)
        );
        match within(&what, api.delete(&name, &dp)).await {
            Ok(_) => n += 1,
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// kindred's namespace removed when it carries kindred's label and holds nothing but debug
/// pods (it was made for them: on quit, for a side that deploys nothing); whether it was.
pub async fn remove_debug_namespace(client: &Client, ns: &str) -> Result<bool> {
    use k8s_openapi::api::core::v1::Namespace;
    let api: Api<Namespace> = Api::all(client.clone());
    let what = format!("namespace {}", visible(ns));
    let Some(n) = within(&what, api.get_opt(ns)).await? else {
        return Ok(false);
    };
    let ours = n
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("app.kubernetes.io/managed-by"))
        .is_some_and(|v| v == "kindred");
    if !ours {
        return Ok(false);
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let all = within(
        &format!("listing pods in {what}"),
        pods.list(&ListParams::default()),
    )
    .await?;
    let debug = |p: &Pod| {
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kindred.io/debug"))
            .is_some_and(|v| v == "true")
    };
    if !all.items.iter().all(debug) {
        return Ok(false);
    }
    let what = format!("deleting {what}");
    match within(&what, api.delete(ns, &DeleteParams::default())).await {
        Ok(_) => Ok(true),
        Err(e) if status_of(&e) == Some(404) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `CONTEXT/NODE` of a `ctx:` operand: the node is after the last `/` (context names may hold
/// `/`, node names never do).
pub fn parse_operand(s: &str) -> Result<(String, String)> {
    match s.rsplit_once('/') {
        Some((c, n)) if !c.is_empty() && !n.is_empty() => Ok((c.to_string(), n.to_string())),
        _ => bail!(
            "ctx:{}: expected ctx:CONTEXT/NODE, e.g. ctx:kind-base/base-worker",
            visible(s)
        ),
    }
}

/// Read one node's rules of a context, on a runtime of its own (the CLI's synchronous path).
pub fn read_node_rules_blocking(kubeconfig: Option<&Path>, operand: &str) -> Result<String> {
    let (context, node) = parse_operand(operand)?;
    let c = ContextRef {
        context,
        kubeconfig: kubeconfig.map(Path::to_path_buf),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = client(&c).await?;
        read_rules(&client, &node).await
    })
    .with_context(|| format!("ctx:{}", visible(operand)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operands_split_at_the_last_slash() {
        assert_eq!(
            parse_operand("arn:aws:eks:eu-west-1:1:cluster/prod/ip-10-0-0-1").unwrap(),
            (
                "arn:aws:eks:eu-west-1:1:cluster/prod".to_string(),
                "ip-10-0-0-1".to_string()
            )
        );
        for bad in ["kind-a", "kind-a/", "/node"] {
            assert!(parse_operand(bad).is_err(), "{bad}");
        }
    }
}
