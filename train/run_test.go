package train

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/gpu"
)

// metrics.jsonl's loss is per element, loss_sum the sum over the D
// dimensions; a resumed run notes the settings it changed on one line at
// the step it starts from, and reads lines of the older form (the sum in
// loss) into the current one.
func TestMetricsLossAndResumeNote(t *testing.T) {
	b := gpu.NewCPU(1)
	defer b.Close()
	ds, std := standardized(t, "moons")
	cfg := testConfig()
	cfg.Steps = 40
	tr, err := New(b, cfg, ds.X, ds.N)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	dir := t.TempDir()
	steps := 0
	if err := tr.Run(context.Background(), RunOptions{OutDir: dir, LogEvery: 10, Std: std, StopAt: 20,
		OnStep: func(int) { steps++ }}); err != nil {
		t.Fatal(err)
	}
	if steps != 20 {
		t.Errorf("OnStep called %d times for 20 steps", steps)
	}
	ms, err := readMetrics(filepath.Join(dir, MetricsName), 20, 2)
	if err != nil || len(ms) != 2 {
		t.Fatalf("%d lines, %v", len(ms), err)
	}
	for _, m := range ms {
		if m.Loss <= 0 || math.Abs(m.LossSum-2*m.Loss) > 1e-12*m.LossSum {
			t.Errorf("step %d: loss %g, loss_sum %g: want loss_sum = 2 loss", m.Step, m.Loss, m.LossSum)
		}
	}

	ck, err := Load(filepath.Join(dir, CheckpointName))
	if err != nil {
		t.Fatal(err)
	}
	cfg2 := cfg
	cfg2.LR, cfg2.Steps = cfg.LR/2, 60
	changes := Diff(ck.Meta.Config, cfg2)
	if len(changes) != 2 || changes[0].Setting != "steps" || changes[1].Setting != "lr" || string(changes[0].Was) != "40" || string(changes[0].Now) != "60" {
		t.Fatalf("Diff: %+v", changes)
	}
	tr2, err := New(b, cfg2, ds.X, ds.N)
	if err != nil {
		t.Fatal(err)
	}
	defer tr2.Close()
	if err := tr2.Resume(ck); err != nil {
		t.Fatal(err)
	}
	if err := tr2.Run(context.Background(), RunOptions{OutDir: dir, LogEvery: 10, Std: std, StopAt: 30, Changes: changes}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, MetricsName))
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) != 4 {
		t.Fatalf("metrics after the resume:\n%s", raw)
	}
	var ev map[string]any
	json.Unmarshal([]byte(lines[2]), &ev)
	if ev["step"] != 20.0 || ev["event"] != "resume" || !strings.Contains(lines[2], `"lr":[0.003,0.0015]`) || !strings.Contains(lines[2], `"steps":[40,60]`) {
		t.Errorf("resume line %s", lines[2])
	}

	// a line of the older form
	old := filepath.Join(t.TempDir(), MetricsName)
	os.WriteFile(old, []byte(`{"step":10,"loss":3,"lr":0.1,"grad_norm":1,"steps_per_s":5,"elapsed_s":2}`+"\n"), 0o644)
	ms, err = readMetrics(old, 10, 3)
	if err != nil || len(ms) != 1 || ms[0].Loss != 1 || ms[0].LossSum != 3 {
		t.Errorf("older line read as %+v, %v", ms, err)
	}
}

// Diff names no setting for equal configurations, and the network as one
// setting.
func TestDiff(t *testing.T) {
	a := testConfig()
	if d := Diff(a, a); len(d) != 0 {
		t.Errorf("equal configurations: %+v", d)
	}
	b := a
	b.Model.Hidden = []int{8}
	b.Optimizer = AdamW
	d := Diff(a, b)
	if len(d) != 2 || d[0].Setting != "model" || d[1].Setting != "optimizer" || string(d[1].Now) != `"adamw"` {
		t.Errorf("Diff: %+v", d)
	}
}

// The non-finite error says what happened, not what to do: the fix
// depends on settings the caller knows.
func TestNonFiniteErrorWording(t *testing.T) {
	e := &NonFiniteError{Step: 7, What: "gradient"}
	if s := e.Error(); s != "step 7: non-finite gradient; training stopped" {
		t.Errorf("%q", s)
	}
}

// FieldError names the field as a checkpoint stores it.
func TestValidateFieldError(t *testing.T) {
	c := testConfig()
	c.MaxGradNorm = -1
	err := c.Validate()
	fe, ok := err.(*FieldError)
	if !ok || fe.Field != "max_grad_norm" || strings.Contains(err.Error(), "--") {
		t.Errorf("%v", err)
	}
	if _, err := ParseOptimizer("sgd"); err == nil {
		t.Error("ParseOptimizer(sgd)")
	}
	if s, err := ParseSchedule("constant"); err != nil || s != Constant {
		t.Error("ParseSchedule(constant)")
	}
}
