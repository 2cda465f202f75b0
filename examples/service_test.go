package examples_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestServiceUnitVerifies runs systemd-analyze verify on phoenix.service,
// with ExecStart pointed at a binary that exists here (verify refuses a
// missing one). It skips where systemd-analyze is absent, unless
// PHOENIX_REQUIRE_SYSTEMD_ANALYZE is set (CI).
func TestServiceUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("PHOENIX_REQUIRE_SYSTEMD_ANALYZE") != "" {
			t.Fatal("systemd-analyze is required (PHOENIX_REQUIRE_SYSTEMD_ANALYZE) but not found")
		}
		t.Skip("systemd-analyze not found")
	}
	unit, err := os.ReadFile("phoenix.service")
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(string(unit), "ExecStart=/usr/local/bin/phoenix ", "ExecStart="+self+" ", 1)
	if body == string(unit) {
		t.Fatal("phoenix.service has no ExecStart=/usr/local/bin/phoenix line")
	}
	path := filepath.Join(t.TempDir(), "phoenix.service")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	// Complaints about the host's own units are not ours.
	var ours []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "phoenix.service") {
			ours = append(ours, line)
		}
	}
	if err != nil || len(ours) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, strings.Join(ours, "\n"))
	}
}

// The unit keeps the hardening the README promises.
func TestServiceUnitHardening(t *testing.T) {
	unit, err := os.ReadFile("phoenix.service")
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(string(unit), "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	for _, want := range []string{
		"NoNewPrivileges=yes",
		"ProtectSystem=strict",
		"CapabilityBoundingSet=",
		"RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
		"SystemCallFilter=@system-service",
		"LoadCredential=webhook.key:/etc/phoenix/webhook.key",
	} {
		if !lines[want] {
			t.Errorf("phoenix.service lacks the line %q", want)
		}
	}
}
