package blocker

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/phoenix-ops/phoenix/controller/blocker/promtest"
)

// await runs one of promtest's waits and fails the test if it gives up.
func await(t *testing.T, wait func(context.Context) error) {
	t.Helper()
	start := time.Now()
	if err := wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Logf("waited %s", time.Since(start))
}

const failSafe = "cannot be answered, so it blocks (fail safe): "

// The alert's life, as the blocker sees it through a real Prometheus.
func TestBlocksWhileTheAlertFires(t *testing.T) {
	t.Parallel()
	srv := promtest.Start(t)
	b := newBlocker(t, PrometheusConfig{URL: srv.URL(), Query: promtest.Query}, WithMinInterval(0))
	ctx := t.Context()

	if r := b.Blocking(ctx); r != "" {
		t.Fatalf("blocks before the alarm: %s", r)
	}
	srv.Fire()
	await(t, srv.WaitFiring)
	v := b.Check(ctx)
	want := "Prometheus query " + promtest.Query + ` returns 1 series: ALERTS{alertname="PhoenixTestAlarm",alertstate="firing",`
	if !v.Blocked || v.Series != 1 || v.Err != nil || !strings.HasPrefix(v.Reason, want) {
		t.Fatalf("while the alert fires: %+v, want a block whose reason starts %q", v, want)
	}
	if r := b.Blocking(ctx); r != v.Reason {
		t.Errorf("Blocking() = %q, Check's reason %q", r, v.Reason)
	}
	srv.Clear()
	await(t, srv.WaitCleared)
	if r := b.Blocking(ctx); r != "" {
		t.Fatalf("blocks after the alert resolved: %s", r)
	}
}

// What blocks among the results Prometheus can give: series of a vector
// or matrix, and a scalar that is not zero.
func TestResultTypes(t *testing.T) {
	t.Parallel()
	srv := promtest.Start(t)
	for _, tc := range []struct {
		query   string
		blocked bool
		series  int
		reason  string
	}{
		{query: "0"},
		{query: "1", blocked: true, reason: "Prometheus query 1 returns 1"},
		{query: "NaN", blocked: true, reason: "Prometheus query NaN returns NaN"},
		{query: `up{job="no-such-job"}`},
		{query: "vector(0)", blocked: true, series: 1, reason: "Prometheus query vector(0) returns 1 series: {}"},
		{query: "vector(1)[10s:1s]", blocked: true, series: 1, reason: "Prometheus query vector(1)[10s:1s] returns 1 series: {}"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			b := newBlocker(t, PrometheusConfig{URL: srv.URL(), Query: tc.query})
			v := b.Check(t.Context())
			if v.Err != nil {
				t.Fatal(v.Err)
			}
			if v.Blocked != tc.blocked || v.Series != tc.series || v.Reason != tc.reason {
				t.Errorf("verdict %+v, want blocked %v, %d series, reason %q", v, tc.blocked, tc.series, tc.reason)
			}
		})
	}
}

// Whatever keeps the query from being answered blocks, and says why.
func TestFailsSafe(t *testing.T) {
	t.Parallel()
	srv := promtest.Start(t)
	// A listener that never accepts: the connection opens, no answer comes.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })

	// In order: the last case stops Prometheus (a second one would cost
	// its start, some 6 s).
	for _, tc := range []struct {
		name    string
		stop    bool // stop Prometheus first
		cfg     PrometheusConfig
		want    string
		wantErr error
	}{
		{name: "a query it refuses", cfg: PrometheusConfig{URL: srv.URL(), Query: `ALERTS{alertname=`}, want: "bad_data: invalid parameter \"query\""},
		{name: "an HTTP error", cfg: PrometheusConfig{URL: srv.URL() + "/no/such/prefix", Query: promtest.Query}, want: "client error: 404"},
		{name: "a string result", cfg: PrometheusConfig{URL: srv.URL(), Query: `"maintenance"`}, want: `unexpected value type "string"`},
		{
			name: "no answer in time", cfg: PrometheusConfig{URL: "http://" + silent.Addr().String(), Query: promtest.Query, Timeout: 200 * time.Millisecond},
			want: "context deadline exceeded", wantErr: context.DeadlineExceeded,
		},
		{
			name: "Prometheus is down", stop: true, cfg: PrometheusConfig{URL: srv.URL(), Query: promtest.Query},
			want: failSafe + "dial tcp " + strings.TrimPrefix(srv.URL(), "http://") + ": connect: connection refused",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.stop {
				srv.Stop()
			}
			b := newBlocker(t, tc.cfg)
			v := b.Check(t.Context())
			prefix := "Prometheus query " + tc.cfg.Query + " " + failSafe
			if !v.Blocked || v.Err == nil || !strings.HasPrefix(v.Reason, prefix) || !strings.Contains(v.Reason, tc.want) {
				t.Fatalf("verdict %+v, want a block whose reason starts %q and has %q", v, prefix, tc.want)
			}
			if len(v.Reason) > MaxReason {
				t.Errorf("reason of %d bytes: %q", len(v.Reason), v.Reason)
			}
			if tc.wantErr != nil && !errors.Is(v.Err, tc.wantErr) {
				t.Errorf("err %v is not %v", v.Err, tc.wantErr)
			}
			if r := b.Blocking(t.Context()); r != v.Reason {
				t.Errorf("Blocking() = %q, Check's reason %q", r, v.Reason)
			}
		})
	}
}

