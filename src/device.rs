//! Choosing a backend and a device at run time.
//!
//! Every model in miga is generic over `B: Backend`; this module is the one place that names
//! concrete backends. A [`DeviceSpec`] is parsed from the command line's `--device` value
//! (`cpu`, `ndarray`, `wgpu[:N]`, `vulkan[:N]`, `metal[:N]`, `cuda[:N]`), and
//! [`DeviceSpec::run`] / [`DeviceSpec::run_autodiff`] call a generic [`BackendTask`] with the
//! matching backend type, or fail with the cargo feature to enable when that backend is not
//! compiled in. A spec also carries the floating-point [`Precision`] its work computes in
//! (`--precision f32|f16|bf16`; f32 unless asked).
//!
//! ```
//! use burn::tensor::{Tensor, backend::Backend};
//! use miga::device::{BackendTask, DeviceSpec};
//!
//! struct SumOfOnes;
//! impl BackendTask for SumOfOnes {
//!     type Output = f32;
//!     fn run<B: Backend>(self, device: B::Device) -> f32 {
//!         Tensor::<B, 2>::ones([2, 3], &device).sum().into_scalar().elem()
//!     }
//! }
//! # use burn::tensor::ElementConversion;
//! let spec: DeviceSpec = "cpu".parse()?;
//! assert_eq!(spec.run(SumOfOnes)?, 6.0);
//! # Ok::<(), miga::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;

use burn::tensor::backend::{AutodiffBackend, Backend};

use crate::Error;

/// The backends miga knows, whether or not this build compiled them in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// Burn's pure-Rust CPU backend, the default (`--device cpu`).
    Flex,
    /// The ndarray CPU backend (`--device ndarray`).
    NdArray,
    /// wgpu with the graphics API it picks (Vulkan, Metal, DX12).
    Wgpu,
    /// wgpu forced onto Vulkan, kernels compiled to SPIR-V.
    Vulkan,
    /// wgpu forced onto Metal.
    Metal,
    /// NVIDIA CUDA; the driver is loaded at run time.
    Cuda,
}

impl BackendKind {
    /// Every backend, in the order `miga info` lists them.
    pub const ALL: [BackendKind; 6] = [
        BackendKind::Flex,
        BackendKind::NdArray,
        BackendKind::Wgpu,
        BackendKind::Vulkan,
        BackendKind::Metal,
        BackendKind::Cuda,
    ];

    /// The cargo feature of the `miga` crate that compiles this backend in.
    pub fn feature(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::NdArray => "ndarray",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Vulkan => "vulkan",
            BackendKind::Metal => "metal",
            BackendKind::Cuda => "cuda",
        }
    }

    /// The name used on the command line (`--device NAME`).
    pub fn device_name(self) -> &'static str {
        match self {
            BackendKind::Flex => "cpu",
            other => other.feature(),
        }
    }

    /// Whether this build has the backend.
    pub fn is_compiled(self) -> bool {
        match self {
            BackendKind::Flex => cfg!(feature = "flex"),
            BackendKind::NdArray => cfg!(feature = "ndarray"),
            BackendKind::Wgpu => cfg!(feature = "wgpu"),
            BackendKind::Vulkan => cfg!(feature = "vulkan"),
            BackendKind::Metal => cfg!(feature = "metal"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// Whether the backend has device indices (`cuda:1`).
    fn indexed(self) -> bool {
        !matches!(self, BackendKind::Flex | BackendKind::NdArray)
    }
}

/// The floating-point type a device computes in (`--precision`).
///
/// Half precision runs on the GPU backends: every float tensor the work creates on the device
/// (weights as they load, inputs, activations, gradients, optimiser state) is f16 or bf16,
/// through Burn's per-device default data type. Burn 0.21 has no mixed-precision training, so
/// half-precision training keeps its weights in half precision too (no f32 master copy).
/// wgpu offers f16 where the adapter has 16-bit shader floats (Mesa's software Vulkan driver
/// does) and no bf16; CUDA offers both. A device is set to one precision for the life of the
/// process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats, the default.
    #[default]
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
}

impl Precision {
    /// Burn's data type for it.
    pub fn dtype(self) -> burn::tensor::DType {
        match self {
            Precision::F32 => burn::tensor::DType::F32,
            Precision::F16 => burn::tensor::DType::F16,
            Precision::Bf16 => burn::tensor::DType::BF16,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        })
    }
}

