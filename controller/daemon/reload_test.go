package daemon

import (
	"encoding/json"
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
