// Package numtest holds the tolerance helpers and finite-difference tools
// that every numeric test in fmgpu shares, so that a tolerance is defined
// once: |got - want| <= atol + rtol*|want|, and NaN never passes. The
// default tolerances are those of docs/design.md, "Tests".
package numtest

import (
	"fmt"
	"math"
	"testing"
)

// Close reports whether got is within atol + rtol*|want| of want.
// NaN on either side never passes; equal infinities do.
func Close(got, want, atol, rtol float64) bool {
	if math.IsNaN(got) || math.IsNaN(want) {
		return false
	}
	if got == want {
		return true
	}
	if math.IsInf(got, 0) || math.IsInf(want, 0) {
		return false
	}
	return math.Abs(got-want) <= atol+rtol*math.Abs(want)
}

// RelErr is |got - want| / max(|want|, floor); floor keeps the ratio finite
// near zero. NaN in either argument gives +Inf.
func RelErr(got, want, floor float64) float64 {
	if math.IsNaN(got) || math.IsNaN(want) {
		return math.Inf(1)
	}
	return math.Abs(got-want) / math.Max(math.Abs(want), floor)
}

// Float is the set of element types the slice helpers accept.
type Float interface{ ~float32 | ~float64 }

// MaxRelErr is the largest RelErr over matching elements of got and want.
func MaxRelErr[F, G Float](got []F, want []G, floor float64) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	m := 0.0
	for i := range got {
		if e := RelErr(float64(got[i]), float64(want[i]), floor); e > m {
			m = e
		}
	}
	return m
}

// AllClose checks every element with Close and reports the first few
// failures through t, prefixed by name. It returns whether all passed.
func AllClose[F, G Float](t testing.TB, name string, got []F, want []G, atol, rtol float64) bool {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: length %d, want %d", name, len(got), len(want))
		return false
	}
	bad := 0
	for i := range got {
		g, w := float64(got[i]), float64(want[i])
		if !Close(g, w, atol, rtol) {
			if bad < 5 {
				t.Errorf("%s[%d] = %.9g, want %.9g (atol %g, rtol %g)", name, i, g, w, atol, rtol)
			}
			bad++
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d of %d elements out of tolerance", name, bad, len(got))
	}
	return bad == 0
}

// CentralDiff returns (f(x+h) - f(x-h)) / 2h.
func CentralDiff(f func(float64) float64, x, h float64) float64 {
	return (f(x+h) - f(x-h)) / (2 * h)
}

// Describe formats a measured error for test logs, so that closing notes can
// quote the figures tests print with -v.
func Describe(name string, maxErr, tol float64) string {
	return fmt.Sprintf("%s: max error %.3g (tolerance %.3g)", name, maxErr, tol)
}
