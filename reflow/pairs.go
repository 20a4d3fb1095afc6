// Package reflow makes and keeps the (noise, sample) pairs of a trained
// flow that reflow and distillation train on (Liu et al., "Flow straight
// and fast", 2022; docs/flows.md): noise x0 drawn from the path's prior,
// x1 the teacher's ODE solved from it, both in the teacher network's
// (standardized) units. Pairs are written in chunks, each file atomically,
// so that an interrupted generation continues from the chunks on disk.
package reflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/generate"
	"github.com/fmgpu/fmgpu/internal/atomicfile"
	"github.com/fmgpu/fmgpu/model"
	"github.com/fmgpu/fmgpu/sampler"
)

// SpecName is the file that records how a directory's pairs are made.
const SpecName = "pairs.json"

// Spec says how the pairs of a directory are made; a generation that
// continues must be given the same.
type Spec struct {
	// Teacher is the checkpoint the pairs come from, as given, and
	// TeacherSHA256 the hash of its file.
	Teacher       string `json:"teacher"`
	TeacherSHA256 string `json:"teacher_sha256"`
	Pairs         int    `json:"pairs"`
	Chunk         int    `json:"chunk"` // pairs per file
	Seed          uint64 `json:"seed"`
	Dim           int    `json:"dim"`
	Classes       int    `json:"classes,omitempty"`
	// Solver is the ODE solver's name, with Steps for the fixed-step ones
	// and the tolerances for dopri5.
	Solver     string  `json:"solver"`
	Steps      int     `json:"steps,omitempty"`
	Rtol       float64 `json:"rtol,omitempty"`
	Atol       float64 `json:"atol,omitempty"`
	Guidance   float64 `json:"guidance,omitempty"`
	RawWeights bool    `json:"raw_weights,omitempty"` // the teacher's raw weights, not their EMA
	// FromScratch records that the student starts from a fresh
	// initialization, not the teacher's weights: a run continued with the
	// other choice would otherwise go on from where it began without a
	// word.
	FromScratch bool `json:"from_scratch,omitempty"`
}

// SolverSpec fills the solver fields of s from o.
func (s *Spec) SolverSpec(o sampler.Options) {
	s.Solver = o.Method.String()
	s.Steps, s.Rtol, s.Atol = 0, 0, 0
	if o.Method.Adaptive() {
		s.Rtol, s.Atol = o.Rtol, o.Atol
	} else {
		s.Steps = o.Steps
	}
}

// Chunks is the number of chunk files of s.
func (s Spec) Chunks() int { return (s.Pairs + s.Chunk - 1) / s.Chunk }

func (s Spec) rows(k int) int { return min(s.Chunk, s.Pairs-k*s.Chunk) }

// width is the columns of a chunk file: x0, x1 and the label.
func (s Spec) width() int {
	if s.Classes > 0 {
		return 2*s.Dim + 1
	}
	return 2 * s.Dim
}

// ChunkPath is the file of chunk k in dir.
func ChunkPath(dir string, k int) string {
	return filepath.Join(dir, fmt.Sprintf("pairs-%06d.npy", k))
}

// DefaultChunk is the pairs per file for a network of configuration c: a
// few seconds of solving on a CPU, so that little is lost to an interrupt.
func DefaultChunk(c model.Config) int { return min(generate.ChunkRows(c), 8192) }

// Mismatch is a directory whose pairs were made otherwise than asked.
type Mismatch struct {
	Dir, Field string
	Was, Now   any
}

func (e *Mismatch) Error() string {
	return fmt.Sprintf("%s holds pairs made with %s %v, not %v", e.Dir, e.Field, e.Was, e.Now)
}

// ReadSpec reads dir's pairs.json; ok is false when there is none.
func ReadSpec(dir string) (s Spec, ok bool, err error) {
	raw, err := os.ReadFile(filepath.Join(dir, SpecName))
	if errors.Is(err, os.ErrNotExist) {
		return s, false, nil
	}
	if err != nil {
		return s, false, err
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return s, false, fmt.Errorf("%s: %v", filepath.Join(dir, SpecName), err)
	}
	if s.Pairs < 1 || s.Chunk < 1 || s.Dim < 1 || s.Classes < 0 {
		return s, false, fmt.Errorf("%s: %d pairs in chunks of %d, dimension %d: not a pairs record", filepath.Join(dir, SpecName), s.Pairs, s.Chunk, s.Dim)
	}
	return s, true, nil
}

// Compare returns a *Mismatch for the first field in which want differs
// from was (the teacher by its hash: a moved file is the same teacher).
func Compare(dir string, was, want Spec) error {
	check := []struct {
		name     string
		was, now any
	}{
		{"teacher", was.TeacherSHA256, want.TeacherSHA256},
		{"pairs", was.Pairs, want.Pairs}, {"seed", was.Seed, want.Seed},
		{"solver", was.Solver, want.Solver}, {"steps", was.Steps, want.Steps},
		{"rtol", was.Rtol, want.Rtol}, {"atol", was.Atol, want.Atol},
		{"guidance", was.Guidance, want.Guidance}, {"no-ema", was.RawWeights, want.RawWeights},
		{"from-scratch", was.FromScratch, want.FromScratch},
		{"chunk", was.Chunk, want.Chunk}, {"dim", was.Dim, want.Dim}, {"classes", was.Classes, want.Classes},
	}
	for _, c := range check {
		if c.was != c.now {
			if c.name == "teacher" {
				return &Mismatch{Dir: dir, Field: "teacher", Was: was.Teacher, Now: want.Teacher + " (another file)"}
			}
			return &Mismatch{Dir: dir, Field: c.name, Was: c.was, Now: c.now}
		}
	}
	return nil
}

