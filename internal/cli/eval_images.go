package cli

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/metrics"
	"github.com/fmgpu/fmgpu/metrics/mnistnet"
)

// isFeatureSet reports whether --data names an image set whose samples
// eval measures by FD and KID in the features of mnistnet, the MNIST
// classifier fmgpu ships: mnist or fashion-mnist, with or without a
// split (the comparison is always with the test split).
func isFeatureSet(spec string) bool {
	if data.IsBuiltin(spec) {
		return false
	}
	name, _, _ := strings.Cut(spec, ":")
	return name == "mnist" || name == "fashion-mnist"
}

// heldOutImages is how many training images mnistnet never saw: the
// floors' training-split images come from them.
const heldOutImages = 60000 - mnistnet.DefaultTrainImages

// heldOutSeed shuffles the held-out images before they are cut into the
// floors' disjoint sets: in file order, the sets would differ by more
// than chance (the last 2,000 training images are FD 8.7 from the test
// split in the shipped features, the other 2,000-image blocks 2.5 to
// 5.7), and the floor would measure that, not the sampling noise.
const heldOutSeed = 0x666c6f6f72 // "floor"

// imageRef is the reference of an image set, in mnistnet's features: the
// test split, and floors disjoint random sets of n held-out training
// images.
type imageRef struct {
	name     string // mnist or fashion-mnist
	test     []float32
	testN    int
	testFit  metrics.Gaussian
	floorSet [][]float32 // floors x (n x FeatureDim)
	n        int
	net      *mnistnet.Net
}

// imageFloors decides how many floor pairs n images allow.
func imageFloors(o evalOptions) (int, error) {
	if o.n > heldOutImages {
		return 0, usagef("--n %d: image sets are compared with at most %d held-out training images (the floor); need 1..%d", o.n, heldOutImages, heldOutImages)
	}
	avail := heldOutImages / o.n
	if o.floorsSet && o.floors > avail {
		return 0, usagef("--floors %d: %d held-out training images make %d disjoint sets of --n %d", o.floors, heldOutImages, avail, o.n)
	}
	return min(o.floors, avail), nil
}

// smallImageN is the sample count below which eval warns that FD and KID
// are far from their large-sample values (FD's covariance of 128 features
// is singular below 129 samples).
const smallImageN = 1000

// featureWarning warns of features the classifier was not trained on, and
// of sample counts too small for FD and KID to mean much.
func featureWarning(name string, n int, stderr io.Writer) {
	if name != "mnist" {
		fmt.Fprintf(stderr, "fmgpu eval: warning: the features are those of an MNIST digit classifier (metrics/mnistnet); on %s, FD and KID compare with their floor below and with each other, not with figures computed in other features\n", name)
	}
	if n < smallImageN {
		fmt.Fprintf(stderr, "fmgpu eval: warning: --n %d: FD and KID of fewer than %d images are noisy and biased (FD fits a covariance of %d features); compare them with the floor at the same --n only\n", n, smallImageN, mnistnet.FeatureDim)
	}
}

// loadImageRef reads the test split and the held-out training images of
// --data and computes their features.
func loadImageRef(ctx context.Context, o evalOptions, spec string, floors int, stderr io.Writer) (*imageRef, error) {
	name, _, _ := strings.Cut(spec, ":")
	net, _, err := mnistnet.Shipped()
	if err != nil {
		return nil, fmt.Errorf("the shipped MNIST classifier: %w", err)
	}
	te, err := data.LoadImages(name+":test", data.ImageOptions{Dir: o.dataDir})
	if err != nil {
		return nil, dataError(err)
	}
	tr, err := data.LoadImages(name, data.ImageOptions{Dir: o.dataDir})
	if err != nil {
		return nil, dataError(err)
	}
	if te.D != mnistnet.Pixels || tr.N != 60000 {
		return nil, usagef("--data %s: %d training images of %d pixels, want 60000 of %d", spec, tr.N, tr.D, mnistnet.Pixels)
	}
	n := o.n
	held := tr.X[mnistnet.DefaultTrainImages*mnistnet.Pixels:]
	prog := newProgress(stderr, o.quiet, "fmgpu eval", "images", 0, te.N+floors*n)
	defer prog.finish(false)
	r := &imageRef{name: name, testN: te.N, n: n, net: net}
	if r.test, err = featureChunks(ctx, net, te.X, te.N, prog, 0); err != nil {
		return nil, err
	}
	if r.testFit, err = metrics.FitGaussian(r.test, te.N, mnistnet.FeatureDim); err != nil {
		return nil, err
	}
	perm := rand.New(rand.NewPCG(heldOutSeed, 0)).Perm(heldOutImages)
	x := make([]float32, n*mnistnet.Pixels)
	for k := range floors {
		for i, j := range perm[k*n : (k+1)*n] {
			copy(x[i*mnistnet.Pixels:(i+1)*mnistnet.Pixels], held[j*mnistnet.Pixels:(j+1)*mnistnet.Pixels])
		}
		f, err := featureChunks(ctx, net, x, n, prog, te.N+k*n)
		if err != nil {
			return nil, err
		}
		r.floorSet = append(r.floorSet, f)
	}
	prog.finish(true)
	return r, nil
}