impl FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "f16" | "fp16" | "half" | "float16" => Ok(Precision::F16),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            _ => Err(Error::InvalidArgument(format!(
                "invalid precision `{s}`: expected f32, f16 or bf16"
            ))),
        }
    }
}

/// A `--device` value: a backend and, for GPU backends, an optional device index; and the
/// precision to compute in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceSpec {
    /// Which backend runs the work.
    pub kind: BackendKind,
    /// Device index for GPU backends (`cuda:1`); `None` lets the backend choose.
    pub index: Option<usize>,
    /// The floating-point type the work computes in.
    pub precision: Precision,
}

impl DeviceSpec {
    /// The default CPU device (Flex).
    pub const CPU: DeviceSpec = DeviceSpec {
        kind: BackendKind::Flex,
        index: None,
        precision: Precision::F32,
    };

    /// A spec for `kind`'s default device, in f32.
    pub fn new(kind: BackendKind) -> Self {
        DeviceSpec {
            kind,
            index: None,
            precision: Precision::F32,
        }
    }

    /// The same device computing in `precision`.
    pub fn with_precision(self, precision: Precision) -> Self {
        DeviceSpec { precision, ..self }
    }

    /// Runs `task` on this device's backend, for inference.
    pub fn run<T: BackendTask>(&self, task: T) -> Result<T::Output, Error> {
        struct Plain<T>(T);
        impl<T: BackendTask> BackendTask for Plain<T> {
            type Output = T::Output;
            fn run<B: Backend>(self, device: B::Device) -> T::Output {
                self.0.run::<B>(device)
            }
        }
        self.dispatch(Plain(task))
    }

    /// Runs `task` on this device's backend wrapped in `Autodiff`, for training.
    pub fn run_autodiff<T: AutodiffTask>(&self, task: T) -> Result<T::Output, Error> {
        struct WithAutodiff<T>(T);
        impl<T: AutodiffTask> BackendTask for WithAutodiff<T> {
            type Output = T::Output;
            fn run<B: Backend>(self, device: B::Device) -> T::Output {
                self.0.run::<burn::backend::Autodiff<B>>(device)
            }
        }
        self.dispatch(WithAutodiff(task))
    }

    fn dispatch<T: BackendTask>(&self, task: T) -> Result<T::Output, Error> {
        struct First<T>(T);
        impl<T: BackendTask> ManyDeviceTask for First<T> {
            type Output = T::Output;
            fn run<B: Backend>(self, mut devices: Vec<B::Device>) -> T::Output {
                self.0.run::<B>(devices.remove(0))
            }
        }
        dispatch_many(&[*self], First(task))
    }

    /// Runs `task` wrapped in `Autodiff` on several devices of one backend (`cuda:0,cuda:1`),
    /// for data-parallel training; the first device is the main one.
    pub fn run_autodiff_many<T: ManyAutodiffTask>(
        specs: &[DeviceSpec],
        task: T,
    ) -> Result<T::Output, Error> {
        struct WithAutodiff<T>(T);
        impl<T: ManyAutodiffTask> ManyDeviceTask for WithAutodiff<T> {
            type Output = T::Output;
            fn run<B: Backend>(self, devices: Vec<B::Device>) -> T::Output {
                self.0.run::<burn::backend::Autodiff<B>>(devices)
            }
        }
        dispatch_many(specs, WithAutodiff(task))
    }
}

/// Parses `cuda:0,cuda:1`: devices of one backend, at least one.
pub fn parse_devices(text: &str) -> Result<Vec<DeviceSpec>, Error> {
    let specs: Vec<DeviceSpec> = text
        .split(',')
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    match specs.first() {
        None => Err(Error::InvalidArgument("no device given".into())),
        Some(first) if specs.iter().any(|s| s.kind != first.kind) => Err(Error::InvalidArgument(
            format!("`{text}`: data-parallel training needs devices of one backend"),
        )),
        Some(_) => Ok(specs),
    }
}

