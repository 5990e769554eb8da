// The CPU emulator's launcher: gpu/src/kernels.cu compiled unmodified as C++ (against
// cuda_emu.h) and one C entry point, mlp_emu_launch, that runs a kernel by name with its
// grid, block and arguments, for the emulated backend's tests (gpu/src/emulator/kernels.rs).
//
// How a launch runs (see cuda_emu.h for the CUDA model):
// - Blocks run one after another, in blockIdx order (x fastest).
// - Kernels in kKernels marked `Sync::Threads` (those with __syncthreads or warp operations)
//   run each CUDA thread of a block as its own thread of execution:
//   - in the sanitizer builds, or with MLP_GPU_EMU_THREADS=threads, an OS thread from a
//     persistent pool sized to the largest block launched so far (at most 1024), so that
//     ThreadSanitizer sees real concurrency;
//   - otherwise a fiber (ucontext) on the launching thread that runs until it parks at a
//     barrier: the same barrier logic, about 10x faster (an OS context switch costs several
//     microseconds on a small VM, and sum_squares alone runs 256 blocks of 256 threads).
//   The other kernels run their threads as a loop on the launching thread; a barrier or warp
//   operation reached in that mode fails the launch, so the table is checked every time a
//   kernel runs, not trusted. MLP_GPU_EMU_THREADS=all runs every kernel on OS threads (for
//   the sanitizer runs). The variable is read at the first launch.
// - Launches are serialized by one global mutex (cargo runs tests on several threads).
// - Nothing here exits or aborts on a bad launch: every error is returned as a message.

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__linux__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
// Fibers (see Fibers below): not in the sanitizer builds, which need real threads (TSan to
// see real concurrency; ASan does not fully support swapcontext).
#define MLP_GPU_EMU_FIBERS 1
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>
#else
#define MLP_GPU_EMU_FIBERS 0
#endif

#include "cuda_emu.h"

// kernels.cu's extern "C" kernels (gather, advance, ...) get hidden visibility, so they never
// interpose on a same-named symbol of a shared library in the final binary. kernels.cu
// compares threadIdx.x (unsigned) with int loop bounds, which NVRTC accepts silently and
// g++'s -Wall (cc's default flags) would report on every build.
#pragma GCC visibility push(hidden)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#ifdef MLP_GPU_EMU_KERNELS
// build.rs's MLP_GPU_EMU_KERNELS: a scratch copy of kernels.cu to compile instead (e.g. with
// a bug planted to check that a sanitizer reports it).
#include MLP_GPU_EMU_KERNELS
#else
#include "../src/kernels.cu"
#endif
#pragma GCC diagnostic pop

// Kernels that test the emulator itself (from the Rust unit tests); not part of kernels.cu.

// Registered as a loop-mode kernel although it has a barrier: its launch must fail.
extern "C" __global__ void emu_selftest_barrier_in_loop(int* out) {
    out[threadIdx.x] = 1;
    __syncthreads();
}

// The second half of the block returns at once; the first half (a multiple of 32 threads)
// sums `in` per warp with shuffles and meets at __syncthreads, which must count only the
// threads still running. out[w] = sum of warp w's values.
extern "C" __global__ void emu_selftest_early_exit(const float* in, float* out) {
    unsigned t = threadIdx.x;
    if (t >= blockDim.x / 2) {
        return;
    }
    float v = in[t];
    for (int o = 16; o > 0; o >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, o);
    }
    __syncthreads();
    if (t % 32 == 0) {
        out[t / 32] = v;
    }
}

// Odd threads wait at __syncthreads, even ones at __syncwarp: a deadlock on a GPU, an error here.
extern "C" __global__ void emu_selftest_divergent(int* out) {
    if (threadIdx.x % 2) {
        __syncthreads();
    } else {
        __syncwarp();
    }
    out[threadIdx.x] = 1;
}

// Thread 5 returns; lane 4 then shuffles from lane 5: an error (undefined on a GPU).
extern "C" __global__ void emu_selftest_read_exited(float* out) {
    if (threadIdx.x == 5) {
        return;
    }
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}
#pragma GCC visibility pop

