package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"
	gcopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/loadbalancers"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/pools"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/provisioner"
	"github.com/phoenix-ops/phoenix/provisioner/openstack"
)

// TestEndToEndOnDevcloud drives the real phoenix binary against the real
// OpenStack of examples/devcloud: build a group of three on image A,
// publish image B, plan, mark a server unhealthy through the responder,
// rebuild, and check the outcome in the cloud itself.
func TestEndToEndOnDevcloud(t *testing.T) {
	t.Parallel() // with the other scenarios: each has a group of its own
	run := startDevcloudRun(t, "e2e")
	ctx, phoenix, cloud, glance, group, imageName, tag := run.ctx, run.phoenix, run.cloud, run.glance, run.group, run.image, run.tag
	cfg := run.config(t, `
    count: 3
    rollout: {max_surge: 1, min_ready: 2s}
    health:
      http: {port: 18080, path: /healthz}
      interval: 1s
      timeout: 1s
      healthy_threshold: 2
      grace: 60s
`)

	imageA := publishImage(t, ctx, glance, imageName)
	phoenix("rebuild", "--config", cfg, "--all", "--poll", "1s", "--timeout", "5m")
	first := groupServers(t, ctx, cloud, tag)
	assertGroup(t, first, 3, imageA, group)

	waitNextSecond() // Glance's created_at has second precision
	imageB := publishImage(t, ctx, glance, imageName)

	plan := onlyGroupPlan(t, phoenix("plan", "--config", cfg, "--output", "json"))
	if plan.Replace != 3 || plan.Image.ID != imageB {
		t.Fatalf("plan: %d to replace towards %s, want 3 towards image B %s", plan.Replace, plan.Image.ID, imageB)
	}
	for _, s := range plan.Servers {
		if s.Action != "replace" || !strings.HasPrefix(s.Reason, "image ") || !strings.Contains(s.Reason, imageB) {
			t.Errorf("plan for %s: %s (%s), want replace for image drift", s.Name, s.Action, s.Reason)
		}
	}

	sick := first[0]
	addr := sick.Addresses["phoenix-net"][0]
	resp, err := http.DefaultClient.Do(mustRequest(http.MethodPut, "http://127.0.0.1:18080/_responder/unhealthy/"+addr))
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("mark %s unhealthy at the responder: %v %v", addr, resp, err)
	}
	resp.Body.Close()
	// Only this address: the responder is shared with the scenarios
	// running beside this one.
	t.Cleanup(func() {
		_, _ = http.DefaultClient.Do(mustRequest(http.MethodDelete, "http://127.0.0.1:18080/_responder/unhealthy/"+addr))
	})
	plan = onlyGroupPlan(t, phoenix("plan", "--config", cfg, "--output", "json"))
	for _, s := range plan.Servers {
		want := "healthy"
		if s.ID == sick.ID {
			want = "unhealthy"
		}
		if s.Health != want {
			t.Errorf("plan shows %s (%s) as %s, want %s", s.Name, addr, s.Health, want)
		}
	}

	out := phoenix("rebuild", "--config", cfg, "--all", "--poll", "1s", "--timeout", "8m")
	after := groupServers(t, ctx, cloud, tag)
	assertGroup(t, after, 3, imageB, group)
	for _, s := range after {
		if slices.ContainsFunc(first, func(f provisioner.Server) bool { return f.ID == s.ID }) {
			t.Errorf("server %s of image A survived the rebuild", s.Name)
		}
	}
	for _, s := range first {
		if !strings.Contains(out, s.Name) {
			t.Errorf("the rebuild output does not name the replaced server %s", s.Name)
		}
	}
}

func mustRequest(method, url string) *http.Request {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		panic(err)
	}
	return req
}

