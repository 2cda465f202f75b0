package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/blocker"
	"github.com/phoenix-ops/phoenix/controller/blocker/promtest"
	"github.com/phoenix-ops/phoenix/controller/daemon"
	"github.com/phoenix-ops/phoenix/controller/trigger"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// These tests steer a real phoenix daemon as an operator would — a
// maintenance window, an urgent patch, `phoenix hold` and `release`, a
// Prometheus alert — and look at what the simulated cloud does.

// steerGroup is the group web of count servers with the rollout given (a
// YAML flow mapping).
func steerGroup(count int, rollout string) string {
	return strings.Replace(daemonGroupYAML("web", count), "rollout: {max_surge: 2, min_ready: 30ms}", "rollout: "+rollout, 1)
}

// lookOften gives the fixture's daemons an interval of a second: a group
// whose replacements only wait for steering is looked at every interval
// (at most every 30 s), not every poll.
func lookOften(t *testing.T, f *restartFixture) {
	t.Helper()
	b, err := os.ReadFile(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.cfg, bytes.Replace(b, []byte("interval: 1h"), []byte("interval: 1s"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
}

// webStatus is the status of the daemon's group web.
func webStatus(t *testing.T, d *daemonProc) daemon.GroupStatus {
	t.Helper()
	for _, g := range d.status(t).Groups {
		if g.Group == "web" {
			return g
		}
	}
	return daemon.GroupStatus{}
}

// metricValue is the value of the gauge or counter name whose labels
// include want; -1 when there is no such series.
func metricValue(t *testing.T, d *daemonProc, name string, want map[string]string) float64 {
	t.Helper()
	f, ok := metricsOf(t, d.url)[name]
	if !ok {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		if m.GetGauge() != nil {
			return m.GetGauge().GetValue()
		}
		return m.GetCounter().GetValue()
	}
	return -1
}

// waitRounds waits until the daemon has reconciled web n more times.
func waitRounds(t *testing.T, d *daemonProc, n int) {
	t.Helper()
	count := func() float64 {
		return metricValue(t, d, "phoenix_reconciles_total", map[string]string{"group": "web", "result": "ok"})
	}
	from := count()
	waitFor(t, 30*time.Second, fmt.Sprintf("%d more rounds of the daemon", n), func() bool { return count() >= from+float64(n) })
}

// createsSince lists when the simulator received each server create at or
// after from.
func createsSince(s *sim.Sim, from time.Time) []time.Time {
	var out []time.Time
	for _, r := range s.Requests() {
		if r.Service == "compute" && r.Method == http.MethodPost && strings.HasSuffix(r.Path, "/servers") && !r.Time.Before(from) {
			out = append(out, r.Time)
		}
	}
	return out
}

// allOn says whether the group holds exactly n servers, all healthy on
// image.
func allOn(s *sim.Sim, n int, image string) bool {
	list := s.Servers()
	for _, srv := range list {
		if srv.ImageID != image || !srv.Healthy {
			return false
		}
	}
	return len(list) == n
}

// publish adds a newer gold image and tells the daemon.
func publish(t *testing.T, f *restartFixture, d *daemonProc, id string) sim.Image {
	t.Helper()
	img := f.env.Sim.AddImage(sim.Image{Name: "gold"})
	if code := send(t, d.url, f.secret, trigger.Event{ID: id, Type: trigger.TypeImagePublished}); code != http.StatusAccepted {
		t.Fatalf("image.published: HTTP %d", code)
	}
	return img
}

// staysDeferred checks, over a few of the daemon's rounds, that the group
// starts no server and keeps the servers it has, while status says why.
func staysDeferred(t *testing.T, f *restartFixture, d *daemonProc, steering string) {
	t.Helper()
	before, from := idsOf(f.env.Sim), time.Now()
	waitRounds(t, d, 5)
	if c := createsSince(f.env.Sim, from); len(c) > 0 {
		t.Fatalf("%d server(s) created while replacements wait (%s)", len(c), steering)
	}
	if got := idsOf(f.env.Sim); !slices.Equal(got, before) {
		t.Fatalf("servers changed while replacements wait: %v, were %v", got, before)
	}
	if st := webStatus(t, d).Status; !strings.HasPrefix(st.Steering, steering) || st.Deferred != len(before) {
		t.Fatalf("status: steering %q, %d deferred; want %q…, %d deferred", st.Steering, st.Deferred, steering, len(before))
	}
}

// fakeClockFixture builds phoenix with the clock a test moves and returns
// the fixture and the means to move it.
func fakeClockFixture(t *testing.T, opts sim.Options, group string) (*restartFixture, func(ahead time.Duration)) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "phoenix")
	if out, err := exec.Command("go", "build", "-tags", "fakeclock", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build phoenix: %v\n%s", err, out)
	}
	f := newRestartFixture(t, bin, opts, group)
	lookOften(t, f)
	clockFile := filepath.Join(t.TempDir(), "clock")
	setClock := func(ahead time.Duration) {
		if err := os.WriteFile(clockFile, []byte(ahead.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	setClock(0)
	f.extra = []string{"PHOENIX_FAKE_CLOCK=" + clockFile}
	return f, setClock
}

// windowAhead is a daily one-hour window in UTC opening about three hours
// from now, and when it next opens.
func windowAhead() (string, time.Time) {
	opens := time.Now().UTC().Add(3 * time.Hour).Truncate(time.Minute)
	closes := opens.Add(time.Hour)
	return fmt.Sprintf("daily %s-%s UTC", opens.Format("15:04"), closes.Format("15:04")), opens
}

var fastBoots = sim.Options{BootTime: sim.Fixed(50 * time.Millisecond), HealthDelay: sim.Fixed(20 * time.Millisecond)}

// An image published outside the group's only window waits for it: status
// says so and when it opens, nothing is created; when the daemon's clock
// reaches the window, the group rolls out.
func TestSteerWindowOpensDeferredRollout(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	window, opens := windowAhead()
	f, setClock := fakeClockFixture(t, fastBoots, steerGroup(3, fmt.Sprintf("{max_surge: 1, min_ready: 30ms, windows: [%q]}", window)))
	f.env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	d := f.start(t)
	// Building the group is no replacement: it does not wait.
	waitFor(t, 60*time.Second, "the first build", func() bool { return convergedOn(d.status(t), 1, "") })

	patched := publish(t, f, d, "img-new")
	waitFor(t, 30*time.Second, "the deferral in status", func() bool {
		g := webStatus(t, d)
		return g.DesiredImage.ID == patched.ID && g.Status.Deferred == 3
	})
	g := webStatus(t, d)
	if want := "outside the maintenance windows; the next opens at " + opens.Format(time.RFC3339); g.Status.Steering != want {
		t.Errorf("steering %q, want %q", g.Status.Steering, want)
	}
	if !g.Status.NextWindow.Equal(opens) {
		t.Errorf("next_window %v, want %v", g.Status.NextWindow, opens)
	}
	if !g.InProgress || g.Status.Converged {
		t.Errorf("a group with replacements waiting shows converged")
	}
	if v := metricValue(t, d, "phoenix_rollout_steered", map[string]string{"group": "web", "cause": "window"}); v != 1 {
		t.Errorf("phoenix_rollout_steered{cause=window} = %v, want 1", v)
	}
	staysDeferred(t, f, d, "outside the maintenance windows")

	// A minute into the window, by the daemon's clock.
	setClock(time.Until(opens.Add(time.Minute)))
	waitFor(t, 60*time.Second, "the rollout in the window", func() bool {
		return convergedOn(d.status(t), 1, patched.ID) && allOn(f.env.Sim, 3, patched.ID)
	})
	if g := webStatus(t, d); g.Status.Steering != "" || !g.Status.NextWindow.IsZero() || g.Status.Deferred != 0 {
		t.Errorf("in the window: steering %q, next window %v, %d deferred; want none", g.Status.Steering, g.Status.NextWindow, g.Status.Deferred)
	}
}

// Outside the window a security patch waits like any drift, unless it is
// sent as urgent: then the group rolls out at once.
func TestSteerUrgentPatchSkipsWindow(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	window, _ := windowAhead()
	f := newRestartFixture(t, buildPhoenix(t), fastBoots, steerGroup(3, fmt.Sprintf("{max_surge: 1, min_ready: 30ms, windows: [%q]}", window)))
	lookOften(t, f)
	f.env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	d := f.start(t)
	waitFor(t, 60*time.Second, "the first build", func() bool { return convergedOn(d.status(t), 1, "") })

	patched := publish(t, f, d, "img-new")
	waitFor(t, 30*time.Second, "the deferral in status", func() bool { return webStatus(t, d).Status.Deferred == 3 })
	patch := trigger.Event{ID: "patch-1", Type: trigger.TypeSecurityPatch, Groups: []string{"web"}, Reason: "CVE-2026-2001"}
	if code := send(t, d.url, f.secret, patch); code != http.StatusAccepted {
		t.Fatalf("security.patch: HTTP %d", code)
	}
	staysDeferred(t, f, d, "outside the maintenance windows")

	patch.ID, patch.Reason, patch.Urgent = "patch-2", "CVE-2026-2002 (exploited)", true
	if code := send(t, d.url, f.secret, patch); code != http.StatusAccepted {
		t.Fatalf("urgent security.patch: HTTP %d", code)
	}
	waitFor(t, 60*time.Second, "the urgent rollout", func() bool {
		return convergedOn(d.status(t), 1, patched.ID) && allOn(f.env.Sim, 3, patched.ID)
	})
	// The window is still closed: steering says so, with nothing waiting.
	if st := webStatus(t, d).Status; !strings.HasPrefix(st.Steering, "outside") || st.Deferred != 0 {
		t.Errorf("after the urgent rollout: steering %q, %d deferred; want outside the windows, none deferred", st.Steering, st.Deferred)
	}
}

// runPhoenix runs the phoenix binary on the fixture's cloud and returns
// its output, failing the test when it fails.
func runPhoenix(t *testing.T, f *restartFixture, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.bin, args...)
	cmd.Env = append(os.Environ(), "OS_CLIENT_CONFIG_FILE="+f.env.CloudsFile, "OS_CLOUD=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("phoenix %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// `phoenix hold` is recorded on the servers: a daemon SIGKILLed and started
// again still holds the group, until `phoenix release`.
func TestSteerHoldSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	f := newRestartFixture(t, buildPhoenix(t), fastBoots, steerGroup(3, "{max_surge: 1, min_ready: 30ms}"))
	lookOften(t, f)
	f.env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	d := f.start(t)
	waitFor(t, 60*time.Second, "the first build", func() bool { return convergedOn(d.status(t), 1, "") })

	out := runPhoenix(t, f, "hold", "--config", f.cfg, "--group", "web", "--reason", "launch freeze", "--by", "alice")
	if !strings.Contains(out, "held by alice (recorded on 3 servers)") {
		t.Errorf("phoenix hold said:\n%s", out)
	}
	patched := publish(t, f, d, "img-new")
	held := "held: by alice at "
	waitFor(t, 30*time.Second, "the hold in status", func() bool {
		g := webStatus(t, d)
		return g.DesiredImage.ID == patched.ID && g.Status.Deferred == 3 && strings.HasPrefix(g.Status.Steering, held)
	})
	if st := webStatus(t, d).Status; !strings.HasSuffix(st.Steering, ": launch freeze") {
		t.Errorf("steering %q, want it to end with the reason", st.Steering)
	}
	staysDeferred(t, f, d, held)

	d.kill(t)
	d = f.start(t)
	waitFor(t, 30*time.Second, "the new daemon's look at the group", func() bool {
		g := webStatus(t, d)
		return g.DesiredImage.ID == patched.ID && g.Status.Deferred == 3
	})
	staysDeferred(t, f, d, held)
	if v := metricValue(t, d, "phoenix_rollout_steered", map[string]string{"group": "web", "cause": "held"}); v != 1 {
		t.Errorf("phoenix_rollout_steered{cause=held} = %v after the restart, want 1", v)
	}

	out = runPhoenix(t, f, "release", "--config", f.cfg, "--group", "web")
	if !strings.Contains(out, "released (on 3 servers)") {
		t.Errorf("phoenix release said:\n%s", out)
	}
	waitFor(t, 60*time.Second, "the rollout after the release", func() bool {
		return convergedOn(d.status(t), 1, patched.ID) && allOn(f.env.Sim, 3, patched.ID)
	})
	for _, s := range f.env.Sim.Servers() {
		if s.Metadata[controller.MetaHeld] != "" {
			t.Errorf("server %s still records the hold: %v", s.Name, s.Metadata)
		}
	}
}

// promBlocker is the rollout setting of a Prometheus blocker on the test
// alarm.
func promBlocker(url string) string {
	return fmt.Sprintf("blockers: {prometheus: {url: %q, query: '%s', timeout: 2s}}", url, promtest.Query)
}

// scraped says whether the Prometheus at url has scraped the test's target.
func scraped(t *testing.T, url string) bool {
	t.Helper()
	resp, err := http.Get(url + "/api/v1/query?query=" + neturl.QueryEscape(`up{job="phoenix-test"} == 1`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var answer struct {
		Data struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		t.Fatalf("query Prometheus: %v", err)
	}
	return len(answer.Data.Result) > 0
}

// An alert that fires mid-rollout pauses it: what is under way finishes,
// nothing new starts, the old servers stay; when it clears, the rollout
// goes on to the end.
func TestSteerBlockerPausesRollout(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	prom := promtest.Start(t)
	// A boot takes 3 s and one server is replaced at a time: the rollout of
	// six takes about 20 s, and the alert lands in its middle (firing 1-2
	// s after Fire, seen by the daemon up to 5 s later).
	f := newRestartFixture(t, buildPhoenix(t), sim.Options{BootTime: sim.Fixed(3 * time.Second), HealthDelay: sim.Fixed(20 * time.Millisecond)},
		steerGroup(6, "{max_surge: 1, max_unavailable: 0, min_ready: 30ms, "+promBlocker(prom.URL())+"}"))
	lookOften(t, f)
	f.env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	d := f.start(t)
	waitFor(t, 60*time.Second, "the first build", func() bool { return convergedOn(d.status(t), 1, "") })
	// Prometheus's first scrape comes 5-6 s after its start; an alert fired
	// before it would land late in the rollout.
	waitFor(t, promtest.Patience, "Prometheus's first scrape", func() bool { return scraped(t, prom.URL()) })

	mon := f.env.Sim.Monitor(time.Millisecond, groupOfServer)
	patched := publish(t, f, d, "img-new")
	waitFor(t, 30*time.Second, "the first server up on the new image", func() bool {
		return slices.ContainsFunc(onImage(f.env.Sim, patched.ID), func(s sim.Server) bool { return s.Healthy })
	})
	prom.Fire()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := prom.WaitFiring(ctx); err != nil {
		t.Fatal(err)
	}
	// The daemon reuses a verdict for 5 s. A round publishes its status
	// when it ends, and the next starts after: once status shows the block
	// (blockedAt is after the answer that shows it), no create may follow.
	var (
		blockedAt time.Time
		booting   []string // new servers under way at the block
	)
	waitFor(t, 20*time.Second, "the block in status", func() bool {
		blocked := strings.HasPrefix(webStatus(t, d).Status.Steering, "blocked: ")
		blockedAt, booting = time.Now(), nil
		for _, s := range onImage(f.env.Sim, patched.ID) {
			if !s.Healthy {
				booting = append(booting, s.ID)
			}
		}
		return blocked
	})
	st := webStatus(t, d).Status
	if want := "blocked: Prometheus query " + promtest.Query; !strings.HasPrefix(st.Steering, want) || !strings.Contains(st.Steering, "returns 1 series") {
		t.Errorf("steering %q, want %q… returns 1 series", st.Steering, want)
	}
	// What was under way finishes: six servers, each healthy, none
	// booting, the old ones the daemon still needs kept.
	var settled []string
	waitFor(t, 30*time.Second, "the replacements under way to finish", func() bool {
		list := f.env.Sim.Servers()
		for _, s := range list {
			if !s.Healthy || s.Deleting {
				return false
			}
		}
		settled = idsOf(f.env.Sim)
		return len(list) == 6 && webStatus(t, d).Status.Deferred == 6-len(onImage(f.env.Sim, patched.ID))
	})
	for _, id := range booting {
		if !slices.Contains(settled, id) {
			t.Errorf("server %s, booting when the block came, is gone: what was under way should finish", id)
		}
	}
	waitRounds(t, d, 5)
	if late := createsSince(f.env.Sim, blockedAt); len(late) > 0 {
		t.Errorf("%d server(s) created after status showed the block at %v (first at %v)", len(late), blockedAt.Format(time.StampMilli), late[0].Format(time.StampMilli))
	}
	if got := idsOf(f.env.Sim); !slices.Equal(got, settled) {
		t.Errorf("servers changed while blocked: %v, were %v", got, settled)
	}
	newOnes := len(onImage(f.env.Sim, patched.ID))
	if newOnes == 0 || newOnes == 6 {
		t.Fatalf("%d of 6 servers on the new image while blocked: the alert did not land mid-rollout", newOnes)
	}
	t.Logf("paused with %d of 6 servers on the new image", newOnes)

	prom.Clear()
	if err := prom.WaitCleared(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the rollout to resume and finish", func() bool {
		return convergedOn(d.status(t), 1, patched.ID) && allOn(f.env.Sim, 6, patched.ID)
	})
	if ext := mon.Stop()["web"]; ext.MinHealthy < 6 || ext.MaxTotal > 7 {
		t.Errorf("across the pause: healthy fell to %d (floor 6), total reached %d (ceiling 7)", ext.MinHealthy, ext.MaxTotal)
	}
}

// A Prometheus that cannot be asked blocks (fail safe), and says so in
// status and in the metrics.
func TestSteerPrometheusDownBlocks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	prom := promtest.Start(t)
	f := newRestartFixture(t, buildPhoenix(t), fastBoots, steerGroup(3, "{max_surge: 1, min_ready: 30ms, "+promBlocker(prom.URL())+"}"))
	lookOften(t, f)
	f.env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	d := f.start(t)
	waitFor(t, 60*time.Second, "the first build", func() bool { return convergedOn(d.status(t), 1, "") })

	prom.Stop()
	// A converged group is not looked at again until the image event, and
	// the verdict its last round got (not blocked) is reused for
	// DefaultMinInterval: the event must come after that.
	last := webStatus(t, d).LastReconcile
	waitFor(t, 30*time.Second, "the last verdict to age", func() bool {
		return time.Since(last) > blocker.DefaultMinInterval+100*time.Millisecond
	})
	patched := publish(t, f, d, "img-new")
	waitFor(t, 30*time.Second, "the deferral in status", func() bool {
		g := webStatus(t, d)
		return g.DesiredImage.ID == patched.ID && g.Status.Deferred == 3
	})
	st := webStatus(t, d).Status
	if want := "blocked: Prometheus query " + promtest.Query; !strings.HasPrefix(st.Steering, want) || !strings.Contains(st.Steering, "cannot be answered, so it blocks (fail safe)") {
		t.Errorf("steering %q, want %q… cannot be answered, so it blocks (fail safe)…", st.Steering, want)
	}
	staysDeferred(t, f, d, "blocked: ")
	for cause, want := range map[string]float64{"blocked": 1, "held": 0, "window": 0} {
		if v := metricValue(t, d, "phoenix_rollout_steered", map[string]string{"group": "web", "cause": cause}); v != want {
			t.Errorf("phoenix_rollout_steered{cause=%s} = %v, want %v", cause, v, want)
		}
	}
	if v := metricValue(t, d, "phoenix_servers_deferred", map[string]string{"group": "web"}); v != 3 {
		t.Errorf("phoenix_servers_deferred = %v, want 3", v)
	}
	if n := len(onImage(f.env.Sim, patched.ID)); n != 0 {
		t.Errorf("%d servers on the new image while Prometheus is down", n)
	}
}
