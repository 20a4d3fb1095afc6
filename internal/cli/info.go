package cli

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/train"
)

// infoOptions are the settings of `fmgpu info`.
type infoOptions struct {
	checkpoint string // describe this checkpoint too ("": none)
}

func infoCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "info",
		Usage: "version, build (cpu+cuda: one binary for both) and the devices this binary sees; with --checkpoint, what a checkpoint holds",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "checkpoint", Usage: "describe a checkpoint too"},
		},
		Action: func(c *ucli.Context) error {
			if c.IsSet("checkpoint") && c.String("checkpoint") == "" {
				return usagef("--checkpoint: an empty path")
			}
			return runInfo(c.Context, infoOptions{checkpoint: c.String("checkpoint")}, c.App.Writer, c.App.ErrWriter)
		},
	}
}

func runInfo(_ context.Context, o infoOptions, w, _ io.Writer) error {
	fmt.Fprintf(w, "fmgpu %s (%s build, %s, %s/%s)\n", Version, gpu.Flavor, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	describeDevices(w)
	if o.checkpoint == "" {
		return nil
	}
	ck, err := train.Load(o.checkpoint)
	if err != nil {
		return err
	}
	m := ck.Meta
	fmt.Fprintf(w, "checkpoint %s: step %d of %d, model %v, path %s, time %s, %d parameters, data %s (%d x %d)\n",
		o.checkpoint, m.Step, m.Config.Steps, m.Config.Model, m.Config.Path,
		m.Config.Time.Kind, len(ck.Params), m.Data.Source, m.Data.Rows, m.Data.Dim)
	if cp := m.Config.Coupling; !cp.IsIndependent() {
		line := "coupling " + cp.Kind
		if cp.Reg > 0 {
			line += fmt.Sprintf(" (reg %g)", cp.Reg)
		}
		if cp.Blocks > 1 {
			line += fmt.Sprintf(", paired in %d blocks of the batch", cp.Blocks)
		}
		if k := m.Config.DistillSteps; k > 0 {
			line += fmt.Sprintf(", a student of %d Euler steps (sample's default solver)", k)
		}
		fmt.Fprintln(w, line)
	}
	if line := trainingSettings(m); line != "" {
		fmt.Fprintln(w, line)
	}
	if line := classLine(m.Data.Classes); line != "" {
		fmt.Fprintln(w, line)
	}
	// The EMA and Adam moments repeat every weight's name under a
	// prefix; listing them four times would bury the weights.
	names := make([]string, len(ck.Tensors))
	for i, t := range ck.Tensors {
		names[i] = t.Name + fmt.Sprint(t.Shape)
	}
	fmt.Fprintf(w, "tensors (%d, each also as ema.*, optim.exp_avg.*, optim.exp_avg_sq.*): %s\n", len(names), strings.Join(names, " "))
	return nil
}

// classLine lists a class-conditional model's classes by the index that
// sample --class takes; "" when they have no names.
func classLine(names []string) string {
	if len(names) == 0 {
		return ""
	}
	parts := make([]string, len(names))
	for k, n := range names {
		parts[k] = fmt.Sprintf("%d %s", k, n)
	}
	return "classes (sample --class): " + strings.Join(parts, ", ")
}

// trainingSettings is the line of what the first info line leaves out and
// a run may have set otherwise than by default: the time sampling's
// parameters (the shift also applies when sampling), the products'
// precision, the ranks of a data-parallel run; "" when all are defaults.
func trainingSettings(m train.Meta) string {
	var parts []string
	ts := m.Config.Time
	if ts.Kind == flow.TimeLogitNormal {
		parts = append(parts, fmt.Sprintf("time logit-normal mean %g, std %g", ts.Mean, ts.Std))
	}
	if ts.Shift != 0 && ts.Shift != 1 {
		parts = append(parts, fmt.Sprintf("time shift %g (training and sampling)", ts.Shift))
	}
	if p := m.Config.Precision; p != gpu.PrecisionFP32 {
		parts = append(parts, "precision "+p.String())
	}
	if par := m.Parallel; par != nil {
		parts = append(parts, fmt.Sprintf("trained on %d ranks (%s)", par.WorldSize, par.Engine))
	}
	if len(parts) == 0 {
		return ""
	}
	return "training: " + strings.Join(parts, ", ")
}
