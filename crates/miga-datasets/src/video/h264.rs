//! H.264 in MP4: the container is read with the `mp4` crate, the stream decoded with OpenH264
//! (compiled from source by the `openh264` crate: no system package).
//!
//! Random access: a frame is decoded from the sync sample before it. Frames are numbered in
//! display order (composition time), which differs from decode order when the stream has
//! B-frames; each packet is tagged with its display index, which the decoder hands back with
//! the picture.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Seek};
use std::path::{Path, PathBuf};

use super::VideoInfo;
use super::decoder::{Step, TaggedDecoder};
use super::picture::Picture;
use crate::stages::{Stage, timed};
use crate::{Error, Result};
use ::mp4::{Mp4Reader, TrackType};

/// An H.264 video track of an MP4 file.
pub struct Mp4Video {
    path: PathBuf,
    reader: Mp4Reader<BufReader<File>>,
    track: u32,
    info: VideoInfo,
    /// Annex-B parameter sets (SPS, PPS) to feed a fresh decoder.
    parameter_sets: Vec<u8>,
    length_size: usize,
    /// Decode-order position (0-based) of the sample shown at each display index.
    sample_of_display: Vec<usize>,
    /// Display index of each decode-order sample.
    display_of_sample: Vec<usize>,
    /// Decode-order positions of the sync samples, ascending.
    sync: Vec<usize>,
}

impl std::fmt::Debug for Mp4Video {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mp4Video")
            .field("path", &self.path)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Mp4Video {
    /// Opens an MP4 file and reads its H.264 track's tables (the first video track).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let format = |place: &str, reason: String| Error::format(path, place, reason);
        let mut reader = BufReader::new(file);
        check_boxes(&mut reader, 0, size, 0)
            .map_err(|(at, reason)| format(&format!("container, byte {at}"), reason))?;
        reader
            .seek(std::io::SeekFrom::Start(0))
            .map_err(|e| Error::io(path, e))?;
        let reader =
            Mp4Reader::read_header(reader, size).map_err(|e| format("container", e.to_string()))?;
        let track = reader
            .tracks()
            .values()
            .find(|t| matches!(t.track_type(), Ok(TrackType::Video)))
            .ok_or_else(|| format("container", "no video track".into()))?;
        let id = track.track_id();
        let stsd = &track.trak.mdia.minf.stbl.stsd;
        let avc = stsd.avc1.as_ref().ok_or_else(|| {
            format(
                &format!("track {id}"),
                "the video track is not H.264 (avc1)".into(),
            )
        })?;
        let mut parameter_sets = Vec::new();
        for nal in avc
            .avcc
            .sequence_parameter_sets
            .iter()
            .chain(&avc.avcc.picture_parameter_sets)
        {
            parameter_sets.extend_from_slice(&[0, 0, 0, 1]);
            parameter_sets.extend_from_slice(&nal.bytes);
        }
        if parameter_sets.is_empty() {
            return Err(format(&format!("track {id}, avcC"), "no SPS / PPS".into()));
        }
        let count = track.sample_count() as usize;
        if count == 0 {
            return Err(format(
                &format!("track {id}"),
                "the video track has no frames".into(),
            ));
        }
        // Every frame takes at least a byte of the file: a larger count is a damaged table
        // (and would size the tables below).
        if count as u64 > size {
            return Err(format(
                &format!("track {id}, stsz"),
                format!("{count} frames in a file of {size} bytes"),
            ));
        }
        let stbl = &track.trak.mdia.minf.stbl;
        // The mp4 crate allocates a sample's size before reading it: no sample can be larger
        // than the file (fuzzing found a 7 KB file claiming a 4 GB frame).
        let largest = stbl
            .stsz
            .sample_sizes
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
            .max(stbl.stsz.sample_size);
        if u64::from(largest) > size {
            return Err(format(
                &format!("track {id}, stsz"),
                format!("a frame of {largest} bytes in a file of {size} bytes"),
            ));
        }
        // Composition time of each sample: decode time (stts) plus offset (ctts).
        let timed: u64 = stbl
            .stts
            .entries
            .iter()
            .map(|e| u64::from(e.sample_count))
            .sum();
        if timed != count as u64 {
            return Err(format(
                &format!("track {id}, stts"),
                format!("times for {timed} samples, the track has {count}"),
            ));
        }
        let mut composition = Vec::with_capacity(count);
        let mut time: i64 = 0;
        for entry in &stbl.stts.entries {
            for _ in 0..entry.sample_count {
                composition.push(time);
                time = time.saturating_add(i64::from(entry.sample_delta));
            }
        }
        if composition.len() != count {
            return Err(format(
                &format!("track {id}, stts"),
                format!(
                    "times for {} samples, the track has {count}",
                    composition.len()
                ),
            ));
        }
        if let Some(ctts) = &stbl.ctts {
            let mut i = 0;
            for entry in &ctts.entries {
                for _ in 0..entry.sample_count {
                    let Some(c) = composition.get_mut(i) else {
                        break;
                    };
                    *c = c.saturating_add(i64::from(entry.sample_offset));
                    i += 1;
                }
            }
        }
        let mut sample_of_display: Vec<usize> = (0..count).collect();
        sample_of_display.sort_by_key(|&s| (composition[s], s));
        let mut display_of_sample = vec![0; count];
        for (d, &s) in sample_of_display.iter().enumerate() {
            display_of_sample[s] = d;
        }
        let sync = match &stbl.stss {
            Some(stss) => stss
                .entries
                .iter()
                // Sample numbers count from 1; a 0 is damage, left out.
                .filter_map(|&e| (e as usize).checked_sub(1))
                .filter(|&s| s < count)
                .collect(),
            None => (0..count).collect(), // every sample is a sync sample
        };
        let timescale = f64::from(track.timescale());
        let duration = time as f64 / timescale.max(1.0);
        let info = VideoInfo {
            width: u32::from(avc.width),
            height: u32::from(avc.height),
            fps: if duration > 0.0 {
                count as f64 / duration
            } else {
                0.0
            },
            frames: count,
        };
        let length_size = usize::from(avc.avcc.length_size_minus_one & 3) + 1;
        Ok(Self {
            path: path.to_path_buf(),
            reader,
            track: id,
            info,
            parameter_sets,
            length_size,
            sample_of_display,
            display_of_sample,
            sync,
        })
    }

