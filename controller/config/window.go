package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/phoenix-ops/phoenix/controller/plan"
)

// Window is one maintenance window of a group's rollout, written
// "DAYS HH:MM-HH:MM [ZONE]" (see [ParseWindow]).
type Window struct {
	plan.Window
}

// PlanWindows returns the rollout's windows as the policy takes them; nil
// when there are none (always open).
func (r Rollout) PlanWindows() []plan.Window {
	if len(r.Windows) == 0 {
		return nil
	}
	out := make([]plan.Window, len(r.Windows))
	for i, w := range r.Windows {
		out[i] = w.Window
	}
	return out
}

// windowForm heads every refusal of a window: the form, an example, then
// what is wrong with the value.
const windowForm = `expected "DAYS HH:MM-HH:MM [ZONE]" such as "Mon-Fri 02:00-05:00 Europe/Berlin"`

var (
	hhmm      = regexp.MustCompile(`^([0-9]{2}):([0-9]{2})$`)
	weekNames = map[string]time.Weekday{
		"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
		"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
	}
)

// ParseWindow reads a maintenance window: DAYS, a comma list of days
// (Mon Tue Wed Thu Fri Sat Sun, any case) and ranges of them (Mon-Fri;
// Sat-Mon wraps round the week), or daily or *; then HH:MM-HH:MM from
// 00:00 to 23:59, the end up to 24:00 and before the start when the window
// crosses midnight; then an IANA time zone, UTC if left out. The error
// says the form expected and what is wrong.
func ParseWindow(text string) (plan.Window, error) {
	w, err := parseWindow(text)
	if err != nil {
		return plan.Window{}, fmt.Errorf("%s: %s", windowForm, err)
	}
	return w, nil
}

func parseWindow(text string) (plan.Window, error) {
	fields := strings.Fields(text)
	for i, f := range fields[:max(len(fields)-1, 0)] {
		if strings.HasSuffix(f, ",") || strings.HasPrefix(fields[i+1], ",") {
			return plan.Window{}, fmt.Errorf("got %q: write the days without spaces, such as Mon,Wed,Fri", text)
		}
	}
	switch {
	case len(fields) == 0:
		return plan.Window{}, fmt.Errorf("got an empty value")
	case len(fields) == 1:
		return plan.Window{}, fmt.Errorf("got %q: days and a time range are both needed", text)
	case len(fields) > 3:
		return plan.Window{}, fmt.Errorf("got %q: more than days, a time range and a time zone", text)
	}
	w := plan.Window{Text: strings.Join(fields, " ")}
	var err error
	if w.Days, err = parseDays(fields[0]); err != nil {
		return plan.Window{}, err
	}
	if w.Start, w.End, err = parseSpan(fields[1]); err != nil {
		return plan.Window{}, err
	}
	if len(fields) == 3 {
		if w.Loc, err = loadZone(fields[2]); err != nil {
			return plan.Window{}, err
		}
	}
	return w, nil
}

// parseDays reads the DAYS of a window.
func parseDays(s string) ([7]bool, error) {
	var out [7]bool
	if s == "*" || strings.EqualFold(s, "daily") {
		return [7]bool{true, true, true, true, true, true, true}, nil
	}
	day := func(name string) (time.Weekday, error) {
		d, ok := weekNames[strings.ToLower(name)]
		if !ok {
			return 0, fmt.Errorf("unknown day %q in %q: expected Mon, Tue, Wed, Thu, Fri, Sat or Sun, ranges such as Mon-Fri, or daily", name, s)
		}
		return d, nil
	}
	for _, item := range strings.Split(s, ",") {
		from, to, isRange := strings.Cut(item, "-")
		first, err := day(from)
		if err != nil {
			return out, err
		}
		last := first
		if isRange {
			if last, err = day(to); err != nil {
				return out, err
			}
		}
		// A range goes forward through the week, wrapping after Sunday.
		for d := first; ; d = (d + 1) % 7 {
			out[d] = true
			if d == last {
				break
			}
		}
	}
	return out, nil
}

// parseSpan reads HH:MM-HH:MM as offsets from midnight.
func parseSpan(s string) (start, end time.Duration, err error) {
	from, to, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("time range %q is not HH:MM-HH:MM", s)
	}
	if start, err = parseClock(from, "start", false); err != nil {
		return 0, 0, err
	}
	if end, err = parseClock(to, "end", true); err != nil {
		return 0, 0, err
	}
	if start == end {
		return 0, 0, fmt.Errorf("start and end are both %s: a window needs a length (daily 00:00-24:00 is always open)", from)
	}
	if end == 0 {
		end = 24 * time.Hour // an end of 00:00 is the midnight that closes the day
	}
	return start, end, nil
}

// parseClock reads HH:MM, 00:00 to 23:59, or to 24:00 for an end.
func parseClock(s, what string, end bool) (time.Duration, error) {
	m := hhmm.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%s %q is not HH:MM", what, s)
	}
	h, _ := strconv.Atoi(m[1])
	mins, _ := strconv.Atoi(m[2])
	switch {
	case end && h == 24 && mins == 0:
	case h > 23 || mins > 59:
		if end {
			return 0, fmt.Errorf("end %q is not a time from 00:00 to 24:00", s)
		}
		return 0, fmt.Errorf("start %q is not a time from 00:00 to 23:59", s)
	}
	return time.Duration(h)*time.Hour + time.Duration(mins)*time.Minute, nil
}

// loadZone loads an IANA time zone. "Local" is refused: it would make the
// window depend on the host the daemon runs on.
func loadZone(name string) (*time.Location, error) {
	if strings.EqualFold(name, "local") {
		return nil, fmt.Errorf("time zone %q is the host's: name the zone, such as Europe/Berlin or UTC", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q", name)
	}
	return loc, nil
}

// decodeNode reads a window such as "Mon-Fri 02:00-05:00 Europe/Berlin".
func (w *Window) decodeNode(n *yaml.Node) error {
	pw, err := ParseWindow(n.Value)
	if err != nil {
		return err
	}
	w.Window = pw
	return nil
}

// UnmarshalYAML lets a Window be decoded by yaml.Unmarshal too.
func (w *Window) UnmarshalYAML(n *yaml.Node) error {
	if n = resolve(n); n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected a window, got %s", n.Line, kindName(n))
	}
	if isNull(n) {
		return nil
	}
	return w.decodeNode(n)
}

// MarshalYAML writes the window as it was read.
func (w Window) MarshalYAML() (any, error) { return w.String(), nil }
