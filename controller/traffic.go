package controller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// traffic moves a group's requests between its servers: into a pool or
// onto a floating IP, and out again by a drain. The plan decides which
// server goes in or out; a traffic driver only does it, idempotently, from
// what it observed at the start of the reconcile.
type traffic interface {
	// observe reads where each live server stands (by server ID). It
	// changes nothing, so that `phoenix plan` can use it.
	observe(ctx context.Context, servers []provisioner.Server) (map[string]plan.TrafficState, error)
	// cleanup removes what a crash left behind, as last observed: a member
	// Phoenix made whose server no longer exists.
	cleanup(ctx context.Context) error
	// add makes a server serve.
	add(ctx context.Context, s plan.Classified) error
	// drain stops new requests to a server; the ones it has finish.
	drain(ctx context.Context, s plan.Classified) error
	// remove takes the server out for good, before its delete.
	remove(ctx context.Context, s plan.Classified) error
	// String names the traffic for messages: "pool web-pool".
	String() string
}

// newTraffic builds the group's traffic driver, or nil when the group has
// none. The cloud must offer what the group asks for.
func newTraffic(g config.Group, cloud provisioner.Cloud, log *zap.Logger) (traffic, error) {
	switch {
	case g.Traffic.Octavia != nil:
		if err := provisioner.Missing(cloud.LoadBalancer); err != nil {
			return nil, fmt.Errorf("%w: group %s asks for an Octavia pool: %w", ErrStuck, g.Name, err)
		}
		return &poolTraffic{cfg: *g.Traffic.Octavia, lb: cloud.LoadBalancer, tag: GroupTag(g.Name), log: log}, nil
	case g.Traffic.FloatingIP != nil:
		if err := provisioner.Missing(cloud.FloatingIPs); err != nil {
			return nil, fmt.Errorf("%w: group %s asks for a floating IP: %w", ErrStuck, g.Name, err)
		}
		return &floatingTraffic{cfg: *g.Traffic.FloatingIP, fips: cloud.FloatingIPs, group: g.Name, log: log}, nil
	}
	return nil, nil
}

// poolTraffic keeps the group's serving servers as members of one Octavia
// pool. A member is the group's when it carries the group tag; members
// without it belong to someone else and are never changed.
type poolTraffic struct {
	cfg config.OctaviaTraffic
	lb  provisioner.LoadBalancer
	tag string
	log *zap.Logger

	mu       sync.Mutex
	pool     provisioner.Pool
	subnetID string
	resolved bool
	// members and addresses by server ID, as observed at the start of
	// the reconcile.
	members   map[string]provisioner.Member
	addresses map[string]string
	stale     []provisioner.Member
}

func (p *poolTraffic) String() string { return "pool " + p.cfg.Pool }

func (p *poolTraffic) endpoint(s provisioner.Server) string {
	addr := address(s, []string{p.cfg.Network})
	if addr == "" {
		return ""
	}
	return net.JoinHostPort(addr, strconv.Itoa(p.cfg.ProtocolPort))
}

func (p *poolTraffic) observe(ctx context.Context, servers []provisioner.Server) (map[string]plan.TrafficState, error) {
	p.mu.Lock()
	resolved := p.resolved
	p.mu.Unlock()
	if !resolved {
		pool, err := p.lb.ResolvePool(ctx, p.cfg.LoadBalancer, p.cfg.Pool)
		if err != nil {
			return nil, stuckIfMissing(fmt.Errorf("traffic.octavia.pool: %w", err))
		}
		subnet := ""
		if p.cfg.Subnet != "" {
			if subnet, err = p.lb.ResolveSubnet(ctx, p.cfg.Subnet); err != nil {
				return nil, stuckIfMissing(fmt.Errorf("traffic.octavia.subnet: %w", err))
			}
		}
		p.mu.Lock()
		p.pool, p.subnetID, p.resolved = pool, subnet, true
		p.mu.Unlock()
	}
	pool, list, err := p.lb.PoolMembers(ctx, p.pool.ID)
	if errors.Is(err, provisioner.ErrNotFound) {
		// The pool was deleted or replaced: find it again next time.
		p.mu.Lock()
		p.resolved = false
		p.mu.Unlock()
	}
	if err != nil {
		return nil, err
	}
	byEndpoint := make(map[string]provisioner.Member, len(list))
	for _, m := range list {
		byEndpoint[net.JoinHostPort(m.Address, strconv.Itoa(m.ProtocolPort))] = m
	}
	states := make(map[string]plan.TrafficState, len(servers))
	members := make(map[string]provisioner.Member, len(servers))
	addresses := make(map[string]string, len(servers))
	used := map[string]bool{}
	for _, s := range servers {
		addresses[s.ID] = address(s, []string{p.cfg.Network})
		ep := p.endpoint(s)
		m, ok := byEndpoint[ep]
		if ep == "" || !ok {
			states[s.ID] = plan.TrafficNone
			continue
		}
		used[ep] = true
		members[s.ID] = m
		states[s.ID] = memberState(m, pool)
	}
	// Members of this group whose server is gone: left by a crash between
	// a server's delete and its member's, or by a hand.
	var stale []provisioner.Member
	for ep, m := range byEndpoint {
		if !used[ep] && slices.Contains(m.Tags, p.tag) {
			stale = append(stale, m)
		}
	}
	p.mu.Lock()
	p.pool, p.members, p.addresses, p.stale = pool, members, addresses, stale
	p.mu.Unlock()
	return states, nil
}

