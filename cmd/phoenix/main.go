// Command phoenix keeps OpenStack server groups on a fresh boot of their
// patched baseline image. This file only wires flags to the packages that
// do the work.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes mean something to scripts and CI.
const (
	exitOK         = 0
	exitNotDone    = 1 // ran, but the groups did not converge
	exitUsage      = 2 // bad flags or configuration: nothing was done
	exitUnexpected = 3
)

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageError(err error) error { return &exitError{code: exitUsage, err: err} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCommand()
	err := root.ExecuteContext(ctx)
	if err == nil {
		os.Exit(exitOK)
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(os.Stderr, "phoenix:", ee.err)
		}
		os.Exit(ee.code)
	}
	fmt.Fprintln(os.Stderr, "phoenix:", err)
	os.Exit(exitUsage)
}

type globalFlags struct {
	logLevel string
	output   string
}

func newRootCommand() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "phoenix",
		Short: "Keep OpenStack servers a fresh boot of their patched baseline image",
		Long: `Phoenix replaces the servers of a group with fresh boots of the desired image
and spec: surge-first, gated on health checks, never below the capacity you
asked for, and safe to stop and start again at any moment.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "warn", "log level on stderr: debug, info, warn, error")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "text", "output format: text or json (one JSON object a line)")
	root.AddCommand(newRebuildCommand(g), newPlanCommand(g), newDaemonCommand(g), newStatusCommand(g), newEventCommand(g), newResumeCommand(g), newDemoCommand(g), newSimCommand(g))
	return root
}
