//! The user's kubeconfig, the file `kind export kubeconfig` merges a cluster's context into.
//! kind's merge also sets that file's `current-context`; kindred puts it back afterwards with
//! the smallest edit there is: the one top-level `current-context:` line, under the lock kind
//! and kubectl take (`FILE.lock`). Every other byte stays as it is.
//!
//! When the user had no current context at all, kind's choice is kept (a kind user expects
//! `kubectl` to talk to the new cluster, and nothing the user chose is overwritten).

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use kube::config::Kubeconfig;

/// The files kubectl reads: `KUBECONFIG`'s list (empty entries and repeats dropped), else
/// `HOME/.kube/config`.
pub fn paths(kubeconfig_env: Option<&OsStr>, home: Option<&Path>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in kubeconfig_env
        .map(std::env::split_paths)
        .into_iter()
        .flatten()
    {
        if !p.as_os_str().is_empty() && !out.contains(&p) {
            out.push(p);
        }
    }
    if out.is_empty() {
        out.extend(home.map(|h| h.join(".kube").join("config")));
    }
    out
}

/// The file kind (and kubectl) merge into: the only one, else the first that exists, else the
/// last (kind's `pathForMerge`).
pub fn merge_path(paths: &[PathBuf]) -> Option<PathBuf> {
    if paths.len() > 1
        && let Some(p) = paths.iter().find(|p| p.is_file())
    {
        return Some(p.clone());
    }
    paths.last().cloned()
}

/// [`paths`] from this process's environment.
pub fn env_paths() -> Vec<PathBuf> {
    let kc = std::env::var_os("KUBECONFIG");
    let home = std::env::var_os("HOME").map(PathBuf::from);
    paths(kc.as_deref(), home.as_deref())
}

/// A file's `current-context` (empty counts as none); a missing file has none.
fn file_context(path: &Path) -> Result<Option<String>> {
    if !path.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let kc = Kubeconfig::from_yaml(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(kc.current_context.filter(|c| !c.is_empty()))
}

/// What the user's current context was before an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Before {
    /// The file kind merges into.
    pub path: PathBuf,
    /// That file's own `current-context`.
    pub in_file: Option<String>,
    /// The context kubectl uses: the first file's that sets one.
    pub effective: Option<String>,
}

/// Read [`Before`] from `paths` (kubectl's list).
pub fn before(paths: &[PathBuf]) -> Result<Before> {
    let path = merge_path(paths)
        .ok_or_else(|| anyhow!("no kubeconfig: neither KUBECONFIG nor HOME is set"))?;
    let in_file = file_context(&path)?;
    let mut effective = None;
    for p in paths {
        if let Some(c) = file_context(p)? {
            effective = Some(c);
            break;
        }
    }
    Ok(Before {
        path,
        in_file,
        effective,
    })
}

/// What became of the user's current context after an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextOutcome {
    /// It is what it was (put back, or never changed).
    Kept { context: String },
    /// There was none: kind's is kept.
    KindsKept { now: String },
    /// It changed and could not be put back.
    Changed {
        was: String,
        now: Option<String>,
        why: String,
    },
}

/// Read after "kubectl's current context ": short, the news first (a pane line is narrow).
impl fmt::Display for ContextOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContextOutcome::Kept { context } => write!(f, "still {context}"),
            ContextOutcome::KindsKept { now } => write!(f, "now {now} (there was none)"),
            ContextOutcome::Changed { was, now, why } => write!(
                f,
                "changed from {was} to {}, not put back ({why}): kubectl config use-context {was}",
                now.as_deref().unwrap_or("none")
            ),
        }
    }
}

/// After kind's export into `before.path`: put the current context back.
pub fn restore(before: &Before) -> ContextOutcome {
    let now = file_context(&before.path).ok().flatten();
    let Some(was) = before.effective.clone() else {
        return match now {
            Some(now) => ContextOutcome::KindsKept { now },
            None => ContextOutcome::Kept {
                context: "unset".into(),
            },
        };
    };
    if now == before.in_file {
        return ContextOutcome::Kept { context: was };
    }
    let target = before.in_file.clone().unwrap_or_default();
    match edit_locked(&before.path, &target) {
        Ok(()) => ContextOutcome::Kept { context: was },
        Err(e) => ContextOutcome::Changed {
            was,
            now,
            why: format!("{e:#}"),
        },
    }
}

