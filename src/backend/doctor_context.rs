//! `kindred doctor --context NAME`, and the scenario doctor's checks of a side named by a
//! kubeconfig context: the API server answers within [`ANSWER_LIMIT`], the context's user may do
//! what kindred needs (asked with SelfSubjectAccessReviews; each refusal comes with the RBAC rule
//! that would grant it), and kube-proxy's mode and version on every node. Only reads: nothing is
//! created in the cluster but the reviews, which the API server does not store.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use kube::config::Kubeconfig;

use super::context::{self, ContextRef, PROXY_LABEL, ReadVia};
use super::doctor::{Check, CheckName, Status};
use crate::rules::render::visible;

/// How long the API server (and each question the doctor asks it) may take.
pub const ANSWER_LIMIT: Duration = Duration::from_secs(5);

/// Every check of one context: the API server, the permissions reading it `via` needs (debug
/// pods live in `namespace`), and kube-proxy on its nodes. When the API server does not answer,
/// only that is said (nothing else could be asked).
pub async fn context_checks(c: &ContextRef, namespace: &str, via: ReadVia) -> Vec<Check> {
    let who = visible(&c.context).into_owned();
    let client = match context::client(c).await {
        Ok(client) => client,
        Err(e) => {
            return vec![Check::fail(
                CheckName::Context,
                format!("{e:#}"),
                "name a context of the kubeconfig (`kubectl config get-contexts`), or point KUBECONFIG at the file that has it",
            )];
        }
    };
    let server = api_server(&client, &who, server_url(c).as_deref()).await;
    if server.status == Status::Fail {
        return vec![server];
    }
    let (perms, proxy) = tokio::join!(
        permissions(&client, &who, namespace, via),
        kube_proxy(&client, &who)
    );
    let mut out = vec![server];
    out.extend(perms);
    out.push(proxy);
    out
}

/// The server URL of context `c` as its kubeconfig writes it.
fn server_url(c: &ContextRef) -> Option<String> {
    let kc = match &c.kubeconfig {
        Some(p) => Kubeconfig::read_from(p).ok()?,
        None => Kubeconfig::read().ok()?,
    };
    let named = kc.contexts.iter().find(|x| x.name == c.context)?;
    let cluster = &named.context.as_ref()?.cluster;
    let found = kc.clusters.iter().find(|x| x.name == *cluster)?;
    found.cluster.as_ref()?.server.clone()
}

/// `what` within [`ANSWER_LIMIT`]: a timeout says so.
async fn answer<T>(
    what: &str,
    f: impl std::future::Future<Output = kube::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(ANSWER_LIMIT, f).await {
        Ok(r) => r.map_err(|e| anyhow::anyhow!("{what}: {e}")),
        Err(_) => anyhow::bail!(
            "{what}: the API server did not answer within {}s",
            ANSWER_LIMIT.as_secs()
        ),
    }
}

/// GET /version within [`ANSWER_LIMIT`]: the server's Kubernetes version, or what went wrong,
/// naming the context and its server.
async fn api_server(client: &Client, who: &str, url: Option<&str>) -> Check {
    let at = visible(url.unwrap_or("(server not found in the kubeconfig)")).into_owned();
    let start = Instant::now();
    match tokio::time::timeout(ANSWER_LIMIT, client.apiserver_version()).await {
        Ok(Ok(v)) => Check::ok(
            CheckName::ApiServer,
            format!(
                "{who}: {at} answered in {} ms: Kubernetes {}",
                start.elapsed().as_millis(),
                visible(&v.git_version)
            ),
        ),
        Ok(Err(e)) => Check::fail(
            CheckName::ApiServer,
            format!("{who}: {at}: {}", visible(&e.to_string())),
            "check the context's server URL and credentials (`kubectl --context CONTEXT version`)",
        ),
        Err(_) => Check::fail(
            CheckName::ApiServer,
            format!(
                "{who}: the API server at {at} did not answer within {}s",
                ANSWER_LIMIT.as_secs()
            ),
            "check that the cluster is up and reachable from here (VPN, proxy, firewall) at the context's server URL",
        ),
    }
}

/// An RBAC verb kindred needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Create,
    Delete,
    Get,
    List,
    Watch,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Delete => "delete",
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
        }
    }
}

/// Where a permission applies: cluster-scoped objects, every namespace, or one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Cluster,
    AllNamespaces,
    Namespace(String),
}

