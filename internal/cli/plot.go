package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/generate"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/atomicfile"
	"github.com/fmgpu/fmgpu/sampler"
	"github.com/fmgpu/fmgpu/train"
)

// plotPoints is how many samples and data points the training plots draw.
const plotPoints = 4000

func xys(x []float32, d, n int) plotter.XYs {
	n = min(n, len(x)/d)
	pts := make(plotter.XYs, n)
	for i := range pts {
		pts[i].X, pts[i].Y = float64(x[i*d]), float64(x[i*d+1])
	}
	return pts
}

func savePlot(p *plot.Plot, path string, w, h vg.Length) error {
	wt, err := p.WriterTo(w, h, "png")
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return atomicfile.Write(path, func(out io.Writer) error {
		_, err := wt.WriteTo(out)
		return err
	})
}

// scatterPlot draws samples (blue) over data points (grey, may be nil),
// first two columns of d-column rows.
func scatterPlot(path, title string, dataPts, samples []float32, d int) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text, p.Y.Label.Text = "x1", "x2"
	if dataPts != nil {
		s, err := plotter.NewScatter(xys(dataPts, d, plotPoints))
		if err != nil {
			return err
		}
		s.GlyphStyle.Color = color.RGBA{R: 170, G: 170, B: 170, A: 255}
		s.GlyphStyle.Radius = vg.Points(1)
		p.Add(s)
		p.Legend.Add("data", s)
	}
	s, err := plotter.NewScatter(xys(samples, d, plotPoints))
	if err != nil {
		return err
	}
	s.GlyphStyle.Color = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	s.GlyphStyle.Radius = vg.Points(1)
	p.Add(s)
	p.Legend.Add("samples", s)
	p.Legend.Top = true
	return savePlot(p, path, 5*vg.Inch, 5*vg.Inch)
}

// lossPlot draws the loss column of a metrics.jsonl.
func lossPlot(path, metricsPath string) error {
	raw, err := os.ReadFile(metricsPath)
	if err != nil {
		return err
	}
	var pts plotter.XYs
	dec := json.NewDecoder(bytes.NewReader(raw))
	for dec.More() {
		var m train.Metric
		if err := dec.Decode(&m); err != nil {
			return fmt.Errorf("metrics %s: %w", metricsPath, err)
		}
		if m.Event != "" {
			continue
		}
		pts = append(pts, plotter.XY{X: float64(m.Step), Y: finiteOrZero(m.Loss)})
	}
	p := plot.New()
	p.Title.Text = "training loss"
	p.X.Label.Text, p.Y.Label.Text = "step", "CFM loss per element"
	l, err := plotter.NewLine(pts)
	if err != nil {
		return err
	}
	l.Color = color.RGBA{R: 214, G: 39, B: 40, A: 255}
	p.Add(l)
	return savePlot(p, path, 6*vg.Inch, 4*vg.Inch)
}

