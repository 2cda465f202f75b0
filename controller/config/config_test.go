package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	// The windows' zones without depending on the host's zoneinfo.
	_ "time/tzdata"

	"go.yaml.in/yaml/v3"

	"github.com/phoenix-ops/phoenix/controller/plan"
)

const valid = `cloud: prod
groups:
  - name: web
    count: 10
    image: {name: ubuntu-24.04-gold, newest: true, properties: {os_distro: ubuntu}, tags: [gold]}
    flavor: m1.small
    networks: [app-net]
    key_name: ops
    security_groups: [web]
    server_group: web-anti
    availability_zones: [az1, az2]
    user_data_file: web.yaml
    metadata: {owner: team-web}
    rollout: {max_surge: 25%, max_unavailable: 10%, min_ready: 30s}
    health:
      http: {port: 8080, path: /healthz, expect_status: 200}
      interval: 5s
      timeout: 2s
      healthy_threshold: 2
      unhealthy_threshold: 4
      grace: 90s
  - name: worker
    count: 3
    image: {id: 5f0c2a7e-0000-4000-8000-000000000001}
    flavor: 42
    networks: [private]
`

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadValidAppliesDefaults(t *testing.T) {
	dir := writeFiles(t, map[string]string{"phoenix.yaml": valid, "web.yaml": "#cloud-config\n"})
	path := filepath.Join(dir, "phoenix.yaml")
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Path != path || cfg.Cloud != "prod" || len(cfg.Groups) != 2 {
		t.Fatalf("path %q, cloud %q, %d groups", cfg.Path, cfg.Cloud, len(cfg.Groups))
	}
	web, worker := cfg.Groups[0], cfg.Groups[1]
	if string(web.UserData) != "#cloud-config\n" {
		t.Errorf("user data = %q", web.UserData)
	}
	wantImage := ImageSelector{Name: "ubuntu-24.04-gold", Newest: true, Properties: map[string]string{"os_distro": "ubuntu"}, Tags: []string{"gold"}}
	if !reflect.DeepEqual(web.Image, wantImage) {
		t.Errorf("image = %+v", web.Image)
	}
	if got := web.Rollout.MaxSurge.Resolve(web.Count, true); got != 3 {
		t.Errorf("25%% surge of 10 = %d, want 3 (rounded up)", got)
	}
	if got := web.Rollout.MaxUnavailable.Resolve(web.Count, false); got != 1 {
		t.Errorf("10%% unavailable of 10 = %d, want 1", got)
	}
	if web.Rollout.MinReady.D() != 30*time.Second {
		t.Errorf("min_ready = %s", web.Rollout.MinReady)
	}
	if *web.Health.HTTP != (HTTPCheck{Port: 8080, Path: "/healthz", ExpectStatus: 200}) {
		t.Errorf("http = %+v", *web.Health.HTTP)
	}
	if web.Health.Grace.D() != 90*time.Second || web.Health.UnhealthyThreshold != 4 || web.Health.HealthyThreshold != 2 {
		t.Errorf("written health values lost: %+v", web.Health)
	}
	if worker.Flavor != "42" {
		t.Errorf("numeric flavor = %q, want the string 42", worker.Flavor)
	}
	if worker.UserData != nil || worker.Metadata != nil || worker.SecurityGroups != nil {
		t.Errorf("worker has values it was not given: %+v", worker)
	}
}

