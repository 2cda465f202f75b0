package coordination

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/provisioner"
)

// ErrNotOwner is wrapped by the error of every cloud step that fencing
// refused: this replica could not prove that it still owns the group.
var ErrNotOwner = errors.New("this replica cannot prove it owns the group")

// Check returns nil when this replica owns the group now: its lease is
// alive by its own clock, and a linearizable transaction found the
// group's key holding its id and lease. Otherwise it returns an error
// wrapping ErrNotOwner that says why. Without quorum the transaction
// cannot complete, so Check fails.
func (r *Replica) Check(ctx context.Context, group string) error {
	s := r.session()
	if err := s.aliveErr(r.opts.Now()); err != nil {
		return r.refused(group, err.Error())
	}
	// The answer is only worth having while the lease is known alive.
	cctx, cancel := context.WithDeadline(ctx, s.validUntil())
	defer cancel()
	k := r.groupKey(group)
	resp, err := r.cli.Txn(cctx).
		If(clientv3.Compare(clientv3.Value(k), "=", r.opts.ReplicaID), clientv3.Compare(clientv3.LeaseValue(k), "=", s.lease)).
		Else(clientv3.OpGet(k)).
		Commit()
	switch {
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("check ownership of group %s: %w", group, ctx.Err())
	case err != nil:
		return r.refused(group, "etcd did not confirm the group's key: "+err.Error())
	case !resp.Succeeded:
		owner := "no one"
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			owner = "replica " + strconv.Quote(string(kvs[0].Value))
		}
		r.poke()
		return r.refused(group, "etcd says the group is held by "+owner)
	}
	if err := s.aliveErr(r.opts.Now()); err != nil {
		return r.refused(group, err.Error())
	}
	return nil
}

func (r *Replica) refused(group, reason string) error {
	r.log.Warn("cloud step refused: this replica cannot prove it owns the group", zap.String("group", group), zap.String("reason", reason))
	return fmt.Errorf("group %s, replica %s: %s: %w", group, r.opts.ReplicaID, reason, ErrNotOwner)
}

// checker is what a fenced cloud asks before each step.
type checker interface {
	Check(ctx context.Context, group string) error
}

// Fence wraps every service of cloud so that every call that changes
// something first passes Check for group; reads pass through. An absent
// service stays as it is: its every call fails already.
func (r *Replica) Fence(group string, cloud provisioner.Cloud) provisioner.Cloud {
	return fence(r, group, cloud)
}

func fence(c checker, group string, cloud provisioner.Cloud) provisioner.Cloud {
	g := guard{check: c, group: group}
	cloud = cloud.Complete()
	if provisioner.Missing(cloud.Servers) == nil {
		cloud.Servers = fencedServers{cloud.Servers, g}
	}
	if provisioner.Missing(cloud.Images) == nil {
		cloud.Images = fencedImages{cloud.Images, g}
	}
	if provisioner.Missing(cloud.LoadBalancer) == nil {
		cloud.LoadBalancer = fencedLoadBalancer{cloud.LoadBalancer, g}
	}
	if provisioner.Missing(cloud.FloatingIPs) == nil {
		cloud.FloatingIPs = fencedFloatingIPs{cloud.FloatingIPs, g}
	}
	if provisioner.Missing(cloud.Snapshots) == nil {
		cloud.Snapshots = fencedSnapshots{cloud.Snapshots, g}
	}
	if provisioner.Missing(cloud.Volumes) == nil {
		cloud.Volumes = fencedVolumes{cloud.Volumes, g}
	}
	if provisioner.Missing(cloud.ServerActions) == nil {
		cloud.ServerActions = fencedServerActions{cloud.ServerActions, g}
	}
	return cloud
}

// guard asks the checker before a step. The fenced clients below name
// every method rather than embed the client, so that a method added to a
// service later does not compile until it is fenced or passed through.
type guard struct {
	check checker
	group string
}

func (g guard) allow(ctx context.Context, step string) error {
	if err := g.check.Check(ctx, g.group); err != nil {
		return fmt.Errorf("%s refused: %w", step, err)
	}
	return nil
}

type fencedServers struct {
	c provisioner.Servers
	g guard
}

func (f fencedServers) ListServers(ctx context.Context, tag string) ([]provisioner.Server, error) {
	return f.c.ListServers(ctx, tag)
}