// featureChunks is Features over count images, stepping prog (counted
// from done) every 1000 images.
func featureChunks(ctx context.Context, net *mnistnet.Net, x []float32, count int, prog *progress, done int) ([]float32, error) {
	const chunk = 1000
	out := make([]float32, 0, count*mnistnet.FeatureDim)
	for first := 0; first < count; first += chunk {
		c := min(chunk, count-first)
		f, err := net.Features(ctx, x[first*mnistnet.Pixels:], c)
		if err != nil {
			return nil, err
		}
		out = append(out, f...)
		prog.step(done + first + c)
	}
	return out, nil
}

// kidOptions are KID's subsets: 100 of min(1000, n) points (metrics.KID
// lowers the size to the smaller set).
var kidOptions = metrics.KIDOptions{Subsets: metrics.DefaultKIDSubsets, SubsetSize: metrics.DefaultKIDSubsetSize}

// imageScore is FD and KID of one feature set against the test split.
type imageScore struct {
	fd  float64
	kid metrics.KIDResult
}

// scoreJobs are the jobs measuring the features f (n x FeatureDim)
// against the test split into s.
func (r *imageRef) scoreJobs(what string, f []float32, s *imageScore) []evalJob {
	d := mnistnet.FeatureDim
	return []evalJob{
		{"FD of " + what, func() error {
			g, err := metrics.FitGaussian(f, r.n, d)
			if err != nil {
				return err
			}
			s.fd, err = metrics.FrechetDistance(g, r.testFit)
			return err
		}},
		{"KID of " + what, func() (err error) { s.kid, err = metrics.KID(f, r.test, r.n, r.testN, d, kidOptions); return }},
	}
}

// floorJobs score each held-out set into floors.
func (r *imageRef) floorJobs(floors []imageScore) []evalJob {
	var jobs []evalJob
	for k, f := range r.floorSet {
		jobs = append(jobs, r.scoreJobs(fmt.Sprintf("floor set %d", k+1), f, &floors[k])...)
	}
	return jobs
}

// setImageFloors fills the report's FD and KID floors.
func (rep *evalReport) setImageFloors(r *imageRef, floors []imageScore) {
	fd := make([]float64, len(floors))
	kid := make([]float64, len(floors))
	for k, f := range floors {
		fd[k], kid[k] = f.fd, f.kid.Mean
	}
	m, sd := meanSD(fd)
	km, ksd := meanSD(kid)
	rep.Features = "mnistnet"
	rep.Reference = fmt.Sprintf("%s:test, %d images", r.name, r.testN)
	rep.Floors = len(floors)
	rep.FD = &scoreFloor{Floor: m, FloorSD: sd}
	rep.KID = &kidScore{Floor: km, FloorSD: ksd, Subsets: floors[0].kid.Subsets, SubsetSize: floors[0].kid.SubsetSize}
}

// sampleFeatures rounds generated images to 8-bit pixels and returns
// their features.
func (r *imageRef) sampleFeatures(ctx context.Context, x []float32) ([]float32, error) {
	return r.net.Features(ctx, mnistnet.RoundToPixels(x[:r.n*mnistnet.Pixels]), r.n)
}

// runEvalImageSamples is eval --samples of an image set with features.
func runEvalImageSamples(ctx context.Context, o evalOptions, s *data.Dataset, stdout, stderr io.Writer) error {
	if s.D != mnistnet.Pixels {
		return usagef("--samples has %d columns, --data %s images have %d (28 x 28)", s.D, o.data, mnistnet.Pixels)
	}
	floors, err := imageFloors(o)
	if err != nil {
		return err
	}
	name, _, _ := strings.Cut(o.data, ":")
	featureWarning(name, o.n, stderr)
	r, err := loadImageRef(ctx, o, o.data, floors, stderr)
	if err != nil {
		return err
	}
	f, err := r.sampleFeatures(ctx, s.X)
	if err != nil {
		return err
	}
	var score imageScore
	fl := make([]imageScore, floors)
	jobs := append(r.scoreJobs("the samples", f, &score), r.floorJobs(fl)...)
	prog := newProgress(stderr, o.quiet, "fmgpu eval", "distances", 0, len(jobs))
	err = runJobs(ctx, prog, 0, jobs)
	prog.finish(err == nil)
	if err != nil {
		return err
	}
	rep := evalReport{N: o.n, Dim: s.D, Data: o.data, Samples: o.samples}
	rep.setImageFloors(r, fl)
	rep.FD.Value, rep.FD.Ratio = ptr(score.fd), ptr(score.fd/rep.FD.Floor)
	rep.KID.Value, rep.KID.SD = ptr(score.kid.Mean), ptr(score.kid.Std)
	return rep.print(stdout, o.json)
}
