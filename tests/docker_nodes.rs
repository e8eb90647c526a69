//! Against a real Docker engine: containers labelled and named like kind nodes on a user-defined
//! network, kube-proxy rules loaded into them with iptables-restore, an HTTP server in one and
//! curl from the others. kindred reads them through bollard. Needs Docker (with a local image
//! built by `docker import` from busybox-static and the host's /usr); ignored by plain
//! `cargo test`, run by CI.

mod common;
use common::*;

use std::process::Command;
use std::time::Duration;

use kindred::backend::docker::Docker;
use kindred::backend::event::ProbeResult;
use kindred::backend::probe::{Timeouts, curl_argv, parse_curl};
use kindred::model::{NodeRole, Outcome, ProxyMode};

/// Probe from a container's network namespace (a kind node: what a hostNetwork pod sees).
async fn from_container(
    docker: &Docker,
    container: &str,
    target: &str,
    t: Timeouts,
) -> anyhow::Result<ProbeResult> {
    let argv = curl_argv(target, "/", 1, t);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let limit = Duration::from_secs_f64(t.total + 5.0);
    let o = docker.exec(container, &argv, limit).await?;
    Ok(parse_curl(container, target, &o.stdout, &o.stderr, o.code))
}

/// Two fake kind clusters (control plane + 2 workers each) on one network; removed on drop.
struct Clusters {
    tag: String,
    network: String,
    containers: Vec<String>,
}

impl Clusters {
    fn new() -> Clusters {
        image();
        let tag = format!("kt{}", std::process::id());
        let network = format!("kindred-test-{}", std::process::id());
        network_create(&network, &[]);
        let mut c = Clusters {
            tag: tag.clone(),
            network: network.clone(),
            containers: Vec::new(),
        };
        for side in ["base", "pr"] {
            let cluster = format!("{tag}{side}");
            for (suffix, role) in [
                ("control-plane", "control-plane"),
                ("worker", "worker"),
                ("worker2", "worker"),
            ] {
                let name = format!("{cluster}-{suffix}");
                run_node(&name, &cluster, role, &network);
                c.containers.push(name);
            }
        }
        c
    }

    fn cluster(&self, side: &str) -> String {
        format!("{}{side}", self.tag)
    }

    fn node(&self, side: &str, suffix: &str) -> String {
        format!("{}-{suffix}", self.cluster(side))
    }

    fn ip(&self, container: &str) -> String {
        docker(&[
            "inspect",
            "-f",
            &format!(
                "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
                self.network
            ),
            container,
        ])
    }
}

impl Drop for Clusters {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", c]).output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn nodes_rules_probes_and_commands() {
    let c = Clusters::new();
    let rt = rt();
    let d = rt.block_on(Docker::connect()).unwrap();

    // Node discovery through the labels.
    let nodes = rt.block_on(d.kind_nodes()).unwrap();
    let base: Vec<_> = nodes
        .iter()
        .filter(|n| n.cluster == c.cluster("base"))
        .collect();
    assert_eq!(base.len(), 3);
    assert_eq!(base[0].name, c.node("base", "control-plane"));
    assert_eq!(base[0].role, NodeRole::ControlPlane);
    assert_eq!(base[1].role, NodeRole::Worker);
    assert_eq!(base[1].state, "running");
    assert!(base[1].ips.iter().any(|(net, _)| *net == c.network));

