//! Loss functions, fused with the output layer's activation where that is exact and stable.
//!
//! Reductions follow PyTorch's defaults:
//!
//! | loss | value | ∂L/∂z of the output layer |
//! |---|---|---|
//! | [`Loss::Mse`] | `1/(B·n) Σ (a - t)²` | `2 (a - t) / (B·n)`, then back through the activation |
//! | [`Loss::CrossEntropy`] | `1/B Σ_b (Σ_k t_bk) logsumexp(z_b) - Σ_k t_bk z_bk` | `(softmax(z_b) Σ_k t_bk - t_b) / B` |
//! | [`Loss::BinaryCrossEntropy`] | `1/(B·n) Σ max(z,0) - z t + ln(1 + e^-\|z\|)` | `(σ(z) - t) / (B·n)` |
//!
//! Cross-entropy works on the logits `z` (the output layer must be `Softmax`, which it then
//! fuses, or `Identity`); binary cross-entropy likewise on logits (output `Sigmoid` or
//! `Identity`). Integer labels are one-hot targets; with a single output they are the
//! binary target 0 or 1.

use crate::activation::{self, log_sum_exp};
use crate::error::{check_len, Buffer, Error};
use crate::math;
use crate::topology::Activation;

/// What the network is trained to minimize.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// Mean squared error on the activated outputs.
    Mse,
    /// Softmax cross-entropy on the logits (PyTorch's `CrossEntropyLoss`).
    CrossEntropy,
    /// Sigmoid binary cross-entropy on the logits (PyTorch's `BCEWithLogitsLoss`).
    BinaryCrossEntropy,
}

/// Training targets for a batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Targets<'a> {
    /// One class index per sample, each below the number of outputs: one-hot targets. With a
    /// single output (a binary classifier), 0 or 1: the target value itself.
    Labels(&'a [u32]),
    /// `batch × outputs` values: one-hot or soft class targets, regression targets, or
    /// per-output probabilities for binary cross-entropy.
    Dense(&'a [f32]),
}

impl Loss {
    /// The name used in messages and files.
    pub const fn name(&self) -> &'static str {
        match self {
            Loss::Mse => "mse",
            Loss::CrossEntropy => "cross-entropy",
            Loss::BinaryCrossEntropy => "binary cross-entropy",
        }
    }

    /// The loss's number in device code (`LOSS_*` in `gpu/src/kernels.cu`): Mse 0,
    /// CrossEntropy 1, BinaryCrossEntropy 2. Fixed: kernels are compiled against these numbers.
    pub const fn code(self) -> u8 {
        match self {
            Loss::Mse => 0,
            Loss::CrossEntropy => 1,
            Loss::BinaryCrossEntropy => 2,
        }
    }

    /// The decision threshold of a single-output model trained with this loss after an
    /// `output` activation, as [`count_correct`] takes it: 0 when the output is a logit
    /// (binary cross-entropy on an identity output), else 0.5 (the output read as a
    /// probability). [`Trainer::step`](crate::Trainer::step) counts its correct samples
    /// with it; a path that counts them itself should too.
    pub fn accuracy_threshold(self, output: Activation) -> f32 {
        match (self, output) {
            (Loss::BinaryCrossEntropy, Activation::Identity) => 0.0,
            _ => 0.5,
        }
    }

    /// Checks that this loss can follow an output layer with `act`.
    pub fn check_activation(&self, act: Activation) -> Result<(), Error> {
        let (ok, expected) = match self {
            Loss::Mse => (true, ""),
            Loss::CrossEntropy => {
                (matches!(act, Activation::Softmax | Activation::Identity), "softmax or identity")
            }
            Loss::BinaryCrossEntropy => {
                (matches!(act, Activation::Sigmoid | Activation::Identity), "sigmoid or identity")
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Error::LossActivationMismatch { loss: self.name(), activation: act.name(), expected })
        }
    }

    /// Mean loss of a batch and, into `dz`, its gradient with respect to the output
    /// layer's pre-activation `z`. `z` and `a` are the output layer's `batch × width`
    /// pre-activations and activations (`a = act(z)`).
    ///
    /// Errors: wrong lengths, labels out of range, non-finite targets, an activation this
    /// loss cannot follow. A NaN or infinite loss is returned as it is: the caller decides.
    #[allow(clippy::too_many_arguments)]
    pub fn loss_and_grad(
        &self,
        act: Activation,
        width: usize,
        z: &[f32],
        a: &[f32],
        targets: Targets<'_>,
        dz: &mut [f32],
    ) -> Result<f32, Error> {
        self.check_activation(act)?;
        let len = z.len();
        if width == 0 || len == 0 || !len.is_multiple_of(width) {
            return Err(Error::EmptyBatch);
        }
        let batch = len / width;
        check_len(Buffer::Workspace, len, a.len())?;
        check_len(Buffer::OutputGrad, len, dz.len())?;
        validate_targets(targets, batch, width)?;

        let mut total = 0.0f32;
        match self {
            Loss::Mse => {
                let scale = 2.0 / len as f32;
                for (b, (ar, dr)) in a.chunks_exact(width).zip(dz.chunks_exact_mut(width)).enumerate() {
                    for (k, (&a, d)) in ar.iter().zip(dr.iter_mut()).enumerate() {
                        let diff = a - target(targets, b, k, width);
                        total += diff * diff;
                        *d = scale * diff;
                    }
                }
                activation::backward_in_place(act, width, z, a, dz);
                total /= len as f32;
            }
            Loss::CrossEntropy => {
                let inv_b = 1.0 / batch as f32;
                for (b, (zr, dr)) in z.chunks_exact(width).zip(dz.chunks_exact_mut(width)).enumerate() {
                    let lse = log_sum_exp(zr);
                    let mut mass = 0.0;
                    for (k, &zk) in zr.iter().enumerate() {
                        let t = target(targets, b, k, width);
                        mass += t;
                        total -= t * (zk - lse);
                    }
                    for (d, &zk) in dr.iter_mut().zip(zr) {
                        *d = math::exp(zk - lse) * mass;
                    }
                    for (k, d) in dr.iter_mut().enumerate() {
                        *d = (*d - target(targets, b, k, width)) * inv_b;
                    }
                }
                total *= inv_b;
            }
            Loss::BinaryCrossEntropy => {
                let inv = 1.0 / len as f32;
                for (i, (&zi, d)) in z.iter().zip(dz.iter_mut()).enumerate() {
                    let t = target(targets, i / width, i % width, width);
                    total += zi.max(0.0) - zi * t + math::ln_1p(math::exp(-zi.abs()));
                    *d = (math::sigmoid(zi) - t) * inv;
                }
                total *= inv;
            }
        }
        Ok(total)
    }
}

