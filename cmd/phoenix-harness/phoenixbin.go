package main

import (
	"context"
	"debug/buildinfo"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/controller"
)

// phoenixPackage is the operator's command, built when no binary is at
// hand. By import path, so that it builds from any directory of the
// module (go test runs in this package's).
const phoenixPackage = "github.com/phoenix-ops/phoenix/cmd/phoenix"

// findPhoenix returns the phoenix binary chaos runs as its daemons: the
// one --phoenix names; else a `phoenix` beside this executable, as the
// two are installed; else one built from this checkout into a temporary
// directory (as under `go run ./cmd/phoenix-harness`), with -tags
// chaosbugs when a bug is to be injected. cleanup removes what it built.
func findPhoenix(ctx context.Context, given string, bugs bool, note io.Writer) (bin string, cleanup func(), err error) {
	cleanup = func() {}
	if given != "" {
		return given, cleanup, nil
	}
	if exe, err := os.Executable(); err == nil {
		beside := filepath.Join(filepath.Dir(exe), "phoenix")
		if st, err := os.Stat(beside); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return beside, cleanup, nil
		}
	}
	dir, err := os.MkdirTemp("", "phoenix-harness-")
	if err != nil {
		return "", cleanup, err
	}
	fmt.Fprintf(note, "phoenix-harness: no --phoenix and no phoenix beside this binary: building %s\n", phoenixPackage)
	bin, err = buildPhoenix(ctx, dir, bugs)
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", cleanup, cli.UsageError(fmt.Errorf("%w\n(give --phoenix PATH, or run from the Phoenix repository)", err))
	}
	return bin, func() { _ = os.RemoveAll(dir) }, nil
}

// buildPhoenix builds the phoenix command into dir, with the injectable
// bugs when bugs is set.
func buildPhoenix(ctx context.Context, dir string, bugs bool) (string, error) {
	bin := filepath.Join(dir, "phoenix")
	args := []string{"build", "-o", bin}
	if bugs {
		args = append(args, "-tags", "chaosbugs")
	}
	args = append(args, phoenixPackage)
	if out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// knownBugs are the policy bugs a chaosbugs build of phoenix injects
// when PHOENIX_CHAOS_BUG names one (controller/chaosbugs*.go).
var knownBugs = []string{controller.BugSurgeIgnored, controller.BugEarlyDelete, controller.BugUntagged, controller.BugRollbackSkipsGate,
	controller.BugSteeringIgnored, controller.BugPromoteEarly}

// checkInjects refuses a bug the phoenix binary cannot inject. Whether it
// can is decided by the chaosbugs build tag, and the Go toolchain records
// a binary's tags in it: the harness reads them there, so the operator's
// binary needs no flag, command or answer of its own for this.
func checkInjects(bin, bug string) error {
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return cli.UsageError(fmt.Errorf("--bug %s: cannot tell whether %s injects bugs: %w", bug, bin, err))
	}
	for _, s := range info.Settings {
		if s.Key == "-tags" && slices.Contains(strings.Split(s.Value, ","), "chaosbugs") {
			return nil
		}
	}
	return cli.UsageError(fmt.Errorf("--bug %s: %s injects no bug (it was built without -tags chaosbugs); build one with "+
		"go build -tags chaosbugs -o /tmp/phoenix-bugs ./cmd/phoenix and pass --phoenix /tmp/phoenix-bugs", bug, bin))
}