/// How long to wait for another tool's `FILE.lock`.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Set `path`'s current context to `target` holding `path.lock` (kind's and client-go's lock:
/// a file created exclusively, removed after).
fn edit_locked(path: &Path, target: &str) -> Result<()> {
    let mut lock = path.as_os_str().to_owned();
    lock.push(".lock");
    let lock = PathBuf::from(lock);
    let start = Instant::now();
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
        {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if start.elapsed() > LOCK_WAIT {
                    bail!(
                        "{} is held by another program for more than {}s",
                        lock.display(),
                        LOCK_WAIT.as_secs()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => bail!("locking {}: {e}", lock.display()),
        }
    }
    let done = (|| {
        let text = std::fs::read_to_string(path)?;
        let edited = set_current_context(&text, target)?;
        std::fs::write(path, edited).with_context(|| format!("writing {}", path.display()))
    })();
    let _ = std::fs::remove_file(&lock);
    done
}

/// `text` with its one top-level `current-context:` line set to `target` and nothing else
/// changed; refused when the file has no such line, or when the edit would change anything
/// but the current context.
pub fn set_current_context(text: &str, target: &str) -> Result<String> {
    let parsed = |t: &str| -> Result<serde_json::Value> {
        let kc = Kubeconfig::from_yaml(t).map_err(|e| anyhow!("{e}"))?;
        Ok(serde_json::to_value(kc)?)
    };
    let mut want = parsed(text)?;
    want["current-context"] = serde_json::Value::String(target.to_string());
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let at: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("current-context:"))
        .collect();
    let [i] = at[..] else {
        bail!(
            "{} top-level `current-context:` lines (one was expected)",
            at.len()
        );
    };
    let ending = &lines[i][lines[i].trim_end_matches(['\r', '\n']).len()..];
    let line = format!("current-context: {}{ending}", yaml_scalar(target));
    let edited: String = lines[..i]
        .iter()
        .copied()
        .chain([line.as_str()])
        .chain(lines[i + 1..].iter().copied())
        .collect();
    if parsed(&edited)? != want {
        bail!("editing the `current-context:` line would change more than the current context");
    }
    Ok(edited)
}

/// `s` as a YAML scalar: plain when it reads back as itself, else double-quoted.
fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./@".contains(c))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && !["true", "false", "null", "yes", "no", "on", "off", "~"]
            .contains(&s.to_ascii_lowercase().as_str())
        && s.parse::<f64>().is_err();
    if plain {
        s.to_string()
    } else {
        serde_json::Value::String(s.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "apiVersion: v1\nclusters:\n- cluster:\n    server: https://prod:6443\n  name: prod\ncontexts:\n- context:\n    cluster: prod\n    user: me\n  name: prod\n- context:\n    cluster: kind-x\n    user: kind-x\n  name: kind-x\ncurrent-context: kind-x # set by kind\nkind: Config\npreferences: {}\nusers:\n- name: me\n  user:\n    token: t\n";

    #[test]
    fn only_the_current_context_line_changes() {
        let out = set_current_context(USER, "prod").unwrap();
        assert_eq!(out, USER.replace("kind-x # set by kind", "prod"));
        let odd = set_current_context(USER, "a: b").unwrap();
        assert!(odd.contains("current-context: \"a: b\"\n"), "{odd}");
        assert!(
            set_current_context(USER, "")
                .unwrap()
                .contains("current-context: \"\"\n")
        );
        let crlf = USER.replace('\n', "\r\n");
        assert_eq!(
            set_current_context(&crlf, "prod").unwrap(),
            crlf.replace("kind-x # set by kind", "prod")
        );
    }

    #[test]
    fn files_it_cannot_edit_by_one_line_are_refused() {
        let json =
            r#"{"apiVersion":"v1","kind":"Config","current-context":"kind-x","contexts":[]}"#;
        assert!(set_current_context(json, "prod").is_err());
        let two = format!("{USER}current-context: again\n");
        assert!(set_current_context(&two, "prod").is_err());
    }

    #[test]
    fn what_cannot_be_put_back_is_said_and_left_alone() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("config");
        let json =
            r#"{"apiVersion":"v1","kind":"Config","current-context":"kind-x","contexts":[]}"#;
        std::fs::write(&path, json).unwrap();
        let before = Before {
            path: path.clone(),
            in_file: Some("prod".into()),
            effective: Some("prod".into()),
        };
        let out = restore(&before);
        let ContextOutcome::Changed { was, now, why } = &out else {
            panic!("{out:?}");
        };
        assert_eq!((was.as_str(), now.as_deref()), ("prod", Some("kind-x")));
        assert!(why.contains("top-level `current-context:`"), "{why}");
        assert!(
            out.to_string()
                .ends_with(": kubectl config use-context prod"),
            "{out}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), json);
        assert!(!t.path().join("config.lock").exists());
    }

    #[test]
    fn the_merge_file_is_kinds() {
        let home = Path::new("/home/u");
        assert_eq!(
            paths(None, Some(home)),
            vec![PathBuf::from("/home/u/.kube/config")]
        );
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        let list = std::env::join_paths([&a, &a, &b]).unwrap();
        let p = paths(Some(&list), Some(home));
        assert_eq!(p, vec![a.clone(), b.clone()]);
        assert_eq!(merge_path(&p), Some(b.clone()), "none exists: the last");
        std::fs::write(&b, "").unwrap();
        assert_eq!(merge_path(&p), Some(b.clone()), "the first that exists");
        std::fs::write(&a, "").unwrap();
        assert_eq!(merge_path(&p), Some(a));
    }
}
