//! The codes and per-step values kernels.cu takes for core's activations, losses and
//! optimizers.

use mlp::{Activation, Loss, Optimizer};

use super::HP_STRIDE;

/// The activation's code in kernels.cu: the model file's numbering.
pub(super) fn act_code(a: Activation) -> (i32, f32) {
    let (code, alpha) = mlp::format::activation_code(a);
    (i32::from(code), alpha)
}

pub(super) fn loss_code(l: Loss) -> i32 {
    match l {
        Loss::Mse => 0,
        Loss::CrossEntropy => 1,
        Loss::BinaryCrossEntropy => 2,
    }
}

/// kernels.cu's optimizer code and (h0, h1, eps, weight decay).
pub(super) fn optimizer_code(o: Optimizer) -> (i32, [f32; 4]) {
    match o {
        Optimizer::Sgd { weight_decay } => (0, [0.0, 0.0, 0.0, weight_decay]),
        Optimizer::Momentum { momentum, weight_decay } => (1, [momentum, 0.0, 0.0, weight_decay]),
        Optimizer::Nesterov { momentum, weight_decay } => (2, [momentum, 0.0, 0.0, weight_decay]),
        Optimizer::Adagrad { eps, weight_decay } => (3, [0.0, 0.0, eps, weight_decay]),
        Optimizer::RmsProp { alpha, eps, weight_decay } => (4, [alpha, 0.0, eps, weight_decay]),
        Optimizer::Adadelta { rho, eps, weight_decay } => (5, [rho, 0.0, eps, weight_decay]),
        Optimizer::Adam { beta1, beta2, eps, weight_decay } => (6, [beta1, beta2, eps, weight_decay]),
        Optimizer::AdamW { beta1, beta2, eps, weight_decay } => (7, [beta1, beta2, eps, weight_decay]),
        Optimizer::Adamax { beta1, beta2, eps, weight_decay } => (8, [beta1, beta2, eps, weight_decay]),
    }
}

/// `1 - β^t` in f64, exactly as core's optimizer computes it.
pub(super) fn bias_correction(beta: f32, t: u64) -> f64 {
    1.0 - libm::pow(beta as f64, t.min(1 << 30) as f64)
}

/// The per-step hyperparameters of update `t` (1-based) at learning rate `lr`.
pub(super) fn hyper(optimizer: Optimizer, t: u64, lr: f32) -> [f32; HP_STRIDE] {
    match optimizer {
        Optimizer::Adam { beta1, beta2, .. } | Optimizer::AdamW { beta1, beta2, .. } => [
            lr,
            (lr as f64 / bias_correction(beta1, t)) as f32,
            libm::sqrt(bias_correction(beta2, t)) as f32,
            0.0,
        ],
        Optimizer::Adamax { beta1, .. } => [lr, (lr as f64 / bias_correction(beta1, t)) as f32, 1.0, 0.0],
        _ => [lr, 0.0, 1.0, 0.0],
    }
}

/// The accuracy threshold of a single-output model, as core's step uses it.
pub(super) fn threshold(loss: Loss, act: Activation) -> f32 {
    match (loss, act) {
        (Loss::BinaryCrossEntropy, Activation::Identity) => 0.0,
        _ => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bias_corrections_match_core_adam() {
        // Core's Adam after one step from zero state moves each weight by lr · g/(|g| + eps·…);
        // here: the per-step values themselves, against the closed forms.
        let h = hyper(Optimizer::adam(), 1, 0.1);
        assert!((h[1] as f64 - 0.1 / (1.0 - 0.9f32 as f64)).abs() < 1e-6);
        assert!((h[2] as f64 - (1.0 - 0.999f32 as f64).sqrt()).abs() < 1e-7);
        assert_eq!(hyper(Optimizer::sgd(), 5, 0.3), [0.3, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn codes_follow_kernels_cu() {
        let src = crate::device::KERNEL_SOURCE;
        for (name, code) in [
            ("ACT_IDENTITY", act_code(Activation::Identity).0),
            ("ACT_SIGMOID", act_code(Activation::Sigmoid).0),
            ("ACT_TANH", act_code(Activation::Tanh).0),
            ("ACT_RELU", act_code(Activation::Relu).0),
            ("ACT_LEAKY_RELU", act_code(Activation::LeakyRelu(0.1)).0),
            ("ACT_ELU", act_code(Activation::Elu(1.0)).0),
            ("ACT_GELU", act_code(Activation::Gelu).0),
            ("ACT_SOFTMAX", act_code(Activation::Softmax).0),
            ("LOSS_MSE", loss_code(Loss::Mse)),
            ("LOSS_CE", loss_code(Loss::CrossEntropy)),
            ("LOSS_BCE", loss_code(Loss::BinaryCrossEntropy)),
            ("OPT_SGD", optimizer_code(Optimizer::sgd()).0),
            ("OPT_MOMENTUM", optimizer_code(Optimizer::momentum(0.9)).0),
            ("OPT_NESTEROV", optimizer_code(Optimizer::nesterov(0.9)).0),
            ("OPT_ADAGRAD", optimizer_code(Optimizer::adagrad()).0),
            ("OPT_RMSPROP", optimizer_code(Optimizer::rmsprop()).0),
            ("OPT_ADADELTA", optimizer_code(Optimizer::adadelta()).0),
            ("OPT_ADAM", optimizer_code(Optimizer::adam()).0),
            ("OPT_ADAMW", optimizer_code(Optimizer::adamw()).0),
            ("OPT_ADAMAX", optimizer_code(Optimizer::adamax()).0),
            ("HP_STRIDE", HP_STRIDE as i32),
        ] {
            assert!(
                src.contains(&format!("#define {name} {code}\n")),
                "kernels.cu lacks #define {name} {code}"
            );
        }
    }
}
