package trigger

import (
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestReadmeShellRecipe runs the openssl and curl recipe of
// examples/events/README.md, as written, against a Handler.
func TestReadmeShellRecipe(t *testing.T) {
	for _, tool := range []string{"bash", "openssl", "curl", "awk"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	readme, err := os.ReadFile("../../examples/events/README.md")
	if err != nil {
		t.Fatal(err)
	}
	var script string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		if strings.Contains(m[1], "openssl dgst") {
			script = m[1]
		}
	}
	if script == "" {
		t.Fatal("README.md has no sh block with openssl dgst")
	}

	f := newFixture()
	f.h.Now = time.Now
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	secretFile := filepath.Join(t.TempDir(), "webhook.secret")
	if err := os.WriteFile(secretFile, append(testSecret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "PHOENIX_URL="+srv.URL+"/v1/events", "PHOENIX_SECRET_FILE="+secretFile)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(string(out), `"status":"accepted"`) || !strings.Contains(string(out), "HTTP 202") {
		t.Fatalf("the recipe got:\n%s", out)
	}
	body, err := os.ReadFile("../../examples/events/security.patch.json")
	if err != nil {
		t.Fatal(err)
	}
	want, err := Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.d.dispatched(); len(got) != 1 || !sameEvent(got[0], want) {
		t.Fatalf("dispatched %+v, want %+v", got, want)
	}
}