/// Builds each of `specs` (one backend) and runs `task` on them.
fn dispatch_many<T: ManyDeviceTask>(specs: &[DeviceSpec], task: T) -> Result<T::Output, Error> {
    let Some(first) = specs.first() else {
        return Err(Error::InvalidArgument("no device given".into()));
    };
    if !first.kind.is_compiled() {
        return Err(Error::BackendNotCompiled {
            device: first.to_string(),
            feature: first.kind.feature(),
        });
    }
    let precision = first.precision;
    if precision != Precision::F32 && !first.kind.indexed() {
        return Err(Error::PrecisionUnsupported {
            device: first.to_string(),
            precision,
            reason: "the CPU backends compute in f32; half precision runs on the GPU backends \
                     (wgpu, vulkan, metal, cuda)"
                .into(),
        });
    }
    #[allow(unused_variables)]
    let indices: Vec<Option<usize>> = specs.iter().map(|s| s.index).collect();
    match first.kind {
        #[cfg(feature = "flex")]
        BackendKind::Flex => {
            Ok(task.run::<burn::backend::Flex>(vec![Default::default(); specs.len()]))
        }
        #[cfg(feature = "ndarray")]
        BackendKind::NdArray => {
            Ok(task.run::<burn::backend::NdArray>(vec![Default::default(); specs.len()]))
        }
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => {
            let devices = indices
                .iter()
                .map(|&i| wgpu::device(i, wgpu::Api::Auto))
                .collect::<Result<Vec<_>, _>>()?;
            set_precision::<burn::backend::Wgpu>(specs, &devices)?;
            Ok(task.run::<burn::backend::Wgpu>(devices))
        }
        #[cfg(feature = "vulkan")]
        BackendKind::Vulkan => {
            let devices = indices
                .iter()
                .map(|&i| wgpu::device(i, wgpu::Api::Vulkan))
                .collect::<Result<Vec<_>, _>>()?;
            set_precision::<burn::backend::Vulkan>(specs, &devices)?;
            Ok(task.run::<burn::backend::Vulkan>(devices))
        }
        #[cfg(feature = "metal")]
        BackendKind::Metal => {
            let devices = indices
                .iter()
                .map(|&i| wgpu::device(i, wgpu::Api::Metal))
                .collect::<Result<Vec<_>, _>>()?;
            set_precision::<burn::backend::Metal>(specs, &devices)?;
            Ok(task.run::<burn::backend::Metal>(devices))
        }
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => {
            let devices = indices
                .iter()
                .map(|&i| burn::backend::cuda::CudaDevice::new(i.unwrap_or(0)))
                .collect::<Vec<_>>();
            quietly(|| set_precision::<burn::backend::Cuda>(specs, &devices)).map_err(
                |reason| Error::DeviceUnavailable {
                    device: first.to_string(),
                    reason: format!("no CUDA driver or device could be initialised ({reason})"),
                },
            )??;
            Ok(task.run::<burn::backend::Cuda>(devices))
        }
        #[allow(unreachable_patterns)]
        _ => unreachable!("is_compiled() covers every backend that is not compiled in"),
    }
}

/// Sets each GPU device's default float type to the specs' precision before any tensor is made
/// on it (Burn fixes a device's default types at its first tensor, for the life of the
/// process). A device already in use at the same precision is fine; at another, or one the
/// adapter cannot compute in, is an error that says so.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn set_precision<B: Backend>(specs: &[DeviceSpec], devices: &[B::Device]) -> Result<(), Error> {
    use burn::tensor::backend::DeviceError;
    use burn::tensor::backend::set_default_float_dtype;
    use burn::tensor::get_device_settings;
    for (spec, device) in specs.iter().zip(devices) {
        let dtype = spec.precision.dtype();
        let unsupported = |reason: String| Error::PrecisionUnsupported {
            device: spec.to_string(),
            precision: spec.precision,
            reason,
        };
        match set_default_float_dtype::<B>(device, dtype) {
            Ok(()) => {}
            Err(DeviceError::UnsupportedDType { .. }) => {
                return Err(unsupported(format!(
                    "the backend ({}) has no {} arithmetic on this adapter{}",
                    B::name(device),
                    spec.precision,
                    if matches!(spec.kind, BackendKind::Cuda) {
                        ""
                    } else {
                        " (wgpu has no bf16; f16 needs 16-bit shader floats)"
                    }
                )));
            }
            Err(DeviceError::AlreadyInitialized { .. }) => {
                let current = get_device_settings::<B>(device).float_dtype;
                if burn::tensor::DType::from(current) != dtype {
                    return Err(unsupported(format!(
                        "this process already computes on it in {current:?}; a device keeps \
                         one precision for the life of a process (run another process)"
                    )));
                }
            }
        }
    }
    Ok(())
}

