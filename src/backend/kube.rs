//! The API server through kube-rs: clients for kind clusters (KUBECONFIG first), server-side apply
//! of multi-document YAML with discovery, readiness waits, pod and Service watchers, exec.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, AttachParams, DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use kube::runtime::watcher;
use kube::{Client, Config};
use tokio::io::AsyncReadExt;

use super::event::{PodInfo, ProbeResult, ServiceInfo};
use super::kind::Kind;
use super::probe::{Ask, parse_curl};
use crate::model::{Outcome, PodPhase};

/// The field manager kindred applies as.
pub const MANAGER: &str = "kindred";
/// The label on every test pod.
pub const TEST_LABEL: &str = "kindred.io/test=true";

/// A client for kind cluster `name` (context `kind-NAME`): from the kubeconfig file kindred had
/// kind write for it, else KUBECONFIG (or ~/.kube/config) when it has the context, else from
/// `kind get kubeconfig`.
pub async fn client_for(kind: &Kind, name: &str) -> Result<Client> {
    let context = format!("kind-{name}");
    let opts = KubeConfigOptions {
        context: Some(context.clone()),
        ..Default::default()
    };
    let has = |kc: &Kubeconfig| kc.contexts.iter().any(|c| c.name == context);
    let from_file = Kubeconfig::read_from(super::kubeconfig_path(name))
        .ok()
        .filter(has)
        .or_else(|| Kubeconfig::read().ok().filter(has));
    let kc = match from_file {
        Some(kc) => kc,
        None => {
            let text = kind.kubeconfig(name).await?;
            Kubeconfig::from_yaml(&text)
                .with_context(|| format!("kubeconfig of kind cluster {name}"))?
        }
    };
    let config = Config::from_custom_kubeconfig(kc, &opts)
        .await
        .with_context(|| format!("kubeconfig context {context}"))?;
    Client::try_from(config).with_context(|| format!("client for {context}"))
}

/// Server-side apply every object of a multi-document YAML text; `source` names it in errors.
/// Returns "Kind namespace/name" of each object applied.
pub async fn apply_yaml(client: &Client, yaml: &str, source: &str) -> Result<Vec<String>> {
    let objects = parse_objects(yaml, source)?;
    let mut done = Vec::new();
    for obj in &objects {
        done.push(apply_one(client, obj, source, None).await?);
    }
    Ok(done)
}

/// Apply `yaml` with every object in namespace `ns`: an object naming another namespace, or
/// a cluster-wide kind, is refused (in a cluster kindred did not create, all it makes lives in
/// its own namespace).
pub async fn apply_yaml_in(
    client: &Client,
    yaml: &str,
    source: &str,
    ns: &str,
) -> Result<Vec<String>> {
    let mut objects = parse_objects(yaml, source)?;
    for obj in &mut objects {
        match obj.metadata.namespace.as_deref() {
            Some(other) if other != ns => bail!(
                "{source}: {} names namespace {other}: in this cluster kindred creates only in {ns}",
                obj.metadata.name.as_deref().unwrap_or("an object")
            ),
            _ => obj.metadata.namespace = Some(ns.to_string()),
        }
    }
    let mut done = Vec::new();
    for obj in &objects {
        done.push(apply_one(client, obj, source, Some(ns)).await?);
    }
    Ok(done)
}

/// The objects of a multi-document YAML text (empty documents skipped).
pub fn parse_objects(yaml: &str, source: &str) -> Result<Vec<DynamicObject>> {
    if yaml.len() > MAX_MANIFEST_BYTES {
        bail!(
            "{source}: {} bytes: larger than {MAX_MANIFEST_BYTES}",
            yaml.len()
        );
    }
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple_with_options(yaml, crate::scenario::options(256, 2_000_000))
            .map_err(|e| {
                let (line, reason) = crate::scenario::located(e);
                anyhow!("{source}:{line}: {reason}")
            })?;
    let mut out = Vec::new();
    for (i, v) in docs.into_iter().enumerate() {
        if v.is_null() {
            continue;
        }
        let obj: DynamicObject = serde_json::from_value(v)
            .with_context(|| format!("{source}: document {}: not a Kubernetes object", i + 1))?;
        out.push(obj);
    }
    Ok(out)
}

