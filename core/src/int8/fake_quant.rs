//! Fake quantization for quantization-aware training (QAT): the float forward that rounds
//! weights and activations exactly where [`quantize`](super::quantize) will, and the
//! straight-through estimator (STE) for the backward pass.
//!
//! The rules are the int8 ones of this module's parent, reused, not restated:
//! - weights: per output channel, symmetric, `s_w = max |w| / 127`,
//!   `w_fq = s_w · clamp(round(w / s_w), -127, 127)` (every weight lies inside the range by
//!   construction, so the STE passes every weight's gradient unchanged);
//! - activations: `x_fq = s · (clamp(round(x / s) + z, -128, 127) - z)` with `s` and `z` from
//!   a calibrated range as `quantize` chooses them ([`QuantParams::from_range`]); the STE
//!   passes the gradient where `round(x / s) + z` lies in `[-128, 127]` and gives 0 outside,
//!   as PyTorch's `FakeQuantize` does (its mask is taken on the rounded, unclamped value).
//!
//! Where each activation is fake-quantized follows the integer path layer by layer: the
//! network input (input range); a layer with a lookup table (sigmoid, tanh, ...) rounds its
//! pre-activation (pre range), applies the activation, and rounds the result (output range);
//! a clamp layer (ReLU, identity) rounds its activation (output range); a softmax output
//! layer rounds its logits (output range) before the softmax. Biases stay in float: int8
//! stores them as int32 at scale `s_in · s_w`, an error below 1e-4 of a step.

use crate::activation;
use crate::error::Error;
use crate::topology::{Activation, Topology, MAX_LAYERS};

use super::quantize::{choose_params, quantize_one, row_scale};
use super::{uses_table, MinMax, Ranges};

/// The scale and zero point of one int8 activation tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantParams {
    /// Real value of one integer step.
    pub scale: f32,
    /// The integer that represents 0.
    pub zero_point: i32,
}

impl QuantParams {
    /// The parameters [`quantize`](super::quantize) chooses for `range` (widened to include 0,
    /// `scale = (max - min) / 255`, `zero_point = round(-128 - min / scale)`). `layer` names
    /// the layer in the error for an empty or non-finite range (`None`: the input).
    pub fn from_range(range: &MinMax, layer: Option<usize>) -> Result<Self, Error> {
        let (scale, zero_point) = choose_params(range, layer)?;
        Ok(QuantParams { scale, zero_point })
    }

    /// Quantize then dequantize: `scale · (clamp(round(x / scale) + zero_point, -128, 127) -
    /// zero_point)`, with the rounding of [`quantize_values`](super::quantize_values) and the
    /// arithmetic of [`dequantize`](super::dequantize).
    #[inline]
    pub fn fake_quantize(&self, x: f32) -> f32 {
        let q = quantize_one(x as f64, self.scale as f64, self.zero_point) as i32;
        self.scale * (q - self.zero_point) as f32
    }

    /// The STE mask: whether the gradient passes through [`fake_quantize`](Self::fake_quantize)
    /// at `x` (`round(x / scale) + zero_point` in `[-128, 127]`; NaN does not pass).
    #[inline]
    pub fn passes_gradient(&self, x: f32) -> bool {
        let q = libm::round(x as f64 / self.scale as f64) + self.zero_point as f64;
        (-128.0..=127.0).contains(&q)
    }
}

/// Replaces every layer's weights in `params` (the flat layout of `topology`) by their
/// per-channel fake-quantized values; biases and batch-norm parameters are left as they are.
pub fn fake_quantize_weights(topology: &Topology, params: &mut [f32]) -> Result<(), Error> {
    crate::error::check_len(crate::error::Buffer::Params, topology.param_len(), params.len())?;
    for i in 0..topology.layers().len() {
        let (Some(r), fan_in) = (topology.param_ranges(i), topology.fan_in(i)) else { break };
        for row in params[r.weights].chunks_exact_mut(fan_in) {
            let s = row_scale(row);
            for w in row.iter_mut() {
                let q = libm::round(*w as f64 / s as f64).clamp(-127.0, 127.0);
                *w = s * q as f32;
            }
        }
    }
    Ok(())
}

