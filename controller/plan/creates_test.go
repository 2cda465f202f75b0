package plan

import (
	"strings"
	"testing"
)

func TestPickZonesSpreads(t *testing.T) {
	current := []Classified{{Server: Server{Zone: "az1"}}, {Server: Server{Zone: "az1"}}, {Server: Server{Zone: "az2"}}}
	got := pickZones([]string{"az1", "az2", "az3"}, current, 4)
	want := []string{"az3", "az2", "az3", "az1"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("zones = %v, want %v", got, want)
	}
}

func TestCreates(t *testing.T) {
	cases := []struct {
		name       string
		target     Target
		fleet      string
		maxCurrent int
		inPlace    int
		want       int
	}{
		{"all missing, room for all", target(3, 1, 0), "", 3, 0, 3},
		{"the surge bounds them", target(4, 1, 0), "oooo", 4, 0, 1},
		{"every server that exists counts, deleting ones too", target(3, 1, 0), "ooo" + "d", 3, 0, 0},
		{"the canary bounds them", target(4, 4, 0), "oooo", 1, 0, 1},
		{"a server rebuilt in place needs none", target(3, 0, 1), "ooo", 3, 3, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := Decision{}
			for _, s := range fleet(tc.fleet) {
				d.Servers = append(d.Servers, classify(tc.target, s, t0))
			}
			g := d.sort(tc.target, nil, t0)
			g.inPlace = tc.inPlace
			d.creates(tc.target, g, tc.maxCurrent)
			if len(d.Creates) != tc.want {
				t.Errorf("%d creates, want %d", len(d.Creates), tc.want)
			}
		})
	}
}
