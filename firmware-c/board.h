/* What the example needs from the board: text out and exit through semihosting (QEMU, or a
 * debugger on a real board), a cost counter, and the stack's high-water mark. */
#ifndef BOARD_H
#define BOARD_H
#include <stdint.h>

/* Writes a NUL-terminated string to the host (semihosting SYS_WRITE0). */
void board_write(const char *text);
/* Ends the program: QEMU exits with status 0 if ok, else 1 (semihosting SYS_EXIT). */
void board_exit(int ok);

/* SysTick on the processor clock, free-running, no interrupt. */
void board_counter_start(void);
/* The 24-bit SysTick value now; it counts down. */
uint32_t board_counter_now(void);
/* Ticks from `start` to `end` (less than 2^24 apart). */
uint32_t board_counter_ticks(uint32_t start, uint32_t end);

/* SysTick ticks a loop of exactly COUNTER_CHECK_INSTRUCTIONS instructions takes: under QEMU
 * -icount shift=0 it checks the instructions-per-tick factor the Makefile gives. */
#define COUNTER_CHECK_INSTRUCTIONS 200002u
uint32_t board_counter_check(void);

/* Bytes of stack used so far: the deepest word startup.c's paint no longer holds. */
uint32_t board_stack_high_water(void);
#endif /* BOARD_H */
