// A fake libcuda.so.1: the CUDA driver API entry points that fmgpu binds
// (internal/cudadriver), answered by the kernelsim harness. Loaded in place
// of the NVIDIA driver (FMGPU_LIBCUDA=.../libcuda.so.1), it lets the real
// launcher of package gpu, its dlopen binding, its locked driver thread and
// its argument marshalling, run the conformance suite and training on a
// machine without a GPU: cuLaunchKernel unpacks the kernel parameters by
// the kernel's C++ signature and runs the host-compiled kernel.
//
// It keeps the driver's rules that a launcher can get wrong: every call but
// the device queries needs cuInit first and a context current on the
// calling thread; a launch must fit the device's registers and shared
// memory with the kernel's figures from ptxas-report.txt (dynamic shared
// memory above 48 KiB needs cuFuncSetAttribute), else it is refused; a
// failed launch makes the context unusable (every later call returns the
// launch's error, as after a real kernel fault); stream capture records
// launches and a graph replays them. Kernels run with the checks of the
// harness (kernels/README.md, "Checks"; sampled over repeated launches as
// in the kernelsim backend): a race, an out-of-bounds or
// misaligned access, an uninitialised shared read or a divergent barrier
// fails the launch with the harness's message on stderr.
//
// Environment, for the tests of the start-up paths:
//   FMGPU_FAKECUDA_INIT=N     cuInit returns CUresult N (100: no device)
//   FMGPU_FAKECUDA_DEVICES=N  N devices (default 1)
//   FMGPU_FAKECUDA_CC=M.m     compute capability (default 9.0); below 8.0
//                             cuModuleLoadData fails with
//                             CUDA_ERROR_NO_BINARY_FOR_GPU, as the fatbin
//                             carries SASS for sm_80/sm_90 and PTX for
//                             compute_90 only
//   FMGPU_FAKECUDA_MEM=BYTES  device memory (default 16 GiB)
//   FMGPU_FAKECUDA_CHECKS=N   the harness's optional checks (SIM_CHECK_*
//                             bits of sim_api.h; default 3, every one)
//   FMGPU_FAKECUDA_CHECK_EVERY=N  after a launch configuration's first 4
//                             launches, check one in N (default 16; 1: all)
//   CUDA_VISIBLE_DEVICES      honoured as the driver does ("" = none)

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "../sim_api.h"

// ptxas-report.txt, compiled in by internal/fakecuda.
extern "C" const char fmgpu_fake_ptxas_report[];

