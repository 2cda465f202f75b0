package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/controller/daemon"
	"github.com/phoenix-ops/phoenix/controller/trigger"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// These tests run the phoenix binary as a daemon process against the
// simulator, and talk to it only as an operator would: signals, its HTTP
// endpoints, signed events.

func daemonConfig(secretFile, notify string, groups ...string) string {
	return fmt.Sprintf("cloud: phoenix-sim\ncontroller: {interval: 1h, listen: \"127.0.0.1:0\", webhook_secret_file: %s, notify: [%s]}\ngroups:\n%s",
		secretFile, notify, strings.Join(groups, ""))
}

// noticeBox collects the notices a daemon posts.
type noticeBox struct {
	mu      sync.Mutex
	notices []daemon.Notice
}

func (b *noticeBox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var n daemon.Notice
	if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	b.notices = append(b.notices, n)
	b.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (b *noticeBox) kinds(group string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, n := range b.notices {
		if n.Group == group {
			out = append(out, n.Kind)
		}
	}
	return out
}

func daemonGroupYAML(name string, count int) string {
	return fmt.Sprintf(`  - name: %s
    count: %d
    image: {name: gold, newest: true}
    flavor: m1.small
    networks: [private]
    rollout: {max_surge: 2, min_ready: 30ms}
    health:
      http: {port: 8080, path: /healthz}
      interval: 30ms
      timeout: 30ms
      healthy_threshold: 2
      grace: 30s
`, name, count)
}

// servingLine is what a daemon prints once it serves.
var servingLine = regexp.MustCompile(`serving on (https?://\S+)`)

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

type daemonProc struct {
	cmd  *exec.Cmd
	url  string
	done chan error
	// log is the file the daemon's stderr (its whole log) goes to.
	log string
	// metrics receives where /metrics is served, once.
	metrics chan string
}

// metricsLine is what a daemon prints after servingLine.
var metricsLine = regexp.MustCompile(`metrics at (https?://\S+)`)

func buildPhoenix(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "phoenix")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build phoenix: %v\n%s", err, out)
	}
	return bin
}

func startDaemonProc(t *testing.T, bin, cfg, clouds string, extra ...string) *daemonProc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"daemon", "--config", cfg, "--poll", "50ms", "--log-level", "info"}, extra...)...)
	cmd.Env = append(os.Environ(), "OS_CLIENT_CONFIG_FILE="+clouds, "OS_CLOUD=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(t.TempDir(), "daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &daemonProc{cmd: cmd, done: make(chan error, 1), log: logFile.Name(), metrics: make(chan string, 1)}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
			if m := metricsLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case p.metrics <- m[1]:
				default:
				}
			}
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("daemon log:\n%s", tail(string(b), 60))
		}
	})
	select {
	case p.url = <-found:
	case err := <-p.done:
		b, _ := os.ReadFile(logFile.Name())
		t.Fatalf("the daemon exited at start: %v\n%s", err, b)
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon never said where it serves")
	}
	return p
}

func (p *daemonProc) status(t *testing.T) daemon.Status {
	t.Helper()
	var st daemon.Status
	resp, err := http.Get(p.url + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func (p *daemonProc) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	_ = p.cmd.Process.Signal(sig)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("the daemon ended with %v after %v, want a clean exit", err, sig)
		}
	case <-time.After(40 * time.Second):
		t.Fatalf("the daemon did not stop after %v", sig)
	}
}

func waitFor(t *testing.T, patience time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %v", what, patience)
		}
		time.Sleep(20 * time.Millisecond) // polling the daemon's status
	}
}

func convergedOn(st daemon.Status, groups int, image string) bool {
	if len(st.Groups) != groups || st.Ready != "ok" {
		return false
	}
	for _, g := range st.Groups {
		if g.InProgress || g.Halted != "" || (image != "" && g.DesiredImage.ID != image) {
			return false
		}
	}
	return true
}

