//! Building a side: its source (a ref, or the working tree as it is), the node image (reused
//! when one exists for the exact source), and with `recreate`, the cluster again when the image
//! it runs is not the one just built.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::Ctx;
use crate::backend::bisect::SkipReason;
use crate::backend::docker::commit_tag;
use crate::backend::event::Event;
use crate::backend::git::{self, KubeVersion};
use crate::backend::held::Change;
use crate::backend::kind::{Progress, progress};
use crate::model::{Phase, Side};
use crate::scenario::{MERGE_BASE, WORKTREE};

/// A side's worktree: one per side, moved from commit to commit in place so that the
/// Kubernetes build's caches (keyed by its path) stay warm.
fn worktree_dir(side: &str) -> PathBuf {
    crate::backend::state_dir().join("worktrees").join(side)
}

/// What a side is built from: its ref resolved once, and everything after (the image lookup,
/// the checkout, the version file, the tag) uses that commit.
pub(super) struct Source {
    pub commit: String,
    /// "HEAD abc123 + 3 changed files" for a `worktree` side.
    pub snapshot: Option<String>,
    pub version: Option<KubeVersion>,
    /// The side's worktree, checked out at `commit` once [`checkout`] ran.
    pub dir: PathBuf,
    /// Held from the checkout until this is dropped: no other kindred moves the worktree.
    lock: Option<git::WorktreeLock>,
}

/// The commit a side's ref names; `merge-base` is where the other side's PR branched from the
/// remote's default branch; `worktree` is a snapshot of the checkout as it is now.
async fn resolve_ref(ctx: &Ctx, side: Side, source: &Path) -> Result<(String, Option<String>)> {
    let spec = ctx.sc.side(side);
    let say = |m: String| ctx.out(side, Phase::Build, m);
    if spec.git_ref == WORKTREE {
        let snap = git::snapshot(source, &crate::backend::state_dir().join("tmp")).await?;
        let what = snap.describe();
        say(format!(
            "working tree of {}: {what} (commit {})",
            source.display(),
            &snap.commit[..12]
        ));
        return Ok((snap.commit, Some(what)));
    }
    if spec.git_ref != MERGE_BASE {
        say(format!(
            "resolving {} in {}",
            spec.git_ref,
            source.display()
        ));
        let wanted = spec.remote.as_ref().map(|r| r.as_str());
        if spec.git_ref.starts_with("pr/") {
            let remote = git::remote(source, wanted)
                .await
                .map_err(|e| git::remote_error_at(&ctx.sc, side, e))?;
            say(format!("{} from {}", spec.git_ref, remote.describe()));
        }
        let sha = git::resolve(source, &spec.git_ref, wanted)
            .await
            .map_err(|e| git::remote_error_at(&ctx.sc, side, e))?;
        say(format!("{} is {}", spec.git_ref, &sha[..12]));
        return Ok((sha, None));
    }
    let other_side = side.other();
    let other = &ctx.sc.side(other_side).git_ref;
    let other_source = ctx.sc.resolve(&ctx.sc.side(other_side).source);
    check_source(ctx, other_side, &other_source).await?;
    let other_wanted = ctx.sc.side(other_side).remote.as_ref().map(|r| r.as_str());
    let pr = git::resolve(&other_source, other, other_wanted)
        .await
        .map_err(|e| git::remote_error_at(&ctx.sc, other_side, e))?;
    let wanted = spec.remote.as_ref().map(|r| r.as_str());
    let remote = git::remote(source, wanted)
        .await
        .map_err(|e| git::remote_error_at(&ctx.sc, side, e))?;
    let (sha, branch) = git::merge_base(source, &pr, &remote).await?;
    say(format!(
        "merge-base of {other} and {branch} is {} ({})",
        &sha[..12],
        remote.describe()
    ));
    Ok((sha, None))
}

/// A side's `source` checked, its errors at the scenario's line (`kindred.yaml:7: pr.source:`).
async fn check_source(ctx: &Ctx, side: Side, src: &Path) -> Result<()> {
    git::check_source(src).await.map_err(|e| {
        ctx.sc
            .side_field_error(side, "source", format!("{e:#}"))
            .into()
    })
}

/// A side's source: resolved (once) and described; with `checkout`, in its worktree too.
pub(super) async fn source(ctx: &Ctx, side: Side, checkout_now: bool) -> Result<Source> {
    let spec = ctx.sc.side(side);
    let src = ctx.sc.resolve(&spec.source);
    check_source(ctx, side, &src).await?;
    let (commit, snapshot) = resolve_ref(ctx, side, &src).await?;
    let version = git::describe(&src, &commit).await?;
    ctx.known.lock().unwrap().kube[side] = version.as_ref().map(|v| (v.major, v.minor));
    if version.is_none() {
        ctx.out(
            side,
            Phase::Build,
            "no v* tag reaches this commit (git fetch --tags): the build's version is a guess",
        );
    }
    let mut source = Source {
        commit,
        snapshot,
        version,
        dir: worktree_dir(&spec.name),
        lock: None,
    };
    if checkout_now {
        checkout(ctx, side, &mut source).await?;
    }
    Ok(source)
}

