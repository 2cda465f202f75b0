package openstack

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"
	"go.uber.org/zap"
)

// RetryPolicy says how the HTTP client under gophercloud retries. gophercloud
// itself retries nothing but a 401 (re-authentication), so every other
// retry happens here, below it.
type RetryPolicy struct {
	// RequestTimeout bounds one attempt of one request. A create that hits
	// it has an unknown outcome; the next list by tag settles it.
	RequestTimeout time.Duration
	// MaxRetries is how many times a retryable request is sent again.
	MaxRetries int
	// WaitMin and WaitMax bound the exponential backoff between attempts
	// when the cloud does not say how long to wait.
	WaitMin, WaitMax time.Duration
	// MaxRetryAfter is the longest Retry-After the client waits out; a
	// cloud asking for longer gets its answer passed up instead, because
	// retrying sooner than asked would be rude and waiting longer would
	// stall a rollout silently.
	MaxRetryAfter time.Duration
}

// DefaultRetryPolicy suits a real cloud.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{
		RequestTimeout: 60 * time.Second,
		MaxRetries:     4,
		WaitMin:        1 * time.Second,
		WaitMax:        30 * time.Second,
		MaxRetryAfter:  2 * time.Minute,
	}
}

type methodKey struct{}

// newHTTPClient builds the client gophercloud sends every request through:
// retryablehttp with a retry rule that knows which requests are safe to
// send twice.
//
// The rule: GET, HEAD, PUT, DELETE and OPTIONS are idempotent and retry on
// connection errors, 5xx (except 501) and 429. A POST — a server create above
// all — is retried only when the cloud provably did nothing: a 429, or a
// connection that was never established. Anything else (a 5xx, a timeout, a
// connection dropped mid-request) may have created a server, and sending the
// request again could create a second one; the caller gets the error and
// the next list by tag counts whatever exists. Token requests (POST
// /auth/tokens) create nothing that matters and retry like a GET.
func newHTTPClient(p RetryPolicy, tlsConfig *tls.Config, logger *zap.Logger, observe *observer) *http.Client {
	transport := cleanhttp.DefaultPooledTransport()
	if tlsConfig != nil {
		// Set TLS here: gophercloud's WithTLSConfig would replace the
		// whole transport and with it the retries.
		transport.TLSClientConfig = tlsConfig
	}

	rc := retryablehttp.NewClient()
	var rt http.RoundTripper = transport
	if observe != nil && observe.hook != nil {
		observe.next = transport
		rt = observe
	}
	rc.HTTPClient = &http.Client{Transport: rt, Timeout: p.RequestTimeout}
	rc.RetryMax = p.MaxRetries
	rc.RetryWaitMin = p.WaitMin
	rc.RetryWaitMax = p.WaitMax
	rc.Logger = retryLogger{logger}
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	rc.CheckRetry = func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		return shouldRetry(ctx, p, resp, err)
	}
	rc.Backoff = retryablehttp.DefaultBackoff

	// The retry rule needs the request's method and path, which
	// retryablehttp does not pass to CheckRetry; carry them in the context.
	return &http.Client{Transport: annotate{next: &retryablehttp.RoundTripper{Client: rc}, log: logger}}
}

type requestInfo struct {
	method, path string
}

// annotate puts the method and path into the request context for the retry
// rule to read, and logs every cloud call at debug level: method, path,
// status and duration — never headers or bodies, which hold tokens and
// passwords.
type annotate struct {
	next http.RoundTripper
	log  *zap.Logger
}

func (a annotate) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := context.WithValue(req.Context(), methodKey{}, requestInfo{req.Method, req.URL.Path})
	start := time.Now()
	resp, err := a.next.RoundTrip(req.WithContext(ctx))
	if ce := a.log.Check(zap.DebugLevel, "cloud request"); ce != nil {
		fields := []zap.Field{zap.String("method", req.Method), zap.String("path", req.URL.Path), zap.Duration("took", time.Since(start))}
		if resp != nil {
			fields = append(fields, zap.Int("status", resp.StatusCode))
		}
		if err != nil {
			fields = append(fields, zap.Error(err))
		}
		ce.Write(fields...)
	}
	return resp, err
}

func shouldRetry(ctx context.Context, p RetryPolicy, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	info, _ := ctx.Value(methodKey{}).(requestInfo)
	safe := isIdempotent(info)

	if err != nil {
		if safe {
			return true, nil
		}
		// A POST is retried only when nothing reached the cloud.
		return neverSent(err), nil
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		if d, ok := retryAfter(resp); ok && d > p.MaxRetryAfter {
			return false, nil
		}
		return true, nil
	case resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented:
		if d, ok := retryAfter(resp); ok && d > p.MaxRetryAfter {
			return false, nil
		}
		return safe, nil
	}
	return false, nil
}

func isIdempotent(info requestInfo) bool {
	switch info.method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions:
		return true
	case http.MethodPost:
		return strings.HasSuffix(info.path, "/auth/tokens")
	}
	return false
}

// neverSent reports whether err proves the request never reached the
// server: the connection could not be opened at all.
func neverSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return false
}

func retryAfter(resp *http.Response) (time.Duration, bool) {
	v := resp.Header.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return time.Until(t), true
	}
	return 0, false
}

// retryLogger sends retryablehttp's messages to zap at debug level. It
// logs methods and URLs only, never headers or bodies, so no token or
// password can reach the log.
type retryLogger struct{ l *zap.Logger }

func (r retryLogger) Error(msg string, kv ...any) { r.l.Sugar().Debugw(msg, kv...) }
func (r retryLogger) Info(msg string, kv ...any)  { r.l.Sugar().Debugw(msg, kv...) }
func (r retryLogger) Debug(msg string, kv ...any) { r.l.Sugar().Debugw(msg, kv...) }
func (r retryLogger) Warn(msg string, kv ...any)  { r.l.Sugar().Debugw(msg, kv...) }

// RequestRecord is one attempt of one request to the cloud, for metrics.
type RequestRecord struct {
	// Service is the catalog type whose endpoint the URL is under
	// ("compute", "image", "network", "load-balancer", "identity"), or
	// "other".
	Service string
	Method  string
	// Status is the HTTP status, 0 when no answer came.
	Status   int
	Duration time.Duration
}

// observer reports every attempt of every request (retries included, as
// the cloud sees them) to a hook, naming the service by its endpoint.
type observer struct {
	next      http.RoundTripper
	hook      func(RequestRecord)
	endpoints atomic.Pointer[[]serviceEndpoint]
}

type serviceEndpoint struct{ prefix, service string }

func (o *observer) setEndpoints(eps []serviceEndpoint) {
	// Longest prefix first, so that nested endpoints match correctly.
	sort.Slice(eps, func(i, j int) bool { return len(eps[i].prefix) > len(eps[j].prefix) })
	o.endpoints.Store(&eps)
}

func (o *observer) service(u string) string {
	if eps := o.endpoints.Load(); eps != nil {
		for _, e := range *eps {
			if strings.HasPrefix(u, e.prefix) {
				return e.service
			}
		}
	}
	if strings.Contains(u, "/auth/tokens") || strings.Contains(u, "/v3") {
		return "identity"
	}
	return "other"
}

func (o *observer) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := o.next.RoundTrip(req)
	rec := RequestRecord{Service: o.service(req.URL.String()), Method: req.Method, Duration: time.Since(start)}
	if err == nil {
		rec.Status = resp.StatusCode
	}
	o.hook(rec)
	return resp, err
}