/// Which way of reading rules a permission serves: every way, exec into kube-proxy's pod, or a
/// debug pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Always,
    Exec,
    Debug,
}

/// One permission kindred needs, and what it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub verb: Verb,
    /// The API group (`""` the core group).
    pub group: &'static str,
    /// The resource, with its subresource after a `/` (`pods/exec`).
    pub resource: &'static str,
    pub scope: Scope,
    pub path: Path,
    /// How bad its absence is on the [`Path::Always`] path (the others depend on `via`).
    pub missing: Status,
    /// What kindred does with it.
    pub used_for: Use,
}

impl Need {
    /// What it allows, as a sentence part: `create pods/exec in namespace kube-system`.
    pub fn describe(&self) -> String {
        let r = match self.group {
            "" => self.resource.to_string(),
            g => format!("{g} {}", self.resource),
        };
        match &self.scope {
            Scope::Cluster => format!("{} {r}", self.verb.as_str()),
            Scope::AllNamespaces => format!("{} {r} in all namespaces", self.verb.as_str()),
            Scope::Namespace(ns) => {
                format!("{} {r} in namespace {}", self.verb.as_str(), visible(ns))
            }
        }
    }

    /// The RBAC rule that grants it, and where it goes.
    pub fn rule(&self) -> String {
        let role = match &self.scope {
            Scope::Cluster | Scope::AllNamespaces => {
                "a ClusterRole (bound by a ClusterRoleBinding)".to_string()
            }
            Scope::Namespace(ns) => {
                format!(
                    "a Role in namespace {} (bound by a RoleBinding there)",
                    visible(ns)
                )
            }
        };
        format!(
            "grant it with this rule in {role}: - apiGroups: [\"{}\"]  resources: [\"{}\"]  verbs: [\"{}\"]",
            self.group,
            self.resource,
            self.verb.as_str()
        )
    }
}

/// What kindred does with a permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Nodes,
    ProxyPods,
    Services,
    Endpoints,
    Watch,
    Mode,
    Exec,
    DebugPod,
    DebugCleanup,
}

impl Use {
    pub fn as_str(self) -> &'static str {
        match self {
            Use::Nodes => "kindred lists the nodes it reads",
            Use::ProxyPods => "kindred finds each node's kube-proxy pod",
            Use::Services => "kindred names the Services of the rules",
            Use::Endpoints => "kindred shows each Service's endpoints",
            Use::Watch => "watch mode re-reads the rules when this changes",
            Use::Mode => "the doctor tells kube-proxy's mode from its ConfigMap",
            Use::Exec => "kindred reads the rules by exec into each node's kube-proxy pod",
            Use::DebugPod => "kindred reads the rules in a debug pod on the node",
            Use::DebugCleanup => "kindred deletes its debug pods after the read",
        }
    }
}

/// What reading a context `via` needs; debug pods live in `namespace`.
pub fn needs(namespace: &str, via: ReadVia) -> Vec<Need> {
    use Status::{Fail, Warn};
    use Verb::*;
    let eps = "discovery.k8s.io";
    let ks = || Scope::Namespace("kube-system".into());
    let ns = || Scope::Namespace(namespace.to_string());
    let all = || Scope::AllNamespaces;
    let rows = [
        (List, "", "nodes", Scope::Cluster, Fail, Use::Nodes),
        (List, "", "pods", all(), Fail, Use::ProxyPods),
        (List, "", "services", all(), Fail, Use::Services),
        (List, eps, "endpointslices", all(), Fail, Use::Endpoints),
        (Watch, "", "pods", all(), Warn, Use::Watch),
        (Watch, "", "services", all(), Warn, Use::Watch),
        (Watch, eps, "endpointslices", all(), Warn, Use::Watch),
        (Get, "", "configmaps", ks(), Warn, Use::Mode),
    ];
    let exec = [(Create, "", "pods/exec", ks(), Fail, Use::Exec)];
    let debug = [
        (Create, "", "pods", ns(), Fail, Use::DebugPod),
        (Create, "", "pods/exec", ns(), Fail, Use::DebugPod),
        (Delete, "", "pods", ns(), Fail, Use::DebugCleanup),
    ];
    let on = |path: Path| {
        move |(verb, group, resource, scope, missing, used_for)| Need {
            verb,
            group,
            resource,
            scope,
            path,
            missing,
            used_for,
        }
    };
    let mut v: Vec<Need> = rows.into_iter().map(on(Path::Always)).collect();
    if via != ReadVia::Debug {
        v.extend(exec.into_iter().map(on(Path::Exec)));
    }
    if via != ReadVia::Exec {
        v.extend(debug.into_iter().map(on(Path::Debug)));
    }
    v
}

