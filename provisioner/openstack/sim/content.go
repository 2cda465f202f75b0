package sim

import (
	"github.com/google/uuid"
)

// Flavor is a Nova flavor. RAM is in MB and Disk in GB, as Nova counts.
type Flavor struct {
	ID, Name         string
	VCPUs, RAM, Disk int
}

// AddFlavor adds a flavor and returns it; an empty ID gets a new UUID.
func (s *Sim) AddFlavor(f Flavor) Flavor {
	if f.ID == "" {
		f.ID = uuid.NewString()
	}
	s.mu.Lock()
	s.flavors = append(s.flavors, f)
	s.mu.Unlock()
	return f
}

// flavor finds a flavor by ID or by a URL ending in its ID, as Nova reads
// flavorRef. Call with s.mu held.
func (s *Sim) flavor(ref string) (Flavor, bool) {
	id := lastSegment(ref)
	for _, f := range s.flavors {
		if f.ID == id {
			return f, true
		}
	}
	return Flavor{}, false
}

// Network is a Neutron network.
type Network struct {
	ID, Name string
	// External marks a provider network floating IPs are allocated on
	// (router:external). Nova never picks one for a server by itself.
	External bool
}

// AddNetwork adds a network, with one subnet named after it
// ("<name>-subnet", 127.0.0.0/8), and returns it; an empty ID gets a new
// UUID.
func (s *Sim) AddNetwork(n Network) Network {
	if n.ID == "" {
		n.ID = uuid.NewString()
	}
	s.mu.Lock()
	s.networks = append(s.networks, n)
	s.subnets = append(s.subnets, subnet{ID: uuid.NewString(), Name: n.Name + "-subnet", NetworkID: n.ID, CIDR: "127.0.0.0/8"})
	s.mu.Unlock()
	return n
}

// tenantNetworks are the networks Nova may choose for a server by itself:
// all but the external ones. Call with s.mu held.
func (s *Sim) tenantNetworks() []Network {
	var out []Network
	for _, n := range s.networks {
		if !n.External {
			out = append(out, n)
		}
	}
	return out
}

// network finds a network by ID. Call with s.mu held.
func (s *Sim) network(id string) (Network, bool) {
	for _, n := range s.networks {
		if n.ID == id {
			return n, true
		}
	}
	return Network{}, false
}

// AddKeypair adds a key pair that servers may be created with.
func (s *Sim) AddKeypair(name string) {
	s.mu.Lock()
	s.keypairs[name] = true
	s.mu.Unlock()
}

// AddSecurityGroup adds a security group that servers may use.
func (s *Sim) AddSecurityGroup(name string) {
	s.mu.Lock()
	s.secGroups[name] = true
	s.mu.Unlock()
}

type serverGroup struct {
	ID, Name, Policy string
}

// AddServerGroup adds a server group with the given policy (affinity,
// anti-affinity, soft-affinity, soft-anti-affinity) and returns its ID.
// Servers join it with the scheduler hint "group"; the simulator records
// membership but places every server on the same imaginary host.
func (s *Sim) AddServerGroup(name, policy string) string {
	g := serverGroup{ID: uuid.NewString(), Name: name, Policy: policy}
	s.mu.Lock()
	s.srvGroups = append(s.srvGroups, g)
	s.mu.Unlock()
	return g.ID
}

// serverGroup finds a server group by ID. Call with s.mu held.
func (s *Sim) serverGroup(id string) (serverGroup, bool) {
	for _, g := range s.srvGroups {
		if g.ID == id {
			return g, true
		}
	}
	return serverGroup{}, false
}

// lastSegment is the part of a reference after its last slash: Nova
// accepts a flavor's URL where it expects its ID.
func lastSegment(ref string) string {
	for i := len(ref) - 1; i >= 0; i-- {
		if ref[i] == '/' {
			return ref[i+1:]
		}
	}
	return ref
}
