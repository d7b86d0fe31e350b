//! Skeleton graphs as data: nodes, edges towards the centre, bone pairs.
//!
//! A [`Graph`] is an edge list with the spatial partitioning of 2s-AGCN
//! (`graph/tools.py` in lshiwjx/2s-AGCN): for every node, the identity, the normalised inward
//! edges (towards the body centre) and the normalised outward edges. Built-in layouts cover
//! the reference data sets and the iMiGUE OpenPose points; they are TOML files (`graphs/` beside
//! this file, embedded in the library) in the same format users write their own in
//! ([`Graph::from_toml_file`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Number of OpenPose points per frame in iMiGUE: body 25, face 70, left hand 21, right hand 21.
pub const OPENPOSE_POINTS: usize = 137;

/// The built-in layouts: name and TOML text.
const BUILT_IN: [(&str, &str); 5] = [
    ("ntu-rgb-d", include_str!("graphs/ntu-rgb-d.toml")),
    ("kinetics", include_str!("graphs/kinetics.toml")),
    (
        "openpose-body25",
        include_str!("graphs/openpose-body25.toml"),
    ),
    (
        "imigue-upper-hands",
        include_str!("graphs/imigue-upper-hands.toml"),
    ),
    ("imigue-full", include_str!("graphs/imigue-full.toml")),
];

/// A skeleton graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    /// Layout name (`ntu-rgb-d`, `imigue-upper-hands`, ...).
    pub name: String,
    /// Node names, in data order.
    pub nodes: Vec<String>,
    /// Edges `(from, to)` pointing towards the body centre, as the reference's `inward`.
    pub inward: Vec<(usize, usize)>,
    /// Bone pairs `(joint, parent)`: the bone stream holds `x[joint] - x[parent]` at `joint`;
    /// a pair `(root, root)` gives the root a zero bone, as the reference.
    pub bones: Vec<(usize, usize)>,
    /// For layouts over OpenPose output: the index among the 137 points of each node.
    #[serde(default)]
    pub openpose: Option<Vec<usize>>,
}

impl Graph {
    /// Number of nodes (V).
    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Checks that every index is a node, that edges and bones have no duplicate, and that
    /// OpenPose indices (if any) are in range and one per node.
    pub fn validate(&self) -> Result<()> {
        let v = self.num_nodes();
        let invalid = |reason: String| Error::InvalidConfig {
            model: "graph",
            reason: format!("graph `{}`: {reason}", self.name),
        };
        if v == 0 {
            return Err(invalid("no nodes".into()));
        }
        for (what, pairs) in [("inward edge", &self.inward), ("bone", &self.bones)] {
            let mut seen = std::collections::HashSet::new();
            for &(a, b) in pairs {
                if a >= v || b >= v {
                    return Err(invalid(format!(
                        "{what} ({a}, {b}) names a node past {}",
                        v - 1
                    )));
                }
                if !seen.insert((a, b)) {
                    return Err(invalid(format!("{what} ({a}, {b}) appears twice")));
                }
            }
        }
        if let Some(points) = &self.openpose {
            if points.len() != v {
                return Err(invalid(format!(
                    "{} OpenPose indices for {v} nodes",
                    points.len()
                )));
            }
            if let Some(p) = points.iter().find(|&&p| p >= OPENPOSE_POINTS) {
                return Err(invalid(format!(
                    "OpenPose index {p} is past {}",
                    OPENPOSE_POINTS - 1
                )));
            }
        }
        Ok(())
    }

    /// The three adjacency matrices (identity, inward, outward), row-major `[3, V, V]`,
    /// exactly as the reference's `get_spatial_graph`: `A[j][i] = 1` for an edge `(i, j)`,
    /// each column divided by its sum.
    pub fn adjacency(&self) -> Vec<f32> {
        let v = self.num_nodes();
        let mut a = vec![0.0f32; 3 * v * v];
        for i in 0..v {
            a[i * v + i] = 1.0;
        }
        let outward: Vec<(usize, usize)> = self.inward.iter().map(|&(i, j)| (j, i)).collect();
        for (k, edges) in [(1, &self.inward), (2, &outward)] {
            let block = &mut a[k * v * v..(k + 1) * v * v];
            for &(i, j) in edges.iter() {
                block[j * v + i] = 1.0;
            }
            for col in 0..v {
                let sum: f32 = (0..v).map(|row| block[row * v + col]).sum();
                if sum > 0.0 {
                    for row in 0..v {
                        block[row * v + col] /= sum;
                    }
                }
            }
        }
        a
    }

    /// Reads a user-defined graph from a TOML file with the fields of [`Graph`].
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Graph> {
        let path = path.as_ref();
        let invalid = |reason: String| Error::InvalidConfig {
            model: "graph",
            reason: format!("{}: {reason}", path.display()),
        };
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        Graph::from_toml(&text).map_err(|e| invalid(e.to_string()))
    }

