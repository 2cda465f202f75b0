package plan

import (
	"fmt"
	"sort"
	"time"
)

// Snapshot is one backup Phoenix took (a server's pre-delete image, or a
// volume's snapshot), as retention sees it.
type Snapshot struct {
	ID      string
	Created time.Time
}

// Expired is a snapshot retention deletes, and why.
type Expired struct {
	ID, Why string
}

// Retain picks, from one series of finished snapshots (a group's server
// snapshots, or one volume's), the ones to delete: beyond the newest keep,
// or older than maxAge — the newest is always kept. Zero keep or maxAge
// sets no such limit.
func Retain(snaps []Snapshot, keep int, maxAge time.Duration, now time.Time) []Expired {
	snaps = append([]Snapshot(nil), snaps...)
	sort.SliceStable(snaps, func(i, j int) bool { return snaps[i].Created.After(snaps[j].Created) })
	var out []Expired
	for i, s := range snaps {
		switch {
		case keep > 0 && i >= keep:
			out = append(out, Expired{ID: s.ID, Why: fmt.Sprintf("beyond backup.keep %d", keep)})
		case maxAge > 0 && i > 0 && now.Sub(s.Created) > maxAge:
			out = append(out, Expired{ID: s.ID, Why: fmt.Sprintf("older than backup.max_age %s", maxAge)})
		}
	}
	return out
}