func TestEtcdCoordination(t *testing.T) {
	// Without the block, a single daemon: nothing to coordinate.
	cfg, err := Parse("phoenix.yaml", []byte(group("")), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Controller.Coordination.Etcd != nil {
		t.Fatalf("coordination without the block: %+v", cfg.Controller.Coordination.Etcd)
	}

	dir := writeFiles(t, map[string]string{"ca.pem": "x", "client.pem": "x", "client.key": "x"})
	for _, tc := range []struct {
		name, yaml string
		want       Etcd
	}{
		{"defaults", "controller: {coordination: {etcd: {endpoints: [\"https://etcd-1:2379\", \"etcd-2:2379\"]}}}\n",
			Etcd{Endpoints: []string{"https://etcd-1:2379", "etcd-2:2379"}, Prefix: "/phoenix/", LeaseTTL: Duration(15 * time.Second)}},
		{"written", "controller: {coordination: {etcd: {endpoints: [\"http://127.0.0.1:2379\"], prefix: /prod/phoenix/, lease_ttl: 5s,\n  tls: {ca_file: ca.pem, cert_file: client.pem, key_file: client.key}}}}\n",
			Etcd{Endpoints: []string{"http://127.0.0.1:2379"}, Prefix: "/prod/phoenix/", LeaseTTL: Duration(5 * time.Second),
				TLS: EtcdTLS{CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "client.pem"), KeyFile: filepath.Join(dir, "client.key")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("phoenix.yaml", []byte(tc.yaml+group("")), dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Controller.Coordination.Etcd; got == nil || !reflect.DeepEqual(*got, tc.want) {
				t.Fatalf("etcd = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// Notifications from the cloud's RabbitMQ: the defaults an OpenStack
// deployment publishes on, the URL read from its file, and every wrong
// field refused by name without the URL (it holds a password) in the
// message.
func TestAMQPNotifications(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"amqp.url": "amqps://phoenix:hunter2@rabbit.example:5671/openstack\n", "plain.url": "amqp://phoenix:hunter2@rabbit:5672/",
		"bad.url": "rabbit://phoenix:hunter2@rabbit:5672/", "ca.pem": "x",
	})
	cfg, err := Parse("phoenix.yaml", []byte("controller: {notifications: {amqp: {url_file: amqp.url, ca_file: ca.pem}}}\n"+group("")), dir)
	if err != nil {
		t.Fatal(err)
	}
	want := AMQP{URLFile: filepath.Join(dir, "amqp.url"), CAFile: filepath.Join(dir, "ca.pem"), Exchanges: []string{"glance", "nova"},
		Topics: []string{"notifications", "versioned_notifications"}, Queue: "phoenix", QueueExpires: Duration(time.Hour),
		URL: "amqps://phoenix:hunter2@rabbit.example:5671/openstack"}
	if got := cfg.Controller.Notifications.AMQP; got == nil || !reflect.DeepEqual(*got, want) {
		t.Fatalf("amqp = %+v, want %+v", got, want)
	}
	for _, tc := range []struct{ name, amqp, path, want string }{
		{"no url file", `{queue: p}`, ".url_file", "expected a file holding the broker's URL"},
		{"url file missing", `{url_file: nope.url}`, ".url_file", "cannot read"},
		{"not an amqp url", `{url_file: bad.url}`, ".url_file", "to hold one amqp:// or amqps:// URL"},
		{"ca file with plain amqp", `{url_file: plain.url, ca_file: ca.pem}`, ".ca_file", "expected an amqps:// URL"},
		{"no exchanges", `{url_file: amqp.url, exchanges: []}`, ".exchanges", "expected at least one exchange"},
		{"exchange twice", `{url_file: amqp.url, exchanges: [nova, nova]}`, ".exchanges[1]", "listed twice"},
		{"empty topic", `{url_file: amqp.url, topics: [""]}`, ".topics[0]", "got an empty one"},
		{"reserved queue", `{url_file: amqp.url, queue: amq.phoenix}`, ".queue", "not starting with amq."},
		{"queue with a space", `{url_file: amqp.url, queue: "a b"}`, ".queue", "without spaces"},
		{"short expiry", `{url_file: amqp.url, queue_expires: 10s}`, ".queue_expires", "at least 1m"},
		{"unknown field", `{url_file: amqp.url, url: "amqp://x"}`, "", `unknown field "url"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("phoenix.yaml", []byte("controller: {notifications: {amqp: "+tc.amqp+"}}\n"+group("")), dir)
			if err == nil || !strings.Contains(err.Error(), "controller.notifications.amqp"+tc.path) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want controller.notifications.amqp%s saying %q", err, tc.path, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the password is in the error: %v", err)
			}
		})
	}
}

func TestTrafficDefaults(t *testing.T) {
	cfg, err := Parse("p.yaml", []byte(group(`traffic: {octavia: {pool: web-pool, protocol_port: 8080}}`)), ".")
	if err != nil {
		t.Fatal(err)
	}
	want := OctaviaTraffic{Pool: "web-pool", ProtocolPort: 8080, Network: "private", Weight: 1, Drain: Duration(30 * time.Second)}
	if got := *cfg.Groups[0].Traffic.Octavia; got != want {
		t.Errorf("octavia defaults = %+v, want %+v", got, want)
	}
	cfg, err = Parse("p.yaml", []byte(group(`count: 1`)+"    traffic: {floating_ip: {pool: public, drain: 0s}}\n"), ".")
	if err != nil {
		t.Fatal(err)
	}
	wantFIP := FloatingIPTraffic{Pool: "public", Network: "private", Drain: 0}
	if got := *cfg.Groups[0].Traffic.FloatingIP; got != wantFIP {
		t.Errorf("floating ip = %+v, want %+v (drain 0s written is kept)", got, wantFIP)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse("p.yaml", []byte(group("")), ".")
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.Groups[0]
	want := Rollout{MaxSurge: IntOrPercent{Value: 1}, MaxUnavailable: IntOrPercent{Value: 0}, MinReady: 0,
		MaxFailures: 3, ProgressDeadline: Duration(10 * time.Minute), CreateBackoffMax: Duration(time.Minute), Strategy: StrategyReplace,
		OnFailure: OnFailureHalt, Watch: Duration(10 * time.Minute)}
	if !reflect.DeepEqual(g.Rollout, want) {
		t.Errorf("default rollout = %+v, want %+v", g.Rollout, want)
	}
	if g.Hold || g.Rollout.PlanWindows() != nil {
		t.Errorf("hold %v, windows %v: want no hold and no windows (always open)", g.Hold, g.Rollout.PlanWindows())
	}
	wantHealth := Health{Interval: Duration(5 * time.Second), RiseInterval: Duration(time.Second), Timeout: Duration(2 * time.Second),
		HealthyThreshold: 3, UnhealthyThreshold: 3, Grace: Duration(60 * time.Second), MaxUnhealthy: IntOrPercent{Value: 40, Percent: true}}
	if !reflect.DeepEqual(g.Health, wantHealth) {
		t.Errorf("default health = %+v, want %+v (no check: Nova's ACTIVE is the only signal)", g.Health, wantHealth)
	}

	cfg, err = Parse("p.yaml", []byte(group(`health: {http: {port: 80}, tcp: }`)), ".")
	if err != nil {
		t.Fatal(err)
	}
	if h := cfg.Groups[0].Health; *h.HTTP != (HTTPCheck{Port: 80, Path: "/", ExpectStatus: 0}) || h.TCP != nil {
		t.Errorf("http check defaults = %+v, tcp %v", *h.HTTP, h.TCP)
	}
}

func TestWrittenZeroIsKept(t *testing.T) {
	cfg, err := Parse("p.yaml", []byte(group(`health: {http: {port: 80, expect_status: 0}, grace: 0s, interval: 100ms}`)+
		"    rollout: {max_surge: 0, max_unavailable: 1}\n"), ".")
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.Groups[0]
	if h := g.Health; h.Grace != 0 || h.Timeout.D() != 100*time.Millisecond {
		t.Errorf("health = %+v: want grace 0 kept, timeout's default capped at the interval", h)
	}
	if g.Rollout.MaxSurge != (IntOrPercent{Value: 0, Set: true}) {
		t.Errorf("written max_surge 0 = %+v, want kept and marked as set", g.Rollout.MaxSurge)
	}
}

// rollout.create_backoff_max is 1m unless written; a written value is
// kept (its refusals are in TestRefusedConfigs).
func TestCreateBackoffMax(t *testing.T) {
	for _, tc := range []struct {
		extra string
		want  time.Duration
	}{{"", time.Minute}, {`rollout: {create_backoff_max: 20s}`, 20 * time.Second}, {`rollout: {create_backoff_max: 5m}`, 5 * time.Minute}} {
		cfg, err := Parse("p.yaml", []byte(group(tc.extra)), ".")
		if err != nil {
			t.Fatalf("%q: %v", tc.extra, err)
		}
		if got := cfg.Groups[0].Rollout.CreateBackoffMax.D(); got != tc.want {
			t.Errorf("%q: create_backoff_max = %s, want %s", tc.extra, got, tc.want)
		}
	}
}

func TestWindows(t *testing.T) {
	all := [7]bool{true, true, true, true, true, true, true}
	weekdays := [7]bool{false, true, true, true, true, true, false}
	for _, tc := range []struct {
		text       string
		days       [7]bool // by time.Weekday, Sunday first
		start, end string
		zone       string
	}{
		{"Mon-Fri 02:00-05:00 Europe/Berlin", weekdays, "2h0m0s", "5h0m0s", "Europe/Berlin"},
		{"mon-FRI 02:00-05:00", weekdays, "2h0m0s", "5h0m0s", "UTC"},
		{"Sat-Mon 22:00-02:00 America/New_York", [7]bool{true, true, false, false, false, false, true}, "22h0m0s", "2h0m0s", "America/New_York"},
		{"Fri-Mon 01:00-02:00", [7]bool{true, true, false, false, false, true, true}, "1h0m0s", "2h0m0s", "UTC"},
		{"Sun-Sat 01:00-02:00", all, "1h0m0s", "2h0m0s", "UTC"},
		{"Wed-Wed 01:00-02:00", [7]bool{3: true}, "1h0m0s", "2h0m0s", "UTC"},
		{"Tue,Thu,Sat-Sun 23:30-00:30", [7]bool{0: true, 2: true, 4: true, 6: true}, "23h30m0s", "30m0s", "UTC"},
		{"Mon,Mon-Tue 01:00-02:00", [7]bool{1: true, 2: true}, "1h0m0s", "2h0m0s", "UTC"},
		{"daily 00:00-24:00", all, "0s", "24h0m0s", "UTC"},
		{"Daily 20:00-24:00 Asia/Tokyo", all, "20h0m0s", "24h0m0s", "Asia/Tokyo"},
		{"* 23:59-00:00 UTC", all, "23h59m0s", "24h0m0s", "UTC"},
		{"  Sun   03:00-04:00  ", [7]bool{0: true}, "3h0m0s", "4h0m0s", "UTC"},
	} {
		t.Run(tc.text, func(t *testing.T) {
			cfg, err := Parse("p.yaml", []byte(group(fmt.Sprintf("rollout: {windows: [%q]}", tc.text))), ".")
			if err != nil {
				t.Fatal(err)
			}
			ws := cfg.Groups[0].Rollout.PlanWindows()
			if len(ws) != 1 {
				t.Fatalf("%d windows", len(ws))
			}
			w := ws[0]
			zone := "UTC"
			if w.Loc != nil {
				zone = w.Loc.String()
			}
			if w.Days != tc.days || w.Start.String() != tc.start || w.End.String() != tc.end || zone != tc.zone {
				t.Errorf("got days %v %s-%s in %s, want %v %s-%s in %s", w.Days, w.Start, w.End, zone, tc.days, tc.start, tc.end, tc.zone)
			}
			if want := strings.Join(strings.Fields(tc.text), " "); w.String() != want {
				t.Errorf("String() = %q, want it as written, %q", w.String(), want)
			}
		})
	}

	// Unquoted in a block list, as an operator writes them; several, each
	// at its own line.
	cfg, err := Parse("p.yaml", []byte(group("rollout:\n      windows:\n        - Mon-Fri 02:00-05:00 Europe/Berlin\n        - Sat 22:00-02:00\n")), ".")
	if err != nil {
		t.Fatal(err)
	}
	ws := cfg.Groups[0].Rollout.PlanWindows()
	if len(ws) != 2 || ws[0].Loc.String() != "Europe/Berlin" || ws[1].Start != 22*time.Hour {
		t.Fatalf("windows = %+v", ws)
	}
	// The policy reads them as written: Monday 2026-03-09 02:30 in Berlin
	// is inside the first.
	if open, _ := plan.Open(ws, time.Date(2026, 3, 9, 1, 30, 0, 0, time.UTC)); !open {
		t.Error("Monday 02:30 in Berlin is not inside Mon-Fri 02:00-05:00 Europe/Berlin")
	}

	// Marshalled, a window is written back as it was read.
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "- Mon-Fri 02:00-05:00 Europe/Berlin\n") {
		t.Errorf("marshalled windows:\n%s", out)
	}
	again, err := Parse("p.yaml", out, ".")
	if err != nil || !reflect.DeepEqual(again.Groups[0].Rollout.PlanWindows(), ws) {
		t.Fatalf("the marshalled windows do not load back the same (%v):\n%s", err, out)
	}
}

func TestBlockers(t *testing.T) {
	cfg, err := Parse("p.yaml", []byte(group(`rollout: {blockers: {prometheus: {url: "https://prom.internal:9090/prometheus", query: 'ALERTS{severity="page"}'}}}`)), ".")
	if err != nil {
		t.Fatal(err)
	}
	want := PrometheusBlocker{URL: "https://prom.internal:9090/prometheus", Query: `ALERTS{severity="page"}`, Timeout: Duration(10 * time.Second)}
	if got := cfg.Groups[0].Rollout.Blockers.Prometheus; got == nil || *got != want {
		t.Fatalf("prometheus = %+v, want %+v (timeout defaults to 10s)", got, want)
	}
	cfg, err = Parse("p.yaml", []byte(group(`rollout: {blockers: {prometheus: {url: "http://p", query: up == 0, timeout: 3s}}}`)), ".")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Groups[0].Rollout.Blockers.Prometheus.Timeout.D(); got != 3*time.Second {
		t.Errorf("written timeout = %s, want 3s", got)
	}
	cfg, err = Parse("p.yaml", []byte(group(`rollout: {blockers: {}}`)), ".")
	if err != nil || cfg.Groups[0].Rollout.Blockers.Prometheus != nil {
		t.Fatalf("empty blockers: %v", err)
	}
}

// A password in the Prometheus URL never reaches a message, whether the
// URL parses or not.
func TestBlockerURLPasswordRedacted(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"ftp://ops:hunter2@p:9090", `got "ftp://ops:xxxxx@p:9090"`},
		{"http://ops:hunter2@p:99999", `in "http://ops:xxxxx@p:99999"`},
		{"http://ops:hunter2@p:9090/api/v1/query", `got "http://ops:xxxxx@p:9090/api/v1/query"`},
		{"http://ops:hunter2@p:x/", `got "http://xxxxx@p:x/": it does not parse`},
		{"http://ops:hun/ter2@p:9090", `got "http://xxxxx@p:9090": it does not parse`},
		{"http://ops:hunter2%zz@p", `got "http://xxxxx@p": it does not parse`},
		{"ops:hunter2@p:9090", `got "xxxxx@p:9090"`},
	} {
		_, err := Parse("p.yaml", []byte(group(fmt.Sprintf(`rollout: {blockers: {prometheus: {url: %q, query: up}}}`, tc.url))), ".")
		if err == nil || !strings.Contains(err.Error(), "groups[0].rollout.blockers.prometheus.url (line 7): ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error = %v, want it to say %s", tc.url, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "ter2")) {
			t.Errorf("%s: the password is in the error: %v", tc.url, err)
		}
	}
	if got := (PrometheusBlocker{URL: "https://ops:hunter2@p:9090"}).RedactedURL(); got != "https://ops:xxxxx@p:9090" {
		t.Errorf("RedactedURL = %q", got)
	}
	// A valid URL with credentials is accepted; they are the operator's.
	if _, err := Parse("p.yaml", []byte(group(`rollout: {blockers: {prometheus: {url: "https://ops:hunter2@p:9090", query: up}}}`)), "."); err != nil {
		t.Errorf("credentials in a valid URL: %v", err)
	}
}

func TestHold(t *testing.T) {
	for _, tc := range []struct {
		extra string
		want  bool
	}{{"", false}, {"hold: true", true}, {"hold: false", false}, {"hold:", false}} {
		cfg, err := Parse("p.yaml", []byte(group(tc.extra)), ".")
		if err != nil {
			t.Fatalf("%q: %v", tc.extra, err)
		}
		if got := cfg.Groups[0].Hold; got != tc.want {
			t.Errorf("%q: hold = %v, want %v", tc.extra, got, tc.want)
		}
	}
}

// Promote: a stage's gate loads with its default wait, and a later stage
// takes the tag with newest: true.
func TestPromote(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       *Promote
	}{
		{"none", group(""), nil},
		{"the default wait", group(`promote: {tag: staged-ok}`), &Promote{Tag: "staged-ok", After: Duration(time.Hour)}},
		{"a wait written", group(`promote: {tag: staged-ok, after: 20m}`), &Promote{Tag: "staged-ok", After: Duration(20 * time.Minute)}},
		{"no wait", group(`promote: {tag: canary passed, after: 0s}`), &Promote{Tag: "canary passed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("p.yaml", []byte(tc.yaml), ".")
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Groups[0].Promote; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("promote = %+v, want %+v", got, tc.want)
			}
		})
	}
	stages := "groups:\n  - {name: staging, count: 2, image: {tags: [gold], newest: true}, flavor: f, networks: [n], promote: {tag: staged-ok, after: 1h}}\n" +
		"  - {name: prod, count: 4, image: {tags: [gold, staged-ok], newest: true}, flavor: f, networks: [n]}\n"
	if _, err := Parse("p.yaml", []byte(stages), "."); err != nil {
		t.Errorf("two stages refused: %v", err)
	}
}

// Placement: both forms load, and every default applies as doc.go says.
func TestPlacement(t *testing.T) {
	cfg, err := Parse("p.yaml", []byte(group("")), ".")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Groups[0].Placement != nil {
		t.Fatalf("placement without the field: %+v", cfg.Groups[0].Placement)
	}

	long := "cloud: prod\n" + group(`availability_zones: [z1, z2]`) + `    placement:
      failover_after: 5m
      locations:
        - {region: RegionOne, weight: 2}
        - {cloud: othercloud, region: RegionTwo, weight: 1, availability_zones: [az1, az2]}
        - {name: standby, region: RegionThree, weight: 0}
        - {cloud: edge}
`
	for _, tc := range []struct {
		name, yaml string
		want       Placement
	}{
		{"long form", long, Placement{FailoverAfter: Duration(5 * time.Minute), Locations: []Location{
			{Name: "RegionOne", Region: "RegionOne", Weight: 2, AvailabilityZones: []string{"z1", "z2"}},
			{Name: "othercloud/RegionTwo", Cloud: "othercloud", Region: "RegionTwo", Weight: 1, AvailabilityZones: []string{"az1", "az2"}},
			{Name: "standby", Region: "RegionThree", Weight: 0, AvailabilityZones: []string{"z1", "z2"}},
			{Name: "edge", Cloud: "edge", Weight: 1, AvailabilityZones: []string{"z1", "z2"}},
		}}},
		{"short form", group(`placement: [{region: RegionOne, weight: 2}, {region: RegionTwo}]`), Placement{FailoverAfter: Duration(2 * time.Minute), Locations: []Location{
			{Name: "RegionOne", Region: "RegionOne", Weight: 2},
			{Name: "RegionTwo", Region: "RegionTwo", Weight: 1},
		}}},
		{"short form in block style", group("placement:\n      - region: RegionOne\n      - cloud: other\n        region: RegionOne\n        name: other-one"), Placement{FailoverAfter: Duration(2 * time.Minute), Locations: []Location{
			{Name: "RegionOne", Region: "RegionOne", Weight: 1},
			{Name: "other-one", Cloud: "other", Region: "RegionOne", Weight: 1},
		}}},
		{"one location: a group moved to another region", group(`placement: {locations: [{region: RegionTwo}]}`), Placement{FailoverAfter: Duration(2 * time.Minute), Locations: []Location{
			{Name: "RegionTwo", Region: "RegionTwo", Weight: 1},
		}}},
		{"a floating IP in one location", group(`count: 1`) + "    traffic: {floating_ip: {pool: public}}\n    placement: [{region: RegionTwo}]\n", Placement{FailoverAfter: Duration(2 * time.Minute), Locations: []Location{
			{Name: "RegionTwo", Region: "RegionTwo", Weight: 1},
		}}},
		{"locations shared through an anchor", "x-regions: &regions [{region: R1, weight: 3}, {region: R2}]\n" + group("placement: *regions"), Placement{FailoverAfter: Duration(2 * time.Minute), Locations: []Location{
			{Name: "R1", Region: "R1", Weight: 3},
			{Name: "R2", Region: "R2", Weight: 1},
		}}},
		{"the longest name", group(`placement: [{region: ` + strings.Repeat("r", 63) + `}]`), Placement{FailoverAfter: Duration(2 * time.Minute), Locations: []Location{
			{Name: strings.Repeat("r", 63), Region: strings.Repeat("r", 63), Weight: 1},
		}}},
		{"failover after at its floor", group(`placement: {failover_after: 10s, locations: [{region: R1}]}`), Placement{FailoverAfter: Duration(10 * time.Second), Locations: []Location{
			{Name: "R1", Region: "R1", Weight: 1},
		}}},
		// Another cloud's region of the same name is another location.
		{"one region name in two clouds", "cloud: prod\n" + group(`placement: [{region: R1}, {cloud: other, region: R1}]`), Placement{FailoverAfter: Duration(2 * time.Minute), Locations: []Location{
			{Name: "R1", Region: "R1", Weight: 1},
			{Name: "other/R1", Cloud: "other", Region: "R1", Weight: 1},
		}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("p.yaml", []byte(tc.yaml), ".")
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.Groups[0].Placement
			if got == nil || !reflect.DeepEqual(*got, tc.want) {
				t.Fatalf("placement = %+v, want %+v", got, tc.want)
			}
		})
	}

	// The loaded placement written out loads the same.
	first, err := Parse("p.yaml", []byte(long), ".")
	if err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(first)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Parse("p.yaml", out, ".")
	if err != nil {
		t.Fatalf("the marshalled placement does not load: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(first.Groups[0].Placement, second.Groups[0].Placement) {
		t.Fatalf("round trip changed the placement:\n%+v\n%+v\nvia\n%s", first.Groups[0].Placement, second.Groups[0].Placement, out)
	}

	// yaml.Unmarshal reads both forms too.
	for _, in := range []string{"[{region: R1, weight: 2}]", "{failover_after: 1m, locations: [{region: R1, weight: 2}]}"} {
		var p Placement
		if err := yaml.Unmarshal([]byte(in), &p); err != nil || !reflect.DeepEqual(p.Locations, []Location{{Region: "R1", Weight: 2}}) {
			t.Errorf("yaml.Unmarshal(%s) = %+v, %v", in, p, err)
		}
	}
}

func TestQuotedNumbersAreNumbers(t *testing.T) {
	cfg, err := Parse("p.yaml", []byte(group(`health: {tcp: {port: "22"}}`)+"    rollout: {max_surge: \"2\"}\n"), ".")
	if err != nil {
		t.Fatal(err)
	}
	if g := cfg.Groups[0]; g.Health.TCP.Port != 22 || g.Rollout.MaxSurge.Value != 2 || g.Rollout.MaxSurge.Percent {
		t.Errorf("port %d, surge %+v", g.Health.TCP.Port, g.Rollout.MaxSurge)
	}
}

// group returns a minimal valid group with one line replaced or added.
// Its lines: 1 groups:, 2 name, 3 count, 4 image, 5 flavor, 6 networks, 7
// the extra line.
func group(extra string) string {
	base := map[string]string{
		"name":     "name: web",
		"count":    "count: 4",
		"image":    "image: {name: gold}",
		"flavor":   "flavor: m1.small",
		"networks": "networks: [private]",
	}
	key, _, _ := strings.Cut(strings.TrimSpace(extra), ":")
	var b strings.Builder
	b.WriteString("groups:\n  - ")
	first := true
	for _, k := range []string{"name", "count", "image", "flavor", "networks"} {
		line := base[k]
		if k == key {
			line = extra
		}
		if !first {
			b.WriteString("    ")
		}
		b.WriteString(line + "\n")
		first = false
	}
	if _, ok := base[key]; !ok && extra != "" {
		b.WriteString("    " + extra + "\n")
	}
	return b.String()
}

func manyPairs(n int) string {
	pairs := make([]string, n)
	for i := range pairs {
		pairs[i] = fmt.Sprintf("k%d: v", i)
	}
	return "{" + strings.Join(pairs, ", ") + "}"
}

func TestRefusedConfigs(t *testing.T) {
	long := strings.Repeat("x", 256)
	cases := []struct {
		name string
		yaml string
		path string // field path the error must name; "" for the whole file
		line int    // 0: no line
		want string // part of the message
	}{
		// The file as a whole.
		{"empty file", "", "", 0, "the file is empty"},
		{"only comments", "# nothing\n# at all\n", "", 0, "the file is empty"},
		{"only a document marker", "---\n", "", 0, "the file has no settings"},
		{"not yaml", "groups: [\n", "", 1, "not valid YAML"},
		{"two documents", "groups: []\n---\ncloud: x\n", "", 2, "a second YAML document"},
		{"top level a list", "- name: web\n", "(top level)", 1, "expected a mapping with `groups:` at the top level, got a list"},
		{"unknown top-level field", "cloud: x\ngrups: []\n", "(top level)", 2, `unknown field "grups"; did you mean "groups"?`},
		{"duplicate top-level field", "cloud: a\ncloud: b\n" + group(""), "cloud", 2, "field given twice (first on line 1)"},
		{"cloud a list", "cloud: [a]\n" + group(""), "cloud", 1, "expected a string, got a list"},
		{"no groups", "cloud: x\n", "groups", 1, "expected at least one group"},
		{"empty groups", "groups: []\n", "groups", 1, "expected at least one group"},
		{"groups not a list", "groups: {name: web}\n", "groups", 1, "expected a list, got a mapping"},
		{"group not a mapping", "groups: [web]\n", "groups[0]", 1, `expected a mapping of fields, got "web"`},

		// Group fields.
		{"unknown group field", group(`flavour: m1.small`), "groups[0]", 7, `unknown field "flavour"; did you mean "flavor"?`},
		{"bad name", group(`name: Web_Servers`), "groups[0].name", 2, `lower-case letters, digits and inner dashes (the name goes into a Nova tag and into server names), got "Web_Servers"`},
		{"name too long", group(`name: ` + strings.Repeat("a", 41)), "groups[0].name", 2, "expected 1 to 40"},
		{"name ends in a dash", group(`name: web-`), "groups[0].name", 2, `got "web-"`},
		{"missing name", group(`name: ""`), "groups[0].name", 2, "a group needs a name"},
		{"duplicate group", group("") + "  - {name: web, count: 1, image: {name: x}, flavor: f, networks: [n]}\n", "groups[1].name", 7, `group "web" is defined twice (first as groups[0], line 2)`},
		{"count zero", group(`count: 0`), "groups[0].count", 3, "expected a count from 1 to 10000, got 0"},
		{"count too big", group(`count: 10001`), "groups[0].count", 3, "got 10001"},
		{"count missing", group(`count:`), "groups[0].count", 3, "a group needs a count of servers"},
		{"count not a number", group(`count: many`), "groups[0].count", 3, `expected a whole number, got "many"`},
		{"count a fraction", group(`count: 2.5`), "groups[0].count", 3, `expected a whole number, got "2.5"`},
		{"count a list", group(`count: [1]`), "groups[0].count", 3, "expected a whole number, got a list"},
		{"flavor missing", group(`flavor: ""`), "groups[0].flavor", 5, "a flavor name or ID is required"},
		{"flavor a mapping", group(`flavor: {name: m1}`), "groups[0].flavor", 5, "expected a string, got a mapping"},
		{"no networks", group(`networks: []`), "groups[0].networks", 6, "at least one network"},
		{"networks a string", group(`networks: private`), "groups[0].networks", 6, `expected a list, got "private"`},
		{"empty network", group(`networks: [a, ""]`), "groups[0].networks[1]", 6, "expected a network name or ID, got an empty one"},
		{"duplicate network", group(`networks: [a, a]`), "groups[0].networks[1]", 6, `network "a" is listed twice`},
		{"empty security group", group(`security_groups: [""]`), "groups[0].security_groups[0]", 7, "expected a security group name or ID, got an empty one"},
		{"empty zone", group(`availability_zones: [""]`), "groups[0].availability_zones[0]", 7, "expected an availability zone name, got an empty one"},
		{"duplicate zone", group(`availability_zones: [az1, az2, az1]`), "groups[0].availability_zones[2]", 7, `availability zone "az1" is listed twice`},
		{"key_name a list", group(`key_name: [a]`), "groups[0].key_name", 7, "expected a string, got a list"},

		// Image.
		{"image id and name", group(`image: {id: abc, name: gold}`), "groups[0].image", 4, "id selects one image by itself: remove name, or remove id"},
		{"image id and newest", group(`image: {id: abc, newest: true}`), "groups[0].image", 4, "remove newest, or remove id"},
		{"image nothing", group(`image: {newest: true}`), "groups[0].image", 4, "expected an image id, or a name, properties or tags"},
		{"image missing", group(`image:`), "groups[0].image", 4, "expected an image id"},
		{"image a string", group(`image: gold`), "groups[0].image", 4, `expected a mapping of fields, got "gold"`},
		{"unknown image field", group(`image: {name: gold, tag: [x]}`), "groups[0].image", 4, `unknown field "tag"; did you mean "tags"?`},
		{"image newest not bool", group(`image: {name: gold, newest: yes please}`), "groups[0].image.newest", 4, `expected true or false, got "yes please"`},
		{"empty tag", group(`image: {tags: [""]}`), "groups[0].image.tags[0]", 4, "expected a tag of 1 to 255 characters"},
		{"tag too long", group(`image: {tags: [` + long + `]}`), "groups[0].image.tags[0]", 4, "expected a tag of 1 to 255 characters"},
		{"empty property name", group(`image: {properties: {"": x}}`), "groups[0].image.properties.", 4, "expected a property name, got an empty one"},
		{"glance field as property", group(`image: {properties: {status: active}}`), "groups[0].image.properties.status", 4, `"status" is one of Glance's own image fields`},

		// User data.
		{"missing user data", group(`user_data_file: nope.yaml`), "groups[0].user_data_file", 7, "nope.yaml: no such file or directory"},
		{"user data a directory", group(`user_data_file: .`), "groups[0].user_data_file", 7, "it is a directory"},
		{"user data a device", group(`user_data_file: /dev/zero`), "groups[0].user_data_file", 7, "cannot read /dev/zero: it is not a regular file"},

		// Metadata.
		{"reserved metadata", group(`metadata: {"phoenix:group": x}`), "groups[0].metadata.phoenix:group", 7, `keys starting with "phoenix:" are reserved`},
		{"bad metadata key", group(`metadata: {"a/b": x}`), "groups[0].metadata.a/b", 7, "letters, digits, spaces and the characters - _ : ."},
		{"metadata key too long", group(`metadata: {` + long + `: x}`), "groups[0].metadata." + long, 7, "expected a key of 1 to 255"},
		{"metadata value too long", group(`metadata: {a: ` + long + `}`), "groups[0].metadata.a", 7, "expected a value of at most 255 characters, got 256"},
		{"too much metadata", group(`metadata: ` + manyPairs(101)), "groups[0].metadata", 7, "expected at most 100 pairs, got 101"},
		{"metadata a list", group(`metadata: [a]`), "groups[0].metadata", 7, "expected a mapping of names to values, got a list"},
		{"metadata value a mapping", group(`metadata: {a: {b: c}}`), "groups[0].metadata.a", 7, "expected a string, got a mapping"},
		{"duplicate metadata key", group(`metadata: {a: x, a: y}`), "groups[0].metadata.a", 7, "key given twice"},

		// Rollout.
		{"surge not a number", group(`rollout: {max_surge: lots}`), "groups[0].rollout.max_surge", 7, `expected a whole number ≥ 0 or a percentage such as "25%", got "lots"`},
		{"surge negative", group(`rollout: {max_surge: -1}`), "groups[0].rollout.max_surge", 7, `whole number ≥ 0 or a percentage such as "25%", got "-1"`},
		{"surge fraction", group(`rollout: {max_surge: 1.5}`), "groups[0].rollout.max_surge", 7, `got "1.5"`},
		{"surge fractional percent", group(`rollout: {max_surge: 12.5%}`), "groups[0].rollout.max_surge", 7, `got "12.5%"`},
		{"unavailable over 100%", group(`rollout: {max_unavailable: 150%}`), "groups[0].rollout.max_unavailable", 7, `expected a percentage from 0% to 100%, got "150%"`},
		{"surge a list", group(`rollout: {max_surge: [1]}`), "groups[0].rollout.max_surge", 7, "expected a single value, got a list"},
		{"both zero", group(`rollout: {max_surge: 0, max_unavailable: 0}`), "groups[0].rollout", 7, "both come to 0 servers for a count of 4, so no server could ever be replaced"},
		{"both round to zero", group(`rollout: {max_surge: 0%, max_unavailable: 20%}`), "groups[0].rollout", 7, "max_surge 0% and max_unavailable 20% both come to 0 servers"},
		{"unavailable above count", group(`rollout: {max_unavailable: 5}`), "groups[0].rollout.max_unavailable", 7, "at most the group's count 4"},
		{"unknown rollout field", group(`rollout: {max_surgee: 1}`), "groups[0].rollout", 7, `unknown field "max_surgee"; did you mean "max_surge"?`},
		{"duplicate rollout key", group("rollout: {max_surge: 1, max_surge: 2}"), "groups[0].rollout.max_surge", 7, "field given twice"},
		{"rollout a list", group("rollout: [1]"), "groups[0].rollout", 7, "expected a mapping of fields, got a list"},

		// Durations.
		{"bare duration", group(`rollout: {min_ready: 30}`), "groups[0].rollout.min_ready", 7, `expected a duration with a unit such as "30s" or "5m", got the bare number 30`},
		{"quoted bare duration", group(`rollout: {min_ready: "1.5"}`), "groups[0].rollout.min_ready", 7, `such as "1.5s"`},
		{"negative duration", group(`rollout: {min_ready: -5s}`), "groups[0].rollout.min_ready", 7, `expected a duration of zero or more, got "-5s"`},
		{"not a duration", group(`rollout: {min_ready: soon}`), "groups[0].rollout.min_ready", 7, `expected a duration such as "30s", "1m30s" or "500ms", got "soon"`},
		{"negative grace", group(`health: {tcp: {port: 22}, grace: -1s}`), "groups[0].health.grace", 7, "zero or more"},

		// Health.
		{"unknown health field", group(`health: {tcp: {port: 22}, intervall: 1s}`), "groups[0].health", 7, `unknown field "intervall"; did you mean "interval"?`},
		{"unknown http field", group(`health: {http: {port: 80, pth: /}}`), "groups[0].health.http", 7, `unknown field "pth"; did you mean "path"?`},
		{"unknown tcp field", group(`health: {tcp: {port: 80, host: x}}`), "groups[0].health.tcp", 7, `unknown field "host"; expected one of port`},
		{"http a list", group(`health: {http: [80]}`), "groups[0].health.http", 7, "expected a mapping of fields, got a list"},
		{"http and tcp", group(`health: {http: {port: 80}, tcp: {port: 22}}`), "groups[0].health", 7, "configure one check, not both"},
		{"port out of range", group(`health: {tcp: {port: 70000}}`), "groups[0].health.tcp.port", 7, "expected a port from 1 to 65535, got 70000"},
		{"port zero", group(`health: {http: {port: 0}}`), "groups[0].health.http.port", 7, "got 0"},
		{"port missing", group(`health: {http: {path: /}}`), "groups[0].health.http.port", 7, "a port from 1 to 65535 is required"},
		{"port a name", group(`health: {http: {port: http}}`), "groups[0].health.http.port", 7, `expected a whole number, got "http"`},
		{"relative path", group(`health: {http: {port: 80, path: healthz}}`), "groups[0].health.http.path", 7, `expected a path starting with "/", got "healthz"`},
		{"bad status", group(`health: {http: {port: 80, expect_status: 42}}`), "groups[0].health.http.expect_status", 7, "from 100 to 599 (or leave it out to accept any 2xx), got 42"},
		{"status too high", group(`health: {http: {port: 80, expect_status: 600}}`), "groups[0].health.http.expect_status", 7, "got 600"},
		{"zero interval", group(`health: {tcp: {port: 22}, interval: 0s, timeout: 0s}`), "groups[0].health.interval", 7, "expected a duration above zero, got 0s"},
		{"zero timeout", group(`health: {tcp: {port: 22}, timeout: 0s}`), "groups[0].health.timeout", 7, "above zero and at most the interval 5s, got 0s"},
		{"timeout over interval", group(`health: {tcp: {port: 22}, interval: 1s, timeout: 2s}`), "groups[0].health.timeout", 7, "at most the interval 1s, got 2s"},
		{"gold image max age too short", group(`image: {name: gold, max_age: 30m}`), "groups[0].image.max_age", 4, "at least 1h"},
		{"unknown strategy", group(`rollout: {strategy: blue-green}`), "groups[0].rollout.strategy", 7, `expected replace (new servers replace the old) or rebuild (Nova rebuilds each server in place), got "blue-green"`},
		{"rebuild without unavailability", group(`rollout: {strategy: rebuild}`), "groups[0].rollout.max_unavailable", 7, "strategy rebuild takes each server out of service"},
		{"stateful without unavailability", group(`stateful: {volumes: {name: data-*}}`), "groups[0].stateful", 7, "a stateful group stops the old server before its volume moves"},
		{"stateful without surge", group(`stateful: {volumes: {name: data-*}}`) + "    rollout: {max_surge: 0, max_unavailable: 1}\n", "groups[0].rollout.max_surge", 8, "boots the replacement before the old server stops"},
		{"stateful selecting nothing", group(`stateful: {volumes: {}}`), "groups[0].stateful.volumes", 7, "expected a name pattern and/or metadata"},
		{"stateful bad pattern", group(`stateful: {volumes: {name: "data-["}}`), "groups[0].stateful.volumes.name", 7, "expected a shell pattern"},
		{"stateful with rebuild", group(`stateful: {volumes: {name: data-*}}`) + "    rollout: {strategy: rebuild, max_unavailable: 1}\n", "groups[0].stateful", 7, "strategy rebuild keeps every volume on its server"},
		{"unknown volume backup", group(`backup: {volumes: cinder}`), "groups[0].backup.volumes", 7, `expected snapshot or none, got "cinder"`},
		{"schedule without volume snapshots", group(`backup: {every: 24h}`), "groups[0].backup.every", 7, "set backup.volumes to snapshot"},
		{"schedule too often", group(`backup: {volumes: snapshot, every: 10m}`), "groups[0].backup.every", 7, "at least 1h"},
		{"rise interval over interval", group(`health: {tcp: {port: 22}, interval: 1s, rise_interval: 2s}`), "groups[0].health.rise_interval", 7, "at most the interval 1s, got 2s"},
		{"zero healthy threshold", group(`health: {tcp: {port: 22}, healthy_threshold: 0}`), "groups[0].health.healthy_threshold", 7, "expected at least 1, got 0"},
		{"negative unhealthy threshold", group(`health: {tcp: {port: 22}, unhealthy_threshold: -2}`), "groups[0].health.unhealthy_threshold", 7, "expected at least 1, got -2"},
		{"health tuning without a check", group(`health: {interval: 1s}`), "groups[0].health.interval", 7, "has no effect without a check"},
		// The daemon's section.
		{"interval too short", "controller: {interval: 100ms}\n" + group(""), "controller.interval", 1, "at least 1s"},
		{"listen without port", "controller: {listen: localhost}\n" + group(""), "controller.listen", 1, `expected host:port such as 127.0.0.1:7355, got "localhost"`},
		{"metrics listen without port", "controller: {metrics_listen: localhost}\n" + group(""), "controller.metrics_listen", 1, `expected host:port such as 127.0.0.1:7355, got "localhost"`},
		{"metrics listen on listen", "controller: {listen: \"0.0.0.0:7355\", metrics_listen: \"0.0.0.0:7355\"}\n" + group(""), "controller.metrics_listen", 1, "expected an address other than controller.listen's (0.0.0.0:7355)"},
		{"cert without key", "controller: {tls_cert_file: c.pem}\n" + group(""), "controller", 1, "tls_cert_file and tls_key_file go together"},
		{"missing secret file", "controller: {webhook_secret_file: nope.key}\n" + group(""), "controller.webhook_secret_file", 1, "cannot read"},
		{"notify not a url", "controller: {notify: [chat-room]}\n" + group(""), "controller.notify[0]", 1, `expected an http or https URL such as https://chat.example.net/hooks/…, got (a value that is not a URL with a host; not shown)`},
		{"notify with a password, not a url", "controller: {notify: [\"ftp://bot:hunter2@chat\"]}\n" + group(""), "controller.notify[0]", 1, `got ftp://chat`},
		{"notify with a token, not http", "controller: {notify: [\"ftp://chat/hooks/T0K3N\"]}\n" + group(""), "controller.notify[0]", 1, `got ftp://chat/…`},
		{"notify url and url_file", "controller: {notify: [{url: \"https://chat\", url_file: chat.url}]}\n" + group(""), "controller.notify[0]", 1, "expected url or url_file, not both"},
		{"notify neither", "controller: {notify: [{}]}\n" + group(""), "controller.notify[0]", 1, "expected url or url_file"},
		{"notify url_file missing", "controller: {notify: [{url_file: chat.url}]}\n" + group(""), "controller.notify[0].url_file", 1, "cannot read"},
		{"notify unknown field", "controller: {notify: [{uri: \"https://chat\"}]}\n" + group(""), "controller.notify[0]", 1, `unknown field "uri"; did you mean "url"?`},
		{"parallel groups zero", "controller: {parallel_groups: 0}\n" + group(""), "controller.parallel_groups", 1, "expected from 1 to 1000"},
		// Coordination through etcd.
		{"etcd without endpoints", "controller: {coordination: {etcd: {prefix: /p/}}}\n" + group(""), "controller.coordination.etcd.endpoints", 1, "expected at least one etcd client URL"},
		{"etcd endpoint without port", "controller: {coordination: {etcd: {endpoints: [etcd-1]}}}\n" + group(""), "controller.coordination.etcd.endpoints[0]", 1, `expected an etcd client URL such as https://etcd-1:2379, got "etcd-1"`},
		{"etcd endpoint odd scheme", "controller: {coordination: {etcd: {endpoints: [\"ftp://e:1\"]}}}\n" + group(""), "controller.coordination.etcd.endpoints[0]", 1, `expected an http or https URL, or host:port, got "ftp://e:1"`},
		{"etcd endpoint port out of range", "controller: {coordination: {etcd: {endpoints: [\"http://e:99999\"]}}}\n" + group(""), "controller.coordination.etcd.endpoints[0]", 1, "expected a port from 1 to 65535"},
		{"etcd endpoints not a list", "controller: {coordination: {etcd: {endpoints: {a: b}}}}\n" + group(""), "controller.coordination.etcd.endpoints", 1, "expected a list, got a mapping"},
		{"etcd lease too short", "controller: {coordination: {etcd: {endpoints: [e:2379], lease_ttl: 1s}}}\n" + group(""), "controller.coordination.etcd.lease_ttl", 1, "expected a duration of at least 2s (etcd grants no shorter lease), got 1s"},
		{"etcd lease not whole seconds", "controller: {coordination: {etcd: {endpoints: [e:2379], lease_ttl: 2500ms}}}\n" + group(""), "controller.coordination.etcd.lease_ttl", 1, "expected whole seconds"},
		{"etcd lease not a duration", "controller: {coordination: {etcd: {endpoints: [e:2379], lease_ttl: soon}}}\n" + group(""), "controller.coordination.etcd.lease_ttl", 1, "soon"},
		{"etcd prefix without slashes", "controller: {coordination: {etcd: {endpoints: [e:2379], prefix: phoenix}}}\n" + group(""), "controller.coordination.etcd.prefix", 1, `expected a key prefix that starts and ends with a slash, such as /phoenix/, got "phoenix"`},
		{"etcd cert without key", "controller: {coordination: {etcd: {endpoints: [e:2379], tls: {cert_file: c.pem}}}}\n" + group(""), "controller.coordination.etcd.tls", 1, "cert_file and key_file go together"},
		{"etcd missing ca file", "controller: {coordination: {etcd: {endpoints: [e:2379], tls: {ca_file: ca.pem}}}}\n" + group(""), "controller.coordination.etcd.tls.ca_file", 1, "cannot read"},
		{"unknown etcd field", "controller: {coordination: {etcd: {endpoint: [e:2379]}}}\n" + group(""), "controller.coordination.etcd", 1, `unknown field "endpoint"; did you mean "endpoints"?`},
		{"unknown coordination", "controller: {coordination: {consul: {}}}\n" + group(""), "controller.coordination", 1, `unknown field "consul"`},
		{"no failure budget", group(`rollout: {max_failures: 0}`), "groups[0].rollout.max_failures", 7, "expected at least 1"},
		{"progress deadline too short", group(`rollout: {progress_deadline: 10ms}`), "groups[0].rollout.progress_deadline", 7, "at least 1s"},
		{"unknown on_failure", group(`rollout: {on_failure: revert}`), "groups[0].rollout.on_failure", 7, `expected halt (keep what serves and stop) or rollback (go back to the image the group ran before), got "revert"`},
		{"negative watch", group(`rollout: {watch: -1m}`), "groups[0].rollout.watch", 7, "expected a duration of zero or more"},
		// Maintenance windows: each refusal names the form, then what is wrong.
		{"window in an unknown zone", group(`rollout: {windows: ["daily 01:00-02:00", "Mon-Fri 02:00-05:00 Europe/Berln"]}`), "groups[0].rollout.windows[1]", 7,
			`expected "DAYS HH:MM-HH:MM [ZONE]" such as "Mon-Fri 02:00-05:00 Europe/Berlin": unknown time zone "Europe/Berln"`},
		{"window in the host's zone", group(`rollout: {windows: ["Mon 02:00-05:00 Local"]}`), "groups[0].rollout.windows[0]", 7, `time zone "Local" is the host's: name the zone`},
		{"window without days", group(`rollout: {windows: ["02:00-05:00"]}`), "groups[0].rollout.windows[0]", 7, `got "02:00-05:00": days and a time range are both needed`},
		{"window empty", group(`rollout: {windows: [""]}`), "groups[0].rollout.windows[0]", 7, `such as "Mon-Fri 02:00-05:00 Europe/Berlin": got an empty value`},
		{"window with too much", group(`rollout: {windows: ["Mon 02:00-05:00 Europe/Berlin CET"]}`), "groups[0].rollout.windows[0]", 7, "more than days, a time range and a time zone"},
		{"window days with spaces", group(`rollout: {windows: ["Mon, Wed 02:00-05:00"]}`), "groups[0].rollout.windows[0]", 7, "write the days without spaces, such as Mon,Wed,Fri"},
		{"window unknown day", group(`rollout: {windows: ["Mon-Fry 02:00-05:00"]}`), "groups[0].rollout.windows[0]", 7, `unknown day "Fry" in "Mon-Fry": expected Mon, Tue, Wed, Thu, Fri, Sat or Sun`},
		{"window day spelt out", group(`rollout: {windows: ["Monday 02:00-05:00"]}`), "groups[0].rollout.windows[0]", 7, `unknown day "Monday"`},
		{"window empty day", group(`rollout: {windows: ["Mon,,Wed 02:00-05:00"]}`), "groups[0].rollout.windows[0]", 7, `unknown day "" in "Mon,,Wed"`},
		{"window no range", group(`rollout: {windows: ["Mon 02:00"]}`), "groups[0].rollout.windows[0]", 7, `time range "02:00" is not HH:MM-HH:MM`},
		{"window one-digit hour", group(`rollout: {windows: ["Mon 2:00-5:00"]}`), "groups[0].rollout.windows[0]", 7, `start "2:00" is not HH:MM`},
		{"window start at 24:00", group(`rollout: {windows: ["Mon 24:00-05:00"]}`), "groups[0].rollout.windows[0]", 7, `start "24:00" is not a time from 00:00 to 23:59`},
		{"window end past 24:00", group(`rollout: {windows: ["Mon 02:00-24:30"]}`), "groups[0].rollout.windows[0]", 7, `end "24:30" is not a time from 00:00 to 24:00`},
		{"window minutes out of range", group(`rollout: {windows: ["Mon 02:60-05:00"]}`), "groups[0].rollout.windows[0]", 7, `start "02:60" is not a time from 00:00 to 23:59`},
		{"window of no length", group(`rollout: {windows: ["Mon 02:00-02:00"]}`), "groups[0].rollout.windows[0]", 7, "start and end are both 02:00: a window needs a length"},
		{"window a mapping", group(`rollout: {windows: [{days: Mon}]}`), "groups[0].rollout.windows[0]", 7, "expected a single value, got a mapping"},
		{"windows a string", group(`rollout: {windows: "Mon 02:00-05:00"}`), "groups[0].rollout.windows", 7, `expected a list, got "Mon 02:00-05:00"`},
		// Blockers.
		{"prometheus without a url", group(`rollout: {blockers: {prometheus: {query: up == 0}}}`), "groups[0].rollout.blockers.prometheus.url", 7, "expected the http or https base URL of a Prometheus server, such as http://prometheus.internal:9090"},
		{"prometheus url relative", group(`rollout: {blockers: {prometheus: {url: prometheus:9090, query: up == 0}}}`), "groups[0].rollout.blockers.prometheus.url", 7, `such as http://prometheus.internal:9090, got "prometheus:9090"`},
		{"prometheus url not http", group(`rollout: {blockers: {prometheus: {url: "ftp://p:9090", query: up == 0}}}`), "groups[0].rollout.blockers.prometheus.url", 7, `got "ftp://p:9090"`},
		{"prometheus url without host", group(`rollout: {blockers: {prometheus: {url: "http:///api", query: up == 0}}}`), "groups[0].rollout.blockers.prometheus.url", 7, `got "http:///api"`},
		{"prometheus url bad port", group(`rollout: {blockers: {prometheus: {url: "http://p:99999", query: up == 0}}}`), "groups[0].rollout.blockers.prometheus.url", 7, `expected a port from 1 to 65535 in "http://p:99999"`},
		{"prometheus url does not parse", group(`rollout: {blockers: {prometheus: {url: "http://p:x/", query: up == 0}}}`), "groups[0].rollout.blockers.prometheus.url", 7, `got "http://p:x/": invalid port ":x" after host`},
		{"prometheus url the query endpoint", group(`rollout: {blockers: {prometheus: {url: "http://p:9090/api/v1/query", query: up == 0}}}`), "groups[0].rollout.blockers.prometheus.url", 7, "Phoenix adds /api/v1/query itself"},
		{"prometheus without a query", group(`rollout: {blockers: {prometheus: {url: "http://p:9090", query: " "}}}`), "groups[0].rollout.blockers.prometheus.query", 7, "a PromQL query is required"},
		{"prometheus timeout zero", group(`rollout: {blockers: {prometheus: {url: "http://p:9090", query: up == 0, timeout: 0s}}}`), "groups[0].rollout.blockers.prometheus.timeout", 7, "expected a duration above zero (a query that takes longer blocks), got 0s"},
		{"prometheus timeout a number", group(`rollout: {blockers: {prometheus: {url: "http://p:9090", query: up == 0, timeout: 10}}}`), "groups[0].rollout.blockers.prometheus.timeout", 7, `"10s"`},
		{"unknown blocker", group(`rollout: {blockers: {prometeus: {}}}`), "groups[0].rollout.blockers", 7, `unknown field "prometeus"; did you mean "prometheus"?`},
		{"hold not a bool", group(`hold: please`), "groups[0].hold", 7, `expected true or false, got "please"`},
		{"create backoff max zero", group(`rollout: {create_backoff_max: 0s}`), "groups[0].rollout.create_backoff_max", 7, "expected a duration above zero (the longest pause between creates the cloud refuses), got 0s"},
		{"create backoff max negative", group(`rollout: {create_backoff_max: -1m}`), "groups[0].rollout.create_backoff_max", 7, "-1m"},
		{"create backoff max a number", group(`rollout: {create_backoff_max: 60}`), "groups[0].rollout.create_backoff_max", 7, `"60s"`},
		{"max unhealthy over 100%", group(`health: {http: {port: 80}, max_unhealthy: 150%}`), "groups[0].health.max_unhealthy", 7, "expected a percentage from 0% to 100%"},
		{"max age too short", group(`max_age: 5m`), "groups[0].max_age", 7, "expected 1h or more"},
		{"canary as big as the group", group(`rollout: {canary: 4}`), "groups[0].rollout.canary", 7, "expected from 0 to 3 servers"},
		{"bake without canary", group(`rollout: {canary_bake: 5m}`), "groups[0].rollout.canary", 7, "need a canary"},
		{"negative keep", group(`backup: {snapshot_before_delete: true, keep: -1}`), "groups[0].backup.keep", 7, "expected 0 (keep every snapshot) or more"},
		// Traffic.
		{"octavia without a pool", group(`traffic: {octavia: {protocol_port: 80}}`), "groups[0].traffic.octavia.pool", 7, "a pool name or ID is required"},
		{"octavia port out of range", group(`traffic: {octavia: {pool: web, protocol_port: 70000}}`), "groups[0].traffic.octavia.protocol_port", 7, "expected a port from 1 to 65535, got 70000"},
		{"octavia without a port", group(`traffic: {octavia: {pool: web}}`), "groups[0].traffic.octavia.protocol_port", 7, "a port from 1 to 65535 is required"},
		{"member weight 0", group(`traffic: {octavia: {pool: web, protocol_port: 80, weight: 0}}`), "groups[0].traffic.octavia.weight", 7, "weight 0 is Phoenix's drain"},
		{"member weight too big", group(`traffic: {octavia: {pool: web, protocol_port: 80, weight: 257}}`), "groups[0].traffic.octavia.weight", 7, "expected a weight from 1 to 256"},
		{"negative drain", group(`traffic: {octavia: {pool: web, protocol_port: 80, drain: -1s}}`), "groups[0].traffic.octavia.drain", 7, "expected"},
		{"member network not the group's", group(`traffic: {octavia: {pool: web, protocol_port: 80, network: other}}`), "groups[0].traffic.octavia.network", 7, `expected one of the group's networks (private), got "other"`},
		{"both octavia and floating ip", group(`traffic: {octavia: {pool: web, protocol_port: 80}, floating_ip: {address: 203.0.113.5}}`), "groups[0].traffic", 7, "alternatives"},
		{"floating ip on a group of several", group(`traffic: {floating_ip: {address: 203.0.113.5}}`), "groups[0].traffic.floating_ip", 7, "this group has count 4: put the servers behind traffic.octavia"},
		{"floating ip neither address nor pool", group(`traffic: {floating_ip: {drain: 5s}}`), "groups[0].traffic.floating_ip", 7, "expected an address"},
		{"floating ip both address and pool", group(`traffic: {floating_ip: {address: 203.0.113.5, pool: public}}`), "groups[0].traffic.floating_ip", 7, "alternatives"},
		{"floating ip not an address", group(`traffic: {floating_ip: {address: fip-1}}`), "groups[0].traffic.floating_ip.address", 7, `expected an IP address, got "fip-1"`},
		{"unknown traffic field", group(`traffic: {octavia: {pool: web, protocol_port: 80, drian: 5s}}`), "groups[0].traffic.octavia", 7, `unknown field "drian"`},

		// YAML merges.
		{"merge of a scalar", group(`rollout: {<<: 5}`), "groups[0].rollout", 7, `expected a merge (<<) of a mapping or a list of mappings, got "5"`},
		{"unknown field merged in", "x-base: &base {flavour: f}\n" + group("<<: *base"), "groups[0]", 1, `unknown field "flavour"`},
		{"unknown extension field in a group", group("x-note: hello"), "groups[0]", 7, `unknown field "x-note"`},

		// Placement over several locations.
		{"failover after too short", group(`placement: {failover_after: 5s, locations: [{region: R1}]}`), "groups[0].placement.failover_after", 7,
			"expected a duration of at least 10s, got 5s: a location is down once its API or its creates fail this long, and a shorter time would move servers between locations on every passing hiccup"},
		{"failover after zero", group(`placement: {failover_after: 0s, locations: [{region: R1}]}`), "groups[0].placement.failover_after", 7, "expected a duration of at least 10s, got 0s"},
		{"failover after a bare number", group(`placement: {failover_after: 120, locations: [{region: R1}]}`), "groups[0].placement.failover_after", 7, `such as "120s"`},
		{"placement without locations", group(`placement: {failover_after: 1m}`), "groups[0].placement.locations", 7, "expected at least one location, each a region and/or a cloud"},
		{"placement an empty list", group(`placement: []`), "groups[0].placement.locations", 7, "expected at least one location"},
		{"placement a string", group(`placement: RegionOne`), "groups[0].placement", 7, `expected a list of locations, or a mapping of fields with locations, got "RegionOne"`},
		{"location a string", group(`placement: [RegionOne]`), "groups[0].placement.locations[0]", 7, `expected a mapping of fields, got "RegionOne"`},
		{"locations a mapping", group(`placement: {locations: {region: R1}}`), "groups[0].placement.locations", 7, "expected a list, got a mapping"},
		{"location nowhere", group(`placement: [{region: R1}, {weight: 1}]`), "groups[0].placement.locations[1]", 7, "expected a region and/or a cloud: a location is one region of one cloud"},
		{"location region empty", group(`placement: [{region: ""}]`), "groups[0].placement.locations[0].region", 7, "expected a region name, got an empty one"},
		{"location cloud blank", group(`placement: [{cloud: " ", region: R1}]`), "groups[0].placement.locations[0].cloud", 7, "expected a clouds.yaml entry, got an empty one"},
		{"location name with a space", group(`placement: [{name: east coast, region: R1}]`), "groups[0].placement.locations[0].name", 7,
			`expected 1 to 63 letters, digits and the characters - _ . / (the name goes into server metadata and metric labels), got "east coast"`},
		{"location name too long", group(`placement: [{name: ` + strings.Repeat("a", 64) + `, region: R1}]`), "groups[0].placement.locations[0].name", 7, "expected 1 to 63"},
		{"location name written empty", group(`placement: [{name: "", region: R1}]`), "groups[0].placement.locations[0].name", 7, `got ""`},
		{"default location name not a name", group(`placement: [{region: Region One}]`), "groups[0].placement.locations[0].name", 7, `the default name "Region One", from the location's cloud and region, is not 1 to 63`},
		{"default location name too long", group(`placement: [{cloud: c, region: ` + strings.Repeat("r", 62) + `}]`), "groups[0].placement.locations[0].name", 7, "write a name"},
		{"location name twice", group(`placement: [{name: a, region: R1}, {name: a, region: R2}]`), "groups[0].placement.locations[1].name", 7,
			`location name "a" is used twice, by locations[0] (line 7) and locations[1]: names are unique in a group`},
		{"default location name twice", group("placement:\n      - {region: R1}\n      - {cloud: R1}"), "groups[0].placement.locations[1].name", 9,
			`location name "R1", the default from the location's cloud and region, is used twice, by locations[0] (line 8) and locations[1]: write a name`},
		{"one region twice", group("placement:\n      - {region: R1}\n      - {name: again, region: R1}"), "groups[0].placement.locations[1]", 9,
			"locations[0] (line 8) and locations[1] are both region R1 of the default cloud (OS_CLOUD, or the OS_* variables): each location is another region or cloud"},
		{"one region twice through the top-level cloud", "cloud: prod\n" + group(`placement: [{region: R1}, {cloud: prod, region: R1}]`), "groups[0].placement.locations[1]", 8,
			"locations[0] (line 8) and locations[1] are both region R1 of cloud prod"},
		{"one cloud twice", group(`placement: [{cloud: a}, {cloud: a, name: b}]`), "groups[0].placement.locations[1]", 7, "are both cloud a in its default region"},
		{"location weight negative", group(`placement: [{region: R1, weight: -1}]`), "groups[0].placement.locations[0].weight", 7,
			"expected a weight of 0 (a standby that gets servers only when another location is down) or more, got -1"},
		{"location weight too big", group(`placement: [{region: R1, weight: 10001}]`), "groups[0].placement.locations[0].weight", 7, "expected a weight of at most 10000"},
		{"location weight not a number", group(`placement: [{region: R1, weight: half}]`), "groups[0].placement.locations[0].weight", 7, `expected a whole number, got "half"`},
		{"every location a standby", group(`placement: [{region: R1, weight: 0}, {region: R2, weight: 0}]`), "groups[0].placement.locations", 7,
			"every location has weight 0, so none would get servers"},
		{"unknown location field", group("placement:\n      failover_after: 1m\n      locations:\n        - region: R1\n          wieght: 2"), "groups[0].placement.locations[0]", 11,
			`unknown field "wieght"; did you mean "weight"?`},
		{"unknown location field in the short form", group(`placement: [{region: R1, zones: [a]}]`), "groups[0].placement.locations[0]", 7,
			`unknown field "zones"; expected one of availability_zones, cloud, name, region, weight`},
		{"unknown placement field", group(`placement: {failover: 1m, locations: [{region: R1}]}`), "groups[0].placement", 7, `unknown field "failover"; expected one of failover_after, locations`},
		{"location zone twice", group(`placement: [{region: R1, availability_zones: [az1, az1]}]`), "groups[0].placement.locations[0].availability_zones[1]", 7, `availability zone "az1" is listed twice`},
		{"location zone empty", group(`placement: [{region: R1, availability_zones: [""]}]`), "groups[0].placement.locations[0].availability_zones[0]", 7, "expected an availability zone name, got an empty one"},
		{"placement of a stateful group", group(`stateful: {volumes: {name: data-*}}`) + "    rollout: {max_unavailable: 1}\n    placement: [{region: R1}]\n", "groups[0].placement", 9,
			"a stateful group moves each server's data volumes to its replacement, and a volume cannot move between regions or clouds: remove placement, or stateful"},
		{"promote without a tag", group(`promote: {after: 1h}`), "groups[0].promote.tag", 7, "expected the Glance tag to add to an image the group has run healthy, such as staged-ok"},
		{"promote a tag with a slash", group(`promote: {tag: staged/ok}`), "groups[0].promote.tag", 7, `without a slash, a control character or spaces around it (Phoenix adds it by URL), got "staged/ok"`},
		{"promote a tag too long", group(`promote: {tag: ` + strings.Repeat("t", 256) + `}`), "groups[0].promote.tag", 7, "expected a tag of 1 to 255 characters"},
		{"promote the tag the group requires", group(`image: {name: gold, tags: [gold, staged-ok], newest: true}`) + "    promote: {tag: staged-ok}\n", "groups[0].promote.tag", 7,
			`the group's own image selector requires "staged-ok", the tag it adds: it would never take an image that has not passed it already`},
		{"promote after negative", group(`promote: {tag: ok, after: -1m}`), "groups[0].promote.after", 7, "expected a duration of zero or more"},
		{"promote after a bare number", group(`promote: {tag: ok, after: 3600}`), "groups[0].promote.after", 7, `such as "3600s" or "5m", got the bare number 3600`},
		{"unknown promote field", group(`promote: {tag: ok, afer: 1h}`), "groups[0].promote", 7, `unknown field "afer"; did you mean "after"?`},
		{"promote from a placed group", group(`placement: [{region: R1}]`) + "    promote: {tag: ok}\n", "groups[0].promote", 8,
			"a placed group runs its own image in each location (gold images are published per region), so one image cannot be promoted for it"},
		{"a later stage without newest", "groups:\n  - {name: staging, count: 2, image: {tags: [gold], newest: true}, flavor: f, networks: [n], promote: {tag: staged-ok}}\n" +
			"  - {name: prod, count: 4, image: {tags: [gold, staged-ok]}, flavor: f, networks: [n]}\n", "groups[1].image.newest", 3,
			`the selector requires "staged-ok", the tag group staging promotes, and every image that passes keeps it: set newest: true`},
		{"floating ip over two locations", group(`count: 1`) + "    traffic: {floating_ip: {pool: public}}\n    placement: [{region: R1}, {region: R2}]\n", "groups[0].placement", 8,
			"a floating IP belongs to one location and cannot follow the servers to another: use traffic.octavia with a pool in each location and DNS across their load balancers"},
	}
	if len(cases) < 20 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("phoenix.yaml", []byte(tc.yaml), t.TempDir())
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.yaml)
			}
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("error %T is not a *config.Error: %v", err, err)
			}
			if cerr.File != "phoenix.yaml" {
				t.Errorf("File = %q", cerr.File)
			}
			msg := err.Error()
			for _, line := range strings.Split(msg, "\n") {
				if !strings.HasPrefix(line, "phoenix.yaml: ") {
					t.Errorf("a line of the error does not start with the file name: %q", line)
				}
			}
			// The exact rendering an operator reads: file, path, line, message.
			var head string
			switch {
			case tc.path == "" && tc.line == 0:
				head = "phoenix.yaml: "
			case tc.path == "":
				head = fmt.Sprintf("phoenix.yaml: line %d: ", tc.line)
			case tc.line == 0:
				head = fmt.Sprintf("phoenix.yaml: %s: ", tc.path)
			default:
				head = fmt.Sprintf("phoenix.yaml: %s (line %d): ", tc.path, tc.line)
			}
			found := false
			for _, line := range strings.Split(msg, "\n") {
				if rest, ok := strings.CutPrefix(line, head); ok && strings.Contains(rest, tc.want) {
					found = true
				}
			}
			if !found {
				t.Fatalf("no line starting %q and saying %q in:\n%s", head, tc.want, msg)
			}
		})
	}
}

func TestUserDataPaths(t *testing.T) {
	dir := writeFiles(t, map[string]string{"ud.yaml": "#cloud-config\n"})
	sub := filepath.Join(dir, "conf")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	body := group("user_data_file: ../ud.yaml")
	if err := os.WriteFile(filepath.Join(sub, "phoenix.yaml"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(filepath.Join(sub, "phoenix.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg.Groups[0].UserData) != "#cloud-config\n" {
		t.Fatalf("user data relative to the config's directory = %q", cfg.Groups[0].UserData)
	}

	// Absolute paths are taken as they are.
	cfg, err = Parse("p.yaml", []byte(group("user_data_file: "+filepath.Join(dir, "ud.yaml"))), "/nonexistent")
	if err != nil || len(cfg.Groups[0].UserData) == 0 {
		t.Fatalf("absolute user_data_file: %v", err)
	}

	// The error names the resolved path.
	_, err = Parse("p.yaml", []byte(group("user_data_file: missing.yaml")), sub)
	if want := filepath.Join(sub, "missing.yaml"); err == nil || !strings.Contains(err.Error(), "cannot read "+want) {
		t.Fatalf("error %v does not name %s", err, want)
	}

	// 49152 bytes are 65536 of base64: one too many for Nova.
	big := writeFiles(t, map[string]string{"fits": strings.Repeat("x", 49149), "big": strings.Repeat("x", 49152)})
	if _, err := Parse("p.yaml", []byte(group("user_data_file: fits")), big); err != nil {
		t.Fatalf("user data of 65532 base64 bytes refused: %v", err)
	}
	_, err = Parse("p.yaml", []byte(group("user_data_file: big")), big)
	if err == nil || !strings.Contains(err.Error(), "groups[0].user_data_file (line 7): "+filepath.Join(big, "big")+" is 49152 bytes, 65536 once base64-encoded; Nova accepts at most 65535") {
		t.Fatalf("error = %v", err)
	}
}

func TestAllProblemsReportedTogether(t *testing.T) {
	_, err := Parse("phoenix.yaml", []byte(`cloud: prod
colud: typo
groups:
  - name: a
    count: many
    image: {name: x}
    flavor: f
    networks: [n]
    rollout: {max_surgee: 1}
  - name: b
    count: 0
    image: {}
    flavor: f
    networks: [n, n]
    rollout: {max_surge: 0}
    health: {tcp: {port: 0}}
`), ".")
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("want a *config.Error, got %v", err)
	}
	want := []string{
		"(top level) (line 2): unknown field \"colud\"",
		"groups[0].count (line 5): expected a whole number",
		"groups[0].rollout (line 9): unknown field \"max_surgee\"",
		"groups[1].count (line 11): expected a count from 1 to 10000, got 0",
		"groups[1].image (line 12): expected an image id",
		"groups[1].networks[1] (line 14): network \"n\" is listed twice",
		"groups[1].health.tcp.port (line 16): expected a port",
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) || len(cerr.Problems) != len(want) {
		t.Fatalf("got %d lines for %d problems, want %d:\n%v", len(lines), len(cerr.Problems), len(want), err)
	}
	// In file order, each starting with the file name.
	for i, w := range want {
		if !strings.HasPrefix(lines[i], "phoenix.yaml: "+w) {
			t.Errorf("line %d = %q, want it to start with %q", i, lines[i], "phoenix.yaml: "+w)
		}
	}
}

// A value the decoder refuses is reported once, not again by every rule
// that would look at it.
func TestNoEchoOfRefusedValues(t *testing.T) {
	cases := []struct{ extra, path string }{
		{`count: many`, "groups[0].count"},
		{`health: {tcp: {port: 22}, interval: 30}`, "groups[0].health.interval"},
		{`health: {http: [80], interval: 1s}`, "groups[0].health.http"},
		{`rollout: {max_surge: 0, max_unavailable: lots}`, "groups[0].rollout.max_unavailable"},
		{`image: {name: [gold]}`, "groups[0].image.name"},
		{`networks: {a: b}`, "groups[0].networks"},
		// A negative duration is refused by the decoder alone.
		{`rollout: {canary: 1, canary_bake: -1m}`, "groups[0].rollout.canary_bake"},
		{`backup: {max_age: -1h}`, "groups[0].backup.max_age"},
		{`traffic: {octavia: {pool: web, protocol_port: 80, drain: -1s}}`, "groups[0].traffic.octavia.drain"},
		{`placement: RegionOne`, "groups[0].placement"},
		{`placement: {failover_after: soon, locations: [{region: R1}]}`, "groups[0].placement.failover_after"},
		// The only weight unreadable: not also "every location has weight 0".
		{`placement: [{region: R1, weight: half}]`, "groups[0].placement.locations[0].weight"},
		{`placement: [{region: [R1]}]`, "groups[0].placement.locations[0].region"},
	}
	for _, tc := range cases {
		_, err := Parse("p.yaml", []byte(group(tc.extra)), ".")
		var cerr *Error
		if !errors.As(err, &cerr) {
			t.Fatalf("%s: want a *config.Error, got %v", tc.extra, err)
		}
		if len(cerr.Problems) != 1 || cerr.Problems[0].Path != tc.path {
			t.Errorf("%s: want exactly one problem at %s, got:\n%v", tc.extra, tc.path, err)
		}
	}
}

func TestMergeKeys(t *testing.T) {
	cfg, err := Parse("p.yaml", []byte(`x-base: &base
  flavor: m1.small
  networks: [app-net]
  metadata: &meta {team: web}
  rollout: {max_surge: 25%}
groups:
  - <<: *base
    name: web
    count: 8
    image: {name: gold}
  - <<: [{flavor: m1.large}, *base]
    name: api
    count: 2
    image: {name: gold}
    metadata: {<<: *meta, tier: api}
`), ".")
	if err != nil {
		t.Fatal(err)
	}
	web, api := cfg.Groups[0], cfg.Groups[1]
	if web.Flavor != "m1.small" || web.Networks[0] != "app-net" || web.Rollout.MaxSurge.String() != "25%" || web.Metadata["team"] != "web" {
		t.Errorf("web = %+v", web)
	}
	if api.Flavor != "m1.large" {
		t.Errorf("first merged mapping should win: flavor %q", api.Flavor)
	}
	if !reflect.DeepEqual(api.Metadata, map[string]string{"team": "web", "tier": "api"}) {
		t.Errorf("api metadata = %v", api.Metadata)
	}

	// Keys written in the mapping win over merged ones.
	cfg, err = Parse("p.yaml", []byte("x-a: &a {count: 9, flavor: small}\n"+group("<<: *a")), ".")
	if err != nil {
		t.Fatal(err)
	}
	if g := cfg.Groups[0]; g.Count != 4 || g.Flavor != "m1.small" {
		t.Errorf("written keys lost to merged ones: count %d, flavor %q", g.Count, g.Flavor)
	}

	// A mapping that merges itself is refused, not followed forever.
	_, err = Parse("p.yaml", []byte("groups:\n  - &g {<<: *g, name: a}\n"), ".")
	if err == nil || !strings.Contains(err.Error(), "groups[0] (line 2): a merge (<<) includes the mapping it is part of") {
		t.Errorf("self merge: %v", err)
	}
}

func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("x-0: &a0 {k: v}\n")
	for i := 1; i <= 12; i++ {
		fmt.Fprintf(&b, "x-%d: &a%d {<<: [", i, i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]}\n")
	}
	b.WriteString(group("metadata: *a12"))
	start := time.Now()
	_, err := Parse("p.yaml", []byte(b.String()), ".")
	if err == nil || !strings.Contains(err.Error(), "expands to more than") {
		t.Fatalf("error = %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %s", d)
	}
}

func TestRoundTrip(t *testing.T) {
	dir := writeFiles(t, map[string]string{"web.yaml": "#cloud-config\n"})
	first, err := Parse("p.yaml", []byte(valid), dir)
	if err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(first)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Parse("p.yaml", out, dir)
	if err != nil {
		t.Fatalf("the marshalled config does not load: %v\n%s", err, out)
	}
	// Defaults are written out, so they come back as set.
	for _, c := range []*Config{first, second} {
		for i := range c.Groups {
			c.Groups[i].Rollout.MaxSurge.Set = false
			c.Groups[i].Rollout.MaxUnavailable.Set = false
			c.Groups[i].Health.MaxUnhealthy.Set = false
		}
	}
	if !reflect.DeepEqual(first, second) {
		t.Fatalf("round trip changed the config:\n%+v\n%+v\nvia\n%s", first, second, out)
	}
	for _, want := range []string{"max_surge: 25%", "min_ready: 30s", "grace: 1m30s", "max_unavailable: 0\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("marshalled config lacks %q:\n%s", want, out)
		}
	}
}

