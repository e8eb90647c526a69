//! The kind CLI (kind has no library outside Go): `build node-image`, `create cluster`,
//! `delete cluster`, `get clusters`, `get kubeconfig`. Output is streamed line by line and read
//! for progress; every run is in its own process group, killed as a whole on cancel or drop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::process;
use super::user_kubeconfig::{self, ContextOutcome};

/// What a line of kind's output says about progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// ` • Preparing nodes 📦  ...`
    StepStarted(String),
    /// ` ✓ Preparing nodes 📦`
    StepDone(String),
    /// ` ✗ Preparing nodes 📦`
    StepFailed(String),
    /// A stage of `build node-image` ("compiling Kubernetes", "building node image", "done").
    Stage(&'static str),
    /// `ERROR: ...` or a `!!! [...]` line from the Kubernetes build.
    Error(String),
}

/// Read one line of kind's (non-terminal) output.
pub fn progress(line: &str) -> Option<Progress> {
    let t = line.trim();
    if let Some(rest) = t.strip_prefix("• ") {
        // " • Ready after 45s 💚" closes the list; it opens no step.
        if rest.starts_with("Ready after") {
            return Some(Progress::StepDone(rest.trim().to_string()));
        }
        return Some(Progress::StepStarted(
            rest.trim_end_matches("...").trim().to_string(),
        ));
    }
    if let Some(rest) = t.strip_prefix("✓ ") {
        return Some(Progress::StepDone(rest.trim().to_string()));
    }
    if let Some(rest) = t.strip_prefix("✗ ") {
        return Some(Progress::StepFailed(rest.trim().to_string()));
    }
    if let Some(rest) = t.strip_prefix("ERROR: ") {
        return Some(Progress::Error(rest.to_string()));
    }
    if t.starts_with("!!! [") {
        return Some(Progress::Error(
            t.split_once("] ").map_or(t, |(_, m)| m).to_string(),
        ));
    }
    match t {
        "Starting to build Kubernetes" => Some(Progress::Stage("compiling Kubernetes")),
        "Finished building Kubernetes" => Some(Progress::Stage("Kubernetes built")),
        "Building node image ..." => Some(Progress::Stage("building node image")),
        _ if t.starts_with("Image \"") && t.ends_with("build completed.") => {
            Some(Progress::Stage("done"))
        }
        _ => None,
    }
}

/// The kind CLI.
#[derive(Debug, Clone)]
pub struct Kind {
    pub bin: PathBuf,
}

impl Default for Kind {
    fn default() -> Self {
        Kind { bin: "kind".into() }
    }
}

/// The most of a kind command's output kept ([`Kind::capture_within`]: a kubeconfig is a few
/// KiB).
pub const MAX_CAPTURE: usize = 1 << 20;

/// How long one kind run may take at most (a node-image build included).
pub const KIND_LIMIT: Duration = Duration::from_secs(3 * 3600);

