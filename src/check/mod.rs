//! The parity checks, runnable on any compiled device: every committed reference fixture
//! (PyTorch outputs and autograd gradients, written by the generators in `scripts/`) against
//! miga's models on one device, each within its own tolerance.
//!
//! The same checks run in the test suite (`tests/backend_agreement.rs`, on Flex and wgpu), in
//! `miga check` and in the packed GPU check (`scripts/gpu/`, docs/gpu.md), so that a CUDA
//! machine without a Rust toolchain checks exactly what CI checks. A check never panics out:
//! a missing fixture, an unusable device or a backend that panics is a failed [`Outcome`] that
//! says why, and the next check runs.
//!
//! Three kinds ([`CheckKind`]):
//! - **forward**: the narrow fixtures (`forward/...`): 2s-AGCN on its three layouts, MViTv2
//!   (two configs), Swin-T, SwinFace, CMTF and InterFusion (two configs each), every output;
//! - **full**: the full-size networks (`full/...`): MViTv2-S, Swin-T, SwinFace and 2s-AGCN at
//!   reference widths, filled from the parameter stream ([`miga_backbones::parity`]);
//! - **gradients**: one training step (`gradients/...`): the loss and every parameter's
//!   gradient against PyTorch autograd, for each backbone and both fusion modules.
//!
//! Errors are scaled errors, `max |a - b| / max(1, max |reference|)`. Each tolerance is at
//! most 10x the worst error measured on Flex and on wgpu over Mesa's software driver (AMD EPYC
//! VM, 2026-12-06; docs/testing.md gives every measured value).
//!
//! ```no_run
//! use miga::check::{CHECKS, Fixtures, run};
//! use miga::device::DeviceSpec;
//!
//! let fixtures = Fixtures::at(".")?;
//! for check in CHECKS.iter().filter(|c| c.quick()) {
//!     let outcome = run(check, &fixtures, DeviceSpec::CPU);
//!     println!("{}: {:?} (tolerance {:e})", check.name, outcome.error, check.tolerance);
//! }
//! # Ok::<(), miga::Error>(())
//! ```

mod forward;
mod full_size;
mod gradients;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::TensorData;
use serde::Serialize;

use crate::Error;
use crate::device::{DeviceSpec, Precision};

/// What a check compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// A narrow fixture's forward outputs against the reference's.
    Forward,
    /// A full-size network's outputs against the reference's, weights from the stream.
    Full,
    /// One training step's loss and parameter gradients against PyTorch autograd.
    Gradients,
}