func TestUnmarshalYAMLDirectly(t *testing.T) {
	var r Rollout
	if err := yaml.Unmarshal([]byte("{max_surge: 25%, max_unavailable: 1, min_ready: 1m30s}"), &r); err != nil {
		t.Fatal(err)
	}
	want := Rollout{MaxSurge: IntOrPercent{25, true, true}, MaxUnavailable: IntOrPercent{1, false, true}, MinReady: Duration(90 * time.Second)}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("got %+v, want %+v", r, want)
	}
	if err := yaml.Unmarshal([]byte("{min_ready: 30}"), &r); err == nil || !strings.Contains(err.Error(), "with a unit") {
		t.Fatalf("bare number: %v", err)
	}
	r = Rollout{}
	if err := yaml.Unmarshal([]byte("{windows: [daily 01:00-02:00 Europe/Berlin]}"), &r); err != nil || r.Windows[0].String() != "daily 01:00-02:00 Europe/Berlin" {
		t.Fatalf("windows: %+v, %v", r.Windows, err)
	}
	if err := yaml.Unmarshal([]byte("{windows: [Mon 02:00-01:00 Mars/Olympus]}"), &r); err == nil || !strings.Contains(err.Error(), `unknown time zone "Mars/Olympus"`) {
		t.Fatalf("bad zone: %v", err)
	}
}

