package controller

import (
	"fmt"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// Chaos seed 118: RegionTwo came back with two old servers that serve,
// RegionOne held all four of the group on the new image. RegionOne's
// round deleted its two surplus servers, but told the others it still
// served four; RegionTwo's next round counted them, took that capacity
// for surplus RegionOne would give up, and deleted its second old
// server: two of four served, below the floor of three. A location's
// round now leaves behind what it serves after its deletes.
func TestPlacedRoundsSpendOneBudget(t *testing.T) {
	cfg, err := config.Parse("t.yaml", []byte("groups:\n  - {name: web, count: 4, image: {name: gold}, flavor: f, networks: [n], rollout: {max_surge: 1, max_unavailable: 1}}\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := NewPlaced(cfg.Groups[0], []Location{{Name: "RegionOne", Weight: 3}, {Name: "RegionTwo", Weight: 2}}, time.Minute, nil, nil, Options{})
	a, b := p.locs[0], p.locs[1]
	a.view.Listed, a.view.Servers, a.view.Serving = true, 4, 4
	b.view.Listed, b.view.Servers, b.view.Serving, b.view.Pending = true, 2, 2, 2
	now := time.Now()
	listed := func(prefix string, n int) []provisioner.Server {
		var out []provisioner.Server
		for i := range n {
			out = append(out, provisioner.Server{ID: fmt.Sprintf("%s%d", prefix, i), Status: provisioner.StatusActive})
		}
		return out
	}
	// round is a location's decision: its servers all serve, and the
	// first del of them are deleted.
	round := func(prefix string, n, del, old int) plan.Decision {
		var d plan.Decision
		for i := range n {
			c := plan.Classified{Server: plan.Server{ID: fmt.Sprintf("%s%d", prefix, i)}, Available: true}
			d.Servers = append(d.Servers, c)
			if i < del {
				d.Deletes = append(d.Deletes, plan.Delete{Server: c})
			}
		}
		d.Status.Old = old
		return d
	}

	if t1, _ := p.place(a, listed("a", 4), 0, now); t1.Count != 2 || t1.MaxUnavailable != 0 {
		t.Fatalf("RegionOne with its surplus: %+v, want count 2 and no unavailability", t1)
	}
	// Until its round ends, the others count RegionOne without what it
	// may give up; after, with what it serves after its deletes.
	if a.view.Serving != 2 {
		t.Errorf("RegionOne planning to give up 2 of 4: the others count %d serving, want 2", a.view.Serving)
	}
	p.roundEnded(a, round("a", 4, 2, 0), nil)
	if a.view.Serving != 2 {
		t.Errorf("RegionOne deleted 2 of 4: the others count %d serving, want 2", a.view.Serving)
	}
	t2, _ := p.place(b, listed("b", 2), 0, now)
	if t2.MaxUnavailable != 1 {
		t.Fatalf("RegionTwo back with two old servers: %+v, want one to go (4 serving, floor 3)", t2)
	}
	if b.view.Serving != 1 {
		t.Errorf("RegionTwo may take one of 2 out: the others count %d serving, want 1", b.view.Serving)
	}
	p.roundEnded(b, round("b", 2, 1, 2), nil)
	// Two serve in RegionOne, one in RegionTwo: the floor; nothing more
	// may go.
	if t3, _ := p.place(b, listed("b", 1), 0, now); t3.MaxUnavailable != 0 || t3.Count < 1 {
		t.Errorf("RegionTwo's next round: %+v, want its server kept and no unavailability (3 serving, floor 3)", t3)
	}
	if t4, _ := p.place(a, listed("a", 2), 0, now); t4.MaxUnavailable != 0 || t4.Count < 2 {
		t.Errorf("RegionOne's next round: %+v, want its 2 kept and no unavailability", t4)
	}
}