impl Kind {
    pub fn new(bin: impl Into<PathBuf>) -> Kind {
        Kind { bin: bin.into() }
    }

    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args).envs(env.iter().copied());
        process::prepare(&mut c);
        c
    }

    fn spawn_err(&self, e: std::io::Error) -> anyhow::Error {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow!(
                "kind not found ({}): install kind (https://kind.sigs.k8s.io/) and put it on PATH",
                self.bin.display()
            )
        } else {
            anyhow!("running {}: {e}", self.bin.display())
        }
    }

    /// Run kind with `args`, handing every output line (stdout and stderr) to `on_line`.
    /// Cancelling kills the process group. A non-zero exit is an error carrying kind's last
    /// `ERROR:` line.
    pub async fn run(
        &self,
        args: &[&str],
        on_line: impl FnMut(&str),
        cancel: &CancellationToken,
    ) -> Result<()> {
        self.run_env(args, &[], on_line, cancel).await
    }

    /// [`Kind::run`] with more environment variables for kind (and the build it runs).
    pub async fn run_env(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        mut on_line: impl FnMut(&str),
        cancel: &CancellationToken,
    ) -> Result<()> {
        let mut last_error: Option<String> = None;
        let what = format!("kind {}", args.first().copied().unwrap_or(""));
        let status = process::stream(
            self.command(args, env),
            &what,
            |e| self.spawn_err(e),
            |l| {
                if let Some(Progress::Error(e)) = progress(l) {
                    last_error = Some(e);
                }
                on_line(l);
            },
            cancel,
            KIND_LIMIT,
        )
        .await?;
        if status.success() {
            return Ok(());
        }
        let code = process::exit_text(status);
        let head = args[..2.min(args.len())].join(" ");
        Err(match last_error {
            Some(e) => anyhow!("kind {head}: {e} ({code})"),
            None => anyhow!("kind {head} failed ({code})"),
        })
    }

    /// `kind build node-image SOURCE --image TAG`, with `env` for the Kubernetes build (e.g.
    /// `KUBE_GIT_VERSION_FILE`).
    pub async fn build_node_image(
        &self,
        source: &Path,
        image: &str,
        env: &[(&str, &str)],
        on_line: impl FnMut(&str),
        cancel: &CancellationToken,
    ) -> Result<()> {
        let src = source
            .to_str()
            .ok_or_else(|| anyhow!("source path is not UTF-8"))?;
        self.run_env(
            &["build", "node-image", src, "--image", image],
            env,
            on_line,
            cancel,
        )
        .await
    }

    /// `kind create cluster --name NAME --image IMAGE --config FILE --kubeconfig FILE --wait 5m`.
    /// Each cluster gets its own kubeconfig file: kind locks the file it writes with no retry,
    /// so two clusters created at once must not share one.
    pub async fn create_cluster(
        &self,
        name: &str,
        image: &str,
        config: &Path,
        kubeconfig: &Path,
        on_line: impl FnMut(&str),
        cancel: &CancellationToken,
    ) -> Result<()> {
        let utf8 = |p: &Path, what: &str| {
            p.to_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("{what} path is not UTF-8: {}", p.display()))
        };
        let (cfg, kc) = (utf8(config, "config")?, utf8(kubeconfig, "kubeconfig")?);
        self.run(
            &[
                "create",
                "cluster",
                "--name",
                name,
                "--image",
                image,
                "--config",
                &cfg,
                "--kubeconfig",
                &kc,
                "--wait",
                "5m",
            ],
            on_line,
            cancel,
        )
        .await
    }

    /// `kind export kubeconfig --name NAME --kubeconfig FILE`: the cluster's context into the
    /// user's kubeconfig (the file kind merges into: `KUBECONFIG`'s first existing file, else
    /// ~/.kube/config), so `kubectl --context kind-NAME` works. kind's merge also sets that
    /// file's current context: it is put back afterwards (see [`super::user_kubeconfig`]), and
    /// the outcome says so. One export at a time: kind locks that file with no retry.
    pub async fn export_kubeconfig(&self, name: &str) -> Result<ContextOutcome> {
        static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _turn = ONE_AT_A_TIME.lock().await;
        let paths = user_kubeconfig::env_paths();
        let before = user_kubeconfig::before(&paths);
        let file = match &before {
            Ok(b) => b.path.clone(),
            Err(_) => user_kubeconfig::merge_path(&paths)
                .ok_or_else(|| anyhow!("no kubeconfig: neither KUBECONFIG nor HOME is set"))?,
        };
        let file = file
            .to_str()
            .ok_or_else(|| anyhow!("kubeconfig path is not UTF-8: {}", file.display()))?
            .to_string();
        let args = [
            "export",
            "kubeconfig",
            "--name",
            name,
            "--kubeconfig",
            &file,
        ];
        self.capture_within(&args, Duration::from_secs(60)).await?;
        match before {
            Ok(b) => tokio::task::spawn_blocking(move || user_kubeconfig::restore(&b))
                .await
                .map_err(|e| anyhow!("restoring the current context: {e}")),
            Err(e) => Ok(ContextOutcome::Changed {
                was: "unknown".into(),
                now: Some(format!("kind-{name}")),
                why: format!("reading it before the export: {e:#}"),
            }),
        }
    }

    /// `kind version`: (major, minor, patch) and its first line as it may be shown (at most
    /// [`process::MAX_VERSION`] bytes read, control characters made visible).
    pub async fn version(&self) -> Result<((u32, u32, u32), String)> {
        let limit = Duration::from_secs(10);
        let out = process::capture(
            self.command(&["version"], &[]),
            "kind version",
            process::MAX_VERSION,
            process::Overflow::Stop,
            limit,
        )
        .await
        .map_err(|e| self.spawn_err(e))??;
        let line = process::first_line(&out.stdout);
        if !out.status.success() && !out.stdout_cut {
            bail!(
                "kind version: {} ({})",
                process::first_line(&out.stderr),
                process::exit_text(out.status)
            );
        }
        parse_version(&line)
            .map(|v| (v, line.clone()))
            .ok_or_else(|| anyhow!("kind version: cannot read a version in '{line}'"))
    }

    /// `kind load image-archive FILE --name NAME`: an image archive (`docker save`) into the
    /// containerd of every node of the cluster. kind's workaround for Docker's containerd image
    /// store, where `kind load docker-image` fails with `content digest … not found` (kind
    /// issues 3795, 4066, 4224).
    pub async fn load_image_archive(
        &self,
        archive: &Path,
        name: &str,
        on_line: impl FnMut(&str),
        cancel: &CancellationToken,
    ) -> Result<()> {
        let file = archive
            .to_str()
            .ok_or_else(|| anyhow!("{}: path is not UTF-8", archive.display()))?;
        let args = ["load", "image-archive", file, "--name", name];
        self.run(&args, on_line, cancel).await
    }

    /// `kind delete cluster --name NAME`.
    pub async fn delete_cluster(
        &self,
        name: &str,
        on_line: impl FnMut(&str),
        cancel: &CancellationToken,
    ) -> Result<()> {
        self.run(&["delete", "cluster", "--name", name], on_line, cancel)
            .await
    }

    /// Run kind with `args` to its end: (stdout, stderr), at most [`MAX_CAPTURE`] of each;
    /// given up (and killed) after `limit`. Longer output is an error, never used cut.
    async fn capture_within(&self, args: &[&str], limit: Duration) -> Result<(String, String)> {
        let what = format!("kind {}", args.join(" "));
        let out = process::capture(
            self.command(args, &[]),
            &what,
            MAX_CAPTURE,
            process::Overflow::Drain,
            limit,
        )
        .await
        .map_err(|e| self.spawn_err(e))??;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            let last_error = stderr.lines().rev().find_map(|l| l.strip_prefix("ERROR: "));
            let msg = match last_error {
                Some(l) => process::first_line(l.as_bytes()),
                None => out.stderr_text(),
            };
            bail!("{what}: {msg}");
        }
        if out.stdout_cut {
            bail!("{what}: output longer than {} KiB", MAX_CAPTURE >> 10);
        }
        Ok((stdout, stderr))
    }

    /// `kind get kubeconfig --name NAME`: the cluster's kubeconfig (context `kind-NAME`).
    pub async fn kubeconfig(&self, name: &str) -> Result<String> {
        let args = ["get", "kubeconfig", "--name", name];
        Ok(self.capture_within(&args, Duration::from_secs(30)).await?.0)
    }
}

