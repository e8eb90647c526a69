//! Watch mode: rules on screen as they change. Each node whose rules live in nf_tables runs
//! `nft monitor`, which reports every ruleset change (iptables-nft's too) at once; the API
//! server's pod, Service and endpoint events mark their cluster; other nodes (iptables-legacy)
//! are re-read every `watch.interval`; so are nodes where the monitor cannot run or ended. The
//! Build pane says which path each node takes, and why it is polled (`Event::Watching`). Bursts (kube-proxy rewrites many rules at once) are
//! coalesced into one re-read per node. Probes repeat every `watch.probe_interval`, never
//! overlapping.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio_util::sync::CancellationToken;

use super::ctx_monitor::Monitors;
use super::{Ctx, existing, kind_sides, probes, read_nodes, report, running_nodes};
use crate::backend::event::{Event, PollReason, WatchPath};
use crate::model::{Pane, Side};

/// How long a burst of changes is gathered before the re-read.
pub const COALESCE: Duration = Duration::from_millis(100);

/// What tells watch mode to re-read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Trigger {
    /// A node's rules changed (`nft monitor` said so).
    Node(Side, String),
    /// Something in a cluster changed that kube-proxy reacts to.
    Cluster(Side),
}

/// Every how many ticks the node list is fetched again, and nodes whose kube-proxy has not
/// written rules yet (so where they will live is unknown) are read even though monitored.
const SLOW: u64 = 5;

type Failed = Arc<Mutex<HashMap<String, String>>>;

/// What the backstop keeps between ticks.
#[derive(Default)]
struct Polling {
    /// The running nodes, as last listed.
    nodes: Vec<(Side, String)>,
    /// `nft monitor` per node.
    monitors: HashMap<String, CancellationToken>,
    /// Nodes where `nft monitor` could not run (no nft) or ended, with what it said: polled
    /// instead.
    failed: Failed,
    /// The path each node was last said to take.
    said: HashMap<String, WatchPath>,
    tick: u64,
}

/// What a watch leaves running, stopped however the watch ends (cancelled, or dropped when its
/// job is aborted): the probe loop, and the triggers the kube watchers send.
struct Running {
    prober: tokio::task::JoinHandle<()>,
    triggers: Arc<Mutex<Option<tokio::sync::mpsc::UnboundedSender<Trigger>>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.prober.abort();
        *self.triggers.lock().unwrap() = None;
    }
}

/// Watch until cancelled.
pub(super) async fn watch(ctx: Ctx) -> Result<()> {
    let (tx, mut rx) = unbounded_channel();
    *ctx.triggers.lock().unwrap() = Some(tx.clone());
    let _running = Running {
        prober: tokio::spawn(probe_loop(ctx.clone())),
        triggers: ctx.triggers.clone(),
    };
    let mut polling = Polling::default();
    // The context sides' `nft monitor`s, stopped however the watch ends.
    let monitors = Monitors {
        tx: tx.clone(),
        cancel: ctx.cancel.child_token(),
    };
    let _monitors = monitors.cancel.clone().drop_guard();
    let r = follow_contexts(&ctx, None, &monitors).await;
    report(&ctx, None, Pane::Diff, r);
    let every = Duration::from_secs_f64(ctx.sc.watch.interval);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            t = rx.recv() => {
                let Some(t) = t else { break };
                let wanted = gather(&mut rx, t).await;
                let which: Vec<(Side, String)> = polling
                    .nodes
                    .iter()
                    .filter(|(s, n)| {
                        wanted.contains(&Trigger::Node(*s, n.clone()))
                            || wanted.contains(&Trigger::Cluster(*s))
                    })
                    .cloned()
                    .collect();
                let r = read_nodes(&ctx, which).await;
                report(&ctx, None, Pane::Diff, r);
                let r = follow_contexts(&ctx, Some(&wanted), &monitors).await;
                report(&ctx, None, Pane::Diff, r);
            }
            _ = tick.tick() => {
                let r = poll(&ctx, &mut polling, &tx).await;
                report(&ctx, None, Pane::Diff, r);
            }
        }
    }
    for (_, m) in polling.monitors.drain() {
        m.cancel();
    }
    Ok(())
}

/// The context sides: read again when `wanted` names their cluster (the API server's pod,
/// Service or EndpointSlice events), or only the nodes it names (their `nft monitor` said a
/// change); at the start of watch mode (`None`), said to be followed that way, read once, and
/// each node in nftables mode given its `nft monitor` by exec.
async fn follow_contexts(
    ctx: &Ctx,
    wanted: Option<&BTreeSet<Trigger>>,
    monitors: &Monitors,
) -> Result<()> {
    for side in Side::BOTH {
        let Some(c) = ctx.sc.context(side) else {
            continue;
        };
        let only = match wanted {
            Some(w) if w.contains(&Trigger::Cluster(side)) => None,
            Some(w) => {
                let nodes: Vec<String> = w
                    .iter()
                    .filter_map(|t| match t {
                        Trigger::Node(s, n) if *s == side => Some(n.clone()),
                        _ => None,
                    })
                    .collect();
                if nodes.is_empty() {
                    continue;
                }
                Some(nodes)
            }
            None => {
                let nodes = ctx.known.lock().unwrap().context_nodes[side].clone();
                for node in nodes {
                    let path = WatchPath::ApiEvents;
                    ctx.emit(Event::Watching { side, node, path });
                }
                None
            }
        };
        let nft = existing::read_these(ctx, side, &c, only).await?;
        if wanted.is_none() {
            monitors.start(ctx, side, nft, ctx.sc.read_concurrency());
        }
    }
    Ok(())
}

