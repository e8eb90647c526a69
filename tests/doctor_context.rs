//! `kindred doctor --context`: a cluster kindred did not create, checked through its API server
//! (the HTTPS stand-in with client certificates): it answers within 5 s, its user may do what
//! kindred needs (SelfSubjectAccessReviews, each refusal with the RBAC rule that grants it), and
//! kube-proxy's mode and version on each node. No Docker.

mod common;

use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::apiserver::{ApiServer, Reply, Req};
use kindred::backend::context::{ContextRef, ReadVia};
use kindred::backend::doctor::{Check, CheckName, Status};
use kindred::backend::doctor_context::context_checks;
use serde_json::{Value, json};

const KUBEADM_CONF: &str =
    "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: \"\"\n";
const NFT_CONF: &str =
    "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: nftables\n";

/// One node: its name, kubelet version, and its kube-proxy pod's image (none: no pod) and
/// ConfigMap (`None`: kubeadm's pod, which names no config volume).
#[derive(Clone)]
struct NodeSpec {
    name: &'static str,
    kubelet: &'static str,
    image: Option<&'static str>,
    config_map: Option<&'static str>,
}

/// A cluster as its API server shows it to the doctor.
#[derive(Clone, Default)]
struct Cluster {
    nodes: Vec<NodeSpec>,
    /// ConfigMaps in kube-system: name, `config.conf`.
    config_maps: Vec<(&'static str, &'static str)>,
    /// Reviews answered `allowed: false`: "VERB RESOURCE[/SUB] NAMESPACE" (namespace `*` for
    /// none).
    denied: Vec<&'static str>,
    /// GET /version never answers.
    hangs: bool,
    /// Every SelfSubjectAccessReview is refused (403).
    no_reviews: bool,
}

fn node(name: &'static str, kubelet: &'static str, image: Option<&'static str>) -> NodeSpec {
    NodeSpec {
        name,
        kubelet,
        image,
        config_map: None,
    }
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": {}, "items": items})
}

impl Cluster {
    /// Three nodes of one build, kube-proxy in nftables mode, everything allowed.
    fn uniform() -> Cluster {
        let img = Some("registry.k8s.io/kube-proxy:v1.34.0");
        Cluster {
            nodes: vec![
                node("c-control-plane", "v1.34.0", img),
                node("c-worker", "v1.34.0", img),
                node("c-worker2", "v1.34.0", img),
            ],
            config_maps: vec![("kube-proxy", NFT_CONF)],
            ..Default::default()
        }
    }

    fn node(&self, n: &NodeSpec) -> Value {
        json!({"metadata": {"name": n.name},
               "status": {"nodeInfo": {"architecture": "amd64", "bootID": "b", "containerRuntimeVersion": "containerd://2.1.1",
                   "kernelVersion": "6.8.0", "kubeProxyVersion": "", "kubeletVersion": n.kubelet, "machineID": "m",
                   "operatingSystem": "linux", "osImage": "Debian GNU/Linux 12", "systemUUID": "u"}}})
    }

