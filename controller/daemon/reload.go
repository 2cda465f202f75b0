package daemon

import (
	"reflect"

	"github.com/phoenix-ops/phoenix/controller/config"
)

// restartOnly are the settings a running daemon reads once, at start: a
// listener bound, a client or a semaphore built. A reload that changes
// one keeps the running value and names the field, in the log and in
// /v1/status, until the daemon restarts.
var restartOnly = []struct {
	field string
	value func(*config.Config) any
}{
	{"cloud", func(c *config.Config) any { return c.Cloud }},
	{"controller.parallel_groups", func(c *config.Config) any { return c.Controller.ParallelGroups }},
	{"controller.listen", func(c *config.Config) any { return c.Controller.Listen }},
	{"controller.metrics_listen", func(c *config.Config) any { return c.Controller.MetricsListen }},
	// A new certificate for a listener already on HTTPS applies at once;
	// turning TLS on or off rebinds the listener.
	{"controller.tls_cert_file", func(c *config.Config) any { return c.Controller.TLSCertFile != "" }},
	{"controller.coordination", func(c *config.Config) any { return c.Controller.Coordination }},
	{"controller.notifications", func(c *config.Config) any { return c.Controller.Notifications }},
}

// appliedAtReload are the controller settings a reload applies; with
// restartOnly they name every field of config.Controller (a test holds
// them to it, so a new field is sorted into one or the other). The
// secrets, the certificate and the notify targets are read again by the
// command that runs the daemon (cmd/phoenix).
var appliedAtReload = []string{"controller.interval", "controller.webhook_secret_file",
	"controller.previous_webhook_secret_file", "controller.tls_cert_file", "controller.tls_key_file",
	"controller.notify"}

// restartNeeded names the restart-only settings of next that differ from
// those the daemon started with. Only names: a value may hold a secret
// (the broker's URL is read into its block).
func restartNeeded(started, next *config.Config) []string {
	var out []string
	for _, f := range restartOnly {
		if !reflect.DeepEqual(f.value(started), f.value(next)) {
			out = append(out, f.field)
		}
	}
	return out
}
