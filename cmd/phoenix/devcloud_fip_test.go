package main

import (
	"context"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gcopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"

	"github.com/phoenix-ops/phoenix/provisioner"
)

// TestDevcloudFloatingIP runs a real phoenix daemon on a group of one
// behind a floating IP from the development cloud's pool phoenix-ext
// (Neutron's L3 API, no L3 agent): the daemon allocates the address and
// points it at the first server; when a new gold image is published, the
// same address moves to the replacement's port and the old server goes.
// Neutron and Nova are checked themselves, and the independent monitor
// watches the bound, the availability and the address throughout.
func TestDevcloudFloatingIP(t *testing.T) {
	t.Parallel() // with the other scenarios: each has a group of its own
	run := startDevcloudRun(t, "e2e-fip")
	ctx, cloud, glance, group, imageName, tag := run.ctx, run.cloud, run.glance, run.group, run.image, run.tag
	provider := devcloudProvider(t, ctx, run.cloudsFile)
	nc, err := gcopenstack.NewNetworkV2(provider, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	compute, err := gcopenstack.NewComputeV2(provider, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	pool := fipPool(t, ctx, nc)
	description := "phoenix:group:" + group
	t.Log("GAP: no L3 agent runs on the development cloud: the floating IP's association is checked in Neutron, no packet reaches it")

	// What goes when the test ends goes after the daemon has stopped (the
	// cleanups run last first): an image deleted under a running daemon
	// would start a rollout back, and a floating IP released under it
	// would be allocated again.
	var published []string
	t.Cleanup(func() {
		for _, id := range published {
			_ = images.Delete(context.Background(), glance, id).ExtractErr()
		}
		for _, f := range groupFloatingIPs(t, context.Background(), nc, description) {
			if err := floatingips.Delete(context.Background(), nc, f.ID).ExtractErr(); err != nil {
				t.Errorf("release floating IP %s: %v", f.FloatingIP, err)
			}
		}
	})
	cfg := run.config(t, `
    count: 1
    rollout: {max_surge: 1, max_unavailable: 0, min_ready: 1s}
    health:
      http: {port: 18080, path: /healthz}
      interval: 1s
      timeout: 1s
      healthy_threshold: 2
      grace: 60s
    traffic:
      floating_ip: {pool: phoenix-ext, drain: 2s}
`)
	forDaemon(t, cfg, "devcloud")
	imageA, _ := publishImageTimed(t, ctx, glance, imageName)
	published = append(published, imageA)

	mon := startDevcloudMonitor(t, ctx, run.cloudsFile, "devcloud",
		watchedGroup{Name: group, Count: 1, Surge: 1, HealthPath: "/healthz"})
	began := time.Now()
	d := startLoggedDaemon(t, run.bin, cfg, run.cloudsFile, "--poll", "1s", "--log-level", "info")

	// 1. Built, and the address allocated from the pool onto the server.
	var fip floatingips.FloatingIP
	var first provisioner.Server
	waitFor(t, 5*time.Minute, "the group built behind a floating IP from phoenix-ext", func() bool {
		if !groupAtRest(d.status(t), imageA) {
			return false
		}
		defer time.Sleep(500 * time.Millisecond) // polling the cloud
		list := groupServers(t, ctx, cloud, tag)
		fips := groupFloatingIPs(t, ctx, nc, description)
		if len(list) != 1 || len(fips) != 1 || !onNova(t, ctx, cloud, tag, 1, imageA) {
			return false
		}
		first, fip = list[0], fips[0]
		return fip.PortID != ""
	})
	t.Logf("built in %v: %s behind %s", time.Since(began).Round(time.Second), first.Name, fip.FloatingIP)
	mon.SetFloatingIP(group, fip.ID)
	if fip.FloatingNetworkID != pool.ID {
		t.Errorf("floating IP %s is on network %s, want the pool phoenix-ext %s", fip.FloatingIP, fip.FloatingNetworkID, pool.ID)
	}
	if !strings.HasPrefix(fip.FloatingIP, "198.51.100.") {
		t.Errorf("floating IP %s is not of phoenix-ext's subnet 198.51.100.0/24", fip.FloatingIP)
	}
	assertOnPort(t, ctx, nc, fip, first)

	// 2. A new gold image: the same address moves to the replacement.
	waitNextSecond() // Glance's created_at has second precision
	imageB, publishedAt := publishImageTimed(t, ctx, glance, imageName)
	published = append(published, imageB)
	var second provisioner.Server
	waitFor(t, 5*time.Minute, "the group converged on the new image, the address moved", func() bool {
		if !groupAtRest(d.status(t), imageB) {
			return false
		}
		defer time.Sleep(500 * time.Millisecond) // polling the cloud
		if !onNova(t, ctx, cloud, tag, 1, imageB) {
			return false
		}
		second = groupServers(t, ctx, cloud, tag)[0]
		return true
	})
	t.Logf("replaced %v after the publication: %s → %s", time.Since(publishedAt).Round(time.Second), first.Name, second.Name)
	if second.ID == first.ID {
		t.Fatalf("server %s was not replaced", first.Name)
	}
	fips := groupFloatingIPs(t, ctx, nc, description)
	if len(fips) != 1 {
		t.Fatalf("%d floating IPs carry %q after the rollout, want the one allocated first (%s)", len(fips), description, fip.ID)
	}
	moved := fips[0]
	if moved.ID != fip.ID || moved.FloatingIP != fip.FloatingIP {
		t.Errorf("the group is behind floating IP %s (%s), want the same %s (%s)", moved.FloatingIP, moved.ID, fip.FloatingIP, fip.ID)
	}
	assertOnPort(t, ctx, nc, moved, second)
	// Asked by its ID, not through the tag: the old server is gone.
	switch old, err := servers.Get(ctx, compute, first.ID).Extract(); {
	case gophercloud.ResponseCodeIs(err, http.StatusNotFound):
	case err != nil:
		t.Errorf("look for the old server %s: %v", first.Name, err)
	case old.Status != "DELETED" && old.Status != "SOFT_DELETED":
		t.Errorf("the old server %s is still there: %s", first.Name, old.Status)
	}
	for _, l := range d.logLines("floating IP") {
		t.Logf("daemon: %s", l)
	}
	mon.Check(t)
}

// fipPool is the development cloud's floating-IP pool, the external
// network phoenix-ext that examples/devcloud/up.sh makes.
func fipPool(t *testing.T, ctx context.Context, nc *gophercloud.ServiceClient) networks.Network {
	t.Helper()
	pages, err := networks.List(nc, networks.ListOpts{Name: "phoenix-ext"}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	list, err := networks.ExtractNetworks(pages)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Skipf("GAP: the development cloud has no floating-IP pool phoenix-ext (found %d): run examples/devcloud/up.sh of this version", len(list))
	}
	return list[0]
}

// groupFloatingIPs are the floating IPs that carry the description.
func groupFloatingIPs(t *testing.T, ctx context.Context, nc *gophercloud.ServiceClient, description string) []floatingips.FloatingIP {
	t.Helper()
	pages, err := floatingips.List(nc, floatingips.ListOpts{Description: description}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	list, err := floatingips.ExtractFloatingIPs(pages)
	if err != nil {
		t.Fatal(err)
	}
	// Neutron ignores a filter it does not know: check it.
	return slices.DeleteFunc(list, func(f floatingips.FloatingIP) bool { return f.Description != description })
}

// assertOnPort checks, in Neutron, that the floating IP points at the
// server's own port and fixed address on phoenix-net.
func assertOnPort(t *testing.T, ctx context.Context, nc *gophercloud.ServiceClient, fip floatingips.FloatingIP, s provisioner.Server) {
	t.Helper()
	pages, err := ports.List(nc, ports.ListOpts{DeviceID: s.ID}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	list, err := ports.ExtractPorts(pages)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].DeviceID != s.ID {
		t.Fatalf("server %s has %d ports, want one", s.Name, len(list))
	}
	if fip.PortID != list[0].ID {
		t.Errorf("floating IP %s points at port %q, want server %s's port %s", fip.FloatingIP, fip.PortID, s.Name, list[0].ID)
	}
	if addrs := s.Addresses["phoenix-net"]; len(addrs) == 0 || fip.FixedIP != addrs[0] {
		t.Errorf("floating IP %s points at %q, want server %s's address %v", fip.FloatingIP, fip.FixedIP, s.Name, addrs)
	}
	if fip.RouterID == "" {
		t.Errorf("floating IP %s has no router: Neutron found no way from phoenix-ext to phoenix-subnet", fip.FloatingIP)
	}
}

// forDaemon makes a run's configuration fit a daemon on the named
// cloud: the image watch looks every 5 s (the default minute would make
// the test wait), the status is served on a port of its own.
func forDaemon(t *testing.T, cfg, cloudName string) {
	t.Helper()
	yaml, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	head := "cloud: " + cloudName + "\ncontroller: {interval: 5s, listen: \"127.0.0.1:0\"}\n"
	yaml = []byte(strings.Replace(string(yaml), "cloud: devcloud\n", head, 1))
	if err := os.WriteFile(cfg, yaml, 0o600); err != nil {
		t.Fatal(err)
	}
}