namespace cuda_emu {
namespace {

constexpr unsigned kMaxThreads = 1024;
constexpr unsigned kWarpSize = 32;
constexpr unsigned kMaxWarps = kMaxThreads / kWarpSize;

// Thrown in an emulated thread to unwind it out of the kernel once the launch has failed
// (the message is already recorded).
struct Abort {};

// Thrown in loop mode, where there is no block state to record the message in.
struct LoopFailure {
    std::string message;
};

// One thread's wake-up slot. Waiters park on their own mutex and condition variable, so a
// barrier's release wakes each waiter without all of them then fighting over one mutex
// (with one shared condition variable, 256 threads woken together queue up for its mutex:
// about 10x slower on two cores).
struct Parker {
    std::mutex m;
    std::condition_variable cv;
    int state = 0;

    int park() {
        std::unique_lock<std::mutex> lk(m);
        cv.wait(lk, [&] { return state != 0; });
        int s = state;
        state = 0;
        return s;
    }

    void unpark(int s) {
        {
            std::lock_guard<std::mutex> lk(m);
            state = s;
        }
        cv.notify_one();
    }
};

// Parker states.
constexpr int kGo = 1;       // released (or, in the pool, given work)
constexpr int kAborted = 2;  // the launch failed: unwind

// Threads to unpark once the block's mutex is released: (thread, state).
typedef std::vector<std::pair<unsigned, int>> Wake;

enum class WarpOp { Shuffle, Sync };

const char* op_name(WarpOp op) { return op == WarpOp::Shuffle ? "__shfl_xor_sync" : "__syncwarp"; }

// One warp's barrier and exchange slots. Guarded by Block::m, except the slots, which a
// released lane reads after unparking (see warp_op).
struct Warp {
    unsigned live = 0;              // lanes that exist and have not returned
    uint32_t live_mask = 0;         // the same as bits
    std::vector<unsigned> waiters;  // threads parked at the current operation
    uint64_t gen = 0;               // operations completed (never reset, so stale slots never match)
    WarpOp op = WarpOp::Sync;
    int lane_arg = 0;
    // Double-buffered by the parity of gen: a lane that has not yet read operation g's
    // values still holds up operation g + 1, so nobody can be writing g + 2's.
    uint32_t slots[2][kWarpSize] = {};
    uint64_t written[2][kWarpSize] = {};  // gen + 1 of the operation that wrote the slot
};

// The block being run (threaded mode): its barrier, its warps and the launch's first error.
struct Block {
    std::mutex m;
    const char* kernel = "";
    uint3 block_idx = {0, 0, 0};
    uint3 block_dim = {1, 1, 1};
    unsigned threads = 0;
    unsigned live = 0;              // threads that have not returned
    std::vector<unsigned> waiters;  // threads parked at __syncthreads
    unsigned waiting = 0;           // threads parked at any barrier (deadlock detection)
    bool failed = false;
    std::string error;
    bool fibers = false;  // this block's threads are fibers on one OS thread (see Fibers)
    Warp warps[kMaxWarps];
    Parker parkers[kMaxThreads];

    Block() {
        waiters.reserve(kMaxThreads);
        for (Warp& w : warps) {
            w.waiters.reserve(kWarpSize);
        }
    }

    unsigned warp_count() const { return (threads + kWarpSize - 1) / kWarpSize; }

    // Before each block, with no thread running.
    void reset(const char* name, uint3 idx, uint3 dim) {
        kernel = name;
        block_idx = idx;
        block_dim = dim;
        threads = dim.x * dim.y * dim.z;
        live = threads;
        waiters.clear();
        waiting = 0;
        failed = false;
        error.clear();
        for (unsigned w = 0; w < warp_count(); w++) {
            unsigned lanes = threads - w * kWarpSize < kWarpSize ? threads - w * kWarpSize : kWarpSize;
            warps[w].live = lanes;
            warps[w].live_mask = lanes == kWarpSize ? 0xffffffffu : (1u << lanes) - 1;
            warps[w].waiters.clear();
        }
    }

    std::string where(unsigned tid) const {
        unsigned tx = tid % block_dim.x, ty = tid / block_dim.x % block_dim.y, tz = tid / (block_dim.x * block_dim.y);
        char buf[160];
        snprintf(buf, sizeof buf, "kernel %s, block (%u,%u,%u), thread (%u,%u,%u)", kernel, block_idx.x,
                 block_idx.y, block_idx.z, tx, ty, tz);
        return buf;
    }

    void release_locked(std::vector<unsigned>& list, Wake& wake) {
        for (unsigned t : list) {
            wake.emplace_back(t, kGo);
        }
        waiting -= (unsigned)list.size();
        list.clear();
    }

