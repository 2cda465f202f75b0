package plan

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Window is a recurring maintenance window: on Days, from Start to End
// wall-clock time in Loc.
//
// It is read on the wall clock, as operators write and read it: on a
// daylight-saving day a window 02:00-05:00 is the hours the clocks on the
// wall show 02:00 to 05:00, not three hours from an instant. So it opens
// at 03:00 on the day the clocks skip 02:00-03:00, and holds the repeated
// hour twice on the day they go back.
type Window struct {
	// Days are indexed by time.Weekday: the days the window opens on. A
	// window crossing midnight belongs to the day it opens.
	Days [7]bool
	// Start and End are offsets from local midnight: Start from 0 to
	// under 24h, End above 0 up to 24h. End <= Start means the window
	// closes the next day (it crosses midnight).
	Start, End time.Duration
	// Loc is the time zone of the wall clock; nil means UTC.
	Loc *time.Location
	// Text is the window as the operator wrote it, for messages.
	Text string
}

// loc returns the window's time zone.
func (w Window) loc() *time.Location {
	if w.Loc == nil {
		return time.UTC
	}
	return w.Loc
}

// wallClock is how far the wall clock of t stands past midnight: hours,
// minutes and seconds as shown, not time elapsed since midnight (which
// differs on a daylight-saving day).
func wallClock(t time.Time) time.Duration {
	h, m, s := t.Clock()
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(s)*time.Second + time.Duration(t.Nanosecond())
}

// Contains says whether now is inside the window: within [Start, End) on
// the wall clock of a day the window opens on, or — for a window crossing
// midnight — before End on the day after one.
func (w Window) Contains(now time.Time) bool {
	t := now.In(w.loc())
	wall, day := wallClock(t), t.Weekday()
	if w.End > w.Start {
		return w.Days[day] && wall >= w.Start && wall < w.End
	}
	yesterday := (day + 6) % 7
	return w.Days[day] && wall >= w.Start || w.Days[yesterday] && wall < w.End
}

// searchDays is how far ahead NextOpen looks: a week, and a day more for
// a window whose only start that week fell into a clock change.
const searchDays = 8

// NextOpen returns when w next opens at or after now (now itself if it is
// open); zero if it never opens (no day set).
//
// It is the first instant at which Contains turns true. A window opens
// where the wall clock passes Start on one of its days — each instant the
// clock shows that time, twice in a repeated hour — or where the clock
// jumps into the window at a change of the zone's offset (its start
// skipped by the clocks going forward; the hour repeated when they go
// back). time.Date alone cannot say which: for a skipped or repeated time
// it returns either side of the change, depending on the zone.
func (w Window) NextOpen(now time.Time) time.Time {
	if w.Contains(now) {
		return now
	}
	if w.Days == [7]bool{} {
		return time.Time{}
	}
	loc := w.loc()
	var next time.Time
	consider := func(c time.Time) {
		if !c.Before(now) && (next.IsZero() || c.Before(next)) && w.Contains(c) {
			next = c
		}
	}
	y, m, d := now.In(loc).Date()
	for i := -1; i <= searchDays; i++ {
		// Calendar arithmetic in UTC, where every day has 24 hours.
		day := time.Date(y, m, d+i, 0, 0, 0, 0, time.UTC)
		if w.Days[day.Weekday()] {
			for _, c := range wallInstants(day, w.Start, loc) {
				consider(c)
			}
		}
	}
	for _, c := range offsetChanges(now, now.AddDate(0, 0, searchDays+1), loc) {
		consider(c)
	}
	return next
}

// wallInstants returns every instant at which the wall clock in loc shows
// the date of day (a UTC midnight) and wall past its midnight, earliest
// first: none in a skipped hour, two in a repeated one.
func wallInstants(day time.Time, wall time.Duration, loc *time.Location) []time.Time {
	naive := day.Add(wall) // the wall clock read as if it were UTC
	var out []time.Time
	seen := map[int]bool{}
	// An instant showing that wall clock lies within a day of naive
	// (offsets stay within ±26h), under one of the offsets the zone has
	// in that span.
	from := naive.Add(-26 * time.Hour)
	for _, at := range append([]time.Time{from}, offsetChanges(from, naive.Add(26*time.Hour), loc)...) {
		_, offset := at.In(loc).Zone()
		if seen[offset] {
			continue
		}
		seen[offset] = true
		u := naive.Add(-time.Duration(offset) * time.Second).In(loc)
		if y, m, d := u.Date(); wallClock(u) == wall && y == day.Year() && m == day.Month() && d == day.Day() {
			out = append(out, u)
		}
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

// offsetChanges returns the instants in (from, to] at which loc changes
// its offset or zone name.
func offsetChanges(from, to time.Time, loc *time.Location) []time.Time {
	var out []time.Time
	for t := from.In(loc); ; {
		_, end := t.ZoneBounds()
		if end.IsZero() || !end.After(t) || end.After(to) {
			return out
		}
		out = append(out, end)
		t = end.In(loc)
	}
}

// Open says whether now is inside any of ws (true when ws is empty: no
// windows means always open), and when not, when the first of them next
// opens. next is now when open, and zero when none of ws ever opens.
func Open(ws []Window, now time.Time) (open bool, next time.Time) {
	if len(ws) == 0 {
		return true, now
	}
	for _, w := range ws {
		if w.Contains(now) {
			return true, now
		}
	}
	for _, w := range ws {
		if n := w.NextOpen(now); !n.IsZero() && (next.IsZero() || n.Before(next)) {
			next = n
		}
	}
	return false, next
}

var dayNames = [7]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}

// String returns the window as the operator wrote it, or else in the form
// the configuration reads: "Mon-Fri 02:00-05:00 Europe/Berlin".
func (w Window) String() string {
	if w.Text != "" {
		return w.Text
	}
	s := w.days() + " " + clock(w.Start) + "-" + clock(w.End)
	if loc := w.loc(); loc != time.UTC {
		s += " " + loc.String()
	}
	return s
}

// days writes Days as runs from Monday on, a run that goes past Sunday
// wrapping round (Sat-Mon): "daily", "Mon-Fri", "Mon,Wed,Sat-Sun".
func (w Window) days() string {
	if w.Days == [7]bool{true, true, true, true, true, true, true} {
		return "daily"
	}
	if w.Days == [7]bool{} {
		return "never"
	}
	// Monday first, as a week is written; a run ending on Sunday carries on
	// into a run starting on Monday (Sat-Mon).
	order := func(i int) time.Weekday { return time.Weekday((i + 1) % 7) }
	start := 0
	for start < 7 && w.Days[order(start)] && w.Days[order((start+6)%7)] {
		start++ // a run wrapping from Sunday to Monday starts later
	}
	var runs []string
	for i := 0; i < 7; {
		first := order(start + i)
		if !w.Days[first] {
			i++
			continue
		}
		j := i
		for j+1 < 7 && w.Days[order(start+j+1)] {
			j++
		}
		last := order(start + j)
		switch {
		case j == i:
			runs = append(runs, dayNames[first])
		default:
			runs = append(runs, dayNames[first]+"-"+dayNames[last])
		}
		i = j + 1
	}
	return strings.Join(runs, ",")
}

// clock writes an offset from midnight as HH:MM (24:00 for the end of the
// day), with seconds only when it has any.
func clock(d time.Duration) string {
	h, m, s := int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second)
	if s != 0 {
		return fmt.Sprintf("%02d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%02d:%02d", h, m)
}
