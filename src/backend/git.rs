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
    let cmd = command(dir, args, env);
    let what = format!("git {} in {}", args.join(" "), dir.display());
    let out = capture(cmd, &what, MAX_GIT_OUTPUT, Overflow::Drain, GIT_LIMIT)
        .await
        .map_err(|e| anyhow!("running git: {e}"))??;
    if out.stdout_cut {
        bail!("{what}: output longer than {} MiB", MAX_GIT_OUTPUT >> 20);
    }
    Ok(out)
}

/// The variables with which git finds a repository, its index and objects elsewhere than in the
/// directory it runs in (git's own `local_repo_env` list): set around kindred (a git hook, an
/// editor's terminal), they would point its calls at another repository.
const REPO_ENV: &[&str] = &[
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_OBJECT_DIRECTORY",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_GRAFT_FILE",
    "GIT_INDEX_FILE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_REPLACE_REF_BASE",
    "GIT_PREFIX",
    "GIT_SHALLOW_FILE",
    "GIT_COMMON_DIR",
];

/// `git -C DIR ARGS` with none of the inherited [`REPO_ENV`] variables, then `env`'s own.
fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new("git");
    for v in REPO_ENV {
        cmd.env_remove(v);
    }
    cmd.arg("-C").arg(dir).args(args).envs(env.iter().copied());
    cmd
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

/// Check that `source` is a Kubernetes checkout (what `kind build node-image` needs) and the top
/// level of its git repository: a directory inside another repository would have kindred
/// snapshot, fetch into and add worktrees to that other repository.
pub async fn check_source(source: &Path) -> Result<()> {
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
    let top = git(source, &["rev-parse", "--show-toplevel"])
        .await
        .map_err(|_| {
            anyhow!(
                "{}: not a git checkout: `source` must be a clone of Kubernetes (git clone https://github.com/kubernetes/kubernetes)",
                source.display()
            )
        })?;
    let real = source
        .canonicalize()
        .with_context(|| format!("{}: cannot resolve", source.display()))?;
    if Path::new(&top) != real {
        bail!(
            "{}: inside the git repository {top}, not its top level: `source` must be the top directory of a Kubernetes clone (kindred would snapshot and fetch into {top})",
            source.display()
        );
    }
    Ok(())
}

/// The repository a PR number belongs to: `pr/N` is fetched from the remote whose URL is this.
pub const KUBERNETES: &str = "github.com/kubernetes/kubernetes";

/// Whether a remote URL, as configured, is kubernetes/kubernetes on GitHub: https (or http,
/// git), scp-like ssh (`git@github.com:kubernetes/kubernetes`) or `ssh://`, with or without a
/// user, a port, `.git` and a trailing slash; GitHub's names are case-insensitive.
pub fn is_kubernetes_url(url: &str) -> bool {
    let u = url.trim().to_ascii_lowercase();
    let u = u.trim_end_matches('/');
    let u = u.strip_suffix(".git").unwrap_or(u).trim_end_matches('/');
    let (host, path) = match u.split_once("://") {
        Some((scheme, rest)) => {
            if !matches!(
                scheme,
                "https" | "http" | "ssh" | "git" | "git+ssh" | "ssh+git"
            ) {
                return false;
            }
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let host = host.split_once(':').map_or(host, |(h, _)| h);
            (host, path)
        }
        None => {
            // scp-like: [user@]host:path (a ':' before any '/').
            let Some((authority, path)) = u.split_once(':') else {
                return false;
            };
            if authority.contains('/') {
                return false;
            }
            (
                authority.rsplit_once('@').map_or(authority, |(_, h)| h),
                path,
            )
        }
    };
    matches!(host, "github.com" | "www.github.com")
        && path.trim_start_matches('/') == "kubernetes/kubernetes"
}

/// How the remote for PRs and the default branch was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chosen {
    /// Its configured URL is kubernetes/kubernetes.
    Url,
    /// The scenario's `remote:` names it.
    Scenario,
}

/// The remote `pr/N` is fetched from and whose default branch `merge-base` is taken against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub name: String,
    /// As configured (`remote.NAME.url`), before any `url.*.insteadOf` rewriting.
    pub url: String,
    pub chosen: Chosen,
}

impl Remote {
    /// "upstream (https://github.com/kubernetes/kubernetes.git)", and why it is the one.
    pub fn describe(&self) -> String {
        let why = match self.chosen {
            Chosen::Url => "its URL is kubernetes/kubernetes",
            Chosen::Scenario => "named by the scenario's `remote:`",
        };
        format!("remote {} ({}): {why}", clean(&self.name), clean(&self.url))
    }
}

/// Text from the user's git config, without control characters (it reaches the screen).
fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// Why no remote could be used for PRs and the default branch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "{checkout}: no remote is kubernetes/kubernetes ({}): add it (`git -C {checkout} remote add upstream https://github.com/kubernetes/kubernetes.git`), or name the remote to use with `remote:` in the scenario",
        found_list(.found)
    )]
    NoneFits {
        checkout: String,
        found: Vec<(String, String)>,
    },
    #[error(
        "{checkout}: `{wanted}` is not a remote there ({}): name one of them, or add it (`git -C {checkout} remote add {wanted} URL`)",
        found_list(.found)
    )]
    NoSuch {
        checkout: String,
        wanted: String,
        found: Vec<(String, String)>,
    },
}

fn found_list(found: &[(String, String)]) -> String {
    if found.is_empty() {
        return "it has no remotes".into();
    }
    let list: Vec<String> = found
        .iter()
        .map(|(n, u)| format!("{} {}", clean(n), clean(u)))
        .collect();
    format!("its remotes: {}", list.join(", "))
}

