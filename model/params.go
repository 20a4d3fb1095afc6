package model

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/fmgpu/fmgpu/gpu"
)

// param is a tensor's index in its network's paramSet.
type param int

// initKind is how Init draws a tensor.
type initKind uint8

const (
	initUniform initKind = iota // U(-1/sqrt(fanIn), 1/sqrt(fanIn)): PyTorch's nn.Linear and nn.Conv2d
	initZero
	initOne
	initNormal // N(0, 1): nn.Embedding
)

// paramSet lays out a network's parameter tensors in one flat buffer, in
// the order the layers add them (the order, names and shapes a checkpoint
// records), with how Init draws each.
type paramSet struct {
	tensors []Tensor
	init    []initKind
	fanIn   []int // initUniform's fan-in, per tensor
	size    int
}

// add appends a tensor; fanIn is read by initUniform only.
func (s *paramSet) add(name string, kind initKind, fanIn int, shape ...int) param {
	t := Tensor{Name: name, Shape: shape, Offset: s.size}
	s.tensors = append(s.tensors, t)
	s.init = append(s.init, kind)
	s.fanIn = append(s.fanIn, fanIn)
	s.size += t.Size()
	return param(len(s.tensors) - 1)
}

// weightBias adds name.weight of the given shape (out first) and name.bias
// of out elements, both drawn as PyTorch draws nn.Linear and nn.Conv2d
// (uniform, the bias with its weight's fan-in) or, with zero, zeros.
func (s *paramSet) weightBias(name string, zero bool, shape ...int) (w, b param) {
	kind := initUniform
	if zero {
		kind = initZero
	}
	fanIn := 1
	for _, d := range shape[1:] {
		fanIn *= d
	}
	w = s.add(name+".weight", kind, fanIn, shape...)
	b = s.add(name+".bias", kind, fanIn, shape[0])
	return w, b
}

// initial draws the initial values of every tensor, in order, from a PCG
// generator seeded with seed and stream.
func (s *paramSet) initial(seed, stream uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, stream))
	host := make([]float32, s.size)
	for i, t := range s.tensors {
		v := host[t.Offset : t.Offset+t.Size()]
		switch s.init[i] {
		case initOne:
			for j := range v {
				v[j] = 1
			}
		case initNormal:
			for j := range v {
				v[j] = float32(r.NormFloat64())
			}
		case initUniform:
			bound := 1 / math.Sqrt(float64(s.fanIn[i]))
			for j := range v {
				v[j] = float32((2*r.Float64() - 1) * bound)
			}
		}
	}
	return host
}

// tensorViews are a buffer laid out like the parameters cut into one view
// per tensor: the weights, or a gradient. The views are made once per
// buffer, so that steady-state calls allocate nothing.
type tensorViews struct {
	of    gpu.Buffer
	views []gpu.Buffer
}

// bind returns buf's views (nil for a nil buf, keeping the last ones).
func (v *tensorViews) bind(buf gpu.Buffer, s *paramSet) []gpu.Buffer {
	if buf == nil {
		return nil
	}
	if buf == v.of {
		return v.views
	}
	if buf.Len() < s.size {
		panic(fmt.Sprintf("model: a buffer of %d elements for %d parameters", buf.Len(), s.size))
	}
	v.of, v.views = buf, v.views[:0]
	for _, t := range s.tensors {
		v.views = append(v.views, buf.Slice(t.Offset, t.Size()))
	}
	return v.views
}
