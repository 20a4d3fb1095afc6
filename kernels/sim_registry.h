// Kernel table of the kernelsim harness: how sim_kernels.cc registers each
// host-compiled kernel (name, argument signature, invoker that unpacks the
// 8-byte argument slots) for sim_runtime.cc.
#pragma once

#include <stdint.h>
#include <string.h>

#include <type_traits>
#include <utility>

struct SimKernel {
    const char* name;
    const char* sig;
    void (*invoke)(const uint64_t* args);
};

template <typename T>
constexpr char sim_sig_char() {
    using U = typename std::remove_cv<T>::type;
    return std::is_pointer<U>::value                  ? 'p'
           : std::is_same<U, float>::value            ? 'f'
           : std::is_same<U, double>::value           ? 'd'
           : std::is_same<U, int>::value              ? 'i'
           : std::is_same<U, unsigned>::value         ? 'u'
           : std::is_same<U, long long>::value        ? 'l'
           : std::is_same<U, long>::value             ? 'l'
           : std::is_same<U, unsigned long long>::value ? 'L'
           : std::is_same<U, unsigned long>::value    ? 'L'
                                                      : '?';
}

template <typename... A>
struct SimSig {
    static constexpr char value[sizeof...(A) + 1] = {sim_sig_char<A>()..., 0};
};
template <typename... A>
constexpr char SimSig<A...>::value[sizeof...(A) + 1];

template <typename T>
static inline T sim_arg(const uint64_t* slot) {
    static_assert(sizeof(T) <= 8, "kernel argument wider than its 8-byte slot");
    T v;
    memcpy(&v, slot, sizeof(T));  // little-endian: the value is in the low bytes
    return v;
}

template <typename... A, size_t... I>
static inline void sim_call(void (*f)(A...), const uint64_t* args, std::index_sequence<I...>) {
    f(sim_arg<A>(args + I)...);
}

template <typename... A>
static constexpr const char* sim_sig_of(void (*)(A...)) {
    return SimSig<A...>::value;
}

template <typename... A>
static inline void sim_invoke(void (*f)(A...), const uint64_t* args) {
    sim_call(f, args, std::index_sequence_for<A...>{});
}

// SIM_KERNEL(fn) is the table entry of kernel fn.
#define SIM_KERNEL(fn) \
    SimKernel { #fn, sim_sig_of(&fn), [](const uint64_t* a) { sim_invoke(&fn, a); } }
