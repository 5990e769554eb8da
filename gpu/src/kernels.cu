// The elementwise and reduction kernels of the GPU training step, compiled at run time by
// NVRTC (with --fmad=false, so every a*b+c rounds twice, as core's Rust code does).
//
// Every kernel mirrors a function of core (named in its comment) and uses the same
// operation order, so that the only differences from the CPU path are the summation order
// of reductions and the last-ulp differences of expf/logf/tanhf/erff/log1pf between CUDA's
// libdevice and libm. The dense products are cuBLAS's (see trainer.rs).
//
// Conventions: matrices are row-major `rows x cols` with `cols` contiguous; `n` is a layer's
// width; a step's per-step values (learning rate, bias corrections, dropout bits, loss slot)
// are found through `*ctr`, the index of the step within the epoch, which the `advance`
// kernel increments at the end of each step. That keeps every launch argument constant
// across steps, so one captured CUDA graph replays any step.

#define ACT_IDENTITY 0
#define ACT_SIGMOID 1
#define ACT_TANH 2
#define ACT_RELU 3
#define ACT_LEAKY_RELU 4
#define ACT_ELU 5
#define ACT_GELU 6
#define ACT_SOFTMAX 7

#define LOSS_MSE 0
#define LOSS_CE 1
#define LOSS_BCE 2

#define OPT_SGD 0
#define OPT_MOMENTUM 1
#define OPT_NESTEROV 2
#define OPT_ADAGRAD 3
#define OPT_RMSPROP 4
#define OPT_ADADELTA 5
#define OPT_ADAM 6
#define OPT_ADAMW 7
#define OPT_ADAMAX 8

// Per-step hyperparameters, HP_STRIDE floats per step: lr, Adam's lr / (1 - beta1^t),
// sqrt(1 - beta2^t) (computed on the host in f64, like core).
#define HP_STRIDE 4

// Batch norm, as core/src/batchnorm.rs.
#define BN_EPS 1e-5f
#define BN_MOMENTUM 0.1f

// core/src/activation.rs constants, written as the same f32 literals.
#define FRAC_1_SQRT_2 0.70710678118654752f
#define FRAC_1_SQRT_2PI 0.3989423f

typedef unsigned int u32;
typedef unsigned char u8;

// NVRTC has no <math.h>: -infinity and a finiteness test without INFINITY / isfinite.
#define NEG_INF __int_as_float(0xff800000)
__device__ __forceinline__ bool finite_f(float x) { return fabsf(x) <= 3.402823466e+38f; }

// core::math::sigmoid
__device__ __forceinline__ float sigmoid_f(float x) {
    if (x >= 0.0f) {
        return 1.0f / (1.0f + expf(-x));
    }
    float e = expf(x);
    return e / (1.0f + e);
}

// core::activation::apply (softmax is handled per row elsewhere)
__device__ __forceinline__ float act_apply(int act, float alpha, float z) {
    switch (act) {
    case ACT_SIGMOID: return sigmoid_f(z);
    case ACT_TANH: return tanhf(z);
    case ACT_RELU: return z > 0.0f ? z : 0.0f;
    case ACT_LEAKY_RELU: return z > 0.0f ? z : alpha * z;
    case ACT_ELU: return z > 0.0f ? z : alpha * (expf(z) - 1.0f);
    case ACT_GELU: return 0.5f * z * (1.0f + erff(z * FRAC_1_SQRT_2));
    default: return z;
    }
}

// core::activation::derivative
__device__ __forceinline__ float act_derivative(int act, float alpha, float z, float a) {
    switch (act) {
    case ACT_SIGMOID: return a * (1.0f - a);
    case ACT_TANH: return 1.0f - a * a;
    case ACT_RELU: return z > 0.0f ? 1.0f : 0.0f;
    case ACT_LEAKY_RELU: return z > 0.0f ? 1.0f : alpha;
    case ACT_ELU: return z > 0.0f ? 1.0f : a + alpha;
    case ACT_GELU: {
        float cdf = 0.5f * (1.0f + erff(z * FRAC_1_SQRT_2));
        return cdf + z * FRAC_1_SQRT_2PI * expf(-0.5f * z * z);
    }
    default: return 1.0f;
    }
}

