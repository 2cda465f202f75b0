package sim_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"

	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// holdEverywhere listens on 0.0.0.0 at port (0: one the kernel picks), as
// another program on a developer's machine often does at 8080, until the
// test ends; it returns the port.
func holdEverywhere(t testing.TB, port int) int {
	t.Helper()
	l, err := net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		t.Fatalf("hold port %d: %v", port, err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

// A port held on 0.0.0.0 is in use on every loopback address: the
// simulator takes a port of its own, says which, and its servers, pool
// members and floating IPs answer there.
func TestHealthPortAvoidsAPortHeldEverywhere(t *testing.T) {
	held := holdEverywhere(t, 0)
	opts := fastOpts
	opts.PreferredHealthPort = held
	e := start(t, opts)
	port := e.sim.HealthPort()
	if port == held || !slices.Equal(e.sim.HealthPorts(), []int{port}) {
		t.Fatalf("health ports %v with %d held, want one other port", e.sim.HealthPorts(), held)
	}
	app := e.healthy(t, 1)[0]
	if status, _ := probe(t, app.Address, port); status != http.StatusOK {
		t.Fatalf("the application answers %d on port %d", status, port)
	}

	lb, err := e.sim.AddLoadBalancer(sim.LoadBalancerSpec{Name: "lb", PoolName: "pool", Monitor: true, MonitorPath: "/healthz"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.sim.AddMember(lb.PoolID, sim.Member{Address: app.Address, ProtocolPort: port}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the member ONLINE", func() bool { return e.sim.Members(lb.PoolID)[0].OperatingStatus == "ONLINE" })
	if code, who := get(t, lb.URL); code != http.StatusOK || who != app.ID {
		t.Errorf("through the load balancer: %d from %q, want 200 from %s", code, who, app.ID)
	}

	ctx := context.Background()
	pages, err := networks.List(e.network, networks.ListOpts{Name: "public"}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	public, _ := networks.ExtractNetworks(pages)
	fip, err := floatingips.Create(ctx, e.network, floatingips.CreateOpts{FloatingNetworkID: public[0].ID, PortID: e.portOf(t, app.ID)}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if code, who := get(t, "http://"+fip.FloatingIP+":"+e.port()+"/"); code != http.StatusOK || who != app.ID {
		t.Errorf("through the floating IP: %d from %q, want 200 from %s", code, who, app.ID)
	}
}

// Ports the simulator cannot place its applications on are refused at
// start, at once, with the port and what holds it.
func TestHealthPortsRefusedAtStart(t *testing.T) {
	held := holdEverywhere(t, 0)
	free := freePorts(t, 1)[0]
	inUse := []string{
		fmt.Sprintf("sim: port %d is in use on every loopback address tried (256, 127.", held),
		fmt.Sprintf("another program listens on 0.0.0.0:%d or [::]:%d", held, held),
	}
	for _, tc := range []struct {
		name  string
		ports []int
		want  []string
	}{
		{"held on 0.0.0.0", []int{held}, inUse},
		{"the second of two held", []int{free, held}, inUse},
		{"zero", []int{0}, []string{"sim: health port 0: want 1 to 65535"}},
		{"past 65535", []int{free, 65536}, []string{"sim: health port 65536: want 1 to 65535"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			began := time.Now()
			s, err := sim.New(sim.Options{HealthPorts: tc.ports})
			if err == nil {
				s.Close()
				t.Fatalf("New took health ports %v", tc.ports)
			}
			t.Logf("refused: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if d := time.Since(began); d > 5*time.Second {
				t.Errorf("New took %s to refuse, want it at once", d)
			}
		})
	}
}

// A port taken after the simulator settled on it fails each server create
// at once with the reason, rather than walking every loopback address.
func TestServerCreateWhenItsPortIsTakenLater(t *testing.T) {
	opts := fastOpts
	opts.PreferredHealthPort = freePorts(t, 1)[0]
	e := start(t, opts)
	if e.sim.HealthPort() != opts.PreferredHealthPort {
		t.Fatalf("health port %d, want the free preferred %d", e.sim.HealthPort(), opts.PreferredHealthPort)
	}
	holdEverywhere(t, e.sim.HealthPort())
	began := time.Now()
	_, err := servers.Create(context.Background(), e.compute, e.opts("late"), nil).Extract()
	if err == nil {
		t.Fatal("a server was created with its health port held on 0.0.0.0")
	}
	want := fmt.Sprintf("port %d is in use on every loopback address tried", e.sim.HealthPort())
	if body := errorBody(t, err); !strings.Contains(body, want) {
		t.Errorf("create refused with %s, want it to say %q", body, want)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("the refusal took %s", d)
	}
}
