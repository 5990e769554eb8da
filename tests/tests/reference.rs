//! Self-checks of the f64 reference, so that it can be trusted to check core: its erf
//! against libm's f64 erf and known values, its layout against the documented one (and
//! core's ranges), its analytic gradients against its own central finite differences.

use mlp::{Activation, LayerSpec, Loss, Rng, Topology};
use mlp_tests::cases::{config, net_case, Features, NetCase};
use mlp_tests::reference::{activate, activation_backward, loss_and_dz, one_hot, softmax, RefNet, TrainPass};
use mlp_tests::special::{erf, sigmoid};
use mlp_tests::util::{compare, f64s, max_abs};
use proptest::prelude::*;

#[test]
fn erf_matches_known_values_and_libm() {
    // erf at a few points, to 16 digits (A&S tables / any CAS); 1e-15 is a few ulp.
    let known = [
        (0.0, 0.0),
        (0.1, 0.112_462_916_018_284_9),
        (0.5, 0.520_499_877_813_046_5),
        (1.0, 0.842_700_792_949_714_9),
        (2.0, 0.995_322_265_018_952_7),
        (3.0, 0.999_977_909_503_001_4),
        (3.5, 0.999_999_256_901_627_7),
    ];
    for (x, e) in known {
        assert!((erf(x) - e).abs() <= 1e-15, "erf({x}) = {} != {e}", erf(x));
        assert!((erf(-x) + e).abs() <= 1e-15);
    }
    // Everywhere in [-7, 7] to 1.5e-15 relative (a few ulp: the series sums rounded terms).
    let mut x = -7.0;
    while x <= 7.0 {
        let (mine, theirs) = (erf(x), libm::erf(x));
        assert!((mine - theirs).abs() <= 1.5e-15 * theirs.abs(), "erf({x}): {mine} vs libm {theirs}");
        x += 0.003_7;
    }
}

fn numeric_derivative(f: impl Fn(f64) -> f64, x: f64, h: f64) -> f64 {
    (f(x + h) - f(x - h)) / (2.0 * h)
}

#[test]
fn activation_derivatives_match_finite_differences() {
    let acts = [
        Activation::Identity,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Relu,
        Activation::LeakyRelu(0.1),
        Activation::Elu(1.3),
        Activation::Gelu,
    ];
    for act in acts {
        for k in -40..=40 {
            // Avoid the kink at 0 itself; h is far smaller than the distance to it.
            let z = k as f64 * 0.15 + 0.013;
            let f = |v: f64| activate(act, 1, &[v])[0];
            let numeric = numeric_derivative(f, z, 1e-6);
            let analytic = activation_backward(act, 1, &[z], &[f(z)], &[1.0])[0];
            assert!(
                (numeric - analytic).abs() <= 1e-7 * (1.0 + analytic.abs()),
                "{act:?} at {z}: {analytic} vs {numeric}"
            );
        }
    }
    // The conventions at exactly 0: f'(0) is the left derivative.
    let at0 = |act| activation_backward(act, 1, &[0.0], &[0.0], &[1.0])[0];
    assert_eq!(at0(Activation::Relu), 0.0);
    assert_eq!(at0(Activation::LeakyRelu(0.25)), 0.25);
    assert_eq!(at0(Activation::Elu(0.5)), 0.5);
    assert!((at0(Activation::Gelu) - 0.5).abs() < 1e-15);
    // GELU(1) = Φ(1) = 0.841344746068543.
    assert!((activate(Activation::Gelu, 1, &[1.0])[0] - 0.841_344_746_068_542_9).abs() < 1e-15);
}

#[test]
fn losses_match_their_textbook_forms() {
    let z = [0.3, -1.2, 2.0, 0.7, 0.0, -0.4];
    // Cross-entropy with labels is -ln softmax(z)[label], averaged over rows.
    let labels = [2u32, 0];
    let (ce, _) = loss_and_dz(Loss::CrossEntropy, Activation::Identity, 3, &z, &z, &one_hot(&labels, 3));
    let direct = -(softmax(&z[..3])[2].ln() + softmax(&z[3..])[0].ln()) / 2.0;
    assert!((ce - direct).abs() < 1e-15, "{ce} vs {direct}");
    // BCE is -t ln σ(z) - (1-t) ln(1-σ(z)), averaged over all outputs.
    let t = [1.0, 0.0, 0.25, 0.5, 1.0, 0.0];
    let (bce, _) = loss_and_dz(Loss::BinaryCrossEntropy, Activation::Sigmoid, 3, &z, &z, &t);
    let direct: f64 = z
        .iter()
        .zip(&t)
        .map(|(&z, &t)| -t * sigmoid(z).ln() - (1.0 - t) * (1.0 - sigmoid(z)).ln())
        .sum::<f64>()
        / 6.0;
    assert!((bce - direct).abs() < 1e-15, "{bce} vs {direct}");
    // MSE: mean over all B·n outputs, here after a sigmoid.
    let a = activate(Activation::Sigmoid, 3, &z);
    let (mse, _) = loss_and_dz(Loss::Mse, Activation::Sigmoid, 3, &z, &a, &t);
    let direct = a.iter().zip(&t).map(|(a, t)| (a - t) * (a - t)).sum::<f64>() / 6.0;
    assert!((mse - direct).abs() < 1e-15);
}

