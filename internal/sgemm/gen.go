package sgemm

//go:generate go run ./asm -out kernels_amd64.s -stubs kernels_amd64.go -pkg sgemm