impl Default for DeviceSpec {
    fn default() -> Self {
        DeviceSpec::CPU
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.device_name())?;
        match self.index {
            Some(i) => write!(f, ":{i}"),
            None => Ok(()),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidDevice {
            given: s.to_string(),
            reason: reason.to_string(),
        };
        let lower = s.trim().to_ascii_lowercase();
        let (name, index) = match lower.split_once(':') {
            Some((name, index)) => {
                let index = index
                    .parse::<usize>()
                    .map_err(|_| invalid("the part after ':' must be a device index such as 0"))?;
                (name, Some(index))
            }
            None => (lower.as_str(), None),
        };
        let kind = match name {
            "cpu" | "flex" => BackendKind::Flex,
            "ndarray" => BackendKind::NdArray,
            "wgpu" => BackendKind::Wgpu,
            "vulkan" => BackendKind::Vulkan,
            "metal" => BackendKind::Metal,
            "cuda" => BackendKind::Cuda,
            _ => {
                return Err(invalid(
                    "expected cpu, ndarray, wgpu[:N], vulkan[:N], metal[:N] or cuda[:N]",
                ));
            }
        };
        if index.is_some() && !kind.indexed() {
            return Err(invalid("CPU backends take no device index"));
        }
        Ok(DeviceSpec {
            index,
            ..DeviceSpec::new(kind)
        })
    }
}

/// Generic work on several devices of one backend.
pub trait ManyDeviceTask {
    /// What the work returns.
    type Output;
    /// Runs the work on backend `B` and `devices` (at least one).
    fn run<B: Backend>(self, devices: Vec<B::Device>) -> Self::Output;
}

/// Generic training work on several devices of one backend (see
/// [`DeviceSpec::run_autodiff_many`]).
pub trait ManyAutodiffTask {
    /// What the work returns.
    type Output;
    /// Runs the work on autodiff backend `B` and `devices` (at least one).
    fn run<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> Self::Output;
}

/// Generic work to run on whichever backend a [`DeviceSpec`] names.
pub trait BackendTask {
    /// What the work returns.
    type Output;
    /// Runs the work on backend `B` and `device`.
    fn run<B: Backend>(self, device: B::Device) -> Self::Output;
}

/// Generic training work: like [`BackendTask`], with the backend wrapped in `Autodiff`.
pub trait AutodiffTask {
    /// What the work returns.
    type Output;
    /// Runs the work on autodiff backend `B` and `device`.
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output;
}

/// What [`probe`] found about one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceReport {
    /// The device as it is written on the command line.
    pub spec: String,
    /// The backend's own name for it (`flex`, `cubecl<wgpu<vulkan>>`, ...).
    pub backend: String,
    /// The adapter, when the backend names one (wgpu).
    pub adapter: Option<String>,
}

/// Checks that `spec` can run a computation: initialises the device, runs a small sum and
/// reads it back. Errors (no adapter, no driver) are returned, not panicked.
pub fn probe(spec: DeviceSpec) -> Result<DeviceReport, Error> {
    struct Probe;
    impl BackendTask for Probe {
        type Output = Result<String, String>;
        fn run<B: Backend>(self, device: B::Device) -> Self::Output {
            use burn::tensor::{ElementConversion, Tensor};
            let sum: f32 = Tensor::<B, 1>::ones([4], &device)
                .sum()
                .into_scalar()
                .elem();
            if sum == 4.0 {
                Ok(B::name(&device))
            } else {
                Err(format!("a test sum gave {sum}, expected 4"))
            }
        }
    }
    let unavailable = |reason: String| Error::DeviceUnavailable {
        device: spec.to_string(),
        reason: match spec.kind {
            BackendKind::Cuda => {
                format!("no CUDA driver or device could be initialised ({reason})")
            }
            _ => reason,
        },
    };
    let backend = quietly(|| spec.run(Probe))
        .map_err(unavailable)??
        .map_err(unavailable)?;
    #[cfg(feature = "wgpu")]
    let adapter = wgpu::adapter_name(spec);
    #[cfg(not(feature = "wgpu"))]
    let adapter = None;
    Ok(DeviceReport {
        spec: spec.to_string(),
        backend,
        adapter,
    })
}

/// Runs `f`, turning a panic inside a backend (no adapter, no driver) into an error message,
/// without printing the panic.
fn quietly<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the backend panicked".to_string())
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    })
}

#[cfg(feature = "wgpu")]
mod wgpu {
    //! wgpu devices are set up once per process with an explicit graphics API, so that
    //! `vulkan` and `metal` mean what they say and `miga info` can name the adapter.

    use std::collections::HashMap;
    use std::collections::hash_map::Entry;
    use std::sync::Mutex;

    use burn::backend::wgpu::{WgpuDevice, graphics, init_setup};

