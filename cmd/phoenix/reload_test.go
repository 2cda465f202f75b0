package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// TestSIGHUPNamesWhatNeedsARestart: a reload that changes the listen
// address and the cloud applies the rest, keeps serving where it was,
// and names both in /v1/status and in the log.
func TestSIGHUPNamesWhatNeedsARestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	bin := buildPhoenix(t)
	env := simtest.Start(t, sim.Options{BootTime: sim.Fixed(20 * time.Millisecond), HealthDelay: sim.Fixed(10 * time.Millisecond)}, 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	cfg := filepath.Join(t.TempDir(), "phoenix.yaml")
	write := func(cloud, listen string) {
		body := "cloud: " + cloud + "\ncontroller: {interval: 1h, listen: \"" + listen + "\"}\ngroups:\n" + daemonGroupYAML("web", 1)
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(simtest.CloudName, "127.0.0.1:0")
	d := startDaemonProc(t, bin, cfg, env.CloudsFile)
	waitFor(t, 60*time.Second, "the first build", func() bool { return convergedOn(d.status(t), 1, "") })

	write("another-cloud", "127.0.0.1:19999")
	_ = d.cmd.Process.Signal(syscall.SIGHUP)
	want := []string{"cloud", "controller.listen"}
	waitFor(t, 10*time.Second, "status to name the settings", func() bool {
		return slices.Equal(d.status(t).Config.RestartNeeded, want)
	})
	if st := d.status(t); st.Config.Refused != "" || len(st.Groups) != 1 {
		t.Errorf("after the reload: refused %q, %d groups", st.Config.Refused, len(st.Groups))
	}
	log, err := os.ReadFile(d.log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "apply only after a restart") || !strings.Contains(string(log), `"restart_needed": ["cloud", "controller.listen"]`) {
		t.Errorf("the log does not name them:\n%s", tail(string(log), 20))
	}
	d.stop(t, syscall.SIGTERM)
}
