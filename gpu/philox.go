package gpu

import "math"

// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
// 3", SC11), the counter-based generator both backends share: element i of
// a draw depends only on (seed, purpose, stream, i), so the CUDA kernels and
// the CPU backend produce the same numbers in any order, and a resumed run
// continues the exact sequence.
//
// Layout, identical in kernels/philox.cuh: key = (seed low 32 bits, seed
// high 32 bits); counter = (i / 4, purpose, stream low, stream high); element
// i takes lane i % 4 of the block's four outputs.

const (
	philoxM0 = 0xD2511F53
	philoxM1 = 0xCD9E8D57
	philoxW0 = 0x9E3779B9
	philoxW1 = 0xBB67AE85
)

// Purposes separate the independent draws a step makes from one (seed,
// stream) pair. Part of the kernels' ABI.
const (
	PurposeGeneric   uint32 = 0 // RandNormal, RandRademacher
	PurposeIndex     uint32 = 1 // DrawBatch: data row indices
	PurposeTimeU     uint32 = 2 // DrawBatch: uniform times
	PurposeTimeN     uint32 = 3 // DrawBatch: normals for logit-normal times
	PurposeNoise     uint32 = 4 // DrawBatch: x0
	PurposeGenericU  uint32 = 5 // uniform fills
	PurposeLabelDrop uint32 = 6 // DrawLabels: label dropout uniforms
	// PurposeDropout is the low byte of Dropout's purpose word; the upper
	// 24 bits are the layer (DropoutDraw.Purpose).
	PurposeDropout uint32 = 7
)

// Philox4x32 is the bijection itself: ten rounds over a 128-bit counter
// with a 64-bit key.
func Philox4x32(ctr [4]uint32, key [2]uint32) [4]uint32 {
	for r := 0; r < 10; r++ {
		if r > 0 {
			key[0] += philoxW0
			key[1] += philoxW1
		}
		p0 := uint64(philoxM0) * uint64(ctr[0])
		p1 := uint64(philoxM1) * uint64(ctr[2])
		hi0, lo0 := uint32(p0>>32), uint32(p0)
		hi1, lo1 := uint32(p1>>32), uint32(p1)
		ctr = [4]uint32{hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0}
	}
	return ctr
}

// PhiloxBlock returns the four 32-bit words of block `block` of the stream.
func PhiloxBlock(seed uint64, purpose uint32, stream uint64, block uint32) [4]uint32 {
	return Philox4x32(
		[4]uint32{block, purpose, uint32(stream), uint32(stream >> 32)},
		[2]uint32{uint32(seed), uint32(seed >> 32)})
}

// Uniform01 maps a word to (0, 1): ((w >> 9) + 0.5) 2^-23 has 24
// significant bits, so it is exact in float32 and never 0 or 1.
func Uniform01(w uint32) float32 {
	return (float32(w>>9) + 0.5) * (1.0 / (1 << 23))
}

// BoxMuller turns two uniforms in (0, 1) into two independent standard
// normals. Evaluated in float64 and rounded: the CUDA kernels use the
// float32 intrinsics, which agree to about 1e-6.
func BoxMuller(u0, u1 float32) (z0, z1 float32) {
	r := math.Sqrt(-2 * math.Log(float64(u0)))
	s, c := math.Sincos(2 * math.Pi * float64(u1))
	return float32(r * c), float32(r * s)
}

// NormalBlock gives the four normals of one block: lanes (0, 1) and (2, 3)
// are Box-Muller pairs.
func NormalBlock(w [4]uint32) [4]float32 {
	a, b := BoxMuller(Uniform01(w[0]), Uniform01(w[1]))
	c, d := BoxMuller(Uniform01(w[2]), Uniform01(w[3]))
	return [4]float32{a, b, c, d}
}

// IndexBelow maps a word to [0, n) by a 32x32 -> 64-bit multiply (Lemire):
// no division, bias below n / 2^32.
func IndexBelow(w uint32, n uint32) uint32 {
	return uint32((uint64(w) * uint64(n)) >> 32)
}
