// A fake libnccl.so.2: the NCCL entry points fmgpu binds (package
// collective), reducing over POSIX shared memory between the processes
// of one machine. Loaded in place of NVIDIA's library
// (FMGPU_LIBNCCL=.../libnccl.so.2), it lets the real NCCL engine, its
// dlopen binding, its argument marshalling (the 128-byte id passed by value,
// the stream as the seventh argument) and its bootstrap over MPI or the TCP
// rendezvous, run on a machine without a GPU: "device" pointers are host
// addresses, as those of the fake libcuda (kernels/fakecuda).
//
// It keeps the rules a caller can get wrong: every rank must call the same
// collectives in the same order with the same count, datatype and root
// (the fake checks, where real NCCL would hang or mix data); only float32
// sums are reduced (what fmgpu uses); an aborted communicator fails every
// collective with ncclRemoteError on every rank, as a peer's failure does.
//
// A collective runs when called (the fake libcuda's streams are already
// complete), in chunks: each rank copies its chunk into its slot of the
// shared segment, a barrier, each rank sums the slots in rank order (the
// same bits on every rank), a barrier.
//
// Environment:
//   FMGPU_FAKENCCL_INIT_TIMEOUT_MS  how long ncclCommInitRank waits for
//                                   the other ranks (default 60000)

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef enum {
    ncclSuccess = 0,
    ncclUnhandledCudaError = 1,
    ncclSystemError = 2,
    ncclInternalError = 3,
    ncclInvalidArgument = 4,
    ncclInvalidUsage = 5,
    ncclRemoteError = 6,
    ncclInProgress = 7,
} ncclResult_t;

typedef struct {
    char internal[128];
} ncclUniqueId;

enum { ncclFloat32 = 7, ncclSum = 0 };

#define ID_MAGIC "fmgpu-fakenccl-1"
#define COMM_MAGIC 0x6e63636c66616b65ull  // "ncclfake"
#define MAX_RANKS 64
#define CHUNK_BYTES (1u << 18)  // per rank slot

enum { OP_NONE, OP_ALLREDUCE, OP_BROADCAST };

struct op_desc {
    int kind;
    int datatype;
    int root;
    int pad;
    uint64_t count;
};

struct shared {
    atomic_int nranks;  // set by the first rank to attach
    atomic_int attached;
    atomic_uint arrived;
    atomic_uint sense;
    atomic_int aborted_by;  // 1 + the rank that aborted; 0: none
    struct op_desc desc[MAX_RANKS];
    unsigned char slots[];  // nranks slots of CHUNK_BYTES
};

typedef struct fake_comm {
    uint64_t magic;
    int rank, nranks;
    struct shared* sh;
    size_t maplen;
    unsigned local_sense;
    atomic_int aborted;
    uint64_t ops;
    uintptr_t last_stream;
} * ncclComm_t;

static __thread char t_last_error[512];

static ncclResult_t fail(ncclResult_t r, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static ncclResult_t fail(ncclResult_t r, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t_last_error, sizeof t_last_error, fmt, ap);
    va_end(ap);
    return r;
}

