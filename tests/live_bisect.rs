//! `kindred bisect` end to end on the live backend: a Kubernetes-like repository made in the
//! test (24 first-parent merges; one breaks a probe, one does not build, one is flaky, one
//! touches `staging/`), real git and Docker, the stand-in `kind` (its node-image build fails on
//! a tree that does not compile), the stand-in build entry points for the swap path, and an API
//! server stand-in whose probes answer by the kube-proxy code the PR cluster runs at that
//! moment (its node image's tree, or the kube-proxy a swap rolled out). The live tests are
//! ignored by plain `cargo test` (they need Docker); the stand-ins' own checks are not.

mod common;
use common::kuberepo::*;
use common::*;

use std::path::Path;

/// `argv` run in `dir` with the test's environment; (exit code, stdout, stderr).
fn run_in(dir: &Path, argv: &[&str]) -> (Option<i32>, String, String) {
    time_limit();
    let o = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .current_dir(dir)
        .output()
        .unwrap();
    (o.status.code(), stdout(&o), stderr(&o))
}

/// The generated history: 24 first-parent merges after the tag, each a real merge of a side
/// branch with its PR in the subject; the first 13 change only kube-proxy's code (or docs, a
/// test, a package only kube-proxy imports), merge 17 the API types in staging/.
#[test]
fn the_generated_repository_is_a_history_of_merged_pull_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let r = kube_repo(tmp.path());
    let first_parent = git(
        &r.dir,
        &[
            "rev-list",
            "--first-parent",
            "--reverse",
            &format!("{BASE_TAG}..master"),
        ],
    );
    let first_parent: Vec<&str> = first_parent.lines().collect();
    assert_eq!(first_parent.len(), MERGES);
    const { assert!(MERGES >= 20) };
    assert_eq!(
        first_parent,
        r.merges.iter().map(String::as_str).collect::<Vec<_>>()
    );
    for (i, sha) in r.merges.iter().enumerate() {
        let i = i + 1;
        let parents = git(&r.dir, &["rev-list", "--parents", "-n1", sha]);
        assert_eq!(
            parents.split(' ').count(),
            3,
            "merge {i} has two parents: {parents}"
        );
        let subject = git(&r.dir, &["log", "-1", "--format=%s", sha]);
        assert_eq!(
            subject,
            format!(
                "Merge pull request #{} from dev{i}/change-{i}",
                KubeRepo::pr(i)
            )
        );
    }
    let all = git(&r.dir, &["rev-list", &format!("{BASE_TAG}..master")]);
    assert_eq!(all.lines().count(), 2 * MERGES, "a side commit per merge");
    let changed = |from: &str, to: &str| git(&r.dir, &["diff", "--name-only", from, to]);
    let swap = changed(&r.base, r.m(SWAP_LAST));
    for f in swap.lines() {
        assert!(
            f.starts_with("pkg/proxy/")
                || f.starts_with("cmd/kube-proxy/")
                || f == "pkg/util/conntrack/conntrack.go"
                || f.ends_with(".md")
                || f.ends_with("_test.go"),
            "{f}"
        );
    }
    for f in [
        "pkg/util/conntrack/conntrack.go",
        "CHANGELOG/CHANGELOG-1.35.md",
        "pkg/kubelet/kubelet_test.go",
    ] {
        assert!(swap.lines().any(|l| l == f), "{f}: {swap}");
    }
    let staging = changed(r.m(STAGING - 1), r.m(STAGING));
    assert_eq!(staging, "staging/src/k8s.io/api/core/v1/types.go");
    // The markers: in the tree exactly where the plan puts them.
    let proxier = |i: usize| {
        git(
            &r.dir,
            &["show", &format!("{}:pkg/proxy/nftables/proxier.go", r.m(i))],
        )
    };
    for i in 1..=MERGES {
        let p = proxier(i);
        assert_eq!(p.contains(DOES_NOT_COMPILE), i == UNBUILDABLE, "{i}");
        assert_eq!(p.contains(FLAKY), i == FLAKY_AT, "{i}");
        assert_eq!(p.contains(DROPS_HOST), (BREAK..FIX).contains(&i), "{i}");
        assert_eq!(p.contains(DROPS_POD), i >= BREAK2, "{i}");
    }
}

