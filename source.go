package fmgpu

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/train"
)

// Source delivers training rows on demand (see train.Source): a generator
// of points, a file read piece by piece, a database cursor. A Trainer asks
// it for a batch of rows, in data units, before every step.
type Source = train.Source

// RowSeeker is a Source that can continue from a given row, which makes a
// resumed streaming run exact (see train.RowSeeker).
type RowSeeker = train.RowSeeker

// SourceFunc is a Source of rows of dim values that next writes: a
// generator of points. next fills x (rows x dim values) and, for a
// class-conditional model, labels; see train.Source.
func SourceFunc(dim int, next func(ctx context.Context, x []float32, labels []int32) error) Source {
	return funcSource{d: dim, next: next}
}

type funcSource struct {
	d    int
	next func(context.Context, []float32, []int32) error
}

func (s funcSource) Dim() int { return s.d }

func (s funcSource) Next(ctx context.Context, x []float32, labels []int32) error {
	if s.next == nil {
		return errors.New("fmgpu: SourceFunc was given no function")
	}
	return s.next(ctx, x, labels)
}

// Rows is a Source over rows held in memory (len(x)/dim rows of dim
// values, row-major). A Trainer uploads them to the device once and draws
// every batch there, and a run resumed from its checkpoint repeats the
// batches of an uninterrupted run exactly. The Trainer reads x when it is
// built and keeps no reference to it. As a plain Source it yields the rows
// in order, over and over.
func Rows(x []float32, dim int) Source { return &memSource{x: x, d: dim} }

// LabeledRows is Rows with a class label per row, for a class-conditional
// model (labels in [0, Classes)).
func LabeledRows(x []float32, labels []int32, dim int) Source {
	return &memSource{x: x, labels: labels, d: dim}
}

// DatasetRows is Rows over a data set loaded by package data (a built-in
// set, a .npy or .csv file, images), with its labels when it has some.
func DatasetRows(ds *data.Dataset) Source {
	if ds == nil {
		return &memSource{} // no rows: an error when read
	}
	return &memSource{x: ds.X, labels: ds.Labels, d: ds.D, name: ds.Name}
}

// memSource is the in-memory Source.
type memSource struct {
	x      []float32
	labels []int32
	d      int
	name   string
	row    int
}

func (s *memSource) Dim() int { return s.d }

// rows checks the source's shape and returns its row count.
func (s *memSource) rows() (int, error) {
	if len(s.x) == 0 {
		return 0, errors.New("fmgpu: the source holds no rows")
	}
	if s.d < 1 || len(s.x)%s.d != 0 {
		return 0, fmt.Errorf("fmgpu: %d values are not rows of %d", len(s.x), s.d)
	}
	n := len(s.x) / s.d
	if s.labels != nil && len(s.labels) != n {
		return 0, fmt.Errorf("fmgpu: %d labels for %d rows", len(s.labels), n)
	}
	return n, nil
}

func (s *memSource) Next(ctx context.Context, x []float32, labels []int32) error {
	n, err := s.rows()
	if err != nil {
		return err
	}
	if labels != nil && s.labels == nil {
		return errors.New("fmgpu: the rows have no labels")
	}
	for r := range len(x) / s.d {
		i := s.row % n
		copy(x[r*s.d:(r+1)*s.d], s.x[i*s.d:(i+1)*s.d])
		if labels != nil {
			labels[r] = s.labels[i]
		}
		s.row = i + 1
	}
	return nil
}

func (s *memSource) SeekRow(_ context.Context, row int64) error {
	n, err := s.rows()
	if err != nil {
		return err
	}
	if row < 0 {
		return fmt.Errorf("fmgpu: SeekRow %d: need a row >= 0", row)
	}
	s.row = int(row % int64(n))
	return nil
}

// stdSource standardizes the rows of a stream, serving first the rows read
// ahead to fit the standardization.
type stdSource struct {
	src    Source
	std    data.Standardization
	ahead  []float32 // rows read ahead, standardized
	aheadL []int32
	used   int // rows of ahead served
}

func (s *stdSource) Dim() int { return s.src.Dim() }

func (s *stdSource) Next(ctx context.Context, x []float32, labels []int32) error {
	d := s.src.Dim()
	rows := len(x) / d
	from := min(rows, len(s.ahead)/d-s.used)
	if from > 0 {
		copy(x, s.ahead[s.used*d:(s.used+from)*d])
		if labels != nil {
			copy(labels, s.aheadL[s.used:s.used+from])
		}
		s.used += from
	}
	if from == rows {
		return nil
	}
	var rest []int32
	if labels != nil {
		rest = labels[from:]
	}
	if err := s.src.Next(ctx, x[from*d:], rest); err != nil {
		return err
	}
	s.std.Apply(x[from*d:])
	return nil
}

// seekingStdSource is a stdSource over a source that seeks.
type seekingStdSource struct{ *stdSource }

func (s seekingStdSource) SeekRow(ctx context.Context, row int64) error {
	if n := int64(len(s.ahead) / s.src.Dim()); row < n {
		s.used = int(row)
		return s.src.(RowSeeker).SeekRow(ctx, n)
	}
	s.ahead, s.aheadL, s.used = nil, nil, 0
	return s.src.(RowSeeker).SeekRow(ctx, row)
}

// newStdSource standardizes src by std, or, when std is nil, by the
// standardization fitted to its next fit rows (read ahead, then served
// first).
func newStdSource(ctx context.Context, src Source, std *data.Standardization, fit int, labeled bool) (Source, data.Standardization, error) {
	s := &stdSource{src: src}
	d := src.Dim()
	if std != nil {
		s.std = *std
	} else {
		s.ahead = make([]float32, fit*d)
		if labeled {
			s.aheadL = make([]int32, fit)
		}
		if err := src.Next(ctx, s.ahead, s.aheadL); err != nil {
			return nil, data.Standardization{}, fmt.Errorf("fmgpu: reading %d rows to fit the standardization: %w", fit, err)
		}
		for i, v := range s.ahead {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, data.Standardization{}, fmt.Errorf("fmgpu: row %d of the source holds %g in column %d", i/d, v, i%d)
			}
		}
		s.std = data.Fit(&data.Dataset{X: s.ahead, N: fit, D: d})
		s.std.Apply(s.ahead)
	}
	if _, ok := src.(RowSeeker); ok {
		return seekingStdSource{s}, s.std, nil
	}
	return s, s.std, nil
}
