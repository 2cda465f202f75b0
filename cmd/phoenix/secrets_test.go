package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller/trigger"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// A run whose notify URLs carry a token and whose webhook secret is
// rotated mid-run: the notices fail and are retried and logged, yet no
// line of the daemon's log, its status or its metrics shows the token or
// either secret; during the overlap an event signed with either secret is
// accepted, and once the rotation ends only the new one is.
func TestSecretsStayOutOfTheLogs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	const token = "xoxb-T0K3N-5f9e2c"
	bin := buildPhoenix(t)
	env := simtest.Start(t, sim.Options{BootTime: sim.Fixed(50 * time.Millisecond), HealthDelay: sim.Fixed(20 * time.Millisecond)}, 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})

	// The chat service is down: every notice is retried, then logged.
	var posts atomic.Int32
	chat := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		posts.Add(1)
		http.Error(w, "upstream down", http.StatusServiceUnavailable)
	}))
	defer chat.Close()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	urlFile := write("chat.url", chat.URL+"/services/"+token+"?token="+token+"\n")
	inline := strings.Replace(chat.URL, "://", "://bot:"+token+"@", 1) + "/hooks/" + token
	oldSecret, newSecret := "old-webhook-secret-"+strings.Repeat("0", 20), "new-webhook-secret-"+strings.Repeat("1", 20)
	oldKey, newKey := write("old.key", oldSecret), write("new.key", newSecret)
	cfg := filepath.Join(dir, "phoenix.yaml")
	config := func(secrets string) {
		write("phoenix.yaml", fmt.Sprintf("cloud: phoenix-sim\ncontroller:\n  interval: 1h\n  listen: \"127.0.0.1:0\"\n  metrics_listen: \"127.0.0.1:0\"\n%s  notify: [{url_file: %s}, %q]\ngroups:\n%s",
			secrets, urlFile, inline, daemonGroupYAML("web", 2)))
	}
	config("  webhook_secret_file: " + oldKey + "\n")

	d := startDaemonProc(t, bin, cfg, env.CloudsFile, "--log-level", "debug")
	waitFor(t, 60*time.Second, "the first build", func() bool { return convergedOn(d.status(t), 1, "") })
	var metricsURL string
	select {
	case metricsURL = <-d.metrics:
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon never said where its metrics are")
	}

	event := func(id, secret string) int {
		return send(t, d.url, []byte(secret), trigger.Event{ID: id, Type: trigger.TypeImagePublished})
	}
	if code := event("before", oldSecret); code != http.StatusAccepted {
		t.Errorf("before the rotation, the secret: HTTP %d", code)
	}
	reload := func() {
		t.Helper()
		before := d.status(t).Config.LoadedAt
		_ = d.cmd.Process.Signal(syscall.SIGHUP)
		waitFor(t, 10*time.Second, "the reload", func() bool { st := d.status(t); return st.Config.LoadedAt.After(before) || st.Config.Refused != "" })
		if r := d.status(t).Config.Refused; r != "" {
			t.Fatalf("reload refused: %s", r)
		}
	}

	// The overlap: the new secret, the old one beside it.
	config("  webhook_secret_file: " + newKey + "\n  previous_webhook_secret_file: " + oldKey + "\n")
	reload()
	if code := event("overlap-old", oldSecret); code != http.StatusAccepted {
		t.Errorf("during the overlap, the old secret: HTTP %d", code)
	}
	if code := event("overlap-new", newSecret); code != http.StatusAccepted {
		t.Errorf("during the overlap, the new secret: HTTP %d", code)
	}
	// The rotation ends: only the new secret.
	config("  webhook_secret_file: " + newKey + "\n")
	reload()
	if code := event("after-old", oldSecret); code != http.StatusUnauthorized {
		t.Errorf("after the rotation, the old secret: HTTP %d, want 401", code)
	}
	if code := event("after-new", newSecret); code != http.StatusAccepted {
		t.Errorf("after the rotation, the new secret: HTTP %d", code)
	}

	// Metrics are on their own listener, not beside events and status.
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, metrics := get(metricsURL)
	if code != http.StatusOK || !strings.Contains(metrics, "phoenix_events_accepted_total") {
		t.Errorf("%s: HTTP %d", metricsURL, code)
	}
	if code, _ := get(d.url + "/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics on controller.listen: HTTP %d, want 404 with metrics_listen set", code)
	}

	// Both targets' failures were logged, each notice after its retries.
	logged := func() string {
		b, err := os.ReadFile(d.log)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	waitFor(t, 30*time.Second, "the failed notices in the log", func() bool {
		return strings.Count(logged(), "notice not delivered") >= 2
	})
	st, _ := json.Marshal(d.status(t))
	d.stop(t, syscall.SIGTERM)
	if posts.Load() < 4 {
		t.Errorf("the chat service got %d posts, want the retries of each notice", posts.Load())
	}

	log := logged()
	for _, want := range []string{chat.URL + "/… (from " + urlFile + ")", `"` + chat.URL + `/…"`, "signed_with_previous_secret", "reloaded"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q", want)
		}
	}
	for what, secret := range map[string]string{"the notify token": token, "the old webhook secret": oldSecret, "the new webhook secret": newSecret} {
		for i, line := range strings.Split(log, "\n") {
			if strings.Contains(line, secret) {
				t.Errorf("log line %d shows %s: %s", i+1, what, line)
			}
		}
		if strings.Contains(string(st), secret) || strings.Contains(metrics, secret) {
			t.Errorf("status or metrics show %s", what)
		}
	}
}
