package config

import "net/url"

// RedactURL writes a URL that may carry a token for a log line, a status
// or an error: its scheme and host (with the port) only, and "/…" when
// anything followed them. Chat webhooks put their token in the path
// (…/hooks/T000/B000/XXXX) or the query (?token=…), others in the
// userinfo, so none of those is ever shown. A value that does not parse
// as a URL with a host is not shown at all: it may be the token itself.
func RedactURL(raw string) string {
	if raw == "" {
		return "(no URL)"
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "(a value that is not a URL with a host; not shown)"
	}
	out := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawPath != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		out += "/…"
	}
	return out
}
