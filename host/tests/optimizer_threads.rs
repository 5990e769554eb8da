//! The optimizer's update spread over threads (`Fast::update_params`) against the one-pass
//! update (`Optimizer::update`, core's `Portable`): the same bits for every optimizer, every
//! thread count, and buffer lengths around the split points.

use host::kernels::Fast;
use mlp::{Optimizer, Rng};

fn random(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| rng.uniform_in(-1.0, 1.0)).collect()
}

const OPTIMIZERS: [Optimizer; 9] = [
    Optimizer::sgd(),
    Optimizer::momentum(0.9),
    Optimizer::nesterov(0.9),
    Optimizer::adagrad(),
    Optimizer::rmsprop(),
    Optimizer::adadelta(),
    Optimizer::adam(),
    Optimizer::adamw(),
    Optimizer::adamax(),
];

#[test]
fn threaded_update_is_bit_identical_to_the_single_pass() {
    let mut rng = Rng::new(3);
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        for n in [0usize, 1, 17, 32 * 1024 + 1, 203_530] {
            for opt in OPTIMIZERS {
                let opt = opt.with_weight_decay(0.01);
                let params = random(n, &mut rng);
                // Nonzero state, as after some steps (Adagrad/Adamax/Adadelta need it >= 0).
                let state: Vec<f32> = random(opt.state_len(n), &mut rng).iter().map(|v| v.abs()).collect();
                let (mut p1, mut s1) = (params.clone(), state.clone());
                let (mut p2, mut s2) = (params, state);
                for t in 1..=3 {
                    let grads = random(n, &mut rng);
                    opt.update(&mut p1, &grads, &mut s1, t, 1e-2).unwrap();
                    pool.install(|| opt.update_with(&Fast::new(), &mut p2, &grads, &mut s2, t, 1e-2))
                        .unwrap();
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&p1), bits(&p2), "{} params, n = {n}, {threads} threads", opt.name());
                assert_eq!(bits(&s1), bits(&s2), "{} state, n = {n}, {threads} threads", opt.name());
            }
        }
    }
}

#[test]
fn threaded_update_still_checks_its_inputs() {
    let opt = Optimizer::adam();
    let (mut p, g, mut s) = (vec![0.0; 4], vec![0.0; 3], vec![0.0; 8]);
    assert!(opt.update_with(&Fast::new(), &mut p, &g, &mut s, 1, 1e-3).is_err(), "short gradients");
    let g = vec![0.0; 4];
    assert!(opt.update_with(&Fast::new(), &mut p, &g, &mut s, 0, 1e-3).is_err(), "step 0");
    assert!(opt.update_with(&Fast::new(), &mut p, &g, &mut s[..7], 1, 1e-3).is_err(), "short state");
}
