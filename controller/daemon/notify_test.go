package daemon_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/daemon"
)

// A notify URL is a credential: whether the receiver answers 500, closes
// the connection or cannot be reached, the log says which target failed
// by its scheme and host alone.
func TestNoticeFailuresNeverLogTheURL(t *testing.T) {
	const token = "T0KEN-8c1f2e"
	var posts atomic.Int32
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		posts.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer failing.Close()
	hangup := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		c, _, _ := w.(http.Hijacker).Hijack()
		_ = c.Close()
	}))
	defer hangup.Close()
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close() // nothing listens there any more

	targets := []config.NotifyTarget{
		{URL: failing.URL + "/hooks/" + token + "?token=" + token},
		{URL: strings.Replace(hangup.URL, "://", "://bot:"+token+"@", 1) + "/x"},
		{URL: gone.URL + "/services/" + token},
	}
	core, logs := observer.New(zapcore.DebugLevel)
	n := daemon.NewNotifier(targets, zap.New(core))
	n.Emit(controller.Event{Type: controller.EventHalted, Group: "web", Time: time.Now(), Reason: "boot failed"})
	n.Close()

	if posts.Load() < 2 {
		t.Errorf("the failing target got %d posts, want the retries", posts.Load())
	}
	failed := logs.FilterMessage("notice not delivered").All()
	if len(failed) != len(targets) {
		t.Fatalf("%d failures logged, want %d", len(failed), len(targets))
	}
	want := []string{failing.URL + "/…", hangup.URL + "/…", gone.URL + "/…"}
	for i, e := range failed {
		if got := e.ContextMap()["url"]; got != want[i] {
			t.Errorf("failure %d names %v, want %s", i, got, want[i])
		}
	}
	if got := fmt.Sprint(failed[0].ContextMap()["error"]); !strings.Contains(got, "HTTP 502") {
		t.Errorf("the 502 logged as %q", got)
	}
	for _, e := range logs.All() {
		if line := fmt.Sprint(e.Message, e.ContextMap()); strings.Contains(line, token) {
			t.Errorf("a log line shows the token: %s", line)
		}
	}
}

// A reload's targets receive the next notice; the old ones do not.
func TestNotifierSetTargets(t *testing.T) {
	got := make(chan string, 4)
	hook := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			got <- name
			w.WriteHeader(http.StatusNoContent)
		}))
	}
	before, after := hook("before"), hook("after")
	defer before.Close()
	defer after.Close()
	n := daemon.NewNotifier([]config.NotifyTarget{{URL: before.URL}}, zap.NewNop())
	defer n.Close()
	n.Emit(controller.Event{Type: controller.EventConverged, Group: "web"})
	if name := <-got; name != "before" {
		t.Fatalf("first notice went to %s", name)
	}
	n.SetTargets([]config.NotifyTarget{{URL: after.URL}})
	n.Emit(controller.Event{Type: controller.EventConverged, Group: "web"})
	if name := <-got; name != "after" {
		t.Fatalf("the notice after the reload went to %s", name)
	}
	n.SetTargets(nil)
	n.Emit(controller.Event{Type: controller.EventConverged, Group: "web"})
	n.Close()
	select {
	case name := <-got:
		t.Errorf("a notice went to %s with no targets", name)
	default:
	}
}
