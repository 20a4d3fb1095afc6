module github.com/fmgpu/fmgpu

go 1.26
