package blocker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// DefaultTimeout bounds one query when PrometheusConfig.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// DefaultMinInterval is how long a verdict is reused: the reconciler asks
// every few hundred milliseconds, and an alert that starts firing can wait
// a few seconds to be noticed.
const DefaultMinInterval = 5 * time.Second

// PrometheusConfig names the Prometheus to ask and what to ask it.
type PrometheusConfig struct {
	// URL is Prometheus's base URL, e.g. http://prometheus:9090. Userinfo
	// (https://user:pass@host) is sent as basic auth and never shown.
	URL string
	// Query is an instant PromQL query; any series it returns blocks.
	Query string
	// Timeout bounds one query; zero means DefaultTimeout.
	Timeout time.Duration
}

// Verdict is one answer of the blocker.
type Verdict struct {
	// Blocked is true while the query returns series, or cannot be
	// answered.
	Blocked bool
	// Reason says why it blocks, in at most MaxReason bytes; empty when it
	// does not.
	Reason string
	// Series is how many series the query returned.
	Series int
	// Err is why the query could not be answered (then Blocked is true).
	// Its text is redacted like Reason.
	Err error
	// At is when Prometheus was asked (by the blocker's clock); a verdict
	// reused from the cache keeps the time it was made.
	At time.Time
}

// Option changes how a Prometheus blocker behaves.
type Option func(*options)

type options struct {
	now         func() time.Time
	minInterval time.Duration
}

// WithClock sets the clock that ages cached verdicts (tests pass a fake).
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithMinInterval sets how long a verdict is reused before Prometheus is
// asked again; zero asks on every call.
func WithMinInterval(d time.Duration) Option {
	return func(o *options) { o.minInterval = d }
}

// Prometheus is a blocker that asks Prometheus an instant query. It is
// safe for concurrent use.
type Prometheus struct {
	api         v1.API
	query       string
	url         string // redacted
	timeout     time.Duration
	minInterval time.Duration
	now         func() time.Time
	redact      func(string) string

	// turn admits one caller at a time, so that callers arriving while a
	// query is in flight share its verdict instead of sending their own;
	// a channel rather than a mutex so that a waiting caller can give up
	// with its context.
	turn   chan struct{}
	last   Verdict
	cached bool
}

