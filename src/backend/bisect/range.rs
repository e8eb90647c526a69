//! The range a bisect walks, and the path each of its steps takes, from git (argv only, with
//! git's timeouts: see [`crate::backend::git`]).
//!
//! The path: a step swaps a freshly compiled kube-proxy into the running PR cluster when every
//! file the range changes is kube-proxy's: under `pkg/proxy/` or `cmd/kube-proxy/`, or in a Go
//! package that only kube-proxy's packages import (to a fixed point: a package imported only by
//! such packages is one too). Tests (`_test.go`) and docs (`*.md`, `OWNERS`) build into no
//! binary. Anything else needs the node image rebuilt.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::{CommitInfo, PathChoice, StepPath};
use crate::backend::git;

/// The commits a bisect walks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub good: CommitInfo,
    pub bad: CommitInfo,
    /// Oldest first, the bad end last (the good end not among them).
    pub commits: Vec<CommitInfo>,
}

/// The PR a merge commit's subject says it merged: "Merge pull request #132456 from x/y".
pub fn pr_number(subject: &str) -> Option<u32> {
    let rest = subject.trim_start().strip_prefix("Merge pull request #")?;
    let digits: &str = &rest[..rest.bytes().take_while(u8::is_ascii_digit).count()];
    let after = &rest[digits.len()..];
    if !(after.is_empty() || after.starts_with(' ')) {
        return None;
    }
    digits.parse().ok().filter(|&n| n > 0)
}

fn info(sha: String, subject: String) -> CommitInfo {
    CommitInfo {
        pr: pr_number(&subject),
        sha,
        subject,
    }
}

/// `good` and `bad` resolved with [`git::resolve`] (tags, SHAs, branches, `pr/N` fetched from
/// `remote` or the one that is kubernetes/kubernetes) and the commits between them: only
/// first-parent (merge) commits unless `all_commits`. Errors: a ref that does not resolve
/// (named), good not an ancestor of bad, an empty range.
pub async fn range(
    source: &Path,
    good: &str,
    bad: &str,
    all_commits: bool,
    remote: Option<&str>,
) -> Result<Range> {
    let good_sha = git::resolve(source, good, remote)
        .await
        .with_context(|| format!("the good ref `{good}`"))?;
    let bad_sha = git::resolve(source, bad, remote)
        .await
        .with_context(|| format!("the bad ref `{bad}`"))?;
    let short = |s: &str| s[..s.len().min(12)].to_string();
    if good_sha == bad_sha {
        bail!(
            "the good ref `{good}` and the bad ref `{bad}` are the same commit ({}): nothing to bisect",
            short(&good_sha)
        );
    }
    if !git::is_ancestor(source, &good_sha, &bad_sha).await? {
        bail!(
            "the good ref `{good}` ({}) is not an ancestor of the bad ref `{bad}` ({}) in {}: give an older good ref on the bad ref's history",
            short(&good_sha),
            short(&bad_sha),
            source.display()
        );
    }
    let list = git::commits(source, &good_sha, &bad_sha, !all_commits).await?;
    let commits: Vec<CommitInfo> = list.into_iter().map(|(s, m)| info(s, m)).collect();
    match commits.last() {
        Some(last) if last.sha == bad_sha => {}
        _ => bail!(
            "no commits between the good ref `{good}` and the bad ref `{bad}` in {}",
            source.display()
        ),
    }
    let good_subject = git::subject(source, &good_sha).await?;
    Ok(Range {
        good: info(good_sha, good_subject),
        bad: commits[commits.len() - 1].clone(),
        commits,
    })
}

/// Where kube-proxy's own code lives.
const ROOTS: [&str; 2] = ["pkg/proxy/", "cmd/kube-proxy/"];

/// Whether the package dir `dir` is under kube-proxy's own code.
fn is_root(dir: &str) -> bool {
    ROOTS
        .iter()
        .any(|r| dir.starts_with(r) || dir == r.trim_end_matches('/'))
}