/// Manifests larger than this are refused before they are parsed (MetalLB's is about 80 KiB).
pub const MAX_MANIFEST_BYTES: usize = 16 << 20;

async fn apply_one(
    client: &Client,
    obj: &DynamicObject,
    source: &str,
    only_in: Option<&str>,
) -> Result<String> {
    let tm = obj
        .types
        .as_ref()
        .ok_or_else(|| anyhow!("{source}: an object without apiVersion/kind"))?;
    let gvk = GroupVersionKind::try_from(tm)
        .map_err(|e| anyhow!("{source}: {}/{}: {e}", tm.api_version, tm.kind))?;
    let name = obj
        .metadata
        .name
        .clone()
        .ok_or_else(|| anyhow!("{source}: a {} without metadata.name", tm.kind))?;
    let (ar, caps) = pinned_kind(client, &gvk).await.map_err(|e| {
        anyhow!(
            "{source}: {} {name}: the API server does not know this kind: {e}",
            tm.kind
        )
    })?;
    if let Some(ns) = only_in
        && caps.scope != Scope::Namespaced
    {
        bail!(
            "{source}: {} {name} is cluster-wide: in this cluster kindred creates only in namespace {ns}",
            tm.kind
        );
    }
    let api: Api<DynamicObject> = if caps.scope == Scope::Namespaced {
        let ns = obj.metadata.namespace.as_deref().unwrap_or("default");
        Api::namespaced_with(client.clone(), ns, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    };
    let pp = PatchParams::apply(MANAGER).force();
    api.patch(&name, &pp, &Patch::Apply(obj))
        .await
        .map_err(|e| anyhow!("{source}: applying {} {name}: {e}", tm.kind))?;
    Ok(match &obj.metadata.namespace {
        Some(ns) if caps.scope == Scope::Namespaced => format!("{} {ns}/{name}", tm.kind),
        _ => format!("{} {name}", tm.kind),
    })
}

/// Wait until a Deployment has all its replicas ready, reporting progress.
pub async fn wait_deployment(
    client: &Client,
    ns: &str,
    name: &str,
    limit: Duration,
    mut progress: impl FnMut(String),
) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let end = tokio::time::Instant::now() + limit;
    let mut last = String::new();
    loop {
        let (ready, want) = match api.get_opt(name).await? {
            Some(d) => {
                let want = d.spec.and_then(|s| s.replicas).unwrap_or(1);
                let ready = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
                (ready, want)
            }
            None => (0, 1),
        };
        let msg = format!("waiting for {ns}/{name}: {ready}/{want} ready");
        if msg != last {
            progress(msg.clone());
            last = msg;
        }
        if ready >= want && want > 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() > end {
            bail!(
                "{ns}/{name} not ready after {}s ({ready}/{want} replicas)",
                limit.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// How far the Service under test is from answering probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// The LoadBalancer ingress IP (or hostname) and the Service's first port.
    pub lb: Option<(String, u16)>,
    /// Ready endpoints in its EndpointSlices (an unset `ready` counts as ready, as the API says).
    pub ready_endpoints: usize,
}

impl Readiness {
    /// What is still missing, in words; `None` when nothing is.
    pub fn missing(&self) -> Option<&'static str> {
        if self.lb.is_none() {
            Some("a LoadBalancer IP")
        } else if self.ready_endpoints == 0 {
            Some("a ready endpoint in its EndpointSlices")
        } else {
            None
        }
    }
}

/// The Service's LoadBalancer IP and ready endpoints, as the API server has them now.
pub async fn readiness(client: &Client, ns: &str, name: &str) -> Result<Readiness> {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::api::ListParams;
    let svc: Api<Service> = Api::namespaced(client.clone(), ns);
    let lb = match svc.get_opt(name).await? {
        Some(s) => {
            let i = service_info(&s);
            i.lb_ip.map(|ip| (ip, i.port))
        }
        None => None,
    };
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={name}"));
    let ready_endpoints = slices
        .list(&lp)
        .await?
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .count();
    Ok(Readiness {
        lb,
        ready_endpoints,
    })
}

/// Wait (up to `limit`, polling every `every`) until the Service has a LoadBalancer IP and a
/// ready endpoint; `progress` hears what it waits for, once per change. Returns the LB's
/// address and port.
pub async fn wait_service_ready(
    client: &Client,
    ns: &str,
    name: &str,
    limit: Duration,
    every: Duration,
    mut progress: impl FnMut(String),
) -> Result<(String, u16)> {
    let end = tokio::time::Instant::now() + limit;
    let mut last = None;
    loop {
        let r = readiness(client, ns, name).await?;
        let Some(missing) = r.missing() else {
            return Ok(r.lb.expect("an LB IP when nothing is missing"));
        };
        if last != Some(missing) {
            progress(format!("waiting for {ns}/{name} to have {missing}"));
            last = Some(missing);
        }
        if tokio::time::Instant::now() >= end {
            bail!(
                "{ns}/{name} has no {} after {}s",
                missing.trim_start_matches("a "),
                limit.as_secs()
            );
        }
        tokio::time::sleep(every).await;
    }
}

/// How long one API call of a kube-proxy swap may take.
const API_LIMIT: Duration = Duration::from_secs(30);

pub(crate) async fn within<T>(
    what: &str,
    f: impl std::future::Future<Output = kube::Result<T>>,
) -> Result<T> {
    tokio::time::timeout(API_LIMIT, f)
        .await
        .map_err(|_| {
            anyhow!(
                "{what}: the API server did not answer within {}s",
                API_LIMIT.as_secs()
            )
        })?
        .with_context(|| what.to_string())
}

/// The kube-proxy DaemonSet's container as a cluster runs it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyContainer {
    pub name: String,
    pub image: String,
    /// Where the binary is in the image: the command's first word when it is a path, else
    /// `/usr/local/bin/kube-proxy` (where Kubernetes' images have it).
    pub binary: String,
}

/// kube-system/kube-proxy's container (the one named kube-proxy, else the first).
pub async fn proxy_container(client: &Client) -> Result<ProxyContainer> {
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
    let ds = within(
        "reading DaemonSet kube-system/kube-proxy",
        api.get("kube-proxy"),
    )
    .await?;
    let containers = ds
        .spec
        .and_then(|s| s.template.spec)
        .map(|s| s.containers)
        .unwrap_or_default();
    let c = containers
        .iter()
        .find(|c| c.name == "kube-proxy")
        .or(containers.first())
        .ok_or_else(|| anyhow!("DaemonSet kube-system/kube-proxy has no container"))?;
    let binary = c
        .command
        .as_ref()
        .and_then(|cmd| cmd.first())
        .filter(|p| p.starts_with('/'))
        .cloned()
        .unwrap_or_else(|| "/usr/local/bin/kube-proxy".into());
    Ok(ProxyContainer {
        name: c.name.clone(),
        image: c
            .image
            .clone()
            .ok_or_else(|| anyhow!("kube-proxy's container names no image"))?,
        binary,
    })
}

/// Point the kube-proxy DaemonSet's container at `image` (already on every node: never pulled).
pub async fn set_proxy_image(client: &Client, container: &str, image: &str) -> Result<()> {
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
    let patch = serde_json::json!({
        "spec": {"template": {"spec": {"containers": [
            {"name": container, "image": image, "imagePullPolicy": "IfNotPresent"}
        ]}}}
    });
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let what = format!("setting kube-proxy's image to {image}");
    within(
        &what,
        api.patch("kube-proxy", &pp, &Patch::Strategic(&patch)),
    )
    .await?;
    Ok(())
}

/// How far a DaemonSet's rollout is, once its controller saw the latest spec: (pods updated,
/// pods available, pods wanted). Done when all three are equal and nothing is unavailable.
fn rollout(ds: &DaemonSet) -> Option<(i32, i32, i32)> {
    let st = ds.status.as_ref()?;
    if st.observed_generation.unwrap_or(0) < ds.metadata.generation.unwrap_or(0) {
        return None;
    }
    let updated = st.updated_number_scheduled.unwrap_or(0);
    let mut available = st.number_available.unwrap_or(0);
    if st.number_unavailable.unwrap_or(0) > 0 {
        available = available.min(st.desired_number_scheduled - 1);
    }
    Some((updated, available, st.desired_number_scheduled))
}

/// Wait (up to `limit`) until every kube-proxy pod runs the latest spec and is available;
/// `progress` hears "n/m updated" once per change. On timeout, the error says what the pods
/// are waiting for (an image that cannot be found, a crash loop).
pub async fn wait_proxy_rollout(
    client: &Client,
    limit: Duration,
    mut progress: impl FnMut(String),
) -> Result<()> {
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
    let end = tokio::time::Instant::now() + limit;
    let mut last = None;
    loop {
        let ds = within(
            "reading DaemonSet kube-system/kube-proxy",
            api.get("kube-proxy"),
        )
        .await?;
        let r = rollout(&ds);
        if let Some((updated, available, want)) = r {
            if want > 0 && updated >= want && available >= want {
                return Ok(());
            }
            if last != r {
                progress(format!(
                    "kube-proxy rollout: {updated}/{want} updated, {available}/{want} available"
                ));
            }
        }
        last = r;
        if tokio::time::Instant::now() >= end {
            let why = proxy_pod_problems(client).await.unwrap_or_default();
            let (updated, _, want) = r.unwrap_or((0, 0, 0));
            let why = if why.is_empty() {
                String::new()
            } else {
                format!(": {}", why.join("; "))
            };
            bail!(
                "kube-proxy rollout not done after {}s ({updated}/{want} updated){why}",
                limit.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// What kube-proxy's pods wait for: "kube-proxy-abcde: ErrImageNeverPull".
async fn proxy_pod_problems(client: &Client) -> Result<Vec<String>> {
    use kube::api::ListParams;
    let api: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let lp = ListParams::default().labels("k8s-app=kube-proxy");
    let pods = within("listing kube-proxy's pods", api.list(&lp)).await?;
    Ok(pods
        .items
        .iter()
        .filter_map(|p| {
            let waiting = p
                .status
                .as_ref()?
                .container_statuses
                .as_ref()?
                .iter()
                .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())?;
            Some(format!(
                "{}: {waiting}",
                p.metadata.name.as_deref().unwrap_or("?")
            ))
        })
        .collect())
}

/// What the Pods pane shows of a pod.
pub fn pod_info(p: &Pod) -> PodInfo {
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    PodInfo {
        name: p.metadata.name.clone().unwrap_or_default(),
        node: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        ip: status.and_then(|s| s.pod_ip.clone()),
        phase: if p.metadata.deletion_timestamp.is_some() {
            PodPhase::Terminating
        } else {
            status
                .and_then(|s| s.phase.as_deref())
                .map_or(PodPhase::Pending, PodPhase::from_api)
        },
        restarts: status
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count.max(0) as u32).sum())
            .unwrap_or(0),
    }
}

/// What the Pods pane shows of the Service, with a warning for `ipMode: Proxy`
/// (cloud-provider-kind): kube-proxy then writes no rules for the LB IP and in-cluster traffic
/// never takes the chains under test.
pub fn service_info(s: &Service) -> ServiceInfo {
    let ns = s
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = s.metadata.name.clone().unwrap_or_default();
    let spec = s.spec.as_ref();
    let ingress = s
        .status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .and_then(|i| i.first());
    let warning = ingress
        .and_then(|i| i.ip_mode.as_deref())
        .filter(|m| *m == "Proxy")
        .map(|_| "ipMode: Proxy: traffic to the LB IP bypasses kube-proxy's rules".to_string());
    ServiceInfo {
        name: format!("{ns}/{name}"),
        lb_ip: ingress.and_then(|i| i.ip.clone().or_else(|| i.hostname.clone())),
        port: spec
            .and_then(|s| s.ports.as_ref())
            .and_then(|p| p.first())
            .map_or(0, |p| p.port as u16),
        external_traffic_policy: spec.and_then(|s| s.external_traffic_policy.clone()),
        warning,
    }
}

/// A change seen by a watcher.
#[derive(Debug, Clone, PartialEq)]
pub enum Watched {
    Pod(PodInfo),
    PodGone(String),
    Service(ServiceInfo),
    /// The Service's endpoints changed (an EndpointSlice was added, changed or removed).
    Endpoints,
    /// The watch failed; it retries with backoff.
    Error(String),
}

/// Watch the test pods of a namespace until `emit` returns false. Restarts (re-lists) are
/// handled: pods missing from a fresh list are reported gone.
pub async fn watch_pods(client: Client, ns: &str, mut emit: impl FnMut(Watched) -> bool) {
    use kube::runtime::WatchStreamExt;
    let api: Api<Pod> = Api::namespaced(client, ns);
    let cfg = watcher::Config::default().labels(TEST_LABEL);
    let mut stream = watcher(api, cfg).default_backoff().boxed();
    let mut known: BTreeSet<String> = BTreeSet::new();
    let mut relist: Option<BTreeSet<String>> = None;
    while let Some(ev) = stream.next().await {
        let go_on = match ev {
            Ok(watcher::Event::Apply(p)) => {
                let info = pod_info(&p);
                known.insert(info.name.clone());
                emit(Watched::Pod(info))
            }
            Ok(watcher::Event::Delete(p)) => {
                let name = p.metadata.name.unwrap_or_default();
                known.remove(&name);
                emit(Watched::PodGone(name))
            }
            Ok(watcher::Event::Init) => {
                relist = Some(BTreeSet::new());
                true
            }
            Ok(watcher::Event::InitApply(p)) => {
                let info = pod_info(&p);
                if let Some(r) = relist.as_mut() {
                    r.insert(info.name.clone());
                }
                emit(Watched::Pod(info))
            }
            Ok(watcher::Event::InitDone) => {
                let seen = relist.take().unwrap_or_default();
                let gone: Vec<String> = known.difference(&seen).cloned().collect();
                known = seen;
                gone.into_iter().all(|g| emit(Watched::PodGone(g)))
            }
            Err(e) => emit(Watched::Error(format!("watching pods: {e}"))),
        };
        if !go_on {
            return;
        }
    }
}

/// Watch one Service (its LoadBalancer IP) until `emit` returns false.
pub async fn watch_service(
    client: Client,
    ns: &str,
    name: &str,
    mut emit: impl FnMut(Watched) -> bool,
) {
    use kube::runtime::WatchStreamExt;
    let api: Api<Service> = Api::namespaced(client, ns);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(api, cfg)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(ev) = stream.next().await {
        let go_on = match ev {
            Ok(s) => emit(Watched::Service(service_info(&s))),
            Err(e) => emit(Watched::Error(format!("watching service {ns}/{name}: {e}"))),
        };
        if !go_on {
            return;
        }
    }
}

/// Watch the EndpointSlices of Service `ns/name` until `emit` returns false: every change
/// is one `Watched::Endpoints`.
pub async fn watch_endpoints(
    client: Client,
    ns: &str,
    name: &str,
    mut emit: impl FnMut(Watched) -> bool,
) {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::runtime::WatchStreamExt;
    let api: Api<EndpointSlice> = Api::namespaced(client, ns);
    let cfg = watcher::Config::default().labels(&format!("kubernetes.io/service-name={name}"));
    let mut stream = watcher(api, cfg).default_backoff().boxed();
    while let Some(ev) = stream.next().await {
        let go_on = match ev {
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => emit(Watched::Endpoints),
            Ok(_) => true,
            Err(e) => emit(Watched::Error(format!(
                "watching the endpoints of {ns}/{name}: {e}"
            ))),
        };
        if !go_on {
            return;
        }
    }
}

/// An exec the API server did not start, with the HTTP status it answered instead of switching
/// protocols (403: RBAC does not allow `pods/exec` there), so callers can tell a refusal from
/// the rest.
#[derive(Debug, thiserror::Error)]
#[error("exec in {ns}/{pod}: {message}")]
pub struct ExecNotStarted {
    pub ns: String,
    pub pod: String,
    pub status: Option<u16>,
    pub message: String,
}

impl ExecNotStarted {
    fn new(ns: &str, pod: &str, e: &kube::Error) -> ExecNotStarted {
        use kube::client::UpgradeConnectionError as U;
        let (status, message) = match e {
            kube::Error::UpgradeConnection(U::ProtocolSwitch(s)) => {
                (Some(s.as_u16()), e.to_string())
            }
            kube::Error::Api(s) => (Some(s.code), format!("{} ({})", s.message, s.code)),
            _ => (None, e.to_string()),
        };
        ExecNotStarted {
            ns: ns.into(),
            pod: pod.into(),
            status,
            message,
        }
    }
}

/// Run `argv` in a pod's container (no shell), capturing output and exit code, within `limit`.
pub async fn exec_in(
    client: &Client,
    ns: &str,
    pod: &str,
    container: Option<&str>,
    argv: &[String],
    limit: Duration,
) -> Result<super::docker::ExecOutput> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let run = async {
        let mut ap = AttachParams::default()
            .stdin(false)
            .stdout(true)
            .stderr(true);
        if let Some(c) = container {
            ap = ap.container(c);
        }
        let mut p = api
            .exec(pod, argv.iter().map(String::as_str), &ap)
            .await
            .map_err(|e| ExecNotStarted::new(ns, pod, &e))?;
        let mut out = String::new();
        let mut err = String::new();
        let so = p.stdout();
        let se = p.stderr();
        let status = p.take_status();
        let (r1, r2) = tokio::join!(
            async {
                if let Some(mut s) = so {
                    s.read_to_string(&mut out).await?;
                }
                Ok::<_, std::io::Error>(())
            },
            async {
                if let Some(mut s) = se {
                    s.read_to_string(&mut err).await?;
                }
                Ok::<_, std::io::Error>(())
            }
        );
        r1?;
        r2?;
        let status = match status {
            Some(s) => s.await,
            None => None,
        };
        let code = exit_code(status.as_ref());
        p.join().await.ok();
        Ok::<_, anyhow::Error>(super::docker::ExecOutput {
            stdout: out,
            stderr: err,
            code,
        })
    };
    match tokio::time::timeout(limit, run).await {
        Ok(r) => r,
        Err(_) => bail!("exec in {ns}/{pod}: no answer within {}s", limit.as_secs()),
    }
}

/// Probe `addr` from one pod: one curl making `ask`'s tries in its `container` through the API
/// server's exec, within curl's own limits (for each try) and 10 s for the API server. Whatever
/// happens is a result: `Err` holds the (FAIL) result of an exec the API server did not run (no
/// answer, the pod gone), `Ok` what curl found.
pub async fn probe_pod(
    client: &Client,
    ns: &str,
    pod: String,
    container: &str,
    addr: &str,
    ask: &Ask,
) -> Result<ProbeResult, ProbeResult> {
    let argv = ask.argv(addr);
    match exec_in(client, ns, &pod, Some(container), &argv, ask.limit(10.0)).await {
        Ok(o) => Ok(parse_curl(&pod, addr, &o.stdout, &o.stderr, o.code)),
        Err(e) => Err(ProbeResult {
            source: pod,
            target: addr.to_string(),
            outcome: Outcome::Fail,
            http_status: None,
            latency_ms: None,
            detail: Some(format!("{e:#}")),
            scenario_target: None,
            tries: Vec::new(),
            ready_endpoints: None,
        }),
    }
}

/// The exit code in an exec's final Status: 0 on Success, the "ExitCode" cause otherwise.
pub fn exit_code(s: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>) -> i64 {
    let Some(s) = s else { return -1 };
    if s.status.as_deref() == Some("Success") {
        return 0;
    }
    s.details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|c| {
            c.iter()
                .find(|c| c.reason.as_deref() == Some("ExitCode"))
                .and_then(|c| c.message.as_ref())
                .and_then(|m| m.parse().ok())
        })
        .unwrap_or(-1)
}

