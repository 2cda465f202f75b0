package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const valid = `cloud: prod
groups:
  - name: web
    count: 10
    image: {name: ubuntu-24.04-gold, newest: true, properties: {os_distro: ubuntu}, tags: [gold]}
    flavor: m1.small
    networks: [app-net]
    key_name: ops
    security_groups: [web]
    server_group: web-anti
    availability_zones: [az1, az2]
    user_data_file: web.yaml
    metadata: {owner: team-web}
    rollout: {max_surge: 25%, max_unavailable: 10%, min_ready: 30s}
    health:
      http: {port: 8080, path: /healthz, expect_status: 200}
      interval: 5s
      timeout: 2s
      healthy_threshold: 2
      unhealthy_threshold: 4
      grace: 90s
  - name: worker
    count: 3
    image: {id: 5f0c2a7e-0000-4000-8000-000000000001}
    flavor: 42
    networks: [private]
`

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadValidAppliesDefaults(t *testing.T) {
	dir := writeFiles(t, map[string]string{"phoenix.yaml": valid, "web.yaml": "#cloud-config\n"})
	cfg, err := Load(filepath.Join(dir, "phoenix.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	web, worker := cfg.Groups[0], cfg.Groups[1]
	if string(web.UserData) != "#cloud-config\n" {
		t.Errorf("user data = %q", web.UserData)
	}
	if got := web.Rollout.MaxSurge.Resolve(web.Count, true); got != 3 {
		t.Errorf("25%% surge of 10 = %d, want 3 (rounded up)", got)
	}
	if got := web.Rollout.MaxUnavailable.Resolve(web.Count, false); got != 1 {
		t.Errorf("10%% unavailable of 10 = %d, want 1", got)
	}
	if web.Health.Grace.D() != 90*time.Second || web.Health.UnhealthyThreshold != 4 {
		t.Errorf("written health values lost: %+v", web.Health)
	}
	if worker.Flavor != "42" {
		t.Errorf("numeric flavor = %q, want the string 42", worker.Flavor)
	}
	want := Rollout{MaxSurge: IntOrPercent{Value: 1}, MaxUnavailable: IntOrPercent{Value: 0}}
	if worker.Rollout != want {
		t.Errorf("default rollout = %+v, want %+v", worker.Rollout, want)
	}
	h := worker.Health
	if h.HTTP != nil || h.TCP != nil || h.Interval.D() != 5*time.Second || h.Timeout.D() != 2*time.Second ||
		h.HealthyThreshold != 3 || h.UnhealthyThreshold != 3 || h.Grace.D() != 60*time.Second {
		t.Errorf("default health = %+v", h)
	}
}

func TestHTTPPathDefaultAndZeroGrace(t *testing.T) {
	cfg, err := Parse("p.yaml", []byte(`
groups:
  - name: a
    count: 1
    image: {name: x}
    flavor: f
    networks: [n]
    health: {http: {port: 80}, grace: 0s, interval: 100ms}
`), ".")
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.Groups[0].Health
	if h.HTTP.Path != "/" || h.Grace != 0 || h.Timeout.D() != 100*time.Millisecond {
		t.Fatalf("health = %+v / %+v: want path /, grace 0 kept, timeout capped at the interval", h, *h.HTTP)
	}
}

// group returns a minimal valid group with one line replaced or added.
func group(extra string) string {
	base := map[string]string{
		"name":     "name: web",
		"count":    "count: 4",
		"image":    "image: {name: gold}",
		"flavor":   "flavor: m1.small",
		"networks": "networks: [private]",
	}
	key, _, _ := strings.Cut(strings.TrimSpace(extra), ":")
	var b strings.Builder
	b.WriteString("groups:\n  - ")
	first := true
	for _, k := range []string{"name", "count", "image", "flavor", "networks"} {
		line := base[k]
		if k == key {
			line = extra
		}
		if !first {
			b.WriteString("    ")
		}
		b.WriteString(line + "\n")
		first = false
	}
	if _, ok := base[key]; !ok && extra != "" {
		b.WriteString("    " + extra + "\n")
	}
	return b.String()
}

func TestRefusedConfigs(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		path string // field path the error must name
		line int
		want string // part of the message
	}{
		{"surge not a number", group(`rollout: {max_surge: lots}`), "groups[0].rollout.max_surge", 7, `expected a whole number ≥ 0 or a percentage such as "25%", got "lots"`},
		{"surge negative", group(`rollout: {max_surge: -1}`), "groups[0].rollout.max_surge", 7, "whole number ≥ 0"},
		{"surge fraction", group(`rollout: {max_surge: 1.5}`), "groups[0].rollout.max_surge", 7, `got "1.5"`},
		{"unavailable over 100%", group(`rollout: {max_unavailable: 150%}`), "groups[0].rollout.max_unavailable", 7, "0% to 100%"},
		{"both zero", group(`rollout: {max_surge: 0, max_unavailable: 0}`), "groups[0].rollout", 7, "no server could ever be replaced"},
		{"both round to zero", group(`rollout: {max_surge: 0%, max_unavailable: 20%}`), "groups[0].rollout", 7, "both come to 0 servers for a count of 4"},
		{"unavailable above count", group(`rollout: {max_unavailable: 5}`), "groups[0].rollout.max_unavailable", 7, "at most the group's count 4"},
		{"bare duration", group(`rollout: {min_ready: 30}`), "groups[0].rollout.min_ready", 7, "with a unit"},
		{"negative duration", group(`rollout: {min_ready: -5s}`), "groups[0].rollout.min_ready", 7, "zero or more"},
		{"unknown rollout field", group(`rollout: {max_surgee: 1}`), "groups[0].rollout", 7, `unknown field "max_surgee"; did you mean "max_surge"?`},
		{"unknown group field", group(`flavour: m1.small`), "groups[0]", 7, `unknown field "flavour"; did you mean "flavor"?`},
		{"unknown top-level field", "grups: []\n", "(top level)", 1, `unknown field "grups"`},
		{"unknown http field", group(`health: {http: {port: 80, pth: /}}`), "groups[0].health.http", 7, `unknown field "pth"`},
		{"no groups", "cloud: x\n", "groups", 0, "at least one group"},
		{"groups not a list", "groups: {name: web}\n", "groups", 1, "expected a list, got a mapping"},
		{"bad name", group(`name: Web_Servers`), "groups[0].name", 2, "lower-case letters"},
		{"missing name", group(`name: ""`), "groups[0].name", 2, "needs a name"},
		{"count zero", group(`count: 0`), "groups[0].count", 3, "from 1 to 10000, got 0"},
		{"count not a number", group(`count: many`), "groups[0].count", 3, `expected a whole number, got "many"`},
		{"count a list", group(`count: [1]`), "groups[0].count", 3, "expected a whole number, got a list"},
		{"image id and name", group(`image: {id: abc, name: gold}`), "groups[0].image", 4, "id selects one image by itself"},
		{"image empty", group(`image: {newest: true}`), "groups[0].image", 4, "expected an image id, or a name"},
		{"image newest not bool", group(`image: {name: gold, newest: yes please}`), "groups[0].image.newest", 4, "expected true or false"},
		{"flavor missing", group(`flavor: ""`), "groups[0].flavor", 5, "flavor name or ID is required"},
		{"flavor a mapping", group(`flavor: {name: m1}`), "groups[0].flavor", 5, "expected a string, got a mapping"},
		{"no networks", group(`networks: []`), "groups[0].networks", 6, "at least one network"},
		{"duplicate network", group(`networks: [a, a]`), "groups[0].networks[1]", 6, `network "a" is listed twice`},
		{"reserved metadata", group(`metadata: {"phoenix:group": x}`), "groups[0].metadata.phoenix:group", 0, "Phoenix's own record"},
		{"bad metadata key", group(`metadata: {"a/b": x}`), "groups[0].metadata.a/b", 0, "letters, digits"},
		{"missing user data", group(`user_data_file: nope.yaml`), "groups[0].user_data_file", 7, "cannot read"},
		{"http and tcp", group(`health: {http: {port: 80}, tcp: {port: 22}}`), "groups[0].health", 7, "configure one check, not both"},
		{"port out of range", group(`health: {tcp: {port: 70000}}`), "groups[0].health.tcp.port", 7, "from 1 to 65535, got 70000"},
		{"port missing", group(`health: {http: {path: /}}`), "groups[0].health.http.port", 7, "got 0"},
		{"relative path", group(`health: {http: {port: 80, path: healthz}}`), "groups[0].health.http.path", 7, `starting with "/"`},
		{"bad status", group(`health: {http: {port: 80, expect_status: 42}}`), "groups[0].health.http.expect_status", 7, "from 100 to 599"},
		{"timeout over interval", group(`health: {tcp: {port: 22}, interval: 1s, timeout: 2s}`), "groups[0].health.timeout", 7, "at most the interval 1s"},
		{"zero threshold written", group(`health: {tcp: {port: 22}, healthy_threshold: 0}`), "groups[0].health.healthy_threshold", 7, "at least 1"},
		{"health tuning without a check", group(`health: {interval: 1s}`), "groups[0].health.interval", 7, "no effect without a check"},
		{"duplicate key", group("rollout: {max_surge: 1, max_surge: 2}"), "groups[0].rollout.max_surge", 7, "given twice"},
		{"duplicate group", group("") + "  - {name: web, count: 1, image: {name: x}, flavor: f, networks: [n]}\n", "groups[1].name", 7, `defined twice`},
		{"not yaml", "groups: [\n", "", 0, "not valid YAML"},
		{"empty file", "", "", 0, "the file is empty"},
		{"only comments", "# nothing\n", "", 0, "the file is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("phoenix.yaml", []byte(tc.yaml), t.TempDir())
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.yaml)
			}
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("error %T is not a *config.Error: %v", err, err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "phoenix.yaml: ") {
				t.Errorf("error does not start with the file name: %s", msg)
			}
			var found *Problem
			for i, p := range cerr.Problems {
				if p.Path == tc.path && strings.Contains(p.Message, tc.want) {
					found = &cerr.Problems[i]
				}
			}
			if found == nil {
				t.Fatalf("no problem at %q saying %q in:\n%s", tc.path, tc.want, msg)
			}
			if tc.line != 0 && found.Line != tc.line {
				t.Errorf("problem at line %d, want %d: %s", found.Line, tc.line, msg)
			}
		})
	}
}

