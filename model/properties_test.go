package model_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/numtest"
	"github.com/fmgpu/fmgpu/model"
)

func TestInitPyTorchStyle(t *testing.T) {
	b := newBackend(t)
	// Dims 35 -> 256 -> 128 -> 3: tensors from 3 to 32768 elements.
	cfg := mlpConfig(3, model.DefaultTimeEmbedding, 256, 128)
	m := newMLP(t, b, cfg, 7)
	p := slices.Clone(hostData(t, m.Params()))
	for _, ts := range m.Tensors() {
		fanIn := ts.Shape[len(ts.Shape)-1] // weights (out, in)
		if len(ts.Shape) == 1 {            // a bias shares its weight's fan-in
			fanIn = m.Tensors()[slices.IndexFunc(m.Tensors(), func(w model.Tensor) bool { return w.Offset+w.Size() == ts.Offset })].Shape[1]
		}
		bound := 1 / math.Sqrt(float64(fanIn))
		v := p[ts.Offset : ts.Offset+ts.Size()]
		sum, sumSq := 0.0, 0.0
		for i, x := range v {
			// float32 rounding may take |x| half an ulp past the bound.
			if math.Abs(float64(x)) > bound*(1+1e-7) || math.IsNaN(float64(x)) {
				t.Errorf("%s[%d] = %g outside +-1/sqrt(%d) = %g", ts.Name, i, x, fanIn, bound)
			}
			sum += float64(x)
			sumSq += float64(x) * float64(x)
		}
		n := float64(len(v))
		mean, meanSq := sum/n, sumSq/n
		// U(-a, a) has mean 0 and variance a^2/3: the sample mean's
		// standard deviation is a / sqrt(3n); allow 5 of them.
		if sd := bound / math.Sqrt(3*n); math.Abs(mean) > 5*sd {
			t.Errorf("%s: mean %.3g, more than 5 standard deviations (%.3g) from 0", ts.Name, mean, sd)
		}
		// The second moment, on tensors large enough to estimate it (the
		// sample's relative standard deviation is sqrt(0.8/n) < 0.1).
		if n >= 100 {
			if want := bound * bound / 3; math.Abs(meanSq-want) > 0.1*want {
				t.Errorf("%s: mean square %.4g, want %.4g (uniform on +-%.4g) within 10%%", ts.Name, meanSq, want, bound)
			}
		}
	}

	// Deterministic per seed, whatever was there before.
	m2 := newMLP(t, b, cfg, 8)
	p8 := slices.Clone(hostData(t, m2.Params()))
	m2.Init(7)
	if !slices.Equal(hostData(t, m2.Params()), p) {
		t.Error("Init(7) after Init(8) differs from Init(7) on a fresh MLP")
	}
	same := 0
	for i := range p {
		if p[i] == p8[i] {
			same++
		}
	}
	// Independent draws on 2^24 float32 levels coincide almost never.
	if same > len(p)/1000 {
		t.Errorf("seeds 7 and 8 give %d equal parameters of %d", same, len(p))
	}
}

func TestTensorLayout(t *testing.T) {
	b := newBackend(t)
	for _, tc := range append([]testCase{tinyCase}, testCases...) {
		t.Run(tc.name, func(t *testing.T) {
			m := newMLP(t, b, tc.cfg, 1)
			dims := refDims(tc.cfg)
			ts := m.Tensors()
			if len(ts) != 2*(len(dims)-1) || m.Layers() != len(dims)-1 {
				t.Fatalf("%d tensors, %d layers for dims %v", len(ts), m.Layers(), dims)
			}
			off, flops := 0, 0
			for l := 0; l+1 < len(dims); l++ {
				in, out := dims[l], dims[l+1]
				w, bias := ts[2*l], ts[2*l+1]
				if w.Name != fmt.Sprintf("layers.%d.weight", l) || !slices.Equal(w.Shape, []int{out, in}) || w.Offset != off {
					t.Errorf("tensor %d = %+v, want layers.%d.weight (%d, %d) at %d", 2*l, w, l, out, in, off)
				}
				off += out * in
				if bias.Name != fmt.Sprintf("layers.%d.bias", l) || !slices.Equal(bias.Shape, []int{out}) || bias.Offset != off {
					t.Errorf("tensor %d = %+v, want layers.%d.bias (%d) at %d", 2*l+1, bias, l, out, off)
				}
				off += out
				flops += 2 * in * out
			}
			// Contiguous from 0 in that order: the tensors tile the flat
			// buffer exactly, without gap or overlap.
			if m.NumParams() != off || m.Params().Len() != off {
				t.Errorf("NumParams %d, Params().Len() %d, tensors cover %d", m.NumParams(), m.Params().Len(), off)
			}
			if m.FLOPsPerRow() != flops {
				t.Errorf("FLOPsPerRow %d, want %d", m.FLOPsPerRow(), flops)
			}
			lt, n, err := model.TensorLayout(tc.cfg)
			if err != nil || n != off || !reflect.DeepEqual(lt, ts) {
				t.Errorf("TensorLayout = %v, %d, %v; want the MLP's %v, %d", lt, n, err, ts, off)
			}
			if m.Dim() != tc.cfg.Dim || !reflect.DeepEqual(m.Config(), tc.cfg) {
				t.Errorf("Dim %d, Config %+v; want %d, %+v", m.Dim(), m.Config(), tc.cfg.Dim, tc.cfg)
			}
		})
	}
}

