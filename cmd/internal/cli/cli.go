// Package cli is what Phoenix's commands share: exit codes that mean
// something to scripts and CI (a signal's too), the error that carries one
// through cobra, the log a command writes on stderr (console or JSON, for
// a log shipper), and the check of --output. Both binaries (phoenix and
// phoenix-harness) use it; neither is importable.
package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	// Maintenance windows name time zones: the binaries carry the zone
	// database, so a host without zoneinfo reads them alike.
	_ "time/tzdata"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
)

// Exit codes.
const (
	ExitOK         = 0
	ExitNotDone    = 1 // ran, but did not get there (not converged, a failure found)
	ExitUsage      = 2 // bad flags or configuration: nothing was done
	ExitUnexpected = 3
	// A run stopped by a signal ends as a shell reports one: 128 + the
	// signal's number.
	ExitInterrupted = 130 // SIGINT
	ExitTerminated  = 143 // SIGTERM, when the run did not finish cleanly
)

// ExitError carries an exit code through cobra.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return ""
	}
	return e.Err.Error()
}
func (e *ExitError) Unwrap() error { return e.Err }

// UsageError is a refusal before anything was done: exit 2.
func UsageError(err error) error { return &ExitError{Code: ExitUsage, Err: err} }

// NotDone is a run that did not get there: exit 1.
func NotDone(err error) error { return &ExitError{Code: ExitNotDone, Err: err} }

// Code is the exit code err carries: ExitOK for none, ExitUsage for an
// error that carries no code (cobra's own: a bad flag).
func Code(err error) int {
	var ee *ExitError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return ee.Code
	}
	return ExitUsage
}

// Main runs root until SIGINT or SIGTERM and exits with the code its
// error carries, saying why on stderr. A signal decides the code instead:
// see SignalCode.
func Main(name string, root *cobra.Command) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		if s, ok := <-sigs; ok {
			cancel(&stopped{s})
		}
	}()
	err := root.ExecuteContext(ctx)
	signal.Stop(sigs)
	if err != nil && err.Error() != "" {
		fmt.Fprintln(os.Stderr, name+":", err)
	}
	var sig os.Signal
	var st *stopped
	if errors.As(context.Cause(ctx), &st) {
		sig = st.sig
	}
	os.Exit(SignalCode(err, sig))
}

// stopped is the cause of a run's context cancelled by a signal.
type stopped struct{ sig os.Signal }

func (s *stopped) Error() string { return "stopped by " + s.sig.String() }

// SignalCode is the exit code of a run that ended with err after sig (nil
// when no signal came). SIGINT is 130 whatever happened after it: a person
// interrupted the run, and scripts tell that from a failure. SIGTERM is 0
// when the command stopped cleanly (the daemon's stop: a service manager
// asked for it) and 143 when it cut a run short (an interrupted rebuild).
func SignalCode(err error, sig os.Signal) int {
	switch {
	case sig == os.Interrupt:
		return ExitInterrupted
	case sig == syscall.SIGTERM && err != nil:
		return ExitTerminated
	}
	return Code(err)
}

// Run executes root with args in this process, as a user would run the
// binary, and returns what it wrote (the error last) and its exit code.
func Run(ctx context.Context, root *cobra.Command, args ...string) (string, int) {
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil {
		out.WriteString("\nERROR: " + err.Error())
	}
	return out.String(), Code(err)
}

// RunSplit is Run with stdout and stderr kept apart, the error last on
// stderr: for tests of what a tool reading stdout gets.
func RunSplit(ctx context.Context, root *cobra.Command, args ...string) (stdout, stderr string, code int) {
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil {
		errOut.WriteString("\nERROR: " + err.Error())
	}
	return out.String(), errOut.String(), Code(err)
}

// Globals are the flags every command of a binary takes.
type Globals struct {
	LogLevel  string
	LogFormat LogFormat
	Output    string
}

// Register adds the global flags to root.
func (g *Globals) Register(root *cobra.Command) {
	root.PersistentFlags().StringVar(&g.LogLevel, "log-level", "warn", "log level on stderr: debug, info, warn, error")
	g.LogFormat = LogConsole
	root.PersistentFlags().Var(&g.LogFormat, "log-format", "log format on stderr: console (for people) or json (one object a line, for a log shipper)")
	root.PersistentFlags().StringVarP(&g.Output, "output", "o", "text", "output format: text, or json (one JSON document on stdout; anything for people goes to stderr)")
}

// Logger is the command's log on stderr, as --log-level and --log-format
// ask.
func (g *Globals) Logger() (*zap.Logger, error) { return NewLoggerFormat(g.LogLevel, g.LogFormat) }

// NewLogger is a command's log on stderr at level, in the console format.
func NewLogger(level string) (*zap.Logger, error) { return NewLoggerFormat(level, LogConsole) }

// CheckOutput refuses an --output other than text or json.
func CheckOutput(output string) error {
	if output != "text" && output != "json" {
		return UsageError(fmt.Errorf("--output must be text or json, not %q", output))
	}
	return nil
}
