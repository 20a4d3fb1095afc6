package gpu

// Random are the random fills, from the Philox streams of philox.go: element
// i of a fill is lane i % 4 of block i / 4 of stream (seed, PurposeGeneric,
// stream), whatever the backend and its split of the work.
type Random interface {
	// RandNormal fills dst with std * N(0, 1) draws of Philox stream
	// (seed, stream) (NormalBlock's Box-Muller pairs).
	RandNormal(dst Buffer, seed, stream uint64, std float32)
	// RandRademacher fills dst with -1 where the top bit of the stream's
	// word is set, else +1 (Hutchinson's probes).
	RandRademacher(dst Buffer, seed, stream uint64)
}
