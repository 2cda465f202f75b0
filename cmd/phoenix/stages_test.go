package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// stageGroupYAML is a group taking the newest image with tags.
func stageGroupYAML(name string, count int, tags, extra string) string {
	return fmt.Sprintf(`  - name: %s
    count: %d
    image: {tags: [%s], newest: true}
    flavor: m1.small
    networks: [private]
    rollout: {max_surge: 1, max_unavailable: 0, min_ready: 30ms, watch: 0s, max_failures: 1, on_failure: rollback}
    health:
      http: {port: 8080, path: /healthz}
      interval: 30ms
      timeout: 30ms
      healthy_threshold: 2
      grace: 30s
%s`, name, count, tags, extra)
}

// imageRuns records every image each group's servers ever ran, and when a
// group's server of each image was first seen.
type imageRuns struct {
	mu    sync.Mutex
	first map[string]time.Time // group/image → first seen
	stop  chan struct{}
	done  chan struct{}
}

func watchImageRuns(s *sim.Sim) *imageRuns {
	w := &imageRuns{first: map[string]time.Time{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			for _, srv := range s.Servers() {
				k := srv.Metadata[controller.MetaGroup] + "/" + srv.ImageID
				w.mu.Lock()
				if _, ok := w.first[k]; !ok {
					w.first[k] = time.Now()
				}
				w.mu.Unlock()
			}
			select {
			case <-w.stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *imageRuns) ran(group, image string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	at, ok := w.first[group+"/"+image]
	return at, ok
}

func (w *imageRuns) Stop() {
	close(w.stop)
	<-w.done
}

// tagPuts are the times Glance took a PUT of tag on image.
func tagPuts(s *sim.Sim, image, tag string) []time.Time {
	var out []time.Time
	for _, r := range s.Requests() {
		if r.Service == "image" && r.Method == "PUT" && strings.HasSuffix(r.Path, "/images/"+image+"/tags/"+tag) {
			out = append(out, r.Time)
		}
	}
	return out
}

// Issue 21 on the real daemon: a new image rolls out on staging only;
// after promote.after of health Glance tags it and prod rolls it, though
// the daemon was killed between staging's convergence and the promotion
// (it promotes once); an image that fails on staging never reaches prod,
// which keeps its image.
func TestDaemonStagesPromoteThroughGlance(t *testing.T) {
	const after = 6 * time.Second
	bin := buildPhoenix(t)
	env := simtest.Start(t, sim.Options{BootTime: sim.Fixed(200 * time.Millisecond), HealthDelay: sim.Fixed(20 * time.Millisecond)}, 0)
	s := env.Sim
	v1 := s.AddImage(sim.Image{Name: "gold-1", Tags: []string{"gold", "staged-ok"}, Created: time.Now().Add(-time.Hour)})
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "webhook.key")
	if err := os.WriteFile(secretFile, []byte("s3cret-for-the-stages-0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "phoenix.yaml")
	conf := strings.Replace(daemonConfig(secretFile, "",
		stageGroupYAML("staging", 2, "gold", "    promote: {tag: staged-ok, after: 6s}\n"),
		stageGroupYAML("prod", 4, "gold, staged-ok", "")), "interval: 1h", "interval: 2s", 1)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	on := func(group, image string, n int) func() bool {
		return func() bool {
			healthy := 0
			for _, srv := range s.Servers() {
				if srv.Metadata[controller.MetaGroup] != group || srv.Deleting {
					continue
				}
				if srv.ImageID != image {
					return false
				}
				if srv.Healthy {
					healthy++
				}
			}
			return healthy == n
		}
	}
	d := startDaemonProc(t, bin, cfg, env.CloudsFile)
	waitFor(t, 60*time.Second, "both stages on gold-1", func() bool { return on("staging", v1.ID, 2)() && on("prod", v1.ID, 4)() })
	runs := watchImageRuns(s)
	defer runs.Stop()

	// A new gold image: staging only.
	v2 := s.AddImage(sim.Image{Name: "gold-2", Tags: []string{"gold"}})
	waitFor(t, 60*time.Second, "staging on gold-2", on("staging", v2.ID, 2))
	staged := time.Now()
	waitFor(t, 30*time.Second, "prod's status naming the image waiting for the tag", func() bool {
		for _, g := range d.status(t).Groups {
			if g.Group == "prod" && strings.Contains(g.Stage, "gold-2 ("+v2.ID+") is waiting for tag staged-ok: group staging has run it healthy for") {
				t.Logf("prod: %s", g.Stage)
				return true
			}
		}
		return false
	})
	if puts := tagPuts(s, v2.ID, "staged-ok"); len(puts) != 0 {
		t.Fatalf("gold-2 tagged %s after staging converged, before promote.after", time.Since(staged))
	}
	// Killed between staging's convergence and the promotion.
	d.kill(t)
	if time.Since(staged) >= after {
		t.Logf("the kill came %s after staging converged, later than promote.after: the restart still tags once", time.Since(staged))
	}
	d = startDaemonProc(t, bin, cfg, env.CloudsFile)
	waitFor(t, 90*time.Second, "prod on gold-2", on("prod", v2.ID, 4))
	puts := tagPuts(s, v2.ID, "staged-ok")
	if len(puts) != 1 {
		t.Fatalf("gold-2 tagged %d times, want once", len(puts))
	}
	var lastReady time.Time
	for _, srv := range s.Servers() {
		if srv.Metadata[controller.MetaGroup] == "staging" {
			if at, err := time.Parse(time.RFC3339Nano, srv.Metadata[controller.MetaReadyAt]); err == nil && at.After(lastReady) {
				lastReady = at
			}
		}
	}
	if puts[0].Before(lastReady.Add(after)) {
		t.Errorf("tagged at %s, before staging's last server had served healthy for %s (ready %s)", puts[0].Format(time.RFC3339Nano), after, lastReady.Format(time.RFC3339Nano))
	}
	if first, ok := runs.ran("prod", v2.ID); !ok || first.Before(puts[0]) {
		t.Errorf("prod first ran gold-2 at %s, before Glance took the tag at %s", first, puts[0])
	}
	t.Logf("gold-2: staging's last server ready %s, tagged %s later, prod on it %s after the tag",
		lastReady.Format(time.RFC3339), puts[0].Sub(lastReady).Round(time.Millisecond), time.Since(puts[0]).Round(time.Millisecond))

	// An image that fails on staging never reaches prod.
	v3 := s.AddImage(sim.Image{Name: "gold-3", Tags: []string{"gold"}, BootFails: true})
	waitFor(t, 90*time.Second, "staging rolled back from gold-3", func() bool {
		for _, g := range d.status(t).Groups {
			if g.Group == "staging" && strings.Contains(g.RolledBack, v3.ID) && !g.InProgress {
				return true
			}
		}
		return false
	})
	if _, ok := runs.ran("prod", v3.ID); ok {
		t.Errorf("prod ran gold-3, which failed on staging")
	}
	if len(tagPuts(s, v3.ID, "staged-ok")) != 0 {
		t.Errorf("gold-3 was tagged")
	}
	if !on("prod", v2.ID, 4)() {
		t.Errorf("prod left gold-2 while staging rejected gold-3")
	}
	for _, img := range s.Images() {
		if img.ID == v2.ID && !slices.Contains(img.Tags, "staged-ok") {
			t.Errorf("gold-2 lost its tag: %v", img.Tags)
		}
	}
}

// phoenix plan names, for a later stage, the newer image that waits for
// the tag a stage before it promotes, and for the stage its gate; it
// changes nothing.
func TestPlanShowsTheStages(t *testing.T) {
	env := simtest.Start(t, sim.Options{BootTime: sim.Fixed(30 * time.Millisecond), HealthDelay: sim.Fixed(10 * time.Millisecond)}, 0)
	t.Setenv("OS_CLIENT_CONFIG_FILE", env.CloudsFile)
	t.Setenv("OS_CLOUD", "")
	cfg := filepath.Join(t.TempDir(), "phoenix.yaml")
	conf := "cloud: phoenix-sim\ngroups:\n" + stageGroupYAML("staging", 2, "gold", "    promote: {tag: staged-ok, after: 1h}\n") + stageGroupYAML("prod", 4, "gold, staged-ok", "")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	v1 := env.Sim.AddImage(sim.Image{Name: "gold-1", Tags: []string{"gold", "staged-ok"}, Created: time.Now().Add(-time.Hour)})
	v2 := env.Sim.AddImage(sim.Image{Name: "gold-2", Tags: []string{"gold"}})
	env.Sim.ResetRequests()
	out, code := run(t, "plan", "--config", cfg)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"group staging: desired image gold-2 (" + v2.ID + ")",
		"PROMOTE with tag staged-ok: image " + short(v2.ID) + " waits: the group has not converged on the image yet",
		"group prod: desired image gold-1 (" + v1.ID + ")",
		"STAGE: image gold-2 (" + v2.ID + ") is waiting for tag staged-ok, which group staging adds once it has run it healthy for 1h",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	for _, r := range env.Sim.Requests() {
		if r.Method != "GET" && !strings.HasSuffix(r.Path, "/auth/tokens") {
			t.Errorf("plan sent %s %s: it must only read", r.Method, r.Path)
		}
	}
}
