//go:build kernelsim

package gpu_test

import (
	"math/rand/v2"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
)

// A whole U-Net step on the device backend (kernels compiled for the host)
// against the CPU backend: the image ops chained as the model runs them
// (convolutions at two resolutions, a stride-2 downsampling, group norms,
// the time and class embeddings, attention, skip concatenations,
// upsampling) forward, backward and the input VJP, from the same weights
// and inputs. The two backends add in different orders, so the outputs
// differ by float32 rounding carried through the network: normwise 1e-4.
func TestKernelSimUNetAgreesWithCPU(t *testing.T) {
	const rows = 3
	for _, attn := range []bool{false, true} {
		cfg := model.Config{Kind: "unet", Dim: 2 * 8 * 8, Classes: 3,
			TimeEmbed: gpu.TimeEmbedding{Freqs: 4, Scale: 1000, MaxPeriod: 10000},
			Image:     &model.ImageShape{Channels: 2, Height: 8, Width: 8},
			UNet:      &model.UNetConfig{Base: 8, Mults: []int{1, 2}, ResBlocks: 2, Groups: 2, Attention: attn}}
		rng := rand.New(rand.NewPCG(11, 12))
		var params []float32
		in := make(map[string][]float32)
		draw := func(n int, std float64) []float32 {
			v := make([]float32, n)
			for i := range v {
				v[i] = float32(std * rng.NormFloat64())
			}
			return v
		}
		in["x"], in["dOut"], in["e"] = draw(rows*cfg.Dim, 1), draw(rows*cfg.Dim, 1), draw(rows*cfg.Dim, 1)
		in["t"] = []float32{0.1, 0.5, 0.9}
		in["labels"] = []float32{0, 2, 3} // 3: the null class
		run := func(be gpu.Backend) map[string][]float32 {
			net, err := model.New(be, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if params == nil {
				// Every weight non-zero (Init zeroes the residual branches'
				// last convolutions): N(0, 0.25^2), the GroupNorm scales
				// included.
				params = draw(net.NumParams(), 0.25)
			}
			up := func(v []float32) gpu.Buffer {
				b := be.Alloc(len(v))
				be.Upload(b, v)
				return b
			}
			be.Upload(net.Params(), params)
			x, tt, labels, dOut, e := up(in["x"]), up(in["t"]), up(in["labels"]), up(in["dOut"]), up(in["e"])
			out, grads, w := be.Alloc(rows*cfg.Dim), be.Alloc(net.NumParams()), be.Alloc(rows*cfg.Dim)
			net.Reserve(rows)
			net.SetLabels(labels)
			lc, counts := be.(interface{ Launches() int64 })
			var l0 int64
			if counts {
				l0 = lc.Launches()
			}
			net.Forward(rows, tt, x, out)
			net.Backward(dOut, grads)
			if counts {
				t.Logf("attention=%v: %d kernel launches for a forward and backward pass", attn, lc.Launches()-l0)
			}
			net.Forward(rows, tt, x, out)
			net.InputVJP(e, w)
			res := map[string][]float32{"out": download(be, out), "grads": download(be, grads), "vjp": download(be, w)}
			if err := be.Sync(); err != nil {
				t.Fatal(err)
			}
			return res
		}
		cpu := gpu.NewCPU(0)
		want := run(cpu)
		cpu.Close()
		dev := newKernelSim(t, gpu.KernelSimOptions{})
		got := run(dev)
		dev.Close()
		for _, k := range []string{"out", "grads", "vjp"} {
			if e := normwise(got[k], want[k]); !(e <= 1e-4) {
				t.Errorf("attention=%v: %s: normwise error %.3g against the CPU backend", attn, k, e)
			} else {
				t.Logf("attention=%v: %s: normwise error %.2g", attn, k, e)
			}
		}
	}
}