/// How a streaming exec ([`exec_lines`]) ended by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEnd {
    /// Its exit code (-1 when the API server sent no final status: the connection ended).
    pub code: i64,
    /// What it said on standard error (at most [`STREAM_STDERR`] bytes kept).
    pub stderr: String,
}

/// What a streaming exec keeps of its standard error, and of one line without its end.
pub const STREAM_STDERR: usize = 4 << 10;
const STREAM_LINE: usize = 64 << 10;

/// A command to stream from: `argv` in `ns/pod`'s `container`, which must start within
/// `start_limit`.
pub struct StreamExec<'a> {
    pub ns: &'a str,
    pub pod: &'a str,
    pub container: &'a str,
    pub argv: &'a [&'a str],
    pub start_limit: Duration,
}

/// Run a command in a pod (no shell, no stdin) and hand each line of its standard output to
/// `on_line` as it arrives, until the command ends (`Ok(Some(end))`) or `cancel` (`Ok(None)`);
/// either way the exec's websocket is closed. `started` is called once the API server has
/// started it. An exec the API server refuses is an [`ExecNotStarted`].
pub async fn exec_lines(
    client: &Client,
    x: &StreamExec<'_>,
    cancel: &tokio_util::sync::CancellationToken,
    started: impl FnOnce(),
    mut on_line: impl FnMut(&str),
) -> Result<Option<StreamEnd>> {
    let (ns, pod, start_limit) = (x.ns, x.pod, x.start_limit);
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let ap = AttachParams::default()
        .stdin(false)
        .stdout(true)
        .stderr(true)
        .container(x.container);
    let start = api.exec(pod, x.argv.iter().copied(), &ap);
    let mut p = tokio::select! {
        _ = cancel.cancelled() => return Ok(None),
        r = tokio::time::timeout(start_limit, start) => r
            .map_err(|_| anyhow!("exec in {ns}/{pod}: not started within {}s", start_limit.as_secs()))?
            .map_err(|e| ExecNotStarted::new(ns, pod, &e))?,
    };
    started();
    let (Some(mut out), Some(mut err)) = (p.stdout(), p.stderr()) else {
        bail!("exec in {ns}/{pod}: no output streams");
    };
    let status = p.take_status();
    let (mut pending, mut said) = (Vec::new(), Vec::new());
    let (mut buf, mut ebuf) = (vec![0u8; 8192], vec![0u8; 1024]);
    let mut err_open = true;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                // Dropping the process closes its websocket.
                p.abort();
                return Ok(None);
            }
            n = out.read(&mut buf) => {
                let n = n.with_context(|| format!("exec in {ns}/{pod}: reading its output"))?;
                if n == 0 {
                    break;
                }
                pending.extend_from_slice(&buf[..n]);
                while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    on_line(String::from_utf8_lossy(&line).trim_end());
                }
                if pending.len() > STREAM_LINE {
                    on_line(&String::from_utf8_lossy(&pending[..STREAM_LINE]));
                    pending.clear();
                }
            }
            n = err.read(&mut ebuf), if err_open => match n {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => {
                    let room = STREAM_STDERR.saturating_sub(said.len());
                    said.extend_from_slice(&ebuf[..n.min(room)]);
                }
            },
        }
    }
    if !pending.is_empty() {
        on_line(&String::from_utf8_lossy(&pending));
    }
    // The rest of standard error, then the final status, each briefly.
    let rest = async {
        while err_open {
            match err.read(&mut ebuf).await {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => {
                    let room = STREAM_STDERR.saturating_sub(said.len());
                    said.extend_from_slice(&ebuf[..n.min(room)]);
                }
            }
        }
        match status {
            Some(s) => s.await,
            None => None,
        }
    };
    let status = tokio::time::timeout(Duration::from_secs(2), rest)
        .await
        .ok()
        .flatten();
    p.abort();
    Ok(Some(StreamEnd {
        code: exit_code(status.as_ref()),
        stderr: String::from_utf8_lossy(&said).into_owned(),
    }))
}
