package train

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// rejectReasons is why each invalid seed of checkpointSeeds is rejected:
// a part of the one-line error that names the file.
var rejectReasons = map[string]string{
	"empty":            "not a safetensors file: header too small",
	"ff8":              "not a safetensors file: header too large",
	"header_100mb":     "not a safetensors file: header too large",
	"header_1e8":       "not a safetensors file: invalid header length",
	"truncated_7":      "not a safetensors file: header too small",
	"truncated_8":      "not a safetensors file: invalid header length",
	"truncated_header": "truncated: its header is",
	"truncated_data":   "truncated: its tensors need",
	"truncated_half":   "truncated: its header is",
	"trailing":         "not a safetensors file: metadata incomplete buffer",
	"header_len_minus": "not a safetensors file: invalid header deserialization: unexpected end of JSON input",
	"header_len_plus":  "not a safetensors file: invalid header deserialization: invalid character",
	"header_len_huge":  "not a safetensors file: header too large",
	"header_not_json":  "not a safetensors file: invalid header deserialization",
	"header_array":     "not a safetensors file: invalid header deserialization",

	"meta_missing":    "no fmgpu metadata: not written by fmgpu train",
	"meta_not_json":   "bad fmgpu metadata: unexpected end of JSON input",
	"meta_wrong_type": "bad fmgpu metadata: json: cannot unmarshal string",
	"meta_empty":      "layout version 0, this fmgpu reads 1",
	"version_2":       "layout version 2, this fmgpu reads 1",
	"kind_unknown":    `bad configuration: model kind "transformer": want mlp or unet`,
	"bad_lr":          "bad configuration: lr 0: need a finite learning rate > 0",
	"bad_path":        "bad configuration: path ot: sigma-min 1 outside [0, 1)",
	"step_over":       "step 11 outside 0..10",
	"step_negative":   "step -1 outside 0..10",
	"std_zero":        "standardization of dimension 1 is not finite and positive",
	"std_negative":    "standardization of dimension 0 is not finite and positive",
	"std_short":       "standardization for 2/1 dimensions, model has 2",
	"std_missing":     "standardization for 0/0 dimensions, model has 2",
	"huge_model":      "tensor layers.0.weight has shape [4 6], the model wants [65536 6]",
	"wide_model":      "tensor layers.0.weight has shape [4 6], the model wants [65536 6]",
	"other_hidden":    "tensor layers.0.weight has shape [4 6], the model wants [5 6]",

	"dtype_f16":        "tensor layers.0.weight is F16, want F32",
	"dtype_i32":        "tensor ema.layers.1.bias is I32, want F32",
	"shape_transposed": "tensor layers.0.weight has shape [6 4], the model wants [4 6]",
	"shape_flat":       "tensor optim.exp_avg.layers.1.weight has shape [8], the model wants [2 4]",
	"missing_tensor":   "tensor optim.exp_avg_sq.layers.1.weight missing",
	"no_tensors":       "tensor layers.0.weight missing",
	"nan_param":        "tensor layers.0.weight holds a non-finite value at 3",
	"inf_adam_v":       "tensor optim.exp_avg_sq.layers.0.bias holds a non-finite value at 1",
	"neg_inf_ema":      "tensor ema.layers.1.weight holds a non-finite value at 7",
	"neg_adam_v":       "tensor optim.exp_avg_sq.layers.1.weight holds a negative second moment at 2",
}

// Each way a checkpoint can be wrong is rejected with one line that names
// the file and says what is wrong, through Load as through parseCheckpoint.
func TestLoadRejects(t *testing.T) {
	dir := t.TempDir()
	seeds := checkpointSeeds(t)
	for name, want := range rejectReasons {
		b, ok := seeds[name]
		if !ok {
			t.Errorf("rejectReasons names %s, which checkpointSeeds lacks", name)
			continue
		}
		path := filepath.Join(dir, name+".safetensors")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		ck, err := Load(path)
		if ck != nil {
			t.Errorf("%s: loaded", name)
		}
		checkCheckpointErr(t, err, path, want)
	}
	for name, b := range seeds {
		if _, ok := rejectReasons[name]; !ok && !strings.HasPrefix(name, "valid") {
			t.Errorf("seed %s is neither valid nor in rejectReasons", name)
		}
		if strings.HasPrefix(name, "valid") {
			ck, err := parseCheckpoint(name, b)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			checkCheckpoint(t, ck)
		}
	}
}

// The seed checkpoint is what its description says, so that the reasons
// above (shapes, parameter and byte counts) are about the model intended.
func TestTrainedSeedCheckpoint(t *testing.T) {
	ck, err := parseCheckpoint("trained", trainedCheckpoint(t))
	if err != nil {
		t.Fatal(err)
	}
	checkCheckpoint(t, ck)
	if ck.Meta.Step != 3 || ck.Meta.Config.Steps != 10 || len(ck.Params) != 38 {
		t.Errorf("step %d of %d, %d parameters; want 3 of 10, 38", ck.Meta.Step, ck.Meta.Config.Steps, len(ck.Params))
	}
	same := 0
	for i := range ck.Params {
		if ck.Params[i] == ck.EMA[i] {
			same++
		}
		if !(ck.AdamV[i] >= 0) {
			t.Errorf("second moment %d is %v", i, ck.AdamV[i])
		}
	}
	if same == len(ck.Params) {
		t.Error("EMA equals the weights after 3 steps with decay 0.9")
	}
}

// Load checks what it is given before reading it: a directory, a missing
// file, a file larger than any checkpoint (sparse: no disk used), something
// that is not a regular file (reading /dev/zero would never end).
func TestLoadRejectsPaths(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.safetensors")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Truncate(big, maxCheckpointBytes+1); err != nil {
		t.Skipf("no sparse file: %v", err)
	}
	missing := filepath.Join(dir, "missing.safetensors")
	cases := []struct{ path, want string }{
		{dir, "is a directory (want DIR/checkpoint.safetensors)"},
		{missing, "no such file or directory"},
		{big, "8589934593 bytes is larger than any fmgpu checkpoint"},
	}
	if runtime.GOOS == "windows" {
		cases[1].want = "" // the system's wording
	} else {
		cases = append(cases, struct{ path, want string }{"/dev/zero", "not a regular file"})
	}
	for _, c := range cases {
		ck, err := Load(c.path)
		if ck != nil {
			t.Errorf("%s: loaded", c.path)
		}
		checkCheckpointErr(t, err, c.path, c.want)
	}
}
