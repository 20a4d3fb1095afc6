package mnistnet

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"

	"github.com/nlpodyssey/safetensors"
)

// Info is what a weights file records about its training, as JSON under
// the safetensors metadata key "mnistnet".
type Info struct {
	// TrainImages are the first images of MNIST's training split the
	// network was fitted to; the rest (HeldOut..60000) it never saw.
	TrainImages int `json:"train_images"`
	// TestAccuracy is the fraction of MNIST's 10,000 test images it
	// classifies right.
	TestAccuracy float64 `json:"test_accuracy"`
	// HeldOutAccuracy is the same on the training split's images it did
	// not see.
	HeldOutAccuracy float64 `json:"held_out_accuracy"`
	// FeatureScale is Net.FeatureScale, set by Calibrate on the training
	// images.
	FeatureScale float32 `json:"feature_scale"`
	Epochs       int     `json:"epochs"`
	Batch        int     `json:"batch"`
	LR           float64 `json:"lr"`
	Seed         uint64  `json:"seed"`
	// Kernel is internal/sgemm's kernel the training ran on (the products'
	// rounding, and so the exact weights, depend on it).
	Kernel  string `json:"sgemm_kernel"`
	Command string `json:"command"`
	Date    string `json:"date"`
}

// metaKey is the safetensors metadata key of Info.
const metaKey = "mnistnet"

type f32View struct {
	shape []uint64
	data  []byte
}

func (v f32View) DType() safetensors.DType { return safetensors.F32 }
func (v f32View) Shape() []uint64          { return v.shape }
func (v f32View) Data() []byte             { return v.data }
func (v f32View) DataLen() uint64          { return uint64(len(v.data)) }

// Write writes the network and info as safetensors, one F32 tensor per
// entry of Tensors; info.FeatureScale is set to the network's.
func (n *Net) Write(w io.Writer, info Info) error {
	info.FeatureScale = n.FeatureScale
	if len(n.Params) != NumParams {
		return fmt.Errorf("mnistnet: %d parameters, want %d", len(n.Params), NumParams)
	}
	js, err := json.Marshal(info)
	if err != nil {
		return err
	}
	views := map[string]f32View{}
	for i, t := range Tensors {
		v := view(n.Params, i)
		b := make([]byte, 4*len(v))
		for k, x := range v {
			binary.LittleEndian.PutUint32(b[4*k:], math.Float32bits(x))
		}
		shape := make([]uint64, len(t.Shape))
		for k, s := range t.Shape {
			shape[k] = uint64(s)
		}
		views[t.Name] = f32View{shape: shape, data: b}
	}
	return safetensors.SerializeToWriter(views, map[string]string{"format": "pt", metaKey: string(js)}, w)
}

// Read parses a weights file written by Write: every tensor of Tensors
// with its shape, F32, finite.
func Read(raw []byte) (n *Net, info Info, err error) {
	defer func() { // the library validates, but a bad file must not crash a caller
		if r := recover(); r != nil {
			n, err = nil, fmt.Errorf("unreadable safetensors file (%v)", r)
		}
	}()
	st, err := safetensors.Deserialize(raw)
	if err != nil {
		return nil, info, fmt.Errorf("not a safetensors file: %v", err)
	}
	_, md, err := safetensors.ReadMetadata(raw)
	if err != nil {
		return nil, info, fmt.Errorf("not a safetensors file: %v", err)
	}
	js, ok := md.Metadata()[metaKey]
	if !ok {
		return nil, info, fmt.Errorf("no %q metadata: not an mnistnet weights file", metaKey)
	}
	if err := json.Unmarshal([]byte(js), &info); err != nil {
		return nil, info, fmt.Errorf("bad %q metadata: %v", metaKey, err)
	}
	if s := info.FeatureScale; math.IsNaN(float64(s)) || math.IsInf(float64(s), 0) || s < 0 {
		return nil, info, fmt.Errorf("feature scale %v: want a finite value >= 0", s)
	}
	n = New()
	n.FeatureScale = info.FeatureScale
	for i, t := range Tensors {
		tv, ok := st.Tensor(t.Name)
		if !ok {
			return nil, info, fmt.Errorf("tensor %s missing", t.Name)
		}
		want := make([]uint64, len(t.Shape))
		for k, s := range t.Shape {
			want[k] = uint64(s)
		}
		if tv.DType() != safetensors.F32 || !slices.Equal(tv.Shape(), want) {
			return nil, info, fmt.Errorf("tensor %s is %s %v, want F32 %v", t.Name, tv.DType(), tv.Shape(), want)
		}
		dst := view(n.Params, i)
		b := tv.Data()
		for k := range dst {
			v := math.Float32frombits(binary.LittleEndian.Uint32(b[4*k:]))
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, info, fmt.Errorf("tensor %s holds a non-finite value at %d", t.Name, k)
			}
			dst[k] = v
		}
	}
	return n, info, nil
}

// ReadFile is Read of the file at path.
func ReadFile(path string) (*Net, Info, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, Info{}, err
	}
	n, info, err := Read(raw)
	if err != nil {
		return nil, info, fmt.Errorf("%s: %w", path, err)
	}
	return n, info, nil
}
