package plan

import (
	"math/rand/v2"
	"testing"
	"time"

	// The zones below without depending on the host's zoneinfo.
	_ "time/tzdata"
)

func zone(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// days builds Window.Days from weekdays.
func days(ds ...time.Weekday) [7]bool {
	var out [7]bool
	for _, d := range ds {
		out[d] = true
	}
	return out
}

var weekdays = days(time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday)

func hm(h, m int) time.Duration { return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute }

// The daylight-saving changes of 2026: Europe moves its clocks on the last
// Sundays of March and October at 01:00 UTC; the United States on the
// second Sunday of March and the first of November at 02:00 local.
func TestDaylightSavingDates2026(t *testing.T) {
	for _, tc := range []struct {
		zone string
		want []time.Time
	}{
		{"Europe/Berlin", []time.Time{time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC), time.Date(2026, 10, 25, 1, 0, 0, 0, time.UTC)}},
		{"America/New_York", []time.Time{time.Date(2026, 3, 8, 7, 0, 0, 0, time.UTC), time.Date(2026, 11, 1, 6, 0, 0, 0, time.UTC)}},
	} {
		got := offsetChanges(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), zone(t, tc.zone))
		if len(got) != 2 || !got[0].Equal(tc.want[0]) || !got[1].Equal(tc.want[1]) {
			t.Errorf("%s changes its clocks at %v, want %v", tc.zone, got, tc.want)
		}
	}
}