func TestIntOrPercentDecode(t *testing.T) {
	cases := []struct {
		in   string
		want IntOrPercent
		ok   bool
	}{
		{"0", IntOrPercent{0, false, true}, true},
		{"3", IntOrPercent{3, false, true}, true},
		{`"3"`, IntOrPercent{3, false, true}, true},
		{"0%", IntOrPercent{0, true, true}, true},
		{"25%", IntOrPercent{25, true, true}, true},
		{`"100%"`, IntOrPercent{100, true, true}, true},
		{"-1", IntOrPercent{}, false},
		{"1.5", IntOrPercent{}, false},
		{"abc", IntOrPercent{}, false},
		{"150%", IntOrPercent{}, false},
		{"-5%", IntOrPercent{}, false},
		{"%", IntOrPercent{}, false},
		{"true", IntOrPercent{}, false},
	}
	for _, tc := range cases {
		var v IntOrPercent
		err := yaml.Unmarshal([]byte(tc.in), &v)
		if (err == nil) != tc.ok || (tc.ok && v != tc.want) {
			t.Errorf("%s: got %+v, %v; want %+v, ok %v", tc.in, v, err, tc.want, tc.ok)
		}
	}
}

func TestResolveFenceposts(t *testing.T) {
	pct := func(n int) IntOrPercent { return IntOrPercent{Value: n, Percent: true, Set: true} }
	cases := []struct {
		v                  IntOrPercent
		count              int
		surge, unavailable int
	}{
		{pct(25), 10, 3, 2},
		{pct(25), 4, 1, 1},
		{pct(25), 1, 1, 0},
		{pct(10), 4, 1, 0},
		{pct(50), 3, 2, 1},
		{pct(33), 3, 1, 0},
		{pct(0), 10, 0, 0},
		{pct(0), 1, 0, 0},
		{pct(100), 7, 7, 7},
		{pct(100), 1, 1, 1},
		{pct(1), 10000, 100, 100},
		{pct(1), 150, 2, 1},
		{IntOrPercent{Value: 2}, 10, 2, 2},
		{IntOrPercent{Value: 0}, 10, 0, 0},
		{IntOrPercent{Value: 5}, 1, 5, 5},
	}
	for _, tc := range cases {
		if got := tc.v.Resolve(tc.count, true); got != tc.surge {
			t.Errorf("%s of %d as surge = %d, want %d", tc.v, tc.count, got, tc.surge)
		}
		if got := tc.v.Resolve(tc.count, false); got != tc.unavailable {
			t.Errorf("%s of %d as unavailable = %d, want %d", tc.v, tc.count, got, tc.unavailable)
		}
	}
}

