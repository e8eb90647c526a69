//! Watch mode on a context side in nftables mode (an API server stand-in): `nft monitor` runs by
//! exec in each node's kube-proxy pod, a line from it re-reads that node alone at once (no
//! Service, EndpointSlice or pod event is sent), a node whose monitor exec is refused is said to
//! follow the API server's events only, with why, and stopping watch mode closes every monitor's
//! websocket.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::apiserver::{Reply, Req};
use common::cluster::{Cluster, Dump, IPTABLES_MASTER, NFT_V133, NFT_V134, Node, status, success};
use common::contexts::{Served, kubeconfig, scenario_text, serve, serve_with, three_nodes};
use kindred::backend::event::{Event, NoExecMonitor, WatchPath};
use kindred::backend::live::LiveBackend;
use kindred::backend::{Backend, Command};
use kindred::model::{Job, Side};
use kindred::scenario::Scenario;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// The PR side's nodes: `prod-a` and `prod-b` run monitors; `prod-refused` is read, but its
/// monitor exec is refused (403).
const A: &str = "prod-a";
const B: &str = "prod-b";
const REFUSED: &str = "prod-refused";

/// What the monitors of the stand-in share with the test.
#[derive(Default, Clone)]
struct Monitors {
    /// The open monitor execs' line senders, by node.
    open: Arc<Mutex<HashMap<String, Vec<UnboundedSender<String>>>>>,
    /// Monitor execs started, and closed by the client.
    started: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    /// `prod-a`'s rules now (its `nft list table ip kube-proxy`), and how often they were read.
    a_rules: Arc<Mutex<String>>,
    a_reads: Arc<AtomicUsize>,
}

impl Monitors {
    /// Answer `nft monitor` (and `prod-a`'s rules) in the kube-proxy pods.
    fn answer(&self, r: &Req) -> Option<Reply> {
        let pod = r
            .path
            .strip_prefix("/api/v1/namespaces/kube-system/pods/kube-proxy-")?
            .strip_suffix("/exec")?;
        let argv = r.params("command");
        match (
            pod,
            &argv.iter().map(String::as_str).collect::<Vec<_>>()[..],
        ) {
            (REFUSED, ["nft", "monitor"]) => {
                let msg = format!(
                    "pods \"kube-proxy-{REFUSED}\" is forbidden: User \"viewer\" cannot create \
                     resource \"pods/exec\" in API group \"\" in the namespace \"kube-system\""
                );
                Some(Reply::Json(403, status(403, "Forbidden", &msg)))
            }
            (node, ["nft", "monitor"]) => {
                let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
                let open = &mut self.open.lock().unwrap();
                open.entry(node.to_string()).or_default().push(tx);
                self.started.fetch_add(1, Ordering::SeqCst);
                Some(Reply::ExecStream {
                    lines,
                    status: success(),
                    closed: self.closed.clone(),
                })
            }
            (A, ["nft", "list", "table", "ip", "kube-proxy"]) => {
                self.a_reads.fetch_add(1, Ordering::SeqCst);
                Some(Reply::Exec {
                    stdout: self.a_rules.lock().unwrap().clone(),
                    stderr: String::new(),
                    status: success(),
                })
            }
            _ => None,
        }
    }

    /// Each open monitor of `node` prints `line`.
    fn say(&self, node: &str, line: &str) -> usize {
        let open = self.open.lock().unwrap();
        let senders = open.get(node).map(Vec::as_slice).unwrap_or(&[]);
        senders
            .iter()
            .filter(|t| t.send(line.to_string()).is_ok())
            .count()
    }
}

struct Setup {
    staging: Served,
    prod: Served,
    monitors: Monitors,
    _dir: tempfile::TempDir,
    scenario: std::path::PathBuf,
}

