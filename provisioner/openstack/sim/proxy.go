package sim

import (
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

// proxy is an HTTP server on one or more addresses that forwards what it
// receives: a load balancer listener or a floating IP.
type proxy struct {
	srv   *http.Server
	addrs []string // what it listens on, resolved
	wg    sync.WaitGroup
	once  sync.Once
}

// startProxy listens on every address and serves h there until stop.
func startProxy(addrs []string, h http.Handler) (*proxy, error) {
	p := &proxy{}
	p.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       30 * time.Second,
		ConnState:         trackConns(&p.wg),
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	ls := make([]net.Listener, 0, len(addrs))
	for _, a := range addrs {
		l, err := listen(a)
		if err != nil {
			for _, l := range ls {
				_ = l.Close()
			}
			return nil, err
		}
		ls = append(ls, l)
		p.addrs = append(p.addrs, l.Addr().String())
	}
	for _, l := range ls {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			_ = p.srv.Serve(l)
		}()
	}
	return p, nil
}

// stop closes the listeners and connections and waits until every request
// being served has returned. It may be called more than once.
func (p *proxy) stop() {
	if p == nil {
		return
	}
	p.once.Do(func() { _ = p.srv.Close() })
	p.wg.Wait()
}

// newTransport is the client side of the proxies and probes: no proxy
// from the environment, short dials, a few idle connections per server.
func newTransport() *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     10 * time.Second,
	}
}

// forward proxies a request to target (host:port) and passes the answer
// back, headers (X-Sim-Server among them) included; a target that cannot
// be reached gets 502.
func (s *Sim) forward(w http.ResponseWriter, r *http.Request, target string) {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: "http", Host: target})
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport: s.proxyTransport,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, "502 Bad Gateway: "+err.Error(), http.StatusBadGateway)
		},
	}
	rp.ServeHTTP(w, r)
}

// localAddr is the address a request came in on.
func localAddr(r *http.Request) string {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return a.String()
	}
	return ""
}
