//! Extracted features on disk: safetensors shards with an index, written so that an
//! interrupted extraction loses at most the shard it was filling and continues where it stopped.
//!
//! A features folder holds `index-<i>of<n>.json` (one per part, see `--shard i/n`) and the
//! shards it lists, `part<i>of<n>-<k>.safetensors`, each with the tensors of several items
//! named `<item id>/<tensor name>`. A shard is written to a temporary file and renamed; the
//! index is rewritten (atomically too) after each shard, so it only ever lists complete shards.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::prelude::*;
use miga_datasets::tensors::{read_tensors, write_tensors};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What a features folder holds: which task and which extraction settings made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureKind {
    /// `micro-gesture` or `emotion`.
    pub task: String,
    /// A description of the extraction settings (backbones, clip sampling); features made with
    /// other settings cannot be mixed in.
    pub settings: String,
}

/// The index of one part of a features folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// What made the features.
    pub kind: FeatureKind,
    /// The part: `(i, n)`.
    pub part: (usize, usize),
    /// Shards, in writing order, with the ids of their items.
    pub shards: Vec<(String, Vec<String>)>,
    /// Whether the part was finished.
    pub complete: bool,
}

fn index_path(dir: &Path, (i, n): (usize, usize)) -> PathBuf {
    dir.join(format!("index-{i}of{n}.json"))
}

fn read_index(path: &Path) -> Result<Index> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Mismatch {
        path: path.to_path_buf(),
        reason: format!("not a features index: {e}"),
    })
}

fn write_index(dir: &Path, index: &Index) -> Result<()> {
    let path = index_path(dir, index.part);
    let text = serde_json::to_string_pretty(index).unwrap_or_default();
    miga_datasets::io::write_atomic(&path, text.as_bytes())?;
    Ok(())
}

/// Writes the features of one part, resuming a previous run of the same part.
pub struct FeatureWriter {
    dir: PathBuf,
    index: Index,
    done: BTreeSet<String>,
    pending: BTreeMap<String, TensorData>,
    pending_ids: Vec<String>,
    shard_items: usize,
    /// One writer a part of a folder.
    _lock: miga_datasets::lock::FolderLock,
}

impl FeatureWriter {
    /// Opens (or creates) part `(i, n)` of the features folder `dir` for `kind`, with
    /// `shard_items` items a shard. An existing index for another task or other settings is an
    /// error; one for the same is resumed.
    pub fn open(
        dir: &Path,
        kind: FeatureKind,
        part: (usize, usize),
        shard_items: usize,
    ) -> Result<Self> {
        if part.1 == 0 || part.0 >= part.1 {
            return Err(Error::Mismatch {
                path: dir.to_path_buf(),
                reason: format!("part {}/{} does not exist", part.0, part.1),
            });
        }
        let lock = miga_datasets::lock::FolderLock::folder(
            dir,
            Some(&format!("{}of{}", part.0, part.1)),
            "feature extraction",
        )?;
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        for entry in std::fs::read_dir(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })? {
            let path = entry
                .map_err(|source| Error::Io {
                    path: dir.to_path_buf(),
                    source,
                })?
                .path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.starts_with("index-") && name.ends_with(".json") {
                let other = read_index(&path)?;
                if other.kind != kind {
                    return Err(Error::Mismatch {
                        path: path.clone(),
                        reason: format!(
                            "these features were made for task `{}` with settings `{}`, not task `{}` with `{}`",
                            other.kind.task, other.kind.settings, kind.task, kind.settings
                        ),
                    });
                }
            }
        }
        let path = index_path(dir, part);
        let index = if path.exists() {
            read_index(&path)?
        } else {
            Index {
                kind,
                part,
                shards: Vec::new(),
                complete: false,
            }
        };
        let done = index
            .shards
            .iter()
            .flat_map(|(_, ids)| ids.iter().cloned())
            .collect();
        Ok(Self {
            dir: dir.to_path_buf(),
            index,
            done,
            pending: BTreeMap::new(),
            pending_ids: Vec::new(),
            shard_items: shard_items.max(1),
            _lock: lock,
        })
    }

    /// Whether `id` is already in a written shard (a resumed run skips it).
    pub fn is_done(&self, id: &str) -> bool {
        self.done.contains(id)
    }

    /// Adds the tensors of one item; writes a shard when enough items are pending.
    pub fn push(&mut self, id: &str, tensors: BTreeMap<String, TensorData>) -> Result<()> {
        if self.is_done(id) || self.pending_ids.iter().any(|p| p == id) {
            return Ok(());
        }
        for (name, data) in tensors {
            self.pending.insert(format!("{id}/{name}"), data);
        }
        self.pending_ids.push(id.to_string());
        if self.pending_ids.len() >= self.shard_items {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending_ids.is_empty() {
            return Ok(());
        }
        let (i, n) = self.index.part;
        let file = format!("part{i}of{n}-{:05}.safetensors", self.index.shards.len());
        write_tensors(self.dir.join(&file), &std::mem::take(&mut self.pending))?;
        let ids = std::mem::take(&mut self.pending_ids);
        self.done.extend(ids.iter().cloned());
        self.index.shards.push((file, ids));
        write_index(&self.dir, &self.index)
    }

    /// Writes what is pending and marks the part complete.
    pub fn finish(mut self) -> Result<Index> {
        self.flush()?;
        self.index.complete = true;
        write_index(&self.dir, &self.index)?;
        Ok(self.index)
    }
}

