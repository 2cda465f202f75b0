package sim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Loopback addresses are handed out process-wide, so that several
// simulators in one test binary never share one. The walk starts at a
// random second octet in [16, 250], so that test processes running at the
// same time rarely meet, and skips addresses found in use.
var loopback struct {
	sync.Mutex
	next uint32 // a<<16 | b<<8 | c for 127.a.b.c; 0 before the first use
}

const (
	firstOctet = 16
	lastOctet  = 250
	// maxTries bounds one walk: enough to step past the addresses other
	// simulators on the machine hold, few enough that a port taken on
	// every address (a wildcard listener) fails in milliseconds.
	maxTries = 256
)

// allocAddress returns a loopback address on which every port is free,
// or an error naming the port that was not.
func allocAddress(ports []int) (string, error) {
	loopback.Lock()
	defer loopback.Unlock()
	if loopback.next == 0 {
		loopback.next = uint32(firstOctet+rand.IntN(lastOctet-firstOctet+1))<<16 | 1
	}
	busy := map[int]int{} // port → addresses it was in use on
	var first, last string
	var lastErr error
	for range maxTries {
		ip := nextLoopback()
		port, err := portsFree(ip, ports)
		if err == nil {
			return ip, nil
		}
		if first == "" {
			first = ip
		}
		last, lastErr = ip, err
		busy[port]++
	}
	for _, p := range ports {
		if busy[p] == maxTries {
			return "", fmt.Errorf("sim: port %d is in use on every loopback address tried (%d, %s to %s): %s",
				p, maxTries, first, last, holder(last, p, lastErr))
		}
	}
	return "", fmt.Errorf("sim: no loopback address has ports %v free (tried %d, %s to %s): %w", ports, maxTries, first, last, lastErr)
}

// nextLoopback steps the walk: host parts 1 to 254, then the next b, then
// the next a, wrapping from 250 back to 16. Call with loopback held.
func nextLoopback() string {
	n := loopback.next
	a, b, c := n>>16, n>>8&0xff, n&0xff
	switch {
	case c < 254:
		c++
	case b < 255:
		b, c = b+1, 1
	case a < lastOctet:
		a, b, c = a+1, 0, 1
	default:
		a, b, c = firstOctet, 0, 1
	}
	loopback.next = a<<16 | b<<8 | c
	return fmt.Sprintf("127.%d.%d.%d", n>>16, n>>8&0xff, n&0xff)
}

// portsFree returns nil when every port can be bound on ip, else the
// first port that cannot and why.
func portsFree(ip string, ports []int) (int, error) {
	for _, p := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err != nil {
			return p, err
		}
		_ = l.Close()
	}
	return 0, nil
}

// holder says what keeps port busy on ip, an address the walk had only
// just reached: when something answers there, it is a listener on every
// address.
func holder(ip string, port int, err error) string {
	c, dialErr := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(port)), time.Second)
	if dialErr == nil {
		_ = c.Close()
		return fmt.Sprintf("another program listens on 0.0.0.0:%d or [::]:%d", port, port)
	}
	return err.Error()
}

// pickHealthPorts settles, once, the ports the servers' applications
// listen on: the ports asked for, else preferred when it is free, else a
// port the kernel finds free on every address. Each is checked on a
// loopback address, so that a simulator that cannot place its servers'
// applications says so at start, not with every server create.
func pickHealthPorts(asked []int, preferred int) ([]int, error) {
	if len(asked) > 0 {
		for _, p := range asked {
			if p < 1 || p > 65535 {
				return nil, fmt.Errorf("sim: health port %d: want 1 to 65535", p)
			}
		}
		if _, err := allocAddress(asked); err != nil {
			return nil, err
		}
		return asked, nil
	}
	_, err := allocAddress([]int{preferred})
	if err == nil {
		return []int{preferred}, nil
	}
	// A port bound and released on every address at once is free
	// everywhere; the check below catches one taken again meanwhile.
	for range 3 {
		l, lerr := net.Listen("tcp", ":0")
		if lerr != nil {
			return nil, fmt.Errorf("sim: find a free health port (%d is not: %v): %w", preferred, err, lerr)
		}
		p := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if _, err = allocAddress([]int{p}); err == nil {
			return []int{p}, nil
		}
	}
	return nil, fmt.Errorf("sim: find a free health port: %w", err)
}

