//! Watch mode: rules on screen as they change. Each node whose rules live in nf_tables runs
//! `nft monitor`, which reports every ruleset change (iptables-nft's too) at once; the API
//! server's pod, Service and endpoint events mark their cluster; other nodes (iptables-legacy)
//! are re-read every `watch.interval`. Bursts (kube-proxy rewrites many rules at once) are
//! coalesced into one re-read per node. Probes repeat every `watch.probe_interval`, never
//! overlapping.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use anyhow::Result;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio_util::sync::CancellationToken;

use super::{Ctx, probes, read_nodes, report, running_nodes};
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

/// Watch until cancelled.
pub(super) async fn watch(ctx: Ctx) -> Result<()> {
    let (tx, mut rx) = unbounded_channel();
    *ctx.triggers.lock().unwrap() = Some(tx.clone());
    let prober = tokio::spawn(probe_loop(ctx.clone()));
    let mut monitors: HashMap<String, CancellationToken> = HashMap::new();
    let every = Duration::from_secs_f64(ctx.sc.watch.interval);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            t = rx.recv() => {
                let Some(t) = t else { break };
                let wanted = gather(&mut rx, t).await;
                let nodes = running_nodes(&ctx).await.unwrap_or_default();
                let which: Vec<(Side, String)> = nodes
                    .into_iter()
                    .filter(|(s, n)| {
                        wanted.contains(&Trigger::Node(*s, n.clone()))
                            || wanted.contains(&Trigger::Cluster(*s))
                    })
                    .collect();
                let r = read_nodes(&ctx, which).await;
                report(&ctx, None, Pane::Diff, r);
            }
            _ = tick.tick() => {
                let r = poll(&ctx, &mut monitors, &tx).await;
                report(&ctx, None, Pane::Diff, r);
            }
        }
    }
    *ctx.triggers.lock().unwrap() = None;
    for (_, m) in monitors.drain() {
        m.cancel();
    }
    prober.abort();
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

/// The backstop: re-read the nodes no monitor watches, and start monitors on nodes that can
/// have one (their rules found in nf_tables); monitors of nodes gone are stopped.
async fn poll(
    ctx: &Ctx,
    monitors: &mut HashMap<String, CancellationToken>,
    tx: &tokio::sync::mpsc::UnboundedSender<Trigger>,
) -> Result<()> {
    let docker = ctx.docker().await?;
    let mode = ctx.sc.cluster.proxy_mode;
    let nodes = running_nodes(ctx).await?;
    monitors.retain(|name, m| {
        let alive = nodes.iter().any(|(_, n)| n == name) && !m.is_cancelled();
        if !alive {
            m.cancel();
        }
        alive
    });
    let mut unwatched = Vec::new();
    for (side, node) in nodes {
        if monitors.contains_key(&node) {
            continue;
        }
        if docker.in_nf_tables(&node, mode) {
            let cancel = ctx.cancel.child_token();
            monitors.insert(node.clone(), cancel.clone());
            let (d, tx, n) = (docker.clone(), tx.clone(), node.clone());
            tokio::spawn(async move {
                let r = d
                    .monitor(
                        &n,
                        |_| drop(tx.send(Trigger::Node(side, n.clone()))),
                        &cancel,
                    )
                    .await;
                if let Err(e) = r {
                    tracing::info!("{n}: no nft monitor, polling instead: {e:#}");
                }
                // Polled from now on (or monitored again on the next tick).
                cancel.cancel();
            });
        }
        // Read once more either way: a monitor only hears changes from now on.
        unwatched.push((side, node));
    }
    read_nodes(ctx, unwatched).await
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