    // Records the launch's error (the first one wins) and takes every parked thread off its
    // barrier, to be unparked to unwind.
    void record_locked(std::string msg, Wake& wake) {
        if (!failed) {
            failed = true;
            error = std::move(msg);
        }
        for (unsigned w = 0; w < warp_count(); w++) {
            for (unsigned t : warps[w].waiters) {
                wake.emplace_back(t, kAborted);
            }
            warps[w].waiters.clear();
        }
        for (unsigned t : waiters) {
            wake.emplace_back(t, kAborted);
        }
        waiters.clear();
        waiting = 0;
    }

    void wake(const Wake& wake);

    void record(std::string msg) {
        Wake w;
        {
            std::lock_guard<std::mutex> lk(m);
            record_locked(std::move(msg), w);
        }
        wake(w);
    }

    // Fails the launch from thread tid, which holds the mutex through `lk`, and unwinds it.
    [[noreturn]] void fail(std::unique_lock<std::mutex>& lk, unsigned tid, const std::string& what) {
        Wake w;
        record_locked(where(tid) + ": " + what, w);
        lk.unlock();
        wake(w);
        throw Abort{};
    }

    std::string deadlock_message() const {
        return "deadlock: all " + std::to_string(live) + " running threads of the block wait (" +
               std::to_string(waiters.size()) +
               " at __syncthreads(), the others at warp operations), and no barrier can complete: a "
               "__syncthreads() or warp operation that some threads never reach";
    }

    // Parks thread tid, which holds the mutex through `lk` and has just joined a waiter
    // list, until the barrier releases it; a deadlock (every running thread parked) fails
    // the launch instead.
    void park(std::unique_lock<std::mutex>& lk, unsigned tid) {
        waiting++;
        Wake wk;
        if (waiting == live) {
            // Unparks this thread too (with kAborted), so its parker is left clean.
            record_locked(where(tid) + ": " + deadlock_message(), wk);
        }
        lk.unlock();
        wake(wk);
        if (park_thread(tid) == kAborted) {
            throw Abort{};
        }
    }

    int park_thread(unsigned tid);

