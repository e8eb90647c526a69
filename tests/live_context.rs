//! The live backend with both sides clusters kindred did not create (two kubeconfig contexts,
//! each an API server stand-in): their nodes and rules arrive through the API server alone,
//! never through Docker or kind (DOCKER_HOST is a socket that counts connections, kind a
//! script that logs its calls); a Service event re-reads that side in watch mode; `x` deletes
//! only kindred's labelled namespace, never anything else.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::contexts::{TwoContexts, namespace, two_contexts};
use common::{in_process_state, until_finished};
use kindred::backend::event::{Event, WatchPath};
use kindred::backend::kind::Kind;
use kindred::backend::live::LiveBackend;
use kindred::backend::{Backend, Command};
use kindred::model::{Job, NodeRole, Side};
use kindred::scenario::Scenario;
use serde_json::json;

/// Docker and kind stand-ins that only record: a socket at DOCKER_HOST that counts the
/// connections made to it, and a `kind` that logs its argv and fails.
struct Recorders {
    docker: Arc<AtomicUsize>,
    kind: Kind,
    kind_log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// The process's recorders (DOCKER_HOST is the process's): made once.
fn recorders() -> &'static Recorders {
    static R: std::sync::OnceLock<Recorders> = std::sync::OnceLock::new();
    R.get_or_init(make_recorders)
}

