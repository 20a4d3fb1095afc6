package train

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/nlpodyssey/safetensors"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
)

var updateCorpus = flag.Bool("update", false, "rewrite the seed corpus in testdata/fuzz")

// fuzzAllocLimit bounds what parsing an input of n bytes may allocate: the
// four float32 copies of the tensors are at most the file's size, the JSON
// decoders a small multiple of the header; anything beyond means a size
// taken from the input was trusted.
func fuzzAllocLimit(n int) uint64 { return 256*uint64(n) + 1<<20 }

// FuzzParseCheckpoint: no input panics (not even one the recover in
// parseCheckpoint would catch), none allocates much more than its own size,
// every error is one line naming the file, and a success is a checkpoint of
// the model its metadata describes, with finite values, that survives being
// written again and read back bit for bit.
//
// go test ./train -run XXX -fuzz FuzzParseCheckpoint -fuzztime 120s
// -fuzzminimizetime 500x: the seeds are checkpoints of about 2.7 KB, and
// minimizing each new input for the default 60 s stalls the run. Go 1.26's
// coordinator can end a run limited by time with a spurious "context
// deadline exceeded" and no failing input (go.dev/issue/75804); a count
// (-fuzztime 1000000x) avoids it.
func FuzzParseCheckpoint(f *testing.F) {
	for _, b := range checkpointSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		ck, err := parseCheckpoint("fuzz.safetensors", b)
		runtime.ReadMemStats(&after)
		if got := after.TotalAlloc - before.TotalAlloc; got > fuzzAllocLimit(len(b)) {
			t.Errorf("parsing %d bytes allocated %d bytes (limit %d)", len(b), got, fuzzAllocLimit(len(b)))
		}
		if err != nil {
			checkCheckpointErr(t, err, "fuzz.safetensors", "")
			return
		}
		checkCheckpoint(t, ck)
		again, err := serializeCheckpoint(ck)
		if err != nil {
			t.Fatalf("rewrite: %v", err)
		}
		back, err := parseCheckpoint("back.safetensors", again)
		if err != nil {
			t.Fatalf("rewritten checkpoint: %v", err)
		}
		if !reflect.DeepEqual(back.Meta, ck.Meta) || !reflect.DeepEqual(back.Tensors, ck.Tensors) {
			t.Fatalf("rewrite changed the metadata:\n%+v\n%+v", ck.Meta, back.Meta)
		}
		for name, pair := range map[string][2][]float32{"params": {ck.Params, back.Params}, "ema": {ck.EMA, back.EMA}, "m": {ck.AdamM, back.AdamM}, "v": {ck.AdamV, back.AdamV}} {
			for i := range pair[0] {
				if math.Float32bits(pair[0][i]) != math.Float32bits(pair[1][i]) {
					t.Fatalf("rewrite changed %s[%d]: %v to %v", name, i, pair[0][i], pair[1][i])
				}
			}
		}
	})
}

// checkCheckpointErr: err is one line, "checkpoint NAME: reason", with the
// reason containing want, and is not a panic the recover caught.
func checkCheckpointErr(t testing.TB, err error, name, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\n\r") {
		t.Errorf("error is not one line: %q", msg)
	}
	prefix := "checkpoint " + name + ": "
	if !strings.HasPrefix(msg, prefix) || len(msg) == len(prefix) {
		t.Errorf("error %q does not start with %q and a reason", msg, prefix)
	}
	if !strings.Contains(msg, want) {
		t.Errorf("error %q does not contain %q", msg, want)
	}
	if strings.Contains(msg, "unreadable safetensors file (") {
		t.Errorf("parsing panicked (recovered): %q", msg)
	}
}

// checkCheckpoint: a parsed checkpoint is consistent with its own metadata.
func checkCheckpoint(t testing.TB, ck *Checkpoint) {
	t.Helper()
	m := ck.Meta
	if m.Version != CheckpointVersion {
		t.Errorf("version %d accepted", m.Version)
	}
	if err := m.Config.Validate(); err != nil {
		t.Errorf("invalid configuration accepted: %v", err)
	}
	if m.Step < 0 || m.Step > m.Config.Steps {
		t.Errorf("step %d of %d accepted", m.Step, m.Config.Steps)
	}
	if err := m.Standardization.Validate(); err != nil || m.Standardization.Dim() != m.Config.Model.Dim {
		t.Errorf("standardization for %d dimensions (%v) accepted for a model of %d", m.Standardization.Dim(), err, m.Config.Model.Dim)
	}
	tensors, n, err := model.TensorLayout(m.Config.Model)
	if err != nil {
		t.Fatalf("layout of an accepted model: %v", err)
	}
	if !reflect.DeepEqual(tensors, ck.Tensors) {
		t.Errorf("tensors %v, the model's layout is %v", ck.Tensors, tensors)
	}
	for name, x := range map[string][]float32{"params": ck.Params, "ema": ck.EMA, "m": ck.AdamM, "v": ck.AdamV} {
		if len(x) != n {
			t.Fatalf("%s has %d values, the model %d", name, len(x), n)
		}
		for i, v := range x {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%s[%d] = %v accepted", name, i, v)
			}
		}
	}
}