/// `first` and whatever else arrives within [`COALESCE`].
async fn gather(rx: &mut UnboundedReceiver<Trigger>, first: Trigger) -> BTreeSet<Trigger> {
    let mut all = BTreeSet::from([first]);
    let end = tokio::time::Instant::now() + COALESCE;
    while let Ok(Some(t)) = tokio::time::timeout_at(end, rx.recv()).await {
        all.insert(t);
    }
    all
}

/// The backstop, every `watch.interval`: nodes get `nft monitor` unless their rules are known
/// to be in iptables-legacy; those, nodes where the monitor cannot run, and (every [`SLOW`]
/// ticks) nodes whose rules were not found yet are re-read. The node list is fetched every
/// [`SLOW`] ticks; monitors of nodes gone are stopped.
async fn poll(
    ctx: &Ctx,
    p: &mut Polling,
    tx: &tokio::sync::mpsc::UnboundedSender<Trigger>,
) -> Result<()> {
    if kind_sides(ctx).is_empty() {
        return Ok(());
    }
    let docker = ctx.docker().await?;
    let slow = p.tick.is_multiple_of(SLOW);
    p.tick += 1;
    if slow {
        p.nodes = running_nodes(ctx).await?;
        let nodes = &p.nodes;
        p.monitors.retain(|name, m| {
            let keep = nodes.iter().any(|(_, n)| n == name) && !m.is_cancelled();
            if !keep {
                m.cancel();
            }
            keep
        });
    }
    let mut read = Vec::new();
    for (side, node) in p.nodes.clone() {
        let failed = p.failed.lock().unwrap().get(&node).cloned();
        let legacy = docker.in_legacy(&node);
        let path = match (legacy, &failed) {
            (true, _) => polled(ctx, PollReason::Legacy),
            (false, Some(error)) => polled(
                ctx,
                PollReason::NoMonitor {
                    error: error.clone(),
                },
            ),
            (false, None) => WatchPath::Monitor,
        };
        if p.said.get(&node) != Some(&path) {
            p.said.insert(node.clone(), path.clone());
            let node = node.clone();
            ctx.emit(Event::Watching { side, node, path });
        }
        if !legacy && failed.is_none() && !p.monitors.contains_key(&node) {
            p.monitors.insert(
                node.clone(),
                start_monitor(ctx, &docker, side, &node, tx, &p.failed),
            );
            // A monitor hears changes from now on: read once now.
            read.push((side, node));
            continue;
        }
        let unknown = !docker.rules_found(&node);
        if legacy || failed.is_some() || (unknown && slow) {
            read.push((side, node));
        }
    }
    read_nodes(ctx, read).await
}

/// Polled every `watch.interval`, for this reason.
fn polled(ctx: &Ctx, why: PollReason) -> WatchPath {
    WatchPath::Polled {
        every_ms: (ctx.sc.watch.interval * 1000.0).round() as u64,
        why,
    }
}

/// `nft monitor` in a node, each event a trigger; where it cannot run or ends, the node is
/// marked for polling (and the screen says so at once).
fn start_monitor(
    ctx: &Ctx,
    docker: &crate::backend::docker::Docker,
    side: Side,
    node: &str,
    tx: &tokio::sync::mpsc::UnboundedSender<Trigger>,
    failed: &Failed,
) -> CancellationToken {
    let cancel = ctx.cancel.child_token();
    let (d, tx, n, c) = (docker.clone(), tx.clone(), node.to_string(), cancel.clone());
    let (failed, ctx) = (failed.clone(), ctx.clone());
    tokio::spawn(async move {
        let r = d
            .monitor(&n, |_| drop(tx.send(Trigger::Node(side, n.clone()))), &c)
            .await;
        if let Err(e) = r
            && !c.is_cancelled()
        {
            let error = format!("{e:#}");
            tracing::info!("{n}: no nft monitor, polling instead: {error}");
            failed.lock().unwrap().insert(n.clone(), error.clone());
            let path = polled(&ctx, PollReason::NoMonitor { error });
            ctx.emit(Event::Watching {
                side,
                node: n,
                path,
            });
        }
        c.cancel();
    });
    cancel
}

/// Probes every `watch.probe_interval`, one round after the other.
async fn probe_loop(ctx: Ctx) {
    let every = Duration::from_secs_f64(ctx.sc.watch.probe_interval);
    loop {
        let r = probes(&ctx, None).await;
        report(&ctx, None, Pane::Probes, r);
        tokio::time::sleep(every).await;
    }
}
