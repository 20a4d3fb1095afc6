package gpu

import (
	"math"
	"testing"
)

// Known-answer vectors of Philox-4x32-10 from Random123's kat_vectors.
func TestPhiloxKnownAnswers(t *testing.T) {
	cases := []struct {
		ctr  [4]uint32
		key  [2]uint32
		want [4]uint32
	}{
		{[4]uint32{0, 0, 0, 0}, [2]uint32{0, 0}, [4]uint32{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
		{[4]uint32{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, [2]uint32{0xffffffff, 0xffffffff}, [4]uint32{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
		{[4]uint32{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, [2]uint32{0xa4093822, 0x299f31d0}, [4]uint32{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
	}
	for _, c := range cases {
		if got := Philox4x32(c.ctr, c.key); got != c.want {
			t.Errorf("Philox4x32(%08x, %08x) = %08x, want %08x", c.ctr, c.key, got, c.want)
		}
	}
}

func TestUniform01Range(t *testing.T) {
	for _, w := range []uint32{0, 1, 511, 512, math.MaxUint32 - 511, math.MaxUint32} {
		u := Uniform01(w)
		if !(u > 0 && u < 1) {
			t.Errorf("Uniform01(%d) = %v, want in (0, 1)", w, u)
		}
		// exact in float32: the float64 formula gives the same value
		if want := (float64(w>>9) + 0.5) / (1 << 23); float64(u) != want {
			t.Errorf("Uniform01(%d) = %v, want exactly %v", w, u, want)
		}
	}
}

// The normal stream's first two moments, over 2^18 draws: the standard
// error of the mean is 1/512 and of the variance about sqrt(2)/512; 5 SE.
func TestNormalMoments(t *testing.T) {
	const n = 1 << 18
	var s, s2 float64
	for b := uint32(0); b < n/4; b++ {
		for _, z := range NormalBlock(PhiloxBlock(7, PurposeGeneric, 3, b)) {
			s += float64(z)
			s2 += float64(z) * float64(z)
		}
	}
	mean, vr := s/n, s2/n-(s/n)*(s/n)
	if math.Abs(mean) > 5.0/512 || math.Abs(vr-1) > 5*math.Sqrt2/512 {
		t.Errorf("normal stream mean %g variance %g", mean, vr)
	}
}

func TestIndexBelow(t *testing.T) {
	if IndexBelow(math.MaxUint32, 10) != 9 || IndexBelow(0, 10) != 0 {
		t.Error("IndexBelow endpoints")
	}
}
