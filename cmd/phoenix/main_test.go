package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// run executes the phoenix command line in-process, as a user would, and
// returns its output and exit code.
func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	return cli.Run(ctx, newRootCommand(), args...)
}

const fleetConfig = `cloud: phoenix-sim
groups:
  - name: web
    count: 10
    image: {name: gold, newest: true}
    flavor: m1.small
    networks: [private]
    rollout: {max_surge: 2, min_ready: 30ms}
    health:
      http: {port: 8080, path: /healthz}
      interval: 30ms
      timeout: 30ms
      healthy_threshold: 2
`

// fleet starts a simulator, points the OpenStack variables at it, writes
// the config and builds the fleet with `phoenix rebuild`.
func fleet(t *testing.T) (*simtest.Env, string) {
	t.Helper()
	env := simtest.Start(t, sim.Options{BootTime: sim.Fixed(30 * time.Millisecond), HealthDelay: sim.Fixed(10 * time.Millisecond)}, 0)
	t.Setenv("OS_CLIENT_CONFIG_FILE", env.CloudsFile)
	t.Setenv("OS_CLOUD", "")
	cfg := filepath.Join(t.TempDir(), "phoenix.yaml")
	if err := os.WriteFile(cfg, []byte(fleetConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	if out, code := run(t, "rebuild", "--config", cfg, "--all", "--poll", "50ms"); code != cli.ExitOK {
		t.Fatalf("building the fleet: exit %d\n%s", code, out)
	}
	return env, cfg
}

func TestRebuildWithFullQuotaDeletesNothingAndFails(t *testing.T) {
	env, cfg := fleet(t)
	env.Sim.SetQuota(sim.Quota{Instances: 10})
	env.Sim.AddImage(sim.Image{Name: "gold"})
	env.Sim.ResetRequests()

	out, code := run(t, "rebuild", "--config", cfg, "--group", "web", "--timeout", "3s", "--poll", "50ms")
	if code != cli.ExitNotDone {
		t.Fatalf("exit %d, want %d\n%s", code, cli.ExitNotDone, out)
	}
	for _, want := range []string{
		"Quota exceeded for instances: Requested 1, but already used 10 of 10 instances",
		"quota-blocked  group web waits for quota: the cloud refuses new servers (Quota exceeded for instances",
		"WAITING: quota — Quota exceeded for instances: Requested 1, but already used 10 of 10 instances",
		"Group web: 0 of 10 servers are current and serving; 10 old servers remain and keep serving",
		"deleted 0 servers",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	creates := 0
	for _, r := range env.Sim.Requests() {
		switch {
		case r.Method == "DELETE" || strings.HasSuffix(r.Path, "/metadata"):
			t.Errorf("a full quota led to %s %s", r.Method, r.Path)
		case r.Method == "POST" && strings.HasSuffix(r.Path, "/servers"):
			creates++
		}
	}
	if creates == 0 || creates > 4 {
		t.Errorf("%d create attempts in 3s: want the refusal seen and then backed off, not hammered", creates)
	}
	if n := len(env.Sim.Servers()); n != 10 {
		t.Errorf("%d servers after the failed rebuild, want the 10 old ones", n)
	}
}

func TestPlanListsDriftAndChangesNothing(t *testing.T) {
	env, cfg := fleet(t)
	patched := env.Sim.AddImage(sim.Image{Name: "gold"})
	env.Sim.ResetRequests()

	out, code := run(t, "plan", "--config", cfg)
	if code != cli.ExitOK {
		t.Fatalf("exit %d\n%s", code, out)
	}
	servers := env.Sim.Servers()
	for _, s := range servers {
		line := ""
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, s.Name) {
				line = l
			}
		}
		if !strings.Contains(line, s.ID) || !strings.Contains(line, "is not the desired "+patched.ID) {
			t.Errorf("server %s: plan line %q does not name it and the image drift", s.Name, line)
		}
	}
	if !strings.Contains(out, "10 to replace, 0 to keep, 0 to create") {
		t.Errorf("plan summary missing:\n%s", out)
	}
	for _, r := range env.Sim.Requests() {
		if r.Method != "GET" && !strings.HasSuffix(r.Path, "/auth/tokens") {
			t.Errorf("plan sent %s %s: it must only read", r.Method, r.Path)
		}
	}

	jsonOut, code := run(t, "plan", "--config", cfg, "--output", "json")
	if code != cli.ExitOK {
		t.Fatalf("plan --output json: exit %d\n%s", code, jsonOut)
	}
	if gp := onlyGroupPlan(t, jsonOut); gp.Replace != 10 || len(gp.Servers) != 10 {
		t.Fatalf("plan --output json: %+v\n%s", gp, jsonOut)
	}
}

// onlyGroupPlan is the one group of plan -o json's document.
func onlyGroupPlan(t *testing.T, out string) groupPlan {
	t.Helper()
	var doc planDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Groups) != 1 {
		t.Fatalf("plan -o json: %v, %d groups, want one\n%s", err, len(doc.Groups), out)
	}
	return doc.Groups[0]
}

