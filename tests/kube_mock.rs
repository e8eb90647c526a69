//! kube-rs code through a real `kube::Client` on a tower-test mock transport that serves real
//! Kubernetes JSON: apply with discovery, error responses, pod and Service watches (with a watch
//! restart), readiness waits.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use kindred::backend::kube::{Watched, apply_yaml, wait_deployment, watch_pods, watch_service};
use kindred::model::PodPhase;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// A client and the mock's handle; the calling test gets its time limit (a request that never
/// comes would hang it).
fn mock() -> (Client, Handle) {
    common::time_limit();
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(svc, "default"), handle)
}

fn respond(code: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(v).unwrap()))
        .unwrap()
}

async fn body_json(req: Request<Body>) -> Value {
    let bytes = req.into_body().collect_bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

fn core_v1_resources() -> Value {
    json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1",
        "resources": [
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
             "verbs": ["create","delete","get","list","patch","update","watch"]},
            {"name": "pods/exec", "singularName": "", "namespaced": true, "kind": "PodExecOptions", "verbs": ["create","get"]},
            {"name": "services", "singularName": "service", "namespaced": true, "kind": "Service",
             "verbs": ["create","delete","get","list","patch","update","watch"]},
            {"name": "namespaces", "singularName": "namespace", "namespaced": false, "kind": "Namespace",
             "verbs": ["create","delete","get","list","patch","update","watch"]}
        ]
    })
}

fn pod(name: &str, node: &str, host: bool, ip: &str, phase: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": "5",
                     "labels": {"kindred.io/test": "true"}},
        "spec": {"nodeName": node, "hostNetwork": host, "containers": [{"name": "c", "image": "nicolaka/netshoot:v0.13"}]},
        "status": {"phase": phase, "podIP": ip,
                   "containerStatuses": [{"name": "c", "ready": true, "restartCount": 1, "image": "x", "imageID": "y"}]}
    })
}

use common::apiserver::{CLUSTER_SCOPED, discovery as discovery_from, plural};

/// Every server-side apply: (path, query, content type, body).
type Applied = Arc<Mutex<Vec<(String, String, String, Value)>>>;

async fn apply_server(yaml: &str) -> (Client, Applied, tokio::task::JoinHandle<()>) {
    let (client, mut h) = mock();
    let discovery = discovery_from(yaml);
    let applied: Applied = Default::default();
    let seen = applied.clone();
    let server = tokio::spawn(async move {
        while let Some((req, send)) = h.next_request().await {
            let path = req.uri().path().to_string();
            let query = req.uri().query().unwrap_or("").to_string();
            if req.method() == "GET"
                && let Some((_, list)) = discovery.iter().find(|(p, _)| *p == path)
            {
                send.send_response(respond(StatusCode::OK, list));
                continue;
            }
            assert_eq!(req.method(), "PATCH", "unexpected request {path}");
            let ct = req.headers()["content-type"].to_str().unwrap().to_string();
            let obj = body_json(req).await;
            seen.lock().unwrap().push((path, query, ct, obj.clone()));
            send.send_response(respond(StatusCode::OK, &obj));
        }
    });
    (client, applied, server)
}

/// Every apply went to the object's own URL (group, version, namespace when it has one, plural,
/// name), as kindred's field manager with force, and its body is the object.
fn check_applied(applied: &Applied, yaml: &str) {
    let objects = kindred::backend::kube::parse_objects(yaml, "test").unwrap();
    let applied = applied.lock().unwrap();
    assert_eq!(applied.len(), objects.len());
    for (o, (path, query, ct, body)) in objects.iter().zip(applied.iter()) {
        let t = o.types.as_ref().unwrap();
        let name = o.metadata.name.as_deref().unwrap();
        let base = if t.api_version.contains('/') {
            format!("/apis/{}", t.api_version)
        } else {
            format!("/api/{}", t.api_version)
        };
        let want = if CLUSTER_SCOPED.contains(&t.kind.as_str()) {
            format!("{base}/{}/{name}", plural(&t.kind))
        } else {
            let ns = o.metadata.namespace.as_deref().unwrap_or("default");
            format!("{base}/namespaces/{ns}/{}/{name}", plural(&t.kind))
        };
        assert_eq!(*path, want, "{} {name}", t.kind);
        assert!(
            query.contains("fieldManager=kindred") && query.contains("force=true"),
            "{query}"
        );
        assert_eq!(ct, "application/apply-patch+yaml");
        assert_eq!(body["apiVersion"], t.api_version.as_str(), "{path}");
        assert_eq!(body["kind"], t.kind.as_str(), "{path}");
        assert_eq!(body["metadata"]["name"], name, "{path}");
        match &o.metadata.namespace {
            Some(ns) => assert_eq!(body["metadata"]["namespace"], ns.as_str(), "{path}"),
            None => assert!(body["metadata"].get("namespace").is_none(), "{path}"),
        }
    }
}

