package cli

import (
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
)

// The image workloads build the network of `fmgpu train --data mnist`:
// the parameter counts the PyTorch peer prints for the same U-Net.
func TestBenchUNetWorkloads(t *testing.T) {
	b := gpu.NewCPU(1)
	defer b.Close()
	for name, params := range map[string]int{"unet-mnist-b64": 1047137, "unet-mnist-b64-attn": 1063905} {
		wl := findWorkload(name)
		if wl == nil || wl.unet == nil || wl.batch != 64 {
			t.Fatalf("workload %s: %+v", name, wl)
		}
		cfg := benchImageConfig(*wl, 1)
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		n, err := model.New(b, cfg.Model)
		if err != nil {
			t.Fatal(err)
		}
		if got := n.NumParams(); got != params {
			t.Errorf("%s: %d parameters, want %d", name, got, params)
		}
		if cfg.EMADecay == 0 || cfg.Model.Classes != 10 || cfg.ClassDropout != 0.1 || cfg.Optimizer != "adam" {
			t.Errorf("%s: not the train --data mnist defaults: %+v", name, cfg)
		}
	}
}
