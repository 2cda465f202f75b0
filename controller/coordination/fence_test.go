package coordination

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/phoenix-ops/phoenix/provisioner"
)

// reads are the calls a fenced cloud passes through unchecked; every
// other call of every service must be refused without ownership.
var reads = map[string]bool{
	"Servers.ListServers": true, "Servers.ResolveFlavor": true, "Servers.ResolveNetwork": true, "Servers.ResolveServerGroup": true,
	"Images.ResolveImage":      true,
	"LoadBalancer.ResolvePool": true, "LoadBalancer.ResolveSubnet": true, "LoadBalancer.PoolMembers": true,
	"FloatingIPs.FloatingIPByAddress": true, "FloatingIPs.FloatingIPByDescription": true, "FloatingIPs.ServerPort": true,
	"Snapshots.Image": true, "Snapshots.ImagesWith": true,
	"Volumes.Volume": true, "Volumes.VolumesWith": true, "Volumes.VolumeSnapshot": true, "Volumes.VolumeSnapshotsWith": true,
}

// fullCloud sets every field of a provisioner.Cloud to rec, and fails
// the test for a field rec cannot fill: a service added to the Cloud
// must be added to recorder, and then to fence.
func fullCloud(t *testing.T, rec *recorder) provisioner.Cloud {
	t.Helper()
	var c provisioner.Cloud
	v := reflect.ValueOf(&c).Elem()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if !reflect.TypeFor[*recorder]().Implements(f.Type) {
			t.Fatalf("recorder does not implement %s: give it the methods, and fence the field", f.Type)
		}
		v.Field(i).Set(reflect.ValueOf(rec))
	}
	return c
}

// Every field of provisioner.Cloud comes back wrapped, so that no
// service can reach the cloud around the fence.
func TestFenceWrapsEveryService(t *testing.T) {
	rec := &recorder{}
	out := reflect.ValueOf(fence(&verdict{}, "web", fullCloud(t, rec)))
	for i := range out.NumField() {
		name := out.Type().Field(i).Name
		got := out.Field(i).Interface()
		if got == any(rec) {
			t.Errorf("%s came back unwrapped", name)
		}
		if err := provisioner.Missing(got); err != nil {
			t.Errorf("%s came back absent: %v", name, err)
		}
	}
}

// Every call of every service is either a read that passes through or
// a change refused when this replica cannot prove it owns the group.
func TestFenceRefusesEveryChange(t *testing.T) {
	notOwner := fmt.Errorf("group web: lease gone: %w", ErrNotOwner)
	for _, owner := range []bool{true, false} {
		rec := &recorder{}
		v := &verdict{}
		if !owner {
			v.err = notOwner
		}
		out := reflect.ValueOf(fence(v, "web", fullCloud(t, rec)))
		for i := range out.NumField() {
			field := out.Type().Field(i)
			for m := range field.Type.NumMethod() {
				call := field.Name + "." + field.Type.Method(m).Name
				rec.last = ""
				err := callZero(out.Field(i).MethodByName(field.Type.Method(m).Name))
				reached := rec.last == field.Type.Method(m).Name
				switch {
				case owner && (!reached || err != nil):
					t.Errorf("owner: %s reached the cloud %v, error %v", call, reached, err)
				case !owner && reads[call] && !reached:
					t.Errorf("not owner: the read %s did not pass through: %v", call, err)
				case !owner && !reads[call] && reached:
					t.Errorf("not owner: %s reached the cloud; guard it in fence, or list it in reads if it only reads", call)
				case !owner && !reads[call] && !errors.Is(err, ErrNotOwner):
					t.Errorf("not owner: %s answered %v, want ErrNotOwner", call, err)
				}
			}
		}
	}
}

// An absent service stays as it was: its calls fail already, saying why.
func TestFenceLeavesAbsentServices(t *testing.T) {
	why := errors.New("no load-balancer endpoint in the catalog")
	in := provisioner.Cloud{LoadBalancer: provisioner.Absent{Service: "Octavia (load balancer)", Err: why}}
	out := fence(&verdict{}, "web", in)
	if out.LoadBalancer != in.LoadBalancer {
		t.Errorf("the absent load balancer came back as %#v", out.LoadBalancer)
	}
	v := reflect.ValueOf(out)
	for i := range v.NumField() {
		if err := provisioner.Missing(v.Field(i).Interface()); !errors.Is(err, provisioner.ErrUnavailable) {
			t.Errorf("%s of an empty cloud: %v, want ErrUnavailable", v.Type().Field(i).Name, err)
		}
	}
}

// callZero calls fn with a context and zero values, and returns its error.
func callZero(fn reflect.Value) error {
	args := make([]reflect.Value, fn.Type().NumIn())
	for i := range args {
		args[i] = reflect.Zero(fn.Type().In(i))
	}
	args[0] = reflect.ValueOf(context.Background())
	out := fn.Call(args)
	err, _ := out[len(out)-1].Interface().(error)
	return err
}

// recorder is every service at once; last names the call that reached
// it last.
type recorder struct{ last string }