// rebuild -o json prints one document at the end, the progress for
// people on stderr.
func TestRebuildJSONDocument(t *testing.T) {
	env, cfg := fleet(t)
	env.Sim.AddImage(sim.Image{Name: "gold"})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	stdout, stderr, code := cli.RunSplit(ctx, newRootCommand(), "rebuild", "--config", cfg, "--all", "--output", "json", "--poll", "50ms")
	if code != cli.ExitOK {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	var doc rebuildDoc
	dec := json.NewDecoder(strings.NewReader(stdout))
	if err := dec.Decode(&doc); err != nil || dec.More() {
		t.Fatalf("stdout is not one JSON document (%v):\n%s", err, stdout)
	}
	if doc.Rollout == "" || !doc.Converged || len(doc.Results) != 1 || !doc.Results[0].Converged || len(doc.Results[0].Replacements) != 10 {
		t.Errorf("document: rollout %q, converged %v, results %+v", doc.Rollout, doc.Converged, doc.Results)
	}
	deletes := 0
	for _, e := range doc.Events {
		if e.Rollout != doc.Rollout {
			t.Errorf("event %s carries rollout %q, want %q", e.Type, e.Rollout, doc.Rollout)
		}
		if e.Type == controller.EventDelete {
			deletes++
		}
	}
	if deletes != 10 {
		t.Errorf("%d delete events, want 10", deletes)
	}
	if !strings.Contains(stderr, "rollout "+doc.Rollout+": groups web") || !strings.Contains(stderr, "converged") {
		t.Errorf("stderr lacks the progress for people:\n%s", stderr)
	}
}

func TestForcedRebuildReplacesUpToDateServers(t *testing.T) {
	env, cfg := fleet(t)
	before := map[string]bool{}
	for _, s := range env.Sim.Servers() {
		before[s.ID] = true
	}
	out, code := run(t, "rebuild", "--config", cfg, "--all", "--force", "--reason", "CVE-2026-4242 found on web-1", "--poll", "50ms")
	if code != cli.ExitOK {
		t.Fatalf("exit %d\n%s", code, out)
	}
	after := env.Sim.Servers()
	if len(after) != 10 {
		t.Fatalf("%d servers after the forced rebuild, want 10", len(after))
	}
	for _, s := range after {
		if before[s.ID] {
			t.Errorf("server %s survived a forced rebuild", s.Name)
		}
	}
	if !strings.Contains(out, "CVE-2026-4242") {
		t.Errorf("the reason does not appear in the output:\n%s", out)
	}
}

func TestRebuildStopsAtOnceWhenItCannotProceed(t *testing.T) {
	env, cfg := fleet(t)
	broken := filepath.Join(filepath.Dir(cfg), "broken.yaml")
	_ = os.WriteFile(broken, []byte(strings.Replace(fleetConfig, "flavor: m1.small", "flavor: m9.huge", 1)), 0o600)
	start := time.Now()
	out, code := run(t, "rebuild", "--config", broken, "--all", "--timeout", "1m", "--poll", "50ms")
	if code != cli.ExitNotDone || !strings.Contains(out, `It cannot proceed`) || !strings.Contains(out, `flavor "m9.huge"`) {
		t.Fatalf("exit %d, want %d naming the flavor:\n%s", code, cli.ExitNotDone, out)
	}
	if time.Since(start) > 20*time.Second {
		t.Fatalf("took %v: a missing flavor must not wait for the timeout", time.Since(start))
	}
	if n := len(env.Sim.Servers()); n != 10 {
		t.Fatalf("%d servers after a rebuild that could not proceed, want the 10 old ones", n)
	}
}

// A pool that does not exist is found at first contact: the group stops
// at once, naming the field, and no server is touched.
func TestRebuildWithUnknownPoolTouchesNothing(t *testing.T) {
	env, cfg := fleet(t)
	env.Sim.AddImage(sim.Image{Name: "gold"})
	env.Sim.ResetRequests()
	pooled := filepath.Join(filepath.Dir(cfg), "pooled.yaml")
	_ = os.WriteFile(pooled, []byte(fleetConfig+"    traffic: {octavia: {pool: web-pool, protocol_port: 8080}}\n"), 0o600)
	out, code := run(t, "rebuild", "--config", pooled, "--all", "--timeout", "1m", "--poll", "50ms")
	if code != cli.ExitNotDone || !strings.Contains(out, "traffic.octavia.pool") || !strings.Contains(out, `pool "web-pool"`) {
		t.Fatalf("exit %d, want %d naming the field and the pool:\n%s", code, cli.ExitNotDone, out)
	}
	for _, r := range env.Sim.Requests() {
		if r.Service == "compute" && r.Method != "GET" {
			t.Errorf("a server was touched: %s %s", r.Method, r.Path)
		}
	}
}

func TestBadInputIsRefusedBeforeAnyCloudCall(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	fipMany := filepath.Join(dir, "fip.yaml")
	portRange := filepath.Join(dir, "port.yaml")
	_ = os.WriteFile(good, []byte(fleetConfig), 0o600)
	_ = os.WriteFile(bad, []byte(strings.Replace(fleetConfig, "max_surge: 2", "max_surge: lots", 1)), 0o600)
	_ = os.WriteFile(fipMany, []byte(fleetConfig+"    traffic: {floating_ip: {address: 203.0.113.7}}\n"), 0o600)
	_ = os.WriteFile(portRange, []byte(fleetConfig+"    traffic: {octavia: {pool: web-pool, protocol_port: 0}}\n"), 0o600)
	// No cloud at all: any attempt to reach one would fail differently.
	t.Setenv("OS_CLIENT_CONFIG_FILE", filepath.Join(dir, "missing-clouds.yaml"))
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"rebuild", "--all"}, "--config is required"},
		{[]string{"rebuild", "--config", good}, "choose the groups"},
		{[]string{"rebuild", "--config", good, "--all", "--group", "web"}, "not both"},
		{[]string{"rebuild", "--config", good, "--group", "db"}, "has no such group (it has: web)"},
		{[]string{"rebuild", "--config", good, "--all", "--force"}, "--force needs --reason"},
		{[]string{"rebuild", "--config", good, "--all", "--before", "2026-11-25T12:00:00Z"}, "--before goes with --force"},
		{[]string{"rebuild", "--config", good, "--all", "--reason", "x"}, "--reason goes with --force or --server"},
		{[]string{"rebuild", "--config", good, "--server", "abc", "--group", "web"}, "--server names the servers to replace"},
		{[]string{"rebuild", "--config", good, "--all", "--urgent"}, "--urgent goes with --force or --server"},
		{[]string{"hold", "--config", good, "--group", "web"}, "--reason is required"},
		{[]string{"hold", "--config", good, "--reason", "x"}, "--group is required"},
		{[]string{"release", "--config", good}, "--group is required"},
		{[]string{"protect", "--config", good, "--reason", "x"}, "--server is required"},
		{[]string{"protect", "--config", good, "--server", "abc"}, "--reason is required"},
		{[]string{"unprotect", "--config", good}, "--server is required"},
		{[]string{"rebuild", "--config", good, "--all", "--force", "--reason", "x", "--before", "yesterday"}, "--before: expected an RFC 3339 time"},
		{[]string{"rebuild", "--config", bad, "--all"}, bad + `: groups[0].rollout.max_surge (line 8): expected a whole number ≥ 0 or a percentage such as "25%", got "lots"`},
		{[]string{"rebuild", "--config", filepath.Join(dir, "nope.yaml"), "--all"}, "nope.yaml: cannot read the file"},
		{[]string{"rebuild", "--config", fipMany, "--all"}, fipMany + ": groups[0].traffic.floating_ip (line 14): a floating IP points at one server, and this group has count 10"},
		{[]string{"rebuild", "--config", portRange, "--all"}, portRange + ": groups[0].traffic.octavia.protocol_port (line 14): expected a port from 1 to 65535, got 0"},
		{[]string{"plan", "--config", good, "--output", "yaml"}, "--output must be text or json"},
		{[]string{"rebuild", "--config", good, "--all", "--log-level", "loud"}, "--log-level"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, code := run(t, tc.args...)
			if code != cli.ExitUsage {
				t.Errorf("exit %d, want %d", code, cli.ExitUsage)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, out)
			}
		})
	}
}