namespace {

typedef int CUresult;
enum : CUresult {
    OK = 0,
    INVALID_VALUE = 1,
    OUT_OF_MEMORY = 2,
    NOT_INITIALIZED = 3,
    NO_DEVICE = 100,
    INVALID_DEVICE = 101,
    INVALID_IMAGE = 200,
    INVALID_CONTEXT = 201,
    NO_BINARY_FOR_GPU = 209,
    INVALID_HANDLE = 400,
    NOT_FOUND = 500,
    NOT_READY = 600,
    LAUNCH_OUT_OF_RESOURCES = 701,
    LAUNCH_FAILED = 719,
    STREAM_CAPTURE_UNSUPPORTED = 900,
    STREAM_CAPTURE_INVALIDATED = 901,
    STREAM_CAPTURE_UNMATCHED = 903,
    UNKNOWN = 999,
};

struct ErrorText {
    CUresult code;
    const char* name;
    const char* desc;
};
const ErrorText kErrors[] = {
    {OK, "CUDA_SUCCESS", "no error"},
    {INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {NO_BINARY_FOR_GPU, "CUDA_ERROR_NO_BINARY_FOR_GPU", "no kernel image is available for execution on the device"},
    {INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {NOT_READY, "CUDA_ERROR_NOT_READY", "device not ready"},
    {LAUNCH_OUT_OF_RESOURCES, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", "too many resources requested for launch"},
    {LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
    {STREAM_CAPTURE_UNSUPPORTED, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED", "operation not permitted when stream is capturing"},
    {STREAM_CAPTURE_INVALIDATED, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED", "operation failed due to a previous error during capture"},
    {STREAM_CAPTURE_UNMATCHED, "CUDA_ERROR_STREAM_CAPTURE_UNMATCHED", "operation not permitted on an event last recorded in a capturing stream"},
    {UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

const size_t kDefaultSharedLimit = 48 * 1024;
const size_t kOptinSharedLimit = 227 * 1024;  // sm_90 (the harness checks the device's own)

// A recorded launch of a captured stream: the kernel and its argument
// values, copied at capture time as the driver copies kernel parameters.
struct Launch {
    int fn;
    unsigned grid[3], block[3];
    size_t shared;
    std::vector<uint64_t> slots;
};

struct Graph {
    std::vector<Launch> launches;
};

struct Func {
    size_t max_dynamic_shared = kDefaultSharedLimit;
};

std::mutex g_mu;  // guards the state below; launches themselves are serialized by the harness
bool g_init = false;
CUresult g_sticky = OK;  // a failed launch poisons the context, as a kernel fault does
int g_retains = 0;
thread_local void* t_current = nullptr;  // the context current on this thread
std::vector<Func> g_funcs;  // index: kernel table index
bool g_capturing = false;
bool g_capture_invalid = false;  // a forbidden call was made during the capture
uintptr_t g_capture_stream = 0;
Graph* g_capture = nullptr;
int g_next_stream = 1;

int env_int(const char* name, int def) {
    const char* v = getenv(name);
    return v && *v ? atoi(v) : def;
}

int device_count() {
    const char* vis = getenv("CUDA_VISIBLE_DEVICES");
    if (vis && *vis == 0) return 0;
    int n = env_int("FMGPU_FAKECUDA_DEVICES", 1);
    if (vis && (strcmp(vis, "-1") == 0 || strcmp(vis, "none") == 0)) return 0;
    return n < 0 ? 0 : n;
}

void compute_capability(int* major, int* minor) {
    const char* v = getenv("FMGPU_FAKECUDA_CC");
    *major = 9;
    *minor = 0;
    if (v && *v) sscanf(v, "%d.%d", major, minor);
}

// capture_forbids answers a call that a stream capture forbids (a
// synchronization, an allocation, a copy on the legacy stream) while one
// is under way: the driver refuses it and invalidates the capture.
CUresult capture_forbids() {
    std::lock_guard<std::mutex> g(g_mu);
    if (!g_capturing) return OK;
    g_capture_invalid = true;
    return STREAM_CAPTURE_UNSUPPORTED;
}

// need checks what every context-bound call needs.
CUresult need_context() {
    if (!g_init) return NOT_INITIALIZED;
    if (!t_current) return INVALID_CONTEXT;
    return g_sticky;
}

const char* sig_of(int fn) { return sim_kernel_sig(fn); }

size_t slot_bytes(char c) { return (c == 'i' || c == 'u' || c == 'f') ? 4 : 8; }

CUresult run(const Launch& l) {
    char err[1024];
    std::string sig = sig_of(l.fn);
    if (sim_launch(sim_kernel_name(l.fn), l.grid, l.block, l.shared, l.slots.data(), (int)l.slots.size(), sig.c_str(),
                   err, sizeof err) != 0) {
        fprintf(stderr, "fake libcuda: %s\n", err);
        g_sticky = LAUNCH_FAILED;
        return LAUNCH_FAILED;
    }
    return OK;
}

}  // namespace

extern "C" {

typedef uint64_t CUdeviceptr;

CUresult cuGetErrorName(CUresult e, const char** s) {
    for (const auto& t : kErrors)
        if (t.code == e) {
            *s = t.name;
            return OK;
        }
    *s = nullptr;
    return INVALID_VALUE;
}

CUresult cuGetErrorString(CUresult e, const char** s) {
    for (const auto& t : kErrors)
        if (t.code == e) {
            *s = t.desc;
            return OK;
        }
    *s = nullptr;
    return INVALID_VALUE;
}

CUresult cuInit(unsigned flags) {
    if (flags != 0) return INVALID_VALUE;
    int forced = env_int("FMGPU_FAKECUDA_INIT", 0);
    if (forced != 0) return forced;
    if (device_count() == 0) return NO_DEVICE;
    std::lock_guard<std::mutex> g(g_mu);
    if (!g_init) {
        g_init = true;
        // Every check of the harness (kernels/README.md, "Checks"), unless
        // FMGPU_FAKECUDA_CHECKS says otherwise (SIM_CHECK_* bits).
        sim_configure(env_int("FMGPU_FAKECUDA_THREADS", 0), 2, 1,
                      env_int("FMGPU_FAKECUDA_CHECKS", SIM_CHECK_RACE | SIM_CHECK_INIT));
        // Sampled as the kernelsim backend's (gpu/kernelsim.go): each launch
        // configuration's first 4 launches, then one in 16.
        sim_set_sampling(4, env_int("FMGPU_FAKECUDA_CHECK_EVERY", 16));
        char err[256];
        if (sim_load_ptxas_report(fmgpu_fake_ptxas_report, strlen(fmgpu_fake_ptxas_report), err, sizeof err) != 0) {
            fprintf(stderr, "fake libcuda: %s\n", err);
            return UNKNOWN;
        }
        int major, minor;
        compute_capability(&major, &minor);
        sim_set_arch(major * 10);  // sm_80 SASS runs on 8.x, sm_90 on 9.x
        g_funcs.assign(sim_kernel_count(), Func{});
    }
    return OK;
}

CUresult cuDriverGetVersion(int* v) {
    if (!v) return INVALID_VALUE;
    *v = 12040;
    return OK;
}

CUresult cuDeviceGetCount(int* n) {
    if (!g_init) return NOT_INITIALIZED;
    *n = device_count();
    return OK;
}

CUresult cuDeviceGet(int* dev, int ordinal) {
    if (!g_init) return NOT_INITIALIZED;
    if (ordinal < 0 || ordinal >= device_count()) return INVALID_DEVICE;
    *dev = ordinal;
    return OK;
}

CUresult cuDeviceGetName(char* name, int len, int dev) {
    if (!g_init) return NOT_INITIALIZED;
    if (dev < 0 || dev >= device_count()) return INVALID_DEVICE;
    snprintf(name, (size_t)len, "fmgpu kernelsim (fake libcuda)");
    return OK;
}

CUresult cuDeviceGetAttribute(int* v, int attr, int dev) {
    if (!g_init) return NOT_INITIALIZED;
    if (dev < 0 || dev >= device_count()) return INVALID_DEVICE;
    int major, minor;
    compute_capability(&major, &minor);
    switch (attr) {
        case 1: *v = 1024; break;                   // max threads per block
        case 8: *v = (int)kDefaultSharedLimit; break;  // shared per block
        case 10: *v = 32; break;                    // warp size
        case 12: *v = 65536; break;                 // registers per block
        case 13: *v = 1980000; break;               // SM clock, kHz (H100/H200 boost)
        case 16: *v = 132; break;                   // multiprocessors
        case 36: *v = 2619000; break;               // memory clock, kHz
        case 37: *v = 6144; break;                  // bus width, bits
        case 38: *v = 50 << 20; break;              // L2 bytes
        case 39: *v = 2048; break;                  // threads per SM
        case 75: *v = major; break;
        case 76: *v = minor; break;
        case 81: *v = 228 * 1024; break;            // shared per SM
        case 82: *v = 65536; break;                 // registers per SM
        case 97: *v = (int)kOptinSharedLimit; break;
        default: *v = 0; break;
    }
    return OK;
}

CUresult cuDeviceTotalMem_v2(size_t* bytes, int dev) {
    if (!g_init) return NOT_INITIALIZED;
    if (dev < 0 || dev >= device_count()) return INVALID_DEVICE;
    const char* m = getenv("FMGPU_FAKECUDA_MEM");
    *bytes = m && *m ? (size_t)strtoull(m, nullptr, 10) : ((size_t)16 << 30);
    return OK;
}

CUresult cuDevicePrimaryCtxRetain(void** ctx, int dev) {
    if (!g_init) return NOT_INITIALIZED;
    if (dev < 0 || dev >= device_count()) return INVALID_DEVICE;
    std::lock_guard<std::mutex> g(g_mu);
    g_retains++;
    *ctx = (void*)(uintptr_t)(0x1000 + dev);
    return OK;
}

CUresult cuDevicePrimaryCtxRelease_v2(int dev) {
    if (!g_init) return NOT_INITIALIZED;
    std::lock_guard<std::mutex> g(g_mu);
    if (g_retains == 0) return INVALID_CONTEXT;
    if (--g_retains == 0) g_sticky = OK;  // the primary context is reset when its last retain goes
    return OK;
}

CUresult cuCtxSetCurrent(void* ctx) {
    if (!g_init) return NOT_INITIALIZED;
    t_current = ctx;
    return OK;
}

CUresult cuCtxGetCurrent(void** ctx) {
    if (!g_init) return NOT_INITIALIZED;
    if (!ctx) return INVALID_VALUE;
    *ctx = t_current;
    return OK;
}

CUresult cuCtxSynchronize(void) {
    if (CUresult r = need_context()) return r;
    return capture_forbids();
}

CUresult cuModuleLoadData(void** mod, const void* image) {
    if (CUresult r = need_context()) return r;
    if (!image) return INVALID_VALUE;
    uint32_t magic;
    memcpy(&magic, image, 4);
    if (magic != 0xBA55ED50u) return INVALID_IMAGE;  // a fatbin starts with this
    int major, minor;
    compute_capability(&major, &minor);
    if (major < 8) return NO_BINARY_FOR_GPU;
    *mod = (void*)(uintptr_t)0x2000;
    return OK;
}

CUresult cuModuleUnload(void* mod) {
    if (CUresult r = need_context()) return r;
    return mod == (void*)(uintptr_t)0x2000 ? OK : INVALID_HANDLE;
}

CUresult cuModuleGetFunction(void** fn, void* mod, const char* name) {
    if (CUresult r = need_context()) return r;
    if (mod != (void*)(uintptr_t)0x2000) return INVALID_HANDLE;
    for (int i = 0; i < sim_kernel_count(); i++)
        if (strcmp(sim_kernel_name(i), name) == 0) {
            *fn = (void*)(uintptr_t)(i + 1);
            return OK;
        }
    return NOT_FOUND;
}

static int func_index(void* fn) {
    intptr_t i = (intptr_t)(uintptr_t)fn - 1;
    return (i >= 0 && i < sim_kernel_count()) ? (int)i : -1;
}

// The kernel's figures from the ptxas report for the device's architecture.
static bool resources(int fn, int* regs, int* smem, int* stack) {
    int major, minor;
    compute_capability(&major, &minor);
    return sim_kernel_resources(sim_kernel_name(fn), major * 10, regs, smem, stack) == 0;
}

CUresult cuFuncGetAttribute(int* v, int attr, void* fn) {
    if (CUresult r = need_context()) return r;
    int i = func_index(fn);
    if (i < 0) return INVALID_HANDLE;
    int regs = 0, smem = 0, stack = 0;
    resources(i, &regs, &smem, &stack);
    switch (attr) {
        case 0: {  // max threads per block: what the registers allow (warps allocate in 256s)
            int per_warp = (regs * 32 + 255) / 256 * 256;
            int warps = per_warp > 0 ? 65536 / per_warp : 32;
            *v = warps >= 32 ? 1024 : warps * 32;
            break;
        }
        case 1: *v = smem; break;   // static shared memory
        case 3: *v = stack; break;  // local memory per thread
        case 4: *v = regs; break;   // registers per thread
        case 8: *v = (int)g_funcs[i].max_dynamic_shared; break;
        default: *v = 0; break;
    }
    return OK;
}

CUresult cuFuncSetAttribute(void* fn, int attr, int value) {
    if (CUresult r = need_context()) return r;
    int i = func_index(fn);
    if (i < 0) return INVALID_HANDLE;
    if (attr == 8) {
        char err[256];
        if (value < 0 || sim_set_max_dynamic_shared(sim_kernel_name(i), (size_t)value, err, sizeof err) != 0)
            return INVALID_VALUE;
        g_funcs[i].max_dynamic_shared = (size_t)value;
    }
    return OK;
}

CUresult cuLaunchKernel(void* fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned shared, void* stream, void** params, void** extra) {
    if (CUresult r = need_context()) return r;
    int i = func_index(fn);
    if (i < 0) return INVALID_HANDLE;
    if (extra) return INVALID_VALUE;  // fmgpu passes arguments through params only
    const unsigned grid[3] = {gx, gy, gz}, block[3] = {bx, by, bz};
    char err[1024];
    if (sim_launch_check(sim_kernel_name(i), grid, block, shared, err, sizeof err) != 0) {
        // Refused before it runs, as the driver does: the context stays usable.
        fprintf(stderr, "fake libcuda: %s\n", err);
        return strncmp(err, "resources:", 10) == 0 ? LAUNCH_OUT_OF_RESOURCES : INVALID_VALUE;
    }
    Launch l;
    l.fn = i;
    l.grid[0] = gx, l.grid[1] = gy, l.grid[2] = gz;
    l.block[0] = bx, l.block[1] = by, l.block[2] = bz;
    l.shared = shared;
    const char* sig = sig_of(i);
    size_t n = strlen(sig);
    if (n > 0 && !params) return INVALID_VALUE;
    l.slots.assign(n, 0);
    for (size_t a = 0; a < n; a++) memcpy(&l.slots[a], params[a], slot_bytes(sig[a]));
    std::lock_guard<std::mutex> g(g_mu);
    if (g_capturing && (uintptr_t)stream == g_capture_stream) {
        g_capture->launches.push_back(l);
        return OK;
    }
    return run(l);
}

CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes) {
    if (CUresult r = need_context()) return r;
    if (CUresult r = capture_forbids()) return r;
    if (bytes == 0) return INVALID_VALUE;
    *p = sim_alloc(bytes);
    return *p ? OK : OUT_OF_MEMORY;
}

CUresult cuMemFree_v2(CUdeviceptr p) {
    if (CUresult r = need_context()) return r;
    if (CUresult r = capture_forbids()) return r;
    sim_free(p);
    return OK;
}

CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    if (CUresult r = need_context()) return r;
    size_t t;
    cuDeviceTotalMem_v2(&t, 0);
    *free_bytes = t, *total = t;
    return OK;
}

CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t bytes) {
    if (CUresult r = need_context()) return r;
    if (CUresult r = capture_forbids()) return r;
    sim_htod(dst, src, bytes);
    return OK;
}

CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t bytes) {
    if (CUresult r = need_context()) return r;
    if (CUresult r = capture_forbids()) return r;
    sim_dtoh(dst, src, bytes);
    return OK;
}

CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes) {
    if (CUresult r = need_context()) return r;
    if (CUresult r = capture_forbids()) return r;
    sim_dtod(dst, src, bytes);
    return OK;
}

CUresult cuMemsetD32_v2(CUdeviceptr dst, unsigned v, size_t n) {
    if (CUresult r = need_context()) return r;
    if (CUresult r = capture_forbids()) return r;
    sim_memset32(dst, v, n);
    return OK;
}

// The asynchronous copies are synchronous here (as with pageable host
// memory); inside a capture they are refused, since fmgpu captures only
// kernels.
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t bytes, void* stream) {
    if (g_capturing) return STREAM_CAPTURE_INVALIDATED;
    return cuMemcpyHtoD_v2(dst, src, bytes);
}

CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t bytes, void* stream) {
    if (g_capturing) return STREAM_CAPTURE_INVALIDATED;
    return cuMemcpyDtoH_v2(dst, src, bytes);
}

CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes, void* stream) {
    if (g_capturing) return STREAM_CAPTURE_INVALIDATED;
    return cuMemcpyDtoD_v2(dst, src, bytes);
}

CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned v, size_t n, void* stream) {
    if (g_capturing) return STREAM_CAPTURE_INVALIDATED;
    return cuMemsetD32_v2(dst, v, n);
}

