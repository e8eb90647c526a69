//! Reading the rules of 6 kind nodes (two clusters of three) through bollard, all at once, against
//! the same via `docker exec` processes one after another. Goal: at least 2x faster.
//! Needs a Docker engine and busybox-static (as the tests do); without them it says so and stops.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;

use common::synth::{Spec, dump};
use criterion::{Criterion, criterion_group, criterion_main};
use futures::future::join_all;
use kindred::backend::docker::Docker;
use kindred::model::ProxyMode;

struct Nodes {
    names: Vec<String>,
    network: String,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("docker").args(["rm", "-f", n]).output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
    }
}

fn setup() -> Option<Nodes> {
    if !Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("docker bench skipped: no Docker engine");
        return None;
    }
    common::image();
    let pid = std::process::id();
    let network = format!("kindred-bench-{pid}");
    common::docker(&["network", "create", &network]);
    let mut nodes = Nodes {
        names: vec![],
        network: network.clone(),
    };
    // 1,000 services per node: ~15k lines of iptables-save.
    let rules = dump(&Spec {
        services: 1000,
        ..Spec::default()
    });
    for cluster in ["bb", "bp"] {
        for n in ["control-plane", "worker", "worker2"] {
            let name = format!("{cluster}{pid}-{n}");
            common::run_node(&name, &format!("{cluster}{pid}"), "worker", &network);
            common::restore_in(&name, "iptables-legacy-restore", &rules);
            nodes.names.push(name);
        }
    }
    Some(nodes)
}

fn bench(c: &mut Criterion) {
    let Some(nodes) = setup() else { return };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let d = rt.block_on(Docker::connect()).unwrap();
    let mut g = c.benchmark_group("read rules of 6 nodes");
    g.sample_size(10);
    g.bench_function("kindred: bollard, all nodes at once", |b| {
        b.iter(|| {
            rt.block_on(async {
                let reads = nodes
                    .names
                    .iter()
                    .map(|n| d.read_rules(n, ProxyMode::Iptables));
                for r in join_all(reads).await {
                    assert!(r.unwrap().contains("KUBE-SERVICES"));
                }
            })
        })
    });
    g.bench_function("docker exec iptables-save, one after another", |b| {
        b.iter(|| {
            for n in &nodes.names {
                let o = Command::new("docker")
                    .args(["exec", n, "iptables-legacy-save"])
                    .output()
                    .unwrap();
                assert!(o.status.success());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
