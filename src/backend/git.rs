//! Git, through its CLI with argv only: resolve a side's ref to a commit and check it out in a
//! worktree of kindred's own, never touching the user's checkout.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::process::Command;

/// How long one git command may take (a fetch of a large repository included).
pub const GIT_LIMIT: Duration = Duration::from_secs(600);

/// The most of a git command's stdout kept (a longer one is an error, never used cut) and of
/// its stderr (shown in errors).
pub const MAX_GIT_OUTPUT: usize = 16 << 20;

/// Run git in `dir`: its exit status and output, or an error when it cannot run, does not
/// answer within [`GIT_LIMIT`], or prints more than [`MAX_GIT_OUTPUT`].
async fn run(dir: &Path, args: &[&str]) -> Result<super::process::Captured> {
    run_env(dir, args, &[]).await
}

/// [`run`] with more environment variables.
async fn run_env(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<super::process::Captured> {
    use super::process::{Overflow, capture};
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(dir).args(args).envs(env.iter().copied());
    let what = format!("git {} in {}", args.join(" "), dir.display());
    let out = capture(cmd, &what, MAX_GIT_OUTPUT, Overflow::Drain, GIT_LIMIT)
        .await
        .map_err(|e| anyhow!("running git: {e}"))??;
    if out.stdout_cut {
        bail!("{what}: output longer than {} MiB", MAX_GIT_OUTPUT >> 20);
    }
    Ok(out)
}

async fn git(dir: &Path, args: &[&str]) -> Result<String> {
    git_env(dir, args, &[]).await
}

async fn git_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
    let out = run_env(dir, args, env).await?;
    if !out.status.success() {
        bail!(
            "git {} in {}: {}",
            args.join(" "),
            dir.display(),
            out.stderr_text()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Check that `source` is a Kubernetes checkout (what `kind build node-image` needs).
pub fn check_source(source: &Path) -> Result<()> {
    let gomod = source.join("go.mod");
    let text = std::fs::read_to_string(&gomod).map_err(|_| {
        anyhow!(
            "{}: not a Kubernetes source checkout (no go.mod); set `source` in the scenario",
            source.display()
        )
    })?;
    if !text.lines().any(|l| l.trim() == "module k8s.io/kubernetes") {
        bail!(
            "{}: go.mod is not `module k8s.io/kubernetes`: not a Kubernetes checkout",
            source.display()
        );
    }
    Ok(())
}

/// The commit a ref names. `pr/NNNNN` is fetched from `origin` (refs/pull/NNNNN/head) first;
/// `worktree` is the checkout's HEAD (what its working tree is based on: see [`snapshot`]).
pub async fn resolve(source: &Path, git_ref: &str) -> Result<String> {
    if git_ref == crate::scenario::WORKTREE {
        return git(source, &["rev-parse", "--verify", "HEAD^{commit}"]).await;
    }
    if let Some(n) = git_ref.strip_prefix("pr/") {
        if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
            bail!("{git_ref}: expected pr/NUMBER");
        }
        let spec = format!("pull/{n}/head");
        git(source, &["fetch", "--quiet", "origin", &spec]).await?;
        return git(source, &["rev-parse", "--verify", "FETCH_HEAD^{commit}"]).await;
    }
    if git_ref.starts_with('-') {
        bail!("{git_ref}: not a git ref");
    }
    let spec = format!("{git_ref}^{{commit}}");
    match git(source, &["rev-parse", "--verify", "--quiet", &spec]).await {
        Ok(sha) if !sha.is_empty() => Ok(sha),
        _ => {
            let remote = format!("origin/{git_ref}^{{commit}}");
            git(source, &["rev-parse", "--verify", &remote])
                .await
                .map_err(|_| {
                    anyhow!(
                        "{git_ref}: no such branch, tag or commit in {}",
                        source.display()
                    )
                })
        }
    }
}

/// The remote's default branch, e.g. `origin/master` (from `origin/HEAD`, else the first of
/// `origin/master` and `origin/main` that exists).
pub async fn default_branch(source: &Path) -> Result<String> {
    if let Ok(b) = git(
        source,
        &[
            "symbolic-ref",
            "--quiet",
            "--short",
            "refs/remotes/origin/HEAD",
        ],
    )
    .await
        && !b.is_empty()
    {
        return Ok(b);
    }
    for b in ["origin/master", "origin/main"] {
        if run(source, &["rev-parse", "--verify", "--quiet", b])
            .await?
            .status
            .success()
        {
            return Ok(b.to_string());
        }
    }
    bail!(
        "{}: the remote origin has no default branch (origin/HEAD, origin/master, origin/main)",
        source.display()
    )
}

/// Where the PR at `pr` branched from the remote's default branch: the merge base of the two
/// (for a PR already merged into it, the merge base with the branch as it was just before the
/// merge). Returns the commit and the branch's name.
pub async fn merge_base(source: &Path, pr: &str) -> Result<(String, String)> {
    let branch = default_branch(source).await?;
    let merged = run(source, &["merge-base", "--is-ancestor", pr, &branch])
        .await?
        .status
        .success();
    let upto = if merged {
        // The merge commit that brought the PR in: the first merge on the ancestry path.
        let range = format!("{pr}..{branch}");
        let merges = git(
            source,
            &[
                "rev-list",
                "--ancestry-path",
                "--merges",
                "--reverse",
                &range,
            ],
        )
        .await?;
        match merges.lines().next() {
            Some(m) => format!("{m}^1"),
            None => bail!("{pr} is on {branch} with no merge commit: it has no base of its own"),
        }
    } else {
        branch.clone()
    };
    let base = git(source, &["merge-base", pr, &upto]).await?;
    Ok((base, branch))
}

/// Kubernetes' version variables for a commit, as `hack/lib/version.sh` computes them from
/// `git describe` (the tree is a fresh worktree: clean).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeVersion {
    pub commit: String,
    /// e.g. "v1.34.0-alpha.1.123+0123456789abcd".
    pub version: String,
    pub major: u32,
    pub minor: u32,
}

impl KubeVersion {
    /// The file `KUBE_GIT_VERSION_FILE` points the Kubernetes build at. A `dirty` tree (a
    /// working-tree snapshot) is marked as `hack/lib/version.sh` marks one: state `dirty`,
    /// version suffix `-dirty`.
    pub fn file(&self, dirty: bool) -> String {
        let plus = if self.version.contains('+') { "+" } else { "" };
        let (state, suffix) = if dirty {
            ("dirty", "-dirty")
        } else {
            ("clean", "")
        };
        format!(
            "KUBE_GIT_COMMIT='{}'\nKUBE_GIT_TREE_STATE='{state}'\nKUBE_GIT_VERSION='{}{suffix}'\nKUBE_GIT_MAJOR='{}'\nKUBE_GIT_MINOR='{}{plus}'\n",
            self.commit, self.version, self.major, self.minor
        )
    }
}

/// `git describe` output ("v1.34.0-alpha.1-123-g0123456789abcd") in Kubernetes' spelling
/// ("v1.34.0-alpha.1.123+0123456789abcd"), with major and minor.
pub fn kube_version(describe: &str, commit: &str) -> Option<KubeVersion> {
    let d = describe.trim();
    let (tag, version) = match d.rsplit_once("-g") {
        Some((head, hash)) if hash.bytes().all(|c| c.is_ascii_hexdigit()) => {
            let (tag, n) = head.rsplit_once('-')?;
            n.parse::<u32>().ok()?;
            let sep = if tag.contains('-') { '.' } else { '-' };
            (tag, format!("{tag}{sep}{n}+{hash}"))
        }
        _ => (d, d.to_string()),
    };
    let core = tag.strip_prefix('v')?.split('-').next()?;
    let mut it = core.split('.').map(|x| x.parse::<u32>().ok());
    let (major, minor) = (it.next()??, it.next()??);
    Some(KubeVersion {
        commit: commit.to_string(),
        version,
        major,
        minor,
    })
}

/// The Kubernetes version of `sha`, from the nearest `v*` tag; `None` when there is none (a
/// clone without tags).
pub async fn describe(source: &Path, sha: &str) -> Result<Option<KubeVersion>> {
    let spec = format!("{sha}^{{commit}}");
    let out = run(
        source,
        &[
            "describe",
            "--tags",
            "--match",
            "v[0-9]*",
            "--abbrev=14",
            &spec,
        ],
    )
    .await?;
    if !out.status.success() {
        return Ok(None);
    }
    Ok(kube_version(&String::from_utf8_lossy(&out.stdout), sha))
}

/// A detached worktree of `source` at `sha` in `dir`. A worktree already there is moved to
/// `sha` in place (only the files that differ are rewritten, so the Kubernetes build's caches
/// stay warm); its untracked files go, ignored ones (build output) stay.
pub async fn worktree(source: &Path, sha: &str, dir: &Path) -> Result<PathBuf> {
    let d = dir
        .to_str()
        .ok_or_else(|| anyhow!("worktree path is not UTF-8: {}", dir.display()))?;
    if dir.join(".git").exists() {
        match git(dir, &["rev-parse", "HEAD"]).await {
            Ok(head) if head == sha => return Ok(dir.to_path_buf()),
            Ok(_) => {
                git(dir, &["checkout", "--quiet", "--force", "--detach", sha]).await?;
                git(dir, &["clean", "--quiet", "-fd"]).await?;
                return Ok(dir.to_path_buf());
            }
            Err(_) => {
                git(source, &["worktree", "remove", "--force", d]).await?;
            }
        }
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    git(source, &["worktree", "prune"]).await?;
    git(source, &["worktree", "add", "--detach", "--force", d, sha]).await?;
    Ok(dir.to_path_buf())
}

/// A commit holding the working tree of a checkout exactly as it is (staged, unstaged and
/// untracked files; not ignored ones), and what it holds beyond HEAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The snapshot commit: HEAD itself when nothing changed.
    pub commit: String,
    pub head: String,
    /// Paths that differ from HEAD.
    pub changed: Vec<String>,
}

impl Snapshot {
    /// "HEAD abc123 + 3 changed files", or "HEAD abc123, clean".
    pub fn describe(&self) -> String {
        let head = &self.head[..self.head.len().min(7)];
        match self.changed.len() {
            0 => format!("HEAD {head}, clean"),
            1 => format!("HEAD {head} + 1 changed file"),
            n => format!("HEAD {head} + {n} changed files"),
        }
    }
}

/// Snapshot the working tree of `source` into a commit without touching it: the files go
/// through a private copy of the index (`GIT_INDEX_FILE`), so HEAD, the index, the stash list
/// and the files stay as they are. The commit's author, committer and dates are HEAD's
/// committer date and a fixed name, so the same tree on the same HEAD is always the same commit
/// (and finds the image built from it).
pub async fn snapshot(source: &Path, scratch: &Path) -> Result<Snapshot> {
    let head = git(source, &["rev-parse", "--verify", "HEAD^{commit}"]).await?;
    std::fs::create_dir_all(scratch)
        .with_context(|| format!("{}: cannot create", scratch.display()))?;
    let index = tempfile::NamedTempFile::new_in(scratch)
        .with_context(|| format!("{}: cannot create a file", scratch.display()))?;
    let real = git(
        source,
        &["rev-parse", "--path-format=absolute", "--git-path", "index"],
    )
    .await?;
    // A copy of the real index keeps its stat data: only files changed since are hashed.
    if std::fs::copy(&real, index.path()).is_err() {
        std::fs::remove_file(index.path()).ok();
    }
    let idx = index
        .path()
        .to_str()
        .ok_or_else(|| anyhow!("scratch path is not UTF-8: {}", scratch.display()))?;
    let env = [("GIT_INDEX_FILE", idx)];
    if !std::path::Path::new(idx).exists() {
        git_env(source, &["read-tree", &head], &env).await?;
    }
    git_env(source, &["add", "--all", "--", ":/"], &env).await?;
    let tree = git_env(source, &["write-tree"], &env).await?;
    let changed: Vec<String> = git(
        source,
        &[
            "diff-tree",
            "-r",
            "--name-only",
            "--no-renames",
            &head,
            &tree,
        ],
    )
    .await?
    .lines()
    .map(str::to_string)
    .collect();
    if changed.is_empty() {
        return Ok(Snapshot {
            commit: head.clone(),
            head,
            changed,
        });
    }
    let date = git(source, &["log", "-1", "--format=@%ct +0000", &head]).await?;
    let who = [
        ("GIT_AUTHOR_NAME", "kindred"),
        ("GIT_AUTHOR_EMAIL", "kindred@localhost"),
        ("GIT_AUTHOR_DATE", date.as_str()),
        ("GIT_COMMITTER_NAME", "kindred"),
        ("GIT_COMMITTER_EMAIL", "kindred@localhost"),
        ("GIT_COMMITTER_DATE", date.as_str()),
    ];
    let msg = "kindred: snapshot of the working tree";
    let commit = git_env(
        source,
        &["commit-tree", &tree, "-p", &head, "-m", msg],
        &who,
    )
    .await?;
    Ok(Snapshot {
        commit,
        head,
        changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, args: &[&str]) -> String {
        let o = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    #[tokio::test]
    async fn refs_prs_and_worktrees_leave_the_checkout_alone() {
        let t = tempfile::tempdir().unwrap();
        let origin = t.path().join("origin");
        std::fs::create_dir_all(&origin).unwrap();
        sh(&origin, &["init", "-q", "-b", "master"]);
        std::fs::write(
            origin.join("go.mod"),
            "module k8s.io/kubernetes\n\ngo 1.22\n",
        )
        .unwrap();
        sh(&origin, &["add", "."]);
        sh(&origin, &["commit", "-q", "-m", "base"]);
        let base = sh(&origin, &["rev-parse", "HEAD"]);
        // A PR: a commit only reachable from refs/pull/77523/head.
        sh(&origin, &["checkout", "-q", "-b", "fix"]);
        std::fs::write(origin.join("proxier.go"), "// fix\n").unwrap();
        sh(&origin, &["add", "."]);
        sh(&origin, &["commit", "-q", "-m", "fix"]);
        let pr = sh(&origin, &["rev-parse", "HEAD"]);
        sh(&origin, &["update-ref", "refs/pull/77523/head", &pr]);
        sh(&origin, &["checkout", "-q", "master"]);
        sh(&origin, &["branch", "-q", "-D", "fix"]);

        let src = t.path().join("kubernetes");
        let o = std::process::Command::new("git")
            .args([
                "clone",
                "-q",
                origin.to_str().unwrap(),
                src.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(o.status.success());
        check_source(&src).unwrap();
        assert!(check_source(t.path()).is_err());
        std::fs::write(src.join("local-edit.txt"), "uncommitted\n").unwrap();

        assert_eq!(resolve(&src, "master").await.unwrap(), base);
        assert_eq!(resolve(&src, &base[..10]).await.unwrap(), base);
        assert_eq!(resolve(&src, "pr/77523").await.unwrap(), pr);
        assert!(
            resolve(&src, "no-such-branch")
                .await
                .unwrap_err()
                .to_string()
                .contains("no such branch")
        );
        assert!(resolve(&src, "pr/1").await.is_err());

        let wt = t.path().join("state/worktrees/77523");
        let dir = worktree(&src, &pr, &wt).await.unwrap();
        assert!(dir.join("proxier.go").exists());
        // Again: reused. Then moved to another commit.
        worktree(&src, &pr, &wt).await.unwrap();
        worktree(&src, &base, &wt).await.unwrap();
        assert!(!wt.join("proxier.go").exists());
        // The user's checkout: same branch, same HEAD, the uncommitted file still there.
        assert_eq!(sh(&src, &["rev-parse", "--abbrev-ref", "HEAD"]), "master");
        assert_eq!(sh(&src, &["rev-parse", "HEAD"]), base);
        assert!(src.join("local-edit.txt").exists());
    }

    #[test]
    fn versions_are_spelled_as_kubernetes_spells_them() {
        let v = kube_version("v1.34.0-alpha.1-123-g0123456789abcd\n", "c").unwrap();
        assert_eq!(v.version, "v1.34.0-alpha.1.123+0123456789abcd");
        assert_eq!((v.major, v.minor), (1, 34));
        assert!(v.file(false).contains("KUBE_GIT_MINOR='34+'"));
        assert!(v.file(true).contains("KUBE_GIT_TREE_STATE='dirty'\nKUBE_GIT_VERSION='v1.34.0-alpha.1.123+0123456789abcd-dirty'"));
        let v = kube_version("v1.33.2-5-g0123456789abcd", "c").unwrap();
        assert_eq!(v.version, "v1.33.2-5+0123456789abcd");
        let v = kube_version("v1.33.2", "c").unwrap();
        assert_eq!((v.version.as_str(), v.minor), ("v1.33.2", 33));
        assert!(v.file(false).contains("KUBE_GIT_MINOR='33'\n"));
        assert!(kube_version("release-1.2", "c").is_none());
    }

    fn commit(dir: &Path, file: &str) -> String {
        std::fs::write(dir.join(file), file).unwrap();
        sh(dir, &["add", "."]);
        sh(dir, &["commit", "-q", "-m", file]);
        sh(dir, &["rev-parse", "HEAD"])
    }

    #[tokio::test]
    async fn merge_base_is_where_the_pr_branched_merged_or_not() {
        let t = tempfile::tempdir().unwrap();
        let origin = t.path().join("origin");
        std::fs::create_dir_all(&origin).unwrap();
        sh(&origin, &["init", "-q", "-b", "master"]);
        commit(&origin, "a");
        let b = commit(&origin, "b");
        sh(&origin, &["tag", "v1.34.0-alpha.1"]);
        sh(&origin, &["checkout", "-q", "-b", "fix"]);
        let pr = commit(&origin, "fix");
        sh(&origin, &["update-ref", "refs/pull/132456/head", &pr]);
        sh(&origin, &["checkout", "-q", "master"]);
        commit(&origin, "c");
        let clone = |name: &str| {
            let dst = t.path().join(name);
            let o = std::process::Command::new("git")
                .args([
                    "clone",
                    "-q",
                    origin.to_str().unwrap(),
                    dst.to_str().unwrap(),
                ])
                .output()
                .unwrap();
            assert!(o.status.success());
            dst
        };
        // Not merged yet: the merge base with the default branch.
        let src = clone("open");
        assert_eq!(default_branch(&src).await.unwrap(), "origin/master");
        let pr_sha = resolve(&src, "pr/132456").await.unwrap();
        assert_eq!(
            merge_base(&src, &pr_sha).await.unwrap(),
            (b.clone(), "origin/master".into())
        );
        // Merged (with a merge commit) and master moved on: still where it branched, not the
        // PR's own head.
        sh(
            &origin,
            &[
                "merge",
                "-q",
                "--no-ff",
                "-m",
                "Merge pull request #132456",
                "fix",
            ],
        );
        commit(&origin, "d");
        let src = clone("merged");
        let pr_sha = resolve(&src, "pr/132456").await.unwrap();
        assert_eq!(merge_base(&src, &pr_sha).await.unwrap().0, b);
        // Versions from the tags.
        let v = describe(&src, &pr_sha).await.unwrap().unwrap();
        assert!(v.version.starts_with("v1.34.0-alpha.1.1+"), "{v:?}");
        assert_eq!(
            describe(&origin.join(".."), &pr_sha).await.ok().flatten(),
            None
        );
    }

    /// Every file under `dir` but `.git`, with its bytes.
    fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.file_name().unwrap() == ".git" {
                    continue;
                }
                if p.is_dir() {
                    todo.push(p);
                } else {
                    out.push((p.clone(), std::fs::read(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn a_snapshot_holds_every_edit_and_touches_nothing() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("k");
        std::fs::create_dir_all(src.join("pkg/proxy")).unwrap();
        sh(&src, &["init", "-q", "-b", "master"]);
        std::fs::write(src.join("go.mod"), "module k8s.io/kubernetes\n").unwrap();
        std::fs::write(src.join(".gitignore"), "_output/\n").unwrap();
        std::fs::write(src.join("pkg/proxy/staged.go"), "v1\n").unwrap();
        std::fs::write(src.join("pkg/proxy/unstaged.go"), "v1\n").unwrap();
        sh(&src, &["add", "."]);
        sh(&src, &["commit", "-q", "-m", "base"]);
        let head = sh(&src, &["rev-parse", "HEAD"]);
        let scratch = t.path().join("scratch");
        // Clean: the snapshot is HEAD.
        let clean = snapshot(&src, &scratch).await.unwrap();
        assert_eq!(
            (clean.commit.as_str(), clean.changed.len()),
            (head.as_str(), 0)
        );
        assert_eq!(clean.describe(), format!("HEAD {}, clean", &head[..7]));
        // A stash entry, then staged, unstaged, untracked and ignored edits.
        std::fs::write(src.join("pkg/proxy/unstaged.go"), "stashed\n").unwrap();
        sh(&src, &["stash", "-q"]);
        std::fs::write(src.join("pkg/proxy/staged.go"), "v2 staged\n").unwrap();
        sh(&src, &["add", "pkg/proxy/staged.go"]);
        std::fs::write(src.join("pkg/proxy/unstaged.go"), "v2 unstaged\n").unwrap();
        std::fs::write(src.join("pkg/proxy/new.go"), "untracked\n").unwrap();
        std::fs::create_dir_all(src.join("_output")).unwrap();
        std::fs::write(src.join("_output/kube-proxy"), "ignored\n").unwrap();
        let status = sh(&src, &["status", "--porcelain=v2", "--untracked-files=all"]);
        let index = std::fs::read(src.join(".git/index")).unwrap();
        let stash = sh(&src, &["stash", "list"]);
        let before = files(&src);

        let snap = snapshot(&src, &scratch).await.unwrap();
        assert_eq!(
            std::fs::read(src.join(".git/index")).unwrap(),
            index,
            "index"
        );
        assert_eq!(sh(&src, &["rev-parse", "HEAD"]), head);
        assert_eq!(sh(&src, &["stash", "list"]), stash);
        assert_eq!(files(&src), before, "files");
        assert_eq!(
            sh(&src, &["status", "--porcelain=v2", "--untracked-files=all"]),
            status
        );
        assert_eq!(
            std::fs::read_dir(&scratch).unwrap().count(),
            0,
            "scratch index removed"
        );

        assert_eq!(snap.head, head);
        assert_eq!(
            snap.changed,
            [
                "pkg/proxy/new.go",
                "pkg/proxy/staged.go",
                "pkg/proxy/unstaged.go"
            ]
        );
        assert_eq!(
            snap.describe(),
            format!("HEAD {} + 3 changed files", &head[..7])
        );
        let show = |f: &str| sh(&src, &["show", &format!("{}:{f}", snap.commit)]);
        assert_eq!(show("pkg/proxy/staged.go"), "v2 staged");
        assert_eq!(show("pkg/proxy/unstaged.go"), "v2 unstaged");
        assert_eq!(show("pkg/proxy/new.go"), "untracked");
        assert!(
            sh(&src, &["ls-tree", "-r", "--name-only", &snap.commit])
                .lines()
                .all(|l| !l.starts_with("_output"))
        );
        assert_eq!(sh(&src, &["rev-parse", &format!("{}^", snap.commit)]), head);
        // The same tree is the same commit; an edit is another.
        assert_eq!(snapshot(&src, &scratch).await.unwrap().commit, snap.commit);
        std::fs::write(src.join("pkg/proxy/new.go"), "edited\n").unwrap();
        let edited = snapshot(&src, &scratch).await.unwrap();
        assert_ne!(edited.commit, snap.commit);
        // `worktree` resolves to HEAD (what doctor and merge-base use).
        assert_eq!(resolve(&src, "worktree").await.unwrap(), head);
    }
}
