package provisioner

import "context"

// LoadBalancer is the part of a cloud that puts servers into a load
// balancer's pool and takes them out: Octavia on OpenStack.
//
// Every change waits until the load balancer accepts changes again before
// it returns, and treats the cloud's "busy, try again" answer (Octavia's
// 409 while a load balancer is PENDING_UPDATE) as a reason to wait, not as
// a failure. Only members the caller names are changed: an implementation
// never replaces a pool's whole member set, so members that belong to
// someone else are never touched.
type LoadBalancer interface {
	// ResolvePool finds a pool by name or ID, optionally within one load
	// balancer (by name or ID; "" searches them all).
	ResolvePool(ctx context.Context, loadBalancer, pool string) (Pool, error)

	// ResolveSubnet turns a subnet name or ID into its ID.
	ResolveSubnet(ctx context.Context, nameOrID string) (string, error)

	// PoolMembers reads the pool (whether it has a health monitor, its
	// load balancer's state) and every member in it.
	PoolMembers(ctx context.Context, poolID string) (Pool, []Member, error)

	// CreateMember adds a member. A member with the same address and port
	// that exists already is returned as it is.
	CreateMember(ctx context.Context, pool Pool, spec MemberSpec) (Member, error)

	// SetMemberWeight changes a member's weight; weight 0 drains it.
	SetMemberWeight(ctx context.Context, pool Pool, memberID string, weight int) error

	// DeleteMember removes a member; one that is already gone counts as
	// removed.
	DeleteMember(ctx context.Context, pool Pool, memberID string) error
}

// Pool is a load balancer pool.
type Pool struct {
	ID             string `json:"id"`
	Name           string `json:"name"`
	LoadBalancerID string `json:"load_balancer_id"`
	// HasMonitor is true when a health monitor checks the pool's members:
	// only then does a member's operating status say whether it serves.
	HasMonitor bool `json:"has_monitor"`
}

// Load balancer provisioning and operating statuses (Octavia's words).
const (
	LBActive    = "ACTIVE"
	LBError     = "ERROR"
	LBOnline    = "ONLINE"
	LBNoMonitor = "NO_MONITOR"
)

// Member is one member of a pool.
type Member struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Address      string `json:"address"`
	ProtocolPort int    `json:"protocol_port"`
	Weight       int    `json:"weight"`
	AdminStateUp bool   `json:"admin_state_up"`
	// ProvisioningStatus is ACTIVE once the load balancer has the member
	// in its configuration; OperatingStatus is ONLINE once its health
	// monitor sees it healthy (NO_MONITOR without a monitor).
	ProvisioningStatus string   `json:"provisioning_status"`
	OperatingStatus    string   `json:"operating_status"`
	Tags               []string `json:"tags,omitempty"`
}

// Serving reports whether the load balancer sends new requests to the
// member: it is configured, up, weighted, and — when the pool has a
// monitor that reports — seen healthy. A monitor that never reports (a
// load balancer whose driver has no health manager says NO_MONITOR or
// nothing) does not hold a member back.
func (m Member) Serving(p Pool) bool {
	if m.ProvisioningStatus != LBActive || !m.AdminStateUp || m.Weight <= 0 {
		return false
	}
	if !p.HasMonitor {
		return true
	}
	switch m.OperatingStatus {
	case LBOnline, LBNoMonitor, "":
		return true
	}
	return false
}

// MemberSpec is what a member create sends.
type MemberSpec struct {
	Name         string
	Address      string
	ProtocolPort int
	Weight       int
	SubnetID     string
	Tags         []string
}

// FloatingIPs is the part of a cloud that moves a public address from one
// server to another: Neutron floating IPs.
type FloatingIPs interface {
	// FloatingIPByAddress finds the project's floating IP with that
	// address.
	FloatingIPByAddress(ctx context.Context, address string) (FloatingIP, error)

	// FloatingIPByDescription finds the floating IP of an external
	// network that carries description, allocating one when there is
	// none, so that a group keeps one address across restarts.
	FloatingIPByDescription(ctx context.Context, network, description string) (FloatingIP, error)

	// ServerPort finds the port a server has on a network (by name or ID).
	ServerPort(ctx context.Context, serverID, network string) (Port, error)

	// AssociateFloatingIP points the floating IP at a port; the address
	// leaves whatever port it pointed at before, in one step.
	AssociateFloatingIP(ctx context.Context, floatingIPID, portID string) error
}

// FloatingIP is a Neutron floating IP.
type FloatingIP struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	// PortID is the port it points at ("" when unassociated), and FixedIP
	// that port's address.
	PortID  string `json:"port_id,omitempty"`
	FixedIP string `json:"fixed_ip,omitempty"`
}

// Port is a Neutron port of a server.
type Port struct {
	ID        string   `json:"id"`
	NetworkID string   `json:"network_id"`
	FixedIPs  []string `json:"fixed_ips"`
}

// Snapshots is the part of a cloud that keeps a server's disk before the
// server goes: Nova's createImage and the Glance images it makes.
type Snapshots interface {
	// SnapshotServer asks for an image of the server's disk, with the
	// given properties, and returns the new image's ID at once (the image
	// becomes active later).
	SnapshotServer(ctx context.Context, serverID, name string, properties map[string]string) (string, error)
	// Image reads one image; ErrNotFound when it is gone.
	Image(ctx context.Context, id string) (Image, error)
	// ImagesWith lists the images whose properties include all of props,
	// whatever their status.
	ImagesWith(ctx context.Context, props map[string]string) ([]Image, error)
	// DeleteImage deletes an image; one already gone counts as deleted.
	DeleteImage(ctx context.Context, id string) error
}
