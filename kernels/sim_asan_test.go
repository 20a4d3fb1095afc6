//go:build kernelsim && simasan

package kernels

const simASan = true
