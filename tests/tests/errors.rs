//! Wrong buffer lengths and invalid arguments are errors across the public API, never
//! panics: each property draws lengths near and far from the right ones (the right one
//! included) and checks `Err` exactly when an input is wrong. A panic fails the property.

use mlp::init::{initialize, Init};
use mlp::{
    fold_batch_norm, Activation, Buffer, Error, LayerSpec, Loss, Model, Optimizer, Portable, Rng, Targets,
    Topology, TrainBuffers, TrainConfig, Trainer, MAX_LAYERS, MAX_WIDTH,
};
use mlp_tests::cases::config;
use mlp_tests::util::{random_params, Buffers};
use proptest::prelude::*;

/// A length: the right one half of the time, else anything from 0 to twice it plus 3.
fn len_near(right: usize) -> impl Strategy<Value = usize> {
    prop_oneof![Just(right), 0..=2 * right + 3]
}

/// The network the buffer properties use: batch norm, dropout, softmax.
fn net() -> Topology {
    Topology::new(
        3,
        &[
            LayerSpec::dense(5, Activation::Relu).with_batch_norm().with_dropout(0.2),
            LayerSpec::dense(2, Activation::Softmax),
        ],
    )
    .unwrap()
}

const MAX_BATCH: usize = 4;

fn width() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 1usize..20,
        1 => Just(0usize),
        1 => Just(MAX_WIDTH),
        1 => Just(MAX_WIDTH + 1),
        1 => any::<usize>(),
    ]
}

fn alpha() -> impl Strategy<Value = f32> {
    prop_oneof![0.0f32..2.0, Just(-0.5f32), Just(f32::NAN), Just(f32::INFINITY)]
}

fn activation() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::Identity),
        Just(Activation::Sigmoid),
        Just(Activation::Tanh),
        Just(Activation::Relu),
        alpha().prop_map(Activation::LeakyRelu),
        alpha().prop_map(Activation::Elu),
        Just(Activation::Gelu),
        Just(Activation::Softmax),
    ]
}

fn dropout() -> impl Strategy<Value = f32> {
    prop_oneof![
        3 => Just(0.0f32),
        2 => 0.0f32..1.0,
        1 => Just(1.0f32),
        1 => Just(-0.1f32),
        1 => Just(f32::NAN),
    ]
}

fn spec() -> impl Strategy<Value = LayerSpec> {
    (width(), activation(), dropout(), any::<bool>()).prop_map(|(n, act, p, bn)| LayerSpec {
        outputs: n,
        activation: act,
        dropout: p,
        batch_norm: bn,
    })
}