/// The activation quantization of a whole network during QAT: what
/// [`Trainer::step_fake_quant`](crate::Trainer::step_fake_quant) rounds to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FakeQuant {
    /// The network input (after the input transform).
    pub input: QuantParams,
    /// Per layer, the pre-activation (used by layers with a table).
    pub pre: [QuantParams; MAX_LAYERS],
    /// Per layer, the output (softmax: the logits).
    pub out: [QuantParams; MAX_LAYERS],
}

impl FakeQuant {
    /// The parameters `quantize` would write for `topology` with these calibration `ranges`.
    /// Errors: [`FakeQuant::check_topology`], or an empty or non-finite range that
    /// `quantize` needs ([`Error::InvalidCalibration`]).
    pub fn from_ranges(topology: &Topology, ranges: &Ranges) -> Result<Self, Error> {
        Self::check_topology(topology)?;
        let unused = QuantParams { scale: 1.0, zero_point: 0 };
        let mut fq = FakeQuant {
            input: QuantParams::from_range(&ranges.input, None)?,
            pre: [unused; MAX_LAYERS],
            out: [unused; MAX_LAYERS],
        };
        for (i, l) in topology.layers().iter().enumerate() {
            fq.out[i] = QuantParams::from_range(&ranges.out[i], Some(i))?;
            if uses_table(l.activation) {
                fq.pre[i] = QuantParams::from_range(&ranges.pre[i], Some(i))?;
            }
        }
        Ok(fq)
    }

    /// QAT covers classifiers without batch norm: a softmax output layer (int8 evaluates its
    /// logits) and no batch-norm layer (`quantize` folds it into the weights, which the
    /// fake-quantized forward would have to do at every step).
    pub fn check_topology(topology: &Topology) -> Result<(), Error> {
        if topology.has_batch_norm() {
            return Err(Error::FakeQuantUnsupported { what: "batch norm" });
        }
        if topology.layers().iter().any(|l| l.activation.pieces() > 1) {
            // int8 has no maxout (a max over per-channel scales is not exact), so no QAT either.
            return Err(Error::FakeQuantUnsupported { what: "maxout" });
        }
        if topology.output_layer().activation != Activation::Softmax {
            return Err(Error::FakeQuantUnsupported { what: "an output layer other than softmax" });
        }
        Ok(())
    }

