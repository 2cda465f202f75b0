package preflight_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/preflight"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

const groups = `
groups:
  - name: good
    count: 2
    image: {name: gold, newest: true}
    flavor: m1.small
    networks: [private]
    key_name: ops
    security_groups: [default, web]
    server_group: spread
    traffic: {octavia: {pool: web-pool, protocol_port: 8080}}
  - name: twin         # the same names again: asked once
    count: 2
    image: {name: gold, newest: true}
    flavor: m1.small
    networks: [private]
  - name: bad
    count: 2
    image: {name: silver}
    flavor: m1.huge
    networks: [private, nowhere-net]
    key_name: lost-key
    security_groups: [default, no-such-sg]
    server_group: no-such-group
    traffic: {octavia: {pool: no-such-pool, protocol_port: 8080}}
  - name: edge
    count: 1
    image: {name: gold, newest: true}
    flavor: m1.small
    networks: [private]
    traffic: {floating_ip: {pool: no-such-pool-net}}
  - name: edge2
    count: 1
    image: {name: gold, newest: true}
    flavor: m1.small
    networks: [private]
    traffic: {floating_ip: {address: 203.0.113.9}}
`

func TestCheckNamesEveryNameThatDoesNotResolve(t *testing.T) {
	env := simtest.Start(t, sim.Options{}, 0)
	env.Sim.AddImage(sim.Image{Name: "gold"})
	env.Sim.AddKeypair("ops")
	env.Sim.AddSecurityGroup("web")
	env.Sim.AddServerGroup("spread", "anti-affinity")
	if _, err := env.Sim.AddLoadBalancer(sim.LoadBalancerSpec{Name: "web-lb", PoolName: "web-pool"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("phoenix.yaml", []byte(groups), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	env.Sim.ResetRequests()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	rep := preflight.Check(ctx, cfg, env.Cloud.Services(), env.Cloud)

	var got []string
	for _, u := range rep.Unresolved {
		got = append(got, u.Field+" "+u.Kind+" "+u.Name)
		if !strings.Contains(u.String(), u.Field) || u.Problem == "" {
			t.Errorf("%+v: says neither the field nor the problem", u)
		}
	}
	want := []string{
		"groups[2].image image silver",
		"groups[2].flavor flavor m1.huge",
		"groups[2].networks[1] network nowhere-net",
		"groups[2].key_name key pair lost-key",
		"groups[2].security_groups[1] security group no-such-sg",
		"groups[2].server_group server group no-such-group",
		"groups[2].traffic.octavia.pool load-balancer pool no-such-pool",
		"groups[3].traffic.floating_ip.pool floating-IP pool no-such-pool-net",
		"groups[4].traffic.floating_ip.address floating IP 203.0.113.9",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("unresolved:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// good: image, flavor, network, key, 2 security groups, server group,
	// pool; twin none; bad 7 of its own (private and default were asked);
	// edge and edge2 one each.
	if rep.Checked != 8+7+2 {
		t.Errorf("checked %d names, want 17 (each distinct one once)", rep.Checked)
	}
	for _, r := range env.Sim.Requests() {
		if r.Method != http.MethodGet {
			t.Errorf("the check changed the cloud: %s %s", r.Method, r.Path)
		}
	}
}

func TestCheckReportsWhatItCouldNotAskOnceTheTimeIsUp(t *testing.T) {
	env := simtest.Start(t, sim.Options{}, 0)
	cfg, err := config.Parse("phoenix.yaml", []byte("groups: [{name: web, count: 1, image: {name: gold}, flavor: m1.small, networks: [private]}]"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep := preflight.Check(ctx, cfg, env.Cloud.Services(), env.Cloud)
	if len(rep.Unresolved) != 3 || !strings.Contains(rep.Unresolved[0].Problem, "context canceled") {
		t.Fatalf("a check out of time reports %+v, want image, flavor and network unresolved for it", rep.Unresolved)
	}
}
