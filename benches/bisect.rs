//! Time per `kindred bisect` step on each path, on the stand-ins of tests/live_bisect.rs: a
//! generated Kubernetes-like repository, the stand-in `kind` (node containers of the test image
//! in the real Docker engine), the stand-in `build/run.sh`, and an API server stand-in whose
//! probes answer by what the PR cluster runs.
//!
//! - swap: merges 9..13 (kube-proxy's code only): the good end makes the PR cluster once (node
//!   image, create, deploy, probes); every later step compiles kube-proxy (stand-in), builds its
//!   image through the engine, loads it, patches the DaemonSet, waits for the rollout and probes.
//! - rebuild: merges 14..24 (one touches staging/): each step builds a node image (stand-in),
//!   recreates the PR cluster's three node containers, deploys and probes.
//!
//! One probe round per step. `KINDRED_BENCH_RUNS` (default 1) repeats each bisect on a fresh
//! repository (so nothing comes from the cache). Needs a Docker engine and busybox-static (as the
//! tests do); without Docker it says so and stops. What it cannot measure: a real Kubernetes
//! compile (`kind build node-image`, `build/run.sh`) and `kind create` of real nodes.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::kuberepo::*;
use kindred::backend::Backend;
use kindred::backend::bisect::{BisectEnd, StepPath, StepRole};

/// One bisect on a fresh repository: each step's (role, path, seconds) and the whole time.
fn one(tag: &str, subnet: u8, good: usize, bad: usize) -> (Vec<(StepRole, StepPath, f64)>, f64) {
    let s = bisect_setup(tag, subnet);
    let kind = common::standin(&s.kind_dir, &s._cleanup.network);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (good, bad) = (s.repo.m(good).to_string(), s.repo.m(bad).to_string());
    rt.block_on(async {
        let _server = serve_pr(&s).await;
        let (mut backend, mut rx) = common::attached(s.sc.clone(), kind).await;
        let t = Instant::now();
        let run = bisect(&mut backend, &mut rx, request(&good, &bad, 1)).await;
        let took = t.elapsed().as_secs_f64();
        backend.shutdown();
        assert_eq!(run.error, None, "{run:#?}");
        assert!(matches!(run.end, Some(BisectEnd::Found { .. })), "{run:#?}");
        let steps = run
            .steps
            .iter()
            .filter(|st| !st.cached)
            .map(|st| (st.role, st.path, st.millis as f64 / 1000.0))
            .collect();
        (steps, took)
    })
}

fn stats(xs: &[f64]) -> String {
    if xs.is_empty() {
        return "none".into();
    }
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let min = xs.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = xs.iter().cloned().fold(0.0, f64::max);
    format!(
        "{} steps, mean {mean:.2} s (min {min:.2}, max {max:.2})",
        xs.len()
    )
}

fn main() {
    let docker = std::process::Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    if !docker {
        eprintln!("bisect bench skipped: no Docker engine");
        return;
    }
    common::in_process_state();
    let runs: usize = std::env::var("KINDRED_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let (mut first, mut swaps, mut rebuilds) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let (steps, took) = one(&format!("bs{i}"), 23, FLAKY_AT + 1, SWAP_LAST);
        println!(
            "swap bisect, merges {}..{SWAP_LAST}: {took:.1} s",
            FLAKY_AT + 1
        );
        for (role, path, secs) in steps {
            assert_eq!(path, StepPath::Swap);
            println!("  {role:?}: {secs:.2} s");
            if role == StepRole::GoodEnd {
                first.push(secs);
            } else {
                swaps.push(secs);
            }
        }
        let (steps, took) = one(&format!("br{i}"), 22, FIX, MERGES);
        println!("rebuild bisect, merges {FIX}..{MERGES}: {took:.1} s");
        for (role, path, secs) in steps {
            assert_eq!(path, StepPath::Rebuild);
            println!("  {role:?}: {secs:.2} s");
            rebuilds.push(secs);
        }
    }
    println!(
        "swap path, first step (node image, create, deploy, probes): {}",
        stats(&first)
    );
    println!("swap path, per step after it: {}", stats(&swaps));
    println!("rebuild path, per step: {}", stats(&rebuilds));
}