/// A way of reading as the scenario and the CLI write it.
fn via_name(via: ReadVia) -> &'static str {
    match via {
        ReadVia::Exec => "exec",
        ReadVia::Debug => "debug",
        ReadVia::ExecOrDebug => "exec-or-debug",
    }
}

/// The API server's answer to "may I?".
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verdict {
    allowed: bool,
    /// The authorizer's reason, when it gave one.
    reason: Option<String>,
}

/// Ask the API server whether this context's user may do `n` (a SelfSubjectAccessReview).
async fn review(client: &Client, n: &Need) -> anyhow::Result<Verdict> {
    let (resource, sub) = match n.resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (n.resource, None),
    };
    let ssar = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(n.group.to_string()),
                resource: Some(resource.to_string()),
                subresource: sub,
                verb: Some(n.verb.as_str().to_string()),
                namespace: match &n.scope {
                    Scope::Namespace(ns) => Some(ns.clone()),
                    _ => None,
                },
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let what = format!("asking whether it may {}", n.describe());
    let got = answer(&what, api.create(&PostParams::default(), &ssar)).await?;
    let status = got
        .status
        .ok_or_else(|| anyhow::anyhow!("{what}: the review came back without a status"))?;
    let reason = [status.reason, status.evaluation_error]
        .into_iter()
        .flatten()
        .filter(|r| !r.is_empty())
        .collect::<Vec<_>>();
    Ok(Verdict {
        allowed: status.allowed,
        reason: (!reason.is_empty()).then(|| reason.join("; ")),
    })
}

/// Every permission reading `via` needs, asked at once: one line when all are granted, else one
/// per refusal with the rule that grants it.
async fn permissions(client: &Client, who: &str, namespace: &str, via: ReadVia) -> Vec<Check> {
    let needs = needs(namespace, via);
    let verdicts = futures::future::join_all(needs.iter().map(|n| review(client, n))).await;
    if let [Err(first), rest @ ..] = &verdicts[..]
        && rest.iter().all(Result::is_err)
    {
        return vec![Check::warn(
            CheckName::Permission,
            format!("{who}: {first:#} (and the {} other reviews)", rest.len()),
            "every authenticated user may ask (ClusterRole system:basic-user): check the API server's authorization setup",
        )];
    }
    let granted = |p: Path| {
        needs
            .iter()
            .zip(&verdicts)
            .filter(|(n, _)| n.path == p)
            .all(|(_, v)| v.as_ref().is_ok_and(|v| v.allowed))
    };
    let (exec_ok, debug_ok) = (granted(Path::Exec), granted(Path::Debug));
    let mut out = Vec::new();
    for (n, v) in needs.iter().zip(verdicts) {
        let status = match (n.path, via) {
            (Path::Always, _) => n.missing,
            (Path::Exec, ReadVia::ExecOrDebug) if debug_ok => Status::Warn,
            (Path::Debug, ReadVia::ExecOrDebug) if exec_ok => Status::Warn,
            _ => Status::Fail,
        };
        let instead = match (status, n.path) {
            (Status::Warn, Path::Exec) => ": every node is read by a debug pod instead",
            (Status::Warn, Path::Debug) => ": nodes without a kube-proxy pod cannot be read",
            _ => "",
        };
        match v {
            Ok(v) if v.allowed => {}
            Ok(v) => out.push(Check {
                name: CheckName::Permission,
                status,
                message: format!(
                    "{who}: may not {}{}: {}{instead}",
                    n.describe(),
                    v.reason
                        .map(|r| format!(" ({})", visible(&r)))
                        .unwrap_or_default(),
                    n.used_for.as_str()
                ),
                fix: Some(n.rule()),
            }),
            Err(e) => out.push(Check::warn(
                CheckName::Permission,
                format!("{who}: {e:#}"),
                format!("if it is not allowed, {}", n.rule()),
            )),
        }
    }
    if out.is_empty() {
        out.push(Check::ok(
            CheckName::Permission,
            format!(
                "{who}: all {} permissions reading it by {} needs are granted",
                needs.len(),
                via_name(via)
            ),
        ));
    }
    out
}

