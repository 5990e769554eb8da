//! Random networks, data and the runs of core and of the reference on them, shared by the
//! property tests.

use mlp::{Activation, LayerSpec, Loss, Optimizer, Portable, Rng, Targets, Topology, TrainConfig};
use proptest::prelude::*;

use crate::reference::{one_hot, RefNet, TrainPass};
use crate::util::{f64s, normal, random_params, uniform, Buffers};

/// Any activation allowed in a hidden layer (everything but softmax), with random alphas,
/// maxout with 2 to 4 pieces among them.
pub fn hidden_activation() -> impl Strategy<Value = Activation> {
    prop_oneof![7 => pointwise_activation(), 1 => (2u8..=4).prop_map(Activation::Maxout)]
}

/// The pointwise hidden activations (every output layer may have one of them too).
pub fn pointwise_activation() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::Identity),
        Just(Activation::Sigmoid),
        Just(Activation::Tanh),
        Just(Activation::Relu),
        (0.0f32..1.0).prop_map(Activation::LeakyRelu),
        (0.1f32..2.0).prop_map(Activation::Elu),
        Just(Activation::Gelu),
    ]
}

/// A loss with an output activation it accepts: cross-entropy after softmax or identity,
/// binary cross-entropy after sigmoid or identity, MSE after anything (softmax included).
pub fn loss_and_output() -> impl Strategy<Value = (Loss, Activation)> {
    prop_oneof![
        prop_oneof![Just(Activation::Softmax), Just(Activation::Identity)]
            .prop_map(|a| (Loss::CrossEntropy, a)),
        prop_oneof![Just(Activation::Sigmoid), Just(Activation::Identity)]
            .prop_map(|a| (Loss::BinaryCrossEntropy, a)),
        prop_oneof![pointwise_activation(), Just(Activation::Softmax)].prop_map(|a| (Loss::Mse, a)),
    ]
}

/// Whether random layers may have batch norm / dropout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// Batch norm on a random subset of layers.
    pub batch_norm: bool,
    /// Dropout on a random subset of hidden layers.
    pub dropout: bool,
}

impl Features {
    /// Batch norm and dropout both possible.
    pub const ALL: Features = Features { batch_norm: true, dropout: true };
}

/// A random network, batch and data seed.
#[derive(Clone, Debug)]
pub struct NetCase {
    /// Input width.
    pub input: usize,
    /// Layers (the last is the output layer).
    pub layers: Vec<LayerSpec>,
    /// The loss.
    pub loss: Loss,
    /// Samples in the batch.
    pub batch: usize,
    /// The batch the trainer's workspace is sized for (`>= batch`).
    pub max_batch: usize,
    /// Integer labels instead of dense targets.
    pub labels: bool,
    /// Seed for parameters, inputs and targets.
    pub seed: u64,
    /// Seed of the rng given to the training forward pass (dropout masks).
    pub dropout_seed: u64,
}

fn hidden_layer(features: Features, max_width: usize) -> impl Strategy<Value = LayerSpec> {
    (1..=max_width, hidden_activation(), any::<bool>(), prop_oneof![Just(0.0f32), 0.05f32..0.6]).prop_map(
        move |(n, act, bn, p)| {
            let mut l = LayerSpec::dense(n, act);
            // Core refuses batch norm on a maxout layer.
            if features.batch_norm && bn && act.pieces() == 1 {
                l = l.with_batch_norm();
            }
            if features.dropout {
                l = l.with_dropout(p);
            }
            l
        },
    )
}

/// Networks of 1 to `max_layers` layers of width 1 to `max_width`, every activation, every
/// loss, batches of 1 to 8 (at least 2 with batch norm).
pub fn net_case(max_layers: usize, max_width: usize, features: Features) -> impl Strategy<Value = NetCase> {
    (
        1..=max_width,
        proptest::collection::vec(hidden_layer(features, max_width), 0..max_layers),
        loss_and_output(),
        1..=max_width,
        any::<bool>(),
        1usize..=8,
        0usize..=3,
        any::<bool>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            move |(
                input,
                mut layers,
                (loss, out_act),
                outputs,
                out_bn,
                batch,
                extra,
                labels,
                seed,
                dropout_seed,
            )| {
                let mut out = LayerSpec::dense(outputs, out_act);
                if features.batch_norm && out_bn {
                    out = out.with_batch_norm();
                }
                layers.push(out);
                let batch = if layers.iter().any(|l| l.batch_norm) { batch.max(2) } else { batch };
                NetCase { input, layers, loss, batch, max_batch: batch + extra, labels, seed, dropout_seed }
            },
        )
}

/// Targets of a case, owned.
#[derive(Clone, Debug, PartialEq)]
pub enum OwnedTargets {
    /// Class indices.
    Labels(Vec<u32>),
    /// `batch × outputs` values.
    Dense(Vec<f32>),
}