/// Which fixture a check reads, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Subject {
    /// 2s-AGCN, both streams and their fusion, on a graph layout.
    Agcn(&'static str),
    /// MViTv2 on a fixture case, with its weights file.
    Mvit(&'static str, &'static str),
    /// Swin-T (`swin_t`) or SwinFace (`swinface`).
    Swin(&'static str),
    /// CMTF or InterFusion, by case.
    Fusion(&'static str),
    /// A full-size network, by fixture name.
    Full(&'static str),
    /// One training step, by case.
    Gradients(&'static str),
}

/// One check: a fixture, what is compared, and the largest scaled error that passes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Check {
    /// `kind/case`, for example `forward/agcn/kinetics`, `full/mvit_v2_s`, `gradients/cmtf_cross`.
    pub name: &'static str,
    /// What is compared.
    pub kind: CheckKind,
    /// The largest scaled error that passes (at most 10x the worst measured).
    pub tolerance: f32,
    subject: Subject,
}

impl Check {
    const fn new(name: &'static str, kind: CheckKind, tolerance: f32, subject: Subject) -> Self {
        Check {
            name,
            kind,
            tolerance,
            subject,
        }
    }

    /// Whether `--quick` runs it: every check but the full-size networks (seconds each on a
    /// CPU, where a full-size one takes up to a minute).
    pub fn quick(&self) -> bool {
        self.kind != CheckKind::Full
    }

    /// The largest scaled error that passes at `precision`: the check's own in f32; in f16 one
    /// bound per kind ([`half_tolerance`]), since the error then comes from the rounding of
    /// every weight and activation, not from the order of operations. bf16 has not been
    /// measured (no device at hand had it): its checks report their errors and pass whenever
    /// the outputs are finite.
    pub fn tolerance_at(&self, precision: Precision) -> f32 {
        match precision {
            Precision::F32 => self.tolerance,
            Precision::F16 => half_tolerance(self.kind),
            Precision::Bf16 => f32::INFINITY,
        }
    }
}

/// The largest scaled error a check of `kind` passes with in f16, against the reference's f32
/// outputs: at most 10x the worst measured in f16 on wgpu over
/// Mesa's software driver (Intel Xeon VM, 2026-12-07; docs/backends.md). Forward: 1.7e-2
/// (MViTv2's tokens), every top-1 the reference's. Gradients: 0.70 (SwinFace's head weights;
/// half-precision training has no loss scaling and no f32 master weights, so small gradients
/// lose most of their digits), so in half precision the gradient checks only catch what is
/// grossly wrong or not finite.
pub fn half_tolerance(kind: CheckKind) -> f32 {
    match kind {
        Forward => 0.1,
        Full => 0.1,
        Gradients => 1.0,
    }
}

use CheckKind::{Forward, Full, Gradients};

/// Every check, in the order they run.
pub const CHECKS: &[Check] = &[
    Check::new(
        "forward/agcn/kinetics",
        Forward,
        2e-6,
        Subject::Agcn("kinetics"),
    ),
    Check::new(
        "forward/agcn/ntu-rgb-d",
        Forward,
        2e-6,
        Subject::Agcn("ntu-rgb-d"),
    ),
    Check::new(
        "forward/agcn/imigue-upper-hands",
        Forward,
        4e-6,
        Subject::Agcn("imigue-upper-hands"),
    ),
    Check::new(
        "forward/mvit/tiny",
        Forward,
        1e-5,
        Subject::Mvit("tiny", "weights.pth"),
    ),
    Check::new(
        "forward/mvit/odd",
        Forward,
        1e-5,
        Subject::Mvit("odd", "weights.safetensors"),
    ),
    Check::new(
        "forward/swin/swin_t",
        Forward,
        2e-6,
        Subject::Swin("swin_t"),
    ),
    Check::new(
        "forward/swin/swinface",
        Forward,
        1e-5,
        Subject::Swin("swinface"),
    ),
    Check::new(
        "forward/cmtf_cross",
        Forward,
        2e-6,
        Subject::Fusion("cmtf_cross"),
    ),
    Check::new(
        "forward/cmtf_joint",
        Forward,
        4e-6,
        Subject::Fusion("cmtf_joint"),
    ),
    Check::new(
        "forward/interfusion_full",
        Forward,
        2e-6,
        Subject::Fusion("interfusion_full"),
    ),
    Check::new(
        "forward/interfusion_late",
        Forward,
        2e-6,
        Subject::Fusion("interfusion_late"),
    ),
    Check::new("full/mvit_v2_s", Full, 4e-5, Subject::Full("mvit_v2_s")),
    Check::new("full/swin_t", Full, 8e-6, Subject::Full("swin_t")),
    Check::new("full/swinface", Full, 2e-5, Subject::Full("swinface")),
    Check::new(
        "full/agcn_kinetics",
        Full,
        1e-5,
        Subject::Full("agcn_kinetics"),
    ),
    Check::new(
        "full/agcn_imigue_upper_hands",
        Full,
        1e-5,
        Subject::Full("agcn_imigue_upper_hands"),
    ),
    // SwinFace's gradients are the least well conditioned: its BatchNorm1d layers see a batch
    // of four faces.
    Check::new(
        "gradients/mvit",
        Gradients,
        7e-5,
        Subject::Gradients("mvit"),
    ),
    Check::new(
        "gradients/agcn",
        Gradients,
        7e-6,
        Subject::Gradients("agcn"),
    ),
    Check::new(
        "gradients/swin_t",
        Gradients,
        1e-5,
        Subject::Gradients("swin_t"),
    ),
    Check::new(
        "gradients/swinface",
        Gradients,
        4e-4,
        Subject::Gradients("swinface"),
    ),
    Check::new(
        "gradients/cmtf_cross",
        Gradients,
        4e-6,
        Subject::Gradients("cmtf_cross"),
    ),
    Check::new(
        "gradients/cmtf_joint",
        Gradients,
        1e-5,
        Subject::Gradients("cmtf_joint"),
    ),
    Check::new(
        "gradients/interfusion_full",
        Gradients,
        6e-6,
        Subject::Gradients("interfusion_full"),
    ),
    Check::new(
        "gradients/interfusion_late",
        Gradients,
        6e-6,
        Subject::Gradients("interfusion_late"),
    ),
];

/// The check named `name`.
pub fn find(name: &str) -> Result<&'static Check, Error> {
    CHECKS.iter().find(|c| c.name == name).ok_or_else(|| {
        let names: Vec<&str> = CHECKS.iter().map(|c| c.name).collect();
        Error::InvalidArgument(format!(
            "no check `{name}`; the checks: {}",
            names.join(", ")
        ))
    })
}

/// Where the fixtures are: a folder holding `crates/miga-backbones/tests/fixtures` and
/// `crates/miga-fusion/tests/fixtures`, as the repository and the GPU pack do.
#[derive(Clone, Debug)]
pub struct Fixtures {
    root: PathBuf,
}

impl Fixtures {
    /// The fixtures under `root`; an error naming the folder when they are not there.
    pub fn at(root: impl Into<PathBuf>) -> Result<Self, Error> {
        let fixtures = Fixtures { root: root.into() };
        for dir in [fixtures.backbones(), fixtures.fusion()] {
            if !dir.is_dir() {
                return Err(Error::InvalidArgument(format!(
                    "{}: no such folder; --fixtures names a folder holding \
                     crates/miga-backbones/tests/fixtures and crates/miga-fusion/tests/fixtures \
                     (the repository, or a GPU pack)",
                    dir.display()
                )));
            }
        }
        Ok(fixtures)
    }

    /// The fixtures of the repository this crate was built from.
    pub fn in_repository() -> Self {
        Fixtures {
            root: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        }
    }

    fn backbones(&self) -> PathBuf {
        self.root.join("crates/miga-backbones/tests/fixtures")
    }

    fn fusion(&self) -> PathBuf {
        self.root.join("crates/miga-fusion/tests/fixtures")
    }
}

/// What one check gave on one device.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The check's name.
    pub check: String,
    /// What it compares.
    pub kind: CheckKind,
    /// The device it ran on.
    pub device: String,
    /// The floating-point type it computed in.
    pub precision: Precision,
    /// Its tolerance at that precision.
    pub tolerance: f32,
    /// The share of rows of every `logits` output whose largest entry is the reference's
    /// (top-1 agreement); `None` for a check without logits (gradients).
    pub top1: Option<f32>,
    /// The worst scaled error over everything compared; `None` when the check failed to run.
    pub error: Option<f32>,
    /// What gave the worst error: an output, `loss`, or a parameter (`index path`).
    pub worst: Option<String>,
    /// Every compared quantity's scaled error, by name.
    pub errors: Vec<(String, f32)>,
    /// Seconds the check took, loading included.
    pub seconds: f64,
    /// Whether it ran and every error is within the tolerance.
    pub passed: bool,
    /// Why it failed to run (a missing fixture, an unusable device, a panic), if it did.
    pub failure: Option<String>,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.passed { "ok" } else { "FAILED" };
        let top1 = match self.top1 {
            Some(share) => format!(", top-1 {:.1}%", 100.0 * share),
            None => String::new(),
        };
        match (&self.error, &self.failure) {
            (Some(error), _) => write!(
                f,
                "{} on {} in {}: {error:e} at {} (tolerance {:e}, {} compared{top1}, {:.1} s) \
                 {verdict}",
                self.check,
                self.device,
                self.precision,
                self.worst.as_deref().unwrap_or("-"),
                self.tolerance,
                self.errors.len(),
                self.seconds
            ),
            (None, failure) => write!(
                f,
                "{} on {}: {} ({:.1} s) {verdict}",
                self.check,
                self.device,
                failure.as_deref().unwrap_or("no result"),
                self.seconds
            ),
        }
    }
}

