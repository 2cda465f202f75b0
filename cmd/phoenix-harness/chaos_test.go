package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/controller"
)

// testPhoenix builds the phoenix binary the chaos harness runs, as the
// harness builds it when none is at hand.
func testPhoenix(t *testing.T, bugs bool) string {
	t.Helper()
	bin, err := buildPhoenix(context.Background(), t.TempDir(), bugs)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestChaosSeeds runs the chaos harness over a handful of seeds with the
// real daemon binary: every seed must converge, or halt or roll back where
// its new image fails, with no invariant violated and no secret shown. .ci/run
// runs 200 seeds the same way; `phoenix-harness chaos --seeds 1000` runs more.
func TestChaosSeeds(t *testing.T) {
	if testing.Short() {
		t.Skip("runs daemon processes through faults and kills")
	}
	bin := testPhoenix(t, false)
	var out strings.Builder
	sum, err := chaosRun(context.Background(), &out, bin, &chaosFlags{seeds: 8, from: 1001, parallel: 2})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Seeds != 8 || len(sum.Failed) > 0 || sum.Violations > 0 {
		for _, r := range sum.Failed {
			t.Errorf("seed %d: %s (replay: %s)", r.Seed, r.summary(), replayCommand(r.Seed, ""))
		}
		t.Fatalf("%d seeds, %d failed, %d violations\n%s", sum.Seeds, len(sum.Failed), sum.Violations, out.String())
	}
	if sum.Converged+sum.Halted+sum.RolledBack != 8 {
		t.Errorf("%d converged, %d halted and %d rolled back of 8 seeds", sum.Converged, sum.Halted, sum.RolledBack)
	}
}

// TestChaosCatchesInjectedBugs shows the harness can fail: each known
// policy bug, built into the daemon behind the chaosbugs tag, is reported
// as a violation of the invariant it breaks within a few seeds.
func TestChaosCatchesInjectedBugs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a daemon with injected bugs")
	}
	bin := testPhoenix(t, true)
	if err := checkInjects(bin, controller.BugSurgeIgnored); err != nil {
		t.Fatalf("a chaosbugs build refused: %v", err)
	}
	for _, tc := range []struct {
		bug, invariant string
		from           uint64
	}{
		{controller.BugSurgeIgnored, "bound:", 1},
		{controller.BugEarlyDelete, "availability:", 1},
		{controller.BugUntagged, "orphan:", 1},
		// From the first seed that rolls a group back.
		{controller.BugRollbackSkipsGate, "gate:", firstRollback(t)},
		// From the first seed steered from its start.
		{controller.BugSteeringIgnored, "steering:", firstSteered(t)},
		// From the first seed with two stages.
		{controller.BugPromoteEarly, "stages:", firstStaged(t)},
	} {
		t.Run(tc.bug, func(t *testing.T) {
			sum, err := chaosRun(context.Background(), io.Discard, bin, &chaosFlags{seeds: 10, from: tc.from, parallel: 2, bug: tc.bug, expect: true})
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, r := range sum.Failed {
				for _, v := range r.Violations {
					found = found || strings.HasPrefix(v, tc.invariant)
				}
			}
			if !found {
				t.Errorf("bug %s: no %s violation in %d seeds; failed seeds: %+v", tc.bug, tc.invariant, sum.Seeds, sum.Failed)
			}
		})
	}
}

// firstRollback is the first seed with a group whose new image fails and
// that rolls back.
func firstRollback(t *testing.T) uint64 {
	for seed := uint64(1); seed < 100; seed++ {
		_, groups, _, _, _, _ := chaosScenario(seed)
		for _, g := range groups {
			if g.rollsBack() {
				return seed
			}
		}
	}
	t.Fatal("no seed below 100 rolls a group back")
	return 0
}

// firstSteered is the first seed with a group steered from the start of
// its chaos, judged with no grace: blocked by a Prometheus that blocked
// before the daemon started, or outside a window that opens later.
func firstSteered(t *testing.T) uint64 {
	for seed := uint64(1); seed < 200; seed++ {
		_, groups, _, _, steer, _ := chaosScenario(seed)
		for _, g := range groups {
			if g.blocker && steer.promStart != promQuiet || g.window == windowLater {
				return seed
			}
		}
	}
	t.Fatal("no seed below 200 is steered from its start")
	return 0
}

// firstStaged is the first seed with two stages.
func firstStaged(t *testing.T) uint64 {
	for seed := uint64(1); seed < 100; seed++ {
		_, groups, _, _, _, _ := chaosScenario(seed)
		for _, g := range groups {
			if g.stage != nil {
				return seed
			}
		}
	}
	t.Fatal("no seed below 100 has two stages")
	return 0
}

// TestChaosRefusesBugsInAProductionBuild: a phoenix built without the
// chaosbugs tag has no bug to switch on, and the harness says so before
// it runs a seed.
func TestChaosRefusesBugsInAProductionBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds phoenix")
	}
	bin := testPhoenix(t, false)
	out, code := run(t, "chaos", "--phoenix", bin, "--bug", controller.BugSurgeIgnored, "--seeds", "1")
	if code != cli.ExitUsage || !strings.Contains(out, "injects no bug") || strings.Contains(out, "seeds (") {
		t.Errorf("exit %d:\n%s", code, out)
	}
	out, code = run(t, "chaos", "--phoenix", bin, "--bug", "off-by-one", "--seeds", "1")
	if code != cli.ExitUsage || !strings.Contains(out, "want one of surge-ignored, early-delete, untagged, rollback-skips-gate, steering-ignored, promote-early") {
		t.Errorf("an unknown bug: exit %d:\n%s", code, out)
	}
}

// TestSecretScanFindsLeaks: the scan that every seed ends with reports a
// password or secret in a log or in status output.
func TestSecretScanFindsLeaks(t *testing.T) {
	dir := t.TempDir()
	clean := filepath.Join(dir, "clean.log")
	leaky := filepath.Join(dir, "leaky.log")
	if err := os.WriteFile(clean, []byte("2026 info connected to the cloud\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(leaky, []byte("2026 debug auth {\"password\": \"pw-123\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &seedRun{password: "pw-123", secret: []byte("wh-456")}
	r.logs = []string{clean}
	if leaks := r.scanSecrets(); len(leaks) != 0 {
		t.Errorf("a clean run: %v", leaks)
	}
	r.logs = append(r.logs, leaky)
	r.outputs = []string{`{"groups":[{"last_error":"signature wh-456 wrong"}]}`}
	leaks := strings.Join(r.scanSecrets(), "\n")
	if !strings.Contains(leaks, "the cloud password appears in leaky.log") || !strings.Contains(leaks, "the webhook secret appears in status or metrics output") {
		t.Errorf("leaks found:\n%s", leaks)
	}
}
