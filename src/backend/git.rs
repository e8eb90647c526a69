//! Git, through its CLI with argv only: resolve a side's ref to a commit and check it out in a
//! worktree of kindred's own, never touching the user's checkout.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use tokio::process::Command;

/// How long one git command may take (a fetch of a large repository included).
pub const GIT_LIMIT: Duration = Duration::from_secs(600);

/// Run git in `dir`: its exit status and output, or an error when it cannot run or does not
/// answer within [`GIT_LIMIT`].
async fn run(dir: &Path, args: &[&str]) -> Result<std::process::Output> {
    let child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(GIT_LIMIT, child)
        .await
        .map_err(|_| {
            anyhow!(
                "git {} in {}: no answer after {}s",
                args.join(" "),
                dir.display(),
                GIT_LIMIT.as_secs()
            )
        })?
        .map_err(|e| anyhow!("running git: {e}"))
}

async fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = run(dir, args).await?;
    if !out.status.success() {
        bail!(
            "git {} in {}: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
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

/// The commit a ref names. `pr/NNNNN` is fetched from `origin` (refs/pull/NNNNN/head) first.
pub async fn resolve(source: &Path, git_ref: &str) -> Result<String> {
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
    /// The file `KUBE_GIT_VERSION_FILE` points the Kubernetes build at.
    pub fn file(&self) -> String {
        let plus = if self.version.contains('+') { "+" } else { "" };
        format!(
            "KUBE_GIT_COMMIT='{}'\nKUBE_GIT_TREE_STATE='clean'\nKUBE_GIT_VERSION='{}'\nKUBE_GIT_MAJOR='{}'\nKUBE_GIT_MINOR='{}{plus}'\n",
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

/// A detached worktree of `source` at `sha` in `dir` (reused when it is already there).
pub async fn worktree(source: &Path, sha: &str, dir: &Path) -> Result<PathBuf> {
    if dir.join(".git").exists() {
        if let Ok(head) = git(dir, &["rev-parse", "HEAD"]).await
            && head == sha
        {
            return Ok(dir.to_path_buf());
        }
        let d = dir
            .to_str()
            .ok_or_else(|| anyhow!("worktree path is not UTF-8"))?;
        git(source, &["worktree", "remove", "--force", d]).await?;
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let d = dir
        .to_str()
        .ok_or_else(|| anyhow!("worktree path is not UTF-8"))?;
    git(source, &["worktree", "prune"]).await?;
    git(source, &["worktree", "add", "--detach", "--force", d, sha]).await?;
    Ok(dir.to_path_buf())
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
        assert!(v.file().contains("KUBE_GIT_MINOR='34+'"));
        let v = kube_version("v1.33.2-5-g0123456789abcd", "c").unwrap();
        assert_eq!(v.version, "v1.33.2-5+0123456789abcd");
        let v = kube_version("v1.33.2", "c").unwrap();
        assert_eq!((v.version.as_str(), v.minor), ("v1.33.2", 33));
        assert!(v.file().contains("KUBE_GIT_MINOR='33'\n"));
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
}
