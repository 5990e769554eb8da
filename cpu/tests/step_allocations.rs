//! A training step with the host's `Fast` kernels allocates nothing on the heap once warm:
//! the kernels' scratch lives in thread-locals that grow in the first steps and are then
//! reused, and the thread pool hands out work without boxing it. A counting global
//! allocator (this test binary's only) sees every allocation on every thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use cpu::Fast;
use mlp::{
    init, Activation, Init, LayerSpec, Loss, Optimizer, Rng, Targets, Topology, TrainBuffers, TrainConfig,
    Trainer,
};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout (through `alloc` above).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `dealloc`; `new_size` is the caller's, unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn a_warm_training_step_does_not_allocate() {
    // The tutorial's shape, with MNIST-like inputs (about 80% exact zeros), so the step goes
    // through the zero-skipping kernels, the dense ones and the threaded optimizer update.
    let (batch, inputs) = (256, 784);
    let t = Topology::new(
        inputs,
        &[LayerSpec::dense(256, Activation::Relu), LayerSpec::dense(10, Activation::Softmax)],
    )
    .unwrap();
    let mut rng = Rng::new(1);
    let x: Vec<f32> =
        (0..batch * inputs).map(|_| if rng.uniform() < 0.8 { 0.0 } else { rng.uniform() }).collect();
    let y: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
    let mut params = vec![0.0; t.param_len()];
    init::initialize(&t, &mut params, Init::HeNormal, &mut rng).unwrap();
    let optimizer = Optimizer::adam();
    let (mut grads, mut state) = (vec![0.0; t.param_len()], vec![0.0; optimizer.state_len(t.param_len())]);
    let mut ws = vec![0.0; t.train_workspace_len(batch)];
    let buffers = TrainBuffers {
        params: &mut params,
        grads: &mut grads,
        running: &mut [],
        optimizer_state: &mut state,
        workspace: &mut ws,
    };
    let mut trainer =
        Trainer::new(&t, TrainConfig::new(Loss::CrossEntropy, optimizer, batch), buffers).unwrap();
    let pool = cpu::pool::Threads::new(2).unwrap();
    let fast = Fast::new();
    pool.install(|| {
        // Warm-up: each thread's scratch grows the first time that thread runs each kind of
        // task, and which thread runs what depends on work stealing, so give every thread
        // its chance first.
        for _ in 0..50 {
            trainer.step(&fast, &x, Targets::Labels(&y), 1e-3, &mut rng).unwrap();
        }
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        for _ in 0..20 {
            trainer.step(&fast, &x, Targets::Labels(&y), 1e-3, &mut rng).unwrap();
        }
        let during = ALLOCATIONS.load(Ordering::SeqCst) - before;
        assert_eq!(during, 0, "{during} heap allocations in 20 warm training steps");
    });
}
