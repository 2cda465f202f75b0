package examples_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	// The examples' zones without depending on the host's zoneinfo.
	_ "time/tzdata"

	"go.yaml.in/yaml/v3"

	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/examples"
)

// phoenixConfigs lists the Phoenix configurations here: every .yaml file
// but clouds.yaml samples and cloud-init user data.
func phoenixConfigs(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		if strings.HasPrefix(f, "clouds") || strings.HasSuffix(f, ".cloud-init.yaml") {
			continue
		}
		out = append(out, f)
	}
	return out
}

// TestEveryExampleLoads keeps the examples honest: each Phoenix
// configuration here must load exactly as the binary would load it.
func TestEveryExampleLoads(t *testing.T) {
	files := phoenixConfigs(t)
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			cfg, err := config.Load(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Groups) == 0 {
				t.Fatal("no groups")
			}
		})
	}
	if len(files) < 2 {
		t.Fatalf("found %d example configurations (%v), want at least demo.yaml and production.yaml", len(files), files)
	}
}

func TestEmbeddedDemoIsTheFile(t *testing.T) {
	onDisk, err := os.ReadFile("demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(onDisk) != string(examples.Demo) {
		t.Fatal("examples.Demo differs from demo.yaml")
	}
}

// The production example shows what its comments say it shows.
func TestProductionExample(t *testing.T) {
	cfg, err := config.Load("production.yaml")
	if err != nil {
		t.Fatal(err)
	}
	groups := map[string]config.Group{}
	for _, g := range cfg.Groups {
		groups[g.Name] = g
	}
	web, worker := groups["web"], groups["worker"]
	userData, err := os.ReadFile("web.cloud-init.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(web.UserData, userData) {
		t.Error("web's user data is not web.cloud-init.yaml")
	}
	if web.Health.HTTP == nil || worker.Health.TCP == nil {
		t.Error("web should be checked over HTTP and worker over TCP")
	}
	if got := web.Rollout.MaxSurge.Resolve(web.Count, true); got != 3 {
		t.Errorf("web surges %d servers, the comment says 3", got)
	}
	if got := worker.Rollout.MaxUnavailable.Resolve(worker.Count, false); got != 1 {
		t.Errorf("worker takes %d servers down at a time, the comment says 1", got)
	}
	// Thursday 2026-03-05 10:00 in Berlin is inside web's window, and
	// Friday is not.
	thursday := time.Date(2026, 3, 5, 9, 0, 0, 0, time.UTC)
	if open, _ := plan.Open(web.Rollout.PlanWindows(), thursday); !open {
		t.Error("web's window is closed on Thursday morning, the comment says Mon-Thu 09:00-16:00")
	}
	if open, next := plan.Open(web.Rollout.PlanWindows(), thursday.AddDate(0, 0, 1)); open || !next.Equal(thursday.AddDate(0, 0, 4).Add(-time.Hour)) {
		t.Errorf("web's window on Friday: open %v, next %s; want closed until Monday 09:00 in Berlin", open, next)
	}
	if p := web.Rollout.Blockers.Prometheus; p == nil || p.Query == "" || p.Timeout.D() != 10*time.Second {
		t.Errorf("web's Prometheus blocker = %+v", p)
	}
	if web.Image.Name != worker.Image.Name || len(web.Image.Properties) == 0 {
		t.Errorf("the shared image anchor was not applied: web %+v, worker %+v", web.Image, worker.Image)
	}

	// Its cloud is one of the sample's.
	var sample struct {
		Clouds map[string]yaml.Node `yaml:"clouds"`
	}
	data, err := os.ReadFile("clouds.yaml.sample")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &sample); err != nil {
		t.Fatalf("clouds.yaml.sample: %v", err)
	}
	if _, ok := sample.Clouds[cfg.Cloud]; !ok {
		t.Errorf("production.yaml uses cloud %q, which clouds.yaml.sample does not define", cfg.Cloud)
	}
}

// Every clouds.yaml sample entry has what an OpenStack client needs to
// authenticate, and no real secret.
func TestCloudsSample(t *testing.T) {
	data, err := os.ReadFile("clouds.yaml.sample")
	if err != nil {
		t.Fatal(err)
	}
	var sample struct {
		Clouds map[string]struct {
			AuthType string            `yaml:"auth_type"`
			Auth     map[string]string `yaml:"auth"`
			Region   string            `yaml:"region_name"`
		} `yaml:"clouds"`
	}
	if err := yaml.Unmarshal(data, &sample); err != nil {
		t.Fatal(err)
	}
	if len(sample.Clouds) < 2 {
		t.Fatalf("%d clouds, want an application credential one and a password one", len(sample.Clouds))
	}
	for name, c := range sample.Clouds {
		if c.Auth["auth_url"] == "" || c.Region == "" {
			t.Errorf("cloud %s: no auth_url or region_name", name)
		}
		for _, secret := range []string{"password", "application_credential_secret"} {
			if v, ok := c.Auth[secret]; ok && !strings.HasPrefix(v, "REPLACE-") {
				t.Errorf("cloud %s: %s looks like a real secret; use a REPLACE-... placeholder", name, secret)
			}
		}
	}
}

