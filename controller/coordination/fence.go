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

// everything is what the openstack provisioner offers; a cloud that
// offers all of it is fenced as all of it.
type everything interface {
	provisioner.Cloud
	provisioner.LoadBalancer
	provisioner.FloatingIPs
	provisioner.Snapshots
	provisioner.Volumes
	provisioner.ServerActions
}

// Fence wraps cloud so that every call that changes something first
// passes Check for group; reads pass through. The result offers the
// optional interfaces (load balancer, floating IPs, snapshots, volumes,
// server actions) when cloud offers all of them, which the openstack
// provisioner does; a cloud offering fewer is fenced as a plain
// provisioner.Cloud, and the reconciler then finds none of them.
func (r *Replica) Fence(group string, cloud provisioner.Cloud) provisioner.Cloud {
	return fence(r, group, cloud)
}

func fence(c checker, group string, cloud provisioner.Cloud) provisioner.Cloud {
	f := fencedCloud{Cloud: cloud, check: c, group: group}
	if all, ok := cloud.(everything); ok {
		return &fencedAll{fencedCloud: f, all: all}
	}
	return &f
}

// fencedCloud fences provisioner.Cloud. The embedded Cloud serves the
// reads.
type fencedCloud struct {
	provisioner.Cloud
	check checker
	group string
}

func (f *fencedCloud) guard(ctx context.Context, step string) error {
	if err := f.check.Check(ctx, f.group); err != nil {
		return fmt.Errorf("%s refused: %w", step, err)
	}
	return nil
}

func (f *fencedCloud) CreateServer(ctx context.Context, spec provisioner.ServerSpec) (provisioner.Server, error) {
	if err := f.guard(ctx, "create server "+spec.Name); err != nil {
		return provisioner.Server{}, err
	}
	return f.Cloud.CreateServer(ctx, spec)
}

func (f *fencedCloud) SetServerMetadata(ctx context.Context, id string, metadata map[string]string) error {
	if err := f.guard(ctx, "set metadata of server "+id); err != nil {
		return err
	}
	return f.Cloud.SetServerMetadata(ctx, id, metadata)
}

func (f *fencedCloud) DeleteServer(ctx context.Context, id string) error {
	if err := f.guard(ctx, "delete server "+id); err != nil {
		return err
	}
	return f.Cloud.DeleteServer(ctx, id)
}

// fencedAll fences every interface of the openstack provisioner.
type fencedAll struct {
	fencedCloud
	all everything
}

// Load balancer.

func (f *fencedAll) ResolvePool(ctx context.Context, loadBalancer, pool string) (provisioner.Pool, error) {
	return f.all.ResolvePool(ctx, loadBalancer, pool)
}

func (f *fencedAll) ResolveSubnet(ctx context.Context, nameOrID string) (string, error) {
	return f.all.ResolveSubnet(ctx, nameOrID)
}

func (f *fencedAll) PoolMembers(ctx context.Context, poolID string) (provisioner.Pool, []provisioner.Member, error) {
	return f.all.PoolMembers(ctx, poolID)
}

func (f *fencedAll) CreateMember(ctx context.Context, pool provisioner.Pool, spec provisioner.MemberSpec) (provisioner.Member, error) {
	if err := f.guard(ctx, "add member "+spec.Address+" to pool "+pool.ID); err != nil {
		return provisioner.Member{}, err
	}
	return f.all.CreateMember(ctx, pool, spec)
}

func (f *fencedAll) SetMemberWeight(ctx context.Context, pool provisioner.Pool, memberID string, weight int) error {
	if err := f.guard(ctx, "set weight of member "+memberID); err != nil {
		return err
	}
	return f.all.SetMemberWeight(ctx, pool, memberID, weight)
}

func (f *fencedAll) DeleteMember(ctx context.Context, pool provisioner.Pool, memberID string) error {
	if err := f.guard(ctx, "remove member "+memberID+" from pool "+pool.ID); err != nil {
		return err
	}
	return f.all.DeleteMember(ctx, pool, memberID)
}

// Floating IPs.

func (f *fencedAll) FloatingIPByAddress(ctx context.Context, address string) (provisioner.FloatingIP, error) {
	return f.all.FloatingIPByAddress(ctx, address)
}

func (f *fencedAll) FloatingIPByDescription(ctx context.Context, network, description string) (provisioner.FloatingIP, error) {
	return f.all.FloatingIPByDescription(ctx, network, description)
}

