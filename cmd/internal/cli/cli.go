// Package cli is what Phoenix's commands share: exit codes that mean
// something to scripts and CI, the error that carries one
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
// error carries, saying why on stderr.
func Main(name string, root *cobra.Command) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := root.ExecuteContext(ctx)
	stop()
	if err != nil && err.Error() != "" {
		fmt.Fprintln(os.Stderr, name+":", err)
	}
	os.Exit(Code(err))
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
	root.PersistentFlags().StringVarP(&g.Output, "output", "o", "text", "output format: text or json (one JSON object a line)")
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