    /// Fake-quantizes network inputs in place.
    pub fn quantize_input(&self, x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = self.input.fake_quantize(*v);
        }
    }

    /// Hidden layer `i`'s forward from its raw pre-activations `z`: `a = fq_out(act(fq_pre(z)))`
    /// with a table, `a = fq_out(act(z))` without.
    pub(crate) fn forward_hidden(&self, i: usize, act: Activation, z: &[f32], a: &mut [f32]) {
        let (pre, out, table) = (self.pre[i], self.out[i], uses_table(act));
        for (a, &z) in a.iter_mut().zip(z) {
            let z = if table { pre.fake_quantize(z) } else { z };
            *a = out.fake_quantize(activation::apply(act, z));
        }
    }

    /// Hidden layer `i`'s backward: turns `d` from ∂L/∂(its fake-quantized output) into ∂L/∂z,
    /// given the raw pre-activations `z` the forward saw: the output's STE mask, the
    /// activation's derivative (at the fake-quantized pre-activation with a table), and the
    /// pre-activation's STE mask with a table.
    pub(crate) fn backward_hidden(&self, i: usize, act: Activation, z: &[f32], d: &mut [f32]) {
        let (pre, out, table) = (self.pre[i], self.out[i], uses_table(act));
        for (d, &z) in d.iter_mut().zip(z) {
            let zq = if table { pre.fake_quantize(z) } else { z };
            let y = activation::apply(act, zq);
            let pass = out.passes_gradient(y) && (!table || pre.passes_gradient(z));
            *d = if pass { *d * activation::derivative(act, zq, y) } else { 0.0 };
        }
    }

    /// The softmax output layer `i`'s logits: saves the raw ones in `raw` and fake-quantizes
    /// `z` in place (the loss then sees what int8 computes).
    pub(crate) fn forward_logits(&self, i: usize, z: &mut [f32], raw: &mut [f32]) {
        for (z, r) in z.iter_mut().zip(raw.iter_mut()) {
            *r = *z;
            *z = self.out[i].fake_quantize(*z);
        }
    }

    /// The logits' STE mask on ∂L/∂logits `d`, from the `raw` logits saved by the forward.
    pub(crate) fn mask_logits(&self, i: usize, raw: &[f32], d: &mut [f32]) {
        for (d, &r) in d.iter_mut().zip(raw) {
            if !self.out[i].passes_gradient(r) {
                *d = 0.0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        layout, LayerSpec, Loss, Optimizer, Portable, Rng, Targets, TrainBuffers, TrainConfig, Trainer,
    };

    #[test]
    fn a_weight_row_is_quantized_then_dequantized_per_channel() {
        // One layer of 2 units on 4 inputs. Row 0: max |w| = 1, so s = 1/127 and
        // q = round(127 w) = [127, round(-38.1) = -38, round(66.04) = 66, round(0.508) = 1].
        // Row 1: max |w| = 0.254, s = 0.002, q = [50, -127, 0, round(-0.4) = 0].
        let t = Topology::new(4, &[LayerSpec::dense(2, Activation::Softmax)]).unwrap();
        let mut p = [1.0, -0.3, 0.52, 0.004, 0.1, -0.254, 0.0, -0.0008, 0.7, -0.7];
        fake_quantize_weights(&t, &mut p).unwrap();
        let (s0, s1) = (1.0f32 / 127.0, 0.254f32 / 127.0);
        let expected = [127.0 * s0, -38.0 * s0, 66.0 * s0, s0, 50.0 * s1, -127.0 * s1, 0.0, 0.0];
        for (k, (&got, &want)) in p[..8].iter().zip(&expected).enumerate() {
            assert!((got - want).abs() <= 1e-7, "weight {k}: {got} vs {want}");
        }
        assert_eq!(&p[8..], &[0.7, -0.7], "biases are not quantized");
        let mut short = [0.0; 9];
        assert!(matches!(fake_quantize_weights(&t, &mut short), Err(Error::BufferLength { .. })));
    }

    #[test]
    fn an_activation_is_quantized_then_dequantized_with_its_scale_and_zero_point() {
        // Range [-1, 3]: scale 4/255, zero point round(-128 + 63.75) = -64.
        let p = QuantParams::from_range(&MinMax { min: -1.0, max: 3.0 }, None).unwrap();
        assert_eq!(p, QuantParams { scale: 4.0 / 255.0, zero_point: -64 });
        let s = 4.0f32 / 255.0;
        // x = 1: round(63.75) = 64, q = 0, back to 64 s. x = 5: q = 255 - 64 clamps to 127,
        // back to (127 + 64) s. x = -2: round(-127.5) - 64 = -192 clamps to -128, back to -64 s.
        for (x, steps) in [(1.0f32, 64.0f32), (5.0, 191.0), (-2.0, -64.0), (0.0, 0.0)] {
            let want = s * steps;
            assert!((p.fake_quantize(x) - want).abs() <= 1e-7, "{x}: {} vs {want}", p.fake_quantize(x));
        }
        // A range without 0 is widened to include it: [2, 4] -> [0, 4], zero point -128.
        let pos = QuantParams::from_range(&MinMax { min: 2.0, max: 4.0 }, Some(3)).unwrap();
        assert_eq!(pos, QuantParams { scale: 4.0 / 255.0, zero_point: -128 });
        assert_eq!(
            QuantParams::from_range(&MinMax::EMPTY, Some(2)),
            Err(Error::InvalidCalibration { layer: Some(2) })
        );
    }

    #[test]
    fn the_ste_mask_passes_inside_the_range_and_stops_outside() {
        // Scale 4/255, zero point -64: q = round(63.75 x) - 64 must lie in [-128, 127].
        let p = QuantParams { scale: 4.0 / 255.0, zero_point: -64 };
        // 3.0 -> 191 - 64 = 127 (in); 3.01 -> round(191.89) = 192 -> 128 (out).
        // -1.0 -> -128 (in); -1.005 -> round(-64.07) = -64 -> -128 (in: it rounds inside,
        // as PyTorch's mask on the rounded value says); -1.02 -> round(-65.03) -> -129 (out).
        for (x, passes) in
            [(0.5, true), (3.0, true), (3.01, false), (-1.0, true), (-1.005, true), (-1.02, false)]
        {
            assert_eq!(p.passes_gradient(x), passes, "{x}");
        }
        assert!(!p.passes_gradient(f32::NAN));
    }

    /// Through a trainer: a hidden unit whose activation lies above its range gets no
    /// gradient (its weights' gradients are 0), one inside does, and the update lands on the
    /// f32 masters, not on the fake-quantized copy.
    #[test]
    fn a_fake_quant_step_masks_clamped_units_and_updates_the_masters() {
        const LAYERS: [LayerSpec; 2] =
            [LayerSpec::dense(2, Activation::Relu), LayerSpec::dense(2, Activation::Softmax)];
        const P: usize = layout::param_len(2, &LAYERS);
        let t = Topology::new(2, &LAYERS).unwrap();
        // Unit 0 computes 2 x0 + x1 (3 on the input [1, 1]), unit 1 computes 0.3 x0 - 0.1 x1.
        let mut params = [2.0, 1.0, 0.3, -0.1, 0.0, 0.0, 1.0, -1.0, 0.5, 0.25, 0.0, 0.0];
        let masters_before = params;
        let (mut grads, mut masters) = ([0.0; P], [0.0; P]);
        let mut ws = [0.0; layout::train_workspace_len(&LAYERS, 1)];
        let lr = 0.5;
        let mut trainer = Trainer::new(
            &t,
            TrainConfig::new(Loss::CrossEntropy, Optimizer::sgd(), 1),
            TrainBuffers {
                params: &mut params,
                grads: &mut grads,
                running: &mut [],
                optimizer_state: &mut [],
                workspace: &mut ws,
            },
        )
        .unwrap();
        let wide = QuantParams { scale: 0.1, zero_point: 0 };
        let mut fq = FakeQuant { input: wide, pre: [wide; MAX_LAYERS], out: [wide; MAX_LAYERS] };
        // Layer 0's output range [0, 1.5]: unit 0's 3.0 is clamped, unit 1's 0.2 is not.
        fq.out[0] = QuantParams::from_range(&MinMax { min: 0.0, max: 1.5 }, Some(0)).unwrap();
        let mut x = [1.0, 1.0];
        trainer
            .step_fake_quant(
                &Portable,
                &mut x,
                Targets::Labels(&[1]),
                lr,
                &mut Rng::new(1),
                &fq,
                &mut masters,
            )
            .unwrap();
        let g = trainer.grads();
        assert_eq!(&g[0..2], &[0.0, 0.0], "the clamped unit's weights get no gradient");
        assert_eq!(g[4], 0.0, "nor its bias");
        assert!(g[2] != 0.0 && g[3] != 0.0 && g[5] != 0.0, "the unit inside its range does: {g:?}");
        // SGD on the masters: p - lr g, exactly, including weights that are not on the
        // int8 grid (0.3 and -0.1 are not multiples of their scale 0.3 / 127).
        for (k, ((&p, &m), &g)) in trainer.params().iter().zip(&masters_before).zip(g).enumerate() {
            assert_eq!(p, m - lr * g, "parameter {k}");
        }
        // Without the clamp (a wide range), unit 0 gets a gradient.
        fq.out[0] = QuantParams::from_range(&MinMax { min: 0.0, max: 4.0 }, Some(0)).unwrap();
        let mut x = [1.0, 1.0];
        trainer
            .step_fake_quant(
                &Portable,
                &mut x,
                Targets::Labels(&[1]),
                lr,
                &mut Rng::new(1),
                &fq,
                &mut masters,
            )
            .unwrap();
        assert!(trainer.grads()[0] != 0.0, "{:?}", trainer.grads());
    }

    #[test]
    fn fake_quant_refuses_batch_norm_and_non_softmax_outputs() {
        let bn = Topology::new(
            2,
            &[
                LayerSpec::dense(3, Activation::Relu).with_batch_norm(),
                LayerSpec::dense(2, Activation::Softmax),
            ],
        )
        .unwrap();
        assert_eq!(FakeQuant::check_topology(&bn), Err(Error::FakeQuantUnsupported { what: "batch norm" }));
        let reg = Topology::new(2, &[LayerSpec::dense(1, Activation::Identity)]).unwrap();
        assert!(matches!(
            FakeQuant::from_ranges(&reg, &Ranges::new()),
            Err(Error::FakeQuantUnsupported { .. })
        ));
    }
}