/// Runs `check` on `device`. Never panics: a failure to run (a missing or malformed fixture,
/// an unusable device, a panic inside a backend) is an outcome that did not pass, saying why.
pub fn run(check: &Check, fixtures: &Fixtures, device: DeviceSpec) -> Outcome {
    let start = Instant::now();
    let errors = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        errors_of(check.subject, fixtures, device)
    }));
    let tolerance = check.tolerance_at(device.precision);
    let errors = match errors {
        Ok(Ok(errors)) => Ok(errors),
        Ok(Err(err)) => Err(err.to_string()),
        Err(panic) => Err(format!("panicked: {}", panic_message(&panic))),
    };
    let seconds = start.elapsed().as_secs_f64();
    let mut outcome = Outcome {
        check: check.name.to_string(),
        kind: check.kind,
        device: device.to_string(),
        precision: device.precision,
        tolerance,
        top1: None,
        error: None,
        worst: None,
        errors: Vec::new(),
        seconds,
        passed: false,
        failure: None,
    };
    match errors {
        Ok((errors, _)) if errors.is_empty() => outcome.failure = Some("nothing compared".into()),
        Ok((errors, top1)) => {
            let (worst, error) = errors
                .iter()
                .fold(None::<&(String, f32)>, |a, b| match a {
                    Some(a) if a.1 >= b.1 => Some(a),
                    _ => Some(b),
                })
                .cloned()
                .expect("not empty");
            outcome.passed = error <= tolerance;
            outcome.top1 = top1;
            outcome.error = Some(error);
            outcome.worst = Some(worst);
            outcome.errors = errors;
        }
        Err(reason) => outcome.failure = Some(reason),
    }
    outcome
}

