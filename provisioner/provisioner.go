// Package provisioner is the narrow view of a cloud that the controller
// consumes: one client per service, each a small interface. Servers lists
// a group's servers, creates, writes metadata, deletes, and resolves the
// names a server spec holds; Images resolves the image selector; the
// others (load balancer, floating IPs, snapshots, volumes, server
// actions) serve the groups that ask for them.
//
// A service the cloud lacks is a client that says so (Absent): callers
// never type-assert for a capability, and they check up front with
// Missing. The interfaces know nothing about rollout policy: deciding
// what to create or delete is the controller's job, doing it faithfully
// (and saying clearly when the outcome is unknown) is the provisioner's.
// The only implementation for real clouds lives in provisioner/openstack
// and speaks gophercloud v2.
package provisioner

import (
	"context"
	"time"
)

// Cloud is everything the controller asks of a cloud, one client per
// service. Every method takes the caller's context and honours its
// deadline. A field may hold an Absent client; call Complete to turn nil
// fields into Absent ones.
type Cloud struct {
	Servers       Servers
	Images        Images
	LoadBalancer  LoadBalancer
	FloatingIPs   FloatingIPs
	Snapshots     Snapshots
	Volumes       Volumes
	ServerActions ServerActions
}

// Complete returns the cloud with every nil field replaced by an Absent
// client, so that callers need no nil checks and a test can build a cloud
// of only the services it uses.
func (c Cloud) Complete() Cloud {
	if c.Servers == nil {
		c.Servers = Absent{Service: "Nova (compute)"}
	}
	if c.Images == nil {
		c.Images = Absent{Service: "Glance (image)"}
	}
	if c.LoadBalancer == nil {
		c.LoadBalancer = Absent{Service: "Octavia (load balancer)"}
	}
	if c.FloatingIPs == nil {
		c.FloatingIPs = Absent{Service: "Neutron (network)"}
	}
	if c.Snapshots == nil {
		c.Snapshots = Absent{Service: "Nova (server snapshots)"}
	}
	if c.Volumes == nil {
		c.Volumes = Absent{Service: "Cinder (block storage)"}
	}
	if c.ServerActions == nil {
		c.ServerActions = Absent{Service: "Nova (server actions)"}
	}
	return c
}

// Servers is the compute service (Nova): a group's servers, and the names
// a server spec needs resolved.
type Servers interface {
	// ListServers returns every server carrying tag, following pagination.
	// Implementations must issue one list request per page, never one
	// request per server.
	ListServers(ctx context.Context, tag string) ([]Server, error)

	// CreateServer boots one server. Tags and metadata are set in the
	// create call itself so that no crash can leave an unowned server.
	// A create is never retried blindly: when the answer is lost the
	// error wraps ErrUnknownOutcome and the next ListServers settles it.
	CreateServer(ctx context.Context, spec ServerSpec) (Server, error)

	// SetServerMetadata merges the given keys into the server's metadata.
	SetServerMetadata(ctx context.Context, id string, metadata map[string]string) error

	// DeleteServer asks the cloud to delete a server. A server that is
	// already gone counts as deleted (nil error).
	DeleteServer(ctx context.Context, id string) error

	// ResolveFlavor turns a flavor name or ID into its ID.
	ResolveFlavor(ctx context.Context, nameOrID string) (string, error)

	// ResolveNetwork turns a network name or ID into its ID.
	ResolveNetwork(ctx context.Context, nameOrID string) (string, error)

	// ResolveServerGroup turns a server group name or ID into its ID.
	ResolveServerGroup(ctx context.Context, nameOrID string) (string, error)
}

// Images is the image service (Glance) as a group's image selector needs it.
type Images interface {
	// ResolveImage returns the active image the selector designates.
	ResolveImage(ctx context.Context, sel ImageSelector) (Image, error)

	// TagImage adds tag to the image. A tag the image has already is no
	// error: Glance's PUT of one tag is idempotent, and leaves the
	// image's other tags alone.
	TagImage(ctx context.Context, id, tag string) error

	// UntagImage removes tag from the image. A tag it does not have, or
	// an image that is gone, is no error.
	UntagImage(ctx context.Context, id, tag string) error
}

// Server statuses as Nova reports them. Only the ones the controller acts
// on are named.
const (
	StatusBuild       = "BUILD"
	StatusActive      = "ACTIVE"
	StatusError       = "ERROR"
	StatusDeleted     = "DELETED"
	StatusSoftDeleted = "SOFT_DELETED"
	StatusShutoff     = "SHUTOFF"
	StatusRebuild     = "REBUILD"
)

// TaskDeleting is the task state Nova sets as soon as it accepts a delete.
const TaskDeleting = "deleting"

// Server is one server as observed in the cloud.
type Server struct {
	ID               string            `json:"id"`
	Name             string            `json:"name"`
	Status           string            `json:"status"`
	TaskState        string            `json:"task_state,omitempty"`
	ImageID          string            `json:"image_id"`
	AvailabilityZone string            `json:"availability_zone,omitempty"`
	Metadata         map[string]string `json:"metadata,omitempty"`
	Tags             []string          `json:"tags,omitempty"`
	Created          time.Time         `json:"created"`
	// LaunchedAt is when the server first became ACTIVE (zero before).
	LaunchedAt time.Time `json:"launched_at,omitzero"`
	// Addresses lists the server's fixed addresses, keyed by network name.
	Addresses map[string][]string `json:"addresses,omitempty"`
	// Fault is Nova's fault message for a server in ERROR.
	Fault string `json:"fault,omitempty"`
	// Volumes lists the IDs of the volumes attached to the server, as the
	// server list shows them (no request per server).
	Volumes []string `json:"volumes,omitempty"`
}

// Gone reports whether the cloud has deleted the server even though a list
// may still show it for a while.
func (s Server) Gone() bool {
	return s.Status == StatusDeleted || s.Status == StatusSoftDeleted
}

// ServerSpec is what a create call sends. All references are IDs except
// SecurityGroups and KeyName, which Nova accepts by name.
type ServerSpec struct {
	Name             string
	ImageID          string
	FlavorID         string
	NetworkIDs       []string
	KeyName          string
	SecurityGroups   []string
	ServerGroupID    string
	AvailabilityZone string
	UserData         []byte
	Metadata         map[string]string
	Tags             []string
}

// ImageSelector designates an image: by ID, or by name and/or properties
// and tags. Newest picks the most recently created active match when more
// than one matches; without it, more than one match is an error.
type ImageSelector struct {
	ID         string            `json:"id,omitempty"`
	Name       string            `json:"name,omitempty"`
	Properties map[string]string `json:"properties,omitempty"`
	Tags       []string          `json:"tags,omitempty"`
	Newest     bool              `json:"newest,omitempty"`
}

// Image is a Glance image.
type Image struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Status  string    `json:"status"`
	Created time.Time `json:"created"`
	// Tags are the image's Glance tags, in Glance's order.
	Tags []string `json:"tags,omitempty"`
}