    /// kube-proxy's pod on `n`: kubeadm's (`--config=/var/lib/kube-proxy/config.conf`, the
    /// `kube-proxy` ConfigMap mounted there) or one whose config comes from another ConfigMap.
    fn proxy_pod(&self, n: &NodeSpec) -> Option<Value> {
        let image = n.image?;
        let cm = n.config_map.unwrap_or("kube-proxy");
        Some(json!({
            "metadata": {"name": format!("kube-proxy-{}", n.name), "namespace": "kube-system",
                         "labels": {"k8s-app": "kube-proxy"}},
            "spec": {"nodeName": n.name,
                     "containers": [{"name": "kube-proxy", "image": image,
                         "command": ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf",
                                     "--hostname-override=$(NODE_NAME)"],
                         "volumeMounts": [{"name": "kube-proxy", "mountPath": "/var/lib/kube-proxy"},
                                          {"name": "lib-modules", "mountPath": "/lib/modules", "readOnly": true}]}],
                     "volumes": [{"name": "kube-proxy", "configMap": {"name": cm}},
                                 {"name": "lib-modules", "hostPath": {"path": "/lib/modules"}}]},
            "status": {"phase": "Running"}}))
    }

    /// A SelfSubjectAccessReview's answer: allowed unless `denied` names it.
    fn review(&self, r: &Req) -> Reply {
        let a = &r.body["spec"]["resourceAttributes"];
        let s = |k: &str| a[k].as_str().unwrap_or("").to_string();
        let resource = match s("subresource").as_str() {
            "" => s("resource"),
            sub => format!("{}/{sub}", s("resource")),
        };
        let ns = if s("namespace").is_empty() {
            "*".to_string()
        } else {
            s("namespace")
        };
        let key = format!("{} {resource} {ns}", s("verb"));
        let allowed = !self.denied.contains(&key.as_str());
        let mut status = json!({"allowed": allowed});
        if !allowed {
            status["reason"] = json!("no RBAC policy matched");
        }
        Reply::Json(
            201,
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                   "metadata": {}, "spec": r.body["spec"], "status": status}),
        )
    }

    fn answer(&self, r: &Req) -> Reply {
        const CMS: &str = "/api/v1/namespaces/kube-system/configmaps/";
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/version") if self.hangs => Reply::Hang,
            ("GET", "/version") => Reply::Json(
                200,
                json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0", "gitCommit": "abc",
                       "gitTreeState": "clean", "buildDate": "2025-08-27T00:00:00Z", "goVersion": "go1.24.6",
                       "compiler": "gc", "platform": "linux/amd64"}),
            ),
            ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
                if self.no_reviews =>
            {
                Reply::Json(
                    403,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403,
                           "reason": "Forbidden",
                           "message": "selfsubjectaccessreviews.authorization.k8s.io is forbidden"}),
                )
            }
            ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews") => self.review(r),
            ("GET", "/api/v1/nodes") => {
                let items = self.nodes.iter().map(|n| self.node(n)).collect();
                Reply::Json(200, list("Node", items))
            }
            ("GET", "/api/v1/namespaces/kube-system/pods") => {
                let items = self
                    .nodes
                    .iter()
                    .filter_map(|n| self.proxy_pod(n))
                    .collect();
                Reply::Json(200, list("Pod", items))
            }
            ("GET", p) if p.starts_with(CMS) => {
                let name = &p[CMS.len()..];
                match self.config_maps.iter().find(|(n, _)| *n == name) {
                    Some((n, conf)) => Reply::Json(
                        200,
                        json!({"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": n, "namespace": "kube-system"},
                               "data": {"config.conf": conf, "kubeconfig.conf": "apiVersion: v1\n"}}),
                    ),
                    None => not_found(p),
                }
            }
            (_, p) => not_found(p),
        }
    }
}

fn not_found(path: &str) -> Reply {
    Reply::Json(
        404,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
               "reason": "NotFound", "message": format!("{path} not found")}),
    )
}

/// The stand-in serving `c`, and a kubeconfig file naming it as context `name`.
async fn serve(c: Cluster, name: &str) -> (ApiServer, tempfile::TempDir, ContextRef) {
    let c = Arc::new(c);
    let server = ApiServer::start(move |r| c.answer(r)).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = server
        .kubeconfig("x")
        .replace("name: kind-x\ncurrent", &format!("name: {name}\ncurrent"));
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, kc).unwrap();
    let r = ContextRef {
        context: name.to_string(),
        kubeconfig: Some(path),
    };
    (server, dir, r)
}

/// The checks of context `c` (namespace `kindred`).
async fn checks(c: &ContextRef, via: ReadVia) -> Vec<Check> {
    context_checks(c, "kindred", via).await
}

fn named(checks: &[Check], name: CheckName) -> Vec<&Check> {
    checks.iter().filter(|c| c.name == name).collect()
}