func TestLoadMissingFileNamesIt(t *testing.T) {
	_, err := Load("/nonexistent/phoenix.yaml")
	var cerr *Error
	if !errors.As(err, &cerr) || err.Error() != "/nonexistent/phoenix.yaml: cannot read the file: no such file or directory" {
		t.Fatalf("error = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(valid))
	f.Add([]byte(group(`rollout: {max_surge: 25%}`)))
	f.Add([]byte(group(`health: {http: {port: 80, path: /x, expect_status: 204}, interval: 1s, timeout: 500ms}`)))
	f.Add([]byte("groups: [{name: a, count: 1, image: {id: x}, flavor: f, networks: [n], health: {tcp: {port: 1}}}]"))
	f.Add([]byte("x-a: &a {flavor: f}\ngroups: [{<<: *a, name: a, count: 1, image: {name: x}, networks: [n]}]"))
	f.Add([]byte(group(`rollout: {windows: ["Mon-Fri 02:00-05:00 Europe/Berlin", "Sat-Mon 22:00-24:00", "daily 23:00-01:00 UTC"]}`)))
	f.Add([]byte(group(`rollout: {blockers: {prometheus: {url: "https://ops:pw@prom:9090/p", query: up == 0, timeout: 5s}}}`) + "    hold: true\n"))
	f.Add([]byte("groups: &a [*a]"))
	f.Add([]byte("groups:\n  - &g {<<: *g}\n"))
	f.Add([]byte("---\n---\n"))
	f.Add([]byte(""))
	f.Add([]byte("cloud: c\n" + group(`placement: {failover_after: 1m, locations: [{region: R1, weight: 2}, {cloud: o, region: R2, availability_zones: [a]}, {name: s, region: R3, weight: 0}]}`)))
	f.Add([]byte(group(`placement: [{region: R1}, {cloud: o}]`)))
	// The user data file the valid seed names: without it every mutation
	// of the richest seed is refused before its groups are checked.
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "web.yaml"), []byte("#cloud-config\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data, dir)
		if err != nil {
			var cerr *Error
			if !errors.As(err, &cerr) || len(cerr.Problems) == 0 {
				t.Fatalf("error is not a *config.Error with problems: %v", err)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fuzz.yaml: ") {
					t.Fatalf("error line does not name the file: %q", line)
				}
			}
			return
		}
		if len(cfg.Groups) == 0 || cfg.Path != "fuzz.yaml" {
			t.Fatalf("accepted a config without groups, or lost its path: %+v", cfg)
		}
		if c := cfg.Controller; c.Interval < Duration(time.Second) || c.ParallelGroups < 1 || c.ParallelGroups > 1000 {
			t.Fatalf("accepted controller settings the daemon cannot run with: %+v", c)
		}
		for _, g := range cfg.Groups {
			if g.Count < 1 || !groupName.MatchString(g.Name) || g.Flavor == "" || len(g.Networks) == 0 {
				t.Fatalf("accepted an invalid group: %+v", g)
			}
			r := g.Rollout
			if r.MaxSurge.Resolve(g.Count, true) == 0 && r.MaxUnavailable.Resolve(g.Count, false) == 0 {
				t.Fatalf("accepted a rollout that cannot progress: %+v", r)
			}
			if r.MaxUnavailable.Resolve(g.Count, false) > g.Count || r.MaxFailures < 1 || r.ProgressDeadline < Duration(time.Second) ||
				r.Canary < 0 || r.Canary > 0 && r.Canary >= g.Count {
				t.Fatalf("accepted rollout settings of group %s out of range: %+v", g.Name, r)
			}
			for _, w := range r.Windows {
				if w.Days == [7]bool{} || w.Start < 0 || w.Start >= 24*time.Hour || w.End <= 0 || w.End > 24*time.Hour ||
					w.Start == w.End || w.Start%time.Minute != 0 || w.End%time.Minute != 0 || w.Text == "" || w.Loc == time.Local {
					t.Fatalf("accepted a window of group %s the policy cannot read: %+v", g.Name, w)
				}
			}
			if p := r.Blockers.Prometheus; p != nil {
				u, err := url.Parse(p.URL)
				if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Hostname() == "" || strings.TrimSpace(p.Query) == "" || p.Timeout <= 0 {
					t.Fatalf("accepted a Prometheus blocker of group %s that cannot be asked: %+v", g.Name, p)
				}
			}
			if p := g.Placement; p != nil {
				names, sum := map[string]bool{}, 0
				for _, l := range p.Locations {
					if !locationName.MatchString(l.Name) || names[l.Name] || l.Cloud == "" && l.Region == "" || l.Weight < 0 {
						t.Fatalf("accepted a location of group %s the runtime cannot tell apart or place: %+v", g.Name, p.Locations)
					}
					names[l.Name] = true
					sum += l.Weight
				}
				if len(p.Locations) == 0 || sum <= 0 || p.FailoverAfter < Duration(minFailoverAfter) || g.Stateful != nil {
					t.Fatalf("accepted a placement of group %s that cannot be carried out: %+v", g.Name, p)
				}
			}
			if h := g.Health; h.HTTP != nil || h.TCP != nil {
				if h.HTTP != nil && h.TCP != nil || h.Interval <= 0 || h.RiseInterval <= 0 || h.RiseInterval > h.Interval ||
					h.Timeout <= 0 || h.Timeout > h.Interval || h.HealthyThreshold < 1 || h.UnhealthyThreshold < 1 {
					t.Fatalf("accepted health settings of group %s a checker cannot run: %+v", g.Name, h)
				}
				port := 0
				if h.HTTP != nil {
					port = h.HTTP.Port
					if !strings.HasPrefix(h.HTTP.Path, "/") {
						t.Fatalf("accepted health path %q", h.HTTP.Path)
					}
				} else {
					port = h.TCP.Port
				}
				if port < 1 || port > 65535 {
					t.Fatalf("accepted health port %d", port)
				}
			}
		}
		// Parsing is a function of the bytes: the same input gives the
		// same configuration.
		again, err := Parse("fuzz.yaml", data, dir)
		if err != nil || !reflect.DeepEqual(cfg, again) {
			t.Fatalf("the same input parsed differently the second time (%v)", err)
		}
	})
}

