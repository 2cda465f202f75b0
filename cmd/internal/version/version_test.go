package version

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	vcs := &debug.BuildInfo{
		Main: debug.Module{Path: "github.com/phoenix-ops/phoenix", Version: "v0.0.0-20260801120000-0123456789ab"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-08-01T12:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	devel := &debug.BuildInfo{Main: debug.Module{Path: "github.com/phoenix-ops/phoenix", Version: "(devel)"}}
	for _, tc := range []struct {
		name  string
		stamp stamp
		bi    *debug.BuildInfo
		want  Info
	}{
		{"release build: the stamp wins", stamp{"v1.2.0", "feedface", "2026-08-02T00:00:00Z"}, vcs,
			Info{Version: "v1.2.0", Commit: "feedface", BuildDate: "2026-08-02T00:00:00Z", Modified: true}},
		{"go build in a clone: what Go recorded", stamp{}, vcs,
			Info{Version: "v0.0.0-20260801120000-0123456789ab", Commit: "0123456789abcdef0123456789abcdef01234567", BuildDate: "2026-08-01T12:00:00Z", Modified: true}},
		{"go run without VCS: devel, nothing made up", stamp{}, devel,
			Info{Version: "devel", Commit: Unknown, BuildDate: Unknown}},
		{"no build info at all", stamp{}, nil,
			Info{Version: "devel", Commit: Unknown, BuildDate: Unknown}},
		{"a partial stamp keeps the rest", stamp{version: "v1.3.0-rc.1"}, vcs,
			Info{Version: "v1.3.0-rc.1", Commit: "0123456789abcdef0123456789abcdef01234567", BuildDate: "2026-08-01T12:00:00Z", Modified: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.want.GoVersion = runtime.Version()
			tc.want.Platform = runtime.GOOS + "/" + runtime.GOARCH
			if got := resolve(tc.stamp, tc.bi); got != tc.want {
				t.Errorf("resolve:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// What -ldflags -X sets is what Get reports.
func TestGetReadsTheStamp(t *testing.T) {
	defer func(v, c, d string) { version, commit, date = v, c, d }(version, commit, date)
	version, commit, date = "v9.8.7", "0123456789abcdef", "2026-08-01T12:00:00Z"
	got := Get()
	if got.Version != "v9.8.7" || got.Commit != "0123456789abcdef" || got.BuildDate != "2026-08-01T12:00:00Z" {
		t.Errorf("Get() = %+v, want the stamp", got)
	}
	if ua := got.UserAgent(); ua != "phoenix/v9.8.7" {
		t.Errorf("UserAgent() = %q", ua)
	}
}

func TestLine(t *testing.T) {
	for _, tc := range []struct {
		info Info
		want string
	}{
		{Info{Version: "v1.2.0", Commit: "0123456789abcdef0123", BuildDate: "2026-08-01T12:00:00Z", GoVersion: "go1.26.8", Platform: "linux/arm64"},
			"v1.2.0 (commit 0123456789ab, built 2026-08-01T12:00:00Z, go1.26.8 linux/arm64)"},
		{Info{Version: "devel", Commit: Unknown, BuildDate: Unknown, GoVersion: "go1.26.8", Platform: "linux/amd64", Modified: true},
			"devel (commit unknown+modified, built unknown, go1.26.8 linux/amd64)"},
	} {
		if got := tc.info.Line(); got != tc.want {
			t.Errorf("Line() = %q, want %q", got, tc.want)
		}
	}
}
