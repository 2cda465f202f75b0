package healthcheck

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
)

// These tests use real loopback sockets, so they run outside synctest.

// serve starts an HTTP server on loopback and returns its address and port.
func serve(t testing.TB, h http.Handler) (string, int) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return hostPort(t, srv.Listener.Addr())
}

func hostPort(t testing.TB, a net.Addr) (string, int) {
	t.Helper()
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		t.Fatalf("not a TCP address: %v", a)
	}
	return tcp.IP.String(), tcp.Port
}

func TestHTTPProbe(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	var keepAlive bool
	addr, port := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.RequestURI())
		keepAlive = keepAlive || !r.Close
		mu.Unlock()
		switch r.URL.Path {
		case "/", "/ok":
			w.WriteHeader(http.StatusOK)
		case "/no-content":
			w.WriteHeader(http.StatusNoContent)
		case "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/moved":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/query":
			if r.URL.Query().Get("full") != "1" {
				w.WriteHeader(http.StatusBadRequest)
			}
		default:
			http.NotFound(w, r)
		}
	}))
	base := "http://" + addr + ":" + strconv.Itoa(port)
	cases := []struct {
		name    string
		probe   HTTPProbe
		wantErr string // "" for a pass
		path    string // the request the server should see
	}{
		{"2xx passes", HTTPProbe{Port: port, Path: "/ok"}, "", "/ok"},
		{"empty path is /", HTTPProbe{Port: port}, "", "/"},
		{"path without a leading slash", HTTPProbe{Port: port, Path: "ok"}, "", "/ok"},
		{"path with a query", HTTPProbe{Port: port, Path: "/query?full=1"}, "", "/query?full=1"},
		{"any 2xx passes by default", HTTPProbe{Port: port, Path: "/no-content"}, "", "/no-content"},
		{"exact status required when set", HTTPProbe{Port: port, Path: "/no-content", ExpectStatus: 200},
			"health probe GET " + base + "/no-content: status 204, want 200", "/no-content"},
		{"expected non-2xx passes", HTTPProbe{Port: port, Path: "/down", ExpectStatus: 503}, "", "/down"},
		{"503 fails", HTTPProbe{Port: port, Path: "/down"},
			"health probe GET " + base + "/down: status 503, want 2xx", "/down"},
		{"404 fails", HTTPProbe{Port: port, Path: "/missing"},
			"health probe GET " + base + "/missing: status 404, want 2xx", "/missing"},
		{"redirect is not followed", HTTPProbe{Port: port, Path: "/moved"},
			"health probe GET " + base + "/moved: status 302, want 2xx", "/moved"},
		{"expected redirect passes", HTTPProbe{Port: port, Path: "/moved", ExpectStatus: 302}, "", "/moved"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			paths = nil
			mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := tc.probe.Probe(ctx, addr)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("probe failed: %v", err)
			case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
				t.Fatalf("probe error = %v, want %q", err, tc.wantErr)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(paths) != 1 || paths[0] != tc.path {
				t.Fatalf("server saw %q, want exactly one request for %q (one attempt, no redirect followed)", paths, tc.path)
			}
		})
	}
	if keepAlive {
		t.Error("the default client asked to keep a connection alive")
	}
}

func TestHTTPProbeDefaultClient(t *testing.T) {
	tr, ok := defaultHTTPClient.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("default transport is %T", defaultHTTPClient.Transport)
	}
	if tr.Proxy != nil {
		t.Error("the default client takes a proxy from the environment")
	}
	if !tr.DisableKeepAlives {
		t.Error("the default client keeps connections alive")
	}
	if defaultHTTPClient.CheckRedirect == nil || defaultHTTPClient.Timeout != 0 {
		t.Error("the default client follows redirects or has its own timeout")
	}
}

func TestHTTPProbeUsesItsClient(t *testing.T) {
	addr, port := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	var used atomic.Int32
	client := &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		used.Add(1)
		return http.DefaultTransport.RoundTrip(r)
	})}
	if err := (HTTPProbe{Port: port, Client: client}).Probe(context.Background(), addr); err != nil {
		t.Fatal(err)
	}
	if used.Load() != 1 {
		t.Fatalf("the probe's own client made %d requests, want 1", used.Load())
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestHTTPProbeReadsABoundedBody(t *testing.T) {
	var sent atomic.Int64
	addr, port := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 32<<10)
		for r.Context().Err() == nil {
			n, err := w.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := (HTTPProbe{Port: port}).Probe(ctx, addr); err != nil {
		t.Fatalf("a 200 with an endless body failed: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("probe of an endless body took %v: it must stop reading", d)
	}
}

func TestHTTPProbeTimeouts(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	// A server that takes the request and never answers.
	addr, port := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	// A listener that accepts connections and never reads from them.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	_, silentPort := hostPort(t, silent.Addr())

	for _, tc := range []struct {
		name string
		addr string
		port int
	}{
		{"server never answers", addr, port},
		{"connection accepted, never read", "127.0.0.1", silentPort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const timeout = 200 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			start := time.Now()
			err := HTTPProbe{Port: tc.port, Path: "/healthz"}.Probe(ctx, tc.addr)
			elapsed := time.Since(start)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("probe error = %v, want the deadline exceeded", err)
			}
			want := "health probe GET http://" + tc.addr + ":" + strconv.Itoa(tc.port) + "/healthz: "
			if !strings.HasPrefix(err.Error(), want) || strings.Count(err.Error(), "http://") != 1 {
				t.Errorf("error %q should name the URL once, after %q", err, want)
			}
			if elapsed < timeout || elapsed > timeout+2*time.Second {
				t.Errorf("probe took %v with a %v deadline", elapsed, timeout)
			}
		})
	}
}

func TestProbesOfAClosedPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port := hostPort(t, l.Addr())
	if err := (TCPProbe{Port: port}).Probe(context.Background(), "127.0.0.1"); err != nil {
		t.Fatalf("tcp probe of an open port: %v", err)
	}
	l.Close()
	target := "127.0.0.1:" + strconv.Itoa(port)
	for _, tc := range []struct {
		probe  Prober
		prefix string
	}{
		{TCPProbe{Port: port}, "health probe tcp " + target + ": "},
		{HTTPProbe{Port: port}, "health probe GET http://" + target + "/: "},
	} {
		err := tc.probe.Probe(context.Background(), "127.0.0.1")
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("%T of a closed port: %v, want connection refused", tc.probe, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), tc.prefix) {
			t.Errorf("%T error %q, want it to start %q", tc.probe, err, tc.prefix)
		}
	}
}

func TestTCPProbeHonoursContext(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port := hostPort(t, l.Addr())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (TCPProbe{Port: port}).Probe(ctx, "127.0.0.1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("tcp probe with a cancelled context: %v", err)
	}
}

func TestHTTPProbeURL(t *testing.T) {
	for _, tc := range []struct {
		probe   HTTPProbe
		address string
		want    string
	}{
		{HTTPProbe{Port: 80}, "10.0.0.1", "http://10.0.0.1:80/"},
		{HTTPProbe{Port: 8080, Path: "/healthz"}, "10.0.0.1", "http://10.0.0.1:8080/healthz"},
		{HTTPProbe{Port: 8080, Path: "healthz"}, "10.0.0.1", "http://10.0.0.1:8080/healthz"},
		{HTTPProbe{Port: 8080, Path: "/healthz"}, "2001:db8::7", "http://[2001:db8::7]:8080/healthz"},
		{HTTPProbe{Port: 8080}, "::1", "http://[::1]:8080/"},
		{HTTPProbe{Port: 8080}, "fe80::1%eth0", "http://[fe80::1%25eth0]:8080/"},
	} {
		if got := tc.probe.url(tc.address); got != tc.want {
			t.Errorf("url of %+v at %s = %q, want %q", tc.probe, tc.address, got, tc.want)
		}
	}
}

func TestProbesOverIPv6(t *testing.T) {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback here:", err)
	}
	var host atomic.Value
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host.Store(r.Host)
	}))
	srv.Listener = l
	srv.Start()
	defer srv.Close()
	_, port := hostPort(t, l.Addr())
	if err := (HTTPProbe{Port: port}).Probe(context.Background(), "::1"); err != nil {
		t.Fatalf("http probe of [::1]: %v", err)
	}
	if want := "[::1]:" + strconv.Itoa(port); host.Load() != want {
		t.Errorf("Host header %v, want %s", host.Load(), want)
	}
	if err := (TCPProbe{Port: port}).Probe(context.Background(), "::1"); err != nil {
		t.Fatalf("tcp probe of [::1]: %v", err)
	}
}

// TestCheckerProbesHTTP runs the Checker with its real HTTP probe, once,
// end to end (outside synctest: real sockets).
func TestCheckerProbesHTTP(t *testing.T) {
	var down atomic.Bool
	addr, port := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	c := NewChecker(nil)
	defer c.Close()
	pol := Policy{Interval: 10 * time.Millisecond, Timeout: time.Second, HealthyThreshold: 2, UnhealthyThreshold: 2}
	c.Watch([]Target{{ID: "web", Address: addr, Prober: HTTPProbe{Port: port, Path: "/healthz"}, Policy: pol}})
	wait := func(want State) Observation {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			if o, _ := c.Observe("web"); o.State == want {
				return o
			}
			select {
			case <-c.Changes():
			case <-deadline:
				o, _ := c.Observe("web")
				t.Fatalf("not %v in 10s: %+v", want, o)
			}
		}
	}
	wait(Healthy)
	down.Store(true)
	if o := wait(Unhealthy); !strings.Contains(o.LastError, "status 503") {
		t.Fatalf("unhealthy with error %q", o.LastError)
	}
}

// BenchmarkChecker2000 watches 2,000 targets, every one probed by HTTP
// every 100ms against one loopback server standing in for all, and reports
// the probes per second the Checker sustained (20,000/s if it keeps up)
// and the failures among them.
func BenchmarkChecker2000(b *testing.B) {
	addr, port := serve(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	probe := HTTPProbe{Port: port, Path: "/healthz"}
	pol := Policy{Interval: 100 * time.Millisecond, Timeout: 2 * time.Second, HealthyThreshold: 3, UnhealthyThreshold: 3}
	targets := make([]Target, 2000)
	for i := range targets {
		targets[i] = Target{ID: "server-" + strconv.Itoa(i), Address: addr, Prober: probe, Policy: pol}
	}
	c := NewChecker(zap.NewNop())
	defer c.Close()
	c.Watch(targets)
	time.Sleep(pol.Interval) // past the burst of first probes

	start, before := time.Now(), c.Stats()
	for b.Loop() {
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start).Seconds()
	after := c.Stats()
	b.ReportMetric(float64(after.Probes-before.Probes)/elapsed, "probes/s")
	b.ReportMetric(float64(after.Failures-before.Failures), "failures")
	healthy := 0
	for _, t := range targets {
		if o, _ := c.Observe(t.ID); o.State == Healthy {
			healthy++
		}
	}
	b.ReportMetric(float64(healthy), "healthy")
}
