//! What earlier bisects found, kept in kindred's state directory (`state_dir()/bisect`): each
//! commit's step and its PR side's rules, per judge (what judged the step: a result judged by
//! other probes or another scenario is never reused), and the log of the last bisect, written
//! after every step so that `kindred bisect --resume` continues where it stopped.
//!
//! The directory follows the state dir's rules ([`crate::backend::state`]): made private,
//! refused when shared or a symbolic link; files are read without following a link and replaced
//! through a new file renamed into place. A file kindred cannot read back is an error naming it.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use super::{BisectEnd, BisectRequest, SkipReason, Step, StepVerdict};
use crate::backend::state;

/// The most of a step file read.
const MAX_STEP: u64 = 1 << 20;
/// The most of a rules file read (every PR node's dump of one commit).
const MAX_RULES: u64 = 512 << 20;
/// The most of the log read.
const MAX_LOG: u64 = 64 << 20;

/// The cache of bisect results in one directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// The log of the last bisect: what was asked, with which scenario and judge, every step so
/// far and the end when it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Log {
    pub scenario: Option<PathBuf>,
    pub request: BisectRequest,
    pub judge: String,
    pub steps: Vec<Step>,
    pub end: Option<BisectEnd>,
}

/// A step as kept: with the judge that judged it.
#[derive(Serialize, Deserialize)]
struct StepFile {
    judge: String,
    step: Step,
}

/// A commit's rules as kept: (node, dump) pairs, with the judge.
#[derive(Serialize, Deserialize)]
struct RulesFile {
    judge: String,
    sha: String,
    dumps: Vec<(String, String)>,
}

/// FNV-1a, 64 bits: a stable name for a judge (the judge itself is kept in the file and
/// compared, so two judges of one name never mix).
fn judge_id(judge: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in judge.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A commit's SHA as a file name: 40 (SHA-1) or 64 (SHA-256) hex digits, nothing else.
fn checked_sha(sha: &str) -> Result<&str> {
    if matches!(sha.len(), 40 | 64) && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(sha)
    } else {
        bail!("{sha:?}: not a full commit SHA")
    }
}

/// Whether a step's result holds for the commit whenever it is judged again: a verdict, or a
/// commit that does not build. A cluster that did not come up or rounds that disagreed may go
/// otherwise the next time.
fn keeps(step: &Step) -> bool {
    match step.verdict {
        StepVerdict::Good | StepVerdict::Bad => true,
        StepVerdict::Skip => step.skip == Some(SkipReason::Unbuildable),
    }
}

impl Cache {
    /// The cache in `dir`, created private if missing (and the state dir above it, for
    /// [`Cache::default_dir`]); a dir that is a symbolic link, someone else's or shared is
    /// refused, naming it.
    pub fn open(dir: &Path) -> Result<Cache> {
        if dir == Self::default_dir() {
            state::ensure_state_dir()?;
        }
        state::ensure_dir(dir)?;
        Ok(Cache {
            dir: dir.to_path_buf(),
        })
    }

    /// `state_dir()/bisect`.
    pub fn default_dir() -> PathBuf {
        crate::backend::state_dir().join("bisect")
    }

    fn step_path(&self, judge: &str, sha: &str) -> Result<PathBuf> {
        let sha = checked_sha(sha)?;
        Ok(self
            .dir
            .join(format!("{sha}.{}.step.json", judge_id(judge))))
    }

    fn rules_path(&self, judge: &str, sha: &str) -> Result<PathBuf> {
        let sha = checked_sha(sha)?;
        Ok(self
            .dir
            .join(format!("{sha}.{}.rules.json", judge_id(judge))))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("log.json")
    }

    /// `judge`: an opaque key of what judges a step (the job makes it from the scenario,
    /// the probe, repeat and path); results of another judge are never reused. A hit comes
    /// back `cached`, with no time spent.
    pub fn get(&self, judge: &str, sha: &str) -> Result<Option<Step>> {
        let path = self.step_path(judge, sha)?;
        let Some(f) = read_json::<StepFile>(&path, MAX_STEP, "bisect step")? else {
            return Ok(None);
        };
        if f.judge != judge {
            return Ok(None);
        }
        if f.step.commit.sha != sha {
            bail!(
                "{}: a bisect step of commit {}, not {sha}: not a file kindred wrote (remove it)",
                path.display(),
                f.step.commit.sha
            );
        }
        Ok(Some(Step {
            cached: true,
            millis: 0,
            ..f.step
        }))
    }

    /// Keeps Good, Bad and Skip(Unbuildable) only (what holds the next time too).
    pub fn put(&self, judge: &str, step: &Step) -> Result<()> {
        if !keeps(step) {
            return Ok(());
        }
        let path = self.step_path(judge, &step.commit.sha)?;
        let f = StepFile {
            judge: judge.to_string(),
            step: Step {
                cached: false,
                ..step.clone()
            },
        };
        state::write_atomic(&path, &serde_json::to_vec(&f)?)
    }