/// `kindred doctor ARGS` with KUBECONFIG at `dir`'s kubeconfig.
async fn kindred(dir: &std::path::Path, args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let (kc, state) = (dir.join("kubeconfig"), dir.to_path_buf());
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_kindred"))
            .arg("doctor")
            .args(&args)
            .env("KUBECONFIG", kc)
            .env("XDG_STATE_HOME", state)
            .env("NO_COLOR", "1")
            .env("KINDRED_LOG", std::env::temp_dir().join("kindred-test.log"))
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Everything allowed, one build on every node: every check is ok, each permission was asked
/// as the API server expects it, and the CLI exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn a_context_where_everything_is_allowed_is_ok() {
    let (server, dir, c) = serve(Cluster::uniform(), "staging").await;
    let got = checks(&c, ReadVia::ExecOrDebug).await;
    assert!(got.iter().all(|c| c.status == Status::Ok), "{got:#?}");
    let api = named(&got, CheckName::ApiServer);
    let url = format!("https://{}", server.addr);
    assert!(
        api[0]
            .message
            .starts_with(&format!("staging: {url} answered in "))
            && api[0].message.ends_with("Kubernetes v1.34.0"),
        "{api:?}"
    );
    let perm = named(&got, CheckName::Permission);
    assert_eq!(perm.len(), 1, "{perm:?}");
    assert_eq!(
        perm[0].message,
        "staging: all 12 permissions reading it by exec-or-debug needs are granted"
    );
    let proxy = named(&got, CheckName::KubeProxy);
    assert_eq!(
        proxy[0].message,
        "staging: 3 nodes: nftables, kube-proxy v1.34.0, kubelet v1.34.0: 3 (c-control-plane, c-worker, c-worker2)"
    );
    // The reviews as the API server reads them: pods/exec is the pods resource's exec
    // subresource, in kube-system; the list of nodes has no namespace.
    let reviews: Vec<Value> = server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/selfsubjectaccessreviews"))
        .map(|r| r.body["spec"]["resourceAttributes"].clone())
        .collect();
    assert_eq!(reviews.len(), 12, "{reviews:#?}");
    assert!(reviews.contains(
        &json!({"group": "", "resource": "pods", "subresource": "exec",
                                      "verb": "create", "namespace": "kube-system"})
    ));
    assert!(reviews.contains(&json!({"group": "", "resource": "nodes", "verb": "list"})));
    for (verb, resource) in [("list", "endpointslices"), ("watch", "endpointslices")] {
        let r = json!({"group": "discovery.k8s.io", "resource": resource, "verb": verb});
        assert!(reviews.contains(&r), "{r}");
    }
    for (verb, resource) in [("create", "pods"), ("delete", "pods")] {
        let r = json!({"group": "", "resource": resource, "verb": verb, "namespace": "kindred"});
        assert!(reviews.contains(&r), "{r}");
    }
    let o = kindred(
        dir.path(),
        &["--context", "staging", "--read", "exec-or-debug"],
    )
    .await;
    let out = common::stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", common::stderr(&o));
    assert!(out.contains("ok    api-server "), "{out}");
    assert!(out.ends_with("0 failed, 0 warnings, 3 checks\n"), "{out}");
    // Neither Docker nor kind nor a scenario was looked at.
    assert!(!out.contains("docker") && !out.contains("kind "), "{out}");
}

/// A review of pods/exec in kube-system answered `allowed: false`: reading by exec fails,
/// naming pods/exec and the Role rule that grants it; with debug pods allowed as the fallback,
/// it is a warning only.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_exec_fails_with_the_rbac_rule_that_grants_it() {
    let c = Cluster {
        denied: vec!["create pods/exec kube-system"],
        ..Cluster::uniform()
    };
    let (_server, dir, c) = serve(c, "prod").await;
    let got = checks(&c, ReadVia::Exec).await;
    let perm = named(&got, CheckName::Permission);
    assert_eq!(perm.len(), 1, "{perm:#?}");
    assert_eq!(perm[0].status, Status::Fail);
    assert_eq!(
        perm[0].message,
        "prod: may not create pods/exec in namespace kube-system (no RBAC policy matched): kindred reads the rules by exec into each node's kube-proxy pod"
    );
    assert_eq!(
        perm[0].fix.as_deref().unwrap(),
        "grant it with this rule in a Role in namespace kube-system (bound by a RoleBinding there): - apiGroups: [\"\"]  resources: [\"pods/exec\"]  verbs: [\"create\"]"
    );
    let either = checks(&c, ReadVia::ExecOrDebug).await;
    let perm = named(&either, CheckName::Permission);
    assert_eq!(perm[0].status, Status::Warn, "{perm:#?}");
    assert!(
        perm[0]
            .message
            .ends_with("every node is read by a debug pod instead"),
        "{perm:?}"
    );
    // The CLI: the same line, the fix under it, exit 1.
    let o = kindred(dir.path(), &["--context", "prod"]).await;
    let out = common::stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", common::stderr(&o));
    assert!(
        out.contains("FAIL  permission prod: may not create pods/exec in namespace kube-system"),
        "{out}"
    );
    assert!(
        out.contains("fix: grant it with this rule in a Role in namespace kube-system"),
        "{out}"
    );
    let o = kindred(dir.path(), &["--context", "prod", "--format", "json"]).await;
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let fails: Vec<&Value> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .collect();
    assert_eq!(fails.len(), 1, "{v:#}");
    assert_eq!(fails[0]["name"], "permission");
}

