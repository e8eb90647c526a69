//! Swapping only kube-proxy into a running cluster: build the binary from the side's source
//! with Kubernetes' own entry points, package it on the kube-proxy image the cluster runs now
//! (through the Docker engine), load it into every node (saved as an archive, `kind load image-archive`), point the
//! DaemonSet at it and wait for the rollout. A failed rollout sets the DaemonSet back. Each step
//! is reported in the Build pane with its time.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};

use super::Ctx;
use crate::backend::bisect::SkipReason;
use crate::backend::docker::{Docker, build_context};
use crate::backend::event::Event;
use crate::backend::held::Change;
use crate::backend::kbuild;
use crate::backend::kube::{self, ProxyContainer};
use crate::model::{Phase, Side};

/// How long reading an image out of a node's containerd may take.
const EXPORT_LIMIT: Duration = Duration::from_secs(300);

/// One step of a swap: announced, then done or failed with its time.
async fn step<T>(
    ctx: &Ctx,
    side: Side,
    what: &str,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    ctx.out(side, Phase::Swap, format!("▸ {what}"));
    let t = Instant::now();
    let r = f.await;
    let took = crate::model::seconds(t.elapsed());
    match &r {
        Ok(_) => ctx.out(side, Phase::Swap, format!("✓ {what} ({took})")),
        Err(e) => ctx.out(side, Phase::Swap, format!("✗ {what} ({took}): {e:#}")),
    }
    r
}

/// The tag of a swapped-in kube-proxy: the source commit and a digest of what went into it
/// (the base image and the binary), so the same build is never loaded twice.
pub fn proxy_tag(commit: &str, base_id: &str, binary: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    base_id.hash(&mut h);
    binary.hash(&mut h);
    format!(
        "kindred/kube-proxy:{}-{:08x}",
        &commit[..commit.len().min(12)],
        h.finish() as u32
    )
}

/// The label on a swapped-in image naming the image it was built on.
const BASE_LABEL: &str = "io.kindred.kube-proxy.base";

/// The image a new kube-proxy is built on: the one the cluster runs, or when that is itself a
/// swapped-in build, the image that one was built on (so the same binary makes the same image).
/// Put in the Docker engine when it is not there (read out of a node's containerd with
/// `ctr images export`, and loaded). Returns its name and ID.
async fn base_image(docker: &Docker, node: &str, running: &str) -> Result<(String, String)> {
    let image = match docker.image_label(running, BASE_LABEL).await? {
        Some(b) if docker.image_id(&b).await?.is_some() => b,
        _ => running.to_string(),
    };
    let id = fetch_image(docker, node, &image).await?;
    Ok((image, id))
}

/// An image from the engine, else from a node's containerd; its ID.
async fn fetch_image(docker: &Docker, node: &str, image: &str) -> Result<String> {
    if let Some(id) = docker.image_id(image).await? {
        return Ok(id);
    }
    let argv = ["ctr", "--namespace=k8s.io", "images", "export", "-", image];
    let archive = docker.exec_bytes(node, &argv, EXPORT_LIMIT).await?;
    docker.load_image(archive).await?;
    docker.image_id(image).await?.ok_or_else(|| {
        anyhow!(
            "{image} was exported from {node} and loaded, yet the Docker engine does not have it"
        )
    })
}

/// The new image: `base` with the new binary where the DaemonSet runs it.
async fn package(
    ctx: &Ctx,
    side: Side,
    docker: &Docker,
    (current, base): (&ProxyContainer, &str),
    binary: &[u8],
    tag: &str,
) -> Result<()> {
    let dockerfile = format!(
        "FROM {base}\nCOPY kube-proxy {}\nLABEL io.kindred.kube-proxy=swapped {BASE_LABEL}=\"{base}\"\n",
        current.binary
    );
    let context = build_context(&[
        ("Dockerfile", 0o644, dockerfile.as_bytes()),
        ("kube-proxy", 0o755, binary),
    ])?;
    docker
        .build_image(context, tag, |l| {
            ctx.out(side, Phase::Swap, format!("  {l}"))
        })
        .await
}

/// Load `image` into every node of cluster `name`: saved from the engine into a temp file in
/// kindred's state dir and loaded with `kind load image-archive` (on Docker's containerd image
/// store `kind load docker-image` fails), the file removed after.
async fn load_archive(
    ctx: &Ctx,
    side: Side,
    docker: &Docker,
    image: &str,
    name: &str,
) -> Result<()> {
    let dir = crate::backend::state::ensure_state_dir()?;
    let file = tempfile::Builder::new()
        .prefix("image-")
        .suffix(".tar")
        .tempfile_in(&dir)
        .map_err(|e| anyhow!("{}: cannot create an image archive: {e}", dir.display()))?
        .into_temp_path();
    docker.save_image(image, &file).await?;
    let say = |l: &str| ctx.out(side, Phase::Swap, format!("  {l}"));
    let r = ctx
        .kind
        .load_image_archive(&file, name, say, &ctx.cancel)
        .await;
    let shown = file.display().to_string();
    let removed = file.close();
    r?;
    removed.map_err(|e| anyhow!("{shown}: cannot remove the image archive: {e}"))
}