/// The range and path of each bisect the live tests run, on the generated history: merges
/// 1..13 change only kube-proxy's code (a docs file, a kubelet test and `pkg/util/conntrack`,
/// which only kube-proxy imports, among them), so they swap; merges 15..24 change the API types
/// the kubelet imports, so they rebuild, naming that file.
#[test]
fn the_generated_ranges_take_the_paths_the_live_tests_expect() {
    use kindred::backend::bisect::range::{choose_path, range};
    use kindred::backend::bisect::{PathChoice, StepPath};
    let tmp = tempfile::tempdir().unwrap();
    let r = kube_repo(tmp.path());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let swap = range(&r.dir, BASE_TAG, r.m(SWAP_LAST), false, None)
            .await
            .unwrap();
        assert_eq!(swap.good.sha, r.base);
        let shas: Vec<&str> = swap.commits.iter().map(|c| c.sha.as_str()).collect();
        assert_eq!(
            shas,
            r.merges[..SWAP_LAST]
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
        );
        assert!(
            swap.commits
                .iter()
                .enumerate()
                .all(|(i, c)| c.pr == Some(KubeRepo::pr(i + 1)))
        );
        let (path, why) = choose_path(&r.dir, &r.base, r.m(SWAP_LAST), PathChoice::Auto)
            .await
            .unwrap();
        assert_eq!(path, StepPath::Swap, "{why}");
        let (path, why) = choose_path(&r.dir, r.m(FIX), "master", PathChoice::Auto)
            .await
            .unwrap();
        assert_eq!(path, StepPath::Rebuild, "{why}");
        assert!(
            why.contains("staging/src/k8s.io/api/core/v1/types.go"),
            "{why}"
        );
        let all = range(&r.dir, r.m(FIX), "master", true, None).await.unwrap();
        assert_eq!(
            all.commits.len(),
            2 * (MERGES - FIX),
            "with --all-commits, the side commits too"
        );
    });
}

