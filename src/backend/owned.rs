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

    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension("json.tmp");
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
        let mut o = Owned::load(&p).unwrap();
        o.record("master", "abc");
        o.save(&p).unwrap();
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
}
