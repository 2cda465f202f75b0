package openstack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/loadbalancers"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/pools"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
	"github.com/gophercloud/gophercloud/v2/pagination"
	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/provisioner"
)

// LBWait bounds how Phoenix waits on a load balancer that is busy with a
// change (PENDING_*): it polls from First, growing by half each time up to
// Max, for at most Timeout per member change. cluster-api-provider-openstack
// waits the same way around every member change.
type LBWait struct {
	First, Max, Timeout time.Duration
}

// DefaultLBWait suits real Octavia, whose changes take about a second.
func DefaultLBWait() LBWait {
	return LBWait{First: 100 * time.Millisecond, Max: 2 * time.Second, Timeout: 5 * time.Minute}
}

func (c *Cloud) lbClient() (*gophercloud.ServiceClient, error) {
	if c.lb == nil {
		return nil, fmt.Errorf("no load-balancer (Octavia) endpoint in the catalog: %w", c.lbErr)
	}
	return c.lb, nil
}

func (c *Cloud) networkClient() (*gophercloud.ServiceClient, error) {
	if c.network == nil {
		return nil, fmt.Errorf("no network (Neutron) endpoint in the catalog: %w", c.netErr)
	}
	return c.network, nil
}

// ResolvePool finds a pool by ID, else by unique name, within the named
// load balancer when one is given.
func (c *Cloud) ResolvePool(ctx context.Context, loadBalancer, pool string) (provisioner.Pool, error) {
	lb, err := c.lbClient()
	if err != nil {
		return provisioner.Pool{}, fmt.Errorf("pool %q: %w", pool, err)
	}
	lbID := ""
	if loadBalancer != "" {
		if lbID, err = c.resolveLoadBalancer(ctx, lb, loadBalancer); err != nil {
			return provisioner.Pool{}, err
		}
	}
	for _, opts := range []pools.ListOpts{{ID: pool, LoadbalancerID: lbID}, {Name: pool, LoadbalancerID: lbID}} {
		pages, err := pools.List(lb, opts).AllPages(ctx)
		if err != nil {
			return provisioner.Pool{}, fmt.Errorf("list pools: %w", err)
		}
		list, err := pools.ExtractPools(pages)
		if err != nil {
			return provisioner.Pool{}, fmt.Errorf("list pools: %w", err)
		}
		var found []pools.Pool
		for _, p := range list {
			if (p.ID == pool || p.Name == pool) && (lbID == "" || onLoadBalancer(p, lbID)) {
				found = append(found, p)
			}
		}
		switch len(found) {
		case 0:
			continue
		case 1:
			return toPool(found[0])
		default:
			ids := make([]string, len(found))
			for i, p := range found {
				ids[i] = p.ID
			}
			return provisioner.Pool{}, fmt.Errorf("pool name %q is ambiguous: %d match (%s); use the ID or name the load balancer", pool, len(ids), strings.Join(ids, ", "))
		}
	}
	where := ""
	if loadBalancer != "" {
		where = " on load balancer " + loadBalancer
	}
	return provisioner.Pool{}, fmt.Errorf("pool %q%s: %w", pool, where, provisioner.ErrNotFound)
}

func onLoadBalancer(p pools.Pool, lbID string) bool {
	for _, l := range p.Loadbalancers {
		if l.ID == lbID {
			return true
		}
	}
	return false
}

func toPool(p pools.Pool) (provisioner.Pool, error) {
	if len(p.Loadbalancers) == 0 {
		return provisioner.Pool{}, fmt.Errorf("pool %s (%s) belongs to no load balancer", p.Name, p.ID)
	}
	return provisioner.Pool{ID: p.ID, Name: p.Name, LoadBalancerID: p.Loadbalancers[0].ID, HasMonitor: p.MonitorID != ""}, nil
}

func (c *Cloud) resolveLoadBalancer(ctx context.Context, lb *gophercloud.ServiceClient, nameOrID string) (string, error) {
	for _, opts := range []loadbalancers.ListOpts{{ID: nameOrID}, {Name: nameOrID}} {
		pages, err := loadbalancers.List(lb, opts).AllPages(ctx)
		if err != nil {
			return "", fmt.Errorf("list load balancers: %w", err)
		}
		list, err := loadbalancers.ExtractLoadBalancers(pages)
		if err != nil {
			return "", fmt.Errorf("list load balancers: %w", err)
		}
		var ids []string
		for _, l := range list {
			if l.ID == nameOrID || l.Name == nameOrID {
				ids = append(ids, l.ID)
			}
		}
		if len(ids) > 0 {
			return unique("load balancer", nameOrID, ids)
		}
	}
	return "", fmt.Errorf("load balancer %q: %w", nameOrID, provisioner.ErrNotFound)
}

