package plan

import "testing"

func TestHandovers(t *testing.T) {
	holding := func(spec string, vols ...string) []Classified {
		var out []Classified
		for i, s := range fleet(spec) {
			if i < len(vols) && vols[i] != "" {
				s.StatefulVolumes = []string{vols[i]}
			}
			out = append(out, classify(target(3, 1, 1), s, t0))
		}
		return out
	}
	// sick is an old server that fails its check, holding v1.
	sick := func(health Health) []Classified {
		s := fleet("o")[0]
		s.StatefulVolumes, s.Health = []string{"v1"}, health
		return []Classified{classify(target(3, 1, 1), s, t0)}
	}
	cases := []struct {
		name     string
		old      []Classified
		current  []Classified
		free     []string
		inFlight []InFlight
		budget   int
		want     []string // volume:from>to
	}{
		{name: "an old server's volume goes to a new one", old: holding("o", "v1"), current: holding("c"), budget: 1, want: []string{"v1:o00>c00"}},
		{name: "no budget: nothing stops", old: holding("o", "v1"), current: holding("c"), budget: 0},
		{name: "an old server failing its check stops at no cost", old: sick(Unhealthy), current: holding("c"), budget: -5, want: []string{"v1:o00>c00"}},
		{name: "one of unknown health stops while the floor holds", old: sick(HealthUnknown), current: holding("c"), budget: 0, want: []string{"v1:o00>c00"}},
		{name: "one of unknown health does not below the floor", old: sick(HealthUnknown), current: holding("c"), budget: -1},
		{name: "a free volume costs nothing", current: holding("c"), free: []string{"v9"}, budget: 0, want: []string{"v9:>c00"}},
		{name: "a new server booting takes none", old: holding("o", "v1"), current: holding("b"), budget: 1},
		{name: "a new server failing its check takes none", old: holding("o", "v1"), current: holding("u"), budget: 1},
		{name: "a new server holding a volume takes none", old: holding("o", "v1"), current: holding("c", "v2"), budget: 1},
		{name: "servers busy with a handover take no other", old: holding("o", "v1"), current: holding("c"),
			inFlight: []InFlight{{Volume: "v5", From: "x", To: "c00"}}, budget: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := target(3, 1, 1)
			tg.Stateful, tg.FreeVolumes, tg.InFlight = true, tc.free, tc.inFlight
			budget := tc.budget
			var got []string
			for _, h := range handovers(tg, tc.old, tc.current, &budget) {
				got = append(got, h.Volume+":"+h.From.ID+">"+h.To.ID)
			}
			if len(got) != len(tc.want) || len(got) > 0 && got[0] != tc.want[0] {
				t.Errorf("handovers %v, want %v", got, tc.want)
			}
		})
	}
}