/// The remotes of `source` with their URLs as configured (`remote.NAME.url`, the first one of
/// a remote with several), by name: not as `git remote -v` shows them, after `insteadOf`.
pub async fn remotes(source: &Path) -> Result<Vec<(String, String)>> {
    let out = run(
        source,
        &["config", "--null", "--get-regexp", r"^remote\..*\.url$"],
    )
    .await?;
    // Exit 1: no such key (no remotes).
    if !out.status.success() && out.status.code() != Some(1) {
        bail!(
            "git config --get-regexp remote.*.url in {}: {}",
            source.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut found: Vec<(String, String)> = Vec::new();
    for entry in text.split('\0').filter(|e| !e.is_empty()) {
        let (key, url) = entry.split_once('\n').unwrap_or((entry, ""));
        let Some(name) = key
            .strip_prefix("remote.")
            .and_then(|k| k.strip_suffix(".url"))
        else {
            continue;
        };
        if !found.iter().any(|(n, _)| n == name) {
            found.push((name.to_string(), url.to_string()));
        }
    }
    found.sort();
    Ok(found)
}

/// The remote for PRs and the default branch: `wanted` (the scenario's `remote:`) when given,
/// else the one whose configured URL is kubernetes/kubernetes (of several, `upstream`, then
/// `origin`, then the first by name).
pub async fn remote(source: &Path, wanted: Option<&str>) -> Result<Remote> {
    let found = remotes(source).await?;
    let src = source.display().to_string();
    if let Some(w) = wanted {
        return match found.iter().find(|(n, _)| n == w) {
            Some((name, url)) => Ok(Remote {
                name: name.clone(),
                url: url.clone(),
                chosen: Chosen::Scenario,
            }),
            None => Err(RemoteError::NoSuch {
                checkout: src,
                wanted: w.to_string(),
                found,
            }
            .into()),
        };
    }
    let fits: Vec<&(String, String)> = found.iter().filter(|(_, u)| is_kubernetes_url(u)).collect();
    let pick = fits
        .iter()
        .find(|(n, _)| n == "upstream")
        .or_else(|| fits.iter().find(|(n, _)| n == "origin"))
        .or_else(|| fits.first());
    match pick {
        Some((name, url)) => Ok(Remote {
            name: name.clone(),
            url: url.clone(),
            chosen: Chosen::Url,
        }),
        None => Err(RemoteError::NoneFits {
            checkout: src,
            found,
        }
        .into()),
    }
}

/// An error of [`remote`] (through [`resolve`] or [`merge_base`]) for `side` of `sc`, at the
/// scenario's line: the side's `remote:` when it names one, else its `ref:` (the ref that needs
/// a remote). Other errors pass as they are.
pub fn remote_error_at(
    sc: &crate::scenario::Scenario,
    side: crate::model::Side,
    e: anyhow::Error,
) -> anyhow::Error {
    if e.downcast_ref::<RemoteError>().is_none() {
        return e;
    }
    let field = if sc.side(side).remote.is_some() {
        "remote"
    } else {
        "ref"
    };
    sc.side_field_error(side, field, format!("{e:#}")).into()
}

/// The commit a ref names. `pr/NNNNN` is fetched (refs/pull/NNNNN/head) from the remote
/// [`remote`] picks (`wanted`: the scenario's `remote:`) first; `worktree` is the checkout's
/// HEAD (what its working tree is based on: see [`snapshot`]).
pub async fn resolve(source: &Path, git_ref: &str, wanted: Option<&str>) -> Result<String> {
    if git_ref == crate::scenario::WORKTREE {
        return git(source, &["rev-parse", "--verify", "HEAD^{commit}"]).await;
    }
    if let Some(n) = git_ref.strip_prefix("pr/") {
        if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
            bail!("{git_ref}: expected pr/NUMBER");
        }
        let remote = remote(source, wanted).await?;
        return fetch_pr(source, n, &remote).await;
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

/// The commit of PR `n` at `remote`, fetched into a ref of this call's own
/// (`refs/kindred/fetch/PID-N`, deleted once read) and never through `FETCH_HEAD`: two fetches at
/// once (both sides, a doctor beside a build, the user's own `git fetch`) each get their own
/// commit.
async fn fetch_pr(source: &Path, n: &str, remote: &Remote) -> Result<String> {
    static FETCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = FETCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let private = format!("refs/kindred/fetch/{}-{seq}", std::process::id());
    let spec = format!("+refs/pull/{n}/head:{private}");
    let fetch = [
        "fetch",
        "--quiet",
        "--no-write-fetch-head",
        remote.name.as_str(),
        &spec,
    ];
    let fetched = git(source, &fetch).await;
    let sha = match fetched {
        Ok(_) => {
            git(
                source,
                &["rev-parse", "--verify", &format!("{private}^{{commit}}")],
            )
            .await
        }
        Err(e) => Err(e.context(format!("pr/{n} from {}", remote.describe()))),
    };
    // Gone whatever happened (a fetch that failed midway may have written it).
    let _ = run(source, &["update-ref", "-d", &private]).await;
    sha
}

/// `remote`'s default branch, e.g. `upstream/master` (from `upstream/HEAD`, else the first of
/// `upstream/master` and `upstream/main` that exists).
pub async fn default_branch(source: &Path, remote: &Remote) -> Result<String> {
    let r = &remote.name;
    let head = format!("refs/remotes/{r}/HEAD");
    if let Ok(b) = git(source, &["symbolic-ref", "--quiet", "--short", &head]).await
        && !b.is_empty()
    {
        return Ok(b);
    }
    for b in [format!("{r}/master"), format!("{r}/main")] {
        let full = format!("refs/remotes/{b}");
        if run(source, &["rev-parse", "--verify", "--quiet", &full])
            .await?
            .status
            .success()
        {
            return Ok(b);
        }
    }
    bail!(
        "{}: {} has no default branch ({r}/HEAD, {r}/master, {r}/main): `git fetch {r}` in the source",
        source.display(),
        remote.describe()
    )
}

/// Where the PR at `pr` branched from the default branch of `remote` (see [`remote`]): the
/// merge base of the two (for a PR already merged into it, the merge base with the branch as it
/// was just before the merge). Returns the commit and the branch's name.
pub async fn merge_base(source: &Path, pr: &str, remote: &Remote) -> Result<(String, String)> {
    let branch = default_branch(source, remote).await?;
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

/// The file in a worktree's administrative directory (`.git/worktrees/ID/`) that says kindred
/// made that worktree; it holds the worktree's path.
const MARKER: &str = "kindred-worktree";

/// What is at a worktree path, found without running anything there.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// Nothing, or an empty directory: kindred makes its worktree there.
    Nothing,
    /// kindred's own worktree, of the repository whose git directory is `common`.
    Ours { common: PathBuf },
}

/// The refusal to work in `dir`: what it is, and the fix.
fn not_ours(dir: &Path, what: &str) -> anyhow::Error {
    anyhow!(
        "{}: {what}, not a worktree kindred made: kindred works only in its own and leaves this as it is; move it away or remove it, and kindred makes its own there",
        dir.display()
    )
}

/// Whether `dir` is a worktree kindred made: a real directory (not a symlink) whose `.git` file
/// leads to an administrative directory holding kindred's marker with this very path.
fn inspect(dir: &Path) -> Result<Found> {
    let meta = match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Nothing),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", dir.display())),
        Ok(m) => m,
    };
    if meta.file_type().is_symlink() {
        let to = std::fs::read_link(dir).unwrap_or_default();
        return Err(not_ours(dir, &format!("a symlink (to {})", to.display())));
    }
    if !meta.is_dir() {
        return Err(not_ours(dir, "not a directory"));
    }
    let mut entries =
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot read", dir.display()))?;
    if entries.next().is_none() {
        return Ok(Found::Nothing);
    }
    let dotgit = dir.join(".git");
    let pointer = match std::fs::symlink_metadata(&dotgit) {
        Ok(m) if m.is_file() => std::fs::read_to_string(&dotgit).unwrap_or_default(),
        Ok(m) if m.is_dir() => return Err(not_ours(dir, "a git clone of its own")),
        _ => return Err(not_ours(dir, "not a git worktree")),
    };
    let Some(admin) = pointer.trim_end().strip_prefix("gitdir: ") else {
        return Err(not_ours(dir, "its .git names no git directory"));
    };
    let admin = dir.join(admin);
    let real = dir
        .canonicalize()
        .with_context(|| format!("{}: cannot resolve", dir.display()))?;
    let marked = std::fs::read_to_string(admin.join(MARKER))
        .is_ok_and(|m| Path::new(m.trim_end_matches('\n')) == real);
    if !marked {
        return Err(not_ours(
            dir,
            "a git worktree without kindred's mark (or whose repository is gone; one an older kindred made has none either: `git worktree remove --force` it)",
        ));
    }
    let common = std::fs::read_to_string(admin.join("commondir"))
        .ok()
        .and_then(|c| admin.join(c.trim_end()).canonicalize().ok())
        .ok_or_else(|| not_ours(dir, "a worktree whose repository cannot be found"))?;
    Ok(Found::Ours { common })
}

/// The git directory all of `source`'s worktrees share, resolved.
async fn common_dir(source: &Path) -> Result<PathBuf> {
    let c = git(
        source,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    )
    .await?;
    std::fs::canonicalize(&c).with_context(|| format!("{c}: cannot resolve"))
}

/// A detached worktree of `source` at `sha` in `dir`, a worktree kindred made there itself (see
/// [`inspect`]): anything else at `dir` (a symlink, a clone, someone's worktree) is refused and
/// left as it is. kindred's worktree is moved to `sha` in place (only the files that differ are
/// rewritten, so the Kubernetes build's caches stay warm); its untracked files go, ignored ones
/// (build output) stay. One of another repository (`source` changed) is removed there by its
/// path and made again. No other worktree of any repository is touched (nothing is pruned).
pub async fn worktree(source: &Path, sha: &str, dir: &Path) -> Result<PathBuf> {
    let d = dir
        .to_str()
        .ok_or_else(|| anyhow!("worktree path is not UTF-8: {}", dir.display()))?;
    let mine = common_dir(source).await?;
    match inspect(dir)? {
        Found::Ours { common } if common == mine => {
            match git(dir, &["rev-parse", "HEAD"]).await {
                Ok(head) if head == sha => {}
                _ => {
                    git(dir, &["checkout", "--quiet", "--force", "--detach", sha]).await?;
                    git(dir, &["clean", "--quiet", "-fd"]).await?;
                }
            }
            return Ok(dir.to_path_buf());
        }
        Found::Ours { common } => {
            git(&common, &["worktree", "remove", "--force", d])
                .await
                .with_context(|| {
                    format!(
                        "{d} is kindred's worktree of another repository ({}): removing it there",
                        common.display()
                    )
                })?;
        }
        Found::Nothing => {}
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create", parent.display()))?;
    }
    // `--force`: this path may still be registered from a worktree deleted by hand. Marked
    // before the (long) checkout, so an interrupted one is still recognized as kindred's.
    let add = [
        "worktree",
        "add",
        "--detach",
        "--no-checkout",
        "--force",
        d,
        sha,
    ];
    git(source, &add).await?;
    let admin = git(dir, &["rev-parse", "--path-format=absolute", "--git-dir"]).await?;
    let real = dir
        .canonicalize()
        .with_context(|| format!("{d}: cannot resolve"))?;
    let marker = Path::new(&admin).join(MARKER);
    std::fs::write(&marker, format!("{}\n", real.display()))
        .with_context(|| format!("{}: cannot write", marker.display()))?;
    git(dir, &["reset", "--quiet", "--hard", sha]).await?;
    Ok(dir.to_path_buf())
}

/// The commit checked out in `dir`.
pub async fn head(dir: &Path) -> Result<String> {
    git(dir, &["rev-parse", "--verify", "HEAD^{commit}"]).await
}

/// An exclusive lock on one worktree, held while this lives: one kindred process at a time
/// checks out and builds there. The lock file (beside the worktree) names its holder.
#[derive(Debug)]
pub struct WorktreeLock {
    file: std::fs::File,
}

impl Drop for WorktreeLock {
    /// The holder's name goes before the lock does (with the file).
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}

/// Lock `dir` for `what` (e.g. "building pr from fix"). When another process holds it, `say`
/// is told who, once, and this waits (cancelled by dropping it) until that one is done.
pub async fn lock_worktree(
    dir: &Path,
    what: &str,
    say: impl FnOnce(String),
) -> Result<WorktreeLock> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let name = dir
        .file_name()
        .ok_or_else(|| anyhow!("{}: no worktree name", dir.display()))?;
    let path = dir.with_file_name(format!("{}.lock", name.to_string_lossy()));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create", parent.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    let mut say = Some(say);
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                if let Some(say) = say.take() {
                    let mut held = String::new();
                    let _ = (&file).take(200).read_to_string(&mut held);
                    let held: String = held.trim().chars().filter(|c| !c.is_control()).collect();
                    let who = if held.is_empty() {
                        "another process".to_string()
                    } else {
                        held
                    };
                    say(format!(
                        "{} is in use by {who}: waiting until it is done (lock {})",
                        dir.display(),
                        path.display()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("{}: cannot lock", path.display()));
            }
        }
    }
    file.set_len(0)
        .and_then(|()| {
            (&file).write_all(format!("kindred pid {}, {what}\n", std::process::id()).as_bytes())
        })
        .with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(WorktreeLock { file })
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

