package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/trigger"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// These tests kill a real phoenix daemon with SIGKILL and start another:
// what a decision needs must come back from the servers, not from the
// memory of the process that died.

// restartFixture is a simulator, a configuration, and the means to start
// daemons on them one after the other.
type restartFixture struct {
	env    *simtest.Env
	bin    string
	cfg    string
	secret []byte
	extra  []string // environment of each daemon
}

func newRestartFixture(t *testing.T, bin string, opts sim.Options, group string) *restartFixture {
	t.Helper()
	env := simtest.Start(t, opts, 0)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "webhook.key")
	secret := []byte("s3cret-for-the-restarts-0123456789")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "phoenix.yaml")
	if err := os.WriteFile(cfg, []byte(daemonConfig(secretFile, "", group)), 0o600); err != nil {
		t.Fatal(err)
	}
	return &restartFixture{env: env, bin: bin, cfg: cfg, secret: secret}
}

func (f *restartFixture) start(t *testing.T) *daemonProc {
	t.Helper()
	for _, kv := range f.extra {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	return startDaemonProc(t, f.bin, f.cfg, f.env.CloudsFile)
}

// kill ends a daemon with SIGKILL, as a crash or the OOM killer would.
func (p *daemonProc) kill(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not die")
	}
}

// group is the status of the one group a daemon runs.
func (p *daemonProc) group(t *testing.T) daemonGroupStatus {
	t.Helper()
	st := p.status(t)
	if len(st.Groups) != 1 {
		return daemonGroupStatus{}
	}
	g := st.Groups[0]
	return daemonGroupStatus{halted: g.Halted, inProgress: g.InProgress, at: g.LastReconcile, converged: g.Status.Converged, canary: g.Status.Canary}
}

type daemonGroupStatus struct {
	halted                string
	inProgress, converged bool
	canary                bool
	at                    time.Time
}

// onImage lists the group's servers on image.
func onImage(s *sim.Sim, image string) []sim.Server {
	var out []sim.Server
	for _, srv := range s.Servers() {
		if srv.ImageID == image {
			out = append(out, srv)
		}
	}
	return out
}

// failuresRecorded reads the failure count the group's servers record for
// image.
func failuresRecorded(s *sim.Sim, image string) int {
	n := 0
	for _, srv := range s.Servers() {
		f := strings.Fields(srv.Metadata[controller.MetaProgress])
		if len(f) == 3 && strings.HasPrefix(f[0], image+"@") {
			if c, err := strconv.Atoi(f[1]); err == nil && c > n {
				n = c
			}
		}
	}
	return n
}

// A bad image with max_failures 3: the daemon is killed after two failed
// boots, and the next one halts after exactly one more — not after a fresh
// budget of three.
func TestRestartKeepsTheFailureBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	group := strings.Replace(daemonGroupYAML("web", 3), "rollout: {max_surge: 2, min_ready: 30ms}",
		"rollout: {max_surge: 1, max_unavailable: 0, min_ready: 30ms, max_failures: 3, progress_deadline: 1h}", 1)
	// A boot takes a second to fail: the kill lands between two failures.
	f := newRestartFixture(t, buildPhoenix(t), sim.Options{BootTime: sim.Fixed(time.Second), HealthDelay: sim.Fixed(20 * time.Millisecond)}, group)
	f.env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	d := f.start(t)
	waitFor(t, 60*time.Second, "the first build", func() bool { return convergedOn(d.status(t), 1, "") })
	old := idsOf(f.env.Sim)

	bad := f.env.Sim.AddImage(sim.Image{Name: "gold", BootFails: true})
	var (
		mu   sync.Mutex
		seen = map[string]bool{} // every server ever booted from the bad image
	)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			for _, s := range onImage(f.env.Sim, bad.ID) {
				mu.Lock()
				seen[s.ID] = true
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond): // the sampling period
			}
		}
	}()
	if code := send(t, d.url, f.secret, trigger.Event{ID: "img-bad", Type: trigger.TypeImagePublished}); code != http.StatusAccepted {
		t.Fatalf("image.published: HTTP %d", code)
	}
	waitFor(t, 60*time.Second, "two failures recorded on the servers", func() bool { return failuresRecorded(f.env.Sim, bad.ID) >= 2 })
	d.kill(t)
	if n := failuresRecorded(f.env.Sim, bad.ID); n != 2 {
		t.Fatalf("%d failures recorded when the daemon died, want 2 (the scenario needs the kill between two failures)", n)
	}

	d = f.start(t)
	waitFor(t, 60*time.Second, "the halt", func() bool { return d.group(t).halted != "" })
	close(stop)
	<-sampled
	mu.Lock()
	booted := len(seen)
	mu.Unlock()
	if booted != 3 {
		t.Errorf("%d servers booted from the bad image, want exactly 3: two before the kill, one after", booted)
	}
	if n := failuresRecorded(f.env.Sim, bad.ID); n != 3 {
		t.Errorf("%d failures recorded, want 3", n)
	}
	if st := d.group(t); !strings.Contains(st.halted, "3 new servers") {
		t.Errorf("halt %q, want it to count 3 new servers", st.halted)
	}
	waitFor(t, 30*time.Second, "the failed servers gone", func() bool { return len(onImage(f.env.Sim, bad.ID)) == 0 })
	if got := idsOf(f.env.Sim); !slices.Equal(got, old) {
		t.Errorf("servers after the halt %v, want the old ones %v", got, old)
	}
}