/// kube-proxy on one node, as the API server shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Proxy {
    /// The mode (`iptables` when the config leaves it empty), `None` without a kube-proxy pod.
    mode: Option<String>,
    /// kube-proxy's version: its image's tag, else the node's `kubeProxyVersion`.
    version: String,
    kubelet: String,
}

/// The tag of an image reference (`registry.k8s.io/kube-proxy:v1.34.0@sha256:…` → `v1.34.0`).
pub fn image_tag(image: &str) -> Option<&str> {
    let named = image.split('@').next()?;
    let last = named.rsplit('/').next()?;
    last.split_once(':')
        .map(|(_, t)| t)
        .filter(|t| !t.is_empty())
}

/// The `mode:` of a KubeProxyConfiguration (YAML); an empty or absent mode is iptables (on
/// Linux).
pub fn config_mode(text: &str) -> anyhow::Result<String> {
    #[derive(serde::Deserialize)]
    struct Conf {
        #[serde(default)]
        mode: Option<String>,
    }
    let c: Conf = serde_saphyr::from_str_with_options(text, crate::scenario::options(64, 100_000))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(c.mode
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "iptables".into()))
}

/// The kube-proxy container of a pod (named `kube-proxy`, else the first).
fn proxy_container(p: &Pod) -> Option<&k8s_openapi::api::core::v1::Container> {
    let cs = &p.spec.as_ref()?.containers;
    cs.iter().find(|c| c.name == "kube-proxy").or(cs.first())
}

/// A flag's value on a container's command line (`--flag=V` or `--flag V`).
fn flag(c: &k8s_openapi::api::core::v1::Container, name: &str) -> Option<String> {
    let words: Vec<&String> = c.command.iter().chain(c.args.iter()).flatten().collect();
    let eq = format!("{name}=");
    words.iter().enumerate().find_map(|(i, w)| {
        w.strip_prefix(&eq)
            .map(str::to_string)
            .or_else(|| (w.as_str() == name).then(|| words.get(i + 1).map(|s| s.to_string()))?)
    })
}

/// The ConfigMap (name, key) a kube-proxy pod's `--config` file comes from; kubeadm's
/// `kube-proxy`/`config.conf` when the pod does not say.
fn config_source(p: &Pod) -> (String, String) {
    let kubeadm = ("kube-proxy".to_string(), "config.conf".to_string());
    let Some(c) = proxy_container(p) else {
        return kubeadm;
    };
    let Some(path) = flag(c, "--config") else {
        return kubeadm;
    };
    let mounts = c.volume_mounts.iter().flatten();
    // The deepest mount holding the file (a mount inside another shadows it).
    let found = mounts.filter_map(|m| {
        let rest = path.strip_prefix(m.mount_path.trim_end_matches('/'))?;
        let file = rest.strip_prefix('/')?;
        let vols = p.spec.as_ref()?.volumes.as_ref()?;
        let cm = vols
            .iter()
            .find(|v| v.name == m.name)?
            .config_map
            .as_ref()?;
        let key = cm
            .items
            .iter()
            .flatten()
            .find(|i| i.path == file)
            .map_or(file.to_string(), |i| i.key.clone());
        Some((m.mount_path.len(), (cm.name.clone(), key)))
    });
    found
        .max_by_key(|(len, _)| *len)
        .map_or(kubeadm, |(_, s)| s)
}

/// The mode a kube-proxy pod runs in: `--proxy-mode`, else its config's `mode:` (ConfigMaps
/// read once each, in `cms`).
async fn pod_mode(
    client: &Client,
    p: &Pod,
    cms: &mut BTreeMap<String, Result<ConfigMap, String>>,
) -> Result<String, String> {
    if let Some(m) = proxy_container(p).and_then(|c| flag(c, "--proxy-mode")) {
        return Ok(m);
    }
    let (name, key) = config_source(p);
    if !cms.contains_key(&name) {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
        let what = format!("reading ConfigMap kube-system/{}", visible(&name));
        let got = answer(&what, api.get(&name)).await;
        cms.insert(name.clone(), got.map_err(|e| format!("{e:#}")));
    }
    let cm = cms[&name].as_ref().map_err(Clone::clone)?;
    let text = cm.data.as_ref().and_then(|d| d.get(&key)).ok_or_else(|| {
        format!(
            "ConfigMap kube-system/{} has no key {}",
            visible(&name),
            visible(&key)
        )
    })?;
    config_mode(text).map_err(|e| {
        format!(
            "ConfigMap kube-system/{} key {}: {e}",
            visible(&name),
            visible(&key)
        )
    })
}

