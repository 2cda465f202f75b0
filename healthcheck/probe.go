package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Prober performs one probe of one address (an IP literal, IPv4 or IPv6).
// A nil error is a pass. Implementations must honour ctx's deadline and
// must not retry: the Policy thresholds absorb flakiness.
//
// The Checker compares probers with == to tell whether a target changed, so
// a Prober should be comparable (a pointer, or a struct of comparable
// fields such as HTTPProbe and TCPProbe).
type Prober interface {
	Probe(ctx context.Context, address string) error
}

// HTTPProbe passes when GET http://address:Port/Path answers the expected
// status.
type HTTPProbe struct {
	Port int
	// Path defaults to "/"; a leading "/" is added when missing. It may
	// carry a query ("/healthz?full=1").
	Path string
	// ExpectStatus is the status a healthy server answers; 0 accepts any 2xx.
	ExpectStatus int
	// Client defaults to one that follows no redirect, keeps no
	// connection alive (a dead server must not hide behind a pooled
	// connection) and ignores proxy settings (probes go straight to the
	// server's address). A Client's own redirect and proxy settings are
	// used as they are.
	Client *http.Client
}

// maxBody bounds how much of a health answer is read; maxHeader bounds its
// headers (default client only).
const (
	maxBody   = 4 << 10
	maxHeader = 64 << 10
)

// defaultHTTPClient is shared by every HTTPProbe without a Client. Its
// timeouts come from each probe's context.
var defaultHTTPClient = &http.Client{
	Transport: &http.Transport{
		Proxy:                  nil,
		DialContext:            (&net.Dialer{}).DialContext,
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: maxHeader,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// url is the address the probe asks for. IPv6 literals are bracketed and a
// zone ("fe80::1%eth0") is escaped as URLs require.
func (p HTTPProbe) url(address string) string {
	path := p.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	host := net.JoinHostPort(strings.ReplaceAll(address, "%", "%25"), strconv.Itoa(p.Port))
	return "http://" + host + path
}

// Probe performs one GET and reads at most a few kilobytes of the answer.
func (p HTTPProbe) Probe(ctx context.Context, address string) error {
	u := p.url(address)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("health probe GET %s: %w", u, err)
	}
	req.Header.Set("User-Agent", "phoenix-healthcheck")
	client := p.Client
	if client == nil {
		client = defaultHTTPClient
	}
	resp, err := client.Do(req)
	if err != nil {
		// The client's error repeats the URL; keep only its cause.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("health probe GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	switch {
	case p.ExpectStatus == 0 && resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case p.ExpectStatus != 0 && resp.StatusCode == p.ExpectStatus:
		return nil
	case p.ExpectStatus == 0:
		return fmt.Errorf("health probe GET %s: status %d, want 2xx", u, resp.StatusCode)
	default:
		return fmt.Errorf("health probe GET %s: status %d, want %d", u, resp.StatusCode, p.ExpectStatus)
	}
}

// TCPProbe passes when a TCP connection to Port opens.
type TCPProbe struct {
	Port int
}

// Probe dials once and closes the connection.
func (p TCPProbe) Probe(ctx context.Context, address string) error {
	target := net.JoinHostPort(address, strconv.Itoa(p.Port))
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return fmt.Errorf("health probe tcp %s: %w", target, err)
	}
	_ = conn.Close()
	return nil
}

// Defaults for a Policy that leaves Interval or Timeout unset; they match
// the configuration's defaults.
const (
	defaultInterval = 5 * time.Second
	defaultTimeout  = 2 * time.Second
)
