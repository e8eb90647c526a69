//! Logs go to a file, never to the terminal.

use std::path::{Path, PathBuf};

use crate::backend::state::{ensure_state_dir, open_nofollow};
use crate::backend::state_dir;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// Where logs go when no `--log-file` is given: `<state dir>/kindred.log`.
pub fn default_log_path() -> PathBuf {
    state_dir().join("kindred.log")
}

/// Start logging to `path` (or the default). Level from `KINDRED_LOG_LEVEL` (default `info`).
/// Returns the guard that flushes the log on drop, or why the log cannot be opened (logging is
/// then off: kindred never falls back to writing logs on the terminal). The default log's
/// directory is kindred's state dir, created private and refused when someone else could write
/// it; no log file is ever opened through a symbolic link.
pub fn init(path: Option<&Path>) -> anyhow::Result<WorkerGuard> {
    let path = match path {
        Some(p) => {
            if let Some(dir) = p.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", dir.display()))?;
            }
            p.to_path_buf()
        }
        None => ensure_state_dir()?.join("kindred.log"),
    };
    let file = open_nofollow(std::fs::OpenOptions::new().create(true).append(true), &path)?;
    let (writer, guard) = tracing_appender::non_blocking(file);
    let filter =
        EnvFilter::try_from_env("KINDRED_LOG_LEVEL").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(guard)
}