/// The class stored as an item's `label` tensor (-1: unlabelled), when it has one.
pub fn item_label(tensors: &BTreeMap<String, TensorData>) -> Option<i64> {
    let values = tensors.get("label")?.to_vec::<f32>().ok()?;
    values.first().map(|&l| l as i64)
}

/// Every item of a features folder (all parts), read into memory.
#[derive(Debug, Clone)]
pub struct FeatureSet {
    /// What made them.
    pub kind: FeatureKind,
    /// Item id to its tensors by name.
    pub items: BTreeMap<String, BTreeMap<String, TensorData>>,
    /// Whether every part present was finished.
    pub complete: bool,
}

impl FeatureSet {
    /// Reads every part of `dir`; errors when the folder has no index or parts disagree.
    pub fn read(dir: &Path) -> Result<Self> {
        let mut kind: Option<FeatureKind> = None;
        let mut items: BTreeMap<String, BTreeMap<String, TensorData>> = BTreeMap::new();
        let mut complete = true;
        let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut indexes: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("index-") && n.ends_with(".json"))
            })
            .collect();
        indexes.sort();
        if indexes.is_empty() {
            return Err(Error::Mismatch {
                path: dir.to_path_buf(),
                reason: "not a features folder: no index-*.json".into(),
            });
        }
        for path in indexes {
            let index = read_index(&path)?;
            match &kind {
                Some(k) if *k != index.kind => {
                    return Err(Error::Mismatch {
                        path,
                        reason: "parts of this folder come from different tasks or settings".into(),
                    });
                }
                _ => kind = Some(index.kind.clone()),
            }
            complete &= index.complete;
            for (file, ids) in &index.shards {
                let mut tensors = read_tensors(dir.join(file))?;
                for id in ids {
                    let prefix = format!("{id}/");
                    let names: Vec<String> = tensors
                        .keys()
                        .filter(|k| k.starts_with(&prefix))
                        .cloned()
                        .collect();
                    let item = items.entry(id.clone()).or_default();
                    for name in names {
                        if let Some(data) = tensors.remove(&name) {
                            item.insert(name[prefix.len()..].to_string(), data);
                        }
                    }
                }
            }
        }
        Ok(Self {
            kind: kind.expect("at least one index"),
            items,
            complete,
        })
    }
}

/// What an extraction did.
#[derive(Debug, Clone)]
pub struct ExtractSummary {
    /// Clips of this part.
    pub clips: usize,
    /// Of those, already extracted by an earlier run (skipped).
    pub resumed: usize,
    /// Extracted now.
    pub extracted: usize,
    /// Clips that could not be extracted, with why (a later run retries them).
    pub failed: Vec<(String, String)>,
}

