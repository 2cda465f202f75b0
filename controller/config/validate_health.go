package config

import "strings"

func (v *validator) health(h *Health, path string) {
	checks := []string{path + ".http", path + ".tcp"}
	if h.HTTP != nil && h.TCP != nil {
		v.badFrom(path, checks, "http and tcp are alternatives: configure one check, not both")
	}
	if h.HTTP != nil {
		v.port(h.HTTP.Port, path+".http.port")
		if !strings.HasPrefix(h.HTTP.Path, "/") {
			v.bad(path+".http.path", "expected a path starting with \"/\", got %q", h.HTTP.Path)
		}
		if s := h.HTTP.ExpectStatus; s != 0 && (s < 100 || s > 599) {
			v.bad(path+".http.expect_status", "expected an HTTP status from 100 to 599 (or leave it out to accept any 2xx), got %d", s)
		}
	}
	if h.TCP != nil {
		v.port(h.TCP.Port, path+".tcp.port")
	}
	if h.HTTP == nil && h.TCP == nil {
		for _, f := range []string{"interval", "rise_interval", "timeout", "healthy_threshold", "unhealthy_threshold", "grace", "max_unhealthy"} {
			at := path + "." + f
			if v.written[at] {
				v.badFrom(at, append(checks, at), "has no effect without a check: add health.http or health.tcp, or remove it (without a check, Nova's ACTIVE status is the only health signal)")
			}
		}
		return
	}
	if h.Interval <= 0 {
		v.bad(path+".interval", "expected a duration above zero, got %s", h.Interval)
	}
	if h.Interval > 0 && (h.RiseInterval <= 0 || h.RiseInterval > h.Interval) {
		v.badFrom(path+".rise_interval", []string{path + ".rise_interval", path + ".interval"},
			"expected a duration above zero and at most the interval %s, got %s", h.Interval, h.RiseInterval)
	}
	if h.Timeout <= 0 || h.Timeout > h.Interval {
		v.badFrom(path+".timeout", []string{path + ".timeout", path + ".interval"},
			"expected a duration above zero and at most the interval %s, got %s", h.Interval, h.Timeout)
	}
	if h.HealthyThreshold < 1 {
		v.bad(path+".healthy_threshold", "expected at least 1, got %d", h.HealthyThreshold)
	}
	if h.UnhealthyThreshold < 1 {
		v.bad(path+".unhealthy_threshold", "expected at least 1, got %d", h.UnhealthyThreshold)
	}
}
