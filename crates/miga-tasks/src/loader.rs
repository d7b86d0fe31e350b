//! Training batches whose order and random draws follow from the seed and the epoch alone.
//!
//! burn-train's own loader shuffles each epoch from a generator that advances over the run, and
//! dropout draws from the backend's generator, seeded once: a run resumed after epoch `k`
//! started both again from the seed, so it did not repeat what the uninterrupted run would have
//! done. Here each epoch shuffles with, and seeds the backend with, a seed made of the run's
//! seed and the epoch number, so a resumed run trains exactly as an uninterrupted one (on one
//! device: the slices of a data-parallel run share the backend's global generator).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::data::dataset::Dataset;
use burn::data::dataset::transform::{PartialDataset, ShuffledDataset};
use burn::prelude::*;

/// Which epoch is being trained (its number, for training-time augmentation) and when it
/// started: set as its first batch is asked for, the time taken when its validation ends (the
/// time an epoch line reports, checkpoint writing excluded).
#[derive(Debug, Clone, Default)]
pub(crate) struct EpochClock {
    started: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    epoch: Arc<AtomicUsize>,
}

impl EpochClock {
    fn start(&self, epoch: usize) {
        self.epoch.store(epoch, Ordering::SeqCst);
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(std::time::Instant::now);
    }

    /// A clock in epoch `epoch`.
    #[cfg(test)]
    pub(crate) fn at(epoch: usize) -> Self {
        let clock = Self::default();
        clock.start(epoch);
        clock
    }

    /// The number (1-based) of the epoch being trained; 0 before the first.
    pub(crate) fn epoch(&self) -> usize {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Seconds since the epoch started (0 if it did not), and a reset for the next.
    pub(crate) fn take(&self) -> f64 {
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .map_or(0.0, |started| started.elapsed().as_secs_f64())
    }
}

/// The seed of epoch `epoch` (1-based) of a run seeded with `seed`.
fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Shuffled training batches, epoch `first` the first time it is iterated, then the next.
pub(crate) struct EpochLoader<B: Backend, I, O> {
    dataset: Arc<dyn Dataset<I>>,
    batcher: Arc<dyn Batcher<B, I, O>>,
    batch: usize,
    seed: u64,
    device: B::Device,
    next_epoch: AtomicUsize,
    clock: EpochClock,
}

impl<B: Backend, I: Send + Sync + Clone + 'static, O: Send + 'static> EpochLoader<B, I, O> {
    /// Batches of `batch` items of `dataset`, starting at epoch `first`; `clock` is started as
    /// each epoch begins.
    pub(crate) fn new(
        dataset: Arc<dyn Dataset<I>>,
        batcher: Arc<dyn Batcher<B, I, O>>,
        (batch, seed, first): (usize, u64, usize),
        device: B::Device,
        clock: EpochClock,
    ) -> Self {
        Self {
            dataset,
            batcher,
            batch: batch.max(1),
            seed,
            device,
            next_epoch: AtomicUsize::new(first),
            clock,
        }
    }

    fn with(&self, dataset: Arc<dyn Dataset<I>>, device: B::Device) -> Arc<dyn DataLoader<B, O>> {
        Arc::new(Self::new(
            dataset,
            self.batcher.clone(),
            (
                self.batch,
                self.seed,
                self.next_epoch.load(Ordering::SeqCst),
            ),
            device,
            self.clock.clone(),
        ))
    }
}

impl<B, I, O> DataLoader<B, O> for EpochLoader<B, I, O>
where
    B: Backend,
    I: Send + Sync + Clone + 'static,
    O: Send + 'static,
{
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<O> + 'a> {
        let epoch = self.next_epoch.fetch_add(1, Ordering::SeqCst);
        self.clock.start(epoch);
        let seed = epoch_seed(self.seed, epoch);
        // The epoch's dropout draws.
        B::seed(&self.device, seed);
        Box::new(Batches {
            dataset: Arc::new(ShuffledDataset::new(self.dataset.clone(), seed)),
            batcher: self.batcher.clone(),
            batch: self.batch,
            device: self.device.clone(),
            next: 0,
        })
    }

    fn num_items(&self) -> usize {
        self.dataset.len()
    }

    fn to_device(&self, device: &B::Device) -> Arc<dyn DataLoader<B, O>> {
        self.with(self.dataset.clone(), device.clone())
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<B, O>> {
        let part = PartialDataset::new(self.dataset.clone(), start, end);
        self.with(Arc::new(part), self.device.clone())
    }
}

/// One epoch's batches, in order.
struct Batches<B: Backend, I, O> {
    dataset: Arc<dyn Dataset<I>>,
    batcher: Arc<dyn Batcher<B, I, O>>,
    batch: usize,
    device: B::Device,
    next: usize,
}

impl<B: Backend, I, O> Iterator for Batches<B, I, O> {
    type Item = O;

    fn next(&mut self) -> Option<O> {
        let end = (self.next + self.batch).min(self.dataset.len());
        let items: Vec<I> = (self.next..end)
            .filter_map(|i| self.dataset.get(i))
            .collect();
        self.next = end;
        (!items.is_empty()).then(|| self.batcher.batch(items, &self.device))
    }
}

impl<B: Backend, I, O> DataLoaderIterator<O> for Batches<B, I, O> {
    fn progress(&self) -> Progress {
        Progress {
            items_processed: self.next,
            items_total: self.dataset.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::data::dataset::InMemDataset;

    use super::*;

    #[derive(Clone)]
    struct Ids;

    impl Batcher<Flex, usize, Vec<usize>> for Ids {
        fn batch(&self, items: Vec<usize>, _: &burn::backend::flex::FlexDevice) -> Vec<usize> {
            items
        }
    }

    fn epochs(first: usize, count: usize) -> Vec<Vec<usize>> {
        let loader = EpochLoader::<Flex, usize, Vec<usize>>::new(
            Arc::new(InMemDataset::new((0..10).collect())),
            Arc::new(Ids),
            (4, 7, first),
            Default::default(),
            EpochClock::default(),
        )
        .to_device(&Default::default());
        (0..count)
            .map(|_| loader.iter().flatten().collect())
            .collect()
    }

    #[test]
    fn an_epoch_is_shuffled_by_its_number_alone() {
        // Each epoch seeds the backend's (global) generator.
        let _rng = crate::rng_lock();
        let run = epochs(1, 3);
        // Every item once an epoch, in another order each epoch.
        for order in &run {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        }
        assert_ne!(run[0], run[1]);
        // A run resumed at epoch 2 sees epochs 2 and 3 as the uninterrupted run did.
        assert_eq!(epochs(2, 2), run[1..]);
    }

    #[test]
    fn slices_cover_their_parts_of_the_items() {
        let _rng = crate::rng_lock();
        let loader = EpochLoader::<Flex, usize, Vec<usize>>::new(
            Arc::new(InMemDataset::new((0..10).collect())),
            Arc::new(Ids),
            (3, 7, 1),
            Default::default(),
            EpochClock::default(),
        );
        let (a, b) = (loader.slice(0, 4), loader.slice(4, 10));
        assert_eq!((a.num_items(), b.num_items()), (4, 6));
        let mut seen: Vec<usize> = a.iter().chain(b.iter()).flatten().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        // Batches of 3 and the progress of the last one.
        let mut batches = b.iter();
        assert_eq!(batches.next().map(|batch| batch.len()), Some(3));
        assert_eq!(batches.next().map(|batch| batch.len()), Some(3));
        assert!(batches.next().is_none());
        assert_eq!(batches.progress().items_processed, 6);
    }
}
