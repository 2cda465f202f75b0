package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// placedGroupYAML is group web over RegionOne (weight 1) and RegionTwo
// (weight 2) of the simulator.
const placedGroupYAML = `  - name: web
    count: 3
    image: {name: gold, newest: true}
    flavor: m1.small
    networks: [private]
    rollout: {max_surge: 1, max_unavailable: 0, min_ready: 30ms}
    placement:
      failover_after: 10s
      locations:
        - {region: RegionOne, weight: 1}
        - {region: RegionTwo, weight: 2}
    health:
      http: {port: 8080, path: /healthz}
      interval: 30ms
      timeout: 30ms
      healthy_threshold: 2
      grace: 30s
`

// webServers lists group web's servers in one region on image ("" any),
// and how many of them are healthy.
func webServers(s *sim.Sim, image string) (ids []string, healthy int) {
	for _, srv := range s.Servers() {
		if srv.Metadata[controller.MetaGroup] == "web" && (image == "" || srv.ImageID == image) && !srv.Deleting {
			ids = append(ids, srv.ID)
			if srv.Healthy {
				healthy++
			}
		}
	}
	return ids, healthy
}

func spreadIs(a, b *sim.Sim, imgA, imgB string, wantA, wantB int) func() bool {
	return func() bool {
		ia, ha := webServers(a, imgA)
		ib, hb := webServers(b, imgB)
		all, _ := webServers(a, "")
		allB, _ := webServers(b, "")
		return len(ia) == wantA && ha == wantA && len(ib) == wantB && hb == wantB && len(all) == wantA && len(allB) == wantB
	}
}

