package plan

import (
	"slices"
	"time"
)

// Location states, in the words status and notices use.
const (
	LocationUp = "up"
	// LocationFailing: its API or its creates fail, not yet for
	// FailoverAfter; it keeps its share.
	LocationFailing = "failing"
	// LocationDown: its share went to the others; nothing is created or
	// deleted there.
	LocationDown = "down"
	// LocationRetrying: down for its creates for FailoverAfter, it gets
	// its share back for FailoverAfter to try again.
	LocationRetrying = "retrying"
)

// Placement is a group placed over several locations (regions or clouds),
// with what one round knows of each.
type Placement struct {
	Count, MaxSurge, MaxUnavailable int
	FailoverAfter                   time.Duration
	Locations                       []LocationView
}

// LocationView is what is known of one location of a group.
type LocationView struct {
	Name   string
	Weight int
	// Listed says its servers were listed: Servers and Serving are what
	// the last list showed. Unlisted, Servers is the last count known
	// (or -1 when none is), and Serving is taken as none.
	Listed           bool
	Servers, Serving int
	// Pending counts its servers waiting for a replacement (old, failed,
	// unhealthy): it gets surge only for them.
	Pending int
	// APIFailingSince is when its API began failing with no answer since;
	// CreatesFailingSince when its creates began failing (refused, or
	// booted to ERROR) with none serving since. Zero: not failing.
	APIFailingSince, CreatesFailingSince time.Time
	// DownRecorded is the down record on the group's servers: since when
	// the location is down. Zero: none.
	DownRecorded time.Time
}

// LocationTarget is what one location of the group keeps this round.
type LocationTarget struct {
	Name   string
	State  string
	Reason string
	// Share is its part of Count by weight among the locations not
	// down. Count is what it keeps: its share, more while another
	// location is short of its own, less while the surge bound leaves no
	// room yet. Count+MaxSurge bounds its servers.
	Share, Count, MaxSurge, MaxUnavailable int
	// Frozen: nothing is created or deleted there this round.
	Frozen bool
	// DownSince is the down record the location should have (zero: none).
	DownSince time.Time
	// Waiting, when set, says the location has servers to replace and
	// the group's budgets are all held by its other locations: it waits
	// its turn, which is no stall of its own.
	Waiting string
}

// Place spreads a group's Count over its locations by weight, moves the
// share of a location that is down to the others, and splits the surge and
// unavailability budgets so that, over every location not down, servers
// stay within Count+MaxSurge and serving ones at or above
// Count−MaxUnavailable. A location never gives up a serving server while
// another is short of its share: capacity moves by creating first.
//
// Servers in a down location are outside the bound: Phoenix can neither
// count on them nor remove them (the location may be partitioned, not
// dead), so it never deletes there. So are the servers of a location
// retrying its creates: it keeps its share and tries one server above it,
// while the others go on holding its share.
func Place(p Placement, now time.Time) []LocationTarget {
	out := make([]LocationTarget, len(p.Locations))
	up := make([]bool, len(p.Locations))
	trying := make([]bool, len(p.Locations))
	for i, l := range p.Locations {
		out[i] = LocationTarget{Name: l.Name}
		out[i].State, out[i].Reason, out[i].DownSince = locationState(l, p.FailoverAfter, now)
		// A location retrying its creates stays out of the others' sums
		// (they hold its share) and only tries one create.
		trying[i] = out[i].State == LocationRetrying
		up[i] = out[i].State != LocationDown && !trying[i]
		out[i].Frozen = out[i].State == LocationDown
	}
	if !slices.Contains(up, true) {
		// Nothing else holds the share: a location retrying is plainly up.
		for i := range trying {
			up[i], trying[i] = up[i] || trying[i], false
		}
	}
	shares := weighted(p.Count, p.Locations, up)
	for i := range out {
		out[i].Share = shares[i]
	}
	if slices.Contains(trying, true) {
		// Its share as if it were back, and one server above it to try:
		// it keeps what it has, and only a create that serves brings it
		// back.
		back := make([]bool, len(up))
		for i := range up {
			back[i] = up[i] || trying[i]
		}
		would := weighted(p.Count, p.Locations, back)
		for i := range out {
			if trying[i] {
				out[i].Share, out[i].Count = would[i], would[i]
				out[i].MaxSurge = min(1, p.MaxSurge)
				out[i].MaxUnavailable = min(1-out[i].MaxSurge, p.MaxUnavailable)
			}
		}
	}
	// Keep: serving servers above a share stay while the others are short.
	short := 0
	for i, l := range p.Locations {
		if up[i] {
			short += max(0, shares[i]-serving(l))
		}
	}
	keep := make([]int, len(out))
	for i, l := range p.Locations {
		if !up[i] {
			continue
		}
		others := short - max(0, shares[i]-serving(l))
		if p.MaxSurge == 0 {
			// Without surge the short location can only create once a
			// server went elsewhere: the unavailability budget lets one go.
			others = max(0, others-p.MaxUnavailable)
		}
		keep[i] = max(shares[i], min(serving(l), shares[i]+others))
	}
	// Room under the bound, counting each location's servers (an
	// unlisted one's last count, or its share and the whole surge when
	// none is known).
	room := p.Count + p.MaxSurge
	used := make([]int, len(out))
	for i, l := range p.Locations {
		if !up[i] {
			continue
		}
		used[i] = l.Servers
		if l.Servers < 0 {
			used[i] = shares[i] + p.MaxSurge
		}
		room -= used[i]
	}
	room = max(0, room)
	ceil := append([]int(nil), used...)
	// Capacity first: locations below what they keep, in order.
	for i := range out {
		if up[i] && p.Locations[i].Listed {
			n := min(room, max(0, keep[i]-ceil[i]))
			ceil[i] += n
			room -= n
		}
	}
	// Then the surge, one at a time to the locations with servers to
	// replace, so that one location's idle surge never stalls another.
	surge := make([]int, len(out))
	for given := true; given && room > 0; {
		given = false
		for i, l := range p.Locations {
			if room > 0 && up[i] && l.Listed && surge[i] < min(l.Pending, p.MaxSurge) {
				surge[i]++
				ceil[i]++
				room--
				given = true
			}
		}
	}
	// Unavailability: the serving servers above the floor may go, less
	// those the counts already let go; the rest goes to the locations with
	// servers to replace. A location not listed serves nothing known.
	total, surplus := 0, 0
	for i, l := range p.Locations {
		if up[i] {
			out[i].Count = min(keep[i], ceil[i])
			out[i].MaxSurge = ceil[i] - out[i].Count
			total += serving(l)
			surplus += max(0, serving(l)-out[i].Count)
		}
	}
	spare := max(0, total-(p.Count-p.MaxUnavailable)-surplus)
	for given := true; given && spare > 0; {
		given = false
		for i, l := range p.Locations {
			if spare > 0 && up[i] && l.Listed && out[i].MaxUnavailable < min(l.Pending, out[i].Count) {
				out[i].MaxUnavailable++
				spare--
				given = true
			}
		}
	}
	for i, l := range p.Locations {
		if up[i] && l.Listed && l.Pending > 0 && out[i].MaxSurge == 0 && out[i].MaxUnavailable == 0 && l.Servers >= out[i].Count {
			out[i].Waiting = "the group's surge and unavailability are held by its other locations"
		}
	}
	return out
}

