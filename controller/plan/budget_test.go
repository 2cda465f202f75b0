package plan

import "testing"

func TestAvailabilityBudget(t *testing.T) {
	cases := []struct {
		name     string
		target   Target
		fleet    string
		inFlight []InFlight
		want     int
	}{
		{"nothing above the floor", target(3, 1, 0), "ooo", nil, 0},
		{"a replacement serving frees one", target(3, 1, 0), "oooc", nil, 1},
		{"max_unavailable frees one more", target(3, 1, 1), "ooo", nil, 1},
		{"health unknown is not counted on", target(3, 1, 0), "OOOc", nil, -2},
		{"a handover in flight costs its unit", target(3, 1, 1), "ooc", []InFlight{{Volume: "v", From: "o00", To: "c02"}}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := tc.target
			tg.InFlight = tc.inFlight
			d := Decision{}
			for _, s := range fleet(tc.fleet) {
				d.Servers = append(d.Servers, classify(tg, s, t0))
			}
			g := d.sort(tg, nil, t0)
			if got := availabilityBudget(tg, g, d.Status.Available); got != tc.want {
				t.Errorf("budget %d, want %d", got, tc.want)
			}
		})
	}
}

func TestCost(t *testing.T) {
	tg := target(3, 1, 0)
	for _, tc := range []struct {
		letter   byte
		budget   int
		wantCost int
		wantOK   bool
	}{
		{'o', 1, 1, true},  // serving: a unit
		{'o', 0, 0, false}, // serving, no budget
		{'u', 0, 0, true},  // known to serve nothing: free
		{'b', -1, 0, true}, // not ACTIVE: free
		{'O', 0, 0, true},  // unknown: allowed while the floor holds
		{'O', -1, 0, false},
	} {
		c := classify(tg, fleet(string(tc.letter))[0], t0)
		if n, ok := cost(c, tc.budget); ok != tc.wantOK || ok && n != tc.wantCost {
			t.Errorf("%c with budget %d: cost %d ok %v, want %d %v", tc.letter, tc.budget, n, ok, tc.wantCost, tc.wantOK)
		}
	}
}