/// The items of part `(i, n)` (every n-th in id order from the i-th): how many there are, and
/// those `writer` does not have yet.
pub(crate) fn part_todo<R>(
    mut records: Vec<R>,
    id: impl Fn(&R) -> &String,
    part: (usize, usize),
    writer: &FeatureWriter,
) -> (usize, Vec<R>) {
    records.sort_by(|a, b| id(a).cmp(id(b)));
    let mine: Vec<R> = records
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % part.1 == part.0)
        .map(|(_, r)| r)
        .collect();
    let count = mine.len();
    let todo = mine
        .into_iter()
        .filter(|r| !writer.is_done(id(r)))
        .collect();
    (count, todo)
}

/// The rows (along the first axis) of a batch tensor, read back from the device at once.
pub(crate) fn rows<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<TensorData> {
    let dims = tensor.dims();
    let data = tensor.into_data().convert::<f32>();
    let values = data.as_slice::<f32>().unwrap_or_default();
    let size = (values.len() / dims[0].max(1)).max(1);
    values
        .chunks(size)
        .map(|row| TensorData::new(row.to_vec(), dims[1..].to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "miga-features-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    fn kind(settings: &str) -> FeatureKind {
        FeatureKind {
            task: "micro-gesture".into(),
            settings: settings.into(),
        }
    }

    fn item(v: f32) -> BTreeMap<String, TensorData> {
        BTreeMap::from([
            ("tokens".to_string(), TensorData::new(vec![v; 6], [2, 3])),
            ("label".to_string(), TensorData::new(vec![v], [1])),
        ])
    }

    #[test]
    fn an_interrupted_extraction_resumes_without_loss_or_duplicates() {
        let dir = scratch();
        let mut writer = FeatureWriter::open(&dir, kind("a"), (0, 1), 2).unwrap();
        for i in 0..5 {
            writer.push(&format!("clip{i}"), item(i as f32)).unwrap();
        }
        drop(writer); // killed: clip4 was pending, shards of clips 0-3 are on disk
        let partial = FeatureSet::read(&dir).unwrap();
        assert_eq!(partial.items.len(), 4);
        assert!(!partial.complete);
        let mut writer = FeatureWriter::open(&dir, kind("a"), (0, 1), 2).unwrap();
        let todo: Vec<usize> = (0..5)
            .filter(|i| !writer.is_done(&format!("clip{i}")))
            .collect();
        assert_eq!(todo, [4]);
        for i in todo {
            writer.push(&format!("clip{i}"), item(i as f32)).unwrap();
        }
        writer.finish().unwrap();
        let set = FeatureSet::read(&dir).unwrap();
        assert!(set.complete);
        assert_eq!(set.items.len(), 5);
        assert_eq!(
            set.items["clip3"]["tokens"].to_vec::<f32>().unwrap(),
            vec![3.0; 6]
        );
        assert_eq!(set.items["clip4"]["label"].shape, [1].into());
    }

    #[test]
    fn parts_merge_and_other_settings_are_refused() {
        let dir = scratch();
        for part in 0..2 {
            let mut writer = FeatureWriter::open(&dir, kind("a"), (part, 2), 3).unwrap();
            writer
                .push(&format!("clip{part}"), item(part as f32))
                .unwrap();
            writer.finish().unwrap();
        }
        assert_eq!(FeatureSet::read(&dir).unwrap().items.len(), 2);
        let message = FeatureWriter::open(&dir, kind("b"), (0, 1), 3)
            .err()
            .unwrap()
            .to_string();
        assert!(
            message.contains("settings `a`") && message.contains("index-0of2.json"),
            "{message}"
        );
        assert!(FeatureWriter::open(&dir, kind("a"), (2, 2), 3).is_err());
        assert!(FeatureSet::read(&scratch().join("none")).is_err());
        let empty = scratch();
        std::fs::create_dir_all(&empty).unwrap();
        assert!(
            FeatureSet::read(&empty)
                .unwrap_err()
                .to_string()
                .contains("not a features folder")
        );
    }
}
