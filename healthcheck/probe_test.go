package healthcheck

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// serve starts an HTTP server on a loopback address and returns the
// address and port a probe needs.
func serve(t *testing.T, h http.HandlerFunc) (string, int) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	host, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return host, p
}

func TestHTTPProbe(t *testing.T) {
	var gotPath string
	addr, port := serve(t, func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.URL.Path
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(http.StatusOK)
		case "/no-content":
			w.WriteHeader(http.StatusNoContent)
		case "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/moved":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		default:
			http.NotFound(w, r)
		}
	})
	cases := []struct {
		name    string
		probe   HTTPProbe
		wantErr string
	}{
		{"2xx passes", HTTPProbe{Port: port, Path: "/ok"}, ""},
		{"any 2xx passes by default", HTTPProbe{Port: port, Path: "/no-content"}, ""},
		{"exact status required when set", HTTPProbe{Port: port, Path: "/no-content", ExpectStatus: 200}, "status 204, want 200"},
		{"expected non-2xx passes", HTTPProbe{Port: port, Path: "/down", ExpectStatus: 503}, ""},
		{"503 fails", HTTPProbe{Port: port, Path: "/down"}, "status 503, want 2xx"},
		{"redirect is not followed", HTTPProbe{Port: port, Path: "/moved"}, "status 302"},
		{"404 fails", HTTPProbe{Port: port, Path: "/missing"}, "status 404"},
		{"slow server is cut by the timeout", HTTPProbe{Port: port, Path: "/slow"}, "deadline exceeded"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			err := tc.probe.Probe(ctx, addr)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("probe failed: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("probe error = %v, want it to say %q", err, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("http://%s:%d%s", addr, port, tc.probe.Path)) {
				t.Errorf("error %q does not name the URL", err)
			}
		})
	}
	if err := (HTTPProbe{Port: port}).Probe(context.Background(), addr); err == nil || gotPath != "/" {
		t.Errorf("empty path probed %q (err %v), want /", gotPath, err)
	}
}

func TestProbesAgainstClosedPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := (TCPProbe{Port: port}).Probe(context.Background(), "127.0.0.1"); err != nil {
		t.Fatalf("tcp probe of an open port: %v", err)
	}
	l.Close()
	for _, p := range []Prober{TCPProbe{Port: port}, HTTPProbe{Port: port}} {
		err := p.Probe(context.Background(), "127.0.0.1")
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("%T of a closed port: %v, want connection refused", p, err)
		}
	}
}

func TestHTTPProbeIPv6(t *testing.T) {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback here:", err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Listener = l
	srv.Start()
	defer srv.Close()
	port := l.Addr().(*net.TCPAddr).Port
	if err := (HTTPProbe{Port: port}).Probe(context.Background(), "::1"); err != nil {
		t.Fatalf("probe of [::1]: %v", err)
	}
}

// BenchmarkChecker2000 probes 2,000 targets (one loopback server stands in
// for all) and reports the probes per second sustained.
func BenchmarkChecker2000(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	probe := HTTPProbe{Port: p, Path: "/healthz"}
	c := NewChecker(zap.NewNop())
	defer c.Close()
	targets := make([]Target, 2000)
	for i := range targets {
		targets[i] = Target{ID: strconv.Itoa(i), Address: host, Prober: probe,
			Policy: Policy{Interval: 100 * time.Millisecond, Timeout: 2 * time.Second, HealthyThreshold: 3, UnhealthyThreshold: 3}}
	}
	c.Watch(targets)
	b.ResetTimer()
	start, before := time.Now(), c.Stats()
	for b.Loop() {
		time.Sleep(10 * time.Millisecond)
	}
	after := c.Stats()
	elapsed := time.Since(start).Seconds()
	b.ReportMetric(float64(after.Probes-before.Probes)/elapsed, "probes/s")
	b.ReportMetric(float64(after.Failures-before.Failures), "failures")
}
