package main

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// run executes the phoenix-harness command line in-process and returns
// its output and exit code.
func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	code := exitOK
	if err != nil {
		var ee *exitError
		code = exitUsage
		if errors.As(err, &ee) {
			code = ee.code
		}
		out.WriteString("\nERROR: " + err.Error())
	}
	return out.String(), code
}
