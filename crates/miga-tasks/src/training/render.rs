//! What a run shows and logs while it trains: one line a finished epoch, the metric logger of
//! a resumed run, and early stopping decided from the logged losses.

use std::collections::BTreeMap;

use burn::train::EarlyStoppingStrategy;
use burn::train::logger::{FileMetricLogger, MetricLogger};
use burn::train::metric::NumericEntry;
use burn::train::metric::store::{EpochSummary, EventStoreClient, MetricsUpdate, Split};
use burn::train::metric::{MetricDefinition, MetricId};
use burn::train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining, ProgressType, TrainingProgress,
};

use super::checkpoints::{EpochScores, ValidScores, no_improvement_since};
use crate::loader::EpochClock;

/// One line a finished epoch with its time (from the moment its first batch is asked for to
/// the end of its validation: checkpoint writing is not in it), on standard error (rewritten
/// in place on a terminal). It also averages each epoch's validation accuracy and loss
/// ([`ValidScores`]).
pub(super) struct EpochLines {
    /// Started as each epoch's training begins.
    pub(super) clock: EpochClock,
    /// Metric names by id.
    pub(super) names: std::collections::HashMap<MetricId, String>,
    /// The validation epoch so far: per metric, the sum of value x count, and the count.
    pub(super) sums: BTreeMap<String, (f64, usize)>,
    /// Where finished epochs' means go.
    pub(super) scores: ValidScores,
}

impl MetricsRendererTraining for EpochLines {
    fn update_train(&mut self, _: MetricState) {}
    fn update_valid(&mut self, state: MetricState) {
        if let MetricState::Numeric(entry, value) = state
            && let Some(name) = self.names.get(&entry.metric_id)
        {
            let (v, n) = match value {
                NumericEntry::Value(v) => (v, 1),
                NumericEntry::Aggregated {
                    aggregated_value,
                    count,
                } => (aggregated_value * count as f64, count),
            };
            let sum = self.sums.entry(name.clone()).or_default();
            *sum = (sum.0 + v, sum.1 + n);
        }
    }
    fn render_train(&mut self, _: TrainingProgress, _: Vec<ProgressType>) {}
    fn render_valid(&mut self, p: TrainingProgress, _: Vec<ProgressType>) {
        if let Some(progress) = &p.progress
            && progress.items_processed == progress.items_total
        {
            let (done, total) = (
                p.global_progress.items_processed,
                p.global_progress.items_total,
            );
            let sums = std::mem::take(&mut self.sums);
            let mean = |name: &str| sums.get(name).map(|&(v, n)| v / n.max(1) as f64);
            self.scores.record(
                done,
                EpochScores {
                    accuracy: mean("Accuracy").map(|a| a / 100.0),
                    loss: mean("Loss"),
                },
            );
            // An information event (the program's subscriber decides: `miga -q` hides it). On a
            // terminal one line is rewritten, like a progress bar; in a log each epoch has its
            // line.
            let seconds = self.clock.take();
            if !tracing::enabled!(tracing::Level::INFO) {
            } else if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                let end = if done == total { "\n" } else { "" };
                eprint!("\repoch {done}/{total} done ({seconds:.2} s){end}");
            } else {
                tracing::info!("epoch {done}/{total} done ({seconds:.2} s)");
            }
        }
    }
}

impl MetricsRendererEvaluation for EpochLines {
    fn update_test(&mut self, _: EvaluationName, _: MetricState) {}
    fn render_test(&mut self, _: EvaluationProgress, _: Vec<ProgressType>) {}
}

impl MetricsRenderer for EpochLines {
    fn manual_close(&mut self) {}
    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names.insert(definition.metric_id, definition.name);
    }
}

/// burn-train's file metric logger with the epochs of a resumed run numbered right: burn-train
/// 0.21's event store counts epochs from 1 in every process until an epoch ends, so the
/// metrics of the first epoch after a checkpoint went to `epoch-1` (overwriting the first
/// epoch's, which best-epoch selection then read as that epoch's). Until a split ends its first
/// epoch here, its metrics are logged as epoch `first`.
pub(super) struct ResumedMetricLogger {
    pub(super) inner: FileMetricLogger,
    pub(super) first: usize,
    pub(super) ended: Vec<Split>,
}

impl MetricLogger for ResumedMetricLogger {
    fn log(&mut self, update: MetricsUpdate, epoch: usize, split: &Split) {
        let epoch = if self.ended.contains(split) {
            epoch
        } else {
            self.first
        };
        self.inner.log(update, epoch, split);
    }

    fn read_numeric(
        &mut self,
        name: &str,
        epoch: usize,
        split: &Split,
    ) -> std::result::Result<Vec<NumericEntry>, String> {
        self.inner.read_numeric(name, epoch, split)
    }

    fn log_metric_definition(&mut self, definition: MetricDefinition) {
        self.inner.log_metric_definition(definition);
    }

    fn log_epoch_summary(&mut self, summary: EpochSummary) {
        if !self.ended.contains(&summary.split) {
            self.ended.push(summary.split.clone());
        }
        self.inner.log_epoch_summary(summary);
    }
}

/// Early stopping after `patience` epochs without a lower mean validation loss, deciding from
/// every epoch's loss as logged in the run folder: a resumed run stops where the uninterrupted
/// one would have (burn-train's `MetricEarlyStoppingStrategy` keeps the best epoch in memory,
/// so it started counting again at a resumption).
#[derive(Clone)]
pub(super) struct LossPatience {
    pub(super) patience: usize,
    /// This process's epochs' losses ([`ValidScores`]: the store may not have the newest).
    pub(super) scores: ValidScores,
}

impl EarlyStoppingStrategy for LossPatience {
    fn should_stop(&mut self, epoch: usize, store: &EventStoreClient) -> bool {
        self.scores.wait(epoch);
        let losses: Vec<Option<f64>> = (1..=epoch)
            .map(|e| self.scores.metric(store, "Loss", e))
            .collect();
        no_improvement_since(&losses, self.patience)
    }
}
