package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// The replicas' own invariant: no two replicas act on one group at once.
// Judged at the end of a seed from two records that need no clock in
// common: etcd's history of each group's key (its terms: who held it, in
// etcd's order) and the simulator's log of the requests that change the
// cloud, each naming its replica in its User-Agent (creates by the
// server's CreatedBy), put to a group by the server, pool or floating IP
// it names. In arrival order, a group's changes must follow its terms:
// once another replica acted on the group in a later term, a replica
// whose term ended does not act on it again.
//
// What fencing allows is not a violation. A step that passed its check
// in its term may reach the cloud after the term ended (the fence keeps
// its start inside the lease, not its end): a request sent again by the
// HTTP client (the same method and path, after an attempt that failed or
// was not answered) and one arriving within termSlack of the end of its
// replica's last term (as the harness's watch saw it, later than etcd
// did) are let pass. Nor are the harness's own CLIs judged: they name no
// replica.

// termSlack is how late after its replica's term a change may arrive: a
// step that passed its check in time, and a busy machine between the
// check and the request.
const termSlack = slowdown * time.Second

// retrySpan is how long the HTTP client may send a request again: five
// attempts of the daemon's --request-timeout 2s, waits between them.
const retrySpan = 15 * time.Second

// term is one hold of a group's key, from its create to its delete as
// the harness's watch saw them (end zero while it lasts).
type term struct {
	owner      string
	start, end time.Time
}

// termLog records the terms of every group's key.
type termLog struct {
	cli    *clientv3.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	terms map[string][]term
	// err is why the watch ended before it was stopped.
	err error
}

// watchTerms watches the groups' keys from etcd's first revision: no
// term is missed, whenever the watch starts or reconnects.
func watchTerms(cli *clientv3.Client) *termLog {
	ctx, cancel := context.WithCancel(context.Background())
	l := &termLog{cli: cli, cancel: cancel, done: make(chan struct{}), terms: map[string][]term{}}
	prefix := etcdPrefix + "groups/"
	wc := cli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(1))
	go func() {
		defer close(l.done)
		for resp := range wc {
			now := time.Now()
			l.mu.Lock()
			if err := resp.Err(); err != nil && ctx.Err() == nil {
				l.err = fmt.Errorf("the harness's watch of the groups' keys: %w", err)
			}
			for _, ev := range resp.Events {
				g := strings.TrimPrefix(string(ev.Kv.Key), prefix)
				ts := l.terms[g]
				open := len(ts) > 0 && ts[len(ts)-1].end.IsZero()
				switch {
				case ev.Type == clientv3.EventTypeDelete && open:
					ts[len(ts)-1].end = now
				case ev.Type == clientv3.EventTypePut && !open:
					ts = append(ts, term{owner: string(ev.Kv.Value), start: now})
				}
				l.terms[g] = ts
			}
			l.mu.Unlock()
		}
		if ctx.Err() == nil {
			l.mu.Lock()
			l.err = cmp.Or(l.err, errors.New("the harness's watch of the groups' keys ended"))
			l.mu.Unlock()
		}
	}()
	return l
}

// stop ends the watch and returns the terms, or why they are not all
// known.
func (l *termLog) stop() (map[string][]term, error) {
	l.cancel()
	<-l.done
	_ = l.cli.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.terms, l.err
}

// groupChange is one request of a replica that changed (or tried to
// change) a group in the cloud.
type groupChange struct {
	at      time.Time
	replica string
	what    string
	// status is what the cloud answered (0: nothing, yet or ever).
	status int
}

// replicaOf is the replica a User-Agent names, "" for none.
func replicaOf(userAgent string) string {
	for _, f := range strings.Fields(userAgent) {
		if id, ok := strings.CutPrefix(f, "phoenix-replica/"); ok {
			return id
		}
	}
	return ""
}

var (
	serverInPath = regexp.MustCompile(`/servers/([0-9a-f-]{36})`)
	poolInPath   = regexp.MustCompile(`/pools/([^/]+)/members`)
	fipInPath    = regexp.MustCompile(`/floatingips/([^/]+)$`)
)

// knownServer is a server as the monitor first saw it.
type knownServer struct {
	group, name, createdBy string
	created                time.Time
}