func glanceClient(t *testing.T, ctx context.Context, cloudsFile string) *gophercloud.ServiceClient {
	t.Helper()
	ao, _, _, err := clouds.Parse(clouds.WithCloudName("devcloud"), clouds.WithLocations(cloudsFile))
	if err != nil {
		t.Fatal(err)
	}
	provider, err := config.NewProviderClient(ctx, ao)
	if err != nil {
		t.Fatal(err)
	}
	c, err := gcopenstack.NewImageV2(provider, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// publishImage uploads a new image of the name, as a security team would
// publish a patched gold image, and returns its ID once active; the image
// is deleted with the test.
func publishImage(t *testing.T, ctx context.Context, glance *gophercloud.ServiceClient, name string) string {
	t.Helper()
	id, _ := publishImageTimed(t, ctx, glance, name)
	t.Cleanup(func() { _ = images.Delete(context.Background(), glance, id).ExtractErr() })
	return id
}

// publishImageTimed publishes as publishImage does, leaving the image's
// deletion to the caller, and also returns when the publication was
// complete: when Glance answered the upload (it activates a small image
// before it answers), or, should the answer come before that, when the
// look that first saw it active began.
func publishImageTimed(t *testing.T, ctx context.Context, glance *gophercloud.ServiceClient, name string) (string, time.Time) {
	t.Helper()
	img, err := images.Create(ctx, glance, images.CreateOpts{Name: name, ContainerFormat: "bare", DiskFormat: "qcow2"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if err := imagedata.Upload(ctx, glance, img.ID, strings.NewReader("phoenix e2e "+img.ID)).ExtractErr(); err != nil {
		_ = images.Delete(context.Background(), glance, img.ID).ExtractErr()
		t.Fatal(err)
	}
	done := time.Now()
	for {
		got, err := images.Get(ctx, glance, img.ID).Extract()
		if err != nil {
			_ = images.Delete(context.Background(), glance, img.ID).ExtractErr()
			t.Fatal(err)
		}
		if got.Status == images.ImageStatusActive {
			return img.ID, done
		}
		time.Sleep(200 * time.Millisecond) // polling Glance for the upload to settle
		done = time.Now()
	}
}

func waitNextSecond() {
	now := time.Now()
	time.Sleep(now.Truncate(time.Second).Add(time.Second + 10*time.Millisecond).Sub(now))
}

func groupServers(t *testing.T, ctx context.Context, cloud *openstack.Cloud, tag string) []provisioner.Server {
	t.Helper()
	list, err := cloud.ListServers(ctx, tag)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func assertGroup(t *testing.T, servers []provisioner.Server, count int, image, group string) {
	t.Helper()
	if len(servers) != count {
		t.Fatalf("the group holds %d servers, want %d", len(servers), count)
	}
	for _, s := range servers {
		switch {
		case s.Status != provisioner.StatusActive:
			t.Errorf("%s is %s", s.Name, s.Status)
		case s.ImageID != image:
			t.Errorf("%s runs image %s, want %s", s.Name, s.ImageID, image)
		case s.Metadata[controller.MetaGroup] != group || s.Metadata[controller.MetaImage] != image ||
			s.Metadata[controller.MetaRevision] == "" || s.Metadata[controller.MetaRequestID] == "":
			t.Errorf("%s lacks Phoenix's metadata: %v", s.Name, s.Metadata)
		case !slices.Contains(s.Tags, controller.GroupTag(group)):
			t.Errorf("%s lacks the group tag: %v", s.Name, s.Tags)
		}
	}
}

// TestEndToEndPoolOnDevcloud rebuilds a group behind a real Octavia pool
// (noop driver: no health monitor reports, members show NO_MONITOR) that
// another application shares, and checks the pool in Octavia itself: the
// new servers' addresses and the other application's member, nothing else.
func TestEndToEndPoolOnDevcloud(t *testing.T) {
	t.Parallel() // with the other scenarios: each has a group of its own
	cloudsFile := os.Getenv("PHOENIX_DEVCLOUD_CLOUDS")
	if cloudsFile == "" {
		t.Skip("GAP: the real cloud is not configured: set PHOENIX_DEVCLOUD_CLOUDS to the clouds.yaml of examples/devcloud/up.sh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	bin := buildPhoenix(t)
	provider := devcloudProvider(t, ctx, cloudsFile)
	lbc, err := gcopenstack.NewLoadBalancerV2(provider, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	network, err := gcopenstack.NewNetworkV2(provider, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	glance, err := gcopenstack.NewImageV2(provider, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	group := "e2e-lb-" + uuid.NewString()[:8]
	pool := createPool(t, ctx, lbc, network, group)
	other, err := pools.CreateMember(ctx, lbc, pool.ID, pools.CreateMemberOpts{Name: "other-app", Address: "127.1.250.9", ProtocolPort: 18080, Tags: []string{"other-app"}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	waitLB(t, ctx, lbc, pool.Loadbalancers[0].ID)

	imageName := group + "-gold"
	cfg := filepath.Join(t.TempDir(), "phoenix.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`cloud: devcloud
groups:
  - name: %s
    count: 2
    image: {name: %s, newest: true}
    flavor: m1.small
    networks: [phoenix-net]
    rollout: {max_surge: 1, min_ready: 1s}
    health:
      http: {port: 18080, path: /healthz}
      interval: 1s
      timeout: 1s
      healthy_threshold: 2
      grace: 60s
    traffic:
      octavia: {pool: %s, protocol_port: 18080, subnet: phoenix-subnet, drain: 2s}
`, group, imageName, pool.ID)), 0o600); err != nil {
		t.Fatal(err)
	}
	phoenix := phoenixRunner(t, ctx, bin, cloudsFile)
	cloud, err := openstack.New(ctx, openstack.Options{Cloud: "devcloud", CloudsFile: cloudsFile})
	if err != nil {
		t.Fatal(err)
	}
	tag := controller.GroupTag(group)
	t.Cleanup(func() {
		list, _ := cloud.ListServers(context.Background(), tag)
		for _, s := range list {
			_ = cloud.DeleteServer(context.Background(), s.ID)
		}
	})

	imageA := publishImage(t, ctx, glance, imageName)
	phoenix("rebuild", "--config", cfg, "--all", "--poll", "1s", "--timeout", "5m")
	first := groupServers(t, ctx, cloud, tag)
	assertGroup(t, first, 2, imageA, group)
	assertPool(t, ctx, lbc, pool.ID, first, *other)

	waitNextSecond()
	imageB := publishImage(t, ctx, glance, imageName)
	out := phoenix("rebuild", "--config", cfg, "--all", "--poll", "1s", "--timeout", "8m")
	after := groupServers(t, ctx, cloud, tag)
	assertGroup(t, after, 2, imageB, group)
	assertPool(t, ctx, lbc, pool.ID, after, *other)
	for _, want := range []string{"traffic-add", "drain", "traffic-remove"} {
		if !strings.Contains(out, want) {
			t.Errorf("the rebuild output shows no %s step:\n%s", want, out)
		}
	}
}

func devcloudProvider(t *testing.T, ctx context.Context, cloudsFile string) *gophercloud.ProviderClient {
	t.Helper()
	return namedProvider(t, ctx, cloudsFile, "devcloud")
}

// namedProvider is an authenticated client of the named clouds.yaml entry.
func namedProvider(t *testing.T, ctx context.Context, cloudsFile, cloudName string) *gophercloud.ProviderClient {
	t.Helper()
	ao, _, _, err := clouds.Parse(clouds.WithCloudName(cloudName), clouds.WithLocations(cloudsFile))
	if err != nil {
		t.Fatal(err)
	}
	ao.AllowReauth = true
	provider, err := config.NewProviderClient(ctx, ao)
	if err != nil {
		t.Fatal(err)
	}
	return provider
}

// createPool makes a load balancer on phoenix-subnet with one HTTP pool
// and no health monitor, deleted with the test.
func createPool(t *testing.T, ctx context.Context, lbc, network *gophercloud.ServiceClient, name string) *pools.Pool {
	t.Helper()
	pages, err := subnets.List(network, subnets.ListOpts{Name: "phoenix-subnet"}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sn, _ := subnets.ExtractSubnets(pages)
	if len(sn) != 1 {
		t.Fatalf("want the subnet phoenix-subnet, found %d", len(sn))
	}
	lb, err := loadbalancers.Create(ctx, lbc, loadbalancers.CreateOpts{Name: name, VipSubnetID: sn[0].ID}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = loadbalancers.Delete(context.Background(), lbc, lb.ID, loadbalancers.DeleteOpts{Cascade: true}).ExtractErr()
	})
	waitLB(t, ctx, lbc, lb.ID)
	p, err := pools.Create(ctx, lbc, pools.CreateOpts{Name: name, LoadbalancerID: lb.ID, Protocol: pools.ProtocolHTTP, LBMethod: pools.LBMethodRoundRobin}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	waitLB(t, ctx, lbc, lb.ID)
	return p
}

func waitLB(t *testing.T, ctx context.Context, lbc *gophercloud.ServiceClient, id string) {
	t.Helper()
	for {
		lb, err := loadbalancers.Get(ctx, lbc, id).Extract()
		if err != nil {
			t.Fatal(err)
		}
		switch lb.ProvisioningStatus {
		case "ACTIVE":
			return
		case "ERROR":
			t.Fatalf("load balancer %s went to ERROR", id)
		}
		time.Sleep(500 * time.Millisecond) // polling Octavia for its status
	}
}

// assertPool checks the pool holds exactly the servers' addresses (as
// Phoenix's members, weight 1, ACTIVE) and the other member unchanged.
func assertPool(t *testing.T, ctx context.Context, lbc *gophercloud.ServiceClient, poolID string, servers []provisioner.Server, other pools.Member) {
	t.Helper()
	pages, err := pools.ListMembers(lbc, poolID, nil).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	members, err := pools.ExtractMembers(pages)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, s := range servers {
		want[s.Addresses["phoenix-net"][0]] = true
	}
	got := map[string]bool{}
	for _, m := range members {
		if m.ID == other.ID {
			if m.Address != other.Address || m.Weight != other.Weight || m.ProtocolPort != other.ProtocolPort || !slices.Equal(m.Tags, other.Tags) {
				t.Errorf("the other application's member changed: %+v, was %+v", m, other)
			}
			continue
		}
		if !want[m.Address] {
			t.Errorf("member %s (%s) is no server of the group", m.ID, m.Address)
		}
		if m.Weight != 1 || m.ProvisioningStatus != "ACTIVE" || m.ProtocolPort != 18080 {
			t.Errorf("member %s: weight %d, %s, port %d", m.Address, m.Weight, m.ProvisioningStatus, m.ProtocolPort)
		}
		got[m.Address] = true
	}
	if len(got) != len(want) || len(members) != len(want)+1 {
		t.Errorf("pool members %v (+ other), want exactly %v", got, want)
	}
}

// phoenixRunner runs the built binary against the dev cloud and returns
// its output, failing the test when it fails.
func phoenixRunner(t *testing.T, ctx context.Context, bin, cloudsFile string) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "OS_CLIENT_CONFIG_FILE="+cloudsFile, "OS_CLOUD=")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("phoenix %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		return out.String()
	}
}

// devcloudRun is one end-to-end run on the development cloud: the phoenix
// binary, a connection of the test's own to the cloud, and a group named
// for the run, whose servers are deleted at the end.
type devcloudRun struct {
	ctx        context.Context
	cloudsFile string
	bin        string // the phoenix binary
	phoenix    func(args ...string) string
	cloud      *openstack.Cloud
	glance     *gophercloud.ServiceClient
	// group is the group's name, image the name of its gold images, tag
	// its servers' tag.
	group, image, tag string
}

// startDevcloudRun skips the test without a development cloud; otherwise
// it builds phoenix and names the run's group prefix-<random>.
func startDevcloudRun(t *testing.T, prefix string) *devcloudRun {
	t.Helper()
	cloudsFile := os.Getenv("PHOENIX_DEVCLOUD_CLOUDS")
	if cloudsFile == "" {
		t.Skip("GAP: the real cloud is not configured: set PHOENIX_DEVCLOUD_CLOUDS to the clouds.yaml of examples/devcloud/up.sh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	t.Cleanup(cancel)
	bin := buildPhoenix(t)
	cloud, err := openstack.New(ctx, openstack.Options{Cloud: "devcloud", CloudsFile: cloudsFile})
	if err != nil {
		t.Fatal(err)
	}
	group := prefix + "-" + uuid.NewString()[:8]
	r := &devcloudRun{ctx: ctx, cloudsFile: cloudsFile, bin: bin, phoenix: phoenixRunner(t, ctx, bin, cloudsFile), cloud: cloud,
		glance: glanceClient(t, ctx, cloudsFile), group: group, image: group + "-gold", tag: controller.GroupTag(group)}
	t.Cleanup(func() {
		list, _ := cloud.ListServers(context.Background(), r.tag)
		for _, s := range list {
			_ = cloud.DeleteServer(context.Background(), s.ID)
		}
	})
	return r
}

// config writes the configuration of the run's group and returns its
// path: spec holds the group's fields besides its name, image, flavor and
// network, indented as in the file.
func (r *devcloudRun) config(t *testing.T, spec string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "phoenix.yaml")
	yaml := fmt.Sprintf("cloud: devcloud\ngroups:\n  - name: %s\n    image: {name: %s, newest: true}\n    flavor: m1.small\n    networks: [phoenix-net]%s",
		r.group, r.image, strings.TrimRight(spec, " "))
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