    /// Size, rate and length.
    pub fn info(&self) -> VideoInfo {
        self.info
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sample at decode position `s` as Annex-B NAL units.
    fn annex_b(&mut self, s: usize) -> Result<Vec<u8>> {
        timed(Stage::Container, || self.read_annex_b(s))
    }

    fn read_annex_b(&mut self, s: usize) -> Result<Vec<u8>> {
        let place = || format!("frame sample {}", s + 1);
        let (reader, track) = (&mut self.reader, self.track);
        let sample = crate::error::guarded(&self.path, &place(), || {
            Ok(reader.read_sample(track, s as u32 + 1))
        })?
        .map_err(|e| Error::format(&self.path, place(), e.to_string()))?
        .ok_or_else(|| Error::format(&self.path, place(), "sample missing".to_string()))?;
        let bytes = &sample.bytes[..];
        let mut out = Vec::with_capacity(bytes.len() + 16);
        let mut at = 0;
        while at < bytes.len() {
            let Some(head) = bytes.get(at..at + self.length_size) else {
                return Err(Error::format(
                    &self.path,
                    place(),
                    "truncated NAL length".to_string(),
                ));
            };
            let length = head.iter().fold(0usize, |n, &b| n << 8 | usize::from(b));
            let Some(nal) = bytes.get(at + self.length_size..at + self.length_size + length) else {
                return Err(Error::format(
                    &self.path,
                    place(),
                    format!("NAL of {length} bytes runs past the sample"),
                ));
            };
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(nal);
            at += self.length_size + length;
        }
        Ok(out)
    }

    /// Decodes the frames at sorted, unique display indices, going on from the previous frame
    /// when it is at or past the target's sync sample.
    pub(super) fn decode_sorted(&mut self, wanted: &[usize]) -> Result<Vec<Picture>> {
        let mut frames = Vec::with_capacity(wanted.len());
        // (decoder, next sample to feed; the sample count itself stands for the end-of-stream call)
        let mut state: Option<(TaggedDecoder, usize)> = None;
        let mut pending: BTreeMap<usize, Picture> = BTreeMap::new();
        let path = self.path.clone();
        let error = |place: String, reason: String| Error::format(&path, place, reason);
        for &target in wanted {
            let sample = self.sample_of_display[target];
            let start = self.sync[..self.sync.partition_point(|&s| s <= sample)]
                .last()
                .copied()
                .unwrap_or(0);
            if !matches!(&state, Some((_, next)) if *next >= start) {
                let mut decoder = TaggedDecoder::new().map_err(|e| error("decoder".into(), e))?;
                decoder
                    .decode(Step::Packet(&self.parameter_sets), u64::MAX, |_| false)
                    .map_err(|e| error("SPS/PPS".into(), e))?;
                state = Some((decoder, start));
                pending.clear();
            }
            let Some((decoder, next)) = state.as_mut() else {
                unreachable!("set above")
            };
            // Only the wanted pictures are copied out: the others are decoded as references
            // and dropped.
            let keep = |tag: u64| {
                let display = tag as usize;
                display >= target && wanted.binary_search(&display).is_ok()
            };
            while !pending.contains_key(&target) {
                let output = if *next < self.info.frames {
                    let packet = self.annex_b(*next)?;
                    let tag = self.display_of_sample[*next] as u64;
                    *next += 1;
                    decoder
                        .decode(Step::Packet(&packet), tag, keep)
                        .map_err(|e| error(format!("frame sample {next}"), e))?
                } else if *next == self.info.frames {
                    *next += 1;
                    decoder
                        .decode(Step::EndOfStream, 0, keep)
                        .map_err(|e| error("end of stream".into(), e))?
                } else {
                    let drained = match decoder.buffered() {
                        0 => None,
                        _ => decoder
                            .decode(Step::Flush, 0, keep)
                            .map_err(|e| error("end of stream".into(), e))?,
                    };
                    if drained.is_none() {
                        return Err(error(
                            format!("frame {target}"),
                            "the decoder gave no picture for it".into(),
                        ));
                    }
                    drained
                };
                if let Some((tag, Some(picture))) = output {
                    pending.insert(tag as usize, Picture::Yuv(picture));
                }
            }
            frames.push(pending.remove(&target).expect("loop ends when present"));
        }
        Ok(frames)
    }
}
/// Container boxes whose children the `mp4` crate reads in a loop of its own.
const CONTAINERS: [&[u8; 4]; 11] = [
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"mvex", b"moof", b"traf",
    b"udta",
];

/// Checks the box tree between `start` and `end` before the `mp4` crate reads it: every box's
/// size covers at least its header and stays inside its parent, so that no box ends before it
/// starts. (mp4 0.14 moves to a box's start plus its size: a nested box of size 0 made it read
/// the same box forever; found by the fuzz test, `tests/fuzz/mp4_h264/`.) `depth` bounds
/// nesting.
fn check_boxes(
    reader: &mut (impl std::io::Read + std::io::Seek),
    start: u64,
    end: u64,
    depth: usize,
) -> std::result::Result<(), (u64, String)> {
    use std::io::SeekFrom;
    let io = |at: u64| move |e: std::io::Error| (at, e.to_string());
    let mut at = start;
    while at < end {
        if end - at < 8 {
            // Trailing bytes too short for a box: the mp4 crate stops there too.
            return Ok(());
        }
        reader.seek(SeekFrom::Start(at)).map_err(io(at))?;
        let mut header = [0u8; 8];
        reader.read_exact(&mut header).map_err(io(at))?;
        let size32 = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let kind = [header[4], header[5], header[6], header[7]];
        let (size, header_len) = match size32 {
            // "To the end of the file": the last top-level box only (mp4 0.14 reads a nested
            // one as empty, and then reads it again, forever).
            0 if depth == 0 => (end - at, 8),
            0 => {
                return Err((
                    at,
                    format!(
                        "box `{}` inside another claims 0 bytes",
                        String::from_utf8_lossy(&kind)
                    ),
                ));
            }
            1 => {
                let mut large = [0u8; 8];
                reader.read_exact(&mut large).map_err(io(at))?;
                (u64::from_be_bytes(large), 16)
            }
            n => (u64::from(n), 8),
        };
        if size < header_len || size > end - at {
            return Err((
                at,
                format!(
                    "box `{}` claims {size} bytes: not within its parent's {}",
                    String::from_utf8_lossy(&kind),
                    end - at
                ),
            ));
        }
        if CONTAINERS.contains(&&kind) {
            if depth > 16 {
                return Err((at, "boxes nested more than 16 deep".into()));
            }
            check_boxes(reader, at + header_len, at + size, depth + 1)?;
        }
        at += size;
    }
    Ok(())
}
