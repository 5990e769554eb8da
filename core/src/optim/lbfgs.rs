//! L-BFGS (Liu & Nocedal, 1989) as `torch.optim.LBFGS`, with its optional strong-Wolfe line
//! search (`_strong_wolfe`, `_cubic_interpolate`): full batch, so one step evaluates the loss
//! and gradient of the whole training set several times through an [`Objective`] the caller
//! implements.
//!
//! No heap: the curvature history (`s`, `y`, `ρ`, `α`), the direction and the line search's
//! gradients live in the caller's state buffer, [`state_len`] long and zero at the start
//! (its header holds PyTorch's `n_iter`, `t`, `prev_loss`, `H_diag` and the history ring's
//! place), so a checkpoint of that buffer resumes exactly. Dot products and the line search's
//! scalars are in f64; `t`, the previous loss and `H_diag` are kept between steps as f32.

use crate::error::{check_len, Buffer, Error};

/// The state's header: n_iter, t, prev_loss, H_diag, stored pairs, oldest pair's slot.
const HEADER: usize = 8;
/// Full-length vectors besides the history: d, prev_flat_grad, flat_grad, x_init, g_new,
/// g_prev, and the line search's two bracket gradients.
const VECTORS: usize = 8;
/// PyTorch's `ys > 1e-10`: a pair is kept only with this much positive curvature.
const MIN_CURVATURE: f64 = 1e-10;
/// `_strong_wolfe`'s sufficient decrease and curvature constants and its evaluation limit.
pub const WOLFE_C1: f64 = 1e-4;
/// See [`WOLFE_C1`].
pub const WOLFE_C2: f64 = 0.9;
/// See [`WOLFE_C1`].
pub const MAX_LINE_SEARCH: u32 = 25;

/// Length of L-BFGS's state buffer for `param_len` parameters and `history` pairs:
/// `8 + 8·param_len + history·(2·param_len + 2)` (saturating).
pub const fn state_len(param_len: usize, history: usize) -> usize {
    let per_pair = param_len.saturating_mul(2).saturating_add(2);
    HEADER.saturating_add(param_len.saturating_mul(VECTORS)).saturating_add(history.saturating_mul(per_pair))
}

/// The loss to minimize: its value at `params` and its gradient, written to `grads` (both
/// `param_len` long). The host runs forward and backward over the whole training set.
pub trait Objective {
    /// The loss at `params`; the gradient goes to `grads`.
    fn evaluate(&mut self, params: &[f32], grads: &mut [f32]) -> Result<f32, Error>;
}

impl<F: FnMut(&[f32], &mut [f32]) -> Result<f32, Error>> Objective for F {
    fn evaluate(&mut self, params: &[f32], grads: &mut [f32]) -> Result<f32, Error> {
        self(params, grads)
    }
}

/// L-BFGS's options, PyTorch's names (`lr` is given per step).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lbfgs {
    /// Iterations per step.
    pub max_iter: u32,
    /// Loss evaluations per step (PyTorch: `max_iter · 5 / 4`).
    pub max_eval: u32,
    /// Curvature pairs kept.
    pub history: u32,
    /// Stop when the largest gradient component is at most this.
    pub tolerance_grad: f32,
    /// Stop when the loss or the step changes by less than this.
    pub tolerance_change: f32,
    /// `line_search_fn="strong_wolfe"` (else the fixed step `lr`).
    pub strong_wolfe: bool,
}

/// What one [`Lbfgs::step`] did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LbfgsStep {
    /// The loss at the start of the step (what PyTorch's `step` returns).
    pub loss: f32,
    /// The last loss evaluated (at the final point with the line search; without it, at the
    /// point before the last move).
    pub last_loss: f32,
    /// Loss evaluations.
    pub evaluations: u32,
    /// Iterations (direction updates).
    pub iterations: u32,
}

