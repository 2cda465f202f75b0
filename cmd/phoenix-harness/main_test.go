package main

import (
	"context"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
)

// run executes the phoenix-harness command line in-process and returns
// its output and exit code.
func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	return cli.Run(ctx, newRootCommand(), args...)
}