/// Debug pods refused in kindred's namespace while reading by debug pod: a failure with the
/// Role rule for that namespace; a missing watch is only a warning.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_debug_pod_fails_and_a_refused_watch_warns() {
    let c = Cluster {
        denied: vec!["create pods kindred", "watch services *"],
        ..Cluster::uniform()
    };
    let (_server, _dir, c) = serve(c, "prod").await;
    let got = checks(&c, ReadVia::Debug).await;
    let perm = named(&got, CheckName::Permission);
    assert_eq!(perm.len(), 2, "{perm:#?}");
    let watch = perm.iter().find(|c| c.message.contains("watch")).unwrap();
    assert_eq!(watch.status, Status::Warn);
    assert!(
        watch.fix.as_deref().unwrap().contains("in a ClusterRole")
            && watch
                .fix
                .as_deref()
                .unwrap()
                .ends_with("resources: [\"services\"]  verbs: [\"watch\"]"),
        "{watch:?}"
    );
    let pods = perm.iter().find(|c| c.status == Status::Fail).unwrap();
    assert!(
        pods.message
            .starts_with("prod: may not create pods in namespace kindred"),
        "{pods:?}"
    );
    assert!(
        pods.fix
            .as_deref()
            .unwrap()
            .contains("a Role in namespace kindred"),
        "{pods:?}"
    );
}

/// An API server that refuses the reviews themselves: one warning saying so (whether kindred
/// may is not known), not a failure per permission.
#[tokio::test(flavor = "multi_thread")]
async fn refused_reviews_are_one_warning() {
    let c = Cluster {
        no_reviews: true,
        ..Cluster::uniform()
    };
    let (_server, _dir, c) = serve(c, "locked").await;
    let got = checks(&c, ReadVia::Exec).await;
    let perm = named(&got, CheckName::Permission);
    assert_eq!(perm.len(), 1, "{perm:#?}");
    assert_eq!(perm[0].status, Status::Warn);
    assert!(
        perm[0]
            .message
            .starts_with("locked: asking whether it may list nodes: ")
            && perm[0].message.contains("forbidden")
            && perm[0].message.ends_with("(and the 8 other reviews)"),
        "{perm:?}"
    );
}

