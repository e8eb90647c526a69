//! The commit named is the commit built (issue 22), end to end with real git and Docker and a
//! stand-in `kind`: a branch that moves while a build runs does not change what is built or
//! how it is tagged; a worktree whose HEAD moves during the build gets no commit tag; a second
//! kindred on the same worktree waits for the first, saying who holds it.
//! Ignored by plain `cargo test` (needs Docker).

mod common;
use common::*;

use std::path::{Path, PathBuf};

use kindred::backend::event::Event;
use kindred::backend::{Backend, Command};
use kindred::model::{Job, Side, Sides};
use kindred::scenario::Scenario;

const BUILD_PR: Command = Command::Build {
    sides: Sides::Pr,
    recreate: false,
};

/// A scenario on `src` for this test (`tag`): the base side at v1.34.0, the PR side at `pr_ref`.
fn scenario(src: &Path, tag: &str, pr_ref: &str) -> Scenario {
    let pid = std::process::id();
    let mut sc = Scenario::builtin();
    for (s, side, r) in [(&mut sc.base, "b", "v1.34.0"), (&mut sc.pr, "p", pr_ref)] {
        s.source = src.display().to_string();
        s.git_ref = r.into();
        s.image = format!("kindred-commit-{tag}{side}{pid}:test");
        s.name = format!("{tag}{side}{pid}");
    }
    sc
}

