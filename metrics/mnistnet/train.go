package mnistnet

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
)

// TrainOptions are the settings of Train; the zero value of a field takes
// the default below.
type TrainOptions struct {
	Epochs int     // passes over the images (default 3)
	Batch  int     // images per step (default 64)
	LR     float64 // Adam's peak learning rate, cosine-decayed to 0 (default 1e-3)
	Seed   uint64  // the initialization and the shuffles are functions of it
	// OnEpoch, when set, is called after each epoch with its mean loss.
	OnEpoch func(epoch int, loss float64)
}

// DefaultTrainImages is how many of MNIST's 60,000 training images the
// shipped network was fitted to: the first 50,000. The last 10,000 it never
// saw are where eval's noise floor takes its training-split images from, so
// that the floor does not mix the classifier's own overfitting into the
// comparison of the two splits.
const DefaultTrainImages = 50000

// Defaults of TrainOptions.
const (
	DefaultEpochs = 3
	DefaultBatch  = 64
	DefaultLR     = 1e-3
)

// PCG streams of the initialization and the shuffles.
const (
	streamInit    = 0x696e6974 // "init"
	streamShuffle = 0x73687566 // "shuf"
)

// Init returns a network with He-normal weights (standard deviation
// sqrt(2 / fan-in)) and zero biases drawn from seed.
func Init(seed uint64) *Net {
	n := New()
	rng := rand.New(rand.NewPCG(seed, streamInit))
	for i, t := range Tensors {
		if len(t.Shape) == 1 {
			continue
		}
		fanIn := t.Size() / t.Shape[0]
		sd := math.Sqrt(2 / float64(fanIn))
		for k := range view(n.Params, i) {
			view(n.Params, i)[k] = float32(sd * rng.NormFloat64())
		}
	}
	return n
}

// Train fits a network from Init(o.Seed) to the count images x (count x
// Pixels, in [-1, 1]) and their labels (0..9) by Adam on the mean
// cross-entropy, in shuffled batches, with a cosine learning-rate decay
// over all the steps. The result is a function of the inputs and the
// options alone on a given matrix-product kernel (internal/sgemm's
// products do not depend on the thread count). It stops with ctx's error
// when ctx is cancelled.
func Train(ctx context.Context, x []float32, labels []int32, count int, o TrainOptions) (*Net, error) {
	if err := checkImages(x, count); err != nil {
		return nil, err
	}
	if len(labels) < count {
		return nil, fmt.Errorf("mnistnet: %d labels for %d images", len(labels), count)
	}
	for i, l := range labels[:count] {
		if l < 0 || l >= Classes {
			return nil, fmt.Errorf("mnistnet: label %d of image %d: want 0..%d", l, i, Classes-1)
		}
	}
	epochs, batch, lr := o.Epochs, o.Batch, o.LR
	if epochs == 0 {
		epochs = DefaultEpochs
	}
	if batch == 0 {
		batch = DefaultBatch
	}
	if lr == 0 {
		lr = DefaultLR
	}
	if epochs < 1 || batch < 1 || !(lr > 0) || math.IsInf(lr, 0) {
		return nil, fmt.Errorf("mnistnet: %d epochs, batch %d, learning rate %g: want positive values", epochs, batch, lr)
	}
	n := Init(o.Seed)
	rng := rand.New(rand.NewPCG(o.Seed, streamShuffle))
	w := newWork(batch, true)
	g := make([]float32, NumParams)
	m := make([]float32, NumParams)
	v := make([]float32, NumParams)
	xb := make([]float32, batch*Pixels)
	lb := make([]int32, batch)
	stepsPerEpoch := (count + batch - 1) / batch
	total := epochs * stepsPerEpoch
	const beta1, beta2, eps = 0.9, 0.999, 1e-8
	step := 0
	for epoch := range epochs {
		perm := rng.Perm(count)
		sum := 0.0
		for first := 0; first < count; first += batch {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			b := min(batch, count-first)
			for i := range b {
				j := perm[first+i]
				copy(xb[i*Pixels:(i+1)*Pixels], x[j*Pixels:(j+1)*Pixels])
				lb[i] = labels[j]
			}
			n.forward(w, xb, b)
			loss := n.lossGrad(w, lb, b, g)
			if math.IsNaN(loss) || math.IsInf(loss, 0) {
				return nil, fmt.Errorf("mnistnet: the loss diverged at step %d", step)
			}
			sum += loss * float64(b)
			step++
			a := lr * 0.5 * (1 + math.Cos(math.Pi*float64(step-1)/float64(total)))
			c1 := 1 - math.Pow(beta1, float64(step))
			c2 := 1 - math.Pow(beta2, float64(step))
			for k, gk := range g {
				gd := float64(gk)
				mk := beta1*float64(m[k]) + (1-beta1)*gd
				vk := beta2*float64(v[k]) + (1-beta2)*gd*gd
				m[k], v[k] = float32(mk), float32(vk)
				n.Params[k] -= float32(a * (mk / c1) / (math.Sqrt(vk/c2) + eps))
			}
		}
		if o.OnEpoch != nil {
			o.OnEpoch(epoch+1, sum/float64(count))
		}
	}
	return n, nil
}
