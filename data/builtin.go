package data

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
)

// The built-in 2-D sets. Each point is drawn independently: a point first
// picks its mixture component uniformly (its label), then its position.
// FFJORD and sklearn instead split n exactly and use evenly spaced angles;
// drawing i.i.d. makes every n a true sample of one fixed distribution, which
// is what the statistical tests and a likelihood evaluation assume.
//
//	8gaussians    label k ~ U{0..7}; x ~ N(c_k, 0.1^2 I), c_k = 2 (cos 2πk/8, sin 2πk/8).
//	              Mean 0, covariance 2.01 I. (torch_cfm.py eight_gaussians.)
//	moons         sklearn make_moons with noise 0.05, unscaled: label 0 is the upper
//	              arc (cos θ, sin θ), label 1 the lower arc (1 - cos θ, 0.5 - sin θ),
//	              θ ~ U(0, π), plus N(0, 0.05^2 I).
//	checkerboard  FFJORD "checkerboard": x1 ~ U(-2, 2),
//	              x2 = U(0, 1) - 2 randint{0, 1} + (floor(x1) mod 2), point = 2 (x1, x2):
//	              uniform on the 8 "black" 2x2 squares of [-4, 4)^2, those with
//	              floor(x/2) + floor(y/2) even. No labels.
//	spirals       FFJORD "2spirals": t = 3π sqrt(u), u ~ U(0, 1);
//	              p = (-t cos t + 0.5 u1, t sin t + 0.5 u2), u1, u2 ~ U(0, 1);
//	              label 0 is p / 3, label 1 is -p / 3; then plus N(0, 0.1^2 I).
//	circles       FFJORD "circles" (sklearn make_circles, factor 0.5, noise 0.08, times 3):
//	              label 0 on radius 3, label 1 on radius 1.5, angle ~ U(0, 2π),
//	              plus N(0, 0.24^2 I).
//	gaussian      N(GaussianMean, GaussianCov), correlated and off-centre so that a
//	              model cannot pass by ignoring either; GaussianLogPdf is its exact
//	              log-density. No labels.
var builtins = map[string]func(rng *rand.Rand, x []float32, labels []int32){
	"8gaussians":   eightGaussians,
	"moons":        moons,
	"checkerboard": checkerboard,
	"spirals":      spirals,
	"circles":      circles,
	"gaussian":     gaussian,
}

// Built-in sets without a mixture structure leave Labels nil.
var unlabelled = map[string]bool{"checkerboard": true, "gaussian": true}

// builtinNames is sorted, so that listings and error messages are stable.
var builtinNames = []string{"8gaussians", "checkerboard", "circles", "gaussian", "moons", "spirals"}

// MaxBuiltin bounds n in Builtin: 2^28 points are 2 GiB of float32, and a
// larger request is far more likely a typo than a wish.
const MaxBuiltin = 1 << 28

// rngStream is the PCG stream constant; the seed alone selects the sample.
const rngStream = 0x666d677075 // "fmgpu"

// Parameters of the "gaussian" set, kept as constants so that no caller can
// change the distribution that GaussianLogPdf describes.
const (
	gaussM0, gaussM1 = 1.0, -0.5
	gaussS00         = 1.0
	gaussS01         = 0.6
	gaussS11         = 0.5
)

// GaussianMean and GaussianCov define the "gaussian" built-in set,
// N(GaussianMean, GaussianCov). They are copies for reading: changing them
// changes neither the sampler nor GaussianLogPdf.
var (
	GaussianMean = [2]float64{gaussM0, gaussM1}
	GaussianCov  = [2][2]float64{{gaussS00, gaussS01}, {gaussS01, gaussS11}}
)

// GaussianLogPdf is the natural log of the density of the "gaussian" set at
// x (len 2): -log 2π - ½ log det S - ½ (x-m)ᵀ S⁻¹ (x-m). It panics if
// len(x) != 2, as indexing would.
func GaussianLogPdf(x []float64) float64 {
	if len(x) != 2 {
		panic(fmt.Sprintf("data.GaussianLogPdf: len(x) = %d, want 2", len(x)))
	}
	det := gaussS00*gaussS11 - gaussS01*gaussS01
	d0, d1 := x[0]-gaussM0, x[1]-gaussM1
	// S⁻¹ = [[S11, -S01], [-S01, S00]] / det.
	q := (gaussS11*d0*d0 - 2*gaussS01*d0*d1 + gaussS00*d1*d1) / det
	return -math.Log(2*math.Pi) - 0.5*math.Log(det) - 0.5*q
}

// BuiltinNames returns the names Builtin accepts, sorted. The slice is new.
func BuiltinNames() []string {
	return append([]string(nil), builtinNames...)
}