#[tokio::test]
async fn apply_builtin_workloads_with_discovery() {
    let yaml = kindred::scenario::Scenario::builtin()
        .workloads_for("master")
        .unwrap();
    let (client, applied, server) = apply_server(&yaml).await;
    let done = apply_yaml(&client, &yaml, "workloads").await.unwrap();
    assert_eq!(
        done,
        vec![
            "Pod default/echo-master-worker2",
            "Pod default/netshoot-master-worker",
            "Pod default/netshoot-master-worker2",
            "Pod default/overlay-master-worker",
            "Pod default/overlay-master-worker2",
            "Service default/echo",
        ]
    );
    check_applied(&applied, &yaml);
    let svc = &applied.lock().unwrap()[5].3;
    assert_eq!(svc["spec"]["type"], "LoadBalancer");
    assert_eq!(svc["spec"]["externalTrafficPolicy"], "Local");
    drop(client);
    server.abort();
}

/// MetalLB's real manifest (CRDs, cluster roles, webhooks, a namespace, namespaced objects) and
/// kindred's pool: every object to its own URL.
#[tokio::test]
async fn apply_a_real_metallb_manifest_and_the_pool() {
    let manifest = std::fs::read_to_string(common::fixture("metallb/metallb-native.yaml")).unwrap();
    kindred::backend::metallb::check(&manifest, "metallb-native.yaml").unwrap();
    let pool = kindred::backend::metallb::pool_yaml(
        "172.18.255.200".parse().unwrap(),
        "172.18.255.209".parse().unwrap(),
    );
    let both = format!("{manifest}\n---\n{pool}");
    let (client, applied, server) = apply_server(&both).await;
    let done = apply_yaml(&client, &manifest, "MetalLB manifest")
        .await
        .unwrap();
    assert!(
        done.contains(&"Namespace metallb-system".to_string()),
        "{done:?}"
    );
    assert!(
        done.contains(&"Deployment metallb-system/controller".to_string()),
        "{done:?}"
    );
    assert!(
        done.iter()
            .filter(|d| d.starts_with("CustomResourceDefinition "))
            .count()
            >= 5,
        "{done:?}"
    );
    let done = apply_yaml(&client, &pool, "MetalLB pool").await.unwrap();
    assert_eq!(
        done,
        [
            "IPAddressPool metallb-system/kindred",
            "L2Advertisement metallb-system/kindred"
        ]
    );
    check_applied(&applied, &both);
    let applied = applied.lock().unwrap();
    let pool_body = &applied[applied.len() - 2].3;
    assert_eq!(
        pool_body["spec"]["addresses"],
        json!(["172.18.255.200-172.18.255.209"])
    );
    drop(applied);
    drop(client);
    server.abort();
}

#[tokio::test]
async fn apply_errors_name_the_object_and_the_reason() {
    let (client, mut h) = mock();
    let server = tokio::spawn(async move {
        while let Some((req, send)) = h.next_request().await {
            match (req.method().as_str(), req.uri().path()) {
                ("GET", "/api/v1") => send.send_response(respond(StatusCode::OK, &core_v1_resources())),
                ("GET", "/apis/metallb.io/v1beta1") => send.send_response(respond(
                    StatusCode::NOT_FOUND,
                    &json!({"kind":"Status","apiVersion":"v1","status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","code":404}),
                )),
                ("PATCH", _) => send.send_response(respond(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &json!({"kind":"Status","apiVersion":"v1","status":"Failure",
                            "message":"Pod \"bad\" is invalid: spec.containers: Required value",
                            "reason":"Invalid","code":422}),
                )),
                other => panic!("unexpected request {other:?}"),
            }
        }
    });
    let e = apply_yaml(
        &client,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec: {}\n",
        "w.yaml",
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("w.yaml: applying Pod bad") && e.contains("spec.containers: Required value"),
        "{e}"
    );
    let e = apply_yaml(
        &client,
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: kindred, namespace: metallb-system}\n",
        "pool",
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("IPAddressPool kindred: the API server does not know this kind"),
        "{e}"
    );
    let e = apply_yaml(&client, "kind: Pod\nmetadata: {name: x}\n", "nover")
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("nover"), "{e:#}");
    drop(client);
    server.abort();
}

