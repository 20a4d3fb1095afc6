package coupling

import "math"

// Sinkhorn's kernel takes n^2 exponentials a level; exp64 is the one the
// vectorized kernel computes lane by lane, so that its results and the
// plain-Go build's are the same bits (math.Exp is more exact, slower, and
// not what the lanes compute).
const (
	expLog2e = 1.44269504088896338700e+00
	expLn2Hi = 6.93147180369123816490e-01 // ln 2 = expLn2Hi + expLn2Lo
	expLn2Lo = 1.90821492927058770002e-10
	expMax   = 709.0  // above: +Inf (e^709 = 8.2e307)
	expMin   = -708.0 // below: 0 (e^-708 = 3.3e-308, near the smallest normal)
)

// expTaylor are 1/k! for k = 0..12: on |r| <= ln(2)/2 the series' next
// term is below 2e-16 of the sum.
var expTaylor = [13]float64{
	1, 1, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040,
	1.0 / 40320, 1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600,
}

// exp64 is e^x within a few ulps for expMin <= x <= expMax, +Inf above
// and 0 below: x = n ln 2 + r with n the nearest integer to x log2(e) and
// |r| <= ln(2)/2 (by fused multiply-adds with ln 2 in two parts), e^r by
// its Taylor polynomial in Horner's form, times 2^n.
func exp64(x float64) float64 {
	if x > expMax {
		return math.Inf(1)
	}
	if x < expMin {
		return 0
	}
	n := math.RoundToEven(x * expLog2e)
	r := math.FMA(-n, expLn2Hi, x)
	r = math.FMA(-n, expLn2Lo, r)
	p := expTaylor[12]
	for k := 11; k >= 0; k-- {
		p = math.FMA(p, r, expTaylor[k])
	}
	return p * math.Float64frombits(uint64(int64(n)+1023)<<52)
}

// expKernelRowGo writes k_j = exp64((fi + g_j - c_j) / eps), the
// reference of the vectorized kernel row.
func expKernelRowGo(k []float64, c []float32, fi float64, g []float64, eps float64) {
	g = g[:len(k)]
	c = c[:len(k)]
	for j := range k {
		k[j] = exp64((fi + g[j] - float64(c[j])) / eps)
	}
}
