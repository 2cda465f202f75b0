package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/daemon"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/controller/notifications"
	"github.com/phoenix-ops/phoenix/controller/trigger"
	"github.com/phoenix-ops/phoenix/provisioner"
	"github.com/phoenix-ops/phoenix/provisioner/openstack"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// The monitoring pack lives with the other examples.
var monitoringDir = filepath.Join("..", "..", "examples", "monitoring")

// targetLabels are added by Prometheus's scrape, not by /metrics.
var targetLabels = []string{"job", "instance"}

// freeLabels take values an operator or the cloud chooses (group and
// image names, replica ids, notification types, HTTP details); the values
// of every other label are fixed by the daemon, so a rule may only name
// those /metrics shows.
var freeLabels = []string{"group", "image", "revision", "replica", "event_type", "service", "method", "status", "job", "instance"}

// catalogue is what a scrape of /metrics holds: metric → label → values.
type catalogue map[string]map[string]map[string]bool

func (c catalogue) add(name string, labels map[string]string) {
	if c[name] == nil {
		c[name] = map[string]map[string]bool{}
	}
	for k, v := range labels {
		if c[name][k] == nil {
			c[name][k] = map[string]bool{}
		}
		c[name][k][v] = true
	}
}

// scrapeCatalogue reads /metrics at url with the Prometheus text parser;
// a histogram's series are its _bucket (with le), _sum and _count.
func scrapeCatalogue(t *testing.T, url string) catalogue {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	c := catalogue{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if m.Histogram == nil {
				c.add(name, labels)
				continue
			}
			c.add(name+"_sum", labels)
			c.add(name+"_count", labels)
			for _, b := range m.GetHistogram().GetBucket() {
				bucket := map[string]string{"le": fmt.Sprint(b.GetUpperBound())}
				for k, v := range labels {
					bucket[k] = v
				}
				c.add(name+"_bucket", bucket)
			}
		}
	}
	return c
}

// soleReplica is a Coordinator with one replica that owns every group,
// so that the replica series appear.
type soleReplica struct{}

func (soleReplica) ID() string { return "replica-a" }
func (soleReplica) Run(ctx context.Context, groups func() []string, apply func([]string)) error {
	apply(groups())
	<-ctx.Done()
	return nil
}
func (soleReplica) Fence(_ string, c provisioner.Cloud) provisioner.Cloud { return c }
func (soleReplica) Owner(string) string                                   { return "replica-a" }
func (soleReplica) Health() error                                         { return nil }
func (soleReplica) Replicas() int                                         { return 1 }
func (soleReplica) Park(context.Context, string, string, []byte) error    { return nil }
func (soleReplica) Parked(context.Context, string) (map[string][]byte, error) {
	return nil, nil
}
func (soleReplica) Unpark(context.Context, string, string) error { return nil }

// heardOnce is a notification listener that is connected and has handled
// one notification, so that the notification series appear.
type heardOnce struct{}

func (heardOnce) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (heardOnce) Status() notifications.Status {
	return notifications.Status{Connected: true, Handled: map[string]int{"image.update": 1}}
}