// A URL that carries a token is shown by its scheme and host alone,
// wherever it came from.
func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{"https://hooks.slack.example/services/T000/B000/XXXXSECRET", "https://hooks.slack.example/…"},
		{"https://chat.example:8443/hook?token=XXXXSECRET", "https://chat.example:8443/…"},
		{"https://bot:XXXXSECRET@chat.example/", "https://chat.example"},
		{"https://chat.example", "https://chat.example"},
		{"https://chat.example#XXXXSECRET", "https://chat.example/…"},
		{"https://chat.example/?", "https://chat.example/…"},
		{"XXXXSECRET", "(a value that is not a URL with a host; not shown)"},
		{"https://chat.example/%zzXXXXSECRET", "(a value that is not a URL with a host; not shown)"},
		{"", "(no URL)"},
	} {
		got := RedactURL(tc.raw)
		if got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.raw, got, tc.want)
		}
		if strings.Contains(got, "XXXXSECRET") {
			t.Errorf("RedactURL(%q) shows the token", tc.raw)
		}
	}
}

func TestNotifyTargets(t *testing.T) {
	const token = "https://chat.example/hooks/T000/B000/XXXXSECRET"
	dir := writeFiles(t, map[string]string{"web.yaml": "#cloud-config\n", "chat.url": token + "\n", "bad.url": "XXXXSECRET\n"})
	cfg, err := Parse("p.yaml", []byte("controller:\n  notify:\n    - https://plain.example/notices\n    - {url: \"https://other.example\"}\n    - {url_file: chat.url}\n"+group("")), dir)
	if err != nil {
		t.Fatal(err)
	}
	n := cfg.Controller.Notify
	if len(n) != 3 || n[0].Address() != "https://plain.example/notices" || n[1].Address() != "https://other.example" || n[2].Address() != token {
		t.Fatalf("targets %+v", n)
	}
	if n[2].URLFile != filepath.Join(dir, "chat.url") || n[2].Unread() != nil {
		t.Errorf("url_file %q, unread %v", n[2].URLFile, n[2].Unread())
	}
	if got := n[2].Redacted(); got != "https://chat.example/… (from "+filepath.Join(dir, "chat.url")+")" {
		t.Errorf("Redacted() = %q", got)
	}

	// A file that holds no URL is refused without showing its content.
	_, err = Parse("p.yaml", []byte("controller: {notify: [{url_file: bad.url}]}\n"+group("")), dir)
	if err == nil || !strings.Contains(err.Error(), "controller.notify[0].url_file (line 1)") || !strings.Contains(err.Error(), "bad.url") {
		t.Fatalf("error = %v", err)
	}
	if strings.Contains(err.Error(), "XXXXSECRET") {
		t.Errorf("the error shows the file's content: %v", err)
	}

	// yaml.Unmarshal reads both forms too.
	var direct struct{ Notify []NotifyTarget }
	if err := yaml.Unmarshal([]byte("notify: [\"https://a.example\", {url_file: /x}]"), &direct); err != nil {
		t.Fatal(err)
	}
	if len(direct.Notify) != 2 || direct.Notify[0].URL != "https://a.example" || direct.Notify[1].URLFile != "/x" {
		t.Errorf("decoded %+v", direct.Notify)
	}
}

