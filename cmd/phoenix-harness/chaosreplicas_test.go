package main

import (
	"strings"
	"testing"
	"time"
)

// TestReplicaDraw holds the replicas' draw to what chaos promises: a
// third of the seeds or so, two or three replicas on one or three etcd
// members, a lease of 2-4 s, a replica up at every moment, member outages
// only with three members and a quorum lost no longer than the plan
// says; and the seeds without replicas keep their daemon kills.
func TestReplicaDraw(t *testing.T) {
	const seeds = 600
	replicated := 0
	for seed := uint64(1); seed <= seeds; seed++ {
		_, _, steps, phase, _, p := chaosScenario(seed)
		if _, _, _, _, _, again := chaosScenario(seed); again.describe() != p.describe() || len(again.kills) != len(p.kills) || len(again.outages) != len(p.outages) {
			t.Fatalf("seed %d: drawn twice, %s and %s", seed, p.describe(), again.describe())
		}
		daemonKills := 0
		for _, s := range steps {
			if strings.HasPrefix(s.what, "SIGKILL the daemon") {
				daemonKills++
			}
		}
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