/// Each compared quantity's scaled error, and the top-1 agreement of the logits, if any.
#[allow(clippy::type_complexity)]
fn errors_of(
    subject: Subject,
    fixtures: &Fixtures,
    device: DeviceSpec,
) -> Result<(Vec<(String, f32)>, Option<f32>), Error> {
    let (ours, theirs) = match subject {
        Subject::Gradients(case) => return Ok((gradients::errors(fixtures, case, device)?, None)),
        Subject::Full(case) => full_size::outputs(fixtures, case, device)?,
        subject => forward::outputs(fixtures, subject, device)?,
    };
    let top1 = top1_agreement(&ours, &theirs);
    Ok((compare(ours, &theirs)?, top1))
}

/// The share of rows (the last axis being the classes) of every output named `*logits` whose
/// largest entry is where the reference's is; `None` when no output is named so.
fn top1_agreement(
    ours: &BTreeMap<String, TensorData>,
    theirs: &BTreeMap<String, TensorData>,
) -> Option<f32> {
    let (mut same, mut rows) = (0usize, 0usize);
    for (name, ours) in ours.iter().filter(|(name, _)| name.ends_with("logits")) {
        let Some(theirs) = theirs.get(name) else {
            continue;
        };
        let values = |d: &TensorData| d.clone().convert::<f32>().to_vec::<f32>().ok();
        let (Some(a), Some(b)) = (values(ours), values(theirs)) else {
            continue;
        };
        let classes = *ours.shape.last()?;
        if classes == 0 || a.len() != b.len() {
            continue;
        }
        let argmax = |row: &[f32]| {
            (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best })
        };
        for (x, y) in a.chunks(classes).zip(b.chunks(classes)) {
            same += usize::from(argmax(x) == argmax(y));
            rows += 1;
        }
    }
    (rows > 0).then(|| same as f32 / rows as f32)
}

/// Each of our outputs' scaled error against the reference output of the same name.
fn compare(
    ours: BTreeMap<String, TensorData>,
    theirs: &BTreeMap<String, TensorData>,
) -> Result<Vec<(String, f32)>, Error> {
    ours.into_iter()
        .map(|(name, ours)| {
            let theirs = theirs.get(&name).ok_or_else(|| {
                Error::InvalidArgument(format!("the fixture has no reference output `{name}`"))
            })?;
            let error = miga_backbones::parity::scaled_error(&ours, theirs).map_err(|reason| {
                Error::Disagreement {
                    reference: "the reference outputs".into(),
                    other: "miga".into(),
                    reason: format!("{name}: {reason}"),
                }
            })?;
            Ok((name, error))
        })
        .collect()
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

/// A fixture's tensors.
fn read(path: &Path) -> Result<BTreeMap<String, TensorData>, Error> {
    Ok(miga_datasets::tensors::read_tensors(path)?)
}

/// A fixture's model config (a Burn `Config` JSON file).
fn config<C: burn::config::Config>(path: &Path) -> Result<C, Error> {
    C::load(path).map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))
}

/// A fixture's JSON record.
fn record(path: &Path) -> Result<serde_json::Value, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text)
        .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))
}

/// A tensor named `name` in a fixture's tensors.
fn tensor(io: &BTreeMap<String, TensorData>, name: &str) -> Result<TensorData, Error> {
    io.get(name)
        .cloned()
        .ok_or_else(|| Error::InvalidArgument(format!("the fixture has no tensor `{name}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for check in CHECKS {
            assert_eq!(find(check.name).unwrap(), check);
            assert!(
                check.tolerance > 0.0 && check.tolerance < 1e-3,
                "{}",
                check.name
            );
        }
        assert!(
            find("forward/nothing")
                .unwrap_err()
                .to_string()
                .contains("forward/agcn/kinetics")
        );
    }

    #[test]
    fn missing_fixtures_are_failed_outcomes_that_say_so() {
        let err = Fixtures::at("/nonexistent").unwrap_err().to_string();
        assert!(
            err.contains("/nonexistent/crates/miga-backbones/tests/fixtures"),
            "{err}"
        );
        let empty = Fixtures {
            root: PathBuf::from("/nonexistent"),
        };
        for name in [
            "forward/agcn/kinetics",
            "full/swin_t",
            "gradients/cmtf_cross",
        ] {
            let outcome = run(find(name).unwrap(), &empty, DeviceSpec::CPU);
            assert!(!outcome.passed);
            let failure = outcome.failure.unwrap();
            assert!(failure.contains("/nonexistent/"), "{name}: {failure}");
        }
    }
}
