//! What kernels.cu takes for core's activations, losses and optimizers: the codes (core's
//! numbering: [`mlp::format::activation_code`], [`Loss::code`], [`Optimizer::code`]), the
//! optimizer's constant hyperparameters, and the per-step values (core's
//! [`Optimizer::step_scalars`]).

use mlp::{Activation, Loss, Optimizer};

use super::HP_STRIDE;

/// The activation's code in kernels.cu: the model file's numbering.
pub(super) fn act_code(a: Activation) -> (i32, f32) {
    let (code, alpha) = mlp::format::activation_code(a);
    (i32::from(code), alpha)
}

pub(super) fn loss_code(l: Loss) -> i32 {
    i32::from(l.code())
}

/// The last optimizer code kernels.cu implements (Adamax); Rprop, ASGD and L-BFGS come after.
pub(crate) const LAST_DEVICE_OPTIMIZER: i32 = 8;

/// kernels.cu's optimizer code and its constant hyperparameters (h0, h1, eps, weight decay),
/// as the optimizer_update kernel takes them.
pub(crate) fn optimizer_code(o: Optimizer) -> (i32, [f32; 4]) {
    let h = match o {
        Optimizer::Sgd { weight_decay } => [0.0, 0.0, 0.0, weight_decay],
        Optimizer::Momentum { momentum, weight_decay } | Optimizer::Nesterov { momentum, weight_decay } => {
            [momentum, 0.0, 0.0, weight_decay]
        }
        Optimizer::Adagrad { eps, weight_decay } => [0.0, 0.0, eps, weight_decay],
        Optimizer::RmsProp { alpha, eps, weight_decay } => [alpha, 0.0, eps, weight_decay],
        Optimizer::Adadelta { rho, eps, weight_decay } => [rho, 0.0, eps, weight_decay],
        Optimizer::Adam { beta1, beta2, eps, weight_decay }
        | Optimizer::AdamW { beta1, beta2, eps, weight_decay }
        | Optimizer::Adamax { beta1, beta2, eps, weight_decay } => [beta1, beta2, eps, weight_decay],
        // Not in kernels.cu (codes past LAST_DEVICE_OPTIMIZER): GpuTrainer::new refuses them.
        Optimizer::Rprop { .. } | Optimizer::Asgd { .. } | Optimizer::Lbfgs(_) => [0.0; 4],
    };
    (i32::from(o.code()), h)
}

/// The per-step hyperparameters of update `t` (1-based) at learning rate `lr`: core's step
/// scalars (lr, lr / (1 - β₁ᵗ), √(1 - β₂ᵗ)) in kernels.cu's HP_STRIDE layout.
pub(crate) fn hyper(optimizer: Optimizer, t: u64, lr: f32) -> [f32; HP_STRIDE] {
    let s = optimizer.step_scalars(t, lr);
    [s.lr, s.step_size, s.bc2_sqrt, 0.0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_per_step_values_are_cores() {
        for t in [1, 2, 1000] {
            let s = Optimizer::adam().step_scalars(t, 0.1);
            assert_eq!(hyper(Optimizer::adam(), t, 0.1), [s.lr, s.step_size, s.bc2_sqrt, 0.0]);
        }
        // Against the closed forms: lr / (1 - β₁) and √(1 - β₂) at t = 1.
        let h = hyper(Optimizer::adam(), 1, 0.1);
        assert!((h[1] as f64 - 0.1 / (1.0 - 0.9f32 as f64)).abs() < 1e-6);
        assert!((h[2] as f64 - (1.0 - 0.999f32 as f64).sqrt()).abs() < 1e-7);
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