/// Compile kube-proxy from a side's source (in its worktree); the binary's bytes.
async fn compile(ctx: &Ctx, side: Side, src: &super::build::Source) -> Result<Vec<u8>> {
    let how = kbuild::choose(&src.dir).await;
    let dirty = src.snapshot.is_some();
    let env = super::build::version_env(&src.dir, src.version.as_ref(), dirty)?;
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = |l: &str| ctx.out(side, Phase::Swap, format!("  {l}"));
    ctx.out(side, Phase::Swap, format!("  compiling with {how}"));
    let timings = crate::backend::timings::default_path();
    let kind = crate::backend::timings::KUBE_PROXY;
    if let Some(t) = crate::backend::timings::last(&timings, kind) {
        let seconds = t.as_secs();
        ctx.emit(Event::Estimate {
            side,
            phase: Phase::Swap,
            seconds,
        });
    }
    let started = std::time::Instant::now();
    let build = kbuild::kube_proxy(&src.dir, &how, &env, out, &ctx.cancel);
    let bin = step(ctx, side, "compile kube-proxy", build)
        .await
        .map_err(super::bisect::skipped(SkipReason::Unbuildable))?;
    crate::backend::timings::record(&timings, kind, started.elapsed());
    std::fs::read(&bin).map_err(|e| anyhow!("{}: {e}", bin.display()))
}

/// Point the DaemonSet at `tag` and wait for the rollout; one that does not finish sets the
/// DaemonSet back to the image it ran.
async fn roll_out(
    ctx: &Ctx,
    side: Side,
    client: &::kube::Client,
    current: &ProxyContainer,
    tag: &str,
) -> Result<()> {
    let patch = kube::set_proxy_image(client, &current.name, tag);
    step(ctx, side, "point the DaemonSet at it", patch).await?;
    let say = |m: String| ctx.out(side, Phase::Swap, format!("  {m}"));
    let limit = Duration::from_secs_f64(ctx.sc.build.rollout_timeout);
    let wait = kube::wait_proxy_rollout(client, limit, say);
    let Err(e) = step(ctx, side, "rollout", wait).await else {
        return Ok(());
    };
    let how = match kube::set_proxy_image(client, &current.name, &current.image).await {
        Ok(()) => format!("kube-proxy set back to {}", current.image),
        Err(b) => format!(
            "setting kube-proxy back to {} failed too: {b:#}",
            current.image
        ),
    };
    Err(super::bisect::skipped(SkipReason::NotUp)(anyhow!(
        "{e:#}; {how}"
    )))
}

/// Swap kube-proxy into one side's cluster, holding connections across it (`change` names
/// what the swap is part of: a swap of its own, or a bisect step).
pub(super) async fn swap(ctx: &Ctx, side: Side, change: Change) -> Result<()> {
    ctx.run_phase(side, Phase::Swap, || async {
        let name = ctx.name(side).to_string();
        let docker = ctx.docker().await?;
        let nodes: Vec<_> = docker
            .cluster_nodes(&name)
            .await?
            .into_iter()
            .filter(|n| n.running())
            .collect();
        let Some(node) = nodes.first() else {
            bail!("no running cluster {name}: c creates it");
        };
        let client = ctx.client(side).await?;
        let src = step(ctx, side, "source", super::build::source(ctx, side, true)).await?;
        let current = step(
            ctx,
            side,
            "read the kube-proxy DaemonSet",
            kube::proxy_container(&client),
        )
        .await?;
        ctx.out(
            side,
            Phase::Swap,
            format!("  runs {} ({})", current.image, current.binary),
        );
        let binary = compile(ctx, side, &src).await?;
        let fetch = base_image(&docker, &node.name, &current.image);
        let (base, base_id) = step(ctx, side, "base image", fetch).await?;
        ctx.out(side, Phase::Swap, format!("  on {base}"));
        let tag = proxy_tag(&src.commit, &base_id, &binary);
        if current.image == tag {
            ctx.out(
                side,
                Phase::Swap,
                format!("kube-proxy runs {tag} already: nothing to swap"),
            );
            return Ok(Some(format!("{tag} runs already")));
        }
        step(
            ctx,
            side,
            &format!("image {tag}"),
            package(ctx, side, &docker, (&current, &base), &binary, &tag),
        )
        .await?;
        let load = load_archive(ctx, side, &docker, &tag, &name);
        let what = format!("load (image archive) into {} nodes", nodes.len());
        step(ctx, side, &what, load).await?;
        let held = (change, Phase::Swap);
        let held = super::held::open(ctx, side, held, &client).await;
        let rolled = roll_out(ctx, side, &client, &current, &tag).await;
        if let Some(h) = held {
            h.finish(ctx, false).await;
        }
        rolled?;
        ctx.emit(Event::ProxySwapped {
            side,
            image: tag,
            commit: src.commit,
            snapshot: src.snapshot,
        });
        Ok(None)
    })
    .await
}
