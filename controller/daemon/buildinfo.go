package daemon

import "github.com/prometheus/client_golang/prometheus"

// BuildInfo is the running Phoenix's build, as phoenix_build_info shows it.
type BuildInfo struct {
	Version, Commit, GoVersion string
}

// RegisterBuildInfo registers phoenix_build_info with reg: a gauge that is
// always 1 and whose labels name the build, the Prometheus habit that lets
// a query join the version onto any series and an alert see a fleet
// running mixed releases. It panics, like MustRegister, when registered
// twice.
func RegisterBuildInfo(reg prometheus.Registerer, b BuildInfo) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "phoenix_build_info",
		Help:        "Always 1; its labels name the running Phoenix build (version, commit, go_version).",
		ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.Commit, "go_version": b.GoVersion},
	})
	g.Set(1)
	reg.MustRegister(g)
}
