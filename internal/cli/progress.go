package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/fmgpu/fmgpu/train"
)

// progress reports a long computation on stderr: an mpb bar that moves at
// every step when stderr is a terminal the bar can draw on (one with a
// window size), else a plain line at most every plainEvery; a line for
// each slow phase (phase); nothing when quiet.
type progress struct {
	w     io.Writer
	quiet bool
	name  string // "fmgpu train"
	unit  string // "step", "samples", "points"
	total int

	mu       sync.Mutex // the bar's decorators read the fields below
	count    int
	first    int // count at start, for the rate
	start    time.Time
	last     train.Metric // the latest logged metric (training)
	haveLoss bool
	lastLine time.Time
	now      func() time.Time // time.Now; tests fix it so rates are exact

	bar *mpb.Bar
	p   *mpb.Progress
}

const plainEvery = 5 * time.Second

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// canDrawBar reports whether w is a terminal with a width: a
// pseudo-terminal without a window size (some CI runners, `script`, a
// container started without one) is a terminal on which a bar draws
// nothing.
func canDrawBar(w io.Writer) bool {
	if !isTerminal(w) {
		return false
	}
	return terminalWidth(w.(*os.File)) > 0
}

// newProgress starts the report of total units, done of them already.
func newProgress(w io.Writer, quiet bool, name, unit string, done, total int) *progress {
	now := time.Now()
	pr := &progress{w: w, quiet: quiet, name: name, unit: unit, total: total, count: done, first: done, start: now, lastLine: now, now: time.Now}
	if quiet || !canDrawBar(w) {
		return pr
	}
	pr.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(200*time.Millisecond))
	pr.bar = pr.p.AddBar(int64(total),
		mpb.PrependDecorators(decor.Any(func(decor.Statistics) string {
			pr.mu.Lock()
			defer pr.mu.Unlock()
			return fmt.Sprintf("%s %d/%d", pr.unit, pr.count, pr.total)
		}, decor.WCSyncSpace)),
		mpb.AppendDecorators(
			decor.Any(func(decor.Statistics) string {
				pr.mu.Lock()
				defer pr.mu.Unlock()
				return pr.detailLocked()
			}, decor.WCSyncSpace),
			decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO, decor.WCSyncSpace), "done"),
		))
	pr.bar.SetCurrent(int64(done))
	return pr
}

// rate is units per second since the start, or 0.
func (pr *progress) rateLocked() float64 {
	el := pr.now().Sub(pr.start).Seconds()
	if el <= 0 || pr.count <= pr.first {
		return 0
	}
	return float64(pr.count-pr.first) / el
}

// detailLocked is what follows the count: the loss and rate for training,
// the rate otherwise.
func (pr *progress) detailLocked() string {
	rate := formatRate(pr.rateLocked())
	if pr.unit != "step" {
		return rate + " " + pr.unit + "/s"
	}
	loss := "-"
	if pr.haveLoss {
		loss = fmt.Sprintf("%.4f", pr.last.Loss)
	}
	return fmt.Sprintf("loss %s  %s steps/s", loss, rate)
}

// status is the report in one line, as the plain lines show it.
func (pr *progress) status() string {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	s := fmt.Sprintf("%s %d/%d", pr.unit, pr.count, pr.total)
	if pr.unit == "step" && pr.haveLoss {
		m := pr.last
		return fmt.Sprintf("%s loss %.4f grad_norm %.3f lr %.2e %s steps/s", s, m.Loss, m.GradNorm, m.LR, formatRate(pr.rateLocked()))
	}
	return s + " " + pr.detailLocked()
}

// formatRate writes a rate without exponents: 1234, 57.3, 0.412.
func formatRate(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

// step moves the report to count units done; it is cheap enough for
// every training step.
func (pr *progress) step(count int) {
	if pr.quiet {
		return
	}
	pr.mu.Lock()
	pr.count = count
	pr.mu.Unlock()
	if pr.bar != nil {
		pr.bar.SetCurrent(int64(count))
		return
	}
	pr.plainLine(false)
}

// log records a training metric (the loss the report shows); the plain
// report writes a line at the last step.
func (pr *progress) log(m train.Metric) {
	if pr.quiet {
		return
	}
	pr.mu.Lock()
	pr.last, pr.haveLoss, pr.count = m, true, m.Step
	pr.mu.Unlock()
	if pr.bar != nil {
		pr.bar.SetCurrent(int64(m.Step))
		return
	}
	pr.plainLine(m.Step == pr.total)
}

// plainLine writes the status when plainEvery has passed since the last
// line, or when forced.
func (pr *progress) plainLine(force bool) {
	if pr.now().Sub(pr.lastLine) < plainEvery && !force {
		return
	}
	pr.lastLine = pr.now()
	fmt.Fprintf(pr.w, "%s: %s\n", pr.name, pr.status())
}

// warn writes a warning on a line of its own (above the bar), also when
// quiet.
func (pr *progress) warn(format string, a ...any) {
	line := fmt.Sprintf("%s: warning: %s\n", pr.name, fmt.Sprintf(format, a...))
	if pr.p != nil {
		if _, err := pr.p.Write([]byte(line)); err == nil {
			return
		}
	}
	fmt.Fprint(pr.w, line)
}

// phase announces a slow phase on a line of its own (above the bar).
func (pr *progress) phase(format string, a ...any) {
	if pr.quiet {
		return
	}
	line := fmt.Sprintf("%s: %s\n", pr.name, fmt.Sprintf(format, a...))
	if pr.p != nil {
		if _, err := pr.p.Write([]byte(line)); err == nil {
			return
		}
	}
	fmt.Fprint(pr.w, line)
}

// finish ends the report: the bar completes (ok) or stops where it is.
func (pr *progress) finish(ok bool) {
	if pr.bar == nil {
		return
	}
	if !ok {
		pr.bar.Abort(false)
	} else {
		pr.bar.SetCurrent(int64(pr.total))
	}
	pr.p.Wait()
	pr.bar, pr.p = nil, nil
}
