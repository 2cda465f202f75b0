package blocker

import (
	"strings"
	"testing"
	"time"
)

func newBlocker(t *testing.T, cfg PrometheusConfig, opts ...Option) *Prometheus {
	t.Helper()
	b, err := NewPrometheus(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewPrometheusRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  PrometheusConfig
		opts []Option
		want string
	}{
		{name: "no URL", cfg: PrometheusConfig{Query: "up"}, want: "URL is empty"},
		{name: "no scheme", cfg: PrometheusConfig{URL: "prometheus:9090", Query: "up"}, want: "scheme must be http or https"},
		{name: "host and port without a scheme", cfg: PrometheusConfig{URL: "10.0.0.1:9090", Query: "up"}, want: "is not a URL"},
		{name: "another scheme", cfg: PrometheusConfig{URL: "ftp://prometheus", Query: "up"}, want: "scheme must be http or https"},
		{name: "no host", cfg: PrometheusConfig{URL: "http:///api", Query: "up"}, want: "no host"},
		{name: "a query in the URL", cfg: PrometheusConfig{URL: "http://prometheus:9090/?query=up", Query: "up"}, want: "no query or fragment"},
		{name: "no query", cfg: PrometheusConfig{URL: "http://prometheus:9090"}, want: "query is empty"},
		{name: "negative timeout", cfg: PrometheusConfig{URL: "http://prometheus:9090", Query: "up", Timeout: -time.Second}, want: "timeout -1s is negative"},
		{name: "negative interval", cfg: PrometheusConfig{URL: "http://prometheus:9090", Query: "up"}, opts: []Option{WithMinInterval(-time.Second)}, want: "interval -1s is negative"},
		{name: "no clock", cfg: PrometheusConfig{URL: "http://prometheus:9090", Query: "up"}, opts: []Option{WithClock(nil)}, want: "needs a clock"},
		// The password must not show in the errors of a URL that has one.
		{name: "bad port with userinfo", cfg: PrometheusConfig{URL: "http://phoenix:secret@prometheus:90x0", Query: "up"}, want: `URL http://prometheus:90x0 is not a URL`},
		{name: "control character with userinfo", cfg: PrometheusConfig{URL: "http://phoenix:secret@prometheus\x7f:9090", Query: "up"}, want: "invalid control character"},
		{name: "bad escape in the password", cfg: PrometheusConfig{URL: "http://phoenix:sec%zzret@prometheus:9090", Query: "up"}, want: "is not a URL"},
		{name: "another scheme with userinfo", cfg: PrometheusConfig{URL: "ftp://phoenix:secret@prometheus", Query: "up"}, want: "URL ftp://prometheus: the scheme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewPrometheus(tc.cfg, tc.opts...)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
			for _, leak := range []string{"secret", "sec%zz", "ret@", "phoenix:"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("error %q shows %q", err, leak)
				}
			}
		})
	}
}

func TestString(t *testing.T) {
	b := newBlocker(t, PrometheusConfig{URL: "https://phoenix:secret@prometheus.example:9090/prom", Query: "ALERTS"})
	if got, want := b.String(), "Prometheus query ALERTS at https://prometheus.example:9090/prom"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
