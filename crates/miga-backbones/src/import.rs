//! Strict checkpoint loading shared by every backbone.
//!
//! burn-store maps a file's tensors onto a module, from a PyTorch `.pt`/`.pth` pickle or from a
//! safetensors file holding a PyTorch state_dict (chosen by the `.safetensors` extension);
//! this wrapper makes the mapping strict:
//! every parameter of the module must receive a tensor of its shape, and every tensor of the
//! file must land somewhere, except buffers the caller names as ignorable (such as BatchNorm's
//! `num_batches_tracked`). All problems are gathered into one [`Error::Checkpoint`].
//! burn-store reads pickles without executing them, so loading never runs code from the file.

use std::path::Path;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, get_device_settings};
use burn_store::{
    ApplyResult, KeyRemapper, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, PytorchStore,
    SafetensorsStore,
};
use regex::Regex;

use crate::{Error, Result};

/// Key renames from a reference checkpoint to a miga module: `(regex, replacement)`.
pub type Remaps<'a> = &'a [(String, String)];

fn is_safetensors(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "safetensors")
}

/// Loads a PyTorch state_dict (`.pt`/`.pth`, optionally under `top_level_key`, or
/// `.safetensors`) into `module`.
///
/// `remaps` rename file keys to the module's (regex, replacement); `ignorable` are regexes of
/// file keys that may stay unused (buffers miga recomputes). Every backbone loads through it;
/// it serves any Burn module with a PyTorch twin (the fusion modules and
/// `scripts/fusion_reference.py`, renamed by their `pytorch_names`). Enum modules take no path
/// segment of their own, as in PyTorch, where a module has no variants.
pub fn load_checkpoint<B: Backend, M: Module<B>>(
    mut module: M,
    path: &Path,
    top_level_key: Option<&str>,
    remaps: Remaps,
    ignorable: &[&str],
) -> Result<M> {
    let checkpoint_error = |reason: String| Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_file() {
        return Err(checkpoint_error("no such file".into()));
    }
    let remapper = KeyRemapper::from_patterns(remaps.to_vec()).expect("remaps are valid regexes");
    let result = if is_safetensors(path) {
        let mut store = SafetensorsStore::from_file(path)
            .with_from_adapter(PyTorchToBurnAdapter)
            .skip_enum_variants(true)
            .allow_partial(true)
            .validate(false)
            .remap(remapper);
        module
            .load_from(&mut store)
            .map_err(|err| checkpoint_error(err.to_string()))?
    } else {
        let mut store = PytorchStore::from_file(path)
            .allow_partial(true)
            .validate(false)
            .map_indices_contiguous(false)
            .remap(remapper);
        if let Some(key) = top_level_key {
            store = store.with_top_level_key(key);
        }
        module
            .load_from(&mut store)
            .map_err(|err| checkpoint_error(err.to_string()))?
    };
    let module = strict(module, result, ignorable).map_err(checkpoint_error)?;
    Ok(in_device_precision(module))
}

/// `module` with every float tensor (parameters and running statistics) in its device's default
/// float type: the stores keep a file's f32 values as f32, where a device set to half precision
/// (`burn::tensor::backend::set_default_float_dtype`, `miga --precision f16`) makes every other
/// tensor f16, and Burn's operations do not mix the two. A no-op at f32.
pub fn in_device_precision<B: Backend, M: Module<B>>(module: M) -> M {
    struct Cast;
    impl<B: Backend> ModuleMapper<B> for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, tensor, mapper) = param.consume();
            let wanted = get_device_settings::<B>(&tensor.device()).float_dtype;
            let tensor = if tensor.dtype() == DType::from(wanted) {
                tensor
            } else {
                let grad = tensor.is_require_grad();
                let cast = tensor.cast(wanted).detach();
                if grad { cast.require_grad() } else { cast }
            };
            Param::from_mapped_value(id, tensor, mapper)
        }
    }
    module.map(&mut Cast)
}

/// The module if `result` applied every parameter and used every file key but `ignorable`
/// ones, else every problem in one message.
fn strict<M>(module: M, result: ApplyResult, ignorable: &[&str]) -> std::result::Result<M, String> {
    let ignorable: Vec<Regex> = ignorable
        .iter()
        .map(|p| Regex::new(p).expect("ignorable patterns are valid regexes"))
        .collect();
    // burn-store 0.21 loads a norm's `weight`/`bias` into `gamma`/`beta` but still lists the
    // file's names as unused: a key is used when its Burn name was applied.
    let applied: std::collections::HashSet<&str> =
        result.applied.iter().map(|k| k.as_str()).collect();
    let loaded_under_burn_name = |key: &str| {
        [(".weight", ".gamma"), (".bias", ".beta")]
            .iter()
            .any(|(torch, burn)| {
                key.strip_suffix(torch)
                    .is_some_and(|stem| applied.contains(format!("{stem}{burn}").as_str()))
            })
    };
    let unexpected: Vec<&String> = result
        .unused
        .iter()
        .filter(|key| !ignorable.iter().any(|re| re.is_match(key)))
        .filter(|key| !loaded_under_burn_name(key))
        .collect();
    let mut problems = Vec::new();
    if !result.missing.is_empty() {
        let keys: Vec<&str> = result.missing.iter().map(|(k, _)| k.as_str()).collect();
        problems.push(format!("missing keys: {}", keys.join(", ")));
    }
    if !unexpected.is_empty() {
        let keys: Vec<&str> = unexpected.iter().map(|k| k.as_str()).collect();
        problems.push(format!("unexpected keys: {}", keys.join(", ")));
    }
    for error in &result.errors {
        problems.push(error.to_string());
    }
    if problems.is_empty() {
        Ok(module)
    } else {
        Err(problems.join("; "))
    }
}

/// The shape of every tensor in a checkpoint (`.pt`/`.pth` or `.safetensors`), by file key.
pub(crate) fn checkpoint_shapes(
    path: &Path,
    top_level_key: Option<&str>,
) -> Result<std::collections::BTreeMap<String, Vec<usize>>> {
    let error = |reason: String| Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_file() {
        return Err(error("no such file".into()));
    }
    let snapshots = if is_safetensors(path) {
        SafetensorsStore::from_file(path)
            .get_all_snapshots()
            .cloned()
            .map_err(|err| error(err.to_string()))?
    } else {
        let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
        if let Some(key) = top_level_key {
            store = store.with_top_level_key(key);
        }
        store
            .get_all_snapshots()
            .cloned()
            .map_err(|err| error(err.to_string()))?
    };
    Ok(snapshots
        .iter()
        .map(|(k, s)| (k.clone(), s.shape.to_vec()))
        .collect())
}
