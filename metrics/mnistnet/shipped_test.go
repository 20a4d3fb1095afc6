package mnistnet

import (
	"context"
	"math"
	"testing"

	"github.com/fmgpu/fmgpu/data"
)

// The shipped weights load, record an accuracy of at least 0.98 on the
// test split, and classify the test images as recorded: the first 2,000
// in short mode (a few seconds), all 10,000 otherwise.
func TestShippedAccuracy(t *testing.T) {
	n, info, err := Shipped()
	if err != nil {
		t.Fatal(err)
	}
	if info.TestAccuracy < 0.98 || info.TrainImages != DefaultTrainImages {
		t.Errorf("recorded %+v: want a test accuracy >= 0.98 from the first %d training images", info, DefaultTrainImages)
	}
	te, err := data.LoadImages("mnist:test", data.ImageOptions{})
	if err != nil {
		t.Skipf("MNIST test split: %v", err)
	}
	count := te.N
	if testing.Short() {
		count = 2000
	}
	acc, err := n.Accuracy(te.X, te.Labels, count)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("accuracy on the first %d test images: %.4f (recorded on all %d: %.4f)", count, acc, te.N, info.TestAccuracy)
	switch {
	case count == te.N && math.Abs(acc-info.TestAccuracy) > 1e-9:
		// the products' rounding differs between sgemm's kernels: a few
		// images near a decision boundary may change class, not more
		if math.Abs(acc-info.TestAccuracy) > 5e-4 {
			t.Errorf("accuracy %.4f on the test split, recorded %.4f (kernel %s)", acc, info.TestAccuracy, info.Kernel)
		}
	case acc < 0.98:
		t.Errorf("accuracy %.4f on the first %d test images", acc, count)
	}
	// The features of real images are deterministic and not degenerate:
	// the same bits twice, and most of the 128 units active on some image.
	f1, err := n.Features(context.Background(), te.X, 200)
	if err != nil {
		t.Fatal(err)
	}
	f2, _ := n.Features(context.Background(), te.X, 200)
	active := 0
	for j := range FeatureDim {
		on := false
		for i := range 200 {
			if f1[i*FeatureDim+j] != f2[i*FeatureDim+j] {
				t.Fatalf("image %d feature %d: %v then %v", i, j, f1[i*FeatureDim+j], f2[i*FeatureDim+j])
			}
			on = on || f1[i*FeatureDim+j] > 0
		}
		if on {
			active++
		}
	}
	if active < FeatureDim/2 {
		t.Errorf("%d of %d features are ever non-zero on 200 test images", active, FeatureDim)
	}
}

// RoundToPixels maps values to the 8-bit grid of the data's scaling,
// clamping outside [-1, 1].
func TestRoundToPixels(t *testing.T) {
	in := []float32{-3, -1, -0.999, 0, 0.0039, 0.5, 1, 2, float32(math.NaN())}
	out := RoundToPixels(in)
	want := []uint8{0, 0, 0, 128, 128, 191, 255, 255, 0}
	for i, v := range out {
		if v != data.PixelToFloat(want[i]) {
			t.Errorf("%v -> %v, want pixel %d (%v)", in[i], v, want[i], data.PixelToFloat(want[i]))
		}
	}
}
