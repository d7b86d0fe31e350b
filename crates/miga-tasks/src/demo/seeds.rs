//! The demo over seeds: each repeat draws new synthetic data, new random backbones and new
//! training initialisations ([`DemoConfig::with_seed`]); the study reports every row's mean
//! and standard deviation and a paired comparison of each task's fusion with its best single
//! stream.

use serde::{Deserialize, Serialize};

#[cfg(doc)]
use super::DemoConfig;
use super::{DemoSummary, TRANSDUCTIVE, metric_cells, single_stream};
use crate::emotion::EMOTION;

/// Mean and sample standard deviation (0 for fewer than two values).
fn moments(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = match values.len() {
        0 | 1 => 0.0,
        k => values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (k - 1) as f64,
    };
    (mean, var.sqrt())
}

/// One model over the seeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedRow {
    /// `micro-gesture` or `emotion`.
    pub task: String,
    /// The streams.
    pub streams: String,
    /// The first validation metric (top-1 or accuracy) of each seed.
    pub validation: Vec<f64>,
    /// The three test metrics of each seed.
    pub test: Vec<[f64; 3]>,
}

impl SeedRow {
    /// Mean and standard deviation of the first validation metric.
    pub fn validation_moments(&self) -> (f64, f64) {
        moments(&self.validation)
    }

    /// Mean and standard deviation of test metric `k`.
    pub fn test_moments(&self, k: usize) -> (f64, f64) {
        moments(&self.test.iter().map(|m| m[k]).collect::<Vec<_>>())
    }
}

/// A task's fusion against its best single stream, seed by seed, on the test split's first
/// metric. The best single stream is the one with the higher mean validation score (on a tie,
/// the first in the demo's order: video, face).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Paired {
    /// The task.
    pub task: String,
    /// The single stream compared with.
    pub single: String,
    /// Fusion minus single stream, per seed.
    pub differences: Vec<f64>,
    /// Seeds where the fusion is above, level with, below the single stream.
    pub above_level_below: [usize; 3],
}

impl Paired {
    /// Mean and standard deviation of the differences.
    pub fn moments(&self) -> (f64, f64) {
        moments(&self.differences)
    }
}

/// The demo's rows over several seeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedStudy {
    /// The seeds, in run order.
    pub seeds: Vec<u64>,
    /// One row per model.
    pub rows: Vec<SeedRow>,
    /// One comparison per task.
    pub paired: Vec<Paired>,
    /// Each run's wall-clock seconds.
    pub seconds: Vec<f64>,
}

impl SeedStudy {
    /// The study of demo runs (one per seed, all with the same models, test split scored).
    pub fn new(runs: &[DemoSummary]) -> Self {
        let mut rows: Vec<SeedRow> = Vec::new();
        for run in runs {
            for row in &run.rows {
                let at = match rows
                    .iter()
                    .position(|r| r.task == row.task && r.streams == row.streams)
                {
                    Some(at) => at,
                    None => {
                        rows.push(SeedRow {
                            task: row.task.clone(),
                            streams: row.streams.clone(),
                            validation: Vec::new(),
                            test: Vec::new(),
                        });
                        rows.len() - 1
                    }
                };
                rows[at].validation.push(row.validation[0]);
                rows[at].test.push(row.metrics.unwrap_or([f64::NAN; 3]));
            }
        }
        let mut paired = Vec::new();
        let tasks: std::collections::BTreeSet<String> =
            rows.iter().map(|r| r.task.clone()).collect();
        for task in &tasks {
            let of_task = |fusion: bool| {
                rows.iter().filter(move |r| {
                    r.task == *task
                        && fusion != single_stream(&r.streams)
                        && r.streams != TRANSDUCTIVE
                })
            };
            // `max_by` keeps the last of equal maxima: reversed, the first in row order.
            let Some(single) = of_task(false).rev().max_by(|a, b| {
                a.validation_moments()
                    .0
                    .total_cmp(&b.validation_moments().0)
            }) else {
                continue;
            };
            let Some(fusion) = of_task(true).find(|r| r.streams == "fusion") else {
                continue;
            };
            let differences: Vec<f64> = fusion
                .test
                .iter()
                .zip(&single.test)
                .map(|(f, s)| f[0] - s[0])
                .collect();
            // Scores are counts over the same split: equal up to rounding is level.
            let mut above_level_below = [0; 3];
            for d in &differences {
                above_level_below[if d.abs() < 1e-9 {
                    1
                } else if *d > 0.0 {
                    0
                } else {
                    2
                }] += 1;
            }
            paired.push(Paired {
                task: task.clone(),
                single: single.streams.clone(),
                differences,
                above_level_below,
            });
        }
        Self {
            seeds: runs.iter().map(|r| r.seeds.data).collect(),
            rows,
            paired,
            seconds: runs.iter().map(|r| r.seconds).collect(),
        }
    }

    /// The study as Markdown: mean ± standard deviation of every row, then the paired
    /// comparisons.
    pub fn table(&self) -> String {
        let pm = |(mean, sd): (f64, f64), task: &str, k: usize| {
            let shown = metric_cells(task, [mean; 3])[k].clone();
            let spread = if task != EMOTION || k == 0 {
                format!("{:.1}", sd * 100.0)
            } else {
                format!("{sd:.3}")
            };
            format!("{shown} ± {spread}")
        };
        let mut out = format!(
            "Over {} seeds ({}), mean ± standard deviation:\n\n| task | streams | validation top-1 / accuracy / F1 | test top-1 / accuracy / F1 | top-5 / F1 / precision | mean class acc. / AUROC / recall |\n| --- | --- | --- | --- | --- | --- |\n",
            self.seeds.len(),
            self.seeds
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        for r in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                r.task,
                r.streams,
                pm(r.validation_moments(), &r.task, 0),
                pm(r.test_moments(0), &r.task, 0),
                pm(r.test_moments(1), &r.task, 1),
                pm(r.test_moments(2), &r.task, 2),
            ));
        }
        out.push_str("\n| task | fusion minus | mean difference (test) | sd | seeds above / level / below |\n| --- | --- | --- | --- | --- |\n");
        for p in &self.paired {
            let (mean, sd) = p.moments();
            let [a, l, b] = p.above_level_below;
            out.push_str(&format!(
                "| {} | {} | {:+.1} points | {:.1} | {a} / {l} / {b} |\n",
                p.task,
                p.single,
                mean * 100.0,
                sd * 100.0
            ));
        }
        let (mean, sd) = moments(&self.seconds);
        out.push_str(&format!("\nTime per seed: {:.0} ± {:.0} s.\n", mean, sd));
        out
    }
}
