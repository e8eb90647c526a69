//! The live backend: kind (CLI), Docker (bollard) and the API server (kube-rs) for both sides.
//! Each command runs as one job; a command already running is cancelled and restarted, never
//! queued, and every job that runs to its end says so with `Event::Finished`. Each side has one
//! set of watchers (pods, the Service), restarted when the side is deployed or found. Everything
//! it learns goes to the front end as events.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod bisect;
mod build;
mod ctx_monitor;
mod existing;
mod held;
mod swap;
mod watch;

pub use existing::{OWNER_LABEL, read_only};
pub use swap::proxy_tag;

use super::Backend;
use super::docker::Docker;
use super::doctor::CheckName;
use super::event::{
    Command, Event, Expectation, MetricsRead, PodInfo, ProbeResult, ServiceInfo, SessionInfo,
    SideInfo,
};
use super::kind::Kind;
use super::owned::{Owned, default_path};
use super::probe::{Ask, Timeouts};

/// The most tries a probe makes (as `probes.repeat` allows).
pub const MAX_TRIES: u32 = 1000;
use crate::model::{
    BySide, Job, NodeRole, Pane, Phase, PhaseState, PodPhase, ProxyMode, Side, Sides, Target,
};
use crate::scenario::Scenario;

/// Seconds between probe rounds in watch mode, unless the scenario says otherwise
/// (`watch.probe_interval`).
pub const WATCH_PERIOD: Duration = Duration::from_secs(5);

/// What the backend knows that its jobs share.
#[derive(Default)]
struct Known {
    pods: BySide<BTreeMap<String, PodInfo>>,
    service: BySide<Option<ServiceInfo>>,
    /// Last rule dump sent per node, to send only changes.
    dumps: HashMap<(Side, String), u64>,
    /// The nodes of a context side, as its API server listed them.
    context_nodes: BySide<Vec<String>>,
    /// The Kubernetes (major, minor) each side was built from, when known.
    kube: BySide<Option<(u32, u32)>>,
}

/// A running task and the token that stops it.
type Task = (CancellationToken, JoinHandle<()>);

fn stop(t: Task) {
    t.0.cancel();
    t.1.abort();
}

/// The checks each command needs to have passed (see `kindred doctor`).
fn needs(cmd: &Command) -> &'static [CheckName] {
    use CheckName::*;
    match cmd {
        Command::Build { .. } => &[Docker, Kind, Git, Source, Remote, Ref, Kubernetes, State],
        Command::SwapProxy { .. } => &[Docker, Kind, Git, Source, Remote, Ref, State],
        Command::CreateClusters | Command::DeleteClusters => &[Docker, Kind, State],
        Command::Deploy => &[Docker, Curl, State],
        Command::Bisect(_) => &[Docker, Kind, Git, Source, State],
        Command::RefreshRules | Command::SetWatch(true) => &[Docker],
        _ => &[],
    }
}

/// What the backend and every job share: handles, so a clone is cheap.
#[derive(Clone)]
struct Shared {
    sc: Arc<Scenario>,
    kind: Kind,
    known: Arc<Mutex<Known>>,
    docker: Arc<tokio::sync::OnceCell<Docker>>,
    /// One API server client per side, made when first needed and dropped when that side's
    /// cluster is created or deleted, or a call through it fails.
    clients: Arc<Mutex<BySide<Option<kube::Client>>>>,
    /// One set of watchers per side, outliving the job that started it.
    watchers: Arc<Mutex<BySide<Option<Task>>>>,
    /// The quick preflight, once it ran.
    preflight: Arc<Mutex<Option<super::doctor::Report>>>,
    /// Where watch mode hears that a cluster changed (set while it runs).
    triggers: Arc<Mutex<Option<UnboundedSender<watch::Trigger>>>>,
    /// When the backend started: the clock of rule dumps.
    started: std::time::Instant,
    /// Tries per probe set by `Command::Probe { repeat: Some(n) }` (`R`), for the rest of the
    /// session; `None`: the scenario's `probes.repeat`.
    repeat: Arc<Mutex<Option<u32>>>,
}

/// Everything a job needs: what is shared, where its events go and its own cancel token.
#[derive(Clone)]
struct Ctx {
    shared: Shared,
    tx: UnboundedSender<Event>,
    cancel: CancellationToken,
}

