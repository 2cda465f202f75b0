package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// plan --detailed-exitcode answers as terraform plan's does: 0 nothing to
// do, 2 changes pending, 1 any error (a refused configuration too, which
// is 2 without the flag).
func TestPlanDetailedExitCode(t *testing.T) {
	env, cfg := fleet(t)
	cases := []struct {
		name   string
		before func()
		args   []string
		want   int
	}{
		{"converged", func() {}, []string{"plan", "--config", cfg, "--detailed-exitcode"}, cli.ExitOK},
		{"converged, json", func() {}, []string{"plan", "--config", cfg, "--detailed-exitcode", "-o", "json"}, cli.ExitOK},
		{"a new image", func() { env.Sim.AddImage(sim.Image{Name: "gold"}) }, []string{"plan", "--config", cfg, "--detailed-exitcode"}, 2},
		{"a new image, json", func() {}, []string{"plan", "--config", cfg, "--detailed-exitcode", "-o", "json"}, 2},
		{"a new image, without the flag", func() {}, []string{"plan", "--config", cfg}, cli.ExitOK},
		{"no such file", func() {}, []string{"plan", "--config", filepath.Join(t.TempDir(), "nope.yaml"), "--detailed-exitcode"}, cli.ExitNotDone},
		{"no such file, without the flag", func() {}, []string{"plan", "--config", filepath.Join(t.TempDir(), "nope.yaml")}, cli.ExitUsage},
		{"no cloud", func() { t.Setenv("OS_CLIENT_CONFIG_FILE", filepath.Join(t.TempDir(), "none.yaml")) }, []string{"plan", "--config", cfg, "--detailed-exitcode"}, cli.ExitNotDone},
	}
	for _, tc := range cases {
		tc.before()
		out, code := run(t, tc.args...)
		if code != tc.want {
			t.Errorf("%s: %s: exit %d, want %d\n%s", tc.name, strings.Join(tc.args, " "), code, tc.want, out)
		}
	}
}