func (f fencedServers) CreateServer(ctx context.Context, spec provisioner.ServerSpec) (provisioner.Server, error) {
	if err := f.g.allow(ctx, "create server "+spec.Name); err != nil {
		return provisioner.Server{}, err
	}
	return f.c.CreateServer(ctx, spec)
}

func (f fencedServers) SetServerMetadata(ctx context.Context, id string, metadata map[string]string) error {
	if err := f.g.allow(ctx, "set metadata of server "+id); err != nil {
		return err
	}
	return f.c.SetServerMetadata(ctx, id, metadata)
}

func (f fencedServers) DeleteServer(ctx context.Context, id string) error {
	if err := f.g.allow(ctx, "delete server "+id); err != nil {
		return err
	}
	return f.c.DeleteServer(ctx, id)
}

func (f fencedServers) ResolveFlavor(ctx context.Context, nameOrID string) (string, error) {
	return f.c.ResolveFlavor(ctx, nameOrID)
}

func (f fencedServers) ResolveNetwork(ctx context.Context, nameOrID string) (string, error) {
	return f.c.ResolveNetwork(ctx, nameOrID)
}

func (f fencedServers) ResolveServerGroup(ctx context.Context, nameOrID string) (string, error) {
	return f.c.ResolveServerGroup(ctx, nameOrID)
}

// fencedImages reads freely; a tag, a stage's promotion, is a change.
type fencedImages struct {
	c provisioner.Images
	g guard
}

func (f fencedImages) ResolveImage(ctx context.Context, sel provisioner.ImageSelector) (provisioner.Image, error) {
	return f.c.ResolveImage(ctx, sel)
}

func (f fencedImages) TagImage(ctx context.Context, id, tag string) error {
	if err := f.g.allow(ctx, "tag image "+id); err != nil {
		return err
	}
	return f.c.TagImage(ctx, id, tag)
}

func (f fencedImages) UntagImage(ctx context.Context, id, tag string) error {
	if err := f.g.allow(ctx, "untag image "+id); err != nil {
		return err
	}
	return f.c.UntagImage(ctx, id, tag)
}

type fencedLoadBalancer struct {
	c provisioner.LoadBalancer
	g guard
}

func (f fencedLoadBalancer) ResolvePool(ctx context.Context, loadBalancer, pool string) (provisioner.Pool, error) {
	return f.c.ResolvePool(ctx, loadBalancer, pool)
}

func (f fencedLoadBalancer) ResolveSubnet(ctx context.Context, nameOrID string) (string, error) {
	return f.c.ResolveSubnet(ctx, nameOrID)
}

func (f fencedLoadBalancer) PoolMembers(ctx context.Context, poolID string) (provisioner.Pool, []provisioner.Member, error) {
	return f.c.PoolMembers(ctx, poolID)
}

func (f fencedLoadBalancer) CreateMember(ctx context.Context, pool provisioner.Pool, spec provisioner.MemberSpec) (provisioner.Member, error) {
	if err := f.g.allow(ctx, "add member "+spec.Address+" to pool "+pool.ID); err != nil {
		return provisioner.Member{}, err
	}
	return f.c.CreateMember(ctx, pool, spec)
}

func (f fencedLoadBalancer) SetMemberWeight(ctx context.Context, pool provisioner.Pool, memberID string, weight int) error {
	if err := f.g.allow(ctx, "set weight of member "+memberID); err != nil {
		return err
	}
	return f.c.SetMemberWeight(ctx, pool, memberID, weight)
}

func (f fencedLoadBalancer) DeleteMember(ctx context.Context, pool provisioner.Pool, memberID string) error {
	if err := f.g.allow(ctx, "remove member "+memberID+" from pool "+pool.ID); err != nil {
		return err
	}
	return f.c.DeleteMember(ctx, pool, memberID)
}

type fencedFloatingIPs struct {
	c provisioner.FloatingIPs
	g guard
}

func (f fencedFloatingIPs) FloatingIPByAddress(ctx context.Context, address string) (provisioner.FloatingIP, error) {
	return f.c.FloatingIPByAddress(ctx, address)
}

// FloatingIPByDescription passes through as a read, as it always has,
// though it allocates an address when none carries the description.
func (f fencedFloatingIPs) FloatingIPByDescription(ctx context.Context, network, description string) (provisioner.FloatingIP, error) {
	return f.c.FloatingIPByDescription(ctx, network, description)
}

func (f fencedFloatingIPs) ServerPort(ctx context.Context, serverID, network string) (provisioner.Port, error) {
	return f.c.ServerPort(ctx, serverID, network)
}

