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

use kindred::backend::Backend;
use kindred::backend::bisect::{
    BisectEnd, BisectEvent, PathChoice, SkipReason, StepPath, StepRole, StepVerdict,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

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
    // Its own kubeconfig file, as kindred gives each cluster: kind locks the file it writes with
    // no retry, and the other tests of this binary create clusters at the same time.
    let kubeconfig = tmp.path().join("kubeconfig");
    let kubeconfig = kubeconfig.to_str().unwrap();
    let create = |img: &str| {
        ok(&[kind, "delete", "cluster", "--name", &name]);
        ok(&[
            kind,
            "create",
            "cluster",
            "--name",
            &name,
            "--image",
            img,
            "--kubeconfig",
            kubeconfig,
        ]);
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

/// A step as the test expects it: (merge number, role, verdict, skip reason, cached).
type Want = (usize, StepRole, StepVerdict, Option<SkipReason>, bool);

/// The steps, in order, as [`Want`]s.
fn steps_of(r: &KubeRepo, run: &BisectRun) -> Vec<Want> {
    run.steps
        .iter()
        .map(|s| {
            let m = r
                .which(&s.commit.sha)
                .unwrap_or_else(|| panic!("a commit off the first-parent line: {s:?}"));
            (m, s.role, s.verdict, s.skip, s.cached)
        })
        .collect()
}

fn count(log: &Path, prefix: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .count()
}

/// Over merges 1..=13 (kube-proxy's code only) each step swaps kube-proxy into the one PR
/// cluster: the bisect visits exactly the commits the search predicts, skips the commit that
/// does not build (Unbuildable) and the flaky one (Flaky, its two rounds disagree), and finds
/// merge 10, which broke the host-network probe, with its PR number. Again over an overlapping
/// range, the steps done before come from the cache (the flaky one is tried again); a good
/// ref that is bad stops with that said.
#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn a_kube_proxy_only_range_swaps_and_finds_the_break_past_an_unbuildable_and_a_flaky_commit() {
    use SkipReason::*;
    use StepRole::*;
    use StepVerdict::*;
    let s = bisect_setup("s", 25);
    let kind = standin(&s.kind_dir, &s._cleanup.network);
    let log = s.kind_dir.join("argv.log");
    let r = &s.repo;
    runtime().block_on(async {
        let _server = serve_pr(&s).await;
        let (mut backend, mut rx) = attached(s.sc.clone(), kind).await;

        let run = bisect(&mut backend, &mut rx, request(BASE_TAG, r.m(SWAP_LAST), 2)).await;
        assert_eq!(run.error, None, "{run:#?}");
        let Some(BisectEvent::Started { good, bad, commits, path, why, expected_steps, .. }) = &run.started else {
            panic!("no start: {run:#?}")
        };
        assert_eq!((good.sha.as_str(), bad.sha.as_str()), (r.base.as_str(), r.m(SWAP_LAST)));
        assert_eq!(bad.pr, Some(KubeRepo::pr(SWAP_LAST)));
        assert_eq!(*commits, SWAP_LAST);
        assert_eq!(*path, StepPath::Swap, "{why}");
        // Both ends + ceil(log2(13)).
        assert_eq!(*expected_steps, 6);
        // The search's picks: the middle of what is open (ties: the older), skips stepped past.
        let want: Vec<Want> = vec![
            (0, GoodEnd, Good, None, false),
            (SWAP_LAST, BadEnd, Bad, None, false),
            (UNBUILDABLE, Inside, Skip, Some(Unbuildable), false),
            (UNBUILDABLE + 1, Inside, Good, None, false),
            (BREAK, Inside, Bad, None, false),
            (FLAKY_AT, Inside, Skip, Some(Flaky), false),
            (FLAKY_AT + 1, Inside, Good, None, false),
        ];
        assert_eq!(steps_of(r, &run), want, "{run:#?}");
        // A skip costs at most one step more than a search without skips.
        assert!(run.steps.len() as u32 <= expected_steps + 2);
        assert_eq!(
            run.testing.iter().map(|(sha, role)| (r.which(sha).unwrap(), *role)).collect::<Vec<_>>(),
            want.iter().map(|w| (w.0, w.1)).collect::<Vec<_>>()
        );
        for st in &run.steps {
            assert_eq!(st.path, StepPath::Swap, "{st:?}");
            assert!(st.millis > 0, "{st:?}");
        }
        let unbuildable = &run.steps[2];
        assert!(unbuildable.why.as_deref().is_some_and(|w| !w.is_empty()), "{unbuildable:?}");
        let flaky = &run.steps[5];
        assert_eq!((flaky.good_rounds, flaky.rounds), (1, 2), "{flaky:?}");
        let broken = &run.steps[4];
        assert_eq!((broken.good_rounds, broken.rounds), (0, 2), "{broken:?}");
        assert!(broken.why.as_deref().is_some_and(|w| w.contains(&format!("netshoot-{}-worker", s.sc.pr.name))), "{broken:?}");
        match &run.end {
            Some(BisectEnd::Found { first_bad, last_good, rules_diff }) => {
                assert_eq!(first_bad.sha, r.m(BREAK));
                assert_eq!(first_bad.pr, Some(KubeRepo::pr(BREAK)));
                assert_eq!(last_good.sha, r.m(FLAKY_AT + 1));
                // What the first bad kube-proxy wrote that the last good one did not.
                let added: Vec<&str> = rules_diff.lines().filter(|l| l.starts_with('+') && !l.starts_with("+++")).collect();
                assert!(added.iter().any(|l| l.contains("drop")), "{rules_diff}");
                assert!(!rules_diff.lines().any(|l| l.starts_with('-') && !l.starts_with("---") && l.contains("drop")), "{rules_diff}");
            }
            e => panic!("not found: {e:?}"),
        }
        assert!(run.remaining.windows(2).all(|w| w[0] >= w[1]), "{:?}", run.remaining);
        assert!(run.remaining.last().is_some_and(|c| *c <= 1), "{:?}", run.remaining);
        // One node image and one cluster, at the good end; then kube-proxy swapped per step.
        assert_eq!(count(&log, "build|node-image|"), 1);
        assert_eq!(count(&log, "create|cluster|"), 1);
        let rolled = s.running.rolled_out.lock().unwrap().clone();
        assert!(rolled.len() >= 4 && rolled.iter().all(|i| i.starts_with("kindred/kube-proxy:")), "{rolled:?}");

        // Again over merges 7..13: what was judged is reused; the flaky step is run again.
        let again = bisect(&mut backend, &mut rx, request(r.m(UNBUILDABLE + 1), r.m(SWAP_LAST), 2)).await;
        assert_eq!(again.error, None, "{again:#?}");
        let want: Vec<Want> = vec![
            (UNBUILDABLE + 1, GoodEnd, Good, None, true),
            (SWAP_LAST, BadEnd, Bad, None, true),
            (BREAK, Inside, Bad, None, true),
            (FLAKY_AT, Inside, Skip, Some(Flaky), false),
            (FLAKY_AT + 1, Inside, Good, None, true),
        ];
        assert_eq!(steps_of(r, &again), want, "{again:#?}");
        for st in again.steps.iter().filter(|s| s.cached) {
            assert_eq!(st.millis, 0, "{st:?}");
        }
        assert!(matches!(&again.end, Some(BisectEnd::Found { first_bad, .. }) if first_bad.sha == r.m(BREAK)), "{again:#?}");

        // A "good" ref that is bad: stopped, said so.
        let stopped = bisect(&mut backend, &mut rx, request(r.m(BREAK), r.m(SWAP_LAST), 2)).await;
        assert_eq!(steps_of(r, &stopped), vec![(BREAK, GoodEnd, Bad, None, true)], "{stopped:#?}");
        match &stopped.end {
            Some(BisectEnd::Stopped { why }) => {
                let w = why.to_lowercase();
                assert!(w.contains("good") && w.contains("bad"), "{why}");
            }
            e => panic!("not stopped: {e:?}"),
        }
        backend.shutdown();
    });
}

/// Over merges 15..=24, which change the API types in staging/ (imported by the kubelet), each
/// step builds a node image of its commit and recreates the PR cluster: merge 20, which broke
/// the pod's probe, is found within the expected steps.
#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn a_range_over_staging_rebuilds_node_images_and_finds_the_break_in_the_expected_steps() {
    use StepRole::*;
    use StepVerdict::*;
    let s = bisect_setup("r", 24);
    let kind = standin(&s.kind_dir, &s._cleanup.network);
    let log = s.kind_dir.join("argv.log");
    let r = &s.repo;
    runtime().block_on(async {
        let _server = serve_pr(&s).await;
        let (mut backend, mut rx) = attached(s.sc.clone(), kind).await;
        let run = bisect(&mut backend, &mut rx, request(r.m(FIX), "master", 1)).await;
        assert_eq!(run.error, None, "{run:#?}");
        let Some(BisectEvent::Started {
            commits,
            path,
            why,
            expected_steps,
            ..
        }) = &run.started
        else {
            panic!("no start: {run:#?}")
        };
        assert_eq!(*commits, MERGES - FIX);
        assert_eq!(*path, StepPath::Rebuild, "{why}");
        assert!(
            why.contains("staging/src/k8s.io/api/core/v1/types.go"),
            "{why}"
        );
        assert_eq!(*expected_steps, 2 + 4);
        let want: Vec<Want> = vec![
            (FIX, GoodEnd, Good, None, false),
            (MERGES, BadEnd, Bad, None, false),
            (19, Inside, Good, None, false),
            (21, Inside, Bad, None, false),
            (BREAK2, Inside, Bad, None, false),
        ];
        assert_eq!(steps_of(r, &run), want, "{run:#?}");
        assert!(run.steps.len() as u32 <= *expected_steps);
        assert!(
            run.steps.iter().all(|st| st.path == StepPath::Rebuild),
            "{run:#?}"
        );
        match &run.end {
            Some(BisectEnd::Found {
                first_bad,
                last_good,
                ..
            }) => {
                assert_eq!(first_bad.sha, r.m(BREAK2));
                assert_eq!(first_bad.pr, Some(KubeRepo::pr(BREAK2)));
                assert_eq!(last_good.sha, r.m(19));
            }
            e => panic!("not found: {e:?}"),
        }
        // A node image per step, each run by a cluster of its own; no swap.
        assert_eq!(
            count(&log, "build|node-image|"),
            want.len(),
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        assert!(s.running.rolled_out.lock().unwrap().is_empty());

        // Forced to rebuild over kube-proxy-only merges 4..10: the commit whose node image does
        // not build is skipped, the flaky one too, neither blamed.
        let mut req = request(r.m(3), r.m(BREAK), 2);
        req.path = PathChoice::Rebuild;
        let builds = count(&log, "build|node-image|");
        let run = bisect(&mut backend, &mut rx, req).await;
        assert_eq!(run.error, None, "{run:#?}");
        let Some(BisectEvent::Started { path, why, .. }) = &run.started else {
            panic!("no start: {run:#?}")
        };
        assert_eq!(*path, StepPath::Rebuild, "{why}");
        assert!(why.contains("forced"), "{why}");
        let want: Vec<Want> = vec![
            (3, GoodEnd, Good, None, false),
            (BREAK, BadEnd, Bad, None, false),
            (UNBUILDABLE, Inside, Skip, Some(SkipReason::Unbuildable), false),
            (UNBUILDABLE + 1, Inside, Good, None, false),
            (FLAKY_AT, Inside, Skip, Some(SkipReason::Flaky), false),
            (FLAKY_AT + 1, Inside, Good, None, false),
        ];
        assert_eq!(steps_of(r, &run), want, "{run:#?}");
        let unbuildable = &run.steps[2];
        assert!(unbuildable.why.as_deref().is_some_and(|w| !w.is_empty()), "{unbuildable:?}");
        assert!(matches!(&run.end, Some(BisectEnd::Found { first_bad, last_good, .. }) if first_bad.sha == r.m(BREAK) && last_good.sha == r.m(FLAKY_AT + 1)), "{run:#?}");
        // Every step tried a node image build (the unbuildable one's failed).
        assert_eq!(count(&log, "build|node-image|") - builds, want.len());
        assert!(s.running.rolled_out.lock().unwrap().is_empty());
        assert_eq!(
            git(&r.dir, &["status", "--porcelain"]),
            "",
            "the checkout untouched"
        );
        backend.shutdown();
    });
}