// Target value of sample b, output k for integer labels (core::loss::target): with one
// output the label itself (binary target), else one-hot.
__device__ __forceinline__ float label_target(const u32* labels, int b, int k, int width) {
    u32 l = labels[b];
    if (width == 1) {
        return (float)l;
    }
    return l == (u32)k ? 1.0f : 0.0f;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, o);
    }
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) {
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    }
    return v;
}

// core::loss::argmax over a row, one warp: the first largest value; NaN never wins; 0 when
// nothing beats -inf.
__device__ int warp_argmax(const float* row, int width, int lane) {
    float best = NEG_INF;
    int idx = 0x7fffffff;
    for (int k = lane; k < width; k += 32) {
        float v = row[k];
        if (v > best) {
            best = v;
            idx = k;
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        float ob = __shfl_xor_sync(0xffffffffu, best, o);
        int oi = __shfl_xor_sync(0xffffffffu, idx, o);
        if (ob > best || (ob == best && oi < idx)) {
            best = ob;
            idx = oi;
        }
    }
    return idx == 0x7fffffff ? 0 : idx;
}

// core::loss::count_correct for one row (one warp): 1 if correct.
__device__ u32 warp_correct(const float* row, int width, const u32* labels, int b, float threshold, int lane) {
    if (width == 1) {
        float t = (float)labels[b];
        return ((row[0] > threshold) == (t > 0.5f)) ? 1u : 0u;
    }
    int p = warp_argmax(row, width, lane);
    return labels[b] == (u32)p ? 1u : 0u;
}

// The batch: x[b][j] = raw[row][j] * scale[j] + offset[j] (host::model_io::InputPipeline::apply
// on the loader's raw values), row = order[base + *ctr * stride + b], or base + b without
// an order; labels[b] = all_labels[row]. Exactly one of u8_data / f32_data is non-null.
extern "C" __global__ void gather(const u8* u8_data, const float* f32_data, const u32* all_labels,
                                  const u32* order, const int* ctr, int stride, int base, int n, int d,
                                  const float* scale, const float* offset, float* x, u32* labels) {
    long long total = (long long)n * d;
    long long start = (long long)base + (long long)(*ctr) * stride;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        int b = (int)(i / d);
        int j = (int)(i - (long long)b * d);
        long long row = order ? (long long)order[start + b] : start + b;
        float raw = u8_data ? (float)u8_data[row * d + j] : f32_data[row * d + j];
        x[i] = __fadd_rn(__fmul_rn(raw, scale[j]), offset[j]);
        if (j == 0) {
            labels[b] = all_labels[row];
        }
    }
}

// After the product: z = z + bias (when bias is non-null), a = act(z), and with dropout
// out = a * mask, mask = keep_scale or 0 from the step's bits (core::train::Trainer::forward).
// Softmax rows are left as logits here (the loss kernels apply softmax).
extern "C" __global__ void bias_act(float* z, float* a, float* out, const float* bias, int n, int total,
                                    int act, float alpha, const u32* mask_bits, const int* ctr,
                                    int mask_step_words, float keep_scale) {
    const u32* bits = mask_bits ? mask_bits + (long long)(*ctr) * mask_step_words : 0;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        float v = z[i];
        if (bias) {
            v = v + bias[i % n];
            z[i] = v;
        }
        float av = act == ACT_SOFTMAX ? v : act_apply(act, alpha, v);
        a[i] = av;
        if (bits) {
            float m = ((bits[i >> 5] >> (i & 31)) & 1u) ? keep_scale : 0.0f;
            out[i] = av * m;
        }
    }
}

// Backward into the previous layer: d = d * mask (dropout), then d *= f'(z)
// (core::train::Trainer::backpropagate, core::activation::backward_in_place).
extern "C" __global__ void act_backward(float* d, const float* z, const float* a, int total, int act,
                                        float alpha, const u32* mask_bits, const int* ctr,
                                        int mask_step_words, float keep_scale) {
    const u32* bits = mask_bits ? mask_bits + (long long)(*ctr) * mask_step_words : 0;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        float g = d[i];
        if (bits) {
            float m = ((bits[i >> 5] >> (i & 31)) & 1u) ? keep_scale : 0.0f;
            g = g * m;
        }
        if (act != ACT_IDENTITY) {
            g = g * act_derivative(act, alpha, z[i], a[i]);
        }
        d[i] = g;
    }
}