func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes about ten seconds")
	}
	out, code := run(t, "demo")
	if code != cli.ExitOK {
		t.Fatalf("demo exit %d\n%s", code, out)
	}
	table := regexp.MustCompile(`(?m)^(web|api|worker)\s+(web|api|worker)-[0-9a-f]{8}\s+→\s+(web|api|worker)-[0-9a-f]{8}\s`)
	pairs := len(table.FindAllString(out, -1))
	if pairs != 12 {
		t.Errorf("the final table shows %d old → new pairs, want 12:\n%s", pairs, out)
	}
	if !strings.Contains(out, "Every server now runs the patched image; 12 servers replaced") {
		t.Errorf("no closing line:\n%s", out)
	}
	users := regexp.MustCompile(`Users of web sent (\d+) requests through demo-lb during the rebuild: 0 failed`).FindStringSubmatch(out)
	if users == nil {
		t.Errorf("no report of requests through the load balancer, or some failed:\n%s", out)
	}
	for _, step := range []string{"traffic-add", "drain", "traffic-remove"} {
		if !strings.Contains(out, step) {
			t.Errorf("the progress shows no %s step:\n%s", step, out)
		}
	}
}

// A new image whose boots all fail halts the rollout with exit 1 and a
// paragraph naming the revision; the halt survives the next run; resume
// lifts it.
func TestHaltedRebuildAndResume(t *testing.T) {
	env, cfg := fleet(t)
	bad := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Minute)})
	env.Sim.FailNextBoots(1000)
	out, code := run(t, "rebuild", "--config", cfg, "--all", "--timeout", "1m", "--poll", "50ms")
	if code != cli.ExitNotDone || !strings.Contains(out, "HALTED") || !strings.Contains(out, bad.ID) || !strings.Contains(out, "phoenix resume --group web") {
		t.Fatalf("exit %d, want %d and a halt naming the image and the way out:\n%s", code, cli.ExitNotDone, out)
	}
	if n := len(env.Sim.Servers()); n != 10 {
		t.Fatalf("%d servers after the halt, want the 10 old ones", n)
	}
	if out, code = run(t, "rebuild", "--config", cfg, "--all", "--timeout", "1m", "--poll", "50ms"); code != cli.ExitNotDone || !strings.Contains(out, "HALTED") {
		t.Fatalf("second run: exit %d, want still halted:\n%s", code, out)
	}
	env.Sim.ClearBootFaults()
	if out, code = run(t, "resume", "--config", cfg, "--group", "web"); code != cli.ExitOK || !strings.Contains(out, "halt lifted (on 10 servers)") {
		t.Fatalf("resume: exit %d\n%s", code, out)
	}
	if out, code = run(t, "rebuild", "--config", cfg, "--all", "--poll", "50ms"); code != cli.ExitOK {
		t.Fatalf("after resume: exit %d\n%s", code, out)
	}
	for _, s := range env.Sim.Servers() {
		if s.ImageID != bad.ID {
			t.Errorf("%s runs %s after the resumed rollout, want %s", s.Name, s.ImageID, bad.ID)
		}
	}
}

// The operator's binary lists the operator's commands; the test
// harnesses are phoenix-harness's.
func TestHelpListsOnlyOperatorCommands(t *testing.T) {
	out, code := run(t, "--help")
	if code != cli.ExitOK {
		t.Fatalf("exit %d\n%s", code, out)
	}
	_, list, _ := strings.Cut(out, "Available Commands:")
	list, _, _ = strings.Cut(list, "\n\n")
	listed := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(list), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			listed[f[0]] = true
		}
	}
	for _, name := range []string{"rebuild", "plan", "daemon", "status", "event", "resume", "rollback", "demo", "sim", "config", "version"} {
		if !listed[name] {
			t.Errorf("phoenix --help does not list %s:\n%s", name, out)
		}
	}
	for _, name := range []string{"chaos", "soak", "bench"} {
		if listed[name] {
			t.Errorf("phoenix --help lists the harness command %s:\n%s", name, out)
		}
		if out, code := run(t, name); code != cli.ExitUsage || !strings.Contains(out, "unknown command") {
			t.Errorf("phoenix %s: exit %d, want %d and an unknown command:\n%s", name, code, cli.ExitUsage, out)
		}
	}
}
