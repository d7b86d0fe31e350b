//! H.264 encoding (OpenH264) into an MP4 file (the `mp4` crate's writer), in memory.

use std::io::Cursor;

use ::mp4::{
    AvcConfig, FourCC, MediaConfig, Mp4Config, Mp4Sample, Mp4Writer, TrackConfig, TrackType,
};
use openh264::OpenH264API;
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, IntraFramePeriod, QpRange, RateControlMode,
};
use openh264::formats::{RgbSliceU8, YUVBuffer};

use crate::annotations::FPS;
use crate::{Error, Result};

/// Encodes RGB frames at 25 fps, an IDR frame every second, into an MP4 held in memory.
pub struct Mp4Encoder {
    encoder: Encoder,
    width: u32,
    height: u32,
    /// Length-prefixed NAL units of each frame and whether it is a sync frame.
    samples: Vec<(Vec<u8>, bool)>,
    sps: Vec<u8>,
    pps: Vec<u8>,
}

impl Mp4Encoder {
    pub fn new(width: u32, height: u32) -> Result<Self> {
        let config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(width * height * 12))
            .max_frame_rate(FrameRate::from_hz(FPS as f32))
            .skip_frames(false)
            .rate_control_mode(RateControlMode::Off)
            .qp(QpRange::new(22, 30))
            .intra_frame_period(IntraFramePeriod::from_num_frames(FPS as u32))
            .num_threads(1);
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| Error::request("H.264 encoder", e.to_string()))?;
        Ok(Self {
            encoder,
            width,
            height,
            samples: Vec::new(),
            sps: Vec::new(),
            pps: Vec::new(),
        })
    }

    /// Encodes one RGB8 frame.
    pub fn push(&mut self, rgb: &[u8]) -> Result<()> {
        let yuv = YUVBuffer::from_rgb8_source(RgbSliceU8::new(
            rgb,
            (self.width as usize, self.height as usize),
        ));
        let stream = self
            .encoder
            .encode(&yuv)
            .map_err(|e| Error::request("H.264 encoder", e.to_string()))?;
        let mut sample = Vec::new();
        let mut sync = false;
        for l in 0..stream.num_layers() {
            let Some(layer) = stream.layer(l) else {
                continue;
            };
            for n in 0..layer.nal_count() {
                let Some(unit) = layer.nal_unit(n) else {
                    continue;
                };
                let nal = strip_start_code(unit);
                match nal.first().map(|b| b & 0x1f) {
                    Some(7) => self.sps = nal.to_vec(),
                    Some(8) => self.pps = nal.to_vec(),
                    Some(kind) => {
                        sync |= kind == 5;
                        sample.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                        sample.extend_from_slice(nal);
                    }
                    None => {}
                }
            }
        }
        if sample.is_empty() {
            return Err(Error::request(
                "H.264 encoder",
                format!("no picture for frame {}", self.samples.len()),
            ));
        }
        self.samples.push((sample, sync));
        Ok(())
    }

    /// The MP4 file's bytes.
    pub fn finish(self) -> std::result::Result<Vec<u8>, String> {
        let config = Mp4Config {
            major_brand: FourCC::from(*b"isom"),
            minor_version: 512,
            compatible_brands: [*b"isom", *b"iso2", *b"avc1", *b"mp41"]
                .map(FourCC::from)
                .to_vec(),
            timescale: 1000,
        };
        let fail = |e: ::mp4::Error| e.to_string();
        let mut writer = Mp4Writer::write_start(Cursor::new(Vec::new()), &config).map_err(fail)?;
        let avc = AvcConfig {
            width: self.width as u16,
            height: self.height as u16,
            seq_param_set: self.sps,
            pic_param_set: self.pps,
        };
        let track = TrackConfig {
            track_type: TrackType::Video,
            timescale: FPS as u32 * 512,
            language: "und".into(),
            media_conf: MediaConfig::AvcConfig(avc),
        };
        writer.add_track(&track).map_err(fail)?;
        for (i, (bytes, is_sync)) in self.samples.into_iter().enumerate() {
            let sample = Mp4Sample {
                start_time: i as u64 * 512,
                duration: 512,
                rendering_offset: 0,
                is_sync,
                bytes: bytes.into(),
            };
            writer.write_sample(1, &sample).map_err(fail)?;
        }
        writer.write_end().map_err(fail)?;
        Ok(writer.into_writer().into_inner())
    }
}

fn strip_start_code(unit: &[u8]) -> &[u8] {
    let zeros = unit.iter().take_while(|&&b| b == 0).count();
    if zeros >= 2 && unit.get(zeros) == Some(&1) {
        &unit[zeros + 1..]
    } else {
        unit
    }
}