// forwardHost runs Forward and returns a copy of the output.
func forwardHost(t *testing.T, b gpu.Backend, m model.Net, bt batch) []float32 {
	t.Helper()
	out := b.Alloc(bt.rows * m.Dim())
	m.Forward(bt.rows, upload(b, bt.t), upload(b, bt.x), out)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	return slices.Clone(hostData(t, out))
}

// backwardHost runs Backward after the last Forward with dOut = bt.tgt and
// returns a copy of the gradient.
func backwardHost(t *testing.T, b gpu.Backend, m model.Net, bt batch) []float32 {
	t.Helper()
	g := b.Alloc(m.NumParams())
	m.Backward(upload(b, bt.tgt), g)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	return slices.Clone(hostData(t, g))
}

func TestWithWeights(t *testing.T) {
	b := newBackend(t)
	cfg := testCases[3].cfg
	r := rand.New(rand.NewPCG(5, 5))
	bt17, bt3 := newBatch(r, 17, cfg.Dim), newBatch(r, 3, cfg.Dim)

	m := newMLP(t, b, cfg, 1)
	other := newMLP(t, b, cfg, 2)
	wantOther := forwardHost(t, b, other, bt3)
	wantM := forwardHost(t, b, m, bt17)
	wantGrad := backwardHost(t, b, m, bt17)

	c := m.WithWeights(other.Params())
	if c.Params() != other.Params() || c.NumParams() != m.NumParams() || !reflect.DeepEqual(c.Tensors(), m.Tensors()) {
		t.Fatal("WithWeights: not the given buffer, or another layout")
	}
	// m's forward, then c's on another batch size, then m's backward: c
	// reads other's weights and has workspaces of its own.
	if got := forwardHost(t, b, m, bt17); !slices.Equal(got, wantM) {
		t.Error("Forward changed after WithWeights")
	}
	if got := forwardHost(t, b, c, bt3); !slices.Equal(got, wantOther) {
		t.Error("WithWeights(other.Params()) does not compute other's forward")
	}
	if got := backwardHost(t, b, m, bt17); !slices.Equal(got, wantGrad) {
		t.Error("a forward of the WithWeights copy changed the original's backward")
	}
	// A view, not a copy: new values in the buffer are seen.
	other.Init(3)
	fresh := newMLP(t, b, cfg, 3)
	if got, want := forwardHost(t, b, c, bt3), forwardHost(t, b, fresh, bt3); !slices.Equal(got, want) {
		t.Error("WithWeights copy does not see new values in its buffer")
	}
	defer func() {
		if recover() == nil {
			t.Error("WithWeights with a short buffer did not panic")
		}
	}()
	m.WithWeights(b.Alloc(m.NumParams() - 1))
}

