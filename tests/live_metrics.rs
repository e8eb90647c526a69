//! kube-proxy's metrics read end to end on the stand-in kind nodes: a node container serving a
//! fixture on 127.0.0.1:10249 (busybox httpd, as kube-proxy serves them in the host network) is
//! read through Docker with curl and summed up; a node whose metrics do not answer is named.
//! Ignored by plain `cargo test`.

mod common;
use common::*;

use kindred::backend::event::{Event, MetricsRead};
use kindred::backend::tries::Quantiles;
use kindred::backend::{Backend, Command};
use kindred::model::{Job, ProxyMode, Side};
use kindred::scenario::Scenario;

/// Serve `fixture` (tests/fixtures/metrics/) as /metrics on 127.0.0.1:10249 in `node`.
fn serve(node: &str, fixture: &str) {
    let text = std::fs::read_to_string(common::fixture(&format!("metrics/{fixture}"))).unwrap();
    feed(node, &["sh", "-c", "cat > /www/metrics"], &text);
    docker(&[
        "exec",
        "-d",
        node,
        "httpd",
        "-f",
        "-p",
        "127.0.0.1:10249",
        "-h",
        "/www",
    ]);
    assert!(
        within(10.0, || std::process::Command::new("docker")
            .args([
                "exec",
                node,
                "curl",
                "-sf",
                "http://127.0.0.1:10249/metrics"
            ])
            .output()
            .is_ok_and(|o| o.status.success())),
        "httpd in {node} did not come up"
    );
}

#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn each_nodes_metrics_are_read_and_a_silent_node_is_named() {
    let (a, b, _cleanup) = two_clusters("met");
    let tmp = tempfile::tempdir().unwrap();
    // SAFETY: single test in this binary; the state dir is read from the environment.
    unsafe {
        std::env::set_var("XDG_STATE_HOME", tmp.path().join("state"));
        std::env::set_var("KUBECONFIG", tmp.path().join("kubeconfig"));
    }
    serve(&format!("{a}-worker"), "iptables.txt");
    serve(&format!("{b}-worker"), "nftables.txt");
    let kind = standin(tmp.path(), &_cleanup.network);
    let mut sc = Scenario::builtin();
    sc.base.name = a.clone();
    sc.pr.name = b.clone();
    sc.cluster.proxy_mode = ProxyMode::Iptables;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut backend, mut rx) = attached(sc, kind).await;
        backend.send(Command::RefreshRules);
        let (ev, err) = until_finished(&mut rx, Job::Rules).await;
        assert_eq!(err, None, "{ev:?}");
        let read = |side: Side, node: &str| {
            ev.iter()
                .find_map(|e| match e {
                    Event::ProxyMetrics {
                        side: s,
                        node: n,
                        read,
                    } if *s == side && n == node => Some(read.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("no metrics event for {node}: {ev:?}"))
        };
        let MetricsRead::Read(m) = read(Side::Base, &format!("{a}-worker")) else {
            panic!("{a}-worker not read: {ev:?}");
        };
        assert_eq!(m.mode, Some(ProxyMode::Iptables));
        assert_eq!((m.syncs, m.failures, m.rules), (40, Some(2), Some(40)));
        let q = Quantiles {
            p50_us: 12_000,
            p99_us: 102_400,
        };
        assert_eq!(m.sync, Some(q));
        // The fixture's last sync (2025-12-06) is older than now.
        assert!(m.last_sync_age_ms.unwrap() > 1000, "{m:?}");
        let MetricsRead::Read(m) = read(Side::Pr, &format!("{b}-worker")) else {
            panic!("{b}-worker not read: {ev:?}");
        };
        assert_eq!(
            (m.mode, m.failures, m.rules),
            (Some(ProxyMode::Nftables), Some(4), None)
        );
        assert_eq!(m.sync.map(|q| q.p99_us), Some(16_384_000));
        // No kube-proxy answers on the control plane: said, naming the node and the address.
        let cp = format!("{a}-control-plane");
        let MetricsRead::Failed(why) = read(Side::Base, &cp) else {
            panic!("{cp} read: {ev:?}");
        };
        assert!(
            why.contains(&cp) && why.contains("127.0.0.1:10249") && why.contains("did not answer"),
            "{why}"
        );
        backend.shutdown();
    });
}
