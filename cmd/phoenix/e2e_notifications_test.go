package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/daemon"
	"github.com/phoenix-ops/phoenix/provisioner"
	"github.com/phoenix-ops/phoenix/provisioner/openstack"
)

// The acceptance bounds of the notifications on the development cloud: a
// server stopped behind Phoenix's back is acted on within stopReaction of
// the stop, and a new gold image has its first server created within
// publishReaction of its publication — with an interval and a poll of an
// hour, so that only a notification can explain either.
//
// A stopped server is healed at once (Nova's word needs no heal_after),
// so the group's health check is the one the other end-to-end tests use.
const (
	stopReaction    = 2 * time.Second
	publishReaction = time.Second
)

// TestEndToEndNotificationsOnDevcloud runs a real phoenix daemon that
// listens to the development cloud's RabbitMQ, with an interval and a
// poll of an hour: a group at rest is looked at only when the cloud says
// something happened. It stops a server of the group behind Phoenix's
// back, then publishes a new gold image, and times from each until
// Phoenix acts, as seen on the cloud itself.
func TestEndToEndNotificationsOnDevcloud(t *testing.T) {
	amqpFile := os.Getenv("PHOENIX_DEVCLOUD_AMQP")
	if os.Getenv("PHOENIX_DEVCLOUD_CLOUDS") != "" && amqpFile == "" {
		t.Skip("GAP: the real cloud's broker is not configured: set PHOENIX_DEVCLOUD_AMQP to a copy of examples/devcloud/up.sh's amqp.url")
	}
	run := startDevcloudRun(t, "e2e-notif")
	ctx, cloud, glance, group, imageName, tag := run.ctx, run.cloud, run.glance, run.group, run.image, run.tag
	password := amqpPassword(t, amqpFile)

	// The images go when the test ends, after the daemon has stopped: an
	// image deleted under a running daemon would start a rollout back.
	var published []string
	t.Cleanup(func() {
		for _, id := range published {
			_ = images.Delete(context.Background(), glance, id).ExtractErr()
		}
	})
	imageA, _ := publishImageTimed(t, ctx, glance, imageName)
	published = append(published, imageA)

	// The queue is the test's own (the user may only use queues named
	// phoenix…), dropped by the broker a minute after the daemon stops.
	queue := "phoenix-e2e-" + uuid.NewString()[:8]
	cfg := filepath.Join(t.TempDir(), "phoenix.yaml")
	yaml := fmt.Sprintf(`cloud: devcloud
controller:
  interval: 1h
  notifications:
    amqp: {url_file: %s, queue: %s, queue_expires: 1m}
groups:
  - name: %s
    count: 2
    image: {name: %s, newest: true}
    flavor: m1.small
    networks: [phoenix-net]
    rollout: {max_surge: 1, min_ready: 1s}
    health:
      http: {port: 18080, path: /healthz}
      interval: 1s
      timeout: 1s
      healthy_threshold: 2
      grace: 60s
`, amqpFile, queue, group, imageName)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	// --poll is the wait of a group in a rollout, controller.interval
	// that of a group at rest and of the image watch: an hour each. What
	// else wakes a group is a health change (none here: the responder
	// answers for a stopped server as for any other) and the plan's own
	// requeue (min_ready), which only follows a look the group
	// already took: the first look at the stopped server and at the new
	// image can only come from a notification. The rollouts, too, are
	// carried by the notifications (ACTIVE, deleted) and health changes.
	d := startLoggedDaemon(t, run.bin, cfg, run.cloudsFile, "--poll", "1h", "--log-level", "debug")

	// 1. Connected and converged.
	waitFor(t, 5*time.Minute, "the daemon connected to the broker and the group built", func() bool {
		st := d.status(t)
		n := st.Notifications
		return n != nil && n.Connected && len(n.Unbound) == 0 && groupAtRest(st, imageA) &&
			onNova(t, ctx, cloud, tag, 2, imageA)
	})
	first := groupServers(t, ctx, cloud, tag)
	assertGroup(t, first, 2, imageA, group)
	if t.Failed() {
		t.FailNow()
	}

	// 2. A server stopped behind Phoenix's back.
	victim := first[0]
	before := map[string]bool{}
	for _, s := range first {
		before[s.ID] = true
		if s.Metadata[controller.MetaPhase] != "" {
			t.Fatalf("server %s has phase %q at rest", s.Name, s.Metadata[controller.MetaPhase])
		}
	}
	if err := cloud.StopServer(ctx, victim.ID); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	var what string
	notBefore, seen := watchNova(t, ctx, cloud, tag, time.Minute, "Phoenix acting on the stopped server", func(list []provisioner.Server) bool {
		what = actedOnStopped(list, victim.ID, before)
		return what != ""
	})
	stopLatency := seen.Sub(stopped)
	// When the daemon heard of the stop (its debug log).
	for _, l := range d.logLines(victim.ID) {
		at, err := time.Parse("2006-01-02T15:04:05.000Z0700", strings.Fields(l + " x")[0])
		if err == nil && strings.Contains(l, "woken by the cloud") && strings.Contains(l, "power_off.end") {
			t.Logf("the daemon was woken by %s %.2fs after the stop returned", powerOffEnd.FindString(l), at.Sub(stopped).Seconds())
		}
	}
	stopMark := earliestMark(groupServers(t, ctx, cloud, tag), victim.ID, before, stopped)
	t.Logf("stop: Phoenix acted (%s) %.2fs after the stop returned, as seen on Nova (the list before it, begun at %.2fs, did not show it); "+
		"by Phoenix's own stamp %s",
		what, stopLatency.Seconds(), notBefore.Sub(stopped).Seconds(), sinceOrNone(stopMark, stopped))
	// Nova shows the action between the list before (begun at
	// notBefore, not showing it) and the one that showed it: a list takes
	// up to a second here, which is the instrument's error, not
	// Phoenix's. Late is a list begun after the bound that did not show
	// it; between the two, Phoenix's own stamp decides.
	switch late := notBefore.Sub(stopped); {
	case late >= stopReaction:
		t.Errorf("Phoenix had not acted on the stopped server %.2fs after the stop (a list of Nova begun then did not show it), want within %v", late.Seconds(), stopReaction)
	case stopLatency > stopReaction && (stopMark.IsZero() || stopMark.Sub(stopped) > stopReaction):
		t.Errorf("Phoenix acted on the stopped server %.2fs after the stop as seen on Nova, by its own stamp %s, want within %v", stopLatency.Seconds(), sinceOrNone(stopMark, stopped), stopReaction)
	}
	waitFor(t, 5*time.Minute, "the group to converge again without the stopped server", func() bool {
		return groupAtRest(d.status(t), imageA) && onNova(t, ctx, cloud, tag, 2, imageA)
	})
	after := groupServers(t, ctx, cloud, tag)
	assertGroup(t, after, 2, imageA, group)
	for _, s := range first {
		kept := slices.ContainsFunc(after, func(a provisioner.Server) bool { return a.ID == s.ID })
		switch {
		case s.ID == victim.ID && kept:
			t.Errorf("the stopped server %s is still in the group", s.Name)
		case s.ID != victim.ID && !kept:
			// Only the stopped server was to go: a heal of another would
			// mean that what was timed may not be the stop's.
			t.Errorf("server %s, never stopped, was replaced too", s.Name)
		}
	}

	// 3. A new gold image. Glance's created_at has second precision, and
	// the selector takes the newest.
	waitNextSecond()
	imageB, publishedAt := publishImageTimed(t, ctx, glance, imageName)
	published = append(published, imageB)
	_, seen = watchNova(t, ctx, cloud, tag, time.Minute, "a server on the new image", func(list []provisioner.Server) bool {
		return slices.ContainsFunc(list, func(s provisioner.Server) bool { return s.ImageID == imageB })
	})
	created, ok := firstCreatedOn(groupServers(t, ctx, cloud, tag), imageB)
	if !ok {
		t.Fatalf("the first server on image B carries no %s", controller.MetaCreatedAt)
	}
	publishLatency := created.Sub(publishedAt)
	t.Logf("publish: the first server on the new image created %.2fs after the publication (its %s), seen on Nova after %.2fs",
		publishLatency.Seconds(), controller.MetaCreatedAt, seen.Sub(publishedAt).Seconds())
	if publishLatency >= publishReaction {
		t.Errorf("the first server on the new image was created %.2fs after the publication, want under %v", publishLatency.Seconds(), publishReaction)
	}
	waitFor(t, 5*time.Minute, "the group to converge on the new image", func() bool {
		return groupAtRest(d.status(t), imageB) && onNova(t, ctx, cloud, tag, 2, imageB)
	})
	assertGroup(t, groupServers(t, ctx, cloud, tag), 2, imageB, group)

	// 4. What the daemon heard, and that it never says the password.
	st := d.status(t)
	var kinds []string
	for k := range st.Notifications.Handled {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	t.Logf("notifications handled: %v", st.Notifications.Handled)
	if !slices.ContainsFunc(kinds, func(k string) bool {
		return strings.HasPrefix(k, "instance.") || strings.HasPrefix(k, "compute.instance.")
	}) {
		t.Errorf("status shows no instance event handled: %v", kinds)
	}
	if !slices.ContainsFunc(kinds, func(k string) bool { return strings.HasPrefix(k, "image.") }) {
		t.Errorf("status shows no image event handled: %v", kinds)
	}
	woken := d.logLines("woken by the cloud")
	t.Logf("the daemon was woken by the cloud %d times for the group (debug log)", len(woken))
	statusBody := httpBody(t, d.url+"/v1/status")
	metricsBody := httpBody(t, d.url+"/metrics")
	d.stop(t, syscall.SIGTERM)
	for name, text := range map[string]string{"stdout": d.read(t, d.stdout), "stderr (the log)": d.read(t, d.stderr),
		"/v1/status": statusBody, "/metrics": metricsBody} {
		if leaks(text, password) {
			t.Errorf("the daemon's %s holds the RabbitMQ password", name)
		}
	}
}

// amqpPassword is the password of the URL in the file.
func amqpPassword(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	u, err := neturl.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: not a URL", file) // not %v: the error quotes the URL
	}
	p, ok := u.User.Password()
	if !ok || p == "" {
		t.Fatalf("%s: the URL holds no password", file)
	}
	return p
}

