//! The kind driver against a stand-in `kind` that prints kind's real output (recorded in
//! tests/fixtures/kind) with delays and exits as kind does.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kindred::backend::kind::{Kind, Progress, progress};
use tokio_util::sync::CancellationToken;

const STANDIN: &str = r#"#!/bin/bash
# A stand-in for kind: replays kind's recorded output.
echo "$$" > "$KIND_STANDIN_DIR/pid"
if [ -n "$KIND_ARGV_LOG" ]; then printf '%s|' "$@" >> "$KIND_ARGV_LOG"; printf 'VERSION_FILE=%s\n' "$KUBE_GIT_VERSION_FILE" >> "$KIND_ARGV_LOG"; fi
if [ -n "$KIND_NOISE" ]; then printf 'noise \377\376 not utf-8\n' >&2; fi
replay() {
  while IFS= read -r line; do printf '%s\n' "$line" >&2; sleep "${KIND_DELAY:-0.01}"; done < "$KIND_FIXTURES/$1"
}
case "$1 $2" in
  "build node-image")
    if [ -n "$KIND_FAIL" ]; then replay build-node-image-fail.txt; exit 1; fi
    replay build-node-image.txt ;;
  "create cluster")
    if [ -n "$KIND_FAIL" ]; then replay create-cluster-exists.txt; exit 1; fi
    replay create-cluster.txt ;;
  "delete cluster")
    printf 'Deleting cluster "%s" ...\nDeleted nodes: ["%s-control-plane" "%s-worker" "%s-worker2"]\n' "$4" "$4" "$4" "$4" >&2 ;;
  "get clusters")
    if [ -n "$KIND_CLUSTERS" ]; then printf '%s\n' $KIND_CLUSTERS; else echo "No kind clusters found." >&2; fi ;;
  version*)
    echo "kind v${KIND_VERSION:-0.30.0} go1.24.0 linux/amd64" ;;
  "get kubeconfig")
    if [ "$4" != "master" ]; then echo "ERROR: could not locate any control plane nodes for cluster named '$4'" >&2; exit 1; fi
    printf 'apiVersion: v1\nkind: Config\ncurrent-context: kind-%s\n' "$4" ;;
  *) echo "ERROR: unknown command \"$1\" for \"kind\"" >&2; exit 1 ;;
esac
"#;

struct Standin {
    dir: tempfile::TempDir,
}