// Done counts the chunks of s on disk in dir: the generation continues
// from the first missing one.
func Done(dir string, s Spec) int {
	k := 0
	for ; k < s.Chunks(); k++ {
		if _, err := os.Stat(ChunkPath(dir, k)); err != nil {
			break
		}
	}
	return k
}

// Generate makes the pairs of s in dir with the teacher m (the spec's
// Dim, Classes and solver are m's and so's), writing pairs.json first and
// then each chunk that is not on disk yet. Chunk k's noise is Philox
// stream k of s.Seed, its labels (class-conditional teachers) uniform
// classes from a PCG seeded with (s.Seed, k), so a continued generation
// makes what an uninterrupted one would. progress, when set, is called
// after each chunk with the pairs done. When ctx is cancelled it stops
// after the current chunk's step, keeping the chunks written.
func Generate(ctx context.Context, m *generate.Model, dir string, s Spec, so sampler.Options, progress func(done, total int)) error {
	if m.Dim() != s.Dim || m.Classes() != s.Classes {
		return fmt.Errorf("reflow: the spec's dimension %d and classes %d are not the teacher's %d and %d", s.Dim, s.Classes, m.Dim(), m.Classes())
	}
	if was, ok, err := ReadSpec(dir); err != nil {
		return err
	} else if ok {
		if err := Compare(dir, was, s); err != nil {
			return err
		}
	} else {
		js, _ := json.MarshalIndent(s, "", "  ")
		if err := atomicfile.WriteBytes(filepath.Join(dir, SpecName), append(js, '\n')); err != nil {
			return err
		}
	}
	b, d := m.Backend(), s.Dim
	so.T0, so.T1 = m.Path.TimeRange()
	if so.TimeShift == 0 {
		so.TimeShift = m.TimeShift
	}
	so.Stop = ctx.Err
	if !so.Method.Adaptive() {
		rec := sampler.NewRecorder(b)
		defer rec.Close()
		so.Recorder = rec
	}
	x := b.Alloc(s.Chunk * d)
	defer b.Free(x)
	x0 := make([]float32, s.Chunk*d)
	x1 := make([]float32, s.Chunk*d)
	out := make([]float32, s.Chunk*s.width())
	for k := Done(dir, s); k < s.Chunks(); k++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		rows := s.rows(k)
		xs := x.Slice(0, rows*d)
		b.RandNormal(xs, s.Seed, uint64(k), float32(m.Path.PriorStd()))
		b.Download(x0[:rows*d], xs)
		labels := chunkLabels(s, k, rows)
		var field sampler.Field = m.Net
		var guided *model.Guided
		if labels != nil {
			guided = model.NewGuided(b, m.Net, labels, s.Guidance)
			field = guided
		}
		_, err := sampler.Solve(b, field, xs, rows, so)
		if guided != nil {
			guided.Release()
		}
		if err != nil {
			return err
		}
		b.Download(x1[:rows*d], xs)
		if err := b.Sync(); err != nil {
			return err
		}
		w := s.width()
		for r := range rows {
			row := out[r*w : (r+1)*w]
			copy(row, x0[r*d:(r+1)*d])
			copy(row[d:], x1[r*d:(r+1)*d])
			if labels != nil {
				row[2*d] = float32(labels[r])
			}
		}
		for i, v := range x1[:rows*d] {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("reflow: the teacher's sample %d came out non-finite (a diverged teacher or too coarse a solver)", k*s.Chunk+i/d)
			}
		}
		if err := atomicfile.Write(ChunkPath(dir, k), func(wr io.Writer) error {
			return data.WriteNPY(wr, out[:rows*w], rows, w)
		}); err != nil {
			return err
		}
		if progress != nil {
			progress(k*s.Chunk+rows, s.Pairs)
		}
	}
	return nil
}

// chunkLabels draws the classes of chunk k's pairs (nil for an
// unconditional teacher).
func chunkLabels(s Spec, k, rows int) []int {
	if s.Classes == 0 {
		return nil
	}
	r := rand.New(rand.NewPCG(s.Seed, uint64(k)^0x7265666c6f77)) // "reflow"
	labels := make([]int, rows)
	for i := range labels {
		labels[i] = r.IntN(s.Classes)
	}
	return labels
}

// Pairs are a directory's pairs read back: x0 and x1 (Pairs x Dim each)
// and, for a class-conditional teacher, the labels.
type Pairs struct {
	X0, X1 []float32
	Labels []int32
	N, Dim int
}

// Load reads the pairs of s from dir; every chunk must be there.
func Load(dir string, s Spec) (*Pairs, error) {
	d, w := s.Dim, s.width()
	p := &Pairs{X0: make([]float32, 0, s.Pairs*d), X1: make([]float32, 0, s.Pairs*d), N: s.Pairs, Dim: d}
	for k := range s.Chunks() {
		ds, err := data.LoadNPY(ChunkPath(dir, k))
		if err != nil {
			return nil, err
		}
		if ds.N != s.rows(k) || ds.D != w {
			return nil, fmt.Errorf("%s: %d x %d values, want %d x %d", ChunkPath(dir, k), ds.N, ds.D, s.rows(k), w)
		}
		for r := range ds.N {
			row := ds.X[r*w : (r+1)*w]
			p.X0 = append(p.X0, row[:d]...)
			p.X1 = append(p.X1, row[d:2*d]...)
			if s.Classes > 0 {
				l := row[2*d]
				if !(l >= 0 && int(l) < s.Classes && l == float32(int(l))) {
					return nil, fmt.Errorf("%s: row %d has label %v, want 0..%d", ChunkPath(dir, k), r, l, s.Classes-1)
				}
				p.Labels = append(p.Labels, int32(l))
			}
		}
	}
	return p, nil
}
