package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/provisioner"
)

func parse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("phoenix.yaml", []byte(yaml), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const reloadGroups = `
groups: [{name: web, count: 2, image: {name: gold}, flavor: m1.small, networks: [private]}]
`

func TestReloadNamesTheSettingsThatNeedARestart(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	started := parse(t, "cloud: east\ncontroller: {listen: 127.0.0.1:9090, interval: 1m}"+reloadGroups)
	d := New(provisioner.Cloud{}, started, Options{Log: zap.New(core)})

	for _, tc := range []struct {
		name string
		yaml string
		want []string
	}{
		{"interval applies", "cloud: east\ncontroller: {listen: 127.0.0.1:9090, interval: 5m}", nil},
		{"listen and cloud wait", "cloud: west\ncontroller: {listen: 0.0.0.0:9443, interval: 5m}", []string{"cloud", "controller.listen"}},
		{"parallel_groups and metrics_listen wait, notify applies", "cloud: east\ncontroller: {parallel_groups: 9, metrics_listen: 127.0.0.1:9464, notify: [https://chat.example.net/hook]}",
			[]string{"controller.parallel_groups", "controller.listen", "controller.metrics_listen"}},
		// Named against what runs, not the last reload: putting a value
		// back clears it.
		{"back as started", "cloud: east\ncontroller: {listen: 127.0.0.1:9090, interval: 2m}", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs.TakeAll()
			d.Reload(parse(t, tc.yaml+reloadGroups))

			st := d.Status()
			if !slices.Equal(st.Config.RestartNeeded, tc.want) {
				t.Errorf("status restart_needed %v, want %v", st.Config.RestartNeeded, tc.want)
			}
			raw, _ := json.Marshal(st)
			if len(tc.want) > 0 && !strings.Contains(string(raw), `"restart_needed":["`+tc.want[0]) {
				t.Errorf("/v1/status lacks restart_needed: %s", raw)
			}
			warned := logs.FilterMessageSnippet("apply only after a restart").All()
			switch {
			case len(tc.want) == 0 && len(warned) > 0:
				t.Errorf("warned with nothing to restart for: %v", warned[0].ContextMap())
			case len(tc.want) > 0 && len(warned) != 1:
				t.Fatalf("%d warnings naming the settings, want 1", len(warned))
			case len(tc.want) > 0:
				got, _ := warned[0].ContextMap()["restart_needed"].([]any)
				if len(got) != len(tc.want) {
					t.Errorf("the log names %v, want %v", got, tc.want)
				}
			}
		})
	}
	if got := d.interval().String(); got != "2m0s" {
		t.Errorf("the interval in force is %s, want the reloaded 2m", got)
	}
}

// TestEveryControllerSettingIsSortedForReload: a field added to
// config.Controller must be named either as applied at reload or as
// needing a restart, so no change is ignored without a word.
func TestEveryControllerSettingIsSortedForReload(t *testing.T) {
	known := map[string]bool{}
	for _, f := range restartOnly {
		known[f.field] = true
	}
	for _, f := range appliedAtReload {
		known[f] = true
	}
	typ := reflect.TypeFor[config.Controller]()
	for i := range typ.NumField() {
		tag := strings.Split(typ.Field(i).Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		if !known["controller."+tag] {
			t.Errorf("controller.%s is neither applied at reload nor named as needing a restart (controller/daemon/reload.go)", tag)
		}
	}
	if !known["cloud"] {
		t.Error("cloud is not named as needing a restart")
	}
}

// TestReloadNamesWhatItChanged: the log line of a reload and /v1/status
// name each setting the reload changed, by field path and group name,
// and no restart-only setting among them; a refused file leaves them as
// the last reload that applied set them.
func TestReloadNamesWhatItChanged(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	group := func(name string, count int, extra string) string {
		return fmt.Sprintf("{name: %s, count: %d, image: {name: gold}, flavor: m1.small, networks: [private]%s}", name, count, extra)
	}
	d := New(provisioner.Cloud{}, parse(t, "controller: {interval: 1m}\ngroups: ["+group("web", 2, "")+"]"), Options{Log: zap.New(core)})

	for _, tc := range []struct {
		name string
		yaml string
		want []string
	}{
		{"a deadline", "controller: {interval: 1m}\ngroups: [" + group("web", 2, ", rollout: {progress_deadline: 7m}") + "]",
			[]string{"groups[web].rollout.progress_deadline"}},
		{"the same file again", "controller: {interval: 1m}\ngroups: [" + group("web", 2, ", rollout: {progress_deadline: 7m}") + "]", nil},
		{"interval, listen, a count, a check and a new group", "controller: {interval: 2m, listen: 127.0.0.1:9999}\ngroups: [" +
			group("web", 3, ", rollout: {progress_deadline: 7m}, health: {http: {port: 80}}") + ", " + group("db", 2, "") + "]",
			[]string{"controller.interval", "groups[web].count", "groups[web].health.http", "groups[db] (added)"}},
		{"a group gone, a surge", "controller: {interval: 2m, listen: 127.0.0.1:9999}\ngroups: [" + group("db", 2, ", rollout: {max_surge: 2}") + "]",
			[]string{"groups[db].rollout.max_surge", "groups[web] (removed)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs.TakeAll()
			d.Reload(parse(t, tc.yaml))
			if got := d.Status().Config.Changed; !slices.Equal(got, tc.want) {
				t.Errorf("status changed %v, want %v", got, tc.want)
			}
			logged := logs.FilterMessage("configuration reloaded").All()
			if len(logged) != 1 {
				t.Fatalf("%d reload lines logged, want 1", len(logged))
			}
			var got []string
			raw, _ := logged[0].ContextMap()["changed"].([]any)
			for _, v := range raw {
				got = append(got, fmt.Sprint(v))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("the log names %v, want %v", got, tc.want)
			}
		})
	}
	d.Refused(errors.New("phoenix.yaml: groups[0].rollout.progress_dedline: unknown field"))
	if got, want := d.Status().Config.Changed, []string{"groups[db].rollout.max_surge", "groups[web] (removed)"}; !slices.Equal(got, want) {
		t.Errorf("after a refusal status changed %v, want the last reload's %v", got, want)
	}
}
