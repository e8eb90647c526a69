//! Probes through the API server's exec, as kindred runs them: kube-rs reaches a stand-in API
//! server over HTTPS, with the client certificate of the kubeconfig kind gives, and the
//! server speaks the Kubernetes exec protocol (a websocket, `v5.channel.k8s.io` as a 1.30+
//! server picks it, or `v4.channel.k8s.io` from an older one: stdout, stderr, and the final
//! Status with the exit code).

mod common;
use common::apiserver::{ApiServer, Reply, Req, V4, V5};

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kindred::backend::kube::{client_for, exec_in, exit_code, probe_pod};
use kindred::backend::probe::{Ask, Timeouts};
use kindred::model::Outcome;
use serde_json::{Value, json};

/// kindred's client for a cluster `name` whose API server is `server`: the cluster exists (no
/// kubeconfig of kindred's for it), so kindred takes the kubeconfig `kind get kubeconfig` prints
/// (the stand-in kind's, tied to `server`: its CA, client certificate and key).
async fn client(server: &ApiServer, name: &str) -> kube::Client {
    common::in_process_state();
    let dir = tempfile::tempdir().unwrap();
    let kind = common::standin(dir.path(), "unused");
    common::tie(dir.path(), name, server);
    client_for(&kind, name).await.unwrap()
}

fn success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
}

fn exit(code: u32) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("command terminated with non-zero exit code: error executing command [curl], exit code {code}"),
           "reason": "NonZeroExitCode",
           "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
}

fn is_exec(r: &Req) -> bool {
    r.path.ends_with("/exec")
}

