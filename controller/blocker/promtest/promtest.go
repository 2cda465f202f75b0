// Package promtest runs a real Prometheus for tests: the binary Debian
// ships (examples/prometheus/install.sh installs it), on loopback, in a
// temporary directory, scraping one gauge the test sets, with one alert
// rule on it. A test fires and clears the alert and can stop Prometheus
// to see what its code does when Prometheus is gone. Only tests import it.
//
// A real Prometheus rather than a fake answering /api/v1/query: what the
// blocker must get right is Prometheus's own behaviour — how ALERTS looks
// while an alert fires and after it resolves, how a refused query is
// answered, what the client's errors say when nobody listens.
//
// Without the binary the tests are skipped, unless
// PHOENIX_REQUIRE_PROMETHEUS=1 (as CI sets) makes that a failure.
package promtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
)

// Query returns the test alert's series while it fires, and nothing
// otherwise.
const Query = `ALERTS{alertname="PhoenixTestAlarm",alertstate="firing"}`

const (
	// EnvBinary names the prometheus binary to run.
	EnvBinary = "PHOENIX_PROMETHEUS_BIN"
	// EnvRequire, set to 1, fails a test that would skip for want of the
	// binary.
	EnvRequire = "PHOENIX_REQUIRE_PROMETHEUS"
)

// The credentials a Prometheus started WithBasicAuth requires.
const (
	User     = "phoenix"
	Password = "secret-for-tests"
	// passwordHash is Password under bcrypt at the lowest cost, so that
	// checking it costs Prometheus little on every request.
	passwordHash = "$2a$04$HyFt7GkZqMWxnTkosV3LkermiJ7YmCYsmv1a.1kkhGToyiWE..OFi"
)

// Option changes the Prometheus that Start runs.
type Option func(*settings)

type settings struct {
	basicAuth bool
}

// WithBasicAuth makes Prometheus require User and Password on every
// request (its --web.config.file), so a test can see credentials work and
// stay out of sight.
func WithBasicAuth() Option {
	return func(s *settings) { s.basicAuth = true }
}

// Patience bounds the start and the waits; scrapes and rule evaluations
// run every second, so anything near this means something is wrong, not
// slow.
const Patience = time.Minute

