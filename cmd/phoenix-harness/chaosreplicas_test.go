package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// TestReplicaDraw holds the replicas' draw to what chaos promises: a
// third of the seeds or so, two or three replicas on one or three etcd
// members, a lease of 2-4 s, a replica up at every moment, member outages
// only with three members and a quorum lost no longer than the plan
// says; and the seeds without replicas keep their daemon kills.
func TestReplicaDraw(t *testing.T) {
	drawing(t, drawReplicasClass)
	const seeds = 600
	replicated := 0
	for seed := uint64(1); seed <= seeds; seed++ {
		_, _, steps, phase, _, p := chaosScenario(seed)
		if _, _, _, _, _, again := chaosScenario(seed); again.describe() != p.describe() || len(again.kills) != len(p.kills) || len(again.outages) != len(p.outages) {
			t.Fatalf("seed %d: drawn twice, %s and %s", seed, p.describe(), again.describe())
		}
		count := func(prefix string) int {
			n := 0
			for _, s := range steps {
				if strings.HasPrefix(s.what, prefix) {
					n++
				}
			}
			return n
		}
		daemonKills := count("SIGKILL the daemon")
		if p.replicas == 0 {
			if len(p.kills) > 0 || len(p.outages) > 0 || p.describe() != "one daemon" {
				t.Errorf("seed %d: one daemon, yet %+v", seed, p)
			}
			continue
		}
		replicated++
		if daemonKills > 0 {
			t.Errorf("seed %d: %s, yet %d steps kill the daemon", seed, p.describe(), daemonKills)
		}
		// Every kill and outage is a step, and so is every restart that
		// comes later.
		later := 0
		for _, k := range p.kills {
			if k.down > 0 {
				later++
			}
		}
		if count("SIGKILL replica ") != len(p.kills) || count("start replica ") != later ||
			count("stop etcd member ") != len(p.outages) || count("start etcd member ") != len(p.outages) {
			t.Errorf("seed %d: the steps do not follow the plan %+v", seed, p)
		}
		if p.replicas < 2 || p.replicas > 3 || (p.members != 1 && p.members != 3) || p.leaseTTL < 2*time.Second || p.leaseTTL > 4*time.Second {
			t.Errorf("seed %d: %s", seed, p.describe())
		}
		if !strings.Contains(p.describe(), "replicas: ") || !strings.Contains(p.describe(), "etcd members: ") {
			t.Errorf("seed %d: described as %q", seed, p.describe())
		}
		// A replica up at every moment: at each kill (the moments a
		// replica goes down), one that no kill has down.
		for _, k := range p.kills {
			if k.at < 0 || k.at >= phase || k.down < 0 {
				t.Errorf("seed %d: kill %+v outside the phase %s", seed, k, phase)
			}
			down := map[int]bool{}
			for _, o := range p.kills {
				if o.at <= k.at && k.at < o.at+o.down || o.at == k.at {
					down[o.replica] = true
				}
			}
			if len(down) >= p.replicas {
				t.Errorf("seed %d: kill %+v leaves no replica up: %+v", seed, k, p.kills)
			}
		}
		if p.members == 1 && len(p.outages) > 0 {
			t.Errorf("seed %d: an outage of the only etcd member", seed)
		}
		var lost time.Duration
		if len(p.outages) == 2 {
			a, b := p.outages[0], p.outages[1]
			if a.member == b.member {
				t.Errorf("seed %d: two outages of member %d", seed, a.member)
			}
			lost = max(0, min(a.at+a.down, b.at+b.down)-max(a.at, b.at))
		}
		if lost != p.quorumLoss || lost > maxQuorumLoss {
			t.Errorf("seed %d: etcd without quorum for %s, the plan says %s (at most %s): %+v", seed, lost, p.quorumLoss, maxQuorumLoss, p.outages)
		}
	}
	if share := float64(replicated) / seeds; share < 0.25 || share > 0.42 {
		t.Errorf("%d of %d seeds draw replicas, want about a third", replicated, seeds)
	}
}