func (r *recorder) ListServers(context.Context, string) ([]provisioner.Server, error) {
	r.last = "ListServers"
	return nil, nil
}
func (r *recorder) CreateServer(context.Context, provisioner.ServerSpec) (provisioner.Server, error) {
	r.last = "CreateServer"
	return provisioner.Server{}, nil
}
func (r *recorder) SetServerMetadata(context.Context, string, map[string]string) error {
	r.last = "SetServerMetadata"
	return nil
}
func (r *recorder) DeleteServer(context.Context, string) error { r.last = "DeleteServer"; return nil }
func (r *recorder) ResolveFlavor(context.Context, string) (string, error) {
	r.last = "ResolveFlavor"
	return "", nil
}
func (r *recorder) ResolveNetwork(context.Context, string) (string, error) {
	r.last = "ResolveNetwork"
	return "", nil
}
func (r *recorder) ResolveServerGroup(context.Context, string) (string, error) {
	r.last = "ResolveServerGroup"
	return "", nil
}
func (r *recorder) ResolveImage(context.Context, provisioner.ImageSelector) (provisioner.Image, error) {
	r.last = "ResolveImage"
	return provisioner.Image{}, nil
}
func (r *recorder) TagImage(context.Context, string, string) error {
	r.last = "TagImage"
	return nil
}
func (r *recorder) UntagImage(context.Context, string, string) error {
	r.last = "UntagImage"
	return nil
}
func (r *recorder) ResolvePool(context.Context, string, string) (provisioner.Pool, error) {
	r.last = "ResolvePool"
	return provisioner.Pool{}, nil
}
func (r *recorder) ResolveSubnet(context.Context, string) (string, error) {
	r.last = "ResolveSubnet"
	return "", nil
}
func (r *recorder) PoolMembers(context.Context, string) (provisioner.Pool, []provisioner.Member, error) {
	r.last = "PoolMembers"
	return provisioner.Pool{}, nil, nil
}
func (r *recorder) CreateMember(context.Context, provisioner.Pool, provisioner.MemberSpec) (provisioner.Member, error) {
	r.last = "CreateMember"
	return provisioner.Member{}, nil
}
func (r *recorder) SetMemberWeight(context.Context, provisioner.Pool, string, int) error {
	r.last = "SetMemberWeight"
	return nil
}
func (r *recorder) DeleteMember(context.Context, provisioner.Pool, string) error {
	r.last = "DeleteMember"
	return nil
}
func (r *recorder) FloatingIPByAddress(context.Context, string) (provisioner.FloatingIP, error) {
	r.last = "FloatingIPByAddress"
	return provisioner.FloatingIP{}, nil
}
func (r *recorder) FloatingIPByDescription(context.Context, string, string) (provisioner.FloatingIP, error) {
	r.last = "FloatingIPByDescription"
	return provisioner.FloatingIP{}, nil
}
func (r *recorder) ServerPort(context.Context, string, string) (provisioner.Port, error) {
	r.last = "ServerPort"
	return provisioner.Port{}, nil
}
func (r *recorder) AssociateFloatingIP(context.Context, string, string) error {
	r.last = "AssociateFloatingIP"
	return nil
}
func (r *recorder) SnapshotServer(context.Context, string, string, map[string]string) (string, error) {
	r.last = "SnapshotServer"
	return "", nil
}
func (r *recorder) Image(context.Context, string) (provisioner.Image, error) {
	r.last = "Image"
	return provisioner.Image{}, nil
}
func (r *recorder) ImagesWith(context.Context, map[string]string) ([]provisioner.Image, error) {
	r.last = "ImagesWith"
	return nil, nil
}
func (r *recorder) DeleteImage(context.Context, string) error { r.last = "DeleteImage"; return nil }
func (r *recorder) Volume(context.Context, string) (provisioner.Volume, error) {
	r.last = "Volume"
	return provisioner.Volume{}, nil
}
func (r *recorder) VolumesWith(context.Context, map[string]string) ([]provisioner.Volume, error) {
	r.last = "VolumesWith"
	return nil, nil
}
func (r *recorder) SetVolumeMetadata(context.Context, string, map[string]string) error {
	r.last = "SetVolumeMetadata"
	return nil
}
func (r *recorder) SnapshotVolume(context.Context, string, string, map[string]string) (provisioner.VolumeSnapshot, error) {
	r.last = "SnapshotVolume"
	return provisioner.VolumeSnapshot{}, nil
}
func (r *recorder) VolumeSnapshot(context.Context, string) (provisioner.VolumeSnapshot, error) {
	r.last = "VolumeSnapshot"
	return provisioner.VolumeSnapshot{}, nil
}
func (r *recorder) VolumeSnapshotsWith(context.Context, map[string]string) ([]provisioner.VolumeSnapshot, error) {
	r.last = "VolumeSnapshotsWith"
	return nil, nil
}
func (r *recorder) DeleteVolumeSnapshot(context.Context, string) error {
	r.last = "DeleteVolumeSnapshot"
	return nil
}
func (r *recorder) AttachVolume(context.Context, string, string) error {
	r.last = "AttachVolume"
	return nil
}
func (r *recorder) DetachVolume(context.Context, string, string) error {
	r.last = "DetachVolume"
	return nil
}
func (r *recorder) StopServer(context.Context, string) error  { r.last = "StopServer"; return nil }
func (r *recorder) StartServer(context.Context, string) error { r.last = "StartServer"; return nil }
func (r *recorder) RebuildServer(context.Context, string, string, map[string]string) error {
	r.last = "RebuildServer"
	return nil
}
