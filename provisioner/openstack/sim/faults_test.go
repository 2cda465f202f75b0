package sim_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

func TestFaultActions(t *testing.T) {
	createFault := func(a sim.FaultAction, status, retry int) sim.Fault {
		return sim.Fault{Service: "compute", Method: "POST", Path: `^/servers$`, Action: a, Status: status, RetryAfter: retry, Times: 1}
	}
	cases := []struct {
		name      string
		fault     sim.Fault
		status    int    // what the client gets; 0: no answer before its deadline
		body      string // in the error body
		retry     string // Retry-After
		created   bool
		logStatus int
	}{
		{"FailWith 500 creates nothing", createFault(sim.FailWith, 500, 0), 500, `{"computeFault":{"code":500`, "", false, 500},
		{"FailWith 503", createFault(sim.FailWith, 503, 0), 503, `{"serviceUnavailable":{"code":503`, "", false, 503},
		{"429 with Retry-After", createFault(sim.FailWith, 429, 7), 429, `{"overLimit":{"code":429,"message":"Simulated fault: Too Many Requests","retryAfter":"7"}}`, "7", false, 429},
		{"CommitThenFail creates and answers 500", createFault(sim.CommitThenFail, 500, 0), 500, "computeFault", "", true, 500},
		{"Hang creates nothing and never answers", createFault(sim.Hang, 0, 0), 0, "", "", false, 0},
		{"CommitThenHang creates and never answers", createFault(sim.CommitThenHang, 0, 0), 0, "", "", true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, sim.Options{})
			if err := e.sim.InjectFault(tc.fault); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			began := time.Now()
			_, err := servers.Create(ctx, e.compute, e.opts("x"), nil).Extract()
			switch {
			case tc.status == 0:
				if !errors.Is(err, context.DeadlineExceeded) || time.Since(began) < 250*time.Millisecond {
					t.Fatalf("err = %v after %v, want the client's deadline", err, time.Since(began))
				}
			case !gophercloud.ResponseCodeIs(err, tc.status) || !strings.Contains(errorBody(t, err), tc.body):
				t.Fatalf("err = %v, want %d with %s", err, tc.status, tc.body)
			}
			if tc.retry != "" {
				var code gophercloud.ErrUnexpectedResponseCode
				if !errors.As(err, &code) || code.ResponseHeader.Get("Retry-After") != tc.retry {
					t.Fatalf("Retry-After %q, want %q", code.ResponseHeader.Get("Retry-After"), tc.retry)
				}
			}
			if got := len(e.sim.Servers()) == 1; got != tc.created {
				t.Fatalf("created %v, want %v", got, tc.created)
			}
			waitFor(t, "the request log", func() bool {
				reqs := e.sim.Requests()
				last := reqs[len(reqs)-1]
				return last.Faulted && last.Status == tc.logStatus && last.Method == "POST"
			})
			// Times: 1 is spent: the next create goes through.
			if _, err := servers.Create(context.Background(), e.compute, e.opts("y"), nil).Extract(); err != nil {
				t.Fatalf("after the fault: %v", err)
			}
		})
	}
}

