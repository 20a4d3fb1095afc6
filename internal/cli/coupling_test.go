package cli

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/train"
)

var couplingArgs = []string{"--data", "8gaussians", "--steps", "80", "--batch", "64", "--hidden", "16,16",
	"--n-data", "3000", "--warmup", "10", "--log-every", "20", "--quiet", "--no-plot"}

// --coupling is recorded in the checkpoint, kept by --resume (which
// continues bit-identically) and may not be changed there.
func TestTrainCouplingResume(t *testing.T) {
	for _, cp := range [][]string{{"--coupling", "ot"}, {"--coupling", "sinkhorn", "--ot-reg", "0.5"}, {"--coupling", "ot", "--coupling-blocks", "4"}} {
		t.Run(strings.Join(cp, ""), func(t *testing.T) {
			straight, chunked := t.TempDir(), t.TempDir()
			args := append(append([]string(nil), couplingArgs...), cp...)
			if code, _, e := fmgpu(t, append([]string{"train", "--out", straight}, args...)...); code != 0 {
				t.Fatal(e)
			}
			ck, err := train.Load(filepath.Join(straight, train.CheckpointName))
			if err != nil {
				t.Fatal(err)
			}
			if got := ck.Meta.Config.Coupling; got.Kind != cp[1] || (cp[1] == "sinkhorn") != (got.Reg == 0.5) || slices.Contains(cp, "--coupling-blocks") != (got.Blocks == 4) {
				t.Fatalf("checkpoint records coupling %+v", got)
			}
			if slices.Contains(cp, "--coupling-blocks") {
				code, out, e := fmgpu(t, "info", "--checkpoint", filepath.Join(straight, train.CheckpointName))
				if code != 0 || !strings.Contains(out, "coupling ot, paired in 4 blocks of the batch") {
					t.Errorf("info: exit %d, %q %q", code, out, e)
				}
			}
			if code, _, e := fmgpu(t, append([]string{"train", "--out", chunked, "--stop-after", "40"}, args...)...); code != 0 {
				t.Fatal(e)
			}
			// the checkpoint's own coupling flags, all or some, are no change
			same := [][]string{cp, cp[:2]}
			switch {
			case cp[1] == "sinkhorn":
				same = append(same, cp[2:])
			case slices.Contains(cp, "--coupling-blocks"):
				same = append(same, cp[2:], []string{"--coupling-blocks", "4", "--coupling", "ot"})
			}
			for i, flags := range same {
				stop := []string{"--stop-after", strconv.Itoa(41 + i)}
				if code, _, e := fmgpu(t, append(append([]string{"train", "--out", chunked, "--resume"}, append(couplingArgs, stop...)...), flags...)...); code != 0 {
					t.Fatalf("resume with %v: exit %d, %s", flags, code, e)
				}
			}
			// the coupling is the checkpoint's when not given
			if code, _, e := fmgpu(t, append([]string{"train", "--out", chunked, "--resume"}, couplingArgs...)...); code != 0 {
				t.Fatal(e)
			}
			sameCheckpointTensors(t, filepath.Join(straight, train.CheckpointName), filepath.Join(chunked, train.CheckpointName))
			for _, bad := range [][]string{{"--coupling", "independent"}, {"--coupling", "sinkhorn", "--ot-reg", "0.25"}, {"--coupling", "ot", "--coupling-blocks", "2"}} {
				code, _, e := fmgpu(t, append(append([]string{"train", "--out", chunked, "--resume"}, couplingArgs...), append(bad, "--steps", "100")...)...)
				if bad[1] == cp[1] && len(bad) == 2 {
					continue
				}
				if code != 2 || !strings.Contains(e, "--coupling") && !strings.Contains(e, "--ot-reg") || strings.Count(strings.TrimSpace(e), "\n") != 0 {
					t.Errorf("resume with %v: exit %d, %q", bad, code, e)
				}
			}
		})
	}
}

func TestTrainCouplingBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--coupling", "hungarian"}, "--coupling \"hungarian\": want independent, ot, sinkhorn"},
		{[]string{"--coupling", "ot", "--ot-reg", "0.1"}, "--ot-reg applies to --coupling sinkhorn"},
		{[]string{"--coupling", "sinkhorn", "--ot-reg", "0"}, "--ot-reg 0: need"},
		{[]string{"--coupling", "sinkhorn", "--ot-reg", "NaN"}, "--ot-reg NaN: need"},
		{[]string{"--coupling", "pairs"}, "--coupling \"pairs\""},
		{[]string{"--coupling-blocks", "2"}, "--coupling-blocks applies to --coupling ot and sinkhorn, not independent"},
		{[]string{"--coupling", "ot", "--coupling-blocks", "0"}, "--coupling-blocks 0: need 1..--batch"},
		{[]string{"--coupling", "ot", "--coupling-blocks", "65"}, "--coupling-blocks 65: need 1..--batch (64)"},
	} {
		dir := filepath.Join(t.TempDir(), "out")
		code, _, e := fmgpu(t, append(append([]string{"train", "--out", dir}, couplingArgs...), c.args...)...)
		if code != ExitUsage || !strings.Contains(e, c.want) || strings.Count(strings.TrimSpace(e), "\n") != 0 {
			t.Errorf("%v: exit %d, %q (want %q)", c.args, code, e, c.want)
		}
	}
}

// bench --workload coupling-ot times the coupled step beside the
// independent one and reports the coupling's share.
func TestBenchCoupling(t *testing.T) {
	for _, w := range []string{"coupling-ot", "coupling-sinkhorn"} {
		f := benchFields(t, "--device", "cpu", "--workload", w, "--steps", "10")
		if f["workload"] != w+"-b256" {
			t.Fatalf("workload=%q", f["workload"])
		}
		step, coupled, pairing := number(t, f, "step_ms"), number(t, f, "coupled_step_ms"), number(t, f, "pairing_ms")
		if !(step > 0 && pairing > 0 && coupled > 0) {
			t.Errorf("%s: step %g ms, coupled %g ms, pairing %g ms", w, step, coupled, pairing)
		}
		number(t, f, "cost_pct")
	}
}

// A run trained before --coupling existed (or without it) is independent:
// resuming it with another coupling is refused, and reflow's runs are
// continued by reflow, not train.
func TestTrainCouplingResumeDefault(t *testing.T) {
	dir := t.TempDir()
	args := append([]string{"train", "--out", dir, "--stop-after", "40"}, couplingArgs...)
	if code, _, e := fmgpu(t, args...); code != 0 {
		t.Fatal(e)
	}
	code, _, e := fmgpu(t, append(append([]string{"train", "--out", dir, "--resume"}, couplingArgs...), "--coupling", "ot")...)
	if code != ExitUsage || !strings.Contains(e, "--coupling differs") {
		t.Errorf("resume of an independent run with --coupling ot: exit %d, %q", code, e)
	}
	if code, _, e := fmgpu(t, append([]string{"train", "--out", dir, "--resume"}, couplingArgs...)...); code != 0 {
		t.Errorf("resume: %s", e)
	}
	r := filepath.Join(t.TempDir(), "r")
	if code, _, e := fmgpu(t, "reflow", "--checkpoint", filepath.Join(dir, train.CheckpointName), "--out", r, "--pairs", "100", "--train-steps", "20", "--steps", "2", "--quiet"); code != 0 {
		t.Fatal(e)
	}
	code, _, e = fmgpu(t, "train", "--out", r, "--resume", "--steps", "40", "--quiet")
	if code != ExitUsage || !strings.Contains(e, "fmgpu reflow or distill") {
		t.Errorf("train --resume of a reflow run: exit %d, %q", code, e)
	}
}

// A Sinkhorn plan that stops at its iteration limit short of its
// tolerance is said once, and counted in metrics.jsonl; one that
// converges says nothing.
func TestTrainSinkhornUnconverged(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		reg  string
		warn bool
	}{{"0.001", true}, {"0.5", false}} {
		out := filepath.Join(dir, c.reg)
		code, _, e := cpuRun(t, "train", "--data", "moons", "--coupling", "sinkhorn", "--ot-reg", c.reg, "--steps", "10", "--log-every", "5",
			"--hidden", "16,16", "--out", out, "--no-plot", "--quiet")
		if code != 0 {
			t.Fatalf("--ot-reg %s: exit %d %q", c.reg, code, e)
		}
		b, err := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		warned := strings.Count(e, "Sinkhorn plans stopped at the 1000-iteration limit")
		counted := strings.Contains(string(b), `"sinkhorn_unconverged":5`)
		if c.warn && (warned != 1 || !counted) || !c.warn && (warned != 0 || strings.Contains(string(b), "sinkhorn_unconverged")) {
			t.Errorf("--ot-reg %s: warned %d times (%q), metrics %s", c.reg, warned, e, b)
		}
	}
}
