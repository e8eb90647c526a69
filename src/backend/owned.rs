//! Which kind clusters kindred created. kind cannot label its node containers for us, so kindred
//! keeps a small record (`$XDG_STATE_HOME/kindred/clusters.json`) naming each cluster it created
//! and the ID of its control-plane container at the time. A cluster counts as kindred's only while
//! that container still exists: one deleted and re-created by someone else is not.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::docker::KindNode;
use crate::model::NodeRole;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    #[serde(default)]
    pub clusters: Vec<OwnedCluster>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedCluster {
    pub name: String,
    pub control_plane_id: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
}

pub fn default_path() -> PathBuf {
    super::state_dir().join("clusters.json")
}

/// The record is kindred's own and small: a larger one is not one kindred wrote.
const MAX_RECORD: u64 = 4 << 20;

impl Owned {
    /// The record at `path` (empty when there is none). Never read through a symbolic link, nor
    /// from a directory someone else could write: such a record could name anyone's clusters.
    pub fn load(path: &Path) -> Result<Owned> {
        if let Some(dir) = path.parent().filter(|d| d.exists()) {
            super::state::check_dir(dir)?;
        }
        match super::state::read(path, MAX_RECORD)? {
            Some(s) => serde_json::from_str(&s)
                .with_context(|| format!("{}: not a kindred cluster record", path.display())),
            None => Ok(Owned::default()),
        }
    }

    /// Read the record, change it and write it back while holding an exclusive lock on
    /// `PATH.lock`: the two sides' tasks, or two kindred processes, never lose each other's
    /// change. The lock is held for a read and a write of a small file. Its directory is
    /// created private (see [`super::state`]); no file is opened through a symbolic link.
    pub fn update(path: &Path, change: impl FnOnce(&mut Owned)) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            super::state::ensure_dir(dir)?;
        }
        let lock_path = path.with_extension("json.lock");
        let lock = super::state::open_nofollow(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
            &lock_path,
        )?;
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
        let mut owned = Owned::load(path)?;
        change(&mut owned);
        owned.save(path)
        // The lock goes with the file handle.
    }

    fn save(&self, path: &Path) -> Result<()> {
        super::state::write_atomic(path, serde_json::to_string_pretty(self)?.as_bytes())
    }

    /// Did kindred create this cluster (as it stands now)?
    pub fn created(&self, cluster: &str, nodes: &[KindNode]) -> bool {
        self.clusters.iter().any(|c| {
            c.name == cluster
                && nodes.iter().any(|n| {
                    n.cluster == cluster
                        && n.role == NodeRole::ControlPlane
                        && n.id == c.control_plane_id
                })
        })
    }

    pub fn record(&mut self, cluster: &str, control_plane_id: &str) {
        self.clusters.retain(|c| c.name != cluster);
        self.clusters.push(OwnedCluster {
            name: cluster.to_string(),
            control_plane_id: control_plane_id.to_string(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        });
    }

    pub fn forget(&mut self, cluster: &str) {
        self.clusters.retain(|c| c.name != cluster);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(cluster: &str, role: &str, id: &str) -> KindNode {
        KindNode {
            id: id.into(),
            name: format!("{cluster}-{role}"),
            cluster: cluster.into(),
            role: NodeRole::from_label(role),
            state: "running".into(),
            image: "kindest/node".into(),
            image_id: "sha256:0".into(),
            ips: vec![],
        }
    }

    #[test]
    fn a_recreated_cluster_is_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k/clusters.json");
        Owned::update(&p, |o| o.record("master", "abc")).unwrap();
        let o = Owned::load(&p).unwrap();
        assert!(o.created("master", &[node("master", "control-plane", "abc")]));
        assert!(!o.created("master", &[node("master", "control-plane", "zzz")]));
        assert!(!o.created("other", &[node("other", "control-plane", "abc")]));
        std::fs::write(&p, "{").unwrap();
        assert!(
            Owned::load(&p)
                .unwrap_err()
                .to_string()
                .contains("clusters.json")
        );
    }

    /// Many writers at once (the two sides' tasks, other kindred processes): no record is lost.
    #[test]
    fn concurrent_records_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("clusters.json");
        std::thread::scope(|s| {
            for i in 0..16 {
                let p = &p;
                s.spawn(move || {
                    for j in 0..8 {
                        Owned::update(p, |o| o.record(&format!("c{i}-{j}"), "id")).unwrap();
                    }
                });
            }
        });
        let o = Owned::load(&p).unwrap();
        assert_eq!(o.clusters.len(), 16 * 8);
        Owned::update(&p, |o| o.forget("c3-4")).unwrap();
        let o = Owned::load(&p).unwrap();
        assert_eq!(o.clusters.len(), 16 * 8 - 1);
        assert!(!o.clusters.iter().any(|c| c.name == "c3-4"));
    }

    /// A record planted as a symbolic link (in a shared /tmp, say) is neither read nor written
    /// through: what it points at stays as it was.
    #[test]
    fn the_record_and_its_lock_are_never_opened_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let state = dir.path().join("kindred");
        std::fs::create_dir(&state).unwrap();
        let p = state.join("clusters.json");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        let e = Owned::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("symbolic link") && e.contains("clusters.json"),
            "{e}"
        );
        assert!(Owned::update(&p, |o| o.record("x", "id")).is_err());
        std::fs::remove_file(&p).unwrap();
        let lock = state.join("clusters.json.lock");
        std::fs::remove_file(&lock).unwrap();
        std::os::unix::fs::symlink(&victim, &lock).unwrap();
        let e = Owned::update(&p, |o| o.record("x", "id"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("symbolic link") && e.contains("clusters.json.lock"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        // A directory others may write is refused for reading too.
        std::fs::remove_file(&lock).unwrap();
        Owned::update(&p, |o| o.record("x", "id")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = Owned::load(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 700"), "{e}");
    }
}
