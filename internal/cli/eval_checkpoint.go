package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/generate"
	"github.com/fmgpu/fmgpu/internal/atomicfile"
	"github.com/fmgpu/fmgpu/metrics/mnistnet"
	"github.com/fmgpu/fmgpu/sampler"
	"github.com/fmgpu/fmgpu/train"
)

// trainingData is the data a checkpoint's model learned: its own, or for
// a reflow or distill checkpoint (trained on pairs, its source "reflow of
// TEACHER"), its teacher's, up to a few generations back.
func trainingData(in train.DataInfo, depth int) (train.DataInfo, error) {
	for _, cmd := range []string{"reflow", "distill"} {
		teacher, ok := strings.CutPrefix(in.Source, cmd+" of ")
		if !ok {
			continue
		}
		if depth > 8 {
			return in, usagef("--data: the checkpoint's teachers go back more than 8 generations; give --data")
		}
		teacher = recordedPath(teacher, in.AbsPath)
		tck, err := train.Load(teacher)
		if err != nil {
			return in, usagef("--data: the checkpoint was trained on the pairs of %s, whose data could not be read from it (%v); give --data", teacher, err)
		}
		return trainingData(tck.Meta.Data, depth+1)
	}
	return in, nil
}

// recordedPath is the file a checkpoint names: the absolute path recorded
// beside a name given relative, while that file is still there (from
// another directory the relative name finds another file, or none), else
// the name as recorded.
func recordedPath(name, abs string) string {
	if abs != "" && abs != name {
		if _, err := os.Stat(abs); err == nil {
			return abs
		}
	}
	return name
}

