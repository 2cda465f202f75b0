package sim_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"

	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// BenchmarkListServers10k lists the 9,000 servers of one group among
// 10,000 by tag through gophercloud: nine pages of Nova's 1,000.
func BenchmarkListServers10k(b *testing.B) {
	e := start(b, sim.Options{BootTime: sim.Fixed(time.Hour)})
	ctx := context.Background()
	for i := range 10000 {
		tag := "phoenix-group:big"
		if i%10 == 0 {
			tag = "phoenix-group:other"
		}
		if _, err := servers.Create(ctx, e.compute, e.opts(fmt.Sprint("s", i), tag), nil).Extract(); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		pages, err := servers.List(e.compute, servers.ListOpts{Tags: "phoenix-group:big"}).AllPages(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if list, _ := servers.ExtractServers(pages); len(list) != 9000 {
			b.Fatalf("listed %d", len(list))
		}
	}
}

// BenchmarkServersSnapshot is what a test's monitor pays per sample of a
// 10,000-server fleet.
func BenchmarkServersSnapshot(b *testing.B) {
	e := start(b, sim.Options{BootTime: sim.Fixed(time.Hour)})
	for i := range 10000 {
		o := e.opts(fmt.Sprint("s", i), "phoenix-group:big")
		o.Metadata = map[string]string{"phoenix:group": "big", "phoenix:revision": "r1"}
		e.create(b, o)
	}
	b.ResetTimer()
	for b.Loop() {
		if n := len(e.sim.Servers()); n != 10000 {
			b.Fatal(n)
		}
	}
}