// leaks says whether text holds the password, as is or escaped.
func leaks(text, password string) bool {
	for _, p := range []string{password, neturl.QueryEscape(password), neturl.PathEscape(password)} {
		if strings.Contains(text, p) {
			return true
		}
	}
	return false
}

// powerOffEnd finds the stop's last event type in a log line, legacy or
// versioned.
var powerOffEnd = regexp.MustCompile(`[a-z_.]*power_off\.end`)

// loggedDaemon is a daemon process whose stdout and stderr are kept.
type loggedDaemon struct {
	*daemonProc
	stdout, stderr string // file paths
}

// startLoggedDaemon runs `phoenix daemon` on cfg, serving on a port of
// its own; the cleanup stops it as an operator would (SIGTERM: the steps
// in flight finish, none starts), so that no create lands after the
// test's servers are deleted.
func startLoggedDaemon(t *testing.T, bin, cfg, cloudsFile string, args ...string) *loggedDaemon {
	t.Helper()
	dir := t.TempDir()
	d := &loggedDaemon{stdout: filepath.Join(dir, "stdout"), stderr: filepath.Join(dir, "stderr")}
	outFile, err := os.Create(d.stdout)
	if err != nil {
		t.Fatal(err)
	}
	errFile, err := os.Create(d.stderr)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"daemon", "--config", cfg, "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "OS_CLIENT_CONFIG_FILE="+cloudsFile, "OS_CLOUD=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = errFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &daemonProc{cmd: cmd, done: make(chan error, 1)}
	d.daemonProc = p
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(io.TeeReader(stdout, outFile))
		for sc.Scan() {
			if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		p.done <- cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(40 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", tail(d.read(t, d.stderr), 80))
		}
	})
	select {
	case p.url = <-found:
	case err := <-p.done:
		t.Fatalf("the daemon exited at start: %v\n%s", err, d.read(t, d.stderr))
	case <-time.After(60 * time.Second):
		t.Fatal("the daemon never said where it serves")
	}
	return d
}