// runEvalCheckpoint is eval --checkpoint: samples drawn from the model
// with the solver at each of --steps (the same noise for every step
// count), each measured against the data as eval --samples would, then
// the flow's path statistics. Nothing is printed before everything is
// computed, so that a signal leaves no partial table.
func runEvalCheckpoint(ctx context.Context, o evalOptions, stdout, stderr io.Writer) error {
	b, err := openBackend(o.dev.device, o.dev.threads)
	if err != nil {
		return err
	}
	defer b.Close()
	m, err := generate.Load(ctx, b, o.checkpoint, generate.LoadOptions{RawWeights: o.rawWeights})
	if err != nil {
		return err
	}
	defer m.Close()
	meta := m.Checkpoint.Meta
	classes, d, mc := m.Classes(), m.Dim(), m.Config()
	switch {
	case o.rawWeights && meta.Config.EMADecay == 0:
		return usagef("--no-ema: this checkpoint was trained without an EMA (--ema 0); its weights are the raw ones")
	case o.guidanceSet && classes == 0:
		return usagef("--guidance: this model is unconditional (guidance needs a class-conditional model)")
	}
	name, trainDir, trainSum := o.data, "", ""
	if name == "" {
		in, err := trainingData(meta.Data, 0)
		if err != nil {
			return err
		}
		if name = in.Source; name == "" {
			return usagef("--data: the checkpoint does not name its data; give --data")
		}
		name = recordedPath(name, in.AbsPath)
		if !data.IsBuiltin(name) && !data.IsImageData(name) && !o.csvSet {
			trainSum = in.SHA256 // (read as training read it: the same values)
		}
		trainDir = in.DataDir
		if in.CSV != nil && !o.csvSet {
			// read as training read it
			if d := []rune(in.CSV.Delimiter); len(d) == 1 {
				o.csv.Delimiter = d[0]
			}
			o.csv.Header = in.CSV.Header
		}
		if o.dataDir != "" && !isFeatureSet(name) && !data.IsCIFAR10(name) {
			return usagef("--data-dir applies to --data mnist, fashion-mnist or cifar10, not %s (the checkpoint's data)", name)
		}
		if !data.IsBuiltin(name) && o.seedSet {
			return usagef("--seed applies to a built-in --data (fresh draws), not %s (the checkpoint's data)", name)
		}
	}
	if mc.Image != nil {
		// a folder of images read at the size and channels the model makes
		o.image = data.ImageOptions{Size: mc.Image.Height, Channels: mc.Image.Channels, Dir: o.dataDir}
		if o.image.Dir == "" {
			o.image.Dir = trainDir // the training's --data-dir, for its own data
		}
	}
	features := isFeatureSet(name)
	if features && (mc.Image == nil || d != mnistnet.Pixels) {
		return usagef("--data %s: the model makes %d values per sample, not 28 x 28 images", name, d)
	}
	if o.plot != "" && mc.Image == nil && d < 2 {
		return usagef("--plot draws points of 2 or more dimensions, or images; this model makes points of %d dimension", d)
	}
	if !o.pathNSet {
		o.pathN = o.n
		if mc.Image != nil {
			o.pathN = defaultImagePathN
		}
	}
	if !o.pathStepSet && mc.Image != nil {
		o.pathSteps = defaultImagePathSteps
	}

	// the reference and its floors' inputs first: a bad --data fails fast
	var pr pointRef
	var ir *imageRef
	if features {
		floors, err := imageFloors(o)
		if err != nil {
			return err
		}
		featureWarning(setName(name), o.n, stderr)
		if ir, err = loadImageRef(ctx, o, name, floors, stderr); err != nil {
			return err
		}
	} else {
		if pr, err = loadPointRef(o, name, trainSum); err != nil {
			return err
		}
		if pr.d != d {
			return usagef("--data %s has %d columns, the model %d", name, pr.d, d)
		}
	}
	if note := fallbackNote("fmgpu eval", b); note != "" && !o.quiet {
		fmt.Fprint(stderr, note)
	}

	n := o.n
	labels := func(k int) []int {
		if classes == 0 {
			return nil
		}
		l := make([]int, k)
		for i := range l {
			l[i] = i % classes
		}
		return l
	}
	samples := make([][]float32, len(o.steps))
	nfe := make([]int, len(o.steps))
	prog := newProgress(stderr, o.quiet, "fmgpu eval", "samples", 0, len(o.steps)*n)
	for k, steps := range o.steps {
		x, st, err := generate.Sample(ctx, m, n, generate.SampleOptions{
			Solver: sampler.Options{Method: o.solver, Steps: steps}, Seed: o.sampleSeed, Labels: labels(n), Guidance: o.guidance,
			OnProgress: func(done, _ int, _ generate.Stats) { prog.step(k*n + done) }})
		if err != nil {
			prog.finish(false)
			return sampleError(err)
		}
		samples[k], nfe[k] = x, st.NFE
		prog.step((k + 1) * n)
	}
	prog.finish(true)

	var path *flowPathReport
	if o.pathN > 0 {
		prog := newProgress(stderr, o.quiet, "fmgpu eval", "trajectories", 0, o.pathN)
		st, err := generate.PathStats(ctx, m, o.pathN, generate.PathOptions{Steps: o.pathSteps, Seed: o.sampleSeed, Labels: labels(o.pathN), Guidance: o.guidance,
			OnProgress: func(done, _ int) { prog.step(done) }})
		prog.finish(err == nil)
		if err != nil {
			return err
		}
		path = &flowPathReport{Straightness: st.Straightness, Kinetic: st.Kinetic, Displacement: st.Displacement, Trajectories: o.pathN, RK4Steps: o.pathSteps}
	}

	rep := evalReport{N: n, Dim: d, Data: name, Checkpoint: o.checkpoint, Path: path}
	rows := make([]evalRow, len(o.steps))
	var jobs []evalJob
	var pf pointFloors
	var imgFloors []imageScore
	var imgScores []imageScore
	w2 := make([]float64, len(o.steps))
	mmd2 := make([]float64, len(o.steps))
	if features {
		imgFloors = make([]imageScore, len(ir.floorSet))
		imgScores = make([]imageScore, len(o.steps))
		jobs = ir.floorJobs(imgFloors)
		for k := range o.steps {
			f, err := ir.sampleFeatures(ctx, samples[k])
			if err != nil {
				return err
			}
			jobs = append(jobs, ir.scoreJobs(fmt.Sprintf("the %d-step samples", o.steps[k]), f, &imgScores[k])...)
		}
	} else {
		pf.bandwidth = pr.bandwidth()
		jobs = pr.floorJobs(&pf)
		for k := range o.steps {
			jobs = append(jobs, pr.scoreJobs(fmt.Sprintf("the %d-step samples", o.steps[k]), samples[k], pf.bandwidth, &w2[k], &mmd2[k])...)
		}
	}
	prog = newProgress(stderr, o.quiet, "fmgpu eval", "distances", 0, len(jobs))
	err = runJobs(ctx, prog, 0, jobs)
	prog.finish(err == nil)
	if err != nil {
		return err
	}
	if features {
		rep.setImageFloors(ir, imgFloors)
		for k, s := range imgScores {
			rows[k] = evalRow{FD: ptr(s.fd), Ratio: s.fd / rep.FD.Floor, KID: ptr(s.kid.Mean), KIDSD: ptr(s.kid.Std)}
		}
	} else {
		rep.Floors = len(pr.others)
		rep.setPointFloors(pf)
		for k := range o.steps {
			rows[k] = evalRow{W2: ptr(w2[k]), Ratio: w2[k] / rep.W2.Floor, MMD2: ptr(mmd2[k])}
		}
	}
	for k := range rows {
		rows[k].Solver, rows[k].Steps, rows[k].NFE = o.solver.String(), o.steps[k], nfe[k]
	}
	rep.Table = rows
	if o.plot != "" && mc.Image != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := stepsGrid(o.plot, samples, n, mc.Image.Channels, mc.Image.Height, mc.Image.Width); err != nil {
			return err
		}
	} else if o.plot != "" {
		if err := ctx.Err(); err != nil {
			return err
		}
		coupling := meta.Config.Coupling.Kind
		if coupling == "" {
			coupling = "independent"
		}
		if err := stepsPlot(ctx, o.plot, fmt.Sprintf("%s (%s)", name, coupling), pr.ref, d, samples, rows); err != nil {
			return err
		}
	}
	return rep.print(stdout, o.json)
}

// setName is an image set's name without its split.
func setName(spec string) string {
	name, _, _ := strings.Cut(spec, ":")
	return name
}

// stepsGrid draws the first gridSide samples of each step count (the
// labels 0, 1, 2, ... of a class-conditional model), one row per step
// count in the order of --steps: the same noise, solved more finely down
// the rows.
func stepsGrid(path string, samples [][]float32, n, c, h, w int) error {
	k := min(gridSide, n)
	per := c * h * w
	x := make([]float32, 0, len(samples)*k*per)
	for _, s := range samples {
		x = append(x, s[:k*per]...)
	}
	return atomicfile.Write(path, func(out io.Writer) error {
		return data.WriteGrid(out, x, len(samples)*k, c, h, w, k)
	})
}
