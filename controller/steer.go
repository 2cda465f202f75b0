package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// The operator's steering, recorded where every Phoenix reads it: a hold
// on every server of the group (and on every server created while it
// holds), a protection on the one server it protects.

// Hold records on every server of the group that no voluntary replacement
// may start, by whom and why. It returns how many servers carry it. A
// group with no server that can take the record cannot be held this way:
// `hold: true` in the configuration can.
func Hold(ctx context.Context, cloud provisioner.Cloud, g config.Group, by, reason string, now time.Time) (int, error) {
	servers, err := cloud.Complete().Servers.ListServers(ctx, GroupTag(g.Name))
	if err != nil {
		return 0, fmt.Errorf("group %s: list servers to hold: %w", g.Name, err)
	}
	n, err := setOnGroup(ctx, cloud, servers, holdMetadata(hold{at: now, by: by, reason: reason}), "hold")
	if err == nil && n == 0 {
		err = fmt.Errorf("group %s has no server that can record a hold now; set hold: true in the group's configuration instead", g.Name)
	}
	return n, err
}

// Release clears a hold from every server of the group. A server created
// while the release ran may carry the hold from its create: the servers
// are listed again until none does.
func Release(ctx context.Context, cloud provisioner.Cloud, g config.Group) (int, error) {
	cloud = cloud.Complete()
	released := 0
	for range 3 {
		servers, err := cloud.Servers.ListServers(ctx, GroupTag(g.Name))
		if err != nil {
			return released, fmt.Errorf("group %s: list servers to release: %w", g.Name, err)
		}
		var held []provisioner.Server
		for _, s := range servers {
			if _, ok := parseHold(s.Metadata); ok && !s.Gone() {
				held = append(held, s)
			}
		}
		if len(held) == 0 {
			return released, nil
		}
		n, err := setOnGroup(ctx, cloud, held, holdMetadata(hold{}), "release")
		released += n
		if err != nil {
			return released, err
		}
	}
	return released, fmt.Errorf("group %s: servers still carry the hold after three releases; run release again", g.Name)
}

// setOnGroup writes md on every server that takes metadata now; a server
// that refuses fails the whole (the record must be everywhere to hold).
func setOnGroup(ctx context.Context, cloud provisioner.Cloud, servers []provisioner.Server, md map[string]string, what string) (int, error) {
	var (
		mu sync.Mutex
		n  int
	)
	err := parallel(servers, 8, func(s provisioner.Server) error {
		if s.Gone() || !acceptsMetadata(s.Status, s.TaskState) {
			return nil
		}
		if err := cloud.Complete().Servers.SetServerMetadata(ctx, s.ID, md); err != nil {
			return fmt.Errorf("%s on server %s (%s): %w", what, s.Name, s.ID, err)
		}
		mu.Lock()
		n++
		mu.Unlock()
		return nil
	})
	return n, err
}

// ErrNotInGroup says a server named is in none of the groups.
var ErrNotInGroup = errors.New("server is in no group of the configuration")

// FindServer returns the server with id and the group it is in, of
// groups.
func FindServer(ctx context.Context, cloud provisioner.Cloud, groups []config.Group, id string) (provisioner.Server, config.Group, error) {
	cloud = cloud.Complete()
	for _, g := range groups {
		servers, err := cloud.Servers.ListServers(ctx, GroupTag(g.Name))
		if err != nil {
			return provisioner.Server{}, config.Group{}, fmt.Errorf("group %s: list servers: %w", g.Name, err)
		}
		for _, s := range servers {
			if s.ID == id && !s.Gone() {
				return s, g, nil
			}
		}
	}
	return provisioner.Server{}, config.Group{}, fmt.Errorf("server %s: %w", id, ErrNotInGroup)
}

// Protect records on a server that Phoenix never replaces or removes it
// unless it is compromised (on false, lifts that).
func Protect(ctx context.Context, cloud provisioner.Cloud, s provisioner.Server, reason string, on bool) error {
	md := map[string]string{MetaProtected: "", MetaProtectReason: ""}
	if on {
		md = map[string]string{MetaProtected: "true", MetaProtectReason: truncate(reason, maxValue)}
	}
	if err := cloud.Complete().Servers.SetServerMetadata(ctx, s.ID, md); err != nil {
		return fmt.Errorf("server %s (%s): %w", s.Name, s.ID, err)
	}
	return nil
}
