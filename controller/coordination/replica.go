package coordination

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/phoenix-ops/phoenix/controller/config"
)

// Options configure a Replica.
type Options struct {
	// ReplicaID names this replica in etcd, in logs and in the
	// User-Agent of its cloud requests. Required, unique among the
	// replicas sharing Prefix.
	ReplicaID string
	Endpoints []string
	// TLS, when set, secures the connection to etcd.
	TLS *tls.Config
	// Prefix starts every key; default /phoenix/.
	Prefix string
	// LeaseTTL is the life of the replica's lease; default 15s.
	LeaseTTL time.Duration
	// Poll is how often the replica looks at who owns what, and so how
	// late after a lease expired its groups are claimed. Default a third
	// of LeaseTTL.
	Poll time.Duration
	// DialTimeout bounds a connection attempt to etcd; default 5s.
	DialTimeout time.Duration
	Log         *zap.Logger
	// Now is the clock of the fencing margin; default time.Now.
	Now func() time.Time
}

func (o *Options) defaults() error {
	if o.ReplicaID == "" {
		return errors.New("a replica needs an id")
	}
	if len(o.Endpoints) == 0 {
		return errors.New("no etcd endpoints")
	}
	if o.Prefix == "" {
		o.Prefix = config.DefaultEtcdPrefix
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = config.DefaultLeaseTTL
	}
	if o.LeaseTTL < time.Second {
		return fmt.Errorf("lease TTL %s: etcd counts leases in whole seconds", o.LeaseTTL)
	}
	if o.Poll <= 0 {
		o.Poll = o.LeaseTTL / 3
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// OptionsFromConfig turns the configuration's etcd block into Options,
// reading the TLS files it names.
func OptionsFromConfig(e *config.Etcd, replicaID string, log *zap.Logger) (Options, error) {
	opts := Options{ReplicaID: replicaID, Endpoints: e.Endpoints, Prefix: e.Prefix, LeaseTTL: e.LeaseTTL.D(), Log: log}
	t := e.TLS
	if t == (config.EtcdTLS{}) {
		return opts, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return opts, fmt.Errorf("etcd CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return opts, fmt.Errorf("etcd CA file %s holds no PEM certificate", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return opts, fmt.Errorf("etcd client certificate %s: %w", t.CertFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	opts.TLS = tc
	return opts, nil
}

// Replica is this daemon among the replicas: its etcd client, its lease
// and what it owns. New starts keeping a lease; Run shares the groups;
// Close gives everything up.
type Replica struct {
	opts Options
	cli  *clientv3.Client
	log  *zap.Logger

	mu sync.Mutex
	// lease is 0 while the replica has none (at the start, and after
	// etcd said it expired); renewed is when the last renewal that
	// succeeded was sent, ttl what etcd granted.
	lease      clientv3.LeaseID
	renewed    time.Time
	ttl        time.Duration
	registered bool
	leaseErr   error
	// From the last look at the keys: the owner of each group, the
	// number of live replicas, and why the look failed.
	owners   map[string]string
	replicas int
	pollErr  error
	owned    map[string]bool

	wake   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	closed sync.Once
}

// New connects to etcd and starts keeping a lease. It does not wait for
// etcd: until a lease is granted the replica owns nothing.
func New(opts Options) (*Replica, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   opts.Endpoints,
		TLS:         opts.TLS,
		DialTimeout: opts.DialTimeout,
		// The client's own retries log at warn on every lost connection;
		// the replica says what matters itself.
		Logger: opts.Log.Named("etcd").WithOptions(zap.IncreaseLevel(zapcore.ErrorLevel)),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", opts.Endpoints, err)
	}
	r := &Replica{
		opts:   opts,
		cli:    cli,
		log:    opts.Log.With(zap.String("replica", opts.ReplicaID)),
		owners: map[string]string{},
		owned:  map[string]bool{},
		wake:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go r.keepLease()
	return r, nil
}

// ID is the replica's id.
func (r *Replica) ID() string { return r.opts.ReplicaID }

func (r *Replica) replicaKey() string { return r.opts.Prefix + "replicas/" + r.opts.ReplicaID }
func (r *Replica) groupKey(g string) string {
	return r.opts.Prefix + "groups/" + g
}

// margin is how long before the lease could expire in etcd the replica
// already counts it as lost: room for clock rates and for a step that
// passed the check to reach the cloud.
func margin(ttl time.Duration) time.Duration { return ttl / 5 }

// session is the lease as the replica knows it.
type session struct {
	lease   clientv3.LeaseID
	renewed time.Time
	ttl     time.Duration
	err     error
}

func (r *Replica) session() session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return session{lease: r.lease, renewed: r.renewed, ttl: r.ttl, err: r.leaseErr}
}

// validUntil is when the lease stops being known alive by this
// replica's clock.
func (s session) validUntil() time.Time { return s.renewed.Add(s.ttl - margin(s.ttl)) }

// aliveErr says why the lease is not known alive at now, or nil.
func (s session) aliveErr(now time.Time) error {
	switch {
	case s.lease == 0 && s.err != nil:
		return fmt.Errorf("no lease: %w", s.err)
	case s.lease == 0:
		return errors.New("no lease yet")
	case !now.Before(s.validUntil()):
		reason := fmt.Sprintf("lease %x last renewed %s ago (ttl %s)", int64(s.lease), now.Sub(s.renewed).Round(10*time.Millisecond), s.ttl)
		if s.err != nil {
			return fmt.Errorf("%s: %w", reason, s.err)
		}
		return errors.New(reason)
	}
	return nil
}

// keepLease obtains a lease and renews it every third of its TTL until
// Close. A renewal is timed from when it is sent, so that the replica's
// idea of the lease never outlives etcd's.
func (r *Replica) keepLease() {
	defer close(r.done)
	ttlSeconds := int64((r.opts.LeaseTTL + time.Second - 1) / time.Second)
	wasAlive := false
	for {
		s := r.session()
		wait := r.opts.LeaseTTL / 3
		ctx, cancel := context.WithTimeout(context.Background(), r.opts.LeaseTTL/3)
		go func() {
			select {
			case <-r.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		sent := r.opts.Now()
		var err error
		if s.lease == 0 {
			var resp *clientv3.LeaseGrantResponse
			if resp, err = r.cli.Grant(ctx, ttlSeconds); err == nil {
				r.mu.Lock()
				r.lease, r.renewed, r.ttl, r.registered, r.leaseErr = resp.ID, sent, time.Duration(resp.TTL)*time.Second, false, nil
				r.mu.Unlock()
				r.log.Info("lease granted", zap.String("lease", strconv.FormatInt(int64(resp.ID), 16)), zap.Duration("ttl", time.Duration(resp.TTL)*time.Second))
			}
		} else {
			var resp *clientv3.LeaseKeepAliveResponse
			resp, err = r.cli.KeepAliveOnce(ctx, s.lease)
			switch {
			case errors.Is(err, rpctypes.ErrLeaseNotFound):
				r.mu.Lock()
				r.lease, r.leaseErr = 0, errors.New("etcd expired the lease")
				r.mu.Unlock()
				r.log.Error("etcd expired this replica's lease: its groups are claimed by others; taking a new lease")
				r.poke()
				wait = 0
			case err == nil:
				r.mu.Lock()
				if r.lease == s.lease {
					r.renewed, r.ttl, r.leaseErr = sent, time.Duration(resp.TTL)*time.Second, nil
				}
				r.mu.Unlock()
			}
		}
		if err == nil && !r.isRegistered() {
			err = r.register(ctx)
		}
		cancel()
		select {
		case <-r.stop:
			return
		default:
		}
		alive := r.session().aliveErr(r.opts.Now()) == nil
		if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			r.mu.Lock()
			r.leaseErr = err
			r.mu.Unlock()
			// Try again soon: the lease is running out.
			wait = min(wait, 250*time.Millisecond)
		}
		if wasAlive && !alive {
			r.log.Error("cannot renew the lease: this replica changes nothing in the cloud until it can", zap.Error(r.session().aliveErr(r.opts.Now())))
		} else if !wasAlive && alive {
			r.log.Info("lease alive: this replica may own groups")
			r.poke()
		}
		wasAlive = alive
		t := time.NewTimer(wait)
		select {
		case <-r.stop:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (r *Replica) isRegistered() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.registered
}

// register puts the replica's key under its lease: the others count it.
func (r *Replica) register(ctx context.Context) error {
	s := r.session()
	if s.lease == 0 {
		return nil
	}
	if _, err := r.cli.Put(ctx, r.replicaKey(), "", clientv3.WithLease(s.lease)); err != nil {
		return fmt.Errorf("register replica %s: %w", r.opts.ReplicaID, err)
	}
	r.mu.Lock()
	if r.lease == s.lease {
		r.registered = true
	}
	r.mu.Unlock()
	r.poke()
	return nil
}

func (r *Replica) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Close stops renewing and revokes the lease, which deletes every key of
// the replica: the others take its groups over at once rather than after
// the TTL. Call it once the replica's workers have stopped.
func (r *Replica) Close(ctx context.Context) error {
	var err error
	r.closed.Do(func() {
		close(r.stop)
		<-r.done
		s := r.session()
		if s.lease != 0 {
			if _, rerr := r.cli.Revoke(ctx, s.lease); rerr != nil && !errors.Is(rerr, rpctypes.ErrLeaseNotFound) {
				err = fmt.Errorf("revoke lease %x of replica %s: %w", int64(s.lease), r.opts.ReplicaID, rerr)
			} else {
				r.log.Info("lease revoked: the other replicas take this one's groups over")
			}
		}
		r.mu.Lock()
		r.lease = 0
		r.owned = map[string]bool{}
		r.mu.Unlock()
		if cerr := r.cli.Close(); cerr != nil && err == nil && !errors.Is(cerr, context.Canceled) {
			err = fmt.Errorf("close etcd client: %w", cerr)
		}
	})
	return err
}