func send(t *testing.T, url string, secret []byte, e trigger.Event) int {
	t.Helper()
	c := retryablehttp.NewClient()
	c.Logger = nil
	c.RetryMax = 0
	status, body, err := trigger.Send(context.Background(), c, url+"/v1/events", secret, e, time.Now())
	if err != nil {
		t.Fatalf("send event %s: %v", e.ID, err)
	}
	if status != http.StatusAccepted {
		t.Logf("event %s: HTTP %d %s", e.ID, status, body)
	}
	return status
}

func TestDaemonProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	bin := buildPhoenix(t)
	env := simtest.Start(t, sim.Options{BootTime: sim.LogNormal(100*time.Millisecond, 400*time.Millisecond), HealthDelay: sim.Fixed(20 * time.Millisecond)}, 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "webhook.key")
	secret := []byte("s3cret-for-the-test-0123456789abcdef")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	box := &noticeBox{}
	hook := httptest.NewServer(box)
	defer hook.Close()
	cfg := filepath.Join(dir, "phoenix.yaml")
	write := func(body string) {
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(daemonConfig(secretFile, hook.URL, daemonGroupYAML("web", 6)))

	d := startDaemonProc(t, bin, cfg, env.CloudsFile)
	waitFor(t, 60*time.Second, "the first build", func() bool { return convergedOn(d.status(t), 1, "") })

	// Refused events change nothing, even with a new image waiting.
	waiting := env.Sim.AddImage(sim.Image{Name: "gold"})
	env.Sim.ResetRequests()
	refusals(t, d.url, secret)
	for _, r := range env.Sim.Requests() {
		if r.Method != "GET" && r.Service != "identity" {
			t.Errorf("a refused event led to %s %s", r.Method, r.Path)
		}
	}
	for _, s := range env.Sim.Servers() {
		if s.ImageID == waiting.ID {
			t.Errorf("a refused event started a rollout: %s runs the new image", s.Name)
		}
	}

	// A new image, an event, and a SIGTERM in the middle of the rollout.
	mon := env.Sim.Monitor(time.Millisecond, groupOfServer)
	patched := env.Sim.AddImage(sim.Image{Name: "gold"})
	_ = waiting
	if code := send(t, d.url, secret, trigger.Event{ID: "img-1", Type: trigger.TypeImagePublished}); code != http.StatusAccepted {
		t.Fatalf("image.published: HTTP %d", code)
	}
	if code := send(t, d.url, secret, trigger.Event{ID: "img-1", Type: trigger.TypeImagePublished}); code != http.StatusConflict {
		t.Errorf("the same event again: HTTP %d, want 409", code)
	}
	waitFor(t, 30*time.Second, "the rollout to begin", func() bool {
		for _, s := range env.Sim.Servers() {
			if s.ImageID == patched.ID {
				return true
			}
		}
		return false
	})
	d.stop(t, syscall.SIGTERM)

	d = startDaemonProc(t, bin, cfg, env.CloudsFile)
	waitFor(t, 60*time.Second, "the rollout to finish after the restart", func() bool { return convergedOn(d.status(t), 1, patched.ID) })
	ext := mon.Stop()["web"]
	if ext.MinHealthy < 6 || ext.MaxTotal > 8 {
		t.Errorf("across the stop and start: healthy fell to %d (floor 6), total reached %d (ceiling 8)", ext.MinHealthy, ext.MaxTotal)
	}
	servers := env.Sim.Servers()
	if len(servers) != 6 {
		t.Errorf("%d servers after the restart, want 6: a duplicate or an orphan", len(servers))
	}
	for _, s := range servers {
		if groupOfServer(s) != "web" || s.ImageID != patched.ID {
			t.Errorf("server %s: group %q, image %s", s.Name, groupOfServer(s), s.ImageID)
		}
	}

	// Notices: the first build and the patch rollout each started and
	// completed (the second daemon's rollout finished the first's work).
	waitFor(t, 10*time.Second, "the notices", func() bool { return len(box.kinds("web")) >= 4 })
	if got := strings.Join(box.kinds("web"), ","); !strings.HasPrefix(got, "started,completed,started") || !strings.HasSuffix(got, "completed") {
		t.Errorf("notices for web: %s", got)
	}

	// /metrics is Prometheus text, and the replacements were counted.
	families := metricsOf(t, d.url)
	if f, ok := families["phoenix_cloud_requests_total"]; !ok || len(f.GetMetric()) == 0 {
		t.Errorf("no cloud request metrics")
	}
	// (Each reason's series is there from the start, at 0: the sum moves.)
	replaced := 0.0
	for _, m := range families["phoenix_replacements_total"].GetMetric() {
		replaced += m.GetCounter().GetValue()
	}
	if replaced == 0 {
		t.Errorf("no replacement counted after the restart finished the rollout")
	}

	// SIGHUP with a broken file keeps the running configuration.
	write(strings.Replace(daemonConfig(secretFile, hook.URL, daemonGroupYAML("web", 6)), "count: 6", "count: 0", 1))
	_ = d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "the refusal to show", func() bool { return d.status(t).Config.Refused != "" })
	if st := d.status(t); !strings.Contains(st.Config.Refused, "groups[0].count") || len(st.Groups) != 1 {
		t.Errorf("after a bad reload: refused %q, %d groups", st.Config.Refused, len(st.Groups))
	}
	// ... and a good one picks up a new group.
	write(daemonConfig(secretFile, hook.URL, daemonGroupYAML("web", 6), daemonGroupYAML("api", 2)))
	_ = d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 60*time.Second, "the new group to converge", func() bool { return convergedOn(d.status(t), 2, patched.ID) })
	if d.status(t).Config.Refused != "" {
		t.Errorf("a good reload left the refusal in status")
	}

	// phoenix status renders it.
	out, code := run(t, "status", "--url", d.url)
	if code != cli.ExitOK || !strings.Contains(out, "api") || !strings.Contains(out, "converged") {
		t.Errorf("phoenix status: exit %d\n%s", code, out)
	}
	d.stop(t, syscall.SIGTERM)
}