/// Whether `Topology::new` must accept, written from its documented rules.
fn valid_topology(input: usize, layers: &[LayerSpec]) -> bool {
    let width_ok = |w: usize| (1..=MAX_WIDTH).contains(&w);
    if layers.is_empty() || layers.len() > MAX_LAYERS || !width_ok(input) {
        return false;
    }
    layers.iter().enumerate().all(|(i, l)| {
        let last = i + 1 == layers.len();
        let alpha_ok = match l.activation {
            Activation::LeakyRelu(a) | Activation::Elu(a) => a.is_finite() && a >= 0.0,
            _ => true,
        };
        width_ok(l.outputs)
            && (last || l.activation != Activation::Softmax)
            && alpha_ok
            && l.dropout.is_finite()
            && (0.0..1.0).contains(&l.dropout)
            && !(last && l.dropout > 0.0)
    })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn topology_new_accepts_exactly_the_valid_layer_lists(
        input in width(),
        layers in proptest::collection::vec(spec(), 0..=MAX_LAYERS + 1),
    ) {
        let r = Topology::new(input, &layers);
        prop_assert_eq!(r.is_ok(), valid_topology(input, &layers), "{:?}", r);
        if let Ok(t) = r {
            // The lengths of a valid topology are consistent with its ranges.
            let last = t.param_ranges(t.layers().len() - 1).unwrap();
            prop_assert_eq!(last.end(), t.param_len());
            prop_assert!(t.param_ranges(t.layers().len()).is_none());
        }
    }

    #[test]
    fn model_new_and_forward_check_every_length(
        params in len_near(net().param_len()),
        running in len_near(net().running_len()),
        batch in prop_oneof![8 => 0usize..6, 1 => Just(usize::MAX), 1 => Just(usize::MAX / 3 + 1)],
        input_delta in prop_oneof![Just(0isize), -4isize..4],
        ws_delta in prop_oneof![Just(0isize), -20isize..20],
    ) {
        let t = net();
        let p = vec![0.1f32; params];
        let r = vec![1.0f32; running];
        let model = Model::new(&t, &p, &r);
        let lengths_ok = params == t.param_len() && running == t.running_len();
        prop_assert_eq!(model.is_ok(), lengths_ok);
        if let Err(e) = model {
            let buffer_length = matches!(e, Error::BufferLength { .. });
            prop_assert!(buffer_length);
            return Ok(());
        }
        let model = model.unwrap();
        // Absurd batches: the lengths they need cannot exist, so cap what is allocated.
        let input_len = batch.saturating_mul(3).saturating_add_signed(input_delta).min(64);
        let ws_len = t.infer_workspace_len(batch).saturating_add_signed(ws_delta).min(1024);
        let x = vec![0.5f32; input_len];
        let mut ws = vec![0.0f32; ws_len];
        let ok = batch > 0
            && input_len == batch.saturating_mul(3)
            && ws_len >= t.infer_workspace_len(batch);
        let out = model.forward(&Portable, &x, batch, &mut ws);
        prop_assert_eq!(out.is_ok(), ok, "{:?}", out.as_ref().err());
        if let Ok(out) = out {
            prop_assert_eq!(out.len(), batch * 2);
        }
    }

    #[test]
    fn trainer_new_checks_every_buffer(
        params in len_near(net().param_len()),
        grads in len_near(net().param_len()),
        running in len_near(net().running_len()),
        state in len_near(Optimizer::adam().state_len(net().param_len())),
        ws_delta in prop_oneof![Just(0isize), -30isize..30],
        max_batch in 0usize..4,
        clip in prop_oneof![Just(None), Just(Some(1.0f32)), Just(Some(0.0f32)), Just(Some(f32::NAN))],
        loss in prop_oneof![Just(Loss::CrossEntropy), Just(Loss::Mse), Just(Loss::BinaryCrossEntropy)],
    ) {
        let t = net();
        let n = t.param_len();
        let ws_len = t.train_workspace_len(max_batch).saturating_add_signed(ws_delta);
        let (mut p, mut g, mut r, mut s, mut w) = (
            vec![0.0f32; params],
            vec![0.0f32; grads],
            vec![0.0f32; running],
            vec![0.0f32; state],
            vec![0.0f32; ws_len],
        );
        let mut cfg = TrainConfig::new(loss, Optimizer::adam(), max_batch);
        cfg.grad_clip = clip;
        let trainer = Trainer::new(
            &t,
            cfg,
            TrainBuffers { params: &mut p, grads: &mut g, running: &mut r, optimizer_state: &mut s, workspace: &mut w },
        );
        let ok = params == n
            && grads == n
            && running == t.running_len()
            && state == 2 * n
            && max_batch > 0
            && ws_len >= t.train_workspace_len(max_batch)
            && loss != Loss::BinaryCrossEntropy // softmax output
            && clip.is_none_or(|c| c > 0.0 && c.is_finite());
        prop_assert_eq!(trainer.is_ok(), ok, "{:?}", trainer.err());
    }

    #[test]
    fn trainer_passes_check_inputs_targets_and_gradients(
        batch in prop_oneof![8 => 0usize..7, 1 => Just(usize::MAX)],
        input_delta in prop_oneof![Just(0isize), -4isize..4],
        targets_delta in prop_oneof![Just(0isize), -3isize..3],
        bad_label in any::<bool>(),
        dense in any::<bool>(),
        nan_target in prop_oneof![4 => Just(false), 1 => Just(true)],
        backward_input_delta in prop_oneof![Just(0isize), -4isize..4],
        d_out_delta in prop_oneof![Just(0isize), -3isize..3],
        seed in any::<u64>(),
    ) {
        let t = net();
        let mut bufs = Buffers::new(&t, Optimizer::sgd(), MAX_BATCH);
        bufs.params = random_params(&t, &mut Rng::new(seed));
        let mut trainer = bufs.trainer(&t, TrainConfig::new(Loss::CrossEntropy, Optimizer::sgd(), MAX_BATCH));
        let mut rng = Rng::new(seed);
        // Before any forward pass, backward has nothing to work on.
        prop_assert_eq!(
            trainer.backward(&Portable, &[0.0; 6], Targets::Labels(&[0, 1])).err(),
            Some(Error::NoForwardPass)
        );
        let input_len = batch.saturating_mul(3).saturating_add_signed(input_delta).min(64);
        let x: Vec<f32> = (0..input_len).map(|k| (k as f32 * 0.37).sin()).collect();
        let forward_ok = (2..=MAX_BATCH).contains(&batch) && input_len == batch * 3;
        let out = trainer.forward(&Portable, &x, batch, &mut rng).map(|o| o.len());
        prop_assert_eq!(out.is_ok(), forward_ok, "{:?}", out);
        if batch == 1 && input_len == 3 {
            prop_assert_eq!(out, Err(Error::BatchNormNeedsTwoSamples));
        }
        if !forward_ok {
            return Ok(());
        }
        // Backward: the input must be the forward batch, the targets must fit it.
        let n_targets = if dense { batch * 2 } else { batch }.saturating_add_signed(targets_delta);
        let labels: Vec<u32> = (0..n_targets).map(|k| if bad_label && k == 0 { 2 } else { (k % 2) as u32 }).collect();
        let mut values: Vec<f32> = (0..n_targets).map(|k| (k % 2) as f32).collect();
        if nan_target && !values.is_empty() {
            values[0] = f32::NAN;
        }
        let targets = if dense { Targets::Dense(&values) } else { Targets::Labels(&labels) };
        let targets_ok = if dense {
            n_targets == batch * 2 && !(nan_target && n_targets > 0)
        } else {
            n_targets == batch && !(bad_label && n_targets > 0)
        };
        let back_len = (batch * 3).saturating_add_signed(backward_input_delta);
        let back_x: Vec<f32> = (0..back_len).map(|k| x.get(k).copied().unwrap_or(0.0)).collect();
        let loss = trainer.backward(&Portable, &back_x, targets);
        prop_assert_eq!(loss.is_ok(), targets_ok && back_len == batch * 3, "{:?}", loss);
        // Backward from a custom output gradient.
        let d_len = (batch * 2).saturating_add_signed(d_out_delta);
        let d = vec![0.1f32; d_len];
        let r = trainer.backward_from_output_grad(&Portable, &x, &d);
        prop_assert_eq!(r.is_ok(), d_len == batch * 2, "{:?}", r);
        if d_len == batch * 2 && d_len > 0 {
            let mut bad = d.clone();
            bad[0] = f32::INFINITY;
            let non_finite = matches!(
                trainer.backward_from_output_grad(&Portable, &x, &bad),
                Err(Error::NonFinite { .. })
            );
            prop_assert!(non_finite);
        }
        // Step: same rules, and a refused step leaves the parameters alone.
        let before = trainer.params().to_vec();
        let s = trainer.step(&Portable, &x, targets, 0.1, &mut rng);
        prop_assert_eq!(s.is_ok(), targets_ok, "{:?}", s);
        if s.is_err() {
            prop_assert_eq!(trainer.params(), &before[..]);
        }
        prop_assert!(trainer.update(f32::NAN).is_err());
        prop_assert!(trainer.update(-1.0).is_err());
    }

    #[test]
    fn optimizer_update_checks_lengths(
        n in 0usize..20,
        grads in 0usize..25,
        state_delta in prop_oneof![Just(0isize), -5isize..5],
        which in 0usize..9,
    ) {
        let opt = mlp_tests::optim::all_optimizers()[which];
        let state = opt.state_len(n).saturating_add_signed(state_delta);
        let mut p = vec![1.0f32; n];
        let g = vec![0.5f32; grads];
        let mut s = vec![0.0f32; state];
        let r = opt.update(&mut p, &g, &mut s, 1, 0.1);
        let ok = grads == n && state == opt.state_len(n);
        prop_assert_eq!(r.is_ok(), ok, "{:?}", r);
        if !ok {
            prop_assert!(p.iter().all(|&v| v == 1.0), "a refused update changed the parameters");
        }
    }

    #[test]
    fn initialize_fold_and_reset_check_lengths(
        params in len_near(net().param_len()),
        running in len_near(net().running_len()),
        out in len_near(net().param_len() - net().running_len()),
        init in prop_oneof![
            Just(Init::HeNormal), Just(Init::XavierUniform), Just(Init::Zeros),
            Just(Init::Uniform { low: -1.0, high: 1.0 }),
            Just(Init::Uniform { low: 1.0, high: -1.0 }),
            Just(Init::Uniform { low: f32::NAN, high: 1.0 }),
        ],
    ) {
        let t = net();
        let mut p = vec![0.0f32; params];
        let r = initialize(&t, &mut p, init, &mut Rng::new(1));
        let init_ok = !matches!(init, Init::Uniform { low, high } if !(low <= high && low.is_finite()));
        prop_assert_eq!(r.is_ok(), params == t.param_len() && init_ok, "{:?}", r);
        let mut run = vec![5.0f32; running];
        let reset = t.reset_running(&mut run);
        prop_assert_eq!(reset.is_ok(), running == t.running_len());
        let mut o = vec![0.0f32; out];
        let f = fold_batch_norm(&t, &p, &run, &mut o);
        let ok = params == t.param_len() && running == t.running_len() && out == t.param_len() - t.running_len();
        prop_assert_eq!(f.is_ok(), ok, "{:?}", f);
        if let Err(Error::BufferLength { buffer, expected, actual }) = f {
            let (want, got) = match buffer {
                Buffer::Params => (t.param_len(), params),
                Buffer::Running => (t.running_len(), running),
                Buffer::FoldedParams => (t.param_len() - t.running_len(), out),
                other => return Err(TestCaseError::fail(format!("unexpected buffer {other:?}"))),
            };
            prop_assert_eq!((expected, actual), (want, got));
        }
    }
}

