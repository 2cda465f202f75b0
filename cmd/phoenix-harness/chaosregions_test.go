package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestShares splits as plan.Place does with every location up.
func TestShares(t *testing.T) {
	for _, tc := range []struct {
		count   int
		weights []int
		want    []int
	}{
		{3, []int{1, 2}, []int{1, 2}},
		{4, []int{1, 1}, []int{2, 2}},
		{5, []int{1, 1}, []int{3, 2}},
		{5, []int{2, 3}, []int{2, 3}},
		{2, []int{3, 1}, []int{2, 0}},
		{6, []int{3, 2}, []int{4, 2}},
	} {
		if got := shares(tc.count, tc.weights); !slices.Equal(got, tc.want) {
			t.Errorf("shares(%d, %v) = %v, want %v", tc.count, tc.weights, got, tc.want)
		}
	}
}

// TestDrawRegions: about one seed in four draws two regions, each with a
// placed group and an outage, some outlasting failover_after; the draw
// replays, and a seed of one region draws as before.
func TestDrawRegions(t *testing.T) {
	drawing(t, drawRegionsClass)
	n, long, alone := 0, 0, 0
	kinds := map[string]int{}
	for seed := uint64(1); seed <= 400; seed++ {
		p := drawRegions(seed, 2*time.Second)
		if p == nil {
			continue
		}
		n++
		if len(p.placed) == 0 || len(p.outages) == 0 {
			t.Fatalf("seed %d: %s", seed, p.describe())
		}
		if p.alone {
			alone++
		}
		for _, o := range p.outages {
			kinds[o.region+" "+o.kind]++
			if o.hold > failoverAfter {
				long++
			}
			if o.region == regionOne && !p.alone {
				t.Errorf("seed %d: the primary's compute fails beside ordinary groups", seed)
			}
		}
		if d := p.describe(); !strings.HasPrefix(d, "regions: 2, placed groups") || d != drawRegions(seed, 2*time.Second).describe() {
			t.Errorf("seed %d: %q does not replay", seed, d)
		}
		_, groups, _, _, _, _ := chaosScenario(seed)
		if ordinary(groups) != nil && p.alone {
			t.Errorf("seed %d: ordinary groups beside placed ones drawn alone", seed)
		}
	}
	if n < 70 || n > 130 {
		t.Errorf("%d of 400 seeds draw two regions, want about 100", n)
	}
	if long == 0 || alone == 0 || len(kinds) != 3 {
		t.Errorf("%d long outages, %d seeds placed alone, outages %v", long, alone, kinds)
	}
	t.Logf("%d of 400 seeds draw two regions (%d placed alone), %d outages longer than failover_after, %v", n, alone, long, kinds)
}

// drawing turns an optional seed class on for the test.
func drawing(t *testing.T, class string) {
	t.Helper()
	was := draws[class]
	draws[class] = true
	t.Cleanup(func() { draws[class] = was })
}