// User data files are cloud-config: cloud-init ignores one without the
// header line, and a YAML mistake would surface only on the server.
func TestCloudInitFiles(t *testing.T) {
	files, err := filepath.Glob("*.cloud-init.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no *.cloud-init.yaml files")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(data, []byte("#cloud-config\n")) {
			t.Errorf("%s does not start with #cloud-config", f)
		}
		var v map[string]any
		if err := yaml.Unmarshal(data, &v); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// The regions example shows what its comments say it shows: two regions
// weighted 2:1 of one cloud, a pool of one name in each, a failover time
// of its own, and a standby that loads once uncommented.
func TestRegionsExample(t *testing.T) {
	cfg, err := config.Load("regions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Groups) != 1 {
		t.Fatalf("%d groups, want web alone", len(cfg.Groups))
	}
	web := cfg.Groups[0]
	p := web.Placement
	if p == nil || len(p.Locations) != 2 {
		t.Fatalf("placement = %+v, want two locations", p)
	}
	one, two := p.Locations[0], p.Locations[1]
	if one.Name != "RegionOne" || two.Name != "RegionTwo" || one.Cloud != "" || two.Cloud != "" {
		t.Errorf("locations %+v and %+v, want RegionOne and RegionTwo of the top-level cloud", one, two)
	}
	if one.Weight != 2 || two.Weight != 1 || web.Count != 6 {
		t.Errorf("weights %d:%d of %d servers, the comment says 2:1 of 6", one.Weight, two.Weight, web.Count)
	}
	if p.FailoverAfter.D() != 3*time.Minute {
		t.Errorf("failover_after = %s, the file says 3m", p.FailoverAfter)
	}
	if len(one.AvailabilityZones) != 2 || len(two.AvailabilityZones) != 0 {
		t.Errorf("zones %v and %v, want RegionOne's own two and none (Nova's choice) in RegionTwo", one.AvailabilityZones, two.AvailabilityZones)
	}
	if o := web.Traffic.Octavia; o == nil || o.Pool != "web-pool" || web.Traffic.FloatingIP != nil {
		t.Errorf("traffic = %+v, want the pool web-pool in each region", web.Traffic)
	}

	data, err := os.ReadFile("regions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	standby := "        # - {name: standby, cloud: othercloud, region: RegionThree, weight: 0}\n"
	if !bytes.Contains(data, []byte(standby)) {
		t.Fatal("the commented standby location is gone")
	}
	withStandby := bytes.Replace(data, []byte(standby), []byte(strings.Replace(standby, "# ", "", 1)), 1)
	cfg, err = config.Parse("regions.yaml", withStandby, ".")
	if err != nil {
		t.Fatalf("the standby, uncommented: %v", err)
	}
	if l := cfg.Groups[0].Placement.Locations; len(l) != 3 || l[2].Name != "standby" || l[2].Weight != 0 {
		t.Errorf("the standby, uncommented: %+v", l)
	}
}

// The stages example shows what its comments say: staging promotes with
// staged-ok after an hour, production requires gold and staged-ok.
func TestStagesExample(t *testing.T) {
	cfg, err := config.Load("stages.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Groups) != 2 {
		t.Fatalf("%d groups, want staging and production", len(cfg.Groups))
	}
	staging, prod := cfg.Groups[0], cfg.Groups[1]
	if p := staging.Promote; p == nil || p.Tag != "staged-ok" || p.After.D() != time.Hour {
		t.Errorf("staging promotes %+v, the comment says staged-ok after 1h", p)
	}
	if got := staging.Image.Tags; len(got) != 1 || got[0] != "gold" {
		t.Errorf("staging selects by %v, want gold alone", got)
	}
	if got := prod.Image.Tags; len(got) != 2 || got[0] != "gold" || got[1] != "staged-ok" || !prod.Image.Newest || prod.Promote != nil {
		t.Errorf("production selects by %v (newest %v, promote %+v), want gold and staged-ok, the newest", got, prod.Image.Newest, prod.Promote)
	}
}