/// Fourth-order central differences `(-f(x+2h) + 8f(x+h) - 8f(x-h) + f(x-2h)) / 12h` at
/// `h = 1e-5` and `h = 1e-6`, or `None` when a perturbation moves a kinked pre-activation
/// across 0 (`f` returns the value and the kink pattern).
///
/// Two steps because no single one is accurate everywhere: truncation is `O(h⁴ f⁽⁵⁾)`, and
/// batch norm over 2 samples whose variance is below `ε` curves the loss on a scale of
/// ~1e-4, where `h = 1e-5` is off by 3e-4 relative; rounding is ~1e-16·|L|/h, 1e-10 at
/// `h = 1e-6`. Callers compare the analytic gradient with the closer of the two estimates:
/// a wrong gradient is far from both.
fn derivative_4pt(f: &mut impl FnMut(f64) -> (f64, Vec<bool>), x: f64, base: &[bool]) -> Option<[f64; 2]> {
    let mut out = [0.0; 2];
    for (slot, h) in out.iter_mut().zip([1e-5, 1e-6]) {
        let mut v = [0.0; 4];
        for (k, s) in [2.0, 1.0, -1.0, -2.0].into_iter().enumerate() {
            let (value, kinks) = f(x + s * h);
            if kinks != base {
                return None;
            }
            v[k] = value;
        }
        *slot = (-v[0] + 8.0 * v[1] - 8.0 * v[2] + v[3]) / (12.0 * h);
    }
    Some(out)
}

/// The estimate of `estimates` closest to `analytic`.
fn closest(estimates: [f64; 2], analytic: f64) -> f64 {
    if (estimates[0] - analytic).abs() <= (estimates[1] - analytic).abs() {
        estimates[0]
    } else {
        estimates[1]
    }
}

/// Finite differences of the reference's own loss against its analytic gradient, for
/// every parameter whose perturbation keeps every kinked pre-activation on its side.
/// Returns how many parameters were compared.
fn check_reference_gradients(case: &NetCase) -> Result<usize, TestCaseError> {
    let data = case.data();
    let net = RefNet::from_topology(&data.topology);
    let params = f64s(&data.params);
    let input = f64s(&data.input);
    let targets = data.targets.dense_f64(net.output());
    // Masks as core would draw them: 0 or 1/(1-p), keep probability 1-p.
    let mut rng = Rng::new(case.dropout_seed);
    let masks: Vec<Vec<f64>> = net
        .layers
        .iter()
        .map(|l| {
            if l.dropout > 0.0 {
                (0..case.batch * l.outputs)
                    .map(|_| if (rng.uniform() as f64) < l.dropout { 0.0 } else { 1.0 / (1.0 - l.dropout) })
                    .collect()
            } else {
                Vec::new()
            }
        })
        .collect();
    let pass = net.forward_train(&params, &input, case.batch, &masks);
    let (_, grads) = net.backward(case.loss, &params, &pass, &targets);
    let base = net.kink_pattern(&pass);
    let mut p = params.clone();
    let (mut numeric, mut analytic) = (Vec::new(), Vec::new());
    for i in 0..params.len() {
        let mut at = |v: f64| {
            p[i] = v;
            let pass: TrainPass = net.forward_train(&p, &input, case.batch, &masks);
            let kinks = net.kink_pattern(&pass);
            (net.loss_and_dz(case.loss, &pass, &targets).0, kinks)
        };
        if let Some(d) = derivative_4pt(&mut at, params[i], &base) {
            numeric.push(closest(d, grads[i]));
            analytic.push(grads[i]);
        }
        p[i] = params[i];
    }
    let scale = max_abs(&analytic).max(1e-3);
    // 1e-6 relative, plus 1e-6 of the largest gradient for entries that are ~0 (the bias
    // before batch norm has an exactly-zero gradient, which differences give as ~1e-10).
    if let Err(m) = compare(&numeric, &analytic, 1e-6, 1e-6 * scale) {
        return Err(TestCaseError::fail(format!("reference gradient vs its finite difference: {m:?}")));
    }
    Ok(analytic.len())
}

