// Package version says which Phoenix is running. A release build stamps
// the version, commit and date with -ldflags -X (see .ci/release); any
// other build falls back to what the Go toolchain recorded (the module
// version and the VCS revision and time), so that `go build` and `go run`
// still say something true rather than a made-up number.
//
// Operators quote it in bug reports, the cloud sees it in the User-Agent
// of every request, and Prometheus in phoenix_build_info.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Stamped by the release build, e.g.
//
//	-X github.com/phoenix-ops/phoenix/cmd/internal/version.version=v1.2.0
var (
	version string
	commit  string
	date    string // RFC 3339 UTC: the commit's time, so rebuilds agree
)

// Unknown stands for a field neither the stamp nor the toolchain knew.
const Unknown = "unknown"

// Info is one build of Phoenix. The JSON keys are what `phoenix version
// -o json` prints.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	BuildDate string `json:"build_date"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
	// Modified says the source had uncommitted changes, when Go recorded it.
	Modified bool `json:"modified"`
}

// Get is the running binary's build.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(stamp{version: version, commit: commit, date: date}, bi)
}

type stamp struct{ version, commit, date string }

// resolve prefers the stamp, field by field, over the toolchain's record.
func resolve(s stamp, bi *debug.BuildInfo) Info {
	info := Info{
		Version:   "devel",
		Commit:    Unknown,
		BuildDate: Unknown,
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
	}
	if bi != nil {
		// Go records a module version only when it knows one (Go 1.24+
		// derives it from the VCS); "(devel)" means it did not.
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			info.Version = v
		}
		for _, kv := range bi.Settings {
			switch kv.Key {
			case "vcs.revision":
				info.Commit = kv.Value
			case "vcs.time":
				info.BuildDate = kv.Value
			case "vcs.modified":
				info.Modified = kv.Value == "true"
			}
		}
	}
	if s.version != "" {
		info.Version = s.version
	}
	if s.commit != "" {
		info.Commit = s.commit
	}
	if s.date != "" {
		info.BuildDate = s.date
	}
	return info
}

// Line is the build on one line, for --version and logs.
func (i Info) Line() string {
	commit := i.Commit
	if len(commit) > 12 {
		commit = commit[:12]
	}
	if i.Modified {
		commit += "+modified"
	}
	return fmt.Sprintf("%s (commit %s, built %s, %s %s)", i.Version, commit, i.BuildDate, i.GoVersion, i.Platform)
}

// UserAgent is the product token Phoenix sends to the cloud and to
// webhooks: phoenix/VERSION.
func (i Info) UserAgent() string { return "phoenix/" + i.Version }
