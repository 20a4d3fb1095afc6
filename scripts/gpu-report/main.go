// Command gpu-report reads the logs scripts/gpu-run.sh writes into one
// folder and prints the device bundle's verdict on one screen: the steps,
// the kernels (every kernel by name: the conformance tests that ran it and
// their verdict, its largest error against the CPU backend and its rate
// against the device's ceilings), the products that dominate training, the
// per-kernel profile of a training step, fmgpu against the PyTorch peers,
// and the sanitizers. The full per-kernel table goes to kernels-table.txt
// in the same folder.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

func main() {
	dir := flag.String("dir", ".", "the folder gpu-run.sh wrote")
	kernelList := flag.String("kernels", "", "file listing every kernel of the fatbin, one per line")
	elapsed := flag.Int("elapsed", 0, "seconds the run took")
	flag.Parse()
	r := &report{dir: *dir}
	if err := r.load(*kernelList); err != nil {
		fmt.Fprintln(os.Stderr, "gpu-report:", err)
		os.Exit(1)
	}
	full, err := os.Create(filepath.Join(*dir, "kernels-table.txt"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "gpu-report:", err)
		os.Exit(1)
	}
	defer full.Close()
	r.print(os.Stdout, full, *elapsed)
}

// kv extracts key=value fields from a log line.
var kvRe = regexp.MustCompile(`(\w+)=("[^"]*"|\S+)`)

func kv(line string) map[string]string {
	m := map[string]string{}
	for _, f := range kvRe.FindAllStringSubmatch(line, -1) {
		m[f[1]] = strings.Trim(f[2], `"`)
	}
	return m
}

type reportLine struct {
	op, maxerr, timeUS, rate, frac string
	kernels                        []string
}

type kernelInfo struct {
	tests   []string
	fails   int
	maxerr  float64
	errOp   string
	reports []int // indexes into report.reports
}

type step struct {
	name, rc, secs string
}

type report struct {
	dir         string
	header      []string
	steps       []step
	kernels     []string
	byKernel    map[string]*kernelInfo
	reports     []reportLine
	confVerdict map[string]string              // subtest -> PASS/FAIL
	e2e         []string                       // one W2 line a precision
	profile     map[string][]map[string]string // workload -> lines
	profTotal   map[string]map[string]string
	profOrder   []string
	bench       map[string]map[string]map[string]string // workload -> precision -> fields
	benchOrder  []string
	benchPrecs  []string                     // fmgpu's precisions, as run
	peers       map[string]map[string]string // workload -> variant -> value
	variants    []string
	sanitizer   []string
	nccl        []string
}