func (p *poolTraffic) cleanup(ctx context.Context) error {
	p.mu.Lock()
	pool, stale := p.pool, p.stale
	p.mu.Unlock()
	var errs []error
	for _, m := range stale {
		p.log.Info("removing a member whose server is gone", zap.String("member", m.ID), zap.String("address", m.Address))
		if err := p.lb.DeleteMember(ctx, pool, m.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove stale member %s (%s): %w", m.ID, m.Address, err))
		}
	}
	return errors.Join(errs...)
}

func memberState(m provisioner.Member, pool provisioner.Pool) plan.TrafficState {
	switch {
	case m.ProvisioningStatus == provisioner.LBError:
		return plan.TrafficBroken
	case m.Weight == 0:
		return plan.TrafficDrained
	case m.Serving(pool):
		return plan.TrafficServing
	}
	return plan.TrafficPending
}

func (p *poolTraffic) member(id string) (provisioner.Pool, provisioner.Member, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m, ok := p.members[id]
	return p.pool, m, ok
}

func (p *poolTraffic) add(ctx context.Context, s plan.Classified) error {
	pool, m, ok := p.member(s.ID)
	if ok && !slices.Contains(m.Tags, p.tag) {
		return nil // someone else's member for this address: not Phoenix's to change
	}
	switch {
	case ok && m.ProvisioningStatus == provisioner.LBError:
		// A member in ERROR is never repaired in place: replace it.
		if err := p.lb.DeleteMember(ctx, pool, m.ID); err != nil {
			return fmt.Errorf("replace member %s in ERROR of server %s: %w", m.ID, s.Name, err)
		}
	case ok && m.Weight == 0:
		return p.lb.SetMemberWeight(ctx, pool, m.ID, p.cfg.Weight)
	case ok:
		return nil
	}
	p.mu.Lock()
	addr := p.addresses[s.ID]
	p.mu.Unlock()
	if addr == "" {
		return fmt.Errorf("server %s has no address on network %s to add to %s", s.Name, p.cfg.Network, p)
	}
	_, err := p.lb.CreateMember(ctx, pool, provisioner.MemberSpec{
		Name: s.Name, Address: addr, ProtocolPort: p.cfg.ProtocolPort, Weight: p.cfg.Weight,
		SubnetID: p.subnetID, Tags: []string{p.tag},
	})
	return err
}

func (p *poolTraffic) drain(ctx context.Context, s plan.Classified) error {
	pool, m, ok := p.member(s.ID)
	if !ok || m.Weight == 0 || !slices.Contains(m.Tags, p.tag) {
		return nil
	}
	return p.lb.SetMemberWeight(ctx, pool, m.ID, 0)
}

func (p *poolTraffic) remove(ctx context.Context, s plan.Classified) error {
	pool, m, ok := p.member(s.ID)
	if !ok || !slices.Contains(m.Tags, p.tag) {
		return nil
	}
	return p.lb.DeleteMember(ctx, pool, m.ID)
}

// floatingTraffic points one floating IP at the group's serving server.
// Moving it is one Neutron call, so the address always points somewhere;
// the old server then drains the requests it has before it goes.
type floatingTraffic struct {
	cfg   config.FloatingIPTraffic
	fips  provisioner.FloatingIPs
	group string
	log   *zap.Logger

	mu  sync.Mutex
	fip provisioner.FloatingIP
}

func (f *floatingTraffic) String() string {
	if f.cfg.Address != "" {
		return "floating IP " + f.cfg.Address
	}
	return "floating IP from " + f.cfg.Pool
}

// description marks the floating IP Phoenix allocated for a group, so
// that it finds it again after a restart.
func (f *floatingTraffic) description() string { return "phoenix:group:" + f.group }

func (f *floatingTraffic) observe(ctx context.Context, servers []provisioner.Server) (map[string]plan.TrafficState, error) {
	var (
		fip provisioner.FloatingIP
		err error
	)
	if f.cfg.Address != "" {
		fip, err = f.fips.FloatingIPByAddress(ctx, f.cfg.Address)
		if err != nil {
			return nil, stuckIfMissing(fmt.Errorf("traffic.floating_ip.address: %w", err))
		}
	} else {
		fip, err = f.fips.FloatingIPByDescription(ctx, f.cfg.Pool, f.description())
		if err != nil {
			return nil, stuckIfMissing(fmt.Errorf("traffic.floating_ip.pool: %w", err))
		}
	}
	f.mu.Lock()
	f.fip = fip
	f.mu.Unlock()
	states := make(map[string]plan.TrafficState, len(servers))
	for _, s := range servers {
		states[s.ID] = plan.TrafficNone
		if fip.FixedIP != "" && slices.Contains(s.Addresses[f.cfg.Network], fip.FixedIP) {
			states[s.ID] = plan.TrafficServing
		}
	}
	return states, nil
}

func (f *floatingTraffic) add(ctx context.Context, s plan.Classified) error {
	port, err := f.fips.ServerPort(ctx, s.ID, f.cfg.Network)
	if err != nil {
		return fmt.Errorf("find the port of server %s on %s: %w", s.Name, f.cfg.Network, err)
	}
	f.mu.Lock()
	fip := f.fip
	f.mu.Unlock()
	if err := f.fips.AssociateFloatingIP(ctx, fip.ID, port.ID); err != nil {
		return err
	}
	f.log.Info("moved the floating IP", zap.String("address", fip.Address), zap.String("server", s.ID), zap.String("name", s.Name))
	return nil
}

func (f *floatingTraffic) cleanup(context.Context) error { return nil }

// drain has nothing to do: the address left the server when it moved to
// the replacement.
func (f *floatingTraffic) drain(context.Context, plan.Classified) error { return nil }

// remove has nothing to do either: Neutron releases the address from a
// deleted server's port by itself.
func (f *floatingTraffic) remove(context.Context, plan.Classified) error { return nil }