#[tokio::test]
async fn exec_sends_argv_and_container_and_reads_both_streams_and_the_exit_code() {
    let server = ApiServer::start(|r| {
        assert!(is_exec(r), "{r:?}");
        Reply::Exec {
            stdout: "200 0.004213".into(),
            stderr: "a warning\n".into(),
            status: success(),
        }
    })
    .await;
    let c = client(&server, "exec-ok").await;
    let argv: Vec<String> = ["curl", "-s", "http://10.0.0.1:80/"]
        .map(String::from)
        .to_vec();
    let o = exec_in(
        &c,
        "default",
        "netshoot-w",
        Some("netshoot"),
        &argv,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(
        (o.stdout.as_str(), o.stderr.as_str(), o.code),
        ("200 0.004213", "a warning\n", 0)
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let r = &reqs[0];
    assert_eq!(r.path, "/api/v1/namespaces/default/pods/netshoot-w/exec");
    assert_eq!(
        r.params("command"),
        argv,
        "argv as separate words, no shell"
    );
    assert_eq!(r.params("container"), ["netshoot"]);
    assert_eq!(r.params("stdout"), ["true"]);
    assert_eq!(r.params("stderr"), ["true"]);
    assert!(
        !r.params("stdin").contains(&"true".to_string()),
        "{}",
        r.query
    );
    assert!(r.params("tty").iter().all(|v| v != "true"), "{}", r.query);
    assert_eq!(r.header("upgrade"), Some("websocket"));
    // v5 offered first, v4 as well; a 1.30+ server picks v5.
    assert!(
        r.header("sec-websocket-protocol")
            .is_some_and(|p| p.starts_with(V5) && p.contains(V4)),
        "{r:?}"
    );
    assert_eq!(*server.negotiated.lock().unwrap(), [V5]);
    assert_eq!(
        r.client_cert,
        Some(server.pki.client_der()),
        "the kubeconfig's user's client certificate"
    );
    assert_eq!(r.header("authorization"), None, "no bearer token");
}

/// An API server older than 1.30 knows only v4: the exec negotiates it and reads the same.
#[tokio::test]
async fn exec_against_a_server_that_knows_only_v4() {
    let server = ApiServer::start_with(&[V4], |_| Reply::Exec {
        stdout: "200 0.002".into(),
        stderr: "curl: a note\n".into(),
        status: exit(7),
    })
    .await;
    let c = client(&server, "exec-v4").await;
    let argv = vec!["curl".to_string()];
    let o = exec_in(&c, "default", "p", None, &argv, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        (o.stdout.as_str(), o.stderr.as_str(), o.code),
        ("200 0.002", "curl: a note\n", 7)
    );
    assert_eq!(*server.negotiated.lock().unwrap(), [V4]);
}

#[tokio::test]
async fn a_probe_reads_curl_through_exec_ok_timeout_and_failure() {
    let server = ApiServer::start(|r| {
        let url = r.params("command").last().cloned().unwrap_or_default();
        let pod = r.path.split('/').nth(6).unwrap_or("").to_string();
        match pod.as_str() {
            "ok" => Reply::Exec {
                stdout: "echo-a\n@kindred-try@ 0 0 200 0.001 0.012\n".into(),
                stderr: String::new(),
                status: success(),
            },
            "slow" => Reply::Exec {
                stdout: "\n@kindred-try@ 0 28 000 0 2.001\n".into(),
                stderr: "curl: (28) Connection timed out after 2001 milliseconds".into(),
                status: exit(28),
            },
            "refused" => Reply::Exec {
                stdout: "\n@kindred-try@ 0 7 000 0 0.001\n".into(),
                stderr: format!("curl: (7) Failed to connect to {url}"),
                status: exit(7),
            },
            _ => Reply::Json(
                404,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "message": format!("pods \"{pod}\" not found"), "reason": "NotFound", "code": 404}),
            ),
        }
    })
    .await;
    let c = client(&server, "probe").await;
    let t = Ask::once(Timeouts {
        connect: 2.0,
        total: 5.0,
    });
    let run = |pod: &str| {
        probe_pod(
            &c,
            "default",
            pod.to_string(),
            "netshoot",
            "172.18.255.200:80",
            &t,
        )
    };
    let ok = run("ok").await.unwrap();
    assert_eq!(
        (ok.outcome, ok.http_status, ok.latency_ms),
        (Outcome::Ok, Some(200), Some(12))
    );
    assert_eq!(
        (ok.source.as_str(), ok.target.as_str()),
        ("ok", "172.18.255.200:80")
    );
    let slow = run("slow").await.unwrap();
    assert_eq!(slow.outcome, Outcome::Timeout);
    assert!(
        slow.detail.as_deref().unwrap().contains("timed out"),
        "{slow:?}"
    );
    let refused = run("refused").await.unwrap();
    assert_eq!(refused.outcome, Outcome::Fail);
    assert!(
        refused
            .detail
            .as_deref()
            .unwrap()
            .contains("Failed to connect to http://172.18.255.200:80"),
        "{refused:?}"
    );
    // The exec itself failed (the pod is gone): told apart from a curl that failed.
    let gone = run("gone").await.unwrap_err();
    assert_eq!(gone.outcome, Outcome::Fail);
    let d = gone.detail.unwrap();
    assert!(
        d.contains("exec in default/gone") && d.contains("not found"),
        "{d}"
    );
    // curl's own limits went into the command.
    let argv = server
        .requests()
        .into_iter()
        .find(|r| r.path.contains("/pods/ok/"))
        .unwrap()
        .params("command");
    assert_eq!(argv[0], "curl");
    assert!(
        argv.windows(2).any(|w| w == ["--connect-timeout", "2"]),
        "{argv:?}"
    );
    assert!(
        argv.windows(2).any(|w| w == ["--max-time", "5"]),
        "{argv:?}"
    );
}

#[tokio::test]
async fn a_stalled_api_server_is_named_not_waited_on() {
    let server = ApiServer::start(|_| Reply::Hang).await;
    let c = client(&server, "stall").await;
    let start = std::time::Instant::now();
    let e = exec_in(
        &c,
        "default",
        "p",
        None,
        &["true".to_string()],
        Duration::from_secs(1),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(e, "exec in default/p: no answer within 1s");
}

#[test]
fn exit_codes_from_the_final_status() {
    let st = |v: Value| -> Status { serde_json::from_value(v).unwrap() };
    assert_eq!(exit_code(Some(&st(success()))), 0);
    assert_eq!(exit_code(Some(&st(exit(28)))), 28);
    assert_eq!(exit_code(Some(&st(exit(7)))), 7);
    // No status at all (the stream broke), a failure without an exit code, a garbled one.
    assert_eq!(exit_code(None), -1);
    assert_eq!(
        exit_code(Some(&st(
            json!({"status": "Failure", "reason": "InternalError"})
        ))),
        -1
    );
    assert_eq!(
        exit_code(Some(&st(json!({"status": "Failure",
            "details": {"causes": [{"reason": "ExitCode", "message": "x"}]}})))),
        -1
    );
}

/// The API server's `/version`.
fn version() -> Reply {
    Reply::Json(
        200,
        json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0", "gitCommit": "", "gitTreeState": "clean",
               "buildDate": "2025-08-27T00:00:00Z", "goVersion": "go1.24.6", "compiler": "gc", "platform": "linux/amd64"}),
    )
}