impl Loss {
    /// Mean loss of a batch from the output layer's activated `outputs` alone, as eval-mode
    /// inference returns them (probabilities after softmax or sigmoid, logits after
    /// identity). Logarithms of probabilities are clamped at -100, like PyTorch's `BCELoss`,
    /// so a confident mistake costs 100 instead of infinity.
    pub fn value_from_outputs(
        &self,
        act: Activation,
        width: usize,
        outputs: &[f32],
        targets: Targets<'_>,
    ) -> Result<f32, Error> {
        self.check_activation(act)?;
        if width == 0 || outputs.is_empty() || !outputs.len().is_multiple_of(width) {
            return Err(Error::EmptyBatch);
        }
        let batch = outputs.len() / width;
        validate_targets(targets, batch, width)?;
        let clamped_ln = |p: f32| if p > 0.0 { math::ln(p).max(-100.0) } else { -100.0 };
        let mut total = 0.0f32;
        for (b, row) in outputs.chunks_exact(width).enumerate() {
            match (self, act) {
                (Loss::CrossEntropy, Activation::Identity) => {
                    let lse = log_sum_exp(row);
                    for (k, &z) in row.iter().enumerate() {
                        total += target(targets, b, k, width) * (lse - z);
                    }
                }
                (Loss::CrossEntropy, _) => {
                    for (k, &p) in row.iter().enumerate() {
                        total -= target(targets, b, k, width) * clamped_ln(p);
                    }
                }
                (Loss::BinaryCrossEntropy, Activation::Identity) => {
                    for (k, &z) in row.iter().enumerate() {
                        let t = target(targets, b, k, width);
                        total += z.max(0.0) - z * t + math::ln_1p(math::exp(-z.abs()));
                    }
                }
                (Loss::BinaryCrossEntropy, _) => {
                    for (k, &p) in row.iter().enumerate() {
                        let t = target(targets, b, k, width);
                        total -= t * clamped_ln(p) + (1.0 - t) * clamped_ln(1.0 - p);
                    }
                }
                (Loss::Mse, _) => {
                    for (k, &a) in row.iter().enumerate() {
                        let d = a - target(targets, b, k, width);
                        total += d * d;
                    }
                }
            }
        }
        Ok(match self {
            Loss::CrossEntropy => total / batch as f32,
            _ => total / outputs.len() as f32,
        })
    }
}