#[tokio::test]
async fn pod_watch_survives_a_restart_and_reports_pods_gone() {
    let (client, mut h) = mock();
    let server = tokio::spawn(async move {
        let mut lists = 0;
        while let Some((req, send)) = h.next_request().await {
            let q = req.uri().query().unwrap_or("").to_string();
            assert!(q.contains("labelSelector=kindred.io%2Ftest%3Dtrue"), "{q}");
            if q.contains("watch=true") {
                // One change, then the watch expires (410): the watcher lists again.
                let a = pod(
                    "netshoot-master-worker",
                    "master-worker",
                    true,
                    "172.18.0.3",
                    "Running",
                );
                let lines = format!(
                    "{}\n{}\n",
                    json!({"type": "MODIFIED", "object": a}),
                    json!({"type": "ERROR", "object": {"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version","reason":"Expired","code":410}})
                );
                send.send_response(
                    Response::builder()
                        .status(200)
                        .body(Body::from(lines.into_bytes()))
                        .unwrap(),
                );
            } else {
                lists += 1;
                let mut items = vec![pod(
                    "netshoot-master-worker",
                    "master-worker",
                    true,
                    "172.18.0.3",
                    if lists == 1 { "Pending" } else { "Running" },
                )];
                if lists == 1 {
                    items.push(pod(
                        "overlay-master-worker",
                        "master-worker",
                        false,
                        "10.244.1.2",
                        "Running",
                    ));
                }
                send.send_response(respond(StatusCode::OK, &json!({"apiVersion":"v1","kind":"PodList","metadata":{"resourceVersion": format!("{lists}")},"items": items})));
            }
        }
    });
    let mut seen = Vec::new();
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        watch_pods(client, "default", |w| {
            let stop = matches!(&w, Watched::PodGone(n) if n == "overlay-master-worker");
            seen.push(w);
            !stop
        }),
    )
    .await;
    assert!(r.is_ok(), "watch did not finish: {seen:?}");
    let pods: Vec<_> = seen
        .iter()
        .filter_map(|w| match w {
            Watched::Pod(p) => Some((p.name.as_str(), p.phase, p.host_network, p.restarts)),
            _ => None,
        })
        .collect();
    assert_eq!(
        pods[0],
        ("netshoot-master-worker", PodPhase::Pending, true, 1)
    );
    assert!(pods.contains(&("netshoot-master-worker", PodPhase::Running, true, 1)));
    assert!(pods.contains(&("overlay-master-worker", PodPhase::Running, false, 1)));
    assert!(matches!(seen.last(), Some(Watched::PodGone(n)) if n == "overlay-master-worker"));
    server.abort();
}

#[tokio::test]
async fn service_watch_reads_the_lb_ip_and_warns_about_proxy_mode() {
    let (client, mut h) = mock();
    let server = tokio::spawn(async move {
        while let Some((req, send)) = h.next_request().await {
            let q = req.uri().query().unwrap_or("").to_string();
            assert!(q.contains("fieldSelector=metadata.name%3Decho"), "{q}");
            if q.contains("watch=true") {
                tokio::time::sleep(Duration::from_secs(30)).await;
                continue;
            }
            let svc = json!({
                "apiVersion":"v1","kind":"Service",
                "metadata":{"name":"echo","namespace":"default","resourceVersion":"7"},
                "spec":{"type":"LoadBalancer","externalTrafficPolicy":"Local","ports":[{"port":8080,"targetPort":8080,"protocol":"TCP"}]},
                "status":{"loadBalancer":{"ingress":[{"ip":"172.18.255.200","ipMode":"Proxy"}]}}
            });
            send.send_response(respond(StatusCode::OK, &json!({"apiVersion":"v1","kind":"ServiceList","metadata":{"resourceVersion":"7"},"items":[svc]})));
        }
    });
    let mut got = None;
    watch_service(client, "default", "echo", |w| {
        got = Some(w);
        false
    })
    .await;
    match got {
        Some(Watched::Service(s)) => {
            assert_eq!(s.name, "default/echo");
            assert_eq!(s.lb_ip.as_deref(), Some("172.18.255.200"));
            assert_eq!(s.port, 8080);
            assert_eq!(s.external_traffic_policy.as_deref(), Some("Local"));
            assert!(s.warning.unwrap().contains("ipMode: Proxy"));
        }
        other => panic!("{other:?}"),
    }
    server.abort();
}

