package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// writeConfig writes a configuration file (and any files beside it) in a
// test's own directory and returns its path.
func writeConfig(t *testing.T, yaml string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "phoenix.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConfigCheckPassesEveryExample: the examples are what operators
// copy, so each must be "ok" exactly as the daemon would load it.
func TestConfigCheckPassesEveryExample(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		base := filepath.Base(f)
		if strings.HasPrefix(base, "clouds") || strings.HasSuffix(base, ".cloud-init.yaml") {
			continue
		}
		n++
		t.Run(base, func(t *testing.T) {
			out, code := run(t, "config", "check", "--config", f)
			if code != cli.ExitOK || !strings.HasPrefix(out, "ok: "+f+": ") {
				t.Fatalf("exit %d, want ok:\n%s", code, out)
			}
		})
	}
	if n < 3 {
		t.Fatalf("checked %d examples, want demo, production and replicas at least", n)
	}
}

func TestConfigCheckSummary(t *testing.T) {
	path := writeConfig(t, `cloud: prod
groups:
  - name: web
    count: 6
    image: {name: gold, newest: true, properties: {os_distro: ubuntu}, tags: [cis]}
    flavor: m1.small
    networks: [app-net]
  - name: bastion
    count: 1
    image: {id: 3f1e9a52-6d0b-4c5e-9a11-0b7c2d4e8f60}
    flavor: m1.small
    networks: [app-net]
`, nil)
	out, code := run(t, "config", "check", "-c", path)
	for _, want := range []string{
		"ok: " + path + ": 2 groups, 7 servers, cloud prod\n",
		`web              count 6    image name "gold", os_distro="ubuntu", tag "cis", newest`,
		`bastion          count 1    image id 3f1e9a52-6d0b-4c5e-9a11-0b7c2d4e8f60`,
	} {
		if code != cli.ExitOK || !strings.Contains(out, want) {
			t.Errorf("exit %d; output lacks %q:\n%s", code, want, out)
		}
	}

	out, code = run(t, "config", "check", "-c", path, "-o", "json")
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != cli.ExitOK {
		t.Fatalf("exit %d, not one JSON object (%v):\n%s", code, err, out)
	}
	if res["ok"] != true || res["servers"] != 7.0 || res["cloud_checked"] != false || len(res["groups"].([]any)) != 2 {
		t.Errorf("json: %s", out)
	}
}

