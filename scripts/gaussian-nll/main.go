// Command gaussian-nll prints the exact mean negative log-likelihood of the
// points `fmgpu likelihood --data gaussian --n-data N --seed S` scores,
// under the true density of the built-in gaussian set, and the set's
// entropy (the expected value of that mean): the analytic anchors of the
// likelihood check in scripts/measure-2d.sh.
package main

import (
	"flag"
	"fmt"
	"math"
	"os"

	"github.com/fmgpu/fmgpu/data"
)

func main() {
	n := flag.Int("n", 2000, "points")
	seed := flag.Uint64("seed", 2, "seed, as fmgpu likelihood --seed")
	flag.Parse()
	ds, err := data.Builtin("gaussian", *n, *seed)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sum := 0.0
	for i := 0; i < ds.N; i++ {
		r := ds.Row(i)
		sum -= data.GaussianLogPdf([]float64{float64(r[0]), float64(r[1])})
	}
	S := data.GaussianCov
	det := S[0][0]*S[1][1] - S[0][1]*S[1][0]
	entropy := math.Log(2*math.Pi*math.E) + 0.5*math.Log(det)
	fmt.Printf("analytic_nll_nats=%.6f entropy_nats=%.6f points=%d\n", sum/float64(ds.N), entropy, ds.N)
}
