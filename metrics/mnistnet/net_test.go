package mnistnet

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// refForward is the network in float64 written independently of net.go:
// direct convolutions over zero-padded inputs (no im2col), pooling by
// comparison of the four values, the dense layers as explicit sums. It
// returns the logits and the features of one image.
func refForward(p []float64, img []float64) (logits, feats []float64) {
	t := func(i int) []float64 { tt := Tensors[i]; return p[tt.Offset : tt.Offset+tt.Size()] }
	conv := func(in []float64, side, cin, cout int, w, b []float64) []float64 {
		out := make([]float64, side*side*cout)
		for y := range side {
			for x := range side {
				for o := range cout {
					s := b[o]
					for ky := range 5 {
						for kx := range 5 {
							iy, ix := y+ky-2, x+kx-2
							if iy < 0 || iy >= side || ix < 0 || ix >= side {
								continue
							}
							for c := range cin {
								s += w[((o*5+ky)*5+kx)*cin+c] * in[(iy*side+ix)*cin+c]
							}
						}
					}
					out[(y*side+x)*cout+o] = math.Max(s, 0)
				}
			}
		}
		return out
	}
	pool := func(in []float64, side, c int) []float64 {
		h := side / 2
		out := make([]float64, h*h*c)
		for y := range h {
			for x := range h {
				for k := range c {
					m := math.Inf(-1)
					for dy := range 2 {
						for dx := range 2 {
							m = math.Max(m, in[((2*y+dy)*side+2*x+dx)*c+k])
						}
					}
					out[(y*h+x)*c+k] = m
				}
			}
		}
		return out
	}
	dense := func(in []float64, nout int, w, b []float64, relu bool) []float64 {
		out := make([]float64, nout)
		for o := range nout {
			s := b[o]
			for i, v := range in {
				s += w[o*len(in)+i] * v
			}
			if relu {
				s = math.Max(s, 0)
			}
			out[o] = s
		}
		return out
	}
	a := pool(conv(img, 28, 1, 16, t(tConv1W), t(tConv1B)), 28, 16)
	a = pool(conv(a, 14, 16, 32, t(tConv2W), t(tConv2B)), 14, 32)
	feats = dense(a, 128, t(tFC1W), t(tFC1B), true)
	return dense(feats, 10, t(tFC2W), t(tFC2B), false), feats
}

// refLoss is the mean cross-entropy of refForward over the images.
func refLoss(p []float64, imgs [][]float64, labels []int32) float64 {
	total := 0.0
	for i, img := range imgs {
		l, _ := refForward(p, img)
		mx := math.Inf(-1)
		for _, v := range l {
			mx = math.Max(mx, v)
		}
		s := 0.0
		for _, v := range l {
			s += math.Exp(v - mx)
		}
		total += mx + math.Log(s) - l[labels[i]]
	}
	return total / float64(len(imgs))
}

// randomImages are b images of uniform values in [-1, 1].
func randomImages(r *rand.Rand, b int) []float32 {
	x := make([]float32, b*Pixels)
	for i := range x {
		x[i] = float32(2*r.Float64() - 1)
	}
	return x
}

func to64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

// The float32 forward pass agrees with the float64 reference, and the
// hand-written backward pass with the reference's central differences.
func TestForwardBackwardAgainstFloat64(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	n := Init(7)
	// non-zero biases, so that their gradients and the ReLU's kinks are
	// exercised away from the He initialization's zeros
	for _, i := range []int{tConv1B, tConv2B, tFC1B, tFC2B} {
		for k := range view(n.Params, i) {
			view(n.Params, i)[k] = float32(0.1 * r.NormFloat64())
		}
	}
	const b = 3
	x := randomImages(r, b)
	labels := []int32{2, 7, 0}
	w := newWork(b, true)
	n.forward(w, x, b)
	p := to64(n.Params)
	imgs := make([][]float64, b)
	for i := range imgs {
		imgs[i] = to64(x[i*Pixels : (i+1)*Pixels])
		want, feats := refForward(p, imgs[i])
		scale := 0.0
		for _, v := range want {
			scale = math.Max(scale, math.Abs(v))
		}
		// float32 sums of up to 1568 products: 1e-5 of the logits' scale
		// is about 100 ulps, ten times the differences seen.
		for j, v := range want {
			if d := math.Abs(float64(w.logits[i*Classes+j]) - v); d > 1e-5*scale {
				t.Fatalf("image %d logit %d: %g, float64 %g", i, j, w.logits[i*Classes+j], v)
			}
		}
		for j, v := range feats {
			if d := math.Abs(float64(w.h1[i*FeatureDim+j]) - v); d > 1e-5*math.Max(1, math.Abs(v)) {
				t.Fatalf("image %d feature %d: %g, float64 %g", i, j, w.h1[i*FeatureDim+j], v)
			}
		}
	}
	g := make([]float32, NumParams)
	loss := n.lossGrad(w, labels, b, g)
	if want := refLoss(p, imgs, labels); math.Abs(loss-want) > 1e-5*math.Max(1, want) {
		t.Fatalf("loss %g, float64 %g", loss, want)
	}
	// h: small enough that no ReLU or max-pool switches within +-h (at
	// 1e-5 one of conv1's entries crossed a kink: 0.22804 against 0.22831
	// at h <= 1e-6), large enough that float64 rounding of the loss
	// (~2.3 x 2e-16 / h = 5e-9) stays far below the tolerance.
	const h = 1e-7
	for ti, tt := range Tensors {
		idx := []int{0, tt.Size() - 1}
		for range 10 {
			idx = append(idx, r.IntN(tt.Size()))
		}
		scale := 0.0
		fd := make([]float64, len(idx))
		for k, i := range idx {
			j := tt.Offset + i
			old := p[j]
			p[j] = old + h
			lp := refLoss(p, imgs, labels)
			p[j] = old - h
			lm := refLoss(p, imgs, labels)
			p[j] = old
			fd[k] = (lp - lm) / (2 * h)
			scale = math.Max(scale, math.Abs(fd[k]))
		}
		for k, i := range idx {
			got := float64(g[tt.Offset+i])
			// float32 backward against float64 differences: 1e-3 of the
			// entry plus 1e-4 of the tensor's largest checked gradient
			// (gradients that cancel to near zero keep float32's
			// absolute error).
			if d := math.Abs(got - fd[k]); d > 1e-3*math.Abs(fd[k])+1e-4*scale {
				t.Errorf("%s[%d]: gradient %g, central difference %g", Tensors[ti].Name, i, got, fd[k])
			}
		}
	}
}

