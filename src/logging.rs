//! Logs go to a file, never to the terminal.

use std::path::{Path, PathBuf};

use crate::backend::state_dir;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// Where logs go when no `--log-file` is given: `<state dir>/kindred.log`.
pub fn default_log_path() -> PathBuf {
    state_dir().join("kindred.log")
}

/// Start logging to `path` (or the default). Level from `KINDRED_LOG_LEVEL` (default `info`).
/// Returns the guard that flushes the log on drop; `None` when the file cannot be opened
/// (logging is then off: kindred never falls back to writing logs on the terminal).
pub fn init(path: Option<&Path>) -> Option<WorkerGuard> {
    let path = path.map(Path::to_path_buf).unwrap_or_else(default_log_path);
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty())?;
    std::fs::create_dir_all(dir).ok()?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .ok()?;
    let (writer, guard) = tracing_appender::non_blocking(file);
    let filter =
        EnvFilter::try_from_env("KINDRED_LOG_LEVEL").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init()
        .ok()?;
    Some(guard)
}
