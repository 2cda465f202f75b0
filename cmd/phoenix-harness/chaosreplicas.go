package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Replicas, drawn into a seed: a third of the seeds run their fleet with
// two or three `phoenix daemon` replicas sharing the groups through an
// etcd cluster of one or three members that the harness runs itself
// (chaosetcd.go). The schedule kills replicas (SIGKILL, started again at
// once or later) and, with three members, stops etcd members (a quorum
// lost for as long as the schedule says, in some seeds). The monitor's
// invariants stay as they are; chaosterms.go adds one of the replicas'
// own: no two act on one group at once.

// etcdPrefix is the prefix of a seed's keys.
const etcdPrefix = "/phoenix-chaos/"

// maxQuorumLoss is the longest a schedule leaves etcd without quorum.
const maxQuorumLoss = 1500 * time.Millisecond

// replicaPlan is the replicated part of a seed's draw; replicas 0 runs
// one daemon, without etcd.
type replicaPlan struct {
	replicas, members int
	leaseTTL          time.Duration
	kills             []replicaKill
	outages           []memberOutage
	// quorumLoss is how long the outages leave etcd without quorum
	// (between a second member's stop and the first one's restart).
	quorumLoss time.Duration
}

// replicaKill is a SIGKILL of one replica, started again down later (at
// once for 0).
type replicaKill struct {
	at      time.Duration
	replica int
	down    time.Duration
}

// memberOutage stops one etcd member for down.
type memberOutage struct {
	at     time.Duration
	member int
	down   time.Duration
}

// replicaID names replica i (its --replica-id, kept across its restarts,
// as an operator's --replica-id is).
func replicaID(i int) string { return fmt.Sprintf("r%d", i+1) }

// drawReplicas draws from a stream of its own, so that the fleets,
// faults and steering of every seed stay what they were. daemonKills are
// the times of the seed's daemon kills (the main stream's): with replicas
// each kills one replica and starts it again at once. It adds one or two
// kills of a replica started again later — before its lease ends, or
// after another took its groups — and, with three members, up to two
// member outages. At least one replica is up at every moment, so that
// events and the monitor's questions have somewhere to go.
func drawReplicas(seed uint64, phase time.Duration, daemonKills []time.Duration) replicaPlan {
	rng := rand.New(rand.NewPCG(seed, 0x4e9c1))
	var p replicaPlan
	if rng.IntN(3) != 0 || !draws[drawReplicasClass] {
		return p
	}
	p.replicas = 2 + rng.IntN(2)
	p.members = []int{1, 3}[rng.IntN(2)]
	p.leaseTTL = time.Duration(2+rng.IntN(3)) * time.Second
	at := func() time.Duration { return time.Duration(rng.Int64N(int64(phase))) }

	var kills []replicaKill
	for _, t := range daemonKills {
		kills = append(kills, replicaKill{at: t})
	}
	for range 1 + rng.IntN(2) {
		kills = append(kills, replicaKill{at: at(), down: 200*time.Millisecond + time.Duration(rng.Int64N(int64(3*p.leaseTTL/2)))})
	}
	slices.SortStableFunc(kills, func(a, b replicaKill) int { return int(a.at - b.at) })
	downUntil := make([]time.Duration, p.replicas) // a replica is down until then
	for _, k := range kills {
		var up []int
		for i, until := range downUntil {
			if until <= k.at {
				up = append(up, i)
			}
		}
		if len(up) < 2 {
			continue // it would leave no replica up
		}
		k.replica = up[rng.IntN(len(up))]
		if k.down > 0 {
			downUntil[k.replica] = k.at + k.down
		}
		p.kills = append(p.kills, k)
	}

	if p.members == 3 {
		quorumLoss := rng.IntN(3) == 0
		for i := range rng.IntN(3) {
			o := memberOutage{at: at(), member: rng.IntN(3), down: 300*time.Millisecond + time.Duration(rng.Int64N(int64(2*time.Second)))}
			if i == 1 {
				first := p.outages[0]
				end := first.at + first.down
				if o.member == first.member {
					o.member = (o.member + 1 + rng.IntN(2)) % 3
				}
				switch {
				case o.at >= end || o.at+o.down <= first.at:
				case !quorumLoss:
					o.at = end + 200*time.Millisecond // after the first is back
				default:
					// Both down from the later stop to the earlier restart:
					// at most maxQuorumLoss.
					if o.at < first.at {
						o.at, o.down = first.at, o.down-(first.at-o.at)
					}
					if lost := min(end, o.at+o.down) - o.at; lost > maxQuorumLoss {
						o.down = maxQuorumLoss
					}
					p.quorumLoss = min(end, o.at+o.down) - o.at
				}
			}
			p.outages = append(p.outages, o)
		}
	}
	return p
}

// describe says what a seed runs its fleet with, for its header and its
// failure.
func (p replicaPlan) describe() string {
	if p.replicas == 0 {
		return "one daemon"
	}
	s := fmt.Sprintf("replicas: %d, etcd members: %d, lease_ttl %s", p.replicas, p.members, p.leaseTTL)
	if p.quorumLoss > 0 {
		s += fmt.Sprintf(", etcd without quorum for %s", p.quorumLoss.Round(time.Millisecond))
	}
	return s
}

// steps are the plan's kills, restarts and outages.
func (p replicaPlan) steps() []chaosStep {
	var steps []chaosStep
	for _, k := range p.kills {
		id := replicaID(k.replica)
		if k.down == 0 {
			steps = append(steps, chaosStep{at: k.at, what: fmt.Sprintf("SIGKILL replica %s and start it again", id), do: func(ctx context.Context, r *seedRun) error {
				return r.killReplica(ctx, k.replica, true)
			}})
			continue
		}
		steps = append(steps,
			chaosStep{at: k.at, what: fmt.Sprintf("SIGKILL replica %s (down for %s)", id, k.down.Round(time.Millisecond)), do: func(ctx context.Context, r *seedRun) error {
				return r.killReplica(ctx, k.replica, false)
			}},
			chaosStep{at: k.at + k.down, what: fmt.Sprintf("start replica %s again", id), do: func(_ context.Context, r *seedRun) error {
				return r.startDaemon(k.replica)
			}})
	}
	for _, o := range p.outages {
		steps = append(steps,
			chaosStep{at: o.at, what: fmt.Sprintf("stop etcd member m%d (down for %s)", o.member, o.down.Round(time.Millisecond)), do: func(_ context.Context, r *seedRun) error {
				r.etcd.stop(o.member)
				return nil
			}},
			chaosStep{at: o.at + o.down, what: fmt.Sprintf("start etcd member m%d again", o.member), do: func(_ context.Context, r *seedRun) error {
				return r.etcd.restart(o.member)
			}})
	}
	return steps
}

// coordinationYAML is the controller's coordination block for the plan,
// in YAML flow style ("" for one daemon).
func (p replicaPlan) coordinationYAML(endpoints []string) string {
	if p.replicas == 0 {
		return ""
	}
	return fmt.Sprintf(", coordination: {etcd: {endpoints: [%s], prefix: %s, lease_ttl: %s}}", strings.Join(endpoints, ", "), etcdPrefix, p.leaseTTL)
}