// NewPrometheus checks cfg and builds the blocker; it does not contact
// Prometheus (a Prometheus that is down makes Check block, not this fail).
func NewPrometheus(cfg PrometheusConfig, opts ...Option) (*Prometheus, error) {
	o := options{now: time.Now, minInterval: DefaultMinInterval}
	for _, opt := range opts {
		opt(&o)
	}
	if o.now == nil {
		return nil, errors.New("prometheus blocker: WithClock needs a clock, got nil")
	}
	if o.minInterval < 0 {
		return nil, fmt.Errorf("prometheus blocker: minimum interval %s is negative", o.minInterval)
	}
	if cfg.Query == "" {
		return nil, errors.New("prometheus blocker: the query is empty")
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("prometheus blocker: timeout %s is negative", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	u, user, err := parseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("prometheus blocker: %w", err)
	}
	var rt http.RoundTripper = api.DefaultRoundTripper
	if user != nil {
		rt = &basicAuth{next: rt, host: u.Host, user: user}
	}
	client, err := api.NewClient(api.Config{Address: u.String(), RoundTripper: rt})
	if err != nil {
		return nil, fmt.Errorf("prometheus blocker: client for %s: %w", u, err)
	}
	return &Prometheus{
		api:         v1.NewAPI(client),
		query:       cfg.Query,
		url:         u.String(),
		timeout:     cfg.Timeout,
		minInterval: o.minInterval,
		now:         o.now,
		redact:      redactor(user),
		turn:        make(chan struct{}, 1),
	}, nil
}

// String describes the blocker for logs, without credentials.
func (p *Prometheus) String() string {
	return fmt.Sprintf("Prometheus query %s at %s", p.query, p.url)
}

// Blocking returns why a voluntary replacement must not start now, or ""
// when nothing blocks it. A query that cannot be answered blocks (see
// Check).
func (p *Prometheus) Blocking(ctx context.Context) string {
	v := p.Check(ctx)
	if !v.Blocked {
		return ""
	}
	return v.Reason
}

// Check asks Prometheus, or reuses the last verdict while it is younger
// than the minimum interval.
//
// What blocks: a vector or matrix result with any series; a scalar result
// that is not zero (NaN is not zero), so that a query such as
// count(ALERTS) > bool 0 can be used as well; and a query that cannot be
// answered — Prometheus unreachable or answering an error, the timeout,
// a query it refuses, a result of another type — which blocks fail-safe.
//
// A verdict is cached whether it blocks or not, so a Prometheus that is
// down is not asked more often than one that is up; only a verdict cut
// short by the caller's own context is not kept, since it says nothing
// about Prometheus.
func (p *Prometheus) Check(ctx context.Context) Verdict {
	select {
	case p.turn <- struct{}{}:
	case <-ctx.Done():
		return p.failSafe(fmt.Errorf("wait for the query in flight: %w", ctx.Err()), p.now())
	}
	defer func() { <-p.turn }()

	now := p.now()
	if p.cached {
		// A clock that went back makes the verdict's age negative: ask
		// again rather than trust it for longer than the interval.
		if age := now.Sub(p.last.At); age >= 0 && age < p.minInterval {
			return p.last
		}
	}
	v := p.ask(ctx, now)
	if ctx.Err() == nil {
		p.last, p.cached = v, true
	}
	return v
}

func (p *Prometheus) ask(ctx context.Context, now time.Time) Verdict {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	// The zero time lets Prometheus evaluate at its own now: the blocker's
	// clock may be a test's fake. Warnings (e.g. about partial data from a
	// remote read) are not errors: the series returned still block.
	res, _, err := p.api.Query(ctx, p.query, time.Time{}, v1.WithTimeout(p.timeout))
	if err != nil {
		// Transport errors name the URL already; answers of Prometheus's
		// (an error status, a refused query) do not.
		if uerr := (*url.Error)(nil); !errors.As(err, &uerr) {
			err = fmt.Errorf("Prometheus at %s: %w", p.url, err)
		}
		return p.failSafe(err, now)
	}
	v, err := judge(p.query, res)
	if err != nil {
		return p.failSafe(err, now)
	}
	v.At = now
	return v
}

// failSafe is the verdict for a query that could not be answered.
func (p *Prometheus) failSafe(err error, now time.Time) Verdict {
	// The reason has room for the cause, not for the URL as well: a
	// transport error gives only what went wrong (which names the host),
	// the rest of the error is in Err and String.
	cause := err.Error()
	if uerr := (*url.Error)(nil); errors.As(err, &uerr) {
		cause = uerr.Err.Error()
	}
	return Verdict{
		Blocked: true,
		Reason: shorten(fmt.Sprintf("Prometheus query %s cannot be answered, so it blocks (fail safe): %s",
			shorten(p.query, maxQueryInReason), p.redact(cause)), MaxReason),
		Err: &redactedError{msg: p.redact(err.Error()), err: err},
		At:  now,
	}
}

// judge turns a query result into a verdict (without its time).
func judge(query string, res model.Value) (Verdict, error) {
	var names []string
	switch r := res.(type) {
	case model.Vector:
		for _, s := range r {
			names = append(names, seriesName(s.Metric))
		}
	case model.Matrix:
		for _, s := range r {
			names = append(names, seriesName(s.Metric))
		}
	case *model.Scalar:
		if r == nil {
			return Verdict{}, errors.New("Prometheus returned an empty scalar")
		}
		if r.Value == 0 {
			return Verdict{}, nil
		}
		return Verdict{
			Blocked: true,
			Reason:  shorten(fmt.Sprintf("Prometheus query %s returns %s", shorten(query, maxQueryInReason), r.Value), MaxReason),
		}, nil
	default:
		return Verdict{}, fmt.Errorf("Prometheus returned a result of type %T, which neither blocks nor allows", res)
	}
	if len(names) == 0 {
		return Verdict{}, nil
	}
	return Verdict{Blocked: true, Reason: seriesReason(query, names), Series: len(names)}, nil
}

// parseURL checks a Prometheus base URL and takes its userinfo out. Its
// errors never quote the URL, which may hold a password.
func parseURL(raw string) (*url.URL, *url.Userinfo, error) {
	if raw == "" {
		return nil, nil, errors.New("the URL is empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the whole URL; its inner error does not.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, nil, fmt.Errorf("URL %s is not a URL: %s", stripUserinfo(raw), redactorFor(raw)(err.Error()))
	}
	user := u.User
	u.User = nil
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, nil, fmt.Errorf("URL %s: the scheme must be http or https", u.Redacted())
	case u.Host == "":
		return nil, nil, fmt.Errorf("URL %s: no host", u.Redacted())
	case u.RawQuery != "" || u.Fragment != "":
		return nil, nil, fmt.Errorf("URL %s: a base URL takes no query or fragment", u.Redacted())
	}
	return u, user, nil
}

// basicAuth sends the URL's userinfo as basic auth, to the configured host
// only: a redirect elsewhere must not carry the password.
type basicAuth struct {
	next http.RoundTripper
	host string
	user *url.Userinfo
}

func (b *basicAuth) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host != b.host || req.Header.Get("Authorization") != "" {
		return b.next.RoundTrip(req)
	}
	pass, _ := b.user.Password()
	req = req.Clone(req.Context())
	req.SetBasicAuth(b.user.Username(), pass)
	return b.next.RoundTrip(req)
}