func TestWindow(t *testing.T) {
	berlin, newYork := zone(t, "Europe/Berlin"), zone(t, "America/New_York")
	utc := func(y int, mo time.Month, d, h, m, s int) time.Time { return time.Date(y, mo, d, h, m, s, 0, time.UTC) }
	never := time.Time{}

	officeNights := Window{Days: weekdays, Start: hm(2, 0), End: hm(5, 0), Loc: berlin}
	mondayMidnight := Window{Days: days(time.Monday), Start: 0, End: hm(1, 0), Loc: berlin}
	sundayBerlin := Window{Days: days(time.Sunday), Start: hm(2, 0), End: hm(5, 0), Loc: berlin}
	skipped := Window{Days: days(time.Sunday), Start: hm(2, 0), End: hm(2, 30), Loc: berlin}
	repeatedBerlin := Window{Days: days(time.Sunday), Start: hm(2, 0), End: hm(3, 0), Loc: berlin}
	dailyNewYork := Window{Days: days(0, 1, 2, 3, 4, 5, 6), Start: hm(2, 0), End: hm(5, 0), Loc: newYork}
	repeatedNewYork := Window{Days: days(time.Sunday), Start: hm(1, 0), End: hm(1, 30), Loc: newYork}
	fridayNight := Window{Days: days(time.Friday), Start: hm(22, 0), End: hm(2, 0)}
	saturdayEvening := Window{Days: days(time.Saturday), Start: hm(20, 0), End: 24 * time.Hour}
	allDay := Window{Days: days(0, 1, 2, 3, 4, 5, 6), Start: 0, End: 24 * time.Hour}

	cases := []struct {
		name   string
		w      Window
		now    time.Time
		inside bool
		next   time.Time // when it next opens; now when inside
	}{
		// 2026-03-03 is a Tuesday; Berlin is at UTC+1 in winter.
		{"inside", officeNights, utc(2026, 3, 3, 2, 0, 0), true, utc(2026, 3, 3, 2, 0, 0)},
		{"start is inside", officeNights, utc(2026, 3, 3, 1, 0, 0), true, utc(2026, 3, 3, 1, 0, 0)},
		{"just before the start", officeNights, utc(2026, 3, 3, 0, 59, 59), false, utc(2026, 3, 3, 1, 0, 0)},
		{"end is outside", officeNights, utc(2026, 3, 3, 4, 0, 0), false, utc(2026, 3, 4, 1, 0, 0)},
		{"the wall clock, not UTC", officeNights, utc(2026, 3, 3, 4, 30, 0), false, utc(2026, 3, 4, 1, 0, 0)},
		{"summer time moves it an hour in UTC", officeNights, utc(2026, 7, 7, 0, 30, 0), true, utc(2026, 7, 7, 0, 30, 0)},
		{"weekend gap: Friday evening waits for Monday", officeNights, utc(2026, 3, 6, 19, 0, 0), false, utc(2026, 3, 9, 1, 0, 0)},
		{"weekend gap: Saturday night is closed", officeNights, utc(2026, 3, 7, 2, 0, 0), false, utc(2026, 3, 9, 1, 0, 0)},
		{"the weekday is the zone's: Sunday 23:30 UTC is Monday in Berlin", mondayMidnight, utc(2026, 3, 8, 23, 30, 0), true, utc(2026, 3, 8, 23, 30, 0)},
		{"the weekday is the zone's: Monday 00:30 UTC is after it", mondayMidnight, utc(2026, 3, 9, 0, 30, 0), false, utc(2026, 3, 15, 23, 0, 0)},

		// Spring forward in Berlin, Sunday 2026-03-29: 02:00 CET becomes
		// 03:00 CEST at 01:00 UTC.
		{"spring forward: opens when the clocks skip into it", sundayBerlin, utc(2026, 3, 29, 0, 30, 0), false, utc(2026, 3, 29, 1, 0, 0)},
		{"spring forward: 03:00 CEST is inside", sundayBerlin, utc(2026, 3, 29, 1, 0, 0), true, utc(2026, 3, 29, 1, 0, 0)},
		{"spring forward: the last second before is outside", sundayBerlin, utc(2026, 3, 29, 0, 59, 59), false, utc(2026, 3, 29, 1, 0, 0)},
		{"spring forward: closes at 05:00 CEST", sundayBerlin, utc(2026, 3, 29, 3, 0, 0), false, utc(2026, 4, 5, 0, 0, 0)},
		{"spring forward: a window wholly skipped waits a week", skipped, utc(2026, 3, 28, 12, 0, 0), false, utc(2026, 4, 5, 0, 0, 0)},
		{"spring forward: nothing of a skipped window is inside", skipped, utc(2026, 3, 29, 1, 0, 0), false, utc(2026, 4, 5, 0, 0, 0)},

		// Fall back in Berlin, Sunday 2026-10-25: 03:00 CEST becomes
		// 02:00 CET at 01:00 UTC, so 02:00-03:00 comes twice.
		{"fall back: opens at the first 02:00", repeatedBerlin, utc(2026, 10, 24, 12, 0, 0), false, utc(2026, 10, 25, 0, 0, 0)},
		{"fall back: the first 02:30 is inside", repeatedBerlin, utc(2026, 10, 25, 0, 30, 0), true, utc(2026, 10, 25, 0, 30, 0)},
		{"fall back: the second 02:30 is inside", repeatedBerlin, utc(2026, 10, 25, 1, 30, 0), true, utc(2026, 10, 25, 1, 30, 0)},
		{"fall back: the hour is inside both times", repeatedBerlin, utc(2026, 10, 25, 1, 59, 59), true, utc(2026, 10, 25, 1, 59, 59)},
		{"fall back: 03:00 CET is outside", repeatedBerlin, utc(2026, 10, 25, 2, 0, 0), false, utc(2026, 11, 1, 1, 0, 0)},

		// Spring forward in New York, Sunday 2026-03-08: 02:00 EST becomes
		// 03:00 EDT at 07:00 UTC.
		{"spring forward NY: opens at 03:00 EDT", dailyNewYork, utc(2026, 3, 8, 6, 30, 0), false, utc(2026, 3, 8, 7, 0, 0)},
		{"spring forward NY: the day before, 02:00 EST", dailyNewYork, utc(2026, 3, 7, 7, 0, 0), true, utc(2026, 3, 7, 7, 0, 0)},
		{"spring forward NY: the day before, 01:59:59 EST", dailyNewYork, utc(2026, 3, 7, 6, 59, 59), false, utc(2026, 3, 7, 7, 0, 0)},
		{"spring forward NY: closes at 05:00 EDT", dailyNewYork, utc(2026, 3, 8, 9, 0, 0), false, utc(2026, 3, 9, 6, 0, 0)},
		{"spring forward NY: 04:59 EDT is inside", dailyNewYork, utc(2026, 3, 8, 8, 59, 0), true, utc(2026, 3, 8, 8, 59, 0)},

		// Fall back in New York, Sunday 2026-11-01: 02:00 EDT becomes
		// 01:00 EST at 06:00 UTC, so 01:00-02:00 comes twice.
		{"fall back NY: opens at the first 01:00", repeatedNewYork, utc(2026, 10, 31, 16, 0, 0), false, utc(2026, 11, 1, 5, 0, 0)},
		{"fall back NY: 01:15 EDT is inside", repeatedNewYork, utc(2026, 11, 1, 5, 15, 0), true, utc(2026, 11, 1, 5, 15, 0)},
		{"fall back NY: 01:15 EST is inside", repeatedNewYork, utc(2026, 11, 1, 6, 15, 0), true, utc(2026, 11, 1, 6, 15, 0)},
		{"fall back NY: between the two, it opens again at 01:00 EST", repeatedNewYork, utc(2026, 11, 1, 5, 45, 0), false, utc(2026, 11, 1, 6, 0, 0)},
		{"fall back NY: after the second, next Sunday", repeatedNewYork, utc(2026, 11, 1, 6, 30, 0), false, utc(2026, 11, 8, 6, 0, 0)},

		// Crossing midnight, Friday 2026-03-06 in UTC.
		{"crossing: start is inside", fridayNight, utc(2026, 3, 6, 22, 0, 0), true, utc(2026, 3, 6, 22, 0, 0)},
		{"crossing: before the start", fridayNight, utc(2026, 3, 6, 21, 59, 59), false, utc(2026, 3, 6, 22, 0, 0)},
		{"crossing: Saturday morning is Friday's window", fridayNight, utc(2026, 3, 7, 1, 0, 0), true, utc(2026, 3, 7, 1, 0, 0)},
		{"crossing: its last second", fridayNight, utc(2026, 3, 7, 1, 59, 59), true, utc(2026, 3, 7, 1, 59, 59)},
		{"crossing: end is outside", fridayNight, utc(2026, 3, 7, 2, 0, 0), false, utc(2026, 3, 13, 22, 0, 0)},
		{"crossing: Friday morning is Thursday's, closed", fridayNight, utc(2026, 3, 6, 1, 0, 0), false, utc(2026, 3, 6, 22, 0, 0)},
		{"crossing: Saturday night is closed", fridayNight, utc(2026, 3, 7, 23, 0, 0), false, utc(2026, 3, 13, 22, 0, 0)},

		// Ending at 24:00, Saturday 2026-03-07.
		{"24:00: the last second of the day", saturdayEvening, utc(2026, 3, 7, 23, 59, 59), true, utc(2026, 3, 7, 23, 59, 59)},
		{"24:00: midnight is outside", saturdayEvening, utc(2026, 3, 8, 0, 0, 0), false, utc(2026, 3, 14, 20, 0, 0)},
		{"all day", allDay, utc(2026, 3, 8, 0, 0, 0), true, utc(2026, 3, 8, 0, 0, 0)},

		{"no day set never opens", Window{Start: hm(2, 0), End: hm(5, 0)}, utc(2026, 3, 8, 3, 0, 0), false, never},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.w.Contains(tc.now); got != tc.inside {
				t.Errorf("Contains(%s) = %v, want %v", tc.now.In(tc.w.loc()), got, tc.inside)
			}
			if got := tc.w.NextOpen(tc.now); !got.Equal(tc.next) {
				t.Errorf("NextOpen(%s) = %s, want %s", tc.now.In(tc.w.loc()), got, tc.next.In(tc.w.loc()))
			}
		})
	}
}

