package train

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"strings"

	"github.com/nlpodyssey/safetensors"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/atomicfile"
	"github.com/fmgpu/fmgpu/model"
)

// CheckpointVersion is the layout version written into the metadata.
const CheckpointVersion = 1

// Tensor name prefixes in a checkpoint. The weights themselves carry the
// model's own names (layers.0.weight...), so `safetensors.torch.load_file`
// followed by load_state_dict on an equivalent torch module just works.
const (
	prefixEMA = "ema."
	prefixM   = "optim.exp_avg."
	prefixV   = "optim.exp_avg_sq."
)

// Meta is the JSON stored under the "fmgpu" metadata key: everything
// needed to rebuild the model and continue or use the run.
type Meta struct {
	Version         int                  `json:"version"`
	Config          Config               `json:"config"`
	Step            int                  `json:"step"`
	Standardization data.Standardization `json:"standardization"`
	Data            DataInfo             `json:"data"`
	// RNG is the state of the counter-based generator: draws of step s use
	// Philox stream s of Seed, so (seed, step) is the whole state.
	RNG RNGState `json:"rng"`
	// Parallel records the engine and the ranks of a data-parallel run
	// (absent for a single process). A checkpoint resumes on any number
	// of ranks: it holds the whole state.
	Parallel *ParallelInfo `json:"parallel,omitempty"`
	// Schedule is how often the run that wrote the checkpoint read its
	// loss and saved, so that a resumed run keeps the same rhythm; nil for
	// a trainer saved outside Run, and in checkpoints written before it
	// was recorded.
	Schedule *ScheduleInfo `json:"schedule,omitempty"`
	// LossCarry is the loss a run read out when it stopped between two of
	// its lines (StopAt, a signal): the resumed run adds it back, so that
	// its next line averages the same steps, to the bit, as the run that
	// did not stop (a data-parallel run: to the rounding of another sum
	// order). Nil when the run stopped on a line of its own.
	LossCarry *LossCarry `json:"loss_carry,omitempty"`
}

// LossCarry is a loss summed over the batch and the dimensions, and over
// Steps steps (on every rank), as the trainer accumulates it, read at step
// Step.
type LossCarry struct {
	Sum   float32 `json:"sum"`
	Steps int     `json:"steps"`
	Step  int     `json:"step"`
}

// ScheduleInfo is Run's LogEvery and CheckpointEvery.
type ScheduleInfo struct {
	LogEvery        int `json:"log_every"`
	CheckpointEvery int `json:"checkpoint_every"`
}

// ParallelInfo is how a data-parallel run was spread.
type ParallelInfo struct {
	Engine    string `json:"engine"` // collective.Engine: mpi or nccl
	WorldSize int    `json:"world_size"`
}

// SourceGo is DataInfo.Source for rows a Go program gave the library
// (fmgpu.Rows, a Source of its own) without naming them.
const SourceGo = "go"

// DataInfo records where the training data came from.
type DataInfo struct {
	Source string `json:"source"`
	Rows   int    `json:"rows"`
	Dim    int    `json:"dim"`
	// Classes names the labels of a class-conditional model's data.
	Classes []string `json:"classes,omitempty"`
	// SHA256 is data.Checksum of the training data as loaded (before
	// standardization), so that a resumed run can tell the same data from
	// other data of the same shape; empty in checkpoints written before it
	// was recorded.
	SHA256 string `json:"sha256,omitempty"`
	// CSV is how a .csv source was read, so that a resumed run reads it
	// alike (a header of numbers needs Header); nil for other sources and
	// in checkpoints written before it was recorded.
	CSV *CSVInfo `json:"csv,omitempty"`
	// AbsPath is the source's absolute path when it was given relative (a
	// file or an image folder), so that a run resumed from another working
	// directory finds it.
	AbsPath string `json:"abs_path,omitempty"`
	// DataDir is the absolute --data-dir that held mnist's or cifar10's
	// files, when one was given.
	DataDir string `json:"data_dir,omitempty"`
}

// CSVInfo is how a .csv training file was read: its field separator and
// whether its first line is a header whatever it holds.
type CSVInfo struct {
	Delimiter string `json:"delimiter"`
	Header    bool   `json:"header,omitempty"`
}

// RNGState is the generator's state as stored in a checkpoint.
type RNGState struct {
	Generator string `json:"generator"`
	Seed      uint64 `json:"seed"`
	Stream    uint64 `json:"stream"`
}

