//! The fusion modules' parameters as their PyTorch twins (`scripts/fusion_reference.py`) and
//! miga's exports name them.
//!
//! The twins keep every variant's parts side by side in one module (`cross_layers` and
//! `joint_layers`, a `face` stream with its own `head`, ...), the names miga's records had
//! before the variants were types; miga's module tree now has one field a variant
//! (`layers.blocks`, `streams.branch`, ...). [`PyTorchNames`] renames one into the other, in
//! both directions, for the variant a module was built with.

/// Renames between a module's parameter paths and its PyTorch twin's names: pairs of dotted
/// prefixes `(twin, miga)`, tried in order, each matching whole path segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyTorchNames {
    pairs: Vec<(String, String)>,
}

impl PyTorchNames {
    /// Renames from `(twin, miga)` prefix pairs (the more specific before the more general).
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            pairs: pairs
                .into_iter()
                .map(|(twin, miga)| (twin.to_string(), miga.to_string()))
                .collect(),
        }
    }

    /// The same renames for the module placed at `path` inside a larger one (`fusion`).
    pub fn under(self, path: &str) -> Self {
        let at = |name: String| format!("{path}.{name}");
        Self {
            pairs: self
                .pairs
                .into_iter()
                .map(|(twin, miga)| (at(twin), at(miga)))
                .collect(),
        }
    }

    /// `(regex, replacement)` pairs from the twin's names to the module's, as burn-store's key
    /// remapper takes them (for loading a twin's or an export's tensors).
    pub fn to_miga(&self) -> Vec<(String, String)> {
        self.pairs
            .iter()
            .map(|(twin, miga)| rename(twin, miga))
            .collect()
    }

    /// `(regex, replacement)` pairs from the module's paths to the twin's names (for writing
    /// an export).
    pub fn to_twin(&self) -> Vec<(String, String)> {
        self.pairs
            .iter()
            .map(|(twin, miga)| rename(miga, twin))
            .collect()
    }
}

/// The pattern renaming the prefix `from` (whole segments) to `to`.
fn rename(from: &str, to: &str) -> (String, String) {
    (
        format!(r"^{}(\.|$)", from.replace('.', r"\.")),
        format!("{to}$1"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_whole_segments_both_ways_and_under_a_parent() {
        let names = PyTorchNames::new([("face.head", "streams.head"), ("face", "streams.branch")])
            .under("fusion");
        // Each rename in turn, as burn-store's key remapper applies them.
        let run = |renames: Vec<(String, String)>, path: &str| {
            renames
                .iter()
                .fold(path.to_string(), |path, (pattern, to)| {
                    regex::Regex::new(pattern)
                        .unwrap()
                        .replace(&path, to)
                        .into_owned()
                })
        };
        let twin = |path| run(names.to_twin(), path);
        assert_eq!(
            twin("fusion.streams.head.weight"),
            "fusion.face.head.weight"
        );
        assert_eq!(
            twin("fusion.streams.branch.norm.gamma"),
            "fusion.face.norm.gamma"
        );
        assert_eq!(twin("fusion.streams_x.weight"), "fusion.streams_x.weight");
        assert_eq!(twin("fusion.modality"), "fusion.modality");
        let miga = |path| run(names.to_miga(), path);
        assert_eq!(miga("fusion.face.head.bias"), "fusion.streams.head.bias");
        assert_eq!(
            miga("fusion.face.pool.query"),
            "fusion.streams.branch.pool.query"
        );
        assert_eq!(miga("fusion.face_x"), "fusion.face_x");
    }
}
