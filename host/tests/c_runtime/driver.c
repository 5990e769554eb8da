/* The host-side test driver of mlp_runtime.c (host/tests/c_runtime.rs): runs the runtime on
 * inputs from a file and prints what it computed, one line per sample, in the firmware's
 * format. Test code: it uses stdio; the runtime itself does not.
 *
 *   driver u8 PIXELS [LABELS]  raw u8 samples (MLP_INPUT bytes each) through MLP_INPUT_TABLE
 *   driver i8 INPUTS           already-quantized int8 samples
 *   driver fixed TRIPLES       little-endian int32 (x, multiplier, shift) triples: prints
 *                              MultiplyByQuantizedMultiplier, SRDHM(x, multiplier) and
 *                              RoundingDivideByPOT(x, shift) for each
 *   driver errors              the error codes for a small work buffer, a model without an
 *                              input table, and an inconsistent model */
#include <stdio.h>
#include <string.h>

#include "model.h"

static int32_t work[MLP_WORK_WORDS];

static void print_row(int i, int label, int predicted, const int8_t *out)
{
    int k;
    printf("image %d: label %d predicted %d logits [", i, label, predicted);
    for (k = 0; k < MLP_OUTPUT; k++) {
        printf(k ? ", %d" : "%d", out[k]);
    }
    printf("]\n");
}

static int32_t le32(const unsigned char *b)
{
    uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    int32_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static int samples(const char *mode, const char *path, const char *labels_path)
{
    unsigned char sample[MLP_INPUT];
    int8_t out[MLP_OUTPUT];
    FILE *f = fopen(path, "rb");
    FILE *labels = labels_path ? fopen(labels_path, "rb") : NULL;
    int i = 0;
    if (!f || (labels_path && !labels)) {
        fprintf(stderr, "cannot open %s\n", f ? labels_path : path);
        return 1;
    }
    while (fread(sample, 1, sizeof sample, f) == sizeof sample) {
        int label = labels ? fgetc(labels) : 0;
        int c;
        if (strcmp(mode, "u8") == 0) {
            c = mlp_classify_u8(&MLP_MODEL, sample, out, work, MLP_WORK_WORDS);
        } else {
            int8_t x[MLP_INPUT];
            memcpy(x, sample, sizeof x);
            c = mlp_classify_i8(&MLP_MODEL, x, out, work, MLP_WORK_WORDS);
        }
        if (c < 0) {
            fprintf(stderr, "sample %d: error %d\n", i, c);
            return 1;
        }
        print_row(i++, label, c, out);
    }
    fclose(f);
    if (labels) {
        fclose(labels);
    }
    return 0;
}

static int fixed(const char *path)
{
    unsigned char b[12];
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return 1;
    }
    while (fread(b, 1, sizeof b, f) == sizeof b) {
        int32_t x = le32(b), m = le32(b + 4), s = le32(b + 8);
        printf("%ld %ld %ld %ld\n", (long)mlp_multiply_by_quantized_multiplier(x, m, s),
               (long)mlp_saturating_rounding_doubling_high_mul(x, m),
               (long)mlp_rounding_divide_by_pot(x, s),
               (long)mlp_multiply_by_quantized_multiplier_single_rounding(x, m, s));
    }
    fclose(f);
    return 0;
}

static int errors(void)
{
    static const uint8_t blank[MLP_INPUT];
    int8_t out[MLP_OUTPUT];
    mlp_model no_table = MLP_MODEL;
    mlp_model wrong_inputs = MLP_MODEL;
    mlp_model no_layers = MLP_MODEL;
    mlp_model too_narrow = MLP_MODEL;
    no_table.input_table = NULL;
    wrong_inputs.inputs = MLP_INPUT + 1;
    no_layers.layer_count = 0;
    too_narrow.max_width = MLP_MAX_WIDTH - 1;
    printf("work too small: %d\n", mlp_classify_u8(&MLP_MODEL, blank, out, work, MLP_WORK_WORDS - 1));
    printf("no input table: %d\n", mlp_classify_u8(&no_table, blank, out, work, MLP_WORK_WORDS));
    printf("wrong inputs: %d\n", mlp_classify_u8(&wrong_inputs, blank, out, work, MLP_WORK_WORDS));
    printf("no layers: %d\n", mlp_classify_i8(&no_layers, (const int8_t *)blank, out, work, MLP_WORK_WORDS));
    printf("max width too small: %d\n", mlp_classify_u8(&too_narrow, blank, out, work, MLP_WORK_WORDS));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && (strcmp(argv[1], "u8") == 0 || strcmp(argv[1], "i8") == 0)) {
        return samples(argv[1], argv[2], argc >= 4 ? argv[3] : NULL);
    }
    if (argc == 3 && strcmp(argv[1], "fixed") == 0) {
        return fixed(argv[2]);
    }
    if (argc == 2 && strcmp(argv[1], "errors") == 0) {
        return errors();
    }
    fprintf(stderr, "usage: driver u8|i8 FILE [LABELS] | fixed FILE | errors\n");
    return 2;
}
