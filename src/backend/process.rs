//! Child processes that stream their output: each in its own process group, every line of
//! stdout and stderr handed over as it comes, the whole group killed on cancel, on a time limit
//! or when dropped. kind and the Kubernetes build run this way.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// How long a killed run gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(3);

fn kill_group(child: &Child, sig: i32) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a negative pid signals the process group we created for the child.
        unsafe {
            libc::kill(-(pid as i32), sig);
        }
    }
}

/// A running process; its whole process group dies with it.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        kill_group(&self.0, libc::SIGKILL);
    }
}

/// Set `cmd` up to be streamed: no stdin, piped output, its own process group.
pub fn prepare(cmd: &mut Command) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
}

/// Run a [`prepare`]d command named `what` (in errors), handing every output line to
/// `on_line`. Cancelling, or `limit` passing, kills the process group (SIGTERM, then SIGKILL).
pub async fn stream(
    mut cmd: Command,
    what: &str,
    spawn_err: impl FnOnce(std::io::Error) -> anyhow::Error,
    mut on_line: impl FnMut(&str),
    cancel: &CancellationToken,
    limit: Duration,
) -> Result<ExitStatus> {
    let mut child = cmd.spawn().map_err(spawn_err)?;
    let out = child.stdout.take().expect("piped stdout");
    let err = child.stderr.take().expect("piped stderr");
    let mut group = Group(child);
    // Lines as bytes: output that is not UTF-8 (a build's binary noise) is shown, not fatal.
    let mut out = BufReader::new(out).split(b'\n');
    let mut err = BufReader::new(err).split(b'\n');
    let (mut out_open, mut err_open) = (true, true);
    let mut handle = |l: Vec<u8>| {
        let l = String::from_utf8_lossy(&l);
        on_line(l.strip_suffix('\r').unwrap_or(&l));
    };
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    while out_open || err_open {
        let stop = tokio::select! {
            l = out.next_segment(), if out_open => match l? {
                Some(l) => { handle(l); None }
                None => { out_open = false; None }
            },
            l = err.next_segment(), if err_open => match l? {
                Some(l) => { handle(l); None }
                None => { err_open = false; None }
            },
            _ = cancel.cancelled() => Some(format!("{what} cancelled")),
            _ = &mut deadline => Some(format!("{what}: not finished after {}s", limit.as_secs())),
        };
        if let Some(why) = stop {
            kill_group(&group.0, libc::SIGTERM);
            if tokio::time::timeout(GRACE, group.0.wait()).await.is_err() {
                kill_group(&group.0, libc::SIGKILL);
                let _ = group.0.wait().await;
            }
            bail!(why);
        }
    }
    let status = tokio::select! {
        s = group.0.wait() => s?,
        _ = &mut deadline => return Err(anyhow!("{what}: not finished after {}s", limit.as_secs())),
    };
    // Children that outlived it (none should) go with the group.
    kill_group(&group.0, libc::SIGKILL);
    Ok(status)
}

/// "exit 2" or "killed by a signal".
pub fn exit_text(status: ExitStatus) -> String {
    status
        .code()
        .map_or_else(|| "killed by a signal".to_string(), |c| format!("exit {c}"))
}
