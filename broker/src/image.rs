//! The metadata image: which topics exist, with their ids, partition counts
//! and configs, and the cluster id.
//!
//! For now one durable JSON file in the data directory, written atomically.
//! Issue 5 moves this into the Raft controller quorum; the broker reads it
//! only through [`MetadataImage`], so that is the seam that changes.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use storage::fs::{write_atomically, OsFs};
use uuid::Uuid;

/// File name of the image in the data directory.
pub const IMAGE_FILE: &str = "metadata-image.json";

/// Longest topic name Kafka accepts.
const TOPIC_NAME_MAX: usize = 249;

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// Kafka topic id.
    pub id: Uuid,
    /// Number of partitions, `0..partitions`.
    pub partitions: i32,
    /// Topic-level config overrides (Kafka names).
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

/// The cluster metadata a single broker needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// Kafka cluster id, fixed at first start.
    pub cluster_id: String,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicMeta>,
}

/// Why a topic name is not allowed (Kafka's rules).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    /// Empty, `.` or `..`.
    #[error("topic name {0:?} is not allowed")]
    Reserved(String),
    /// Longer than 249 characters.
    #[error("topic name is {0} characters long, the limit is 249")]
    TooLong(usize),
    /// A character outside `[a-zA-Z0-9._-]`.
    #[error("topic name {0:?} may only contain ASCII letters, digits, '.', '_' and '-'")]
    BadCharacter(String),
}

/// Checks a topic name as Kafka does.
pub fn validate_topic_name(name: &str) -> Result<(), TopicNameError> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(TopicNameError::Reserved(name.to_string()));
    }
    if name.len() > TOPIC_NAME_MAX {
        return Err(TopicNameError::TooLong(name.len()));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !name.chars().all(allowed) {
        return Err(TopicNameError::BadCharacter(name.to_string()));
    }
    Ok(())
}

impl MetadataImage {
    /// Loads the image from `data_dir`, or starts an empty one with a new
    /// cluster id (written at once, so the id never changes).
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<MetadataImage> {
        let path = data_dir.join(IMAGE_FILE);
        if path.exists() {
            let bytes = std::fs::read(&path)?;
            let image: MetadataImage = serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("corrupt metadata image {}: {e}", path.display()))?;
            return Ok(image);
        }
        std::fs::create_dir_all(data_dir)?;
        let image = MetadataImage {
            cluster_id: new_cluster_id(),
            topics: BTreeMap::new(),
        };
        image.save(data_dir)?;
        Ok(image)
    }

    /// Writes the image durably (temp file, fsync, rename, directory fsync).
    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_atomically(&OsFs, &data_dir.join(IMAGE_FILE), &json)
    }

    /// The topic with this id.
    pub fn topic_by_id(&self, id: Uuid) -> Option<(&String, &TopicMeta)> {
        self.topics.iter().find(|(_, t)| t.id == id)
    }
}

/// Kafka's cluster ids are 16 random bytes in URL-safe base64 (22 chars).
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = Uuid::new_v4().as_u128();
    (0..22)
        .map(|i| ALPHABET[((bits >> (i * 6)) & 63) as usize] as char)
        .collect()
}

/// The directory of one partition's log: `<data_dir>/<topic>-<partition>`.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_name_rules() {
        for ok in ["orders", "a", "A.b_c-9", &"x".repeat(249)] {
            assert_eq!(validate_topic_name(ok), Ok(()), "{ok}");
        }
        let bad = [
            "",
            ".",
            "..",
            "has space",
            "slash/",
            "ünï",
            &"x".repeat(250),
        ];
        for name in bad {
            assert!(validate_topic_name(name).is_err(), "{name}");
        }
    }

    #[test]
    fn image_survives_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut image = MetadataImage::load_or_create(dir.path()).unwrap();
        assert_eq!(image.cluster_id.len(), 22);
        image.topics.insert(
            "t".into(),
            TopicMeta {
                id: Uuid::new_v4(),
                partitions: 3,
                configs: BTreeMap::new(),
            },
        );
        image.save(dir.path()).unwrap();
        assert_eq!(MetadataImage::load_or_create(dir.path()).unwrap(), image);
        std::fs::write(dir.path().join(IMAGE_FILE), b"{not json").unwrap();
        let err = MetadataImage::load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("corrupt metadata image"), "{err}");
    }
}