    // Called by every thread when it leaves the kernel (returned or unwound): it no longer
    // counts at barriers, which may complete without it.
    void exit(unsigned tid) {
        Wake wk;
        {
            std::lock_guard<std::mutex> lk(m);
            Warp& w = warps[tid / kWarpSize];
            live--;
            w.live--;
            w.live_mask &= ~(1u << (tid % kWarpSize));
            if (!failed) {
                if (!w.waiters.empty() && w.waiters.size() == w.live) {
                    w.gen++;
                    release_locked(w.waiters, wk);
                }
                if (!waiters.empty() && waiters.size() == live) {
                    release_locked(waiters, wk);
                }
                if (live > 0 && waiting == live) {
                    record_locked(where(tid) + ": " + deadlock_message() + " (after this thread returned)", wk);
                }
            }
        }
        wake(wk);
    }
};

// What the current OS thread is running.
struct Ctx {
    const char* kernel;
    Block* block;  // null in loop mode
    unsigned tid;  // linear thread id within the block
};

thread_local Ctx* t_ctx = nullptr;

Ctx& current() {
    Ctx* c = t_ctx;
    if (!c) {
        // Only kernels call the barrier functions, and only launches run kernels.
        fputs("cuda_emu: a barrier or warp operation was called outside a kernel launch\n", stderr);
        std::abort();
    }
    return *c;
}

[[noreturn]] void loop_mode_violation(const Ctx& c, const char* what) {
    char buf[512];
    snprintf(buf, sizeof buf,
             "kernel %s, block (%u,%u,%u), thread (%u,%u,%u): %s in a kernel that launch.cpp's table "
             "(kKernels) marks as having no barriers or warp operations, so its threads ran as a loop "
             "on one OS thread: mark it Sync::Threads",
             c.kernel, blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z, what);
    throw LoopFailure{buf};
}

uint32_t warp_op(WarpOp op, unsigned mask, uint32_t bits, int lane_arg, int width) {
    Ctx& c = current();
    if (!c.block) {
        loop_mode_violation(c, op_name(op));
    }
    Block& b = *c.block;
    unsigned lane = c.tid % kWarpSize;
    Warp& w = b.warps[c.tid / kWarpSize];
    std::unique_lock<std::mutex> lk(b.m);
    if (b.failed) {
        throw Abort{};
    }
    char buf[256];
    if (!(mask >> lane & 1u)) {
        snprintf(buf, sizeof buf, "%s with mask 0x%08x, which leaves out the calling lane %u", op_name(op), mask,
                 lane);
        b.fail(lk, c.tid, buf);
    }
    if ((mask & w.live_mask) != w.live_mask) {
        snprintf(buf, sizeof buf,
                 "%s with mask 0x%08x while lanes 0x%08x are running: the emulator supports only masks "
                 "that name every running lane",
                 op_name(op), mask, w.live_mask);
        b.fail(lk, c.tid, buf);
    }
    if (op == WarpOp::Shuffle && (width != (int)kWarpSize || lane_arg < 0 || lane_arg >= (int)kWarpSize)) {
        snprintf(buf, sizeof buf, "__shfl_xor_sync with lane mask %d and width %d (emulated: width 32, lane mask 0..31)",
                 lane_arg, width);
        b.fail(lk, c.tid, buf);
    }
    uint64_t g = w.gen;
    if (w.waiters.empty()) {
        w.op = op;
        w.lane_arg = lane_arg;
    } else if (w.op != op || w.lane_arg != lane_arg) {
        snprintf(buf, sizeof buf,
                 "lanes of one warp are at different warp operations: this lane at %s (lane mask %d), "
                 "others at %s (lane mask %d)",
                 op_name(op), lane_arg, op_name(w.op), w.lane_arg);
        b.fail(lk, c.tid, buf);
    }
    unsigned p = g & 1;
    w.slots[p][lane] = bits;
    w.written[p][lane] = g + 1;
    if (w.waiters.size() + 1 == w.live) {
        w.gen++;
        Wake wk;
        b.release_locked(w.waiters, wk);
        lk.unlock();
        b.wake(wk);
    } else {
        w.waiters.push_back(c.tid);
        b.park(lk, c.tid);
    }
    if (op != WarpOp::Shuffle) {
        return 0;
    }
    // Without the mutex: every lane wrote buffer p before the release that this lane has
    // seen (through the mutex and its parker), and nobody writes buffer p again before this
    // lane has arrived at the next operation.
    unsigned src = lane ^ (unsigned)lane_arg;
    if (w.written[p][src] != g + 1) {
        snprintf(buf, sizeof buf,
                 "__shfl_xor_sync reads lane %u, which has returned from the kernel or does not exist "
                 "(undefined on a GPU)",
                 src);
        lk.lock();
        b.fail(lk, c.tid, buf);
    }
    return w.slots[p][src];
}

// A pool of OS threads that run one block's CUDA threads: run(n, body) calls body(i) for
// i < n, each on its own thread, and returns when all are done. Grown on demand, never shrunk
// or destroyed (it is leaked at exit, so no joinable std::thread is ever destroyed). Only
// the launching thread (holding the launch mutex) calls run.
class Pool {
  public:
    void run(unsigned n, const std::function<void(unsigned)>& body) {
        while (workers_.size() < n) {
            auto w = std::make_unique<Worker>();
            Worker* raw = w.get();
            unsigned index = (unsigned)workers_.size();
            raw->thread = std::thread([this, raw, index] { work(raw, index); });
            workers_.push_back(std::move(w));
        }
        body_ = &body;
        remaining_.store(n);
        for (unsigned i = 0; i < n; i++) {
            workers_[i]->parker.unpark(kGo);
        }
        done_.park();
        body_ = nullptr;
    }

  private:
    struct Worker {
        Parker parker;
        std::thread thread;
    };

    void work(Worker* me, unsigned index) {
        for (;;) {
            me->parker.park();
            (*body_)(index);  // never throws (see run_threaded)
            if (remaining_.fetch_sub(1) == 1) {
                done_.unpark(kGo);
            }
        }
    }