// A canary bakes for 10 minutes on the daemon's clock (moved by the test):
// killed at minute 6, the next daemon goes on at minute 10, not 16 — the
// bake runs from the canary's ready record, not from the new process's
// first look at its health.
func TestRestartKeepsTheCanaryBake(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	bin := filepath.Join(t.TempDir(), "phoenix")
	if out, err := exec.Command("go", "build", "-tags", "fakeclock", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build phoenix: %v\n%s", err, out)
	}
	group := strings.Replace(daemonGroupYAML("web", 3), "rollout: {max_surge: 2, min_ready: 30ms}",
		"rollout: {max_surge: 1, min_ready: 30ms, canary: 1, canary_bake: 10m, progress_deadline: 1h}", 1)
	f := newRestartFixture(t, bin, sim.Options{BootTime: sim.Fixed(50 * time.Millisecond), HealthDelay: sim.Fixed(20 * time.Millisecond)}, group)
	clockFile := filepath.Join(t.TempDir(), "clock")
	setClock := func(ahead time.Duration) {
		if err := os.WriteFile(clockFile, []byte(ahead.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	setClock(0)
	f.extra = []string{"PHOENIX_FAKE_CLOCK=" + clockFile}
	f.env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	d := f.start(t)
	waitFor(t, 60*time.Second, "the first build", func() bool { return convergedOn(d.status(t), 1, "") })

	patched := f.env.Sim.AddImage(sim.Image{Name: "gold"})
	if code := send(t, d.url, f.secret, trigger.Event{ID: "img-new", Type: trigger.TypeImagePublished}); code != http.StatusAccepted {
		t.Fatalf("image.published: HTTP %d", code)
	}
	var readyAt time.Time
	waitFor(t, 60*time.Second, "the canary recorded ready", func() bool {
		for _, s := range onImage(f.env.Sim, patched.ID) {
			if at, err := time.Parse(time.RFC3339Nano, s.Metadata[controller.MetaReadyAt]); err == nil {
				readyAt = at
				return true
			}
		}
		return false
	})
	// Six minutes into the bake, by the daemon's clock.
	setClock(6 * time.Minute)
	waitFor(t, 30*time.Second, "a round six minutes in", func() bool { return d.group(t).at.After(readyAt.Add(6 * time.Minute)) })
	if n := len(onImage(f.env.Sim, patched.ID)); n != 1 {
		t.Fatalf("%d servers on the new image six minutes into a ten-minute bake, want the canary alone", n)
	}
	d.kill(t)

	d = f.start(t)
	waitFor(t, 30*time.Second, "the new daemon's rounds", func() bool {
		st := d.group(t)
		return st.canary && st.at.After(readyAt.Add(6*time.Minute))
	})
	if n := len(onImage(f.env.Sim, patched.ID)); n != 1 {
		t.Fatalf("%d servers on the new image after the restart, six minutes into the bake, want the canary alone", n)
	}
	// Minute 10 (and a second): the bake the canary recorded is over.
	setClock(10*time.Minute + time.Second)
	waitFor(t, 30*time.Second, "the rest of the rollout at minute 10", func() bool { return len(onImage(f.env.Sim, patched.ID)) > 1 })
	waitFor(t, 60*time.Second, "the rollout done", func() bool { return convergedOn(d.status(t), 1, patched.ID) })
}

// A security patch, captured and replayed — the same body and signature,
// within its five minutes — to a daemon restarted after the first rollout
// finished, replaces nothing: it designates the servers created before it
// was signed, and every one of those is gone.
func TestReplayedPatchAfterRestartReplacesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	f := newRestartFixture(t, buildPhoenix(t), sim.Options{BootTime: sim.Fixed(50 * time.Millisecond), HealthDelay: sim.Fixed(20 * time.Millisecond)},
		daemonGroupYAML("web", 3))
	f.env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	d := f.start(t)
	waitFor(t, 60*time.Second, "the first build", func() bool { return convergedOn(d.status(t), 1, "") })
	before := idsOf(f.env.Sim)

	// The request a pipeline sent, as an attacker on the path would keep it.
	now := time.Now()
	body, err := json.Marshal(trigger.Event{ID: "patch-1", Type: trigger.TypeSecurityPatch, Groups: []string{"web"}, Reason: "CVE-2026-1111", Time: now})
	if err != nil {
		t.Fatal(err)
	}
	ts, sig := trigger.Sign(f.secret, now, body)
	post := func(url string) int {
		req, err := http.NewRequest(http.MethodPost, url+"/v1/events", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(trigger.HeaderTimestamp, ts)
		req.Header.Set(trigger.HeaderSignature, sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(d.url); code != http.StatusAccepted {
		t.Fatalf("the patch: HTTP %d", code)
	}
	waitFor(t, 60*time.Second, "every server replaced", func() bool {
		after := idsOf(f.env.Sim)
		if len(after) != 3 || !convergedOn(d.status(t), 1, "") {
			return false
		}
		for _, id := range after {
			if slices.Contains(before, id) {
				return false
			}
		}
		return true
	})
	patched := idsOf(f.env.Sim)
	d.kill(t)

	d = f.start(t)
	waitFor(t, 30*time.Second, "the restarted daemon ready", func() bool { return convergedOn(d.status(t), 1, "") })
	f.env.Sim.ResetRequests()
	sent := time.Now()
	if code := post(d.url); code != http.StatusAccepted {
		t.Fatalf("the replay to the restarted daemon: HTTP %d, want 202 (its replay memory died with the first)", code)
	}
	// What the event designates is marked on the servers before the 202.
	for _, s := range f.env.Sim.Servers() {
		if s.Metadata[controller.MetaRebuild] != "" {
			t.Errorf("the replay marked %s for rebuild: %s", s.Name, s.Metadata[controller.MetaRebuild])
		}
	}
	// The round the event woke, and nothing changed.
	waitFor(t, 30*time.Second, "a round after the replay", func() bool { return d.group(t).at.After(sent) })
	if got := idsOf(f.env.Sim); !slices.Equal(got, patched) {
		t.Errorf("servers after the replay %v, want the same %v", got, patched)
	}
	for _, r := range f.env.Sim.Requests() {
		if r.Method == http.MethodDelete || r.Method == http.MethodPost && strings.HasSuffix(r.Path, "/servers") {
			t.Errorf("the replay led to %s %s", r.Method, r.Path)
		}
	}
}

// idsOf lists the servers' IDs, sorted.
func idsOf(s *sim.Sim) []string {
	var out []string
	for _, srv := range s.Servers() {
		out = append(out, srv.ID)
	}
	slices.Sort(out)
	return out
}

// An image that passes its gate and fails after it, with on_failure
// rollback: the daemon is killed once the rollback is recorded and before
// the group is back on the image it ran before; the next daemon reads the
// rollback from the servers and finishes it. It never boots the rejected
// image again.
func TestRestartMidRollbackGoesBack(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	group := strings.Replace(daemonGroupYAML("web", 3), "rollout: {max_surge: 2, min_ready: 30ms}",
		"rollout: {max_surge: 1, max_unavailable: 0, min_ready: 30ms, max_failures: 2, watch: 1m, on_failure: rollback, progress_deadline: 1h}", 1)
	// Failures count from the moment the application is up.
	group = strings.Replace(group, "grace: 30s", "grace: 0s", 1)
	// A boot takes a second: a rollback of three servers, one at a time,
	// leaves the kill a few seconds to land in.
	f := newRestartFixture(t, buildPhoenix(t), sim.Options{BootTime: sim.Fixed(time.Second), HealthDelay: sim.Fixed(20 * time.Millisecond)}, group)
	gold := f.env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	d := f.start(t)
	waitFor(t, 60*time.Second, "the first build", func() bool { return convergedOn(d.status(t), 1, gold.ID) })

	leaky := f.env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Minute), FailsAfter: time.Second})
	var (
		mu     sync.Mutex
		seen   = map[string]time.Time{} // every server ever booted from the leaky image, and its create
		killed time.Time                // when the dead daemon's last request was answered
	)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			for _, s := range onImage(f.env.Sim, leaky.ID) {
				mu.Lock()
				seen[s.ID] = s.Created
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond): // the sampling period; a boot takes a second
			}
		}
	}()
	if code := send(t, d.url, f.secret, trigger.Event{ID: "img-leaky", Type: trigger.TypeImagePublished}); code != http.StatusAccepted {
		t.Fatalf("image.published: HTTP %d", code)
	}
	// The rollback is under way: recorded on the servers, some of them
	// still on the rejected image.
	rollingBack := func() bool {
		recorded, back := false, 0
		for _, s := range f.env.Sim.Servers() {
			if strings.HasPrefix(s.Metadata[controller.MetaRejected], leaky.ID+"@") {
				recorded = true
			}
			if s.ImageID == gold.ID && s.Healthy {
				back++
			}
		}
		return recorded && back < 3
	}
	waitFor(t, 90*time.Second, "the rollback recorded on the servers", rollingBack)
	d.kill(t)
	waitFor(t, 10*time.Second, "the dead daemon's requests answered", func() bool { return f.env.Sim.InFlight() == 0 })
	mu.Lock()
	killed = time.Now()
	mu.Unlock()
	if !rollingBack() {
		t.Fatal("the group was back on the old image when the daemon died: the scenario needs the kill mid-rollback")
	}
	t.Logf("killed mid-rollback with %d server(s) on the rejected image", len(onImage(f.env.Sim, leaky.ID)))
	// The rollback on record, as the dead daemon left it.
	record := ""
	for _, s := range f.env.Sim.Servers() {
		if v := s.Metadata[controller.MetaRejected]; strings.HasPrefix(v, leaky.ID+"@") {
			record = v
		}
	}
	f.env.Sim.ResetRequests()

	d = f.start(t)
	t.Cleanup(func() {
		if t.Failed() {
			st, _ := json.Marshal(d.status(t))
			t.Logf("status: %s", st)
			for _, s := range f.env.Sim.Servers() {
				t.Logf("server %s image %s status %s healthy %v deleting %v metadata %v", s.Name, s.ImageID, s.Status, s.Healthy, s.Deleting, s.Metadata)
			}
		}
	})
	waitFor(t, 90*time.Second, "the group back on the old image", func() bool {
		if !convergedOn(d.status(t), 1, gold.ID) {
			return false
		}
		list := f.env.Sim.Servers()
		for _, s := range list {
			if s.ImageID != gold.ID || !s.Healthy {
				return false
			}
		}
		return len(list) == 3
	})
	close(stop)
	<-sampled

	if st := d.status(t).Groups[0]; !strings.Contains(st.RolledBack, leaky.ID) || st.DesiredImage.ID != gold.ID {
		t.Errorf("status after the restart: desired image %s, rolled back %q; want %s desired and the rejected %s named",
			st.DesiredImage.ID, st.RolledBack, gold.ID, leaky.ID)
	}
	// The new daemon went on with the rollback on record: it did not
	// decide it anew (the failure count on the servers would also reject
	// the image, with a new record and a second notice).
	for _, s := range f.env.Sim.Servers() {
		if v := s.Metadata[controller.MetaRejected]; v != record {
			t.Errorf("server %s records the rollback %q, want the one on record before the kill, %q", s.Name, v, record)
		}
	}
	mu.Lock()
	for id, created := range seen {
		if created.After(killed) {
			t.Errorf("server %s booted from the rejected image after the kill (created %v, the kill at %v)", id, created, killed)
		}
	}
	mu.Unlock()
	// Every create after the kill was of the old image: the new servers
	// seen are as many as the creates sent, and all on it.
	creates := 0
	for _, r := range f.env.Sim.Requests() {
		if r.Service == "compute" && r.Method == http.MethodPost && strings.HasSuffix(r.Path, "/servers") {
			creates++
		}
	}
	fresh := 0
	for _, s := range f.env.Sim.Servers() {
		if s.Created.After(killed) {
			fresh++
		}
	}
	if creates != fresh {
		t.Errorf("%d creates after the kill, %d servers created after it are left (all on %s)", creates, fresh, gold.ID)
	}
	t.Logf("the new daemon sent %d create(s)", creates)
}
