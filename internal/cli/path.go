package cli

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"strconv"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/fmgpu/fmgpu/flow"
)

// pathReport is the JSON object `fmgpu path` prints.
type pathReport struct {
	Path  string     `json:"path"`
	Spec  pathParams `json:"spec"`
	T     float64    `json:"t"`
	Mu    []float64  `json:"mu"`
	Sigma float64    `json:"sigma"`
	Xt    []float64  `json:"xt"`
	Ut    []float64  `json:"ut"`
}

// pathParams is flow.Spec with its kind by name (a checkpoint stores the
// number; the report is read by people and scripts).
type pathParams struct {
	Kind     string  `json:"kind"`
	SigmaMin float64 `json:"sigma_min"`
	SigmaMax float64 `json:"sigma_max"`
	BetaMin  float64 `json:"beta_min"`
	BetaMax  float64 `json:"beta_max"`
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

// pathOptions are the settings of `fmgpu path`.
type pathOptions struct {
	spec   flow.Spec
	t      float64
	x0, x1 []float64
}

func pathCommand() *ucli.Command {
	flags := []ucli.Flag{
		&ucli.StringFlag{Name: "t", Usage: "(required) time in the path's range: [0, 1] (0 noise, 1 data), [0, 0.99999] for vp and linear-vp"},
		&ucli.StringFlag{Name: "x0", Usage: "(required) noise point, comma-separated"},
		&ucli.StringFlag{Name: "x1", Usage: "(required) data point, comma-separated"},
	}
	return &ucli.Command{
		Name:  "path",
		Usage: "evaluate a probability path at one point: x_t and the target velocity u_t, as JSON",
		Flags: append(flags, pathFlags()...),
		Action: func(c *ucli.Context) error {
			o, err := pathOptionsFrom(c)
			if err != nil {
				return err
			}
			return runPath(c.Context, o, c.App.Writer, c.App.ErrWriter)
		},
	}
}

func pathOptionsFrom(c *ucli.Context) (pathOptions, error) {
	var o pathOptions
	if err := requireFlags(c, "t", "x0", "x1"); err != nil {
		return o, err
	}
	spec, err := pathFromFlags(c)
	if err != nil {
		return o, err
	}
	o.spec = spec
	t, err := strconv.ParseFloat(strings.TrimSpace(c.String("t")), 64)
	if err != nil || math.IsNaN(t) || math.IsInf(t, 0) {
		return o, usagef("--t %q: not a finite number", c.String("t"))
	}
	o.t = t
	lo, hi := flow.MustNew(o.spec).TimeRange()
	if !(o.t >= lo && o.t <= hi) {
		return o, usagef("--t %g: the %s path is defined on [%g, %g]", o.t, o.spec.Kind, lo, hi)
	}
	if o.x0, err = parseVector("x0", c.String("x0")); err != nil {
		return o, err
	}
	if o.x1, err = parseVector("x1", c.String("x1")); err != nil {
		return o, err
	}
	if len(o.x0) != len(o.x1) {
		return o, usagef("--x0 has %d coordinates, --x1 %d", len(o.x0), len(o.x1))
	}
	return o, nil
}

func runPath(_ context.Context, o pathOptions, stdout, _ io.Writer) error {
	p := flow.MustNew(o.spec)
	k := p.At(o.t)
	s := o.spec
	r := pathReport{Path: s.Kind.String(), T: o.t, Sigma: k.Sigma,
		Spec: pathParams{Kind: s.Kind.String(), SigmaMin: s.SigmaMin, SigmaMax: s.SigmaMax, BetaMin: s.BetaMin, BetaMax: s.BetaMax}}
	for j := range o.x0 {
		r.Mu = append(r.Mu, k.Alpha*o.x1[j])
		r.Xt = append(r.Xt, flow.Phi(p, o.t, o.x0[j], o.x1[j]))
		r.Ut = append(r.Ut, flow.VelocityX0(p, o.t, o.x0[j], o.x1[j]))
		if finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }; !finite(r.Xt[j]) || !finite(r.Ut[j]) || !finite(r.Mu[j]) {
			return usagef("--x0 %g, --x1 %g at --t %g: x_t or u_t overflows float64 (coordinate %d)", o.x0[j], o.x1[j], o.t, j+1)
		}
	}
	return json.NewEncoder(stdout).Encode(r)
}