// serializeCheckpoint writes ck as Save would, from host memory.
func serializeCheckpoint(ck *Checkpoint) ([]byte, error) {
	js, err := json.Marshal(ck.Meta)
	if err != nil {
		return nil, err
	}
	views := map[string]f32View{}
	for prefix, x := range map[string][]float32{"": ck.Params, prefixEMA: ck.EMA, prefixM: ck.AdamM, prefixV: ck.AdamV} {
		for _, t := range ck.Tensors {
			views[prefix+t.Name] = f32View{shape: shape64(t.Shape), data: f32Bytes(x[t.Offset : t.Offset+t.Size()])}
		}
	}
	return safetensors.Serialize(views, map[string]string{"format": "pt", "fmgpu": string(js)})
}

// rawView is a tensor of any dtype, for checkpoints Save would never write.
type rawView struct {
	dtype safetensors.DType
	shape []uint64
	data  []byte
}

func (v rawView) DType() safetensors.DType { return v.dtype }
func (v rawView) Shape() []uint64          { return v.shape }
func (v rawView) Data() []byte             { return v.data }
func (v rawView) DataLen() uint64          { return uint64(len(v.data)) }

// ckParts is a checkpoint taken apart, to be changed and put back together.
type ckParts struct {
	meta    Meta
	tensors map[string]rawView
	fmgpu   *string // replaces the marshalled meta when set
	noMeta  bool    // leave the fmgpu key out
}

// partsOf takes a valid checkpoint apart into fresh copies of everything.
func partsOf(tb testing.TB, raw []byte) *ckParts {
	tb.Helper()
	sf, err := safetensors.Deserialize(raw)
	if err != nil {
		tb.Fatal(err)
	}
	_, md, err := safetensors.ReadMetadata(raw)
	if err != nil {
		tb.Fatal(err)
	}
	p := &ckParts{tensors: map[string]rawView{}}
	if err := json.Unmarshal([]byte(md.Metadata()["fmgpu"]), &p.meta); err != nil {
		tb.Fatal(err)
	}
	for _, nt := range sf.Tensors() {
		tv := nt.TensorView
		p.tensors[nt.Name] = rawView{tv.DType(), slices.Clone(tv.Shape()), bytes.Clone(tv.Data())}
	}
	return p
}

