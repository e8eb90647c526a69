//! The live backend's Build command, end to end with real git and Docker and a stand-in `kind`:
//! each side's ref resolved in a Kubernetes-like checkout, built from its own worktree with the
//! version file kindred writes, tagged by commit; a second Build finds the image and skips.
//! Ignored by plain `cargo test` (needs Docker).

mod common;
use common::*;

use std::process::Command as Cmd;

use kindred::backend::event::Event;
use kindred::backend::{Backend, Command};
use kindred::model::{Job, Phase, PhaseState, Side};
use kindred::scenario::Scenario;

/// What `check` sends: both sides' images, no cluster touched.
const BUILD_BOTH: Command = Command::Build {
    sides: kindred::model::Sides::Both,
    recreate: false,
};

#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn build_resolves_refs_builds_each_worktree_and_skips_a_built_commit() {
    image();
    let pid = std::process::id();
    let tmp = tempfile::tempdir().unwrap();
    let state = in_process_state();
    let src = tmp.path().join("kubernetes");
    std::fs::create_dir_all(&src).unwrap();
    let (base_sha, pr_sha) = kubernetes_like(&src);
    let kind_dir = tmp.path().join("kind");
    std::fs::create_dir_all(&kind_dir).unwrap();
    let kind = standin(&kind_dir, "bridge");
    let mut sc = Scenario::builtin();
    for (side, r) in [(Side::Base, "v1.34.0"), (Side::Pr, "fix")] {
        let s = match side {
            Side::Base => &mut sc.base,
            Side::Pr => &mut sc.pr,
        };
        s.source = src.display().to_string();
        s.git_ref = r.to_string();
        s.image = format!("kindred-build-{}{pid}:test", side.label().to_lowercase());
        s.name = format!("kb{}{pid}", side.label().to_lowercase());
    }
    let images: Vec<String> = Side::BOTH
        .iter()
        .map(|s| sc.side(*s).image.clone())
        .collect();
    // The side images and the by-commit tags go when the test ends.
    let _images = built_images(&sc, &[&base_sha, &pr_sha]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut backend, mut rx) = attached(sc.clone(), kind).await;

        backend.send(BUILD_BOTH);
        let (ev, err) = until_finished(&mut rx, Job::Build).await;
        assert_eq!(err, None, "{ev:#?}");
        let built: Vec<(Side, String, Option<String>)> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Built { side, commit, version, .. } => Some((*side, commit.clone(), version.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(built.len(), 2, "{ev:#?}");
        for (side, commit, version) in &built {
            let (want, v) = match side {
                Side::Base => (&base_sha, "v1.34.0"),
                Side::Pr => (&pr_sha, "v1.34.0-1+"),
            };
            assert_eq!(commit, want, "{side:?}");
            assert!(version.as_deref().is_some_and(|x| x.starts_with(v)), "{side:?} {version:?}");
        }
        // kind got each side's own worktree (the PR's holds the fix) and its image tag; the
        // version file went along.
        let argv = std::fs::read_to_string(kind_dir.join("argv.log")).unwrap();
        for (side, img) in Side::BOTH.iter().zip(&images) {
            let line = argv
                .lines()
                .find(|l| l.starts_with("build|node-image|") && l.contains(&format!("|--image|{img}|")))
                .unwrap_or_else(|| panic!("{side:?} built: {argv}"));
            let dir = line.split('|').nth(2).unwrap();
            assert!(dir.starts_with(state.to_str().unwrap()), "{line}");
            let tree = std::fs::read_to_string(kind_dir.join(format!("tree-{img}.txt"))).unwrap();
            assert_eq!(tree.contains("proxier-fix.go"), *side == Side::Pr, "{side:?}: {tree}");
            let vf = std::fs::read_to_string(kind_dir.join(format!("version-{img}.txt"))).unwrap();
            assert!(vf.contains("KUBE_GIT_VERSION='v1.34.0"), "{vf}");
            assert!(
                ev.iter().any(|e| matches!(e, Event::Phase { side: s, phase: Phase::Build, state: PhaseState::Done } if s == side)),
                "{side:?} done"
            );
        }
        // The checkout itself is untouched.
        assert_eq!(git(&src, &["status", "--porcelain"]), "");
        assert_eq!(git(&src, &["rev-parse", "HEAD"]), base_sha);

        // Again: both commits have images, nothing is built.
        backend.send(BUILD_BOTH);
        let (ev, err) = until_finished(&mut rx, Job::Build).await;
        assert_eq!(err, None, "{ev:#?}");
        let again = std::fs::read_to_string(kind_dir.join("argv.log")).unwrap();
        assert_eq!(
            again.matches("build|node-image|").count(),
            2,
            "no second build: {again}"
        );
        for side in Side::BOTH {
            assert!(
                ev.iter().any(|e| matches!(e, Event::Phase { side: s, phase: Phase::Build, state: PhaseState::Skipped { reason } } if *s == side && reason.contains("exists"))
                    || matches!(e, Event::Phase { side: s, phase: Phase::Build, state: PhaseState::Done } if *s == side)),
                "{side:?}: {ev:#?}"
            );
        }
        backend.shutdown();
    });
}

