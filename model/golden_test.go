package model_test

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/internal/sgemm"
	"github.com/fmgpu/fmgpu/model"
)

// goldenNets are the networks whose layout, initialization and CPU results
// TestGolden pins: the MLP shapes, and U-Nets with every kind of block
// (attention, classes with a null-class row and nil labels, identity and
// 1x1 skips, two and three levels, the MNIST size).
var goldenNets = []struct {
	name   string
	cfg    model.Config
	rows   int
	labels []int // nil: SetLabels(nil)
}{
	{"mlp-D2-h8,16-sin16", testCases[1].cfg, 5, nil},
	{"mlp-D3-h5,7,4-raw", testCases[2].cfg, 17, nil},
	{"unet-small", smallUNet, 3, []int{0, 3, 2}},
	{"unet-tiny", unetTiny, 2, nil},
	{"unet-3level-null", unetGradCases[2].cfg, 2, nil},
	{"unet-mnist", mnistUNet(1), 2, []int{7, 10}},
}

// goldenLayout and goldenInit are hashes of every network's tensor list
// (names, shapes, offsets: what a checkpoint records) and of its Init(7)
// weights. They do not depend on the CPU.
var goldenLayout = map[string]string{
	"mlp-D2-h8,16-sin16": "45a6b67752529276",
	"mlp-D3-h5,7,4-raw":  "c8a335a64af080a8",
	"unet-3level-null":   "3473c44c79a9afd9",
	"unet-mnist":         "2a0b26bd432e468e",
	"unet-small":         "2188e56b9c8b2c45",
	"unet-tiny":          "0c718b40a99839e4",
}

var goldenInit = map[string]string{
	"mlp-D2-h8,16-sin16": "0680310917c3d09f",
	"mlp-D3-h5,7,4-raw":  "b08f43298a526ec3",
	"unet-3level-null":   "b9a39de941cc3cda",
	"unet-mnist":         "974548eda50439dc",
	"unet-small":         "9f9437383d96b892",
	"unet-tiny":          "d0203b62d8503406",
}

// goldenRun holds, per GOARCH/sgemm kernel/network, the hash of the
// Forward output, Backward gradient and InputVJP of a random batch (the
// U-Nets with setRandomParams weights), computed before the U-Net was
// rebuilt from layers: the rebuild is bit for bit the same computation.
// amd64/avx512/unet-mnist was recorded again when its stride-1 3x3
// convolutions (16 channels or more, 13 positions wide or more) went to
// the Winograd kernels.
var goldenRun = map[string]string{
	"amd64/avx2/mlp-D2-h8,16-sin16":      "f236188f6e1fbb62",
	"amd64/avx2/mlp-D3-h5,7,4-raw":       "f6a6b6c1f0c06b5b",
	"amd64/avx2/unet-3level-null":        "f735c03752bf907e",
	"amd64/avx2/unet-mnist":              "00a1f79a547723e0",
	"amd64/avx2/unet-small":              "d1b64fd235e4b8fa",
	"amd64/avx2/unet-tiny":               "f7b9258326496432",
	"amd64/avx512/mlp-D2-h8,16-sin16":    "7e76dd59f50b750d",
	"amd64/avx512/mlp-D3-h5,7,4-raw":     "f6a6b6c1f0c06b5b",
	"amd64/avx512/unet-3level-null":      "c1f338593b918975",
	"amd64/avx512/unet-mnist":            "ca13735246310ed3",
	"amd64/avx512/unet-small":            "363de228034a1685",
	"amd64/avx512/unet-tiny":             "fb51adde7964774d",
	"amd64/avx512ymm/mlp-D2-h8,16-sin16": "f236188f6e1fbb62",
	"amd64/avx512ymm/mlp-D3-h5,7,4-raw":  "f6a6b6c1f0c06b5b",
	"amd64/avx512ymm/unet-3level-null":   "f735c03752bf907e",
	"amd64/avx512ymm/unet-mnist":         "00a1f79a547723e0",
	"amd64/avx512ymm/unet-small":         "d1b64fd235e4b8fa",
	"amd64/avx512ymm/unet-tiny":          "f7b9258326496432",
	"amd64/generic/mlp-D2-h8,16-sin16":   "ab5c971ba379fef6",
	"amd64/generic/mlp-D3-h5,7,4-raw":    "cfa467fb20766c97",
	"amd64/generic/unet-3level-null":     "25415733e9ad470b",
	"amd64/generic/unet-mnist":           "186cfa264aa08ec9",
	"amd64/generic/unet-small":           "9fff03574343737e",
	"amd64/generic/unet-tiny":            "090bbb706c163bd8",
}

