//! 500 nodes of a cluster kindred did not create, read through its API server (the many-node
//! stand-in over HTTPS, exec over websockets; each node's kube-proxy pod returns one of 3 real
//! dumps from the fixtures, iptables mode: three execs per node) with `context::read_all`
//! (16 at a time), and grouped by identical rules. Goal (issue #26): under 10 s, memory under 3x
//! the largest dump times the number of groups, the runtime never blocked.
//!
//! Grouping here is by a hash of the text (the normalizing grouping lives in `rules::group`).
//! Prints one line per run: wall time, groups, what the groups hold, the most a 5 ms ticker on the
//! same runtime was late (a UI loop's view of it), and the process's peak RSS (VmHWM, which also
//! counts the stand-in serving the 500 nodes in this process).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::cluster::{Cluster, Dump, IPTABLES_MASTER, IPTABLES_OVERALL, IPTABLES_PR};
use criterion::{Criterion, criterion_group, criterion_main};
use futures::StreamExt;
use kindred::backend::context::{self, ContextRef, NodeRules, ReadPolicy, read_all};

const NODES: usize = 500;

/// One group: its rules (held once) and its nodes.
struct Group {
    rules: String,
    nodes: Vec<String>,
}

/// Read every node and group them as they arrive (a node's text is dropped once its group has
/// one).
async fn read_and_group(client: &kube::Client, p: &ReadPolicy, names: Vec<String>) -> Vec<Group> {
    let mut groups: HashMap<u64, Group> = HashMap::new();
    let mut reads = std::pin::pin!(read_all(client, p, names));
    while let Some((node, r)) = reads.next().await {
        let text = match r {
            Ok(NodeRules::Rules(t)) => t,
            other => panic!("{node}: {other:?}"),
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        groups
            .entry(h.finish())
            .or_insert_with(|| Group {
                rules: text,
                nodes: Vec::new(),
            })
            .nodes
            .push(node);
    }
    groups.into_values().collect()
}

/// A field of /proc/self/status, in kB.
fn status_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dumps = [
        Dump::iptables(IPTABLES_OVERALL),
        Dump::iptables(IPTABLES_MASTER),
        Dump::iptables(IPTABLES_PR),
    ];
    let largest = dumps.iter().map(|d| d.text.len()).max().unwrap();
    let cluster = Cluster::workers("bench", NODES, &dumps);
    let names: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = rt.block_on(async {
        let server = cluster.clone().serve().await;
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, server.kubeconfig("bench")).unwrap();
        let c = ContextRef {
            context: "kind-bench".into(),
            kubeconfig: Some(path),
        };
        (server, context::client(&c).await.unwrap())
    });
    let policy = ReadPolicy {
        limit: Duration::from_secs(30),
        bound: 16,
        ..ReadPolicy::default()
    };
    let rss_before = status_kb("VmRSS:");
    let run = || {
        // What the stand-in logs of the last run is not the reads' memory.
        server.seen.lock().unwrap().clear();
        cluster.state().ran.clear();
        rt.block_on(async {
            let late = Arc::new(AtomicU64::new(0));
            let ticker = {
                let late = late.clone();
                tokio::spawn(async move {
                    let mut last = Instant::now();
                    loop {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        let gap = last.elapsed().saturating_sub(Duration::from_millis(5));
                        late.fetch_max(gap.as_micros() as u64, Ordering::Relaxed);
                        last = Instant::now();
                    }
                })
            };
            let t0 = Instant::now();
            let groups = read_and_group(&client, &policy, names.clone()).await;
            let wall = t0.elapsed();
            ticker.abort();
            let held: usize = groups.iter().map(|g| g.rules.len()).sum();
            let mut sizes: Vec<usize> = groups.iter().map(|g| g.nodes.len()).collect();
            sizes.sort_unstable();
            println!(
                "context: {NODES} nodes read and grouped in {:.2} s (bound 16): {} groups {sizes:?}, \
                 holding {} kB (limit 3 x {} kB x {} = {} kB); ticker late at most {:.1} ms; \
                 peak RSS {} MB (VmHWM; {} MB before the reads, stand-in included)",
                wall.as_secs_f64(),
                groups.len(),
                held / 1024,
                largest / 1024,
                groups.len(),
                3 * largest * groups.len() / 1024,
                late.load(Ordering::Relaxed) as f64 / 1000.0,
                status_kb("VmHWM:") / 1024,
                rss_before / 1024,
            );
            assert_eq!(groups.len(), 3);
            groups
        })
    };
    run();
    let mut g = c.benchmark_group("context");
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(100));
    g.measurement_time(Duration::from_secs(1));
    g.bench_function("read and group 500 nodes, 3 distinct dumps", |b| {
        b.iter(run)
    });
    g.finish();
    drop(server);
}

criterion_group!(benches, bench);
criterion_main!(benches);
