//! Watch mode on a context side in nftables mode: `nft monitor` runs in each such node's
//! kube-proxy pod through the API server's exec (the way its rules are read), and each line
//! naming kube-proxy's table (`ip kube-proxy`) re-reads that node alone. At most
//! `read_concurrency` monitors per side. A node whose monitor cannot start (exec refused, no
//! nft, no kube-proxy pod), ends (the pod restarted) or is over that bound keeps the API
//! server's events only, and the Build pane says so with why (`WatchPath::ApiEventsOnly`).
//! Every monitor stops, its exec websocket closed, when watch mode stops.

use std::time::Duration;

use anyhow::{Result, anyhow};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::Ctx;
use super::watch::Trigger;
use crate::backend::context;
use crate::backend::event::{Event, NoExecMonitor, WatchPath};
use crate::backend::kube::{StreamEnd, StreamExec, exec_lines};
use crate::model::Side;
use crate::rules::render::visible;

/// What runs in the kube-proxy pod: every nf_tables change is one line (`nft monitor` has no
/// argument that limits it to one table; lines are filtered by [`names_table`]).
pub const ARGV: &[&str] = &["nft", "monitor"];
/// How long the API server may take to start one monitor.
const START_LIMIT: Duration = Duration::from_secs(15);

/// Where the monitors of one watch send their triggers, and what stops them all.
pub(super) struct Monitors {
    pub tx: UnboundedSender<Trigger>,
    pub cancel: CancellationToken,
}

impl Monitors {
    /// A monitor for each of `nodes` (a side's nodes in nftables mode), at most `cap`; the
    /// rest are said to follow the API server's events only.
    pub fn start(&self, ctx: &Ctx, side: Side, nodes: Vec<String>, cap: usize) {
        for (i, node) in nodes.into_iter().enumerate() {
            if i >= cap {
                let why = NoExecMonitor::OverCap { cap };
                let path = WatchPath::ApiEventsOnly { why };
                ctx.emit(Event::Watching { side, node, path });
                continue;
            }
            let (ctx, tx, cancel) = (ctx.clone(), self.tx.clone(), self.cancel.clone());
            tokio::spawn(async move { run(&ctx, side, node, &tx, &cancel).await });
        }
    }
}

/// One node's monitor until it ends or is cancelled; an end not asked for is said, with why.
async fn run(
    ctx: &Ctx,
    side: Side,
    node: String,
    tx: &UnboundedSender<Trigger>,
    cancel: &CancellationToken,
) {
    let r = follow(ctx, side, &node, tx, cancel).await;
    if cancel.is_cancelled() {
        return;
    }
    let Err(e) = r else { return };
    let error = format!("{e:#}");
    tracing::info!("{node}: no nft monitor by exec, API server events only: {error}");
    let why = NoExecMonitor::Failed {
        error: visible(&error).into(),
    };
    let path = WatchPath::ApiEventsOnly { why };
    ctx.emit(Event::Watching { side, node, path });
}

/// Run `nft monitor` in the node's kube-proxy pod: said once it runs, each line naming
/// kube-proxy's table a trigger for the node; `Ok` once cancelled, an error when it could not
/// start or ended by itself.
async fn follow(
    ctx: &Ctx,
    side: Side,
    node: &str,
    tx: &UnboundedSender<Trigger>,
    cancel: &CancellationToken,
) -> Result<()> {
    let client = ctx.client(side).await?;
    let (pod, container) = context::proxy_pod(&client, node).await?;
    let x = StreamExec {
        ns: "kube-system",
        pod: &pod,
        container: &container,
        argv: ARGV,
        start_limit: START_LIMIT,
        stderr_lines: false,
    };
    let started = || {
        let (node, path) = (node.to_string(), WatchPath::ExecMonitor);
        ctx.emit(Event::Watching { side, node, path });
    };
    let on_line = |line: &str| {
        if names_table(line) {
            let _ = tx.send(Trigger::Node(side, node.to_string()));
        }
    };
    match exec_lines(&client, &x, cancel, started, on_line).await {
        Ok(None) => Ok(()),
        Ok(Some(end)) => Err(anyhow!(ended(&pod, &end))),
        Err(e) => Err(e.context("`nft monitor` by exec")),
    }
}

/// How a monitor that ended by itself ended, in words.
fn ended(pod: &str, end: &StreamEnd) -> String {
    let said: String = end
        .stderr
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let how = if end.code < 0 {
        "its exec ended (the pod restarted?)".to_string()
    } else {
        format!("exit {}", end.code)
    };
    let pod = visible(pod);
    if said.is_empty() {
        format!("`nft monitor` by exec in kube-system/{pod} ended: {how}")
    } else {
        format!("`nft monitor` by exec in kube-system/{pod} ended: {how}: {said}")
    }
}

/// Whether a `nft monitor` line is about kube-proxy's table (`add rule ip kube-proxy …`,
/// `delete element ip kube-proxy …`, `flush table ip kube-proxy`).
pub fn names_table(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().take(5).collect();
    words.windows(2).any(|w| w == ["ip", "kube-proxy"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lines_about_kube_proxys_table_count() {
        for yes in [
            "add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 10.0.0.1 drop",
            "add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto svc }",
            "delete rule ip kube-proxy endpoint-5OJB2KTY handle 12",
            "flush table ip kube-proxy",
            "delete table ip kube-proxy",
            "add chain ip kube-proxy filter-forward { type filter hook forward priority -110; }",
        ] {
            assert!(names_table(yes), "{yes}");
        }
        for no in [
            "add rule ip filter FORWARD counter accept",
            "add element ip6 kube-proxy service-ips { fd00::1 . tcp . 80 : goto svc }",
            "# new generation 7 by process 412 (kube-proxy)",
            "add rule inet cni postrouting ip saddr 10.244.0.0/16 comment \"ip kube-proxy\"",
            "",
        ] {
            assert!(!names_table(no), "{no}");
        }
    }

    #[test]
    fn an_end_says_how_and_what_nft_said() {
        let e = StreamEnd {
            code: 1,
            stderr: "Error: \x1b[31mOperation not permitted\n".into(),
        };
        assert_eq!(
            ended("kube-proxy-x", &e),
            "`nft monitor` by exec in kube-system/kube-proxy-x ended: exit 1: Error: [31mOperation \
             not permitted"
        );
        let gone = StreamEnd {
            code: -1,
            stderr: String::new(),
        };
        let said = ended("kube-proxy-x", &gone);
        assert!(said.contains("the pod restarted?"), "{said}");
    }
}
