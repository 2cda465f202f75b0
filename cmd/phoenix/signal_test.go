package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// The built binary, as an operator runs it: the exit code after a signal,
// and the JSON log.
func TestBinarySignalsAndJSONLog(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildPhoenix(t)
	// Servers that take an hour to boot: a rebuild runs until stopped.
	env := simtest.Start(t, sim.Options{BootTime: sim.Fixed(time.Hour)}, 0)
	env.Sim.AddImage(sim.Image{Name: "gold"})
	cfg := filepath.Join(t.TempDir(), "phoenix.yaml")
	if err := os.WriteFile(cfg, []byte(fleetConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	command := func(args ...string) (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "OS_CLIENT_CONFIG_FILE="+env.CloudsFile, "OS_CLOUD=")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		return cmd, &stderr
	}
	exitCode := func(err error) int {
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		if ee != nil {
			return ee.ExitCode()
		}
		return 0
	}

	for _, tc := range []struct {
		sig  syscall.Signal
		want int
	}{{syscall.SIGINT, cli.ExitInterrupted}, {syscall.SIGTERM, cli.ExitTerminated}} {
		t.Run("rebuild "+tc.sig.String(), func(t *testing.T) {
			cmd, stderr := command("rebuild", "--config", cfg, "--all", "--poll", "50ms")
			startUntil(t, cmd, "rollout ")
			_ = cmd.Process.Signal(tc.sig)
			if got := exitCode(cmd.Wait()); got != tc.want {
				t.Errorf("exit %d after %v, want %d\n%s", got, tc.sig, tc.want, stderr)
			}
		})
	}

	t.Run("sim SIGTERM is a clean stop", func(t *testing.T) {
		cmd, stderr := command("sim", "--clouds-out", filepath.Join(t.TempDir(), "clouds.yaml"))
		startUntil(t, cmd, "Interrupt (Ctrl-C) to stop")
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if got := exitCode(cmd.Wait()); got != cli.ExitOK {
			t.Errorf("exit %d after SIGTERM, want 0\n%s", got, stderr)
		}
	})

	t.Run("log-format json", func(t *testing.T) {
		cmd, stderr := command("plan", "--config", cfg, "--log-level", "debug", "--log-format", "json")
		if err := cmd.Run(); err != nil {
			t.Fatalf("%v\n%s", err, stderr)
		}
		unit := regexp.MustCompile(`^[0-9.]+(ns|µs|ms|s|m|h)`)
		durations := 0
		for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("a log line is not JSON: %v\n%s", err, line)
			}
			if took, ok := m["took"]; ok {
				durations++
				if s, ok := took.(string); !ok || !unit.MatchString(s) {
					t.Errorf("took = %#v, want a duration with its unit", took)
				}
			}
			for k, v := range m {
				if v == "" {
					t.Errorf("an empty field %s: %s", k, line)
				}
			}
		}
		if durations == 0 {
			t.Errorf("no cloud request logged with its duration:\n%s", stderr)
		}
	})
}

// startUntil starts cmd and returns once it printed a line holding want
// on stdout (the rest of stdout is drained).
func startUntil(t *testing.T, cmd *exec.Cmd, want string) {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	seen := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		found := false
		for sc.Scan() {
			if !found && strings.Contains(sc.Text(), want) {
				found = true
				close(seen)
			}
		}
	}()
	select {
	case <-seen:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s never printed %q", cmd.Path, want)
	}
}
