//! Distorting batches' images ahead of their turn. The loader keeps the next two batches of
//! the epoch published; while the training step runs, the pool's idle threads distort their
//! images one at a time, the nearer batch first (`cpu::pool::with_spinning_pool_and`), and
//! when a batch is asked for, the loader distorts whatever is left of it on all threads. Two
//! batches, so that the idle time of a step with much of it is not lost once the next batch
//! is done. An image's bytes depend only on (seed, epoch, sample index), so who distorts
//! which changes nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use rayon::prelude::*;

use super::augment::Augmenter;
use cpu::prefetch::{prefetch, Cache};

/// The batches in the making (see the module docs).
#[derive(Debug)]
pub(crate) struct Ahead<'a> {
    augmenter: Augmenter,
    /// The data set's images, `image_len` bytes each.
    images: &'a [u8],
    image_len: usize,
    /// The next two batches, in either order.
    batches: [Batch; 2],
}

/// One batch's images: which samples, how far along, and the distorted bytes.
#[derive(Debug)]
struct Batch {
    job: RwLock<Job>,
    /// Images of the job handed out to a thread so far (it runs past the job's length as
    /// idle threads keep asking).
    claimed: AtomicUsize,
    /// Images of the job written.
    written: AtomicUsize,
    /// The job's position in its epoch's order (written under the job's write lock), and
    /// its length: readable without the lock, as idle threads look at both batches for
    /// every image and poll them when all is done, and each lock taken is an atomic write
    /// to a line the loader's thread reads too.
    first: AtomicUsize,
    len: AtomicUsize,
    /// One distorted image per sample of the job, in its order.
    slots: Vec<Mutex<Vec<u8>>>,
}

/// The samples to distort: `samples` from the batch's `first` position of epoch `epoch`'s
/// order.
#[derive(Debug, Default)]
struct Job {
    epoch: u64,
    samples: Vec<u32>,
}

impl<'a> Ahead<'a> {
    /// Room for two batches of up to `batch_size` images of `image_len` bytes from `images`.
    pub(crate) fn new(augmenter: Augmenter, images: &'a [u8], image_len: usize, batch_size: usize) -> Self {
        let batch = || Batch {
            job: RwLock::new(Job::default()),
            claimed: AtomicUsize::new(0),
            written: AtomicUsize::new(0),
            first: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            slots: (0..batch_size).map(|_| Mutex::new(vec![0; image_len])).collect(),
        };
        Ahead { augmenter, images, image_len, batches: [batch(), batch()] }
    }

    pub(crate) fn augmenter(&self) -> &Augmenter {
        &self.augmenter
    }

    /// Which buffer holds the batch at position `first` of `epoch`, if one does.
    pub(crate) fn find(&self, epoch: u64, first: usize) -> Option<usize> {
        self.batches.iter().position(|b| {
            let job = b.job.read().unwrap_or_else(PoisonError::into_inner);
            job.epoch == epoch && b.first.load(Ordering::Relaxed) == first && !job.samples.is_empty()
        })
    }

    /// Replaces buffer `k`'s job (waiting for any image of it in progress) by `samples`,
    /// from position `first` of `epoch`'s order.
    pub(crate) fn publish(&self, k: usize, epoch: u64, first: usize, samples: &[u32]) {
        let batch = &self.batches[k];
        debug_assert!(samples.len() <= batch.slots.len());
        let mut job = batch.job.write().unwrap_or_else(PoisonError::into_inner);
        job.epoch = epoch;
        job.samples.clear();
        job.samples.extend_from_slice(samples);
        // Under the write lock: no thread is between its claim and its write.
        batch.claimed.store(0, Ordering::Relaxed);
        batch.written.store(0, Ordering::Relaxed);
        batch.first.store(first, Ordering::Relaxed);
        batch.len.store(samples.len(), Ordering::Relaxed);
    }

    /// Distorts one unclaimed image, of the nearer batch first; false when none is left.
    pub(crate) fn work_one(&self) -> bool {
        // A stale look at `first` only changes which batch goes first.
        let first = |b: &Batch| b.first.load(Ordering::Relaxed);
        let nearer = usize::from(first(&self.batches[1]) < first(&self.batches[0]));
        // A look without the lock first (a stale one only skips or retries a turn).
        let unclaimed = |b: &Batch| b.claimed.load(Ordering::Relaxed) < b.len.load(Ordering::Relaxed);
        [nearer, 1 - nearer].into_iter().any(|k| unclaimed(&self.batches[k]) && self.work_one_of(k))
    }

    /// Distorts buffer `k`'s next unclaimed image; false when none is left.
    fn work_one_of(&self, k: usize) -> bool {
        let batch = &self.batches[k];
        let job = batch.job.read().unwrap_or_else(PoisonError::into_inner);
        if batch.claimed.load(Ordering::Relaxed) >= job.samples.len() {
            return false;
        }
        let at = batch.claimed.fetch_add(1, Ordering::Relaxed);
        let Some(&sample) = job.samples.get(at) else { return false };
        let (i, d) = (sample as usize, self.image_len);
        // The images lie scattered over the data set: ask for the next one (most often this
        // thread's next) while this one is distorted.
        if let Some(&next) = job.samples.get(at + 1) {
            prefetch(Cache::L1, self.images, next as usize * d, d);
        }
        let mut slot = batch.slots[at].lock().unwrap_or_else(PoisonError::into_inner);
        self.augmenter.apply(&self.images[i * d..(i + 1) * d], &mut slot, job.epoch, i as u64);
        drop(slot);
        batch.written.fetch_add(1, Ordering::Release);
        true
    }

    /// Distorts what is left of buffer `k`'s job on rayon's threads and waits until every
    /// image is written (the last ones perhaps by an idle thread that claimed them before).
    pub(crate) fn finish(&self, k: usize) {
        let batch = &self.batches[k];
        let len = batch.job.read().unwrap_or_else(PoisonError::into_inner).samples.len();
        let left = len.saturating_sub(batch.claimed.load(Ordering::Relaxed));
        (0..left).into_par_iter().for_each(|_| {
            self.work_one_of(k);
        });
        while batch.written.load(Ordering::Acquire) < len {
            std::hint::spin_loop();
        }
    }

    /// Buffer `k`'s `at`-th image (after [`Ahead::finish`]: distorted).
    pub(crate) fn slot(&self, k: usize, at: usize) -> MutexGuard<'_, Vec<u8>> {
        self.batches[k].slots[at].lock().unwrap_or_else(PoisonError::into_inner)
    }
}
