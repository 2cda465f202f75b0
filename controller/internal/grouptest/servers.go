package grouptest

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// GroupOf is the group whose tag the server carries, or "".
func GroupOf(s sim.Server) string {
	for _, t := range s.Tags {
		if name, ok := strings.CutPrefix(t, controller.GroupTag("")); ok {
			return name
		}
	}
	return ""
}

// IDsOf lists the ids of the group's servers, sorted.
func IDsOf(s *sim.Sim, group string) []string {
	var out []string
	for _, srv := range s.Servers() {
		if GroupOf(srv) == group {
			out = append(out, srv.ID)
		}
	}
	slices.Sort(out)
	return out
}

// Creates counts the server-create requests the simulator received.
func Creates(s *sim.Sim) int {
	n := 0
	for _, r := range s.Requests() {
		if r.Service == "compute" && r.Method == "POST" && strings.HasSuffix(r.Path, "/servers") {
			n++
		}
	}
	return n
}

// MemberOf is the id of the pool's member at address, or "".
func MemberOf(s *sim.Sim, poolID, address string) string {
	for _, m := range s.Members(poolID) {
		if m.Address == address {
			return m.ID
		}
	}
	return ""
}

// AssertMembers checks that the pool holds exactly the group's live
// servers, each once, serving.
func AssertMembers(t testing.TB, s *sim.Sim, poolID, group string, want int) {
	t.Helper()
	addrs := map[string]string{}
	for _, srv := range s.Servers() {
		addrs[srv.Address] = srv.ID
	}
	var mine []sim.Member
	for _, m := range s.Members(poolID) {
		if slices.Contains(m.Tags, controller.GroupTag(group)) {
			mine = append(mine, m)
		}
	}
	seen := map[string]bool{}
	for _, m := range mine {
		id, ok := addrs[m.Address]
		switch {
		case !ok:
			t.Errorf("member %s points at %s, where no server lives", m.ID, m.Address)
		case seen[id]:
			t.Errorf("server %s is in the pool twice", id)
		case m.Weight != 1 || m.ProvisioningStatus != "ACTIVE":
			t.Errorf("member %s of server %s: weight %d, %s", m.ID, id, m.Weight, m.ProvisioningStatus)
		}
		seen[id] = true
	}
	if len(mine) != want {
		t.Errorf("the pool has %d members of the group, want %d", len(mine), want)
	}
}

// Compute is a gophercloud client of the simulator, for what an operator
// does to a server behind Phoenix's back.
func Compute(t testing.TB, env *simtest.Env) *gophercloud.ServiceClient {
	t.Helper()
	ctx := context.Background()
	ao, eo, _, err := clouds.Parse(clouds.WithCloudName(simtest.CloudName), clouds.WithLocations(env.CloudsFile))
	if err != nil {
		t.Fatal(err)
	}
	provider, err := config.NewProviderClient(ctx, ao)
	if err != nil {
		t.Fatal(err)
	}
	c, err := openstack.NewComputeV2(provider, eo)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// StopBehindTheBack stops, pauses or suspends a server as an operator (or
// a hypervisor) would, and waits until Nova shows it so.
func StopBehindTheBack(t testing.TB, env *simtest.Env, c *gophercloud.ServiceClient, id, how string) {
	t.Helper()
	ctx := context.Background()
	var err error
	want := map[string]string{"stop": plan.StatusShutoff, "pause": plan.StatusPaused, "suspend": plan.StatusSuspended}[how]
	switch how {
	case "stop":
		err = servers.Stop(ctx, c, id).ExtractErr()
	case "pause":
		err = servers.Pause(ctx, c, id).ExtractErr()
	case "suspend":
		err = servers.Suspend(ctx, c, id).ExtractErr()
	}
	if err != nil {
		t.Fatalf("%s server %s: %v", how, id, err)
	}
	WaitUntil(t, 10*time.Second, "the server "+want, func() bool {
		s, ok := env.Sim.Server(id)
		return ok && s.Status == want
	})
}