// f32View adapts a float32 slice to safetensors.View.
type f32View struct {
	shape []uint64
	data  []byte
}

func (v f32View) DType() safetensors.DType { return safetensors.F32 }
func (v f32View) Shape() []uint64          { return v.shape }
func (v f32View) Data() []byte             { return v.data }
func (v f32View) DataLen() uint64          { return uint64(len(v.data)) }

func f32Bytes(x []float32) []byte {
	out := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
	}
	return out
}

func shape64(s []int) []uint64 {
	out := make([]uint64, len(s))
	for i, v := range s {
		out[i] = uint64(v)
	}
	return out
}

// Save writes the run's state atomically to path.
func (tr *Trainer) Save(path string, std data.Standardization, info DataInfo) error {
	meta := Meta{
		Version: CheckpointVersion, Config: tr.cfg, Step: tr.step,
		Standardization: std, Data: info,
		RNG:      RNGState{Generator: "philox4x32-10", Seed: tr.cfg.Seed, Stream: uint64(tr.step)},
		Schedule: tr.schedule,
	}
	if c := tr.carry; c != nil && c.Step == tr.step {
		meta.LossCarry = c // not after steps whose loss it lacks
	}
	if c := tr.Comm(); c != nil {
		meta.Parallel = &ParallelInfo{Engine: string(c.Engine()), WorldSize: c.Size()}
	}
	bufs := map[string]gpu.Buffer{"": tr.net.Params(), prefixEMA: tr.emaParams(), prefixM: tr.m, prefixV: tr.v}
	return writeCheckpoint(path, tr.b, tr.net.Tensors(), bufs, meta)
}

func writeCheckpoint(path string, b gpu.Backend, tensors []model.Tensor, bufs map[string]gpu.Buffer, meta Meta) error {
	js, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("checkpoint metadata: %w", err)
	}
	views := map[string]f32View{}
	for prefix, buf := range bufs {
		host := make([]float32, buf.Len())
		b.Download(host, buf)
		for _, t := range tensors {
			views[prefix+t.Name] = f32View{shape: shape64(t.Shape), data: f32Bytes(host[t.Offset : t.Offset+t.Size()])}
		}
	}
	if err := b.Sync(); err != nil {
		return err
	}
	return atomicfile.Write(path, func(w io.Writer) error {
		return safetensors.SerializeToWriter(views, map[string]string{"format": "pt", "fmgpu": string(js)}, w)
	})
}

// Checkpoint is a checkpoint read back into host memory.
type Checkpoint struct {
	Path    string
	Meta    Meta
	Params  []float32 // flat, in the model's tensor order
	EMA     []float32
	AdamM   []float32
	AdamV   []float32
	Tensors []model.Tensor
}

// maxCheckpointBytes bounds what Load reads into memory; fmgpu's MLPs are
// far smaller, and a larger file is more likely a wrong path.
const maxCheckpointBytes = 8 << 30

// Load reads and validates a checkpoint: its size before reading, the
// metadata, every tensor's presence, dtype and shape against the model the
// metadata describes.
func Load(path string) (*Checkpoint, error) {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("checkpoint %s: %s", path, fmt.Sprintf(format, a...))
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, unwrapPathErr(err))
	}
	if st.IsDir() {
		return nil, fail("is a directory (want DIR/checkpoint.safetensors)")
	}
	if !st.Mode().IsRegular() { // a device or pipe has no size to check
		return nil, fail("not a regular file")
	}
	if st.Size() > maxCheckpointBytes {
		return nil, fail("%d bytes is larger than any fmgpu checkpoint", st.Size())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, unwrapPathErr(err))
	}
	return parseCheckpoint(path, raw)
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

