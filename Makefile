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
