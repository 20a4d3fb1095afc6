package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/fmgpu/fmgpu/train"
)

// The report moves at every step, before any loss is known, and shows
// rates without exponents (item 12).
func TestProgressMovesEveryStep(t *testing.T) {
	var buf bytes.Buffer
	pr := newProgress(&buf, false, "fmgpu train", "step", 0, 100)
	t0 := time.Now()
	pr.now = func() time.Time { return t0 }
	pr.start = t0.Add(-time.Second)
	pr.step(7)
	if s := pr.status(); !strings.HasPrefix(s, "step 7/100 loss -") || !strings.Contains(s, "7 steps/s") {
		t.Errorf("after 7 steps: %q", s)
	}
	pr.log(train.Metric{Step: 10, Loss: 0.5, GradNorm: 1, LR: 1e-3})
	if s := pr.status(); !strings.HasPrefix(s, "step 10/100 loss 0.5000 grad_norm 1.000 lr 1.00e-03") {
		t.Errorf("after a log: %q", s)
	}
	// plain lines: none before plainEvery, one after
	if buf.Len() != 0 {
		t.Errorf("a plain line before %v: %q", plainEvery, buf.String())
	}
	pr.lastLine = t0.Add(-plainEvery)
	pr.step(11)
	if !strings.HasPrefix(buf.String(), "fmgpu train: step 11/100 loss 0.5000") {
		t.Errorf("plain line %q", buf.String())
	}
	pr.phase("drawing %s", "samples.png")
	if !strings.HasSuffix(buf.String(), "fmgpu train: drawing samples.png\n") {
		t.Errorf("phase line: %q", buf.String())
	}
	quiet := newProgress(&buf, true, "fmgpu sample", "samples", 0, 10)
	n := buf.Len()
	quiet.lastLine = time.Time{}
	quiet.step(5)
	quiet.phase("x")
	if buf.Len() != n {
		t.Error("a quiet report wrote")
	}
}

// train reports its slow phases on lines of their own.
func TestTrainPhaseLines(t *testing.T) {
	code, _, e := fmgpu(t, "train", "--data", "moons", "--out", t.TempDir(), "--steps", "10", "--hidden", "8", "--n-data", "200", "--device", "cpu")
	if code != 0 || !strings.Contains(e, "fmgpu train: drawing loss.png and samples.png\n") || !strings.Contains(e, "step 10/10") {
		t.Errorf("exit %d, stderr %q", code, e)
	}
}
