// Package provisioner is the narrow view of a cloud that the controller
// consumes: list a group's servers, create one, write its metadata, delete
// it, and resolve the names an operator writes (image selector, flavor,
// network) into IDs.
//
// The interface is deliberately small and knows nothing about rollout
// policy: deciding what to create or delete is the controller's job, doing
// it faithfully (and saying clearly when the outcome is unknown) is the
// provisioner's. The only implementation for real clouds lives in
// provisioner/openstack and speaks gophercloud v2.
package provisioner

import (
	"context"
	"time"
)

// Cloud is everything the controller asks of a cloud. Every method takes the
// caller's context and honours its deadline.
type Cloud interface {
	Servers
	Images
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
	ID               string
	Name             string
	Status           string
	TaskState        string
	ImageID          string
	AvailabilityZone string
	Metadata         map[string]string
	Tags             []string
	Created          time.Time
	// LaunchedAt is when the server first became ACTIVE (zero before).
	LaunchedAt time.Time
	// Addresses lists the server's fixed addresses, keyed by network name.
	Addresses map[string][]string
	// Fault is Nova's fault message for a server in ERROR.
	Fault string
	// Volumes lists the IDs of the volumes attached to the server, as the
	// server list shows them (no request per server).
	Volumes []string
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
	ID         string
	Name       string
	Properties map[string]string
	Tags       []string
	Newest     bool
}

// Image is a Glance image.
type Image struct {
	ID      string
	Name    string
	Status  string
	Created time.Time
}
