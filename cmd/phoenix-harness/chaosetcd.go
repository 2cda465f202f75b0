package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// chaosEtcd is a seed's etcd cluster, run inside the harness's process
// (etcd's embed package, as controller/coordination/etcdtest runs it for
// tests): CI needs no etcd binary.
//
// A member is reached through two proxies of the harness's, one for its
// clients and one for its peers, at the addresses it advertises; it
// listens itself on ports the kernel picks at each start. That is how a
// member is killed as a crash would kill it: the proxies drop every
// connection at once and refuse new ones, and the member stops without
// handing its leadership over. embed's own Close lets client streams run
// on for etcd's request timeout (7 s) before it frees the ports; here it
// frees nothing a restart needs, and a member starts again at once.
type chaosEtcd struct {
	mu      sync.Mutex
	members []*etcdMember
}

type etcdMember struct {
	name, dir    string
	client, peer *etcdProxy
	initial      string
	etcd         *embed.Etcd // nil while stopped
	started      bool        // once: a restart joins the existing cluster
	closing      sync.WaitGroup
}

// etcdStartTimeout bounds a cluster's start.
const etcdStartTimeout = slowdown * 30 * time.Second

// startEtcd starts an n-member cluster in dir and waits for it to serve.
func startEtcd(dir string, n int) (*chaosEtcd, error) {
	c := &chaosEtcd{}
	var initial []string
	for i := range n {
		m := &etcdMember{name: fmt.Sprintf("m%d", i), dir: filepath.Join(dir, fmt.Sprintf("etcd-m%d", i))}
		var err error
		if m.client, err = newEtcdProxy(); err == nil {
			m.peer, err = newEtcdProxy()
		}
		c.members = append(c.members, m)
		if err != nil {
			c.close()
			return nil, err
		}
		initial = append(initial, m.name+"="+m.peer.url())
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, m := range c.members {
		m.initial = strings.Join(initial, ",")
		wg.Go(func() { errs[i] = m.start() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.close()
		return nil, fmt.Errorf("start etcd: %w", err)
	}
	for _, m := range c.members {
		select {
		case <-m.etcd.Server.ReadyNotify():
		case <-time.After(etcdStartTimeout):
			c.close()
			return nil, fmt.Errorf("etcd member %s not ready after %s", m.name, etcdStartTimeout)
		}
	}
	return c, nil
}

// start starts the member from its directory, on new ports behind its
// proxies; it does not wait for a quorum (the members up may have none).
func (m *etcdMember) start() error {
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = m.name, m.dir
	local := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls, cfg.ListenPeerUrls = []url.URL{local}, []url.URL{local}
	cfg.AdvertiseClientUrls = []url.URL{{Scheme: "http", Host: m.client.addr()}}
	cfg.AdvertisePeerUrls = []url.URL{{Scheme: "http", Host: m.peer.addr()}}
	cfg.InitialCluster, cfg.InitialClusterToken = m.initial, "phoenix-chaos"
	if m.started {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	cfg.UnsafeNoFsync = true
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// etcd's own metrics are not needed; "basic" registers the least.
	cfg.Metrics = "basic"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("etcd member %s: %w", m.name, err)
	}
	m.etcd, m.started = e, true
	m.client.to(e.Clients[0].Addr().String())
	m.peer.to(e.Peers[0].Addr().String())
	return nil
}

// endpoints are the members' client URLs.
func (c *chaosEtcd) endpoints() []string {
	var out []string
	for _, m := range c.members {
		out = append(out, m.client.url())
	}
	return out
}

// stop kills member i as a crash would (see chaosEtcd). Its data stays
// for restart.
func (c *chaosEtcd) stop(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[i]
	if m.etcd == nil {
		return
	}
	m.client.to("")
	m.peer.to("")
	e := m.etcd
	m.etcd = nil
	// Stopped at once: raft, the WAL and the backend are closed when
	// HardStop returns, so the directory is free for a restart.
	e.Server.HardStop()
	m.closing.Go(e.Close)
}

// restart starts member i again from its data.
func (c *chaosEtcd) restart(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[i]
	if m.etcd != nil {
		return nil
	}
	return m.start()
}

// close stops every member, waits until they are gone, and closes the
// proxies.
func (c *chaosEtcd) close() {
	if c == nil {
		return
	}
	for i, m := range c.members {
		if m.client != nil && m.peer != nil {
			c.stop(i)
		}
		m.closing.Wait()
		for _, p := range []*etcdProxy{m.client, m.peer} {
			if p != nil {
				p.close()
			}
		}
	}
}

// client is a client of the whole cluster.
func (c *chaosEtcd) client() (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return cli, nil
}

// etcdProxy forwards the TCP connections it accepts to a member's current
// address; with none (the member down) it drops every connection and
// closes each new one at once.
type etcdProxy struct {
	l net.Listener

	mu     sync.Mutex
	target string
	conns  map[net.Conn]bool
}

func newEtcdProxy() (*etcdProxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("etcd proxy: %w", err)
	}
	p := &etcdProxy{l: l, conns: map[net.Conn]bool{}}
	go p.serve()
	return p, nil
}

func (p *etcdProxy) addr() string { return p.l.Addr().String() }
func (p *etcdProxy) url() string  { return "http://" + p.addr() }

// to points the proxy at target; "" drops every connection.
func (p *etcdProxy) to(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = target
	if target == "" {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

func (p *etcdProxy) close() {
	p.l.Close()
	p.to("")
}

func (p *etcdProxy) serve() {
	for {
		in, err := p.l.Accept()
		if err != nil {
			return
		}
		go p.forward(in)
	}
}

func (p *etcdProxy) forward(in net.Conn) {
	p.mu.Lock()
	target := p.target
	p.mu.Unlock()
	if target == "" {
		in.Close()
		return
	}
	out, err := net.DialTimeout("tcp", target, time.Second)
	if err != nil {
		in.Close()
		return
	}
	p.mu.Lock()
	if p.target != target {
		// Cut (or moved) while dialling.
		p.mu.Unlock()
		in.Close()
		out.Close()
		return
	}
	p.conns[in], p.conns[out] = true, true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done
	in.Close()
	out.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, in)
	delete(p.conns, out)
	p.mu.Unlock()
}
