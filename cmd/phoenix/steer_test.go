package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// The steering commands, end to end through the binary's own code: a hold
// defers a rebuild and plan says who held it and why; a protected server
// shows in plan and is refused by rebuild --server; release and unprotect
// lift them; rebuild --server replaces exactly the servers named.
func TestSteeringCommands(t *testing.T) {
	env, cfg := fleet(t)
	servers := env.Sim.Servers()
	ids := make([]string, len(servers))
	for i, s := range servers {
		ids[i] = s.ID
	}

	mustRun := func(want int, args ...string) string {
		t.Helper()
		out, code := run(t, args...)
		if code != want {
			t.Fatalf("phoenix %s: exit %d, want %d\n%s", strings.Join(args, " "), code, want, out)
		}
		return out
	}
	out := mustRun(cli.ExitOK, "hold", "--config", cfg, "--group", "web", "--reason", "release freeze", "--by", "alice@ops")
	if !strings.Contains(out, "group web: held by alice@ops (recorded on 10 servers): release freeze") {
		t.Errorf("hold said:\n%s", out)
	}
	out = mustRun(cli.ExitOK, "protect", "--config", cfg, "--server", ids[3], "--reason", "licence dongle")
	if !strings.Contains(out, ids[3]) || !strings.Contains(out, "protected: licence dongle") {
		t.Errorf("protect said:\n%s", out)
	}
	patched := env.Sim.AddImage(sim.Image{Name: "gold"})

	out = mustRun(cli.ExitOK, "plan", "--config", cfg)
	for _, want := range []string{"DEFERRED: 9 replacements wait: held: by alice@ops at", "release freeze", "PROTECTED: 1 servers are left as they are", "protected: licence dongle; would be replaced: image"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	out = mustRun(cli.ExitNotDone, "rebuild", "--config", cfg, "--all", "--poll", "50ms")
	if !strings.Contains(out, "DEFERRED") || !strings.Contains(out, "release freeze") {
		t.Errorf("a held rebuild said:\n%s", out)
	}
	out = mustRun(cli.ExitNotDone, "rebuild", "--config", cfg, "--server", ids[3], "--poll", "50ms")
	if !strings.Contains(out, "is protected (licence dongle): run phoenix unprotect --server "+ids[3]) {
		t.Errorf("rebuild of a protected server said:\n%s", out)
	}
	if n := len(env.Sim.Servers()); n != 10 {
		t.Fatalf("%d servers after deferred and refused rebuilds, want the 10", n)
	}

	// Named and urgent: only those two, though held.
	mustRun(cli.ExitOK, "rebuild", "--config", cfg, "--server", ids[0], "--server", ids[5], "--urgent", "--poll", "50ms")
	var left []string
	for _, s := range env.Sim.Servers() {
		if !s.Deleting {
			left = append(left, s.ID)
		}
	}
	for i, id := range ids {
		if slices.Contains(left, id) == (i == 0 || i == 5) {
			t.Errorf("server %d (%s): still there %v", i, id, slices.Contains(left, id))
		}
	}

	mustRun(cli.ExitOK, "release", "--config", cfg, "--group", "web")
	mustRun(cli.ExitOK, "rebuild", "--config", cfg, "--all", "--poll", "50ms")
	for _, s := range env.Sim.Servers() {
		if (s.ImageID == patched.ID) == (s.ID == ids[3]) {
			t.Errorf("server %s on %s after the release (the protected one is %s)", s.ID, s.ImageID, ids[3])
		}
	}
	mustRun(cli.ExitOK, "unprotect", "--config", cfg, "--server", ids[3])
	if srv, _ := env.Sim.Server(ids[3]); srv.Metadata[controller.MetaProtected] == "true" {
		t.Errorf("unprotect left %v", srv.Metadata)
	}
	mustRun(cli.ExitOK, "rebuild", "--config", cfg, "--all", "--poll", "50ms")
	for _, s := range env.Sim.Servers() {
		if s.ImageID != patched.ID && !s.Deleting {
			t.Errorf("server %s still on %s after unprotect", s.ID, s.ImageID)
		}
	}
}