/// A contributor's layout, end to end: the fork as `origin` (no `refs/pull`), kubernetes/kubernetes
/// as `upstream` (its URL redirected to a local bare repository by `url.LOCAL.insteadOf`): the
/// built-in scenario's `pr/132456` and `merge-base` come from `upstream`, and the Build pane says
/// so; without `upstream`, the build says why at the scenario's line instead of starting.
#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn a_fork_as_origin_builds_the_pr_and_its_base_from_upstream() {
    image();
    let pid = std::process::id();
    let tmp = tempfile::tempdir().unwrap();
    in_process_state();
    let at = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let (base_sha, pr_sha) = kubernetes_like(&work);
    let fork = tmp.path().join("fork.git");
    git(
        tmp.path(),
        &["clone", "-q", "--bare", &at(&work), &at(&fork)],
    );
    git(&work, &["update-ref", "refs/pull/132456/head", &pr_sha]);
    git(&work, &["branch", "-qD", "fix"]);
    let upstream = tmp.path().join("kubernetes.git");
    git(
        tmp.path(),
        &["clone", "-q", "--mirror", &at(&work), &at(&upstream)],
    );
    let src = tmp.path().join("kubernetes");
    git(tmp.path(), &["clone", "-q", &at(&fork), &at(&src)]);
    let url = "https://github.com/kubernetes/kubernetes.git";
    git(&src, &["remote", "add", "upstream", url]);
    let redirect = format!("url.{}.insteadOf", upstream.display());
    git(&src, &["config", &redirect, url]);
    git(&src, &["fetch", "-q", "upstream"]);

    let kind_dir = tmp.path().join("kind");
    std::fs::create_dir_all(&kind_dir).unwrap();
    let kind = standin(&kind_dir, "bridge");
    let text = kindred::scenario::DEFAULT.replace("~/go/src/k8s.io/kubernetes", &at(&src));
    let file = tmp.path().join("k.yaml");
    let mut sc = Scenario::parse(&text, &at(&file)).unwrap();
    for (s, tag) in [(&mut sc.base, "fb"), (&mut sc.pr, "fp")] {
        s.image = format!("kindred-fork-{tag}{pid}:test");
        s.name = format!("{tag}{pid}");
    }
    assert_eq!(
        (sc.base.git_ref.as_str(), sc.pr.git_ref.as_str()),
        ("merge-base", "pr/132456")
    );
    let _images = built_images(&sc, &[&base_sha, &pr_sha]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut backend, mut rx) = attached(sc.clone(), kind.clone()).await;
        backend.send(BUILD_BOTH);
        let (ev, err) = until_finished(&mut rx, Job::Build).await;
        assert_eq!(err, None, "{ev:#?}");
        let built: Vec<(Side, String)> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Built { side, commit, .. } => Some((*side, commit.clone())),
                _ => None,
            })
            .collect();
        assert!(built.contains(&(Side::Base, base_sha.clone())), "{built:?}");
        assert!(built.contains(&(Side::Pr, pr_sha.clone())), "{built:?}");
        let said = |side: Side, what: &str| {
            ev.iter().any(|e| matches!(e, Event::Output { side: s, line, .. } if *s == side && line.contains(what)))
        };
        let why = "remote upstream (https://github.com/kubernetes/kubernetes.git): its URL is kubernetes/kubernetes";
        assert!(said(Side::Pr, &format!("pr/132456 from {why}")), "{ev:#?}");
        let base = format!("merge-base of pr/132456 and upstream/master is {} ({why})", &base_sha[..12]);
        assert!(said(Side::Base, &base), "{ev:#?}");
        backend.shutdown();

        // No remote is kubernetes/kubernetes: the build does not start, and says why where.
        git(&src, &["remote", "remove", "upstream"]);
        let (mut backend, mut rx) = attached(sc.clone(), kind).await;
        backend.send(BUILD_BOTH);
        let (_, err) = until_finished(&mut rx, Job::Build).await;
        let err = err.expect("refused");
        // The first side that needs the remote: base (merge-base), at its `ref:` line.
        let line = text.lines().position(|l| l.starts_with("base:")).unwrap() + 1;
        let line = line
            + text.lines().skip(line).position(|l| l.trim_start().starts_with("ref:")).unwrap()
            + 1;
        assert!(err.contains(&format!("{}:{line}: base.ref: ", file.display())), "{err}");
        assert!(err.contains("no remote is kubernetes/kubernetes"), "{err}");
        assert!(err.contains(&format!("origin {}", fork.display())), "{err}");
        backend.shutdown();
    });
}

