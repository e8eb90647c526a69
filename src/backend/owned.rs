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

impl Owned {
    pub fn load(path: &Path) -> Result<Owned> {
        match std::fs::read_to_string(path) {
            Ok(s) => serde_json::from_str(&s)
                .with_context(|| format!("{}: not a kindred cluster record", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Owned::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Read the record, change it and write it back while holding an exclusive lock on
    /// `PATH.lock`: the two sides' tasks, or two kindred processes, never lose each other's
    /// change. The lock is held for a read and a write of a small file.
    pub fn update(path: &Path, change: impl FnOnce(&mut Owned)) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let lock_path = path.with_extension("json.lock");
        let lock = std::fs::File::create(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
        let mut owned = Owned::load(path)?;
        change(&mut owned);
        owned.save(path)
        // The lock goes with the file handle.
    }

    fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
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
}