// A group over two regions, 1:2. RegionTwo's API goes away (Keystone,
// global as in most clouds, stays up with RegionOne); the daemon is
// killed while the group fails over, and started again while RegionTwo
// is still away. The group ends serving its count from RegionOne, nothing
// in RegionTwo deleted; RegionTwo comes back and the group rebalances to
// 1:2, the floor held. An independent monitor reads both regions
// throughout.
func TestDaemonPlacedFailoverSurvivesKill(t *testing.T) {
	bin := buildPhoenix(t)
	env := simtest.Start(t, sim.Options{Regions: []string{"RegionTwo"}, BootTime: sim.Fixed(time.Second), HealthDelay: sim.Fixed(20 * time.Millisecond)}, 0)
	one, two := env.Sim, env.Sim.Region("RegionTwo")
	old := time.Now().Add(-time.Hour)
	goldOne, goldTwo := one.AddImage(sim.Image{Name: "gold", Created: old}), two.AddImage(sim.Image{Name: "gold", Created: old})
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "webhook.key")
	if err := os.WriteFile(secretFile, []byte("s3cret-for-the-regions-0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "phoenix.yaml")
	conf := strings.Replace(daemonConfig(secretFile, "", placedGroupYAML), "interval: 1h", "interval: 2s", 1)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemonProc(t, bin, cfg, env.CloudsFile)
	waitFor(t, 60*time.Second, "1 server in RegionOne and 2 in RegionTwo", spreadIs(one, two, goldOne.ID, goldTwo.ID, 1, 2))

	mon := simtest.WatchRegions(func(s sim.Server) bool { return s.Metadata[controller.MetaGroup] == "web" }, one, two)
	mon.Bound(4, 3)
	mon.Exclude(1, true)
	if err := two.SetDown(true); err != nil {
		t.Fatal(err)
	}
	downAt := time.Now()
	partitioned, _ := webServers(two, "")
	locations := func(p *daemonProc) []controller.LocationStatus {
		st := p.status(t)
		if len(st.Groups) != 1 {
			return nil
		}
		return st.Groups[0].Locations
	}
	waitFor(t, 60*time.Second, "RegionTwo found down", func() bool {
		l := locations(d)
		return len(l) == 2 && l[1].State == plan.LocationDown && l[0].Share == 3
	})
	t.Logf("RegionTwo found down %v after its API went away (failover_after 10s, interval 2s)", time.Since(downAt).Round(time.Millisecond))
	// Killed mid-failover: RegionOne's new servers are booting.
	waitFor(t, 60*time.Second, "a second server in RegionOne", func() bool { ids, _ := webServers(one, ""); return len(ids) >= 2 })
	booting := 0
	for _, s := range one.Servers() {
		if s.Status == "BUILD" {
			booting++
		}
	}
	// What a restart needs is on RegionOne's servers before the kill.
	waitFor(t, 30*time.Second, "RegionTwo's down record on RegionOne's servers", func() bool {
		for _, s := range one.Servers() {
			if s.Metadata[controller.MetaLocationDown+"RegionTwo"] != "" {
				return true
			}
		}
		return false
	})
	d.kill(t)
	t.Logf("killed with %d of RegionOne's servers booting", booting)
	d = startDaemonProc(t, bin, cfg, env.CloudsFile)
	// It reads the record: RegionTwo is down at once, not after
	// failover_after again.
	waitFor(t, 60*time.Second, "the restarted daemon finding RegionTwo down", func() bool {
		l := locations(d)
		return len(l) == 2 && l[1].State == plan.LocationDown
	})
	if l := locations(d); !strings.HasPrefix(l[1].Reason, "recorded down since") {
		t.Errorf("the restarted daemon found RegionTwo down for %q, want its record read", l[1].Reason)
	}
	waitFor(t, 120*time.Second, "RegionOne serving the whole count", func() bool {
		ids, healthy := webServers(one, goldOne.ID)
		return len(ids) == 3 && healthy == 3
	})
	t.Logf("RegionOne served 3 of 3 %v after RegionTwo's API went away, a kill and a restart between", time.Since(downAt).Round(time.Millisecond))
	waitFor(t, 60*time.Second, "RegionOne's count 3", func() bool {
		l := locations(d)
		return len(l) == 2 && l[1].State == plan.LocationDown && l[0].Share == 3 && l[0].Count == 3
	})
	if ids, _ := webServers(one, ""); len(ids) != 3 {
		t.Errorf("RegionOne has %d servers, want 3: the restart duplicated or lost one", len(ids))
	}
	for _, id := range partitioned {
		if s, ok := two.Server(id); !ok || s.Deleting {
			t.Errorf("server %s of the partitioned region was deleted", id)
		}
	}

	// RegionTwo answers again: back to 1:2, creating before removing.
	total, _ := mon.Counts()
	mon.Exclude(1, false)
	mon.Bound(max(4, total[0]+total[1]), 3)
	if err := two.SetDown(false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 120*time.Second, "1:2 again", spreadIs(one, two, goldOne.ID, goldTwo.ID, 1, 2))
	mon.Check(t)
	l := locations(d)
	if len(l) != 2 || l[0].State != plan.LocationUp || l[1].State != plan.LocationUp || l[0].Share != 1 || l[1].Share != 2 {
		t.Errorf("locations %+v, want both up, shares 1 and 2", l)
	}
	families := metricsOf(t, d.url)
	gauge := func(name string, labels map[string]string) (float64, bool) {
		for _, m := range families[name].GetMetric() {
			match := true
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					match = false
				}
			}
			if match {
				return m.GetGauge().GetValue(), true
			}
		}
		return 0, false
	}
	if v, ok := gauge("phoenix_location_up", map[string]string{"location": "RegionTwo", "state": "up"}); !ok || v != 1 {
		t.Errorf("phoenix_location_up for RegionTwo: %v %v, want 1", v, ok)
	}
	if v, ok := gauge("phoenix_location_servers", map[string]string{"location": "RegionOne", "kind": "share"}); !ok || v != 1 {
		t.Errorf("phoenix_location_servers share of RegionOne: %v %v, want 1", v, ok)
	}
}

// The one-shot commands reach the top-level cloud alone: they refuse a
// placed group by name, before connecting to anything.
func TestOneShotCommandsRefuseAPlacedGroup(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "phoenix.yaml")
	if err := os.WriteFile(cfg, []byte("cloud: nowhere\ngroups:\n"+placedGroupYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"plan"}, {"rebuild", "--all"}, {"resume", "--group", "web"}} {
		out, code := run(t, append(args, "--config", cfg)...)
		if code != cli.ExitUsage || !strings.Contains(out, "group web is placed over several locations (placement): only `phoenix daemon` runs such a group") {
			t.Errorf("phoenix %s: exit %d, want %d naming the placed group:\n%s", args[0], code, cli.ExitUsage, out)
		}
	}
}
