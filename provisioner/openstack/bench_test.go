package openstack_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// BenchmarkListServers9000 is Phoenix's list of a 9,000-server group
// among 10,000 (nine pages of Nova's 1,000), simulator included, as a
// reconcile pays it: nothing changed since the last list (at rest), or
// every server changed (each decoded again).
func BenchmarkListServers9000(b *testing.B) {
	env := simtest.Start(b, sim.Options{BootTime: sim.Fixed(time.Hour)}, 0)
	ctx := context.Background()
	s := spec(env, "x", "")
	for i := range 10000 {
		s.Name, s.Tags = fmt.Sprint("s", i), []string{"phoenix-group:big"}
		if i%10 == 0 {
			s.Tags = []string{"phoenix-group:other"}
		}
		if _, err := env.Cloud.CreateServer(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
	list := func(b *testing.B) {
		got, err := env.Cloud.ListServers(ctx, "phoenix-group:big")
		if err != nil || len(got) != 9000 {
			b.Fatalf("listed %d: %v", len(got), err)
		}
	}
	b.Run("unchanged", func(b *testing.B) {
		list(b)
		for b.Loop() {
			list(b)
		}
	})
	b.Run("all-changed", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			env.Cloud.ForgetLists()
			b.StartTimer()
			list(b)
		}
	})
}
