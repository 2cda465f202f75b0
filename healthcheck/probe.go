package healthcheck

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Prober performs one probe of one address (an IP literal). A nil error is
// a pass. Implementations must honour ctx's deadline and must not retry.
type Prober interface {
	Probe(ctx context.Context, address string) error
}

// HTTPProbe passes when GET http://address:Port/Path answers the expected
// status.
type HTTPProbe struct {
	Port int
	// Path defaults to "/".
	Path string
	// ExpectStatus is the status a healthy server answers; 0 accepts any 2xx.
	ExpectStatus int
	// Client defaults to one that follows no redirect, keeps no
	// connection alive (a dead server must not hide behind a pooled
	// connection) and ignores proxy settings (probes go straight to the
	// server's address).
	Client *http.Client
}

var defaultHTTPClient = &http.Client{
	Transport: &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true,
		DialContext:       (&net.Dialer{}).DialContext,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// maxBody bounds how much of a health answer is read.
const maxBody = 4 << 10

// Probe performs one GET.
func (p HTTPProbe) Probe(ctx context.Context, address string) error {
	path := p.Path
	if path == "" {
		path = "/"
	}
	url := "http://" + net.JoinHostPort(address, strconv.Itoa(p.Port)) + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("health probe %s: %w", url, err)
	}
	req.Header.Set("User-Agent", "phoenix-healthcheck")
	client := p.Client
	if client == nil {
		client = defaultHTTPClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("health probe %s: %w", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	switch {
	case p.ExpectStatus == 0 && resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case p.ExpectStatus != 0 && resp.StatusCode == p.ExpectStatus:
		return nil
	case p.ExpectStatus == 0:
		return fmt.Errorf("health probe %s: status %d, want 2xx", url, resp.StatusCode)
	default:
		return fmt.Errorf("health probe %s: status %d, want %d", url, resp.StatusCode, p.ExpectStatus)
	}
}

// TCPProbe passes when a TCP connection to Port opens.
type TCPProbe struct {
	Port int
}

// Probe dials and closes.
func (p TCPProbe) Probe(ctx context.Context, address string) error {
	target := net.JoinHostPort(address, strconv.Itoa(p.Port))
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return fmt.Errorf("health probe tcp %s: %w", target, err)
	}
	return conn.Close()
}

// probeTimeout is used when a Policy leaves Timeout unset.
const probeTimeout = 2 * time.Second
