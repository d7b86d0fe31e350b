//! Fuzzing on the stable toolchain: every parser of miga's inputs on seeded mutations of real
//! and synthetic seed files, asserting no panic, no hang and no allocation far beyond the
//! input's size (see docs/testing.md).
//!
//! Each parser gets `MIGA_FUZZ_COUNT` mutated inputs (2,000 by default) and first every
//! committed regression input under `tests/fuzz/<parser>/`. Each input is written to
//! `target/fuzz-findings/<parser>.bin` before it runs, so a crash that ends the process (an
//! abort on a failed allocation) leaves it there; a panic, a hang (over `PER_INPUT` seconds)
//! or an allocation over the limit fails the test and keeps the input the same way.
//! `MIGA_FUZZ_CORPUS=DIR` also writes the seed files to `DIR/<parser>/`, the corpus of the
//! cargo-fuzz targets in `fuzz/`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use miga::datasets::sampling::SeededRng;

/// Live and peak heap bytes of the whole process (the parsers' worker threads included).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: the caller's layout, as for `System`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let live = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed)
                + (new_size - layout.size());
            PEAK.fetch_max(live, Ordering::Relaxed);
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: as for `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A hang: an input that takes longer than this.
const PER_INPUT: Duration = Duration::from_secs(20);
/// Heap growth allowed while one input is parsed: this much, plus `GROWTH` times its size.
const FLOOR: usize = 192 << 20;
const GROWTH: usize = 64;

/// One parser: its name (the folder of its regression inputs and corpus), its seed files,
/// the file name an input is written to, and how it is read.
struct Parser {
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    file: &'static str,
    /// Binary formats get length fields overwritten with huge numbers; text formats get
    /// numbers in the text replaced.
    binary: bool,
    read: Box<dyn Fn(&Path) + Send + Sync>,
}

/// A mutation of `seed`: one to three of byte flips, truncation, insertion, a duplicated chunk
/// and a huge number (a length field, or digits in text).
fn mutate(seed: &[u8], binary: bool, rng: &mut SeededRng) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..1 + rng.below(3) {
        let len = out.len().max(1);
        match rng.below(6) {
            0 => {
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(len);
                    if let Some(b) = out.get_mut(i) {
                        *b ^= 1 << rng.below(8);
                    }
                }
            }
            1 => out.truncate(rng.below(len)),
            2 => {
                let at = rng.below(out.len() + 1);
                let bytes: Vec<u8> = (0..1 + rng.below(16))
                    .map(|_| rng.below(256) as u8)
                    .collect();
                out.splice(at..at, bytes);
            }
            3 if !out.is_empty() => {
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(64)).min(out.len());
                let chunk = out[start..end].to_vec();
                let at = rng.below(out.len() + 1);
                out.splice(at..at, chunk);
            }
            _ if binary && out.len() >= 8 => {
                let huge: [u64; 5] = [u32::MAX as u64, i32::MAX as u64, 1 << 31, u64::MAX, 1 << 40];
                let value = huge[rng.below(huge.len())];
                let width = if rng.below(2) == 0 { 4 } else { 8 };
                let at = rng.below(out.len() - width + 1);
                out[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
            }
            _ => {
                // Digits in text: one run of them becomes a huge or negative number.
                let runs: Vec<usize> = (0..out.len())
                    .filter(|&i| {
                        out[i].is_ascii_digit() && (i == 0 || !out[i - 1].is_ascii_digit())
                    })
                    .collect();
                if let Some(&start) = runs.get(rng.below(runs.len().max(1))) {
                    let end = (start..out.len())
                        .find(|&i| !out[i].is_ascii_digit())
                        .unwrap_or(out.len());
                    let numbers: [&[u8]; 4] =
                        [b"99999999999999999999", b"4294967296", b"-1", b"1e308"];
                    out.splice(
                        start..end,
                        numbers[rng.below(numbers.len())].iter().copied(),
                    );
                }
            }
        }
    }
    out
}

/// What one input did.
struct Outcome {
    panicked: Option<String>,
    grew: usize,
}

/// Runs `parser` on its regression inputs and `count` mutations; returns the largest heap
/// growth and the time taken.
fn fuzz(parser: Parser, count: usize, findings: &Path) -> (usize, Duration) {
    let Parser {
        name,
        seeds,
        file,
        binary,
        read,
    } = parser;
    assert!(!seeds.is_empty(), "{name}: no seed files");
    let scratch = std::env::temp_dir().join(format!("miga-fuzz-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let input = scratch.join(file);
    let kept = findings.join(format!("{name}.bin"));
    let regressions: Vec<Vec<u8>> = std::fs::read_dir(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fuzz")
            .join(name),
    )
    .map(|entries| {
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        paths.sort();
        paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
    })
    .unwrap_or_default();
    let (to_worker, inputs) = mpsc::channel::<PathBuf>();
    let (outcomes, from_worker) = mpsc::channel::<Outcome>();
    std::thread::spawn(move || {
        for path in inputs {
            let start = LIVE.load(Ordering::SeqCst);
            PEAK.store(start, Ordering::SeqCst);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(&path)));
            let grew = PEAK.load(Ordering::SeqCst).saturating_sub(start);
            let panicked = result.err().map(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            });
            if outcomes.send(Outcome { panicked, grew }).is_err() {
                return;
            }
        }
    });
    let mut rng = SeededRng::new(0x5eed ^ name.len() as u64);
    let started = Instant::now();
    let mut largest = 0;
    let total = regressions.len() + count;
    for n in 0..total {
        let bytes = match regressions.get(n) {
            Some(bytes) => bytes.clone(),
            None => mutate(&seeds[n % seeds.len()], binary, &mut rng),
        };
        std::fs::write(&kept, &bytes).unwrap();
        std::fs::write(&input, &bytes).unwrap();
        to_worker.send(input.clone()).unwrap();
        let outcome = match from_worker.recv_timeout(PER_INPUT) {
            Ok(outcome) => outcome,
            Err(_) => panic!(
                "{name}: input {n} ran over {PER_INPUT:?}; it is in {}",
                kept.display()
            ),
        };
        if let Some(message) = outcome.panicked {
            panic!(
                "{name}: input {n} panicked ({message}); it is in {}",
                kept.display()
            );
        }
        let limit = FLOOR + GROWTH * bytes.len();
        assert!(
            outcome.grew <= limit,
            "{name}: input {n} ({} bytes) grew the heap by {} MB; it is in {}",
            bytes.len(),
            outcome.grew >> 20,
            kept.display()
        );
        largest = largest.max(outcome.grew);
    }
    let _ = std::fs::remove_file(&kept);
    let _ = std::fs::remove_dir_all(&scratch);
    (largest, started.elapsed())
}

fn shared(sub: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(sub);
    if path.exists() {
        Some(path)
    } else {
        miga::datasets::skip_test(&format!(
            "{} is absent: its real seed files are left out",
            path.display()
        ));
        None
    }
}

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

/// The parsers and their seeds: synthetic files made here, the committed fixtures, and the
/// real iMiGUE files beside the repository.
fn parsers() -> Vec<Parser> {
    use miga::backbones::agcn::{AgcnConfig, Graph};
    use miga::datasets::annotations::{SegmentFormat, read_segments};
    use miga::datasets::skeleton::{read_openpose_frame, read_skeleton_xlsx};
    use miga::datasets::synth::{LABELS_CSV, SynthConfig, synthesise};
    use miga::datasets::{LabelTable, PersonSelection};

    let synthetic = std::env::temp_dir().join(format!("miga-fuzz-seeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&synthetic);
    let config = SynthConfig {
        seed: 1,
        videos: 2,
        clips_per_video: 2,
        width: 64,
        height: 64,
        classes: Vec::new(),
    };
    synthesise(&config, &synthetic, &|_, _| {}).unwrap();
    let train = synthetic.join("imigue_skeleton_train/0001");
    let imigue = shared("imigue");
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/miga-backbones/tests/fixtures");

    let mut csv = vec![read(synthetic.join(LABELS_CSV))];
    let mut per_video = vec![b"6.8553\t9.8553\t20\r\n9.8954\t12.7597\t18.0\r\n".to_vec()];
    let mut json = vec![
        br#"{"version":1.3,"people":[{"pose_keypoints_2d":[1,2,0.5,3,4,0.9],"face_keypoints_2d":[]}]}"#.to_vec(),
    ];
    let mut videos = vec![read(
        synthetic.join("imigue_rgb_phase1/train_data/0001/0001.mp4"),
    )];
    if let Some(imigue) = &imigue {
        // The real label file's header and first 300 rows.
        let text = String::from_utf8(read(imigue.join("labels_20200831.csv"))).unwrap();
        csv.push(
            text.lines()
                .take(301)
                .collect::<Vec<_>>()
                .join("\n")
                .into_bytes(),
        );
        for video in ["298", "341", "1"] {
            per_video.push(read(imigue.join(format!("labels-per-video/{video}.txt"))));
        }
        for frame in [0, 5_000, 10_000] {
            json.push(read(
                imigue.join(format!("skeleton/raw/298/298_{frame:012}_keypoints.json")),
            ));
        }
    }
    if let Some(video) = shared("video") {
        videos.push(read(video.join("carphone_pristine.mp4")));
    }
    let graphs: Vec<Vec<u8>> = std::fs::read_dir(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/miga-backbones/src/agcn/graphs"),
    )
    .unwrap()
    .map(|e| read(e.unwrap().path()))
    .collect();
    let configs = vec![
        toml::to_string(&<miga::tasks::micro_gesture::TrainConfig>::default())
            .unwrap()
            .into_bytes(),
        toml::to_string(&miga::tasks::micro_gesture::MicroGestureExtraction::default())
            .unwrap()
            .into_bytes(),
        toml::to_string(&miga::tasks::demo::DemoConfig::default())
            .unwrap()
            .into_bytes(),
    ];
    let run_json = serde_json::to_vec_pretty(&miga::tasks::run_info::RunInfo {
        task: "micro-gesture".into(),
        config: String::from_utf8(configs[0].clone()).unwrap(),
        features: "{\"settings\":{}}".into(),
    })
    .unwrap();
    let device = Default::default();
    let agcn_checkpoint = fixtures.join("agcn/kinetics/joint.pt");
    let agcn =
        AgcnConfig::load::<burn::backend::Flex>(&agcn_checkpoint, Graph::kinetics(), &device)
            .unwrap();

    vec![
        Parser {
            name: "label_csv",
            seeds: csv,
            file: "labels.csv",
            binary: false,
            read: Box::new(|p| drop(LabelTable::read_lenient(p))),
        },
        Parser {
            name: "miga_label_csv",
            seeds: vec![read(train.join("0001_label.csv"))],
            file: "0001_label.csv",
            binary: false,
            read: Box::new(|p| drop(read_segments(p, SegmentFormat::MigaFrames))),
        },
        Parser {
            name: "per_video_labels",
            seeds: per_video,
            file: "298.txt",
            binary: false,
            read: Box::new(|p| drop(read_segments(p, SegmentFormat::ImigueSeconds))),
        },
        Parser {
            name: "openpose_json",
            seeds: json,
            file: "v_000000000000_keypoints.json",
            binary: false,
            read: Box::new(|p| drop(read_openpose_frame(p, PersonSelection::default()))),
        },
        Parser {
            name: "skeleton_xlsx",
            seeds: vec![read(train.join("0001_openpose.xlsx"))],
            file: "0001_openpose.xlsx",
            binary: true,
            read: Box::new(|p| drop(read_skeleton_xlsx(p))),
        },
        Parser {
            name: "mp4_h264",
            seeds: videos,
            file: "0001.mp4",
            binary: true,
            read: Box::new(|p| {
                if let Ok(mut video) = miga::datasets::video::Video::open(p) {
                    let last = video.info().frames.saturating_sub(1);
                    let _ = video.frames(&[0, last / 2, last]);
                }
            }),
        },
        Parser {
            name: "safetensors",
            seeds: vec![
                read(fixtures.join("agcn/kinetics/io.safetensors")),
                read(fixtures.join("mvit/preprocess.safetensors")),
            ],
            file: "tensors.safetensors",
            binary: true,
            read: Box::new(|p| drop(miga::datasets::tensors::read_tensors(p))),
        },
        Parser {
            name: "pytorch_checkpoint",
            seeds: vec![read(&agcn_checkpoint)],
            file: "joint.pt",
            binary: true,
            read: Box::new(move |p| drop(agcn.clone().load_pytorch(p))),
        },
        Parser {
            name: "graph_toml",
            seeds: graphs,
            file: "graph.toml",
            binary: false,
            read: Box::new(|p| drop(Graph::from_toml_file(p))),
        },
        Parser {
            name: "config_toml",
            seeds: configs,
            file: "settings.toml",
            binary: false,
            read: Box::new(|p| {
                use miga::tasks::config::read_toml;
                drop(read_toml(
                    &<miga::tasks::micro_gesture::TrainConfig>::default(),
                    p,
                ));
                drop(read_toml(
                    &miga::tasks::micro_gesture::MicroGestureExtraction::default(),
                    p,
                ));
                drop(read_toml(&miga::tasks::demo::DemoConfig::default(), p));
            }),
        },
        Parser {
            name: "run_json",
            seeds: vec![run_json],
            file: "run.json",
            binary: false,
            read: Box::new(|p| drop(miga::tasks::run_info::read_run_info(p.parent().unwrap()))),
        },
    ]
}

/// One test, the parsers in turn: the heap counts are the whole process's.
#[test]
fn every_parser_survives_mutated_inputs() {
    let count: usize = std::env::var("MIGA_FUZZ_COUNT")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2_000);
    let findings = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-findings");
    std::fs::create_dir_all(&findings).unwrap();
    let corpus = std::env::var_os("MIGA_FUZZ_CORPUS").map(PathBuf::from);
    let mut report = Vec::new();
    for parser in parsers() {
        if let Some(corpus) = &corpus {
            let dir = corpus.join(parser.name);
            std::fs::create_dir_all(&dir).unwrap();
            for (i, seed) in parser.seeds.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
            }
        }
        let name = parser.name;
        let (largest, took) = fuzz(parser, count, &findings);
        report.push(format!(
            "{name}: {count} inputs in {:.1} s, largest heap growth {:.1} MB",
            took.as_secs_f64(),
            largest as f64 / (1 << 20) as f64
        ));
    }
    eprintln!("{}", report.join("\n"));
}