#[tokio::test]
async fn deployment_wait_reports_progress_until_ready() {
    let (client, mut h) = mock();
    let server = tokio::spawn(async move {
        let mut n = 0;
        while let Some((req, send)) = h.next_request().await {
            assert_eq!(
                req.uri().path(),
                "/apis/apps/v1/namespaces/metallb-system/deployments/controller"
            );
            n += 1;
            let d = json!({"apiVersion":"apps/v1","kind":"Deployment",
                "metadata":{"name":"controller","namespace":"metallb-system"},
                "spec":{"replicas":1,"selector":{"matchLabels":{"app":"metallb"}},"template":{"metadata":{"labels":{"app":"metallb"}}}},
                "status":{"readyReplicas": if n >= 2 { 1 } else { 0 }}});
            send.send_response(respond(StatusCode::OK, &d));
        }
    });
    let mut progress = Vec::new();
    wait_deployment(
        &client,
        "metallb-system",
        "controller",
        Duration::from_secs(10),
        |m| progress.push(m),
    )
    .await
    .unwrap();
    assert_eq!(
        progress,
        vec![
            "waiting for metallb-system/controller: 0/1 ready",
            "waiting for metallb-system/controller: 1/1 ready"
        ]
    );
    server.abort();
}

fn service(ingress: bool) -> Value {
    let status = if ingress {
        json!({"loadBalancer": {"ingress": [{"ip": "172.18.255.200", "ipMode": "VIP"}]}})
    } else {
        json!({"loadBalancer": {}})
    };
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "echo", "namespace": "default", "resourceVersion": "7"},
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                 "ports": [{"port": 8080, "protocol": "TCP", "targetPort": 8080}]},
        "status": status
    })
}

fn slices(ready: Option<bool>) -> Value {
    let endpoints = match ready {
        None => json!([]),
        Some(r) => {
            json!([{"addresses": ["10.244.2.5"], "conditions": {"ready": r}, "nodeName": "x-worker2"}])
        }
    };
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList",
        "metadata": {"resourceVersion": "9"},
        "items": [{
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "echo-abc", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "echo"}},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"port": 8080, "protocol": "TCP"}]
        }]
    })
}

/// A mock API server whose Service gets its LB IP on the `lb_at`-th read and whose EndpointSlice
/// has a ready endpoint from the `ready_at`-th list on (never when 0).
fn readiness_server(mut h: Handle, lb_at: usize, ready_at: usize) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (mut gets, mut lists) = (0, 0);
        while let Some((req, send)) = h.next_request().await {
            let path = req.uri().path().to_string();
            let query = req.uri().query().unwrap_or("").to_string();
            match path.as_str() {
                "/api/v1/namespaces/default/services/echo" => {
                    gets += 1;
                    send.send_response(respond(StatusCode::OK, &service(gets >= lb_at)))
                }
                "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices" => {
                    assert!(
                        query.contains("labelSelector=kubernetes.io%2Fservice-name%3Decho"),
                        "{query}"
                    );
                    lists += 1;
                    let ready = match lists {
                        1 => None,
                        n if ready_at > 0 && n >= ready_at => Some(true),
                        _ => Some(false),
                    };
                    send.send_response(respond(StatusCode::OK, &slices(ready)))
                }
                other => panic!("unexpected request {other}"),
            }
        }
    })
}

#[tokio::test]
async fn probes_wait_for_the_lb_ip_then_a_ready_endpoint() {
    use kindred::backend::kube::wait_service_ready;
    let (client, h) = mock();
    let server = readiness_server(h, 3, 5);
    let mut said = Vec::new();
    let got = wait_service_ready(
        &client,
        "default",
        "echo",
        Duration::from_secs(30),
        Duration::from_millis(5),
        |m| said.push(m),
    )
    .await
    .unwrap();
    assert_eq!(got, ("172.18.255.200".to_string(), 8080));
    assert_eq!(
        said,
        [
            "waiting for default/echo to have a LoadBalancer IP",
            "waiting for default/echo to have a ready endpoint in its EndpointSlices"
        ]
    );
    server.abort();

    // Never ready: a bounded wait, and the reason.
    let (client, h) = mock();
    let server = readiness_server(h, 1, 0);
    let e = wait_service_ready(
        &client,
        "default",
        "echo",
        Duration::from_millis(50),
        Duration::from_millis(5),
        |_| {},
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("default/echo has no ready endpoint in its EndpointSlices after 0s"),
        "{e}"
    );
    server.abort();
}
