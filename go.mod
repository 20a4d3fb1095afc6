module github.com/fmgpu/fmgpu

go 1.26.0

require (
	github.com/google/renameio/v2 v2.0.2 // indirect
	github.com/mmcloughlin/avo v0.5.0 // indirect
	golang.org/x/mod v0.23.0 // indirect
	golang.org/x/sync v0.12.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/tools v0.30.0 // indirect
	gonum.org/v1/gonum v0.17.0 // indirect
)