func (f *fencedAll) ServerPort(ctx context.Context, serverID, network string) (provisioner.Port, error) {
	return f.all.ServerPort(ctx, serverID, network)
}

func (f *fencedAll) AssociateFloatingIP(ctx context.Context, floatingIPID, portID string) error {
	if err := f.guard(ctx, "move floating IP "+floatingIPID+" to port "+portID); err != nil {
		return err
	}
	return f.all.AssociateFloatingIP(ctx, floatingIPID, portID)
}

// Server snapshots.

func (f *fencedAll) SnapshotServer(ctx context.Context, serverID, name string, properties map[string]string) (string, error) {
	if err := f.guard(ctx, "snapshot server "+serverID); err != nil {
		return "", err
	}
	return f.all.SnapshotServer(ctx, serverID, name, properties)
}

func (f *fencedAll) Image(ctx context.Context, id string) (provisioner.Image, error) {
	return f.all.Image(ctx, id)
}

func (f *fencedAll) ImagesWith(ctx context.Context, props map[string]string) ([]provisioner.Image, error) {
	return f.all.ImagesWith(ctx, props)
}

func (f *fencedAll) DeleteImage(ctx context.Context, id string) error {
	if err := f.guard(ctx, "delete image "+id); err != nil {
		return err
	}
	return f.all.DeleteImage(ctx, id)
}

// Volumes.

func (f *fencedAll) Volume(ctx context.Context, id string) (provisioner.Volume, error) {
	return f.all.Volume(ctx, id)
}

func (f *fencedAll) VolumesWith(ctx context.Context, metadata map[string]string) ([]provisioner.Volume, error) {
	return f.all.VolumesWith(ctx, metadata)
}

func (f *fencedAll) SetVolumeMetadata(ctx context.Context, id string, metadata map[string]string) error {
	if err := f.guard(ctx, "set metadata of volume "+id); err != nil {
		return err
	}
	return f.all.SetVolumeMetadata(ctx, id, metadata)
}

func (f *fencedAll) SnapshotVolume(ctx context.Context, volumeID, name string, metadata map[string]string) (provisioner.VolumeSnapshot, error) {
	if err := f.guard(ctx, "snapshot volume "+volumeID); err != nil {
		return provisioner.VolumeSnapshot{}, err
	}
	return f.all.SnapshotVolume(ctx, volumeID, name, metadata)
}

func (f *fencedAll) VolumeSnapshot(ctx context.Context, id string) (provisioner.VolumeSnapshot, error) {
	return f.all.VolumeSnapshot(ctx, id)
}

func (f *fencedAll) VolumeSnapshotsWith(ctx context.Context, metadata map[string]string) ([]provisioner.VolumeSnapshot, error) {
	return f.all.VolumeSnapshotsWith(ctx, metadata)
}

func (f *fencedAll) DeleteVolumeSnapshot(ctx context.Context, id string) error {
	if err := f.guard(ctx, "delete volume snapshot "+id); err != nil {
		return err
	}
	return f.all.DeleteVolumeSnapshot(ctx, id)
}

func (f *fencedAll) AttachVolume(ctx context.Context, serverID, volumeID string) error {
	if err := f.guard(ctx, "attach volume "+volumeID+" to server "+serverID); err != nil {
		return err
	}
	return f.all.AttachVolume(ctx, serverID, volumeID)
}

func (f *fencedAll) DetachVolume(ctx context.Context, serverID, volumeID string) error {
	if err := f.guard(ctx, "detach volume "+volumeID+" from server "+serverID); err != nil {
		return err
	}
	return f.all.DetachVolume(ctx, serverID, volumeID)
}

// Server actions.

func (f *fencedAll) StopServer(ctx context.Context, id string) error {
	if err := f.guard(ctx, "stop server "+id); err != nil {
		return err
	}
	return f.all.StopServer(ctx, id)
}

func (f *fencedAll) StartServer(ctx context.Context, id string) error {
	if err := f.guard(ctx, "start server "+id); err != nil {
		return err
	}
	return f.all.StartServer(ctx, id)
}

func (f *fencedAll) RebuildServer(ctx context.Context, id, imageID string, metadata map[string]string) error {
	if err := f.guard(ctx, "rebuild server "+id); err != nil {
		return err
	}
	return f.all.RebuildServer(ctx, id, imageID, metadata)
}