/// Each node's kube-proxy: its pod's mode and version, the node's kubelet.
async fn proxies(client: &Client) -> anyhow::Result<(Vec<(String, Proxy)>, Vec<String>)> {
    let nodes: Api<Node> = Api::all(client.clone());
    let nodes = answer("listing nodes", nodes.list(&ListParams::default())).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let lp = ListParams::default().labels(PROXY_LABEL);
    let what = "listing kube-proxy pods in kube-system";
    let pods = answer(what, pods.list(&lp)).await?;
    let (mut cms, mut unknown, mut out) = (BTreeMap::new(), Vec::new(), Vec::new());
    for n in &nodes.items {
        let name = n.metadata.name.clone().unwrap_or_default();
        let info = n.status.as_ref().and_then(|s| s.node_info.as_ref());
        let on = |p: &&Pod| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&name);
        let pod = pods.items.iter().find(on);
        let image = pod.and_then(proxy_container).and_then(|c| c.image.clone());
        let noted = info
            .map(|i| i.kube_proxy_version.clone())
            .filter(|v| !v.is_empty());
        let version = image
            .as_deref()
            .and_then(image_tag)
            .map(str::to_string)
            .or(noted);
        let mode = match pod {
            Some(p) => Some(pod_mode(client, p, &mut cms).await.unwrap_or_else(|e| {
                unknown.push(format!("{}: {e}", visible(&name)));
                "mode unknown".into()
            })),
            None => None,
        };
        let proxy = Proxy {
            mode,
            version: version.unwrap_or_else(|| "version unknown".into()),
            kubelet: info.map_or("unknown".into(), |i| i.kubelet_version.clone()),
        };
        out.push((visible(&name).into_owned(), proxy));
    }
    Ok((out, unknown))
}