/// Base: `staging`, iptables; PR: `prod`, three nodes in nftables mode; `extra`: more of the
/// scenario.
async fn setup(extra: &str) -> Setup {
    common::in_process_state();
    let monitors = Monitors::default();
    *monitors.a_rules.lock().unwrap() = Dump::nft(NFT_V133).text.to_string();
    let v134 = Dump::nft(NFT_V134);
    let prod = Cluster::new(vec![
        Node::new(A, "10.2.0.2", v134.clone()),
        Node::new(B, "10.2.0.3", v134.clone()),
        Node::new(REFUSED, "10.2.0.4", v134),
    ]);
    let m = monitors.clone();
    let prod = serve_with(prod, move |r| m.answer(r)).await;
    let staging = serve(three_nodes("staging", &Dump::iptables(IPTABLES_MASTER))).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(&[("staging", &staging.server), ("prod", &prod.server)]);
    std::fs::write(dir.path().join("kc.yaml"), kc).unwrap();
    let scenario = dir.path().join("kindred.yaml");
    std::fs::write(&scenario, scenario_text("", "") + extra).unwrap();
    Setup {
        staging,
        prod,
        monitors,
        _dir: dir,
        scenario,
    }
}

/// Events until `ok` holds for one, within `secs`.
async fn until(
    rx: &mut UnboundedReceiver<Event>,
    secs: f64,
    ok: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let mut v = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
    loop {
        let e = tokio::time::timeout_at(end, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("not within {secs}s: {v:?}"))
            .expect("backend alive");
        let done = ok(&e);
        v.push(e);
        if done {
            return v;
        }
    }
}

fn watching(e: &Event, want: &str) -> Option<WatchPath> {
    match e {
        Event::Watching {
            side: Side::Pr,
            node,
            path,
        } if node == want => Some(path.clone()),
        _ => None,
    }
}

/// Watch mode until both monitors run and the refused one is said; the events so far.
async fn watch(backend: &mut LiveBackend, rx: &mut UnboundedReceiver<Event>) -> Vec<Event> {
    backend.send(Command::SetWatch(true));
    let mut seen: Vec<Event> = Vec::new();
    let monitored = |seen: &[Event], node| {
        seen.iter()
            .any(|e| watching(e, node) == Some(WatchPath::ExecMonitor))
    };
    while !(monitored(&seen, A) && monitored(&seen, B)) {
        seen.extend(until(rx, 20.0, |e| watching(e, A).or(watching(e, B)).is_some()).await);
    }
    seen
}