// IsBuiltin reports whether name is a built-in set (exact, lower case).
func IsBuiltin(name string) bool {
	_, ok := builtins[name]
	return ok
}

// Builtin draws n points of the named 2-D set (see the table above). The
// same (name, n, seed) gives the same points on a given platform and Go
// release; bit-identity across architectures is not promised (math.Sin and
// fused multiply-adds may differ in the last bit).
func Builtin(name string, n int, seed uint64) (*Dataset, error) {
	gen, ok := builtins[name]
	if !ok {
		return nil, fmt.Errorf("%q: not a built-in data set (have %s)", name, strings.Join(builtinNames, ", "))
	}
	if n <= 0 || n > MaxBuiltin {
		return nil, fmt.Errorf("%s: n = %d points, want 1 to %d", name, n, MaxBuiltin)
	}
	ds := &Dataset{Name: name, X: make([]float32, 2*n), N: n, D: 2}
	if !unlabelled[name] {
		ds.Labels = make([]int32, n)
	}
	gen(rand.New(rand.NewPCG(seed, rngStream)), ds.X, ds.Labels)
	return ds, nil
}

func eightGaussians(rng *rand.Rand, x []float32, labels []int32) {
	for i := range labels {
		k := rng.IntN(8)
		a := 2 * math.Pi * float64(k) / 8
		labels[i] = int32(k)
		x[2*i] = float32(2*math.Cos(a) + 0.1*rng.NormFloat64())
		x[2*i+1] = float32(2*math.Sin(a) + 0.1*rng.NormFloat64())
	}
}

func moons(rng *rand.Rand, x []float32, labels []int32) {
	for i := range labels {
		k := rng.IntN(2)
		th := math.Pi * rng.Float64()
		px, py := math.Cos(th), math.Sin(th)
		if k == 1 {
			px, py = 1-px, 0.5-py
		}
		labels[i] = int32(k)
		x[2*i] = float32(px + 0.05*rng.NormFloat64())
		x[2*i+1] = float32(py + 0.05*rng.NormFloat64())
	}
}

func checkerboard(rng *rand.Rand, x []float32, _ []int32) {
	for i := 0; i < len(x)/2; i++ {
		x1 := 4*rng.Float64() - 2
		x2 := rng.Float64() - 2*float64(rng.IntN(2))
		c1 := math.Floor(x1)
		if int(c1)&1 != 0 { // Python's floor(x1) % 2 is 0 or 1, also for negative floors.
			x2++
		}
		x[2*i] = inCell(2*x1, 2*c1)
		x[2*i+1] = inCell(2*x2, 2*math.Floor(x2))
	}
}

// inCell rounds v, which lies in [lo, lo+2), to float32 without letting the
// rounding carry it onto the next square: a point exactly on the upper edge
// would land on a "white" square or outside [-4, 4).
func inCell(v, lo float64) float32 {
	f, hi := float32(v), float32(lo+2)
	if f >= hi {
		f = math.Nextafter32(hi, float32(lo))
	}
	return f
}

func spirals(rng *rand.Rand, x []float32, labels []int32) {
	for i := range labels {
		k := rng.IntN(2)
		t := 3 * math.Pi * math.Sqrt(rng.Float64())
		px := -t*math.Cos(t) + 0.5*rng.Float64()
		py := t*math.Sin(t) + 0.5*rng.Float64()
		if k == 1 {
			px, py = -px, -py
		}
		labels[i] = int32(k)
		x[2*i] = float32(px/3 + 0.1*rng.NormFloat64())
		x[2*i+1] = float32(py/3 + 0.1*rng.NormFloat64())
	}
}

func circles(rng *rand.Rand, x []float32, labels []int32) {
	for i := range labels {
		k := rng.IntN(2)
		r := 3.0
		if k == 1 {
			r = 1.5
		}
		a := 2 * math.Pi * rng.Float64()
		labels[i] = int32(k)
		x[2*i] = float32(r*math.Cos(a) + 0.24*rng.NormFloat64())
		x[2*i+1] = float32(r*math.Sin(a) + 0.24*rng.NormFloat64())
	}
}

func gaussian(rng *rand.Rand, x []float32, _ []int32) {
	// Cholesky factor of S: L = [[sqrt S00, 0], [S01/sqrt S00, sqrt(S11 - S01²/S00)]].
	l00 := math.Sqrt(gaussS00)
	l10 := gaussS01 / l00
	l11 := math.Sqrt(gaussS11 - l10*l10)
	for i := 0; i < len(x)/2; i++ {
		z0, z1 := rng.NormFloat64(), rng.NormFloat64()
		x[2*i] = float32(gaussM0 + l00*z0)
		x[2*i+1] = float32(gaussM1 + l10*z0 + l11*z1)
	}
}
