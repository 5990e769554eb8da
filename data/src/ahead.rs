//! Distorting a batch's images ahead of its turn. After handing out a batch the loader
//! publishes the next one's samples; while the training step runs, the pool's idle threads
//! distort them one image at a time (`cpu::pool::with_spinning_pool_and`), and when the
//! batch is asked for, the loader distorts whatever is left on all threads. An image's
//! bytes depend only on (seed, epoch, sample index), so who distorts which changes nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use rayon::prelude::*;

use super::augment::Augmenter;

/// One batch of distorted images in the making (see the module docs).
#[derive(Debug)]
pub(crate) struct Ahead<'a> {
    augmenter: Augmenter,
    /// The data set's images, `image_len` bytes each.
    images: &'a [u8],
    image_len: usize,
    job: RwLock<Job>,
    /// Images of the job handed out to a thread so far (it runs past the job's length as
    /// idle threads keep asking).
    claimed: AtomicUsize,
    /// Images of the job written.
    written: AtomicUsize,
    /// One distorted image per sample of the job, in its order.
    slots: Vec<Mutex<Vec<u8>>>,
}

/// The samples to distort: `samples` from position `first` of epoch `epoch`'s order.
#[derive(Debug, Default)]
struct Job {
    epoch: u64,
    first: usize,
    samples: Vec<u32>,
}

impl<'a> Ahead<'a> {
    /// Room for batches of up to `batch_size` images of `image_len` bytes from `images`.
    pub(crate) fn new(augmenter: Augmenter, images: &'a [u8], image_len: usize, batch_size: usize) -> Self {
        Ahead {
            augmenter,
            images,
            image_len,
            job: RwLock::new(Job::default()),
            claimed: AtomicUsize::new(0),
            written: AtomicUsize::new(0),
            slots: (0..batch_size).map(|_| Mutex::new(vec![0; image_len])).collect(),
        }
    }

    pub(crate) fn augmenter(&self) -> &Augmenter {
        &self.augmenter
    }

    /// Whether the job in hand is the batch at position `first` of `epoch`.
    pub(crate) fn holds(&self, epoch: u64, first: usize) -> bool {
        let job = self.job.read().unwrap_or_else(PoisonError::into_inner);
        job.epoch == epoch && job.first == first && !job.samples.is_empty()
    }

    /// Replaces the job (waiting for any image in progress) by `samples`, from position
    /// `first` of `epoch`'s order.
    pub(crate) fn publish(&self, epoch: u64, first: usize, samples: &[u32]) {
        debug_assert!(samples.len() <= self.slots.len());
        let mut job = self.job.write().unwrap_or_else(PoisonError::into_inner);
        job.epoch = epoch;
        job.first = first;
        job.samples.clear();
        job.samples.extend_from_slice(samples);
        // Under the write lock: no thread is between its claim and its write.
        self.claimed.store(0, Ordering::Relaxed);
        self.written.store(0, Ordering::Relaxed);
    }

    /// Distorts the job's next unclaimed image; false when none is left.
    pub(crate) fn work_one(&self) -> bool {
        let job = self.job.read().unwrap_or_else(PoisonError::into_inner);
        // A cheap look first: idle threads call this in a loop once the job is done.
        if self.claimed.load(Ordering::Relaxed) >= job.samples.len() {
            return false;
        }
        let k = self.claimed.fetch_add(1, Ordering::Relaxed);
        let Some(&sample) = job.samples.get(k) else { return false };
        let i = sample as usize;
        let d = self.image_len;
        let mut slot = self.slot(k);
        self.augmenter.apply(&self.images[i * d..(i + 1) * d], &mut slot, job.epoch, i as u64);
        drop(slot);
        self.written.fetch_add(1, Ordering::Release);
        true
    }

    /// Distorts what is left of the job on rayon's threads and waits until every image is
    /// written (the last ones perhaps by an idle thread that claimed them before).
    pub(crate) fn finish(&self) {
        let len = self.job.read().unwrap_or_else(PoisonError::into_inner).samples.len();
        let left = len.saturating_sub(self.claimed.load(Ordering::Relaxed));
        (0..left).into_par_iter().for_each(|_| {
            self.work_one();
        });
        while self.written.load(Ordering::Acquire) < len {
            std::hint::spin_loop();
        }
    }

    /// The job's `k`-th image (after [`Ahead::finish`]: distorted).
    pub(crate) fn slot(&self, k: usize) -> MutexGuard<'_, Vec<u8>> {
        self.slots[k].lock().unwrap_or_else(PoisonError::into_inner)
    }
}