static int env_int(const char* name, int def) {
    const char* v = getenv(name);
    return v && *v ? atoi(v) : def;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void pause_briefly(int spins) {
    if (spins < 64) {
        sched_yield();
    } else {
        struct timespec ts = {0, 20000};  // 20 us
        nanosleep(&ts, NULL);
    }
}

static int aborted(ncclComm_t c) { return atomic_load(&c->aborted) || atomic_load(&c->sh->aborted_by); }

// barrier is a sense-reversing barrier over the shared segment.
static ncclResult_t barrier(ncclComm_t c) {
    unsigned s = c->local_sense ^ 1u;
    c->local_sense = s;
    struct shared* sh = c->sh;
    if (atomic_fetch_add(&sh->arrived, 1) + 1 == (unsigned)c->nranks) {
        atomic_store(&sh->arrived, 0);
        atomic_store(&sh->sense, s);
        return ncclSuccess;
    }
    for (int i = 0; atomic_load(&sh->sense) != s; i++) {
        if (aborted(c)) {
            int by = atomic_load(&sh->aborted_by);
            return fail(ncclRemoteError, "communicator aborted (by rank %d)", by ? by - 1 : c->rank);
        }
        pause_briefly(i);
    }
    return ncclSuccess;
}

static size_t type_size(int datatype) {
    switch (datatype) {
        case 0: case 1: return 1;   // int8, uint8
        case 2: case 3: return 4;   // int32, uint32
        case 4: case 5: return 8;   // int64, uint64
        case 6: case 9: return 2;   // float16, bfloat16
        case 7: return 4;           // float32
        case 8: return 8;           // float64
    }
    return 0;
}

static const char* op_name(int kind) { return kind == OP_ALLREDUCE ? "ncclAllReduce" : "ncclBroadcast"; }

static ncclResult_t check_comm(ncclComm_t c) {
    if (!c || c->magic != COMM_MAGIC) return fail(ncclInvalidArgument, "invalid communicator");
    if (aborted(c)) return fail(ncclRemoteError, "communicator aborted");
    return ncclSuccess;
}

// agree checks that every rank called the same collective.
static ncclResult_t agree(ncclComm_t c, const struct op_desc* me) {
    c->sh->desc[c->rank] = *me;
    ncclResult_t r = barrier(c);
    if (r) return r;
    ncclResult_t bad = ncclSuccess;
    for (int i = 0; i < c->nranks && !bad; i++) {
        const struct op_desc* o = &c->sh->desc[i];
        if (o->kind != me->kind || o->count != me->count || o->datatype != me->datatype || o->root != me->root)
            bad = fail(ncclInvalidUsage, "rank %d called %s(count %llu, datatype %d, root %d) while rank %d called %s(count %llu, datatype %d, root %d)",
                       c->rank, op_name(me->kind), (unsigned long long)me->count, me->datatype, me->root, i, op_name(o->kind),
                       (unsigned long long)o->count, o->datatype, o->root);
    }
    // Nobody overwrites its description before every rank has read them.
    r = barrier(c);
    return bad ? bad : r;
}

static ncclResult_t run(ncclComm_t c, int kind, const void* send, void* recv, size_t count, int datatype, int root,
                        uintptr_t stream) {
    ncclResult_t r = check_comm(c);
    if (r) return r;
    size_t es = type_size(datatype);
    if (!es) return fail(ncclInvalidArgument, "unknown datatype %d", datatype);
    if (kind == OP_ALLREDUCE && datatype != ncclFloat32)
        return fail(ncclInvalidArgument, "the fake reduces float32 only (datatype %d)", datatype);
    if (root < 0 || root >= c->nranks) return fail(ncclInvalidArgument, "root %d out of range", root);
    if (count && (!recv || (!send && (kind == OP_ALLREDUCE || c->rank == root))))
        return fail(ncclInvalidArgument, "null buffer");
    c->ops++;
    c->last_stream = stream;
    struct op_desc me = {kind, datatype, root, 0, count};
    if ((r = agree(c, &me))) return r;
    size_t per = CHUNK_BYTES / es;
    for (size_t off = 0; off < count; off += per) {
        size_t n = count - off < per ? count - off : per;
        unsigned char* slot0 = c->sh->slots;
        unsigned char* mine = slot0 + (size_t)c->rank * CHUNK_BYTES;
        if (kind == OP_ALLREDUCE) {
            memcpy(mine, (const unsigned char*)send + off * es, n * es);
            if ((r = barrier(c))) return r;
            float* out = (float*)recv + off;
            for (size_t j = 0; j < n; j++) {
                float acc = ((const float*)slot0)[j];
                for (int i = 1; i < c->nranks; i++) acc += ((const float*)(slot0 + (size_t)i * CHUNK_BYTES))[j];
                out[j] = acc;
            }
        } else {
            if (c->rank == root) memcpy(slot0, (const unsigned char*)send + off * es, n * es);
            if ((r = barrier(c))) return r;
            if (c->rank != root || send != recv) memcpy((unsigned char*)recv + off * es, slot0, n * es);
        }
        if ((r = barrier(c))) return r;
    }
    return ncclSuccess;
}

ncclResult_t ncclGetVersion(int* version) {
    if (!version) return ncclInvalidArgument;
    *version = 21805;  // reports itself as NCCL 2.18.5
    return ncclSuccess;
}

const char* ncclGetErrorString(ncclResult_t r) {
    switch (r) {
        case ncclSuccess: return "no error";
        case ncclUnhandledCudaError: return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
        case ncclSystemError: return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
        case ncclInternalError: return "internal error - please report this issue to the NCCL developers";
        case ncclInvalidArgument: return "invalid argument (run with NCCL_DEBUG=WARN for details)";
        case ncclInvalidUsage: return "invalid usage (run with NCCL_DEBUG=WARN for details)";
        case ncclRemoteError: return "remote process exited or there was a network error";
        case ncclInProgress: return "NCCL operation in progress";
    }
    return "unknown result code";
}

const char* ncclGetLastError(ncclComm_t comm) {
    (void)comm;
    return t_last_error;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
    if (!id) return fail(ncclInvalidArgument, "null id");
    memset(id, 0, sizeof *id);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    static atomic_uint counter;
    unsigned long long salt = (unsigned long long)ts.tv_nsec ^ ((unsigned long long)ts.tv_sec << 20) ^ atomic_fetch_add(&counter, 1);
    snprintf(id->internal, sizeof id->internal, "%s/fmgpu-fakenccl-%d-%llx", ID_MAGIC, (int)getpid(), salt);
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* out, int nranks, ncclUniqueId id, int rank) {
    if (!out) return fail(ncclInvalidArgument, "null communicator pointer");
    *out = NULL;
    size_t ml = strlen(ID_MAGIC);
    if (strncmp(id.internal, ID_MAGIC, ml) != 0 || id.internal[ml] != '/' || !memchr(id.internal, 0, sizeof id.internal))
        return fail(ncclInvalidArgument, "not a unique id of ncclGetUniqueId");
    if (nranks < 1 || nranks > MAX_RANKS) return fail(ncclInvalidArgument, "nranks %d not in 1..%d", nranks, MAX_RANKS);
    if (rank < 0 || rank >= nranks) return fail(ncclInvalidArgument, "rank %d not in 0..%d", rank, nranks - 1);
    const char* name = id.internal + ml;
    int fd = shm_open(name, O_RDWR | O_CREAT, 0600);
    if (fd < 0) return fail(ncclSystemError, "shm_open %s: %s", name, strerror(errno));
    size_t len = sizeof(struct shared) + (size_t)nranks * CHUNK_BYTES;
    if (ftruncate(fd, (off_t)len) != 0) {
        close(fd);
        return fail(ncclSystemError, "ftruncate %s: %s", name, strerror(errno));
    }
    void* m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return fail(ncclSystemError, "mmap %s: %s", name, strerror(errno));
    struct shared* sh = (struct shared*)m;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&sh->nranks, &expected, nranks) && expected != nranks) {
        munmap(m, len);
        return fail(ncclInvalidUsage, "rank %d says nranks %d, another rank said %d", rank, nranks, expected);
    }
    ncclComm_t c = calloc(1, sizeof *c);
    c->magic = COMM_MAGIC;
    c->rank = rank;
    c->nranks = nranks;
    c->sh = sh;
    c->maplen = len;
    atomic_fetch_add(&sh->attached, 1);
    double deadline = now_ms() + env_int("FMGPU_FAKENCCL_INIT_TIMEOUT_MS", 60000);
    for (int i = 0; atomic_load(&sh->attached) < nranks; i++) {
        if (now_ms() > deadline || atomic_load(&sh->aborted_by)) {
            int n = atomic_load(&sh->attached);
            munmap(m, len);
            free(c);
            return fail(ncclSystemError, "only %d of %d ranks joined", n, nranks);
        }
        pause_briefly(i);
    }
    // Every rank has the segment mapped: its name is no longer needed.
    if (rank == 0) shm_unlink(name);
    *out = c;
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t c) {
    if (!c || c->magic != COMM_MAGIC) return fail(ncclInvalidArgument, "invalid communicator");
    c->magic = 0;
    munmap(c->sh, c->maplen);
    free(c);
    return ncclSuccess;
}