func metricsOf(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return families
}

// refusals sends every kind of bad event request to the daemon and checks
// each answer's status.
func refusals(t *testing.T, url string, secret []byte) {
	t.Helper()
	good := []byte(`{"id":"r-1","type":"security.patch","groups":["web"],"reason":"CVE-2026-1"}`)
	signed := func(body []byte, at time.Time, key []byte) map[string]string {
		ts, sig := trigger.Sign(key, at, body)
		return map[string]string{trigger.HeaderTimestamp: ts, trigger.HeaderSignature: sig}
	}
	now := time.Now()
	unknown := []byte(`{"id":"r-2","type":"security.patch","groups":["nope"],"reason":"CVE-2026-1"}`)
	big := []byte(`{"id":"r-3","type":"security.patch","groups":["web"],"reason":"` + strings.Repeat("x", 70<<10) + `"}`)
	malformed := []byte(`{"id":"r-4","type":`)
	cases := []struct {
		name    string
		method  string
		body    []byte
		headers map[string]string
		want    int
	}{
		{"wrong signature", "POST", good, signed(good, now, []byte("not the secret")), http.StatusUnauthorized},
		{"no signature", "POST", good, map[string]string{trigger.HeaderTimestamp: fmt.Sprint(now.Unix())}, http.StatusUnauthorized},
		{"stale timestamp", "POST", good, signed(good, now.Add(-10*time.Minute), secret), http.StatusUnauthorized},
		{"oversized body", "POST", big, signed(big, now, secret), http.StatusRequestEntityTooLarge},
		{"malformed JSON", "POST", malformed, signed(malformed, now, secret), http.StatusBadRequest},
		{"unknown group", "POST", unknown, signed(unknown, now, secret), http.StatusUnprocessableEntity},
		{"GET", "GET", nil, nil, http.StatusMethodNotAllowed},
	}
	for _, tc := range cases {
		req, err := http.NewRequest(tc.method, url+"/v1/events", strings.NewReader(string(tc.body)))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range tc.headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: HTTP %d %s, want %d", tc.name, resp.StatusCode, body, tc.want)
		}
		if strings.Contains(string(body), string(secret)) {
			t.Errorf("%s: the answer shows the secret", tc.name)
		}
	}
}
