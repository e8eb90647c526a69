//! Session recordings: JSON Lines.
//!
//! Line 1 is a header: `{"format":"kindred-recording","version":1,...}`. Every further line is
//! `{"t":MILLISECONDS,"event":{"type":...}}`, `t` counted from the start of the session, events as
//! in [`super::event::Event`]. Blank lines and lines starting with `#` are skipped. A reader skips
//! events of types it does not know (written by a later version) and refuses a higher major
//! `version`.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::event::Event;

pub const FORMAT: &str = "kindred-recording";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    #[serde(default)]
    pub kindred: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Milliseconds since the session started.
    pub t: u64,
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    pub header: Header,
    pub records: Vec<Record>,
    /// Lines skipped because their event type is unknown to this version.
    pub skipped: usize,
    /// It ends with its end marker: the session was closed cleanly, not cut short.
    pub complete: bool,
}

/// A recording that cannot be read: where and why.
#[derive(Debug, thiserror::Error)]
#[error("{name}:{line}: {reason}")]
pub struct RecordingError {
    pub name: String,
    pub line: usize,
    pub reason: String,
}

/// Parse a recording; `name` is used in errors (a file name).
pub fn parse(text: &str, name: &str) -> Result<Recording, RecordingError> {
    let err = |line: usize, reason: String| RecordingError {
        name: name.to_string(),
        line,
        reason,
    };
    let mut header: Option<Header> = None;
    let mut records = Vec::new();
    let mut skipped = 0;
    let mut complete = false;
    let mut last_t = 0;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if header.is_none() {
            let h: Header = serde_json::from_str(line)
                .map_err(|e| err(n, format!("not a kindred recording header: {e}")))?;
            if h.format != FORMAT {
                return Err(err(
                    n,
                    format!("format is '{}', expected '{FORMAT}'", h.format),
                ));
            }
            if h.version > VERSION {
                return Err(err(
                    n,
                    format!(
                        "recording version {} is newer than this kindred reads ({VERSION})",
                        h.version
                    ),
                ));
            }
            header = Some(h);
            continue;
        }
        let r: Record =
            serde_json::from_str(line).map_err(|e| err(n, format!("bad record: {e}")))?;
        if r.t < last_t {
            return Err(err(
                n,
                format!("time goes backwards ({} ms after {} ms)", r.t, last_t),
            ));
        }
        last_t = r.t;
        if r.event == Event::End {
            complete = true;
        } else if r.event == Event::Unknown {
            tracing::warn!("{name}:{n}: skipping an event of a type this version does not know");
            skipped += 1;
        } else {
            records.push(r);
        }
    }
    let header = header.ok_or_else(|| err(1, "empty recording (no header line)".into()))?;
    Ok(Recording {
        header,
        records,
        skipped,
        complete,
    })
}

impl Recording {
    /// The recording as its file holds it.
    pub fn to_jsonl(&self) -> String {
        let mut s = serde_json::to_string(&self.header).expect("header serializes");
        s.push('\n');
        for r in &self.records {
            s.push_str(&serde_json::to_string(r).expect("record serializes"));
            s.push('\n');
        }
        if self.complete {
            let end = Record {
                t: self.records.last().map_or(0, |r| r.t),
                event: Event::End,
            };
            s.push_str(&serde_json::to_string(&end).expect("record serializes"));
            s.push('\n');
        }
        s
    }
}

/// Load a recording from a file.
pub fn load(path: &Path) -> anyhow::Result<Recording> {
    let bytes = super::input::read_file(path)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    Ok(parse(&text, &path.display().to_string())?)
}

/// Whether `a` and `b` name the same existing file (one inode: the same path spelled another
/// way, a hard link, a symbolic link to it).
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Writes events as they happen, to a new file beside the recording's (`FILE.PID.N.partial`),
/// flushed per event; [`Recorder::finish`] (kindred ending the session: quit, a signal, an
/// error of the screen) adds the end marker and renames it to `FILE`. Until then an existing
/// `FILE` is untouched: a crash or a kill leaves it as it was, and the partial recording
/// (loadable, shown as cut short) beside it.
pub struct Recorder {
    out: BufWriter<std::fs::File>,
    start: Instant,
    /// Where the recording goes when finished.
    path: PathBuf,
    /// Where it is written until then.
    partial: PathBuf,
    events: usize,
}