// Column reductions use blocks of 32 columns x 8 row lanes.
#define COLS 32
#define LANES 8

__device__ float column_sum(float v, float (*sh)[COLS + 1]) {
    sh[threadIdx.y][threadIdx.x] = v;
    __syncthreads();
    float s = 0.0f;
    for (int r = 0; r < LANES; r++) {
        s += sh[r][threadIdx.x];
    }
    __syncthreads();
    return s;
}

// core::batchnorm::forward_train, with the bias of the product added first: u = raw + bias;
// writes x_hat over u, z = gamma x_hat + beta, mean, inv_std, and moves the running stats —
// unless an earlier step of the epoch diverged (*diverged != 0): core's trainer stops at
// that step, so the later steps must leave the running statistics as it leaves them.
extern "C" __global__ void bn_train(float* u, const float* bias, const float* gamma, const float* beta,
                                    float* z, float* mean_out, float* inv_std_out, float* running_mean,
                                    float* running_var, int batch, int n, const int* diverged) {
    __shared__ float sh[LANES][COLS + 1];
    int o = blockIdx.x * COLS + threadIdx.x;
    bool ok = o < n;
    float b = ok ? bias[o] : 0.0f;
    float inv_b = 1.0f / (float)batch;
    float s = 0.0f;
    if (ok) {
        for (int r = threadIdx.y; r < batch; r += LANES) {
            s += u[(long long)r * n + o] + b;
        }
    }
    float mean = column_sum(s, sh) * inv_b;
    float v = 0.0f;
    if (ok) {
        for (int r = threadIdx.y; r < batch; r += LANES) {
            float x = u[(long long)r * n + o] + b;
            v += (x - mean) * (x - mean);
        }
    }
    float var = column_sum(v, sh) * inv_b;
    float inv_std = 1.0f / sqrtf(var + BN_EPS);
    if (ok && threadIdx.y == 0) {
        mean_out[o] = mean;
        inv_std_out[o] = inv_std;
    }
    if (ok && threadIdx.y == 0 && *diverged == 0) {
        float unbias = batch > 1 ? (float)batch / (float)(batch - 1) : 1.0f;
        running_mean[o] = (1.0f - BN_MOMENTUM) * running_mean[o] + BN_MOMENTUM * mean;
        running_var[o] = (1.0f - BN_MOMENTUM) * running_var[o] + BN_MOMENTUM * var * unbias;
    }
    if (ok) {
        float g = gamma[o], be = beta[o];
        for (int r = threadIdx.y; r < batch; r += LANES) {
            long long i = (long long)r * n + o;
            float xh = (u[i] + b - mean) * inv_std;
            u[i] = xh;
            z[i] = g * xh + be;
        }
    }
}

// core::batchnorm::backward: d from dL/dz to dL/du in place, dgamma and dbeta.
extern "C" __global__ void bn_backward(float* d, const float* x_hat, const float* inv_std, const float* gamma,
                                       float* dgamma, float* dbeta, int batch, int n) {
    __shared__ float sh[LANES][COLS + 1];
    int o = blockIdx.x * COLS + threadIdx.x;
    bool ok = o < n;
    float sb = 0.0f, sg = 0.0f;
    if (ok) {
        for (int r = threadIdx.y; r < batch; r += LANES) {
            long long i = (long long)r * n + o;
            sb += d[i];
            sg += d[i] * x_hat[i];
        }
    }
    float db = column_sum(sb, sh);
    float dg = column_sum(sg, sh);
    if (ok) {
        if (threadIdx.y == 0) {
            dbeta[o] = db;
            dgamma[o] = dg;
        }
        float inv_b = 1.0f / (float)batch;
        float g = gamma[o], is = inv_std[o];
        for (int r = threadIdx.y; r < batch; r += LANES) {
            long long i = (long long)r * n + o;
            d[i] = g * is * (d[i] - inv_b * (db + x_hat[i] * dg));
        }
    }
}

// Eval mode (core::batchnorm::forward_eval after the product's bias): in place.
extern "C" __global__ void bn_eval(float* x, const float* bias, const float* gamma, const float* beta,
                                   const float* running_mean, const float* running_var, int n, int total) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        int o = i % n;
        float v = x[i] + bias[o];
        float scale = gamma[o] / sqrtf(running_var[o] + BN_EPS);
        x[i] = (v - running_mean[o]) * scale + beta[o];
    }
}