/// Node names, the first few and how many more.
fn some_names(names: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut s = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

/// One line for the nodes: how many run each (mode, kube-proxy version, kubelet version); a
/// warning when they differ, or a node has no kube-proxy pod or an unknown mode.
async fn kube_proxy(client: &Client, who: &str) -> Check {
    let (nodes, unknown) = match proxies(client).await {
        Ok(x) => x,
        Err(e) => {
            return Check::warn(
                CheckName::KubeProxy,
                format!("{who}: {e:#}"),
                "see the permission checks: listing nodes and pods is needed",
            );
        }
    };
    let mut groups: BTreeMap<&Proxy, Vec<String>> = BTreeMap::new();
    for (node, p) in &nodes {
        groups.entry(p).or_default().push(node.clone());
    }
    // The largest groups first, nodes without kube-proxy last.
    let mut groups: Vec<(&Proxy, Vec<String>)> = groups.into_iter().collect();
    groups.sort_by_key(|(p, names)| (p.mode.is_none(), std::cmp::Reverse(names.len())));
    let parts: Vec<String> = groups
        .iter()
        .map(|(p, names)| {
            let what = match &p.mode {
                Some(m) => format!(
                    "{}, kube-proxy {}, kubelet {}",
                    visible(m),
                    visible(&p.version),
                    visible(&p.kubelet)
                ),
                None => format!("no kube-proxy pod, kubelet {}", visible(&p.kubelet)),
            };
            format!("{what}: {} ({})", names.len(), some_names(names))
        })
        .collect();
    let n = nodes.len();
    let message = format!(
        "{who}: {n} node{}: {}",
        if n == 1 { "" } else { "s" },
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join("; ")
        }
    );
    let bare: Vec<String> = nodes
        .iter()
        .filter(|(_, p)| p.mode.is_none())
        .map(|(n, _)| n.clone())
        .collect();
    let proxied: BTreeSet<(&Option<String>, &String)> = nodes
        .iter()
        .filter(|(_, p)| p.mode.is_some())
        .map(|(_, p)| (&p.mode, &p.version))
        .collect();
    let mut fixes = Vec::new();
    if proxied.len() > 1 {
        fixes.push("nodes run different kube-proxy modes or versions: compare like with like (`kindred diff ctx:CONTEXT/NODE ctx:CONTEXT/NODE`)".to_string());
    }
    if !bare.is_empty() {
        fixes.push(format!(
            "no kube-proxy pod on {}: exec cannot read it (read: exec-or-debug reads it with a debug pod; a CNI that replaces kube-proxy has no rules to read)",
            some_names(&bare)
        ));
    }
    if !unknown.is_empty() {
        fixes.push(format!("mode unknown on {}", unknown.join("; ")));
    }
    if fixes.is_empty() {
        Check::ok(CheckName::KubeProxy, message)
    } else {
        Check::warn(CheckName::KubeProxy, message, fixes.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags_and_config_modes() {
        assert_eq!(
            image_tag("registry.k8s.io/kube-proxy:v1.34.0"),
            Some("v1.34.0")
        );
        assert_eq!(
            image_tag("localhost:5000/kube-proxy:v1.33.2@sha256:abcd"),
            Some("v1.33.2")
        );
        assert_eq!(image_tag("localhost:5000/kube-proxy"), None);
        assert_eq!(image_tag("kube-proxy@sha256:abcd"), None);
        let conf = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: nftables\niptables:\n  syncPeriod: 30s\n";
        assert_eq!(config_mode(conf).unwrap(), "nftables");
        assert_eq!(
            config_mode("kind: KubeProxyConfiguration\nmode: \"\"\n").unwrap(),
            "iptables"
        );
        assert_eq!(
            config_mode("kind: KubeProxyConfiguration\n").unwrap(),
            "iptables"
        );
        assert!(config_mode("mode: [").is_err());
    }

    #[test]
    fn a_pods_config_is_found_in_the_config_map_its_config_flag_is_mounted_from() {
        let pod = |v: serde_json::Value| -> Pod { serde_json::from_value(v).unwrap() };
        let kubeadm = ("kube-proxy".to_string(), "config.conf".to_string());
        // No --config: kubeadm's ConfigMap and key.
        let bare = pod(serde_json::json!({"spec": {"containers": [{"name": "kube-proxy"}]}}));
        assert_eq!(config_source(&bare), kubeadm);
        // --config FILE (two words) under the deepest mount, an item mapping key to path.
        let pool = pod(serde_json::json!({"spec": {
            "containers": [{"name": "sidecar"}, {"name": "kube-proxy",
                "args": ["--config", "/etc/kp/conf/proxy.yaml", "--v=2"],
                "volumeMounts": [{"name": "etc", "mountPath": "/etc/kp"},
                                 {"name": "conf", "mountPath": "/etc/kp/conf/"}]}],
            "volumes": [{"name": "etc", "configMap": {"name": "wrong"}},
                        {"name": "conf", "configMap": {"name": "kp-pool-b",
                            "items": [{"key": "config.conf", "path": "proxy.yaml"}]}}]}}));
        assert_eq!(
            config_source(&pool),
            ("kp-pool-b".to_string(), "config.conf".to_string())
        );
        // --proxy-mode on the command line wins over any config.
        let c = proxy_container(&pool).unwrap();
        assert_eq!(
            flag(c, "--config").as_deref(),
            Some("/etc/kp/conf/proxy.yaml")
        );
        assert_eq!(flag(c, "--proxy-mode"), None);
    }

    #[test]
    fn each_need_comes_with_the_rule_that_grants_it() {
        let all = needs("kindred", ReadVia::ExecOrDebug);
        let exec = all.iter().find(|n| n.path == Path::Exec).unwrap();
        assert_eq!(exec.describe(), "create pods/exec in namespace kube-system");
        assert_eq!(
            exec.rule(),
            "grant it with this rule in a Role in namespace kube-system (bound by a RoleBinding there): - apiGroups: [\"\"]  resources: [\"pods/exec\"]  verbs: [\"create\"]"
        );
        let eps = all.iter().find(|n| n.resource == "endpointslices").unwrap();
        assert!(
            eps.rule().contains("a ClusterRole")
                && eps.rule().contains("apiGroups: [\"discovery.k8s.io\"]")
        );
        assert!(
            all.iter()
                .any(|n| n.path == Path::Debug && n.scope == Scope::Namespace("kindred".into()))
        );
        assert!(
            needs("k", ReadVia::Exec)
                .iter()
                .all(|n| n.path != Path::Debug)
        );
        assert!(
            needs("k", ReadVia::Debug)
                .iter()
                .all(|n| n.path != Path::Exec)
        );
    }
}