// app is a server's application: an HTTP server on each health port of
// the server's address.
type app struct {
	srv     *http.Server
	failing atomic.Bool
	wg      sync.WaitGroup // accept loops and connections
}

// SetHealth sets what a server's application answers: HealthUp 200,
// HealthFailing 503, HealthDown nothing (connections refused). It applies
// at once when the application is up, and from its start otherwise.
func (s *Sim) SetHealth(id string, h Health) error {
	if h < HealthUp || h > HealthDown {
		return fmt.Errorf("sim: unknown health %d", int(h))
	}
	s.mu.Lock()
	srv, ok := s.servers[id]
	if ok {
		srv.health = h
	}
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("sim: no server %s", id)
	}
	s.syncApp(srv)
	return nil
}

// syncApp opens or closes a server's listeners to match its state. It
// reads the state under the lock each time, so concurrent calls settle on
// the latest.
func (s *Sim) syncApp(srv *server) {
	srv.appMu.Lock()
	defer srv.appMu.Unlock()
	s.mu.Lock()
	want := s.servers[srv.id] == srv && !s.closed && srv.appUp && srv.health != HealthDown && srv.address != ""
	failing := srv.health == HealthFailing || srv.leaking
	s.mu.Unlock()

	switch {
	case want && srv.app == nil:
		a, err := startApp(srv.id, srv.address, srv.ports, failing)
		if err != nil {
			// The address was taken after it was handed out: the server
			// stays unreachable, as a broken one would, and not Healthy.
			return
		}
		srv.app = a
	case !want && srv.app != nil:
		srv.app.stop()
		srv.app = nil
	}
	if srv.app != nil {
		srv.app.failing.Store(failing)
	}
	s.mu.Lock()
	srv.listening = srv.app != nil
	s.mu.Unlock()
}

// stopApp closes a server's listeners for good (the server is gone or the
// simulator closing).
func (srv *server) stopApp() {
	srv.appMu.Lock()
	defer srv.appMu.Unlock()
	if srv.app != nil {
		srv.app.stop()
		srv.app = nil
	}
}

func startApp(id, ip string, ports []int, failing bool) (*app, error) {
	a := &app{}
	a.failing.Store(failing)
	a.srv = &http.Server{
		// Short timeouts: probes that die half-way must not pile up.
		ReadHeaderTimeout: 2 * time.Second,
		ReadTimeout:       2 * time.Second,
		WriteTimeout:      2 * time.Second,
		IdleTimeout:       time.Second,
		ConnState:         trackConns(&a.wg),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// ?work=100ms makes a request take that long (at most 1s), like
			// a real application's: a server deleted while it works cuts
			// it off, which is what a drain is for.
			if d, err := time.ParseDuration(r.URL.Query().Get("work")); err == nil && d > 0 {
				t := time.NewTimer(min(d, time.Second))
				select {
				case <-t.C:
				case <-r.Context().Done():
					t.Stop()
					return
				}
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			// The server names itself, so that a test sees which server a
			// load balancer or floating IP sent a request to.
			w.Header().Set("X-Sim-Server", id)
			if a.failing.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte("unhealthy"))
				return
			}
			_, _ = w.Write([]byte("ok"))
		}),
	}
	ls := make([]net.Listener, 0, len(ports))
	for _, p := range ports {
		l, err := listen(net.JoinHostPort(ip, strconv.Itoa(p)))
		if err != nil {
			for _, l := range ls {
				_ = l.Close()
			}
			return nil, err
		}
		ls = append(ls, l)
	}
	for _, l := range ls {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			_ = a.srv.Serve(l)
		}()
	}
	return a, nil
}

// listen retries briefly when the address is in use: a listener this
// process closed a moment ago (HealthDown, then HealthUp) can take a
// moment to release its port.
func listen(addr string) (net.Listener, error) {
	var err error
	for range 20 {
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err == nil {
			return l, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, err
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil, err
}

func (a *app) stop() {
	_ = a.srv.Close()
	a.wg.Wait()
}
