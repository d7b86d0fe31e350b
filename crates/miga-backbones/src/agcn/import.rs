//! Loading the reference's checkpoints: the `OrderedDict` that lshiwjx/2s-AGCN saves with
//! `torch.save` (keys `data_bn.*`, `l1.gcn1.PA`, `l1.gcn1.conv_a.0.weight`, ..., `fc.*`).

use std::path::Path;

use burn::tensor::backend::Backend;

use super::{Agcn, AgcnConfig, Graph};
use crate::import::{checkpoint_shapes, load_checkpoint};
use crate::{Error, Result};

/// Buffers of the reference that miga does not keep.
const IGNORABLE: [&str; 1] = [r"\.num_batches_tracked$"];

/// Key renames from the reference to miga: `lN.` to `layers.(N-1).`, `PA` to `pa`, the `down`
/// Sequential's `0`/`1` to `conv`/`bn`, and a `module.` prefix (DataParallel) dropped.
fn remaps(units: usize) -> Vec<(String, String)> {
    let mut remaps = vec![
        (r"^module\.".to_string(), String::new()),
        (r"\.PA$".to_string(), ".pa".to_string()),
        (r"\.down\.0\.".to_string(), ".down.conv.".to_string()),
        (r"\.down\.1\.".to_string(), ".down.bn.".to_string()),
    ];
    for i in 1..=units {
        remaps.push((format!(r"^l{i}\."), format!("layers.{}.", i - 1)));
    }
    remaps
}

impl AgcnConfig {
    /// The configuration of the network stored in a reference checkpoint, on `graph`: class
    /// count, persons and channels are read from the tensors' shapes, and the checkpoint's
    /// joint count must be the graph's.
    pub fn from_checkpoint(path: impl AsRef<Path>, graph: Graph) -> Result<AgcnConfig> {
        let path = path.as_ref();
        let shapes = checkpoint_shapes(path, None)?;
        let error = |reason: String| Error::Checkpoint {
            path: path.to_path_buf(),
            reason,
        };
        let shape = |key: &str| {
            shapes
                .get(key)
                .or_else(|| shapes.get(&format!("module.{key}")))
                .ok_or_else(|| error(format!("no `{key}`: not a 2s-AGCN checkpoint")))
        };
        let fc = shape("fc.weight")?;
        let pa = shape("l1.gcn1.PA")?;
        let conv_d = shape("l1.gcn1.conv_d.0.weight")?;
        let data_bn = shape("data_bn.weight")?;
        let (num_classes, num_nodes, in_channels) = (fc[0], pa[1], conv_d[1]);
        if num_nodes != graph.num_nodes() {
            return Err(error(format!(
                "the checkpoint has {num_nodes} joints, graph `{}` has {}",
                graph.name,
                graph.num_nodes()
            )));
        }
        if data_bn[0] % (num_nodes * in_channels) != 0 {
            return Err(error(format!(
                "data_bn has {} channels, not a multiple of {num_nodes} joints x {in_channels} channels",
                data_bn[0]
            )));
        }
        // Unit widths from `lN.gcn1.conv_d.0.weight`; strides are not stored, so, as in the
        // reference, a unit that widens the channels has stride 2.
        let mut units = Vec::new();
        let mut channels = in_channels;
        while let Ok(conv_d) = shape(&format!("l{}.gcn1.conv_d.0.weight", units.len() + 1)) {
            let out = conv_d[0];
            let stride = if !units.is_empty() && out != channels {
                2
            } else {
                1
            };
            units.push((out, stride));
            channels = out;
        }
        Ok(AgcnConfig::new(graph, num_classes)
            .with_num_persons(data_bn[0] / (num_nodes * in_channels))
            .with_in_channels(in_channels)
            .with_units(units))
    }

    /// Builds the network stored in a reference checkpoint on `graph` and loads it strictly.
    pub fn load<B: Backend>(
        path: impl AsRef<Path>,
        graph: Graph,
        device: &B::Device,
    ) -> Result<Agcn<B>> {
        let config = AgcnConfig::from_checkpoint(path.as_ref(), graph)?;
        config.init(device)?.load_pytorch(path)
    }
}

impl<B: Backend> Agcn<B> {
    /// Loads a reference checkpoint into this network: every parameter and running statistic
    /// must be present with its shape, and every tensor of the file must be used.
    pub fn load_pytorch(self, path: impl AsRef<Path>) -> Result<Self> {
        let remaps = remaps(self.layers.len());
        load_checkpoint(self, path.as_ref(), None, &remaps, &IGNORABLE)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use burn::backend::Flex;

    use super::*;

    fn fixture(layout: &str, file: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/agcn")
            .join(layout)
            .join(file)
    }

    #[test]
    fn config_is_read_from_the_checkpoint() {
        let config =
            AgcnConfig::from_checkpoint(fixture("ntu-rgb-d", "joint.pt"), Graph::ntu_rgb_d())
                .unwrap();
        assert_eq!(config.num_classes, 5);
        assert_eq!(config.num_persons, 2);
        assert_eq!(config.in_channels, 3);
        assert_eq!(config.units[9], (32, 1));
        assert_eq!(config.units[4], (16, 2));
    }

    #[test]
    fn a_checkpoint_for_another_layout_is_refused() {
        let err = AgcnConfig::from_checkpoint(fixture("kinetics", "joint.pt"), Graph::ntu_rgb_d())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("18 joints") && err.contains("ntu-rgb-d"),
            "{err}"
        );
    }

    #[test]
    fn strict_loading_names_mismatched_missing_and_unexpected_keys() {
        let device = Default::default();
        let path = fixture("kinetics", "joint.pt");
        let config = AgcnConfig::from_checkpoint(&path, Graph::kinetics()).unwrap();

        // Wider last unit: fc and l10 shapes differ.
        let mut units = config.units.clone();
        units[9] = (64, 1);
        let wider = config
            .clone()
            .with_units(units)
            .init::<Flex>(&device)
            .unwrap();
        let err = wider.load_pytorch(&path).unwrap_err().to_string();
        assert!(err.contains("layers.9.gcn1.conv_d.0.weight"), "{err}");
        assert!(err.contains("fc.weight"), "{err}");

        // One unit fewer: l10's keys are unexpected.
        let shorter = config.clone().with_units(config.units[..9].to_vec());
        let err = shorter
            .init::<Flex>(&device)
            .unwrap()
            .load_pytorch(&path)
            .unwrap_err();
        assert!(err.to_string().contains("unexpected keys: l10."), "{err}");

        // One unit more: layers.10 is missing.
        let mut units = config.units.clone();
        units.push((32, 1));
        let longer = config.with_units(units).init::<Flex>(&device).unwrap();
        let err = longer.load_pytorch(&path).unwrap_err().to_string();
        assert!(
            err.contains("missing keys") && err.contains("layers.10."),
            "{err}"
        );

        let err = AgcnConfig::from_checkpoint(fixture("kinetics", "absent.pt"), Graph::kinetics())
            .unwrap_err()
            .to_string();
        assert!(err.contains("absent.pt"), "{err}");
    }
}
