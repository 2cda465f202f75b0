package sim_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// fastOpts boot servers and start their applications at once.
var fastOpts = sim.Options{BootTime: sim.Fixed(time.Millisecond), HealthDelay: sim.Fixed(time.Millisecond), DeleteTime: sim.Fixed(time.Millisecond)}

// healthy boots n servers and waits until their applications answer.
func (e *env) healthy(t *testing.T, n int) []sim.Server {
	t.Helper()
	var ids []string
	for range n {
		ids = append(ids, e.create(t, e.opts("app")).ID)
	}
	var out []sim.Server
	waitFor(t, "servers healthy", func() bool {
		out = out[:0]
		for _, id := range ids {
			v, ok := e.sim.Server(id)
			if !ok || !v.Healthy {
				return false
			}
			out = append(out, v)
		}
		return true
	})
	return out
}

// get sends a GET without keep-alive and returns the status and the
// server that answered; status 0 when the connection failed.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Sim-Server")
}

func TestSubnetsAndPorts(t *testing.T) {
	e := start(t, fastOpts)
	ctx := context.Background()
	for _, c := range []struct {
		subnet, network string
		external        bool
	}{{"private-subnet", "private", false}, {"public-subnet", "public", true}} {
		pages, err := subnets.List(e.network, subnets.ListOpts{Name: c.subnet}).AllPages(ctx)
		if err != nil {
			t.Fatal(err)
		}
		list, err := subnets.ExtractSubnets(pages)
		if err != nil || len(list) != 1 || list[0].IPVersion != 4 || list[0].CIDR != "127.0.0.0/8" || list[0].CreatedAt.IsZero() {
			t.Fatalf("subnet %s: %+v %v", c.subnet, list, err)
		}
		sn := list[0]
		got, err := subnets.Get(ctx, e.network, sn.ID).Extract()
		if err != nil || got.Name != c.subnet {
			t.Fatalf("get subnet: %+v %v", got, err)
		}
		n, err := networks.Get(ctx, e.network, sn.NetworkID).Extract()
		if err != nil || n.Name != c.network || len(n.Subnets) != 1 || n.Subnets[0] != sn.ID {
			t.Fatalf("network of %s: %+v %v", c.subnet, n, err)
		}
		// router:external is an extension attribute: read it raw.
		var ext struct {
			External bool `json:"router:external"`
		}
		if err := networks.Get(ctx, e.network, n.ID).ExtractInto(&ext); err != nil || ext.External != c.external {
			t.Fatalf("%s router:external %v %v", c.network, ext.External, err)
		}
		pages, _ = subnets.List(e.network, subnets.ListOpts{NetworkID: n.ID}).AllPages(ctx)
		if l, _ := subnets.ExtractSubnets(pages); len(l) != 1 {
			t.Errorf("subnets by network %s: %d", n.ID, len(l))
		}
	}
	// Neutron ignores filters on attributes it lacks.
	if code, _, body := e.raw(t, "GET", "/networking/v2.0/subnets?bogus=1", "", nil); code != 200 || strings.Count(string(body), `"cidr"`) != 2 {
		t.Errorf("an unknown filter: %d %s", code, body)
	}
	if _, err := subnets.Get(ctx, e.network, "nope").Extract(); !gophercloud.ResponseCodeIs(err, 404) {
		t.Errorf("missing subnet: %v", err)
	}

	srv := e.create(t, e.opts("p"))
	other := e.create(t, e.opts("q"))
	waitFor(t, "ACTIVE", func() bool { v, _ := e.sim.Server(srv.ID); return v.Status == "ACTIVE" })
	v, _ := e.sim.Server(srv.ID)
	pages, err := ports.List(e.network, ports.ListOpts{DeviceID: srv.ID}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	list, err := ports.ExtractPorts(pages)
	if err != nil || len(list) != 1 {
		t.Fatalf("ports of the server: %+v %v", list, err)
	}
	p := list[0]
	if p.NetworkID != e.netID || p.DeviceOwner != "compute:nova" || p.Status != "ACTIVE" || !p.AdminStateUp ||
		len(p.FixedIPs) != 1 || p.FixedIPs[0].IPAddress != v.Address || p.FixedIPs[0].SubnetID == "" ||
		p.MACAddress == "" || p.ProjectID == "" || p.CreatedAt.IsZero() {
		t.Fatalf("port %+v", p)
	}
	if got, err := ports.Get(ctx, e.network, p.ID).Extract(); err != nil || got.DeviceID != srv.ID {
		t.Fatalf("get port: %+v %v", got, err)
	}
	pages, _ = ports.List(e.network, ports.ListOpts{NetworkID: e.netID}).AllPages(ctx)
	if l, _ := ports.ExtractPorts(pages); len(l) != 2 {
		t.Errorf("ports on private: %d, want 2", len(l))
	}
	pages, _ = ports.List(e.network, ports.ListOpts{FixedIPs: []ports.FixedIPOpts{{IPAddress: v.Address}}}).AllPages(ctx)
	if l, _ := ports.ExtractPorts(pages); len(l) != 1 || l[0].ID != p.ID {
		t.Errorf("ports by fixed IP: %+v", l)
	}

	if err := e.deleteServer(srv.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the server gone", func() bool { _, ok := e.sim.Server(srv.ID); return !ok })
	if _, err := ports.Get(ctx, e.network, p.ID).Extract(); !gophercloud.ResponseCodeIs(err, 404) {
		t.Errorf("the port outlived its server: %v", err)
	}
	pages, _ = ports.List(e.network, nil).AllPages(ctx)
	if l, _ := ports.ExtractPorts(pages); len(l) != 1 || l[0].DeviceID != other.ID {
		t.Errorf("ports left: %+v", l)
	}
}

func (e *env) deleteServer(id string) error {
	req, _ := http.NewRequest(http.MethodDelete, e.sim.Endpoint()+"/compute/v2.1/servers/"+id, nil)
	req.Header.Set("X-Auth-Token", e.provider.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// portOf is the Neutron port of a server.
func (e *env) portOf(t *testing.T, serverID string) string {
	t.Helper()
	pages, err := ports.List(e.network, ports.ListOpts{DeviceID: serverID}).AllPages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l, _ := ports.ExtractPorts(pages)
	if len(l) != 1 {
		t.Fatalf("ports of %s: %d", serverID, len(l))
	}
	return l[0].ID
}

func TestFloatingIPs(t *testing.T) {
	e := start(t, fastOpts)
	ctx := context.Background()
	apps := e.healthy(t, 2)
	a, b := apps[0], apps[1]
	portA, portB := e.portOf(t, a.ID), e.portOf(t, b.ID)
	pages, _ := networks.List(e.network, networks.ListOpts{Name: "public"}).AllPages(ctx)
	nets, _ := networks.ExtractNetworks(pages)
	if len(nets) != 1 {
		t.Fatalf("public networks: %d", len(nets))
	}
	public := nets[0].ID

	_, err := floatingips.Create(ctx, e.network, floatingips.CreateOpts{FloatingNetworkID: e.netID}).Extract()
	if !gophercloud.ResponseCodeIs(err, 400) || !strings.Contains(errorBody(t, err), "is not a valid external network") {
		t.Errorf("a floating IP on a tenant network: %v", err)
	}
	_, err = floatingips.Create(ctx, e.network, floatingips.CreateOpts{FloatingNetworkID: public, PortID: "nope"}).Extract()
	if !gophercloud.ResponseCodeIs(err, 404) {
		t.Errorf("a floating IP for a missing port: %v", err)
	}

	fip, err := floatingips.Create(ctx, e.network, floatingips.CreateOpts{FloatingNetworkID: public, Description: "web"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if fip.Status != "DOWN" || fip.PortID != "" || fip.FixedIP != "" || !strings.HasPrefix(fip.FloatingIP, "127.") ||
		fip.Description != "web" || fip.FloatingNetworkID != public || fip.CreatedAt.IsZero() {
		t.Fatalf("new floating IP %+v", fip)
	}
	url := "http://" + fip.FloatingIP + ":" + e.port() + "/"
	if code, _ := get(t, url); code != http.StatusBadGateway {
		t.Errorf("an unassociated floating IP answered %d, want 502", code)
	}

	up, err := floatingips.Update(ctx, e.network, fip.ID, floatingips.UpdateOpts{PortID: &portA}).Extract()
	if err != nil || up.Status != "ACTIVE" || up.PortID != portA || up.FixedIP != a.Address {
		t.Fatalf("associate: %+v %v", up, err)
	}
	if code, who := get(t, url); code != 200 || who != a.ID {
		t.Errorf("through the floating IP: %d from %q, want 200 from %s", code, who, a.ID)
	}
	if _, err := floatingips.Create(ctx, e.network, floatingips.CreateOpts{FloatingNetworkID: public, PortID: portA}).Extract(); !gophercloud.ResponseCodeIs(err, 409) {
		t.Errorf("a second floating IP for one port: %v", err)
	}
	nope := "nope"
	if _, err := floatingips.Update(ctx, e.network, fip.ID, floatingips.UpdateOpts{PortID: &nope}).Extract(); !gophercloud.ResponseCodeIs(err, 404) {
		t.Errorf("associate with a missing port: %v", err)
	}
	// Re-association applies to the very next request.
	if _, err := floatingips.Update(ctx, e.network, fip.ID, floatingips.UpdateOpts{PortID: &portB}).Extract(); err != nil {
		t.Fatal(err)
	}
	if code, who := get(t, url); code != 200 || who != b.ID {
		t.Errorf("after re-association: %d from %q, want 200 from %s", code, who, b.ID)
	}
	pages, _ = floatingips.List(e.network, floatingips.ListOpts{FloatingIP: fip.FloatingIP}).AllPages(ctx)
	if l, _ := floatingips.ExtractFloatingIPs(pages); len(l) != 1 || l[0].PortID != portB || l[0].FixedIP != b.Address {
		t.Errorf("list by address: %+v", l)
	}
	pages, _ = floatingips.List(e.network, floatingips.ListOpts{PortID: portA}).AllPages(ctx)
	if l, _ := floatingips.ExtractFloatingIPs(pages); len(l) != 0 {
		t.Errorf("list by the old port: %+v", l)
	}

	// The helper's floating IP shows in the API and in FloatingIPs.
	h, err := e.sim.AddFloatingIP("helper")
	if err != nil {
		t.Fatal(err)
	}
	pages, _ = floatingips.List(e.network, floatingips.ListOpts{Description: "helper"}).AllPages(ctx)
	if l, _ := floatingips.ExtractFloatingIPs(pages); len(l) != 1 || l[0].ID != h.ID || l[0].FloatingIP != h.Address {
		t.Errorf("the helper's floating IP: %+v", l)
	}
	all := e.sim.FloatingIPs()
	if len(all) != 2 || all[0].ID != fip.ID || all[0].PortID != portB || all[0].FixedIP != b.Address || all[0].Description != "web" {
		t.Errorf("FloatingIPs: %+v", all)
	}

	// Disassociate (port_id null): 502 again.
	empty := ""
	down, err := floatingips.Update(ctx, e.network, fip.ID, floatingips.UpdateOpts{PortID: &empty}).Extract()
	if err != nil || down.Status != "DOWN" || down.PortID != "" || down.FixedIP != "" {
		t.Fatalf("disassociate: %+v %v", down, err)
	}
	if code, _ := get(t, url); code != http.StatusBadGateway {
		t.Errorf("a disassociated floating IP answered %d", code)
	}

	// A floating IP whose server goes is disassociated.
	if _, err := floatingips.Update(ctx, e.network, h.ID, floatingips.UpdateOpts{PortID: &portA}).Extract(); err != nil {
		t.Fatal(err)
	}
	_ = e.deleteServer(a.ID)
	waitFor(t, "the server gone", func() bool { _, ok := e.sim.Server(a.ID); return !ok })
	if got, err := floatingips.Get(ctx, e.network, h.ID).Extract(); err != nil || got.PortID != "" || got.Status != "DOWN" {
		t.Errorf("the floating IP of a deleted server: %+v %v", got, err)
	}

	if err := floatingips.Delete(ctx, e.network, fip.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, url); code != 0 {
		t.Errorf("a released floating IP still answers %d", code)
	}
	if err := floatingips.Delete(ctx, e.network, fip.ID).ExtractErr(); !gophercloud.ResponseCodeIs(err, 404) {
		t.Errorf("release twice: %v", err)
	}
}
