package plan

import (
	"strings"
	"testing"
	"time"
)

func TestRetain(t *testing.T) {
	snaps := func(ages ...time.Duration) []Snapshot {
		var out []Snapshot
		for i, a := range ages {
			out = append(out, Snapshot{ID: string(rune('a' + i)), Created: t0.Add(-a)})
		}
		return out
	}
	cases := []struct {
		name   string
		snaps  []Snapshot
		keep   int
		maxAge time.Duration
		want   string // IDs deleted, in order
		why    string
	}{
		{"within keep", snaps(time.Hour, 2*time.Hour), 3, 0, "", ""},
		{"beyond keep: the oldest go", snaps(3*time.Hour, time.Hour, 2*time.Hour), 2, 0, "a", "beyond backup.keep 2"},
		{"older than max_age", snaps(time.Hour, 48*time.Hour), 0, 24 * time.Hour, "b", "older than backup.max_age 24h0m0s"},
		{"the newest is kept however old", snaps(72*time.Hour, 48*time.Hour), 0, 24 * time.Hour, "a", "older than backup.max_age"},
		{"no limits keep all", snaps(time.Hour, 100*time.Hour), 0, 0, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var ids []string
			var whys []string
			for _, e := range Retain(tc.snaps, tc.keep, tc.maxAge, t0) {
				ids, whys = append(ids, e.ID), append(whys, e.Why)
			}
			if strings.Join(ids, "") != tc.want || tc.why != "" && !strings.Contains(strings.Join(whys, ";"), tc.why) {
				t.Errorf("deleted %v (%v), want %q (%q)", ids, whys, tc.want, tc.why)
			}
		})
	}
}
