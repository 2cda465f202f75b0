package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/cmd/internal/version"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

var stamped = version.Info{
	Version: "v1.2.0", Commit: "0123456789abcdef0123456789abcdef01234567",
	BuildDate: "2026-08-01T12:00:00Z", GoVersion: "go1.26.8", Platform: "linux/arm64",
}

func TestVersionOutput(t *testing.T) {
	for _, tc := range []struct {
		output string
		want   string
	}{
		{"text", `version:     v1.2.0
commit:      0123456789abcdef0123456789abcdef01234567
build date:  2026-08-01T12:00:00Z
go version:  go1.26.8
platform:    linux/arm64
`},
		{"json", `{"version":"v1.2.0","commit":"0123456789abcdef0123456789abcdef01234567","build_date":"2026-08-01T12:00:00Z","go_version":"go1.26.8","platform":"linux/arm64","modified":false}
`},
	} {
		t.Run(tc.output, func(t *testing.T) {
			var out bytes.Buffer
			if err := runVersion(&out, &cli.Globals{Output: tc.output}, stamped); err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.want {
				t.Errorf("phoenix version -o %s:\n%s\nwant:\n%s", tc.output, out.String(), tc.want)
			}
		})
	}
}

// The verb, --version and -o json all report the running binary.
func TestVersionCommand(t *testing.T) {
	info := version.Get()

	out, code := run(t, "version")
	if code != cli.ExitOK || !strings.Contains(out, "version:     "+info.Version+"\n") || !strings.Contains(out, runtime.Version()) {
		t.Errorf("phoenix version: exit %d\n%s", code, out)
	}

	out, code = run(t, "version", "-o", "json")
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); code != cli.ExitOK || err != nil {
		t.Fatalf("phoenix version -o json: exit %d, %v\n%s", code, err, out)
	}
	for _, key := range []string{"version", "commit", "build_date", "go_version", "platform", "modified"} {
		if _, ok := got[key]; !ok {
			t.Errorf("phoenix version -o json has no %q: %s", key, out)
		}
	}
	if got["version"] != info.Version || got["go_version"] != runtime.Version() {
		t.Errorf("phoenix version -o json: %s", out)
	}

	out, code = run(t, "--version")
	if code != cli.ExitOK || out != "phoenix "+info.Line()+"\n" {
		t.Errorf("phoenix --version: exit %d\n%q", code, out)
	}

	if out, code := run(t, "version", "-o", "yaml"); code != cli.ExitUsage || !strings.Contains(out, "--output") {
		t.Errorf("phoenix version -o yaml: exit %d, want %d\n%s", code, cli.ExitUsage, out)
	}
}

// A binary stamped as .ci/release stamps it says so everywhere an
// operator or a cloud looks: phoenix version, phoenix_build_info on
// /metrics, and the User-Agent of its cloud requests.
func TestStampedBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds phoenix")
	}
	const pkg = "github.com/phoenix-ops/phoenix/cmd/internal/version"
	bin := filepath.Join(t.TempDir(), "phoenix")
	ldflags := "-X " + pkg + ".version=v0.9.0-test -X " + pkg + ".commit=feedfacefeedface -X " + pkg + ".date=2026-08-01T12:00:00Z"
	if out, err := exec.Command("go", "build", "-ldflags", ldflags, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build phoenix: %v\n%s", err, out)
	}

	out, err := exec.Command(bin, "version", "-o", "json").Output()
	var info version.Info
	if err == nil {
		err = json.Unmarshal(out, &info)
	}
	if err != nil || info.Version != "v0.9.0-test" || info.Commit != "feedfacefeedface" || info.BuildDate != "2026-08-01T12:00:00Z" {
		t.Errorf("phoenix version -o json: %v\n%s", err, out)
	}

	env := simtest.Start(t, sim.Options{BootTime: sim.Fixed(30 * time.Millisecond), HealthDelay: sim.Fixed(10 * time.Millisecond)}, 0)
	env.Sim.AddImage(sim.Image{Name: "gold"})
	cfg := filepath.Join(t.TempDir(), "phoenix.yaml")
	conf := "cloud: phoenix-sim\ncontroller: {interval: 1h, listen: \"127.0.0.1:0\"}\ngroups:\n" + daemonGroupYAML("web", 1)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	env.Sim.ResetRequests()
	d := startDaemonProc(t, bin, cfg, env.CloudsFile)

	f, ok := metricsOf(t, d.url)["phoenix_build_info"]
	if !ok || len(f.GetMetric()) != 1 || f.GetMetric()[0].GetGauge().GetValue() != 1 {
		t.Fatalf("phoenix_build_info: %v", f)
	}
	labels := map[string]string{}
	for _, l := range f.GetMetric()[0].GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["version"] != "v0.9.0-test" || labels["commit"] != "feedfacefeedface" || labels["go_version"] != runtime.Version() {
		t.Errorf("phoenix_build_info labels %v", labels)
	}

	reqs := env.Sim.Requests()
	if len(reqs) == 0 {
		t.Fatal("the daemon sent no request to the cloud")
	}
	for _, r := range reqs {
		if !strings.HasPrefix(r.UserAgent, "phoenix/v0.9.0-test ") {
			t.Errorf("%s %s: User-Agent %q", r.Method, r.Path, r.UserAgent)
		}
	}
	d.stop(t, syscall.SIGTERM)
}
