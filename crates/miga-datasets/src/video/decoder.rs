//! OpenH264's `DecodeFrame2`, which keeps B-frame reordering working (the `openh264` crate's
//! `decode` calls `DecodeFrameNoDelay`, which flushes after every packet and fails on streams
//! with B-frames: ralfbiedert/openh264-rs#50). Each packet carries a tag (its display index)
//! through the decoder's time stamp, so every output picture says which frame it is.

use std::ptr::null_mut;

use openh264::decoder::Decoder;
use openh264_sys2::{
    DECODER_OPTION, DECODER_OPTION_NUM_OF_FRAMES_REMAINING_IN_BUFFER, SBufferInfo,
};

use super::picture::Yuv420;
use crate::stages::{Stage, timed};

/// What to give the decoder.
pub(super) enum Step<'a> {
    /// Annex-B NAL units of one access unit.
    Packet(&'a [u8]),
    /// The end of the stream (completes the last picture).
    EndOfStream,
    /// Drain one picture held for reordering.
    Flush,
}

/// A decoder that tags pictures.
pub(super) struct TaggedDecoder(Decoder);

impl TaggedDecoder {
    pub(super) fn new() -> Result<Self, String> {
        keep_c_heap_blocks();
        Decoder::new().map(Self).map_err(|e| e.to_string())
    }

    /// Feeds Annex-B NAL units tagged `tag`; returns the picture that became ready, if any,
    /// with its tag, copied out of the decoder when `keep(its tag)` (a picture decoded only as a
    /// reference for later ones is never copied). OpenH264 completes a picture when the next
    /// one starts: after the last packet, [`Step::EndOfStream`] completes it and
    /// [`Step::Flush`] drains the pictures held for reordering, one a call.
    pub(super) fn decode(
        &mut self,
        step: Step<'_>,
        tag: u64,
        keep: impl Fn(u64) -> bool,
    ) -> Result<Option<(u64, Option<Yuv420>)>, String> {
        let mut planes = [null_mut::<u8>(); 3];
        let mut info = SBufferInfo {
            uiInBsTimeStamp: tag,
            ..SBufferInfo::default()
        };
        // SAFETY: `planes` and `info` outlive the call; the source pointer and length describe a
        // live slice (or are null and 0, OpenH264's end-of-stream call). The decoder is
        // initialised by `Decoder::new`.
        let state = timed(Stage::Decode, || unsafe {
            let api = self.0.raw_api();
            match step {
                Step::Packet(p) => api.decode_frame2(
                    p.as_ptr(),
                    p.len() as i32,
                    planes.as_mut_ptr(),
                    &raw mut info,
                ),
                Step::EndOfStream => {
                    api.decode_frame2(std::ptr::null(), 0, planes.as_mut_ptr(), &raw mut info)
                }
                Step::Flush => api.flush_frame(planes.as_mut_ptr(), &raw mut info),
            }
        });
        if state != 0 {
            return Err(format!("OpenH264 decoding state {state:#x}"));
        }
        if info.iBufferStatus != 1 {
            return Ok(None);
        }
        crate::stages::decoded_picture();
        let tag = info.uiOutYuvTimeStamp;
        if !keep(tag) {
            return Ok(Some((tag, None)));
        }
        // SAFETY: with iBufferStatus 1 the decoder filled the system-buffer member of the union
        // and the three plane pointers, valid until the next call on this decoder.
        let picture = timed(Stage::Decode, || unsafe {
            let buffer = info.UsrData.sSystemBuffer;
            let (width, height) = (buffer.iWidth as usize, buffer.iHeight as usize);
            let (luma_stride, chroma_stride) =
                (buffer.iStride[0] as usize, buffer.iStride[1] as usize);
            if planes.iter().any(|p| p.is_null()) || width == 0 || height == 0 {
                return None;
            }
            let y = std::slice::from_raw_parts(planes[0], luma_stride * height);
            let u = std::slice::from_raw_parts(planes[1], chroma_stride * height.div_ceil(2));
            let v = std::slice::from_raw_parts(planes[2], chroma_stride * height.div_ceil(2));
            Yuv420::copy([y, u, v], [width, height], [luma_stride, chroma_stride])
        })
        .ok_or_else(|| "OpenH264 returned an empty or inconsistent picture".to_string())?;
        Ok(Some((tag, Some(picture))))
    }
    /// Number of pictures still buffered for reordering.
    pub(super) fn buffered(&mut self) -> usize {
        let mut count: DECODER_OPTION = 0;
        // SAFETY: the option writes one DECODER_OPTION-sized integer into `count`.
        let status = unsafe {
            self.0.raw_api().get_option(
                DECODER_OPTION_NUM_OF_FRAMES_REMAINING_IN_BUFFER,
                (&raw mut count).cast(),
            )
        };
        if status == 0 { count as usize } else { 0 }
    }
}

/// OpenH264 allocates its picture buffers (several frames) with the C allocator, for every
/// decoder: one a clip. glibc maps blocks over its threshold (128 KiB at first) straight from
/// the kernel and unmaps them when freed, so every clip faulted its buffers in and zeroed them
/// again, and page faults serialise the threads of a process: 156,689 faults over 96 720p clips
/// on 2 threads, 25 clips/s, where two single-thread processes made 26-27 together. A 64 MiB
/// threshold (and trimming above 256 MiB) keeps such blocks on the heap for reuse: 10,532
/// faults, 31 clips/s (docs/benchmarks.md). Set once, when the first decoder is made. It holds
/// for the process's other C-allocator blocks too (and for Rust's where the program keeps the
/// system allocator, which the `miga` binary does not): freed memory up to 256 MiB stays with
/// the process instead of going back to the kernel. glibc only; where glibc refuses a value it
/// keeps its default, and decoding only runs slower.
fn keep_c_heap_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt sets two of glibc's allocator parameters; valid at any time. Its
        // result (1 set, 0 refused) changes nothing here: refused, the default stays.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        });
    }
}