// Credentials in the URL reach Prometheus and nothing else: not a reason,
// not an error, not String.
func TestCredentialsStayHidden(t *testing.T) {
	t.Parallel()
	srv := promtest.Start(t, promtest.WithBasicAuth())
	withUser := func(pass string) string {
		return strings.Replace(srv.URL(), "http://", "http://"+promtest.User+":"+pass+"@", 1)
	}
	const wrong = "wrong-secret"
	right := newBlocker(t, PrometheusConfig{URL: withUser(promtest.Password), Query: promtest.Query}, WithMinInterval(0))
	bad := newBlocker(t, PrometheusConfig{URL: withUser(wrong), Query: promtest.Query}, WithMinInterval(0))
	none := newBlocker(t, PrometheusConfig{URL: srv.URL(), Query: promtest.Query}, WithMinInterval(0))
	ctx := t.Context()

	hidden := func(t *testing.T, what, text string) {
		t.Helper()
		for _, leak := range []string{promtest.Password, wrong, promtest.User + ":", promtest.User + "@"} {
			if strings.Contains(text, leak) {
				t.Errorf("%s shows %q: %s", what, leak, text)
			}
		}
	}
	check := func(t *testing.T, b *Prometheus, want string) {
		t.Helper()
		v := b.Check(ctx)
		if !v.Blocked || !strings.Contains(v.Reason, want) {
			t.Errorf("verdict %+v, want a block whose reason has %q", v, want)
		}
		hidden(t, "the reason", v.Reason)
		if v.Err != nil {
			hidden(t, "the error", v.Err.Error())
		}
		hidden(t, "String()", b.String())
	}

	srv.Fire()
	await(t, srv.WaitFiring)
	t.Run("the right password is sent", func(t *testing.T) {
		check(t, right, `returns 1 series: ALERTS{alertname="PhoenixTestAlarm"`)
	})
	t.Run("a wrong password", func(t *testing.T) {
		check(t, bad, failSafe+"Prometheus at "+srv.URL()+": client_error: client error: 401")
	})
	t.Run("no password", func(t *testing.T) {
		check(t, none, failSafe+"Prometheus at "+srv.URL()+": client_error: client error: 401")
	})
	srv.Stop()
	t.Run("Prometheus is down", func(t *testing.T) {
		check(t, right, "connection refused")
		check(t, bad, "connection refused")
	})
}

// countQueries counts the queries the blocker sends.
type countQueries struct {
	v1.API
	n atomic.Int64
}

func (c *countQueries) Query(ctx context.Context, query string, ts time.Time, opts ...v1.Option) (model.Value, v1.Warnings, error) {
	c.n.Add(1)
	return c.API.Query(ctx, query, ts, opts...)
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// A verdict is reused for the minimum interval, by every caller at once,
// whether it blocks, allows or could not be had; after the interval
// Prometheus is asked again.
func TestCache(t *testing.T) {
	t.Parallel()
	srv := promtest.Start(t)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := &fakeClock{now: t0}
	b := newBlocker(t, PrometheusConfig{URL: srv.URL(), Query: promtest.Query}, WithClock(clock.Now), WithMinInterval(5*time.Second))
	queries := &countQueries{API: b.api}
	b.api = queries
	ctx := t.Context()

	expect := func(t *testing.T, blocked bool, at time.Time, asked int64) Verdict {
		t.Helper()
		v := b.Check(ctx)
		if v.Blocked != blocked || !v.At.Equal(at) || queries.n.Load() != asked {
			t.Fatalf("blocked %v at %s after %d queries (%s), want blocked %v at %s after %d",
				v.Blocked, v.At.Sub(t0), queries.n.Load(), v.Reason, blocked, at.Sub(t0), asked)
		}
		return v
	}

	srv.Fire()
	await(t, srv.WaitFiring)
	first := expect(t, true, t0, 1)

	srv.Clear()
	await(t, srv.WaitCleared)
	clock.Set(t0.Add(5*time.Second - time.Nanosecond))
	if v := expect(t, true, t0, 1); v.Reason != first.Reason {
		t.Errorf("the reused verdict's reason changed: %q, was %q", v.Reason, first.Reason)
	}

	// Callers at once share the cached verdict.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if v := b.Check(ctx); !v.Blocked || !v.At.Equal(t0) {
				t.Errorf("a concurrent caller got %+v", v)
			}
		})
	}
	wg.Wait()
	expect(t, true, t0, 1)

	t1 := t0.Add(5 * time.Second)
	clock.Set(t1)
	expect(t, false, t1, 2)
	expect(t, false, t1, 2)

	// A clock that went back does not stretch the verdict's life.
	back := t0.Add(time.Second)
	clock.Set(back)
	expect(t, false, back, 3)

	// A check cut short by its caller is not kept for the others.
	t2 := t0.Add(time.Minute)
	clock.Set(t2)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if v := b.Check(cancelled); !v.Blocked || !errors.Is(v.Err, context.Canceled) {
		t.Fatalf("a cancelled check: %+v, want a fail-safe block for the cancellation", v)
	}
	asked := queries.n.Load()
	expect(t, false, t2, asked+1)

	// A Prometheus that is down is asked no more often than one that is up.
	srv.Stop()
	t3 := t2.Add(5 * time.Second)
	clock.Set(t3)
	down := expect(t, true, t3, asked+2)
	if !strings.Contains(down.Reason, failSafe) {
		t.Fatalf("reason %q, want a fail-safe one", down.Reason)
	}
	clock.Set(t3.Add(4 * time.Second))
	expect(t, true, t3, asked+2)
}
