package daemon

import (
	"reflect"
	"slices"
	"strings"

	"github.com/phoenix-ops/phoenix/controller/config"
)

// restartOnly are the settings a running daemon reads once, at start: a
// listener bound, a client or a semaphore built. A reload that changes
// one keeps the running value and names the field, in the log and in
// /v1/status, until the daemon restarts.
var restartOnly = []restartSetting{
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

type restartSetting struct {
	field string
	value func(*config.Config) any
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

// reloadChanges names what a reload applies that differs from the
// configuration running before it, so that an operator sees the edit
// was taken: each changed controller setting a reload applies
// (controller.interval), each changed field of a group by the group's
// name (groups[web].rollout.progress_deadline), and each group added or
// removed (groups[web] (added)). Restart-only settings are left to
// restartNeeded. Only names: a value may hold a secret.
func reloadChanges(running, next *config.Config) []string {
	var out []string
	for _, name := range fieldChanges("controller", reflect.ValueOf(running.Controller), reflect.ValueOf(next.Controller)) {
		if slices.ContainsFunc(appliedAtReload, func(a string) bool { return within(name, a) }) ||
			!slices.ContainsFunc(restartOnly, func(r restartSetting) bool { return within(name, r.field) }) {
			out = append(out, name)
		}
	}
	before := map[string]config.Group{}
	for _, g := range running.Groups {
		before[g.Name] = g
	}
	for _, g := range next.Groups {
		old, ok := before[g.Name]
		delete(before, g.Name)
		at := "groups[" + g.Name + "]"
		switch {
		case !ok:
			out = append(out, at+" (added)")
		case !sameGroup(old, g):
			fields := fieldChanges(at, reflect.ValueOf(old), reflect.ValueOf(g))
			if !slices.Equal(old.UserData, g.UserData) && !slices.Contains(fields, at+".user_data_file") {
				fields = append(fields, at+".user_data_file") // the same file, another content
			}
			if len(fields) == 0 {
				fields = []string{at}
			}
			out = append(out, fields...)
		}
	}
	for _, g := range running.Groups {
		if _, gone := before[g.Name]; gone {
			out = append(out, "groups["+g.Name+"] (removed)")
		}
	}
	return out
}

// within says whether the setting name is field or one of its parts.
func within(name, field string) bool {
	return name == field || strings.HasPrefix(name, field+".")
}

// fieldChanges names, by their YAML keys under at, the fields in which a
// and b (of one struct type) differ. It goes into a struct whose fields
// carry YAML keys (a pointer to one when both are set); anything else (a
// list, a map, a duration, a count or percentage) is one setting.
func fieldChanges(at string, a, b reflect.Value) []string {
	if a.Kind() == reflect.Pointer && !a.IsNil() && !b.IsNil() {
		a, b = a.Elem(), b.Elem()
	}
	if a.Kind() != reflect.Struct || !hasYAMLKeys(a.Type()) {
		if reflect.DeepEqual(a.Interface(), b.Interface()) {
			return nil
		}
		return []string{at}
	}
	var out []string
	for i := range a.NumField() {
		f := a.Type().Field(i)
		key := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if !f.IsExported() || key == "" || key == "-" {
			continue
		}
		out = append(out, fieldChanges(at+"."+key, a.Field(i), b.Field(i))...)
	}
	return out
}

func hasYAMLKeys(t reflect.Type) bool {
	for i := range t.NumField() {
		if k := t.Field(i).Tag.Get("yaml"); k != "" && k != "-" {
			return true
		}
	}
	return false
}