fn make_recorders() -> Recorders {
    in_process_state();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let docker = Arc::new(AtomicUsize::new(0));
    let d = docker.clone();
    std::thread::spawn(move || {
        for c in listener.incoming() {
            d.fetch_add(1, Ordering::SeqCst);
            drop(c);
        }
    });
    // SAFETY: set once, before any backend of this binary starts.
    unsafe { std::env::set_var("DOCKER_HOST", format!("unix://{}", sock.display())) };
    let kind_log = dir.path().join("kind.log");
    let bin = dir.path().join("kind");
    let script = format!(
        "#!/bin/sh\necho \"$@\" >> '{}'\nexit 1\n",
        kind_log.display()
    );
    std::fs::write(&bin, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    Recorders {
        docker,
        kind: Kind::new(bin),
        kind_log,
        _dir: dir,
    }
}

impl Recorders {
    /// Nothing was asked of Docker or kind.
    fn untouched(&self) {
        assert_eq!(self.docker.load(Ordering::SeqCst), 0, "Docker was called");
        let log = std::fs::read_to_string(&self.kind_log).unwrap_or_default();
        assert_eq!(log, "", "kind was called");
    }
}

async fn attach(
    t: &TwoContexts,
    kind: Kind,
) -> (
    LiveBackend,
    Vec<Event>,
    tokio::sync::mpsc::UnboundedReceiver<Event>,
) {
    let sc = Scenario::load(&t.scenario).unwrap();
    let mut backend = LiveBackend::new(sc, kind);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    backend.start(tx);
    let (ev, err) = until_finished(&mut rx, Job::Attach).await;
    assert_eq!(err, None, "{ev:?}");
    (backend, ev, rx)
}

/// Events until `ok` holds for one, within `secs`.
async fn until(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    secs: u64,
    ok: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let mut v = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_contexts_arrive_through_their_api_servers_and_a_service_event_rereads() {
    let rec = recorders();
    let t = two_contexts("", "").await;
    let (mut backend, ev, mut rx) = attach(&t, rec.kind.clone()).await;
    // The session says which side is which context.
    let Some(Event::Session(s)) = ev.first() else {
        panic!("{ev:?}")
    };
    assert_eq!(s.base.context.as_deref(), Some("ctx-staging"));
    assert_eq!(s.pr.context.as_deref(), Some("ctx-prod"));
    assert_eq!((s.base.image.as_ref(), s.pr.git_ref.as_ref()), (None, None));
    // Both sides' nodes, with their roles and addresses, from the API servers.
    for (side, prefix) in [(Side::Base, "staging"), (Side::Pr, "prod")] {
        let nodes: Vec<(String, NodeRole)> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Node {
                    side: s,
                    name,
                    role,
                    ip,
                } if *s == side => {
                    assert!(ip.as_deref().is_some_and(|i| i.starts_with("10.1.0.")));
                    Some((name.clone(), *role))
                }
                _ => None,
            })
            .collect();
        assert_eq!(nodes.len(), 3, "{side:?}: {nodes:?}");
        assert!(nodes.contains(&(format!("{prefix}-control-plane"), NodeRole::ControlPlane)));
        // The dumps of the nodes with kube-proxy: the fixture's text, as read by exec.
        let mut dumped: Vec<&str> = ev
            .iter()
            .filter_map(|e| match e {
                Event::RuleDump {
                    side: s,
                    node,
                    text,
                    ..
                } if *s == side => {
                    assert!(text.contains("KUBE-SERVICES"), "{node}");
                    Some(node.as_str())
                }
                _ => None,
            })
            .collect();
        dumped.sort();
        assert_eq!(
            dumped,
            [
                format!("{prefix}-control-plane"),
                format!("{prefix}-worker")
            ]
        );
        // The node without kube-proxy is said, by name, on its side; never as a dump.
        let bare = format!("{prefix}-worker2");
        let said = ev.iter().any(|e| match e {
            Event::NoRules { side: s, node, .. } => *s == side && *node == bare,
            Event::Error {
                side: Some(s),
                message,
                ..
            } => *s == side && message.contains(&bare),
            _ => false,
        });
        assert!(said, "{bare}: {ev:?}");
    }
    rec.untouched();

    // Watch mode: each context node is followed through the API server's events; a Service
    // event on the PR side reads that side's nodes again (and only that side's).
    backend.send(Command::SetWatch(true));
    let seen = until(&mut rx, 20, |e| {
        matches!(
            e,
            Event::Watching {
                side: Side::Pr,
                path: WatchPath::ApiEvents,
                ..
            }
        )
    })
    .await;
    assert!(!seen.iter().any(|e| matches!(
        e,
        Event::Watching {
            path: WatchPath::Polled { .. } | WatchPath::Monitor,
            ..
        }
    )));
    // The first read of watch mode settles; then the counts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (staging, prod) = (t.staging.execs(), t.prod.execs());
    t.prod.service_event.notify_one();
    until(&mut rx, 20, |e| {
        matches!(e, Event::Service { side: Side::Pr, .. })
    })
    .await;
    let reread = common::within(15.0, || t.prod.execs() >= prod + 2);
    assert!(
        reread,
        "no re-read after the Service event: {prod} -> {}",
        t.prod.execs()
    );
    assert_eq!(t.staging.execs(), staging, "the other side is not re-read");
    rec.untouched();
    backend.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_deletes_only_kindreds_labelled_namespace_and_never_a_cluster() {
    let rec = recorders();
    let pid = std::process::id();
    let (mine, theirs) = (format!("kd-{pid}"), format!("team-{pid}"));
    let t = two_contexts(
        &format!("  deploy: true\n  namespace: {theirs}\n"),
        &format!("  deploy: true\n  namespace: {mine}\n"),
    )
    .await;
    let label = json!({"app.kubernetes.io/managed-by": "kindred"});
    t.prod
        .cluster
        .state()
        .namespaces
        .insert(mine.clone(), namespace(&mine, label));
    t.staging
        .cluster
        .state()
        .namespaces
        .insert(theirs.clone(), namespace(&theirs, json!({"team": "net"})));
    let (mut backend, _, mut rx) = attach(&t, rec.kind.clone()).await;
    backend.send(Command::DeleteClusters);
    let (ev, err) = until_finished(&mut rx, Job::Delete).await;
    assert_eq!(err, None, "{ev:?}");
    assert_eq!(*t.prod.deleted_namespaces.lock().unwrap(), [mine.as_str()]);
    assert!(t.staging.deleted_namespaces.lock().unwrap().is_empty());
    assert!(t.staging.cluster.state().namespaces.contains_key(&theirs));
    let left_alone = ev.iter().any(|e| matches!(e, Event::Error { side: Some(Side::Base), message, .. } if message.contains(&theirs) && message.contains("not created by kindred")));
    assert!(left_alone, "{ev:?}");
    // Nothing but that namespace was deleted anywhere.
    for s in [&t.staging, &t.prod] {
        let deletes: Vec<String> = s
            .server
            .requests()
            .into_iter()
            .filter(|r| r.method == "DELETE")
            .map(|r| r.path)
            .collect();
        assert!(
            deletes
                .iter()
                .all(|p| *p == format!("/api/v1/namespaces/{mine}")),
            "{deletes:?}"
        );
    }
    // b and c on two contexts: refused, saying why.
    backend.send(Command::Build {
        sides: kindred::model::Sides::Both,
        recreate: true,
    });
    let (ev, err) = until_finished(&mut rx, Job::Build).await;
    let why = err.unwrap_or_default();
    assert!(
        why.contains("base is context ctx-staging (read only)")
            && why.contains("PR is context ctx-prod (read only)"),
        "{why}: {ev:?}"
    );
    backend.send(Command::CreateClusters);
    let (ev, err) = until_finished(&mut rx, Job::Create).await;
    assert_eq!(err, None);
    assert!(
        ev.iter().any(
            |e| matches!(e, Event::Output { line, .. } if line.contains("kindred never creates it"))
        ),
        "{ev:?}"
    );
    rec.untouched();
    backend.shutdown();
}

/// Quitting removes the debug pods kindred left in a context that reads through them, and
/// nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quitting_removes_debug_pods_left_in_a_context() {
    let rec = recorders();
    let t = two_contexts("", "  read: exec-or-debug\n").await;
    let (mut backend, _, _rx) = attach(&t, rec.kind.clone()).await;
    let pod = |name: &str, labels| {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "kindred", "labels": labels},
               "spec": {"nodeName": "prod-worker", "containers": [{"name": "c", "image": "i"}]},
               "status": {"phase": "Running"}})
    };
    {
        let mut s = t.prod.cluster.state();
        s.namespaces.insert(
            "kindred".into(),
            namespace(
                "kindred",
                json!({"app.kubernetes.io/managed-by": "kindred"}),
            ),
        );
        let debug = json!({"app.kubernetes.io/managed-by": "kindred", "kindred.io/debug": "true"});
        s.pods
            .insert(("kindred".into(), "left".into()), pod("left", debug));
        s.pods.insert(
            ("kindred".into(), "mine".into()),
            pod("mine", json!({"app": "x"})),
        );
    }
    let before = t.prod.cluster.state().deleted.len();
    tokio::task::block_in_place(|| backend.shutdown());
    let s = t.prod.cluster.state();
    assert_eq!(
        s.deleted[before..],
        [("kindred".to_string(), "left".to_string())]
    );
    assert!(
        s.pods
            .contains_key(&("kindred".to_string(), "mine".to_string()))
    );
    drop(s);
    // A namespace that still holds something else stays.
    assert!(t.prod.deleted_namespaces.lock().unwrap().is_empty());
    rec.untouched();
}