// ResolveSubnet matches a subnet ID first, then a unique name.
func (c *Cloud) ResolveSubnet(ctx context.Context, nameOrID string) (string, error) {
	nc, err := c.networkClient()
	if err != nil {
		return "", fmt.Errorf("subnet %q: %w", nameOrID, err)
	}
	for _, opts := range []subnets.ListOpts{{ID: nameOrID}, {Name: nameOrID}} {
		pages, err := subnets.List(nc, opts).AllPages(ctx)
		if err != nil {
			return "", fmt.Errorf("list subnets: %w", err)
		}
		list, err := subnets.ExtractSubnets(pages)
		if err != nil {
			return "", fmt.Errorf("list subnets: %w", err)
		}
		var ids []string
		for _, s := range list {
			if s.ID == nameOrID || s.Name == nameOrID {
				ids = append(ids, s.ID)
			}
		}
		if len(ids) > 0 {
			return unique("subnet", nameOrID, ids)
		}
	}
	return "", fmt.Errorf("subnet %q: %w", nameOrID, provisioner.ErrNotFound)
}

// PoolMembers reads the pool and lists its members, one request per page.
func (c *Cloud) PoolMembers(ctx context.Context, poolID string) (provisioner.Pool, []provisioner.Member, error) {
	lb, err := c.lbClient()
	if err != nil {
		return provisioner.Pool{}, nil, err
	}
	p, err := pools.Get(ctx, lb, poolID).Extract()
	if isNotFound(err) {
		return provisioner.Pool{}, nil, fmt.Errorf("pool %s: %w", poolID, provisioner.ErrNotFound)
	}
	if err != nil {
		return provisioner.Pool{}, nil, fmt.Errorf("get pool %s: %w", poolID, err)
	}
	pool, err := toPool(*p)
	if err != nil {
		return provisioner.Pool{}, nil, err
	}
	var out []provisioner.Member
	err = pools.ListMembers(lb, poolID, pools.ListMembersOpts{Limit: c.pageSize}).EachPage(ctx, func(_ context.Context, page pagination.Page) (bool, error) {
		list, err := pools.ExtractMembers(page)
		if err != nil {
			return false, err
		}
		for _, m := range list {
			out = append(out, toMember(m))
		}
		return true, nil
	})
	if err != nil {
		return pool, nil, fmt.Errorf("list the members of pool %s: %w", poolID, err)
	}
	return pool, out, nil
}

func toMember(m pools.Member) provisioner.Member {
	return provisioner.Member{ID: m.ID, Name: m.Name, Address: m.Address, ProtocolPort: m.ProtocolPort, Weight: m.Weight,
		AdminStateUp: m.AdminStateUp, ProvisioningStatus: m.ProvisioningStatus, OperatingStatus: m.OperatingStatus, Tags: m.Tags}
}

// CreateMember adds a member once the load balancer accepts changes. A
// member of the same address and port that exists already (the answer to
// an earlier create was lost) is returned instead of a second one.
func (c *Cloud) CreateMember(ctx context.Context, pool provisioner.Pool, spec provisioner.MemberSpec) (provisioner.Member, error) {
	lb, err := c.lbClient()
	if err != nil {
		return provisioner.Member{}, err
	}
	what := fmt.Sprintf("add member %s (%s:%d) to pool %s", spec.Name, spec.Address, spec.ProtocolPort, pool.ID)
	find := func() (*pools.Member, error) {
		pages, err := pools.ListMembers(lb, pool.ID, pools.ListMembersOpts{Address: spec.Address, ProtocolPort: spec.ProtocolPort}).AllPages(ctx)
		if err != nil {
			return nil, err
		}
		list, err := pools.ExtractMembers(pages)
		if err != nil {
			return nil, err
		}
		for _, m := range list {
			if m.Address == spec.Address && m.ProtocolPort == spec.ProtocolPort {
				return &m, nil
			}
		}
		return nil, nil
	}
	var created *pools.Member
	err = c.changeLB(ctx, pool.LoadBalancerID, what, func() error {
		if m, err := find(); err != nil || m != nil {
			created = m
			return err
		}
		weight := spec.Weight
		m, err := pools.CreateMember(ctx, lb, pool.ID, pools.CreateMemberOpts{
			Name: spec.Name, Address: spec.Address, ProtocolPort: spec.ProtocolPort, Weight: &weight,
			SubnetID: spec.SubnetID, Tags: spec.Tags,
		}).Extract()
		created = m
		return err
	})
	if err != nil {
		return provisioner.Member{}, err
	}
	return toMember(*created), nil
}

