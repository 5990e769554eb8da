/* mlp_runtime.c: integer-only inference for int8 models exported by `host export --format c`
 * (see mlp_runtime.h). Bit-identical to core's PortableInt8 (core/src/int8/infer.rs,
 * kernels.rs, fixed.rs).
 *
 * Portability: signed overflow is undefined in C, so sums wrap in uint32_t and come back to
 * int32_t through to_i32() (no implementation-defined conversion); right shifts of negative
 * numbers are implementation-defined before C23, so floor_shift() shifts non-negative values
 * only. The only 64-bit operation is the product in the high multiply. */
#include "mlp_runtime.h"

/* The int32_t whose two's complement bits are u (what a wrapping Rust `as i32` gives). */
static int32_t to_i32(uint32_t u)
{
    return u <= 0x7FFFFFFFu ? (int32_t)u : -(int32_t)(~u) - 1;
}

/* floor(x / 2^e) for e in [0, 31], shifting only non-negative values. */
static int32_t floor_shift(int32_t x, int32_t e)
{
    if (x >= 0) {
        return (int32_t)((uint32_t)x >> e);
    }
    /* x < 0: floor(x / 2^e) = -(((-x - 1) >> e) + 1); -x - 1 cannot overflow. */
    return -(int32_t)((uint32_t)(-(x + 1)) >> e) - 1;
}

int32_t mlp_saturating_rounding_doubling_high_mul(int32_t a, int32_t b)
{
    int64_t ab;
    int64_t nudge;
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    ab = (int64_t)a * (int64_t)b;
    nudge = ab >= 0 ? ((int64_t)1 << 30) : 1 - ((int64_t)1 << 30);
    /* C99 division truncates toward zero, as gemmlowp's and core's do. */
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

int32_t mlp_rounding_divide_by_pot(int32_t x, int32_t exponent)
{
    int32_t e = exponent < 0 ? 0 : (exponent > 31 ? 31 : exponent);
    uint32_t mask = ((uint32_t)1 << e) - 1u;
    uint32_t remainder = (uint32_t)x & mask;
    uint32_t threshold = (mask >> 1) + (x < 0 ? 1u : 0u);
    return floor_shift(x, e) + (remainder > threshold ? 1 : 0);
}

int32_t mlp_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift)
{
    int32_t s = shift < -31 ? -31 : (shift > 30 ? 30 : shift);
    int32_t left = s > 0 ? s : 0;
    int32_t right = s > 0 ? 0 : -s;
    /* x * 2^left, wrapping (core's wrapping_mul). */
    int32_t scaled = to_i32((uint32_t)x << left);
    return mlp_rounding_divide_by_pot(mlp_saturating_rounding_doubling_high_mul(scaled, multiplier),
                                      right);
}

int32_t mlp_multiply_by_quantized_multiplier_single_rounding(int32_t x, int32_t multiplier,
                                                             int32_t shift)
{
    int32_t s = shift < -31 ? -31 : (shift > 30 ? 30 : shift);
    int32_t total = 31 - s; /* 1..62 */
    /* |x * multiplier| <= 2^62 and the nudge is < 2^62: no int64 overflow. */
    int64_t v = (int64_t)x * (int64_t)multiplier + ((int64_t)1 << (total - 1));
    /* floor(v / 2^total) without right-shifting a negative number (implementation-defined). */
    int64_t q = v >= 0 ? (int64_t)((uint64_t)v >> total)
                       : -(int64_t)((uint64_t)(-(v + 1)) >> total) - 1;
    if (q > INT32_MAX) {
        return INT32_MAX;
    }
    if (q < INT32_MIN) {
        return INT32_MIN;
    }
    return (int32_t)q;
}

int mlp_argmax(const int8_t *values, uint32_t n)
{
    uint32_t i;
    uint32_t best = 0;
    for (i = 1; i < n; i++) {
        if (values[i] > values[best]) {
            best = i;
        }
    }
    return (int)best;
}

/* acc[o] += c * w[o * m] for every output o: one input column. */
static void add_column(uint32_t *acc, uint32_t n, uint32_t m, const int8_t *w, int32_t c)
{
    uint32_t o;
    for (o = 0; o < n; o++) {
        acc[o] += (uint32_t)(c * (int32_t)*w);
        w += m;
    }
}

/* Four input columns at once (each accumulator loaded and stored once for four products):
 * w[o * m], w[o * m + d1], ... Four products of at most 255 x 127 sum to well inside int32. */
static void add_4_columns(uint32_t *acc, uint32_t n, uint32_t m, const int8_t *w,
                          const int32_t c[4], const uint32_t d[4])
{
    const int32_t c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];
    const uint32_t d1 = d[1] - d[0], d2 = d[2] - d[0], d3 = d[3] - d[0];
    uint32_t o;
    w += d[0];
    for (o = 0; o < n; o++) {
        acc[o] += (uint32_t)(c0 * (int32_t)w[0] + c1 * (int32_t)w[d1] + c2 * (int32_t)w[d2] +
                             c3 * (int32_t)w[d3]);
        w += m;
    }
}