// Features and predictions do not depend on how many images are asked
// for at once or on the other images of a batch; Write and Read round-trip
// the weights bit for bit.
func TestFeaturesDeterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	n := Init(2)
	const count = 2*featureBatch + 13
	x := randomImages(r, count)
	all, err := n.Features(context.Background(), x, count)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := n.Features(context.Background(), x, count)
	part, _ := n.Features(context.Background(), x[150*Pixels:], 7) // images 150..156 without their neighbours
	for i := range all {
		if all[i] != again[i] {
			t.Fatalf("feature %d: %v then %v", i, all[i], again[i])
		}
	}
	for i := range part {
		if part[i] != all[150*FeatureDim+i] {
			t.Fatalf("image %d feature %d: %v alone, %v in the batch", 150+i/FeatureDim, i%FeatureDim, part[i], all[150*FeatureDim+i])
		}
	}
	// Calibrate scales the features to a mean square of 1
	if err := n.Calibrate(context.Background(), x, count); err != nil {
		t.Fatal(err)
	}
	scaled, _ := n.Features(context.Background(), x, count)
	ms := 0.0
	for i, v := range scaled {
		ms += float64(v) * float64(v)
		// one float32 division
		if want := all[i] / n.FeatureScale; math.Abs(float64(v-want)) > 1e-6*math.Abs(float64(want)) {
			t.Fatalf("scaled feature %d: %v, want %v / %v", i, v, all[i], n.FeatureScale)
		}
	}
	// float32 rounding of FeatureScale: 1e-6 relative
	if ms /= float64(len(scaled)); math.Abs(ms-1) > 1e-6 {
		t.Errorf("mean square of the calibrated features %g, want 1", ms)
	}
	var buf bytes.Buffer
	if err := n.Write(&buf, Info{Seed: 2, TestAccuracy: 0.5}); err != nil {
		t.Fatal(err)
	}
	m, info, err := Read(buf.Bytes())
	if err != nil || info.Seed != 2 || info.TestAccuracy != 0.5 || m.FeatureScale != n.FeatureScale {
		t.Fatalf("read back: %v %+v (feature scale %v, wrote %v)", err, info, m.FeatureScale, n.FeatureScale)
	}
	for i := range n.Params {
		if math.Float32bits(n.Params[i]) != math.Float32bits(m.Params[i]) {
			t.Fatalf("parameter %d: %v written, %v read", i, n.Params[i], m.Params[i])
		}
	}
}

// Bad inputs are errors of one line, never panics.
func TestRejects(t *testing.T) {
	n := Init(1)
	x := make([]float32, 2*Pixels)
	x[Pixels+3] = float32(math.NaN())
	for name, err := range map[string]error{
		"short":  func() error { _, err := n.Features(context.Background(), x, 3); return err }(),
		"nan":    func() error { _, err := n.Features(context.Background(), x, 2); return err }(),
		"none":   func() error { _, err := n.Predict(x, 0); return err }(),
		"labels": func() error { _, err := n.Accuracy(x, []int32{1}, 2); return err }(),
		"badlabel": func() error {
			_, err := Train(context.Background(), x[:Pixels], []int32{10}, 1, TrainOptions{})
			return err
		}(),
	} {
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v", name, err)
		}
	}
	var buf bytes.Buffer
	n.Write(&buf, Info{})
	raw := buf.Bytes()
	for name, b := range map[string][]byte{
		"empty":     nil,
		"truncated": raw[:len(raw)/2],
		"garbage":   []byte("not a safetensors file at all, clearly"),
	} {
		if _, _, err := Read(b); err == nil {
			t.Errorf("%s file: read without error", name)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Train(ctx, make([]float32, Pixels), []int32{1}, 1, TrainOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled training: %v", err)
	}
}