func TestOpen(t *testing.T) {
	berlin, newYork := zone(t, "Europe/Berlin"), zone(t, "America/New_York")
	tuesday := time.Date(2026, 3, 3, 12, 0, 0, 0, time.UTC)
	// Tuesday 23:00 in Berlin is 22:00 UTC; Tuesday 20:00 in New York is
	// Wednesday 01:00 UTC.
	lateBerlin := Window{Days: days(time.Tuesday), Start: hm(23, 0), End: hm(23, 30), Loc: berlin}
	eveningNewYork := Window{Days: days(time.Tuesday), Start: hm(20, 0), End: hm(21, 0), Loc: newYork}
	noon := Window{Days: days(time.Tuesday), Start: hm(12, 0), End: hm(13, 0)}
	cases := []struct {
		name string
		ws   []Window
		open bool
		next time.Time
	}{
		{"no windows: always open", nil, true, tuesday},
		{"inside one of them", []Window{lateBerlin, noon}, true, tuesday},
		{"the sooner of two, listed second", []Window{eveningNewYork, lateBerlin}, false, time.Date(2026, 3, 3, 22, 0, 0, 0, time.UTC)},
		{"one that never opens is passed over", []Window{{}, eveningNewYork}, false, time.Date(2026, 3, 4, 1, 0, 0, 0, time.UTC)},
		{"none ever opens", []Window{{}}, false, time.Time{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			open, next := Open(tc.ws, tuesday)
			if open != tc.open || !next.Equal(tc.next) {
				t.Errorf("Open = %v, %s; want %v, %s", open, next, tc.open, tc.next)
			}
		})
	}
}