/// Wait until `what` holds, up to `secs`.
fn eventually(what: &str, secs: u64, f: impl Fn() -> bool) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !f() {
        assert!(std::time::Instant::now() < end, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A build running when Build is pressed again is stopped (kind's process group killed) and the
/// new one runs to its end, reporting one `finished`; Cancel stops a running build the same way.
#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn a_running_build_is_restarted_or_cancelled_with_its_processes() {
    image();
    let pid = std::process::id();
    let tmp = tempfile::tempdir().unwrap();
    in_process_state();
    let src = tmp.path().join("kubernetes");
    std::fs::create_dir_all(&src).unwrap();
    let (base_sha, pr_sha) = kubernetes_like(&src);
    let kind_dir = tmp.path().join("kind");
    std::fs::create_dir_all(&kind_dir).unwrap();
    let kind = standin(&kind_dir, "bridge");
    let mut sc = Scenario::builtin();
    sc.base.git_ref = "v1.34.0".into();
    sc.pr.git_ref = "fix".into();
    for (s, tag) in [(&mut sc.base, "rb"), (&mut sc.pr, "rp")] {
        s.source = src.display().to_string();
        s.image = format!("kindred-restart-{tag}{pid}:test");
        s.name = format!("{tag}{pid}");
    }
    let base_img = sc.base.image.clone();
    let images = built_images(&sc, &[&base_sha, &pr_sha]);
    let pid_file = kind_dir.join(format!("build-{base_img}.pid"));
    let build_pid = || -> i32 {
        std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut backend, mut rx) = attached(sc.clone(), kind).await;

        // A slow build, then Build again while it runs.
        std::fs::write(kind_dir.join("build-delay"), "60").unwrap();
        backend.send(BUILD_BOTH);
        eventually("the first build started", 30, || pid_file.exists());
        let first = build_pid();
        assert!(alive(first));
        std::fs::remove_file(kind_dir.join("build-delay")).unwrap();
        std::fs::remove_file(&pid_file).unwrap();
        backend.send(BUILD_BOTH);
        eventually("the first build's kind was killed", 10, || !alive(first));
        let (ev, err) = until_finished(&mut rx, Job::Build).await;
        assert_eq!(err, None, "{ev:#?}");
        assert_eq!(
            ev.iter()
                .filter(|e| matches!(e, Event::Built { .. }))
                .count(),
            2,
            "{ev:#?}"
        );

        // Cancel: the images go, so the next build has work to do; it is stopped midway.
        let _ = Cmd::new("docker").arg("rmi").args(&images.0).output();
        std::fs::write(kind_dir.join("build-delay"), "60").unwrap();
        std::fs::remove_file(&pid_file).unwrap();
        backend.send(BUILD_BOTH);
        eventually("the build started", 30, || pid_file.exists());
        let second = build_pid();
        backend.send(Command::Cancel);
        eventually("the cancelled build's kind was killed", 10, || {
            !alive(second)
        });
        // A cancelled job says nothing more: no `finished`, no image.
        let more = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            loop {
                match rx.recv().await {
                    Some(Event::Finished {
                        job: Job::Build,
                        error,
                    }) => return error,
                    Some(_) => continue,
                    None => return None,
                }
            }
        })
        .await;
        assert!(more.is_err(), "a finished event after Cancel: {more:?}");
        let o = Cmd::new("docker")
            .args(["image", "inspect", &base_img])
            .output()
            .unwrap();
        assert!(!o.status.success(), "no image from a cancelled build");
        backend.shutdown();
    });
}