CUresult cuStreamCreate(void** s, unsigned flags) {
    if (CUresult r = need_context()) return r;
    std::lock_guard<std::mutex> g(g_mu);
    *s = (void*)(uintptr_t)(0x3000 + g_next_stream++);
    return OK;
}

CUresult cuStreamDestroy_v2(void* s) { return need_context(); }

CUresult cuStreamSynchronize(void* s) {
    if (g_capturing && (uintptr_t)s == g_capture_stream) return STREAM_CAPTURE_INVALIDATED;
    return need_context();
}

struct FakeEvent {
    std::chrono::steady_clock::time_point t;
    bool recorded = false;
};

CUresult cuEventCreate(void** e, unsigned flags) {
    if (CUresult r = need_context()) return r;
    *e = new FakeEvent;
    return OK;
}

CUresult cuEventRecord(void* e, void* stream) {
    if (CUresult r = need_context()) return r;
    if (!e) return INVALID_HANDLE;
    if (g_capturing && (uintptr_t)stream == g_capture_stream) return STREAM_CAPTURE_UNMATCHED;
    auto* ev = (FakeEvent*)e;
    ev->t = std::chrono::steady_clock::now();
    ev->recorded = true;
    return OK;
}

CUresult cuEventSynchronize(void* e) {
    if (CUresult r = need_context()) return r;
    return e ? OK : INVALID_HANDLE;
}