// SetMemberWeight changes one member's weight once the load balancer
// accepts changes.
func (c *Cloud) SetMemberWeight(ctx context.Context, pool provisioner.Pool, memberID string, weight int) error {
	lb, err := c.lbClient()
	if err != nil {
		return err
	}
	what := fmt.Sprintf("set the weight of member %s of pool %s to %d", memberID, pool.ID, weight)
	return c.changeLB(ctx, pool.LoadBalancerID, what, func() error {
		_, err := pools.UpdateMember(ctx, lb, pool.ID, memberID, pools.UpdateMemberOpts{Weight: &weight}).Extract()
		return err
	})
}

// DeleteMember removes one member once the load balancer accepts changes;
// a member already gone is removed.
func (c *Cloud) DeleteMember(ctx context.Context, pool provisioner.Pool, memberID string) error {
	lb, err := c.lbClient()
	if err != nil {
		return err
	}
	what := fmt.Sprintf("remove member %s from pool %s", memberID, pool.ID)
	return c.changeLB(ctx, pool.LoadBalancerID, what, func() error {
		err := pools.DeleteMember(ctx, lb, pool.ID, memberID).ExtractErr()
		if isNotFound(err) {
			return nil
		}
		return err
	})
}

// lbLock serialises this process's changes to one load balancer: Octavia
// takes one change at a time, so sending several at once only earns 409s.
func (c *Cloud) lbLock(id string) *sync.Mutex {
	c.lbMu.Lock()
	defer c.lbMu.Unlock()
	if c.lbLocks == nil {
		c.lbLocks = map[string]*sync.Mutex{}
	}
	m, ok := c.lbLocks[id]
	if !ok {
		m = &sync.Mutex{}
		c.lbLocks[id] = m
	}
	return m
}

// changeLB runs one change of a load balancer's configuration: it waits
// until the load balancer is ACTIVE, makes the change, and while the
// answer is Octavia's 409 "immutable" (another change is in progress)
// waits and tries again; then it waits for ACTIVE once more, so the change
// is in effect when it returns. The whole is bounded by LBWait.Timeout.
func (c *Cloud) changeLB(ctx context.Context, lbID, what string, change func() error) error {
	mu := c.lbLock(lbID)
	mu.Lock()
	defer mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, c.lbWait.Timeout)
	defer cancel()
	pause := c.lbWait.First
	for attempt := 1; ; attempt++ {
		if err := c.waitLBActive(ctx, lbID); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		err := change()
		if err == nil {
			break
		}
		if !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
			return fmt.Errorf("%s: %w", what, redact(err))
		}
		_, body, _ := statusOf(err)
		c.log.Debug("load balancer busy, waiting to retry", zap.String("load_balancer", lbID),
			zap.String("change", what), zap.Int("attempt", attempt), zap.String("message", cloudMessage(body)))
		if err := sleep(ctx, pause); err != nil {
			return fmt.Errorf("%s: load balancer %s still refusing changes (409) after %d attempts: %w", what, lbID, attempt, err)
		}
		pause = min(pause*3/2, c.lbWait.Max)
	}
	if err := c.waitLBActive(ctx, lbID); err != nil {
		return fmt.Errorf("%s: made, but %w", what, err)
	}
	return nil
}

