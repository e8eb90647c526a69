//! Child processes that stream their output: each in its own process group, every line of
//! stdout and stderr handed over as it comes, the whole group killed on cancel, on a time limit
//! or when dropped. kind and the Kubernetes build run this way.
//!
//! A tool's output is untrusted and may never end: kindred never holds more of it than a bound
//! set before it reads ([`MAX_LINE`] for a streamed line, the caller's for [`capture`]), so a
//! flooding tool cannot exhaust memory (an allocation failure aborts the process, leaving the
//! terminal raw).

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// The longest line of a streamed tool's output kindred keeps; the rest of a longer line is
/// dropped and the kept part ends in [`CUT`].
pub const MAX_LINE: usize = 4096;
/// What ends a line or an output that was cut.
pub const CUT: &str = " [cut]";
/// The most of a tool's version output read ([`first_line`]).
pub const MAX_VERSION: usize = 4096;

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
    let mut out = Lines::new(BufReader::new(out));
    let mut err = Lines::new(BufReader::new(err));
    let (mut out_open, mut err_open) = (true, true);
    let mut handle = |(l, cut): (Vec<u8>, bool)| {
        let l = String::from_utf8_lossy(&l);
        let l = l.strip_suffix('\r').unwrap_or(&l);
        if cut {
            on_line(&format!("{l}{CUT}"));
        } else {
            on_line(l);
        }
    };
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    while out_open || err_open {
        let stop = tokio::select! {
            l = out.next_line(), if out_open => match l? {
                Some(l) => { handle(l); None }
                None => { out_open = false; None }
            },
            l = err.next_line(), if err_open => match l? {
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

/// Lines of at most [`MAX_LINE`] bytes from a reader: a longer line is cut there (the rest of
/// it read and dropped). Cancel-safe: a line read in part is kept for the next call.
struct Lines<R> {
    r: R,
    line: Vec<u8>,
    cut: bool,
}

impl<R: AsyncBufRead + Unpin> Lines<R> {
    fn new(r: R) -> Self {
        Lines {
            r,
            line: Vec::new(),
            cut: false,
        }
    }

    /// The next line without its newline, and whether it was cut; `None` at the end.
    async fn next_line(&mut self) -> std::io::Result<Option<(Vec<u8>, bool)>> {
        loop {
            let buf = self.r.fill_buf().await?;
            if buf.is_empty() {
                if self.line.is_empty() && !self.cut {
                    return Ok(None);
                }
                return Ok(Some(self.take()));
            }
            let (chunk, end) = match memchr::memchr(b'\n', buf) {
                Some(i) => (&buf[..i], Some(i + 1)),
                None => (buf, None),
            };
            let room = MAX_LINE - self.line.len();
            self.cut |= chunk.len() > room;
            self.line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            let used = end.unwrap_or(buf.len());
            self.r.consume(used);
            if end.is_some() {
                return Ok(Some(self.take()));
            }
        }
    }

    fn take(&mut self) -> (Vec<u8>, bool) {
        let mut line = std::mem::take(&mut self.line);
        if self.cut {
            // Never half a character: up to the last whole one.
            let valid = match std::str::from_utf8(&line) {
                Ok(_) => line.len(),
                Err(e) if e.error_len().is_none() => e.valid_up_to(),
                Err(_) => line.len(),
            };
            line.truncate(valid);
        }
        (line, std::mem::replace(&mut self.cut, false))
    }
}

/// A finished run's status and the first bytes of its output.
#[derive(Debug)]
pub struct Captured {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The output was longer than the bound (the rest was read and dropped, or the run was
    /// ended: see [`Overflow`]).
    pub stdout_cut: bool,
    pub stderr_cut: bool,
}

impl Captured {
    /// Standard error as it may be shown in an error message: its first [`MAX_LINE`] bytes,
    /// control characters (newlines included) made visible, ending in [`CUT`] when cut.
    pub fn stderr_text(&self) -> String {
        let cut = self.stderr_cut || self.stderr.len() > MAX_LINE;
        let t = String::from_utf8_lossy(&self.stderr[..self.stderr.len().min(MAX_LINE)]);
        let t = crate::rules::render::visible(t.trim()).into_owned();
        if cut { format!("{t}{CUT}") } else { t }
    }
}

/// What to do with a tool whose output passes the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Read the rest and drop it; the tool runs to its end (or its time limit).
    Drain,
    /// Stop reading and end the tool: its first bytes are all that is wanted.
    Stop,
}

/// Run `cmd` (stdin from /dev/null) to its end like [`Command::output`], keeping at most `max`
/// bytes of its stdout and of its stderr. `limit` passing kills it: an error naming `what`.
pub async fn capture(
    mut cmd: Command,
    what: &str,
    max: usize,
    overflow: Overflow,
    limit: Duration,
) -> std::io::Result<Result<Captured>> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let out = child.stdout.take().expect("piped stdout");
    let err = child.stderr.take().expect("piped stderr");
    let run = async {
        let (out, err) = tokio::try_join!(
            read_bounded(out, max, overflow),
            read_bounded(err, max, overflow)
        )?;
        if (out.1 || err.1) && overflow == Overflow::Stop {
            let _ = child.start_kill();
        }
        let status = child.wait().await?;
        Ok::<_, std::io::Error>(Captured {
            status,
            stdout: out.0,
            stderr: err.0,
            stdout_cut: out.1,
            stderr_cut: err.1,
        })
    };
    Ok(match tokio::time::timeout(limit, run).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(anyhow!("{what}: reading its output: {e}")),
        Err(_) => Err(anyhow!("{what}: no answer in {}s", limit.as_secs())),
    })
}

/// At most `max` bytes of `r`, and whether there was more (with [`Overflow::Drain`] the rest is
/// read and dropped; with [`Overflow::Stop`] reading stops at the bound).
async fn read_bounded(
    mut r: impl AsyncRead + Unpin,
    max: usize,
    overflow: Overflow,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let mut chunk = vec![0u8; 8192];
    let mut cut = false;
    loop {
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Ok((kept, cut));
        }
        let room = max - kept.len();
        kept.extend_from_slice(&chunk[..n.min(room)]);
        if n > room {
            cut = true;
            if overflow == Overflow::Stop {
                return Ok((kept, cut));
            }
        }
    }
}

