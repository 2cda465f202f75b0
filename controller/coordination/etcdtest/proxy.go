package etcdtest

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"
)

// Proxy forwards TCP connections to one etcd member until it is cut: a
// replica given the proxy's URL as its only endpoint loses etcd at once
// when the test says so, while the others keep it.
type Proxy struct {
	l      net.Listener
	addr   string
	target string
	mu     sync.Mutex
	conns  []net.Conn
	cut    bool
}

// NewProxy forwards to the client URL target; it closes when the test
// ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{l: l, target: u.Host, addr: l.Addr().String()}
	go p.serve()
	t.Cleanup(p.Cut)
	return p
}

// URL is the proxy's client URL.
func (p *Proxy) URL() string { return "http://" + p.addr }

func (p *Proxy) serve() {
	p.mu.Lock()
	l := p.l
	p.mu.Unlock()
	for {
		in, err := l.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			in.Close()
			out.Close()
			return
		}
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(out, in); out.Close() }()
		go func() { _, _ = io.Copy(in, out); in.Close() }()
	}
}

// Restore listens again on the same address after a Cut: the replica
// behind the proxy reaches etcd again.
func (p *Proxy) Restore(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cut {
		return
	}
	addr := p.addr
	var err error
	var l net.Listener
	// The address was ours a moment ago; give the kernel a few tries.
	for try := 0; try < 50; try++ {
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("proxy: listen again on %s: %v", addr, err)
	}
	p.l, p.cut, p.conns = l, false, nil
	go p.serve()
}

// Cut closes the listener and every connection: from now on the replica
// behind the proxy reaches no etcd.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return
	}
	p.cut = true
	p.l.Close()
	for _, c := range p.conns {
		c.Close()
	}
}