// core::loss::Loss::loss_and_grad for one row per warp (blockDim 32 x 4): writes dz, the
// row's loss sum and whether the row is classified correctly (core::loss::count_correct on
// the outputs). With a softmax output layer `a` receives the softmax of `z` first.
// grad_scale: 1/B (cross-entropy), 2/(B n) (MSE), 1/(B n) (BCE), computed on the host as core does.
extern "C" __global__ void loss_train(int loss, int act, float alpha, const float* z, float* a, float* dz,
                                      const u32* labels, int batch, int width, float grad_scale,
                                      float threshold, float* row_loss, u32* row_correct) {
    int lane = threadIdx.x;
    int b = blockIdx.x * blockDim.y + threadIdx.y;
    if (b >= batch) {
        return;
    }
    const float* zr = z + (long long)b * width;
    float* ar = a + (long long)b * width;
    float* dr = dz + (long long)b * width;
    float mx = NEG_INF, sum = 0.0f;
    if (act == ACT_SOFTMAX || loss == LOSS_CE) {
        for (int k = lane; k < width; k += 32) {
            mx = fmaxf(mx, zr[k]);
        }
        mx = warp_max(mx);
        for (int k = lane; k < width; k += 32) {
            sum += expf(zr[k] - mx);
        }
        sum = warp_sum(sum);
    }
    if (act == ACT_SOFTMAX) {
        float inv = 1.0f / sum;
        for (int k = lane; k < width; k += 32) {
            ar[k] = expf(zr[k] - mx) * inv;
        }
        __syncwarp();
    }
    float total = 0.0f;
    if (loss == LOSS_CE) {
        float lse = mx + logf(sum);
        float mass = 0.0f;
        for (int k = lane; k < width; k += 32) {
            float t = label_target(labels, b, k, width);
            mass += t;
            total -= t * (zr[k] - lse);
        }
        mass = warp_sum(mass);
        for (int k = lane; k < width; k += 32) {
            float g = expf(zr[k] - lse) * mass;
            dr[k] = (g - label_target(labels, b, k, width)) * grad_scale;
        }
    } else if (loss == LOSS_MSE) {
        for (int k = lane; k < width; k += 32) {
            float diff = ar[k] - label_target(labels, b, k, width);
            total += diff * diff;
            dr[k] = grad_scale * diff;
        }
        if (act == ACT_SOFTMAX) {
            float dot = 0.0f;
            for (int k = lane; k < width; k += 32) {
                dot += ar[k] * dr[k];
            }
            dot = warp_sum(dot);
            for (int k = lane; k < width; k += 32) {
                dr[k] = ar[k] * (dr[k] - dot);
            }
        } else if (act != ACT_IDENTITY) {
            for (int k = lane; k < width; k += 32) {
                dr[k] = dr[k] * act_derivative(act, alpha, zr[k], ar[k]);
            }
        }
    } else {
        for (int k = lane; k < width; k += 32) {
            float zi = zr[k];
            float t = label_target(labels, b, k, width);
            total += fmaxf(zi, 0.0f) - zi * t + log1pf(expf(-fabsf(zi)));
            dr[k] = (sigmoid_f(zi) - t) * grad_scale;
        }
    }
    total = warp_sum(total);
    __syncwarp();
    u32 c = warp_correct(ar, width, labels, b, threshold, lane);
    if (lane == 0) {
        row_loss[b] = total;
        row_correct[b] = c;
    }
}