func (r *report) lines(name string) []string {
	f, err := os.Open(filepath.Join(r.dir, name))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

func (r *report) kernel(name string) *kernelInfo {
	k, ok := r.byKernel[name]
	if !ok {
		k = &kernelInfo{maxerr: -1}
		r.byKernel[name] = k
		r.kernels = append(r.kernels, name)
	}
	return k
}

func (r *report) load(kernelList string) error {
	r.byKernel = map[string]*kernelInfo{}
	r.confVerdict = map[string]string{}
	r.profile = map[string][]map[string]string{}
	r.profTotal = map[string]map[string]string{}
	r.bench = map[string]map[string]map[string]string{}
	r.peers = map[string]map[string]string{}
	r.header = r.lines("header.txt")
	if kernelList != "" {
		b, err := os.ReadFile(kernelList)
		if err != nil {
			return err
		}
		for _, k := range strings.Fields(string(b)) {
			r.kernel(k)
		}
	}
	for _, l := range r.lines("steps.tsv") {
		f := strings.Split(l, "\t")
		if len(f) == 3 {
			r.steps = append(r.steps, step{f[0], f[1], f[2]})
		}
	}
	// conformance: subtest verdicts, then the kernels each launched.
	confRe := regexp.MustCompile(`--- (PASS|FAIL|SKIP): (TestCUDA\S+)`)
	for _, name := range []string{"conformance.log", "conformance-sync.log"} {
		for _, l := range r.lines(name) {
			if m := confRe.FindStringSubmatch(l); m != nil {
				r.confVerdict[m[2]] = m[1]
			}
		}
	}
	for _, l := range r.lines("conformance-kernels.tsv") {
		f := strings.Split(l, "\t")
		if len(f) != 4 {
			continue
		}
		k := r.kernel(f[2])
		test := strings.TrimPrefix(f[0], "TestCUDAConformance/")
		k.tests = append(k.tests, test)
		if v := r.confVerdict[f[0]]; v == "FAIL" || f[1] == "FAIL" {
			k.fails++
		}
	}
	for _, l := range r.lines("report.log") {
		if !strings.HasPrefix(l, "report ") {
			continue
		}
		m := kv(l)
		rl := reportLine{op: m["op"], maxerr: m["maxerr"], timeUS: m["time_us"]}
		if m["tflops"] != "" {
			rl.rate = m["tflops"] + " TFLOP/s"
			if m["peak_frac"] != "" {
				rl.frac = pct(m["peak_frac"]) + " of fp32 peak"
			}
		} else {
			rl.rate = m["gbs"] + " GB/s"
			rl.frac = pct(m["copy_frac"]) + " of copy"
		}
		if m["kernels"] != "" && m["kernels"] != "-" {
			rl.kernels = strings.Split(m["kernels"], ",")
		}
		r.reports = append(r.reports, rl)
		e, _ := strconv.ParseFloat(rl.maxerr, 64)
		for _, kn := range rl.kernels {
			k := r.kernel(kn)
			k.reports = append(k.reports, len(r.reports)-1)
			if e > k.maxerr {
				k.maxerr, k.errOp = e, rl.op
			}
		}
	}
	for _, l := range r.lines("e2e.log") {
		if i := strings.Index(l, "device="); i >= 0 && strings.Contains(l, "w2=") {
			r.e2e = append(r.e2e, strings.TrimSpace(l[i:]))
		}
	}
	for _, l := range r.lines("profile.log") {
		i := strings.Index(l, "profile workload=")
		if i < 0 {
			continue
		}
		m := kv(l[i:])
		w := m["workload"]
		if _, ok := r.profTotal[w]; !ok {
			r.profOrder = append(r.profOrder, w)
			r.profTotal[w] = nil
		}
		if strings.Contains(l, " total ") {
			r.profTotal[w] = m
		} else {
			r.profile[w] = append(r.profile[w], m)
		}
	}
	benches, _ := filepath.Glob(filepath.Join(r.dir, "bench-fmgpu*.log"))
	sort.Strings(benches)
	for _, f := range benches {
		for _, l := range r.lines(filepath.Base(f)) {
			if strings.HasPrefix(l, "workload=") {
				m := kv(l)
				wl, prec := m["workload"], m["precision"]
				if prec == "" {
					prec = "fp32"
				}
				if r.bench[wl] == nil {
					r.bench[wl] = map[string]map[string]string{}
					r.benchOrder = append(r.benchOrder, wl)
				}
				r.bench[wl][prec] = m
				if !contains(r.benchPrecs, prec) {
					r.benchPrecs = append(r.benchPrecs, prec)
				}
			}
		}
	}
	files, _ := filepath.Glob(filepath.Join(r.dir, "torch-*.log"))
	sort.Strings(files)
	for _, f := range files {
		for _, l := range r.lines(filepath.Base(f)) {
			if !strings.HasPrefix(l, "peer=torch") {
				continue
			}
			m := kv(l)
			v := m["precision"]
			if m["compile"] == "1" {
				v += "+compile"
			}
			if !contains(r.variants, v) {
				r.variants = append(r.variants, v)
			}
			w := m["workload"]
			if r.peers[w] == nil {
				r.peers[w] = map[string]string{}
			}
			r.peers[w][v] = m["steps_per_s"] + m["points_per_s"]
		}
	}
	logRe := regexp.MustCompile(`\.go:\d+: (.*)`)
	for _, l := range r.lines("nccl.log") {
		if m := logRe.FindStringSubmatch(l); m != nil {
			r.nccl = append(r.nccl, m[1])
		} else if strings.HasPrefix(l, "no libnccl") || strings.HasPrefix(l, "--- FAIL") {
			r.nccl = append(r.nccl, l)
		}
	}
	for _, name := range []string{"sanitizer-memcheck.log", "sanitizer-racecheck.log", "sanitizer.log"} {
		for _, l := range r.lines(name) {
			if strings.Contains(l, "ERROR SUMMARY") || strings.Contains(l, "RACECHECK SUMMARY") || strings.HasPrefix(l, "compute-sanitizer not") {
				r.sanitizer = append(r.sanitizer, strings.TrimPrefix(name, "sanitizer-")+": "+strings.TrimPrefix(l, "========= "))
			}
		}
	}
	return nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func pct(frac string) string {
	f, err := strconv.ParseFloat(frac, 64)
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%.0f%%", 100*f)
}

func (r *report) print(w, full io.Writer, elapsed int) {
	fmt.Fprintf(w, "fmgpu device bundle: %d s\n", elapsed)
	for _, h := range r.header {
		fmt.Fprintln(w, "  "+h)
	}
	fmt.Fprint(w, "steps:")
	for _, s := range r.steps {
		fmt.Fprintf(w, " %s=%s(%ss)", s.name, verdict(s.rc), s.secs)
	}
	fmt.Fprintln(w)

	// Kernels: one line each in the full table; on screen the counts and
	// every kernel that failed, was never run, or has no rate.
	sort.Strings(r.kernels)
	fmtK := "%-40s %-5s %-44s %-9s %-10s %-16s %s\n"
	fmt.Fprintf(full, fmtK, "kernel", "check", "conformance tests", "max err", "time_us", "rate", "of ceiling (report case)")
	pass, failed, unexercised := 0, []string{}, []string{}
	for _, name := range r.kernels {
		k := r.byKernel[name]
		check := "-"
		switch {
		case len(k.tests) == 0:
			unexercised = append(unexercised, name)
		case k.fails > 0:
			check = "FAIL"
			failed = append(failed, name)
		default:
			check = "PASS"
			pass++
		}
		tests := strings.Join(k.tests, ",")
		if len(tests) > 44 {
			tests = tests[:41] + "..."
		}
		errS := "-"
		if k.maxerr >= 0 {
			errS = fmt.Sprintf("%.1e", k.maxerr)
		}
		if len(k.reports) == 0 {
			fmt.Fprintf(full, fmtK, name, check, tests, errS, "-", "-", "-")
		}
		for _, i := range k.reports {
			rl := r.reports[i]
			fmt.Fprintf(full, fmtK, name, check, tests, errS, rl.timeUS, rl.rate, rl.frac+" ("+rl.op+")")
		}
	}
	fmt.Fprintf(w, "kernels: %d of %d PASS the conformance suite through the driver", pass, len(r.kernels))
	if len(failed) > 0 {
		fmt.Fprintf(w, "; FAIL: %s", strings.Join(failed, " "))
	}
	if len(unexercised) > 0 {
		fmt.Fprintf(w, "; not run by any test: %s", strings.Join(unexercised, " "))
	}
	fmt.Fprintln(w, " (every kernel: kernels-table.txt)")
	worst, worstOp := 0.0, ""
	for _, name := range r.kernels {
		if k := r.byKernel[name]; k.maxerr > worst {
			worst, worstOp = k.maxerr, k.errOp
		}
	}
	fmt.Fprintf(w, "largest error against the CPU backend at GPU sizes: %.2e (%s)\n", worst, worstOp)

	fmt.Fprintln(w, "products and convolutions (fp32):")
	for _, rl := range r.reports {
		if strings.HasPrefix(rl.op, "Gemm") || strings.HasPrefix(rl.op, "Linear") || strings.HasPrefix(rl.op, "Conv2D") {
			fmt.Fprintf(w, "  %-52s %8s us %16s %s\n", rl.op, rl.timeUS, rl.rate, rl.frac)
		}
	}
	fmt.Fprintln(w, "memory-bound ops (fraction of a device-to-device copy):")
	var mem []string
	for _, rl := range r.reports {
		if strings.HasSuffix(rl.frac, "of copy") {
			op := rl.op
			if i := strings.IndexAny(op, "_("); i > 0 {
				op = op[:i]
			}
			mem = append(mem, op+" "+strings.TrimSuffix(rl.frac, " of copy"))
		}
	}
	wrap(w, mem)

	for _, l := range r.e2e {
		fmt.Fprintln(w, "e2e: "+l)
	}
	for _, wl := range r.profOrder {
		t := r.profTotal[wl]
		fmt.Fprintf(w, "step profile %s: %s steps/s, %s kernels, %s of %s us in kernels; top:", wl, t["wall_steps_per_s"],
			t["kernels_per_step"], t["kernel_us_per_step"], t["wall_us_per_step"])
		for i, m := range r.profile[wl] {
			if i == 4 {
				break
			}
			fmt.Fprintf(w, " %s %s", strings.TrimSuffix(m["kernel"], "_kernel"), pct(m["share"]))
		}
		fmt.Fprintln(w)
	}
	if len(r.benchOrder) > 0 || len(r.peers) > 0 {
		sort.SliceStable(r.benchPrecs, func(i, j int) bool { return precRank(r.benchPrecs[i]) < precRank(r.benchPrecs[j]) })
		fmt.Fprintf(w, "%-16s", "bench")
		for _, p := range r.benchPrecs {
			fmt.Fprintf(w, " %-26s", "fmgpu "+p)
		}
		for _, v := range r.variants {
			fmt.Fprintf(w, " %-20s", "torch "+v)
		}
		fmt.Fprintln(w)
		// a peer's ratio is against fmgpu at the same precision (fp32
		// against fmgpu's fp32 and its float32-accurate tf32x3 alike)
		rate := func(m map[string]string) string { return m["steps_per_s"] + m["points_per_s"] }
		workloads := append([]string(nil), r.benchOrder...)
		for wl := range r.peers {
			if !contains(workloads, wl) {
				workloads = append(workloads, wl)
			}
		}
		for _, wl := range workloads {
			fmt.Fprintf(w, "%-16s", wl)
			for _, p := range r.benchPrecs {
				m := r.bench[wl][p]
				if m == nil {
					fmt.Fprintf(w, " %-26s", "-")
					continue
				}
				counts := m["launches_per_step"] + " kernels"
				if g := m["graph_launches_per_step"]; g != "" && g != "0.00" {
					counts += ", " + g + " graphs"
				}
				fmt.Fprintf(w, " %-26s", rate(m)+" ("+counts+")")
			}
			for _, v := range r.variants {
				p := r.peers[wl][v]
				pf, _ := strconv.ParseFloat(p, 64)
				cell := orDash(p)
				prec, _, _ := strings.Cut(v, "+")
				if f, _ := strconv.ParseFloat(rate(r.bench[wl][prec]), 64); pf > 0 && f > 0 {
					cell = fmt.Sprintf("%s (%.2fx)", p, f/pf)
				}
				fmt.Fprintf(w, " %-20s", cell)
			}
			fmt.Fprintln(w)
		}
	}
	for _, s := range r.sanitizer {
		fmt.Fprintln(w, "sanitizer "+s)
	}
	for _, s := range r.nccl {
		fmt.Fprintln(w, "nccl: "+s)
	}
}

// precRank orders fmgpu's precisions as --precision lists them.
func precRank(p string) int {
	for i, q := range []string{"fp32", "tf32x3", "tf32", "bf16"} {
		if p == q {
			return i
		}
	}
	return 99
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func verdict(rc string) string {
	switch rc {
	case "0":
		return "ok"
	case "124", "137":
		return "TIMEOUT"
	case "skipped":
		return "SKIPPED"
	}
	return "FAIL:" + rc
}

// wrap prints items on lines of at most 100 characters.
func wrap(w io.Writer, items []string) {
	line := " "
	for _, it := range items {
		if len(line)+len(it)+2 > 100 {
			fmt.Fprintln(w, line)
			line = " "
		}
		line += " " + it + ","
	}
	if line != " " {
		fmt.Fprintln(w, strings.TrimSuffix(line, ","))
	}
}
