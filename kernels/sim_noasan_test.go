//go:build kernelsim && !simasan

package kernels_test

const simASan = false