// NextOpen is the first instant at or after now at which Contains is
// true, whatever the zone does to its clocks: checked minute by minute
// around the clock changes of 2026, for random windows.
func TestNextOpenIsTheFirstOpenInstant(t *testing.T) {
	zones := []*time.Location{time.UTC, zone(t, "Europe/Berlin"), zone(t, "America/New_York"), zone(t, "Australia/Lord_Howe")}
	changes := []time.Time{
		time.Date(2026, 3, 8, 7, 0, 0, 0, time.UTC), time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC),
		time.Date(2026, 10, 25, 1, 0, 0, 0, time.UTC), time.Date(2026, 11, 1, 6, 0, 0, 0, time.UTC),
		time.Date(2026, 4, 4, 15, 0, 0, 0, time.UTC), // Lord Howe: back half an hour
	}
	rng := rand.New(rand.NewPCG(7, 42))
	n := 300
	if testing.Short() {
		n = 50
	}
	for range n {
		var w Window
		for w.Days == [7]bool{} {
			for d := range w.Days {
				w.Days[d] = rng.IntN(3) == 0
			}
		}
		// Quarter hours, so that starts and ends fall into skipped and
		// repeated hours (and Lord Howe's half hour) often.
		w.Start = time.Duration(rng.IntN(96)) * 15 * time.Minute
		w.End = time.Duration(1+rng.IntN(96)) * 15 * time.Minute
		w.Loc = zones[rng.IntN(len(zones))]
		now := changes[rng.IntN(len(changes))].Add(time.Duration(rng.IntN(4*24*60)-3*24*60) * time.Minute).Add(time.Duration(rng.IntN(60)) * time.Second)

		next := w.NextOpen(now)
		if next.IsZero() || !w.Contains(next) || next.Before(now) {
			t.Fatalf("%s: NextOpen(%s) = %s, not an open instant at or after it", w, now.In(w.loc()), next)
		}
		if next.After(now) && w.Contains(next.Add(-time.Second)) {
			t.Fatalf("%s: NextOpen(%s) = %s, but it was open a second before", w, now.In(w.loc()), next.In(w.loc()))
		}
		for at := now.Truncate(time.Minute).Add(time.Minute); at.Before(next); at = at.Add(time.Minute) {
			if w.Contains(at) {
				t.Fatalf("%s: NextOpen(%s) = %s, but it is open at %s", w, now.In(w.loc()), next.In(w.loc()), at.In(w.loc()))
			}
		}
	}
}

func TestWindowString(t *testing.T) {
	berlin := zone(t, "Europe/Berlin")
	for _, tc := range []struct {
		w    Window
		want string
	}{
		{Window{Days: weekdays, Start: hm(2, 0), End: hm(5, 0), Loc: berlin}, "Mon-Fri 02:00-05:00 Europe/Berlin"},
		{Window{Days: weekdays, Start: hm(2, 0), End: hm(5, 0), Loc: berlin, Text: "mon-fri 02:00-05:00 Europe/Berlin"}, "mon-fri 02:00-05:00 Europe/Berlin"},
		{Window{Days: days(0, 1, 2, 3, 4, 5, 6), Start: 0, End: 24 * time.Hour}, "daily 00:00-24:00"},
		{Window{Days: days(time.Saturday, time.Sunday, time.Monday), Start: hm(22, 0), End: hm(2, 0)}, "Sat-Mon 22:00-02:00"},
		{Window{Days: days(time.Monday, time.Wednesday, time.Friday, time.Saturday), Start: hm(1, 30), End: hm(2, 0)}, "Mon,Wed,Fri-Sat 01:30-02:00"},
		{Window{Days: days(time.Sunday), Start: hm(1, 0), End: hm(1, 0) + time.Second}, "Sun 01:00-01:00:01"},
		{Window{Start: hm(1, 0), End: hm(2, 0)}, "never 01:00-02:00"},
	} {
		if got := tc.w.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}