func TestVelocityEqualsForward(t *testing.T) {
	b := newBackend(t)
	for ci, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			m := newMLP(t, b, tc.cfg, uint64(ci))
			r := rand.New(rand.NewPCG(6, uint64(ci)))
			for _, rows := range []int{17, 3, 17} {
				bt := newBatch(r, rows, tc.cfg.Dim)
				tv := float64(float32(r.Float64()))
				for i := range bt.t {
					bt.t[i] = float32(tv)
				}
				want := forwardHost(t, b, m, bt)
				v := b.Alloc(rows * tc.cfg.Dim)
				m.Velocity(tv, rows, upload(b, bt.x), v)
				if err := b.Sync(); err != nil {
					t.Fatal(err)
				}
				// The same ops on the same numbers: equal, not close.
				numtest.AllClose(t, fmt.Sprintf("Velocity(rows=%d)", rows), hostData(t, v), want, 0, 0)
			}
		})
	}
}

func TestReserveGrows(t *testing.T) {
	b := newBackend(t)
	cfg := testCases[3].cfg
	r := rand.New(rand.NewPCG(7, 7))
	grown := newMLP(t, b, cfg, 4)
	grown.Reserve(2)
	// Growing, shrinking (workspaces larger than needed), growing again,
	// and after Release: each result equals a fresh MLP's at that size.
	for i, rows := range []int{1, 3, 17, 3, 40, 1, 40} {
		if i == 5 {
			grown.Release()
		}
		bt := newBatch(r, rows, cfg.Dim)
		fresh := newMLP(t, b, cfg, 4)
		want, wantG := forwardHost(t, b, fresh, bt), backwardHost(t, b, fresh, bt)
		got, gotG := forwardHost(t, b, grown, bt), backwardHost(t, b, grown, bt)
		if !slices.Equal(got, want) || !slices.Equal(gotG, wantG) {
			t.Errorf("step %d, rows %d: forward or backward after earlier sizes differs from a fresh MLP's", i, rows)
		}
		p := to64(hostData(t, grown.Params()))
		ref := refForward(cfg, grown.Tensors(), p, rows, refEmbed(cfg, rows, to64(bt.x), to64(bt.t)))
		numtest.AllClose(t, fmt.Sprintf("rows %d v", rows), got, ref, forwardRTol*rms(ref), forwardRTol)
	}
}

// TestBackwardContract: Backward overwrites grads (it does not
// accumulate), leaves dOut as it was, gives the same result twice, and is
// not disturbed by an InputVJP in between.
func TestBackwardContract(t *testing.T) {
	b := newBackend(t)
	for ci, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			m := newMLP(t, b, tc.cfg, uint64(ci))
			bt := newBatch(rand.New(rand.NewPCG(8, uint64(ci))), 17, tc.cfg.Dim)
			forwardHost(t, b, m, bt)
			want := backwardHost(t, b, m, bt)

			dOut := upload(b, bt.tgt)
			g := b.Alloc(m.NumParams())
			b.Fill(g, float32(math.NaN()))
			w := b.Alloc(17 * tc.cfg.Dim)
			m.InputVJP(upload(b, bt.x), w)
			m.Backward(dOut, g)
			m.Backward(dOut, g)
			if err := b.Sync(); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(hostData(t, g), want) {
				t.Error("Backward into a NaN-filled buffer, twice, after InputVJP: differs from one Backward")
			}
			if !slices.Equal(hostData(t, dOut), bt.tgt) {
				t.Error("Backward modified dOut")
			}
		})
	}
}

func TestForwardBackwardAllocs(t *testing.T) {
	b := newBackend(t)
	cfg := mlpConfig(2, model.DefaultTimeEmbedding, 256, 256, 256)
	m := newMLP(t, b, cfg, 1)
	const rows = 256
	bt := newBatch(rand.New(rand.NewPCG(9, 9)), rows, cfg.Dim)
	x, tb, dOut := upload(b, bt.x), upload(b, bt.t), upload(b, bt.tgt)
	out, g := b.Alloc(rows*cfg.Dim), b.Alloc(m.NumParams())
	m.Forward(rows, tb, x, out) // warm-up: workspaces
	m.Backward(dOut, g)
	allocs := testing.AllocsPerRun(5, func() {
		m.Forward(rows, tb, x, out)
		m.Backward(dOut, g)
	})
	// Reported, not asserted: the CPU backend allocates closures (and
	// colSums' accumulator) per op; the MLP itself reuses its workspaces.
	t.Logf("Forward+Backward, %d rows, hidden %v, CPU backend: %.0f allocations per step", rows, cfg.Hidden, allocs)
}