// TestConfigCheckNamesEveryProblem: a refused file lists every problem,
// each with the file and the field, and exits 2 — in text and in JSON.
func TestConfigCheckNamesEveryProblem(t *testing.T) {
	path := writeConfig(t, `controller:
  interval: 10ms
  webhook_secret_file: empty.key
groups:
  - name: web
    count: -1
    image: {name: gold}
    flavor: m1.small
    networks: [app-net]
    rollout: {max_surgee: 2}
`, map[string]string{"empty.key": ""})
	out, code := run(t, "config", "check", "-c", path)
	if code != cli.ExitUsage {
		t.Fatalf("exit %d, want %d:\n%s", code, cli.ExitUsage, out)
	}
	for _, want := range []string{
		path + ": controller.interval (line 2): expected a duration of at least 1s",
		path + ": groups[0].count (line 6): ",
		path + `: groups[0].rollout (line 10): unknown field "max_surgee"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// The file is read as the daemon reads it at start: the webhook
	// secret at load, then the TLS pair.
	for _, tc := range []struct{ key, want string }{
		{"\n", "controller.webhook_secret_file"},
		{"a-webhook-secret-long-enough-for-phoenix-0123", "controller.tls_cert_file"},
	} {
		path = writeConfig(t, `controller:
  webhook_secret_file: webhook.key
  tls_cert_file: tls.crt
  tls_key_file: tls.key
groups: [{name: web, count: 1, image: {name: gold}, flavor: m1.small, networks: [app-net]}]
`, map[string]string{"webhook.key": tc.key, "tls.crt": "not a certificate", "tls.key": "not a key"})
		out, code = run(t, "config", "check", "-c", path, "-o", "json")
		var res struct {
			OK       bool `json:"ok"`
			Problems []struct {
				Field   string `json:"field"`
				Message string `json:"message"`
			} `json:"problems"`
		}
		if err := json.Unmarshal([]byte(strings.SplitN(out, "\nERROR", 2)[0]), &res); err != nil || code != cli.ExitUsage || res.OK {
			t.Fatalf("exit %d, want %d and ok false (%v):\n%s", code, cli.ExitUsage, err, out)
		}
		var fields []string
		for _, p := range res.Problems {
			fields = append(fields, p.Field)
		}
		if strings.Join(fields, " ") != tc.want {
			t.Errorf("problems at %v, want %s:\n%s", fields, tc.want, out)
		}
	}
}

// TestConfigErrorsExitTwoInEveryVerb: every verb that loads a
// configuration refuses a bad one with exit 2, naming the file, before it
// asks the cloud anything — the daemon does not try it again.
func TestConfigErrorsExitTwoInEveryVerb(t *testing.T) {
	env := simtest.Start(t, sim.Options{}, 0)
	t.Setenv("OS_CLIENT_CONFIG_FILE", env.CloudsFile)
	t.Setenv("OS_CLOUD", simtest.CloudName)
	path := writeConfig(t, "groups:\n  - name: web\n    count: -1\n", nil)
	env.Sim.ResetRequests()
	for _, args := range [][]string{
		{"config", "check"},
		{"config", "check", "--cloud"},
		{"daemon"},
		{"rebuild", "--all"},
		{"plan"},
		{"resume", "-g", "web"},
		{"rollback", "-g", "web"},
		{"hold", "-g", "web", "--reason", "test"},
		{"release", "-g", "web"},
		{"protect", "--server", "x", "--reason", "test"},
		{"unprotect", "--server", "x"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, code := run(t, append(args, "--config", path)...)
			if code != cli.ExitUsage || !strings.Contains(out, path+": groups[0]") {
				t.Fatalf("exit %d, want %d naming %s:\n%s", code, cli.ExitUsage, path, out)
			}
		})
	}
	if reqs := env.Sim.Requests(); len(reqs) > 0 {
		t.Errorf("a bad configuration reached the cloud: %d requests, the first %s %s", len(reqs), reqs[0].Method, reqs[0].Path)
	}
}

// TestConfigCheckCloudNamesWhatDoesNotResolve runs --cloud against the
// simulator: a flavor, a network and a key pair it lacks are each named,
// with exit 2; the same file with them present is ok.
func TestConfigCheckCloudNamesWhatDoesNotResolve(t *testing.T) {
	env := simtest.Start(t, sim.Options{}, 0)
	t.Setenv("OS_CLIENT_CONFIG_FILE", env.CloudsFile)
	t.Setenv("OS_CLOUD", "")
	env.Sim.AddImage(sim.Image{Name: "gold"})
	path := writeConfig(t, `cloud: phoenix-sim
groups:
  - name: web
    count: 2
    image: {name: gold, newest: true}
    flavor: m1.giant
    networks: [private, backend-net]
    key_name: ops
    security_groups: [default]
`, nil)
	out, code := run(t, "config", "check", "-c", path, "--cloud")
	if code != cli.ExitUsage {
		t.Fatalf("exit %d, want %d:\n%s", code, cli.ExitUsage, out)
	}
	for _, want := range []string{
		path + `: groups[0].flavor: flavor "m1.giant" does not resolve: flavor "m1.giant": not found`,
		path + `: groups[0].networks[1]: network "backend-net" does not resolve`,
		path + `: groups[0].key_name: key pair "ops" does not resolve`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "does not resolve") != 3 {
		t.Errorf("want exactly the flavor, the network and the key pair named:\n%s", out)
	}

	out, code = run(t, "config", "check", "-c", path, "--cloud", "-o", "json")
	var res struct {
		OK           bool `json:"ok"`
		CloudChecked bool `json:"cloud_checked"`
		Unresolved   []struct {
			Field, Kind, Name, Problem string
		} `json:"unresolved"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\nERROR", 2)[0]), &res); err != nil || code != cli.ExitUsage {
		t.Fatalf("exit %d (%v):\n%s", code, err, out)
	}
	if res.OK || !res.CloudChecked || len(res.Unresolved) != 3 || res.Unresolved[2].Kind != "key pair" {
		t.Errorf("json: %+v\n%s", res, out)
	}

	env.Sim.AddFlavor(sim.Flavor{Name: "m1.giant", VCPUs: 16, RAM: 65536, Disk: 160})
	env.Sim.AddNetwork(sim.Network{Name: "backend-net"})
	env.Sim.AddKeypair("ops")
	out, code = run(t, "config", "check", "-c", path, "--cloud")
	if code != cli.ExitOK || !strings.Contains(out, "; all 6 names resolve in the cloud") {
		t.Fatalf("exit %d, want ok with 6 names:\n%s", code, out)
	}
}