/// An API server that accepts the connection and never answers: a failure within about 5 s,
/// naming the context and the server; nothing else is asked.
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_api_server_fails_within_five_seconds_naming_the_context() {
    let c = Cluster {
        hangs: true,
        ..Cluster::uniform()
    };
    let (server, dir, c) = serve(c, "far-away").await;
    let start = Instant::now();
    let got = checks(&c, ReadVia::Exec).await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(7),
        "{took:?}"
    );
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].name, CheckName::ApiServer);
    assert_eq!(got[0].status, Status::Fail);
    assert_eq!(
        got[0].message,
        format!(
            "far-away: the API server at https://{} did not answer within 5s",
            server.addr
        )
    );
    let o = kindred(dir.path(), &["--context", "far-away"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
    assert!(common::stdout(&o).contains("FAIL  api-server far-away: the API server at https://"));
}

/// Two node pools: one on kubeadm's ConfigMap (mode empty: iptables) with an older build, one
/// on a ConfigMap of its own in nftables mode; and a node without a kube-proxy pod. One line
/// counts the nodes of each, and warns.
#[tokio::test(flavor = "multi_thread")]
async fn nodes_with_different_kube_proxies_and_one_without_are_reported() {
    let old = Some("registry.k8s.io/kube-proxy:v1.33.2");
    let new = Some("registry.k8s.io/kube-proxy:v1.34.0@sha256:0123");
    let c = Cluster {
        nodes: vec![
            node("a-1", "v1.33.2", old),
            node("a-2", "v1.33.2", old),
            NodeSpec {
                config_map: Some("kube-proxy-nft"),
                ..node("b-1", "v1.34.0", new)
            },
            node("cilium-1", "v1.34.0", None),
        ],
        config_maps: vec![("kube-proxy", KUBEADM_CONF), ("kube-proxy-nft", NFT_CONF)],
        ..Default::default()
    };
    let (_server, _dir, c) = serve(c, "pools").await;
    let got = checks(&c, ReadVia::Exec).await;
    let proxy = named(&got, CheckName::KubeProxy);
    assert_eq!(proxy[0].status, Status::Warn, "{proxy:#?}");
    assert_eq!(
        proxy[0].message,
        "pools: 4 nodes: iptables, kube-proxy v1.33.2, kubelet v1.33.2: 2 (a-1, a-2); nftables, kube-proxy v1.34.0, kubelet v1.34.0: 1 (b-1); no kube-proxy pod, kubelet v1.34.0: 1 (cilium-1)"
    );
    let fix = proxy[0].fix.as_deref().unwrap();
    assert!(
        fix.contains("nodes run different kube-proxy modes or versions"),
        "{fix}"
    );
    assert!(fix.contains("no kube-proxy pod on cilium-1"), "{fix}");
    // Nothing else is wrong: permissions and the API server are fine.
    assert!(
        got.iter()
            .filter(|c| c.name != CheckName::KubeProxy)
            .all(|c| c.status == Status::Ok),
        "{got:#?}"
    );
}

/// One build everywhere but a node without a kube-proxy pod: a warning naming it.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_without_a_kube_proxy_pod_is_warned() {
    let mut c = Cluster::uniform();
    c.nodes[2].image = None;
    let (_server, _dir, c) = serve(c, "one").await;
    let got = checks(&c, ReadVia::Exec).await;
    let proxy = named(&got, CheckName::KubeProxy);
    assert_eq!(proxy[0].status, Status::Warn, "{proxy:#?}");
    let fix = proxy[0].fix.as_deref().unwrap();
    assert!(
        fix.starts_with("no kube-proxy pod on c-worker2: exec cannot read it"),
        "{fix}"
    );
    assert!(!fix.contains("different"), "{fix}");
}

/// A context the kubeconfig does not have: one failure naming it and the contexts there are.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_context_fails_naming_the_known_ones() {
    let (_server, dir, _c) = serve(Cluster::uniform(), "staging").await;
    let o = kindred(dir.path(), &["--context", "prod"]).await;
    let out = common::stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", common::stderr(&o));
    assert!(
        out.contains("FAIL  context")
            && out.contains("no context prod in")
            && out.contains("contexts: staging"),
        "{out}"
    );
}

/// A scenario whose two sides are contexts: `kindred doctor` checks each context through its
/// API server and asks nothing of Docker or kind (DOCKER_HOST names no engine, PATH has no kind).
#[tokio::test(flavor = "multi_thread")]
async fn a_scenario_of_two_contexts_is_checked_context_by_context() {
    let (_server, dir, _c) = serve(Cluster::uniform(), "staging").await;
    let f = dir.path().join("scenario.yaml");
    std::fs::write(
        &f,
        "service: default/echo\nbase:\n  name: staging\n  context: staging\n  kubeconfig: kubeconfig\n\
         pr:\n  name: prod\n  context: staging\n  kubeconfig: kubeconfig\n",
    )
    .unwrap();
    let (state, file) = (dir.path().to_path_buf(), f.clone());
    let o = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_kindred"))
            .arg("-f")
            .arg(&file)
            .args(["doctor", "--quick", "--format", "json"])
            .env("XDG_STATE_HOME", &state)
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .env("PATH", "/nonexistent")
            .env("KINDRED_LOG", state.join("log"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names.iter().filter(|n| **n == "api-server").count(),
        2,
        "{names:?}"
    );
    for absent in ["docker", "kind", "git", "source"] {
        assert!(!names.contains(&absent), "{absent} in {names:?}");
    }
}
