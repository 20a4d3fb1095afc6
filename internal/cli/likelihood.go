package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/generate"
	"github.com/fmgpu/fmgpu/sampler"
)

// exactDivergenceMaxDim is the largest dimension of non-image data for
// which likelihood defaults to the exact divergence.
const exactDivergenceMaxDim = 64

// likelihoodOptions are the settings of `fmgpu likelihood`.
type likelihoodOptions struct {
	solveOptions
	checkpoint, data, out string
	divergence            sampler.Divergence
	divergenceSet         bool // --divergence given
	seedSet               bool // --seed given
	dataDir               string
	probes                int
	probe                 sampler.ProbeKind
	probesSet             bool // --probes or --probe given
	seed                  uint64
	nData                 int
	csv                   data.CSVOptions
}

func likelihoodCommand() *ucli.Command {
	flags := []ucli.Flag{
		&ucli.StringFlag{Name: "checkpoint", Usage: "(required) DIR/checkpoint.safetensors from fmgpu train"},
		&ucli.StringFlag{Name: "data", Usage: "(required) points to score: FILE.npy, FILE.csv, a built-in set (fresh draws) or image data"},
		&ucli.StringFlag{Name: "divergence", Value: "exact", DefaultText: fmt.Sprintf("exact; hutchinson for images and data of more than %d dimensions", exactDivergenceMaxDim),
			Usage: "exact (D backward passes per evaluation) or hutchinson (an unbiased estimate from --probes random probes)"},
		&ucli.IntFlag{Name: "probes", Value: 1, Usage: "hutchinson: probes per point"},
		&ucli.StringFlag{Name: "probe", Value: "rademacher", Usage: "hutchinson: rademacher or gaussian probes"},
		&ucli.StringFlag{Name: "out", Usage: "also write each point's log-likelihood (nats) to FILE.npy or FILE.csv"},
		&ucli.Uint64Flag{Name: "seed", Value: 2, Usage: "seed of the probes, of fresh built-in points and of the dequantization of images"},
		&ucli.IntFlag{Name: "n-data", Value: 2000, Usage: "points drawn for a built-in set, or the first images of mnist / fashion-mnist"},
		&ucli.StringFlag{Name: "data-dir", DefaultText: "see README", Usage: "mnist / fashion-mnist: the directory holding the idx files; cifar10: its cifar-10-batches-bin folder"},
	}
	flags = append(flags, solverFlags("dopri5", 100)...)
	return &ucli.Command{
		Name:  "likelihood",
		Usage: "exact log-likelihood of data under a trained model (instantaneous change of variables)",
		Flags: append(flags, csvFlags("")...),
		Action: func(c *ucli.Context) error {
			oneProcessNote(c)
			o, err := likelihoodOptionsFrom(c)
			if err != nil {
				return err
			}
			return runLikelihood(c.Context, o, c.App.Writer, c.App.ErrWriter)
		},
	}
}

func likelihoodOptionsFrom(c *ucli.Context) (likelihoodOptions, error) {
	if err := requireFlags(c, "checkpoint", "data"); err != nil {
		return likelihoodOptions{}, err
	}
	so, err := solveOptionsFrom(c)
	if err != nil {
		return likelihoodOptions{}, err
	}
	o := likelihoodOptions{solveOptions: so, checkpoint: c.String("checkpoint"), data: c.String("data"), out: c.String("out"),
		divergenceSet: c.IsSet("divergence"), probes: c.Int("probes"), probesSet: c.IsSet("probes") || c.IsSet("probe"),
		seed: c.Uint64("seed"), seedSet: c.IsSet("seed"), nData: c.Int("n-data"), dataDir: c.String("data-dir")}
	if name, _, _ := strings.Cut(o.data, ":"); o.dataDir != "" && (data.IsBuiltin(o.data) || name != "mnist" && name != "fashion-mnist" && !data.IsCIFAR10(o.data)) {
		return o, usagef("--data-dir applies to --data mnist, fashion-mnist or cifar10, not %s", o.data)
	}
	if o.divergence, err = sampler.ParseDivergence(c.String("divergence")); err != nil {
		return o, usagef("--divergence: %v", err)
	}
	if o.probe, err = sampler.ParseProbeKind(c.String("probe")); err != nil {
		return o, usagef("--probe: %v", err)
	}
	if o.probes < 1 || o.probes > 1024 {
		return o, usagef("--probes %d: need 1..1024", o.probes)
	}
	if o.out != "" {
		if _, err := outputFormat("out", o.out, ".npy", ".csv"); err != nil {
			return o, err
		}
	}
	if o.nData < 1 || o.nData > 1<<26 {
		return o, usagef("--n-data %d: need 1..%d", o.nData, 1<<26)
	}
	if c.IsSet("n-data") && !data.IsBuiltin(o.data) && !isNamedImageSet(o.data) {
		return o, usagef("--n-data applies to built-in sets and mnist / fashion-mnist, not --data %s (every point of it is scored)", o.data)
	}
	if o.csv, err = csvOptionsFrom(c, "data", o.data); err != nil {
		return o, err
	}
	if err := checkOutputs(input("data", o.data), input("checkpoint", o.checkpoint), output{flag: "out", path: o.out}); err != nil {
		return o, err
	}
	return o, nil
}

// isNamedImageSet is mnist or fashion-mnist (with a split), not a folder.
func isNamedImageSet(spec string) bool {
	if !data.IsImageData(spec) {
		return false
	}
	st, err := os.Stat(spec)
	return err != nil || !st.IsDir()
}