// ncclCommAbort may run on another thread while a collective waits: it
// marks the communicator (and, for the peers, the segment) and frees
// nothing, so the waiting call returns ncclRemoteError.
ncclResult_t ncclCommAbort(ncclComm_t c) {
    if (!c || c->magic != COMM_MAGIC) return fail(ncclInvalidArgument, "invalid communicator");
    atomic_store(&c->aborted, 1);
    int none = 0;
    atomic_compare_exchange_strong(&c->sh->aborted_by, &none, c->rank + 1);
    return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t c, ncclResult_t* async) {
    if (!c || c->magic != COMM_MAGIC || !async) return fail(ncclInvalidArgument, "invalid argument");
    *async = aborted(c) ? ncclRemoteError : ncclSuccess;
    return ncclSuccess;
}

ncclResult_t ncclCommCount(const ncclComm_t c, int* count) {
    if (!c || c->magic != COMM_MAGIC || !count) return fail(ncclInvalidArgument, "invalid argument");
    *count = c->nranks;
    return ncclSuccess;
}

ncclResult_t ncclCommUserRank(const ncclComm_t c, int* rank) {
    if (!c || c->magic != COMM_MAGIC || !rank) return fail(ncclInvalidArgument, "invalid argument");
    *rank = c->rank;
    return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, int datatype, int op, ncclComm_t c,
                           void* stream) {
    if (op != ncclSum) return fail(ncclInvalidArgument, "the fake reduces with ncclSum only (op %d)", op);
    return run(c, OP_ALLREDUCE, send, recv, count, datatype, 0, (uintptr_t)stream);
}

ncclResult_t ncclBroadcast(const void* send, void* recv, size_t count, int datatype, int root, ncclComm_t c,
                           void* stream) {
    return run(c, OP_BROADCAST, send, recv, count, datatype, root, (uintptr_t)stream);
}

// For tests: how many collectives c ran, and the stream of the last.
uint64_t fakenccl_ops(ncclComm_t c) { return c && c->magic == COMM_MAGIC ? c->ops : 0; }
uintptr_t fakenccl_last_stream(ncclComm_t c) { return c && c->magic == COMM_MAGIC ? c->last_stream : 0; }
