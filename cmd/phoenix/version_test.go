package main

import (
	"bytes"
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/cmd/internal/version"
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
