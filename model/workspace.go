package model

import (
	"fmt"

	"github.com/fmgpu/fmgpu/gpu"
)

// workspace is one of a network's named buffers, per elements a row for up
// to the rows Reserve gave. A stored workspace has memory of its own: what
// Forward leaves there, Backward reads. A temporary lives in the network's
// arena, which the layers share: every layer's temporaries start at the
// arena's beginning, so a temporary keeps its value only within one call
// of its layer. Views of it are made once per size, so that steady-state
// calls allocate nothing.
type workspace struct {
	name  string
	per   int // elements a row
	fixed int // elements of a buffer whose size does not depend on the rows
	off   int // a temporary's offset in the arena, elements a row
	temp  bool
	buf   gpu.Buffer
	spans []span
}

type span struct {
	start, n int
	v        gpu.Buffer
}

// at returns the workspace's first rows rows.
func (w *workspace) at(rows int) gpu.Buffer { return w.slice(rows*w.off, rows*w.per) }

// view returns its first rows rows of per <= w.per elements each: the
// workspace used at a smaller size.
func (w *workspace) view(rows, per int) gpu.Buffer {
	if per > w.per {
		panic(fmt.Sprintf("model: workspace %s of %d elements a row viewed with %d", w.name, w.per, per))
	}
	return w.slice(rows*w.off, rows*per)
}

// from returns its first rows rows less their first skip elements.
func (w *workspace) from(rows, skip int) gpu.Buffer {
	return w.slice(rows*w.off+skip, rows*w.per-skip)
}

func (w *workspace) slice(start, n int) gpu.Buffer {
	for _, s := range w.spans {
		if s.start == start && s.n == n {
			return s.v
		}
	}
	if len(w.spans) >= 64 {
		w.spans = w.spans[:0]
	}
	v := w.buf.Slice(start, n)
	w.spans = append(w.spans, span{start, n, v})
	return v
}

// workspaces are a network's workspaces: its layers name them as they are
// built, reserve allocates them.
type workspaces struct {
	list    []*workspace
	frame   int // the temporaries of the layer being built so far, elements a row
	arena   int // the largest layer's temporaries, elements a row
	capRows int
	owned   []gpu.Buffer
}

// stored adds a workspace with memory of its own.
func (ws *workspaces) stored(name string, per int) *workspace {
	w := &workspace{name: name, per: per}
	ws.list = append(ws.list, w)
	return w
}

// fixedSize adds a workspace of n elements whatever the rows.
func (ws *workspaces) fixedSize(name string, n int) *workspace {
	w := &workspace{name: name, fixed: n}
	ws.list = append(ws.list, w)
	return w
}

// layer starts the temporaries of a new layer at the arena's beginning.
func (ws *workspaces) layer() { ws.frame = 0 }

// temp adds a temporary of the layer being built, after its others.
func (ws *workspaces) temp(name string, per int) *workspace {
	w := &workspace{name: name, per: per, off: ws.frame, temp: true}
	ws.frame += per
	ws.arena = max(ws.arena, ws.frame)
	ws.list = append(ws.list, w)
	return w
}

// reserve makes every workspace hold rows rows (at least one: the layers
// take views even of an empty batch) and reports whether it allocated.
func (ws *workspaces) reserve(b gpu.Backend, rows int) bool {
	rows = max(rows, 1)
	if rows <= ws.capRows {
		return false
	}
	ws.release(b)
	alloc := func(n int) gpu.Buffer {
		buf := b.Alloc(n)
		ws.owned = append(ws.owned, buf)
		return buf
	}
	var arena gpu.Buffer
	if ws.arena > 0 {
		arena = alloc(rows * ws.arena)
	}
	for _, w := range ws.list {
		w.spans = w.spans[:0]
		if w.temp {
			w.buf = arena
		} else {
			w.buf = alloc(rows*w.per + w.fixed)
		}
	}
	ws.capRows = rows
	return true
}

// release frees the workspaces.
func (ws *workspaces) release(b gpu.Backend) {
	for _, buf := range ws.owned {
		b.Free(buf)
	}
	for _, w := range ws.list {
		w.buf, w.spans = nil, w.spans[:0]
	}
	ws.owned, ws.capRows = nil, 0
}