    std::vector<std::unique_ptr<Worker>> workers_;
    const std::function<void(unsigned)>* body_ = nullptr;
    std::atomic<unsigned> remaining_{0};
    Parker done_;
};

#if MLP_GPU_EMU_FIBERS
// The CUDA threads of one block as fibers (ucontext) on the launching thread: each runs
// until it parks at a barrier or warp operation (or returns), then the next runnable one
// runs. The barrier logic (Block) is the same as with OS threads; only parking differs. A
// switch costs a fraction of a microsecond instead of an OS context switch (several on a
// small VM): sum_squares' 256 blocks of 256 threads take about 0.6 s here instead of 6-7 s.
class Fibers {
  public:
    // Calls body(i) for i < n, each on its own fiber, until all have returned.
    void run(unsigned n, const std::function<void(unsigned)>& body) {
        body_ = &body;
        queue_.clear();
        for (unsigned i = 0; i < n; i++) {
            Fiber& f = fibers_[i];
            if (!f.stack) {
                f.stack = allocate_stack();
            }
            getcontext(&f.ctx);
            f.ctx.uc_stack.ss_sp = f.stack;
            f.ctx.uc_stack.ss_size = kStackBytes;
            f.ctx.uc_link = &scheduler_;
            makecontext(&f.ctx, (void (*)())entry, 1, (int)i);
            f.done = false;
            queue_.push_back(i);
        }
        // A fiber is queued each time it is unparked; it may have run on meanwhile (a thread
        // that unparks itself to unwind), so finished ones are skipped and one that finds
        // itself still parked yields again (Block::park_thread).
        for (size_t next = 0; next < queue_.size(); next++) {
            unsigned t = queue_[next];
            if (!fibers_[t].done) {
                swapcontext(&scheduler_, &fibers_[t].ctx);
            }
        }
        body_ = nullptr;
        for (unsigned i = 0; i < n; i++) {
            if (!fibers_[i].done) {
                // Block's deadlock detection unparks every thread before this can happen.
                throw std::runtime_error("internal error: fibers left parked at the end of a block");
            }
        }
    }

    // From fiber tid: back to the scheduler until it is resumed. The built-in variables and
    // the thread context are per OS thread, so they are saved and restored around the switch.
    void yield(unsigned tid);

    void enqueue(unsigned tid) { queue_.push_back(tid); }

  private:
    static constexpr size_t kStackBytes = 256 << 10;

    struct Fiber {
        ucontext_t ctx;  // never moved (it points into itself): fibers_ is a fixed array
        char* stack = nullptr;
        bool done = true;
    };

    // A stack with an inaccessible guard page below it, so an overflow faults.
    static char* allocate_stack() {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        void* p = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
        if (p == MAP_FAILED) {
            throw std::runtime_error("cannot map a fiber stack");
        }
        mprotect(p, page, PROT_NONE);
        return (char*)p + page;
    }

    static void entry(int tid);

