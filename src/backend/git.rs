//! Git, through its CLI with argv only: resolve a side's ref to a commit and check it out in a
//! worktree of kindred's own, never touching the user's checkout.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use tokio::process::Command;

async fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| anyhow!("running git: {e}"))?;
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
}
