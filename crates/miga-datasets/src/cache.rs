//! A clip cache: the RGB frames of each clip, cut to the person (when the transform does) and
//! resized to the transform's short side, stored once as 8-bit pixels in shard files and read
//! instead of decoding the video again (later epochs, `extract`, evaluation).
//!
//! Reading a cached clip gives exactly what decoding gives for the evaluation crop: the preset
//! on frames already of its size reads each pixel with weight one. A folder holds one clip
//! setting (`index.json` records it); clips are keyed by id, video and frame range.
//!
//! Written a shard at a time: the shard file atomically, then the index atomically, so a kill
//! loses at most the clips of the shard being filled (decoded again next time), never a clip
//! the index names. The shard file is written outside the cache's lock, so the loader's other
//! threads go on reading and storing meanwhile.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Clips a shard file holds.
pub const SHARD_CLIPS: usize = 64;

/// One cached clip in a shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    id: String,
    video: PathBuf,
    frames: [usize; 2],
    /// `[T, H, W]` of the RGB bytes.
    dims: [usize; 3],
    offset: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Shard {
    file: String,
    clips: Vec<Entry>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Index {
    /// The clip settings the frames were made with.
    settings: String,
    shards: Vec<Shard>,
}

#[derive(Debug, Default)]
struct State {
    index: Index,
    /// Id -> (shard, entry).
    by_id: HashMap<String, (usize, usize)>,
    /// Clips waiting for a full shard: the entry (offset not yet set) and its bytes.
    pending: Vec<(Entry, Vec<u8>)>,
    /// The number of the next shard file (those being written included).
    next_shard: usize,
}

/// A clip cache folder, shared by every dataset of the process that names it; one process a
/// folder (its lock names the holder to another).
#[derive(Debug)]
pub struct ClipCache {
    dir: PathBuf,
    state: Mutex<State>,
    _lock: crate::lock::FolderLock,
}

/// What a clip's cached frames are: `[T, H, W, 3]` bytes and `[T, H, W]`.
pub type CachedFrames = (Vec<u8>, [usize; 3]);

static OPEN: OnceLock<Mutex<HashMap<PathBuf, Arc<ClipCache>>>> = OnceLock::new();

/// Writes the waiting clips of every cache the process opened and closes them (at the end of an
/// extraction, a training run or a bench): a cache's folder lock is released when the last
/// dataset using it is dropped, and a later open reads the folder afresh.
pub fn close_all() -> Result<()> {
    let open: Vec<Arc<ClipCache>> = OPEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .map(|(_, cache)| cache)
        .collect();
    open.iter().try_for_each(|cache| cache.flush())
}

impl ClipCache {
    /// The cache in `dir` for clips made with `settings` (a description of the clip settings),
    /// created when absent; one instance a folder per process. A folder made with other
    /// settings is an error naming it.
    pub fn shared(dir: &Path, settings: &str) -> Result<Arc<Self>> {
        let mut open = OPEN
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let key = std::path::absolute(dir).map_err(|e| Error::io(dir, e))?;
        if let Some(cache) = open.get(&key) {
            let same = cache.lock().index.settings == settings;
            return match same {
                true => Ok(cache.clone()),
                false => Err(other_settings(dir)),
            };
        }
        let cache = Arc::new(Self::open(dir, settings)?);
        open.insert(key, cache.clone());
        Ok(cache)
    }

    fn open(dir: &Path, settings: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock = crate::lock::FolderLock::folder(dir, None, "the clip cache")?;
        let path = dir.join("index.json");
        let index = match std::fs::read(&path) {
            Ok(bytes) => {
                let index: Index = serde_json::from_slice(&bytes)
                    .map_err(|e| Error::format(&path, "index", e.to_string()))?;
                if index.settings != settings {
                    return Err(other_settings(dir));
                }
                index
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Index {
                settings: settings.into(),
                shards: Vec::new(),
            },
            Err(e) => return Err(Error::io(&path, e)),
        };
        let mut state = State {
            next_shard: index.shards.len(),
            index,
            ..State::default()
        };
        for (s, shard) in state.index.shards.iter().enumerate() {
            for (e, entry) in shard.clips.iter().enumerate() {
                if entry_bytes(entry).is_none() {
                    return Err(Error::format(
                        &path,
                        format!("clip {}", entry.id),
                        format!("frames of {:?} pixels", entry.dims),
                    ));
                }
                state.by_id.insert(entry.id.clone(), (s, e));
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            state: Mutex::new(state),
            _lock: lock,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Clips stored (in shards on disk).
    pub fn len(&self) -> usize {
        self.lock().index.shards.iter().map(|s| s.clips.len()).sum()
    }

    /// Whether no clip is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached frames of `clip`, when stored (for the same video and frames); a shard that
    /// does not read is an error naming it.
    pub fn get(&self, clip: ClipKey<'_>) -> Result<Option<CachedFrames>> {
        let (file, entry) = {
            let state = self.lock();
            if let Some((entry, bytes)) = state.pending.iter().find(|(e, _)| e.id == clip.id)
                && matches(entry, clip)
            {
                return Ok(Some((bytes.clone(), entry.dims)));
            }
            let Some(&(s, e)) = state.by_id.get(clip.id) else {
                return Ok(None);
            };
            let shard = &state.index.shards[s];
            (self.dir.join(&shard.file), shard.clips[e].clone())
        };
        if !matches(&entry, clip) {
            return Ok(None);
        }
        let mut bytes = vec![0u8; entry_bytes(&entry).unwrap_or_default()];
        let mut reader = std::fs::File::open(&file).map_err(|e| Error::io(&file, e))?;
        reader
            .seek(SeekFrom::Start(entry.offset))
            .and_then(|_| reader.read_exact(&mut bytes))
            .map_err(|e| {
                Error::format(
                    &file,
                    format!("clip {} at byte {}", entry.id, entry.offset),
                    e.to_string(),
                )
            })?;
        Ok(Some((bytes, entry.dims)))
    }

    /// Stores `clip`'s frames (written with the next full shard).
    pub fn put(&self, clip: ClipKey<'_>, (bytes, dims): CachedFrames) -> Result<()> {
        let entry = Entry {
            id: clip.id.to_string(),
            video: absolute(clip.video),
            frames: clip.frames,
            dims,
            offset: 0,
        };
        let full = {
            let mut state = self.lock();
            if state.pending.iter().any(|(e, _)| e.id == entry.id) {
                return Ok(());
            }
            state.pending.push((entry, bytes));
            state.pending.len() >= SHARD_CLIPS
        };
        match full {
            true => self.flush(),
            false => Ok(()),
        }
    }

    /// Writes the clips waiting for a full shard as a shard of their own.
    pub fn flush(&self) -> Result<()> {
        let (number, waiting) = {
            let mut state = self.lock();
            if state.pending.is_empty() {
                return Ok(());
            }
            state.next_shard += 1;
            (state.next_shard - 1, std::mem::take(&mut state.pending))
        };
        let file = format!("shard-{number:06}.bin");
        let mut data = Vec::new();
        let mut clips = Vec::new();
        for (mut entry, bytes) in waiting {
            entry.offset = data.len() as u64;
            data.extend_from_slice(&bytes);
            clips.push(entry);
        }
        crate::io::write_atomic(&self.dir.join(&file), &data)?;
        let mut state = self.lock();
        let s = state.index.shards.len();
        for (e, entry) in clips.iter().enumerate() {
            state.by_id.insert(entry.id.clone(), (s, e));
        }
        state.index.shards.push(Shard { file, clips });
        let path = self.dir.join("index.json");
        let json = serde_json::to_vec(&state.index)
            .map_err(|e| Error::format(&path, "index", e.to_string()))?;
        crate::io::write_atomic(&path, &json)
    }
}

impl Drop for ClipCache {
    /// Writes the waiting clips (best effort: a failure here loses only their decoding).
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// The bytes of an entry's frames, when its shape is a real one.
fn entry_bytes(entry: &Entry) -> Option<usize> {
    let [t, h, w] = entry.dims;
    let bytes = t.checked_mul(h)?.checked_mul(w)?.checked_mul(3)?;
    (bytes > 0).then_some(bytes)
}

/// Which clip a cache entry holds: its id, its video file and its frame range (a clip id
/// stored for another video or range is not this clip).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClipKey<'a> {
    /// The clip's id.
    pub id: &'a str,
    /// Its video file.
    pub video: &'a Path,
    /// Its first and last frame.
    pub frames: [usize; 2],
}

/// `path` made absolute (a relative and an absolute `--data` name the same clips).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn matches(entry: &Entry, clip: ClipKey<'_>) -> bool {
    absolute(clip.video) == entry.video && entry.frames == clip.frames
}

fn other_settings(dir: &Path) -> Error {
    Error::request(
        dir,
        "this clip cache was made with other clip settings (frames, sizes, person crop): \
         name another folder",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> ClipKey<'_> {
        ClipKey {
            id,
            video: Path::new("v.mp4"),
            frames: [3, 9],
        }
    }

    #[test]
    fn clips_survive_in_whole_shards_and_settings_are_kept_apart() {
        let dir = crate::testing::scratch_dir().join("cache");
        let cache = ClipCache::open(&dir, "a").unwrap();
        let frames = |i: usize| (vec![i as u8; 2 * 2 * 3], [1, 2, 2]);
        for i in 0..SHARD_CLIPS + 3 {
            cache.put(record(&format!("c{i}")), frames(i)).unwrap();
        }
        // One shard on disk; the rest wait, readable in memory.
        assert_eq!(cache.len(), SHARD_CLIPS);
        assert_eq!(cache.get(record("c65")).unwrap(), Some(frames(65)));
        // Another opener (as another process would) is refused while it is held.
        let error = ClipCache::open(&dir, "a").unwrap_err().to_string();
        assert!(error.contains("clip cache"), "{error}");
        // A process killed now: a new one sees the whole shard only.
        let index = std::fs::read(dir.join("index.json")).unwrap();
        cache.flush().unwrap();
        let flushed = std::fs::read(dir.join("index.json")).unwrap();
        std::fs::write(dir.join("index.json"), &index).unwrap();
        drop(cache);
        let reopened = ClipCache::open(&dir, "a").unwrap();
        assert_eq!(reopened.get(record("c7")).unwrap(), Some(frames(7)));
        assert_eq!(reopened.get(record("c65")).unwrap(), None);
        drop(reopened);
        std::fs::write(dir.join("index.json"), &flushed).unwrap();
        let reopened = ClipCache::open(&dir, "a").unwrap();
        assert_eq!(reopened.len(), SHARD_CLIPS + 3);
        assert_eq!(reopened.get(record("c65")).unwrap(), Some(frames(65)));
        // Another video or range under the same id is not this clip.
        let mut moved = record("c7");
        moved.frames[0] = 4;
        assert_eq!(reopened.get(moved).unwrap(), None);
        // Other settings: an error naming the folder.
        drop(reopened);
        let error = ClipCache::open(&dir, "b").unwrap_err().to_string();
        assert!(error.contains("other clip settings") && error.contains("cache"));
        // An index entry of no pixels: an error naming the index and the clip.
        let good = std::fs::read_to_string(dir.join("index.json")).unwrap();
        std::fs::write(
            dir.join("index.json"),
            good.replacen("\"dims\":[1,2,2]", "\"dims\":[1,0,2]", 1),
        )
        .unwrap();
        let error = ClipCache::open(&dir, "a").unwrap_err().to_string();
        assert!(
            error.contains("index.json") && error.contains("c0"),
            "{error}"
        );
        std::fs::write(dir.join("index.json"), good).unwrap();
        // A damaged shard: an error naming it and the clip.
        let reopened = ClipCache::open(&dir, "a").unwrap();
        std::fs::write(dir.join("shard-000000.bin"), [0u8; 5]).unwrap();
        let error = reopened.get(record("c9")).unwrap_err().to_string();
        assert!(
            error.contains("shard-000000.bin") && error.contains("c9"),
            "{error}"
        );
    }
}