func TestAllProblemsReportedTogether(t *testing.T) {
	_, err := Parse("phoenix.yaml", []byte(`
groups:
  - name: a
    count: 0
    image: {name: x}
    flavor: f
    networks: [n]
  - name: b
    count: 2
    image: {}
    flavor: f
    networks: [n]
    rollout: {max_surge: 0}
`), ".")
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("want a *config.Error, got %v", err)
	}
	paths := map[string]bool{}
	for _, p := range cerr.Problems {
		paths[p.Path] = true
	}
	for _, want := range []string{"groups[0].count", "groups[1].image", "groups[1].rollout"} {
		if !paths[want] {
			t.Errorf("no problem reported at %s; got:\n%v", want, err)
		}
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != len(cerr.Problems) {
		t.Errorf("%d lines for %d problems", n, len(cerr.Problems))
	}
}

func TestResolveFenceposts(t *testing.T) {
	cases := []struct {
		v                  IntOrPercent
		count              int
		surge, unavailable int
	}{
		{IntOrPercent{Value: 25, Percent: true}, 10, 3, 2},
		{IntOrPercent{Value: 25, Percent: true}, 4, 1, 1},
		{IntOrPercent{Value: 10, Percent: true}, 4, 1, 0},
		{IntOrPercent{Value: 0, Percent: true}, 10, 0, 0},
		{IntOrPercent{Value: 100, Percent: true}, 7, 7, 7},
		{IntOrPercent{Value: 33, Percent: true}, 3, 1, 0},
		{IntOrPercent{Value: 2}, 10, 2, 2},
		{IntOrPercent{Value: 0}, 10, 0, 0},
	}
	for _, tc := range cases {
		if got := tc.v.Resolve(tc.count, true); got != tc.surge {
			t.Errorf("%s of %d as surge = %d, want %d", tc.v, tc.count, got, tc.surge)
		}
		if got := tc.v.Resolve(tc.count, false); got != tc.unavailable {
			t.Errorf("%s of %d as unavailable = %d, want %d", tc.v, tc.count, got, tc.unavailable)
		}
	}
}

func TestLoadMissingFileNamesIt(t *testing.T) {
	_, err := Load("/nonexistent/phoenix.yaml")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/phoenix.yaml: cannot read the file") {
		t.Fatalf("error = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(valid))
	f.Add([]byte(group(`rollout: {max_surge: 25%}`)))
	f.Add([]byte("groups: [{name: a, count: 1, image: {id: x}, flavor: f, networks: [n], health: {tcp: {port: 1}}}]"))
	f.Add([]byte("groups: &a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data, t.TempDir())
		if err != nil {
			var cerr *Error
			if !errors.As(err, &cerr) || !strings.HasPrefix(err.Error(), "fuzz.yaml: ") {
				t.Fatalf("error is not a *config.Error naming the file: %v", err)
			}
			return
		}
		if len(cfg.Groups) == 0 {
			t.Fatal("accepted a config without groups")
		}
	})
}