impl Lbfgs {
    /// PyTorch's defaults: max_iter 20, max_eval 25, history 100, tolerance_grad 1e-7,
    /// tolerance_change 1e-9, no line search.
    pub const fn pytorch() -> Self {
        Lbfgs::new(20, 100, false)
    }

    /// `max_iter` iterations (`max_eval` PyTorch's `max_iter · 5 / 4`), `history` pairs,
    /// PyTorch's tolerances.
    pub const fn new(max_iter: u32, history: u32, strong_wolfe: bool) -> Self {
        Lbfgs {
            max_iter,
            max_eval: max_iter.saturating_mul(5) / 4,
            history,
            tolerance_grad: 1e-7,
            tolerance_change: 1e-9,
            strong_wolfe,
        }
    }

    /// Checks the ranges: `max_iter`, `max_eval`, `history` at least 1, tolerances finite
    /// and not negative.
    pub fn validate(&self) -> Result<(), Error> {
        for (name, v) in [
            ("lbfgs max_iter", self.max_iter),
            ("lbfgs max_eval", self.max_eval),
            ("lbfgs history", self.history),
        ] {
            if v == 0 {
                return Err(Error::InvalidHyperparameter { name, value: 0.0 });
            }
        }
        for (name, v) in
            [("lbfgs tolerance_grad", self.tolerance_grad), ("lbfgs tolerance_change", self.tolerance_change)]
        {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::InvalidHyperparameter { name, value: v });
            }
        }
        Ok(())
    }

    /// One `torch.optim.LBFGS.step(closure)`: evaluates `objective` at `params`, then up to
    /// `max_iter` iterations (two-loop direction from the history, a step of `lr`, or
    /// `min(1, 1/‖g‖₁)·lr` on the very first iteration, or the strong-Wolfe line search from
    /// there), with PyTorch's stopping tests. `state`: [`state_len`]`(params.len(), history)`,
    /// zero at the start of training.
    ///
    /// Errors: buffer lengths, invalid options, `lr` not positive and finite, a non-finite
    /// loss or gradient, and whatever `objective` returns.
    pub fn step<O: Objective + ?Sized>(
        &self,
        params: &mut [f32],
        state: &mut [f32],
        lr: f32,
        objective: &mut O,
    ) -> Result<LbfgsStep, Error> {
        let n = params.len();
        let h = self.history as usize;
        check_len(Buffer::OptimizerState, state_len(n, h), state.len())?;
        self.validate()?;
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::InvalidHyperparameter { name: "learning rate", value: lr });
        }
        let (hdr, rest) = state.split_at_mut(HEADER);
        let (vectors, rest) = rest.split_at_mut(VECTORS * n);
        let (ro, rest) = rest.split_at_mut(h);
        let (al, rest) = rest.split_at_mut(h);
        let (old_y, old_s) = rest.split_at_mut(h * n);
        let mut v = vectors.chunks_exact_mut(n.max(1));
        let mut next = || v.next().map(|c| &mut c[..n]).unwrap_or_default();
        let (d, prev_grad, flat) = (next(), next(), next());
        let mut ls =
            LineSearchBuffers { x_init: next(), g_new: next(), g_prev: next(), b0: next(), b1: next() };
        let (tol_grad, tol_change) = (self.tolerance_grad as f64, self.tolerance_change as f64);

        let orig_loss = evaluate(objective, params, flat)?;
        let mut loss = orig_loss as f64;
        let mut out = LbfgsStep { loss: orig_loss, last_loss: orig_loss, evaluations: 1, iterations: 0 };
        if max_abs(flat) <= tol_grad {
            return Ok(out);
        }
        let (mut t, mut prev_loss, mut h_diag) = (hdr[1] as f64, hdr[2] as f64, hdr[3] as f64);
        let (mut count, mut head) = (hdr[4] as usize, hdr[5] as usize);
        while out.iterations < self.max_iter {
            out.iterations += 1;
            hdr[0] += 1.0;
            if hdr[0] == 1.0 {
                for (d, &g) in d.iter_mut().zip(flat.iter()) {
                    *d = -g;
                }
                (count, head, h_diag) = (0, 0, 1.0);
            } else {
                // y = g - g_prev and s = d·t, kept when their curvature y·s is positive.
                let ys: f64 =
                    (0..n).map(|i| (flat[i] - prev_grad[i]) as f64 * (d[i] * t as f32) as f64).sum();
                if ys > MIN_CURVATURE {
                    let slot = if count == h {
                        head = (head + 1) % h;
                        (head + h - 1) % h
                    } else {
                        count += 1;
                        (head + count - 1) % h
                    };
                    let (y, s) = (&mut old_y[slot * n..][..n], &mut old_s[slot * n..][..n]);
                    for i in 0..n {
                        y[i] = flat[i] - prev_grad[i];
                        s[i] = d[i] * t as f32;
                    }
                    ro[slot] = (1.0 / ys) as f32;
                    h_diag = ys / dot(y, y);
                }
                // The two-loop recursion: d = -H g.
                for (d, &g) in d.iter_mut().zip(flat.iter()) {
                    *d = -g;
                }
                for k in (0..count).rev() {
                    let slot = (head + k) % h;
                    let a = dot(&old_s[slot * n..][..n], d) * ro[slot] as f64;
                    al[slot] = a as f32;
                    axpy(d, -a as f32, &old_y[slot * n..][..n]);
                }
                d.iter_mut().for_each(|x| *x = (*x as f64 * h_diag) as f32);
                for k in 0..count {
                    let slot = (head + k) % h;
                    let be = dot(&old_y[slot * n..][..n], d) * ro[slot] as f64;
                    axpy(d, al[slot] - be as f32, &old_s[slot * n..][..n]);
                }
            }
            prev_grad.copy_from_slice(flat);
            prev_loss = loss;
            t = if hdr[0] == 1.0 { (1.0 / sum_abs(flat)).min(1.0) * lr as f64 } else { lr as f64 };
            let gtd = dot(flat, d);
            if gtd > -tol_change {
                break;
            }
            let mut ls_evals = 0;
            let mut opt_cond = false;
            if self.strong_wolfe {
                ls.x_init.copy_from_slice(params);
                let found = strong_wolfe(objective, params, &mut ls, flat, d, t, loss, gtd, tol_change)?;
                (loss, t, ls_evals) = (found.loss, found.t, found.evaluations);
                set_point(params, ls.x_init, t, d);
                opt_cond = max_abs(flat) <= tol_grad;
            } else {
                axpy(params, t as f32, d);
                if out.iterations != self.max_iter {
                    loss = evaluate(objective, params, flat)? as f64;
                    ls_evals = 1;
                    opt_cond = max_abs(flat) <= tol_grad;
                }
            }
            out.evaluations += ls_evals;
            out.last_loss = loss as f32;
            if out.iterations == self.max_iter || out.evaluations >= self.max_eval || opt_cond {
                break;
            }
            if max_abs(d) * t.abs() <= tol_change || (loss - prev_loss).abs() < tol_change {
                break;
            }
        }
        hdr[1] = t as f32;
        hdr[2] = prev_loss as f32;
        hdr[3] = h_diag as f32;
        hdr[4] = count as f32;
        hdr[5] = head as f32;
        Ok(out)
    }
}

