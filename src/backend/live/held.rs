//! Connections held across a change: before a swap (or a rebuild, a bisect step) each running
//! test pod of the side opens one keep-alive connection to the Service's LB IP and one to its
//! ClusterIP (a streaming exec of curl asking again and again on the same connection); once the
//! change is done they are watched a few seconds more, closed, and each is reported kept,
//! reset or timed out ([`crate::backend::held::classify`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::kube::api::{Api, ListParams};
use anyhow::Result;
use k8s_openapi::api::core::v1::{Pod, Service};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Ctx, pod_namespace};
use crate::backend::event::Event;
use crate::backend::held::{
    Change, Ending, Fate, HeldConn, Line, Pace, Seen, Via, classify, curl_argv, summary,
};
use crate::backend::kube::{self, StreamExec, TEST_LABEL, within};
use crate::model::{Phase, PodPhase, Side};

/// Requests a second on each held connection.
const RATE: u32 = 4;
/// How long the API server may take to start a held curl.
const START_LIMIT: Duration = Duration::from_secs(10);
/// How long closing a held curl's exec may take.
const CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// One held connection while it is held.
struct Conn {
    source: String,
    via: Via,
    addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<Ending>,
}

/// The connections a side holds across a change, until [`Holding::finish`].
pub(super) struct Holding {
    side: Side,
    change: Change,
    phase: Phase,
    conns: Vec<Conn>,
    /// Set once the change is done: lines after it count as after.
    after: Arc<AtomicBool>,
    stop: CancellationToken,
    window: Duration,
}

/// The addresses to hold connections to: the Service's LB IP and ClusterIP, each with its port.
fn addresses(svc: &Service) -> Vec<(Via, String)> {
    let spec = svc.spec.as_ref();
    let port = spec
        .and_then(|s| s.ports.as_ref())
        .and_then(|p| p.first())
        .map_or(0, |p| p.port);
    let lb = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .and_then(|i| i.first())
        .and_then(|i| i.ip.clone());
    let cluster_ip = spec
        .and_then(|s| s.cluster_ip.clone())
        .filter(|ip| !ip.is_empty() && ip != "None");
    [(Via::Lb, lb), (Via::ClusterIp, cluster_ip)]
        .into_iter()
        .filter_map(|(via, ip)| Some((via, format!("{}:{port}", ip?))))
        .collect()
}

/// The side's running test pods and the Service's addresses, read from the API server.
async fn targets(
    ctx: &Ctx,
    side: Side,
    client: &::kube::Client,
) -> Result<(Vec<String>, Vec<(Via, String)>)> {
    let ns = pod_namespace(ctx, side);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let list = within(
        &format!("list the test pods in {ns}"),
        pods.list(&ListParams::default().labels(TEST_LABEL)),
    )
    .await?;
    let running = list
        .items
        .iter()
        .map(kube::pod_info)
        .filter(|p| p.phase == PodPhase::Running)
        .map(|p| p.name)
        .collect();
    let f = ctx.sc.service.filter();
    let api: Api<Service> = Api::namespaced(client.clone(), &f.namespace);
    let svc = within(
        &format!("read {}/{}", f.namespace, f.name),
        api.get(&f.name),
    )
    .await?;
    Ok((running, addresses(&svc)))
}

/// Hold one connection from `pod` to `addr`: its lines go to `seen` as they come, marked after
/// once `after` is set; the task ends with how the exec ended.
fn hold(ctx: &Ctx, client: &::kube::Client, h: &Holding, pod: &str, addr: &str) -> Conn {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let pace = Pace {
        rate: RATE,
        connect_timeout: ctx.sc.probes.connect_timeout,
        max_time: ctx.sc.probes.timeout,
        seconds: (ctx.sc.build.rollout_timeout + h.window.as_secs_f64() + 60.0) as u64,
    };
    let argv = curl_argv(addr, &ctx.sc.probes.path, pace);
    let (client, ns, container) = (
        client.clone(),
        pod_namespace(ctx, h.side),
        ctx.sc.probes.container.clone(),
    );
    let (pod_name, stop, after, sink) = (
        pod.to_string(),
        h.stop.clone(),
        h.after.clone(),
        seen.clone(),
    );
    let task = tokio::spawn(async move {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let x = StreamExec {
            ns: &ns,
            pod: &pod_name,
            container: &container,
            argv: &argv,
            start_limit: START_LIMIT,
            stderr_lines: true,
        };
        let on_line = |l: &str| {
            if let Some(line) = Line::parse(l) {
                let after = after.load(Ordering::SeqCst);
                sink.lock().unwrap().push(Seen { line, after });
            }
        };
        match kube::exec_lines(&client, &x, &stop, || {}, on_line).await {
            Ok(None) => Ending::Open,
            Ok(Some(end)) if end.code >= 0 => Ending::Exited(end.code),
            Ok(Some(end)) => Ending::Failed(format!(
                "the exec's connection ended {}",
                crate::rules::render::visible(end.stderr.trim())
            )),
            Err(e) => Ending::Failed(format!("{e:#}")),
        }
    });
    Conn {
        source: pod.to_string(),
        via: Via::Lb,
        addr: addr.to_string(),
        seen,
        task,
    }
}

