//! A side that is an existing cluster named by a kubeconfig context (`context:` in the
//! scenario): reached only through its API server, never through Docker or kind. Its nodes are
//! listed and their rules read by [`crate::backend::context`], at most `read_concurrency` at a
//! time, each within `read_timeout`. kindred never builds, creates, recreates, swaps or deletes
//! such a cluster. With `deploy: true` the test workloads go into kindred's own namespace
//! there (created with kindred's label), and `x` removes that namespace, only when it carries
//! the label; without it kindred only reads.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};

use super::Ctx;
use crate::backend::context::{self, ContextRef, NodeRules, ReadPolicy};
use crate::backend::event::Event;
use crate::backend::kube::within;
use crate::model::{NodeRole, Pane, Phase, PhaseState, Side};
use crate::rules::render::visible;
use crate::scenario::ContextSide;

/// The label on the namespace kindred creates in a cluster it did not create; `x` deletes a
/// namespace only when it carries it.
pub const OWNER_LABEL: (&str, &str) = ("app.kubernetes.io/managed-by", "kindred");

/// How this side's nodes are read: the scenario's `read`, namespace, debug image, read
/// limits.
pub(super) fn policy(ctx: &Ctx, c: &ContextSide) -> ReadPolicy {
    let d = ReadPolicy::default();
    ReadPolicy {
        via: c.read,
        namespace: c.namespace.clone(),
        debug_image: c.debug_image.clone().unwrap_or(d.debug_image),
        limit: ctx.sc.read_timeout().unwrap_or(d.limit),
        bound: ctx.sc.read_concurrency(),
    }
}

/// A client for the side's context.
pub(super) async fn client(c: &ContextSide) -> Result<kube::Client> {
    context::client(&ContextRef {
        context: c.context.clone(),
        kubeconfig: c.kubeconfig.clone(),
    })
    .await
}

/// What a command that would build, create, recreate, swap or delete this side is told.
pub fn read_only(side: Side, c: &ContextSide) -> String {
    format!(
        "{} is context {} (read only)",
        side.label(),
        visible(&c.context)
    )
}

/// At start: the side's nodes from its API server, its watchers, what kindred may do there.
pub(super) async fn attach(ctx: &Ctx, side: Side, c: &ContextSide) -> Result<()> {
    let reason = format!("existing cluster (context {})", visible(&c.context));
    ctx.phase(side, Phase::Create, PhaseState::Skipped { reason });
    let client = ctx.client(side).await?;
    let nodes = context::nodes(&client)
        .await
        .map_err(|e| e.context(format!("context {}", visible(&c.context))))?;
    for n in &nodes {
        let role = if n.role == "control-plane" {
            NodeRole::ControlPlane
        } else {
            NodeRole::Worker
        };
        ctx.emit(Event::Node {
            side,
            name: n.name.clone(),
            role,
            ip: n.ip.clone(),
        });
    }
    let names = nodes.into_iter().map(|n| n.name).collect();
    ctx.known.lock().unwrap().context_nodes[side] = names;
    let what = if c.deploy {
        format!("test workloads go into namespace {} (d)", c.namespace)
    } else {
        "kindred only reads it (deploy: false)".into()
    };
    ctx.out(
        side,
        Phase::Create,
        format!("{}: {what}", read_only(side, c)),
    );
    ctx.restart_watchers(side);
    Ok(())
}

/// Read every node's rules (as listed at attach, else listed now); send the dumps that
/// changed, say which nodes have no kube-proxy rules, and name each node that did not answer.
pub(super) async fn read(ctx: &Ctx, side: Side, c: &ContextSide) -> Result<()> {
    let r = read_these(ctx, side, c, None).await.map(drop);
    metrics(ctx, side, c).await;
    r
}

/// Every node's kube-proxy metrics, by exec in its kube-proxy pod, at most the read policy's
/// bound at a time; each sent as read (or why not).
async fn metrics(ctx: &Ctx, side: Side, c: &ContextSide) {
    let Ok(client) = ctx.client(side).await else {
        return;
    };
    let mut nodes = ctx.known.lock().unwrap().context_nodes[side].clone();
    let policy = policy(ctx, c);
    let limit = super::METRICS_LIMIT;
    // The side's nodes run one kube-proxy image: when the first's has no HTTP client, none has
    // (said for each node without asking again).
    if nodes.is_empty() {
        return;
    }
    let first = nodes.remove(0);
    let r = context::read_metrics(&client, &first, limit).await;
    let none = r
        .as_ref()
        .err()
        .and_then(|e| e.downcast_ref::<context::NoHttpClient>())
        .map(|e| e.pod.clone());
    super::send_metrics(ctx, side, first, r);
    if let Some(pod) = none {
        for node in nodes {
            let why = format!(
                "node {}: kube-proxy's image (as in kube-system/{pod}) has no HTTP client: its \
                 metrics cannot be read by exec",
                visible(&node)
            );
            super::send_metrics(ctx, side, node, Err(anyhow::anyhow!(why)));
        }
        return;
    }
    let mut reads = futures::stream::iter(nodes)
        .map(|node| {
            let client = client.clone();
            async move {
                let r = context::read_metrics(&client, &node, limit).await;
                (node, r)
            }
        })
        .buffer_unordered(policy.bound.max(1));
    while let Some((node, r)) = reads.next().await {
        super::send_metrics(ctx, side, node, r);
    }
}

