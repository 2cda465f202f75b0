package sim_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"

	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// probe GETs a health endpoint as a health checker would: a fresh
// connection each time. 0 means the connection was refused.
func probe(t testing.TB, addr string, port int) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(fmt.Sprintf("http://%s/healthz", net.JoinHostPort(addr, strconv.Itoa(port))))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestLifecycleAndHealth(t *testing.T) {
	ports := freePorts(t, 3)
	e := start(t, sim.Options{BootTime: sim.Fixed(50 * time.Millisecond), HealthDelay: sim.Fixed(80 * time.Millisecond),
		DeleteTime: sim.Fixed(50 * time.Millisecond), HealthPorts: ports[:2]})
	ctx := context.Background()
	srv := e.create(t, e.opts("web-1"))
	v, _ := e.sim.Server(srv.ID)
	if !strings.HasPrefix(v.Address, "127.") || strings.HasPrefix(v.Address, "127.0.") || v.Network != "private" {
		t.Fatalf("address %q on %q: want 127.x.y.z off 127.0/16", v.Address, v.Network)
	}
	if v.Status != "BUILD" || v.Healthy || !v.ActiveAt.IsZero() || v.BootTime != 50*time.Millisecond || v.HealthDelay != 80*time.Millisecond {
		t.Fatalf("right after create: %+v", v)
	}
	if status, _ := probe(t, v.Address, e.sim.HealthPort()); status != 0 {
		t.Fatalf("a building server answers health checks: %d", status)
	}

	waitFor(t, "ACTIVE", func() bool { v, _ := e.sim.Server(srv.ID); return v.Status == "ACTIVE" })
	// Until the health delay has passed the application is not up. (The
	// checks are skipped if this goroutine was too slow to see that.)
	if v, _ := e.sim.Server(srv.ID); time.Since(v.ActiveAt) < 60*time.Millisecond {
		status, _ := probe(t, v.Address, e.sim.HealthPort())
		if v.Healthy || status != 0 && time.Since(v.ActiveAt) < 70*time.Millisecond {
			t.Fatalf("healthy (%v) or answering (%d) before the health delay", v.Healthy, status)
		}
	}
	got, err := servers.Get(ctx, e.compute, srv.ID).Extract()
	if err != nil || got.Status != "ACTIVE" || len(got.Addresses["private"].([]any)) != 1 {
		t.Fatalf("after boot: %+v, %v", got, err)
	}
	waitFor(t, "healthy", func() bool { v, _ := e.sim.Server(srv.ID); return v.Healthy })
	v, _ = e.sim.Server(srv.ID)
	if v.ActiveAt.Sub(v.Created) < 50*time.Millisecond {
		t.Errorf("ACTIVE %v after create, before the boot time", v.ActiveAt.Sub(v.Created))
	}

	steps := []struct {
		health sim.Health
		status int
		body   string
	}{
		{sim.HealthUp, 200, "ok"},
		{sim.HealthFailing, 503, ""},
		{sim.HealthDown, 0, ""},
		{sim.HealthFailing, 503, ""},
		{sim.HealthDown, 0, ""},
		{sim.HealthUp, 200, "ok"},
	}
	for i, st := range steps {
		if err := e.sim.SetHealth(srv.ID, st.health); err != nil {
			t.Fatal(err)
		}
		for _, port := range ports[:2] {
			status, body := probe(t, v.Address, port)
			if status != st.status || st.body != "" && body != st.body {
				t.Fatalf("step %d (%v), port %d: %d %q, want %d", i, st.health, port, status, body, st.status)
			}
		}
		if got, _ := e.sim.Server(srv.ID); got.Healthy != (st.health == sim.HealthUp) {
			t.Fatalf("step %d (%v): Healthy %v", i, st.health, got.Healthy)
		}
	}
	if _, err := net.DialTimeout("tcp", net.JoinHostPort(v.Address, strconv.Itoa(ports[2])), time.Second); err == nil {
		t.Fatal("a port not in HealthPorts accepts connections")
	}
	if err := e.sim.SetHealth("nope", sim.HealthUp); err == nil {
		t.Fatal("SetHealth of a missing server succeeded")
	}

	if err := servers.Delete(ctx, e.compute, srv.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.sim.Server(srv.ID); got.Healthy || !got.Deleting {
		t.Fatalf("being deleted: %+v", got)
	}
	waitFor(t, "gone", func() bool {
		_, err := servers.Get(ctx, e.compute, srv.ID).Extract()
		return gophercloud.ResponseCodeIs(err, 404)
	})
	if status, _ := probe(t, v.Address, e.sim.HealthPort()); status != 0 {
		t.Fatalf("a deleted server answers health checks: %d", status)
	}
}

func TestHealthSetBeforeTheAppStarts(t *testing.T) {
	e := start(t, sim.Options{BootTime: sim.Fixed(0), HealthDelay: sim.Fixed(50 * time.Millisecond)})
	a := e.create(t, e.opts("failing-from-start"))
	b := e.create(t, e.opts("down-from-start"))
	_ = e.sim.SetHealth(a.ID, sim.HealthFailing)
	_ = e.sim.SetHealth(b.ID, sim.HealthDown)
	// The applications start HealthDelay after ACTIVE.
	waitFor(t, "a's application to start and answer 503", func() bool {
		v, _ := e.sim.Server(a.ID)
		status, _ := probe(t, v.Address, e.sim.HealthPort())
		return status == 503 && !v.Healthy
	})
	vb, _ := e.sim.Server(b.ID)
	if status, _ := probe(t, vb.Address, e.sim.HealthPort()); status != 0 || vb.Healthy {
		t.Fatalf("down from the start: %d, healthy %v", status, vb.Healthy)
	}
	_ = e.sim.SetHealth(b.ID, sim.HealthUp)
	waitFor(t, "b, switched up, to answer 200", func() bool {
		status, _ := probe(t, vb.Address, e.sim.HealthPort())
		return status == 200
	})
}

// TestAddressesAreUnique runs two simulators side by side: no address is
// handed out twice, and none is in 127.0.0.0/16.
func TestAddressesAreUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 2 {
		e := start(t, sim.Options{BootTime: sim.Fixed(time.Hour)})
		for i := range 300 {
			e.create(t, e.opts(fmt.Sprint("s", i)))
		}
		for _, v := range e.sim.Servers() {
			ip := net.ParseIP(v.Address).To4()
			if ip == nil || ip[0] != 127 || ip[1] < 16 || ip[1] > 250 || ip[3] == 0 || ip[3] == 255 {
				t.Fatalf("address %s", v.Address)
			}
			if seen[v.Address] {
				t.Fatalf("address %s handed out twice", v.Address)
			}
			seen[v.Address] = true
		}
	}
}