func (f fencedFloatingIPs) AssociateFloatingIP(ctx context.Context, floatingIPID, portID string) error {
	if err := f.g.allow(ctx, "move floating IP "+floatingIPID+" to port "+portID); err != nil {
		return err
	}
	return f.c.AssociateFloatingIP(ctx, floatingIPID, portID)
}

type fencedSnapshots struct {
	c provisioner.Snapshots
	g guard
}

func (f fencedSnapshots) SnapshotServer(ctx context.Context, serverID, name string, properties map[string]string) (string, error) {
	if err := f.g.allow(ctx, "snapshot server "+serverID); err != nil {
		return "", err
	}
	return f.c.SnapshotServer(ctx, serverID, name, properties)
}

func (f fencedSnapshots) Image(ctx context.Context, id string) (provisioner.Image, error) {
	return f.c.Image(ctx, id)
}

func (f fencedSnapshots) ImagesWith(ctx context.Context, props map[string]string) ([]provisioner.Image, error) {
	return f.c.ImagesWith(ctx, props)
}

func (f fencedSnapshots) DeleteImage(ctx context.Context, id string) error {
	if err := f.g.allow(ctx, "delete image "+id); err != nil {
		return err
	}
	return f.c.DeleteImage(ctx, id)
}

type fencedVolumes struct {
	c provisioner.Volumes
	g guard
}

func (f fencedVolumes) Volume(ctx context.Context, id string) (provisioner.Volume, error) {
	return f.c.Volume(ctx, id)
}

func (f fencedVolumes) VolumesWith(ctx context.Context, metadata map[string]string) ([]provisioner.Volume, error) {
	return f.c.VolumesWith(ctx, metadata)
}

func (f fencedVolumes) SetVolumeMetadata(ctx context.Context, id string, metadata map[string]string) error {
	if err := f.g.allow(ctx, "set metadata of volume "+id); err != nil {
		return err
	}
	return f.c.SetVolumeMetadata(ctx, id, metadata)
}

func (f fencedVolumes) SnapshotVolume(ctx context.Context, volumeID, name string, metadata map[string]string) (provisioner.VolumeSnapshot, error) {
	if err := f.g.allow(ctx, "snapshot volume "+volumeID); err != nil {
		return provisioner.VolumeSnapshot{}, err
	}
	return f.c.SnapshotVolume(ctx, volumeID, name, metadata)
}

func (f fencedVolumes) VolumeSnapshot(ctx context.Context, id string) (provisioner.VolumeSnapshot, error) {
	return f.c.VolumeSnapshot(ctx, id)
}

func (f fencedVolumes) VolumeSnapshotsWith(ctx context.Context, metadata map[string]string) ([]provisioner.VolumeSnapshot, error) {
	return f.c.VolumeSnapshotsWith(ctx, metadata)
}

func (f fencedVolumes) DeleteVolumeSnapshot(ctx context.Context, id string) error {
	if err := f.g.allow(ctx, "delete volume snapshot "+id); err != nil {
		return err
	}
	return f.c.DeleteVolumeSnapshot(ctx, id)
}

func (f fencedVolumes) AttachVolume(ctx context.Context, serverID, volumeID string) error {
	if err := f.g.allow(ctx, "attach volume "+volumeID+" to server "+serverID); err != nil {
		return err
	}
	return f.c.AttachVolume(ctx, serverID, volumeID)
}

func (f fencedVolumes) DetachVolume(ctx context.Context, serverID, volumeID string) error {
	if err := f.g.allow(ctx, "detach volume "+volumeID+" from server "+serverID); err != nil {
		return err
	}
	return f.c.DetachVolume(ctx, serverID, volumeID)
}

type fencedServerActions struct {
	c provisioner.ServerActions
	g guard
}

func (f fencedServerActions) StopServer(ctx context.Context, id string) error {
	if err := f.g.allow(ctx, "stop server "+id); err != nil {
		return err
	}
	return f.c.StopServer(ctx, id)
}

func (f fencedServerActions) StartServer(ctx context.Context, id string) error {
	if err := f.g.allow(ctx, "start server "+id); err != nil {
		return err
	}
	return f.c.StartServer(ctx, id)
}

func (f fencedServerActions) RebuildServer(ctx context.Context, id, imageID string, metadata map[string]string) error {
	if err := f.g.allow(ctx, "rebuild server "+id); err != nil {
		return err
	}
	return f.c.RebuildServer(ctx, id, imageID, metadata)
}
