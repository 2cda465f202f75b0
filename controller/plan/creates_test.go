package plan

import (
	"strings"
	"testing"
	"time"
)

func TestPickZonesSpreads(t *testing.T) {
	current := []Classified{{Server: Server{Zone: "az1"}}, {Server: Server{Zone: "az1"}}, {Server: Server{Zone: "az2"}}}
	got := pickZones([]string{"az1", "az2", "az3"}, nil, current, 4)
	want := []string{"az3", "az2", "az3", "az1"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("zones = %v, want %v", got, want)
	}
}

// TestZonesAvoidFailures places new servers of a group over az1..az3 that
// holds two current servers in az1 and one in az2.
func TestZonesAvoidFailures(t *testing.T) {
	ago := func(d time.Duration) time.Time { return t0.Add(-d) }
	inZone := func(zone, status string) Server {
		return Server{ID: "s-" + zone + status, Status: status, Zone: zone, ImageID: "new", Revision: "rev",
			Created: ago(time.Hour), Health: Healthy, HealthySince: ago(time.Hour)}
	}
	cases := []struct {
		name     string
		failures map[string]time.Time
		avoidFor time.Duration
		extra    []Server // beside the three current servers
		n        int
		want     string // the zones of the creates
		avoiding string
		since    time.Time
	}{
		{name: "no failures: fewest servers first, as ever",
			avoidFor: 10 * time.Minute, n: 4, want: "az3,az2,az3,az1"},
		{name: "one zone failing gets none",
			failures: map[string]time.Time{"az3": ago(2 * time.Minute)}, avoidFor: 10 * time.Minute,
			n: 3, want: "az2,az1,az2", avoiding: "az3", since: ago(2 * time.Minute)},
		{name: "the failure expired",
			failures: map[string]time.Time{"az3": ago(10 * time.Minute)}, avoidFor: 10 * time.Minute,
			n: 4, want: "az3,az2,az3,az1"},
		{name: "every zone failing: the one that failed longest ago",
			failures: map[string]time.Time{"az1": ago(time.Minute), "az2": ago(5 * time.Minute), "az3": ago(3 * time.Minute)},
			avoidFor: 10 * time.Minute, n: 2, want: "az2,az2", avoiding: "az1,az3", since: ago(time.Minute)},
		{name: "a failed server in ERROR is a failure of its zone now",
			avoidFor: 10 * time.Minute, extra: []Server{inZone("az3", StatusError)},
			n: 2, want: "az2,az1", avoiding: "az3", since: t0},
		{name: "a server in ERROR renews an expired failure",
			failures: map[string]time.Time{"az3": ago(time.Hour)}, avoidFor: 10 * time.Minute, extra: []Server{inZone("az3", StatusError)},
			n: 1, want: "az2", avoiding: "az3", since: t0},
		{name: "a server in ERROR makes its zone the newest failure",
			failures: map[string]time.Time{"az1": ago(time.Minute), "az2": ago(5 * time.Minute)},
			avoidFor: 10 * time.Minute, extra: []Server{inZone("az2", StatusError), inZone("az3", StatusError)},
			n: 1, want: "az1", avoiding: "az2,az3", since: t0},
		{name: "a server still booting is no failure",
			avoidFor: 10 * time.Minute, extra: []Server{inZone("az3", StatusBuild)},
			n: 2, want: "az2,az3"},
		{name: "a zone not listed is ignored",
			failures: map[string]time.Time{"az9": ago(time.Minute)}, avoidFor: 10 * time.Minute,
			n: 1, want: "az3"},
		{name: "ZoneAvoid 0 avoids nothing",
			failures: map[string]time.Time{"az3": ago(time.Second)}, extra: []Server{inZone("az2", StatusError)},
			n: 1, want: "az3"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := target(10, 10, 0)
			tg.Zones = []string{"az1", "az2", "az3"}
			tg.ZoneFailures, tg.ZoneAvoid = tc.failures, tc.avoidFor
			servers := append([]Server{inZone("az1", StatusActive), inZone("az1", StatusActive), inZone("az2", StatusActive)}, tc.extra...)
			var d Decision
			for _, s := range servers {
				d.Servers = append(d.Servers, classify(tg, s, t0))
			}
			g := d.sort(tg, nil, t0)
			d.creates(tg, g, len(g.current)+tc.n, t0)
			var got []string
			for _, c := range d.Creates {
				got = append(got, c.Zone)
			}
			if strings.Join(got, ",") != tc.want {
				t.Errorf("zones %v, want %s", got, tc.want)
			}
			if d.Status.Avoiding != tc.avoiding || !d.Status.AvoidingSince.Equal(tc.since) {
				t.Errorf("avoiding %q since %v, want %q since %v", d.Status.Avoiding, d.Status.AvoidingSince, tc.avoiding, tc.since)
			}
		})
	}
}

// TestPlanAvoidsTheZoneOfAFailedBoot: the replacement of a server that
// failed in az1 goes elsewhere, although az1 now has the fewest servers.
func TestPlanAvoidsTheZoneOfAFailedBoot(t *testing.T) {
	tg := target(3, 1, 0)
	tg.Zones, tg.ZoneAvoid = []string{"az1", "az2", "az3"}, 10*time.Minute
	servers := fleet("ecc")
	for i, z := range []string{"az1", "az2", "az3"} {
		servers[i].Zone = z
	}
	d := Plan(tg, servers, t0)
	if len(d.Creates) != 1 || d.Creates[0].Zone != "az2" {
		t.Fatalf("creates %+v, want one in az2", d.Creates)
	}
	if got := d.Status.AvoidingText(t0.Add(2 * time.Minute)); got != "avoiding zone az1: creates failed there 2m ago" {
		t.Errorf("avoiding text %q", got)
	}
}

func TestAvoidingText(t *testing.T) {
	cases := []struct {
		status Status
		ago    time.Duration
		want   string
	}{
		{Status{}, 0, ""},
		{Status{Avoiding: "az1"}, 42 * time.Second, "avoiding zone az1: creates failed there 42s ago"},
		{Status{Avoiding: "az1,az3"}, 150 * time.Second, "avoiding zones az1, az3: creates failed there 3m ago"},
		{Status{Avoiding: "az1"}, 0, "avoiding zone az1: creates failed there 0s ago"},
	}
	for _, tc := range cases {
		tc.status.AvoidingSince = t0
		if got := tc.status.AvoidingText(t0.Add(tc.ago)); got != tc.want {
			t.Errorf("%+v after %s: %q, want %q", tc.status, tc.ago, got, tc.want)
		}
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
			d.creates(tc.target, g, tc.maxCurrent, t0)
			if len(d.Creates) != tc.want {
				t.Errorf("%d creates, want %d", len(d.Creates), tc.want)
			}
		})
	}
}
