/* mlp_runtime.h: integer-only inference for int8 models exported by `host export --format c`.
 * Written by `host export` beside the model header; the same two runtime files serve every
 * model. Portable C99: no malloc, no floating point, nothing from libc but <stdint.h> and
 * <stddef.h>; bit-identical to the Rust reference (core's PortableInt8). Use:
 *
 *     #include "model.h"            // the model: arrays and MLP_MODEL (include in one .c file)
 *     static int32_t work[MLP_WORK_WORDS];
 *     int8_t logits[MLP_OUTPUT];
 *     int cls = mlp_classify_u8(&MLP_MODEL, pixels, logits, work, MLP_WORK_WORDS);
 *     if (cls < 0) { ... an MLP_ERROR_* code ... }
 *
 * and compile mlp_runtime.c with the rest of the firmware. */
#ifndef MLP_RUNTIME_H
#define MLP_RUNTIME_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One quantized dense layer (TFLite's int8 conventions, core/src/int8.rs):
 *   acc[o] = sum_j (x[j] - in_zero_point) * weights[o * inputs + j] + bias[o]   (wrapping)
 *   q[o]   = clamp(MultiplyByQuantizedMultiplier(acc[o], multipliers[o], shifts[o]) + zp,
 *                  clamp_lo, clamp_hi)
 *   y[o]   = table ? table[q[o] + 128] : q[o]
 * with zp = pre_zero_point when the layer has a table, else out_zero_point. */
typedef struct mlp_layer {
    uint32_t inputs;
    uint32_t outputs;
    const int8_t *weights;      /* outputs x inputs, row-major */
    const int32_t *bias;        /* outputs */
    const int32_t *multipliers; /* outputs, Q31 in [2^30, 2^31) or 0 */
    const int32_t *shifts;      /* outputs, in [-31, 30] */
    const int8_t *table;        /* 256 entries (sigmoid, tanh, ...), or NULL */
    int32_t out_zero_point;
    int32_t pre_zero_point;
    int32_t clamp_lo;
    int32_t clamp_hi;
    int32_t single_rounding;    /* 1: requantize rounding once (TFLite's TFLITE_SINGLE_ROUNDING,
                                   a model from LiteRT); 0: gemmlowp's double rounding */
} mlp_layer;

/* The whole network. */
typedef struct mlp_model {
    uint32_t inputs;
    uint32_t outputs;
    uint32_t layer_count;
    uint32_t max_width;         /* the widest layer's outputs */
    int32_t input_zero_point;
    const int8_t *input_table;  /* u8 raw value -> int8 input, or NULL (per-feature inputs) */
    const mlp_layer *layers;
} mlp_model;

/* int32 words of work buffer a model of this widest layer needs: the accumulators and one
 * int8 activation buffer (each layer overwrites its input once its sums are done). */
#define MLP_WORK_WORDS_FOR(max_width) ((max_width) + ((max_width) + 3u) / 4u)

/* Errors (negative return values). */
#define MLP_ERROR_WORK_TOO_SMALL (-1) /* work_words < MLP_WORK_WORDS_FOR(max_width) */
#define MLP_ERROR_NO_INPUT_TABLE (-2) /* mlp_classify_u8 on a model with per-feature inputs */
#define MLP_ERROR_BAD_MODEL (-3)      /* no layers, or a layer's inputs != the previous outputs */

/* Runs one sample through the model and writes its model->outputs int8 outputs (logits for a
 * softmax layer) to `out`. Returns the predicted class (the argmax, the first on ties) or a
 * negative MLP_ERROR_* code.
 *   mlp_classify_u8: raw u8 values (pixels 0..255), quantized through model->input_table;
 *   mlp_classify_i8: inputs already quantized (int8 with model->input_zero_point).
 * `work`: at least MLP_WORK_WORDS_FOR(model->max_width) int32s, any contents. */
int mlp_classify_u8(const mlp_model *model, const uint8_t *raw, int8_t *out, int32_t *work,
                    size_t work_words);
int mlp_classify_i8(const mlp_model *model, const int8_t *input, int8_t *out, int32_t *work,
                    size_t work_words);

/* The index of the largest value, the first one on ties (n >= 1). */
int mlp_argmax(const int8_t *values, uint32_t n);

/* gemmlowp's fixed-point primitives, as core/src/int8/fixed.rs defines them. */
int32_t mlp_saturating_rounding_doubling_high_mul(int32_t a, int32_t b);
int32_t mlp_rounding_divide_by_pot(int32_t x, int32_t exponent);
int32_t mlp_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift);
/* TFLite's MultiplyByQuantizedMultiplier under TFLITE_SINGLE_ROUNDING, saturated to int32. */
int32_t mlp_multiply_by_quantized_multiplier_single_rounding(int32_t x, int32_t multiplier,
                                                             int32_t shift);

#ifdef __cplusplus
}
#endif
#endif /* MLP_RUNTIME_H */
