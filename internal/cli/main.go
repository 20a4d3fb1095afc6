// Package cli is the fmgpu command line: one file per command, each with
// its flags, an options struct, a function that fills it from the flags
// and names the flag at fault, and runX(ctx, opts, stdout, stderr), which
// calls the packages (sampling and likelihoods through package generate).
// No math lives here.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	ucli "github.com/urfave/cli/v2"
)

// Exit codes (docs/design.md): 0 ok, 1 failure, 2 bad usage, 130
// interrupted after saving.
const (
	ExitOK          = 0
	ExitFailure     = 1
	ExitUsage       = 2
	ExitInterrupted = 130
)

// Version is set at build time with -ldflags "-X ...cli.Version=...".
var Version = "0.1.0-dev"

// usageError marks an error the user fixes by changing the command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef builds a usageError; by convention the message names the flag.
func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// errInterrupted is returned by a command stopped by a signal after it
// saved its work.
var errInterrupted = errors.New("interrupted")

// Main runs the command line and returns the process exit code.
func Main(args []string) int {
	return run(context.Background(), args, os.Stdout, os.Stderr)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	ctx, stop := withSignals(ctx, stderr)
	defer stop()
	app := newApp(stdout, stderr)
	err := app.RunContext(ctx, args)
	if err == nil {
		return ExitOK
	}
	code := ExitFailure
	var ue usageError
	switch {
	case errors.Is(err, errInterrupted):
		code = ExitInterrupted
	case errors.As(err, &ue), isParseError(err):
		code = ExitUsage
	}
	fmt.Fprintf(stderr, "fmgpu: %s\n", oneLine(err.Error()))
	return code
}

// isParseError recognises the errors urfave/cli returns before any action
// runs: unknown flags, bad flag values, missing required flags.
func isParseError(err error) bool {
	s := err.Error()
	for _, p := range []string{"flag provided but not defined", "invalid value", "Required flag", "Required flags", "flag needs an argument", "No help topic", "invalid boolean"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// withSignals cancels ctx on the first SIGINT or SIGTERM, so that a command
// can save and exit with 130; a second one exits at once, leaving the files
// on disk as they were (every write is atomic).
func withSignals(parent context.Context, stderr io.Writer) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-ch:
		case <-done:
			return
		}
		fmt.Fprintln(stderr, "\nfmgpu: interrupted, saving a checkpoint (interrupt again to quit at once)")
		cancel()
		select {
		case <-ch:
			fmt.Fprintln(stderr, "fmgpu: quit without saving")
			os.Exit(ExitInterrupted)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel()
	}
}

func newApp(stdout, stderr io.Writer) *ucli.App {
	onUsage := func(_ *ucli.Context, err error, _ bool) error { return usageError{err} }
	cmds := []*ucli.Command{trainCommand(), sampleCommand(), likelihoodCommand(), pathCommand(), evalCommand(), infoCommand(), benchCommand()}
	for _, c := range cmds {
		c.OnUsageError = onUsage
	}
	return &ucli.App{
		Name:           "fmgpu",
		Usage:          "train, sample and score flow-matching models on NVIDIA GPUs or CPUs",
		Version:        Version,
		Writer:         stdout,
		ErrWriter:      stderr,
		Commands:       cmds,
		OnUsageError:   onUsage,
		ExitErrHandler: func(*ucli.Context, error) {}, // Main prints and exits
		CommandNotFound: func(c *ucli.Context, name string) {
			fmt.Fprintf(stderr, "fmgpu: unknown command %q (see fmgpu --help)\n", name)
			os.Exit(ExitUsage)
		},
	}
}