    ucontext_t scheduler_;
    Fiber fibers_[kMaxThreads];
    std::vector<unsigned> queue_;
    const std::function<void(unsigned)>* body_ = nullptr;
};

Fibers* g_fibers;  // created at the first fiber launch, never freed

void Fibers::entry(int tid) {
    Fibers& f = *g_fibers;
    (*f.body_)((unsigned)tid);  // never throws (see run_threaded)
    f.fibers_[tid].done = true;
    // Returning resumes uc_link: the scheduler.
}

void Fibers::yield(unsigned tid) {
    Ctx* ctx = t_ctx;
    uint3 ti = threadIdx, bi = blockIdx, bd = blockDim, gd = gridDim;
    swapcontext(&fibers_[tid].ctx, &scheduler_);
    t_ctx = ctx;
    threadIdx = ti;
    blockIdx = bi;
    blockDim = bd;
    gridDim = gd;
}
#endif

void Block::wake(const Wake& wake) {
    for (const auto& [t, s] : wake) {
#if MLP_GPU_EMU_FIBERS
        if (fibers) {
            parkers[t].state = s;
            g_fibers->enqueue(t);
            continue;
        }
#endif
        parkers[t].unpark(s);
    }
}

int Block::park_thread(unsigned tid) {
#if MLP_GPU_EMU_FIBERS
    if (fibers) {
        while (parkers[tid].state == 0) {
            g_fibers->yield(tid);
        }
        int s = parkers[tid].state;
        parkers[tid].state = 0;
        return s;
    }
#endif
    return parkers[tid].park();
}

// ---- The kernel table and argument unpacking ----

template <typename T>
constexpr bool kAlwaysFalse = false;

// One argument word as the kernel's parameter type T.
template <typename T>
T arg_as(uint64_t w) {
    if constexpr (std::is_pointer_v<T>) {
        return reinterpret_cast<T>(static_cast<uintptr_t>(w));
    } else if constexpr (std::is_same_v<T, int>) {
        return static_cast<int>(static_cast<uint32_t>(w));
    } else if constexpr (std::is_same_v<T, float>) {
        return from_bits<float>(static_cast<uint32_t>(w));
    } else {
        static_assert(kAlwaysFalse<T>, "kernel parameters must be pointers, int or float");
    }
}

template <typename... Ps>
constexpr size_t arity(void (*)(Ps...)) {
    return sizeof...(Ps);
}

template <typename... Ps, size_t... Is>
void call(void (*f)(Ps...), const uint64_t* args, std::index_sequence<Is...>) {
    f(arg_as<Ps>(args[Is])...);
}

// The parameter types are deduced from the kernel itself, so unpacking cannot drift from
// kernels.cu.
template <auto F>
void invoke(const uint64_t* args) {
    call(F, args, std::make_index_sequence<arity(F)>{});
}

enum class Sync {
    Loop,     // no barrier or warp operation: threads run as a loop on the calling thread
    Threads,  // __syncthreads or warp operations: one OS thread per CUDA thread
};

struct Entry {
    const char* name;
    size_t params;
    void (*invoke)(const uint64_t*);
    Sync sync;
};

#define EMU_KERNEL(name, sync) Entry{#name, arity(&name), &invoke<&name>, sync}

// Every kernel of kernels.cu. Sync::Threads: those that call __syncthreads (directly or via
// column_sum) or warp operations (via warp_sum / warp_max / warp_argmax / warp_correct).
const Entry kKernels[] = {
    EMU_KERNEL(gather, Sync::Loop),
    EMU_KERNEL(bias_act, Sync::Loop),
    EMU_KERNEL(act_backward, Sync::Loop),
    EMU_KERNEL(bn_train, Sync::Threads),     // column_sum: __syncthreads
    EMU_KERNEL(bn_backward, Sync::Threads),  // column_sum: __syncthreads
    EMU_KERNEL(bn_eval, Sync::Loop),
    EMU_KERNEL(loss_train, Sync::Threads),   // warp shuffles, __syncwarp
    EMU_KERNEL(loss_eval, Sync::Threads),    // warp shuffles, __syncwarp
    EMU_KERNEL(finish_loss, Sync::Threads),  // __syncthreads
    EMU_KERNEL(sum_squares, Sync::Threads),  // __syncthreads
    EMU_KERNEL(clip_coef, Sync::Threads),    // __syncthreads
    EMU_KERNEL(optimizer_update, Sync::Loop),
    EMU_KERNEL(advance, Sync::Loop),
    // The emulator's own tests (see above).
    EMU_KERNEL(emu_selftest_barrier_in_loop, Sync::Loop),
    EMU_KERNEL(emu_selftest_early_exit, Sync::Threads),
    EMU_KERNEL(emu_selftest_divergent, Sync::Threads),
    EMU_KERNEL(emu_selftest_read_exited, Sync::Threads),
};

#undef EMU_KERNEL

// ---- Launching ----

struct LaunchError {
    int code;
    std::string message;
};

std::mutex g_launch;  // serializes launches
Pool* g_pool;         // created at the first threaded launch, never freed
Block* g_block;       // created at the first launch of a Sync::Threads kernel, never freed

// How a launch runs its blocks' threads.
enum class Mode {
    Loop,     // one after another on the launching thread
    Fibers,   // one fiber each on the launching thread, switching at barriers
    Threads,  // one pool OS thread each
};

// MLP_GPU_EMU_THREADS, read at the first launch: unset (Sync::Threads kernels as fibers, or
// as OS threads in the sanitizer builds; the others as a loop), "threads" (Sync::Threads
// kernels on OS threads, the others as a loop) or "all" (every kernel on OS threads).
enum class ThreadsEnv { Unread, Unset, Threads, All, Invalid };
ThreadsEnv g_threads_env = ThreadsEnv::Unread;

Mode mode_for(Sync sync) {
    if (g_threads_env == ThreadsEnv::All) {
        return Mode::Threads;
    }
    if (sync == Sync::Loop) {
        return Mode::Loop;
    }
    return MLP_GPU_EMU_FIBERS && g_threads_env == ThreadsEnv::Unset ? Mode::Fibers : Mode::Threads;
}

void set_builtins(uint3 grid, uint3 block, uint3 bidx, unsigned tid) {
    gridDim = grid;
    blockDim = block;
    blockIdx = bidx;
    threadIdx = uint3{tid % block.x, tid / block.x % block.y, tid / (block.x * block.y)};
}

// Runs one block's threads as a loop on this thread.
void run_loop(const Entry& e, const uint64_t* args, uint3 grid, uint3 block, uint3 bidx) {
    unsigned n = block.x * block.y * block.z;
    for (unsigned tid = 0; tid < n; tid++) {
        set_builtins(grid, block, bidx, tid);
        Ctx ctx{e.name, nullptr, tid};
        t_ctx = &ctx;
        try {
            e.invoke(args);
        } catch (LoopFailure& f) {
            t_ctx = nullptr;
            throw LaunchError{2, std::move(f.message)};
        } catch (...) {
            t_ctx = nullptr;
            throw;
        }
        t_ctx = nullptr;
    }
}

// Runs one block with one pool thread (or fiber) per CUDA thread.
void run_threaded(const Entry& e, const uint64_t* args, uint3 grid, uint3 block, uint3 bidx, bool fibers) {
    Block& b = *g_block;
    b.reset(e.name, bidx, block);
    b.fibers = fibers;
    std::function<void(unsigned)> body = [&](unsigned tid) {
        set_builtins(grid, block, bidx, tid);
        Ctx ctx{e.name, &b, tid};
        t_ctx = &ctx;
        try {
            e.invoke(args);
        } catch (Abort&) {
        } catch (std::exception& ex) {
            b.record(b.where(tid) + ": exception: " + ex.what());
        } catch (...) {
            b.record(b.where(tid) + ": unknown exception");
        }
        t_ctx = nullptr;
        b.exit(tid);
    };
#if MLP_GPU_EMU_FIBERS
    if (fibers) {
        g_fibers->run(b.threads, body);
    } else {
        g_pool->run(b.threads, body);
    }
#else
    g_pool->run(b.threads, body);
#endif
    if (b.failed) {
        throw LaunchError{2, b.error};
    }
}

void launch(const char* name, size_t name_len, const unsigned* grid_p, const unsigned* block_p,
            const uint64_t* args, size_t nargs) {
    std::string n(name ? name : "", name ? name_len : 0);
    const Entry* e = nullptr;
    for (const Entry& k : kKernels) {
        if (n == k.name) {
            e = &k;
        }
    }
    if (!e) {
        std::string all;
        for (const Entry& k : kKernels) {
            all += all.empty() ? "" : ", ";
            all += k.name;
        }
        throw LaunchError{1, "unknown kernel '" + n + "' (the emulator has: " + all + ")"};
    }
    if (nargs != e->params) {
        throw LaunchError{1, "kernel " + n + " takes " + std::to_string(e->params) + " arguments, got " +
                                 std::to_string(nargs)};
    }
    if (nargs > 0 && !args) {
        throw LaunchError{1, "kernel " + n + ": null argument array"};
    }
    if (!grid_p || !block_p) {
        throw LaunchError{1, "kernel " + n + ": null grid or block"};
    }
    uint3 grid{grid_p[0], grid_p[1], grid_p[2]};
    uint3 block{block_p[0], block_p[1], block_p[2]};
    char buf[256];
    snprintf(buf, sizeof buf, "kernel %s: grid (%u,%u,%u), block (%u,%u,%u): ", n.c_str(), grid.x, grid.y, grid.z,
             block.x, block.y, block.z);
    std::string dims = buf;
    if (!grid.x || !grid.y || !grid.z || !block.x || !block.y || !block.z) {
        throw LaunchError{1, dims + "a zero-sized grid or block"};
    }
    uint64_t threads = (uint64_t)block.x * block.y * block.z;
    if (threads > kMaxThreads || block.z > 64) {
        throw LaunchError{1, dims + "more than 1024 threads per block, or blockDim.z > 64"};
    }
    if (grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535) {
        throw LaunchError{1, dims + "gridDim beyond CUDA's limits (2^31-1, 65535, 65535)"};
    }
    if (g_threads_env == ThreadsEnv::Unread) {
        const char* v = getenv("MLP_GPU_EMU_THREADS");
        g_threads_env = !v || !*v                   ? ThreadsEnv::Unset
                        : strcmp(v, "threads") == 0 ? ThreadsEnv::Threads
                        : strcmp(v, "all") == 0     ? ThreadsEnv::All
                                                    : ThreadsEnv::Invalid;
    }
    if (g_threads_env == ThreadsEnv::Invalid) {
        throw LaunchError{1, "MLP_GPU_EMU_THREADS must be unset, 'threads' or 'all'"};
    }
    Mode mode = mode_for(e->sync);
    if (mode != Mode::Loop && !g_block) {
        g_block = new Block();
    }
    if (mode == Mode::Threads && !g_pool) {
        g_pool = new Pool();
    }
#if MLP_GPU_EMU_FIBERS
    if (mode == Mode::Fibers && !g_fibers) {
        g_fibers = new Fibers();
    }
#endif
    for (unsigned z = 0; z < grid.z; z++) {
        for (unsigned y = 0; y < grid.y; y++) {
            for (unsigned x = 0; x < grid.x; x++) {
                uint3 bidx{x, y, z};
                if (mode == Mode::Loop) {
                    run_loop(*e, args, grid, block, bidx);
                } else {
                    run_threaded(*e, args, grid, block, bidx, mode == Mode::Fibers);
                }
            }
        }
    }
}

}  // namespace

void syncthreads() {
    Ctx& c = current();
    if (!c.block) {
        loop_mode_violation(c, "__syncthreads()");
    }
    Block& b = *c.block;
    std::unique_lock<std::mutex> lk(b.m);
    if (b.failed) {
        throw Abort{};
    }
    if (b.waiters.size() + 1 == b.live) {
        Wake wk;
        b.release_locked(b.waiters, wk);
        lk.unlock();
        b.wake(wk);
        return;
    }
    b.waiters.push_back(c.tid);
    b.park(lk, c.tid);
}

void syncwarp(unsigned mask) { warp_op(WarpOp::Sync, mask, 0, 0, (int)kWarpSize); }

uint32_t shfl_xor(unsigned mask, uint32_t bits, int lane_mask, int width) {
    return warp_op(WarpOp::Shuffle, mask, bits, lane_mask, width);
}

}  // namespace cuda_emu

