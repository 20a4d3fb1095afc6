package cli

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/fmgpu/fmgpu/flow"
)

// pathReport is the JSON object `fmgpu path` prints.
type pathReport struct {
	Path  string    `json:"path"`
	Spec  flow.Spec `json:"spec"`
	T     float64   `json:"t"`
	Mu    []float64 `json:"mu"`
	Sigma float64   `json:"sigma"`
	Xt    []float64 `json:"xt"`
	Ut    []float64 `json:"ut"`
}

func parseVector(flag, s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, usagef("--%s %q: %q is not a finite number", flag, s, f)
		}
		out = append(out, v)
	}
	return out, nil
}

func pathCommand() *ucli.Command {
	flags := []ucli.Flag{
		&ucli.Float64Flag{Name: "t", Required: true, Usage: "time in [0, 1] (0 noise, 1 data)"},
		&ucli.StringFlag{Name: "x0", Required: true, Usage: "noise point, comma-separated"},
		&ucli.StringFlag{Name: "x1", Required: true, Usage: "data point, comma-separated"},
	}
	return &ucli.Command{
		Name:  "path",
		Usage: "evaluate a probability path at one point: x_t and the target velocity u_t, as JSON",
		Flags: append(flags, pathFlags()...),
		Action: func(c *ucli.Context) error {
			ps, err := pathFromFlags(c)
			if err != nil {
				return err
			}
			p := flow.MustNew(ps)
			t := c.Float64("t")
			lo, hi := p.TimeRange()
			if !(t >= lo && t <= hi) {
				return usagef("--t %g: the %s path is defined on [%g, %g]", t, ps.Kind, lo, hi)
			}
			x0, err := parseVector("x0", c.String("x0"))
			if err != nil {
				return err
			}
			x1, err := parseVector("x1", c.String("x1"))
			if err != nil {
				return err
			}
			if len(x0) != len(x1) {
				return usagef("--x0 has %d coordinates, --x1 %d", len(x0), len(x1))
			}
			k := p.At(t)
			r := pathReport{Path: ps.Kind.String(), Spec: ps, T: t, Sigma: k.Sigma}
			for j := range x0 {
				r.Mu = append(r.Mu, k.Alpha*x1[j])
				r.Xt = append(r.Xt, flow.Phi(p, t, x0[j], x1[j]))
				r.Ut = append(r.Ut, flow.VelocityX0(p, t, x0[j], x1[j]))
			}
			enc := json.NewEncoder(c.App.Writer)
			return enc.Encode(r)
		},
	}
}
