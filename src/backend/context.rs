//! A cluster kindred did not create, reached only through its API server: a kubeconfig context.
//! Its nodes, and each node's kube-proxy rules, read by exec into the node's kube-proxy pod
//! (`kube-system`, label `k8s-app=kube-proxy`) with the save tool kube-proxy itself uses. Only
//! reads: nothing is created, changed or deleted in such a cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::kube::{exec_in, within};
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
    let api: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let lp = ListParams::default()
        .labels(PROXY_LABEL)
        .fields(&format!("spec.nodeName={node}"));
    let list = within(&format!("listing kube-proxy pods on {node}"), api.list(&lp)).await?;
    let running = |p: &&Pod| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            && p.metadata.deletion_timestamp.is_none()
    };
    let pod = list
        .items
        .iter()
        .find(running)
        .or(list.items.first())
        .ok_or_else(|| {
            anyhow!(
                "no kube-proxy pod on node {} (kube-system, label {PROXY_LABEL}): the node may \
                 not exist, or kube-proxy does not run there (a CNI that replaces it?)",
                visible(node)
            )
        })?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let containers = pod.spec.as_ref().map(|s| &s.containers[..]).unwrap_or(&[]);
    let c = containers
        .iter()
        .find(|c| c.name == "kube-proxy")
        .or(containers.first())
        .ok_or_else(|| anyhow!("kube-system/{name} has no container"))?;
    Ok((name, c.name.clone()))
}

/// The lines of an iptables dump that name a KUBE- chain.
fn kube_rules(text: &str) -> usize {
    text.lines().filter(|l| l.contains("KUBE-")).count()
}

/// A node's kube-proxy rules, read in its kube-proxy pod: `nft list table ip kube-proxy` when
/// that table exists (nftables mode), else the iptables dump (`iptables-nft-save` or
/// `iptables-legacy-save`, whichever holds kube-proxy's chains).
pub async fn read_rules(client: &Client, node: &str) -> Result<String> {
    let (pod, container) = proxy_pod(client, node).await?;
    let run = |argv: &[&str]| {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let (client, pod, container) = (client.clone(), pod.clone(), container.clone());
        async move {
            exec_in(
                &client,
                "kube-system",
                &pod,
                Some(&container),
                &argv,
                READ_LIMIT,
            )
            .await
        }
    };
    let nft = run(&["nft", "list", "table", "ip", "kube-proxy"]).await?;
    if nft.code == 0 && !nft.stdout.trim().is_empty() {
        return Ok(nft.stdout);
    }
    let (a, b) = tokio::join!(run(&["iptables-nft-save"]), run(&["iptables-legacy-save"]));
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
    best.ok_or_else(|| {
        anyhow!(
            "kube-system/{pod} on {}: no save tool answered ({})",
            visible(node),
            visible(&why.join("; "))
        )
    })
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

/// One node's rules, read as `policy` allows, within `policy.limit`.
pub async fn read_node(client: &Client, policy: &ReadPolicy, node: &str) -> Result<NodeRules> {
    let read = async { read_rules(client, node).await.map(NodeRules::Rules) };
    match tokio::time::timeout(policy.limit, read).await {
        Ok(r) => r,
        Err(_) => bail!(
            "node {}: no answer within {}s",
            visible(node),
            policy.limit.as_secs()
        ),
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