async fn attach(s: &Setup) -> (LiveBackend, UnboundedReceiver<Event>) {
    let sc = Scenario::load(&s.scenario).unwrap();
    let mut backend = LiveBackend::new(sc, kindred::backend::kind::Kind::new("/nonexistent/kind"));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    backend.start(tx);
    let (ev, err) = common::until_finished(&mut rx, Job::Attach).await;
    assert_eq!(err, None, "{ev:?}");
    (backend, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_line_rereads_that_node_alone_within_a_second() {
    let s = setup("").await;
    let (mut backend, mut rx) = attach(&s).await;
    watch(&mut backend, &mut rx).await;
    // What watch mode reads at its start has settled; then the counts.
    tokio::time::sleep(Duration::from_millis(800)).await;
    while rx.try_recv().is_ok() {}
    let (a_reads, others, staging) = (
        s.monitors.a_reads.load(Ordering::SeqCst),
        s.prod.execs(),
        s.staging.execs(),
    );
    // prod-a's rules change; no Service, EndpointSlice or pod event is sent: only its monitor
    // says so.
    let new = Dump::nft(NFT_V134).text.to_string();
    *s.monitors.a_rules.lock().unwrap() = new.clone();
    let line = "add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto svc }";
    assert_eq!(s.monitors.say(A, line), 1);
    let t0 = tokio::time::Instant::now();
    until(&mut rx, 1.0, |e| {
        matches!(e, Event::RuleDump { side: Side::Pr, node, text, .. } if node == A && *text == new)
    })
    .await;
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert_eq!(s.monitors.a_reads.load(Ordering::SeqCst), a_reads + 1);
    // Nothing else was read again: not prod's other nodes, not the other side.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.prod.execs(), others, "prod's other nodes were read again");
    assert_eq!(s.staging.execs(), staging, "the other side was read again");
    // A line about another table is not a change of kube-proxy's rules.
    assert_eq!(s.monitors.say(A, "add rule ip filter FORWARD accept"), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.monitors.a_reads.load(Ordering::SeqCst), a_reads + 1);
    backend.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_monitor_is_said_and_stopping_watch_closes_every_monitor() {
    let s = setup("").await;
    let (mut backend, mut rx) = attach(&s).await;
    backend.send(Command::SetWatch(true));
    let seen = until(&mut rx, 20.0, |e| {
        matches!(watching(e, REFUSED), Some(WatchPath::ApiEventsOnly { .. }))
    })
    .await;
    let said = seen
        .iter()
        .rev()
        .find_map(|e| watching(e, REFUSED))
        .unwrap();
    let WatchPath::ApiEventsOnly {
        why: NoExecMonitor::Failed { error },
    } = said
    else {
        panic!("{said:?}")
    };
    assert!(
        error.starts_with("`nft monitor` by exec: exec in kube-system/kube-proxy-prod-refused")
            && error.contains("forbidden"),
        "{error}"
    );
    // The iptables side has no monitor: API server events only, not a fallback.
    for e in &seen {
        if let Event::Watching {
            side: Side::Base,
            path,
            ..
        } = e
        {
            assert_eq!(*path, WatchPath::ApiEvents, "{e:?}");
        }
    }
    // Both other monitors run; watch mode stops: both websockets are closed.
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    while s.monitors.started.load(Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < end,
            "the monitors did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.monitors.started.load(Ordering::SeqCst), 2);
    assert_eq!(s.monitors.closed.load(Ordering::SeqCst), 0);
    backend.send(Command::SetWatch(false));
    let closed = common::within(5.0, || s.monitors.closed.load(Ordering::SeqCst) == 2);
    assert!(
        closed,
        "{} of 2 monitor websockets closed",
        s.monitors.closed.load(Ordering::SeqCst)
    );
    backend.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_that_ends_leaves_its_node_on_api_events_and_says_so() {
    let s = setup("").await;
    let (mut backend, mut rx) = attach(&s).await;
    watch(&mut backend, &mut rx).await;
    // prod-b's kube-proxy pod restarts: its monitor's exec ends.
    s.monitors.open.lock().unwrap().remove(B);
    let seen = until(&mut rx, 10.0, |e| {
        matches!(watching(e, B), Some(WatchPath::ApiEventsOnly { .. }))
    })
    .await;
    let said = seen.iter().rev().find_map(|e| watching(e, B)).unwrap();
    let WatchPath::ApiEventsOnly {
        why: NoExecMonitor::Failed { error },
    } = said
    else {
        panic!("{said:?}")
    };
    assert!(
        error.contains("`nft monitor` by exec in kube-system/kube-proxy-prod-b ended"),
        "{error}"
    );
    backend.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitors_beyond_read_concurrency_are_said_not_started() {
    let s = setup("read_concurrency: 1\n").await;
    let (mut backend, mut rx) = attach(&s).await;
    backend.send(Command::SetWatch(true));
    let mut paths: HashMap<&str, WatchPath> = HashMap::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    let over = WatchPath::ApiEventsOnly {
        why: NoExecMonitor::OverCap { cap: 1 },
    };
    // Each node's last word: one monitor (or its refusal), the other two over the bound.
    while paths.values().filter(|p| **p == over).count() < 2
        || paths
            .values()
            .all(|p| matches!(p, WatchPath::ApiEvents) || *p == over)
    {
        let e = tokio::time::timeout_at(end, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{paths:?}"))
            .unwrap();
        for n in [A, B, REFUSED] {
            if let Some(p) = watching(&e, n) {
                paths.insert(n, p);
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(s.monitors.started.load(Ordering::SeqCst) <= 1, "{paths:?}");
    backend.shutdown();
}