/// `kubeconfig` (one context), edited: its user's client certificate and key removed, or its CA
/// replaced by `ca` (PEM).
async fn client_from(
    kubeconfig: &str,
    edit: impl FnOnce(&mut kube::config::Kubeconfig),
) -> kube::Client {
    let mut kc = kube::config::Kubeconfig::from_yaml(kubeconfig).unwrap();
    edit(&mut kc);
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// The stand-in is the TLS server kind's kubeconfig describes: kindred's client, with the CA
/// and client certificate kind gives, is served; the same kubeconfig without the client
/// certificate and key is refused at the handshake (the server requires one signed by its CA),
/// and so is a client that trusts another CA (it refuses the server's certificate). Neither
/// refused client's request reaches the server.
#[tokio::test]
async fn the_api_server_requires_the_client_certificate_and_its_ca() {
    let server = ApiServer::start(|r| {
        assert_eq!(r.path, "/version", "{r:?}");
        version()
    })
    .await;
    let c = client(&server, "tls-ok").await;
    let v = c.apiserver_version().await.unwrap();
    assert_eq!(v.git_version, "v1.34.0");
    assert_eq!(server.requests().len(), 1);
    assert!(server.refused.lock().unwrap().is_empty());
    let kubeconfig = server.kubeconfig("tls-ok");

    // No client certificate: the server ends the handshake.
    let anonymous = client_from(&kubeconfig, |kc| {
        let user = kc.auth_infos[0].auth_info.as_mut().unwrap();
        user.client_certificate_data = None;
        user.client_key_data = None;
    })
    .await;
    let e = anonymous.apiserver_version().await.unwrap_err();
    let refused = refusals(&server, 1).await;
    assert!(
        refused[0].contains("peer sent no certificates"),
        "{refused:?}"
    );
    assert!(format!("{e:?}").contains("CertificateRequired"), "{e:?}");

    // Another CA (another cluster's): the client refuses the server's certificate.
    let other = ApiServer::start(|_| version()).await;
    let stranger = client_from(&kubeconfig, |kc| {
        let cluster = kc.clusters[0].cluster.as_mut().unwrap();
        cluster.certificate_authority_data = Some(common::apiserver::data(&other.pki.ca));
    })
    .await;
    let e = stranger.apiserver_version().await.unwrap_err();
    // Every kubeadm CA is CN=kubernetes: the client finds the issuer by name, and its
    // signature does not verify.
    assert!(
        format!("{e:?}").contains("InvalidCertificate(BadSignature)"),
        "{e:?}"
    );
    // The server records the refusal when the client's alert reaches it.
    let refused = refusals(&server, 2).await;
    assert!(refused[1].contains("received fatal alert"), "{refused:?}");
    assert_eq!(
        server.requests().len(),
        1,
        "only kindred's request was served"
    );
}

/// The same holds for a client other than kube-rs: curl trusting the server's CA is served with
/// the client certificate and key, and refused at the handshake without them.
#[tokio::test]
async fn curl_is_served_with_the_client_certificate_and_refused_without() {
    let server = ApiServer::start(|_| version()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, pem: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, pem).unwrap();
        p.display().to_string()
    };
    let ca = file("ca.crt", &server.pki.ca);
    let cert = file("client.crt", &server.pki.client_cert);
    let key = file("client.key", &server.pki.client_key);
    let url = format!("https://{}/version", server.addr);
    let curl = |extra: &[&str]| {
        let mut c = tokio::process::Command::new("curl");
        c.args(["-sS", "--max-time", "10", "--cacert", &ca])
            .args(extra)
            .arg(&url);
        c
    };
    let o = curl(&["--cert", &cert, "--key", &key])
        .output()
        .await
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("v1.34.0"),
        "{o:?}"
    );
    let o = curl(&[]).output().await.unwrap();
    assert!(!o.status.success(), "{o:?}");
    assert_eq!(server.requests().len(), 1, "{o:?}");
    let refused = refusals(&server, 1).await;
    assert!(
        refused[0].contains("peer sent no certificates"),
        "{refused:?}"
    );
}

/// The handshakes `server` refused, once there are `n` (within 5 s).
async fn refusals(server: &ApiServer, n: usize) -> Vec<String> {
    for _ in 0..50 {
        if server.refused.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = server.refused.lock().unwrap().clone();
    assert_eq!(refused.len(), n, "{refused:?}");
    refused
}
