//! How long the last long job of each kind took (a node-image build, a kube-proxy compile), kept
//! in kindred's state dir, so the next one can be shown against it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The kinds of job timed.
pub const NODE_IMAGE: &str = "node-image";
pub const KUBE_PROXY: &str = "kube-proxy";

pub fn default_path() -> PathBuf {
    super::state_dir().join("timings.json")
}

fn load(path: &Path) -> BTreeMap<String, u64> {
    super::state::read(path, 1 << 20)
        .ok()
        .flatten()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// How long the last job of `kind` took, when one finished before.
pub fn last(path: &Path, kind: &str) -> Option<Duration> {
    load(path).get(kind).map(|s| Duration::from_secs(*s))
}

/// Remember how long a job of `kind` took. A file that cannot be written is logged, not fatal.
pub fn record(path: &Path, kind: &str, took: Duration) {
    let mut all = load(path);
    all.insert(kind.to_string(), took.as_secs().max(1));
    let write = || -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        super::state::write_atomic(path, serde_json::to_string(&all)?.as_bytes())
    };
    if let Err(e) = write() {
        tracing::warn!("{}: cannot write: {e:#}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_time_of_each_kind_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k/timings.json");
        assert_eq!(last(&p, NODE_IMAGE), None);
        record(&p, NODE_IMAGE, Duration::from_secs(1260));
        record(&p, KUBE_PROXY, Duration::from_millis(300));
        record(&p, NODE_IMAGE, Duration::from_secs(1100));
        assert_eq!(last(&p, NODE_IMAGE), Some(Duration::from_secs(1100)));
        assert_eq!(last(&p, KUBE_PROXY), Some(Duration::from_secs(1)));
        std::fs::write(&p, "not json").unwrap();
        assert_eq!(last(&p, NODE_IMAGE), None);
    }

    /// Links planted where the record or its temporary file go are never written through.
    #[test]
    fn the_record_is_never_written_through_a_link() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let p = d.path().join("timings.json");
        std::os::unix::fs::symlink(&victim, d.path().join("timings.json.tmp")).unwrap();
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        assert_eq!(last(&p, NODE_IMAGE), None);
        record(&p, NODE_IMAGE, Duration::from_secs(60));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(last(&p, NODE_IMAGE), Some(Duration::from_secs(60)));
    }
}