var goldenTables = map[string]map[string]string{"goldenLayout": goldenLayout, "goldenInit": goldenInit, "goldenRun": goldenRun}

// hashFloats is the first 16 hex digits of the SHA-256 of the float32s'
// bits, little-endian.
func hashFloats(vs ...[]float32) string {
	h := sha256.New()
	var buf [4]byte
	for _, v := range vs {
		for _, x := range v {
			binary.LittleEndian.PutUint32(buf[:], math.Float32bits(x))
			h.Write(buf[:])
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func hashLayout(ts []model.Tensor) string {
	var s strings.Builder
	for _, tn := range ts {
		fmt.Fprintf(&s, "%s %v %d\n", tn.Name, tn.Shape, tn.Offset)
	}
	sum := sha256.Sum256([]byte(s.String()))
	return hex.EncodeToString(sum[:])[:16]
}

// TestGolden: the tensor layouts, initial weights and the results of a
// Forward, Backward and InputVJP on the CPU backend (with every sgemm
// kernel this CPU has) are bitwise those recorded. A network change that
// is meant to change them must say so and record new values; printing them
// is what a missing entry does.
func TestGolden(t *testing.T) {
	b := newBackend(t)
	missing := map[string][]string{}
	check := func(table string, key, got string) {
		want, ok := goldenTables[table][key]
		switch {
		case !ok:
			missing[table] = append(missing[table], fmt.Sprintf("%q: %q,", key, got))
		case got != want:
			t.Errorf("%s: hash %s, recorded %s", key, got, want)
		}
	}
	nets := make([]model.Net, len(goldenNets))
	for i, gn := range goldenNets {
		n, err := model.New(b, gn.cfg)
		if err != nil {
			t.Fatal(err)
		}
		check("goldenLayout", gn.name, hashLayout(n.Tensors()))
		n.Init(7)
		check("goldenInit", gn.name, hashFloats(hostData(t, n.Params())))
		if u, ok := n.(*model.UNet); ok {
			setRandomParams(t, b, u, rand.New(rand.NewPCG(7, 99)))
		}
		nets[i] = n
	}

	defer sgemm.SetKernel("")
	for _, kernel := range sgemm.Kernels() {
		if err := sgemm.SetKernel(kernel); err != nil {
			t.Fatal(err)
		}
		for i, gn := range goldenNets {
			n := nets[i]
			if gn.labels != nil {
				n.SetLabels(labelsBuf(b, gn.labels...))
			} else {
				n.SetLabels(nil)
			}
			bt := newBatch(rand.New(rand.NewPCG(7, 5)), gn.rows, n.Dim())
			v, g, w := unetRun(t, b, n, gn.rows, upload(b, bt.x), upload(b, bt.t), upload(b, bt.tgt))
			check("goldenRun", runtime.GOARCH+"/"+kernel+"/"+gn.name, hashFloats(v, g, w))
		}
	}
	for _, table := range []string{"goldenLayout", "goldenInit", "goldenRun"} {
		m := missing[table]
		if len(m) == 0 {
			continue
		}
		sort.Strings(m)
		msg := fmt.Sprintf("%s has no entry for:\n%s", table, strings.Join(m, "\n"))
		if table == "goldenRun" {
			// Another architecture, or a kernel this package has not seen:
			// the results differ in rounding (FMA or not, the order of the
			// sums), so there is nothing to compare with.
			t.Log(msg)
		} else {
			t.Error(msg)
		}
	}
	if checked := len(goldenNets) * len(sgemm.Kernels()); len(missing["goldenRun"]) == checked && runtime.GOARCH == "amd64" {
		t.Error("no run hash checked on amd64 (the generic kernel is always there)")
	}
}