/// Batches beyond the trainer's `max_batch` and the wrong target kind for a width are
/// errors with the documented variants.
#[test]
fn specific_error_variants() {
    let t = net();
    let mut bufs = Buffers::new(&t, Optimizer::sgd(), MAX_BATCH);
    let mut trainer = bufs.trainer(&t, TrainConfig::new(Loss::CrossEntropy, Optimizer::sgd(), MAX_BATCH));
    let x = vec![0.0f32; 5 * 3];
    assert_eq!(
        trainer.forward(&Portable, &x, 5, &mut Rng::new(1)).err(),
        Some(Error::BatchTooLarge { batch: 5, max: MAX_BATCH })
    );
    assert_eq!(trainer.forward(&Portable, &[], 0, &mut Rng::new(1)).err(), Some(Error::EmptyBatch));
    trainer.forward(&Portable, &x[..6], 2, &mut Rng::new(1)).unwrap();
    assert_eq!(
        trainer.backward(&Portable, &x[..6], Targets::Labels(&[0, 7])).err(),
        Some(Error::LabelOutOfRange { sample: 1, label: 7, classes: 2 })
    );
    // A loss that cannot follow the output activation is refused up front.
    let mut bufs = Buffers::new(&t, Optimizer::sgd(), 2);
    let r = Trainer::new(
        &t,
        TrainConfig::new(Loss::BinaryCrossEntropy, Optimizer::sgd(), 2),
        TrainBuffers {
            params: &mut bufs.params,
            grads: &mut bufs.grads,
            running: &mut bufs.running,
            optimizer_state: &mut bufs.state,
            workspace: &mut bufs.workspace,
        },
    );
    assert!(matches!(r, Err(Error::LossActivationMismatch { .. })));
}

/// A step whose loss is not finite is an error and leaves the parameters, gradients'
/// consumer (the optimizer state) and step counter alone.
#[test]
fn a_non_finite_loss_is_an_error_and_changes_nothing() {
    let t = Topology::new(2, &[LayerSpec::dense(2, Activation::Identity)]).unwrap();
    let mut bufs = Buffers::new(&t, Optimizer::adam(), 2);
    bufs.params = random_params(&t, &mut Rng::new(1));
    let before = bufs.params.clone();
    let mut trainer = bufs.trainer(&t, TrainConfig::new(Loss::Mse, Optimizer::adam(), 2));
    for x in [[1e30f32, 1e30, -1e30, 1e30], [f32::NAN, 0.0, 0.0, 0.0]] {
        let r = trainer.step(&Portable, &x, Targets::Dense(&[0.0; 4]), 0.1, &mut Rng::new(1));
        assert!(matches!(r, Err(Error::NonFinite { .. })), "{r:?}");
        assert_eq!(trainer.params(), &before[..]);
        assert!(trainer.optimizer_state().iter().all(|&s| s == 0.0));
        assert_eq!(trainer.steps(), 0);
    }
}
