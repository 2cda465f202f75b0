package main

import (
	"os"
	"strings"
	"testing"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// phoenix rollback sends a group back to the image it ran before: plan
// --rollback shows it first and changes nothing, the rollback is recorded
// and the next rebuild carries it out, the rejected image is not chosen
// again, and resume lifts the rollback.
func TestRollbackByHand(t *testing.T) {
	env, cfg := fleet(t)
	gold := env.Sim.Images()[0] // the one image of the first build
	patched := env.Sim.AddImage(sim.Image{Name: "gold"})
	if out, code := run(t, "rebuild", "--config", cfg, "--all", "--poll", "50ms"); code != cli.ExitOK {
		t.Fatalf("rolling out the patched image: exit %d\n%s", code, out)
	}

	// The image the group runs is no way back.
	if out, code := run(t, "rollback", "--config", cfg, "--group", "web", "--to", patched.ID); code != cli.ExitNotDone || !strings.Contains(out, "is the one group web runs") {
		t.Errorf("rollback to the image it runs: exit %d\n%s", code, out)
	}

	env.Sim.ResetRequests()
	out, code := run(t, "plan", "--config", cfg, "--group", "web", "--rollback")
	if code != cli.ExitOK || !strings.Contains(out, "ROLLBACK (preview): image gold ("+patched.ID+") would be rejected") ||
		!strings.Contains(out, "desired image gold ("+gold.ID+")") || !strings.Contains(out, "10 to replace") {
		t.Fatalf("plan --rollback: exit %d\n%s", code, out)
	}
	for _, r := range env.Sim.Requests() {
		if r.Method != "GET" && r.Method != "HEAD" && !strings.HasSuffix(r.Path, "/auth/tokens") {
			t.Errorf("plan --rollback sent %s %s", r.Method, r.Path)
		}
	}

	out, code = run(t, "rollback", "--config", cfg, "--group", "web")
	if code != cli.ExitOK || !strings.Contains(out, "rejected, going back to gold ("+gold.ID+") (recorded on 10 servers)") {
		t.Fatalf("rollback: exit %d\n%s", code, out)
	}
	if out, code = run(t, "rollback", "--config", cfg, "--group", "web"); code != cli.ExitNotDone || !strings.Contains(out, "rolled back already") {
		t.Errorf("a second rollback: exit %d\n%s", code, out)
	}
	for range 2 { // the second run finds nothing to do
		if out, code = run(t, "rebuild", "--config", cfg, "--all", "--poll", "50ms"); code != cli.ExitOK {
			t.Fatalf("the rollback: exit %d\n%s", code, out)
		}
		for _, s := range env.Sim.Servers() {
			if s.ImageID != gold.ID || !s.Healthy || s.Metadata[controller.MetaRejectReason] != controller.ReasonByHand {
				t.Errorf("%s runs %s (healthy %v, rejection %q), want %s", s.Name, s.ImageID, s.Healthy, s.Metadata[controller.MetaRejectReason], gold.ID)
			}
		}
	}

	if out, code = run(t, "resume", "--config", cfg, "--group", "web"); code != cli.ExitOK || !strings.Contains(out, "rollback lifted (on 10 servers)") {
		t.Fatalf("resume: exit %d\n%s", code, out)
	}
	if out, code = run(t, "rebuild", "--config", cfg, "--all", "--poll", "50ms"); code != cli.ExitOK {
		t.Fatalf("after resume: exit %d\n%s", code, out)
	}
	for _, s := range env.Sim.Servers() {
		if s.ImageID != patched.ID {
			t.Errorf("%s runs %s after the rollback was lifted, want %s", s.Name, s.ImageID, patched.ID)
		}
	}
}

// A one-shot rebuild whose rollout fails and is rolled back (on_failure
// rollback) ends on the image the group ran, exits 1 and says ROLLED BACK;
// the next run changes nothing and exits 0.
func TestRebuildRolledBackExitsNotDone(t *testing.T) {
	env, cfg := fleet(t)
	old := env.Sim.Images()[0]
	text := strings.Replace(fleetConfig, "rollout: {max_surge: 2, min_ready: 30ms}", "rollout: {max_surge: 2, min_ready: 30ms, on_failure: rollback}", 1)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := env.Sim.AddImage(sim.Image{Name: "gold", BootFails: true})
	out, code := run(t, "rebuild", "--config", cfg, "--all", "--timeout", "1m", "--poll", "50ms")
	if code != cli.ExitNotDone || !strings.Contains(out, "ROLLED BACK") || !strings.Contains(out, bad.ID) {
		t.Fatalf("exit %d, want %d and ROLLED BACK naming %s:\n%s", code, cli.ExitNotDone, bad.ID, out)
	}
	for _, s := range env.Sim.Servers() {
		if s.ImageID != old.ID || !s.Healthy {
			t.Errorf("%s runs %s (healthy %v), want %s", s.Name, s.ImageID, s.Healthy, old.ID)
		}
	}
	if out, code = run(t, "rebuild", "--config", cfg, "--all", "--poll", "50ms"); code != cli.ExitOK {
		t.Fatalf("the next run: exit %d\n%s", code, out)
	}
}