// trainPlots draws loss.png and samples.png after training: for 2-D data
// samples over data points, for images a grid; sampled from the checkpoint
// just written, as `fmgpu sample` would; lastGrid, when not nil, are the
// image grid's samples drawn already at this step (sampleGridAt). The
// samples are drawn first, so that an interrupt leaves neither picture.
func trainPlots(ctx context.Context, b gpu.Backend, tr *train.Trainer, std data.Standardization, ds *data.Dataset, o trainOptions, lastGrid []float32) error {
	var draw func() error
	switch {
	case ds.Image != nil:
		n := gridSide * gridSide
		x := lastGrid
		if x == nil {
			m, err := generate.FromTrainer(b, tr, std)
			if err != nil {
				return err
			}
			if x, err = gridSamples(ctx, m, o.cfg.Seed+1, -1, defaultGuidance); err != nil {
				return err
			}
		}
		img := ds.Image
		draw = func() error {
			return writeGridPNG(filepath.Join(o.out, "samples.png"), x, n, img.Channels, img.Height, img.Width)
		}
	case ds.D == 2:
		m, err := generate.Load(ctx, b, filepath.Join(o.out, train.CheckpointName), generate.LoadOptions{})
		if err != nil {
			return err
		}
		defer m.Close()
		x, _, err := generate.Sample(ctx, m, plotPoints, generate.SampleOptions{Solver: sampler.Options{Method: sampler.RK4, Steps: 100}, Seed: o.cfg.Seed + 1})
		if err != nil {
			return sampleError(err)
		}
		draw = func() error {
			return scatterPlot(filepath.Join(o.out, "samples.png"), fmt.Sprintf("%s: samples (rk4, 100 steps) over data", filepath.Base(o.data)), ds.X, x, 2)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := lossPlot(filepath.Join(o.out, "loss.png"), filepath.Join(o.out, train.MetricsName)); err != nil {
		return err
	}
	if draw != nil {
		return draw()
	}
	return nil
}

// gridSolver is how training's sample grids are drawn: cheap enough to run
// at every checkpoint on a CPU, accurate enough to judge progress.
var gridSolver = sampler.Options{Method: sampler.Midpoint, Steps: 10}

// defaultGuidance is the classifier-free guidance weight of grids and of
// `fmgpu sample` for class-conditional models.
const defaultGuidance = 2.0

// sampleGridAt writes DIR/samples_STEP.png during training of image data
// and returns its samples: those of samples.png too when STEP is the last
// (the same model, seed and guidance), which trainPlots then reuses
// instead of solving them again.
func sampleGridAt(ctx context.Context, b gpu.Backend, tr *train.Trainer, std data.Standardization, o trainOptions, ds *data.Dataset, step int) ([]float32, error) {
	m, err := generate.FromTrainer(b, tr, std)
	if err != nil {
		return nil, err
	}
	x, err := gridSamples(ctx, m, o.cfg.Seed+1, -1, defaultGuidance)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	img := ds.Image
	return x, writeGridPNG(filepath.Join(o.out, fmt.Sprintf("samples_%06d.png", step)), x, gridSide*gridSide, img.Channels, img.Height, img.Width)
}

// gridSamples draws the samples of a 10 x 10 grid (one row per class for
// a conditional model, or class k everywhere when k >= 0).
func gridSamples(ctx context.Context, m *generate.Model, seed uint64, k int, guidance float64) ([]float32, error) {
	x, _, err := generate.Sample(ctx, m, gridSide*gridSide, generate.SampleOptions{Solver: gridSolver, Seed: seed, Labels: gridLabels(m.Classes(), k), Guidance: guidance})
	if err != nil {
		return nil, sampleError(err)
	}
	return x, nil
}

func writeGridPNG(path string, x []float32, n, c, h, w int) error {
	return atomicfile.Write(path, func(out io.Writer) error {
		return data.WriteGrid(out, x, n, c, h, w, gridSide)
	})
}

// stepsPlot draws, side by side, the samples of each step count of an
// eval --checkpoint table (first two columns, blue) over the reference
// data (grey), each panel titled with its step count and W2 ratio; all
// panels share the data's axes, so that a few-step sampler's stray points
// fall outside.
func stepsPlot(ctx context.Context, path, name string, dataPts []float32, d int, samples [][]float32, rows []evalRow) error {
	lo, hi := [2]float64{math.Inf(1), math.Inf(1)}, [2]float64{math.Inf(-1), math.Inf(-1)}
	for i := 0; i+d <= len(dataPts); i += d {
		for j := range 2 {
			lo[j], hi[j] = math.Min(lo[j], float64(dataPts[i+j])), math.Max(hi[j], float64(dataPts[i+j]))
		}
	}
	row := make([]*plot.Plot, len(samples))
	for k, x := range samples {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := plot.New()
		r := rows[k]
		p.Title.Text = fmt.Sprintf("%s\n%s, %d step%s (NFE %d)\nW2 %.2fx the floor", name, r.Solver, r.Steps, plural(r.Steps), r.NFE, r.Ratio)
		p.Title.TextStyle.Font.Size = vg.Points(10)
		for j, ax := range []*plot.Axis{&p.X, &p.Y} {
			m := 0.1 * (hi[j] - lo[j])
			ax.Min, ax.Max = lo[j]-m, hi[j]+m
		}
		for _, set := range []struct {
			pts []float32
			c   color.RGBA
		}{{dataPts, color.RGBA{R: 190, G: 190, B: 190, A: 255}}, {x, color.RGBA{R: 31, G: 119, B: 180, A: 255}}} {
			s, err := plotter.NewScatter(xys(set.pts, d, plotPoints/2))
			if err != nil {
				return err
			}
			s.GlyphStyle.Color = set.c
			s.GlyphStyle.Radius = vg.Points(0.8)
			p.Add(s)
		}
		row[k] = p
	}
	const side = 2.6 * vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(vg.Length(len(row))*side, side+0.4*vg.Inch), vgimg.UseDPI(110))
	tiles := draw.Tiles{Rows: 1, Cols: len(row), PadX: 2 * vg.Millimeter, PadTop: vg.Millimeter, PadBottom: vg.Millimeter, PadLeft: vg.Millimeter, PadRight: 2 * vg.Millimeter}
	canvases := plot.Align([][]*plot.Plot{row}, tiles, draw.New(img))
	for k, p := range row {
		p.Draw(canvases[0][k])
	}
	return atomicfile.Write(path, func(out io.Writer) error {
		_, err := vgimg.PngCanvas{Canvas: img}.WriteTo(out)
		return err
	})
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