// Server is a running Prometheus and the target it scrapes.
type Server struct {
	url   string // without userinfo
	auth  *url.Userinfo
	dir   string
	alarm prometheus.Gauge
	api   v1.API
	log   string // the running prometheus's output

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start runs Prometheus and waits until it answers queries (well under a
// second). It is stopped when the test ends.
//
// Prometheus hands its targets to the scraper on a 5 s tick, so the gauge
// is first scraped 5-6 s after the start, and the first Fire takes that
// long to show; Start does not wait for it, so that tests that need no
// alert, and whatever else a test sets up meanwhile, need not wait.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin := binary(t)
	var set settings
	for _, opt := range opts {
		opt(&set)
	}

	reg := prometheus.NewRegistry()
	alarm := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "phoenix_test_alarm",
		Help: "1 while the test wants PhoenixTestAlarm to fire.",
	})
	reg.MustRegister(alarm)
	target := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(target.Close)

	dir := t.TempDir()
	config := filepath.Join(dir, "prometheus.yml")
	writeFile(t, config, fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - rules.yml
scrape_configs:
  - job_name: phoenix-test
    static_configs:
      - targets: [%q]
`, strings.TrimPrefix(target.URL, "http://")))
	writeFile(t, filepath.Join(dir, "rules.yml"), `groups:
  - name: phoenix-test
    rules:
      - alert: PhoenixTestAlarm
        expr: phoenix_test_alarm > 0
`)

	args := []string{"--config.file=" + config}
	s := &Server{dir: dir, alarm: alarm}
	if set.basicAuth {
		web := filepath.Join(dir, "web.yml")
		writeFile(t, web, fmt.Sprintf("basic_auth_users:\n  %s: %s\n", User, passwordHash))
		args = append(args, "--web.config.file="+web)
		s.auth = url.UserPassword(User, Password)
	}
	t.Cleanup(func() {
		if out, err := os.ReadFile(s.log); t.Failed() && err == nil && len(out) > 0 {
			t.Logf("prometheus at %s logged:\n%s", s.url, tail(out, 4000))
		}
	})
	t.Cleanup(s.Stop)
	// The port is free when chosen and may be taken before Prometheus
	// binds it; then Prometheus exits, and a new port is tried.
	var err error
	for try := 1; try <= 5; try++ {
		if err = s.start(bin, args, try); err == nil {
			return s
		}
		if !errors.Is(err, errPortTaken) {
			break
		}
		t.Logf("prometheus start %d: %v; trying another port", try, err)
	}
	t.Fatalf("start prometheus %s: %v", bin, err)
	return nil
}

var errPortTaken = errors.New("the port was taken")

// binary finds prometheus, or skips (fails, when required) the test.
func binary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv(EnvBinary); bin != "" {
		if _, err := exec.LookPath(bin); err != nil {
			// Named on purpose, so not a reason to skip.
			t.Fatalf("%s=%s: %v", EnvBinary, bin, err)
		}
		return bin
	}
	if bin, err := exec.LookPath("prometheus"); err == nil {
		return bin
	}
	if _, err := exec.LookPath("/usr/bin/prometheus"); err == nil {
		return "/usr/bin/prometheus"
	}
	msg := fmt.Sprintf("no prometheus binary (set %s, put it on PATH, or run examples/prometheus/install.sh)", EnvBinary)
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("%s, and %s=1", msg, EnvRequire)
	}
	t.Skip(msg)
	return ""
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// start runs prometheus once, on a new port and a new data directory, and
// waits until it is ready. On failure the process is gone.
func (s *Server) start(bin string, args []string, try int) error {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	logPath := filepath.Join(s.dir, fmt.Sprintf("prometheus-%d.log", try))
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own copy
	data := filepath.Join(s.dir, fmt.Sprintf("data-%d", try))
	cmd := exec.Command(bin, slices.Concat(args, []string{
		"--storage.tsdb.path=" + data,
		"--web.listen-address=" + addr,
		"--log.level=warn",
	})...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.url = "http://" + addr
	s.mu.Unlock()
	s.log = logPath

	if err := s.waitReady(data, done); err != nil {
		s.Stop()
		out, _ := os.ReadFile(logPath)
		if bytes.Contains(out, []byte("address already in use")) {
			return fmt.Errorf("%w: %s", errPortTaken, addr)
		}
		return fmt.Errorf("%w; its log:\n%s", err, tail(out, 2000))
	}
	client, err := s.client()
	if err != nil {
		s.Stop()
		return err
	}
	s.api = v1.NewAPI(client)
	return nil
}

// waitReady waits for /-/ready, then makes sure the Prometheus that
// answers is this one (by its data directory) and not another test's that
// took the port first.
func (s *Server) waitReady(data string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), Patience)
	defer cancel()
	client, err := s.client()
	if err != nil {
		return err
	}
	ready := s.url + "/-/ready"
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ready, nil)
		if err != nil {
			return err
		}
		if s.auth != nil {
			pass, _ := s.auth.Password()
			req.SetBasicAuth(s.auth.Username(), pass)
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			return errors.New("prometheus exited before it was ready")
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s", ready, Patience)
		case <-tick.C:
		}
	}
	flags, err := v1.NewAPI(client).Flags(ctx)
	if err != nil {
		return fmt.Errorf("flags of the prometheus at %s: %w", s.url, err)
	}
	select {
	case <-exited:
		return errors.New("prometheus exited")
	default:
	}
	if got := flags["storage.tsdb.path"]; got != data {
		return fmt.Errorf("%w: another prometheus (data in %s) answers at %s", errPortTaken, got, s.url)
	}
	return nil
}

// client is the test's own client of Prometheus, with the credentials.
func (s *Server) client() (api.Client, error) {
	u, err := url.Parse(s.url)
	if err != nil {
		return nil, err
	}
	u.User = s.auth
	return api.NewClient(api.Config{Address: u.String()})
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// URL is Prometheus's base URL, e.g. http://127.0.0.1:40123, without
// credentials.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// Fire sets the gauge to 1; the alert fires after the next scrape and
// rule evaluation: about two seconds, or up to eight right after Start.
// WaitFiring waits for it.
func (s *Server) Fire() { s.alarm.Set(1) }

// Clear sets the gauge to 0; the alert resolves after the next scrape and
// evaluation. WaitCleared waits for it.
func (s *Server) Clear() { s.alarm.Set(0) }

// WaitFiring polls until Query returns a series. It gives up when ctx
// ends or after Patience.
func (s *Server) WaitFiring(ctx context.Context) error {
	return s.wait(ctx, "firing", func(n int) bool { return n > 0 })
}

// WaitCleared polls until Query returns no series. It gives up when ctx
// ends or after Patience.
func (s *Server) WaitCleared(ctx context.Context) error {
	return s.wait(ctx, "cleared", func(n int) bool { return n == 0 })
}

func (s *Server) wait(ctx context.Context, what string, done func(series int) bool) error {
	ctx, cancel := context.WithTimeout(ctx, Patience)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		res, _, err := s.api.Query(ctx, Query, time.Time{})
		if err == nil {
			if v, ok := res.(model.Vector); ok && done(len(v)) {
				return nil
			} else if !ok {
				err = fmt.Errorf("result of type %T", res)
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("PhoenixTestAlarm not %s at %s: %w (last query: %v; scrapes: %s)", what, s.URL(), ctx.Err(), last, s.scrapes())
		case <-tick.C:
		}
	}
}

// scrapes tells whether Prometheus scrapes the gauge, for the error of a
// wait that gave up.
func (s *Server) scrapes() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, _, err := s.api.Query(ctx, `up{job="phoenix-test"}`, time.Time{})
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("up{job=\"phoenix-test\"} is %v", res)
}

// Stop kills Prometheus and waits until it has exited, so that queries
// fail from then on. Stopping twice is fine.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}