    use super::{BackendKind, DeviceSpec, quietly};
    use crate::Error;

    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
    pub(super) enum Api {
        Auto,
        #[cfg_attr(not(feature = "vulkan"), allow(dead_code))]
        Vulkan,
        #[cfg_attr(not(feature = "metal"), allow(dead_code))]
        Metal,
    }

    /// Adapter name per initialised (api, index).
    type Adapters = HashMap<(Api, Option<usize>), String>;
    static SETUPS: Mutex<Option<Adapters>> = Mutex::new(None);

    pub(super) fn device(index: Option<usize>, api: Api) -> Result<WgpuDevice, Error> {
        let device = match index {
            None => WgpuDevice::DefaultDevice,
            Some(i) => WgpuDevice::DiscreteGpu(i),
        };
        let mut setups = SETUPS.lock().unwrap_or_else(|e| e.into_inner());
        let setups = setups.get_or_insert_with(HashMap::new);
        if let Entry::Vacant(slot) = setups.entry((api, index)) {
            let setup = quietly(|| match api {
                Api::Auto => init_setup::<graphics::AutoGraphicsApi>(&device, Default::default()),
                Api::Vulkan => init_setup::<graphics::Vulkan>(&device, Default::default()),
                Api::Metal => init_setup::<graphics::Metal>(&device, Default::default()),
            })
            .map_err(|reason| Error::DeviceUnavailable {
                device: DeviceSpec {
                    index,
                    ..DeviceSpec::new(match api {
                        Api::Auto => BackendKind::Wgpu,
                        Api::Vulkan => BackendKind::Vulkan,
                        Api::Metal => BackendKind::Metal,
                    })
                }
                .to_string(),
                reason,
            })?;
            let info = setup.adapter.get_info();
            slot.insert(format!(
                "{} ({:?}, {:?})",
                info.name, info.device_type, info.backend
            ));
        }
        Ok(device)
    }

    pub(super) fn adapter_name(spec: DeviceSpec) -> Option<String> {
        let api = match spec.kind {
            BackendKind::Wgpu => Api::Auto,
            BackendKind::Vulkan => Api::Vulkan,
            BackendKind::Metal => Api::Metal,
            _ => return None,
        };
        let setups = SETUPS.lock().unwrap_or_else(|e| e.into_inner());
        setups.as_ref()?.get(&(api, spec.index)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_backend_and_index() {
        let cases = [
            ("cpu", BackendKind::Flex, None),
            ("flex", BackendKind::Flex, None),
            ("ndarray", BackendKind::NdArray, None),
            ("wgpu", BackendKind::Wgpu, None),
            ("vulkan:1", BackendKind::Vulkan, Some(1)),
            ("metal", BackendKind::Metal, None),
            ("CUDA:2", BackendKind::Cuda, Some(2)),
        ];
        for (text, kind, index) in cases {
            let spec: DeviceSpec = text.parse().unwrap();
            assert_eq!(
                spec,
                DeviceSpec {
                    index,
                    ..DeviceSpec::new(kind)
                },
                "{text}"
            );
        }
        assert_eq!(
            "cuda:3".parse::<DeviceSpec>().unwrap().to_string(),
            "cuda:3"
        );
    }

    #[test]
    fn rejects_bad_device_strings() {
        for bad in ["tpu", "cuda:x", "cpu:1", "", "cuda:-1"] {
            let err = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(matches!(err, Error::InvalidDevice { .. }), "{bad}: {err}");
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_names_the_feature() {
        let spec: DeviceSpec = "cuda".parse().unwrap();
        let err = probe(spec).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("--features cuda"), "{message}");
    }

    #[cfg(feature = "flex")]
    #[test]
    fn cpu_probe_runs_and_autodiff_wraps() {
        let report = probe(DeviceSpec::CPU).unwrap();
        assert_eq!(report.backend, "flex");

        struct Grad;
        impl AutodiffTask for Grad {
            type Output = Vec<f32>;
            fn run<B: AutodiffBackend>(self, device: B::Device) -> Vec<f32> {
                use burn::tensor::Tensor;
                let x = Tensor::<B, 1>::from_floats([1.0, 2.0, 3.0], &device).require_grad();
                let grads = (x.clone() * x.clone()).sum().backward();
                x.grad(&grads).unwrap().into_data().to_vec().unwrap()
            }
        }
        assert_eq!(
            DeviceSpec::CPU.run_autodiff(Grad).unwrap(),
            vec![2.0, 4.0, 6.0]
        );
    }
}