func (d *loggedDaemon) read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// logLines are the lines of the daemon's log holding s.
func (d *loggedDaemon) logLines(s string) []string {
	b, _ := os.ReadFile(d.stderr)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

func httpBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// groupAtRest says whether the daemon's one group has converged on image.
func groupAtRest(st daemon.Status, image string) bool {
	return convergedOn(st, 1, image) && st.Groups[0].Status.Converged
}

// onNova says whether the group holds exactly n servers on Nova, all
// ACTIVE on image and none marked by Phoenix.
func onNova(t *testing.T, ctx context.Context, cloud *openstack.Cloud, tag string, n int, image string) bool {
	t.Helper()
	list := groupServers(t, ctx, cloud, tag)
	for _, s := range list {
		if s.Status != provisioner.StatusActive || s.TaskState != "" || s.ImageID != image || s.Metadata[controller.MetaPhase] != "" {
			return false
		}
	}
	return len(list) == n
}

// watchNova lists the group on Nova every 100 ms until cond holds of a
// list. It returns when the list before began, and when the list that
// showed it was answered: what cond waits for came between the two (one
// list takes 0.15-0.5 s here).
func watchNova(t *testing.T, ctx context.Context, cloud *openstack.Cloud, tag string, patience time.Duration, what string, cond func([]provisioner.Server) bool) (notBefore, seen time.Time) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		began := time.Now()
		list := groupServers(t, ctx, cloud, tag)
		at := time.Now()
		if cond(list) {
			return notBefore, at
		}
		if at.After(deadline) {
			t.Fatalf("%s did not happen within %v", what, patience)
		}
		notBefore = began
		time.Sleep(100 * time.Millisecond) // polling Nova, fast: the reaction is timed
	}
}