// changesByGroup puts the replicas' changing requests to their groups:
// by the server a compute path names, the pool of a member change, the
// floating IP moved; and every server's create to its replica.
func changesByGroup(requests []sim.Request, known map[string]knownServer, pools, fipIDs map[string]string) map[string][]groupChange {
	byPool, byFIP := map[string]string{}, map[string]string{}
	for g, p := range pools {
		byPool[p] = g
	}
	for g, f := range fipIDs {
		byFIP[f] = g
	}
	out := map[string][]groupChange{}
	for _, r := range requests {
		id := replicaOf(r.UserAgent)
		if id == "" || r.Method == http.MethodGet || r.Method == http.MethodHead || r.Service == "identity" {
			continue
		}
		var g string
		switch m := (map[string][]string{
			"compute":       serverInPath.FindStringSubmatch(r.Path),
			"load-balancer": poolInPath.FindStringSubmatch(r.Path),
			"network":       fipInPath.FindStringSubmatch(r.Path),
		})[r.Service]; {
		case m == nil:
			continue
		case r.Service == "compute":
			g = known[m[1]].group
		case r.Service == "load-balancer":
			g = byPool[m[1]]
		default:
			g = byFIP[m[1]]
		}
		if g != "" {
			out[g] = append(out[g], groupChange{at: r.Time, replica: id, what: r.Method + " " + r.Path, status: r.Status})
		}
	}
	for _, s := range known {
		if id := replicaOf(s.createdBy); id != "" && s.group != "" {
			out[s.group] = append(out[s.group], groupChange{at: s.created, replica: id, what: "create server " + s.name, status: http.StatusAccepted})
		}
	}
	for g := range out {
		slices.SortStableFunc(out[g], func(a, b groupChange) int { return a.at.Compare(b.at) })
	}
	return out
}

// judgeTerms says how a group's changes, in arrival order, broke its
// terms ("" when they did not): a change by a replica that never held
// the group, or by one whose term ended after another replica acted in a
// later term — unless fencing allows it (see above).
func judgeTerms(terms []term, changes []groupChange) string {
	cur := -1 // the term the changes have reached
	var last *groupChange
	for i := range changes {
		c := &changes[i]
		if cur >= 0 && terms[cur].owner == c.replica {
			last = c
			continue
		}
		next := slices.IndexFunc(terms[cur+1:], func(t term) bool { return t.owner == c.replica })
		if next >= 0 {
			cur += 1 + next
			last = c
			continue
		}
		mine := -1
		for j := range cur + 1 {
			if terms[j].owner == c.replica {
				mine = j
			}
		}
		if mine < 0 {
			return fmt.Sprintf("replica %s sent %s at %s without ever holding the group", c.replica, c.what, c.at.Format(time.RFC3339Nano))
		}
		end := terms[mine].end
		if end.IsZero() && mine+1 < len(terms) {
			end = terms[mine+1].start
		}
		if !end.IsZero() && c.at.Before(end.Add(termSlack)) || resent(changes[:i], c) {
			continue
		}
		return fmt.Sprintf("replica %s sent %s at %s, %s after its term ended, while replica %s held the group and had acted on it (%s at %s)",
			c.replica, c.what, c.at.Format(time.RFC3339Nano), c.at.Sub(end).Round(time.Millisecond), terms[cur].owner, last.what, last.at.Format(time.RFC3339Nano))
	}
	return ""
}

// resent says whether c may be the HTTP client's resend of an earlier
// attempt by its replica that failed or was not answered.
func resent(earlier []groupChange, c *groupChange) bool {
	for _, p := range earlier {
		failed := p.status == 0 || p.status == http.StatusTooManyRequests || p.status >= 500
		if p.replica == c.replica && p.what == c.what && failed && c.at.Sub(p.at) <= retrySpan {
			return true
		}
	}
	return false
}

// judgeReplicas judges every group's changes against its terms.
func judgeReplicas(terms map[string][]term, changes map[string][]groupChange) []string {
	var out []string
	for _, g := range slices.Sorted(maps.Keys(changes)) {
		if why := judgeTerms(terms[g], changes[g]); why != "" {
			out = append(out, fmt.Sprintf("replicas: group %s: %s", g, why))
		}
	}
	return out
}

// describeTerms says who held each group's key in turn, for a verbose
// seed.
func describeTerms(terms map[string][]term) string {
	var parts []string
	for _, g := range slices.Sorted(maps.Keys(terms)) {
		var owners []string
		for _, t := range terms[g] {
			owners = append(owners, t.owner)
		}
		parts = append(parts, fmt.Sprintf("%s held by %s", g, strings.Join(owners, ", then ")))
	}
	return "etcd terms: " + strings.Join(parts, "; ")
}
