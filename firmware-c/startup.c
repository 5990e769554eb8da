/* Reset, the vector table, semihosting and SysTick for the C example: no libc, no vendor
 * headers. On a real part the vendor's startup file replaces this one. */
#include "board.h"

extern uint32_t __data_start, __data_end, __data_load, __bss_start, __bss_end, __stack_top;
int main(void);

#define STACK_PAINT 0x5AC4C0DEu

static uint32_t semihost(uint32_t op, uint32_t arg)
{
    register uint32_t r0 __asm__("r0") = op;
    register uint32_t r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void board_write(const char *text)
{
    semihost(0x04, (uint32_t)text); /* SYS_WRITE0 */
}

void board_exit(int ok)
{
    /* SYS_EXIT with ADP_Stopped_ApplicationExit (status 0), else RunTimeErrorUnknown. */
    semihost(0x18, ok ? 0x20026u : 0x20023u);
    for (;;) {
    }
}

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

void board_counter_start(void)
{
    SYST_RVR = 0x00FFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 5u; /* enable, processor clock, no interrupt */
}

uint32_t board_counter_now(void)
{
    return SYST_CVR;
}

uint32_t board_counter_ticks(uint32_t start, uint32_t end)
{
    return (start - end) & 0x00FFFFFFu;
}

uint32_t board_counter_check(void)
{
    uint32_t start = board_counter_now();
    /* ldr, then 100000 x (subs, bne), then the counter read: about 200002 instructions. */
    __asm__ volatile(".syntax unified\n"
                     "  ldr r0, =100000\n"
                     "1: subs r0, r0, #1\n"
                     "  bne 1b\n"
                     :
                     :
                     : "r0", "cc");
    return board_counter_ticks(start, board_counter_now());
}

uint32_t board_stack_high_water(void)
{
    const uint32_t *p = &__bss_end;
    while (p < &__stack_top && *p == STACK_PAINT) {
        p++;
    }
    return (uint32_t)((const char *)&__stack_top - (const char *)p);
}

static void paint_stack(void)
{
    /* Everything from the end of bss to 64 bytes below this frame. */
    uint32_t here = 0;
    uint32_t *p = &__bss_end;
    while (p + 16 < &here) {
        *p++ = STACK_PAINT;
    }
}

void reset_handler(void)
{
    uint32_t *src = &__data_load;
    uint32_t *dst;
    for (dst = &__data_start; dst < &__data_end; dst++) {
        *dst = *src++;
    }
    for (dst = &__bss_start; dst < &__bss_end; dst++) {
        *dst = 0;
    }
    paint_stack();
    board_exit(main() == 0);
}

static void fault_handler(void)
{
    board_write("FAIL: fault (a HardFault or an unexpected exception)\n");
    board_exit(0);
}

typedef void (*vector)(void);

/* The initial stack pointer, then the handlers: reset, NMI, HardFault, the rest faults. */
__attribute__((section(".vectors"), used)) static const vector vectors[16] = {
    (vector)(uintptr_t)&__stack_top, reset_handler, fault_handler, fault_handler,
    fault_handler, fault_handler, fault_handler, 0, 0, 0, 0, fault_handler,
    fault_handler, 0, fault_handler, fault_handler,
};