impl Recorder {
    pub fn create(path: &Path) -> anyhow::Result<Recorder> {
        if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
            anyhow::bail!("{}: is a directory, not a recording file", path.display());
        }
        let (partial, f) = super::state::create_beside(path, "partial")
            .map_err(|e| anyhow::anyhow!("recording to {}: {e:#}", path.display()))?;
        // The new recording keeps the permissions of the one it replaces.
        if let Ok(m) = std::fs::metadata(path) {
            let _ = f.set_permissions(m.permissions());
        }
        let mut r = Recorder {
            out: BufWriter::new(f),
            start: Instant::now(),
            path: path.to_path_buf(),
            partial,
            events: 0,
        };
        let h = Header {
            format: FORMAT.into(),
            version: VERSION,
            kindred: Some(env!("CARGO_PKG_VERSION").into()),
            note: None,
        };
        writeln!(r.out, "{}", serde_json::to_string(&h)?)?;
        r.out.flush()?;
        Ok(r)
    }

    /// Where the recording is written until it is finished.
    pub fn partial(&self) -> &Path {
        &self.partial
    }

    /// Close the recording cleanly: its end marker, then in place of the file named.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.write(&Event::End)?;
        self.out.get_ref().sync_all()?;
        std::fs::rename(&self.partial, &self.path).map_err(|e| {
            anyhow::anyhow!(
                "{}: cannot move the recording there ({e}); it is in {}",
                self.path.display(),
                self.partial.display()
            )
        })?;
        self.events = usize::MAX;
        Ok(())
    }

    pub fn write(&mut self, ev: &Event) -> anyhow::Result<()> {
        let r = Record {
            t: self.start.elapsed().as_millis() as u64,
            event: ev.clone(),
        };
        serde_json::to_writer(&mut self.out, &r)?;
        self.out.write_all(b"\n")?;
        // Flushed per event: a crash still leaves a loadable recording (the partial file).
        self.out.flush()?;
        self.events += 1;
        Ok(())
    }
}

impl Drop for Recorder {
    /// Not finished: a session that never got an event leaves nothing; one cut short keeps its
    /// partial recording (named in the log), and `FILE` stays as it was.
    fn drop(&mut self) {
        match self.events {
            usize::MAX => {}
            0 => {
                let _ = std::fs::remove_file(&self.partial);
            }
            n => tracing::warn!(
                "recording cut short after {n} events: it is in {} ({} untouched)",
                self.partial.display(),
                self.path.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("{\"format\":\"kindred-recording\",\"version\":1}\n{\"t\":1,\"event\":{\"type\":\"phase\"}}\n", "x.jsonl").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("x.jsonl:2: bad record"), "{e}");
        let e = parse("{\"format\":\"kindred-recording\",\"version\":9}\n", "y").unwrap_err();
        assert!(e.reason.contains("newer"));
        assert!(parse("", "z").is_err());
    }

    #[test]
    fn unknown_event_types_are_skipped() {
        let r = parse("{\"format\":\"kindred-recording\",\"version\":1}\n{\"t\":1,\"event\":{\"type\":\"from_the_future\",\"x\":1}}\n{\"t\":2,\"event\":{\"type\":\"pod_removed\",\"side\":\"pr\",\"name\":\"p\"}}\n", "f").unwrap();
        assert_eq!(r.skipped, 1);
        assert_eq!(r.records.len(), 1);
    }

    fn removed(name: &str) -> Event {
        Event::PodRemoved {
            side: crate::model::Side::Pr,
            name: name.into(),
        }
    }

    fn events(path: &Path) -> (usize, bool) {
        let r = load(path).unwrap();
        (r.records.len(), r.complete)
    }

    /// A recording over an existing file: the file keeps its old content until the new one is
    /// finished (a crash or a kill before that never truncates it), then is replaced whole.
    #[test]
    fn an_unfinished_recording_never_replaces_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mine.jsonl");
        let old = {
            let mut r = Recorder::create(&p).unwrap();
            for i in 0..5 {
                r.write(&removed(&format!("p{i}"))).unwrap();
            }
            r.finish().unwrap();
            std::fs::read_to_string(&p).unwrap()
        };
        assert_eq!(events(&p), (5, true));
        let partial_of = |r: &Recorder| r.partial().to_path_buf();
        // Killed (no destructor runs, as with SIGKILL or a panic's exit): the old file stays,
        // the partial one is loadable beside it.
        let mut r = Recorder::create(&p).unwrap();
        r.write(&removed("p")).unwrap();
        let partial = partial_of(&r);
        std::mem::forget(r);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), old);
        let cut = load(&partial).unwrap();
        assert_eq!((cut.records.len(), cut.complete), (1, false));
        std::fs::remove_file(&partial).unwrap();
        // Dropped unfinished (an error before the session ended): the same, and one with no
        // event leaves nothing behind.
        let mut r = Recorder::create(&p).unwrap();
        r.write(&removed("p")).unwrap();
        let partial = partial_of(&r);
        drop(r);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), old);
        assert!(partial.exists());
        std::fs::remove_file(&partial).unwrap();
        let r = Recorder::create(&p).unwrap();
        let partial = partial_of(&r);
        drop(r);
        assert!(!partial.exists());
        // Finished: replaced whole, nothing left beside it.
        let mut r = Recorder::create(&p).unwrap();
        r.write(&removed("q")).unwrap();
        r.finish().unwrap();
        assert_eq!(events(&p), (1, true));
        let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    #[test]
    fn the_same_file_by_another_name_is_the_same_file() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.jsonl");
        std::fs::write(&a, "x").unwrap();
        let hard = d.path().join("hard.jsonl");
        std::fs::hard_link(&a, &hard).unwrap();
        let soft = d.path().join("soft.jsonl");
        std::os::unix::fs::symlink(&a, &soft).unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        let dotted = d.path().join("sub/../a.jsonl");
        for b in [&a, &hard, &soft, &dotted] {
            assert!(same_file(&a, b), "{}", b.display());
        }
        let other = d.path().join("other.jsonl");
        std::fs::write(&other, "x").unwrap();
        assert!(!same_file(&a, &other));
        assert!(!same_file(&a, &d.path().join("missing")));
    }
}
