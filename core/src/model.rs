//! Inference (eval mode): batch norm uses running statistics, dropout is off.

use crate::activation;
use crate::batchnorm;
use crate::error::{check_len, Buffer, Error};
use crate::int8::Tap;
use crate::kernels::{Kernels, Shape};
use crate::topology::{Activation, Topology};

/// A read-only view of a model: topology, parameters and batch-norm running statistics,
/// with lengths checked once.
///
/// ```
/// use mlp::{init, Activation, LayerSpec, Model, Portable, Rng, Topology};
/// let t = Topology::new(2, &[LayerSpec::dense(3, Activation::Relu), LayerSpec::dense(2, Activation::Softmax)])?;
/// let mut params = [0.0f32; 17];
/// init::initialize(&t, &mut params, init::Init::HeNormal, &mut Rng::new(1))?;
/// let model = Model::new(&t, &params, &[])?;
/// let mut ws = [0.0f32; 12]; // t.infer_workspace_len(2)
/// let probs = model.forward(&Portable, &[0.5, -1.0, 2.0, 0.0], 2, &mut ws)?;
/// assert!((probs[0] + probs[1] - 1.0).abs() < 1e-6);
/// # Ok::<(), mlp::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Model<'a> {
    topology: &'a Topology,
    params: &'a [f32],
    running: &'a [f32],
}

impl<'a> Model<'a> {
    /// Checks `params` and `running` against the topology's lengths.
    pub fn new(topology: &'a Topology, params: &'a [f32], running: &'a [f32]) -> Result<Self, Error> {
        check_len(Buffer::Params, topology.param_len(), params.len())?;
        check_len(Buffer::Running, topology.running_len(), running.len())?;
        Ok(Model { topology, params, running })
    }

    /// For callers that have already checked the lengths.
    pub(crate) fn from_checked(topology: &'a Topology, params: &'a [f32], running: &'a [f32]) -> Self {
        Model { topology, params, running }
    }

    /// The topology.
    pub fn topology(&self) -> &'a Topology {
        self.topology
    }

    /// The flat parameters.
    pub fn params(&self) -> &'a [f32] {
        self.params
    }

    /// The batch-norm running statistics.
    pub fn running(&self) -> &'a [f32] {
        self.running
    }

    /// Runs `batch` samples (`input`: `batch × topology.input()`, row-major) through the
    /// network and returns the `batch × topology.output()` outputs, which live in `workspace`
    /// (length `topology.infer_workspace_len(batch)` or more).
    pub fn forward<'w, K: Kernels + ?Sized>(
        &self,
        kernels: &K,
        input: &[f32],
        batch: usize,
        workspace: &'w mut [f32],
    ) -> Result<&'w [f32], Error> {
        self.run::<K, false>(kernels, input, batch, workspace, true, |_, _| {})
    }

    /// The eval-mode forward pass, showing every intermediate tensor to `tap` when `TAPPED`:
    /// the input, each layer's pre-activation and its output (untapped, a layer's product
    /// and activation are one fused call). With `softmax: false` a softmax output layer stops
    /// at its logits (what int8 calibration needs).
    pub(crate) fn run<'w, K: Kernels + ?Sized, const TAPPED: bool>(
        &self,
        kernels: &K,
        input: &[f32],
        batch: usize,
        workspace: &'w mut [f32],
        softmax: bool,
        mut tap: impl FnMut(Tap, &[f32]),
    ) -> Result<&'w [f32], Error> {
        let t = self.topology;
        if batch == 0 {
            return Err(Error::EmptyBatch);
        }
        check_len(Buffer::Input, batch.saturating_mul(t.input()), input.len())?;
        let need = t.infer_workspace_len(batch);
        if workspace.len() < need {
            return Err(Error::BufferLength {
                buffer: Buffer::Workspace,
                expected: need,
                actual: workspace.len(),
            });
        }
        tap(Tap::Input, input);
        let (mut cur, mut next) = workspace[..need].split_at_mut(need / 2);
        for (i, layer) in t.layers().iter().enumerate() {
            let Some(r) = t.param_ranges(i) else { break };
            // Maxout: the product makes k rows per unit, the activation keeps the first
            // batch × outputs elements of y (see `activation::forward_in_place`).
            let shape = Shape { batch, inputs: t.fan_in(i), outputs: layer.rows() };
            let src: &[f32] = if i == 0 { input } else { &cur[..batch * shape.inputs] };
            let y = &mut next[..batch * shape.outputs];
            let (w, bias) = (&self.params[r.weights], &self.params[r.bias]);
            let act = (softmax || layer.activation != Activation::Softmax).then_some(layer.activation);
            match (act, &r.batch_norm) {
                // Nothing to show or do between product and activation: one fused pass.
                // Maxout is not a kernel's fused activation: it takes the general path below.
                (Some(act), None) if !TAPPED && act.pieces() == 1 => {
                    kernels.dense_forward_activation_in_place(shape, src, w, bias, act, y)
                }
                _ => {
                    kernels.dense_forward(shape, src, w, bias, y);
                    if let (Some((g, b)), Some((m, v))) = (r.batch_norm, t.running_ranges(i)) {
                        let (gamma, beta) = (&self.params[g], &self.params[b]);
                        batchnorm::forward_eval(
                            layer.outputs,
                            y,
                            gamma,
                            beta,
                            &self.running[m],
                            &self.running[v],
                        );
                    }
                    tap(Tap::Pre(i), y);
                    if let Some(act) = act {
                        activation::forward_in_place(act, layer.outputs, y);
                    }
                }
            }
            let y = &y[..batch * layer.outputs];
            tap(Tap::Out(i), y);
            core::mem::swap(&mut cur, &mut next);
        }
        let out: &'w [f32] = cur;
        Ok(&out[..batch * t.output()])
    }

    /// Classifies one sample: the index of the largest output.
    pub fn predict<K: Kernels + ?Sized>(
        &self,
        kernels: &K,
        input: &[f32],
        workspace: &mut [f32],
    ) -> Result<usize, Error> {
        let out = self.forward(kernels, input, 1, workspace)?;
        Ok(crate::loss::argmax(out))
    }
}