impl OwnedTargets {
    /// Borrowed, as core takes them.
    pub fn as_targets(&self) -> Targets<'_> {
        match self {
            OwnedTargets::Labels(l) => Targets::Labels(l),
            OwnedTargets::Dense(d) => Targets::Dense(d),
        }
    }

    /// As dense f64 rows of `width` for the reference (labels one-hot).
    pub fn dense_f64(&self, width: usize) -> Vec<f64> {
        match self {
            OwnedTargets::Labels(l) => one_hot(l, width),
            OwnedTargets::Dense(d) => f64s(d),
        }
    }
}

/// Parameters, inputs and targets of a case.
#[derive(Clone, Debug)]
pub struct CaseData {
    /// The validated topology.
    pub topology: Topology,
    /// Parameters (see [`random_params`]).
    pub params: Vec<f32>,
    /// `batch × input` standard normal inputs.
    pub input: Vec<f32>,
    /// Targets suited to the loss.
    pub targets: OwnedTargets,
}

impl NetCase {
    /// The case's topology.
    pub fn topology(&self) -> Topology {
        Topology::new(self.input, &self.layers).expect("strategies build valid topologies")
    }

    /// Draws the case's parameters, inputs and targets from its seed. Dense targets: MSE
    /// `N(0, 1)`; cross-entropy nonnegative weights in `[0, 1)` (rows need not sum to 1);
    /// BCE probabilities in `[0, 1)`.
    pub fn data(&self) -> CaseData {
        let topology = self.topology();
        let mut rng = Rng::new(self.seed);
        let params = random_params(&topology, &mut rng);
        let input = normal(&mut rng, self.batch * self.input);
        let n = topology.output();
        let targets = if self.labels {
            // A single output is a binary classifier: labels 0 and 1.
            let classes = if n == 1 { 2 } else { n as u32 };
            OwnedTargets::Labels((0..self.batch).map(|_| rng.below(classes)).collect())
        } else {
            OwnedTargets::Dense(match self.loss {
                Loss::Mse => normal(&mut rng, self.batch * n),
                _ => uniform(&mut rng, self.batch * n, 0.0, 1.0),
            })
        };
        CaseData { topology, params, input, targets }
    }

    /// The trainer config for this case (plain SGD: no optimizer step is taken).
    pub fn config(&self) -> TrainConfig {
        TrainConfig::new(self.loss, Optimizer::sgd(), self.max_batch)
    }
}

/// What core computed for a case in one training forward and backward pass.
#[derive(Clone, Debug)]
pub struct CoreRun {
    /// The mean loss.
    pub loss: f32,
    /// Every parameter's gradient.
    pub grads: Vec<f32>,
    /// Each layer's dropout mask (empty without dropout).
    pub masks: Vec<Vec<f32>>,
    /// Which side of its kinks every kinked pre-activation is on, as
    /// [`RefNet::kink_pattern`] orders them.
    pub kinks: Vec<bool>,
}

/// Core's training forward pass on `params` (dropout rng seeded by the case), then its
/// backward pass from the loss.
pub fn run_core(case: &NetCase, data: &CaseData, params: &[f32]) -> CoreRun {
    let t = &data.topology;
    let mut bufs = Buffers::new(t, Optimizer::sgd(), case.max_batch);
    bufs.params.copy_from_slice(params);
    let mut trainer = bufs.trainer(t, case.config());
    let mut rng = Rng::new(case.dropout_seed);
    trainer.forward(&Portable, &data.input, case.batch, &mut rng).expect("forward");
    let mut masks = Vec::new();
    let mut kinks = Vec::new();
    for (i, l) in t.layers().iter().enumerate() {
        let acts = trainer.layer_activations(i).expect("saved activations");
        masks.push(acts.mask.to_vec());
        kinks.extend(crate::reference::kinks(l.activation, &f64s(acts.z)));
    }
    let loss = trainer.backward(&Portable, &data.input, data.targets.as_targets()).expect("backward");
    CoreRun { loss, grads: trainer.grads().to_vec(), masks, kinks }
}

/// The reference's training forward pass with core's dropout masks.
pub fn run_reference(data: &CaseData, batch: usize, masks: &[Vec<f32>]) -> (RefNet, TrainPass) {
    let net = RefNet::from_topology(&data.topology);
    let masks: Vec<Vec<f64>> = masks.iter().map(|m| f64s(m)).collect();
    let pass = net.forward_train(&f64s(&data.params), &f64s(&data.input), batch, &masks);
    (net, pass)
}

/// A proptest config with `cases` cases, multiplied by the environment variable
/// `MLP_TESTS_SCALE` when set (for soak runs: `MLP_TESTS_SCALE=50 cargo test -p mlp-tests`).
pub fn config(cases: u32) -> ProptestConfig {
    let scale = std::env::var("MLP_TESTS_SCALE").ok().and_then(|s| s.parse::<u32>().ok()).unwrap_or(1).max(1);
    ProptestConfig { cases: cases.saturating_mul(scale), ..ProptestConfig::default() }
}
