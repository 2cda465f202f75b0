package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/daemon"
	"github.com/phoenix-ops/phoenix/controller/plan"
)

// phoenix status shows a rollout that waits for quota as WAITING, with
// the cloud's words, where another rollout says "rolling out".
func TestStatusShowsAQuotaWait(t *testing.T) {
	const nova = "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances"
	var st daemon.Status
	st.APIVersion, st.Config.Path, st.Config.LoadedAt, st.Ready = daemon.StatusAPIVersion, "/etc/phoenix/phoenix.yaml", time.Now(), "ok"
	st.Groups = []daemon.GroupStatus{
		{Group: "web", InProgress: true, Progress: "0/10 current and serving", Status: plan.Status{Desired: 10, Old: 10, Waiting: "quota — " + nova}},
		{Group: "api", InProgress: true, Progress: "1/2 current and serving", Status: plan.Status{Desired: 2, Old: 1, Current: 1}},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/status" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(st)
	}))
	defer srv.Close()

	out, code := run(t, "status", "--url", srv.URL)
	if code != cli.ExitOK {
		t.Fatalf("exit %d\n%s", code, out)
	}
	line := func(group string) string {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, group+" ") {
				return l
			}
		}
		return ""
	}
	if l := line("web"); !strings.HasSuffix(strings.TrimSpace(l), "WAITING: quota — "+nova) || strings.Contains(l, "rolling out") {
		t.Errorf("the waiting group's line %q: want its state WAITING: quota — <Nova's message>", l)
	}
	if l := line("api"); !strings.HasSuffix(strings.TrimSpace(l), "rolling out") {
		t.Errorf("the rolling group's line %q: want rolling out", l)
	}
}

// phoenix status says why replacements wait and lists the protected
// servers left as they are.
func TestStatusShowsSteering(t *testing.T) {
	var st daemon.Status
	st.APIVersion, st.Config.Path, st.Config.LoadedAt, st.Ready = daemon.StatusAPIVersion, "/etc/phoenix/phoenix.yaml", time.Now(), "ok"
	held := "held: by alice@ops at 2026-12-06T10:00:00Z: release freeze"
	st.Groups = []daemon.GroupStatus{
		{Group: "web", InProgress: true, Progress: "4/4 current and serving", Status: plan.Status{Desired: 4, Current: 0, Deferred: 4, Steering: held}},
		{Group: "db", Progress: "3/3 current and serving", Status: plan.Status{Desired: 3, Current: 2, Protected: 1, Converged: true},
			Protected: []string{"db-1 (9f2c): protected: licence dongle; would be replaced: image a is not the desired b"}},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _ = json.NewEncoder(w).Encode(st) }))
	defer srv.Close()
	out, code := run(t, "status", "--url", srv.URL)
	if code != cli.ExitOK {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"DEFERRED (4 waiting): " + held,
		"converged with 1 protected servers left as they are",
		"PROTECTED in group db: db-1 (9f2c): protected: licence dongle; would be replaced: image a is not the desired b",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}

// phoenix status says which zones new servers avoid, and since when.
func TestStatusShowsAvoidedZones(t *testing.T) {
	var st daemon.Status
	st.APIVersion, st.Config.Path, st.Config.LoadedAt, st.Ready = daemon.StatusAPIVersion, "/etc/phoenix/phoenix.yaml", time.Now(), "ok"
	st.Groups = []daemon.GroupStatus{{Group: "web", Progress: "3/3 current and serving",
		Status: plan.Status{Desired: 3, Current: 3, Converged: true, Avoiding: "az1", AvoidingSince: time.Now().Add(-2 * time.Minute)}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _ = json.NewEncoder(w).Encode(st) }))
	defer srv.Close()
	out, code := run(t, "status", "--url", srv.URL)
	if code != cli.ExitOK {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if want := "converged; avoiding zone az1: creates failed there 2m ago"; !strings.Contains(out, want) {
		t.Errorf("status lacks %q:\n%s", want, out)
	}
}

func TestStatusShowsLocations(t *testing.T) {
	var st daemon.Status
	st.APIVersion, st.Config.Path, st.Config.LoadedAt, st.Ready = daemon.StatusAPIVersion, "/etc/phoenix/phoenix.yaml", time.Now(), "ok"
	st.Groups = []daemon.GroupStatus{{Group: "web", Progress: "3/3 current and serving", Status: plan.Status{Desired: 3, Current: 3},
		Locations: []controller.LocationStatus{
			{Name: "RegionOne", State: plan.LocationUp, Weight: 2, Share: 3, Count: 3, Serving: 3},
			{Name: "RegionTwo", State: plan.LocationDown, Reason: "its API has not answered since 2026-12-06T10:00:00Z", Weight: 1}}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _ = json.NewEncoder(w).Encode(st) }))
	defer srv.Close()
	out, code := run(t, "status", "--url", srv.URL)
	if code != cli.ExitOK {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{"location RegionOne of group web: up, share 3 of weight 2, keeps 3, 3 serving",
		"DOWN: location RegionTwo of group web: down, share 0 of weight 1, keeps 0, 0 serving (its API has not answered since 2026-12-06T10:00:00Z)"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}

// A daemon of another status shape is named, not misread.
func TestStatusRefusesAnotherAPIVersion(t *testing.T) {
	for _, version := range []string{"", "v2"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_ = json.NewEncoder(w).Encode(map[string]any{"api_version": version, "groups": []any{}})
		}))
		out, code := run(t, "status", "--url", srv.URL)
		srv.Close()
		if code != cli.ExitNotDone || !strings.Contains(out, `this phoenix reads "v1"`) {
			t.Errorf("api_version %q: exit %d, want %d naming the versions:\n%s", version, code, cli.ExitNotDone, out)
		}
	}
}
