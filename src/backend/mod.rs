//! Backends drive the clusters and report events; the dashboard does not know which one it
//! talks to. The replay backend plays a recording; the live backend (kind, Docker, kube-rs)
//! implements the same trait.

pub mod bisect;
pub mod context;
pub mod docker;
pub mod doctor;
pub mod doctor_context;
pub mod event;
pub mod git;
pub mod held;
pub mod input;
pub mod kbuild;
pub mod kind;
pub mod kube;
pub mod live;
pub mod metallb;
pub mod metrics;
pub mod owned;
pub mod probe;
pub mod process;
pub mod recording;
pub mod replay;
pub mod state;
pub mod timings;
pub mod tries;
pub mod user_kubeconfig;

use std::path::PathBuf;

use tokio::sync::mpsc::UnboundedSender;

pub use event::{Command, Event};

/// A source of events that takes commands.
pub trait Backend: Send {
    /// Begin: from now on events go to `events`. Must be called inside a Tokio runtime.
    fn start(&mut self, events: UnboundedSender<Event>);
    /// Do something. A command that is already running restarts; it never queues.
    fn send(&mut self, cmd: Command);
    /// Stop every task (and child process) this backend started.
    fn shutdown(&mut self);
}

/// kindred's state directory: `$XDG_STATE_HOME/kindred` (or `~/.local/state/kindred`), falling
/// back to the temp dir. Only its path: [`state::ensure_state_dir`] creates and checks it.
pub fn state_dir() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("kindred")
}

/// The kubeconfig file kind writes for cluster `name` (one per cluster: see
/// [`kind::Kind::create_cluster`]).
pub fn kubeconfig_path(name: &str) -> PathBuf {
    state_dir().join("kubeconfig").join(name)
}