/// Check `src.commit` out in the side's worktree, under the worktree's lock (kept in `src`),
/// and make sure that is what the worktree holds.
pub(super) async fn checkout(ctx: &Ctx, side: Side, src: &mut Source) -> Result<()> {
    let spec = ctx.sc.side(side);
    let what = format!(
        "building {} ({}) at {}",
        spec.name,
        spec.git_ref,
        &src.commit[..12]
    );
    let say = |m: String| ctx.out(side, Phase::Build, m);
    src.lock = Some(git::lock_worktree(&src.dir, &what, say).await?);
    git::worktree(&ctx.sc.resolve(&spec.source), &src.commit, &src.dir).await?;
    same_commit(src, "checkout").await?;
    ctx.out(
        side,
        Phase::Build,
        format!("worktree {}", src.dir.display()),
    );
    Ok(())
}

/// The side's worktree still holds `src.commit` (`when`: after what).
async fn same_commit(src: &Source, when: &str) -> Result<()> {
    let head = git::head(&src.dir).await?;
    if head != src.commit {
        bail!(
            "{}: HEAD is {} after the {when}, not {}, the commit resolved: nothing is tagged with it",
            src.dir.display(),
            &head[..head.len().min(12)],
            &src.commit[..12]
        );
    }
    Ok(())
}

/// Build a side's node image (skipped when an image for the exact source exists).
pub(super) async fn build(ctx: &Ctx, side: Side) -> Result<()> {
    ctx.run_phase(side, Phase::Build, || async {
        let spec = ctx.sc.side(side);
        let docker = ctx.docker().await?;
        let mut src = source(ctx, side, false).await?;
        let by_commit = commit_tag(&src.commit);
        let built = Event::Built {
            side,
            commit: src.commit.clone(),
            image: spec.image.clone(),
            version: src.version.as_ref().map(|v| v.version.clone()),
            snapshot: src.snapshot.clone(),
        };
        if docker.image_exists(&by_commit).await? {
            docker.tag(&by_commit, &spec.image).await?;
            ctx.emit(built);
            return Ok(Some(format!("image {by_commit} exists")));
        }
        checkout(ctx, side, &mut src).await?;
        let env = version_env(&src.dir, src.version.as_ref(), src.snapshot.is_some())?;
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let on_line = |l: &str| {
            if let Some(Progress::Stage(s)) = progress(l) {
                tracing::info!(side = ?side, stage = s, "build");
            }
            ctx.out(side, Phase::Build, l);
        };
        let timings = crate::backend::timings::default_path();
        let last = crate::backend::timings::last(&timings, crate::backend::timings::NODE_IMAGE);
        if let Some(t) = last {
            let seconds = t.as_secs();
            ctx.emit(Event::Estimate {
                side,
                phase: Phase::Build,
                seconds,
            });
        }
        let started = std::time::Instant::now();
        ctx.kind
            .build_node_image(&src.dir, &spec.image, &env, on_line, &ctx.cancel)
            .await
            .map_err(super::bisect::skipped(SkipReason::Unbuildable))?;
        let kind = crate::backend::timings::NODE_IMAGE;
        crate::backend::timings::record(&timings, kind, started.elapsed());
        same_commit(&src, "build").await?;
        docker.tag(&spec.image, &by_commit).await?;
        ctx.emit(built);
        Ok(None)
    })
    .await
}

/// `KUBE_GIT_VERSION_FILE` for the Kubernetes build, written into the source tree it builds
/// (Kubernetes >= 1.35 mounts only that tree into its build container, where a worktree's
/// `.git` pointer leads nowhere). A working-tree snapshot is built as `dirty`, as Kubernetes'
/// own scripts would call it.
pub(super) fn version_env(
    dir: &Path,
    version: Option<&KubeVersion>,
    dirty: bool,
) -> Result<Vec<(&'static str, String)>> {
    let Some(v) = version else {
        return Ok(Vec::new());
    };
    let file = dir.join(".kindred-version-defs");
    std::fs::write(&file, v.file(dirty))
        .with_context(|| format!("{}: cannot write", file.display()))?;
    Ok(vec![("KUBE_GIT_VERSION_FILE", file.display().to_string())])
}

/// Build a side, then, when its cluster exists and runs another image, recreate and deploy it.
/// Returns whether the cluster was recreated.
pub(super) async fn rebuild(ctx: &Ctx, side: Side) -> Result<bool> {
    build(ctx, side).await?;
    let name = ctx.name(side).to_string();
    let docker = ctx.docker().await?;
    let nodes = docker.cluster_nodes(&name).await?;
    let say = |m: String| ctx.out(side, Phase::Build, m);
    if nodes.is_empty() {
        say(format!(
            "no cluster {name} yet: c creates it from this image"
        ));
        return Ok(false);
    }
    let image = &ctx.sc.side(side).image;
    let want = docker.image_id(image).await?;
    if want.is_some() && nodes.iter().all(|n| Some(&n.image_id) == want.as_ref()) {
        say(format!(
            "cluster {name} runs this image already: not recreated"
        ));
        return Ok(false);
    }
    say(format!("cluster {name} runs another image: recreating it"));
    // Connections held from the old cluster's pods: the recreate ends them, and says so.
    let held = match ctx.client(side).await {
        Ok(c) => super::held::open(ctx, side, (Change::Rebuild, Phase::Build), &c).await,
        Err(e) => {
            say(format!("  no connection held: {e:#}"));
            None
        }
    };
    let made = async {
        super::create(ctx, side).await?;
        super::deploy(ctx, side).await
    }
    .await;
    if let Some(h) = held {
        h.finish(ctx, true).await;
    }
    made?;
    Ok(true)
}
