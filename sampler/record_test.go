package sampler

import (
	"errors"
	"math"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/closedform"
	"github.com/fmgpu/fmgpu/internal/fakecuda"
)

// kernelField is v(t, x) = -(1 + t) x through backend ops only (kernels: a
// graph can record it).
type kernelField struct {
	b     gpu.Backend
	d     int
	calls int
}

func (f *kernelField) Dim() int { return f.d }
func (f *kernelField) Velocity(t float64, rows int, x, v gpu.Buffer) {
	f.calls++
	n := rows * f.d
	f.b.Fill(v.Slice(0, n), 0)
	f.b.Axpy(float32(-(1 + t)), x.Slice(0, n), v.Slice(0, n))
}

// Fixed-step solves through a Recorder replay one recorded graph from the
// third solve of the same field, rows and grid on (the first runs op by op,
// the second records), with exactly the numbers of solves without it; a
// field that cannot be recorded (it downloads) is solved op by op; through
// the real launcher over the fake libcuda.
func TestRecorderReplaysFixedSolves(t *testing.T) {
	if testing.Short() {
		t.Skip("kernels on the CPU")
	}
	b, err := gpu.NewCUDADriver(gpu.CUDAOptions{Library: fakecuda.Library(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const rows, d = 37, 3
	f := &kernelField{b: b, d: d}
	x0 := make([]float32, rows*d)
	for i := range x0 {
		x0[i] = float32(math.Sin(float64(i) + 0.5))
	}
	for _, m := range fixedMethods {
		o := Options{Method: m, Steps: 7, TimeShift: 3}
		x := b.Alloc(rows * d)
		b.Upload(x, x0)
		want, err := Solve(b, f, x, rows, o)
		if err != nil {
			t.Fatal(err)
		}
		wantX := make([]float32, rows*d)
		b.Download(wantX, x)

		r := NewRecorder(b)
		o.Recorder = r
		for i := 0; i < 4; i++ {
			b.Upload(x, x0)
			calls := f.calls
			st, err := Solve(b, f, x, rows, o)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]float32, rows*d)
			b.Download(got, x)
			for j := range got {
				if math.Float32bits(got[j]) != math.Float32bits(wantX[j]) {
					t.Fatalf("%v solve %d: x[%d] = %g, op by op %g", m, i, j, got[j], wantX[j])
				}
			}
			if st.NFE != want.NFE || st.Steps != want.Steps || st.FieldCalls != want.FieldCalls {
				t.Errorf("%v solve %d: stats %+v, op by op %+v", m, i, st, want)
			}
			if i >= 2 && f.calls != calls {
				t.Errorf("%v solve %d: the field was called (%d times) in a replay", m, i, f.calls-calls)
			}
		}
		if r.Replays() != 3 { // the second solve records and replays
			t.Errorf("%v: %d replays in 4 solves, want 3", m, r.Replays())
		}
		// A replayed solve asks Stop before it starts.
		stop := errors.New("stop")
		o.Stop = func() error { return stop }
		if _, err := Solve(b, f, x, rows, o); err != stop || r.Replays() != 3 {
			t.Errorf("%v: a stopped replay: err %v, %d replays", m, err, r.Replays())
		}
		r.Close()
		b.Free(x)
	}

	// A field that downloads cannot be recorded: op by op, no error.
	g := closedform.MustGaussian([]float64{1, -0.5}, []float64{2, 0.8, 0.8, 0.7}).Field(b)
	x := b.Alloc(rows * 2)
	defer b.Free(x)
	r := NewRecorder(b)
	defer r.Close()
	for i := 0; i < 3; i++ {
		b.Upload(x, x0[:rows*2])
		calls := g.Calls
		st, err := Solve(b, g, x, rows, Options{Method: RK4, Steps: 5, Recorder: r})
		if err != nil {
			t.Fatal(err)
		}
		made := 20
		if i == 1 {
			made = 40 // the failed recording's calls, then the solve's
		}
		if st.FieldCalls != 20 || g.Calls-calls != made {
			t.Errorf("solve %d: %d field calls counted, %d made; want 20 and %d", i, st.FieldCalls, g.Calls-calls, made)
		}
	}
	if r.Replays() != 0 || !r.failed {
		t.Errorf("%d replays of a field that downloads (recording failed: %v)", r.Replays(), r.failed)
	}
}