/// The line search's gradient buffers, each `param_len` long.
struct LineSearchBuffers<'a> {
    x_init: &'a mut [f32],
    g_new: &'a mut [f32],
    g_prev: &'a mut [f32],
    b0: &'a mut [f32],
    b1: &'a mut [f32],
}

/// What the line search accepted.
struct Found {
    loss: f64,
    t: f64,
    evaluations: u32,
}

/// `_strong_wolfe` with PyTorch's constants: from `x_init` along `d`, starting at step `t`,
/// `f` and `g` (in `g`) the loss and gradient at `x_init`. Leaves the accepted point's
/// gradient in `g`; `params` is scratch.
#[allow(clippy::too_many_arguments)] // PyTorch's signature, plus the buffers
fn strong_wolfe<O: Objective + ?Sized>(
    objective: &mut O,
    params: &mut [f32],
    b: &mut LineSearchBuffers<'_>,
    g: &mut [f32],
    d: &[f32],
    mut t: f64,
    f: f64,
    gtd: f64,
    tolerance_change: f64,
) -> Result<Found, Error> {
    let d_norm = max_abs(d);
    let mut eval = |t: f64, grads: &mut [f32]| -> Result<f64, Error> {
        set_point(params, b.x_init, t, d);
        evaluate(objective, params, grads).map(|l| l as f64)
    };
    let mut f_new = eval(t, b.g_new)?;
    let mut evaluations = 1;
    let mut gtd_new = dot(b.g_new, d);
    let (mut t_prev, mut f_prev, mut gtd_prev) = (0.0, f, gtd);
    b.g_prev.copy_from_slice(g);
    let mut done = false;
    let mut ls_iter = 0;
    // The bracket [t, f, gtd] at positions 0 and 1 (their gradients in b0, b1); `len` 1 when
    // the first phase already satisfied both conditions.
    let mut bracket = [0.0f64; 2];
    let mut bracket_f = [0.0f64; 2];
    let mut bracket_gtd = [0.0f64; 2];
    let mut bracketed = false;
    while ls_iter < MAX_LINE_SEARCH {
        let too_far = f_new > f + WOLFE_C1 * t * gtd || (ls_iter > 1 && f_new >= f_prev);
        if !too_far && gtd_new.abs() <= -WOLFE_C2 * gtd {
            // Both conditions hold: accepted without zooming.
            bracket = [t, t];
            bracket_f = [f_new, f_new];
            b.b0.copy_from_slice(b.g_new);
            done = true;
            break;
        }
        if too_far || gtd_new >= 0.0 {
            bracket = [t_prev, t];
            bracket_f = [f_prev, f_new];
            bracket_gtd = [gtd_prev, gtd_new];
            b.b0.copy_from_slice(b.g_prev);
            b.b1.copy_from_slice(b.g_new);
            bracketed = true;
            break;
        }
        let (min_step, max_step) = (t + 0.01 * (t - t_prev), t * 10.0);
        let tmp = t;
        t = cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, Some((min_step, max_step)));
        (t_prev, f_prev, gtd_prev) = (tmp, f_new, gtd_new);
        b.g_prev.copy_from_slice(b.g_new);
        f_new = eval(t, b.g_new)?;
        evaluations += 1;
        gtd_new = dot(b.g_new, d);
        ls_iter += 1;
    }
    if !done && !bracketed {
        // The evaluation limit: between 0 and the last t.
        bracket = [0.0, t];
        bracket_f = [f, f_new];
        bracket_gtd = [gtd, gtd_new];
        b.b0.copy_from_slice(g);
        b.b1.copy_from_slice(b.g_new);
    }
    // Zoom.
    let mut insuf_progress = false;
    let (mut low, mut high) = if bracket_f[0] <= bracket_f[1] { (0, 1) } else { (1, 0) };
    while !done && ls_iter < MAX_LINE_SEARCH {
        if (bracket[1] - bracket[0]).abs() * d_norm < tolerance_change {
            break;
        }
        t = cubic_interpolate(
            bracket[0],
            bracket_f[0],
            bracket_gtd[0],
            bracket[1],
            bracket_f[1],
            bracket_gtd[1],
            None,
        );
        let (lo, hi) = (bracket[0].min(bracket[1]), bracket[0].max(bracket[1]));
        let eps = 0.1 * (hi - lo);
        if (hi - t).min(t - lo) < eps {
            if insuf_progress || t >= hi || t <= lo {
                t = if (t - hi).abs() < (t - lo).abs() { hi - eps } else { lo + eps };
                insuf_progress = false;
            } else {
                insuf_progress = true;
            }
        } else {
            insuf_progress = false;
        }
        f_new = eval(t, b.g_new)?;
        evaluations += 1;
        gtd_new = dot(b.g_new, d);
        ls_iter += 1;
        if f_new > f + WOLFE_C1 * t * gtd || f_new >= bracket_f[low] {
            bracket[high] = t;
            bracket_f[high] = f_new;
            bracket_gtd[high] = gtd_new;
            set_slot(b.b0, b.b1, high, b.g_new);
            (low, high) = if bracket_f[0] <= bracket_f[1] { (0, 1) } else { (1, 0) };
        } else {
            if gtd_new.abs() <= -WOLFE_C2 * gtd {
                done = true;
            } else if gtd_new * (bracket[high] - bracket[low]) >= 0.0 {
                bracket[high] = bracket[low];
                bracket_f[high] = bracket_f[low];
                bracket_gtd[high] = bracket_gtd[low];
                let (b0, b1) = (&mut *b.b0, &mut *b.b1);
                if high == 0 {
                    b0.copy_from_slice(b1);
                } else {
                    b1.copy_from_slice(b0);
                }
            }
            bracket[low] = t;
            bracket_f[low] = f_new;
            bracket_gtd[low] = gtd_new;
            set_slot(b.b0, b.b1, low, b.g_new);
        }
    }
    g.copy_from_slice(if low == 0 { b.b0 } else { b.b1 });
    Ok(Found { loss: bracket_f[low], t: bracket[low], evaluations })
}

