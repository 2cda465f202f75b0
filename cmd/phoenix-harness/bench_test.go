package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// The real-cloud bench, run on the simulator: it rebuilds its group,
// prints its figure against the bound, and leaves neither a server nor an
// image behind.
func TestBenchOnACloudCleansUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, cloud, cleanup, err := benchCloud(ctx, sim.Options{Seed: 3, BootTime: sim.LogNormal(40*time.Millisecond, 150*time.Millisecond),
		HealthDelay: sim.Fixed(0), DeleteTime: sim.Fixed(time.Millisecond)}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	before := len(s.Images())
	var out bytes.Buffer
	b := cloudBench{cloud: simCloud, servers: 4, surge: 2, flavor: "m1.small", network: "private", healthPort: s.HealthPort(), poll: 20 * time.Millisecond}
	if err := benchRealCloud(ctx, &out, cloud, b, zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "4 servers (surge 2)") || !strings.Contains(out.String(), "ratio ") {
		t.Errorf("bench printed %q, want the figure and its ratio", out.String())
	}
	for _, srv := range s.Servers() {
		if !srv.Deleting {
			t.Errorf("server %s (%s) is left behind", srv.Name, srv.Status)
		}
	}
	if got := len(s.Images()); got != before {
		t.Errorf("%d images after the bench, %d before: its gold images are left behind", got, before)
	}
}

// The bench command prints its four figures, each with what it is judged
// by (run here at a small scale: speed is for the bench itself to show).
func TestBenchPrintsEveryFigure(t *testing.T) {
	out, code := run(t, "bench", "--groups", "2", "--servers", "20", "--steady-servers", "300", "--reactions", "3", "--probe-servers", "100")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, want := range []string{
		"makespan: 40 servers in 2 groups", "pipelined bound", "phoenix/batch",
		"steady: 300 servers in 3 groups at rest: 4 requests per reconcile of all groups (goal ≤ 3 pages + 1 selector = 4; ratio 1.000)",
		"reaction: accepted image.published → first server create, 3 runs",
		"probes: 100 servers", "0 healthy servers reported unhealthy",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("bench output lacks %q:\n%s", want, out)
		}
	}
}
