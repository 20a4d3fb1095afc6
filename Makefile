# fmgpu build targets. `make test` is the test command README.md gives.
GO ?= go

.PHONY: all build test test-noasm vet fmt-check
all: build

build:
	$(GO) build -o bin/fmgpu ./cmd/fmgpu

test:
	$(GO) test ./...

test-noasm:
	$(GO) test -tags noasm ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi

# ---- CUDA ------------------------------------------------------------------
# kernels/*.cu -> kernels/fmgpu.fatbin (committed, embedded by package
# kernels): SASS for sm_80 and sm_90 and PTX for compute_90 in one fatbin.
# A cuda build (`make cuda`) needs cuda.h and libcuda.so but not nvcc; the
# kernelsim harness (`make kernel-check`) needs only a host C++ compiler.
# Without nvcc (or cuda.h) the CUDA targets are skipped with a message.
NVCC ?= $(shell command -v nvcc 2>/dev/null)
# nvcc 11.8 supports host compilers up to gcc 11.
NVCC_CCBIN ?= $(shell command -v g++-11 2>/dev/null)
NVCC_ARCH := -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
NVCC_FLAGS := -std=c++17 -O3 $(NVCC_ARCH) --Werror all-warnings -Xcompiler -Wall,-Werror -Xptxas -v,-warn-spills
KERNEL_SRCS := $(wildcard kernels/*.cu kernels/*.cuh)
CUDA_INCLUDE ?= /usr/local/cuda/include
HAVE_CUDA_H := $(shell printf '\#include <cuda.h>\n' | $(CC) -I$(CUDA_INCLUDE) -E -x c - >/dev/null 2>&1 && echo yes)
# gorgonia.org/cu's cgo code uses deprecated driver entry points: quiet.
CUDA_CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations -Wno-implicit-function-declaration
CUDA_BIN := bin/fmgpu-cuda
BUNDLE := dist/gpu-bundle

.PHONY: kernels kernels-verify kernel-check cuda gpu-bundle

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
kernel-check:
	$(GO) test -tags kernelsim -count=1 ./...

ifeq ($(HAVE_CUDA_H),yes)
cuda:
	CGO_CFLAGS="$(CUDA_CGO_CFLAGS)" $(GO) build -tags cuda -o $(CUDA_BIN) ./cmd/fmgpu

# gpu-bundle: everything scripts/gpu-run.sh needs on an NVIDIA host.
# GPU_E2E_PKG names the package of the end-to-end GPU test (train
# 8gaussians, sample, W2); gpu-run.sh runs it as e2e.test.
GPU_E2E_PKG ?= ./internal/e2e
gpu-bundle: cuda
	CGO_CFLAGS="$(CUDA_CGO_CFLAGS)" GPU_E2E_PKG="$(GPU_E2E_PKG)" scripts/gpu-bundle.sh $(BUNDLE) $(CUDA_BIN)
else
cuda gpu-bundle:
	@echo "cuda.h not found: skipping $@ (install nvidia-cuda-toolkit, or see Dockerfile.cuda)"
endif
