//! Repeated probes on the stand-ins: the echo stand-in answers real curl with its endpoints'
//! names (one reset endpoint of three), and an exec the API server stand-in runs for real
//! ([`Reply::Run`]) streams curl's output back through kube-rs.

mod common;
use common::apiserver::{ApiServer, Reply, routed};
use common::echo::{Echo, Endpoint};

use std::time::Duration;

fn curl(args: &[&str]) -> (String, String, i32) {
    let o = std::process::Command::new("curl")
        .args(args)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.code().unwrap_or(-1),
    )
}

/// Each new connection goes to the next endpoint; the unreachable one resets; a keep-alive
/// connection is answered on every request by the same endpoint; `reset_all` resets it,
/// `blackhole` leaves requests unanswered.
#[test]
fn echo_standin_spreads_new_connections_and_resets_the_unreachable() {
    common::time_limit();
    let echo = Echo::start(&[
        Endpoint::up("echo-a"),
        Endpoint::up("echo-b"),
        Endpoint::down("echo-c"),
    ]);
    let url = format!("http://{}/hostname", echo.host_port());
    let (out, err, code) = curl(&["-sS", "-H", "Connection: close", &url, &url, &url]);
    assert_eq!(out, "echo-aecho-b", "{err}");
    assert!(err.contains("curl: ("), "the reset try fails: {err}");
    assert_ne!(code, 0);
    // One connection, three requests: all to one endpoint (the next, echo-a again).
    let (out, _, code) = curl(&["-sS", &url, &url, &url]);
    assert_eq!((out.as_str(), code), ("echo-aecho-aecho-a", 0));
    assert_eq!(echo.answered()["echo-a"], 4);
    assert_eq!(echo.accepted(), 4);
    echo.blackhole(true);
    let (out, err, code) = curl(&["-sS", "-m", "1", &url]);
    assert_eq!((out.as_str(), code), ("", 28), "{err}");
    echo.blackhole(false);
}

/// `reset_all` resets an open keep-alive connection: the client's next read fails.
#[test]
fn echo_standin_resets_every_open_connection() {
    use std::io::{Read, Write};
    common::time_limit();
    let echo = Echo::start(&[Endpoint::up("echo-a")]);
    let mut s = std::net::TcpStream::connect(echo.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = b"GET /hostname HTTP/1.1\r\nhost: x\r\n\r\n";
    s.write_all(req).unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).ends_with("\r\n\r\necho-a"));
    assert_eq!(echo.open(), 1);
    echo.reset_all();
    let e = s.read(&mut buf).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
}

/// An exec the stand-in runs for real: kindred's exec reads curl's output (streamed line by
/// line) and its exit code, with the argv's address routed to the echo stand-in.
#[tokio::test]
async fn an_exec_runs_for_real_with_its_address_routed() {
    let echo = Echo::start(&[Endpoint::up("echo-a"), Endpoint::down("echo-b")]);
    let route = vec![("172.17.255.1:8080".to_string(), echo.host_port())];
    let server = ApiServer::start(move |r| Reply::Run {
        argv: routed(&r.params("command"), &route),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    common::in_process_state();
    let kind = common::standin(dir.path(), "unused");
    common::tie(dir.path(), "run", &server);
    let client = kindred::backend::kube::client_for(&kind, "run")
        .await
        .unwrap();
    let url = "http://172.17.255.1:8080/hostname";
    let argv: Vec<String> = [
        "curl",
        "-sS",
        "-H",
        "Connection: close",
        "-w",
        "\n%{http_code}\n",
        url,
        url,
    ]
    .map(String::from)
    .to_vec();
    let limit = Duration::from_secs(10);
    let o = kindred::backend::kube::exec_in(&client, "default", "p", Some("c"), &argv, limit)
        .await
        .unwrap();
    assert_eq!(o.stdout, "echo-a\n200\n\n000\n", "{}", o.stderr);
    assert_ne!(o.code, 0, "curl's exit code of the reset try");
    assert!(o.stderr.contains("curl: ("), "{}", o.stderr);
    let none = ["no-such-command-kindred".to_string()];
    let o = kindred::backend::kube::exec_in(&client, "default", "p", None, &none, limit)
        .await
        .unwrap();
    assert_eq!(o.code, 127);
}

/// kindred's own probe (its curl argv, run for real through exec) against the echo stand-in
/// with one endpoint of three unreachable: 30 tries on new connections, a third of them fail,
/// the answers spread over the two that answer; the result is FLAKY.
#[tokio::test]
async fn a_repeated_probe_through_exec_is_flaky_with_its_spread() {
    use kindred::backend::probe::{Ask, Timeouts};
    use kindred::backend::tries::Summary;
    use kindred::model::Outcome;
    let echo = Echo::start(&[
        Endpoint::up("echo-a"),
        Endpoint::up("echo-b"),
        Endpoint::down("echo-c"),
    ]);
    let route = vec![("172.17.255.1:8080".to_string(), echo.host_port())];
    let server = ApiServer::start(move |r| Reply::Run {
        argv: routed(&r.params("command"), &route),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    common::in_process_state();
    let kind = common::standin(dir.path(), "unused");
    common::tie(dir.path(), "tries", &server);
    let client = kindred::backend::kube::client_for(&kind, "tries")
        .await
        .unwrap();
    let ask = Ask {
        repeat: 30,
        path: "/hostname".into(),
        timeouts: Timeouts::default(),
    };
    let mut r = kindred::backend::kube::probe_pod(
        &client,
        "default",
        "netshoot-w".into(),
        "netshoot",
        "172.17.255.1:8080",
        &ask,
    )
    .await
    .unwrap();
    assert_eq!(r.outcome, Outcome::Flaky, "{r:?}");
    r.ready_endpoints = Some(3);
    let s = Summary::of(&r);
    assert_eq!((s.passes, s.tries), (20, 30), "{r:?}");
    assert_eq!(s.endpoints.get("echo-a"), Some(&10));
    assert_eq!(s.endpoints.get("echo-b"), Some(&10));
    assert_eq!(
        s.spread().as_deref(),
        Some("2/3 endpoints answered in 30 tries")
    );
    assert!(s.connect.is_some() && s.total.is_some());
    assert!(
        r.detail
            .as_deref()
            .unwrap()
            .starts_with("10 of 30 tries failed: curl: ("),
        "{r:?}"
    );
    assert_eq!(echo.answered().values().sum::<usize>(), 20);
    let argv = server.requests()[0].params("command");
    assert_eq!(
        argv.iter().filter(|a| a.ends_with("8080/hostname")).count(),
        30
    );
}
