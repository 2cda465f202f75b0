package main

import (
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// TestDrawStages: about one seed in five draws two stages, never beside
// placed groups drawn alone; the draw replays, and its groups join the
// seed's fleet.
func TestDrawStages(t *testing.T) {
	drawing(t, drawStagesClass)
	n, failing, refused := 0, 0, 0
	for seed := uint64(1); seed <= 400; seed++ {
		p := drawStages(seed, drawRegions(seed, 2*time.Second))
		if p == nil {
			continue
		}
		n++
		if p.staging.fails() {
			failing++
		}
		if p.refusals > 0 {
			refused++
		}
		if p.prod.fails() || p.prod.stage.follows != p.staging.name || p.staging.stage.after < 6*time.Second {
			t.Errorf("seed %d: %s", seed, p.describe())
		}
		if d := p.describe(); d != drawStages(seed, drawRegions(seed, 2*time.Second)).describe() {
			t.Errorf("seed %d: %q does not replay", seed, d)
		}
		_, groups, _, _, _, _ := chaosScenario(seed)
		stages := 0
		for _, g := range groups {
			if g.stage != nil {
				stages++
			}
		}
		if stages != 2 {
			t.Errorf("seed %d: %d stage groups in the fleet, want 2", seed, stages)
		}
	}
	if n < 50 || n > 110 {
		t.Errorf("%d of 400 seeds draw two stages, want about 80", n)
	}
	if failing == 0 || failing == n || refused == 0 {
		t.Errorf("%d of %d stage seeds fail on staging, %d see Glance refuse the tag", failing, n, refused)
	}
	t.Logf("%d of 400 seeds draw two stages: %d with an image failing on staging, %d with the tag refused at first", n, failing, refused)
}

// TestStageJudge: prod's first server of an image is judged against the
// healthy spells of staging's servers, from the cloud's timestamps.
func TestStageJudge(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	// server is a staging server of image X whose application answered
	// at from.
	server := func(id, group, image string, from float64) sim.Server {
		return sim.Server{ID: id, ImageID: image, Metadata: map[string]string{controller.MetaGroup: group}, Tags: []string{controller.GroupTag(group)},
			ActiveAt: at(from - 0.5), HealthDelay: 500 * time.Millisecond, Created: at(from - 1), Healthy: true}
	}
	sick := func(s sim.Server) sim.Server { s.Healthy = false; return s }
	prodOn := func(id, image string, created float64) sim.Server {
		s := server(id, "prod", image, created+1)
		s.Created = at(created)
		return s
	}
	type sample struct {
		at      float64
		servers []sim.Server
	}
	for _, tc := range []struct {
		name    string
		samples []sample
		flapped []string
		want    string // "" for none
	}{
		{name: "prod after staging's whole count served for after", samples: []sample{
			{10, []sim.Server{server("a", "staging", "X", 1), server("b", "staging", "X", 2)}},
			{13, []sim.Server{server("a", "staging", "X", 1), server("b", "staging", "X", 2), prodOn("p", "X", 12.5)}},
		}},
		{name: "prod before the wait ran out", samples: []sample{
			{10, []sim.Server{server("a", "staging", "X", 1), server("b", "staging", "X", 2), prodOn("p", "X", 11.9)}},
		}, want: "for 9.9s at most"},
		{name: "a server sick in between breaks the spell", samples: []sample{
			{4, []sim.Server{server("a", "staging", "X", 1), sick(server("b", "staging", "X", 2))}},
			{5, []sim.Server{server("a", "staging", "X", 1), server("c", "staging", "X", 4.5)}},
			{13, []sim.Server{server("a", "staging", "X", 1), server("c", "staging", "X", 4.5), prodOn("p", "X", 12)}},
		}, want: "for 7.5s at most"},
		{name: "a flap of the chaos does not", samples: []sample{
			{4, []sim.Server{server("a", "staging", "X", 1), sick(server("b", "staging", "X", 2))}},
			{13, []sim.Server{server("a", "staging", "X", 1), server("b", "staging", "X", 2), prodOn("p", "X", 12.5)}},
		}, flapped: []string{"b"}},
		{name: "a server gone breaks it, its replacement starts anew", samples: []sample{
			{4, []sim.Server{server("a", "staging", "X", 1), server("b", "staging", "X", 2)}},
			{5, []sim.Server{server("a", "staging", "X", 1)}},
			{6, []sim.Server{server("a", "staging", "X", 1), server("c", "staging", "X", 5.5)}},
			{16, []sim.Server{server("a", "staging", "X", 1), server("c", "staging", "X", 5.5), prodOn("p", "X", 15)}},
		}, want: "for 9.5s at most"},
		{name: "an image staging never ran", samples: []sample{
			{4, []sim.Server{server("a", "staging", "X", 1), server("b", "staging", "X", 2), prodOn("p", "Y", 3)}},
		}, want: "image Y"},
		{name: "the start image is promoted already", samples: []sample{
			{4, []sim.Server{prodOn("p", "initial", 3)}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := &stageJudge{staging: "staging", prod: "prod", count: 2, after: 10 * time.Second, initial: "initial",
				flapped: map[string]bool{}, spells: map[string]*spell{}, created: map[string]time.Time{}}
			for _, id := range tc.flapped {
				j.flap(id)
			}
			for _, s := range tc.samples {
				j.observe(s.servers, at(s.at))
			}
			got := strings.Join(j.violations(), "\n")
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("violations %q, want %q", got, tc.want)
			}
		})
	}
}