#[inline]
fn target(targets: Targets<'_>, b: usize, k: usize, width: usize) -> f32 {
    match targets {
        // One output: a binary classifier, the label is the target itself.
        Targets::Labels(labels) if width == 1 => labels.get(b).map_or(0.0, |&l| l as f32),
        Targets::Labels(labels) => {
            if labels.get(b).is_some_and(|&l| l as usize == k) {
                1.0
            } else {
                0.0
            }
        }
        Targets::Dense(t) => t.get(b * width + k).copied().unwrap_or(0.0),
    }
}

/// Checks lengths, label ranges and finiteness of a batch of targets.
pub(crate) fn validate_targets(targets: Targets<'_>, batch: usize, width: usize) -> Result<(), Error> {
    match targets {
        Targets::Labels(labels) => {
            check_len(Buffer::Targets, batch, labels.len())?;
            let classes = if width == 1 { 2 } else { width };
            if let Some((sample, &label)) = labels.iter().enumerate().find(|(_, &l)| l as usize >= classes) {
                return Err(Error::LabelOutOfRange { sample, label, classes });
            }
        }
        Targets::Dense(t) => {
            check_len(Buffer::Targets, batch.saturating_mul(width), t.len())?;
            if t.iter().any(|v| !v.is_finite()) {
                return Err(Error::NonFinite { what: "a target value" });
            }
        }
    }
    Ok(())
}

/// How many samples of a batch are classified correctly: the arg-max of each output row
/// against the label (or the arg-max of a dense target row). With one output the decision
/// is `output > threshold` against `target > 0.5` (threshold 0.5 for probabilities, 0 for
/// logits).
pub fn count_correct(outputs: &[f32], width: usize, targets: Targets<'_>, threshold: f32) -> usize {
    if width == 0 {
        return 0;
    }
    let mut correct = 0;
    for (b, row) in outputs.chunks_exact(width).enumerate() {
        let ok = if width == 1 {
            let t = match targets {
                Targets::Labels(l) => l.get(b).map_or(0.0, |&l| l as f32),
                Targets::Dense(t) => t.get(b).copied().unwrap_or(f32::NAN),
            };
            (row[0] > threshold) == (t > 0.5)
        } else {
            let predicted = argmax(row);
            match targets {
                Targets::Labels(l) => l.get(b).is_some_and(|&l| l as usize == predicted),
                Targets::Dense(t) => {
                    t.get(b * width..(b + 1) * width).is_some_and(|r| argmax(r) == predicted)
                }
            }
        };
        correct += ok as usize;
    }
    correct
}