/// `from` copied to `to` with `from`'s modification time.
fn copy_index(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::copy(from, to)?;
    let mtime = std::fs::metadata(from)?.modified()?;
    std::fs::File::options()
        .write(true)
        .open(to)?
        .set_modified(mtime)
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
    // A copy of the real index keeps its stat data: only files changed since are hashed. It
    // keeps the index's mtime too: git re-reads an entry whose file is not older than the index
    // (racily clean), and a copy dated now would hide an edit of the same size made in the
    // second the index was written.
    if copy_index(Path::new(&real), index.path()).is_err() {
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

/// Whether `ancestor` is an ancestor of `descendant` (or the same commit).
pub async fn is_ancestor(source: &Path, ancestor: &str, descendant: &str) -> Result<bool> {
    let args = ["merge-base", "--is-ancestor", ancestor, descendant];
    let out = run(source, &args).await?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => bail!(
            "git {} in {}: {}",
            args.join(" "),
            source.display(),
            out.stderr_text()
        ),
    }
}

/// The first line of `sha`'s message.
pub async fn subject(source: &Path, sha: &str) -> Result<String> {
    git(
        source,
        &["log", "-1", "--no-show-signature", "--format=%s", sha, "--"],
    )
    .await
}

/// The commits of `from..to` (reachable from `to`, not from `from`), oldest first, each with
/// its subject: only those on `to`'s first-parent chain when `first_parent`, else every one
/// (parents before children).
pub async fn commits(
    source: &Path,
    from: &str,
    to: &str,
    first_parent: bool,
) -> Result<Vec<(String, String)>> {
    let range = format!("{from}..{to}");
    let mut args = vec![
        "log",
        "--no-show-signature",
        "--no-color",
        "--format=%H%x00%s",
        "--reverse",
        "--topo-order",
    ];
    if first_parent {
        args.push("--first-parent");
    }
    args.extend([range.as_str(), "--"]);
    let text = git(source, &args).await?;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.split_once('\0')
                .map(|(sha, subject)| (sha.to_string(), subject.to_string()))
                .ok_or_else(|| anyhow!("git log {range} in {}: odd line {l:?}", source.display()))
        })
        .collect()
}