/// Open the held connections of a side before `change`: from each running test pod to the
/// LB IP and the ClusterIP, waiting until each has its first answer (or has failed). `None`,
/// said in the phase's output, when there is nothing to hold.
pub(super) async fn open(
    ctx: &Ctx,
    side: Side,
    (change, phase): (Change, Phase),
    client: &::kube::Client,
) -> Option<Holding> {
    let (pods, addrs) = match targets(ctx, side, client).await {
        Ok(t) => t,
        Err(e) => {
            ctx.out(side, phase, format!("  no connection held: {e:#}"));
            return None;
        }
    };
    if pods.is_empty() || addrs.is_empty() {
        let why = if pods.is_empty() {
            "no running test pod"
        } else {
            "the Service has no LB IP or ClusterIP"
        };
        ctx.out(side, phase, format!("  no connection held: {why}"));
        return None;
    }
    let mut h = Holding {
        side,
        change,
        phase,
        conns: Vec::new(),
        after: Arc::new(AtomicBool::new(false)),
        stop: ctx.cancel.child_token(),
        window: Duration::from_secs_f64(ctx.sc.probes.timeout + 3.0),
    };
    for pod in &pods {
        for (via, addr) in &addrs {
            let mut c = hold(ctx, client, &h, pod, addr);
            c.via = *via;
            h.conns.push(c);
        }
    }
    let limit = START_LIMIT + Duration::from_secs_f64(ctx.sc.probes.timeout);
    let _ = tokio::time::timeout(limit, h.opened()).await;
    let what = format!(
        "  holding {} connections ({} pods to {})",
        h.conns.len(),
        pods.len(),
        addrs
            .iter()
            .map(|(v, a)| format!("{} {a}", v.label()))
            .collect::<Vec<_>>()
            .join(" and ")
    );
    ctx.out(side, phase, what);
    Some(h)
}

impl Holding {
    /// Until every connection has its first line or its exec ended.
    async fn opened(&self) {
        while !self
            .conns
            .iter()
            .all(|c| !c.seen.lock().unwrap().is_empty() || c.task.is_finished())
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The change is done: watch the connections for the window, close them, and report each
    /// (`Event::Held`). `recreated`: the cluster was deleted and created again, so every
    /// connection it held ended with it, which is said rather than inferred.
    pub(super) async fn finish(self, ctx: &Ctx, recreated: bool) -> Vec<HeldConn> {
        self.after.store(true, Ordering::SeqCst);
        if !recreated {
            tokio::select! {
                _ = tokio::time::sleep(self.window) => {}
                _ = ctx.cancel.cancelled() => {}
            }
        }
        self.stop.cancel();
        let window = self.window.as_secs();
        let mut conns = Vec::new();
        for c in self.conns {
            let ending = match tokio::time::timeout(CLOSE_LIMIT, c.task).await {
                Ok(Ok(e)) => e,
                Ok(Err(e)) => Ending::Failed(format!("the held curl's task failed: {e}")),
                Err(_) => Ending::Failed(format!("not closed within {}s", CLOSE_LIMIT.as_secs())),
            };
            let seen = c.seen.lock().unwrap().clone();
            let (mut fate, mut detail) = classify(&seen, &ending, window);
            if recreated && fate != Fate::NotOpened {
                (fate, detail) = (Fate::Reset, "cluster recreated".to_string());
            }
            conns.push(HeldConn {
                source: c.source,
                via: c.via,
                addr: c.addr,
                fate,
                detail: Some(detail),
            });
        }
        if ctx.cancel.is_cancelled() {
            return conns;
        }
        ctx.out(
            self.side,
            self.phase,
            format!("  {}", summary(self.change, &conns)),
        );
        ctx.emit(Event::Held {
            side: self.side,
            change: self.change,
            conns: conns.clone(),
        });
        conns
    }
}
