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
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"

	"github.com/fmgpu/fmgpu/internal/atomicfile"
	ucli "github.com/urfave/cli/v2"
)

// Exit codes (docs/design.md): 0 ok, 1 failure, 2 bad usage, 130
// interrupted by SIGINT or SIGTERM (after saving what can be saved).
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

// ExitCode is the status of a command that fails with e; an MPI job
// aborted for it ends with the same (collective's Abort).
func (e usageError) ExitCode() int { return ExitUsage }

// usagef builds a usageError; by convention the message names the flag.
func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// errInterrupted is matched (errors.Is) by every error of a command stopped
// by a signal.
var errInterrupted = errors.New("interrupted")

// interruptedError is a command stopped by a signal; what says what it did
// ("nothing written", "saved DIR/checkpoint.safetensors at step N").
type interruptedError struct{ what string }

func (e interruptedError) Error() string        { return "interrupted; " + e.what }
func (e interruptedError) Is(target error) bool { return target == errInterrupted }

func interrupted(format string, a ...any) error {
	return interruptedError{fmt.Sprintf(format, a...)}
}

// Main runs the command line and returns the process exit code.
func Main(args []string) int {
	return run(context.Background(), args, os.Stdout, os.Stderr)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	ctx, stop := withSignals(ctx, stderr)
	defer stop()
	defer recoverPanic(stderr, &code)
	app := newApp(stdout, stderr)
	err := app.RunContext(ctx, args)
	if err == nil {
		return ExitOK
	}
	code = ExitFailure
	var ue usageError
	switch {
	case errors.Is(err, errInterrupted):
		code = ExitInterrupted
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		// a command that wrote nothing before it stopped
		code, err = ExitInterrupted, interrupted("nothing written")
	case errors.As(err, &ue), isParseError(err):
		code = ExitUsage
	}
	fmt.Fprintf(stderr, "fmgpu: %s\n", oneLine(err.Error()))
	return code
}

// recoverPanic, deferred, turns a panic of the command into exit code 1
// with the stack: unrecovered, a panic exits with 2, the code of a usage
// error, which scripts would read as their own mistake.
func recoverPanic(stderr io.Writer, code *int) {
	if r := recover(); r != nil {
		fmt.Fprintf(stderr, "fmgpu: internal error (a bug; please report it with this output): %v\n%s", r, debug.Stack())
		*code = ExitFailure
	}
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

// singleDashFlag is a flag name as Go's flag package spells it in its
// errors ("-steps"), where README and every --help spell "--steps".
var singleDashFlag = regexp.MustCompile(`(^|[\s:])-([A-Za-z][\w-]+)`)

// twoDashes spells the flags of a flag-parsing error as the user types
// them.
func twoDashes(s string) string { return singleDashFlag.ReplaceAllString(s, "$1--$2") }

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// interruptNote is what a command does when a signal arrives, shown at
// once; a command sets it with onInterrupt as it enters each phase.
type interruptNote struct {
	mu   sync.Mutex
	what string
}

type noteKey struct{}

// onInterrupt sets what the first SIGINT or SIGTERM will be answered with
// ("saving a checkpoint"); the default is "stopping; nothing will be
// written".
func onInterrupt(ctx context.Context, what string) {
	if n, ok := ctx.Value(noteKey{}).(*interruptNote); ok {
		n.mu.Lock()
		n.what = what
		n.mu.Unlock()
	}
}

// enterPhase is onInterrupt, then ctx.Err(): a signal that came before it
// was answered with the earlier phase's note, and the command keeps that
// promise by returning the error (a run interrupted as it started said
// "nothing will be written", then trained a step and wrote a checkpoint).
// withSignals reads the note and cancels ctx under the note's lock, so
// the two cannot interleave.
func enterPhase(ctx context.Context, what string) error {
	onInterrupt(ctx, what)
	return ctx.Err()
}

// withSignals cancels ctx on the first SIGINT or SIGTERM, so that a command
// stops between steps, saves what it saves and exits with 130; a second
// one exits at once, leaving the files on disk as they were (every write
// is atomic).
func withSignals(parent context.Context, stderr io.Writer) (context.Context, func()) {
	note := &interruptNote{what: "stopping; nothing will be written"}
	ctx, cancel := context.WithCancel(context.WithValue(parent, noteKey{}, note))
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-ch:
		case <-done:
			return
		}
		note.mu.Lock()
		what := note.what
		cancel()
		note.mu.Unlock()
		fmt.Fprintf(stderr, "\nfmgpu: interrupted; %s (interrupt again to quit at once)\n", what)
		select {
		case <-ch:
			// a checkpoint being written keeps its old contents, and its
			// temporary file goes
			atomicfile.RemovePending()
			fmt.Fprintln(stderr, "fmgpu: quit at once; the files on disk are as they were")
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

func init() {
	// urfave/cli writes one-letter flags as -n; fmgpu's help, like its
	// README, spells every flag with two dashes (both are accepted).
	orig := ucli.FlagStringer
	ucli.FlagStringer = func(f ucli.Flag) string {
		s := orig(f)
		if names := f.Names(); len(names) > 0 && len(names[0]) == 1 && names[0] != "h" && strings.HasPrefix(s, "-"+names[0]) {
			s = "-" + s
		}
		return s
	}
}

// requireFlags is the check of required flags: one line naming the first
// missing one, where urfave/cli would print the whole help before it.
func requireFlags(c *ucli.Context, names ...string) error {
	for _, n := range names {
		if !c.IsSet(n) {
			return usagef("--%s is required (see fmgpu %s --help)", n, c.Command.Name)
		}
	}
	return nil
}

// noArgs refuses positional arguments, which no command takes: a flag
// value with a space in it, or a flag missing its dashes, would otherwise
// be ignored.
func noArgs(c *ucli.Context) error {
	if c.Args().Present() {
		return usagef("unexpected argument %q: fmgpu %s takes only flags (see fmgpu %s --help)", c.Args().First(), c.Command.Name, c.Command.Name)
	}
	return nil
}

func newApp(stdout, stderr io.Writer) *ucli.App {
	onUsage := func(_ *ucli.Context, err error, _ bool) error { return usageError{errors.New(twoDashes(err.Error()))} }
	cmds := []*ucli.Command{trainCommand(), sampleCommand(), likelihoodCommand(), pathCommand(), evalCommand(), infoCommand(), benchCommand(), reflowCommand(), distillCommand()}
	for _, c := range cmds {
		c.OnUsageError = onUsage
		c.Before = noArgs
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