func (p *ckParts) build(tb testing.TB) []byte {
	tb.Helper()
	md := map[string]string{"format": "pt"}
	if !p.noMeta {
		js, err := json.Marshal(p.meta)
		if err != nil {
			tb.Fatal(err)
		}
		md["fmgpu"] = string(js)
		if p.fmgpu != nil {
			md["fmgpu"] = *p.fmgpu
		}
	}
	b, err := safetensors.Serialize(p.tensors, md)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// setF32 overwrites element i of a F32 tensor.
func (p *ckParts) setF32(name string, i int, v float32) {
	binary.LittleEndian.PutUint32(p.tensors[name].data[4*i:], math.Float32bits(v))
}

var trained struct {
	sync.Mutex
	b []byte
}

// trainedCheckpoint is a real checkpoint of a tiny model (2-D, one hidden
// layer of 4, 2 time frequencies: 38 parameters) after 3 of 10 steps.
func trainedCheckpoint(tb testing.TB) []byte {
	tb.Helper()
	trained.Lock()
	defer trained.Unlock()
	if trained.b != nil {
		return trained.b
	}
	ds, err := data.Builtin("moons", 64, 1)
	if err != nil {
		tb.Fatal(err)
	}
	std := data.Fit(ds)
	std.Apply(ds.X)
	cfg := Config{
		Model: model.Config{Kind: "mlp", Dim: 2, Hidden: []int{4}, TimeEmbed: gpu.TimeEmbedding{Freqs: 2, Scale: 1000, MaxPeriod: 10000}},
		Path:  flow.DefaultSpec(flow.KindOT), Time: flow.DefaultTimeSampler(flow.TimeUniform),
		Steps: 10, Batch: 16, Seed: 7, LR: 1e-2, Warmup: 2, EMADecay: 0.9, MaxGradNorm: 1,
	}
	cfg.Defaults()
	b := gpu.NewCPU(1)
	defer b.Close()
	tr, err := New(b, cfg, ds.X, ds.N)
	if err != nil {
		tb.Fatal(err)
	}
	defer tr.Close()
	for range 3 {
		tr.Step()
	}
	path := filepath.Join(tb.TempDir(), CheckpointName)
	if err := tr.Save(path, std, DataInfo{Source: "moons", Rows: ds.N, Dim: 2}); err != nil {
		tb.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	trained.b = raw
	return raw
}

// checkpointSeeds is the seed corpus of FuzzParseCheckpoint: a real
// checkpoint, and each way of being wrong (rejectReasons says why each
// is rejected). Seeds named valid* parse.
func checkpointSeeds(tb testing.TB) map[string][]byte {
	good := trainedCheckpoint(tb)
	hlen := binary.LittleEndian.Uint64(good)
	withLen := func(n uint64) []byte {
		b := bytes.Clone(good)
		binary.LittleEndian.PutUint64(b, n)
		return b
	}
	header := func(n uint64, rest string) []byte {
		return append(binary.LittleEndian.AppendUint64(nil, n), rest...)
	}
	edit := func(change func(p *ckParts)) []byte {
		p := partsOf(tb, good)
		change(p)
		return p.build(tb)
	}
	str := func(s string) *string { return &s }
	return map[string][]byte{
		"valid_trained": good,
		"valid_rebuilt": edit(func(p *ckParts) {}),
		"valid_step0":   edit(func(p *ckParts) { p.meta.Step = 0 }),
		"valid_last":    edit(func(p *ckParts) { p.meta.Step = p.meta.Config.Steps }),

		"empty":            nil,
		"ff8":              bytes.Repeat([]byte{0xff}, 8),
		"header_100mb":     header(100<<20, "{}"),
		"header_1e8":       header(100_000_000, `{"__metadata__":{"fmgpu":"`),
		"truncated_7":      good[:7],
		"truncated_8":      good[:8],
		"truncated_header": good[:8+hlen/2],
		"truncated_data":   good[:len(good)-4],
		"truncated_half":   good[:len(good)/2],
		"trailing":         append(bytes.Clone(good), 0, 0, 0, 0),
		"header_len_minus": withLen(hlen - 9),
		"header_len_plus":  withLen(hlen + 4),
		"header_len_huge":  withLen(1 << 62),
		"header_not_json":  header(8, "fmgpu!!!"),
		"header_array":     header(8, "[1,2,3]"+" "),

		"meta_missing":    edit(func(p *ckParts) { p.noMeta = true }),
		"meta_not_json":   edit(func(p *ckParts) { p.fmgpu = str(`{"version": 1, "config": {`) }),
		"meta_wrong_type": edit(func(p *ckParts) { p.fmgpu = str(`{"version": "1"}`) }),
		"meta_empty":      edit(func(p *ckParts) { p.fmgpu = str(`{}`) }),
		"version_2":       edit(func(p *ckParts) { p.meta.Version = 2 }),
		"kind_unknown":    edit(func(p *ckParts) { p.meta.Config.Model.Kind = "transformer" }),
		"bad_lr":          edit(func(p *ckParts) { p.meta.Config.LR = 0 }),
		"bad_path":        edit(func(p *ckParts) { p.meta.Config.Path.SigmaMin = 1 }),
		"step_over":       edit(func(p *ckParts) { p.meta.Step = p.meta.Config.Steps + 1 }),
		"step_negative":   edit(func(p *ckParts) { p.meta.Step = -1 }),
		"std_zero":        edit(func(p *ckParts) { p.meta.Standardization.Std[1] = 0 }),
		"std_negative":    edit(func(p *ckParts) { p.meta.Standardization.Std[0] = -1 }),
		"std_short":       edit(func(p *ckParts) { p.meta.Standardization.Std = p.meta.Standardization.Std[:1] }),
		"std_missing":     edit(func(p *ckParts) { p.meta.Standardization = data.Standardization{} }),
		"huge_model": edit(func(p *ckParts) {
			p.meta.Config.Model.Hidden = slices.Repeat([]int{65536}, 64)
		}),
		"wide_model":   edit(func(p *ckParts) { p.meta.Config.Model.Hidden = []int{65536} }),
		"other_hidden": edit(func(p *ckParts) { p.meta.Config.Model.Hidden = []int{5} }),

		"dtype_f16": edit(func(p *ckParts) {
			v := p.tensors["layers.0.weight"]
			p.tensors["layers.0.weight"] = rawView{safetensors.F16, v.shape, v.data[:len(v.data)/2]}
		}),
		"dtype_i32": edit(func(p *ckParts) {
			v := p.tensors["ema.layers.1.bias"]
			p.tensors["ema.layers.1.bias"] = rawView{safetensors.I32, v.shape, v.data}
		}),
		"shape_transposed": edit(func(p *ckParts) {
			v := p.tensors["layers.0.weight"]
			p.tensors["layers.0.weight"] = rawView{v.dtype, []uint64{v.shape[1], v.shape[0]}, v.data}
		}),
		"shape_flat": edit(func(p *ckParts) {
			v := p.tensors["optim.exp_avg.layers.1.weight"]
			p.tensors["optim.exp_avg.layers.1.weight"] = rawView{v.dtype, []uint64{v.shape[0] * v.shape[1]}, v.data}
		}),
		"missing_tensor": edit(func(p *ckParts) { delete(p.tensors, "optim.exp_avg_sq.layers.1.weight") }),
		"no_tensors":     edit(func(p *ckParts) { clear(p.tensors) }),
		"nan_param":      edit(func(p *ckParts) { p.setF32("layers.0.weight", 3, float32(math.NaN())) }),
		"inf_adam_v":     edit(func(p *ckParts) { p.setF32("optim.exp_avg_sq.layers.0.bias", 1, float32(math.Inf(1))) }),
		"neg_inf_ema":    edit(func(p *ckParts) { p.setF32("ema.layers.1.weight", 7, float32(math.Inf(-1))) }),
		"neg_adam_v":     edit(func(p *ckParts) { p.setF32("optim.exp_avg_sq.layers.1.weight", 2, -1e-6) }),
	}
}

// corpusFile is a seed in the format of go test's fuzzing corpus.
func corpusFile(b []byte) string {
	return "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
}

// TestFuzzCorpusUpToDate keeps testdata/fuzz/FuzzParseCheckpoint in step
// with checkpointSeeds: every seed is there and decodes to an input that
// does what its name says (valid* parse, the rest fail for their reason in
// rejectReasons). The bytes are not compared, since the trained weights
// follow the trainer's arithmetic; go test ./train -run FuzzCorpus -update
// rewrites the files.
func TestFuzzCorpusUpToDate(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzParseCheckpoint")
	for name, b := range checkpointSeeds(t) {
		path := filepath.Join(dir, name)
		if *updateCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(corpusFile(b)), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%v (run go test ./train -run FuzzCorpus -update)", err)
			continue
		}
		body, ok := strings.CutPrefix(string(got), "go test fuzz v1\n[]byte(")
		body, ok2 := strings.CutSuffix(body, ")\n")
		s, err := strconv.Unquote(body)
		if !ok || !ok2 || err != nil {
			t.Errorf("%s is not a corpus file of one []byte: %v", path, err)
			continue
		}
		_, err = parseCheckpoint(name, []byte(s))
		if strings.HasPrefix(name, "valid") {
			if err != nil {
				t.Errorf("%s is stale: %v (run go test ./train -run FuzzCorpus -update)", path, err)
			}
			continue
		}
		if want, ok := rejectReasons[name]; !ok {
			t.Errorf("seed %s has no entry in rejectReasons", name)
		} else if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s is stale: error %v, want %q (run go test ./train -run FuzzCorpus -update)", path, err, want)
		}
	}
}

// A checkpoint that describes a model larger than its tensors can hold is
// rejected before the four parameter-sized slices are made: 64 layers of
// 65536 would be 2^38 floats each.
func TestParseCheckpointHostileSizeDoesNotAllocate(t *testing.T) {
	seeds := checkpointSeeds(t)
	for _, name := range []string{"huge_model", "wide_model", "header_100mb", "header_1e8", "header_len_huge"} {
		b := seeds[name]
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := parseCheckpoint(name, b)
		runtime.ReadMemStats(&after)
		checkCheckpointErr(t, err, name, rejectReasons[name])
		if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(1<<20); got > limit {
			t.Errorf("%s: parsing %d bytes allocated %d bytes, want < %d", name, len(b), got, limit)
		}
	}
}
