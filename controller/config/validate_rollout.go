package config

import (
	"errors"
	"net/url"
	pathpkg "path"
	"strconv"
	"strings"
	"time"
)

func (v *validator) rollout(g *Group, group string) {
	r, path := g.Rollout, group+".rollout"
	if r.CreateBackoffMax <= 0 {
		v.bad(path+".create_backoff_max", "expected a duration above zero (the longest pause between creates the cloud refuses), got %s", r.CreateBackoffMax)
	}
	if p := r.Blockers.Prometheus; p != nil {
		v.prometheus(p, path+".blockers.prometheus")
	}
	if g.Count < 1 {
		return // reported at count
	}
	deps := []string{group + ".count", path + ".max_surge", path + ".max_unavailable"}
	surge, unavailable := r.MaxSurge.Resolve(g.Count, true), r.MaxUnavailable.Resolve(g.Count, false)
	if surge == 0 && unavailable == 0 {
		v.badFrom(path, deps, "max_surge %s and max_unavailable %s both come to 0 servers for a count of %d, so no server could ever be replaced: allow a surge (needs quota for the extra servers) or some unavailability",
			r.MaxSurge, r.MaxUnavailable, g.Count)
	}
	if unavailable > g.Count {
		v.badFrom(path+".max_unavailable", deps, "expected at most the group's count %d, got %d", g.Count, unavailable)
	}
	if r.MaxFailures < 1 {
		v.bad(path+".max_failures", "expected at least 1 failed new server before a rollout halts, got %d", r.MaxFailures)
	}
	if r.Canary < 0 || r.Canary >= g.Count {
		v.badFrom(path+".canary", []string{path + ".canary", group + ".count"}, "expected from 0 to %d servers (fewer than count %d: a canary is a part of the group), got %d", g.Count-1, g.Count, r.Canary)
	}
	if r.Canary == 0 && (r.CanaryBake != 0 || r.PauseAfterCanary) {
		v.badFrom(path+".canary", []string{path + ".canary_bake", path + ".pause_after_canary"}, "canary_bake and pause_after_canary need a canary: set canary to the number of servers to replace first")
	}
	if r.ProgressDeadline < Duration(time.Second) {
		v.bad(path+".progress_deadline", "expected a duration of at least 1s, got %s", r.ProgressDeadline)
	}
	if r.OnFailure != OnFailureHalt && r.OnFailure != OnFailureRollback {
		v.bad(path+".on_failure", "expected %s (keep what serves and stop) or %s (go back to the image the group ran before), got %q", OnFailureHalt, OnFailureRollback, r.OnFailure)
	}
}

// stateful checks a group whose data volumes move to the replacement.
func (v *validator) stateful(g *Group, path string) {
	st, r := g.Stateful, g.Rollout
	if r.Strategy != StrategyReplace && r.Strategy != StrategyRebuild {
		v.bad(path+".rollout.strategy", "expected %s (new servers replace the old) or %s (Nova rebuilds each server in place), got %q", StrategyReplace, StrategyRebuild, r.Strategy)
	}
	if r.Strategy == StrategyRebuild && g.Count >= 1 && r.MaxUnavailable.Resolve(g.Count, false) < 1 {
		v.badFrom(path+".rollout.max_unavailable", []string{path + ".rollout.max_unavailable", path + ".rollout.strategy"},
			"strategy rebuild takes each server out of service while Nova reimages it: expected max_unavailable of at least 1, got %s", r.MaxUnavailable)
	}
	if st == nil {
		return
	}
	at := path + ".stateful.volumes"
	sel := st.Volumes
	if sel.Name == "" && len(sel.Metadata) == 0 {
		v.bad(at, "expected a name pattern and/or metadata that pick the data volumes which move to the replacement")
	}
	if sel.Name != "" {
		if _, err := pathpkg.Match(sel.Name, ""); err != nil {
			v.bad(at+".name", "expected a shell pattern such as data-*, got %q: %v", sel.Name, err)
		}
	}
	if r.Strategy == StrategyRebuild {
		v.badFrom(path+".stateful", []string{path + ".stateful", path + ".rollout.strategy"},
			"strategy rebuild keeps every volume on its server: stateful (which moves volumes to a new server) does not apply; remove one of them")
	} else if g.Count >= 1 && r.MaxUnavailable.Resolve(g.Count, false) < 1 {
		// Said where the operator wrote something: at max_unavailable if
		// written, else at stateful.
		at := path + ".rollout.max_unavailable"
		if !v.written[at] {
			at = path + ".stateful"
		}
		v.badFrom(at, []string{path + ".rollout.max_unavailable", path + ".stateful"},
			"a stateful group stops the old server before its volume moves, so each handover is a short outage: expected rollout.max_unavailable of at least 1, got %s", r.MaxUnavailable)
	} else if g.Count >= 1 && r.MaxSurge.Resolve(g.Count, true) < 1 {
		v.badFrom(path+".rollout.max_surge", []string{path + ".rollout.max_surge", path + ".stateful"},
			"a stateful group boots the replacement before the old server stops, to move the volume to it: expected max_surge of at least 1, got %s", r.MaxSurge)
	}
}

// prometheus checks a Prometheus blocker. Its URL may carry basic auth
// credentials, so messages name it redacted.
func (v *validator) prometheus(p *PrometheusBlocker, path string) {
	const expected = "expected the http or https base URL of a Prometheus server, such as http://prometheus.internal:9090"
	at := path + ".url"
	u, err := url.Parse(p.URL)
	switch {
	case strings.TrimSpace(p.URL) == "":
		v.bad(at, "%s", expected)
	case err != nil:
		why := "it does not parse"
		var uerr *url.Error
		// The parser's reason may quote part of the value, so it is given
		// only for a URL without userinfo.
		if errors.As(err, &uerr) && !strings.Contains(p.URL, "@") {
			why = uerr.Err.Error()
		}
		v.bad(at, "%s, got %q: %s", expected, redactURL(p.URL), why)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.Hostname() == "":
		v.bad(at, "%s, got %q", expected, redactURL(p.URL))
	case u.Port() != "" && !validPort(u.Port()):
		v.bad(at, "expected a port from 1 to 65535 in %q", redactURL(p.URL))
	case strings.Contains(u.Path+"/", "/api/v1/"):
		v.bad(at, "%s: Phoenix adds /api/v1/query itself, got %q", expected, redactURL(p.URL))
	}
	if strings.TrimSpace(p.Query) == "" {
		v.bad(path+".query", `a PromQL query is required, such as ALERTS{alertstate="firing", severity="page"}: while it returns any series, no voluntary replacement starts`)
	}
	if p.Timeout <= 0 {
		v.bad(path+".timeout", "expected a duration above zero (a query that takes longer blocks), got %s", p.Timeout)
	}
}

func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535
}

// RedactedURL is the blocker's URL with any password replaced, for
// messages and logs.
func (p PrometheusBlocker) RedactedURL() string { return redactURL(p.URL) }

// redactURL writes a URL for a message without the password it may
// carry, even one that does not parse: then everything from the scheme to
// the last @ goes.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		return u.Redacted()
	}
	at := strings.LastIndex(raw, "@")
	if at < 0 {
		return raw
	}
	start := 0
	if i := strings.Index(raw, "://"); i >= 0 && i < at {
		start = i + len("://")
	}
	return raw[:start] + "xxxxx" + raw[at:]
}
