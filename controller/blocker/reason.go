package blocker

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/common/model"
)

// MaxReason is the longest reason, in bytes: it must fit a log line and a
// status column.
const MaxReason = 240

const (
	// maxNamed is how many series a reason names.
	maxNamed = 3
	// maxQueryInReason leaves room in a reason for the series.
	maxQueryInReason = 80
	// maxSeriesInReason keeps one series with many labels from crowding
	// out the others.
	maxSeriesInReason = 90
)

// seriesReason names the query and its first series (in sorted order, so
// the reason does not change from one answer to the next while the series
// stay the same).
func seriesReason(query string, names []string) string {
	names = slices.Sorted(slices.Values(names))
	var b strings.Builder
	fmt.Fprintf(&b, "Prometheus query %s returns %d series: ", shorten(query, maxQueryInReason), len(names))
	named := 0
	for _, name := range names {
		if named == maxNamed {
			break
		}
		name = shorten(name, maxSeriesInReason)
		sep := ", "
		if named == 0 {
			sep = ""
		}
		more := ""
		if rest := len(names) - named - 1; rest > 0 {
			more = fmt.Sprintf(" and %d more", rest)
		}
		// The first series is always named; a later one only if it and
		// the count after it still fit.
		if named > 0 && b.Len()+len(sep)+len(name)+len(more) > MaxReason {
			break
		}
		b.WriteString(sep + name)
		named++
	}
	if rest := len(names) - named; rest > 0 {
		fmt.Fprintf(&b, " and %d more", rest)
	}
	return shorten(b.String(), MaxReason)
}

// seriesName writes a series as a PromQL selector, labels sorted, without
// the spaces model.Metric.String puts between them.
func seriesName(m model.Metric) string {
	var labels []string
	for name, value := range m {
		if name != model.MetricNameLabel {
			labels = append(labels, fmt.Sprintf("%s=%q", name, value))
		}
	}
	slices.Sort(labels)
	return fmt.Sprintf("%s{%s}", m[model.MetricNameLabel], strings.Join(labels, ","))
}

// shorten cuts s to at most n bytes, on a rune boundary, ending in "...".
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// redactor returns a function that takes the credentials of user out of a
// text: the userinfo in the forms a URL and net/http's errors write it,
// then the password wherever it still stands.
func redactor(user *url.Userinfo) func(string) string {
	if user == nil {
		return func(s string) string { return s }
	}
	name := user.Username()
	var pairs []string
	// Longest forms first: at one position the replacer takes the first
	// pair that matches.
	pairs = append(pairs, user.String()+"@", "", name+":***@", "")
	if pass, ok := user.Password(); ok && pass != "" {
		pairs = append(pairs, name+":"+pass+"@", "")
		for _, p := range []string{pass, url.QueryEscape(pass), url.PathEscape(pass)} {
			pairs = append(pairs, p, "xxxxx")
		}
	}
	if name != "" {
		pairs = append(pairs, name+"@", "", url.User(name).String()+"@", "")
	}
	r := strings.NewReplacer(pairs...)
	return r.Replace
}

// rawUserinfo finds the userinfo of a URL that url.Parse refused, the
// best it can: what stands between "://" and the last "@" before the path.
func rawUserinfo(raw string) (userinfo string, ok bool) {
	_, rest, found := strings.Cut(raw, "://")
	if !found {
		return "", false
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	i := strings.LastIndex(rest, "@")
	if i < 0 {
		return "", false
	}
	return rest[:i], true
}

// stripUserinfo takes the userinfo out of a URL that url.Parse refused.
func stripUserinfo(raw string) string {
	if ui, ok := rawUserinfo(raw); ok {
		return strings.Replace(raw, ui+"@", "", 1)
	}
	return raw
}

// redactorFor is redactor for a URL that url.Parse refused.
func redactorFor(raw string) func(string) string {
	ui, ok := rawUserinfo(raw)
	if !ok || ui == "" {
		return func(s string) string { return s }
	}
	pairs := []string{ui, "xxxxx"}
	if _, pass, found := strings.Cut(ui, ":"); found && pass != "" {
		pairs = append(pairs, pass, "xxxxx")
	}
	return strings.NewReplacer(pairs...).Replace
}

// redactedError shows a redacted text and still unwraps to the error it
// stands for, so errors.Is(err, context.DeadlineExceeded) keeps working.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
