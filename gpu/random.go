package gpu

import "fmt"

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
	// Dropout writes y[i] = 0 where u_i < p and x[i] * DropoutScale(p)
	// elsewhere, u_i = Uniform01 of element i of the stream dr names
	// (DropoutDraw). The mask depends on the draw and i only, so the
	// backward pass of a dropout is the same op, with the same draw, on the
	// output's gradient. x and y have the same length and may be the same
	// buffer; 0 <= p < 1.
	Dropout(dr DropoutDraw, p float32, x, y Buffer)
}

// DropoutDraw names the Philox stream of one dropout mask: seed dr.Seed,
// purpose word PurposeDropout | Layer << 8 (each dropout layer of a
// network a stream of its own), stream the step, read from StepFrom as
// BatchDraw's when it is not nil (a recorded graph's replays draw new
// masks).
type DropoutDraw struct {
	Seed     uint64
	Layer    uint32 // below 2^24
	Step     uint64
	StepFrom Buffer
}

// Purpose is the draw's Philox purpose word.
func (dr DropoutDraw) Purpose() uint32 { return PurposeDropout | dr.Layer<<8 }

// DropoutScale is the factor 1 / (1 - p) that keeps a dropout's output
// mean equal to its input's, rounded once to float32 so that every
// backend multiplies by the same value.
func DropoutScale(p float32) float32 { return float32(1 / (1 - float64(p))) }

// MaxDropoutLayer bounds DropoutDraw.Layer.
const MaxDropoutLayer = 1<<24 - 1

func checkDropout(dr DropoutDraw, p float32, x, y Buffer) int {
	const op = "Dropout"
	if !(p >= 0 && p < 1) {
		panic(fmt.Sprintf("gpu: %s with p = %g: want 0 <= p < 1", op, p))
	}
	if dr.Layer > MaxDropoutLayer {
		panic(fmt.Sprintf("gpu: %s of layer %d: want at most %d", op, dr.Layer, MaxDropoutLayer))
	}
	if dr.StepFrom != nil {
		need(op, "StepFrom", dr.StepFrom, 2)
	}
	n := lenOf(x)
	need(op, "y", y, n)
	return n
}

// hostStep is dr's step on a backend whose buffers are host memory.
func (dr DropoutDraw) hostStep() uint64 {
	return BatchDraw{Step: dr.Step, StepFrom: dr.StepFrom}.hostStep()
}