/// [`read`], of `only` these nodes when given; the nodes read whose rules are in nftables
/// mode (the dump is `table ip kube-proxy`).
pub(super) async fn read_these(
    ctx: &Ctx,
    side: Side,
    c: &ContextSide,
    only: Option<Vec<String>>,
) -> Result<Vec<String>> {
    let client = ctx.client(side).await?;
    let mut nodes = ctx.known.lock().unwrap().context_nodes[side].clone();
    if nodes.is_empty() {
        nodes = context::nodes(&client)
            .await?
            .into_iter()
            .map(|n| n.name)
            .collect();
        ctx.known.lock().unwrap().context_nodes[side] = nodes.clone();
    }
    if let Some(only) = only {
        nodes.retain(|n| only.contains(n));
    }
    let policy = policy(ctx, c);
    let mut nft = Vec::new();
    let mut reads = std::pin::pin!(context::read_all(&client, &policy, nodes));
    while let Some((node, r)) = reads.next().await {
        match r {
            Ok(NodeRules::Rules(text)) => {
                if crate::rules::nft::looks_like_nft(&text) {
                    nft.push(node.clone());
                }
                super::send_dump(ctx, side, node, text)
            }
            Ok(NodeRules::None { why }) => {
                if super::changed(ctx, side, &node, &format!("none: {why}")) {
                    ctx.emit(Event::NoRules { side, node, why });
                }
            }
            Err(e) => {
                let msg = format!("{e:#}");
                let msg = if msg.contains(&node) {
                    msg
                } else {
                    format!("{node}: {msg}")
                };
                ctx.error(Some(side), Pane::Diff, msg);
            }
        }
    }
    Ok(nft)
}

/// Whether kube-proxy on every node of the side has rules naming `ip` (the probes wait for
/// it); the nodes that have not, else.
pub(super) async fn missing_ip(ctx: &Ctx, side: Side, c: &ContextSide, ip: &str) -> Vec<String> {
    let Ok(client) = ctx.client(side).await else {
        return vec![c.context.clone()];
    };
    let nodes = ctx.known.lock().unwrap().context_nodes[side].clone();
    let policy = policy(ctx, c);
    let reads: Vec<_> = context::read_all(&client, &policy, nodes).collect().await;
    reads
        .into_iter()
        .filter(|(_, r)| !matches!(r, Ok(NodeRules::Rules(t)) if t.contains(ip)))
        .map(|(n, _)| n)
        .collect()
}

/// `d` on this side: the workloads into kindred's namespace (created, labelled, when it does
/// not exist); without `deploy: true`, nothing, and the Build pane says so.
pub(super) async fn deploy(ctx: &Ctx, side: Side, c: &ContextSide) -> Result<()> {
    if !c.deploy {
        let reason = format!("{}: deploy: false", read_only(side, c));
        ctx.phase(side, Phase::Deploy, PhaseState::Skipped { reason });
        return Ok(());
    }
    ctx.run_phase(side, Phase::Deploy, || async {
        let client = ctx.client(side).await?;
        ensure_namespace(ctx, side, &client, c).await?;
        let w = ctx.sc.workloads_for(ctx.name(side))?;
        let applied =
            crate::backend::kube::apply_yaml_in(&client, &w, "workloads", &c.namespace).await?;
        for a in applied {
            ctx.out(side, Phase::Deploy, format!("applied {a}"));
        }
        Ok(None)
    })
    .await?;
    ctx.restart_watchers(side);
    Ok(())
}

/// Whether a namespace carries kindred's label.
fn labelled(ns: &Namespace) -> bool {
    let (k, v) = OWNER_LABEL;
    ns.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.get(k).map(String::as_str) == Some(v))
}

