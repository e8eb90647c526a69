//! MetalLB's manifest: a local file, or a URL fetched once with curl (argv only, with a time
//! limit) into a cache keyed by the whole URL, and checked to be MetalLB's before it is kept.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

/// How long curl may take to fetch the manifest.
pub const FETCH_LIMIT: &str = "60";

/// The cache file for `url`: the whole URL, percent-encoded into one file name, so that two
/// versions (or two hosts) never share a file.
pub fn cache_path(dir: &Path, url: &str) -> PathBuf {
    let mut name = String::with_capacity(url.len() + 16);
    for b in url.bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_' {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    dir.join(name)
}

/// Whether `text` is MetalLB's native manifest: Kubernetes objects including the `controller`
/// Deployment in `metallb-system`.
pub fn check(text: &str, source: &str) -> Result<()> {
    let objects = super::kube::parse_objects(text, source)?;
    let controller = objects.iter().any(|o| {
        o.types.as_ref().is_some_and(|t| t.kind == "Deployment")
            && o.metadata.name.as_deref() == Some("controller")
            && o.metadata.namespace.as_deref() == Some("metallb-system")
    });
    if !controller {
        bail!(
            "{source}: not MetalLB's manifest (no Deployment metallb-system/controller in {} objects)",
            objects.len()
        );
    }
    Ok(())
}

/// The most of a manifest read (MetalLB's is about 100 KiB).
const MAX_MANIFEST: usize = 16 << 20;

/// The manifest at `url` (`http(s)://` or `file://`), from the cache in `dir` when fetched
/// before; a fetch that fails or is not MetalLB's is not cached.
pub async fn fetch(url: &str, dir: &Path) -> Result<String> {
    let cache = cache_path(dir, url);
    if let Ok(Some(t)) = super::state::read(&cache, MAX_MANIFEST as u64) {
        return Ok(t);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    use super::process::{Overflow, capture};
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-fsSL", "--max-time", FETCH_LIMIT, url]);
    let what = format!("curl fetching {url}");
    // curl gives up by itself after FETCH_LIMIT; this is the bound if it does not.
    let limit = std::time::Duration::from_secs(FETCH_LIMIT.parse::<u64>().unwrap_or(60) + 30);
    let out = capture(cmd, &what, MAX_MANIFEST, Overflow::Stop, limit)
        .await
        .map_err(|e| anyhow!("running curl to fetch {url}: {e}"))??;
    if out.stdout_cut {
        bail!(
            "fetching {url}: longer than {} MiB: not MetalLB's manifest",
            MAX_MANIFEST >> 20
        );
    }
    if !out.status.success() {
        bail!("fetching {url}: {}", out.stderr_text());
    }
    let text = String::from_utf8(out.stdout).map_err(|_| anyhow!("{url}: not UTF-8 text"))?;
    check(&text, url)?;
    super::state::write_atomic(&cache, text.as_bytes())?;
    Ok(text)
}

/// Whether the manifest setting is a URL (else a file path).
pub fn is_url(m: &str) -> bool {
    ["https://", "http://", "file://"]
        .iter()
        .any(|p| m.starts_with(p))
}

/// kindred's address pool (`from`-`to`) and its L2 advertisement.
pub fn pool_yaml(from: std::net::Ipv4Addr, to: std::net::Ipv4Addr) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: kindred\n  namespace: metallb-system\nspec:\n  addresses:\n  - {from}-{to}\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: kindred\n  namespace: metallb-system\nspec:\n  ipAddressPools: [kindred]\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(version: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: metallb-system\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: controller\n  namespace: metallb-system\n  labels: {{version: \"{version}\"}}\n"
        )
    }

    #[tokio::test]
    async fn two_versions_never_share_a_cache_entry() {
        let src = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let mut urls = Vec::new();
        for v in ["v0.14.9", "v0.15.2"] {
            let dir = src.path().join(v).join("config/manifests");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("metallb-native.yaml"), manifest(v)).unwrap();
            urls.push(format!("file://{}/metallb-native.yaml", dir.display()));
        }
        assert_ne!(
            cache_path(cache.path(), &urls[0]),
            cache_path(cache.path(), &urls[1])
        );
        // A link planted where the cache's temporary file went is never written through.
        let victim = src.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let part = cache_path(cache.path(), &urls[0]).with_extension("part");
        std::os::unix::fs::symlink(&victim, &part).unwrap();
        let a = fetch(&urls[0], cache.path()).await.unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let b = fetch(&urls[1], cache.path()).await.unwrap();
        assert!(a.contains("v0.14.9") && b.contains("v0.15.2"));
        // Cached: the source can go, the cache answers.
        drop(src);
        assert_eq!(fetch(&urls[1], cache.path()).await.unwrap(), b);
    }

    #[tokio::test]
    async fn what_is_not_metallb_is_refused_and_not_cached() {
        let src = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let f = src.path().join("page.yaml");
        std::fs::write(
            &f,
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
        )
        .unwrap();
        let url = format!("file://{}", f.display());
        let e = fetch(&url, cache.path()).await.unwrap_err().to_string();
        assert!(e.contains("not MetalLB's manifest"), "{e}");
        assert!(!cache_path(cache.path(), &url).exists());
        let e = fetch("file:///nonexistent/m.yaml", cache.path())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("fetching file:///nonexistent/m.yaml"), "{e}");
    }
}
