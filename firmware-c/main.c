/* The C firmware example: the MNIST model `host export --format c` wrote (model.h and the
 * runtime mlp_runtime.c beside it) classifies the embedded test images (model_images.h) and
 * checks every output against the host's. Prints one line per image exactly as the host's
 * model_images.expected.txt has it, then
 *   correct N of M
 *   bit-identical K of M
 *   I instructions per inference (...)
 * and exits with status 0 only if every image's int8 outputs equal the host's. */
#include "board.h"
#include "model.h"
#include "model_images.h"

#ifndef SYSTICK_HZ
#error "SYSTICK_HZ: the SysTick (processor) clock of the board, set by the Makefile"
#endif

/* The runtime's work buffer: MLP_WORK_WORDS int32s, the only RAM inference needs. */
static int32_t work[MLP_WORK_WORDS];

/* Appends text or a decimal number to a line buffer. */
static char *put(char *at, const char *text)
{
    while (*text) {
        *at++ = *text++;
    }
    *at = 0;
    return at;
}

static char *put_int(char *at, int32_t v)
{
    char digits[12];
    int n = 0;
    uint32_t u = v < 0 ? 0u - (uint32_t)v : (uint32_t)v;
    do {
        digits[n++] = (char)('0' + u % 10u);
        u /= 10u;
    } while (u);
    if (v < 0) {
        *at++ = '-';
    }
    while (n) {
        *at++ = digits[--n];
    }
    *at = 0;
    return at;
}

/* Writes `a` x `b` y `c` as one line. */
static void summary(char *line, const char *a, int32_t x, const char *b, int32_t y, const char *c)
{
    put(put_int(put(put_int(put(line, a), x), b), y), c);
    board_write(line);
}

int main(void)
{
    static char line[64 + 6 * MLP_OUTPUT];
    int8_t logits[MLP_OUTPUT];
    uint32_t total_ticks = 0;
    int32_t correct = 0;
    int32_t identical = 0;
    int32_t i;
    int32_t k;
    board_counter_start();
    for (i = 0; i < MLP_TEST_IMAGES; i++) {
        char *at = line;
        int same = 1;
        uint32_t start = board_counter_now();
        int predicted = mlp_classify_u8(&MLP_MODEL, &MLP_TEST_PIXELS[i * MLP_IMAGE_LEN], logits,
                                        work, MLP_WORK_WORDS);
        total_ticks += board_counter_ticks(start, board_counter_now());
        if (predicted < 0) {
            board_write("FAIL: mlp_classify_u8 returned an error\n");
            return 1;
        }
        at = put(at, "image ");
        at = put_int(at, i);
        at = put(at, ": label ");
        at = put_int(at, MLP_TEST_LABELS[i]);
        at = put(at, " predicted ");
        at = put_int(at, predicted);
        at = put(at, " logits [");
        for (k = 0; k < MLP_OUTPUT; k++) {
            at = put(at, k ? ", " : "");
            at = put_int(at, logits[k]);
            same &= logits[k] == MLP_HOST_OUTPUTS[i * MLP_OUTPUT + k];
        }
        put(at, "]\n");
        board_write(line);
        correct += predicted == MLP_TEST_LABELS[i];
        identical += same;
    }
    summary(line, "correct ", correct, " of ", MLP_TEST_IMAGES, "\n");
    summary(line, "bit-identical ", identical, " of ", MLP_TEST_IMAGES, "\n");
    /* Under QEMU -icount shift=0 one instruction is 1 ns of virtual time. */
    summary(line, "", (int32_t)((uint64_t)total_ticks * 1000000000u / SYSTICK_HZ / MLP_TEST_IMAGES),
            " instructions per inference (SysTick at ", SYSTICK_HZ / 1000000,
            " MHz under QEMU -icount shift=0; cycles on a board)\n");
    summary(line, "counter check: a loop of ", (int32_t)COUNTER_CHECK_INSTRUCTIONS,
            " instructions counts as ",
            (int32_t)((uint64_t)board_counter_check() * 1000000000u / SYSTICK_HZ), "\n");
    summary(line, "RAM: work buffer ", (int32_t)sizeof work, " bytes, stack high-water mark ",
            (int32_t)board_stack_high_water(), " bytes\n");
    board_write(identical == MLP_TEST_IMAGES ? "PASS\n" : "FAIL: outputs differ from the host's\n");
    return identical == MLP_TEST_IMAGES ? 0 : 1;
}