/// Files that build into no binary: tests and docs.
fn builds_nothing(file: &str) -> bool {
    let name = file.rsplit('/').next().unwrap_or(file);
    name.ends_with("_test.go") || name.ends_with(".md") || name == "OWNERS"
}

/// The package dir of a file (its directory; "" at the top).
fn dir_of(file: &str) -> &str {
    file.rsplit_once('/').map_or("", |(d, _)| d)
}

/// The Go import path of the package at `dir`: staging and vendored packages by their own
/// path, the rest under `k8s.io/kubernetes`.
fn import_path(dir: &str) -> String {
    if let Some(p) = dir.strip_prefix("staging/src/") {
        p.to_string()
    } else if let Some(p) = dir.strip_prefix("vendor/") {
        p.to_string()
    } else if dir.is_empty() {
        "k8s.io/kubernetes".to_string()
    } else {
        format!("k8s.io/kubernetes/{dir}")
    }
}

/// The packages that are kube-proxy's: those under [`ROOTS`], and to a fixed point every
/// package with at least one importer whose importers all are. `importers`: for each package
/// dir known, every package dir that imports it (non-test imports); a package not a key is not
/// known to be imported only by kube-proxy (and so is not kube-proxy's unless under a root).
pub fn kube_proxy_packages(importers: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    let mut ours: BTreeSet<String> = importers
        .iter()
        .flat_map(|(p, by)| std::iter::once(p).chain(by))
        .filter(|d| is_root(d))
        .cloned()
        .collect();
    loop {
        let more: Vec<String> = importers
            .iter()
            .filter(|(p, by)| {
                !ours.contains(*p) && !by.is_empty() && by.iter().all(|i| ours.contains(i))
            })
            .map(|(p, _)| p.clone())
            .collect();
        if more.is_empty() {
            return ours;
        }
        ours.extend(more);
    }
}

/// The most packages whose importers are looked up for one range: a change to a package most
/// of Kubernetes imports is not kube-proxy's alone, and is not worth reading all of it to say.
const MAX_PACKAGES: usize = 400;

/// What the import graph says of the range's changed packages.
struct Graph {
    /// Package dir → the dirs of the (non-test) Go files importing it, for every package looked up.
    importers: BTreeMap<String, BTreeSet<String>>,
    /// The bound the lookup stopped at (packages looked up), if it did.
    cut: Option<usize>,
}

/// The importers of `changed` (package dirs not under a root), and of their importers, up to
/// the roots, at `commit`: at most `max` packages looked up.
async fn import_graph(
    source: &Path,
    commit: &str,
    changed: &BTreeSet<String>,
    max: usize,
) -> Result<Graph> {
    let mut importers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut frontier: BTreeSet<String> = changed.iter().filter(|d| !is_root(d)).cloned().collect();
    while !frontier.is_empty() {
        if importers.len() + frontier.len() > max {
            return Ok(Graph {
                importers,
                cut: Some(max),
            });
        }
        let by_path: BTreeMap<String, String> = frontier
            .iter()
            .map(|d| (import_path(d), d.clone()))
            .collect();
        let paths: Vec<String> = by_path.keys().cloned().collect();
        for d in &frontier {
            importers.entry(d.clone()).or_default();
        }
        for (file, path) in git::go_importers(source, commit, &paths).await? {
            if let Some(d) = by_path.get(&path) {
                let by = dir_of(&file).to_string();
                if by != *d {
                    importers.entry(d.clone()).or_default().insert(by);
                }
            }
        }
        let next: BTreeSet<String> = frontier
            .iter()
            .flat_map(|d| importers[d].iter())
            .filter(|i| !is_root(i) && !importers.contains_key(*i))
            .cloned()
            .collect();
        frontier = next;
    }
    Ok(Graph {
        importers,
        cut: None,
    })
}

