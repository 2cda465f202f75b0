package provisioner_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/phoenix-ops/phoenix/provisioner"
)

// Every method of every service of a completed empty cloud fails, naming
// the service and wrapping ErrUnavailable; Missing says the same up front.
func TestCompleteFillsEveryServiceWithAnAbsentClient(t *testing.T) {
	cloud := reflect.ValueOf(provisioner.Cloud{}.Complete())
	for i := range cloud.NumField() {
		field := cloud.Type().Field(i)
		client := cloud.Field(i)
		if client.IsNil() {
			t.Errorf("%s is nil after Complete", field.Name)
			continue
		}
		if err := provisioner.Missing(client.Interface()); !errors.Is(err, provisioner.ErrUnavailable) {
			t.Errorf("Missing(%s) = %v, want ErrUnavailable", field.Name, err)
		}
		for _, err := range callEvery(t, field.Type, client) {
			if !errors.Is(err, provisioner.ErrUnavailable) || !strings.Contains(err.Error(), "is not available on this cloud") {
				t.Errorf("%s: %v, want ErrUnavailable", field.Name, err)
			}
		}
	}
}

func TestCompleteKeepsAPresentClient(t *testing.T) {
	c := provisioner.Cloud{Images: images{}}.Complete()
	if _, ok := c.Images.(images); !ok || provisioner.Missing(c.Images) != nil {
		t.Errorf("Complete replaced a present client: %T", c.Images)
	}
}

func TestAbsentNamesTheServiceAndWrapsTheCause(t *testing.T) {
	cause := errors.New("no load-balancer endpoint in the catalog")
	var lb provisioner.LoadBalancer = provisioner.Absent{Service: "Octavia (load balancer)", Err: cause}
	_, err := lb.ResolvePool(context.Background(), "", "web-pool")
	want := "Octavia (load balancer) is not available on this cloud: no load-balancer endpoint in the catalog"
	if err == nil || err.Error() != want || !errors.Is(err, cause) || !errors.Is(err, provisioner.ErrUnavailable) {
		t.Errorf("ResolvePool: %v, want %q wrapping both", err, want)
	}
	if m := provisioner.Missing(lb); m == nil || m.Error() != want {
		t.Errorf("Missing: %v, want %q", m, want)
	}
}

func TestMissingIsNilForAPresentClient(t *testing.T) {
	if err := provisioner.Missing(images{}); err != nil {
		t.Errorf("Missing(a present client) = %v", err)
	}
	if err := provisioner.Missing(nil); !errors.Is(err, provisioner.ErrUnavailable) {
		t.Errorf("Missing(nil) = %v, want ErrUnavailable", err)
	}
}

// Every method of every service of an Absent client fails with
// ErrUnavailable.
func TestAbsentFailsEveryMethod(t *testing.T) {
	a := reflect.ValueOf(provisioner.Absent{Service: "Nova (compute)"})
	for _, iface := range []any{(*provisioner.Servers)(nil), (*provisioner.Images)(nil), (*provisioner.LoadBalancer)(nil),
		(*provisioner.FloatingIPs)(nil), (*provisioner.Snapshots)(nil), (*provisioner.Volumes)(nil), (*provisioner.ServerActions)(nil)} {
		typ := reflect.TypeOf(iface).Elem()
		for _, err := range callEvery(t, typ, a) {
			if !errors.Is(err, provisioner.ErrUnavailable) || !strings.HasPrefix(err.Error(), "Nova (compute) is not available on this cloud") {
				t.Errorf("%s: %v, want ErrUnavailable", typ.Name(), err)
			}
		}
	}
}

type images struct{}

func (images) ResolveImage(context.Context, provisioner.ImageSelector) (provisioner.Image, error) {
	return provisioner.Image{ID: "i1"}, nil
}
func (images) TagImage(context.Context, string, string) error   { return nil }
func (images) UntagImage(context.Context, string, string) error { return nil }

// callEvery calls each method of the interface iface on client with zero
// arguments and returns the errors they gave.
func callEvery(t *testing.T, iface reflect.Type, client reflect.Value) []error {
	t.Helper()
	var errs []error
	for m := range iface.NumMethod() {
		method := iface.Method(m)
		fn := client.MethodByName(method.Name)
		args := make([]reflect.Value, fn.Type().NumIn())
		for i := range args {
			args[i] = reflect.Zero(fn.Type().In(i))
		}
		args[0] = reflect.ValueOf(context.Background())
		out := fn.Call(args)
		err, _ := out[len(out)-1].Interface().(error)
		if err == nil {
			t.Errorf("%s.%s succeeded", iface.Name(), method.Name)
			continue
		}
		errs = append(errs, err)
	}
	return errs
}