    /// Parses and validates a graph from TOML text.
    pub fn from_toml(text: &str) -> Result<Graph> {
        let graph: Graph = toml::from_str(text).map_err(|e| Error::InvalidConfig {
            model: "graph",
            reason: e.to_string(),
        })?;
        graph.validate()?;
        Ok(graph)
    }

    /// A built-in layout by name; see [`Graph::LAYOUTS`].
    pub fn layout(name: &str) -> Result<Graph> {
        let (_, text) =
            BUILT_IN
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| Error::InvalidConfig {
                    model: "graph",
                    reason: format!(
                        "unknown layout `{name}`; built-in layouts: {}",
                        Graph::LAYOUTS.join(", ")
                    ),
                })?;
        Graph::from_toml(text)
    }

    /// Names of the built-in layouts.
    pub const LAYOUTS: [&'static str; 5] = [
        BUILT_IN[0].0,
        BUILT_IN[1].0,
        BUILT_IN[2].0,
        BUILT_IN[3].0,
        BUILT_IN[4].0,
    ];

    /// NTU RGB+D, 25 Kinect joints (reference `graph/ntu_rgb_d.py`).
    pub fn ntu_rgb_d() -> Graph {
        Graph::built_in("ntu-rgb-d")
    }

    /// Kinetics-Skeleton, the 18 OpenPose COCO points (reference `graph/kinetics.py`).
    pub fn kinetics() -> Graph {
        Graph::built_in("kinetics")
    }

    /// OpenPose BODY_25, centred on the neck.
    pub fn openpose_body25() -> Graph {
        Graph::built_in("openpose-body25")
    }

    /// iMiGUE upper body and both hands (55 nodes).
    pub fn imigue_upper_hands() -> Graph {
        Graph::built_in("imigue-upper-hands")
    }

    /// iMiGUE body, hands and 12 face points (67 nodes).
    pub fn imigue_full() -> Graph {
        Graph::built_in("imigue-full")
    }

    fn built_in(name: &str) -> Graph {
        Graph::layout(name).expect("built-in layouts are valid (tested)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_layouts_are_valid_trees() {
        for name in Graph::LAYOUTS {
            let graph = Graph::layout(name).unwrap();
            graph.validate().unwrap();
            let v = graph.num_nodes();
            // One bone per node, and one inward edge per node except the centre.
            assert_eq!(graph.bones.len(), v, "{name}");
            let mut joints: Vec<usize> = graph.bones.iter().map(|b| b.0).collect();
            joints.sort_unstable();
            assert_eq!(joints, (0..v).collect::<Vec<_>>(), "{name}");
            assert_eq!(graph.inward.len(), v - 1, "{name}");
        }
        assert_eq!(Graph::ntu_rgb_d().num_nodes(), 25);
        assert_eq!(Graph::kinetics().num_nodes(), 18);
        assert_eq!(Graph::imigue_upper_hands().num_nodes(), 55);
        assert_eq!(Graph::imigue_full().num_nodes(), 67);
    }

    #[test]
    fn adjacency_matches_the_reference_partitioning() {
        // Chain 0 <- 1 <- 2: inward edges (1, 0), (2, 1).
        let graph = Graph::from_toml(
            "name = 'chain'\nnodes = ['a', 'b', 'c']\ninward = [[1, 0], [2, 1]]\nbones = [[0, 0], [1, 0], [2, 1]]",
        )
        .unwrap();
        let a = graph.adjacency();
        let (identity, inward, outward) = (&a[0..9], &a[9..18], &a[18..27]);
        assert_eq!(identity, &[1., 0., 0., 0., 1., 0., 0., 0., 1.]);
        // A[j][i] = 1 for (i, j); columns 1 and 2 each have one entry.
        assert_eq!(inward, &[0., 1., 0., 0., 0., 1., 0., 0., 0.]);
        assert_eq!(outward, &[0., 0., 0., 1., 0., 0., 0., 1., 0.]);
        // Every non-empty inward column sums to one.
        let ntu = Graph::ntu_rgb_d().adjacency();
        for col in 0..25 {
            let sum: f32 = (0..25).map(|row| ntu[25 * 25 + row * 25 + col]).sum();
            assert!(sum == 0.0 || (sum - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn bad_graphs_are_rejected_with_the_reason() {
        let mut graph = Graph::kinetics();
        graph.inward.push((3, 40));
        let err = graph.validate().unwrap_err().to_string();
        assert!(err.contains("(3, 40)"), "{err}");
        let err = Graph::layout("coco").unwrap_err().to_string();
        assert!(err.contains("imigue-full"), "{err}");
    }

    #[test]
    fn graphs_round_trip_through_toml() {
        let graph = Graph::imigue_full();
        let text = toml::to_string(&graph).unwrap();
        let dir = std::env::temp_dir().join(format!("miga-graph-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("g.toml");
        std::fs::write(&path, text).unwrap();
        assert_eq!(Graph::from_toml_file(&path).unwrap(), graph);
        std::fs::write(&path, "name = 3").unwrap();
        let err = Graph::from_toml_file(&path).unwrap_err().to_string();
        assert!(err.contains("g.toml"), "{err}");
    }
}
