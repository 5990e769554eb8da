//! Weight initializers. Biases start at zero, batch-norm `γ` at one and `β` at zero, as in
//! PyTorch; only the weights are drawn. Same seed, same model, on every platform.

use crate::error::{check_len, Buffer, Error};
use crate::math;
use crate::rng::Rng;
use crate::topology::Topology;

/// How weights are drawn, by each layer's fan-in and fan-out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// He / Kaiming normal: `N(0, 2 / fan_in)`, for ReLU-family layers.
    HeNormal,
    /// He / Kaiming uniform: `U(-√(6 / fan_in), √(6 / fan_in))`.
    HeUniform,
    /// Xavier / Glorot normal: `N(0, 2 / (fan_in + fan_out))`, for sigmoid and tanh layers.
    XavierNormal,
    /// Xavier / Glorot uniform: `U(-√(6 / (fan_in + fan_out)), +…)`.
    XavierUniform,
    /// `U(low, high)` for every weight.
    Uniform {
        /// Lower bound (inclusive).
        low: f32,
        /// Upper bound (exclusive).
        high: f32,
    },
    /// All weights zero (symmetric: hidden units stay identical; for tests and linear models).
    Zeros,
}

impl Init {
    /// The customary choice for an activation: He for ReLU-like, Xavier for sigmoid/tanh/softmax.
    /// Maxout takes He on the fan-in, as ReLU does (a maxout unit with one piece fixed at 0
    /// is a ReLU; Goodfellow et al. tuned uniform ranges by hand instead of a rule).
    pub fn for_activation(act: crate::Activation) -> Self {
        use crate::Activation::*;
        match act {
            Relu | LeakyRelu(_) | Elu(_) | Gelu | Maxout(_) => Init::HeNormal,
            Identity | Sigmoid | Tanh | Softmax => Init::XavierNormal,
        }
    }
}

/// Fills `params` for `topology`: weights by `init`, biases and `β` zero, `γ` one.
///
/// Errors: `params` of the wrong length; `Uniform` bounds that are not finite or reversed.
pub fn initialize(topology: &Topology, params: &mut [f32], init: Init, rng: &mut Rng) -> Result<(), Error> {
    check_len(Buffer::Params, topology.param_len(), params.len())?;
    if let Init::Uniform { low, high } = init {
        if !(low.is_finite() && high.is_finite()) {
            return Err(Error::NonFinite { what: "a uniform initializer bound" });
        }
        if low > high {
            return Err(Error::InvalidHyperparameter { name: "uniform low (must be <= high)", value: low });
        }
    }
    for (i, layer) in topology.layers().iter().enumerate() {
        let Some(r) = topology.param_ranges(i) else {
            break;
        };
        let fan_in = topology.fan_in(i) as f32;
        // Maxout's k pieces per unit are k rows, as in PyTorch's Linear(fan_in, k·n).
        let fan_out = layer.rows() as f32;
        let w = &mut params[r.weights.clone()];
        match init {
            Init::HeNormal => fill_normal(w, math::sqrt(2.0 / fan_in), rng),
            Init::XavierNormal => fill_normal(w, math::sqrt(2.0 / (fan_in + fan_out)), rng),
            Init::HeUniform => fill_uniform(w, math::sqrt(6.0 / fan_in), rng),
            Init::XavierUniform => fill_uniform(w, math::sqrt(6.0 / (fan_in + fan_out)), rng),
            Init::Uniform { low, high } => w.iter_mut().for_each(|v| *v = rng.uniform_in(low, high)),
            Init::Zeros => w.fill(0.0),
        }
        params[r.bias.clone()].fill(0.0);
        if let Some((gamma, beta)) = r.batch_norm {
            params[gamma].fill(1.0);
            params[beta].fill(0.0);
        }
    }
    Ok(())
}

fn fill_normal(w: &mut [f32], std: f32, rng: &mut Rng) {
    w.iter_mut().for_each(|v| *v = std * rng.normal());
}

fn fill_uniform(w: &mut [f32], bound: f32, rng: &mut Rng) {
    w.iter_mut().for_each(|v| *v = rng.uniform_in(-bound, bound));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Activation, LayerSpec};

    #[test]
    fn he_normal_has_the_right_spread_and_is_reproducible() {
        let t = Topology::new(
            400,
            &[
                LayerSpec::dense(200, Activation::Relu).with_batch_norm(),
                LayerSpec::dense(3, Activation::Softmax),
            ],
        )
        .unwrap();
        let mut p = [0.0f32; 400 * 200 + 600 + 600 + 3];
        initialize(&t, &mut p, Init::HeNormal, &mut Rng::new(5)).unwrap();
        let w = &p[..80_000];
        let var: f32 = w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32;
        assert!((var / (2.0 / 400.0) - 1.0).abs() < 0.03, "variance {var}");
        let r = t.param_ranges(0).unwrap();
        assert!(p[r.bias].iter().all(|&b| b == 0.0));
        let (g, b) = r.batch_norm.unwrap();
        assert!(p[g].iter().all(|&v| v == 1.0) && p[b].iter().all(|&v| v == 0.0));
        let mut q = [0.0f32; 400 * 200 + 600 + 600 + 3];
        initialize(&t, &mut q, Init::HeNormal, &mut Rng::new(5)).unwrap();
        assert_eq!(p, q);
    }

    #[test]
    fn uniform_bounds_are_respected_and_validated() {
        let t = Topology::new(10, &[LayerSpec::dense(10, Activation::Tanh)]).unwrap();
        let mut p = [0.0f32; 110];
        initialize(&t, &mut p, Init::XavierUniform, &mut Rng::new(1)).unwrap();
        let bound = libm::sqrtf(6.0 / 20.0);
        assert!(p[..100].iter().all(|v| v.abs() <= bound));
        assert!(p[..100].iter().any(|v| v.abs() > bound * 0.9));
        let bad = Init::Uniform { low: 1.0, high: 0.0 };
        assert!(initialize(&t, &mut p, bad, &mut Rng::new(1)).is_err());
        assert!(matches!(
            initialize(&t, &mut p[..5], Init::Zeros, &mut Rng::new(1)),
            Err(Error::BufferLength { buffer: Buffer::Params, expected: 110, actual: 5 })
        ));
    }
}