// Runs kernel `name` (name_len bytes, not NUL-terminated) of kernels.cu with grid[3] and
// block[3], args[nargs] one word per parameter: a pointer is its address, an int the i32 in
// the low 32 bits, a float its f32 bits in the low 32 bits. Returns 0 when the kernel ran; 1
// for a launch that was refused (unknown kernel, wrong argument count, bad grid or block); 2
// when the kernel failed while running (a barrier in a kernel marked loop-mode, a deadlock, a
// shuffle from an exited lane, ...). On error, `err` (err_len bytes) receives a NUL-terminated
// message, truncated to fit.
extern "C" __attribute__((visibility("default"))) int mlp_emu_launch(const char* name, size_t name_len,
                                                                     const unsigned* grid, const unsigned* block,
                                                                     const uint64_t* args, size_t nargs, char* err,
                                                                     size_t err_len) {
    int code = 0;
    std::string message;
    try {
        std::lock_guard<std::mutex> lk(cuda_emu::g_launch);
        cuda_emu::launch(name, name_len, grid, block, args, nargs);
    } catch (cuda_emu::LaunchError& e) {
        code = e.code;
        message = std::move(e.message);
    } catch (std::exception& e) {
        code = 3;
        message = std::string("emulator error: ") + e.what();
    } catch (...) {
        code = 3;
        message = "emulator error: unknown exception";
    }
    if (code != 0 && err && err_len > 0) {
        size_t n = message.size() < err_len - 1 ? message.size() : err_len - 1;
        memcpy(err, message.data(), n);
        err[n] = '\0';
    }
    return code;
}

// Sanitizer defaults for the instrumented builds (build.rs's MLP_GPU_EMU_SANITIZE); the
// ASAN_OPTIONS / TSAN_OPTIONS environment variables still override them.
#if defined(__SANITIZE_ADDRESS__)
extern "C" __attribute__((visibility("default"))) const char* __asan_default_options() {
    return "halt_on_error=1";
}
#endif
#if defined(__SANITIZE_THREAD__)
// ignore_interceptors_accesses: the Rust code (test harness, std, the emulator's buffers) is
// not instrumented, so TSan sees its memcpy, calloc and free (which it intercepts) but not
// the atomics that order them, and reports races inside Rust's standard library (its test
// channel, Arc). Accesses inside interceptors are therefore ignored; the kernels' own loads
// and stores are instrumented and still checked, and the mutexes still order them.
extern "C" __attribute__((visibility("default"))) const char* __tsan_default_options() {
    return "halt_on_error=1:ignore_interceptors_accesses=1";
}
#endif
