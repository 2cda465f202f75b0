package plan

import (
	"os/exec"
	"strings"
	"testing"
)

// The policy stays pure: no network, no context, no cloud SDK. A change
// that needs one of them belongs in the reconciler.
func TestPlanImportsNoIO(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case dep == "net", dep == "context", strings.HasPrefix(dep, "net/"),
			strings.Contains(dep, "gophercloud"), strings.Contains(dep, "/provisioner"), strings.Contains(dep, "/healthcheck"):
			t.Errorf("controller/plan depends on %s", dep)
		}
	}
}