/// Issue 22: a build works only in a worktree kindred made. A symlink where the side's worktree
/// would be (to another clone, mid-change) is refused, naming the path and the fix, and the clone
/// is left exactly as it was; the user's own worktree whose disk is not mounted keeps its
/// metadata (nothing is pruned); a source inside another repository is refused at its line.
#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn a_build_touches_no_worktree_but_its_own() {
    image();
    let pid = std::process::id();
    let tmp = tempfile::tempdir().unwrap();
    let state = in_process_state();
    let src = tmp.path().join("kubernetes");
    std::fs::create_dir_all(&src).unwrap();
    let (base_sha, pr_sha) = kubernetes_like(&src);
    // The user's worktree on a disk that is not mounted: gone, but for its metadata.
    let away = tmp.path().join("usb/feature");
    git(
        &src,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "feature",
            away.to_str().unwrap(),
        ],
    );
    std::fs::write(away.join("staged.go"), "package staged\n").unwrap();
    git(&away, &["add", "staged.go"]);
    let meta = src.join(".git/worktrees/feature/index");
    let index = std::fs::read(&meta).unwrap();
    std::fs::remove_dir_all(tmp.path().join("usb")).unwrap();
    // Another clone of the user's, mid-change.
    let other = tmp.path().join("other");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            src.to_str().unwrap(),
            other.to_str().unwrap(),
        ],
    );
    std::fs::write(other.join("OWNER"), "uncommitted edit\n").unwrap();
    std::fs::write(other.join("notes.txt"), "untracked\n").unwrap();
    let other_state = || {
        (
            git(&other, &["rev-parse", "--abbrev-ref", "HEAD"]),
            git(&other, &["status", "--porcelain"]),
            std::fs::read_to_string(other.join("OWNER")).unwrap(),
            std::fs::read_to_string(other.join("notes.txt")).unwrap(),
        )
    };
    let before = other_state();

    let kind_dir = tmp.path().join("kind");
    std::fs::create_dir_all(&kind_dir).unwrap();
    let kind = standin(&kind_dir, "bridge");
    let mut sc = Scenario::builtin();
    for (s, tag, r) in [(&mut sc.base, "ob", "v1.34.0"), (&mut sc.pr, "op", "fix")] {
        s.source = src.display().to_string();
        s.git_ref = r.into();
        s.image = format!("kindred-own-{tag}{pid}:test");
        s.name = format!("{tag}{pid}");
    }
    let _images = built_images(&sc, &[&base_sha, &pr_sha]);
    let worktrees = state.join("kindred/worktrees");
    std::fs::create_dir_all(&worktrees).unwrap();
    let link = worktrees.join(&sc.pr.name);
    std::os::unix::fs::symlink(&other, &link).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut backend, mut rx) = attached(sc.clone(), kind.clone()).await;
        backend.send(BUILD_BOTH);
        let (ev, err) = until_finished(&mut rx, Job::Build).await;
        let err = err.expect("the PR side is refused");
        assert!(
            err.contains(&link.display().to_string()) && err.contains("symlink"),
            "{err}"
        );
        assert!(err.contains("move it away or remove it"), "{err}");
        assert_eq!(other_state(), before, "the other clone is as it was");
        assert!(
            !ev.iter()
                .any(|e| matches!(e, Event::Built { side: Side::Pr, .. })),
            "{ev:#?}"
        );
        // The base side was built in its own worktree; the user's metadata is still there.
        assert!(
            ev.iter().any(|e| matches!(
                e,
                Event::Built {
                    side: Side::Base,
                    ..
                }
            )),
            "{ev:#?}"
        );
        assert_eq!(
            std::fs::read(&meta).unwrap(),
            index,
            "the user's worktree was pruned"
        );
        backend.shutdown();

        // A source inside another repository: refused at the scenario's line (by the preflight,
        // before the build starts).
        let inner = src.join("staging");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::write(inner.join("go.mod"), "module k8s.io/kubernetes\n").unwrap();
        let text = kindred::scenario::DEFAULT
            .replace("~/go/src/k8s.io/kubernetes", inner.to_str().unwrap())
            .replace("pr/132456", "fix");
        let file = tmp.path().join("k.yaml");
        let mut inside = Scenario::parse(&text, file.to_str().unwrap()).unwrap();
        inside.base = sc.base.clone();
        inside.pr.name = format!("in{pid}");
        inside.pr.image = format!("kindred-own-in{pid}:test");
        let (mut backend, mut rx) = attached(inside, kind).await;
        backend.send(Command::Build {
            sides: kindred::model::Sides::Pr,
            recreate: false,
        });
        let (_, err) = until_finished(&mut rx, Job::Build).await;
        let err = err.expect("refused");
        let line = text.lines().position(|l| l.starts_with("pr:")).unwrap() + 1;
        let line = line
            + text
                .lines()
                .skip(line)
                .position(|l| l.trim_start().starts_with("source:"))
                .unwrap()
            + 1;
        assert!(
            err.contains(&format!("{}:{line}: pr.source: ", file.display())),
            "{err}"
        );
        assert!(err.contains("not its top level"), "{err}");
        backend.shutdown();
    });
}