proptest! {
    #![proptest_config(config(200))]

    #[test]
    fn reference_gradients_match_its_finite_differences(case in net_case(4, 8, Features::ALL)) {
        let checked = check_reference_gradients(&case)?;
        let total = case.topology().param_len();
        // In f64 with h <= 2e-5 crossing a kink is rare, but one pre-activation within ~1e-5
        // of 0 behind batch norm couples to every parameter before it: require most, not all.
        prop_assert!(checked * 2 >= total, "only {checked} of {total} compared");
    }

    #[test]
    fn reference_layout_is_the_documented_one_and_matches_core(
        case in net_case(8, 12, Features::ALL)
    ) {
        let t = case.topology();
        let net = RefNet::from_topology(&t);
        prop_assert_eq!(net.param_len(), t.param_len());
        prop_assert_eq!(net.running_len(), t.running_len());
        for i in 0..t.layers().len() {
            let (mine, core) = (net.offsets(i), t.param_ranges(i).unwrap());
            prop_assert_eq!(mine.weights, core.weights.start);
            prop_assert_eq!(mine.bias, core.weights.end);
            prop_assert_eq!(mine.bias, core.bias.start);
            prop_assert_eq!(
                mine.batch_norm,
                core.batch_norm.as_ref().map(|(g, b)| (g.start, b.start))
            );
            prop_assert_eq!(mine.end, core.end());
            prop_assert_eq!(mine.running, t.running_ranges(i).map(|(m, v)| (m.start, v.start)));
        }
    }

    #[test]
    fn reference_output_grad_backward_matches_finite_differences(
        case in net_case(3, 6, Features::ALL),
        seed in any::<u64>(),
    ) {
        // L = Σ d ⊙ outputs for a random d: its gradient is backward_from_output_grad(d).
        let data = case.data();
        let net = RefNet::from_topology(&data.topology);
        let params = f64s(&data.params);
        let input = f64s(&data.input);
        let masks: Vec<Vec<f64>> = net
            .layers
            .iter()
            .map(|l| if l.dropout > 0.0 { vec![1.0 / (1.0 - l.dropout); case.batch * l.outputs] } else { Vec::new() })
            .collect();
        let mut rng = Rng::new(seed);
        let d: Vec<f64> = (0..case.batch * net.output()).map(|_| rng.normal() as f64).collect();
        let pass = net.forward_train(&params, &input, case.batch, &masks);
        let grads = net.backward_from_output_grad(&params, &pass, &d);
        let base = net.kink_pattern(&pass);
        let (mut numeric, mut analytic) = (Vec::new(), Vec::new());
        let mut p = params.clone();
        for i in 0..params.len() {
            let mut at = |v: f64| {
                p[i] = v;
                let pass = net.forward_train(&p, &input, case.batch, &masks);
                let l: f64 = pass.output().iter().zip(&d).map(|(o, d)| o * d).sum();
                (l, net.kink_pattern(&pass))
            };
            if let Some(g) = derivative_4pt(&mut at, params[i], &base) {
                numeric.push(closest(g, grads[i]));
                analytic.push(grads[i]);
            }
            p[i] = params[i];
        }
        let scale = max_abs(&analytic).max(1e-3);
        if let Err(m) = compare(&numeric, &analytic, 1e-6, 1e-6 * scale) {
            return Err(TestCaseError::fail(format!("{m:?}")));
        }
    }
}

#[test]
fn reference_eval_equals_train_when_running_stats_are_the_batch_stats() {
    // With the running mean/var set to the batch mean and *biased* variance and no dropout,
    // eval mode must reproduce train mode: this ties the two forward paths together.
    let t = Topology::new(
        3,
        &[
            LayerSpec::dense(5, Activation::Gelu).with_batch_norm(),
            LayerSpec::dense(4, Activation::Tanh).with_batch_norm(),
            LayerSpec::dense(2, Activation::Softmax),
        ],
    )
    .unwrap();
    let net = RefNet::from_topology(&t);
    let mut rng = Rng::new(11);
    let params = f64s(&mlp_tests::util::random_params(&t, &mut rng));
    let input: Vec<f64> = (0..6 * 3).map(|_| rng.normal() as f64).collect();
    let pass = net.forward_train(&params, &input, 6, &[vec![], vec![], vec![]]);
    let mut running = vec![0.0; net.running_len()];
    for i in 0..2 {
        let (m, v) = net.offsets(i).running.unwrap();
        let n = net.layers[i].outputs;
        running[m..m + n].copy_from_slice(&pass.layers[i].mean);
        running[v..v + n].copy_from_slice(&pass.layers[i].var);
    }
    let eval = net.forward_eval(&params, &running, &input, 6);
    compare(&eval, pass.output(), 1e-12, 1e-14).unwrap();
}