func TestWebhookSecrets(t *testing.T) {
	long := strings.Repeat("k", 32)
	dir := writeFiles(t, map[string]string{"web.yaml": "#cloud-config\n", "new.key": long + "\n", "old.key": strings.Repeat("o", 40), "short.key": "abc\n"})
	cfg, err := Parse("p.yaml", []byte("controller: {webhook_secret_file: new.key, previous_webhook_secret_file: old.key}\n"+group("")), dir)
	if err != nil {
		t.Fatal(err)
	}
	if c := cfg.Controller; c.WebhookSecretFile != filepath.Join(dir, "new.key") || c.PreviousWebhookSecretFile != filepath.Join(dir, "old.key") {
		t.Errorf("files %q, %q", c.WebhookSecretFile, c.PreviousWebhookSecretFile)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"short", "controller: {webhook_secret_file: short.key}\n", "p.yaml: controller.webhook_secret_file (line 1): webhook secret " + filepath.Join(dir, "short.key") + ": 3 bytes, expected at least 32"},
		{"short previous", "controller: {webhook_secret_file: new.key, previous_webhook_secret_file: short.key}\n", "p.yaml: controller.previous_webhook_secret_file (line 1): webhook secret " + filepath.Join(dir, "short.key") + ": 3 bytes"},
		{"previous alone", "controller: {previous_webhook_secret_file: old.key}\n", "p.yaml: controller.previous_webhook_secret_file (line 1): expected webhook_secret_file beside it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(tc.yaml+group("")), dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "abc") {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
}
