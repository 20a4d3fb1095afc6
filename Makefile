# fmgpu build targets. `make test` is the test command README.md gives.
GO ?= go

.PHONY: all build test test-noasm vet fmt-check
all: build

build:
	$(GO) build -o bin/fmgpu ./cmd/fmgpu

test:
	$(GO) test ./...

# test-noasm: internal/sgemm's generic Go kernels in place of the assembly,
# under the tests that check their numbers against float64 references:
# sgemm's own, the CPU backend's conformance suite and the models' gradient
# checks. The other packages' tests would run the same kernels again,
# slower, for no new check.
NOASM_PACKAGES := ./internal/sgemm/... ./gpu/... ./model/...
test-noasm:
	$(GO) test -tags noasm $(NOASM_PACKAGES)

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi

# ---- CUDA ------------------------------------------------------------------
# bin/fmgpu is the one binary for every machine: it loads the NVIDIA driver
# (libcuda.so.1) at run time when a GPU is asked for or found
# (internal/cudadriver), so building it needs neither cgo nor CUDA.
# kernels/*.cu -> kernels/fmgpu.fatbin (committed, embedded by package
# kernels): SASS for sm_80 and sm_90 and PTX for compute_90 in one fatbin;
# rebuilding it needs nvcc, nothing else here does. The kernelsim harness
# (`make kernel-check`) needs only a host C++ compiler.
NVCC ?= $(shell command -v nvcc 2>/dev/null)
# nvcc 11.8 supports host compilers up to gcc 11.
NVCC_CCBIN ?= $(shell command -v g++-11 2>/dev/null)
NVCC_ARCH := -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
NVCC_FLAGS := -std=c++17 -O3 $(NVCC_ARCH) --Werror all-warnings -Xcompiler -Wall,-Werror -Xptxas -v,-warn-spills
KERNEL_SRCS := $(wildcard kernels/*.cu kernels/*.cuh)
BUNDLE := dist/gpu-bundle

.PHONY: kernels kernels-verify kernel-check kernel-check-asan kernel-mutants cuda gpu-bundle

ifeq ($(NVCC),)
kernels kernels-verify:
	@echo "nvcc not found: skipping $@ (the committed kernels/fmgpu.fatbin stays in use; install nvidia-cuda-toolkit to rebuild it)"
else
kernels: kernels/fmgpu.fatbin

# The fatbin and the ptxas resource report (registers, shared memory, spills
# of every kernel on each architecture) are built together from fmgpu.cu.
kernels/fmgpu.fatbin: $(KERNEL_SRCS)
	cd kernels && $(NVCC) $(if $(NVCC_CCBIN),-ccbin $(NVCC_CCBIN)) $(NVCC_FLAGS) -fatbin -o fmgpu.fatbin.tmp fmgpu.cu 2> ptxas-report.tmp || { cat ptxas-report.tmp; rm -f ptxas-report.tmp fmgpu.fatbin.tmp; exit 1; }
	cd kernels && mv ptxas-report.tmp ptxas-report.txt && mv fmgpu.fatbin.tmp fmgpu.fatbin
	$(NVCC) --version | tail -n 2 > kernels/nvcc-version.txt
	@echo "kernels: $$(grep -c 'Compiling entry function' kernels/ptxas-report.txt) kernel builds, report in kernels/ptxas-report.txt"

# kernels-verify rebuilds the fatbin in a scratch directory and checks the
# committed one is byte-identical (nvcc 11.8 output is deterministic for
# fixed flags and sources; see kernels/README.md).
kernels-verify:
	@scripts/kernels-verify.sh "$(NVCC)" "$(NVCC_CCBIN)" "$(NVCC_FLAGS)"
endif

# kernel-check runs the CUDA backend's Go code and the kernels themselves,
# compiled for the host, through the conformance suite (gpu/gputest) and
# every other test: in a kernelsim build the CLI's train, sample and
# likelihood and internal/e2e go through the device backend.
# The simulated device runs every GPU thread on the CPU: the whole
# internal/cli package took 5.6 minutes of a 5.8-minute run on two cores
# (2026-12-07) but past 30 at load average 15 (2026-12-05): hence the
# 45-minute limit per package.
kernel-check:
	$(GO) test -tags kernelsim -count=1 -timeout 45m ./...

# kernel-check-asan: the whole simulator (harness, kernels, fake libcuda)
# built with AddressSanitizer and UBSan instead of the access hooks
# (kernels/README.md, "Checks"), over the harness's tests, the kernelsim
# conformance suite and the fake libcuda's; any report fails it. Through
# the fake libcuda the suite runs in fp32 only: its tf32, tf32x3 and bf16
# runs would launch other kernels through the same driver code, and those
# kernels run under the sanitizers in TestKernelSimConformance's.
KERNEL_ASAN_TESTS := ^(TestSim|TestKernelSim(Conformance|Report)$$|TestCUDA(Conformance|Probe|Unavailable)$$)
KERNEL_ASAN_SKIP := ^TestCUDAConformance$$/_
kernel-check-asan:
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 $(GO) test -asan -tags kernelsim,simasan -count=1 -timeout 30m -run '$(KERNEL_ASAN_TESTS)' -skip '$(KERNEL_ASAN_SKIP)' ./kernels ./gpu

# kernel-mutants: faults planted in the real kernels one at a time must be
# caught by the checkers (scripts/kernel-mutants.sh; minutes each).
kernel-mutants:
	scripts/kernel-mutants.sh

# cuda: what a GPU host needs, the kernels (rebuilt when nvcc is here and
# the sources changed) and bin/fmgpu; bin/fmgpu-cuda is the name earlier
# versions gave the GPU build, kept as a link for scripts that call it.
cuda: kernels build
	ln -sf fmgpu bin/fmgpu-cuda

# gpu-bundle: everything scripts/gpu-run.sh needs on an NVIDIA host
# (dist/gpu-bundle and dist/gpu-bundle.tgz, with the PyTorch peers of peers/;
# PEERS_DIR= another folder; scripts/device-run.sh runs the archive).
gpu-bundle:
	scripts/gpu-bundle.sh $(BUNDLE)