func TestConfigValidate(t *testing.T) {
	good := mlpConfig(2, model.DefaultTimeEmbedding, 64, 64)
	for _, c := range append([]model.Config{good}, tinyCase.cfg, testCases[3].cfg) {
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v, want nil", c, err)
		}
	}
	edit := func(f func(*model.Config)) model.Config {
		c := good
		c.Hidden = slices.Clone(good.Hidden)
		f(&c)
		return c
	}
	bad := map[string]model.Config{
		"kind empty":         edit(func(c *model.Config) { c.Kind = "" }),
		"kind unet":          edit(func(c *model.Config) { c.Kind = "unet" }),
		"dim 0":              edit(func(c *model.Config) { c.Dim = 0 }),
		"dim negative":       edit(func(c *model.Config) { c.Dim = -2 }),
		"dim 2^20+1":         edit(func(c *model.Config) { c.Dim = 1<<20 + 1 }),
		"no hidden":          edit(func(c *model.Config) { c.Hidden = nil }),
		"65 hidden":          edit(func(c *model.Config) { c.Hidden = make([]int, 65) }),
		"width 0":            edit(func(c *model.Config) { c.Hidden[1] = 0 }),
		"width 65537":        edit(func(c *model.Config) { c.Hidden[0] = 1<<16 + 1 }),
		"freqs negative":     edit(func(c *model.Config) { c.TimeEmbed.Freqs = -1 }),
		"freqs 4097":         edit(func(c *model.Config) { c.TimeEmbed.Freqs = 4097 }),
		"max period 1":       edit(func(c *model.Config) { c.TimeEmbed.MaxPeriod = 1 }),
		"scale 0":            edit(func(c *model.Config) { c.TimeEmbed.Scale = 0 }),
		"scale NaN":          edit(func(c *model.Config) { c.TimeEmbed.Scale = float32(math.NaN()) }),
		"classes negative":   edit(func(c *model.Config) { c.Classes = -1 }),
		"classes (not yet)":  edit(func(c *model.Config) { c.Classes = 10 }),
		"max period NaN":     edit(func(c *model.Config) { c.TimeEmbed.MaxPeriod = float32(math.NaN()) }),
		"scale negative":     edit(func(c *model.Config) { c.TimeEmbed.Scale = -1000 }),
		"embedding all zero": edit(func(c *model.Config) { c.TimeEmbed = gpu.TimeEmbedding{Freqs: 3} }),
	}
	b := newBackend(t)
	for name, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate(%+v) = nil, want an error", name, c)
		}
		if m, err := model.NewMLP(b, c); err == nil || m != nil {
			t.Errorf("%s: NewMLP = %v, %v; want nil and an error", name, m, err)
		}
		if _, _, err := model.TensorLayout(c); err == nil {
			t.Errorf("%s: TensorLayout gave no error", name)
		}
	}
}

func TestParseHidden(t *testing.T) {
	for s, want := range map[string][]int{
		"256,256,256": {256, 256, 256},
		" 8 , 16 ":    {8, 16},
		"1":           {1},
		"65536":       {65536},
	} {
		got, err := model.ParseHidden(s)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseHidden(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", " ", ",", "8,", ",8", "8,,8", "a", "0", "-3", "65537", "8;16", "1.5", "8 16", "1e3", "0x10"} {
		if got, err := model.ParseHidden(s); err == nil {
			t.Errorf("ParseHidden(%q) = %v, want an error", s, got)
		}
	}
}

// TestEmptyBatch: zero rows on a fresh MLP (no workspaces yet) is a no-op
// forward, a zero gradient (the gradient of an empty sum) and an empty VJP.
// It used to panic: Reserve(0) allocated nothing and Forward indexed the
// missing per-layer workspaces.
func TestEmptyBatch(t *testing.T) {
	b := newBackend(t)
	m := newMLP(t, b, testCases[3].cfg, 1)
	empty := b.Alloc(0)
	m.Forward(0, empty, empty, empty)
	g := b.Alloc(m.NumParams())
	b.Fill(g, float32(math.NaN()))
	m.Backward(empty, g)
	m.InputVJP(empty, empty)
	fresh := newMLP(t, b, testCases[3].cfg, 1)
	fresh.Velocity(0.5, 0, empty, empty)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	numtest.AllClose(t, "gradient of an empty batch", hostData(t, g), make([]float32, m.NumParams()), 0, 0)
}
