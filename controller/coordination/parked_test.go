package coordination

import (
	"context"
	"testing"

	"github.com/phoenix-ops/phoenix/controller/coordination/etcdtest"
)

// A rebuild parked by one replica is found by another, one that never
// saw the event (the group's next owner), until it is unparked; parking
// the same key twice keeps one.
func TestParkedRebuildsOutliveTheReplicaThatParked(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	h := newHolders(t)
	a, stopA := start(t, "a", etcd.Endpoints(), groups(2), h)
	b, _ := start(t, "b", etcd.Endpoints(), groups(2), h)
	ctx := context.Background()
	for range 2 {
		if err := a.Park(ctx, "g0", "k1", []byte(`{"Reason":"urgent"}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Park(ctx, "g1", "k2", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	kill(a, stopA)
	got, err := b.Parked(ctx, "g0")
	if err != nil || len(got) != 1 || string(got["k1"]) != `{"Reason":"urgent"}` {
		t.Fatalf("parked for g0: %q, %v; want k1 alone", got, err)
	}
	if err := b.Unpark(ctx, "g0", "k1"); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Parked(ctx, "g0"); err != nil || len(got) != 0 {
		t.Errorf("parked for g0 after unpark: %q, %v", got, err)
	}
	if got, err := b.Parked(ctx, "g1"); err != nil || len(got) != 1 {
		t.Errorf("parked for g1: %q, %v; want k2 still there", got, err)
	}
}
