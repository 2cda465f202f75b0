package sim

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Addresses are handed out process-wide, so that several simulators in one
// test binary never share one, starting from a random second octet so that
// concurrently running test processes rarely meet; an address found in use
// is skipped.
var addresses struct {
	sync.Mutex
	a, b, c int
}

func allocAddress(ports []int) (string, error) {
	addresses.Lock()
	defer addresses.Unlock()
	if addresses.a == 0 {
		addresses.a, addresses.b, addresses.c = 16+rand.IntN(235), 0, 1
	}
	for range 4096 {
		addresses.c++
		if addresses.c > 254 {
			addresses.c, addresses.b = 2, addresses.b+1
		}
		if addresses.b > 255 {
			addresses.b, addresses.a = 0, addresses.a+1
		}
		if addresses.a > 250 {
			addresses.a = 16
		}
		ip := fmt.Sprintf("127.%d.%d.%d", addresses.a, addresses.b, addresses.c)
		if free(ip, ports) {
			return ip, nil
		}
	}
	return "", fmt.Errorf("no free loopback address found")
}

func free(ip string, ports []int) bool {
	for _, p := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err != nil {
			return false
		}
		_ = l.Close()
	}
	return true
}

// app is a server's application: an HTTP server on each health port of
// its address.
type app struct {
	srv     *http.Server
	failing atomic.Bool
	done    sync.WaitGroup
}

// SetHealth sets what a server's application answers.
func (s *Sim) SetHealth(id string, h Health) error {
	s.mu.Lock()
	srv, ok := s.servers[id]
	if ok {
		srv.health = h
	}
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("no server %s", id)
	}
	s.syncApp(srv)
	return nil
}

// syncApp opens or closes a server's listeners to match its state. It
// re-reads the state under the lock each time, so concurrent calls settle
// on the latest.
func (s *Sim) syncApp(srv *server) {
	srv.appMu.Lock()
	defer srv.appMu.Unlock()
	s.mu.Lock()
	_, exists := s.servers[srv.id]
	want := exists && !s.closed && srv.appUp && srv.health != HealthDown
	failing := srv.health == HealthFailing
	s.mu.Unlock()

	switch {
	case want && srv.app == nil:
		a, err := s.startApp(srv.address, srv.ports)
		if err != nil {
			return // the address was taken meanwhile: the server stays unreachable, as a broken one would
		}
		srv.app = a
	case !want && srv.app != nil:
		srv.app.stop()
		srv.app = nil
	}
	if srv.app != nil {
		srv.app.failing.Store(failing)
	}
}

func (srv *server) stopApp() {
	srv.appMu.Lock()
	defer srv.appMu.Unlock()
	if srv.app != nil {
		srv.app.stop()
		srv.app = nil
	}
}

func (s *Sim) startApp(ip string, ports []int) (*app, error) {
	a := &app{}
	a.srv = &http.Server{
		ReadHeaderTimeout: 2 * time.Second,
		IdleTimeout:       time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if a.failing.Load() {
				http.Error(w, "unhealthy", http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok\n"))
		}),
	}
	var ls []net.Listener
	for _, p := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err != nil {
			for _, l := range ls {
				_ = l.Close()
			}
			return nil, err
		}
		ls = append(ls, l)
	}
	for _, l := range ls {
		a.done.Add(1)
		go func() {
			defer a.done.Done()
			_ = a.srv.Serve(l)
		}()
	}
	return a, nil
}

func (a *app) stop() {
	_ = a.srv.Close()
	a.done.Wait()
}
