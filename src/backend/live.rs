//! The live backend: kind (CLI), Docker (bollard) and the API server (kube-rs) for both sides.
//! Each command runs as one job per kind of work; a command already running is cancelled and
//! restarted, never queued. Everything it learns goes to the dashboard as events.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Backend;
use super::docker::{Docker, commit_tag};
use super::event::{Command, Event, Phase, PhaseState, PodInfo, ProbeResult, ServiceInfo, Side};
use super::kind::{Kind, Progress, progress};
use super::owned::{Owned, default_path};
use super::probe::{Timeouts, curl_argv, parse_curl};
use crate::scenario::Scenario;

/// Seconds between rounds in watch mode.
pub const WATCH_PERIOD: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Job {
    Attach,
    Build,
    Create,
    Deploy,
    Probes,
    Rules,
    Watch,
    Delete,
}

/// What the backend knows that its jobs share.
#[derive(Default)]
struct Known {
    pods: [BTreeMap<String, PodInfo>; 2],
    service: [Option<ServiceInfo>; 2],
    /// Last rule dump sent per node, to send only changes.
    dumps: HashMap<String, u64>,
}

/// Everything a job needs.
#[derive(Clone)]
pub struct Ctx {
    pub sc: Arc<Scenario>,
    pub kind: Kind,
    pub tx: UnboundedSender<Event>,
    known: Arc<Mutex<Known>>,
    docker: Arc<std::sync::OnceLock<Docker>>,
    pub cancel: CancellationToken,
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
    fn error(&self, side: Option<Side>, pane: &str, message: impl Into<String>) {
        self.emit(Event::Error {
            side,
            pane: pane.into(),
            message: message.into(),
        });
    }
    fn name(&self, side: Side) -> &str {
        &self.sc.side(side).name
    }
    /// One Docker connection for the backend's life (it remembers each node's save tool and
    /// keeps a rules session per node).
    fn docker(&self) -> Result<Docker> {
        if let Some(d) = self.docker.get() {
            return Ok(d.clone());
        }
        let d = Docker::connect()?;
        Ok(self.docker.get_or_init(|| d).clone())
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

fn worktree_dir(side: &str, sha: &str) -> PathBuf {
    crate::logging::state_dir()
        .join("worktrees")
        .join(format!("{side}-{}", &sha[..sha.len().min(12)]))
}

/// Build a side's node image (skipped when an image for the exact commit exists).
pub async fn build(ctx: &Ctx, side: Side) -> Result<()> {
    ctx.run_phase(side, Phase::Build, || async {
        let spec = ctx.sc.side(side);
        let source = ctx.sc.resolve(&spec.source);
        super::git::check_source(&source)?;
        ctx.out(
            side,
            Phase::Build,
            format!("resolving {} in {}", spec.git_ref, source.display()),
        );
        let sha = super::git::resolve(&source, &spec.git_ref).await?;
        ctx.out(
            side,
            Phase::Build,
            format!("{} is {}", spec.git_ref, &sha[..12]),
        );
        let docker = ctx.docker()?;
        let by_commit = commit_tag(&sha);
        let built = Event::Built {
            side,
            commit: sha.clone(),
            image: spec.image.clone(),
        };
        if docker.image_exists(&by_commit).await? {
            docker.tag(&by_commit, &spec.image).await?;
            ctx.emit(built);
            return Ok(Some(format!("image {by_commit} exists")));
        }
        let dir = super::git::worktree(&source, &sha, &worktree_dir(&spec.name, &sha)).await?;
        ctx.out(side, Phase::Build, format!("worktree {}", dir.display()));
        ctx.kind
            .build_node_image(
                &dir,
                &spec.image,
                |l| {
                    if let Some(Progress::Stage(s)) = progress(l) {
                        tracing::info!(side = ?side, stage = s, "build");
                    }
                    ctx.out(side, Phase::Build, l);
                },
                &ctx.cancel,
            )
            .await?;
        docker.tag(&spec.image, &by_commit).await?;
        ctx.emit(built);
        Ok(None)
    })
    .await
}

/// Create (or recreate) a side's cluster. An existing cluster kindred did not create is left
/// alone and reported.
pub async fn create(ctx: &Ctx, side: Side) -> Result<()> {
    ctx.run_phase(side, Phase::Create, || async {
        let name = ctx.name(side).to_string();
        let docker = ctx.docker()?;
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
        let cfg = crate::logging::state_dir().join(format!("{name}-kind.yaml"));
        std::fs::create_dir_all(crate::logging::state_dir())?;
        std::fs::write(&cfg, ctx.sc.kind_config())?;
        let image = ctx.sc.side(side).image.clone();
        ctx.kind
            .create_cluster(&name, &image, &cfg, |l| ctx.out(side, Phase::Create, l), &ctx.cancel)
            .await?;
        let nodes = docker.cluster_nodes(&name).await?;
        let cp = nodes
            .iter()
            .find(|n| n.role == "control-plane")
            .ok_or_else(|| anyhow!("cluster {name} has no control-plane container"))?;
        let mut owned = Owned::load(&path)?;
        owned.record(&name, &cp.id);
        owned.save(&path)?;
        for n in &nodes {
            ctx.emit(Event::Node {
                side,
                name: n.name.clone(),
                role: n.role.clone(),
                ip: n.ips.first().map(|(_, ip)| ip.clone()),
            });
        }
        Ok(None)
    })
    .await
}

/// Read MetalLB's manifests: a local file, or a URL fetched once with curl into the state dir.
async fn metallb_manifest(ctx: &Ctx) -> Result<String> {
    let m = ctx.sc.load_balancer.manifest.clone().ok_or_else(|| {
        anyhow!(
            "load_balancer.manifest is not set: give MetalLB's metallb-native.yaml (URL or file)"
        )
    })?;
    if m.starts_with("https://") || m.starts_with("http://") {
        let cache = crate::logging::state_dir()
            .join("cache")
            .join(m.rsplit('/').take(3).collect::<Vec<_>>().join("-"));
        if let Ok(t) = std::fs::read_to_string(&cache) {
            return Ok(t);
        }
        std::fs::create_dir_all(cache.parent().unwrap())?;
        let out = tokio::process::Command::new("curl")
            .args(["-fsSL", "--max-time", "60", "-o"])
            .arg(&cache)
            .arg(&m)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| anyhow!("running curl: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_file(&cache);
            bail!(
                "fetching {m}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        return Ok(std::fs::read_to_string(&cache)?);
    }
    let p = ctx.sc.resolve(&m);
    std::fs::read_to_string(&p).map_err(|e| anyhow!("load_balancer.manifest: {}: {e}", p.display()))
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

fn pool_yaml(from: Ipv4Addr, to: Ipv4Addr) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: kindred\n  namespace: metallb-system\nspec:\n  addresses:\n  - {from}-{to}\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: kindred\n  namespace: metallb-system\nspec:\n  ipAddressPools: [kindred]\n"
    )
}

/// Deploy MetalLB with its pool and the workloads, then watch pods and the Service.
pub async fn deploy(ctx: &Ctx, side: Side) -> Result<kube::Client> {
    let mut client = None;
    ctx.run_phase(side, Phase::Deploy, || async {
        let name = ctx.name(side).to_string();
        let c = super::kube::client_for(&ctx.kind, &name).await?;
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
            .docker()?
            .network_subnet(&ctx.sc.load_balancer.network)
            .await?;
        let (from, to) = lb_range(&subnet, side)?;
        // MetalLB's webhook answers a little after the controller is ready: retry for a while.
        let pool = pool_yaml(from, to);
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
        client = Some(c);
        Ok(None)
    })
    .await?;
    client.ok_or_else(|| anyhow!("no client"))
}

/// Watch a side's test pods and the Service until cancelled.
pub async fn watchers(ctx: &Ctx, side: Side) -> Result<()> {
    let name = ctx.name(side).to_string();
    let client = super::kube::client_for(&ctx.kind, &name).await?;
    let filter = crate::rules::ServiceFilter::parse(&ctx.sc.service).map_err(|e| anyhow!(e))?;
    let (c1, c2) = (ctx.clone(), ctx.clone());
    let pods = super::kube::watch_pods(client.clone(), "default", move |w| {
        handle_watched(&c1, side, w);
        !c1.cancel.is_cancelled()
    });
    let svc = super::kube::watch_service(client, &filter.namespace, &filter.name, move |w| {
        handle_watched(&c2, side, w);
        !c2.cancel.is_cancelled()
    });
    tokio::select! {
        _ = async { tokio::join!(pods, svc) } => {}
        _ = ctx.cancel.cancelled() => {}
    }
    Ok(())
}

fn handle_watched(ctx: &Ctx, side: Side, w: super::kube::Watched) {
    use super::kube::Watched;
    let mut k = ctx.known.lock().unwrap();
    match w {
        Watched::Pod(p) => {
            k.pods[side.index()].insert(p.name.clone(), p.clone());
            ctx.emit(Event::Pod { side, pod: p });
        }
        Watched::PodGone(name) => {
            k.pods[side.index()].remove(&name);
            ctx.emit(Event::PodRemoved { side, name });
        }
        Watched::Service(s) => {
            k.service[side.index()] = Some(s.clone());
            ctx.emit(Event::Service { side, service: s });
        }
        Watched::Error(e) => ctx.error(Some(side), "pods", e),
    }
}

/// Where a probe target points on one side: `lb` is the Service's LoadBalancer IP:port.
fn target_address(ctx: &Ctx, side: Side, target: &str) -> Result<String> {
    if target != "lb" {
        return Ok(target.to_string());
    }
    let k = ctx.known.lock().unwrap();
    match &k.service[side.index()] {
        Some(ServiceInfo {
            lb_ip: Some(ip),
            port,
            ..
        }) => Ok(format!("{ip}:{port}")),
        _ => bail!("the Service has no LoadBalancer IP yet"),
    }
}

/// Probe from every running test pod of both sides, in parallel, each with its own timeout.
pub async fn probes(ctx: &Ctx, target: Option<String>) -> Result<Vec<(Side, ProbeResult)>> {
    let target = target.unwrap_or_else(|| ctx.sc.probes.targets[0].clone());
    let t = Timeouts {
        connect: ctx.sc.probes.connect_timeout,
        total: ctx.sc.probes.timeout,
    };
    let mut all = Vec::new();
    let sides = Side::BOTH.map(|side| {
        let ctx = ctx.clone();
        let target = target.clone();
        async move {
            let mut results = Vec::new();
            let addr = match target_address(&ctx, side, &target) {
                Ok(a) => a,
                Err(e) => {
                    ctx.error(Some(side), "probes", format!("{target}: {e}"));
                    ctx.emit(Event::ProbesDone { side });
                    return results;
                }
            };
            ctx.emit(Event::ProbesStarted {
                side,
                target: format!("{target} {addr}"),
            });
            let client = match super::kube::client_for(&ctx.kind, ctx.name(side)).await {
                Ok(c) => c,
                Err(e) => {
                    ctx.error(Some(side), "probes", format!("{e:#}"));
                    ctx.emit(Event::ProbesDone { side });
                    return results;
                }
            };
            let pods: Vec<PodInfo> = ctx.known.lock().unwrap().pods[side.index()]
                .values()
                .filter(|p| p.phase == "Running")
                .cloned()
                .collect();
            let argv = curl_argv(&addr, t);
            let limit = Duration::from_secs_f64(t.total + 10.0);
            let container = ctx.sc.probes.container.clone();
            let mut runs: FuturesUnordered<_> = pods
                .iter()
                .map(|p| {
                    let (client, argv, name, container) = (
                        client.clone(),
                        argv.clone(),
                        p.name.clone(),
                        container.clone(),
                    );
                    let addr = addr.clone();
                    async move {
                        let r = super::kube::exec_in(
                            &client,
                            "default",
                            &name,
                            Some(&container),
                            &argv,
                            limit,
                        )
                        .await;
                        match r {
                            Ok(o) => parse_curl(&name, &addr, &o.stdout, &o.stderr, o.code),
                            Err(e) => ProbeResult {
                                source: name,
                                target: addr,
                                outcome: super::event::Outcome::Fail,
                                http_status: None,
                                latency_ms: None,
                                detail: Some(format!("{e:#}")),
                            },
                        }
                    }
                })
                .collect();
            while let Some(r) = runs.next().await {
                ctx.emit(Event::Probe {
                    side,
                    result: r.clone(),
                });
                results.push(r);
            }
            ctx.emit(Event::ProbesDone { side });
            results
        }
    });
    let [a, b] = sides;
    let (ra, rb) = tokio::join!(a, b);
    all.extend(ra.into_iter().map(|r| (Side::Base, r)));
    all.extend(rb.into_iter().map(|r| (Side::Pr, r)));
    Ok(all)
}

fn hash(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// Read the rules of every node of both clusters at once; send the dumps that changed.
pub async fn rules(ctx: &Ctx) -> Result<()> {
    let docker = ctx.docker()?;
    let nodes = docker.kind_nodes().await?;
    let mode = ctx.sc.cluster.proxy_mode;
    let mut reads = FuturesUnordered::new();
    for side in Side::BOTH {
        let name = ctx.name(side);
        for n in nodes
            .iter()
            .filter(|n| n.cluster == name && n.state == "running")
        {
            let d = docker.clone();
            let node = n.name.clone();
            reads.push(async move { (side, node.clone(), d.read_rules(&node, mode).await) });
        }
    }
    if reads.is_empty() {
        bail!(
            "no running nodes for clusters {} and {}",
            ctx.name(Side::Base),
            ctx.name(Side::Pr)
        );
    }
    while let Some((side, node, r)) = reads.next().await {
        match r {
            Ok(text) => {
                let h = hash(&text);
                let changed = ctx.known.lock().unwrap().dumps.insert(node.clone(), h) != Some(h);
                if changed {
                    ctx.emit(Event::RuleDump { side, node, text });
                }
            }
            Err(e) => ctx.error(Some(side), "diff", format!("{node}: {e:#}")),
        }
    }
    Ok(())
}

/// Delete the clusters kindred created; others are reported and left alone.
pub async fn delete(ctx: &Ctx) -> Result<()> {
    let docker = ctx.docker()?;
    let path = default_path();
    for side in Side::BOTH {
        let name = ctx.name(side).to_string();
        let nodes = docker.kind_nodes().await?;
        if !nodes.iter().any(|n| n.cluster == name) {
            continue;
        }
        let mut owned = Owned::load(&path)?;
        if !owned.created(&name, &nodes) {
            ctx.error(
                Some(side),
                "build",
                format!("cluster {name} was not created by kindred: left alone"),
            );
            continue;
        }
        ctx.kind
            .delete_cluster(&name, |l| ctx.out(side, Phase::Create, l), &ctx.cancel)
            .await?;
        owned.forget(&name);
        owned.save(&path)?;
        for p in [Phase::Deploy, Phase::Create] {
            ctx.phase(side, p, PhaseState::Pending);
        }
        let gone: Vec<String> = ctx.known.lock().unwrap().pods[side.index()]
            .keys()
            .cloned()
            .collect();
        for name in gone {
            ctx.emit(Event::PodRemoved { side, name });
        }
        ctx.known.lock().unwrap().pods[side.index()].clear();
    }
    Ok(())
}

/// On start: find existing clusters, their nodes; watch pods; read rules.
async fn attach(ctx: &Ctx) -> Result<Vec<Side>> {
    let docker = ctx.docker()?;
    docker.ping().await?;
    let nodes = docker.kind_nodes().await?;
    let mut present = Vec::new();
    for side in Side::BOTH {
        let name = ctx.name(side);
        let mine: Vec<_> = nodes.iter().filter(|n| n.cluster == name).collect();
        if mine.is_empty() {
            ctx.out(
                side,
                Phase::Create,
                format!("no cluster {name}: b build, c create, d deploy"),
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
                role: n.role.clone(),
                ip: n.ips.first().map(|(_, ip)| ip.clone()),
            });
        }
        present.push(side);
    }
    Ok(present)
}

pub struct LiveBackend {
    sc: Arc<Scenario>,
    kind: Kind,
    tx: Option<UnboundedSender<Event>>,
    known: Arc<Mutex<Known>>,
    docker: Arc<std::sync::OnceLock<Docker>>,
    jobs: HashMap<(Job, Option<Side>), (CancellationToken, JoinHandle<()>)>,
}

impl LiveBackend {
    pub fn new(sc: Scenario, kind: Kind) -> LiveBackend {
        LiveBackend {
            sc: Arc::new(sc),
            kind,
            tx: None,
            known: Arc::default(),
            docker: Arc::default(),
            jobs: HashMap::new(),
        }
    }

    /// A context for work outside the job table (headless use).
    pub fn ctx(&self, tx: UnboundedSender<Event>, cancel: CancellationToken) -> Ctx {
        Ctx {
            sc: self.sc.clone(),
            kind: self.kind.clone(),
            tx,
            known: self.known.clone(),
            docker: self.docker.clone(),
            cancel,
        }
    }

    /// Start `job` (restarting it when it runs already).
    fn spawn<F, Fut>(&mut self, job: Job, side: Option<Side>, f: F)
    where
        F: FnOnce(Ctx) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let Some(tx) = self.tx.clone() else { return };
        if let Some((tok, h)) = self.jobs.remove(&(job, side)) {
            tok.cancel();
            h.abort();
        }
        let cancel = CancellationToken::new();
        let ctx = self.ctx(tx, cancel.clone());
        let fut = f(ctx);
        let handle = tokio::spawn(fut);
        self.jobs.retain(|_, (_, h)| !h.is_finished());
        self.jobs.insert((job, side), (cancel, handle));
    }

    fn per_side(&mut self, job: Job, f: fn(Ctx, Side) -> futures::future::BoxFuture<'static, ()>) {
        for side in Side::BOTH {
            self.spawn(job, Some(side), move |ctx| f(ctx, side));
        }
    }
}

fn report(ctx: &Ctx, side: Option<Side>, pane: &str, r: Result<impl Sized>) {
    if let Err(e) = r
        && !ctx.cancel.is_cancelled()
    {
        ctx.error(side, pane, format!("{e:#}"));
    }
}

impl Backend for LiveBackend {
    fn start(&mut self, events: UnboundedSender<Event>) {
        let _ = events.send(Event::Session(self.sc.session()));
        self.tx = Some(events);
        self.spawn(Job::Attach, None, |ctx| async move {
            match attach(&ctx).await {
                Ok(present) => {
                    for &side in &present {
                        let c = ctx.clone();
                        tokio::spawn(async move {
                            let r = watchers(&c, side).await;
                            report(&c, Some(side), "pods", r);
                        });
                    }
                    if !present.is_empty() {
                        let r = rules(&ctx).await;
                        report(&ctx, None, "diff", r);
                    }
                    // Attach's watchers live as long as attach's token.
                    ctx.cancel.cancelled().await;
                }
                Err(e) => ctx.error(None, "build", format!("{e:#}")),
            }
        });
    }

    fn send(&mut self, cmd: Command) {
        tracing::info!(?cmd, "live command");
        match cmd {
            Command::Build => self.per_side(Job::Build, |ctx, side| {
                Box::pin(async move {
                    let _ = build(&ctx, side).await;
                })
            }),
            Command::CreateClusters => self.per_side(Job::Create, |ctx, side| {
                Box::pin(async move {
                    let _ = create(&ctx, side).await;
                })
            }),
            Command::Deploy => self.per_side(Job::Deploy, |ctx, side| {
                Box::pin(async move {
                    if deploy(&ctx, side).await.is_ok() {
                        let r = watchers(&ctx, side).await;
                        report(&ctx, Some(side), "pods", r);
                    }
                })
            }),
            Command::Probe { target } => self.spawn(Job::Probes, None, |ctx| async move {
                let r = probes(&ctx, target).await;
                report(&ctx, None, "probes", r);
            }),
            Command::RefreshRules => self.spawn(Job::Rules, None, |ctx| async move {
                let r = rules(&ctx).await;
                report(&ctx, None, "diff", r);
            }),
            Command::SetWatch(on) => {
                if let Some((tok, h)) = self.jobs.remove(&(Job::Watch, None)) {
                    tok.cancel();
                    h.abort();
                }
                if on {
                    self.spawn(Job::Watch, None, |ctx| async move {
                        loop {
                            let r = rules(&ctx).await;
                            report(&ctx, None, "diff", r);
                            let r = probes(&ctx, None).await;
                            report(&ctx, None, "probes", r);
                            tokio::select! {
                                _ = tokio::time::sleep(WATCH_PERIOD) => {}
                                _ = ctx.cancel.cancelled() => return,
                            }
                        }
                    });
                }
            }
            Command::DeleteClusters => self.spawn(Job::Delete, None, |ctx| async move {
                let r = delete(&ctx).await;
                report(&ctx, None, "build", r);
            }),
            Command::Cancel => {
                for (_, (tok, _)) in self.jobs.iter() {
                    tok.cancel();
                }
            }
        }
    }

    fn shutdown(&mut self) {
        for (_, (tok, h)) in self.jobs.drain() {
            tok.cancel();
            h.abort();
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
}