/// "kind v0.27.0 go1.23.4 linux/amd64" (or "v0.11.1"): (0, 27, 0).
pub fn parse_version(line: &str) -> Option<(u32, u32, u32)> {
    let v = line.split_whitespace().find_map(|w| {
        w.strip_prefix('v')
            .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
    })?;
    let core = v.split(['-', '+']).next()?;
    let mut it = core.split('.').map(|n| n.parse::<u32>().ok());
    Some((it.next()??, it.next()??, it.next().flatten().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_versions_and_the_ready_line() {
        assert_eq!(
            parse_version("kind v0.27.0 go1.23.4 linux/amd64"),
            Some((0, 27, 0))
        );
        assert_eq!(parse_version("kind v0.11.1"), Some((0, 11, 1)));
        assert_eq!(
            parse_version("kind v0.24.0-alpha+abc go1.22"),
            Some((0, 24, 0))
        );
        assert_eq!(parse_version("kind version unknown"), None);
        assert_eq!(
            progress(" • Ready after 1m2s 💚"),
            Some(Progress::StepDone("Ready after 1m2s 💚".into()))
        );
    }

    #[test]
    fn reads_kind_lines() {
        assert_eq!(
            progress(" • Preparing nodes 📦 📦 📦   ..."),
            Some(Progress::StepStarted("Preparing nodes 📦 📦 📦".into()))
        );
        assert_eq!(
            progress(" ✓ Installing CNI 🔌"),
            Some(Progress::StepDone("Installing CNI 🔌".into()))
        );
        assert_eq!(
            progress(" ✗ Starting control-plane 🕹️"),
            Some(Progress::StepFailed("Starting control-plane 🕹️".into()))
        );
        assert_eq!(
            progress("ERROR: failed to create cluster: node(s) already exist for a cluster with the name \"77523\""),
            Some(Progress::Error("failed to create cluster: node(s) already exist for a cluster with the name \"77523\"".into()))
        );
        assert_eq!(
            progress("Starting to build Kubernetes"),
            Some(Progress::Stage("compiling Kubernetes"))
        );
        assert_eq!(
            progress("Image \"kindest/node:pr-77523\" build completed."),
            Some(Progress::Stage("done"))
        );
        assert_eq!(
            progress("!!! [1126 10:09:40] Call tree:"),
            Some(Progress::Error("Call tree:".into()))
        );
        assert_eq!(
            progress("+++ [1126 10:02:11] Verifying Prerequisites...."),
            None
        );
    }
}