/// Sets the bracket gradient at position `i` (0 or 1) to `g`.
fn set_slot(b0: &mut [f32], b1: &mut [f32], i: usize, g: &[f32]) {
    if i == 0 {
        b0.copy_from_slice(g);
    } else {
        b1.copy_from_slice(g);
    }
}

/// `_cubic_interpolate`: the minimizer of the cubic through `(x1, f1)` and `(x2, f2)` with
/// slopes `g1`, `g2`, clamped to `bounds` (default: between x1 and x2); their midpoint when
/// the cubic has no minimum.
pub fn cubic_interpolate(
    x1: f64,
    f1: f64,
    g1: f64,
    x2: f64,
    f2: f64,
    g2: f64,
    bounds: Option<(f64, f64)>,
) -> f64 {
    let (lo, hi) = bounds.unwrap_or(if x1 <= x2 { (x1, x2) } else { (x2, x1) });
    let d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2);
    let d2_square = d1 * d1 - g1 * g2;
    if d2_square >= 0.0 {
        let d2 = libm::sqrt(d2_square);
        let min_pos = if x1 <= x2 {
            x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2))
        } else {
            x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2))
        };
        min_pos.max(lo).min(hi)
    } else {
        (lo + hi) / 2.0
    }
}

/// The objective at `params`, its loss and gradient checked finite.
fn evaluate<O: Objective + ?Sized>(
    objective: &mut O,
    params: &[f32],
    grads: &mut [f32],
) -> Result<f32, Error> {
    let loss = objective.evaluate(params, grads)?;
    if !loss.is_finite() {
        return Err(Error::NonFinite { what: "the loss" });
    }
    if grads.iter().any(|g| !g.is_finite()) {
        return Err(Error::NonFinite { what: "the gradient" });
    }
    Ok(loss)
}

/// `params = x + t·d` (PyTorch's `_add_grad` from `x`).
fn set_point(params: &mut [f32], x: &[f32], t: f64, d: &[f32]) {
    let t = t as f32;
    for ((p, &x), &d) in params.iter_mut().zip(x).zip(d) {
        *p = x + t * d;
    }
}

/// `y += a·x`.
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&a, &b)| a as f64 * b as f64).sum()
}

fn max_abs(v: &[f32]) -> f64 {
    v.iter().fold(0.0f32, |m, &x| m.max(x.abs())) as f64
}

fn sum_abs(v: &[f32]) -> f64 {
    v.iter().map(|&x| x.abs() as f64).sum()
}