func TestFaultMatching(t *testing.T) {
	e := start(t, sim.Options{Seed: 3})
	ctx := context.Background()
	list := func() error { _, err := servers.List(e.compute, nil).AllPages(ctx); return err }
	listImages := func() error { _, err := images.List(e.image, nil).AllPages(ctx); return err }

	if err := e.sim.InjectFault(sim.Fault{Path: `(`}); err == nil {
		t.Error("a bad regular expression was accepted")
	}
	if err := e.sim.InjectFault(sim.Fault{Action: sim.FailWith}); err == nil {
		t.Error("FailWith without an error status was accepted")
	}

	// Times: 2, on GETs only, on the compute service only.
	_ = e.sim.InjectFault(sim.Fault{Service: "compute", Method: "GET", Path: `^/servers/detail$`, Action: sim.FailWith, Status: 500, Times: 2})
	if err := listImages(); err != nil {
		t.Fatalf("a compute fault hit the image service: %v", err)
	}
	if _, err := servers.Create(ctx, e.compute, e.opts("x"), nil).Extract(); err != nil {
		t.Fatalf("a GET fault hit a POST: %v", err)
	}
	for i, want := range []int{500, 500, 0} {
		err := list()
		if want == 0 && err != nil || want != 0 && !gophercloud.ResponseCodeIs(err, want) {
			t.Fatalf("list %d: %v, want %d", i, err, want)
		}
	}

	// Fraction: about half of the requests, drawn from the seed.
	e.sim.ResetRequests()
	_ = e.sim.InjectFault(sim.Fault{Service: "image", Path: `^/v2/images$`, Action: sim.FailWith, Status: 503, Fraction: 0.5})
	hits := 0
	for range 200 {
		if listImages() != nil {
			hits++
		}
	}
	if hits < 70 || hits > 130 {
		t.Fatalf("a 50%% fault hit %d of 200 requests", hits)
	}
	faulted := 0
	for _, r := range e.sim.Requests() {
		if r.Faulted {
			faulted++
			if r.Status != 503 || r.Service != "image" {
				t.Fatalf("faulted request logged as %+v", r)
			}
		}
	}
	if faulted != hits {
		t.Fatalf("request log shows %d faulted requests, clients saw %d", faulted, hits)
	}
	e.sim.ClearFaults()
	if err := listImages(); err != nil {
		t.Fatalf("after ClearFaults: %v", err)
	}

	// The same seed hits the same requests.
	pattern := func() string {
		s := start(t, sim.Options{Seed: 11})
		_ = s.sim.InjectFault(sim.Fault{Service: "network", Action: sim.FailWith, Status: 500, Fraction: 0.3})
		var b strings.Builder
		for range 40 {
			req := s.network.ServiceURL("networks")
			_, err := s.network.Get(ctx, req, nil, nil)
			if err != nil {
				b.WriteByte('x')
			} else {
				b.WriteByte('.')
			}
		}
		return b.String()
	}
	if a, b := pattern(), pattern(); a != b || !strings.Contains(a, "x") || !strings.Contains(a, ".") {
		t.Fatalf("seeded fault patterns differ or are degenerate: %s vs %s", a, b)
	}

	// Identity faults use Keystone's shape; a failed re-authentication
	// reaches the client.
	_ = e.sim.InjectFault(sim.Fault{Service: "identity", Method: "POST", Action: sim.FailWith, Status: 503, Times: 1})
	e.sim.ExpireTokens()
	if err := list(); err == nil {
		t.Fatal("a list succeeded though re-authentication failed")
	}
	if err := list(); err != nil {
		t.Fatalf("after the identity fault: %v", err)
	}
}

func TestHangEndsWithTheClient(t *testing.T) {
	e := start(t, sim.Options{})
	_ = e.sim.InjectFault(sim.Fault{Service: "compute", Method: "GET", Path: `^/servers/detail$`, Action: sim.Hang})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := servers.List(e.compute, nil).AllPages(ctx)
		done <- err
	}()
	waitFor(t, "the request", func() bool { return countRequests(e.sim, "GET", "/compute/v2.1/servers/detail") == 1 })
	select {
	case err := <-done:
		t.Fatalf("a hung request returned: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want the client's cancellation", err)
	}
	reqs := e.sim.Requests()
	if r := reqs[len(reqs)-1]; r.Path != "/compute/v2.1/servers/detail" || r.Status != 0 || !r.Faulted {
		t.Fatalf("hung request logged as %+v", r)
	}
}

// TestBootsFailInOneZone: every boot in the failing zone ends in ERROR
// with Nova's fault, in that zone; the other zones boot, and so does the
// failing one once the faults are cleared.
func TestBootsFailInOneZone(t *testing.T) {
	e := start(t, sim.Options{BootTime: sim.Fixed(10 * time.Millisecond), HealthDelay: sim.Fixed(time.Hour)})
	e.sim.FailBootsInZone("az1")
	in := func(name, zone string) string {
		o := e.opts(name)
		o.AvailabilityZone = zone
		return e.create(t, o).ID
	}
	status := func(id string) string {
		s, _ := e.sim.Server(id)
		return s.Status
	}
	a, b, c := in("a", "az1"), in("b", "az1"), in("c", "az2")
	waitFor(t, "the boots", func() bool { return status(a) == "ERROR" && status(b) == "ERROR" && status(c) == "ACTIVE" })
	got, err := servers.Get(context.Background(), e.compute, a).Extract()
	if err != nil || got.AvailabilityZone != "az1" || !strings.HasPrefix(got.Fault.Message, "No valid host was found") {
		t.Fatalf("failed server: zone %q fault %+v (%v); want az1 and no valid host", got.AvailabilityZone, got.Fault, err)
	}
	if n := e.sim.BootsFailedInZone("az1"); n != 2 {
		t.Errorf("%d boots failed in az1, want 2", n)
	}
	if n := e.sim.BootsFailedInZone("az2"); n != 0 {
		t.Errorf("%d boots failed in az2, want 0", n)
	}
	e.sim.ClearBootFaults()
	d := in("d", "az1")
	waitFor(t, "a boot in az1 once cleared", func() bool { return status(d) == "ACTIVE" })
}