func parseCheckpoint(path string, raw []byte) (ck *Checkpoint, err error) {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("checkpoint %s: %s", path, fmt.Sprintf(format, a...))
	}
	defer func() { // the library validates, but a checkpoint must never crash fmgpu
		if r := recover(); r != nil {
			ck, err = nil, fail("unreadable safetensors file (%v)", r)
		}
	}()
	sf, err := safetensors.Deserialize(raw)
	if err == nil {
		_, _, err = safetensors.ReadMetadata(raw)
	}
	if err != nil {
		if cut := truncation(raw); cut != "" {
			return nil, fail("%s", cut)
		}
		return nil, fail("not a safetensors file: %v", err)
	}
	_, md, _ := safetensors.ReadMetadata(raw)
	js, ok := md.Metadata()["fmgpu"]
	if !ok {
		return nil, fail("no fmgpu metadata: not written by fmgpu train")
	}
	var meta Meta
	if err := json.Unmarshal([]byte(js), &meta); err != nil {
		return nil, fail("bad fmgpu metadata: %v", err)
	}
	if meta.Version != CheckpointVersion {
		return nil, fail("layout version %d, this fmgpu reads %d", meta.Version, CheckpointVersion)
	}
	if err := meta.Config.Validate(); err != nil {
		return nil, fail("bad configuration: %v", err)
	}
	if meta.Step < 0 || meta.Step > meta.Config.Steps {
		return nil, fail("step %d outside 0..%d", meta.Step, meta.Config.Steps)
	}
	d := meta.Config.Model.Dim
	if len(meta.Standardization.Mean) != d || len(meta.Standardization.Std) != d {
		return nil, fail("standardization for %d/%d dimensions, model has %d", len(meta.Standardization.Mean), len(meta.Standardization.Std), d)
	}
	for j, s := range meta.Standardization.Std {
		if !(s > 0) || math.IsInf(s, 0) || math.IsNaN(meta.Standardization.Mean[j]) || math.IsInf(meta.Standardization.Mean[j], 0) {
			return nil, fail("standardization of dimension %d is not finite and positive", j)
		}
	}
	tensors, n, err := model.TensorLayout(meta.Config.Model)
	if err != nil {
		return nil, fail("%v", err)
	}
	// The sizes come from the metadata, and hostile JSON can describe a
	// model of 2^38 floats: check every tensor against the model before
	// allocating, so that the file's tensors (whose offsets the library
	// checked against its length) bound what is made below.
	for _, prefix := range []string{"", prefixEMA, prefixM, prefixV} {
		for _, t := range tensors {
			tv, ok := sf.Tensor(prefix + t.Name)
			if !ok {
				return nil, fail("tensor %s missing", prefix+t.Name)
			}
			if tv.DType() != safetensors.F32 {
				return nil, fail("tensor %s is %s, want F32", prefix+t.Name, tv.DType())
			}
			if !equalShape(tv.Shape(), t.Shape) {
				return nil, fail("tensor %s has shape %v, the model wants %v", prefix+t.Name, tv.Shape(), t.Shape)
			}
		}
	}
	ck = &Checkpoint{Path: path, Meta: meta, Tensors: tensors}
	read := func(prefix string) ([]float32, error) {
		out := make([]float32, n)
		for _, t := range tensors {
			tv, _ := sf.Tensor(prefix + t.Name)
			raw := tv.Data()
			dst := out[t.Offset : t.Offset+t.Size()]
			for i := range dst {
				v := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					return nil, fail("tensor %s holds a non-finite value at %d", prefix+t.Name, i)
				}
				dst[i] = v
			}
		}
		return out, nil
	}
	if ck.Params, err = read(""); err != nil {
		return nil, err
	}
	if ck.EMA, err = read(prefixEMA); err != nil {
		return nil, err
	}
	if ck.AdamM, err = read(prefixM); err != nil {
		return nil, err
	}
	if ck.AdamV, err = read(prefixV); err != nil {
		return nil, err
	}
	// Second moments are averages of squares: a negative one (a corrupted
	// or hand-edited file) would make the next update's square root NaN,
	// which training would blame on the learning rate.
	for _, t := range tensors {
		for i, v := range ck.AdamV[t.Offset : t.Offset+t.Size()] {
			if v < 0 {
				return nil, fail("tensor %s holds a negative second moment at %d", prefixV+t.Name, i)
			}
		}
	}
	return ck, nil
}

func equalShape(a []uint64, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != uint64(b[i]) {
			return false
		}
	}
	return true
}

