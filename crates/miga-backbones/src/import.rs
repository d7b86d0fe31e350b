//! Strict checkpoint loading shared by every backbone.
//!
//! burn-store maps a file's tensors onto a module; this wrapper makes the mapping strict:
//! every parameter of the module must receive a tensor of its shape, and every tensor of the
//! file must land somewhere, except buffers the caller names as ignorable (such as BatchNorm's
//! `num_batches_tracked`). All problems are gathered into one [`Error::Checkpoint`].
//! burn-store reads pickles without executing them, so loading never runs code from the file.

use std::path::Path;

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn_store::{ModuleSnapshot, PytorchStore};
use regex::Regex;

use crate::{Error, Result};

/// Key renames from a reference checkpoint to a miga module: `(regex, replacement)`.
pub(crate) type Remaps<'a> = &'a [(String, String)];

/// Loads a PyTorch `.pt`/`.pth` state_dict (optionally under `top_level_key`) into `module`.
///
/// `ignorable` are regexes of file keys that may stay unused (buffers miga recomputes).
pub(crate) fn load_pytorch<B: Backend, M: Module<B>>(
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
    let mut store = PytorchStore::from_file(path)
        .allow_partial(true)
        .validate(false)
        .map_indices_contiguous(false);
    if let Some(key) = top_level_key {
        store = store.with_top_level_key(key);
    }
    for (from, to) in remaps {
        store = store.with_key_remapping(from, to.clone());
    }
    let result = module
        .load_from(&mut store)
        .map_err(|err| checkpoint_error(err.to_string()))?;
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
        Err(checkpoint_error(problems.join("; ")))
    }
}

/// The shape of every tensor in a PyTorch checkpoint, by key (after `remaps`).
pub(crate) fn pytorch_shapes(
    path: &Path,
    top_level_key: Option<&str>,
) -> Result<std::collections::BTreeMap<String, Vec<usize>>> {
    let mut store = PytorchStore::from_file(path);
    if let Some(key) = top_level_key {
        store = store.with_top_level_key(key);
    }
    use burn_store::ModuleStore;
    let snapshots = store.get_all_snapshots().map_err(|err| Error::Checkpoint {
        path: path.to_path_buf(),
        reason: err.to_string(),
    })?;
    Ok(snapshots
        .iter()
        .map(|(k, s)| (k.clone(), s.shape.to_vec()))
        .collect())
}