/// Index of the largest value (the first one on ties; NaN never wins). 0 for an empty row.
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in row.iter().enumerate() {
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_of_uniform_logits_is_ln_classes() {
        let z = [0.0f32; 8];
        let mut a = [0.0; 8];
        activation::forward(Activation::Softmax, 4, &z, &mut a);
        let mut dz = [0.0; 8];
        let l = Loss::CrossEntropy
            .loss_and_grad(Activation::Softmax, 4, &z, &a, Targets::Labels(&[1, 3]), &mut dz)
            .unwrap();
        assert!((l - libm::logf(4.0)).abs() < 1e-6);
        // (0.25 - onehot) / 2
        assert_eq!(dz, [0.125, -0.375, 0.125, 0.125, 0.125, 0.125, 0.125, -0.375]);
    }

    #[test]
    fn cross_entropy_is_stable_for_huge_logits() {
        let z = [1000.0f32, -1000.0];
        let mut dz = [0.0; 2];
        let l = Loss::CrossEntropy
            .loss_and_grad(Activation::Identity, 2, &z, &z, Targets::Labels(&[1]), &mut dz)
            .unwrap();
        assert_eq!(l, 2000.0);
        assert_eq!(dz, [1.0, -1.0]);
    }

    #[test]
    fn binary_cross_entropy_matches_the_direct_formula() {
        let z = [0.3f32, -2.0];
        let t = [1.0f32, 0.0];
        let mut dz = [0.0; 2];
        let l = Loss::BinaryCrossEntropy
            .loss_and_grad(Activation::Sigmoid, 1, &z, &z, Targets::Dense(&t), &mut dz)
            .unwrap();
        let s = |x: f64| 1.0 / (1.0 + (-x).exp());
        let direct = (-(s(0.3)).ln() - (1.0 - s(-2.0)).ln()) / 2.0;
        assert!((l as f64 - direct).abs() < 1e-6);
    }

    #[test]
    fn bad_targets_are_errors() {
        let z = [0.0f32; 4];
        let mut dz = [0.0; 4];
        let ce = Loss::CrossEntropy;
        assert_eq!(
            ce.loss_and_grad(Activation::Softmax, 2, &z, &z, Targets::Labels(&[0, 2]), &mut dz),
            Err(Error::LabelOutOfRange { sample: 1, label: 2, classes: 2 })
        );
        assert!(matches!(
            ce.loss_and_grad(Activation::Softmax, 2, &z, &z, Targets::Labels(&[0]), &mut dz),
            Err(Error::BufferLength { buffer: Buffer::Targets, .. })
        ));
        assert!(matches!(
            Loss::Mse.loss_and_grad(
                Activation::Relu,
                2,
                &z,
                &z,
                Targets::Dense(&[0.0, f32::NAN, 0.0, 0.0]),
                &mut dz
            ),
            Err(Error::NonFinite { .. })
        ));
        assert!(matches!(
            ce.loss_and_grad(Activation::Sigmoid, 2, &z, &z, Targets::Labels(&[0, 1]), &mut dz),
            Err(Error::LossActivationMismatch { .. })
        ));
    }

    #[test]
    fn loss_from_outputs_agrees_with_the_training_loss() {
        let z = [0.3f32, -1.2, 2.0, 0.5, 0.1, -0.4];
        let labels = [2u32, 0];
        for (loss, act) in [
            (Loss::CrossEntropy, Activation::Softmax),
            (Loss::CrossEntropy, Activation::Identity),
            (Loss::BinaryCrossEntropy, Activation::Sigmoid),
            (Loss::BinaryCrossEntropy, Activation::Identity),
            (Loss::Mse, Activation::Tanh),
        ] {
            let mut a = [0.0; 6];
            activation::forward(act, 3, &z, &mut a);
            let mut dz = [0.0; 6];
            let train = loss.loss_and_grad(act, 3, &z, &a, Targets::Labels(&labels), &mut dz).unwrap();
            let eval = loss.value_from_outputs(act, 3, &a, Targets::Labels(&labels)).unwrap();
            assert!(
                (train - eval).abs() < 1e-5 * train.abs().max(1.0),
                "{loss:?} {act:?}: {train} vs {eval}"
            );
        }
    }

    #[test]
    fn loss_codes_are_the_device_numbering() {
        assert_eq!([Loss::Mse.code(), Loss::CrossEntropy.code(), Loss::BinaryCrossEntropy.code()], [0, 1, 2]);
    }

    #[test]
    fn accuracy_threshold_is_zero_only_for_logits_of_binary_cross_entropy() {
        assert_eq!(Loss::BinaryCrossEntropy.accuracy_threshold(Activation::Identity), 0.0);
        assert_eq!(Loss::BinaryCrossEntropy.accuracy_threshold(Activation::Sigmoid), 0.5);
        for act in [Activation::Identity, Activation::Sigmoid, Activation::Softmax, Activation::Tanh] {
            assert_eq!(Loss::Mse.accuracy_threshold(act), 0.5);
            assert_eq!(Loss::CrossEntropy.accuracy_threshold(act), 0.5);
        }
        // A logit of 0.1 is a positive prediction; a probability of 0.1 is not.
        let t = Targets::Labels(&[1]);
        assert_eq!(
            count_correct(&[0.1], 1, t, Loss::BinaryCrossEntropy.accuracy_threshold(Activation::Identity)),
            1
        );
        assert_eq!(
            count_correct(&[0.1], 1, t, Loss::BinaryCrossEntropy.accuracy_threshold(Activation::Sigmoid)),
            0
        );
    }

    #[test]
    fn counting_correct_predictions() {
        let out = [0.1, 0.9, 0.8, 0.2, 0.5, 0.5];
        assert_eq!(count_correct(&out, 2, Targets::Labels(&[1, 1, 0]), 0.5), 2);
        assert_eq!(count_correct(&[0.7, 0.2], 1, Targets::Dense(&[1.0, 1.0]), 0.5), 1);
        assert_eq!(argmax(&[f32::NAN, 1.0]), 1);
    }
}