/// Swap when every file the range changes is kube-proxy's: under pkg/proxy/ or
/// cmd/kube-proxy/, or in a Go package imported (non-test imports, at the bad commit) only by
/// packages that are themselves kube-proxy's (a fixed point); `_test.go` files and docs
/// (*.md, OWNERS) change no binary. Else Rebuild, `why` naming the first file that is not.
/// `asked` Swap/Rebuild is taken as is, why "forced (--swap)".
///
/// `good` and `bad`: commits or refs (the range's SHAs, as [`range`] resolved them).
pub async fn choose_path(
    source: &Path,
    good: &str,
    bad: &str,
    asked: PathChoice,
) -> Result<(StepPath, String)> {
    match asked {
        PathChoice::Swap => return Ok((StepPath::Swap, "forced (--swap)".into())),
        PathChoice::Rebuild => return Ok((StepPath::Rebuild, "forced (--rebuild)".into())),
        PathChoice::Auto => {}
    }
    auto_path(source, good, bad, MAX_PACKAGES).await
}

/// The path [`choose_path`] chooses by itself, looking up the importers of at most `max`
/// packages.
async fn auto_path(source: &Path, good: &str, bad: &str, max: usize) -> Result<(StepPath, String)> {
    let good_sha = git::resolve(source, good, None).await?;
    let bad_sha = git::resolve(source, bad, None).await?;
    let files: Vec<String> = git::changed_files(source, &good_sha, &bad_sha)
        .await?
        .into_iter()
        .filter(|f| !builds_nothing(f))
        .collect();
    // A file that is not Go code outside the roots is not kube-proxy's, whatever imports
    // what: the import graph is read for the Go files before the first such file only.
    let plain = files
        .iter()
        .position(|f| !f.ends_with(".go") && !is_root(dir_of(f)));
    let go_files = &files[..plain.unwrap_or(files.len())];
    let changed: BTreeSet<String> = go_files.iter().map(|f| dir_of(f).to_string()).collect();
    let graph = import_graph(source, &bad_sha, &changed, max).await?;
    let ours = kube_proxy_packages(&graph.importers);
    for f in go_files {
        let d = dir_of(f);
        if ours.contains(d) || is_root(d) {
            continue;
        }
        return Ok((StepPath::Rebuild, not_ours_why(f, d, &graph, &ours)));
    }
    if let Some(i) = plain {
        return Ok((
            StepPath::Rebuild,
            format!(
                "{} is not kube-proxy's code (only pkg/proxy/ and cmd/kube-proxy/ are)",
                files[i]
            ),
        ));
    }
    Ok((StepPath::Swap, swap_why(&files, &changed)))
}

/// Why `file` (of package `dir`) is not kube-proxy's.
fn not_ours_why(file: &str, dir: &str, graph: &Graph, ours: &BTreeSet<String>) -> String {
    let by = graph.importers.get(dir);
    let unread = |i: &String| !graph.importers.contains_key(i) && !is_root(i);
    match (
        by.and_then(|b| b.iter().find(|i| !ours.contains(*i))),
        graph.cut,
    ) {
        (Some(i), Some(max)) if unread(i) => format!(
            "{file} is not known to be kube-proxy's code: its package {dir} is imported by {i}, whose importers were not read (more than {max} packages to look up)"
        ),
        (Some(i), _) => format!(
            "{file} is not kube-proxy's code: its package {dir} is imported by {i}, not only by kube-proxy"
        ),
        (None, _) if by.is_some_and(BTreeSet::is_empty) => {
            format!("{file} is not kube-proxy's code: its package {dir} is imported by no package")
        }
        (None, Some(max)) => format!(
            "{file} is not known to be kube-proxy's code: its importers were not read (more than {max} packages to look up)"
        ),
        (None, None) => format!("{file} is not kube-proxy's code"),
    }
}