// TestJudgeTerms: a group's changes follow its terms, and what fencing
// allows — a step in flight at a handover, the HTTP client's resend —
// is no violation.
func TestJudgeTerms(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ch := func(ms int, replica, what string, status int) groupChange {
		return groupChange{at: at(ms), replica: replica, what: what, status: status}
	}
	ab := []term{{owner: "r1", start: at(0), end: at(1000)}, {owner: "r2", start: at(1200)}}
	for _, tc := range []struct {
		name    string
		terms   []term
		changes []groupChange
		want    string // "" or a part of the violation
	}{
		{"a handover", ab, []groupChange{ch(10, "r1", "DELETE /a", 204), ch(900, "r1", "create server x", 202), ch(1300, "r2", "DELETE /b", 204)}, ""},
		{"back to the first owner", append(ab[:1:1], term{owner: "r2", start: at(1200), end: at(5000)}, term{owner: "r1", start: at(5100)}),
			[]groupChange{ch(10, "r1", "DELETE /a", 204), ch(1300, "r2", "DELETE /b", 204), ch(6000, "r1", "DELETE /c", 204)}, ""},
		{"a step in flight at the handover", ab, []groupChange{ch(10, "r1", "DELETE /a", 204), ch(1300, "r2", "DELETE /b", 204), ch(1400, "r1", "PUT /m", 200)}, ""},
		{"the client's resend", ab, []groupChange{ch(990, "r1", "DELETE /a", 503), ch(1300, "r2", "DELETE /b", 204), ch(1000+int(termSlack/time.Millisecond)+500, "r1", "DELETE /a", 204)}, ""},
		{"no resend of a request answered", ab, []groupChange{ch(990, "r1", "DELETE /a", 204), ch(1300, "r2", "DELETE /b", 204), ch(1000+int(termSlack/time.Millisecond)+500, "r1", "DELETE /a", 404)},
			"replica r1 sent DELETE /a"},
		{"both act at once", ab, []groupChange{ch(10, "r1", "DELETE /a", 204), ch(1300, "r2", "DELETE /b", 204), ch(1000+int(termSlack/time.Millisecond)+100, "r1", "create server y", 202)},
			"after its term ended, while replica r2 held the group and had acted on it (DELETE /b"},
		{"a replica that never held the group", ab, []groupChange{ch(10, "r3", "DELETE /a", 204)}, "replica r3 sent DELETE /a at"},
		{"a term whose end the watch missed ends at the next one's start", []term{{owner: "r1", start: at(0)}, {owner: "r2", start: at(1200)}},
			[]groupChange{ch(1300, "r2", "DELETE /b", 204), ch(1200+int(termSlack/time.Millisecond)+100, "r1", "DELETE /a", 204)}, "after its term ended"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := judgeTerms(tc.terms, tc.changes)
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("judged %q, want %q", got, tc.want)
			}
		})
	}
}

// TestChangesByGroup: the requests that change something, from a
// replica, go to the group of the server, pool or floating IP they name;
// creates come from the servers.
func TestChangesByGroup(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	const srv = "0f6b7c3e-1d2a-4b5c-8d9e-0a1b2c3d4e5f"
	known := map[string]knownServer{
		srv:   {group: "g1", name: "g1-a", createdBy: "phoenix-replica/r2 phoenix/dev gophercloud/v2", created: t0},
		"cli": {group: "g2", name: "g2-b", createdBy: "phoenix/dev gophercloud/v2", created: t0},
	}
	ua := "phoenix-replica/r1 phoenix/dev gophercloud/v2"
	reqs := []sim.Request{
		{Time: t0.Add(1), Service: "compute", Method: http.MethodDelete, Path: "/compute/v2.1/servers/" + srv, UserAgent: ua, Status: 204},
		{Time: t0.Add(2), Service: "compute", Method: http.MethodGet, Path: "/compute/v2.1/servers/" + srv, UserAgent: ua, Status: 200},
		{Time: t0.Add(3), Service: "compute", Method: http.MethodPut, Path: "/compute/v2.1/servers/" + srv + "/metadata", UserAgent: "phoenix/dev", Status: 200},
		{Time: t0.Add(4), Service: "load-balancer", Method: http.MethodPut, Path: "/load-balancer/v2/lbaas/pools/p2/members/m1", UserAgent: ua, Status: 200},
		{Time: t0.Add(5), Service: "network", Method: http.MethodPut, Path: "/networking/v2.0/floatingips/f3", UserAgent: ua, Status: 200},
		{Time: t0.Add(6), Service: "identity", Method: http.MethodPost, Path: "/identity/v3/auth/tokens", UserAgent: ua, Status: 201},
	}
	got := changesByGroup(reqs, known, map[string]string{"g2": "p2"}, map[string]string{"g3": "f3"})
	want := map[string]string{
		"g1": "r2 create server g1-a; r1 DELETE /compute/v2.1/servers/" + srv,
		"g2": "r1 PUT /load-balancer/v2/lbaas/pools/p2/members/m1",
		"g3": "r1 PUT /networking/v2.0/floatingips/f3",
	}
	if len(got) != len(want) {
		t.Errorf("groups %v, want %v", got, want)
	}
	for g, w := range want {
		var parts []string
		for _, c := range got[g] {
			parts = append(parts, c.replica+" "+c.what)
		}
		if s := strings.Join(parts, "; "); s != w {
			t.Errorf("group %s: %s, want %s", g, s, w)
		}
	}
}
