package coordination

import (
	"context"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ParkTTL is how long a parked rebuild waits in etcd for the group's next
// owner: an event's rebuild is long moot after it.
const ParkTTL = time.Hour

func (r *Replica) parkedPrefix(group string) string {
	return r.opts.Prefix + "parked/" + group + "/"
}

// Park keeps value, a rebuild an event asked of a group this replica does
// not own, under key in etcd, where whichever replica owns the group next
// finds it: the owner may have died before the event reached it, and come
// back, or another may take the group, without ever seeing the event.
func (r *Replica) Park(ctx context.Context, group, key string, value []byte) error {
	lease, err := r.cli.Grant(ctx, int64(ParkTTL/time.Second))
	if err != nil {
		return fmt.Errorf("park a rebuild of group %s in etcd: %w", group, err)
	}
	if _, err := r.cli.Put(ctx, r.parkedPrefix(group)+key, string(value), clientv3.WithLease(lease.ID)); err != nil {
		return fmt.Errorf("park a rebuild of group %s in etcd: %w", group, err)
	}
	return nil
}

// Parked are the rebuilds parked for group, by key.
func (r *Replica) Parked(ctx context.Context, group string) (map[string][]byte, error) {
	resp, err := r.cli.Get(ctx, r.parkedPrefix(group), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read the rebuilds parked for group %s in etcd: %w", group, err)
	}
	out := map[string][]byte{}
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), r.parkedPrefix(group))] = kv.Value
	}
	return out, nil
}

// Unpark removes a parked rebuild once its marks are on the servers.
func (r *Replica) Unpark(ctx context.Context, group, key string) error {
	if _, err := r.cli.Delete(ctx, r.parkedPrefix(group)+key); err != nil {
		return fmt.Errorf("remove a rebuild parked for group %s from etcd: %w", group, err)
	}
	return nil
}