/// The commit that does not compile fails both build stand-ins, as kind and Kubernetes' build
/// fail; the merge that takes the marker out builds again, its kube-proxy holding the code.
#[test]
fn the_unbuildable_commit_fails_the_node_image_build_and_the_kube_proxy_compile() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("kubernetes");
    std::fs::create_dir_all(&src).unwrap();
    let r = kube_repo(&src);
    let kind_dir = tmp.path().join("kind");
    std::fs::create_dir_all(&kind_dir).unwrap();
    standin(&kind_dir, "none");
    let kind = kind_dir.join("kind");
    let kind = kind.to_str().unwrap();

    git(&src, &["checkout", "-q", r.m(UNBUILDABLE)]);
    let (code, _, err) = run_in(
        &src,
        &["build/run.sh", "make", "all", "WHAT=cmd/kube-proxy"],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("pkg/proxy/nftables/proxier.go:3:1: syntax error"),
        "{err}"
    );
    let (code, _, err) = run_in(
        &src,
        &[
            kind,
            "build",
            "node-image",
            src.to_str().unwrap(),
            "--image",
            "kindred-never-built:x",
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("syntax error") && err.contains("ERROR: error building node image"),
        "{err}"
    );
    assert!(
        !kind_dir.join("content-kindred-never-built:x.txt").exists(),
        "no image made"
    );

    git(&src, &["checkout", "-q", r.m(UNBUILDABLE + 1)]);
    let (code, out, err) = run_in(
        &src,
        &["build/run.sh", "make", "all", "WHAT=cmd/kube-proxy"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let bin =
        std::fs::read_to_string(src.join("_output/dockerized/bin/linux/amd64/kube-proxy")).unwrap();
    assert!(
        bin.contains("# == pkg/proxy/nftables/proxier.go") && bin.contains("# package nftables"),
        "{bin}"
    );
    assert!(!bin.contains(DOES_NOT_COMPILE), "{bin}");

    // At the break, the kube-proxy built holds the marker the probes answer by.
    git(&src, &["checkout", "-q", r.m(BREAK)]);
    let (code, _, err) = run_in(
        &src,
        &["build/run.sh", "make", "all", "WHAT=cmd/kube-proxy"],
    );
    assert_eq!(code, Some(0), "{err}");
    let bin =
        std::fs::read_to_string(src.join("_output/dockerized/bin/linux/amd64/kube-proxy")).unwrap();
    assert!(bin.contains(&format!("# {DROPS_HOST}")), "{bin}");
}

/// What the stand-in API server's probes answer follows what the PR cluster runs: the node
/// image's tree after a create (merge 10 drops the host-network pod's traffic), the swapped
/// kube-proxy after a rollout on those nodes (merge 14's does not), the node image's again once
/// the cluster is made anew; a flaky kube-proxy answers every other probe.
#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn the_probes_follow_the_kube_proxy_the_cluster_runs_now() {
    image();
    in_process_state();
    let pid = std::process::id();
    let network = format!("kindred-bisect-run{pid}");
    network_create(&network, &[]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("kubernetes");
    std::fs::create_dir_all(&src).unwrap();
    let r = kube_repo(&src);
    let kind_dir = tmp.path().join("kind");
    std::fs::create_dir_all(&kind_dir).unwrap();
    standin(&kind_dir, &network);
    let kind = kind_dir.join("kind");
    let kind = kind.to_str().unwrap();
    let name = format!("birun{pid}");
    let (node_break, node_flaky, proxy_fix) = (
        format!("kindred-bisect-run-break{pid}:test"),
        format!("kindred-bisect-run-flaky{pid}:test"),
        format!("kindred-bisect-run-proxy{pid}:test"),
    );
    let _images = Images(vec![
        node_break.clone(),
        node_flaky.clone(),
        proxy_fix.clone(),
    ]);
    // Dropped before the images, which its containers use.
    let _cleanup = Cleanup {
        clusters: vec![name.clone()],
        network,
    };
    let at = |i: usize| {
        let dir = tmp.path().join(format!("at{i}"));
        git(
            &src,
            &[
                "worktree",
                "add",
                "-q",
                "--detach",
                dir.to_str().unwrap(),
                r.m(i),
            ],
        );
        dir
    };
    let ok = |argv: &[&str]| {
        let (code, out, err) = run_in(tmp.path(), argv);
        assert_eq!(code, Some(0), "{argv:?}: {out}{err}");
    };
    let create = |img: &str| {
        ok(&[kind, "delete", "cluster", "--name", &name]);
        ok(&[kind, "create", "cluster", "--name", &name, "--image", img]);
    };
    let (host, host2, pod) = (
        format!("netshoot-{name}-worker"),
        format!("netshoot-{name}-worker2"),
        format!("overlay-{name}-worker"),
    );
    let running = Running::new(&kind_dir, &name);
    let times_out = |p: &str| running.times_out(p);

    let broken = at(BREAK);
    ok(&[
        kind,
        "build",
        "node-image",
        broken.to_str().unwrap(),
        "--image",
        &node_break,
    ]);
    create(&node_break);
    assert!(times_out(&host));
    assert!(!times_out(&host2) && !times_out(&pod));

    // kube-proxy of merge 14 swapped in: an image holding what build/run.sh built there.
    let fixed = at(FIX);
    let (code, _, err) = run_in(
        &fixed,
        &["build/run.sh", "make", "all", "WHAT=cmd/kube-proxy"],
    );
    assert_eq!(code, Some(0), "{err}");
    let bin = fixed.join("_output/dockerized/bin/linux/amd64");
    std::fs::write(
        bin.join("Dockerfile"),
        format!("FROM {IMAGE}\nCOPY kube-proxy /usr/local/bin/kube-proxy\n"),
    )
    .unwrap();
    docker(&["build", "-q", "-t", &proxy_fix, bin.to_str().unwrap()]);
    (running.on_rollout())(&proxy_fix);
    assert!(!times_out(&host), "the swapped kube-proxy runs");
    assert_eq!(*running.rolled_out.lock().unwrap(), vec![proxy_fix.clone()]);
    // Its rules on every node: the Service's, no drop.
    for n in ["control-plane", "worker", "worker2"] {
        let t = docker(&[
            "exec",
            &format!("{name}-{n}"),
            "nft",
            "list",
            "table",
            "ip",
            "kube-proxy",
        ]);
        assert!(
            t.contains("default/echo:http") && !t.contains(" drop "),
            "{n}: {t}"
        );
    }

    // The cluster made anew from the same node image: its own kube-proxy again.
    create(&node_break);
    assert!(times_out(&host));
    assert!(proxy_table(&running.code()).contains(" drop "));

    // A flaky kube-proxy: every other probe of the hostNetwork pod on worker2 times out.
    let flaky = at(FLAKY_AT);
    ok(&[
        kind,
        "build",
        "node-image",
        flaky.to_str().unwrap(),
        "--image",
        &node_flaky,
    ]);
    create(&node_flaky);
    let answers: Vec<bool> = (0..4).map(|_| times_out(&host2)).collect();
    assert_eq!(answers, [false, true, false, true]);
    assert!(!times_out(&host) && !times_out(&pod));
}