// core::loss::Loss::value_from_outputs for one row per warp, on eval-mode outputs: `out`
// holds the output layer's activations, except softmax rows, which hold logits and are
// turned into probabilities here (in place).
extern "C" __global__ void loss_eval(int loss, int act, float* out, const u32* labels, int batch, int width,
                                     float threshold, float* row_loss, u32* row_correct) {
    int lane = threadIdx.x;
    int b = blockIdx.x * blockDim.y + threadIdx.y;
    if (b >= batch) {
        return;
    }
    float* row = out + (long long)b * width;
    if (act == ACT_SOFTMAX) {
        float mx = NEG_INF, sum = 0.0f;
        for (int k = lane; k < width; k += 32) {
            mx = fmaxf(mx, row[k]);
        }
        mx = warp_max(mx);
        for (int k = lane; k < width; k += 32) {
            sum += expf(row[k] - mx);
        }
        sum = warp_sum(sum);
        float inv = 1.0f / sum;
        for (int k = lane; k < width; k += 32) {
            row[k] = expf(row[k] - mx) * inv;
        }
        __syncwarp();
    }
    float total = 0.0f;
    if (loss == LOSS_CE && act == ACT_IDENTITY) {
        float mx = NEG_INF, sum = 0.0f;
        for (int k = lane; k < width; k += 32) {
            mx = fmaxf(mx, row[k]);
        }
        mx = warp_max(mx);
        for (int k = lane; k < width; k += 32) {
            sum += expf(row[k] - mx);
        }
        float lse = mx + logf(warp_sum(sum));
        for (int k = lane; k < width; k += 32) {
            total += label_target(labels, b, k, width) * (lse - row[k]);
        }
    } else if (loss == LOSS_CE) {
        for (int k = lane; k < width; k += 32) {
            float p = row[k];
            float lp = p > 0.0f ? fmaxf(logf(p), -100.0f) : -100.0f;
            total -= label_target(labels, b, k, width) * lp;
        }
    } else if (loss == LOSS_BCE && act == ACT_IDENTITY) {
        for (int k = lane; k < width; k += 32) {
            float zi = row[k];
            float t = label_target(labels, b, k, width);
            total += fmaxf(zi, 0.0f) - zi * t + log1pf(expf(-fabsf(zi)));
        }
    } else if (loss == LOSS_BCE) {
        for (int k = lane; k < width; k += 32) {
            float p = row[k];
            float q = 1.0f - p;
            float t = label_target(labels, b, k, width);
            float lp = p > 0.0f ? fmaxf(logf(p), -100.0f) : -100.0f;
            float lq = q > 0.0f ? fmaxf(logf(q), -100.0f) : -100.0f;
            total -= t * lp + (1.0f - t) * lq;
        }
    } else {
        for (int k = lane; k < width; k += 32) {
            float diff = row[k] - label_target(labels, b, k, width);
            total += diff * diff;
        }
    }
    total = warp_sum(total);
    u32 c = warp_correct(row, width, labels, b, threshold, lane);
    if (lane == 0) {
        row_loss[b] = total;
        row_correct[b] = c;
    }
}

// Sums the rows' losses and correct counts in a fixed order (one block of 256 threads, so
// the result is the same on every run): loss = sum * mul / div into slot *ctr (+ slot_base).
// A NaN or infinite loss marks the epoch as diverged (the first bad step, 1-based), which
// stops every later optimizer update, as core's step refuses to update on such a loss.
extern "C" __global__ void finish_loss(const float* row_loss, const u32* row_correct, int batch, float mul,
                                       float div, const int* ctr, int slot_base, float* step_loss,
                                       u32* step_correct, int* diverged) {
    __shared__ float sl[256];
    __shared__ u32 sc[256];
    float l = 0.0f;
    u32 c = 0;
    for (int i = threadIdx.x; i < batch; i += 256) {
        l += row_loss[i];
        c += row_correct[i];
    }
    sl[threadIdx.x] = l;
    sc[threadIdx.x] = c;
    __syncthreads();
    for (int s = 128; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            sl[threadIdx.x] += sl[threadIdx.x + s];
            sc[threadIdx.x] += sc[threadIdx.x + s];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        int step = ctr ? *ctr : 0;
        int slot = slot_base + step;
        float loss = sl[0] * mul / div;
        step_loss[slot] = loss;
        step_correct[slot] = sc[0];
        if (diverged && !finite_f(loss) && *diverged == 0) {
            *diverged = step + 1;
        }
    }
}

// Partial sums of squares of the gradient for clipping (core::optim::grad_norm), one per block
// of 256 threads.
extern "C" __global__ void sum_squares(const float* g, int n, float* partials) {
    __shared__ float sh[256];
    float s = 0.0f;
    for (int i = blockIdx.x * 256 + threadIdx.x; i < n; i += gridDim.x * 256) {
        s += g[i] * g[i];
    }
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int k = 128; k > 0; k >>= 1) {
        if (threadIdx.x < k) {
            sh[threadIdx.x] += sh[threadIdx.x + k];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        partials[blockIdx.x] = sh[0];
    }
}