// actedOnStopped says what Phoenix did about the stopped server, as the
// list shows it: marked it (a phase of its own), had it deleted, or
// created a server the group did not hold before. "" when nothing yet.
func actedOnStopped(list []provisioner.Server, victim string, before map[string]bool) string {
	found := false
	for _, s := range list {
		switch {
		case s.ID == victim && s.Metadata[controller.MetaPhase] != "":
			return "marked it " + s.Metadata[controller.MetaPhase]
		case s.ID == victim && (s.Gone() || s.TaskState == provisioner.TaskDeleting):
			return "deleted it"
		case s.ID == victim:
			found = true
		case !before[s.ID]:
			return "created " + s.Name
		}
	}
	if !found {
		return "deleted it"
	}
	return ""
}

// earliestMark is the earliest time Phoenix stamped on what it did since
// from: the stopped server's phase, a new server's creation. Zero when
// there is none.
func earliestMark(list []provisioner.Server, victim string, before map[string]bool, from time.Time) time.Time {
	var first time.Time
	for _, s := range list {
		key := controller.MetaCreatedAt
		if s.ID == victim {
			key = controller.MetaPhaseAt
		} else if before[s.ID] {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, s.Metadata[key])
		if err == nil && !at.Before(from.Add(-time.Minute)) && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first
}

func sinceOrNone(at, from time.Time) string {
	if at.IsZero() {
		return "not found (the server may be gone)"
	}
	return fmt.Sprintf("%.2fs", at.Sub(from).Seconds())
}

// firstCreatedOn is the earliest creation Phoenix stamped on a server of
// the list on image.
func firstCreatedOn(list []provisioner.Server, image string) (time.Time, bool) {
	var first time.Time
	for _, s := range list {
		if s.ImageID != image {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, s.Metadata[controller.MetaCreatedAt])
		if err == nil && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first, !first.IsZero()
}