// monitoredDaemon runs a daemon with every source of series wired as
// `phoenix daemon` wires them — the cloud client's request hook, a
// notifier, a listener, a coordinator — through a rollout that rolls
// back, and returns a scrape of its /metrics.
func monitoredDaemon(t *testing.T) catalogue {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := daemon.NewMetrics(reg)
	env := simtest.Start(t, grouptest.FastSim(2400), 0, func(o *openstack.Options) {
		o.OnRequest = func(r openstack.RequestRecord) { m.CloudRequest(r.Service, r.Method, r.Status, r.Duration) }
	})
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	base := env.Sim.AddImage(sim.Image{Name: "base", Created: time.Now().Add(-time.Hour)})
	web := strings.Replace(daemonGroup("web", "gold", "m1.small", 2, ""),
		"rollout: {max_surge: 2, max_unavailable: 0, min_ready: 30ms}", "rollout: {max_surge: 1, min_ready: 30ms, max_failures: 1, on_failure: rollback}", 1)
	web = strings.Replace(web, "newest: true}", "newest: true, max_age: 168h}", 1)
	cfg, err := config.Parse("daemon.yaml", []byte(daemonYAML(web, daemonGroup("api", "base", "m1.small", 1, ""))), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	hook := httptest.NewServer(&notices{})
	t.Cleanup(hook.Close)
	notifier := daemon.NewNotifier([]config.NotifyTarget{{URL: hook.URL}}, grouptest.Logger(t))
	t.Cleanup(notifier.Close)
	m.WatchNotices(notifier)
	d := daemon.New(env.Cloud.Services(), cfg, daemon.Options{Log: grouptest.Logger(t), Metrics: m, Sink: notifier,
		PollInterval: 50 * time.Millisecond, Reconciler: grouptest.FastOptions(), Coordinator: soleReplica{}})
	m.Watch(d)
	d.Listen(heardOnce{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	rd := &runningDaemon{Daemon: d, reg: reg}
	grouptest.WaitUntil(t, 10*time.Second, "the replica to run both groups", func() bool {
		st := d.Status()
		return st.Replica != nil && len(st.Replica.Owned) == 2
	})
	rd.converged(t, env.Sim, map[string]string{"web": gold.ID, "api": base.ID})

	// A patched image that does not boot: web rolls back from it.
	env.Sim.AddImage(sim.Image{Name: "gold", BootFails: true})
	if err := d.Dispatch(context.Background(), trigger.Event{ID: "mon", Type: trigger.TypeImagePublished}); err != nil {
		t.Fatal(err)
	}
	grouptest.WaitUntil(t, 30*time.Second, "web to roll back", func() bool {
		for _, g := range d.Status().Groups {
			if g.Group == "web" && g.RolledBack != "" && !g.InProgress {
				return true
			}
		}
		return false
	})
	srv := httptest.NewServer(d.Handler(daemon.HandlerOptions{Metrics: reg}))
	t.Cleanup(srv.Close)
	return scrapeCatalogue(t, srv.URL+"/metrics")
}

// packChecker collects what the pack names that /metrics lacks.
type packChecker struct {
	cat      catalogue
	problems []string
}

func (c *packChecker) fail(where, format string, args ...any) {
	c.problems = append(c.problems, where+": "+fmt.Sprintf(format, args...))
}

// simpleAlternation is a regexp matcher value that only lists literals.
var simpleAlternation = regexp.MustCompile(`^[A-Za-z0-9_.:-]+(\|[A-Za-z0-9_.:-]+)*$`)

// selector checks one selector: the metric exists, its labels exist on
// it, and the fixed values it matches occur.
func (c *packChecker) selector(where string, s selector) {
	labels, ok := c.cat[s.metric]
	if !ok {
		c.fail(where, "metric %s is not on /metrics", s.metric)
		return
	}
	for _, m := range s.matchers {
		if slices.Contains(targetLabels, m.label) {
			continue
		}
		values, ok := labels[m.label]
		if !ok {
			c.fail(where, "%s has no label %q (it has %v)", s.metric, m.label, sortedKeys(labels))
			continue
		}
		if slices.Contains(freeLabels, m.label) || strings.Contains(m.value, "$") || m.op == "!=" || m.op == "!~" {
			continue
		}
		if m.op == "=~" && !simpleAlternation.MatchString(m.value) {
			continue
		}
		for _, v := range strings.Split(m.value, "|") {
			if !values[v] {
				c.fail(where, "%s{%s} never takes the value %q (it takes %v)", s.metric, m.label, v, sortedKeys(values))
			}
		}
	}
}

// expr checks an expression and returns the labels its result may carry.
func (c *packChecker) expr(where, expr string) map[string]bool {
	sc, err := scanPromQL(expr)
	if err != nil {
		c.fail(where, "cannot scan %q: %v", expr, err)
		return nil
	}
	if len(sc.selectors)+len(sc.labelValues) == 0 {
		c.fail(where, "%q names no phoenix_ metric", expr)
	}
	all := map[string]bool{}
	for _, l := range targetLabels {
		all[l] = true
	}
	for _, s := range sc.selectors {
		c.selector(where, s)
		for l := range c.cat[s.metric] {
			all[l] = true
		}
	}
	for _, s := range sc.labelValues {
		if s.metric == "" {
			c.fail(where, "label_values(%s) without a metric reads every job's labels", s.matchers[0].label)
			continue
		}
		label := s.matchers[0].label
		if labels, ok := c.cat[s.metric]; !ok {
			c.fail(where, "metric %s is not on /metrics", s.metric)
		} else if _, ok := labels[label]; !ok {
			c.fail(where, "%s has no label %q (it has %v)", s.metric, label, sortedKeys(labels))
		}
	}
	for _, l := range sc.grouping {
		if !all[l] {
			c.fail(where, "grouping label %q is on none of the metrics of %q", l, expr)
		}
	}
	if len(sc.by) > 0 {
		kept := map[string]bool{}
		for _, l := range sc.by {
			kept[l] = true
		}
		return kept
	}
	return all
}

// templated checks that every label a template names ({{ $labels.x }}
// in an annotation, {{x}} in a legend) is one the expression keeps.
func (c *packChecker) templated(where, text string, re *regexp.Regexp, kept map[string]bool) {
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		if kept != nil && !kept[m[1]] {
			c.fail(where, "names label %q, which its expression does not keep (%v)", m[1], sortedKeys(kept))
		}
	}
}

var (
	annotationLabel = regexp.MustCompile(`\$labels\.([A-Za-z_][A-Za-z0-9_]*)`)
	legendLabel     = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)
)

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type ruleTestFile struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		InputSeries []struct {
			Series string `yaml:"series"`
		} `yaml:"input_series"`
		AlertRuleTest []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels map[string]string `yaml:"exp_labels"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
		PromQLExprTest []struct {
			Expr string `yaml:"expr"`
		} `yaml:"promql_expr_test"`
	} `yaml:"tests"`
}

func readYAML(t *testing.T, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(monitoringDir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// checkPack checks the rules, their tests and the dashboard against cat.
func checkPack(t *testing.T, cat catalogue) []string {
	t.Helper()
	c := &packChecker{cat: cat}

	var rules ruleFile
	readYAML(t, "phoenix.rules.yml", &rules)
	alerts := map[string]map[string]bool{} // alert → labels its alerts may carry
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			where := "phoenix.rules.yml: " + r.Alert + r.Record
			kept := c.expr(where, r.Expr)
			for _, a := range r.Annotations {
				c.templated(where, a, annotationLabel, kept)
			}
			if r.Alert == "" {
				continue
			}
			carried := map[string]bool{"alertname": true}
			for l := range kept {
				carried[l] = true
			}
			for l := range r.Labels {
				carried[l] = true
			}
			alerts[r.Alert] = carried
		}
	}
	if len(alerts) == 0 {
		t.Fatal("phoenix.rules.yml has no alert")
	}

	var tests ruleTestFile
	readYAML(t, "phoenix.rules.test.yml", &tests)
	fires, quiet := map[string]bool{}, map[string]bool{}
	for i, tc := range tests.Tests {
		where := fmt.Sprintf("phoenix.rules.test.yml: test %d", i+1)
		for _, in := range tc.InputSeries {
			sc, err := scanPromQL(in.Series)
			if err != nil || len(sc.selectors) != 1 {
				c.fail(where, "cannot read series %q (%v)", in.Series, err)
				continue
			}
			s := sc.selectors[0]
			c.selector(where, s)
			// A series the daemon would never send tests nothing.
			for l := range cat[s.metric] {
				if !slices.ContainsFunc(s.matchers, func(m matcher) bool { return m.label == l }) {
					c.fail(where, "series %q lacks label %q, which /metrics always gives it", in.Series, l)
				}
			}
		}
		for _, at := range tc.AlertRuleTest {
			carried, ok := alerts[at.Alertname]
			if !ok {
				c.fail(where, "tests alert %s, which phoenix.rules.yml does not define", at.Alertname)
				continue
			}
			if len(at.ExpAlerts) == 0 {
				quiet[at.Alertname] = true
			} else {
				fires[at.Alertname] = true
			}
			for _, e := range at.ExpAlerts {
				for l := range e.ExpLabels {
					if !carried[l] {
						c.fail(where, "expects label %q on %s, which it cannot carry (%v)", l, at.Alertname, sortedKeys(carried))
					}
				}
			}
		}
		for _, pt := range tc.PromQLExprTest {
			c.expr(where, pt.Expr)
		}
	}
	for a := range alerts {
		if !fires[a] || !quiet[a] {
			c.fail("phoenix.rules.test.yml", "alert %s needs a test where it fires (%v) and one where it stays quiet (%v)", a, fires[a], quiet[a])
		}
	}

	checkDashboard(t, c)
	return c.problems
}

// checkDashboard checks every query of the dashboard, and that it takes
// its datasource from a variable rather than naming one of the author's.
func checkDashboard(t *testing.T, c *packChecker) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(monitoringDir, "phoenix.dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr         string          `json:"expr"`
		LegendFormat string          `json:"legendFormat"`
		Datasource   json.RawMessage `json:"datasource"`
	}
	type panel struct {
		Title      string          `json:"title"`
		Type       string          `json:"type"`
		Datasource json.RawMessage `json:"datasource"`
		Targets    []target        `json:"targets"`
		Panels     []panel         `json:"panels"`
	}
	var dash struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string          `json:"name"`
				Type       string          `json:"type"`
				Query      json.RawMessage `json:"query"`
				Definition string          `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("phoenix.dashboard.json: %v", err)
	}
	hasDatasourceVar := false
	for _, v := range dash.Templating.List {
		where := "phoenix.dashboard.json: variable " + v.Name
		switch v.Type {
		case "datasource":
			hasDatasourceVar = true
		case "query":
			var q struct {
				Query string `json:"query"`
			}
			if json.Unmarshal(v.Query, &q) != nil || q.Query == "" {
				_ = json.Unmarshal(v.Query, &q.Query)
			}
			c.expr(where, q.Query)
			if v.Definition != "" && v.Definition != q.Query {
				c.fail(where, "definition %q differs from query %q", v.Definition, q.Query)
			}
		}
	}
	if !hasDatasourceVar {
		c.fail("phoenix.dashboard.json", "no datasource variable: importers must be able to pick their Prometheus")
	}
	fromVar := func(raw json.RawMessage) bool { return len(raw) == 0 || strings.Contains(string(raw), "${datasource}") }
	queries := 0
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			where := "phoenix.dashboard.json: panel " + p.Title
			if !fromVar(p.Datasource) {
				c.fail(where, "datasource %s is not the ${datasource} variable", p.Datasource)
			}
			for _, tg := range p.Targets {
				queries++
				if !fromVar(tg.Datasource) {
					c.fail(where, "datasource %s is not the ${datasource} variable", tg.Datasource)
				}
				kept := c.expr(where, tg.Expr)
				c.templated(where, tg.LegendFormat, legendLabel, kept)
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	if queries == 0 {
		c.fail("phoenix.dashboard.json", "no panel queries anything")
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// The monitoring pack names only what /metrics has: every phoenix_*
// metric and label (and every value the daemon fixes) in the alert rules,
// their promtool tests and the dashboard is checked against a scrape of a
// daemon wired as `phoenix daemon` wires it, after a rollout that rolled
// back. The PromQL is scanned, not parsed: see promql_scan_test.go.
func TestMonitoringPackNamesWhatMetricsExpose(t *testing.T) {
	cat := monitoredDaemon(t)
	// The scenario must produce the series whose absence would hide a
	// mistake: a metric only some states emit.
	for _, name := range []string{"phoenix_rollout_rejected", "phoenix_replica_fenced", "phoenix_notifications_connected",
		"phoenix_notices_total", "phoenix_cloud_requests_total", "phoenix_gold_image_stale", "phoenix_group_last_reconcile_success_timestamp_seconds"} {
		if _, ok := cat[name]; !ok {
			t.Fatalf("the scenario left %s off /metrics", name)
		}
	}
	for _, p := range checkPack(t, cat) {
		t.Error(p)
	}
}