    /// The PR side's rules at commit `sha`: (node, text) for each node.
    pub fn put_rules(&self, judge: &str, sha: &str, dumps: &[(String, String)]) -> Result<()> {
        let path = self.rules_path(judge, sha)?;
        let f = RulesFile {
            judge: judge.to_string(),
            sha: sha.to_string(),
            dumps: dumps.to_vec(),
        };
        state::write_atomic(&path, &serde_json::to_vec(&f)?)
    }

    /// The rules [`Cache::put_rules`] kept for `sha` under `judge` (none kept: empty).
    pub fn rules(&self, judge: &str, sha: &str) -> Result<Vec<(String, String)>> {
        let path = self.rules_path(judge, sha)?;
        match read_json::<RulesFile>(&path, MAX_RULES, "bisect rules")? {
            Some(f) if f.judge == judge => {
                if f.sha != sha {
                    bail!(
                        "{}: the rules of commit {}, not {sha}: not a file kindred wrote (remove it)",
                        path.display(),
                        f.sha
                    );
                }
                Ok(f.dumps)
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Replaces the log at once (never half written): after every step.
    pub fn write_log(&self, log: &Log) -> Result<()> {
        state::write_atomic(&self.log_path(), &serde_json::to_vec_pretty(log)?)
    }

    /// The log of the last bisect, `None` when there is none.
    pub fn read_log(&self) -> Result<Option<Log>> {
        read_json(&self.log_path(), MAX_LOG, "bisect log")
    }
}

/// The JSON file at `path` (`None` when missing); one that does not parse is an error naming
/// it and what it should be.
fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    max: u64,
    what: &str,
) -> Result<Option<T>> {
    let Some(text) = state::read(path, max)? else {
        return Ok(None);
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        anyhow!(
            "{}: not a {what} kindred wrote ({e}): remove it",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::bisect::{CommitInfo, PathChoice, StepPath, StepRole};
    use std::os::unix::fs::PermissionsExt;

    fn commit(n: u32) -> CommitInfo {
        CommitInfo {
            sha: format!("{n:040x}"),
            subject: format!("Merge pull request #{n} from dev/b{n}"),
            pr: Some(n),
        }
    }

    fn step(n: u32, verdict: StepVerdict, skip: Option<SkipReason>) -> Step {
        Step {
            commit: commit(n),
            role: StepRole::Inside,
            verdict,
            skip,
            why: skip.map(|_| "why".to_string()),
            good_rounds: u32::from(verdict == StepVerdict::Good),
            rounds: 1,
            path: StepPath::Swap,
            millis: 1234,
            cached: false,
        }
    }

    const JUDGE: &str = "scenario /s.yaml; expectations; repeat 1; swap";

    fn cache() -> (tempfile::TempDir, Cache) {
        let t = tempfile::tempdir().unwrap();
        let c = Cache::open(&t.path().join("bisect")).unwrap();
        (t, c)
    }

    #[test]
    fn a_step_reads_back_cached_for_its_judge_only() {
        let (_t, c) = cache();
        assert_eq!(c.get(JUDGE, &commit(1).sha).unwrap(), None);
        for (n, v) in [(1, StepVerdict::Good), (2, StepVerdict::Bad)] {
            let s = step(n, v, None);
            c.put(JUDGE, &s).unwrap();
            let back = c.get(JUDGE, &s.commit.sha).unwrap().unwrap();
            assert_eq!(
                back,
                Step {
                    cached: true,
                    millis: 0,
                    ..s.clone()
                }
            );
            // Another judge (another probe, repeat, scenario or path) finds nothing.
            assert_eq!(
                c.get("scenario /s.yaml; --probe x", &s.commit.sha).unwrap(),
                None
            );
        }
        // A commit that does not build does not build the next time either.
        let s = step(3, StepVerdict::Skip, Some(SkipReason::Unbuildable));
        c.put(JUDGE, &s).unwrap();
        assert_eq!(c.get(JUDGE, &s.commit.sha).unwrap().unwrap().skip, s.skip);
    }

    #[test]
    fn two_judges_of_one_commit_keep_their_own_steps() {
        let (_t, c) = cache();
        let (a, b) = ("judge a", "judge b");
        let good = step(1, StepVerdict::Good, None);
        let bad = step(1, StepVerdict::Bad, None);
        c.put(a, &good).unwrap();
        c.put(b, &bad).unwrap();
        assert_eq!(
            c.get(a, &good.commit.sha).unwrap().unwrap().verdict,
            StepVerdict::Good
        );
        assert_eq!(
            c.get(b, &good.commit.sha).unwrap().unwrap().verdict,
            StepVerdict::Bad
        );
        // A file of judge a under judge c's name (two judges' names alike) is not c's.
        let from = c.step_path(a, &good.commit.sha).unwrap();
        let to = c.step_path("judge c", &good.commit.sha).unwrap();
        std::fs::copy(&from, &to).unwrap();
        assert_eq!(c.get("judge c", &good.commit.sha).unwrap(), None);
    }

    #[test]
    fn flaky_and_not_up_steps_are_not_kept() {
        let (_t, c) = cache();
        for (n, why) in [
            (4, Some(SkipReason::Flaky)),
            (5, Some(SkipReason::NotUp)),
            (6, None),
        ] {
            let s = step(n, StepVerdict::Skip, why);
            c.put(JUDGE, &s).unwrap();
            assert_eq!(c.get(JUDGE, &s.commit.sha).unwrap(), None, "{why:?}");
        }
    }

    #[test]
    fn rules_read_back_per_commit_and_judge() {
        let (_t, c) = cache();
        let sha = commit(7).sha;
        assert!(c.rules(JUDGE, &sha).unwrap().is_empty());
        let dumps = vec![
            (
                "pr-worker".to_string(),
                "table ip kube-proxy {\n}\n".to_string(),
            ),
            ("pr-control-plane".to_string(), "*nat\nCOMMIT\n".to_string()),
        ];
        c.put_rules(JUDGE, &sha, &dumps).unwrap();
        assert_eq!(c.rules(JUDGE, &sha).unwrap(), dumps);
        assert!(c.rules("other", &sha).unwrap().is_empty());
        assert!(c.rules(JUDGE, &commit(8).sha).unwrap().is_empty());
    }

    #[test]
    fn a_corrupt_file_is_named() {
        let (t, c) = cache();
        let s = step(1, StepVerdict::Good, None);
        c.put(JUDGE, &s).unwrap();
        c.put_rules(JUDGE, &s.commit.sha, &[]).unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(t.path().join("bisect"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert_eq!(files.len(), 2, "{files:?}");
        for f in &files {
            std::fs::write(f, "{\"judge\": 1").unwrap();
        }
        let e = c.get(JUDGE, &s.commit.sha).unwrap_err().to_string();
        assert!(
            e.contains(&files[1].display().to_string()) && e.contains("bisect step"),
            "{e}"
        );
        let e = c.rules(JUDGE, &s.commit.sha).unwrap_err().to_string();
        assert!(
            e.contains(&files[0].display().to_string()) && e.contains("bisect rules"),
            "{e}"
        );
        let log = t.path().join("bisect/log.json");
        std::fs::write(&log, "[]").unwrap();
        let e = c.read_log().unwrap_err().to_string();
        assert!(
            e.contains(&log.display().to_string()) && e.contains("bisect log"),
            "{e}"
        );
        // A step file of another commit under this one's name.
        let other = step(2, StepVerdict::Bad, None);
        c.put(JUDGE, &other).unwrap();
        let from = c.step_path(JUDGE, &other.commit.sha).unwrap();
        std::fs::rename(&from, &files[1]).unwrap();
        let e = c.get(JUDGE, &s.commit.sha).unwrap_err().to_string();
        assert!(
            e.contains(&files[1].display().to_string()) && e.contains("not"),
            "{e}"
        );
        // Not a SHA: never a file name.
        let e = c.get(JUDGE, "../../etc/passwd").unwrap_err().to_string();
        assert!(e.contains("not a full commit SHA"), "{e}");
    }

    #[test]
    fn the_log_is_written_whole_and_read_back() {
        let (t, c) = cache();
        assert_eq!(c.read_log().unwrap(), None);
        let mut log = Log {
            scenario: Some(PathBuf::from("/s/scenario.yaml")),
            request: BisectRequest {
                good: "v1.33.0".into(),
                bad: "HEAD".into(),
                probe: Some("overlay-pr-worker".into()),
                repeat: 3,
                path: PathChoice::Swap,
                all_commits: true,
            },
            judge: JUDGE.into(),
            steps: vec![step(1, StepVerdict::Good, None)],
            end: None,
        };
        c.write_log(&log).unwrap();
        assert_eq!(c.read_log().unwrap().as_ref(), Some(&log));
        log.steps
            .push(step(2, StepVerdict::Skip, Some(SkipReason::Flaky)));
        log.end = Some(BisectEnd::Found {
            first_bad: commit(2),
            last_good: commit(1),
            rules_diff: "-a\n+b\n".into(),
        });
        c.write_log(&log).unwrap();
        assert_eq!(c.read_log().unwrap(), Some(log));
        // Replaced through a new file: nothing else is left in the dir.
        let names: Vec<String> = std::fs::read_dir(t.path().join("bisect"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["log.json"]);
        // A planted link at the log is replaced, never written through.
        let victim = t.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let log_path = t.path().join("bisect/log.json");
        std::fs::remove_file(&log_path).unwrap();
        std::os::unix::fs::symlink(&victim, &log_path).unwrap();
        let e = c.read_log().unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        c.write_log(&c_log()).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }

    fn c_log() -> Log {
        Log {
            scenario: None,
            request: serde_json::from_str(r#"{"good":"a","bad":"b"}"#).unwrap(),
            judge: JUDGE.into(),
            steps: vec![],
            end: None,
        }
    }

    #[test]
    fn the_cache_dir_follows_the_state_dir_rules() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("bisect");
        Cache::open(&dir).unwrap();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = Cache::open(&dir).unwrap_err().to_string();
        assert!(
            e.contains(&dir.display().to_string()) && e.contains("chmod 700"),
            "{e}"
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let e = Cache::open(&link).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(Cache::default_dir().ends_with("kindred/bisect"));
    }
}