// Every stream's work is complete when queued: a recorded event has
// completed, as has one never recorded.
CUresult cuEventQuery(void* e) {
    if (CUresult r = need_context()) return r;
    return e ? OK : INVALID_HANDLE;
}

CUresult cuEventElapsedTime(float* ms, void* start, void* end) {
    if (CUresult r = need_context()) return r;
    auto* a = (FakeEvent*)start;
    auto* b = (FakeEvent*)end;
    if (!a || !b) return INVALID_HANDLE;
    if (!a->recorded || !b->recorded) return NOT_READY;
    *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
    return OK;
}

CUresult cuEventDestroy_v2(void* e) {
    if (CUresult r = need_context()) return r;
    delete (FakeEvent*)e;
    return OK;
}

CUresult cuStreamBeginCapture_v2(void* s, int mode) {
    if (CUresult r = need_context()) return r;
    if (!s) return INVALID_VALUE;  // the legacy stream cannot be captured
    std::lock_guard<std::mutex> g(g_mu);
    if (g_capturing) return INVALID_VALUE;
    g_capturing = true;
    g_capture_invalid = false;
    g_capture_stream = (uintptr_t)s;
    g_capture = new Graph;
    return OK;
}

CUresult cuStreamEndCapture(void* s, void** graph) {
    if (CUresult r = need_context()) return r;
    std::lock_guard<std::mutex> g(g_mu);
    if (!g_capturing || (uintptr_t)s != g_capture_stream) return STREAM_CAPTURE_UNMATCHED;
    g_capturing = false;
    if (g_capture_invalid) {
        delete g_capture;
        g_capture = nullptr;
        *graph = nullptr;
        return STREAM_CAPTURE_INVALIDATED;
    }
    *graph = g_capture;
    g_capture = nullptr;
    return OK;
}

CUresult cuGraphInstantiateWithFlags(void** exec, void* graph, unsigned long long flags) {
    if (CUresult r = need_context()) return r;
    if (!graph) return INVALID_VALUE;
    *exec = new Graph(*(Graph*)graph);
    return OK;
}

CUresult cuGraphLaunch(void* exec, void* stream) {
    if (CUresult r = need_context()) return r;
    if (!exec) return INVALID_HANDLE;
    std::lock_guard<std::mutex> g(g_mu);
    for (const auto& l : ((Graph*)exec)->launches)
        if (CUresult r = run(l)) return r;
    return OK;
}

CUresult cuGraphExecDestroy(void* exec) {
    delete (Graph*)exec;
    return OK;
}

CUresult cuGraphDestroy(void* graph) {
    delete (Graph*)graph;
    return OK;
}

}  // extern "C"
