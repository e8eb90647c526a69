//! Session recordings: JSON Lines.
//!
//! Line 1 is a header: `{"format":"kindred-recording","version":1,...}`. Every further line is
//! `{"t":MILLISECONDS,"event":{"type":...}}`, `t` counted from the start of the session, events as
//! in [`super::event::Event`]. Blank lines and lines starting with `#` are skipped. A reader skips
//! events of types it does not know (written by a later version) and refuses a higher major
//! `version`.

use std::io::{BufWriter, Write};
use std::path::Path;
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
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    Ok(parse(&text, &path.display().to_string())?)
}

/// Writes events as they happen.
pub struct Recorder {
    out: BufWriter<std::fs::File>,
    start: Instant,
}

impl Recorder {
    pub fn create(path: &Path) -> anyhow::Result<Recorder> {
        let f = std::fs::File::create(path)
            .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", path.display()))?;
        let mut out = BufWriter::new(f);
        let h = Header {
            format: FORMAT.into(),
            version: VERSION,
            kindred: Some(env!("CARGO_PKG_VERSION").into()),
            note: None,
        };
        writeln!(out, "{}", serde_json::to_string(&h)?)?;
        Ok(Recorder {
            out,
            start: Instant::now(),
        })
    }

    /// Close the recording cleanly: its end marker.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.write(&Event::End)
    }

    pub fn write(&mut self, ev: &Event) -> anyhow::Result<()> {
        let r = Record {
            t: self.start.elapsed().as_millis() as u64,
            event: ev.clone(),
        };
        serde_json::to_writer(&mut self.out, &r)?;
        self.out.write_all(b"\n")?;
        // Flushed per event: a crash still leaves a loadable recording.
        self.out.flush()?;
        Ok(())
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
}
