package model

import (
	"github.com/fmgpu/fmgpu/gpu"
)

// Guided is the sampler's field of a class-conditional network with
// classifier-free guidance: v = v_null + w (v_class - v_null), where
// v_null is the velocity for the null class. w = 1 is plain conditional
// sampling (one evaluation), w = 0 unconditional.
type Guided struct {
	net    Net
	b      gpu.Backend
	labels gpu.Buffer // per-row class labels (float32 integers)
	w      float64

	capRows     int
	vNull, vCls gpu.Buffer
}

// NewGuided returns the guided field over net for the given per-row labels
// (rows of them, uploaded once) and guidance weight w.
func NewGuided(b gpu.Backend, net Net, labels []int, w float64) *Guided {
	lf := make([]float32, len(labels))
	for i, l := range labels {
		lf[i] = float32(l)
	}
	g := &Guided{net: net, b: b, w: w, labels: b.Alloc(len(lf))}
	b.Upload(g.labels, lf)
	return g
}

// Dim is the data dimension.
func (g *Guided) Dim() int { return g.net.Dim() }

// Release frees the field's buffers (not the network's).
func (g *Guided) Release() {
	for _, buf := range []gpu.Buffer{g.labels, g.vNull, g.vCls} {
		if buf != nil {
			g.b.Free(buf)
		}
	}
	g.labels, g.vNull, g.vCls, g.capRows = nil, nil, nil, 0
}

// Velocity evaluates the guided field for rows rows, the first rows of the
// labels given to NewGuided.
func (g *Guided) Velocity(t float64, rows int, x, v gpu.Buffer) {
	d := g.net.Dim()
	labels := g.labels.Slice(0, rows)
	switch g.w {
	case 1:
		g.net.SetLabels(labels)
		g.net.Velocity(t, rows, x, v)
		return
	case 0:
		g.net.SetLabels(nil)
		g.net.Velocity(t, rows, x, v)
		return
	}
	if rows > g.capRows {
		if g.vNull != nil {
			g.b.Free(g.vNull)
			g.b.Free(g.vCls)
		}
		g.vNull, g.vCls, g.capRows = g.b.Alloc(rows*d), g.b.Alloc(rows*d), rows
	}
	vn, vc := g.vNull.Slice(0, rows*d), g.vCls.Slice(0, rows*d)
	g.net.SetLabels(nil)
	g.net.Velocity(t, rows, x, vn)
	g.net.SetLabels(labels)
	g.net.Velocity(t, rows, x, vc)
	w := float32(g.w)
	g.b.LinComb(v, vn, 1, []float32{w, -w}, []gpu.Buffer{vc, vn})
}