impl Standin {
    fn new() -> Standin {
        common::time_limit();
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("kind");
        std::fs::write(&bin, STANDIN).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        // SAFETY: tests in this file set the same values; no other thread reads them concurrently
        // in a way that matters (the stand-in reads them from its own environment).
        unsafe {
            std::env::set_var("KIND_STANDIN_DIR", dir.path());
            std::env::set_var("KIND_FIXTURES", common::fixture("kind"));
        }
        Standin { dir }
    }
    fn kind(&self) -> Kind {
        Kind::new(self.dir.path().join("kind"))
    }
    fn pid(&self) -> i32 {
        std::fs::read_to_string(self.dir.path().join("pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

/// A runtime for one test, which gets its time limit with it.
fn rt() -> tokio::runtime::Runtime {
    common::time_limit();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The stand-in reads its behaviour from the environment: one test at a time changes it, and
/// puts it back when done.
static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `pairs` set for the life of the guard, which holds the environment lock.
struct Env {
    old: Vec<(String, Option<String>)>,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl Drop for Env {
    fn drop(&mut self) {
        for (k, v) in &self.old {
            match v {
                Some(v) => unsafe { std::env::set_var(k, v) },
                None => unsafe { std::env::remove_var(k) },
            }
        }
    }
}

fn envs(pairs: &[(&str, &str)]) -> Env {
    let lock = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let old = pairs
        .iter()
        .map(|(k, v)| {
            let old = std::env::var(k).ok();
            // SAFETY: under the environment lock.
            unsafe { std::env::set_var(k, v) };
            (k.to_string(), old)
        })
        .collect();
    Env { old, _lock: lock }
}

/// create cluster: every step started and finished, in order; output that is not UTF-8 is
/// shown, not fatal; the whole argv reaches kind.
#[test]
fn create_cluster_reports_every_step_and_sends_the_whole_argv() {
    let s = Standin::new();
    let argv = s.dir.path().join("argv.log");
    let _e = envs(&[
        ("KIND_ARGV_LOG", argv.to_str().unwrap()),
        ("KIND_NOISE", "1"),
    ]);
    let mut steps = Vec::new();
    let mut noise = Vec::new();
    rt().block_on(s.kind().create_cluster(
        "77523",
        "kindest/node:pr-77523",
        &PathBuf::from("/dev/null"),
        &PathBuf::from("/state/kubeconfig/77523"),
        |l| {
            if l.contains("not utf-8") {
                noise.push(l.to_string());
            }
            if let Some(p) = progress(l) {
                steps.push(p);
            }
        },
        &CancellationToken::new(),
    ))
    .unwrap();
    assert_eq!(noise, ["noise \u{fffd}\u{fffd} not utf-8"]);
    assert_eq!(steps.len(), 14);
    assert_eq!(
        steps[0],
        Progress::StepStarted("Ensuring node image (kindest/node:pr-77523) 🖼".into())
    );
    assert_eq!(
        steps[13],
        Progress::StepDone("Joining worker nodes 🚜".into())
    );
    let log = std::fs::read_to_string(&argv).unwrap();
    assert_eq!(
        log.lines().next().unwrap(),
        "create|cluster|--name|77523|--image|kindest/node:pr-77523|--config|/dev/null|--kubeconfig|/state/kubeconfig/77523|--wait|5m|VERSION_FILE="
    );
}

/// build node-image: its stages, its source dir as kind's positional argument, and the
/// version file in the environment.
#[test]
fn build_node_image_reports_stages_and_gets_source_and_version_file() {
    let s = Standin::new();
    let argv = s.dir.path().join("argv.log");
    let _e = envs(&[("KIND_ARGV_LOG", argv.to_str().unwrap())]);
    let mut stages = Vec::new();
    rt().block_on(s.kind().build_node_image(
        &PathBuf::from("/src/kubernetes"),
        "kindest/node:pr-77523",
        &[(
            "KUBE_GIT_VERSION_FILE",
            "/src/kubernetes/.kindred-version-defs",
        )],
        |l| {
            if let Some(Progress::Stage(s)) = progress(l) {
                stages.push(s);
            }
        },
        &CancellationToken::new(),
    ))
    .unwrap();
    assert_eq!(
        stages,
        vec![
            "compiling Kubernetes",
            "Kubernetes built",
            "building node image",
            "done"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(&argv).unwrap().trim_end(),
        "build|node-image|/src/kubernetes|--image|kindest/node:pr-77523|VERSION_FILE=/src/kubernetes/.kindred-version-defs"
    );
}

/// Failures surface kind's ERROR line and the exit code.
#[test]
fn failures_name_kinds_error_and_exit_code() {
    let s = Standin::new();
    let k = s.kind();
    let _e = envs(&[("KIND_FAIL", "1")]);
    let cancel = CancellationToken::new();
    let e = rt()
        .block_on(k.create_cluster(
            "77523",
            "img",
            &PathBuf::from("/dev/null"),
            &PathBuf::from("/dev/null"),
            |_| {},
            &cancel,
        ))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("node(s) already exist for a cluster with the name \"77523\""),
        "{e}"
    );
    assert!(e.contains("exit 1"), "{e}");
    let e = rt()
        .block_on(k.build_node_image(&PathBuf::from("/src"), "img", &[], |_| {}, &cancel))
        .unwrap_err()
        .to_string();
    assert!(e.contains("make quick-release-images"), "{e}");
}

#[test]
fn get_kubeconfig_and_delete() {
    let s = Standin::new();
    let k = s.kind();
    let _e = envs(&[]);
    let rt = rt();
    assert!(
        rt.block_on(k.kubeconfig("master"))
            .unwrap()
            .contains("current-context: kind-master")
    );
    let e = rt.block_on(k.kubeconfig("nope")).unwrap_err().to_string();
    assert!(
        e.contains("could not locate any control plane nodes"),
        "{e}"
    );
    let mut lines = Vec::new();
    rt.block_on(k.delete_cluster(
        "master",
        |l| lines.push(l.to_string()),
        &CancellationToken::new(),
    ))
    .unwrap();
    assert_eq!(lines[0], "Deleting cluster \"master\" ...");
}

/// Cancelling kills kind and everything it started (its `sleep`s), promptly.
#[test]
fn cancel_kills_kinds_whole_process_group() {
    let s = Standin::new();
    let k = s.kind();
    let _e = envs(&[("KIND_DELAY", "5")]);
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    let t0 = Instant::now();
    let r = rt().block_on(async {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            c2.cancel();
        });
        let dev_null = PathBuf::from("/dev/null");
        k.create_cluster("77523", "img", &dev_null, &dev_null, |_| {}, &cancel)
            .await
    });
    assert!(r.unwrap_err().to_string().contains("cancelled"));
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "took {:?}",
        t0.elapsed()
    );
    let pid = s.pid();
    // No process is left in kind's process group (once the killed `sleep` has been reaped).
    let gone = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        (unsafe { libc::kill(-pid, 0) }) != 0
    });
    let left = std::process::Command::new("ps")
        .args(["-o", "pid,stat,cmd", "-g", &pid.to_string()])
        .output()
        .unwrap();
    assert!(
        gone,
        "process group {pid} still has processes:\n{}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[test]
fn a_missing_kind_is_named() {
    let e = rt()
        .block_on(Kind::new("/nonexistent/kind").kubeconfig("master"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("kind not found"), "{e}");
}

// kind's version decides what it can do: build from a source dir (>= v0.11), nftables mode
// (>= v0.23); the doctor says so. The stand-in prints each version as kind does.
#[test]
fn kind_versions_old_no_nftables_current() {
    use kindred::backend::doctor::{Status, kind_check};
    use kindred::model::ProxyMode;
    let s = Standin::new();
    let k = s.kind();
    let rt = rt();
    for (v, want) in [
        ("0.10.0", Status::Fail),
        ("0.22.0", Status::Fail),
        ("0.30.0", Status::Ok),
    ] {
        let _e = envs(&[("KIND_VERSION", v)]);
        let (got, line) = rt.block_on(k.version()).unwrap();
        assert_eq!(line, format!("kind v{v} go1.24.0 linux/amd64"));
        let c = kind_check(got, &line, ProxyMode::Nftables);
        assert_eq!(c.status, want, "{v}: {c:?}");
    }
    let e = rt
        .block_on(Kind::new("/nonexistent/kind").version())
        .unwrap_err()
        .to_string();
    assert!(e.contains("kind not found"), "{e}");
}

/// A user's kubeconfig in the layout kind and kubectl write, with a current context of its own.
const USER_KUBECONFIG: &str = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: QUJD\n    server: https://prod.example:6443\n  name: prod\n- cluster:\n    server: https://staging.example:6443\n  name: staging\ncontexts:\n- context:\n    cluster: prod\n    namespace: payments\n    user: admin\n  name: prod\n- context:\n    cluster: staging\n    user: admin\n  name: staging\ncurrent-context: staging\nkind: Config\npreferences: {}\nusers:\n- name: admin\n  user:\n    token: s3cret\n";

/// `text` without the list entries (`- ` and the lines indented under it) that mention any of
/// `names`.
fn without_entries(text: &str, names: &[&str]) -> String {
    let mut out = String::new();
    let mut entry = String::new();
    let flush = |entry: &mut String, out: &mut String| {
        if !names.iter().any(|n| entry.contains(n)) {
            out.push_str(entry);
        }
        entry.clear();
    };
    for l in text.split_inclusive('\n') {
        if l.starts_with("- ") || !l.starts_with("  ") {
            flush(&mut entry, &mut out);
        }
        if l.starts_with("- ") || (l.starts_with("  ") && !entry.is_empty()) {
            entry.push_str(l);
        } else {
            out.push_str(l);
        }
    }
    flush(&mut entry, &mut out);
    out
}

/// After both clusters' contexts are exported (kind sets the current context at each, as the
/// stand-in does), the user's current context is what it was and every other entry is byte for
/// byte what it was; kind's entries are there. The file is KUBECONFIG's first existing one.
#[test]
fn export_puts_the_users_current_context_back_and_nothing_else_changes() {
    use kindred::backend::user_kubeconfig::ContextOutcome;
    let t = tempfile::tempdir().unwrap();
    let kind = common::standin(t.path(), "unused");
    let user = t.path().join("home/config");
    std::fs::create_dir_all(user.parent().unwrap()).unwrap();
    std::fs::write(&user, USER_KUBECONFIG).unwrap();
    let missing = t.path().join("missing");
    let list = std::env::join_paths([&missing, &user]).unwrap();
    let _e = envs(&[("KUBECONFIG", list.to_str().unwrap())]);
    let rt = rt();
    for name in ["eb1", "ep1"] {
        let outcome = rt.block_on(kind.export_kubeconfig(name)).unwrap();
        assert_eq!(
            outcome,
            ContextOutcome::Kept {
                context: "staging".into()
            }
        );
    }
    let argv = std::fs::read_to_string(t.path().join("argv.log")).unwrap();
    assert!(
        argv.contains(&format!("--kubeconfig|{}|", user.display())),
        "{argv}"
    );
    let after = std::fs::read_to_string(&user).unwrap();
    let kc = kube::config::Kubeconfig::from_yaml(&after).unwrap();
    let contexts: Vec<&str> = kc.contexts.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(contexts, ["prod", "staging", "kind-eb1", "kind-ep1"]);
    assert_eq!(kc.current_context.as_deref(), Some("staging"));
    assert_eq!(
        without_entries(&after, &["kind-eb1", "kind-ep1"]),
        USER_KUBECONFIG,
        "{after}"
    );
    assert!(!missing.exists());
    assert!(!t.path().join("home/config.lock").exists());
}

/// With no current context before, kind's stays (what a kind user expects), and the outcome
/// says it is new.
#[test]
fn export_with_no_current_context_keeps_kinds() {
    use kindred::backend::user_kubeconfig::ContextOutcome;
    let t = tempfile::tempdir().unwrap();
    let kind = common::standin(t.path(), "unused");
    let user = t.path().join("fresh/config");
    let _e = envs(&[("KUBECONFIG", user.to_str().unwrap())]);
    let outcome = rt().block_on(kind.export_kubeconfig("en1")).unwrap();
    assert_eq!(
        outcome,
        ContextOutcome::KindsKept {
            now: "kind-en1".into()
        }
    );
    assert_eq!(outcome.to_string(), "now kind-en1 (there was none)");
    let kc = kube::config::Kubeconfig::read_from(&user).unwrap();
    assert_eq!(kc.current_context.as_deref(), Some("kind-en1"));
}

/// A lock another program holds on the kubeconfig fails kind's export, as kind does.
#[test]
fn export_fails_while_the_kubeconfig_is_locked() {
    let t = tempfile::tempdir().unwrap();
    let kind = common::standin(t.path(), "unused");
    let user = t.path().join("config");
    std::fs::write(&user, USER_KUBECONFIG).unwrap();
    std::fs::write(t.path().join("config.lock"), "").unwrap();
    let _e = envs(&[("KUBECONFIG", user.to_str().unwrap())]);
    let e = rt().block_on(kind.export_kubeconfig("el1")).unwrap_err();
    assert!(
        format!("{e:#}").contains("failed to lock config file"),
        "{e:#}"
    );
    assert_eq!(std::fs::read_to_string(&user).unwrap(), USER_KUBECONFIG);
}

/// For a cluster tied to an API server, kind's export writes that server's kubeconfig: its
/// address, CA, and the client certificate and key. Exported again after the cluster is made
/// anew (a new API server, a new CA), kind-NAME's entries are replaced, not doubled, and nothing
/// else changes; kindred's client, reading the user's kubeconfig, reaches the new server with
/// them over TLS.
#[test]
fn export_writes_the_api_servers_tls_data_and_replaces_it_when_made_anew() {
    use common::apiserver::{ApiServer, Reply, data};
    let t = tempfile::tempdir().unwrap();
    let kind = common::standin(t.path(), "unused");
    let user = t.path().join("config");
    std::fs::write(&user, USER_KUBECONFIG).unwrap();
    let state = t.path().join("state");
    let _e = envs(&[
        ("KUBECONFIG", user.to_str().unwrap()),
        ("XDG_STATE_HOME", state.to_str().unwrap()),
    ]);
    rt().block_on(async {
        let version = |_: &common::apiserver::Req| {
            Reply::Json(
                200,
                serde_json::json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0",
                "gitCommit": "", "gitTreeState": "clean", "buildDate": "", "goVersion": "",
                "compiler": "gc", "platform": "linux/amd64"}),
            )
        };
        let first = ApiServer::start(version).await;
        common::tie(t.path(), "et1", &first);
        kind.export_kubeconfig("et1").await.unwrap();
        let second = ApiServer::start(version).await;
        common::tie(t.path(), "et1", &second);
        kind.export_kubeconfig("et1").await.unwrap();

        let after = std::fs::read_to_string(&user).unwrap();
        let kc = kube::config::Kubeconfig::from_yaml(&after).unwrap();
        let ours = |n: &str| n == "kind-et1";
        let clusters: Vec<_> = kc.clusters.iter().filter(|c| ours(&c.name)).collect();
        assert_eq!(clusters.len(), 1, "{after}");
        let cluster = clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server, Some(format!("https://{}", second.addr)));
        assert_eq!(
            cluster.certificate_authority_data,
            Some(data(&second.pki.ca))
        );
        let users: Vec<_> = kc.auth_infos.iter().filter(|u| ours(&u.name)).collect();
        assert_eq!(users.len(), 1, "{after}");
        let u = users[0].auth_info.as_ref().unwrap();
        assert_eq!(
            u.client_certificate_data,
            Some(data(&second.pki.client_cert))
        );
        assert!(u.client_key_data.is_some(), "{after}");
        let key = format!("    client-key-data: {}\n", data(&second.pki.client_key));
        assert!(after.contains(&key), "{after}");
        assert_eq!(
            kc.contexts.iter().filter(|c| ours(&c.name)).count(),
            1,
            "{after}"
        );
        assert_eq!(
            without_entries(&after, &["kind-et1"]),
            USER_KUBECONFIG,
            "{after}"
        );

        let c = kindred::backend::kube::client_for(&kind, "et1")
            .await
            .unwrap();
        c.apiserver_version().await.unwrap();
        assert_eq!((first.requests().len(), second.requests().len()), (0, 1));
        assert_eq!(
            second.requests()[0].client_cert,
            Some(second.pki.client_der())
        );
    });
}