/// Why the swap path is taken.
fn swap_why(files: &[String], changed: &BTreeSet<String>) -> String {
    let beyond: Vec<&str> = changed
        .iter()
        .filter(|d| !is_root(d))
        .map(String::as_str)
        .collect();
    if files.is_empty() {
        "the range changes no code (tests and docs only)".into()
    } else if beyond.is_empty() {
        format!(
            "the range changes only kube-proxy's code ({} files under pkg/proxy/ and cmd/kube-proxy/)",
            files.len()
        )
    } else {
        format!(
            "the range changes only kube-proxy's code ({} files; {} imported only by kube-proxy)",
            files.len(),
            beyond.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::backend::git::tests::sh;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (f, text) in files {
            let p = dir.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
    }

    /// A Go file of package `name` importing `imports` (Kubernetes import paths).
    fn go(name: &str, imports: &[&str], body: &str) -> String {
        let list: String = imports.iter().map(|i| format!("\t\"{i}\"\n")).collect();
        format!("package {name}\n\nimport (\n{list})\n\n// {body}\n")
    }

    /// PR `n` as Kubernetes merges one: a side branch dev/bN with one commit, merged with
    /// `--no-ff` by "Merge pull request #N from dev/bN"; tagged `tN`.
    fn pr(dir: &Path, n: u32, files: &[(&str, &str)]) {
        let branch = format!("dev/b{n}");
        sh(dir, &["checkout", "-q", "-b", &branch, "main"]);
        write(dir, files);
        sh(dir, &["add", "-A"]);
        sh(dir, &["commit", "-q", "-m", &format!("change {n}")]);
        sh(dir, &["checkout", "-q", "main"]);
        let msg = format!("Merge pull request #{n} from {branch}");
        sh(dir, &["merge", "-q", "--no-ff", "-m", &msg, &branch]);
        sh(dir, &["tag", &format!("t{n}")]);
    }

    const K: &str = "k8s.io/kubernetes";

    /// A Kubernetes-like repository: kube-proxy imports pkg/util/proxyonly (which alone
    /// imports pkg/util/deep), pkg/util/shared (the kubelet does too) and pkg/util/testonly (the
    /// kubelet's tests do too); the kubelet imports k8s.io/api from staging. Tag v0, then PRs
    /// 101..=106 (tags t101..t106).
    fn repo(dir: &Path) {
        sh(dir, &["init", "-q", "-b", "main"]);
        // A user's settings that change what git prints are set aside.
        for (k, v) in [
            ("grep.lineNumber", "true"),
            ("grep.column", "true"),
            ("color.ui", "always"),
            ("diff.renames", "copies"),
            ("log.showSignature", "true"),
        ] {
            sh(dir, &["config", k, v]);
        }
        let proxy = go(
            "proxy",
            &[
                &format!("{K}/pkg/util/proxyonly"),
                &format!("{K}/pkg/util/shared"),
                &format!("{K}/pkg/util/testonly"),
            ],
            "v0",
        );
        let kubelet = go(
            "kubelet",
            &[&format!("{K}/pkg/util/shared"), "k8s.io/api/core/v1"],
            "v0",
        );
        let kubelet_test = go("kubelet", &[&format!("{K}/pkg/util/testonly")], "v0");
        write(
            dir,
            &[
                ("go.mod", "module k8s.io/kubernetes\n"),
                ("pkg/proxy/proxier.go", &proxy),
                (
                    "cmd/kube-proxy/main.go",
                    &go("main", &[&format!("{K}/pkg/proxy")], "v0"),
                ),
                (
                    "pkg/util/proxyonly/p.go",
                    &go("proxyonly", &[&format!("{K}/pkg/util/deep")], "v0"),
                ),
                ("pkg/util/deep/d.go", &go("deep", &[], "v0")),
                ("pkg/util/shared/s.go", &go("shared", &[], "v0")),
                ("pkg/util/testonly/t.go", &go("testonly", &[], "v0")),
                ("pkg/kubelet/kubelet.go", &kubelet),
                ("pkg/kubelet/kubelet_test.go", &kubelet_test),
                (
                    "cmd/kubelet/main.go",
                    &go("main", &[&format!("{K}/pkg/kubelet")], "v0"),
                ),
                (
                    "staging/src/k8s.io/api/core/v1/types.go",
                    &go("v1", &[], "v0"),
                ),
            ],
        );
        sh(dir, &["add", "-A"]);
        sh(dir, &["commit", "-q", "-m", "base"]);
        sh(dir, &["tag", "v0"]);
        pr(
            dir,
            101,
            &[("pkg/proxy/proxier.go", &(proxy.clone() + "// 101\n"))],
        );
        pr(
            dir,
            102,
            &[
                (
                    "pkg/util/proxyonly/p.go",
                    &go("proxyonly", &[&format!("{K}/pkg/util/deep")], "102"),
                ),
                ("pkg/util/deep/d.go", &go("deep", &[], "102")),
                ("pkg/util/shared/README.md", "docs\n"),
                ("pkg/kubelet/OWNERS", "approvers: []\n"),
                (
                    "pkg/kubelet/kubelet_test.go",
                    &(kubelet_test.clone() + "// 102\n"),
                ),
            ],
        );
        pr(
            dir,
            103,
            &[("pkg/util/shared/s.go", &go("shared", &[], "103"))],
        );
        pr(
            dir,
            104,
            &[("pkg/util/testonly/t.go", &go("testonly", &[], "104"))],
        );
        pr(
            dir,
            105,
            &[(
                "staging/src/k8s.io/api/core/v1/types.go",
                &go("v1", &[], "105"),
            )],
        );
        pr(dir, 106, &[("hack/update.sh", "#!/bin/sh\n")]);
    }

    fn tempdir_with_repo() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        repo(t.path());
        t
    }

    #[test]
    fn pr_numbers_come_from_merge_subjects() {
        assert_eq!(
            pr_number("Merge pull request #132456 from x/y"),
            Some(132456)
        );
        assert_eq!(pr_number("Merge pull request #7"), Some(7));
        for s in [
            "Merge branch 'master' into x",
            "Merge pull request #abc from x/y",
            "Merge pull request #12x from x/y",
            "Merge pull request # from x/y",
            "Merge pull request #0 from x/y",
            "Merge pull request #99999999999 from x/y",
            "Fix #123",
            "",
        ] {
            assert_eq!(pr_number(s), None, "{s}");
        }
    }

    #[tokio::test]
    async fn the_range_is_the_first_parent_merges_oldest_first() {
        let t = tempdir_with_repo();
        let dir = t.path();
        let r = range(dir, "v0", "t105", false, None).await.unwrap();
        assert_eq!(r.good.sha, sh(dir, &["rev-parse", "v0"]));
        assert_eq!((r.good.subject.as_str(), r.good.pr), ("base", None));
        let prs: Vec<Option<u32>> = r.commits.iter().map(|c| c.pr).collect();
        assert_eq!(prs, [Some(101), Some(102), Some(103), Some(104), Some(105)]);
        for (c, n) in r.commits.iter().zip(101..) {
            assert_eq!(c.sha, sh(dir, &["rev-parse", &format!("t{n}")]));
            assert_eq!(c.subject, format!("Merge pull request #{n} from dev/b{n}"));
        }
        assert_eq!(r.bad, r.commits[4]);
        // A SHA and a branch resolve too.
        let sha = sh(dir, &["rev-parse", "t101"]);
        let r = range(dir, &sha, "main", false, None).await.unwrap();
        assert_eq!(r.commits.len(), 5);
        assert_eq!(r.bad.pr, Some(106));
    }

    #[tokio::test]
    async fn all_commits_take_the_side_branches_too_parents_first() {
        let t = tempdir_with_repo();
        let dir = t.path();
        let r = range(dir, "v0", "t103", true, None).await.unwrap();
        let subjects: Vec<&str> = r.commits.iter().map(|c| c.subject.as_str()).collect();
        assert_eq!(subjects.len(), 6, "{subjects:?}");
        for n in 101..=103 {
            let side = subjects.iter().position(|s| *s == format!("change {n}"));
            let merge = subjects
                .iter()
                .position(|s| *s == format!("Merge pull request #{n} from dev/b{n}"));
            assert!(side.unwrap() < merge.unwrap(), "{subjects:?}");
        }
        assert_eq!(r.bad.sha, sh(dir, &["rev-parse", "t103"]));
        assert_eq!(r.commits.last(), Some(&r.bad));
    }

    #[tokio::test]
    async fn bad_ranges_are_refused_naming_the_ref() {
        let t = tempdir_with_repo();
        let dir = t.path();
        let e = format!(
            "{:#}",
            range(dir, "v0", "no-such-ref", false, None)
                .await
                .unwrap_err()
        );
        assert!(
            e.contains("the bad ref `no-such-ref`") && e.contains("no such branch"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            range(dir, "nope", "t103", false, None).await.unwrap_err()
        );
        assert!(e.contains("the good ref `nope`"), "{e}");
        let e = format!(
            "{:#}",
            range(dir, "t103", "t101", false, None).await.unwrap_err()
        );
        assert!(
            e.contains("`t103`") && e.contains("is not an ancestor of the bad ref `t101`"),
            "{e}"
        );
        // A side branch's commit is not on the way to main's older merge.
        let e = format!(
            "{:#}",
            range(dir, "dev/b104", "t103", false, None)
                .await
                .unwrap_err()
        );
        assert!(e.contains("not an ancestor"), "{e}");
        let e = format!(
            "{:#}",
            range(dir, "t102", "t102", false, None).await.unwrap_err()
        );
        assert!(
            e.contains("same commit") && e.contains("nothing to bisect"),
            "{e}"
        );
    }

    async fn path(dir: &Path, good: &str, bad: &str) -> (StepPath, String) {
        choose_path(dir, good, bad, PathChoice::Auto).await.unwrap()
    }

    #[tokio::test]
    async fn the_path_is_swap_only_for_kube_proxys_code() {
        let t = tempdir_with_repo();
        let dir = t.path();
        // pkg/proxy alone.
        let (p, why) = path(dir, "v0", "t101").await;
        assert_eq!(p, StepPath::Swap, "{why}");
        assert!(why.contains("only kube-proxy's code"), "{why}");
        // Packages only kube-proxy imports (deep: through proxyonly, a fixed point); docs,
        // OWNERS and tests change no binary.
        let (p, why) = path(dir, "t101", "t102").await;
        assert_eq!(p, StepPath::Swap, "{why}");
        assert!(
            why.contains("pkg/util/deep") && why.contains("pkg/util/proxyonly"),
            "{why}"
        );
        // Imported by the kubelet as well: rebuild, naming the file and the importer.
        let (p, why) = path(dir, "t102", "t103").await;
        assert_eq!(p, StepPath::Rebuild);
        assert!(
            why.contains("pkg/util/shared/s.go") && why.contains("imported by pkg/kubelet"),
            "{why}"
        );
        // Imported otherwise only by the kubelet's tests: swap.
        let (p, why) = path(dir, "t103", "t104").await;
        assert_eq!(p, StepPath::Swap, "{why}");
        // Staging, imported by the kubelet: rebuild.
        let (p, why) = path(dir, "t104", "t105").await;
        assert_eq!(p, StepPath::Rebuild);
        assert!(
            why.starts_with("staging/src/k8s.io/api/core/v1/types.go "),
            "{why}"
        );
        // A script: not Go code of kube-proxy.
        let (p, why) = path(dir, "t105", "t106").await;
        assert_eq!(p, StepPath::Rebuild);
        assert!(
            why.starts_with("hack/update.sh is not kube-proxy's"),
            "{why}"
        );
        // The first file that is not is named, for a range of several.
        let (p, why) = path(dir, "v0", "main").await;
        assert_eq!(p, StepPath::Rebuild);
        assert!(why.starts_with("pkg/util/shared/s.go"), "{why}");
    }

    /// A change whose importers reach too many packages is rebuilt, saying why.
    #[tokio::test]
    async fn too_many_importers_to_read_rebuild_saying_so() {
        let t = tempdir_with_repo();
        let dir = t.path();
        // t101..t102: pkg/util/deep and pkg/util/proxyonly, then nothing more to look up.
        let (p, why) = auto_path(dir, "t101", "t102", 2).await.unwrap();
        assert_eq!(p, StepPath::Swap, "{why}");
        let (p, why) = auto_path(dir, "t101", "t102", 1).await.unwrap();
        assert_eq!(p, StepPath::Rebuild);
        assert!(
            why.starts_with("pkg/util/deep/d.go is not known to be kube-proxy's code")
                && why.contains("more than 1 packages"),
            "{why}"
        );
        // t102..t103's shared is imported by pkg/kubelet, whose importers are not read.
        let (p, why) = auto_path(dir, "t102", "t103", 1).await.unwrap();
        assert_eq!(p, StepPath::Rebuild);
        assert!(
            why.contains("imported by pkg/kubelet, whose importers were not read"),
            "{why}"
        );
    }

    #[tokio::test]
    async fn a_forced_path_is_taken_as_is() {
        let t = tempdir_with_repo();
        let dir = t.path();
        let p = choose_path(dir, "v0", "t101", PathChoice::Rebuild)
            .await
            .unwrap();
        assert_eq!(p, (StepPath::Rebuild, "forced (--rebuild)".to_string()));
        let p = choose_path(dir, "t102", "t106", PathChoice::Swap)
            .await
            .unwrap();
        assert_eq!(p, (StepPath::Swap, "forced (--swap)".to_string()));
    }

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        edges
            .iter()
            .map(|(p, by)| (p.to_string(), by.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn kube_proxys_packages_are_a_fixed_point_over_importers() {
        let ours = kube_proxy_packages(&graph(&[
            // Imported by kube-proxy alone, directly or through another such package.
            ("pkg/util/a", &["pkg/proxy/nftables", "cmd/kube-proxy/app"]),
            ("pkg/util/b", &["pkg/util/a"]),
            ("pkg/util/c", &["pkg/util/b", "pkg/proxy"]),
            // Also imported by the kubelet, and what only it imports.
            ("pkg/util/d", &["pkg/proxy", "pkg/kubelet"]),
            ("pkg/util/e", &["pkg/util/d"]),
            // Imported by nobody, or by a package whose importers are not known.
            ("pkg/util/f", &[]),
            ("pkg/util/g", &["pkg/unknown"]),
            // A cycle never reaching kube-proxy alone.
            ("pkg/util/h", &["pkg/util/i"]),
            ("pkg/util/i", &["pkg/util/h"]),
        ]));
        for p in [
            "pkg/util/a",
            "pkg/util/b",
            "pkg/util/c",
            "pkg/proxy",
            "cmd/kube-proxy/app",
        ] {
            assert!(ours.contains(p), "{p}: {ours:?}");
        }
        for p in [
            "pkg/util/d",
            "pkg/util/e",
            "pkg/util/f",
            "pkg/util/g",
            "pkg/util/h",
            "pkg/kubelet",
        ] {
            assert!(!ours.contains(p), "{p}: {ours:?}");
        }
        // pkg/proxyfoo is not under pkg/proxy/.
        assert!(!is_root("pkg/proxyfoo") && is_root("pkg/proxy") && is_root("cmd/kube-proxy"));
    }
}