/// kindred's namespace in the cluster: created with its label, or found carrying it. One
/// that exists without the label is someone else's: refused.
async fn ensure_namespace(
    ctx: &Ctx,
    side: Side,
    client: &kube::Client,
    c: &ContextSide,
) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = &c.namespace;
    let what = format!("namespace {ns} in context {}", visible(&c.context));
    match within(&format!("reading {what}"), api.get_opt(ns)).await? {
        Some(n) if labelled(&n) => return Ok(()),
        Some(_) => bail!(
            "{what} exists and was not created by kindred (no {}={} label): not deploying \
             into it (name another with namespace:)",
            OWNER_LABEL.0,
            OWNER_LABEL.1
        ),
        None => {}
    }
    let labels = BTreeMap::from([(OWNER_LABEL.0.to_string(), OWNER_LABEL.1.to_string())]);
    let n = Namespace {
        metadata: ObjectMeta {
            name: Some(ns.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    };
    within(
        &format!("creating {what}"),
        api.create(&PostParams::default(), &n),
    )
    .await?;
    ctx.out(side, Phase::Deploy, format!("created {what}"));
    Ok(())
}

/// `x` on this side: kindred's namespace removed when kindred deployed there and it carries
/// kindred's label; never the cluster.
pub(super) async fn delete(ctx: &Ctx, side: Side, c: &ContextSide) -> Result<()> {
    let say = |m: String| ctx.out(side, Phase::Deploy, m);
    if !c.deploy {
        say(format!(
            "{}: kindred created nothing there (deploy: false), nothing to delete",
            read_only(side, c)
        ));
        return Ok(());
    }
    let client = ctx.client(side).await?;
    let api: Api<Namespace> = Api::all(client);
    let ns = &c.namespace;
    let what = format!("namespace {ns} in context {}", visible(&c.context));
    match within(&format!("reading {what}"), api.get_opt(ns)).await? {
        None => say(format!("{what} does not exist: nothing to delete")),
        Some(n) if !labelled(&n) => ctx.error(
            Some(side),
            Pane::Build,
            format!(
                "{what} was not created by kindred (no {} label): left alone",
                OWNER_LABEL.0
            ),
        ),
        Some(_) => {
            ctx.stop_watchers(side);
            within(
                &format!("deleting {what}"),
                api.delete(ns, &DeleteParams::default()),
            )
            .await?;
            say(format!("deleted {what} (the cluster stays)"));
            ctx.phase(side, Phase::Deploy, PhaseState::Pending);
            let gone = std::mem::take(&mut ctx.known.lock().unwrap().pods[side]);
            for name in gone.into_keys() {
                ctx.emit(Event::PodRemoved { side, name });
            }
            ctx.restart_watchers(side);
        }
    }
    Ok(())
}

/// How long quitting waits for the debug pods of every context side to be removed.
const CLEANUP_LIMIT: std::time::Duration = std::time::Duration::from_secs(15);

/// On quit: the debug pods kindred left in each context side that reads through them
/// (`read: debug` or `exec-or-debug`), removed, and with them kindred's namespace when the side
/// deploys nothing and nothing else is in it; on a runtime of its own (the backend's may be
/// going away), within [`CLEANUP_LIMIT`]. What could not be removed is logged.
pub fn cleanup_blocking(sc: &crate::scenario::Scenario) {
    let sides: Vec<ContextSide> = Side::BOTH
        .into_iter()
        .filter_map(|s| sc.context(s))
        .filter(|c| c.read != crate::model::ReadVia::Exec)
        .collect();
    if sides.is_empty() {
        return;
    }
    let run = move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            for c in &sides {
                let r = async {
                    let client = client(c).await?;
                    let n = context::cleanup(&client, &c.namespace).await?;
                    // Made for debug pods only: removed with them.
                    if !c.deploy && context::remove_debug_namespace(&client, &c.namespace).await? {
                        tracing::info!("context {}: namespace {} removed", c.context, c.namespace);
                    }
                    anyhow::Ok(n)
                };
                match tokio::time::timeout(CLEANUP_LIMIT, r).await {
                    Ok(Ok(n)) => tracing::info!("context {}: {n} debug pod(s) removed", c.context),
                    Ok(Err(e)) => tracing::warn!("context {}: debug pods: {e:#}", c.context),
                    Err(_) => tracing::warn!(
                        "context {}: debug pods not removed within {}s",
                        c.context,
                        CLEANUP_LIMIT.as_secs()
                    ),
                }
            }
        });
        anyhow::Ok(())
    };
    match std::thread::spawn(run).join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("debug pod cleanup: {e:#}"),
        Err(_) => tracing::warn!("debug pod cleanup panicked"),
    }
}
