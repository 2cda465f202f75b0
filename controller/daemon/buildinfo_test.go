package daemon_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/phoenix-ops/phoenix/controller/daemon"
)

func TestBuildInfoMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	daemon.NewMetrics(reg)
	daemon.RegisterBuildInfo(reg, daemon.BuildInfo{Version: "v1.2.0", Commit: "0123456789ab", GoVersion: "go1.26.8"})
	want := `# HELP phoenix_build_info Always 1; its labels name the running Phoenix build (version, commit, go_version).
# TYPE phoenix_build_info gauge
phoenix_build_info{commit="0123456789ab",go_version="go1.26.8",version="v1.2.0"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "phoenix_build_info"); err != nil {
		t.Error(err)
	}
}