    // `kindred clusters` prints them, none created by kindred.
    let o = kindred(&["clusters"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains(&format!(
            "{}  (3 nodes, not created by kindred)",
            c.cluster("base")
        )),
        "{out}"
    );
    assert!(out.contains(&c.node("pr", "worker2")), "{out}");
    let o = kindred(&["clusters", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == c.cluster("pr")
                && x["created_by_kindred"] == false
                && x["nodes"].as_array().unwrap().len() == 3)
    );

    // The 2019 rules, loaded with legacy iptables on one side and nft on the other; kindred
    // finds each through bollard and diffs them live.
    let master = std::fs::read_to_string(fixture(
        "iptables/mauilion-blog-2019-master-cluster-KUBE-XLB.txt",
    ))
    .unwrap();
    let pr = std::fs::read_to_string(fixture(
        "iptables/mauilion-blog-2019-pr77523-cluster-KUBE-XLB.txt",
    ))
    .unwrap();
    let (bw, pw) = (c.node("base", "worker"), c.node("pr", "worker"));
    restore_in(&bw, "iptables-legacy-restore", &restorable(&master));
    restore_in(&pw, "iptables-nft-restore", &restorable(&pr));
    let text = rt.block_on(d.read_rules(&pw, ProxyMode::Iptables)).unwrap();
    assert!(
        text.contains("(nf_tables)") && text.contains("masquerade LOCAL traffic"),
        "{text}"
    );
    let text = rt.block_on(d.read_rules(&bw, ProxyMode::Iptables)).unwrap();
    assert!(
        text.contains("KUBE-XLB-U52O5CQH2XXNVZ54") && !text.contains("(nf_tables)"),
        "{text}"
    );
    // Later reads go through one long-lived session per node; they still see every change.
    for i in 0..3 {
        let chain = format!("KUBE-TEST-{i}");
        docker(&["exec", &pw, "iptables-nft", "-t", "nat", "-N", &chain]);
        let text = rt.block_on(d.read_rules(&pw, ProxyMode::Iptables)).unwrap();
        assert!(text.contains(&format!(":{chain} ")), "read {i}: {text}");
        assert!(
            text.contains("(nf_tables)") && text.contains("COMMIT"),
            "{text}"
        );
        assert!(!text.contains("__KINDRED_END__"), "{text}");
        let sessions = docker(&["top", &pw, "-eo", "pid,args"])
            .lines()
            .filter(|l| l.contains("__KINDRED_END__"))
            .count();
        assert_eq!(sessions, 1, "read {i} went through the one session shell");
    }

    let o = kindred(&[
        "diff",
        &format!("node:{bw}"),
        &format!("node:{pw}"),
        "--service",
        "default/echo",
        "--format",
        "json-v1",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["services"][0]["service"], "default/echo:");
    assert_eq!(v["services"][0]["added"].as_array().unwrap().len(), 2);
    assert_eq!(v["services"][0]["removed"].as_array().unwrap().len(), 0);
    let o = kindred(&["diff", &format!("node:{bw}"), &format!("node:{bw}")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = kindred(&["diff", "node:no-such-node", &format!("node:{bw}")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("node:no-such-node"), "{}", stderr(&o));

    // Probes from node network namespaces: an HTTP server on worker2, curl from the others.
    let w2 = c.node("base", "worker2");
    docker(&["exec", "-d", &w2, "httpd", "-f", "-p", "8080", "-h", "/www"]);
    let target = format!("{}:8080", c.ip(&w2));
    let t = Timeouts {
        connect: 1.0,
        total: 2.0,
    };
    let mut ok = None;
    for _ in 0..20 {
        let r = rt.block_on(from_container(&d, &bw, &target, t)).unwrap();
        if r.outcome == Outcome::Ok {
            ok = Some(r);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let ok = ok.expect("probe to the HTTP server");
    assert_eq!(ok.http_status, Some(200));
    assert!(ok.latency_ms.is_some());
    // Nothing listens on 9: refused, a failure.
    let r = rt
        .block_on(from_container(&d, &bw, &format!("{}:9", c.ip(&w2)), t))
        .unwrap();
    assert_eq!(r.outcome, Outcome::Fail, "{r:?}");
    // Packets to worker2 dropped on the source node: curl times out.
    let cp = c.node("base", "control-plane");
    docker(&[
        "exec",
        &cp,
        "iptables-legacy",
        "-A",
        "OUTPUT",
        "-d",
        &c.ip(&w2),
        "-j",
        "DROP",
    ]);
    let r = rt.block_on(from_container(&d, &cp, &target, t)).unwrap();
    assert_eq!(r.outcome, Outcome::Timeout, "{r:?}");
}

/// `nft monitor` through bollard keeps running (and reporting) for as long as kindred holds its
/// exec open, and is gone from the node once kindred closes it: cancelled, or its task dropped.
#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn nft_monitor_lives_until_its_exec_is_closed() {
    image();
    let pid = std::process::id();
    let network = format!("kindred-mon-{pid}");
    network_create(&network, &[]);
    let cluster = format!("mon{pid}");
    let _cleanup = Cleanup {
        clusters: vec![cluster.clone()],
        network: network.clone(),
    };
    let node = format!("{cluster}-worker");
    run_node(&node, &cluster, "worker", &network);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let d = rt.block_on(Docker::connect()).unwrap();
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let start = |cancel: tokio_util::sync::CancellationToken| {
        let (d, node, heard) = (d.clone(), node.clone(), heard.clone());
        rt.spawn(async move {
            let on = |l: &str| heard.lock().unwrap().push(l.to_string());
            d.monitor(&node, on, &cancel).await
        })
    };

    // Cancelled: the monitor ran all along, heard a change, and is gone once cancelled.
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = start(cancel.clone());
    std::thread::sleep(Duration::from_secs(2));
    assert!(!task.is_finished(), "{:?}", rt.block_on(task));
    assert_eq!(
        monitors_in(&node),
        1,
        "nft monitor runs 2 s after it started"
    );
    docker(&["exec", &node, "nft", "add", "table", "ip", "kindred-test"]);
    assert!(
        within(2.0, || heard
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("kindred-test"))),
        "the monitor reported the new table: {:?}",
        heard.lock().unwrap()
    );
    cancel.cancel();
    rt.block_on(task).unwrap().unwrap();
    assert!(
        within(3.0, || monitors_in(&node) == 0),
        "nft monitor left running after its exec was closed"
    );

    // Its task dropped (a watch job aborted, kindred ending): gone too.
    let task = start(tokio_util::sync::CancellationToken::new());
    assert!(within(3.0, || monitors_in(&node) == 1), "a second monitor");
    task.abort();
    assert!(
        within(3.0, || monitors_in(&node) == 0),
        "nft monitor left running after its task was dropped"
    );
}

/// A cluster attached whose kube-proxy runs in the other mode than the scenario's: its rules
/// are read all the same (iptables where nftables was asked for, and the reverse), and two
/// nodes in different modes compare Service by Service as they are, the report saying that
/// the modes differ.
#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn nodes_in_the_other_mode_are_read_and_compared_as_they_are() {
    image();
    let pid = std::process::id();
    let network = format!("kindred-modes-{pid}");
    network_create(&network, &[]);
    let (a, b) = (format!("mi{pid}"), format!("mn{pid}"));
    let _cleanup = Cleanup {
        clusters: vec![a.clone(), b.clone()],
        network: network.clone(),
    };
    let (ipt, nft) = (format!("{a}-worker"), format!("{b}-worker"));
    run_node(&ipt, &a, "worker", &network);
    run_node(&nft, &b, "worker", &network);
    let master = std::fs::read_to_string(fixture(
        "iptables/mauilion-blog-2019-master-cluster-KUBE-XLB.txt",
    ))
    .unwrap();
    restore_in(&ipt, "iptables-nft-restore", &restorable(&master));
    feed(&nft, &["nft", "-f", "-"], &k3s_table("-110"));

    let rt = rt();
    let d = rt.block_on(Docker::connect()).unwrap();
    // nftables asked for, iptables found (no `No such file or directory` for the nft table).
    let text = rt
        .block_on(d.read_rules(&ipt, ProxyMode::Nftables))
        .unwrap();
    assert!(text.contains("KUBE-XLB-U52O5CQH2XXNVZ54"), "{text}");
    assert_eq!(d.found_mode(&ipt), Some(ProxyMode::Iptables));
    // And again, through what was found.
    let again = rt
        .block_on(d.read_rules(&ipt, ProxyMode::Nftables))
        .unwrap();
    assert!(again.contains("KUBE-XLB-U52O5CQH2XXNVZ54"), "{again}");
    // iptables asked for, kube-proxy's nftables table found.
    let text = rt
        .block_on(d.read_rules(&nft, ProxyMode::Iptables))
        .unwrap();
    assert!(
        text.starts_with("table ip kube-proxy") && text.contains("service-ips"),
        "{text}"
    );
    assert_eq!(d.found_mode(&nft), Some(ProxyMode::Nftables));

    // Two nodes in different modes: each Service as it is, and a note that the modes differ.
    let (na, nb) = (format!("node:{ipt}"), format!("node:{nft}"));
    let o = kindred(&["diff", &na, &nb]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("note: the modes differ (base iptables, PR nftables)"),
        "{out}"
    );
    assert!(
        out.contains("=== default/echo: (changed, +0 -3 (only in base))")
            && out.contains("=== kube-system/kube-dns:dns-tcp (changed, +5 -0 (only in PR))"),
        "{out}"
    );
    let o = kindred(&["diff", &nb, &na, "--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["equal"], false);
    assert_eq!(v["modes"]["base"], "nftables", "{v:#}");
    assert_eq!(v["modes"]["pr"], "iptables", "{v:#}");
}