func serving(l LocationView) int {
	if !l.Listed {
		return 0
	}
	return l.Serving
}

// locationState says whether a location is up, failing, down or retrying,
// why, and the down record it should have.
func locationState(l LocationView, after time.Duration, now time.Time) (state, reason string, down time.Time) {
	apiOK := l.Listed && l.APIFailingSince.IsZero()
	switch {
	case !l.APIFailingSince.IsZero() && !now.Before(l.APIFailingSince.Add(after)):
		since := l.APIFailingSince.Add(after)
		if !l.DownRecorded.IsZero() && l.DownRecorded.Before(since) {
			since = l.DownRecorded
		}
		return LocationDown, "its API has not answered since " + l.APIFailingSince.UTC().Format(time.RFC3339), since
	case !l.DownRecorded.IsZero() && !apiOK:
		// Recorded down and not seen since: down at once after a restart.
		return LocationDown, "recorded down since " + l.DownRecorded.UTC().Format(time.RFC3339) + ", not reached since", l.DownRecorded
	case !l.CreatesFailingSince.IsZero() && !now.Before(l.CreatesFailingSince.Add(after)):
		// Down for FailoverAfter, then a try for FailoverAfter, in turn:
		// only a create that serves says the location is back.
		phase := int(now.Sub(l.CreatesFailingSince) / after)
		since := l.CreatesFailingSince.Add(after)
		if phase%2 == 1 {
			return LocationDown, "its creates have failed since " + l.CreatesFailingSince.UTC().Format(time.RFC3339), since
		}
		return LocationRetrying, "its creates have failed since " + l.CreatesFailingSince.UTC().Format(time.RFC3339) + "; trying again", since
	case !l.APIFailingSince.IsZero():
		return LocationFailing, "its API has not answered since " + l.APIFailingSince.UTC().Format(time.RFC3339), time.Time{}
	case !l.CreatesFailingSince.IsZero():
		return LocationFailing, "its creates have failed since " + l.CreatesFailingSince.UTC().Format(time.RFC3339), time.Time{}
	case !l.Listed:
		return LocationFailing, "not reached yet", l.DownRecorded
	}
	return LocationUp, "", time.Time{}
}

// weighted splits count over the locations marked in by weight, the
// largest remainders taking the servers left (ties to the first listed).
// When every weight in is zero (only standbys remain), they share evenly.
func weighted(count int, locs []LocationView, in []bool) []int {
	out := make([]int, len(locs))
	total := 0
	for i, l := range locs {
		if in[i] {
			total += l.Weight
		}
	}
	even := total == 0
	weight := func(i int) int {
		if even {
			return 1
		}
		return locs[i].Weight
	}
	if even {
		for i := range locs {
			if in[i] {
				total++
			}
		}
	}
	if total == 0 {
		return out
	}
	rem := make([]int, len(locs))
	given := 0
	for i := range locs {
		if in[i] {
			out[i] = count * weight(i) / total
			rem[i] = count * weight(i) % total
			given += out[i]
		}
	}
	for ; given < count; given++ {
		best := -1
		for i := range locs {
			if in[i] && weight(i) > 0 && (best < 0 || rem[i] > rem[best]) {
				best = i
			}
		}
		out[best]++
		rem[best] = -1
	}
	return out
}
