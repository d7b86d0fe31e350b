//! The `miga` binary as a user runs it.

use assert_cmd::Command;

fn miga() -> Command {
    Command::cargo_bin("miga").expect("the miga binary is built for tests")
}

fn output(args: &[&str]) -> (bool, String, String) {
    let out = miga().args(args).output().expect("miga runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_command_and_each_has_an_example() {
    let (ok, stdout, _) = output(&["--help"]);
    assert!(ok);
    let commands = [
        "info", "forward", "demo", "extract", "train", "runs", "eval", "predict", "export",
        "faces", "video", "synth", "data", "bench", "check",
    ];
    for command in commands {
        assert!(
            stdout.contains(command),
            "--help lacks {command}:\n{stdout}"
        );
        let (ok, help, _) = output(&[command, "--help"]);
        assert!(ok, "{command} --help failed");
        assert!(
            help.contains(&format!("miga {command}")),
            "{command} --help has no example:\n{help}"
        );
    }
}

#[test]
fn info_lists_backends_and_the_cpu_device() {
    let (ok, stdout, stderr) = output(&["info"]);
    assert!(ok, "{stderr}");
    for name in ["cpu", "ndarray", "wgpu", "vulkan", "metal", "cuda"] {
        assert!(stdout.contains(name), "info lacks {name}:\n{stdout}");
    }
    assert!(stdout.contains("usable   flex"), "{stdout}");
    assert!(stdout.contains("H.264 decoder: OpenH264"), "{stdout}");

    let (ok, json, _) = output(&["info", "--device", "cpu", "--json"]);
    assert!(ok);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["devices"][0]["usable"], true);
    assert_eq!(value["backends"].as_array().unwrap().len(), 6);
    assert_eq!(value["h264_decoder"], miga::datasets::video::DECODER);
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_on_a_build_without_it_names_the_feature() {
    let (ok, _, stderr) = output(&["info", "--device", "cuda"]);
    assert!(!ok);
    assert!(stderr.contains("--features cuda"), "{stderr}");
}

#[test]
fn bad_device_and_wrong_streams_fail_clearly() {
    let (ok, _, stderr) = output(&["info", "--device", "tpu"]);
    assert!(!ok);
    assert!(stderr.contains("invalid device `tpu`"), "{stderr}");

    let (ok, _, stderr) = output(&[
        "train",
        "--task",
        "emotion",
        "--streams",
        "video",
        "--features",
        "f",
        "--valid",
        "v",
        "--out",
        "o",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("--streams video is not a stream of the emotion task"),
        "{stderr}"
    );

    let (ok, stdout, _) = output(&["demo", "--print-config"]);
    assert!(ok);
    assert!(
        stdout.contains("[data]") && stdout.contains("[emotion_training.fusion]"),
        "{stdout}"
    );
}

fn agcn_fixture(file: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/miga-backbones/tests/fixtures/agcn/kinetics")
        .join(file)
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("miga-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `miga check` runs chosen checks against the repository's fixtures, writes their outcomes
/// as JSON, and says clearly when there is nothing to check.
#[test]
fn check_runs_chosen_checks_and_writes_their_outcomes() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let json = scratch("check.json");
    let json_arg = json.to_str().unwrap();
    let (ok, stdout, stderr) = output(&[
        "check",
        "--fixtures",
        repo,
        "--only",
        "forward/cmtf_cross,gradients/interfusion_late",
        "--json",
        json_arg,
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("2 checks: 2 passed, 0 failed"), "{stdout}");
    let outcomes: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let outcomes = outcomes.as_array().unwrap();
    assert_eq!(outcomes.len(), 2);
    for outcome in outcomes {
        assert_eq!(outcome["device"], "cpu");
        assert_eq!(outcome["passed"], true);
        assert!(outcome["error"].as_f64().unwrap() <= outcome["tolerance"].as_f64().unwrap());
    }
    // `--list` names every check; `--quick` leaves out the full-size ones.
    let (ok, all, _) = output(&["check", "--list"]);
    let (_, quick, _) = output(&["check", "--list", "--quick"]);
    assert!(ok && all.contains("full/mvit_v2_s") && !quick.contains("full/"));
    assert_eq!(all.lines().count(), miga::check::CHECKS.len());

    let (ok, _, stderr) = output(&["check", "--fixtures", "/nonexistent"]);
    assert!(
        !ok && stderr.contains("/nonexistent/crates/miga-backbones/tests/fixtures"),
        "{stderr}"
    );
    let (ok, _, stderr) = output(&["check", "--only", "nothing/"]);
    assert!(!ok && stderr.contains("no check starts with"), "{stderr}");
}

#[test]
fn forward_runs_both_agcn_streams_like_the_reference() {
    use miga::datasets::tensors::{read_tensors, write_tensors};

    let io = read_tensors(agcn_fixture("io.safetensors")).unwrap();
    let input = scratch("joints.safetensors");
    let out_path = scratch("out.safetensors");
    write_tensors(
        &input,
        &[("joints".to_string(), io["joints"].clone())].into(),
    )
    .unwrap();
    let joint = agcn_fixture("joint.pt");
    let bone = agcn_fixture("bone.pt");
    let (joint, bone) = (joint.to_str().unwrap(), bone.to_str().unwrap());
    let (input_s, out_s) = (input.to_str().unwrap(), out_path.to_str().unwrap());
    let forward = |graph: &str, extra: &[&str]| {
        let mut args = vec![
            "forward",
            "--arch",
            "agcn",
            "--graph",
            graph,
            "--weights",
            joint,
            "--input",
            input_s,
            "--output",
            out_s,
        ];
        args.extend_from_slice(extra);
        output(&args)
    };
    let (ok, stdout, stderr) = forward("kinetics", &["--stream", "both", "--bone-weights", bone]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("logits"), "{stdout}");
    let out = read_tensors(&out_path).unwrap();
    for (ours, reference) in [
        ("logits", "fused_logits"),
        ("joint_embedding", "joint_embedding"),
    ] {
        let a = out[ours].to_vec::<f32>().unwrap();
        let b = io[reference].to_vec::<f32>().unwrap();
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(worst <= 1e-4, "{ours}: {worst}");
    }

    // A checkpoint for 18 joints on the 25-joint graph, and a NaN in the input.
    let (ok, _, stderr) = forward("ntu-rgb-d", &[]);
    assert!(!ok);
    assert!(stderr.contains("18 joints"), "{stderr}");
    let mut joints = io["joints"].to_vec::<f32>().unwrap();
    joints[7] = f32::NAN;
    let bad = burn::tensor::TensorData::new(joints, io["joints"].shape.clone());
    write_tensors(&input, &[("joints".to_string(), bad)].into()).unwrap();
    let (ok, _, stderr) = forward("kinetics", &[]);
    assert!(!ok);
    assert!(
        stderr.contains("joints.safetensors") && stderr.contains("flat index 7"),
        "{stderr}"
    );
}

fn mvit_fixture(file: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/miga-backbones/tests/fixtures/mvit/tiny")
        .join(file)
}

#[test]
fn forward_runs_mvit_like_torchvision() {
    use miga::datasets::tensors::{read_tensors, write_tensors};

    let io = read_tensors(mvit_fixture("io.safetensors")).unwrap();
    let input = scratch("clips.safetensors");
    let out_path = scratch("mvit-out.safetensors");
    write_tensors(&input, &[("clips".to_string(), io["input"].clone())].into()).unwrap();
    let (weights, config) = (mvit_fixture("weights.pth"), mvit_fixture("config.json"));
    let run = |arch: &str, extra: &[&str]| {
        let mut args = vec![
            "forward",
            "--arch",
            arch,
            "--weights",
            weights.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out_path.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        output(&args)
    };
    let (ok, stdout, stderr) = run(
        "mvit_v2_s",
        &["--config", config.to_str().unwrap(), "--tokens"],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("tokens [2, 2, 2, 3, 32]"), "{stdout}");
    let out = read_tensors(&out_path).unwrap();
    for name in ["logits", "embedding", "tokens"] {
        let (a, b) = (
            out[name].to_vec::<f32>().unwrap(),
            io[name].to_vec::<f32>().unwrap(),
        );
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(a.len() == b.len() && worst <= 1e-4, "{name}: {worst}");
    }

    // The narrow fixture is not an mvit_v2_s checkpoint: the keys at fault are named.
    let (ok, _, stderr) = run("mvit_v2_s", &[]);
    assert!(!ok);
    assert!(
        stderr.contains("weights.pth") && stderr.contains("blocks.0.attn.qkv.weight"),
        "{stderr}"
    );
    // Clips of 4 channels.
    let four = burn::tensor::TensorData::new(vec![0.0f32; 4 * 4 * 32 * 48], [1, 4, 4, 32, 48]);
    write_tensors(&input, &[("clips".to_string(), four)].into()).unwrap();
    let (ok, _, stderr) = run("mvit_v2_s", &["--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("4 channels"), "{stderr}");
}

fn swin_fixture(case: &str, file: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/miga-backbones/tests/fixtures/swin")
        .join(case)
        .join(file)
}

fn max_abs_difference(a: &burn::tensor::TensorData, b: &burn::tensor::TensorData) -> f32 {
    let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn forward_runs_swinface_heads_and_swin_like_their_references() {
    use miga::datasets::tensors::{read_tensors, write_tensors};

    for (arch, case, weights) in [
        ("swinface", "swinface", "weights.pt"),
        ("swin_t", "swin_t", "weights.safetensors"),
    ] {
        let io = read_tensors(swin_fixture(case, "io.safetensors")).unwrap();
        let input = scratch(&format!("{case}-in.safetensors"));
        let out_path = scratch(&format!("{case}-out.safetensors"));
        write_tensors(
            &input,
            &[("images".to_string(), io["input"].clone())].into(),
        )
        .unwrap();
        let (config, weights) = (
            swin_fixture(case, "config.json"),
            swin_fixture(case, weights),
        );
        let args = [
            "forward",
            "--arch",
            arch,
            "--config",
            config.to_str().unwrap(),
            "--weights",
            weights.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out_path.to_str().unwrap(),
        ];
        let (ok, stdout, stderr) = output(&args);
        assert!(ok, "{stderr}");
        let out = read_tensors(&out_path).unwrap();
        let names: Vec<(&str, String)> = if case == "swinface" {
            assert!(stdout.contains("Expression [2, 7]"), "{stdout}");
            assert_eq!(out.len(), 43, "the embedding and 42 heads");
            vec![
                ("embedding", "embedding".into()),
                ("Expression", "head.Expression".into()),
                ("Age", "head.Age".into()),
            ]
        } else {
            vec![
                ("logits", "logits".into()),
                ("embedding", "embedding".into()),
            ]
        };
        for (name, expected) in names {
            let worst = max_abs_difference(&out[name], &io[&expected]);
            assert!(worst <= 1e-4, "{case} {name}: {worst}");
        }
        // The preset's 112x112 size is checked: 96x96 faces are refused with the shapes.
        let small = burn::tensor::TensorData::new(vec![0.0f32; 3 * 96 * 96], [1, 3, 96, 96]);
        write_tensors(&input, &[("images".to_string(), small)].into()).unwrap();
        let (ok, _, stderr) = output(&args);
        assert!(!ok && stderr.contains("[B >= 1, 3, 112, 112]"), "{stderr}");
    }
}

#[test]
fn faces_writes_aligned_crops_and_reports_what_it_skips() {
    let out = scratch("faces-data");
    let root = out.to_str().unwrap();
    let args = [
        "synth",
        "--out",
        root,
        "--seed",
        "5",
        "--videos",
        "6",
        "--clips-per-video",
        "1",
        "--size",
        "160x90",
    ];
    let (ok, _, stderr) = output(&args);
    assert!(ok, "{stderr}");
    let skeleton = out.join("imigue_skeleton_train/0001/0001_openpose.xlsx");
    let video = out.join("imigue_rgb_phase1/train_data/0001/0001.mp4");
    let crops = scratch("faces-0001");
    let run = |threshold: &str| {
        output(&[
            "faces",
            "--skeleton",
            skeleton.to_str().unwrap(),
            "--video",
            video.to_str().unwrap(),
            "--out",
            crops.to_str().unwrap(),
            "--min-confidence",
            threshold,
        ])
    };
    let (ok, stdout, stderr) = run("0.3");
    assert!(ok, "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(crops.join("faces.json")).unwrap()).unwrap();
    let written = report["written"].as_u64().unwrap() as usize;
    let frames = report["video_frames"].as_u64().unwrap() as usize;
    let skipped = report["skipped"].as_array().unwrap().len();
    // The synthetic skeletons drop a few points, as OpenPose does: those frames are reported.
    assert!(
        written > frames / 2 && written + skipped == frames,
        "{stdout}"
    );
    let first = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .fold(0, |t, s| if s["frame"] == t { t + 1 } else { t });
    let png = image::open(crops.join(format!("face_{first:06}.png"))).unwrap();
    assert_eq!((png.width(), png.height()), (112, 112));
    // Above every synthetic point's confidence: every frame is skipped, with the point named.
    std::fs::remove_dir_all(&crops).unwrap();
    let (ok, stdout, stderr) = run("0.99");
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("wrote 0 face crops") && stdout.contains("confidence"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(crops.join("faces.json")).unwrap()).unwrap();
    assert_eq!(report["skipped"].as_array().unwrap().len(), frames);
    assert_eq!(report["skipped"][0]["reason"], "low_confidence");
}

#[test]
fn bench_rejects_bad_requests_and_times_a_small_run() {
    let (ok, _, stderr) = output(&["bench", "--model", "agcn", "--batch", "0"]);
    assert!(!ok);
    assert!(stderr.contains("at least 1"), "{stderr}");
    let (ok, _, stderr) = output(&["bench", "--model", "resnet"]);
    assert!(!ok);
    assert!(stderr.contains("unknown model `resnet`"), "{stderr}");

    let json = scratch("bench.json");
    let (ok, stdout, stderr) = output(&[
        "bench",
        "--model",
        "agcn,cmtf,interfusion",
        "--mode",
        "forward,train",
        "--batch",
        "1",
        "--frames",
        "8",
        "--warmup",
        "0",
        "--iters",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("flex"), "{stdout}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = results.as_array().unwrap();
    let models: Vec<&str> = rows.iter().map(|r| r["model"].as_str().unwrap()).collect();
    assert_eq!(
        models,
        ["agcn", "agcn", "cmtf", "cmtf", "interfusion", "interfusion"]
    );
    assert!(rows.iter().all(|r| r["median_ms"].as_f64().unwrap() > 0.0));
    assert!(
        rows.iter()
            .all(|r| r["gflop_per_s"].as_f64().unwrap() > 0.0)
    );
}

/// Half precision: f16 on wgpu (Mesa's software driver has 16-bit shader floats) runs the
/// parity checks within the f16 tolerances, with top-1 agreement, and a training step; bf16 on
/// wgpu and f16 on the CPU are refused with a reason. Each run is its own process: a device
/// keeps one precision for the life of a process.
#[test]
fn half_precision_checks_and_trains_on_wgpu_and_is_refused_where_it_cannot_run() {
    let (ok, _, stderr) = output(&["bench", "--model", "cmtf", "--precision", "f8"]);
    assert!(!ok && stderr.contains("invalid precision `f8`"), "{stderr}");
    let (ok, _, stderr) = output(&["bench", "--model", "cmtf", "--precision", "f16"]);
    assert!(
        !ok && stderr.contains("device `cpu` cannot compute in f16"),
        "{stderr}"
    );
    let wgpu: miga::device::DeviceSpec = "wgpu".parse().unwrap();
    if let Err(err) = miga::device::probe(wgpu) {
        miga::datasets::skip_test(&format!("half precision on wgpu: {err}"));
        return;
    }
    let (ok, _, stderr) = output(&[
        "bench",
        "--model",
        "cmtf",
        "--device",
        "wgpu",
        "--precision",
        "bf16",
    ]);
    assert!(
        !ok && stderr.contains("device `wgpu` cannot compute in bf16"),
        "{stderr}"
    );
    let repo = env!("CARGO_MANIFEST_DIR");
    let json = scratch("check-f16.json");
    let (ok, stdout, stderr) = output(&[
        "check",
        "--device",
        "wgpu",
        "--precision",
        "f16",
        "--fixtures",
        repo,
        "--only",
        "forward/cmtf_cross,forward/agcn/kinetics,gradients/interfusion_late",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}{stderr}");
    let outcomes: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for outcome in outcomes.as_array().unwrap() {
        assert_eq!(outcome["precision"], "f16", "{outcome}");
        let error = outcome["error"].as_f64().unwrap();
        // Half precision really ran: errors far above f32's (below 1e-5 here).
        assert!(
            error > 1e-4 && error <= outcome["tolerance"].as_f64().unwrap(),
            "{outcome}"
        );
        if outcome["kind"] == "forward" {
            assert_eq!(outcome["top1"], 1.0, "{outcome}");
        }
    }
    let (ok, stdout, stderr) = output(&[
        "bench",
        "--model",
        "cmtf",
        "--device",
        "wgpu",
        "--precision",
        "f16",
        "--mode",
        "train",
        "--batch",
        "2",
        "--frames",
        "2",
        "--warmup",
        "0",
        "--iters",
        "1",
    ]);
    assert!(ok && stdout.contains(" f16 "), "{stdout}{stderr}");
}

#[test]
fn video_probe_and_extract_on_a_real_mp4() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/video");
    if !dir.exists() {
        miga::datasets::skip_test(&format!(
            "{} is absent (the shared real data lives beside the repository)",
            dir.display()
        ));
        return;
    }
    let file = dir.join("carphone_pristine.mp4");
    let (ok, stdout, stderr) = output(&["video", "probe", file.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let info: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (
            info["width"].as_u64(),
            info["height"].as_u64(),
            info["frames"].as_u64()
        ),
        (Some(176), Some(144), Some(120))
    );
    let out = scratch("frames");
    let (ok, stdout, stderr) = output(&[
        "video",
        "extract",
        file.to_str().unwrap(),
        "--frames",
        "0,10,119",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    let frame = image::open(out.join("frame_000119.png")).unwrap();
    assert_eq!((frame.width(), frame.height()), (176, 144));
    let (ok, _, stderr) = output(&[
        "video",
        "extract",
        file.to_str().unwrap(),
        "--frames",
        "120",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("frame 120"), "{stderr}");
    let (ok, _, stderr) = output(&["video", "probe", "Cargo.toml"]);
    assert!(!ok && stderr.contains("Cargo.toml"), "{stderr}");
}

#[test]
fn synth_then_data_check_and_bench() {
    let out = scratch("synth");
    let root = out.to_str().unwrap();
    let args = [
        "synth",
        "--out",
        root,
        "--seed",
        "3",
        "--videos",
        "6",
        "--clips-per-video",
        "2",
        "--size",
        "128x72",
    ];
    let (ok, stdout, stderr) = output(&args);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("12 clips"), "{stdout}");
    let (ok, stdout, stderr) = output(&["data", "check", root, "--format", "json"]);
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (report["videos"].as_u64(), report["clips"].as_u64()),
        (Some(6), Some(12))
    );
    assert_eq!(
        report["problems"].as_array().map(Vec::len),
        Some(0),
        "{stdout}"
    );
    assert_eq!(report["classes"].as_array().map(Vec::len), Some(32));
    // The loading rates, with each stage's share and ffmpeg beside them.
    let bench = |more: &[&str]| {
        let args = ["data", "bench", root, "--clips", "4", "--threads", "1"];
        output(&[&args[..], more].concat())
    };
    let ffmpeg = std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !ffmpeg {
        miga::datasets::skip_test("no ffmpeg on the PATH: data bench --ffmpeg is not run");
    }
    let with_ffmpeg: &[&str] = if ffmpeg { &["--ffmpeg"] } else { &[] };
    let (ok, stdout, stderr) = bench(&[&["--batch", "2", "--augment"], with_ffmpeg].concat());
    assert!(ok, "{stderr}");
    let lines = [
        "rgb:",
        "skeleton:",
        "decode ",
        "resize/crop ",
        "pictures decoded a clip",
    ];
    for line in lines.iter().chain(ffmpeg.then_some(&"ffmpeg:")) {
        assert!(stdout.contains(line), "no `{line}`:\n{stdout}");
    }
    assert!(stdout.contains("0 failed"), "{stdout}");
    // Through a clip cache: stored on the first run, read on the second (nothing decoded).
    let cache = scratch("clip-cache");
    let bench_cached = || bench(&["--cache", cache.to_str().unwrap()]);
    let (ok, first, stderr) = bench_cached();
    assert!(
        ok && first.contains("pictures decoded a clip"),
        "{stderr}{first}"
    );
    let (ok, second, stderr) = bench_cached();
    assert!(
        ok && !second.contains("pictures decoded a clip"),
        "{stderr}{second}"
    );
    assert!(cache.join("index.json").exists() && cache.join("shard-000000.bin").exists());
    // A skeleton-only download is a note, not a problem: the check passes.
    let rgb = out.join("imigue_rgb_phase1");
    let kept = out.join("rgb-aside");
    std::fs::rename(&rgb, &kept).unwrap();
    let (ok, stdout, stderr) = output(&["data", "check", root]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("notes:") && stdout.contains("skeleton-only download"),
        "{stdout}"
    );
    assert!(stdout.contains("problems: 0"), "{stdout}");
    std::fs::rename(&kept, &rgb).unwrap();
    // Test videos without MP4, as MiGA 2025 distributes them: a note too.
    std::fs::rename(rgb.join("test_data"), &kept).unwrap();
    let (ok, stdout, stderr) = output(&["data", "check", root]);
    assert!(
        ok && stdout.contains("test videos have no MP4"),
        "{stderr}{stdout}"
    );
    std::fs::rename(&kept, rgb.join("test_data")).unwrap();
    // A broken label file and a train video without its MP4 are all reported, and the check
    // fails.
    std::fs::write(
        out.join("imigue_skeleton_train/0001/0001_label.csv"),
        "4,10,5\n",
    )
    .unwrap();
    std::fs::remove_file(rgb.join("train_data/0002/0002.mp4")).unwrap();
    let (ok, stdout, stderr) = output(&["data", "check", root]);
    assert!(!ok && stderr.contains("2 problems found"), "{stderr}");
    assert!(
        stdout.contains("0001_label.csv:line 1") && stdout.contains("before it starts"),
        "{stdout}"
    );
    assert!(
        stdout.contains("have no MP4 while others have theirs (first: 0002)"),
        "{stdout}"
    );
    let (ok, _, stderr) = output(&["synth", "--out", root, "--size", "100"]);
    assert!(!ok && stderr.contains("WIDTHxHEIGHT"), "{stderr}");
    let (ok, _, stderr) = output(&["data", "check", "/nonexistent/labels.csv"]);
    assert!(
        !ok && stderr.contains("/nonexistent/labels.csv"),
        "{stderr}"
    );
}

#[test]
fn extract_train_eval_predict_on_synthetic_data() {
    let dir = scratch("pipeline");
    let _ = std::fs::remove_dir_all(&dir);
    let path = |p: &str| dir.join(p).to_str().unwrap().to_string();
    let data = path("data");
    let args = [
        "synth",
        "--out",
        &data,
        "--videos",
        "6",
        "--clips-per-video",
        "2",
        "--size",
        "128x72",
    ];
    assert!(output(&args).0);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("extract.toml"),
        "mvit = \"mvit_v2_xs\"\n[clip]\nframes = 4\nskeleton_frames = 16\n[clip.rgb]\nresize = 64\ncrop = 64\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("train.toml"),
        "epochs = 2\nbatch = 4\nwarmup_epochs = 1\n[fusion]\nd_model = 32\nheads = 2\nff_dim = 64\nlayers = 1\n",
    )
    .unwrap();
    for split in ["train", "validate"] {
        let out = path(split);
        let (ok, stdout, stderr) = output(&[
            "extract",
            "--data",
            &data,
            "--split",
            split,
            "--out",
            &out,
            "--config",
            &path("extract.toml"),
        ]);
        assert!(ok, "{stderr}");
        assert!(
            stdout.contains("4 clips in part 0/1: 4 extracted"),
            "{stdout}"
        );
    }
    let (_, stdout, _) = output(&[
        "extract",
        "--data",
        &data,
        "--out",
        &path("train"),
        "--config",
        &path("extract.toml"),
    ]);
    assert!(stdout.contains("0 extracted, 4 already there"), "{stdout}");
    let train = [
        "train",
        "--features",
        &path("train"),
        "--valid",
        &path("validate"),
        "--out",
        &path("run"),
        "--config",
        &path("train.toml"),
    ];
    let (ok, stdout, stderr) = output(&train);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("2 epochs"), "{stdout}");
    // What a command says besides its result is information: shown by default, hidden by -q.
    assert!(
        stderr.contains("read 4 items") && stderr.contains("epoch 2/2 done"),
        "{stderr}"
    );
    let quiet = path("run-quiet");
    let (ok, stdout, stderr) =
        output(&[&["-q"], &train[..5], &["--out", &quiet], &train[7..]].concat());
    assert!(ok && stdout.contains("2 epochs"), "{stderr}");
    assert!(
        !stderr.contains("read ") && !stderr.contains("epoch "),
        "{stderr}"
    );
    let (ok, _, stderr) = output(&train);
    assert!(!ok && stderr.contains("--resume"), "{stderr}");
    let (ok, stdout, stderr) = output(&[
        "eval",
        "--run",
        &path("run"),
        "--features",
        &path("validate"),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("4 clips: top-1"), "{stdout}");
    let metrics: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("run/eval-validate/metrics.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(metrics["clips"].as_u64(), Some(4));
    // The submission file of a run folder (or of an exported run).
    let predict = |run: &str, file: &str| {
        let (ok, _, stderr) = output(&[
            "predict",
            "--run",
            &path(run),
            "--features",
            &path("validate"),
            "--out",
            &path(file),
        ]);
        assert!(ok, "{stderr}");
        std::fs::read_to_string(dir.join(file)).unwrap()
    };
    let prediction = predict("run", "prediction.csv");
    assert!(prediction.starts_with("Id,Target\n0003_0,"), "{prediction}");
    assert_eq!(prediction.lines().count(), 5);
    // Exported, the run predicts the same from its safetensors file.
    let (ok, stdout, stderr) =
        output(&["export", "--run", &path("run"), "--out", &path("exported")]);
    assert!(
        ok && stdout.contains("exported a micro-gesture run"),
        "{stdout}{stderr}"
    );
    assert_eq!(predict("exported", "prediction-exported.csv"), prediction);
    let (ok, _, stderr) = output(&["eval", "--run", &data, "--features", &path("validate")]);
    assert!(!ok && stderr.contains("not a run folder"), "{stderr}");

    // End-to-end: the backbones and the fusion fine-tuned together from raw clips.
    let (ok, stdout, stderr) = output(&[
        "train",
        "--end-to-end",
        "--data",
        &data,
        "--extract-config",
        &path("extract.toml"),
        "--config",
        &path("train.toml"),
        "--out",
        &path("e2e"),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("2 epochs"), "{stdout}");
    let (ok, stdout, stderr) = output(&["eval", "--run", &path("e2e"), "--data", &data]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("4 clips: top-1"), "{stdout}");
    assert!(dir.join("e2e/eval-validate/confusion.svg").exists());
    let (ok, _, stderr) = output(&[
        "predict",
        "--run",
        &path("e2e"),
        "--data",
        &data,
        "--split",
        "validate",
        "--out",
        &path("e2e.csv"),
    ]);
    assert!(ok, "{stderr}");
    let e2e = std::fs::read_to_string(dir.join("e2e.csv")).unwrap();
    assert!(e2e.starts_with("Id,Target\n0003_0,"), "{e2e}");

    // The emotion task through the same commands: Win/Lose from data/labels.csv.
    std::fs::write(
        dir.join("emotion.toml"),
        "mvit = \"mvit_v2_xs\"\nswinface = \"swinface_xs\"\nexpressions = false\n[video]\nwindows = 2\nframes = 4\nskeleton_frames = 8\nfaces = 3\n[video.rgb]\nresize = 64\ncrop = 64\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("emotion-train.toml"),
        "epochs = 1\nbatch = 2\nwarmup_epochs = 1\n[fusion]\nd_model = 16\nheads = 2\nff_dim = 32\nintra_layers = 1\n",
    )
    .unwrap();
    for split in ["train", "validate"] {
        let (ok, stdout, stderr) = output(&[
            "extract",
            "--task",
            "emotion",
            "--data",
            &data,
            "--split",
            split,
            "--out",
            &path(&format!("emotion-{split}")),
            "--config",
            &path("emotion.toml"),
        ]);
        assert!(ok, "{stderr}");
        assert!(
            stdout.contains("2 videos in part 0/1: 2 extracted"),
            "{stdout}"
        );
    }
    let (ok, _, stderr) = output(&[
        "train",
        "--task",
        "emotion",
        "--streams",
        "late",
        "--features",
        &path("emotion-train"),
        "--valid",
        &path("emotion-validate"),
        "--out",
        &path("emotion-run"),
        "--config",
        &path("emotion-train.toml"),
    ]);
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = output(&[
        "eval",
        "--run",
        &path("emotion-run"),
        "--features",
        &path("emotion-validate"),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("2 videos: accuracy"), "{stdout}");
    let (ok, _, stderr) = output(&[
        "predict",
        "--run",
        &path("emotion-run"),
        "--features",
        &path("emotion-validate"),
        "--out",
        &path("emotion.csv"),
    ]);
    assert!(ok, "{stderr}");
    let csv = std::fs::read_to_string(dir.join("emotion.csv")).unwrap();
    assert!(csv.starts_with("Id,Target,P_win\n0003,"), "{csv}");
    // Micro-gesture features given to the emotion run are refused with the task named.
    let (ok, _, stderr) = output(&[
        "eval",
        "--run",
        &path("emotion-run"),
        "--features",
        &path("validate"),
    ]);
    assert!(!ok && stderr.contains("not emotion"), "{stderr}");
    // The run folders are hundreds of MB; CI's disk is small.
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts `miga args`, waits until `ready()` (polling), kills it with SIGKILL; whether it was
/// still running when killed.
/// The skeleton download alone (no videos): extraction says which stream to take, extracts
/// and trains the skeleton stream; `miga runs` lists the run; a skeleton table goes to
/// OpenPose JSON frames and back to the same table.
#[test]
fn a_skeleton_only_download_extracts_trains_and_converts() {
    let dir = scratch("skeleton-only");
    let _ = std::fs::remove_dir_all(&dir);
    let path = |p: &str| dir.join(p).to_str().unwrap().to_string();
    let data = path("data");
    let synth = [
        "synth",
        "--out",
        &data,
        "--videos",
        "6",
        "--clips-per-video",
        "2",
        "--size",
        "128x72",
    ];
    assert!(output(&synth).0);
    std::fs::remove_dir_all(dir.join("data/imigue_rgb_phase1")).unwrap();
    std::fs::write(
        dir.join("extract.toml"),
        "mvit = \"mvit_v2_xs\"\n[clip]\nframes = 4\nskeleton_frames = 16\n",
    )
    .unwrap();
    let extract = |split: &str, extra: &[&str]| {
        let out = path(split);
        let mut args = vec![
            "extract", "--data", &data, "--split", split, "--out", &out, "--config",
        ];
        let config = path("extract.toml");
        args.push(&config);
        args.extend_from_slice(extra);
        output(&args)
    };
    let (ok, _, stderr) = extract("train", &[]);
    assert!(!ok && stderr.contains("--modalities skeleton"), "{stderr}");
    for split in ["train", "validate"] {
        let (ok, stdout, stderr) = extract(split, &["--modalities", "skeleton"]);
        assert!(ok, "{stderr}");
        assert!(
            stdout.contains("extracted, 0 already there, 0 failed"),
            "{stdout}"
        );
    }
    std::fs::write(
        dir.join("train.toml"),
        "epochs = 3\nbatch = 4\nwarmup_epochs = 1\n[fusion]\nd_model = 32\nheads = 2\nff_dim = 64\nlayers = 1\n",
    )
    .unwrap();
    let train = |streams: &str, out: &str| {
        output(&[
            "train",
            "--features",
            &path("train"),
            "--valid",
            &path("validate"),
            "--out",
            &path(out),
            "--config",
            &path("train.toml"),
            "--streams",
            streams,
        ])
    };
    let (ok, _, stderr) = train("both", "fused");
    assert!(!ok && stderr.contains("--streams skeleton"), "{stderr}");
    let (ok, stdout, stderr) = train("skeleton", "skeleton");
    assert!(ok, "{stderr}");
    assert!(stdout.contains("the run folder holds"), "{stdout}");
    let (ok, stdout, stderr) = output(&["runs", &dir.to_string_lossy()]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("skeleton | micro-gesture | 3/3 |"),
        "{stdout}"
    );
    let (ok, json, _) = output(&["runs", &path("skeleton"), "--json"]);
    assert!(ok);
    let runs: serde_json::Value = serde_json::from_str(&json).unwrap();
    // The newest two checkpoints at most (which ones are written depends on their timing), the
    // last epoch's always.
    let kept = runs[0]["checkpoints"].as_array().unwrap();
    assert!(
        kept.len() <= 2 && kept.last() == Some(&serde_json::json!(3)),
        "{json}"
    );
    // A table to JSON frames and back.
    let table = std::fs::read_dir(dir.join("data/imigue_skeleton_train"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let id = table.file_name().unwrap().to_string_lossy().into_owned();
    let xlsx = table.join(format!("{id}_openpose.xlsx"));
    let frames = path("frames");
    let (ok, stdout, stderr) = output(&["data", "convert", &xlsx.to_string_lossy(), &frames]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("_keypoints.json"), "{stdout}");
    let back = path("back.xlsx");
    let (ok, stdout, stderr) = output(&["data", "convert", &frames, &back]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("0 with several"), "{stdout}");
    assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&xlsx).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh scratch folder `name` holding a synthetic MiGA dataset in `data/` (`videos` videos
/// of `clips` clips, 128x72) and `extract` as `extract.toml`.
fn synthetic_dataset(name: &str, videos: usize, clips: usize, extract: &str) -> std::path::PathBuf {
    let dir = scratch(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data").to_str().unwrap().to_string();
    let (videos, clips) = (videos.to_string(), clips.to_string());
    let synth = [
        "synth",
        "--out",
        &data,
        "--videos",
        &videos,
        "--clips-per-video",
        &clips,
        "--size",
        "128x72",
    ];
    assert!(output(&synth).0);
    std::fs::write(dir.join("extract.toml"), extract).unwrap();
    dir
}

/// Extraction settings slow enough to interrupt: one clip a forward pass and a shard.
const CLIP_BY_CLIP: &str = "mvit = \"mvit_v2_xs\"\nbatch = 1\nshard_items = 1\n[clip]\nframes = 4\nskeleton_frames = 16\n[clip.rgb]\nresize = 64\ncrop = 64\n";

/// Two writers on one output folder: the second stops at once naming the first; a killed
/// writer's lock is taken over by the next run.
#[test]
fn one_writer_per_output_folder() {
    let dir = synthetic_dataset("lock", 6, 4, CLIP_BY_CLIP);
    let path = |p: &str| dir.join(p).to_str().unwrap().to_string();
    let data = path("data");
    let features = path("features");
    let config = path("extract.toml");
    let extract = [
        "extract", "--data", &data, "--out", &features, "--config", &config,
    ];
    let lock = dir.join("features/.miga-lock-0of1");
    let mut first = std::process::Command::new(assert_cmd::cargo::cargo_bin("miga"))
        .args(extract)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !lock.exists() && start.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let (ok, _, stderr) = output(&extract);
    let running = first.try_wait().unwrap().is_none();
    assert!(
        running,
        "the first extraction ended before the second started"
    );
    assert!(!ok, "a second writer ran");
    let pid = first.id().to_string();
    assert!(
        stderr.contains(&format!("in use by pid {pid} on "))
            && stderr.contains("feature extraction"),
        "{stderr}"
    );
    // Killed, its lock stays behind; the next run takes it over and finishes the part.
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(lock.exists());
    let (ok, stdout, stderr) = output(&extract);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    assert!(!lock.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

fn kill_when(args: &[&str], ready: impl Fn() -> bool) -> bool {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("miga"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("miga starts");
    let start = std::time::Instant::now();
    while !ready() && start.elapsed() < std::time::Duration::from_secs(120) {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    running
}

#[test]
fn killed_extraction_and_training_resume_with_nothing_lost_or_repeated() {
    let dir = synthetic_dataset("killed", 6, 4, CLIP_BY_CLIP);
    let path = |p: &str| dir.join(p).to_str().unwrap().to_string();
    let data = path("data");
    let index = dir.join("features/index-0of1.json");
    let shards = || {
        std::fs::read_to_string(&index)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .map_or(0, |v| v["shards"].as_array().map_or(0, Vec::len))
    };
    let extract = [
        "extract",
        "--data",
        &data,
        "--out",
        &path("features"),
        "--config",
        &path("extract.toml"),
    ];
    let killed = kill_when(&extract, || shards() >= 2);
    assert!(killed, "the extraction finished before it could be killed");
    let before = shards();
    let (ok, stdout, stderr) = output(&extract);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("already there") && before < 8, "{stdout}");
    // Every clip once: 8 training clips, each in exactly one shard.
    let text = std::fs::read_to_string(&index).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut ids: Vec<String> = value["shards"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s[1].as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_str().unwrap().to_string())
        })
        .collect();
    let count = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!((count, ids.len()), (8, 8), "{text}");
    assert_eq!(value["complete"], true);

    // Training: killed once a checkpoint is on disk, resumed, compared with a run that was
    // never interrupted.
    std::fs::write(
        dir.join("train.toml"),
        "epochs = 150\nbatch = 4\nwarmup_epochs = 1\npatience = 0\n[fusion]\nd_model = 32\nheads = 2\nff_dim = 64\nlayers = 1\n",
    )
    .unwrap();
    let train = |out: &str| {
        [
            "train".to_string(),
            "--features".into(),
            path("features"),
            "--valid".into(),
            path("features"),
            "--out".into(),
            path(out),
            "--config".into(),
            path("train.toml"),
        ]
    };
    let run = dir.join("run");
    let args = train("run");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let checkpointed = || {
        std::fs::read_dir(run.join("checkpoint")).is_ok_and(|entries| {
            entries.filter_map(|e| e.ok()).any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with("scheduler-") && name.ends_with(".mpk")
            })
        })
    };
    let killed = kill_when(&args, checkpointed);
    assert!(killed, "the training finished before it could be killed");
    let mut resume = args.to_vec();
    resume.push("--resume");
    let (ok, stdout, stderr) = output(&resume);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("150 epochs"), "{stdout}");
    assert!(run.join("checkpoint/model-150.mpk").exists());
    // Every epoch has its metric logs, the ones trained after the resumption included.
    for epoch in 1..=150 {
        let log = run.join(format!("valid/epoch-{epoch}/Accuracy.log"));
        assert!(log.exists(), "{}", log.display());
    }
    let whole = train("whole");
    let whole: Vec<&str> = whole.iter().map(String::as_str).collect();
    let (ok, _, stderr) = output(&whole);
    assert!(ok, "{stderr}");
    // The same best epoch, and its model scores every clip exactly as the uninterrupted run's.
    let text = |run: &str| std::fs::read_to_string(dir.join(run).join("best.json")).unwrap();
    assert_eq!(text("run"), text("whole"));
    let scores = |run: &str| {
        use miga::tasks::micro_gesture::TrainedRun;
        let device = Default::default();
        let features = dir.join("features");
        let set = miga::tasks::features::FeatureSet::read(&features).unwrap();
        TrainedRun::<burn::backend::Flex>::load(&dir.join(run), &device)
            .unwrap()
            .scores(&set, &features, &device)
            .unwrap()
            .scores
    };
    assert_eq!(scores("run"), scores("whole"));
    // The run folders are hundreds of MB; CI's disk is small.
    let _ = std::fs::remove_dir_all(&dir);
}

/// Online recognition through the binary: background clips extracted with the labelled ones,
/// a run trained on them, micro-gestures found in the untrimmed test videos (detections,
/// timeline, frames/s, F1 at the labels) and scored again by `miga eval --task online`; the
/// labels scored against themselves give F1 = 1.
#[test]
fn detect_and_score_micro_gestures_in_untrimmed_synthetic_videos() {
    let dir = synthetic_dataset(
        "online",
        6,
        3,
        "mvit = \"mvit_v2_xs\"\n[clip]\nframes = 4\nskeleton_frames = 16\n[clip.rgb]\nresize = 64\ncrop = 64\n",
    );
    let path = |p: &str| dir.join(p).to_str().unwrap().to_string();
    for split in ["train", "validate"] {
        let (ok, stdout, stderr) = output(&[
            "extract",
            "--data",
            &path("data"),
            "--split",
            split,
            "--out",
            &path(split),
            "--config",
            &path("extract.toml"),
            "--background",
            "1",
            "--background-length",
            "16",
        ]);
        assert!(ok, "{stderr}");
        assert!(stderr.contains("background clips added"), "{stderr}");
        assert!(stdout.contains("clips in part 0/1"), "{stdout}");
    }
    std::fs::write(
        dir.join("train.toml"),
        "epochs = 2\nbatch = 4\nwarmup_epochs = 1\n[fusion]\nd_model = 32\nheads = 2\nff_dim = 64\nlayers = 1\n",
    )
    .unwrap();
    let (ok, _, stderr) = output(&[
        "train",
        "--features",
        &path("train"),
        "--valid",
        &path("validate"),
        "--out",
        &path("run"),
        "--config",
        &path("train.toml"),
    ]);
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = output(&[
        "detect",
        "--run",
        &path("run"),
        "--data",
        &path("data"),
        "--split",
        "test",
        "--out",
        &path("detect"),
        "--window",
        "16",
        "--stride",
        "8",
        // Loose settings, so that the briefly trained run finds instances to compare below.
        "--threshold",
        "0",
        "--min-length",
        "2",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("frames/s") && stdout.contains("F1"),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(dir.join("detect/detections.csv")).unwrap();
    assert!(csv.starts_with("video,class,start,end,score\n"), "{csv}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("detect/detect.json")).unwrap())
            .unwrap();
    assert_eq!(summary["videos"].as_u64(), Some(2));
    assert!(summary["frames_per_second"].as_f64().unwrap() > 0.0);
    let timelines: Vec<_> = std::fs::read_dir(dir.join("detect/timeline"))
        .unwrap()
        .collect();
    assert_eq!(timelines.len(), 2);
    let online = |file: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap()
    };
    let f1 = online("detect/online.json")["overall"]["f1"]
        .as_f64()
        .unwrap();
    assert!((0.0..=1.0).contains(&f1));
    // Followed as a stream (here a finished video, taken as ended after --idle): the batch
    // detections of that video, row for row.
    // The test video with the most detections.
    let files: Vec<std::path::PathBuf> = walk(&dir.join("data"));
    let (_, skeleton) = files
        .iter()
        .filter(|p| {
            p.to_string_lossy().contains("imigue_skeleton_test")
                && p.to_string_lossy().ends_with("_openpose.xlsx")
        })
        .map(|p| {
            let id = p
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .replace("_openpose", "");
            (
                csv.lines()
                    .filter(|l| l.starts_with(&format!("{id},")))
                    .count(),
                p,
            )
        })
        .max()
        .unwrap();
    let id = skeleton
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .replace("_openpose", "");
    let video = files
        .iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy() == format!("{id}.mp4"))
        })
        .unwrap();
    let (ok, stdout, stderr) = output(&[
        "detect",
        "--run",
        &path("run"),
        "--follow",
        "--video",
        video.to_str().unwrap(),
        "--skeleton",
        skeleton.to_str().unwrap(),
        "--out",
        &path("follow"),
        "--window",
        "16",
        "--stride",
        "8",
        "--threshold",
        "0",
        "--min-length",
        "2",
        "--poll",
        "0.05",
        "--idle",
        "0.3",
    ]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("within 22 frames of their end"), "{stderr}");
    // The same instances with the same scores (measured identical to the 6 decimals written).
    let rows = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{id},")))
            .map(str::to_string)
            .collect()
    };
    let batch = rows(&csv);
    assert!(!batch.is_empty(), "{csv}");
    let followed = std::fs::read_to_string(dir.join("follow/detections.csv")).unwrap();
    assert!(followed.starts_with("video,class,start,end,score\n"));
    assert_eq!(rows(&followed), batch);
    assert_eq!(rows(&stdout), batch);
    // Scored again from the file: the same numbers.
    let (ok, stdout, stderr) = output(&[
        "eval",
        "--task",
        "online",
        "--detections",
        &path("detect/detections.csv"),
        "--data",
        &path("data"),
        "--split",
        "test",
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("2 videos, tIoU 0.5"), "{stdout}");
    assert_eq!(
        online("detect/online.json")["overall"]["f1"].as_f64(),
        Some(f1)
    );
    // A video's labels as detections: every instance found.
    let labels = std::fs::read_dir(dir.join("data"))
        .unwrap()
        .flat_map(|e| walk(&e.unwrap().path()))
        .find(|p| p.to_string_lossy().ends_with("_label.csv"))
        .unwrap();
    let id = labels
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .replace("_label", "");
    let mut truth = String::from("video,class,start,end,score\n");
    for line in std::fs::read_to_string(&labels).unwrap().lines() {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() == 3 && f[0].parse::<f64>().is_ok() {
            truth.push_str(&format!("{id},{},{},{},1\n", f[0], f[1], f[2]));
        }
    }
    std::fs::write(dir.join("truth.csv"), truth).unwrap();
    let (ok, stdout, stderr) = output(&[
        "eval",
        "--task",
        "online",
        "--detections",
        &path("truth.csv"),
        "--labels",
        labels.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("F1 1.000"), "{stdout}");
}

/// Every file under `path`.
fn walk(path: &std::path::Path) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(path) {
        Ok(entries) => entries.flat_map(|e| walk(&e.unwrap().path())).collect(),
        Err(_) => vec![path.to_path_buf()],
    }
}