/// The first line of a tool's output (its version, say) as it may be shown: cut at [`MAX_VERSION`]
/// bytes, its control characters (a stray newline or escape included) made visible.
pub fn first_line(out: &[u8]) -> String {
    let out = &out[..out.len().min(MAX_VERSION)];
    let text = String::from_utf8_lossy(out);
    let first = text.trim_start().split('\n').next().unwrap_or("");
    let first = first.trim_end_matches(['\r', ' ', '\t']);
    crate::rules::render::visible(first).into_owned()
}

/// "exit 2" or "killed by a signal".
pub fn exit_text(status: ExitStatus) -> String {
    status
        .code()
        .map_or_else(|| "killed by a signal".to_string(), |c| format!("exit {c}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tool that prints without end: kindred keeps a bounded line and moves on.
    #[tokio::test]
    async fn an_endless_line_is_cut_and_the_next_line_still_arrives() {
        let mut c = Command::new("sh");
        c.args([
            "-c",
            "head -c 10000000 /dev/zero | tr '\\0' x; echo; echo next; printf 'no end'",
        ]);
        prepare(&mut c);
        let mut lines = Vec::new();
        let cancel = CancellationToken::new();
        let st = stream(
            c,
            "sh",
            |e| anyhow!("{e}"),
            |l| lines.push(l.to_string()),
            &cancel,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        assert!(st.success());
        let lens: Vec<usize> = lines.iter().map(|l| l.len()).collect();
        assert_eq!(lens, [MAX_LINE + CUT.len(), 4, 6]);
        assert_eq!(lines[0], format!("{}{CUT}", "x".repeat(MAX_LINE)));
        assert_eq!(lines[1], "next");
        assert_eq!(lines[2], "no end");
    }

    #[tokio::test]
    async fn captured_output_is_bounded() {
        let flood = "echo 'v1.2.3'; echo FORGED; head -c 10000000 /dev/zero";
        let mut c = Command::new("sh");
        c.args(["-c", flood]);
        let got = capture(c, "sh", 4096, Overflow::Drain, Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert!(got.status.success());
        assert_eq!(got.stdout.len(), 4096);
        assert!(got.stdout_cut && !got.stderr_cut);
        // Stop: the first bytes, and a tool that would print forever is ended at once.
        let mut c = Command::new("sh");
        c.args(["-c", "echo 'kind v0.27.0'; exec yes"]);
        let started = std::time::Instant::now();
        let got = capture(c, "yes", 4096, Overflow::Stop, Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(got.stdout_cut && got.stdout.len() <= 4096);
        assert_eq!(first_line(&got.stdout), "kind v0.27.0");
        assert_eq!(first_line(b"a\x1b[2Jb\rc\nFORGED"), "a\\x1b[2Jb\\x0dc");
    }
}
