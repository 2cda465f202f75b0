package daemon_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller/trigger"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// BenchmarkEventToFirstCreate measures the reaction of a daemon at rest:
// the time from an accepted image.published event (a new gold image is in
// Glance) to the first server-create request the simulated Nova receives.
// It reports p50 and p99 over the iterations; run it with a fixed count:
//
//	go test -run - -bench EventToFirstCreate -benchtime 50x ./controller/daemon/
func BenchmarkEventToFirstCreate(b *testing.B) {
	env := simtest.Start(b, sim.Options{BootTime: sim.Fixed(20 * time.Millisecond), HealthDelay: sim.Fixed(5 * time.Millisecond), DeleteTime: sim.Fixed(5 * time.Millisecond)}, 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	d := startDaemon(b, env, daemonYAML(daemonGroup("web", "gold", "m1.small", 2, "")))
	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		waitConverged(b, d)
		env.Sim.AddImage(sim.Image{Name: "gold"})
		env.Sim.ResetRequests()
		b.StartTimer()
		sent := time.Now()
		if err := d.Dispatch(context.Background(), trigger.Event{ID: fmt.Sprint("bench-", i), Type: trigger.TypeImagePublished}); err != nil {
			b.Fatal(err)
		}
		var first time.Time
		for first.IsZero() {
			for _, r := range env.Sim.Requests() {
				if r.Service == "compute" && r.Method == "POST" && strings.HasSuffix(r.Path, "/servers") {
					first = r.Time
					break
				}
			}
			if time.Since(sent) > 10*time.Second {
				b.Fatalf("no create within 10s of the event")
			}
			time.Sleep(200 * time.Microsecond) // polling the request log
		}
		b.StopTimer()
		lat = append(lat, first.Sub(sent))
	}
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	b.ReportMetric(float64(p(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p(0.99).Microseconds())/1000, "p99-ms")
}

func waitConverged(b *testing.B, d *runningDaemon) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := d.Status()
		done := len(st.Groups) > 0
		for _, g := range st.Groups {
			done = done && !g.InProgress
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			b.Fatal("the group did not converge")
		}
		time.Sleep(5 * time.Millisecond) // polling the daemon's status between iterations
	}
}
