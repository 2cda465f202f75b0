package provisioner

import (
	"context"
	"errors"
	"fmt"
)

// ErrUnavailable is wrapped by every error of an Absent client: the cloud
// has no such service, and asking again will not help.
var ErrUnavailable = errors.New("not available on this cloud")

// Absent is the client of a service the cloud does not offer. Every
// method fails with an error that wraps ErrUnavailable and Err, and names
// Service ("Octavia (load balancer)"); nothing is sent anywhere.
type Absent struct {
	Service string
	// Err is why the service is missing (the catalog has no endpoint for
	// it); nil when no one said.
	Err error
}

func (a Absent) err() error {
	if a.Err == nil {
		return fmt.Errorf("%s is %w", a.Service, ErrUnavailable)
	}
	return fmt.Errorf("%s is %w: %w", a.Service, ErrUnavailable, a.Err)
}

// Missing returns the error of an absent (or nil) client, nil for any
// other: the one place that tells whether a service is there, for checks
// made before anything is done.
func Missing(client any) error {
	switch a := client.(type) {
	case Absent:
		return a.err()
	case *Absent:
		if a != nil {
			return a.err()
		}
	case nil:
	default:
		return nil
	}
	return fmt.Errorf("no client: %w", ErrUnavailable)
}

var (
	_ Servers       = Absent{}
	_ Images        = Absent{}
	_ LoadBalancer  = Absent{}
	_ FloatingIPs   = Absent{}
	_ Snapshots     = Absent{}
	_ Volumes       = Absent{}
	_ ServerActions = Absent{}
)

// Servers.

func (a Absent) ListServers(context.Context, string) ([]Server, error) { return nil, a.err() }
func (a Absent) CreateServer(context.Context, ServerSpec) (Server, error) {
	return Server{}, a.err()
}
func (a Absent) SetServerMetadata(context.Context, string, map[string]string) error { return a.err() }
func (a Absent) DeleteServer(context.Context, string) error                         { return a.err() }
func (a Absent) ResolveFlavor(context.Context, string) (string, error)              { return "", a.err() }
func (a Absent) ResolveNetwork(context.Context, string) (string, error)             { return "", a.err() }
func (a Absent) ResolveServerGroup(context.Context, string) (string, error)         { return "", a.err() }

// Images.

func (a Absent) ResolveImage(context.Context, ImageSelector) (Image, error) { return Image{}, a.err() }
func (a Absent) TagImage(context.Context, string, string) error             { return a.err() }
func (a Absent) UntagImage(context.Context, string, string) error           { return a.err() }

// LoadBalancer.

func (a Absent) ResolvePool(context.Context, string, string) (Pool, error) { return Pool{}, a.err() }
func (a Absent) ResolveSubnet(context.Context, string) (string, error)     { return "", a.err() }
func (a Absent) PoolMembers(context.Context, string) (Pool, []Member, error) {
	return Pool{}, nil, a.err()
}
func (a Absent) CreateMember(context.Context, Pool, MemberSpec) (Member, error) {
	return Member{}, a.err()
}
func (a Absent) SetMemberWeight(context.Context, Pool, string, int) error { return a.err() }
func (a Absent) DeleteMember(context.Context, Pool, string) error         { return a.err() }

// FloatingIPs.

func (a Absent) FloatingIPByAddress(context.Context, string) (FloatingIP, error) {
	return FloatingIP{}, a.err()
}
func (a Absent) FloatingIPByDescription(context.Context, string, string) (FloatingIP, error) {
	return FloatingIP{}, a.err()
}
func (a Absent) ServerPort(context.Context, string, string) (Port, error) { return Port{}, a.err() }
func (a Absent) AssociateFloatingIP(context.Context, string, string) error {
	return a.err()
}

// Snapshots.

func (a Absent) SnapshotServer(context.Context, string, string, map[string]string) (string, error) {
	return "", a.err()
}
func (a Absent) Image(context.Context, string) (Image, error)                   { return Image{}, a.err() }
func (a Absent) ImagesWith(context.Context, map[string]string) ([]Image, error) { return nil, a.err() }
func (a Absent) DeleteImage(context.Context, string) error                      { return a.err() }

// Volumes.

func (a Absent) Volume(context.Context, string) (Volume, error) { return Volume{}, a.err() }
func (a Absent) VolumesWith(context.Context, map[string]string) ([]Volume, error) {
	return nil, a.err()
}
func (a Absent) SetVolumeMetadata(context.Context, string, map[string]string) error { return a.err() }
func (a Absent) SnapshotVolume(context.Context, string, string, map[string]string) (VolumeSnapshot, error) {
	return VolumeSnapshot{}, a.err()
}
func (a Absent) VolumeSnapshot(context.Context, string) (VolumeSnapshot, error) {
	return VolumeSnapshot{}, a.err()
}
func (a Absent) VolumeSnapshotsWith(context.Context, map[string]string) ([]VolumeSnapshot, error) {
	return nil, a.err()
}
func (a Absent) DeleteVolumeSnapshot(context.Context, string) error { return a.err() }
func (a Absent) AttachVolume(context.Context, string, string) error { return a.err() }
func (a Absent) DetachVolume(context.Context, string, string) error { return a.err() }

// ServerActions.

func (a Absent) StopServer(context.Context, string) error  { return a.err() }
func (a Absent) StartServer(context.Context, string) error { return a.err() }
func (a Absent) RebuildServer(context.Context, string, string, map[string]string) error {
	return a.err()
}
