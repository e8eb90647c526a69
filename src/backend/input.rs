//! Reading what the user names (a dump, a recording, standard input) with its size bounded
//! before it is held: a file larger than kindred reads is an error naming it, never an
//! allocation that aborts the process (with the terminal raw).

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The most one input may hold: kube-proxy's rules for tens of thousands of Services are a few
/// hundred MB, and a comparison holds a few times its inputs.
pub const MAX_INPUT: u64 = 1 << 30;

/// Everything `reader` gives, at most `max` bytes; more is an error naming `what`.
pub fn read_limited(reader: impl Read, max: u64, what: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    reader
        .take(max + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("{what}: cannot read"))?;
    if buf.len() as u64 > max {
        bail!("{what}: larger than kindred reads ({} MiB)", max >> 20);
    }
    Ok(buf)
}

/// A file's bytes, at most [`MAX_INPUT`]: its size is checked before anything is read.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    let what = path.display().to_string();
    let file = std::fs::File::open(path).with_context(|| format!("{what}: cannot read"))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len > MAX_INPUT {
        bail!(
            "{what}: {} MiB, larger than kindred reads ({} MiB)",
            len >> 20,
            MAX_INPUT >> 20
        );
    }
    read_limited(file, MAX_INPUT, &what)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file over the bound is refused by its size, before it is read; a reader that gives
    /// more than its bound is cut off and refused.
    #[test]
    fn inputs_over_the_bound_are_refused_by_name() {
        let d = tempfile::tempdir().unwrap();
        let big = d.path().join("big.txt");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_INPUT + 1).unwrap(); // sparse: nothing is written
        let e = read_file(&big).unwrap_err().to_string();
        assert!(
            e.contains("big.txt") && e.contains("larger than kindred reads"),
            "{e}"
        );
        let small = d.path().join("small.txt");
        std::fs::write(&small, "x\n").unwrap();
        assert_eq!(read_file(&small).unwrap(), b"x\n");
        let e = read_limited(&b"12345"[..], 4, "<stdin>").unwrap_err();
        assert!(e.to_string().contains("<stdin>: larger"), "{e}");
        assert_eq!(read_limited(&b"1234"[..], 4, "<stdin>").unwrap(), b"1234");
    }
}