/* One layer: y = requantize(W (x - in_zero_point) + bias). The sums go column by column, so a
 * zero input (a blank pixel, a ReLU output at its zero point) costs one comparison: it adds
 * exactly 0 to every sum. The sums wrap (modulo 2^32), so their order does not change the
 * result. x is `input`, or table[raw[j]] when raw is given. y may be the buffer x is in: every
 * x is read before the first y is written. */
static void dense(const mlp_layer *layer, const int8_t *input, const uint8_t *raw,
                  const int8_t *table, int32_t in_zero_point, uint32_t *acc, int8_t *y)
{
    const uint32_t n = layer->outputs;
    const uint32_t m = layer->inputs;
    const int32_t zp = layer->table != NULL ? layer->pre_zero_point : layer->out_zero_point;
    int32_t centered[4];
    uint32_t column[4];
    uint32_t pending = 0;
    uint32_t o;
    uint32_t j;
    for (o = 0; o < n; o++) {
        acc[o] = 0;
    }
    for (j = 0; j < m; j++) {
        const int32_t x = raw != NULL ? table[raw[j]] : input[j];
        /* In [-255, 255]; times a weight in [-127, 127] it fits int32 with room to spare. */
        const int32_t c = x - in_zero_point;
        if (c == 0) {
            continue;
        }
        centered[pending] = c;
        column[pending] = j;
        if (++pending == 4) {
            add_4_columns(acc, n, m, layer->weights, centered, column);
            pending = 0;
        }
    }
    for (j = 0; j < pending; j++) {
        add_column(acc, n, m, layer->weights + column[j], centered[j]);
    }
    for (o = 0; o < n; o++) {
        const int32_t sum = to_i32(acc[o] + (uint32_t)layer->bias[o]);
        const int32_t v =
            layer->single_rounding
                ? mlp_multiply_by_quantized_multiplier_single_rounding(sum, layer->multipliers[o],
                                                                       layer->shifts[o])
                : mlp_multiply_by_quantized_multiplier(sum, layer->multipliers[o], layer->shifts[o]);
        int32_t q;
        /* clamp(v + zp, lo, hi) without forming v + zp (it could overflow). */
        if (v >= layer->clamp_hi - zp) {
            q = layer->clamp_hi;
        } else if (v <= layer->clamp_lo - zp) {
            q = layer->clamp_lo;
        } else {
            q = v + zp;
        }
        y[o] = layer->table != NULL ? layer->table[(uint8_t)(q + 128)] : (int8_t)q;
    }
}

static int check(const mlp_model *model, size_t work_words)
{
    uint32_t i;
    uint32_t fan_in = model->inputs;
    if (model->layer_count == 0 || model->layers == NULL) {
        return MLP_ERROR_BAD_MODEL;
    }
    for (i = 0; i < model->layer_count; i++) {
        const mlp_layer *l = &model->layers[i];
        if (l->inputs != fan_in || l->outputs == 0 || l->outputs > model->max_width) {
            return MLP_ERROR_BAD_MODEL;
        }
        fan_in = l->outputs;
    }
    if (fan_in != model->outputs) {
        return MLP_ERROR_BAD_MODEL;
    }
    if (work_words < MLP_WORK_WORDS_FOR((size_t)model->max_width)) {
        return MLP_ERROR_WORK_TOO_SMALL;
    }
    return 0;
}

static int run(const mlp_model *model, const int8_t *input, const uint8_t *raw, int8_t *out,
               int32_t *work, size_t work_words)
{
    uint32_t i;
    uint32_t *acc = (uint32_t *)work;
    /* int8_t is signed char (exactly 8 bits): it may view the int32 words' storage. */
    int8_t *buffer = (int8_t *)(work + model->max_width);
    int32_t in_zero_point = model->input_zero_point;
    const int status = check(model, work_words);
    if (status != 0) {
        return status;
    }
    for (i = 0; i < model->layer_count; i++) {
        const mlp_layer *layer = &model->layers[i];
        int8_t *y = i + 1 == model->layer_count ? out : buffer;
        if (i == 0) {
            dense(layer, input, raw, model->input_table, in_zero_point, acc, y);
        } else {
            dense(layer, buffer, NULL, NULL, in_zero_point, acc, y);
        }
        in_zero_point = layer->out_zero_point;
    }
    return mlp_argmax(out, model->outputs);
}

int mlp_classify_u8(const mlp_model *model, const uint8_t *raw, int8_t *out, int32_t *work,
                    size_t work_words)
{
    if (model->input_table == NULL) {
        return MLP_ERROR_NO_INPUT_TABLE;
    }
    return run(model, NULL, raw, out, work, work_words);
}

int mlp_classify_i8(const mlp_model *model, const int8_t *input, int8_t *out, int32_t *work,
                    size_t work_words)
{
    return run(model, input, NULL, out, work, work_words);
}