/// Quitting a side that deploys nothing leaves nothing kindred made: its debug pods, and the
/// namespace it made for them (labelled, nothing else in it), are removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quitting_removes_the_namespace_made_for_debug_pods() {
    let rec = recorders();
    let t = two_contexts("", "  read: exec-or-debug\n").await;
    let (mut backend, _, _rx) = attach(&t, rec.kind.clone()).await;
    {
        let mut s = t.prod.cluster.state();
        s.namespaces.insert(
            "kindred".into(),
            namespace(
                "kindred",
                json!({"app.kubernetes.io/managed-by": "kindred"}),
            ),
        );
        let debug = json!({"app.kubernetes.io/managed-by": "kindred", "kindred.io/debug": "true"});
        s.pods.insert(
            ("kindred".into(), "left".into()),
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "left", "namespace": "kindred", "labels": debug},
                   "spec": {"nodeName": "prod-worker", "containers": [{"name": "c", "image": "i"}]},
                   "status": {"phase": "Running"}}),
        );
    }
    tokio::task::block_in_place(|| backend.shutdown());
    assert_eq!(*t.prod.deleted_namespaces.lock().unwrap(), ["kindred"]);
    assert!(t.prod.cluster.state().pods.is_empty());
    rec.untouched();
}

/// `d`: the workloads go into kindred's namespace of the context that deploys (created with
/// kindred's label), nowhere else; the read-only side deploys nothing and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_puts_the_workloads_in_kindreds_labelled_namespace_only() {
    let rec = recorders();
    let ns = format!("kd-{}", std::process::id());
    let t = two_contexts("", &format!("  deploy: true\n  namespace: {ns}\n")).await;
    let (mut backend, _, mut rx) = attach(&t, rec.kind.clone()).await;
    backend.send(Command::Deploy);
    let (ev, err) = until_finished(&mut rx, Job::Deploy).await;
    assert_eq!(err, None, "{ev:?}");
    let made = t.prod.cluster.state().namespaces.get(&ns).cloned();
    let made = made.unwrap_or_else(|| panic!("no namespace {ns}: {ev:?}"));
    assert_eq!(
        made["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "kindred"
    );
    let writes = |s: &common::contexts::Served| -> Vec<String> {
        s.server
            .requests()
            .into_iter()
            // An access review (the preflight's) is a question, never stored.
            .filter(|r| r.method != "GET" && !r.path.ends_with("/selfsubjectaccessreviews"))
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    };
    assert_eq!(
        writes(&t.prod),
        [
            "POST /api/v1/namespaces".to_string(),
            format!("PATCH /api/v1/namespaces/{ns}/pods/netshoot-prod"),
            format!("PATCH /api/v1/namespaces/{ns}/services/echo"),
        ]
    );
    assert_eq!(writes(&t.staging), Vec::<String>::new());
    let skipped = ev.iter().any(|e| matches!(e, Event::Phase { side: Side::Base, state: kindred::model::PhaseState::Skipped { reason }, .. } if reason.contains("base is context ctx-staging (read only)")));
    assert!(skipped, "{ev:?}");
    rec.untouched();
    backend.shutdown();
}
