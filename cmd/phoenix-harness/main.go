// Command phoenix-harness holds the test harnesses that measure and break
// Phoenix: chaos drives real `phoenix daemon` processes through faults
// and kills; soak and bench run the controller in this process against
// the simulator. None of it belongs in the operator's binary.
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

// Exit codes, as phoenix's: scripts and CI read them.
const (
	exitOK      = 0
	exitNotDone = 1 // ran, and found a failure
	exitUsage   = 2 // bad flags: nothing was run
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
	err := newRootCommand().ExecuteContext(ctx)
	if err == nil {
		os.Exit(exitOK)
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(os.Stderr, "phoenix-harness:", ee.err)
		}
		os.Exit(ee.code)
	}
	fmt.Fprintln(os.Stderr, "phoenix-harness:", err)
	os.Exit(exitUsage)
}

type globalFlags struct {
	logLevel string
	output   string
}

func newRootCommand() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "phoenix-harness",
		Short: "Break and measure Phoenix: chaos, soak, bench",
		Long: `phoenix-harness tests Phoenix the hard way: random cloud faults and SIGKILLs
of real phoenix daemons (chaos), many rollouts watched for leaks (soak), and
measurements against their bounds (bench). It is for developers and CI; an
operator needs only phoenix.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "warn", "log level on stderr: debug, info, warn, error")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "text", "output format: text or json (one JSON object a line)")
	root.AddCommand(newChaosCommand(g), newSoakCommand(g), newBenchCommand(g))
	return root
}