// TestManyHealthListeners keeps 2,000 servers' applications up at once.
func TestManyHealthListeners(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 listeners")
	}
	e := start(t, sim.Options{BootTime: sim.Fixed(0), HealthDelay: sim.Fixed(0)})
	const n = 2000
	for i := range n {
		e.create(t, e.opts(fmt.Sprint("s", i)))
	}
	waitFor(t, "every server healthy", func() bool {
		healthy := 0
		for _, v := range e.sim.Servers() {
			if v.Healthy {
				healthy++
			}
		}
		return healthy == n
	})
	all := e.sim.Servers()
	for _, i := range []int{0, n / 2, n - 1} {
		if status, _ := probe(t, all[i].Address, e.sim.HealthPort()); status != 200 {
			t.Fatalf("server %d answers %d", i, status)
		}
	}
}

// A server booted from an image that fails after its gate answers its
// check, then fails it for good.
func TestImageFailsAfterItsGate(t *testing.T) {
	e := start(t, sim.Options{BootTime: sim.Fixed(10 * time.Millisecond), HealthDelay: sim.Fixed(10 * time.Millisecond)})
	leaky := e.sim.AddImage(sim.Image{Name: "leaky", FailsAfter: 300 * time.Millisecond})
	o := e.opts("leaky-1")
	o.ImageRef = leaky.ID
	srv := e.create(t, o)
	var addr string
	waitFor(t, "answering", func() bool {
		v, _ := e.sim.Server(srv.ID)
		addr = v.Address
		status, _ := probe(t, v.Address, e.sim.HealthPort())
		return v.Healthy && status == 200
	})
	waitFor(t, "failing", func() bool { status, _ := probe(t, addr, e.sim.HealthPort()); return status == 503 })
	if v, _ := e.sim.Server(srv.ID); v.Healthy {
		t.Errorf("the server says healthy while its check fails")
	}
	// The failure is the image's: SetHealth does not cure it, a rebuild
	// with a good image does.
	if err := e.sim.SetHealth(srv.ID, sim.HealthUp); err != nil {
		t.Fatal(err)
	}
	if status, _ := probe(t, addr, e.sim.HealthPort()); status != 503 {
		t.Errorf("SetHealth(HealthUp) cured the image's failure: %d", status)
	}
	if _, err := servers.Rebuild(context.Background(), e.compute, srv.ID, servers.RebuildOpts{ImageRef: e.img.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "healthy on the good image", func() bool {
		v, _ := e.sim.Server(srv.ID)
		status, _ := probe(t, addr, e.sim.HealthPort())
		return v.Healthy && v.ImageID == e.img.ID && status == 200
	})
	time.Sleep(400 * time.Millisecond) // longer than the leaky image's FailsAfter
	if v, _ := e.sim.Server(srv.ID); !v.Healthy {
		t.Errorf("a server rebuilt with a good image failed again")
	}
}
