// Package preflight checks, before anything runs, that every name a
// configuration gives the cloud resolves: flavors, networks, image
// selectors, key pairs, security groups, server groups, load-balancer
// pools and subnets, floating IPs and the pools they come from.
//
// A name that does not resolve otherwise shows only when the reconciler
// first needs it — at the first create of a rollout, hours after a
// change was deployed. Each name is asked of the cloud through the call
// the reconciler itself makes for it (controller/create.go,
// controller/traffic.go), so "resolves here" means "resolves there".
// Nothing here changes the cloud: a floating-IP pool is resolved as a
// network, never allocated from.
package preflight

import (
	"context"
	"fmt"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// Names resolves what Nova takes by name in a create, and the reconciler
// therefore never looks up.
type Names interface {
	ResolveKeyPair(ctx context.Context, name string) error
	ResolveSecurityGroup(ctx context.Context, nameOrID string) (string, error)
}

// Unresolved is one name of the configuration the cloud does not
// resolve, or could not be asked about.
type Unresolved struct {
	Group string `json:"group"`
	// Field is the configuration's field path: groups[0].networks[1].
	Field string `json:"field"`
	// Kind is what the name designates, in the cloud's words: flavor,
	// network, image, key pair, ...
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Problem is the cloud's answer: not found, ambiguous, unreachable.
	Problem string `json:"problem"`
}

func (u Unresolved) String() string {
	return fmt.Sprintf("%s: %s %q does not resolve: %s", u.Field, u.Kind, u.Name, u.Problem)
}

// Report is what a check found.
type Report struct {
	// Checked counts the names asked of the cloud (each distinct name of
	// a kind once).
	Checked    int          `json:"checked"`
	Unresolved []Unresolved `json:"unresolved"`
}

// Check asks the cloud for every name cfg gives it, each distinct one
// once, and reports those that do not resolve. It stops early only when
// ctx ends; what was not asked by then is reported as such.
func Check(ctx context.Context, cfg *config.Config, cloud provisioner.Cloud, names Names) Report {
	c := checker{ctx: ctx, cloud: cloud.Complete(), names: names, seen: map[string]error{}}
	for i, g := range cfg.Groups {
		c.group(fmt.Sprintf("groups[%d]", i), g)
	}
	return c.report
}

type checker struct {
	ctx    context.Context
	cloud  provisioner.Cloud
	names  Names
	seen   map[string]error
	report Report
}

// ask resolves one name through resolve, once per kind and name, and
// records it when it does not resolve.
func (c *checker) ask(group, field, kind, name string, resolve func(context.Context) error) {
	c.askKey(kind+"\x00"+name, group, field, kind, name, resolve)
}

// askKey is ask for a name whose kind and name do not say all that is
// asked (an image selector's properties and tags): key does.
func (c *checker) askKey(key, group, field, kind, name string, resolve func(context.Context) error) {
	err, asked := c.seen[key]
	if !asked {
		if err = c.ctx.Err(); err == nil {
			err = resolve(c.ctx)
		}
		c.seen[key] = err
		c.report.Checked++
	}
	if err != nil {
		c.report.Unresolved = append(c.report.Unresolved, Unresolved{Group: group, Field: field, Kind: kind, Name: name, Problem: err.Error()})
	}
}

func (c *checker) group(path string, g config.Group) {
	servers := c.cloud.Servers
	sel := controller.Selector(g.Image)
	c.askKey(fmt.Sprintf("image\x00%+v", sel), g.Name, path+".image", "image", selectorName(g.Image), func(ctx context.Context) error {
		_, err := c.cloud.Images.ResolveImage(ctx, sel)
		return err
	})
	c.ask(g.Name, path+".flavor", "flavor", g.Flavor, func(ctx context.Context) error {
		_, err := servers.ResolveFlavor(ctx, g.Flavor)
		return err
	})
	for i, n := range g.Networks {
		c.ask(g.Name, fmt.Sprintf("%s.networks[%d]", path, i), "network", n, func(ctx context.Context) error {
			_, err := servers.ResolveNetwork(ctx, n)
			return err
		})
	}
	if g.KeyName != "" {
		c.ask(g.Name, path+".key_name", "key pair", g.KeyName, func(ctx context.Context) error {
			return c.names.ResolveKeyPair(ctx, g.KeyName)
		})
	}
	for i, sg := range g.SecurityGroups {
		c.ask(g.Name, fmt.Sprintf("%s.security_groups[%d]", path, i), "security group", sg, func(ctx context.Context) error {
			_, err := c.names.ResolveSecurityGroup(ctx, sg)
			return err
		})
	}
	if g.ServerGroup != "" {
		c.ask(g.Name, path+".server_group", "server group", g.ServerGroup, func(ctx context.Context) error {
			_, err := servers.ResolveServerGroup(ctx, g.ServerGroup)
			return err
		})
	}
	c.traffic(path+".traffic", g)
}

func (c *checker) traffic(path string, g config.Group) {
	if o := g.Traffic.Octavia; o != nil {
		where := o.Pool
		if o.LoadBalancer != "" {
			where = o.LoadBalancer + "/" + o.Pool
		}
		c.ask(g.Name, path+".octavia.pool", "load-balancer pool", where, func(ctx context.Context) error {
			_, err := c.cloud.LoadBalancer.ResolvePool(ctx, o.LoadBalancer, o.Pool)
			return err
		})
		if o.Subnet != "" {
			c.ask(g.Name, path+".octavia.subnet", "subnet", o.Subnet, func(ctx context.Context) error {
				_, err := c.cloud.LoadBalancer.ResolveSubnet(ctx, o.Subnet)
				return err
			})
		}
	}
	if f := g.Traffic.FloatingIP; f != nil {
		if f.Address != "" {
			c.ask(g.Name, path+".floating_ip.address", "floating IP", f.Address, func(ctx context.Context) error {
				_, err := c.cloud.FloatingIPs.FloatingIPByAddress(ctx, f.Address)
				return err
			})
		}
		if f.Pool != "" {
			// The reconciler allocates from the pool by resolving it as a
			// network first; the check stops there.
			c.ask(g.Name, path+".floating_ip.pool", "floating-IP pool", f.Pool, func(ctx context.Context) error {
				_, err := c.cloud.Servers.ResolveNetwork(ctx, f.Pool)
				return err
			})
		}
	}
}

// selectorName is an image selector in a few words: its ID, or its name.
func selectorName(s config.ImageSelector) string {
	switch {
	case s.ID != "":
		return s.ID
	case s.Name != "":
		return s.Name
	}
	return "(by properties and tags)"
}
