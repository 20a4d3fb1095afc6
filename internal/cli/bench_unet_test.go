package cli

import (
	"slices"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
)

// The image workloads build the network and recipe of their `fmgpu train`
// flags: the parameter counts the PyTorch peer prints for the same U-Net,
// and the recipe's settings.
func TestBenchUNetWorkloads(t *testing.T) {
	b := gpu.NewCPU(1)
	defer b.Close()
	for _, c := range []struct {
		name    string
		params  int
		batch   int
		classes int
		dropout float64
	}{
		{"unet-mnist-b64", 1047137, 64, 10, 0},
		{"unet-mnist-b64-attn", 1063905, 64, 10, 0},
		{"unet-cifar10-b128", 35746307, 128, 0, 0.1},
	} {
		wl := findWorkload(c.name)
		if wl == nil || wl.image == nil || wl.batch != c.batch {
			t.Fatalf("workload %s: %+v", c.name, wl)
		}
		cfg, err := benchImageConfig(*wl, benchImageData(*wl, 1), 1)
		if err != nil {
			t.Fatal(err)
		}
		n, err := model.New(b, cfg.Model)
		if err != nil {
			t.Fatal(err)
		}
		if got := n.NumParams(); got != c.params {
			t.Errorf("%s: %d parameters, want %d", c.name, got, c.params)
		}
		u := cfg.Model.UNet
		if cfg.Batch != c.batch || cfg.Model.Classes != c.classes || u == nil || u.Dropout != c.dropout || cfg.EMADecay == 0 || cfg.Optimizer != "adam" || cfg.Seed != 1 {
			t.Errorf("%s: not the train flags' settings: %+v", c.name, cfg)
		}
		if c.name == "unet-cifar10-b128" && (cfg.Preset != "cifar10" || u.Base != 128 || !slices.Equal(u.Mults, []int{1, 2, 2, 2}) ||
			u.HeadCount() != 4 || cfg.LR != 2e-4 || cfg.EMADecay != 0.9999 || cfg.Model.Image.Channels != 3) {
			t.Errorf("%s: not the cifar10 preset: %+v %+v", c.name, cfg, u)
		}
		if c.classes > 0 && cfg.ClassDropout != 0.1 {
			t.Errorf("%s: class dropout %g, want train's 0.1", c.name, cfg.ClassDropout)
		}
	}
}
