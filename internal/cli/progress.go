package cli

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/fmgpu/fmgpu/train"
)

// progress shows training progress: an mpb bar (step, loss, steps/s, ETA)
// when stderr is a terminal, otherwise a plain line every few seconds.
type progress struct {
	w        io.Writer
	quiet    bool
	total    int
	bar      *mpb.Bar
	p        *mpb.Progress
	last     train.Metric
	lastLine time.Time
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

func newProgress(w io.Writer, quiet bool, done, total int) *progress {
	pr := &progress{w: w, quiet: quiet, total: total, lastLine: time.Now()}
	if quiet || !isTerminal(w) {
		return pr
	}
	pr.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(200*time.Millisecond))
	pr.bar = pr.p.AddBar(int64(total),
		mpb.PrependDecorators(decor.CountersNoUnit("step %d/%d", decor.WCSyncSpace)),
		mpb.AppendDecorators(
			decor.Any(func(decor.Statistics) string {
				return fmt.Sprintf("loss %.4f  %.3g steps/s", pr.last.Loss, pr.last.StepsPerS)
			}, decor.WCSyncSpace),
			decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO, decor.WCSyncSpace), "done"),
		))
	pr.bar.SetCurrent(int64(done))
	return pr
}

func (pr *progress) update(m train.Metric) {
	pr.last = m
	if pr.quiet {
		return
	}
	if pr.bar != nil {
		pr.bar.SetCurrent(int64(m.Step))
		return
	}
	if time.Since(pr.lastLine) >= plainEvery || m.Step == pr.total {
		pr.lastLine = time.Now()
		fmt.Fprintf(pr.w, "step %d/%d loss %.4f grad_norm %.3f lr %.2e %.3g steps/s\n",
			m.Step, pr.total, m.Loss, m.GradNorm, m.LR, m.StepsPerS)
	}
}

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
}