// core::optim::clip_grad_norm's factor: coef = max_norm / (norm + 1e-6) when below 1, else 1.
// A non-finite norm is a divergence (core returns an error and does not update).
extern "C" __global__ void clip_coef(const float* partials, int count, float max_norm, const int* ctr,
                                     float* step_norm, float* coef, int* diverged) {
    __shared__ float sh[256];
    float s = 0.0f;
    for (int i = threadIdx.x; i < count; i += 256) {
        s += partials[i];
    }
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int k = 128; k > 0; k >>= 1) {
        if (threadIdx.x < k) {
            sh[threadIdx.x] += sh[threadIdx.x + k];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        float norm = sqrtf(sh[0]);
        step_norm[*ctr] = norm;
        float c = max_norm / (norm + 1e-6f);
        coef[0] = c < 1.0f ? c : 1.0f;
        if (!finite_f(norm) && *diverged == 0) {
            *diverged = *ctr + 1;
        }
    }
}

// One update of every parameter (core::optim::Optimizer::update, formula for formula).
// s0, s1: the optimizer's state vectors (null when it has fewer). hp: per-step
// hyperparameters (HP_STRIDE per step, indexed by *ctr). coef: the clipping factor, or null.
extern "C" __global__ void optimizer_update(float* p, const float* grad, float* s0, float* s1, int n, int kind,
                                            float h0, float h1, float eps, float wd, const float* hp,
                                            const int* ctr, const float* coef, const int* diverged) {
    if (*diverged != 0) {
        return;
    }
    const float* h = hp + (long long)(*ctr) * HP_STRIDE;
    float lr = h[0];
    float step_size = h[1];
    float bc2_sqrt = h[2];
    float c = coef ? coef[0] : 1.0f;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float g = grad[i];
        if (coef && c < 1.0f) {
            g = g * c;
        }
        float w = p[i];
        switch (kind) {
        case OPT_SGD: {
            g = g + wd * w;
            w -= lr * g;
            break;
        }
        case OPT_MOMENTUM:
        case OPT_NESTEROV: {
            float mu = h0;
            g = g + wd * w;
            float buf = mu * s0[i] + g;
            s0[i] = buf;
            w -= lr * (kind == OPT_NESTEROV ? g + mu * buf : buf);
            break;
        }
        case OPT_ADAGRAD: {
            g = g + wd * w;
            float sum = s0[i] + g * g;
            s0[i] = sum;
            w -= lr * g / (sqrtf(sum) + eps);
            break;
        }
        case OPT_RMSPROP: {
            float alpha = h0;
            g = g + wd * w;
            float v = alpha * s0[i] + (1.0f - alpha) * g * g;
            s0[i] = v;
            w -= lr * g / (sqrtf(v) + eps);
            break;
        }
        case OPT_ADADELTA: {
            float rho = h0;
            g = g + wd * w;
            float v = rho * s0[i] + (1.0f - rho) * g * g;
            s0[i] = v;
            float u = s1[i];
            float delta = sqrtf(u + eps) / sqrtf(v + eps) * g;
            s1[i] = rho * u + (1.0f - rho) * delta * delta;
            w -= lr * delta;
            break;
        }
        case OPT_ADAM:
        case OPT_ADAMW: {
            float beta1 = h0, beta2 = h1;
            if (kind == OPT_ADAMW) {
                w *= 1.0f - lr * wd;
            } else {
                g = g + wd * w;
            }
            float m = beta1 * s0[i] + (1.0f - beta1) * g;
            float v = beta2 * s1[i] + (1.0f - beta2) * g * g;
            s0[i] = m;
            s1[i] = v;
            w -= step_size * m / (sqrtf(v) / bc2_sqrt + eps);
            break;
        }
        case OPT_ADAMAX: {
            float beta1 = h0, beta2 = h1;
            g = g + wd * w;
            float m = beta1 * s0[i] + (1.0f - beta1) * g;
            float u = fmaxf(beta2 * s1[i], fabsf(g) + eps);
            s0[i] = m;
            s1[i] = u;
            w -= step_size * m / u;
            break;
        }
        default: break;
        }
        p[i] = w;
    }
}

// The end of a step: the next step reads the next slot of every per-step array.
extern "C" __global__ void advance(int* ctr) {
    if (threadIdx.x == 0 && blockIdx.x == 0) {
        *ctr += 1;
    }
}