impl std::ops::Deref for Ctx {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl Ctx {
    fn emit(&self, e: Event) {
        let _ = self.tx.send(e);
    }
    fn phase(&self, side: Side, phase: Phase, state: PhaseState) {
        self.emit(Event::Phase { side, phase, state });
    }
    fn out(&self, side: Side, phase: Phase, line: impl Into<String>) {
        self.emit(Event::Output {
            side,
            phase,
            line: line.into(),
        });
    }
    fn error(&self, side: Option<Side>, pane: Pane, message: impl Into<String>) {
        self.emit(Event::Error {
            side,
            pane,
            message: message.into(),
        });
    }
    /// What each probe asks of curl now: the tries set in the session, else the scenario's.
    fn ask(&self) -> Ask {
        let repeat = self.repeat.lock().unwrap().unwrap_or(self.sc.probes.repeat);
        Ask {
            repeat: repeat.clamp(1, MAX_TRIES),
            path: self.sc.probes.path.clone(),
            timeouts: Timeouts {
                connect: self.sc.probes.connect_timeout,
                total: self.sc.probes.timeout,
            },
        }
    }
    /// (Re)start a side's watchers: one set per side, however often this is called.
    fn restart_watchers(&self, side: Side) {
        let cancel = CancellationToken::new();
        let ctx = Ctx {
            cancel: cancel.clone(),
            ..self.clone()
        };
        let handle = tokio::spawn(async move {
            let r = watchers(&ctx, side).await;
            report(&ctx, Some(side), Pane::Pods, r);
        });
        let old = self.watchers.lock().unwrap()[side].replace((cancel, handle));
        if let Some(t) = old {
            stop(t);
        }
    }
    fn stop_watchers(&self, side: Side) {
        if let Some(t) = self.watchers.lock().unwrap()[side].take() {
            stop(t);
        }
    }
    fn name(&self, side: Side) -> &str {
        &self.sc.side(side).name
    }
    /// One Docker connection for the backend's life (it remembers each node's save tool and
    /// keeps a rules session per node).
    async fn docker(&self) -> Result<Docker> {
        self.docker.get_or_try_init(Docker::connect).await.cloned()
    }
    /// The side's API server client (see `Shared::clients`).
    async fn client(&self, side: Side) -> Result<kube::Client> {
        if let Some(c) = self.clients.lock().unwrap()[side].clone() {
            return Ok(c);
        }
        let c = match self.sc.context(side) {
            Some(c) => existing::client(&c).await?,
            None => super::kube::client_for(&self.kind, self.name(side)).await?,
        };
        self.clients.lock().unwrap()[side] = Some(c.clone());
        Ok(c)
    }
    /// The next `client(side)` makes a new one (the cluster changed, or a call failed).
    fn drop_client(&self, side: Side) {
        self.clients.lock().unwrap()[side] = None;
    }
    /// Run `f` for a phase: Running, then Done, or Failed with the reason.
    async fn run_phase<F, Fut>(&self, side: Side, phase: Phase, f: F) -> Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<String>>>,
    {
        self.phase(side, phase, PhaseState::Running);
        match f().await {
            Ok(None) => {
                self.phase(side, phase, PhaseState::Done);
                Ok(())
            }
            Ok(Some(skip)) => {
                self.phase(side, phase, PhaseState::Skipped { reason: skip });
                Ok(())
            }
            Err(e) => {
                let reason = if self.cancel.is_cancelled() {
                    "cancelled".to_string()
                } else {
                    format!("{e:#}")
                };
                self.phase(side, phase, PhaseState::Failed { reason });
                Err(e)
            }
        }
    }
}

/// The Kubernetes version (major, minor) the node image records (`/kind/version`), said in
/// the Build pane; `None` (and why) when it cannot be read.
async fn image_kube_version(
    ctx: &Ctx,
    side: Side,
    docker: &super::docker::Docker,
    image: &str,
) -> Option<(u32, u32)> {
    let say = |l: String| ctx.out(side, Phase::Create, l);
    match docker.node_image_version(image).await {
        Ok(Some(text)) => match super::git::kube_version(&text, "") {
            Some(v) => {
                say(format!(
                    "{image}: Kubernetes {} (its /kind/version)",
                    v.version
                ));
                Some((v.major, v.minor))
            }
            None => {
                say(format!(
                    "{image}: cannot read a version in its /kind/version ({text:?}): no feature gate for it"
                ));
                None
            }
        },
        Ok(None) => {
            say(format!(
                "{image}: no /kind/version: its Kubernetes version is unknown, no feature gate for it"
            ));
            None
        }
        Err(e) => {
            say(format!(
                "{image}: its Kubernetes version is unknown ({e:#}): no feature gate for it"
            ));
            None
        }
    }
}

/// Create (or recreate) a side's cluster. An existing cluster kindred did not create is left
/// alone and reported.
async fn create(ctx: &Ctx, side: Side) -> Result<()> {
    if let Some(c) = ctx.sc.context(side) {
        let m = format!("{}: kindred never creates it", read_only(side, &c));
        ctx.out(side, Phase::Create, m);
        return Ok(());
    }
    ctx.run_phase(side, Phase::Create, || async {
        let name = ctx.name(side).to_string();
        let docker = ctx.docker().await?;
        let path = default_path();
        let nodes = docker.kind_nodes().await?;
        if nodes.iter().any(|n| n.cluster == name) {
            let owned = Owned::load(&path)?;
            if !owned.created(&name, &nodes) {
                bail!("a kind cluster named {name} exists and kindred did not create it: not touching it (delete it yourself or rename the side)");
            }
            ctx.kind
                .delete_cluster(&name, |l| ctx.out(side, Phase::Create, l), &ctx.cancel)
                .await?;
        }
        let cfg = super::state_dir().join(format!("{name}-kind.yaml"));
        let kubeconfig = super::kubeconfig_path(&name);
        let kube_dir = kubeconfig.parent().expect("a state dir");
        std::fs::create_dir_all(kube_dir)
            .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", kube_dir.display()))?;
        let image = ctx.sc.side(side).image.clone();
        let known = ctx.known.lock().unwrap().kube[side];
        let nftables = ctx.sc.cluster.proxy_mode == ProxyMode::Nftables;
        let kube = match known {
            Some(v) => Some(v),
            None if nftables => image_kube_version(ctx, side, &docker, &image).await,
            None => None,
        };
        let nft_gate = nftables && matches!(kube, Some((1, 29 | 30)));
        if nft_gate {
            ctx.out(side, Phase::Create, "Kubernetes 1.29/1.30: turning on the NFTablesProxyMode feature gate");
        }
        super::state::write_atomic(&cfg, ctx.sc.kind_config(nft_gate).as_bytes())?;
        let out = |l: &str| ctx.out(side, Phase::Create, l);
        ctx.kind
            .create_cluster(&name, &image, &cfg, &kubeconfig, out, &ctx.cancel)
            .await?;
        ctx.drop_client(side);
        match ctx.kind.export_kubeconfig(&name).await {
            Ok(outcome) => ctx.out(side, Phase::Create, format!("kubectl's current context {outcome}; kind-{name} added")),
            Err(e) => ctx.out(side, Phase::Create, format!("kubectl context kind-{name} not exported: {e:#}")),
        }
        let nodes = docker.cluster_nodes(&name).await?;
        let cp = nodes
            .iter()
            .find(|n| n.role == NodeRole::ControlPlane)
            .ok_or_else(|| anyhow!("cluster {name} has no control-plane container"))?;
        Owned::update(&path, |o| o.record(&name, &cp.id))?;
        for n in &nodes {
            ctx.emit(Event::Node {
                side,
                name: n.name.clone(),
                role: n.role,
                ip: n.ips.first().map(|(_, ip)| ip.clone()),
            });
        }
        Ok(None)
    })
    .await
}

/// MetalLB's manifest: a URL (fetched once into the cache), or a local file.
async fn metallb_manifest(ctx: &Ctx) -> Result<String> {
    let m = ctx.sc.load_balancer.manifest.clone().ok_or_else(|| {
        anyhow!(
            "load_balancer.manifest is not set: give MetalLB's metallb-native.yaml (URL or file)"
        )
    })?;
    if super::metallb::is_url(&m) {
        return super::metallb::fetch(&m, &super::state_dir().join("cache")).await;
    }
    let p = ctx.sc.resolve(&m);
    let text = std::fs::read_to_string(&p)
        .map_err(|e| anyhow!("load_balancer.manifest: {}: {e}", p.display()))?;
    super::metallb::check(&text, &p.display().to_string())?;
    Ok(text)
}

/// A MetalLB address range for one side inside the Docker network's subnet: ten addresses near
/// the top, base and PR disjoint.
pub fn lb_range(subnet: &str, side: Side) -> Result<(Ipv4Addr, Ipv4Addr)> {
    let (net, len) = subnet
        .split_once('/')
        .ok_or_else(|| anyhow!("{subnet}: not a CIDR"))?;
    let net: Ipv4Addr = net
        .parse()
        .map_err(|_| anyhow!("{subnet}: not an IPv4 CIDR"))?;
    let len: u32 = len
        .parse()
        .map_err(|_| anyhow!("{subnet}: bad prefix length"))?;
    if len > 24 {
        bail!("{subnet}: too small for LoadBalancer addresses (need /24 or larger)");
    }
    let size = 1u32 << (32 - len);
    let base = u32::from(net) & !(size - 1);
    let top = base + size - 1; // broadcast
    let first = top - 55 + if side == Side::Base { 0 } else { 10 };
    Ok((Ipv4Addr::from(first), Ipv4Addr::from(first + 9)))
}

/// Deploy MetalLB with its pool and the workloads; then (re)start the side's watchers.
async fn deploy(ctx: &Ctx, side: Side) -> Result<()> {
    if let Some(c) = ctx.sc.context(side) {
        return existing::deploy(ctx, side, &c).await;
    }
    ctx.run_phase(side, Phase::Deploy, || async {
        let name = ctx.name(side).to_string();
        let c = ctx.client(side).await?;
        let manifest = metallb_manifest(ctx).await?;
        let applied = super::kube::apply_yaml(&c, &manifest, "MetalLB manifest").await?;
        ctx.out(
            side,
            Phase::Deploy,
            format!("applied MetalLB ({} objects)", applied.len()),
        );
        super::kube::wait_deployment(
            &c,
            "metallb-system",
            "controller",
            Duration::from_secs(300),
            |m| ctx.out(side, Phase::Deploy, m),
        )
        .await?;
        let subnet = ctx
            .docker()
            .await?
            .network_subnet(&ctx.sc.load_balancer.network)
            .await?;
        let (from, to) = lb_range(&subnet, side)?;
        // MetalLB's webhook answers a little after the controller is ready: retry for a while.
        let pool = super::metallb::pool_yaml(from, to);
        let mut tries = 0;
        loop {
            match super::kube::apply_yaml(&c, &pool, "MetalLB pool").await {
                Ok(_) => break,
                Err(e) if tries < 30 && !ctx.cancel.is_cancelled() => {
                    tries += 1;
                    tracing::info!("pool not applied yet: {e:#}");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(e) => return Err(e),
            }
        }
        ctx.out(
            side,
            Phase::Deploy,
            format!("IPAddressPool kindred: {from}-{to}"),
        );
        let w = ctx.sc.workloads_for(&name)?;
        for a in super::kube::apply_yaml(&c, &w, "workloads").await? {
            ctx.out(side, Phase::Deploy, format!("applied {a}"));
        }
        Ok(None)
    })
    .await?;
    ctx.restart_watchers(side);
    Ok(())
}

/// Watch a side's test pods and the Service until cancelled.
async fn watchers(ctx: &Ctx, side: Side) -> Result<()> {
    let client = ctx.client(side).await?;
    let filter = ctx.sc.service.filter().clone();
    let (c1, c2, c3) = (ctx.clone(), ctx.clone(), ctx.clone());
    let ns = pod_namespace(ctx, side);
    let pods = super::kube::watch_pods(client.clone(), &ns, move |w| {
        handle_watched(&c1, side, w);
        !c1.cancel.is_cancelled()
    });
    let svc =
        super::kube::watch_service(client.clone(), &filter.namespace, &filter.name, move |w| {
            handle_watched(&c2, side, w);
            !c2.cancel.is_cancelled()
        });
    let eps = super::kube::watch_endpoints(client, &filter.namespace, &filter.name, move |w| {
        handle_watched(&c3, side, w);
        !c3.cancel.is_cancelled()
    });
    tokio::select! {
        _ = async { tokio::join!(pods, svc, eps) } => {}
        _ = ctx.cancel.cancelled() => {}
    }
    Ok(())
}

fn handle_watched(ctx: &Ctx, side: Side, w: super::kube::Watched) {
    use super::kube::Watched;
    // A pod, Service or endpoint change: kube-proxy is about to rewrite that cluster's rules.
    if !matches!(w, Watched::Error(_))
        && let Some(t) = ctx.triggers.lock().unwrap().as_ref()
    {
        let _ = t.send(watch::Trigger::Cluster(side));
    }
    let mut k = ctx.known.lock().unwrap();
    match w {
        Watched::Pod(p) => {
            k.pods[side].insert(p.name.clone(), p.clone());
            ctx.emit(Event::Pod { side, pod: p });
        }
        Watched::PodGone(name) => {
            k.pods[side].remove(&name);
            ctx.emit(Event::PodRemoved { side, name });
        }
        Watched::Service(s) => {
            k.service[side] = Some(s.clone());
            ctx.emit(Event::Service { side, service: s });
        }
        Watched::Error(e) => ctx.error(Some(side), Pane::Pods, e),
        // Only a reason to read the rules again (above).
        Watched::Endpoints => {}
    }
}

/// Where a probe target points on one side. `lb` is the Service's LoadBalancer IP:port, once
/// the Service is ready for probes: an LB IP, a ready endpoint, and kube-proxy's rules for that
/// IP on every node (each waited for, with what is awaited shown), all within the scenario's
/// `probes.ready_timeout`. No flaky first verdict.
async fn target_address(
    ctx: &Ctx,
    side: Side,
    target: &Target,
    client: &kube::Client,
) -> Result<String> {
    let Target::Addr(a) = target else {
        let svc = ctx.sc.service.filter();
        let say = |m: String| ctx.out(side, Phase::Deploy, m);
        let every = Duration::from_secs(1);
        let wait = Duration::from_secs_f64(ctx.sc.probes.ready_timeout);
        let end = tokio::time::Instant::now() + wait;
        let (ip, port) =
            super::kube::wait_service_ready(client, &svc.namespace, &svc.name, wait, every, say)
                .await?;
        rules_mention(ctx, side, &ip, end).await?;
        return Ok(format!("{ip}:{port}"));
    };
    Ok(a.clone())
}

/// Where a side's test pods run: `default` in a kind cluster, kindred's namespace in a context.
fn pod_namespace(ctx: &Ctx, side: Side) -> String {
    ctx.sc
        .context(side)
        .map_or_else(|| "default".to_string(), |c| c.namespace)
}

/// Wait until kube-proxy's rules on every running node of a side's cluster name `ip`, until
/// `end` (the end of the scenario's `probes.ready_timeout`).
async fn rules_mention(ctx: &Ctx, side: Side, ip: &str, end: tokio::time::Instant) -> Result<()> {
    let context = ctx.sc.context(side);
    let mut said = false;
    loop {
        let which = match &context {
            Some(c) => {
                let missing = existing::missing_ip(ctx, side, c, ip).await;
                (!missing.is_empty()).then(|| missing.join(", "))
            }
            None => kind_missing_ip(ctx, side, ip).await?,
        };
        let Some(which) = which else { return Ok(()) };
        if !said {
            let m = format!("waiting for kube-proxy on {which} to program {ip}");
            ctx.out(side, Phase::Deploy, m);
            said = true;
        }
        if tokio::time::Instant::now() >= end {
            bail!(
                "kube-proxy on {which} has no rules for {ip} after {}s",
                ctx.sc.probes.ready_timeout
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The running nodes of a kind side whose rules do not name `ip` yet (or that it has no running
/// node), as said; `None` when every one does.
async fn kind_missing_ip(ctx: &Ctx, side: Side, ip: &str) -> Result<Option<String>> {
    let docker = ctx.docker().await?;
    let name = ctx.name(side);
    let mode = ctx.sc.cluster.proxy_mode;
    let nodes: Vec<String> = docker
        .kind_nodes()
        .await?
        .into_iter()
        .filter(|n| n.cluster == name && n.running())
        .map(|n| n.name)
        .collect();
    if nodes.is_empty() {
        return Ok(Some(format!("{name} (no running node)")));
    }
    let mut missing = Vec::new();
    for n in &nodes {
        if !docker.read_rules(n, mode).await?.contains(ip) {
            missing.push(n.as_str());
        }
    }
    Ok((!missing.is_empty()).then(|| missing.join(", ")))
}

/// Probe from every running test pod of both sides, in parallel, each with its own timeout:
/// to `target`, or (`None`) to every target of the scenario, one after the other.
async fn probes(ctx: &Ctx, target: Option<Target>) -> Result<()> {
    let targets = match target {
        Some(t) => vec![t],
        None => ctx.sc.probes.targets.clone(),
    };
    // Each side's failures are in its Probes pane already.
    let _ = tokio::join!(
        probe_targets(ctx, Side::Base, &targets),
        probe_targets(ctx, Side::Pr, &targets)
    );
    Ok(())
}

/// Probe one side to each of `targets` in turn; every result, or what could not be probed
/// (each target is probed all the same).
async fn probe_targets(ctx: &Ctx, side: Side, targets: &[Target]) -> Result<Vec<ProbeResult>> {
    let mut all = Vec::new();
    let mut failed = Vec::new();
    for t in targets {
        match probe_side(ctx, side, t).await {
            Ok(r) => all.extend(r),
            Err(e) => failed.push(e),
        }
    }
    if failed.is_empty() {
        Ok(all)
    } else {
        Err(anyhow!(failed.join("; ")))
    }
}

/// Probe from every running test pod of one side; results stream out as they come, and are
/// returned; an error (said in the Probes pane) when the target could not be probed at all.
async fn probe_side(
    ctx: &Ctx,
    side: Side,
    target: &Target,
) -> std::result::Result<Vec<ProbeResult>, String> {
    let fail = |e: String| {
        ctx.error(Some(side), Pane::Probes, e.clone());
        ctx.emit(Event::ProbesDone { side });
        Err(e)
    };
    if let Some(c) = ctx.sc.context(side).filter(|c| !c.deploy) {
        return fail(format!(
            "no test pods: {} and kindred deploys nothing there (deploy: false)",
            read_only(side, &c)
        ));
    }
    let client = match ctx.client(side).await {
        Ok(c) => c,
        Err(e) => return fail(format!("{e:#}")),
    };
    let addr = match target_address(ctx, side, target, &client).await {
        Ok(a) => a,
        Err(e) => {
            ctx.drop_client(side);
            return fail(format!("{target}: {e:#}"));
        }
    };
    ctx.emit(Event::ProbesStarted {
        side,
        target: format!("{target} {addr}"),
    });
    let pods: Vec<String> = ctx.known.lock().unwrap().pods[side]
        .values()
        .filter(|p| p.phase == PodPhase::Running)
        .map(|p| p.name.clone())
        .collect();
    let ask = ctx.ask();
    let ready = ready_endpoints(ctx, side, target, &client).await;
    let container = &ctx.sc.probes.container;
    let ns = pod_namespace(ctx, side);
    let mut runs: FuturesUnordered<_> = pods
        .into_iter()
        .map(|pod| super::kube::probe_pod(&client, &ns, pod, container, &addr, &ask))
        .collect();
    let mut exec_failed = false;
    let mut results = Vec::new();
    while let Some(result) = runs.next().await {
        let mut result = result.unwrap_or_else(|failed| {
            exec_failed = true;
            failed
        });
        result.scenario_target = Some(target.clone());
        result.ready_endpoints = ready;
        results.push(result.clone());
        ctx.emit(Event::Probe { side, result });
    }
    if exec_failed {
        ctx.drop_client(side);
    }
    ctx.emit(Event::ProbesDone { side });
    Ok(results)
}

/// The ready endpoints behind `target` when it is the Service's LoadBalancer (its
/// EndpointSlices, read now); `None` for another target, or when they cannot be read (the
/// result then says nothing of them, and the probe runs all the same).
async fn ready_endpoints(
    ctx: &Ctx,
    side: Side,
    target: &Target,
    client: &kube::Client,
) -> Option<u32> {
    if *target != Target::Lb {
        return None;
    }
    let svc = ctx.sc.service.filter();
    match super::kube::readiness(client, &svc.namespace, &svc.name).await {
        Ok(r) => u32::try_from(r.ready_endpoints).ok(),
        Err(e) => {
            tracing::warn!(
                "{side:?}: ready endpoints of {}: {e:#}",
                ctx.sc.service.qualified_name()
            );
            None
        }
    }
}

fn hash(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// The sides that are kind clusters (not contexts).
fn kind_sides(ctx: &Ctx) -> Vec<Side> {
    Side::BOTH
        .into_iter()
        .filter(|s| !ctx.sc.is_context(*s))
        .collect()
}

/// The running nodes of the kind clusters, by side (Docker is not asked when both sides are
/// contexts).
async fn running_nodes(ctx: &Ctx) -> Result<Vec<(Side, String)>> {
    let sides = kind_sides(ctx);
    if sides.is_empty() {
        return Ok(Vec::new());
    }
    let nodes = ctx.docker().await?.kind_nodes().await?;
    Ok(sides
        .iter()
        .flat_map(|side| {
            let name = ctx.name(*side);
            nodes
                .iter()
                .filter(move |n| n.cluster == name && n.running())
                .map(|n| (*side, n.name.clone()))
        })
        .collect())
}

/// Read the rules of every node of both clusters at once (kind nodes through Docker, a
/// context's through its API server); send the dumps that changed.
async fn rules(ctx: &Ctx) -> Result<()> {
    let kind = async {
        let sides = kind_sides(ctx);
        if sides.is_empty() {
            return Ok(());
        }
        let nodes = running_nodes(ctx).await?;
        // Beside a context side, a kind side without a cluster says so in its Build pane.
        if nodes.is_empty() && sides.len() == 1 {
            return Ok(());
        }
        if nodes.is_empty() {
            let names: Vec<&str> = sides.iter().map(|s| ctx.name(*s)).collect();
            bail!("no running nodes for clusters {}", names.join(" and "));
        }
        let (r, ()) = tokio::join!(read_nodes(ctx, nodes.clone()), kind_metrics(ctx, nodes));
        r
    };
    let contexts = Side::BOTH.map(|side| async move {
        match ctx.sc.context(side) {
            Some(c) => existing::read(ctx, side, &c)
                .await
                .map_err(|e| anyhow!("{}: {e:#}", read_only(side, &c))),
            None => Ok(()),
        }
    });
    let (k, [b, p]) = tokio::join!(kind, async {
        let [b, p] = contexts;
        let (b, p) = tokio::join!(b, p);
        [b, p]
    });
    let failed: Vec<String> = [k, b, p]
        .into_iter()
        .filter_map(|r| r.err().map(|e| format!("{e:#}")))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(failed.join("; ")))
    }
}

/// Whether `what` (a dump, or a node's lack of rules) is new for this node; remembered.
fn changed(ctx: &Ctx, side: Side, node: &str, what: &str) -> bool {
    let h = hash(what);
    let key = (side, node.to_string());
    ctx.known.lock().unwrap().dumps.insert(key, h) != Some(h)
}

/// A node's dump to the front end when it changed, with the time it was read.
fn send_dump(ctx: &Ctx, side: Side, node: String, text: String) {
    if changed(ctx, side, &node, &text) {
        let at_ms = Some(ctx.started.elapsed().as_millis() as u64);
        ctx.emit(Event::RuleDump {
            side,
            node,
            text,
            at_ms,
        });
    }
}

/// Read the rules of these nodes at once; send the dumps that changed (a hash comparison: an
/// unchanged dump costs next to nothing), each with the time it was read.
async fn read_nodes(ctx: &Ctx, nodes: Vec<(Side, String)>) -> Result<()> {
    if nodes.is_empty() {
        return Ok(());
    }
    let docker = ctx.docker().await?;
    let mode = ctx.sc.cluster.proxy_mode;
    let mut reads: FuturesUnordered<_> = nodes
        .into_iter()
        .map(|(side, node)| {
            let d = docker.clone();
            async move {
                let r = d.read_rules(&node, mode).await;
                (side, node, r)
            }
        })
        .collect();
    while let Some((side, node, r)) = reads.next().await {
        match r {
            Ok(text) => send_dump(ctx, side, node, text),
            Err(e) => ctx.error(Some(side), Pane::Diff, format!("{node}: {e:#}")),
        }
    }
    Ok(())
}

/// How long a node's kube-proxy has to answer for its metrics.
const METRICS_LIMIT: Duration = Duration::from_secs(5);

/// Now, in Unix milliseconds (the clock a metrics text's last sync is compared with).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A node's metrics text summed up, or what was wrong with it (its line), as an event.
fn send_metrics(ctx: &Ctx, side: Side, node: String, text: Result<String>) {
    let read = match text {
        Ok(t) => match super::metrics::ProxyMetrics::of(&t, now_ms()) {
            Ok(m) => MetricsRead::Read(m),
            Err(e) => MetricsRead::Failed(format!("{node}: kube-proxy's metrics, {e}")),
        },
        Err(e) => MetricsRead::Failed(format!("{e:#}")),
    };
    if let MetricsRead::Failed(why) = &read {
        tracing::warn!(%why, "kube-proxy metrics");
    }
    ctx.emit(Event::ProxyMetrics { side, node, read });
}

/// Every kind node's kube-proxy metrics at once, through its node container.
async fn kind_metrics(ctx: &Ctx, nodes: Vec<(Side, String)>) {
    let docker = match ctx.docker().await {
        Ok(d) => d,
        Err(e) => {
            for (side, node) in nodes {
                send_metrics(ctx, side, node, Err(anyhow!("Docker: {e:#}")));
            }
            return;
        }
    };
    let mut reads: FuturesUnordered<_> = nodes
        .into_iter()
        .map(|(side, node)| {
            let d = docker.clone();
            async move {
                let r = d.read_metrics(&node, METRICS_LIMIT).await;
                (side, node, r)
            }
        })
        .collect();
    while let Some((side, node, r)) = reads.next().await {
        send_metrics(ctx, side, node, r);
    }
}

/// Delete the clusters kindred created; others are reported and left alone.
async fn delete(ctx: &Ctx) -> Result<()> {
    for side in Side::BOTH {
        if let Some(c) = ctx.sc.context(side) {
            existing::delete(ctx, side, &c).await?;
        }
    }
    let sides = kind_sides(ctx);
    if sides.is_empty() {
        return Ok(());
    }
    let docker = ctx.docker().await?;
    let path = default_path();
    for side in sides {
        let name = ctx.name(side).to_string();
        let nodes = docker.kind_nodes().await?;
        if !nodes.iter().any(|n| n.cluster == name) {
            continue;
        }
        if !Owned::load(&path)?.created(&name, &nodes) {
            ctx.error(
                Some(side),
                Pane::Build,
                format!("cluster {name} was not created by kindred: left alone"),
            );
            continue;
        }
        ctx.stop_watchers(side);
        ctx.kind
            .delete_cluster(&name, |l| ctx.out(side, Phase::Create, l), &ctx.cancel)
            .await?;
        ctx.drop_client(side);
        Owned::update(&path, |o| o.forget(&name))?;
        for p in [Phase::Deploy, Phase::Create] {
            ctx.phase(side, p, PhaseState::Pending);
        }
        let gone = std::mem::take(&mut ctx.known.lock().unwrap().pods[side]);
        for name in gone.into_keys() {
            ctx.emit(Event::PodRemoved { side, name });
        }
    }
    Ok(())
}

/// The quick preflight: its warnings and failures in the Build pane, before any work starts.
async fn preflight(ctx: &Ctx) {
    use super::doctor::{Depth, Status};
    let r = super::doctor::run(&ctx.sc, &ctx.kind, Depth::Quick).await;
    for c in r.checks.iter().filter(|c| c.status != Status::Ok) {
        let fix = c.fix.as_deref().unwrap_or("");
        let msg = format!("doctor: {}: {} (fix: {fix})", c.name, c.message);
        if c.status == Status::Fail {
            ctx.error(None, Pane::Build, msg);
        } else {
            for side in Side::BOTH {
                ctx.out(side, Phase::Build, format!("warning: {msg}"));
            }
        }
    }
    *ctx.preflight.lock().unwrap() = Some(r);
}

/// On start: the preflight; then find existing clusters and their nodes; watch their pods;
/// read their rules.
async fn attach(ctx: &Ctx) -> Result<()> {
    let contexts = Side::BOTH.map(|side| async move {
        if let Some(c) = ctx.sc.context(side) {
            let r = existing::attach(ctx, side, &c).await;
            report(ctx, Some(side), Pane::Build, r);
        }
    });
    let [b, p] = contexts;
    let (kind, _, _) = tokio::join!(attach_kind(ctx), b, p);
    // A context side is read whatever became of the kind side beside it.
    let read = if matches!(kind, Ok(true)) || kind_sides(ctx).len() < 2 {
        rules(ctx).await
    } else {
        Ok(())
    };
    kind?;
    read
}

/// At start, for the kind sides: the preflight; the clusters that exist, their nodes and
/// watchers; whether any exists. Docker and kind are not asked when both sides are contexts.
async fn attach_kind(ctx: &Ctx) -> Result<bool> {
    let sides = kind_sides(ctx);
    preflight(ctx).await;
    if sides.is_empty() {
        return Ok(false);
    }
    let mut present = false;
    let docker = ctx.docker().await?;
    let nodes = docker.kind_nodes().await?;
    for side in sides {
        let name = ctx.name(side);
        let mine: Vec<_> = nodes.iter().filter(|n| n.cluster == name).collect();
        if mine.is_empty() {
            ctx.out(
                side,
                Phase::Create,
                format!("no cluster {name}: B build, c create, d deploy"),
            );
            continue;
        }
        ctx.phase(
            side,
            Phase::Create,
            PhaseState::Skipped {
                reason: "cluster exists".into(),
            },
        );
        for n in mine {
            ctx.emit(Event::Node {
                side,
                name: n.name.clone(),
                role: n.role,
                ip: n.ips.first().map(|(_, ip)| ip.clone()),
            });
        }
        ctx.restart_watchers(side);
        present = true;
    }
    Ok(present)
}

pub struct LiveBackend {
    shared: Shared,
    tx: Option<UnboundedSender<Event>>,
    jobs: HashMap<Job, Task>,
    /// The debug pods of context sides were removed (on the first shutdown).
    cleaned: bool,
}

impl LiveBackend {
    pub fn new(sc: Scenario, kind: Kind) -> LiveBackend {
        LiveBackend {
            shared: Shared {
                sc: Arc::new(sc),
                kind,
                known: Arc::default(),
                docker: Arc::default(),
                clients: Arc::default(),
                watchers: Arc::default(),
                preflight: Arc::default(),
                triggers: Arc::default(),
                started: std::time::Instant::now(),
                repeat: Arc::default(),
            },
            tx: None,
            jobs: HashMap::new(),
            cleaned: false,
        }
    }

    /// A command whose tools the preflight found missing says why instead of starting.
    fn blocked(&self, cmd: &Command) -> Option<String> {
        let pre = self.shared.preflight.lock().unwrap();
        let r = pre.as_ref()?;
        let c = needs(cmd).iter().find_map(|n| r.failed(*n))?;
        let fix = c.fix.as_deref().unwrap_or("");
        Some(format!(
            "{cmd:?} cannot start: {}: {} (fix: {fix})",
            c.name, c.message
        ))
    }

    /// `sides` without its context sides, which are told they are read only (in the Build
    /// pane); `None` when no side is left (the job is then over, `Finished` says why).
    fn kind_only(&self, job: Job, sides: Sides) -> Option<Sides> {
        let sc = &self.shared.sc;
        let (ctx, kind): (Vec<Side>, Vec<Side>) =
            sides.list().iter().partition(|s| sc.is_context(**s));
        if ctx.is_empty() {
            return Some(sides);
        }
        let refused: Vec<String> = ctx
            .iter()
            .filter_map(|s| sc.context(*s).map(|c| read_only(*s, &c)))
            .collect();
        let why = format!(
            "{}: kindred never builds, swaps or recreates it",
            refused.join("; ")
        );
        let tx = self.tx.as_ref()?;
        let _ = tx.send(Event::Error {
            side: None,
            pane: Pane::Build,
            message: why.clone(),
        });
        match kind[..] {
            [] => {
                let error = Some(why);
                let _ = tx.send(Event::Finished { job, error });
                None
            }
            [s] => Some(Sides::from(s)),
            _ => Some(sides),
        }
    }

    /// Start `job` (restarting it when it runs already). When it runs to its end, its error
    /// goes to `pane` (when given) and `Finished` is sent.
    fn spawn<F, Fut>(&mut self, job: Job, pane: Option<Pane>, f: F)
    where
        F: FnOnce(Ctx) -> Fut,
        Fut: std::future::Future<Output = Result<()>> + Send + 'static,
    {
        let Some(tx) = self.tx.clone() else { return };
        if let Some(t) = self.jobs.remove(&job) {
            stop(t);
        }
        let cancel = CancellationToken::new();
        let ctx = Ctx {
            shared: self.shared.clone(),
            tx,
            cancel: cancel.clone(),
        };
        let fut = f(ctx.clone());
        let handle = tokio::spawn(async move {
            let r = fut.await;
            if ctx.cancel.is_cancelled() {
                return;
            }
            let error = r.as_ref().err().map(|e| format!("{e:#}"));
            if let Some(p) = pane {
                report(&ctx, None, p, r);
            }
            ctx.emit(Event::Finished { job, error });
        });
        self.jobs.retain(|_, (_, h)| !h.is_finished());
        self.jobs.insert(job, (cancel, handle));
    }

    /// Start `job` for both sides, at once or one after the other; it fails when either side
    /// fails.
    fn both<Fut>(&mut self, job: Job, parallel: bool, f: fn(Ctx, Side) -> Fut)
    where
        Fut: std::future::Future<Output = Result<()>> + Send + 'static,
    {
        self.spawn(job, None, move |ctx| async move {
            for_sides(&ctx, Sides::Both, parallel, f).await
        });
    }
}

/// Run `f` for each of `sides`, at once or one after the other; the errors of the sides that
/// failed, each named by its cluster.
async fn for_sides<F, Fut>(ctx: &Ctx, sides: Sides, parallel: bool, f: F) -> Result<()>
where
    F: Fn(Ctx, Side) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut results = Vec::new();
    if parallel {
        let runs = sides.list().iter().map(|s| f(ctx.clone(), *s));
        results.extend(
            sides
                .list()
                .iter()
                .copied()
                .zip(futures::future::join_all(runs).await),
        );
    } else {
        for s in sides.list() {
            results.push((*s, f(ctx.clone(), *s).await));
        }
    }
    let failed: Vec<String> = results
        .into_iter()
        .filter_map(|(s, r)| r.err().map(|e| format!("{}: {e:#}", ctx.name(s))))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(failed.join("; ")))
    }
}

/// After the clusters of `sides` changed: the rules of every node, and those sides' probes
/// again (errors go to their panes).
async fn reread(ctx: &Ctx, sides: Sides) {
    if ctx.cancel.is_cancelled() {
        return;
    }
    let r = rules(ctx).await;
    report(ctx, None, Pane::Diff, r);
    let targets = &ctx.sc.probes.targets;
    let runs = sides.list().iter().map(|s| probe_targets(ctx, *s, targets));
    futures::future::join_all(runs).await;
}

/// The job a command runs.
fn job_of(cmd: &Command) -> Option<Job> {
    Some(match cmd {
        Command::Build { .. } => Job::Build,
        Command::SwapProxy { .. } => Job::Swap,
        Command::CreateClusters => Job::Create,
        Command::Deploy => Job::Deploy,
        Command::Probe { .. } => Job::Probes,
        Command::RefreshRules => Job::Rules,
        Command::DeleteClusters => Job::Delete,
        Command::Bisect(_) => Job::Bisect,
        Command::SetWatch(_) | Command::Cancel => return None,
    })
}

fn report(ctx: &Ctx, side: Option<Side>, pane: Pane, r: Result<impl Sized>) {
    if let Err(e) = r
        && !ctx.cancel.is_cancelled()
    {
        ctx.error(side, pane, format!("{e:#}"));
    }
}

/// What the front end is told about the session: the scenario's sides, Service, probe target
/// and expectations.
pub fn session(sc: &Scenario) -> SessionInfo {
    let info = |side: Side| {
        let s = sc.side(side);
        match &s.context {
            Some(c) => SideInfo {
                name: s.name.clone(),
                git_ref: None,
                image: None,
                context: Some(c.clone()),
                namespace: sc.context(side).filter(|c| c.deploy).map(|c| c.namespace),
            },
            None => SideInfo {
                name: s.name.clone(),
                git_ref: Some(s.git_ref.clone()),
                image: Some(s.image.clone()),
                context: None,
                namespace: None,
            },
        }
    };
    SessionInfo {
        base: info(Side::Base),
        pr: info(Side::Pr),
        service: sc.service.clone(),
        probe_target: sc.probes.targets[0].clone(),
        probe_targets: sc.probes.targets.clone(),
        expectations: sc
            .expectations()
            .into_iter()
            .map(|e| Expectation {
                side: e.side,
                source: e.source,
                outcome: e.outcome.outcome,
                target: e.target,
                min_rate: e.outcome.min_rate,
            })
            .collect(),
        banner: None,
        proxy_mode: Some(sc.cluster.proxy_mode),
    }
}

impl Backend for LiveBackend {
    fn start(&mut self, events: UnboundedSender<Event>) {
        let _ = events.send(Event::Session(Box::new(session(&self.shared.sc))));
        self.tx = Some(events);
        self.spawn(Job::Attach, Some(Pane::Build), |ctx| async move {
            attach(&ctx).await
        });
    }

    fn send(&mut self, cmd: Command) {
        tracing::info!(?cmd, "live command");
        if let Some(why) = self.blocked(&cmd) {
            if let Some(tx) = &self.tx {
                let _ = tx.send(Event::Error {
                    side: None,
                    pane: Pane::Build,
                    message: why.clone(),
                });
                if let Some(job) = job_of(&cmd) {
                    let _ = tx.send(Event::Finished {
                        job,
                        error: Some(why),
                    });
                }
            }
            return;
        }
        match cmd {
            Command::Build { sides, recreate } => {
                let Some(sides) = self.kind_only(Job::Build, sides) else {
                    return;
                };
                let parallel = self.shared.sc.build.parallel;
                self.spawn(Job::Build, None, move |ctx| async move {
                    if !recreate {
                        return for_sides(&ctx, sides, parallel, |c, s| async move {
                            build::build(&c, s).await
                        })
                        .await;
                    }
                    let again = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let a = again.clone();
                    let r = for_sides(&ctx, sides, parallel, move |c, s| {
                        let a = a.clone();
                        async move {
                            let recreated = build::rebuild(&c, s).await?;
                            a.fetch_or(recreated, std::sync::atomic::Ordering::Relaxed);
                            Ok(())
                        }
                    })
                    .await;
                    if again.load(std::sync::atomic::Ordering::Relaxed) {
                        reread(&ctx, sides).await;
                    }
                    r
                })
            }
            Command::SwapProxy { sides } => {
                let Some(sides) = self.kind_only(Job::Swap, sides) else {
                    return;
                };
                self.spawn(Job::Swap, None, move |ctx| async move {
                    // One at a time: each compiles, and the host has few cores to share.
                    let r = for_sides(&ctx, sides, false, |c, s| async move {
                        swap::swap(&c, s, super::held::Change::Swap).await
                    })
                    .await;
                    reread(&ctx, sides).await;
                    r
                })
            }
            Command::CreateClusters => {
                self.both(Job::Create, true, |c, s| async move { create(&c, s).await })
            }
            Command::Deploy => {
                self.both(Job::Deploy, true, |c, s| async move { deploy(&c, s).await })
            }
            Command::Probe { target, repeat } => {
                if let Some(n) = repeat {
                    *self.shared.repeat.lock().unwrap() = Some(n.clamp(1, MAX_TRIES));
                }
                self.spawn(Job::Probes, Some(Pane::Probes), |ctx| async move {
                    probes(&ctx, target).await
                })
            }
            Command::RefreshRules => self.spawn(Job::Rules, Some(Pane::Diff), |ctx| async move {
                rules(&ctx).await
            }),
            Command::SetWatch(true) => self.spawn(Job::Watch, None, watch::watch),
            Command::SetWatch(false) => {
                if let Some(t) = self.jobs.remove(&Job::Watch) {
                    stop(t);
                }
            }
            Command::DeleteClusters => {
                self.spawn(Job::Delete, Some(Pane::Build), |ctx| async move {
                    delete(&ctx).await
                })
            }
            Command::Bisect(req) => {
                // Only the PR side is bisected: a context there is refused, saying why.
                if self.kind_only(Job::Bisect, Sides::Pr).is_none() {
                    return;
                }
                self.spawn(Job::Bisect, Some(Pane::Build), |ctx| async move {
                    bisect::bisect(&ctx, *req).await
                })
            }
            Command::Cancel => {
                for (tok, _) in self.jobs.values() {
                    tok.cancel();
                }
            }
        }
    }

    fn shutdown(&mut self) {
        for (_, t) in self.jobs.drain() {
            stop(t);
        }
        if !std::mem::replace(&mut self.cleaned, true) {
            existing::cleanup_blocking(&self.shared.sc);
        }
        let mut w = self.shared.watchers.lock().unwrap();
        for side in Side::BOTH {
            if let Some(t) = w[side].take() {
                stop(t);
            }
        }
    }
}

impl Drop for LiveBackend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lb_ranges_are_disjoint_and_inside_the_subnet() {
        assert_eq!(
            lb_range("172.18.0.0/16", Side::Base).unwrap(),
            (
                "172.18.255.200".parse().unwrap(),
                "172.18.255.209".parse().unwrap()
            )
        );
        assert_eq!(
            lb_range("172.18.0.0/16", Side::Pr).unwrap(),
            (
                "172.18.255.210".parse().unwrap(),
                "172.18.255.219".parse().unwrap()
            )
        );
        assert_eq!(
            lb_range("192.168.5.0/24", Side::Pr).unwrap().1,
            "192.168.5.219".parse::<Ipv4Addr>().unwrap()
        );
        assert!(lb_range("10.0.0.0/28", Side::Base).is_err());
        assert!(lb_range("fc00::/64", Side::Base).is_err());
    }

    /// A state dir the preflight refused (shared, someone else's, read-only) stops every
    /// command that writes in it, naming it; reading rules does not need it.
    /// `Command::Probe { repeat: Some(n) }` sets the tries of every later probe (clamped to 1 to
    /// 1000), `None` keeps them; before any, the scenario's `probes.repeat` and `path` ask.
    #[test]
    fn probe_repeat_is_remembered_for_the_session() {
        use crate::backend::Backend;
        let mut sc = Scenario::builtin();
        sc.probes.repeat = 4;
        sc.probes.path = "/x".into();
        let mut b = LiveBackend::new(sc, Kind::default());
        let ctx_ask = |b: &LiveBackend| {
            let (tx, _) = tokio::sync::mpsc::unbounded_channel();
            Ctx {
                shared: b.shared.clone(),
                tx,
                cancel: CancellationToken::new(),
            }
            .ask()
        };
        let a = ctx_ask(&b);
        assert_eq!((a.repeat, a.path.as_str()), (4, "/x"));
        let probe = |repeat| Command::Probe {
            target: None,
            repeat,
        };
        b.send(probe(Some(7)));
        assert_eq!(ctx_ask(&b).repeat, 7);
        b.send(probe(None));
        assert_eq!(ctx_ask(&b).repeat, 7);
        b.send(probe(Some(5000)));
        assert_eq!(ctx_ask(&b).repeat, MAX_TRIES);
        b.send(probe(Some(0)));
        assert_eq!(ctx_ask(&b).repeat, 1);
    }

    #[test]
    fn a_refused_state_dir_blocks_what_writes_there() {
        use super::super::doctor::{Check, Report, Status};
        let b = LiveBackend::new(Scenario::builtin(), Kind::default());
        *b.shared.preflight.lock().unwrap() = Some(Report {
            ok: false,
            checks: vec![Check {
                name: super::super::doctor::CheckName::State,
                status: Status::Fail,
                message: "/tmp/kindred: kindred's state dir may be written by anyone".into(),
                fix: Some("chmod 700 /tmp/kindred".into()),
            }],
        });
        let build = Command::Build {
            sides: crate::model::Sides::Both,
            recreate: false,
        };
        for cmd in [
            build,
            Command::CreateClusters,
            Command::DeleteClusters,
            Command::Deploy,
        ] {
            let why = b
                .blocked(&cmd)
                .unwrap_or_else(|| panic!("{cmd:?} not blocked"));
            assert!(
                why.contains("state: /tmp/kindred") && why.contains("chmod 700"),
                "{why}"
            );
        }
        assert_eq!(b.blocked(&Command::RefreshRules), None);
    }
}