/// Every file a commit of `from..to`'s first-parent chain changes against its first parent
/// (a merge: all that it brings in), each once, the oldest commit's first. Renames are a
/// deletion and an addition.
pub async fn changed_files(source: &Path, from: &str, to: &str) -> Result<Vec<String>> {
    let range = format!("{from}..{to}");
    let text = git(
        source,
        &[
            "log",
            "--no-show-signature",
            "--no-color",
            "--first-parent",
            "--diff-merges=first-parent",
            "--reverse",
            "--no-renames",
            "--name-only",
            "--format=",
            "-z",
            &range,
            "--",
        ],
    )
    .await?;
    let mut seen = std::collections::HashSet::new();
    Ok(text
        .split(['\0', '\n'])
        .filter(|f| !f.is_empty() && seen.insert(f.to_string()))
        .map(str::to_string)
        .collect())
}

/// The Go files of `commit` (tests, `_test.go`, left out) that name one of `import_paths` as a
/// string (`"k8s.io/kubernetes/pkg/proxy"`, an import), read with `git grep` (no checkout):
/// (file, import path) pairs. A mention in a comment counts too, which only makes a package
/// look more widely used.
pub async fn go_importers(
    source: &Path,
    commit: &str,
    import_paths: &[String],
) -> Result<Vec<(String, String)>> {
    if import_paths.is_empty() {
        return Ok(Vec::new());
    }
    let quoted: Vec<String> = import_paths.iter().map(|p| format!("\"{p}\"")).collect();
    // The user's grep.lineNumber and grep.column would add fields to each line.
    let mut args = vec![
        "grep",
        "-o",
        "-z",
        "-F",
        "-I",
        "--no-color",
        "--no-textconv",
        "--no-line-number",
        "--no-column",
    ];
    for q in &quoted {
        args.extend(["-e", q.as_str()]);
    }
    args.extend([commit, "--", "*.go", ":!:*_test.go"]);
    let out = run(source, &args).await?;
    // Exit 1: nothing matched.
    if !out.status.success() && out.status.code() != Some(1) {
        bail!(
            "git grep (imports of {} packages) at {commit} in {}: {}",
            import_paths.len(),
            source.display(),
            out.stderr_text()
        );
    }
    let prefix = format!("{commit}:");
    let text = String::from_utf8_lossy(&out.stdout);
    let parse = |l: &str| {
        let (name, found) = l.split_once('\0')?;
        let file = name.strip_prefix(&prefix)?;
        let path = found.strip_prefix('"')?.strip_suffix('"')?;
        Some((file.to_string(), path.to_string()))
    };
    text.lines()
        .map(|l| {
            parse(l).ok_or_else(|| {
                anyhow!(
                    "git grep at {commit} in {}: a line not FILE NUL \"IMPORT\": {l:?}",
                    source.display()
                )
            })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sh(dir: &Path, args: &[&str]) -> String {
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

    /// A clone of `from` into `dst` as kubernetes/kubernetes is cloned (its `origin` is
    /// `https://github.com/kubernetes/kubernetes.git`), that URL redirected to `from` by the
    /// clone's `url.FROM.insteadOf`, so that fetches work offline.
    pub(super) fn k8s_clone(from: &Path, dst: &Path) {
        let o = std::process::Command::new("git")
            .args(["clone", "-q", "-c"])
            .arg(format!("url.{}.insteadOf={K8S_URL}", from.display()))
            .arg(K8S_URL)
            .arg(dst)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    pub(super) const K8S_URL: &str = "https://github.com/kubernetes/kubernetes.git";

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
        k8s_clone(&origin, &src);
        check_source(&src).await.unwrap();
        assert!(check_source(t.path()).await.is_err());
        std::fs::write(src.join("local-edit.txt"), "uncommitted\n").unwrap();

        assert_eq!(resolve(&src, "master", None).await.unwrap(), base);
        assert_eq!(resolve(&src, &base[..10], None).await.unwrap(), base);
        assert_eq!(resolve(&src, "pr/77523", None).await.unwrap(), pr);
        assert!(
            resolve(&src, "no-such-branch", None)
                .await
                .unwrap_err()
                .to_string()
                .contains("no such branch")
        );
        assert!(resolve(&src, "pr/1", None).await.is_err());

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
            k8s_clone(&origin, &dst);
            dst
        };
        // Not merged yet: the merge base with the default branch.
        let src = clone("open");
        let origin_remote = remote(&src, None).await.unwrap();
        assert_eq!(
            default_branch(&src, &origin_remote).await.unwrap(),
            "origin/master"
        );
        let pr_sha = resolve(&src, "pr/132456", None).await.unwrap();
        assert_eq!(
            merge_base(&src, &pr_sha, &origin_remote).await.unwrap(),
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
        let pr_sha = resolve(&src, "pr/132456", None).await.unwrap();
        let origin_remote = remote(&src, None).await.unwrap();
        assert_eq!(
            merge_base(&src, &pr_sha, &origin_remote).await.unwrap().0,
            b
        );
        // Versions from the tags.
        let v = describe(&src, &pr_sha).await.unwrap().unwrap();
        assert!(v.version.starts_with("v1.34.0-alpha.1.1+"), "{v:?}");
        assert_eq!(
            describe(&origin.join(".."), &pr_sha).await.ok().flatten(),
            None
        );
    }

    #[test]
    fn kubernetes_urls_in_every_spelling() {
        for u in [
            "https://github.com/kubernetes/kubernetes",
            "https://github.com/kubernetes/kubernetes.git",
            "https://github.com/kubernetes/kubernetes/",
            "https://github.com/kubernetes/kubernetes.git/",
            "https://me@github.com/Kubernetes/Kubernetes.git",
            "http://github.com/kubernetes/kubernetes",
            "git@github.com:kubernetes/kubernetes.git",
            "git@github.com:kubernetes/kubernetes",
            "git@github.com:kubernetes/kubernetes/",
            "ssh://git@github.com/kubernetes/kubernetes.git",
            "ssh://git@github.com:22/kubernetes/kubernetes",
            "git://github.com/kubernetes/kubernetes.git",
            " https://github.com/kubernetes/kubernetes.git\n",
        ] {
            assert!(is_kubernetes_url(u), "{u}");
        }
        for u in [
            "https://github.com/me/kubernetes.git",
            "git@github.com:me/kubernetes.git",
            "https://github.com/kubernetes/kubernetes-sigs",
            "https://github.com/kubernetes/kubernetes/pull/1",
            "https://gitlab.com/kubernetes/kubernetes.git",
            "https://github.com.evil.example/kubernetes/kubernetes",
            "/home/me/src/kubernetes",
            "../kubernetes",
            "file:///srv/github.com/kubernetes/kubernetes",
            "",
        ] {
            assert!(!is_kubernetes_url(u), "{u}");
        }
    }

    /// A contributor's layout: `origin` their fork (no `refs/pull`, a stale master),
    /// `upstream` kubernetes/kubernetes, that URL redirected to a local bare repository with
    /// `url.LOCAL.insteadOf` (so `git remote -v` shows the local path, the configuration the
    /// GitHub URL).
    #[tokio::test]
    async fn a_fork_as_origin_takes_prs_and_merge_base_from_upstream() {
        let t = tempfile::tempdir().unwrap();
        let work = t.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        sh(&work, &["init", "-q", "-b", "master"]);
        std::fs::write(work.join("go.mod"), "module k8s.io/kubernetes\n").unwrap();
        sh(&work, &["add", "."]);
        sh(&work, &["commit", "-q", "-m", "a"]);
        let a = sh(&work, &["rev-parse", "HEAD"]);
        // The fork: kubernetes/kubernetes as it was at `a`, then never synced; no refs/pull.
        let fork = t.path().join("fork.git");
        sh(
            t.path(),
            &[
                "clone",
                "-q",
                "--bare",
                work.to_str().unwrap(),
                fork.to_str().unwrap(),
            ],
        );
        let b = commit(&work, "b");
        sh(&work, &["checkout", "-q", "-b", "fix"]);
        let pr = commit(&work, "fix");
        sh(&work, &["update-ref", "refs/pull/132456/head", &pr]);
        sh(&work, &["checkout", "-q", "master"]);
        commit(&work, "c");
        sh(&work, &["branch", "-q", "-D", "fix"]);
        let upstream = t.path().join("kubernetes.git");
        sh(
            t.path(),
            &[
                "clone",
                "-q",
                "--mirror",
                work.to_str().unwrap(),
                upstream.to_str().unwrap(),
            ],
        );

        let src = t.path().join("src");
        sh(
            t.path(),
            &["clone", "-q", fork.to_str().unwrap(), src.to_str().unwrap()],
        );
        let url = "git@github.com:kubernetes/kubernetes";
        sh(&src, &["remote", "add", "upstream", url]);
        let redirect = format!("url.{}.insteadOf", upstream.display());
        sh(&src, &["config", &redirect, url]);
        sh(&src, &["fetch", "-q", "upstream"]);
        // What `git remote -v` shows is the rewritten URL: the match is on the configured one.
        assert!(!sh(&src, &["remote", "-v"]).contains("github.com"));

        let r = remote(&src, None).await.unwrap();
        assert_eq!(
            (r.name.as_str(), r.url.as_str(), r.chosen),
            ("upstream", url, Chosen::Url)
        );
        assert!(
            r.describe()
                .contains("remote upstream (git@github.com:kubernetes/kubernetes)")
        );
        assert_eq!(resolve(&src, "pr/132456", None).await.unwrap(), pr);
        assert_eq!(
            merge_base(&src, &pr, &r).await.unwrap(),
            (b.clone(), "upstream/master".to_string())
        );
        // The fork's stale master would have given `a`.
        assert_eq!(sh(&src, &["merge-base", &pr, "origin/master"]), a);

        // The scenario names the fork: used, and its missing refs/pull said with its name.
        let o = remote(&src, Some("origin")).await.unwrap();
        assert_eq!((o.name.as_str(), o.chosen), ("origin", Chosen::Scenario));
        let e = format!(
            "{:#}",
            resolve(&src, "pr/132456", Some("origin"))
                .await
                .unwrap_err()
        );
        assert!(e.contains("pr/132456 from remote origin"), "{e}");
        // A remote that is not there: the remotes found, and the fix.
        let e = remote(&src, Some("k8s")).await.unwrap_err();
        let e = e.downcast::<RemoteError>().unwrap().to_string();
        assert!(e.contains("`k8s` is not a remote there"), "{e}");
        assert!(
            e.contains(&format!(
                "its remotes: origin {}, upstream {url}",
                fork.display()
            )),
            "{e}"
        );
        // No remote is kubernetes/kubernetes: said, with the remotes and the fix.
        sh(&src, &["remote", "remove", "upstream"]);
        let e = format!("{:#}", resolve(&src, "pr/132456", None).await.unwrap_err());
        assert!(e.contains("no remote is kubernetes/kubernetes"), "{e}");
        assert!(
            e.contains(&format!("its remotes: origin {}", fork.display())),
            "{e}"
        );
        assert!(
            e.contains("remote add upstream https://github.com/kubernetes/kubernetes.git"),
            "{e}"
        );
        assert!(e.contains("`remote:` in the scenario"), "{e}");
        // No remotes at all.
        sh(&src, &["remote", "remove", "origin"]);
        let e = remote(&src, None).await.unwrap_err().to_string();
        assert!(e.contains("it has no remotes"), "{e}");
    }

    /// Every file under `dir` but `.git`, with its bytes.
    pub(super) fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
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
        assert_eq!(resolve(&src, "worktree", None).await.unwrap(), head);
    }
}

#[cfg(test)]
mod ownership_tests {
    //! Issue 22: kindred touches only what is its own, and builds the commit it names.
    use super::*;

    fn sh(dir: &Path, args: &[&str]) -> String {
        super::tests::sh(dir, args)
    }

    /// A repository in `dir` that passes for Kubernetes, with one commit; that commit.
    fn repo(dir: &Path, owner: &str) -> String {
        std::fs::create_dir_all(dir).unwrap();
        sh(dir, &["init", "-q", "-b", "master"]);
        std::fs::write(dir.join("go.mod"), "module k8s.io/kubernetes\n").unwrap();
        std::fs::write(dir.join("OWNER"), owner).unwrap();
        sh(dir, &["add", "."]);
        sh(dir, &["commit", "-q", "-m", owner]);
        sh(dir, &["rev-parse", "HEAD"])
    }

    /// Wait for the start of a new second, so the next few steps share one.
    fn new_second() {
        let sub = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_millis()
        };
        let start = sub();
        while sub() >= start {
            std::thread::sleep(Duration::from_millis(2));
        }
        while sub() > 30 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[tokio::test]
    async fn a_same_size_edit_in_the_second_of_the_index_write_is_in_the_snapshot() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("k");
        repo(&src, "v0");
        let scratch = t.path().join("scratch");
        for round in 0..3 {
            // Staged, then edited to the same size within the second the index was written
            // (an editor's git integration refreshes the index all the time).
            new_second();
            std::fs::write(src.join("proxier.go"), format!("v1 {round}\n")).unwrap();
            sh(&src, &["add", "proxier.go"]);
            std::fs::write(src.join("proxier.go"), format!("v3 {round}\n")).unwrap();
            // The snapshot is taken in a later second.
            std::thread::sleep(Duration::from_millis(1100));
            let snap = snapshot(&src, &scratch).await.unwrap();
            let spec = format!("{}:proxier.go", snap.commit);
            assert_eq!(
                sh(&src, &["show", &spec]),
                format!("v3 {round}"),
                "round {round}"
            );
        }
    }

    /// What a checkout holds: HEAD, branch, status and every file with its bytes.
    fn state(dir: &Path) -> (String, String, String, Vec<(PathBuf, Vec<u8>)>) {
        (
            sh(dir, &["rev-parse", "HEAD"]),
            sh(dir, &["rev-parse", "--abbrev-ref", "HEAD"]),
            sh(dir, &["status", "--porcelain", "--untracked-files=all"]),
            super::tests::files(dir),
        )
    }

    #[tokio::test]
    async fn only_kindreds_own_worktree_is_touched() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("k");
        let first = repo(&src, "source");
        std::fs::write(src.join("OWNER"), "second").unwrap();
        sh(&src, &["commit", "-q", "-am", "second"]);
        // The user's other clone, mid-change: an edit and an untracked file.
        let other = t.path().join("other");
        let o = std::process::Command::new("git")
            .args(["clone", "-q"])
            .arg(&src)
            .arg(&other)
            .output()
            .unwrap();
        assert!(o.status.success());
        std::fs::write(other.join("OWNER"), "uncommitted edit").unwrap();
        std::fs::write(other.join("notes.txt"), "untracked").unwrap();
        let before = state(&other);
        let wts = t.path().join("state/worktrees");
        std::fs::create_dir_all(&wts).unwrap();

        // A symlink to it where kindred's worktree would be: refused, the clone untouched.
        let link = wts.join("pr");
        std::os::unix::fs::symlink(&other, &link).unwrap();
        let e = worktree(&src, &first, &link).await.unwrap_err().to_string();
        assert!(
            e.contains(&link.display().to_string()) && e.contains("symlink"),
            "{e}"
        );
        assert!(e.contains("move it away or remove it"), "{e}");
        assert_eq!(state(&other), before);
        // A clone there (a real directory): refused too.
        let clone = wts.join("clone");
        repo(&clone, "clone");
        std::fs::write(clone.join("scratch.txt"), "mine").unwrap();
        let cloned = state(&clone);
        let e = worktree(&src, &first, &clone)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("a git clone of its own"), "{e}");
        assert_eq!(state(&clone), cloned);
        // The user's own worktree of the source there: refused, its HEAD and files kept.
        let theirs = wts.join("theirs");
        sh(
            &src,
            &[
                "worktree",
                "add",
                "-q",
                "--detach",
                theirs.to_str().unwrap(),
                &first,
            ],
        );
        std::fs::write(theirs.join("wip.txt"), "wip").unwrap();
        let kept = state(&theirs);
        let e = worktree(&src, "HEAD", &theirs)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("without kindred's mark"), "{e}");
        assert_eq!(state(&theirs), kept);
        // kindred's own: made, then moved in place.
        let mine = wts.join("base");
        worktree(&src, &first, &mine).await.unwrap();
        assert_eq!(head(&mine).await.unwrap(), first);
        std::fs::write(mine.join("leftover.txt"), "x").unwrap();
        let second = sh(&src, &["rev-parse", "HEAD"]);
        worktree(&src, &second, &mine).await.unwrap();
        assert_eq!(head(&mine).await.unwrap(), second);
        assert!(!mine.join("leftover.txt").exists());
        assert_eq!(
            std::fs::read_to_string(mine.join("OWNER")).unwrap(),
            "second"
        );
    }

    #[tokio::test]
    async fn the_users_worktree_metadata_survives_a_build() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("k");
        let sha = repo(&src, "source");
        // A worktree of the user's on a disk that is not mounted now: its directory is gone,
        // its metadata (index, staged work) is in the checkout's .git.
        let away = t.path().join("usb/feature");
        sh(
            &src,
            &[
                "worktree",
                "add",
                "-q",
                "-b",
                "feature",
                away.to_str().unwrap(),
            ],
        );
        std::fs::write(away.join("staged.go"), "staged\n").unwrap();
        sh(&away, &["add", "staged.go"]);
        let admin = src.join(".git/worktrees/feature");
        let index = std::fs::read(admin.join("index")).unwrap();
        std::fs::remove_dir_all(t.path().join("usb")).unwrap();

        let mine = t.path().join("state/worktrees/pr");
        worktree(&src, &sha, &mine).await.unwrap();
        // Deleted by hand, then made again (its stale registration is kindred's own path).
        std::fs::remove_dir_all(&mine).unwrap();
        worktree(&src, &sha, &mine).await.unwrap();
        assert_eq!(std::fs::read(admin.join("index")).unwrap(), index, "pruned");
        assert!(sh(&src, &["worktree", "list"]).contains("usb/feature"));
    }

    #[tokio::test]
    async fn a_changed_source_makes_kindreds_worktree_again() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a");
        let b = t.path().join("b");
        let in_a = repo(&a, "a");
        let in_b = repo(&b, "b");
        let mine = t.path().join("state/worktrees/pr");
        worktree(&a, &in_a, &mine).await.unwrap();
        worktree(&b, &in_b, &mine).await.unwrap();
        assert_eq!(head(&mine).await.unwrap(), in_b);
        assert_eq!(std::fs::read_to_string(mine.join("OWNER")).unwrap(), "b");
        let name = mine.display().to_string();
        assert!(
            !sh(&a, &["worktree", "list"]).contains(&name),
            "removed from a"
        );
        assert!(sh(&b, &["worktree", "list"]).contains(&name));
        // And back.
        worktree(&a, &in_a, &mine).await.unwrap();
        assert_eq!(head(&mine).await.unwrap(), in_a);
    }

    #[tokio::test]
    async fn a_source_inside_another_repository_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let outer = t.path().join("home");
        repo(&outer, "dotfiles");
        let inner = outer.join("src/kubernetes");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::write(inner.join("go.mod"), "module k8s.io/kubernetes\n").unwrap();
        let e = check_source(&inner).await.unwrap_err().to_string();
        assert!(
            e.contains("inside the git repository") && e.contains("not its top level"),
            "{e}"
        );
        // Not in any repository.
        let loose = t.path().join("loose");
        std::fs::create_dir_all(&loose).unwrap();
        std::fs::write(loose.join("go.mod"), "module k8s.io/kubernetes\n").unwrap();
        let e = check_source(&loose).await.unwrap_err().to_string();
        assert!(e.contains("not a git checkout"), "{e}");
        // A clone's top level, also through a symlink.
        let k = t.path().join("k");
        repo(&k, "k");
        check_source(&k).await.unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&k, &link).unwrap();
        check_source(&link).await.unwrap();
    }

    #[tokio::test]
    async fn parallel_pr_fetches_each_get_their_own_commit() {
        let t = tempfile::tempdir().unwrap();
        let origin = t.path().join("origin");
        repo(&origin, "origin");
        let mut prs = Vec::new();
        for n in 1..=3 {
            sh(
                &origin,
                &["checkout", "-q", "-b", &format!("pr{n}"), "master"],
            );
            std::fs::write(origin.join("fix.go"), format!("fix {n}\n")).unwrap();
            sh(&origin, &["add", "."]);
            sh(&origin, &["commit", "-q", "-m", &format!("pr {n}")]);
            let sha = sh(&origin, &["rev-parse", "HEAD"]);
            sh(
                &origin,
                &["update-ref", &format!("refs/pull/{n}/head"), &sha],
            );
            prs.push(sha);
        }
        let src = t.path().join("k");
        super::tests::k8s_clone(&origin, &src);
        let before = std::fs::read(src.join(".git/FETCH_HEAD")).ok();
        for round in 0..15 {
            // Three PRs at once, one of them twice (a merge-base side resolves the PR side's).
            let (one, two, three, again) = tokio::join!(
                resolve(&src, "pr/1", None),
                resolve(&src, "pr/2", None),
                resolve(&src, "pr/3", None),
                resolve(&src, "pr/2", None),
            );
            let got = [one.unwrap(), two.unwrap(), three.unwrap(), again.unwrap()];
            assert_eq!(
                got,
                [&prs[0], &prs[1], &prs[2], &prs[1]].map(String::clone),
                "round {round}"
            );
        }
        // The user's FETCH_HEAD is not written, and no private ref is left behind.
        assert_eq!(std::fs::read(src.join(".git/FETCH_HEAD")).ok(), before);
        assert_eq!(sh(&src, &["for-each-ref", "refs/kindred"]), "");
    }

    #[tokio::test]
    async fn two_processes_on_one_worktree_take_turns() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("worktrees/pr");
        // Held by this process: the second taker is told who holds it and waits.
        let held = lock_worktree(&dir, "building pr at abc", |_| {})
            .await
            .unwrap();
        let told = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let t2 = told.clone();
        let d2 = dir.clone();
        let second = tokio::spawn(async move {
            lock_worktree(&d2, "building pr at def", move |m| *t2.lock().unwrap() = m).await
        });
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!second.is_finished(), "waits while the first holds it");
        let msg = told.lock().unwrap().clone();
        let me = format!("kindred pid {}, building pr at abc", std::process::id());
        assert!(msg.contains(&me) && msg.contains("waiting"), "{msg}");
        drop(held);
        let _second = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("taken once released")
            .unwrap()
            .unwrap();
        let lock_file = t.path().join("worktrees/pr.lock");
        assert!(
            std::fs::read_to_string(&lock_file)
                .unwrap()
                .contains("building pr at def")
        );

        // Another process holding it (flock(1), the lock std's File::lock takes): waited for.
        drop(_second);
        let mut child = std::process::Command::new("flock")
            .arg(&lock_file)
            .args(["sh", "-c", "sleep 1; touch \"$0\""])
            .arg(t.path().join("flock-done"))
            .spawn()
            .unwrap();
        // Until flock(1) holds it.
        let probe = std::fs::File::open(&lock_file).unwrap();
        while probe.try_lock().is_ok() {
            probe.unlock().unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        let said = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let s2 = said.clone();
        let _third = lock_worktree(&dir, "third", move |m| *s2.lock().unwrap() = m)
            .await
            .unwrap();
        // Taken only once flock(1) let go, having said it waited.
        assert!(
            child.try_wait().unwrap().is_some(),
            "taken while flock(1) held it"
        );
        let said = said.lock().unwrap().clone();
        assert!(said.contains("in use by another process"), "{said}");
    }

    /// A git call never takes its repository from the environment kindred runs in, and still
    /// takes what kindred itself sets (its private index).
    #[test]
    fn git_calls_drop_the_inherited_repository_variables() {
        let cmd = command(Path::new("/src"), &["status"], &[("GIT_INDEX_FILE", "/x")]);
        let envs: Vec<_> = cmd.as_std().get_envs().collect();
        for v in [
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_OBJECT_DIRECTORY",
            "GIT_COMMON_DIR",
        ] {
            assert!(
                envs.contains(&(std::ffi::OsStr::new(v), None)),
                "{v} removed: {envs:?}"
            );
        }
        assert!(envs.contains(&(
            std::ffi::OsStr::new("GIT_INDEX_FILE"),
            Some(std::ffi::OsStr::new("/x"))
        )));
    }
}
