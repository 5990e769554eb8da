// A small emulation of the CUDA C dialect that gpu/src/kernels.cu uses, so that the kernels
// compile unmodified as C++17 and run on the CPU in tests (like nvcc's old device-emulation
// mode). Only what kernels.cu needs is here; the runtime behind __syncthreads and the warp
// operations (threads, barriers, the launcher) is in launch.cpp, the only file that includes
// this header, right before kernels.cu.
//
// Model:
// - In kernels with barriers or warp operations, each CUDA thread of a block is its own
//   thread of execution: an OS thread (a persistent pool in launch.cpp) in the sanitizer
//   builds and with MLP_GPU_EMU_THREADS=threads or all, so barriers are real barriers and
//   ThreadSanitizer sees real concurrency; otherwise a fiber on the launching thread, which
//   switches at barriers (the same barrier logic, much faster). Kernels without barriers or
//   warp operations run their threads as a loop on the calling thread (launch.cpp's table
//   says which; a barrier reached in that mode fails the launch).
// - Blocks of a grid run one after another. So `__shared__` is plain `static` storage: one
//   copy that every block reuses (it is not cleared between blocks, as shared memory is not
//   initialized on a GPU either). A consequence: races *between* blocks (two blocks writing
//   the same global element) are never concurrent here and are not detected.
// - __syncthreads() waits for every live thread of the block; a thread that has returned
//   from the kernel no longer takes part (as on sm_70 and later).
// - Warp operations synchronize the live lanes of a warp (32 consecutive linear thread ids)
//   and exchange values through per-warp slots. Reading a lane that has exited (or does not
//   exist), lanes of one warp at different warp operations, a mask that leaves out a live
//   lane, and a deadlock (every live thread waiting and no barrier complete) fail the launch
//   with a message instead of hanging or returning garbage.
// - Arithmetic: compile with -ffp-contract=off (NVRTC runs with --fmad=false); float math
//   is the host's libm (expf, logf, ...), which can differ from CUDA's libdevice in the last
//   ulp, as core's Rust code (libm) can.
#ifndef MLP_GPU_CUDA_EMU_H
#define MLP_GPU_CUDA_EMU_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
// One copy per kernel, shared by all threads of the block (and reused by every block: blocks
// run one after another).
#define __shared__ static

struct uint3 {
    unsigned int x, y, z;
};
typedef uint3 dim3;

// The built-in variables: per emulated thread (each OS thread running a CUDA thread sets its
// own; in loop mode the calling thread sets them before each CUDA thread).
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local uint3 blockDim;
inline thread_local uint3 gridDim;

// The runtime (launch.cpp).
namespace cuda_emu {
void syncthreads();
void syncwarp(unsigned mask);
// A warp exchange of 32-bit values: returns `bits` of lane (own lane ^ lane_mask).
uint32_t shfl_xor(unsigned mask, uint32_t bits, int lane_mask, int width);

template <typename T>
inline uint32_t to_bits(T v) {
    static_assert(sizeof(T) == 4, "warp shuffles of 32-bit values only");
    uint32_t b;
    memcpy(&b, &v, 4);
    return b;
}

template <typename T>
inline T from_bits(uint32_t b) {
    static_assert(sizeof(T) == 4, "warp shuffles of 32-bit values only");
    T v;
    memcpy(&v, &b, 4);
    return v;
}
}  // namespace cuda_emu

inline void __syncthreads() { cuda_emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { cuda_emu::syncwarp(mask); }

inline float __shfl_xor_sync(unsigned mask, float v, int lane_mask, int width = 32) {
    return cuda_emu::from_bits<float>(cuda_emu::shfl_xor(mask, cuda_emu::to_bits(v), lane_mask, width));
}
inline int __shfl_xor_sync(unsigned mask, int v, int lane_mask, int width = 32) {
    return cuda_emu::from_bits<int>(cuda_emu::shfl_xor(mask, cuda_emu::to_bits(v), lane_mask, width));
}
inline unsigned __shfl_xor_sync(unsigned mask, unsigned v, int lane_mask, int width = 32) {
    return cuda_emu::shfl_xor(mask, v, lane_mask, width);
}

// Bit casts and explicitly rounded arithmetic (never contracted: -ffp-contract=off).
inline float __int_as_float(int i) { return cuda_emu::from_bits<float>(cuda_emu::to_bits(i)); }
inline int __float_as_int(float f) { return cuda_emu::from_bits<int>(cuda_emu::to_bits(f)); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }

// Atomics (none in kernels.cu today): real atomics, so they stay correct in threaded mode.
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline float atomicAdd(float* p, float v) {
    uint32_t old = __atomic_load_n(reinterpret_cast<uint32_t*>(p), __ATOMIC_SEQ_CST);
    for (;;) {
        uint32_t next = cuda_emu::to_bits(cuda_emu::from_bits<float>(old) + v);
        if (__atomic_compare_exchange_n(reinterpret_cast<uint32_t*>(p), &old, next, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST)) {
            return cuda_emu::from_bits<float>(old);
        }
    }
}

#endif