func runLikelihood(ctx context.Context, o likelihoodOptions, stdout, stderr io.Writer) error {
	ds, err := data.LoadWith(o.data, data.LoadOptions{N: o.nData, Seed: o.seed, CSV: o.csv, Image: data.ImageOptions{Dir: o.dataDir}})
	if err != nil {
		return dataError(err)
	}
	div := o.divergence
	// D backward passes per evaluation is what exact means; for images
	// that is hundreds, so Hutchinson is the default there.
	hutchinsonNote := false // said once the data has the model's size
	if (ds.Image != nil || ds.D > exactDivergenceMaxDim) && !o.divergenceSet {
		div = sampler.Hutchinson
		hutchinsonNote = !o.quiet
	}
	if div == sampler.Exact && o.probesSet {
		return usagef("--probes and --probe apply to --divergence hutchinson; the exact divergence uses no probes")
	}
	if div == sampler.Exact && o.seedSet && ds.Image == nil && !data.IsBuiltin(o.data) {
		return usagef("--seed draws Hutchinson's probes, fresh built-in points and the dequantization of images: none of them here (the exact divergence of the points of %s)", o.data)
	}
	for _, w := range data.Warnings(ds) {
		if ds.N == 1 {
			break // one point to score is no degenerate training set
		}
		fmt.Fprintf(stderr, "fmgpu likelihood: warning: %s\n", w)
	}
	b, err := openBackend(o.dev.device, o.dev.threads)
	if err != nil {
		return err
	}
	defer b.Close()
	if err := setPrecision(b, o.dev.precision); err != nil {
		return err
	}
	m, err := generate.Load(ctx, b, o.checkpoint, generate.LoadOptions{RawWeights: o.rawWeights})
	if err != nil {
		return err
	}
	defer m.Close()
	if o.rawWeights && m.Checkpoint.Meta.Config.EMADecay == 0 {
		return usagef("--no-ema: this checkpoint was trained without an EMA (--ema 0); its weights are the raw ones")
	}
	d := m.Dim()
	if im := m.Config().Image; ds.Image != nil && im != nil && ds.D != d {
		// read again at the size and channels the model was trained on
		was := *ds.Image
		if ds, err = data.LoadWith(o.data, data.LoadOptions{N: o.nData, Seed: o.seed,
			Image: data.ImageOptions{Size: im.Height, Channels: im.Channels, Dir: o.dataDir}}); err != nil {
			return dataError(err)
		}
		if !o.quiet && ds.Image != nil {
			fmt.Fprintf(stderr, "fmgpu likelihood: note: %s resized from %dx%d, %d channel(s), to the model's %dx%d, %d channel(s)\n",
				o.data, was.Height, was.Width, was.Channels, ds.Image.Height, ds.Image.Width, ds.Image.Channels)
		}
	}
	if hutchinsonNote && ds.D == d {
		fmt.Fprintf(stderr, "fmgpu likelihood: %d dimensions: Hutchinson's divergence estimator (--divergence exact to insist)\n", ds.D)
	}
	if ds.D != d {
		return usagef("--data %s has %d columns, the model was trained on %d", o.data, ds.D, d)
	}
	x := ds.X
	if ds.Image != nil {
		// 8-bit pixels: uniform dequantization, x = 2(p + u)/256 - 1,
		// whose Jacobian data.BitsPerDim accounts for
		x = make([]float32, len(ds.X))
		data.Dequantize(x, ds.Image.Pixels, rand.New(rand.NewPCG(o.seed, 0x6465717561)))
	}
	lo := generate.LikelihoodOptions{Solver: o.solver, Divergence: div, Probes: o.probes, ProbeKind: o.probe, Seed: o.seed}
	if note := fallbackNote("fmgpu likelihood", b); note != "" && !o.quiet {
		fmt.Fprint(stderr, note)
	}
	prog := newProgress(stderr, o.quiet, "fmgpu likelihood", "points", 0, ds.N)
	lo.OnProgress = func(done, _ int, _ generate.Stats) { prog.step(done) }
	logp, st, err := generate.LogLikelihood(ctx, m, x, ds.N, lo)
	prog.finish(err == nil)
	var nf *generate.NonFiniteError
	if errors.As(err, &nf) {
		return fmt.Errorf("the log-likelihood of point %d came out non-finite; nothing was written (try --solver rk4 --steps 200)", nf.Index)
	}
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if o.out != "" {
		host := make([]float32, len(logp))
		for i, v := range logp {
			host[i] = float32(v)
		}
		if err := writeMatrix(o.out, host, len(host), 1); err != nil {
			return err
		}
	}
	mean, se := sampler.MeanNLL(logp)
	bpd := sampler.BitsPerDim(mean, d)
	note := ""
	if ds.Image != nil {
		bpd = data.BitsPerDim(mean, d)
		note = " dequantized=uniform"
		if m.Classes() > 0 {
			note += " class=null"
		}
	}
	fmt.Fprintf(stdout, "points=%d dim=%d solver=%s divergence=%s nfe=%d nfe_total=%d nll_stderr=%.4g%s\n",
		ds.N, d, o.solver.Method, strings.ToLower(div.String()), st.NFE, st.TotalNFE, se, note)
	fmt.Fprintf(stdout, "nll_nats=%s bits_per_dim=%s\n", formatScore(mean), formatScore(bpd))
	if ds.Image != nil {
		if w := impossibleBitsPerDim(bpd, se/(float64(d)*math.Ln2)); w != "" {
			fmt.Fprintf(stderr, "fmgpu likelihood: %s\n", w)
		}
	}
	return nil
}

// formatScore writes a score with six decimals, or in %g when it is so
// large that decimals would be noise (a diverged model, degenerate data).
func formatScore(v float64) string {
	if math.Abs(v) >= 1e6 || math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Sprintf("%.7g", v)
	}
	return fmt.Sprintf("%.6f", v)
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