// waitLBActive polls a load balancer until it is ACTIVE.
func (c *Cloud) waitLBActive(ctx context.Context, lbID string) error {
	pause := c.lbWait.First
	for {
		lb, err := loadbalancers.Get(ctx, c.lb, lbID).Extract()
		switch {
		case isNotFound(err):
			return fmt.Errorf("load balancer %s: %w", lbID, provisioner.ErrNotFound)
		case err != nil && ctx.Err() != nil:
			return fmt.Errorf("waiting for load balancer %s to be ACTIVE: %w", lbID, ctx.Err())
		case err != nil:
			return fmt.Errorf("get load balancer %s: %w", lbID, redact(err))
		case lb.ProvisioningStatus == provisioner.LBActive:
			return nil
		case lb.ProvisioningStatus == provisioner.LBError:
			return fmt.Errorf("load balancer %s (%s) is in ERROR: it takes no changes until an operator repairs it", lb.Name, lbID)
		}
		if err := sleep(ctx, pause); err != nil {
			return fmt.Errorf("load balancer %s still %s: %w", lbID, lb.ProvisioningStatus, err)
		}
		pause = min(pause*3/2, c.lbWait.Max)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// FloatingIPByAddress finds the project's floating IP with that address.
func (c *Cloud) FloatingIPByAddress(ctx context.Context, address string) (provisioner.FloatingIP, error) {
	nc, err := c.networkClient()
	if err != nil {
		return provisioner.FloatingIP{}, fmt.Errorf("floating IP %s: %w", address, err)
	}
	list, err := listFloatingIPs(ctx, nc, floatingips.ListOpts{FloatingIP: address})
	if err != nil {
		return provisioner.FloatingIP{}, err
	}
	for _, f := range list {
		if f.FloatingIP == address {
			return toFloatingIP(f), nil
		}
	}
	return provisioner.FloatingIP{}, fmt.Errorf("floating IP %s: %w", address, provisioner.ErrNotFound)
}

// FloatingIPByDescription finds the floating IP of the external network
// that carries description, or allocates one. When several carry it (an
// allocation whose answer was lost, then another), the one in use wins,
// then the lowest ID, so every run picks the same.
func (c *Cloud) FloatingIPByDescription(ctx context.Context, network, description string) (provisioner.FloatingIP, error) {
	nc, err := c.networkClient()
	if err != nil {
		return provisioner.FloatingIP{}, err
	}
	netID, err := c.ResolveNetwork(ctx, network)
	if err != nil {
		return provisioner.FloatingIP{}, err
	}
	list, err := listFloatingIPs(ctx, nc, floatingips.ListOpts{FloatingNetworkID: netID, Description: description})
	if err != nil {
		return provisioner.FloatingIP{}, err
	}
	var mine []floatingips.FloatingIP
	for _, f := range list {
		if f.Description == description && f.FloatingNetworkID == netID {
			mine = append(mine, f)
		}
	}
	if len(mine) > 0 {
		sort.Slice(mine, func(i, j int) bool {
			if (mine[i].PortID != "") != (mine[j].PortID != "") {
				return mine[i].PortID != ""
			}
			return mine[i].ID < mine[j].ID
		})
		return toFloatingIP(mine[0]), nil
	}
	f, err := floatingips.Create(ctx, nc, floatingips.CreateOpts{FloatingNetworkID: netID, Description: description}).Extract()
	if err != nil {
		return provisioner.FloatingIP{}, fmt.Errorf("allocate a floating IP on network %s: %w", network, redact(err))
	}
	c.log.Info("allocated a floating IP", zap.String("address", f.FloatingIP), zap.String("network", network), zap.String("description", description))
	return toFloatingIP(*f), nil
}

func listFloatingIPs(ctx context.Context, nc *gophercloud.ServiceClient, opts floatingips.ListOpts) ([]floatingips.FloatingIP, error) {
	pages, err := floatingips.List(nc, opts).AllPages(ctx)
	if err != nil {
		return nil, fmt.Errorf("list floating IPs: %w", err)
	}
	list, err := floatingips.ExtractFloatingIPs(pages)
	if err != nil {
		return nil, fmt.Errorf("list floating IPs: %w", err)
	}
	return list, nil
}

func toFloatingIP(f floatingips.FloatingIP) provisioner.FloatingIP {
	return provisioner.FloatingIP{ID: f.ID, Address: f.FloatingIP, PortID: f.PortID, FixedIP: f.FixedIP}
}

// ServerPort finds a server's port on a network.
func (c *Cloud) ServerPort(ctx context.Context, serverID, network string) (provisioner.Port, error) {
	nc, err := c.networkClient()
	if err != nil {
		return provisioner.Port{}, err
	}
	netID, err := c.ResolveNetwork(ctx, network)
	if err != nil {
		return provisioner.Port{}, err
	}
	pages, err := ports.List(nc, ports.ListOpts{DeviceID: serverID, NetworkID: netID}).AllPages(ctx)
	if err != nil {
		return provisioner.Port{}, fmt.Errorf("list the ports of server %s: %w", serverID, err)
	}
	list, err := ports.ExtractPorts(pages)
	if err != nil {
		return provisioner.Port{}, fmt.Errorf("list the ports of server %s: %w", serverID, err)
	}
	for _, p := range list {
		if p.DeviceID != serverID || p.NetworkID != netID {
			continue // a filter the service ignored
		}
		out := provisioner.Port{ID: p.ID, NetworkID: p.NetworkID}
		for _, ip := range p.FixedIPs {
			out.FixedIPs = append(out.FixedIPs, ip.IPAddress)
		}
		return out, nil
	}
	return provisioner.Port{}, fmt.Errorf("port of server %s on network %s: %w", serverID, network, provisioner.ErrNotFound)
}

// AssociateFloatingIP points a floating IP at a port. Neutron moves the
// address in one step, so there is no moment at which it points nowhere.
func (c *Cloud) AssociateFloatingIP(ctx context.Context, floatingIPID, portID string) error {
	nc, err := c.networkClient()
	if err != nil {
		return err
	}
	_, err = floatingips.Update(ctx, nc, floatingIPID, floatingips.UpdateOpts{PortID: &portID}).Extract()
	if err != nil {
		if isNotFound(err) {
			err = errors.Join(provisioner.ErrNotFound, err)
		}
		return fmt.Errorf("point floating IP %s at port %s: %w", floatingIPID, portID, redact(err))
	}
	return nil
}

var (
	_ provisioner.LoadBalancer = (*Cloud)(nil)
	_ provisioner.FloatingIPs  = (*Cloud)(nil)
)