// Resume loads ck's weights, EMA, moments and step into tr, which must
// have been built with a configuration whose model, path and data shape
// match the checkpoint's.
func (tr *Trainer) Resume(ck *Checkpoint) error {
	if err := compatible(tr.cfg, ck.Meta.Config); err != nil {
		return fmt.Errorf("resume from %s: %w", ck.Path, err)
	}
	b := tr.b
	b.Upload(tr.net.Params(), ck.Params)
	if ck.Meta.Config.EMADecay == 0 {
		// A run without an EMA (whose checkpoints before 2026-12-07 hold
		// the initial weights as theirs) starts one from its weights
		// when resumed with --ema above 0.
		b.Upload(tr.ema, ck.Params)
	} else {
		b.Upload(tr.ema, ck.EMA)
	}
	b.Upload(tr.m, ck.AdamM)
	b.Upload(tr.v, ck.AdamV)
	b.Fill(tr.lossSum, 0)
	b.Fill(tr.status, 0)
	tr.step = ck.Meta.Step
	tr.sinceRead, tr.carry = 0, nil
	if c := ck.Meta.LossCarry; c != nil && c.Steps > 0 {
		c.Step = ck.Meta.Step
		tr.carry = c // Run adds it back, once the ranks are known
	}
	return b.Sync()
}

// compatible reports the first setting in which a run's configuration
// contradicts its checkpoint's state: the network (whose weights the
// checkpoint holds), the path, the time sampling, the seed and the batch
// (which fix every later batch). The step count and the optimizer's
// hyperparameters may change.
func compatible(run, ck Config) error {
	a, _ := json.Marshal(run.Model)
	b, _ := json.Marshal(ck.Model)
	if string(a) != string(b) {
		return fmt.Errorf("the network differs (checkpoint %s, run %s)", b, a)
	}
	if run.Path != ck.Path {
		return fmt.Errorf("the path differs (checkpoint %s, run %s)", ck.Path, run.Path)
	}
	if run.Time != ck.Time {
		return fmt.Errorf("the time sampling differs (checkpoint %+v, run %+v)", ck.Time, run.Time)
	}
	if run.Seed != ck.Seed || run.Batch != ck.Batch {
		return fmt.Errorf("the seed or batch differs (checkpoint %d/%d, run %d/%d)", ck.Seed, ck.Batch, run.Seed, run.Batch)
	}
	return sameCoupling(run, ck)
}

// Change is a setting whose value differs between two configurations: a
// checkpoint's and the run that resumes it.
type Change struct {
	// Setting is the Config field's JSON name ("lr", "steps", "model").
	Setting string
	// Was and Now are the two values as JSON.
	Was, Now json.RawMessage
}

// Diff lists the top-level settings of Config in which now differs from
// was, in the order of Config's fields.
func Diff(was, now Config) []Change {
	a, b := configFields(was), configFields(now)
	var out []Change
	for _, k := range configFieldOrder() {
		if string(a[k]) != string(b[k]) {
			out = append(out, Change{Setting: k, Was: a[k], Now: b[k]})
		}
	}
	return out
}

func configFields(c Config) map[string]json.RawMessage {
	js, _ := json.Marshal(c)
	m := map[string]json.RawMessage{}
	_ = json.Unmarshal(js, &m)
	return m
}

// configFieldOrder is Config's JSON names in field order.
func configFieldOrder() []string {
	t := reflect.TypeFor[Config]()
	names := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		names = append(names, name)
	}
	return names
}

// truncation describes a safetensors file cut short (a copy or a write
// that did not finish): its header, or the tensors its header lists, reach
// past the end of the file. "" when the file is not one cut short.
func truncation(raw []byte) string {
	if len(raw) < 9 {
		return ""
	}
	n := binary.LittleEndian.Uint64(raw)
	rest := uint64(len(raw) - 8)
	if n > 1<<24 || n == 0 || raw[8] != '{' {
		return "" // no header fmgpu writes (theirs are a few KiB)
	}
	if n > rest {
		return fmt.Sprintf("truncated: its header is %d bytes, the file holds %d after the header's length (a copy or a write cut short)", n, rest)
	}
	var hdr map[string]json.RawMessage
	if json.Unmarshal(raw[8:8+n], &hdr) != nil {
		return ""
	}
	var end uint64
	for name, v := range hdr {
		var t struct {
			Offsets []uint64 `json:"data_offsets"`
		}
		if name == "__metadata__" || json.Unmarshal(v, &t) != nil || len(t.Offsets) != 2 {
			continue
		}
		end = max(end, t.Offsets[1])
	}
	if have := rest - n; end > have {
		return fmt.Sprintf("truncated: its tensors need %d bytes, the file holds %d (a copy or a write cut short)", end, have)
	}
	return ""
}
