package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// plan --detailed-exitcode answers as terraform plan's does: 0 nothing to
// do, 2 changes pending, 1 any error (a refused configuration too, which
// is 2 without the flag).
func TestPlanDetailedExitCode(t *testing.T) {
	env, cfg := fleet(t)
	cases := []struct {
		name   string
		before func()
		args   []string
		want   int
	}{
		{"converged", func() {}, []string{"plan", "--config", cfg, "--detailed-exitcode"}, cli.ExitOK},
		{"converged, json", func() {}, []string{"plan", "--config", cfg, "--detailed-exitcode", "-o", "json"}, cli.ExitOK},
		{"a new image", func() { env.Sim.AddImage(sim.Image{Name: "gold"}) }, []string{"plan", "--config", cfg, "--detailed-exitcode"}, 2},
		{"a new image, json", func() {}, []string{"plan", "--config", cfg, "--detailed-exitcode", "-o", "json"}, 2},
		{"a new image, without the flag", func() {}, []string{"plan", "--config", cfg}, cli.ExitOK},
		{"no such file", func() {}, []string{"plan", "--config", filepath.Join(t.TempDir(), "nope.yaml"), "--detailed-exitcode"}, cli.ExitNotDone},
		{"no such file, without the flag", func() {}, []string{"plan", "--config", filepath.Join(t.TempDir(), "nope.yaml")}, cli.ExitUsage},
		{"no cloud", func() { t.Setenv("OS_CLIENT_CONFIG_FILE", filepath.Join(t.TempDir(), "none.yaml")) }, []string{"plan", "--config", cfg, "--detailed-exitcode"}, cli.ExitNotDone},
	}
	for _, tc := range cases {
		tc.before()
		out, code := run(t, tc.args...)
		if code != tc.want {
			t.Errorf("%s: %s: exit %d, want %d\n%s", tc.name, strings.Join(tc.args, " "), code, tc.want, out)
		}
	}
}

// userKeys are the keys whose values are maps keyed by user or cloud
// data, not by Phoenix: server metadata ("phoenix:group"), image
// properties, network names, the cloud's event types.
var userKeys = map[string]bool{"metadata": true, "properties": true, "addresses": true, "handled": true}

var snakeKey = regexp.MustCompile(`^[a-z0-9_]+$`)

// checkKeys reports every key of v (decoded JSON) that is not snake_case.
func checkKeys(t *testing.T, verb, path string, v any) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			if !snakeKey.MatchString(k) {
				t.Errorf("%s -o json: key %q at %s is not snake_case", verb, k, path)
			}
			if !userKeys[k] {
				checkKeys(t, verb, path+"."+k, child)
			}
		}
	case []any:
		for i, child := range v {
			checkKeys(t, verb, fmt.Sprintf("%s[%d]", path, i), child)
		}
	}
}

// Every verb that prints answers -o json with one JSON document on stdout
// whose keys are snake_case; what is for people goes to stderr.
func TestEveryVerbPrintsOneSnakeCaseJSONDocument(t *testing.T) {
	env, cfg := fleet(t)
	env.Sim.AddImage(sim.Image{Name: "gold"})
	server := env.Sim.Servers()[0].ID
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	verbs := [][]string{
		{"plan", "--config", cfg},
		{"plan", "--config", cfg, "--rollback"},
		{"rebuild", "--config", cfg, "--all", "--poll", "50ms"},
		{"rebuild", "--config", cfg, "--all", "--force", "--reason", "CVE-2026-1", "--poll", "50ms"},
		{"hold", "--config", cfg, "--group", "web", "--reason", "freeze"},
		{"release", "--config", cfg, "--group", "web"},
		{"protect", "--config", cfg, "--server", "", "--reason", "licence dongle"},
		{"unprotect", "--config", cfg, "--server", ""},
		{"rollback", "--config", cfg, "--group", "web"},
		{"resume", "--config", cfg, "--group", "web"},
		{"config", "check", "--config", cfg},
		{"config", "check", "--config", cfg, "--cloud"},
		{"version"},
	}
	check := func(args []string) {
		t.Helper()
		stdout, stderr, code := cli.RunSplit(ctx, newRootCommand(), append(args, "-o", "json")...)
		verb := strings.Join(args, " ")
		if code != cli.ExitOK {
			t.Fatalf("%s -o json: exit %d\n%s\n%s", verb, code, stdout, stderr)
		}
		if !json.Valid([]byte(stdout)) {
			t.Fatalf("%s -o json: stdout is not one JSON document:\n%s", verb, stdout)
		}
		var v any
		_ = json.Unmarshal([]byte(stdout), &v)
		if _, ok := v.(map[string]any); !ok {
			t.Errorf("%s -o json: stdout is not a JSON object:\n%s", verb, stdout)
		}
		checkKeys(t, verb, "$", v)
	}
	for _, args := range verbs {
		if args[0] == "protect" || args[0] == "unprotect" {
			// The servers of the forced rebuild before.
			server = env.Sim.Servers()[0].ID
			args[4] = server
		}
		check(args)
	}

	// status and event send talk to a running daemon.
	secretFile := filepath.Join(t.TempDir(), "webhook.key")
	if err := os.WriteFile(secretFile, []byte("output-test-secret-long-enough-for-phoenix"), 0o600); err != nil {
		t.Fatal(err)
	}
	dcfg := filepath.Join(t.TempDir(), "daemon.yaml")
	if err := os.WriteFile(dcfg, []byte(daemonConfig(secretFile, "", daemonGroupYAML("web", 10))), 0o600); err != nil {
		t.Fatal(err)
	}
	url := startDaemonInProcess(t, ctx, dcfg)
	waitFor(t, 30*time.Second, "the daemon's first reconcile", func() bool {
		stdout, _, code := cli.RunSplit(ctx, newRootCommand(), "status", "--url", url, "-o", "json")
		return code == cli.ExitOK && strings.Contains(stdout, `"last_reconcile"`) && !strings.Contains(stdout, "not reconciled yet")
	})
	check([]string{"status", "--url", url})
	check([]string{"event", "send", "--url", url, "--secret-file", secretFile, "--type", "image.published"})

	if !testing.Short() {
		check([]string{"demo"})
	}
}

// startDaemonInProcess runs `phoenix daemon --config cfg` in this
// process until the test ends, and returns where it serves.
func startDaemonInProcess(t *testing.T, ctx context.Context, cfg string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	root := newRootCommand()
	pr, pw := io.Pipe()
	root.SetOut(pw)
	root.SetErr(io.Discard)
	root.SetArgs([]string{"daemon", "--config", cfg, "--poll", "50ms"})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = root.ExecuteContext(ctx)
		_ = pw.Close()
	}()
	t.Cleanup(func() { cancel(); <-done })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case url := <-found:
		return url
	case <-done:
		t.Fatal("the daemon ended at start")
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon never said where it serves")
	}
	return ""
}