/// A commit on top of `from` in `src` whose `moving.txt` says `what`, on no branch.
fn commit_on(src: &Path, from: &str, what: &str) -> String {
    git(src, &["checkout", "-q", "--detach", from]);
    std::fs::write(src.join("moving.txt"), what).unwrap();
    git(src, &["add", "moving.txt"]);
    git(src, &["commit", "-qm", what]);
    let sha = git(src, &["rev-parse", "HEAD"]);
    git(src, &["checkout", "-q", "master"]);
    sha
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The commit of the PR side's `Built` event.
fn built(ev: &[Event]) -> Option<String> {
    ev.iter().find_map(|e| match e {
        Event::Built {
            side: Side::Pr,
            commit,
            ..
        } => Some(commit.clone()),
        _ => None,
    })
}

fn image_exists(tag: &str) -> bool {
    std::process::Command::new("docker")
        .args(["image", "inspect", tag])
        .output()
        .unwrap()
        .status
        .success()
}

/// A `git` first on PATH that runs the real one and, the first time the branch `moving` is
/// resolved once `dir/armed` exists, moves it to `next` right after answering: as a push or a
/// `git pull` would between two resolutions.
fn git_that_moves(dir: &Path, src: &Path, next: &str) -> PathBuf {
    let real = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let script = format!(
        r#"#!/bin/sh
"{real}" "$@"; rc=$?
case "$*" in
  *"moving^{{commit}}"*)
    if [ -e "{dir}/armed" ] && mkdir "{dir}/moved" 2>/dev/null; then "{real}" -C "{src}" update-ref refs/heads/moving {next}; fi ;;
esac
exit $rc
"#,
        real = real.trim(),
        dir = dir.display(),
        src = src.display(),
    );
    let p = dir.join("git");
    std::fs::write(&p, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn a_branch_moved_after_its_resolution_builds_and_tags_the_commit_resolved() {
    image();
    let tmp = tempfile::tempdir().unwrap();
    in_process_state();
    let src = tmp.path().join("kubernetes");
    std::fs::create_dir_all(&src).unwrap();
    let (base_sha, _) = kubernetes_like(&src);
    let first = commit_on(&src, &base_sha, "first");
    let second = commit_on(&src, &base_sha, "second");
    git(&src, &["branch", "moving", &first]);
    let wrap = tmp.path().join("bin");
    std::fs::create_dir_all(&wrap).unwrap();
    git_that_moves(&wrap, &src, &second);
    let path = std::env::var("PATH").unwrap_or_default();
    // SAFETY: set before the backend starts; every git of this process goes through it, and
    // it only acts on this test's branch.
    unsafe { std::env::set_var("PATH", format!("{}:{path}", wrap.display())) };
    let kind_dir = tmp.path().join("kind");
    std::fs::create_dir_all(&kind_dir).unwrap();
    let kind = standin(&kind_dir, "bridge");
    let sc = scenario(&src, "mv", "moving");
    let pr_img = sc.pr.image.clone();
    let _images = built_images(&sc, &[&first, &second]);
    runtime().block_on(async {
        let (mut backend, mut rx) = attached(sc.clone(), kind).await;
        // Armed after the preflight (which resolves the refs too).
        std::fs::write(wrap.join("armed"), "").unwrap();
        backend.send(BUILD_PR);
        let (ev, err) = until_finished(&mut rx, Job::Build).await;
        assert_eq!(err, None, "{ev:#?}");
        assert!(wrap.join("moved").exists(), "the branch was moved");
        assert_eq!(git(&src, &["rev-parse", "moving"]), second);
        // Built, checked out and tagged: the commit resolved, all three.
        assert_eq!(built(&ev).as_deref(), Some(first.as_str()), "{ev:#?}");
        let content =
            std::fs::read_to_string(kind_dir.join(format!("content-{pr_img}.txt"))).unwrap();
        assert!(content.contains("== ./moving.txt\nfirst"), "{content}");
        assert!(image_exists(&kindred::backend::docker::commit_tag(&first)));
        assert!(!image_exists(&kindred::backend::docker::commit_tag(
            &second
        )));
        backend.shutdown();
    });
}

/// A `kind` that runs `hook` (a shell command; `"$3"` is the tree a build is given) before a
/// node-image build, and then the stand-in.
fn kind_with_hook(dir: &Path, standin: &Path, hook: &str) -> kindred::backend::kind::Kind {
    let script = format!(
        "#!/bin/sh\nif [ \"$1 $2\" = \"build node-image\" ]; then {hook}; fi\nexec \"{}\" \"$@\"\n",
        standin.display()
    );
    let p = dir.join("kind");
    std::fs::write(&p, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    kindred::backend::kind::Kind::new(p)
}

#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn a_worktree_moved_during_the_build_is_not_tagged() {
    image();
    let tmp = tempfile::tempdir().unwrap();
    in_process_state();
    let src = tmp.path().join("kubernetes");
    std::fs::create_dir_all(&src).unwrap();
    let (base_sha, pr_sha) = kubernetes_like(&src);
    let kind_dir = tmp.path().join("kind");
    std::fs::create_dir_all(&kind_dir).unwrap();
    standin(&kind_dir, "bridge");
    let hooked = tmp.path().join("hooked");
    std::fs::create_dir_all(&hooked).unwrap();
    // Something else moves the worktree to the base commit while kind builds.
    let hook = format!("git -C \"$3\" checkout -q --detach {base_sha}");
    let kind = kind_with_hook(&hooked, &kind_dir.join("kind"), &hook);
    let sc = scenario(&src, "hd", "fix");
    let _images = built_images(&sc, &[&pr_sha]);
    runtime().block_on(async {
        let (mut backend, mut rx) = attached(sc.clone(), kind).await;
        backend.send(BUILD_PR);
        let (ev, err) = until_finished(&mut rx, Job::Build).await;
        let err = err.expect("the build fails");
        assert!(
            err.contains("HEAD is")
                && err.contains("after the build")
                && err.contains(&pr_sha[..12]),
            "{err}"
        );
        assert_eq!(built(&ev), None, "{ev:#?}");
        assert!(!image_exists(&kindred::backend::docker::commit_tag(
            &pr_sha
        )));
        backend.shutdown();
    });
}

#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn a_build_waits_for_the_kindred_holding_its_worktree() {
    image();
    let tmp = tempfile::tempdir().unwrap();
    let state = in_process_state();
    let src = tmp.path().join("kubernetes");
    std::fs::create_dir_all(&src).unwrap();
    let (_, pr_sha) = kubernetes_like(&src);
    let kind_dir = tmp.path().join("kind");
    std::fs::create_dir_all(&kind_dir).unwrap();
    let kind = standin(&kind_dir, "bridge");
    let sc = scenario(&src, "lk", "fix");
    let _images = built_images(&sc, &[&pr_sha]);
    let dir = state.join("kindred/worktrees").join(&sc.pr.name);
    let log = kind_dir.join("argv.log");
    runtime().block_on(async {
        // Another kindred (here: this test) holds the PR side's worktree.
        let held = kindred::backend::git::lock_worktree(&dir, "building it elsewhere", |_| {})
            .await
            .unwrap();
        let (mut backend, mut rx) = attached(sc.clone(), kind).await;
        backend.send(BUILD_PR);
        let holder = format!("kindred pid {}, building it elsewhere", std::process::id());
        let waited = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            loop {
                match rx.recv().await.expect("backend alive") {
                    Event::Output {
                        side: Side::Pr,
                        line,
                        ..
                    } if line.contains(&holder) => {
                        return line;
                    }
                    Event::Finished {
                        job: Job::Build,
                        error,
                    } => panic!("finished: {error:?}"),
                    _ => {}
                }
            }
        })
        .await
        .expect("told who holds the worktree");
        assert!(waited.contains("waiting"), "{waited}");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let builds = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            !builds.contains("build|node-image|"),
            "built while held: {builds}"
        );
        drop(held);
        let (ev, err) = until_finished(&mut rx, Job::Build).await;
        assert_eq!(err, None, "{ev:#?}");
        assert_eq!(built(&ev).as_deref(), Some(pr_sha.as_str()));
        backend.shutdown();
    });
}
