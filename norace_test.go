//go:build !race

package fmgpu

const raceDetector = false
