package cli

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/sampler"
)

// likelihoodChunk bounds the rows integrated at once.
const likelihoodChunk = 1 << 14

// exactDivergenceMaxDim is the largest dimension of non-image data for
// which likelihood defaults to the exact divergence.
const exactDivergenceMaxDim = 64

func likelihoodCommand() *ucli.Command {
	flags := []ucli.Flag{
		&ucli.StringFlag{Name: "checkpoint", Required: true, Usage: "DIR/checkpoint.safetensors from fmgpu train"},
		&ucli.StringFlag{Name: "data", Required: true, Usage: "points to score: FILE.npy, FILE.csv or a built-in set (fresh draws)"},
		&ucli.StringFlag{Name: "divergence", Value: "exact", Usage: "exact (D backward passes) or hutchinson"},
		&ucli.IntFlag{Name: "probes", Value: 1, Usage: "hutchinson: probes per point"},
		&ucli.StringFlag{Name: "probe", Value: "rademacher", Usage: "hutchinson: rademacher or gaussian probes"},
		&ucli.StringFlag{Name: "out", Usage: "also write each point's log-likelihood (nats) to FILE.npy or FILE.csv"},
		&ucli.Uint64Flag{Name: "seed", Value: 2, Usage: "seed of the probes and of fresh built-in points"},
		&ucli.IntFlag{Name: "n-data", Value: 2000, Usage: "points drawn for a built-in data set"},
	}
	return &ucli.Command{
		Name:  "likelihood",
		Usage: "exact log-likelihood of data under a trained model (instantaneous change of variables)",
		Flags: append(flags, solverFlags("dopri5", 100)...),
		Action: func(c *ucli.Context) error {
			so, err := solverOptions(c)
			if err != nil {
				return err
			}
			div, err := sampler.ParseDivergence(c.String("divergence"))
			if err != nil {
				return usagef("--divergence: %v", err)
			}
			probe, err := sampler.ParseProbeKind(c.String("probe"))
			if err != nil {
				return usagef("--probe: %v", err)
			}
			probes := c.Int("probes")
			if probes < 1 || probes > 1024 {
				return usagef("--probes %d: need 1..1024", probes)
			}
			out := c.String("out")
			if out != "" {
				if _, err := outputFormat("out", out, ".npy", ".csv"); err != nil {
					return err
				}
			}
			nData := c.Int("n-data")
			if nData < 1 || nData > 1<<26 {
				return usagef("--n-data %d: need 1..%d", nData, 1<<26)
			}
			ds, err := data.Load(c.String("data"), nData, c.Uint64("seed"))
			if err != nil {
				return usageError{err}
			}
			// D backward passes per evaluation is what exact means; for images
			// that is hundreds, so Hutchinson is the default there.
			if (ds.Image != nil || ds.D > exactDivergenceMaxDim) && !c.IsSet("divergence") {
				div = sampler.Hutchinson
				fmt.Fprintf(c.App.ErrWriter, "fmgpu likelihood: %d dimensions: Hutchinson's divergence estimator (--divergence exact to insist)\n", ds.D)
			}
			b, err := openBackend(c.String("device"), c.Int("threads"))
			if err != nil {
				return err
			}
			defer b.Close()
			lm, err := loadModel(b, c.String("checkpoint"), !c.Bool("no-ema"))
			if err != nil {
				return err
			}
			d := lm.net.Dim()
			if ds.D != d {
				return usagef("--data %s has %d columns, the model was trained on %d", c.String("data"), ds.D, d)
			}
			std := lm.ck.Meta.Standardization
			z := append([]float32(nil), ds.X...)
			if ds.Image != nil {
				// 8-bit pixels: uniform dequantization, x = 2(p + u)/256 - 1,
				// whose Jacobian data.BitsPerDim accounts for
				data.Dequantize(z, ds.Image.Pixels, rand.New(rand.NewPCG(c.Uint64("seed"), 0x6465717561)))
			}
			std.Apply(z)
			lo, hi := lm.path.TimeRange()
			so.T0, so.T1 = hi, lo // backwards, from data to noise
			so.TimeShift = lm.ck.Meta.Config.Time.Shift
			lo2 := sampler.LikelihoodOptions{Solve: so, Divergence: div, Probes: probes, ProbeKind: probe,
				Seed: c.Uint64("seed"), PriorStd: lm.path.PriorStd(), LogDetCorrection: std.LogDetJacobian()}
			logp := make([]float64, 0, ds.N)
			nfe := 0
			chunk := likelihoodChunk
			if lm.net.Config().Kind == "unet" {
				chunk = chunkRows(lm.net.Config())
			}
			buf := b.Alloc(min(ds.N, chunk) * d)
			defer b.Free(buf)
			for first := 0; first < ds.N; first += chunk {
				rows := min(chunk, ds.N-first)
				xb := buf.Slice(0, rows*d)
				b.Upload(xb, z[first*d:(first+rows)*d])
				lp, st, err := sampler.LogLikelihood(b, lm.net, xb, rows, lo2)
				if err != nil {
					return err
				}
				nfe += st.NFE
				logp = append(logp, lp...)
				if ds.N > chunk {
					fmt.Fprintf(c.App.ErrWriter, "fmgpu likelihood: %d/%d points, NFE %d\n", len(logp), ds.N, nfe)
				}
			}
			for i, v := range logp {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					return fmt.Errorf("the log-likelihood of point %d came out non-finite; nothing was written (try --solver rk4 --steps 200)", i)
				}
			}
			if out != "" {
				host := make([]float32, len(logp))
				for i, v := range logp {
					host[i] = float32(v)
				}
				if err := writeMatrix(out, host, len(host), 1); err != nil {
					return err
				}
			}
			mean, se := sampler.MeanNLL(logp)
			bpd := sampler.BitsPerDim(mean, d)
			note := ""
			if ds.Image != nil {
				bpd = data.BitsPerDim(mean, d)
				note = " dequantized=uniform"
				if lm.classes() > 0 {
					note += " class=null"
				}
			}
			fmt.Fprintf(c.App.Writer, "points=%d dim=%d solver=%s divergence=%s nfe=%d nll_stderr=%.4g%s\n",
				ds.N, d, so.Method, strings.ToLower(div.String()), nfe, se, note)
			fmt.Fprintf(c.App.Writer, "nll_nats=%.6f bits_per_dim=%.6f\n", mean, bpd)
			if ds.Image != nil {
				if w := impossibleBitsPerDim(bpd, se/(float64(d)*math.Ln2)); w != "" {
					fmt.Fprintf(c.App.ErrWriter, "fmgpu likelihood: %s\n", w)
				}
			}
			return nil
		},
	}
}

// impossibleBitsPerDim returns a warning when a dequantized image score
// lies below 0 bits/dim by more than two standard errors. By Jensen's
// inequality E_u[log p(x + u)] <= log P(bin) <= 0 for every pixel bin, so a
// true model cannot go below 0; an estimate that does comes from an ODE
// solve too coarse for the field's stiffness near the data (fixed-step
// solvers with few steps), not from a good model.
func impossibleBitsPerDim(bpd, stderr float64) string {
	if bpd+2*stderr >= 0 {
		return ""
	}
	return fmt.Sprintf("warning: %.3f bits/dim is below 0, which no density on dequantized 8-bit pixels reaches: the ODE solve is too coarse (use --solver dopri5, or more --steps)", bpd)
}
