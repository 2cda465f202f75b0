package main

import (
	"context"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/provisioner/openstack"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// The small pieces of phoenix's own wiring the harnesses need too: a
// package main cannot be imported, and these are a few lines each.

// simCloud is the clouds.yaml entry written for a simulator.
const simCloud = "phoenix-sim"

func connect(ctx context.Context, cloud string, log *zap.Logger) (*openstack.Cloud, error) {
	c, err := openstack.New(ctx, openstack.Options{Cloud: cloud, Logger: log})
	if err != nil {
		return nil, &cli.ExitError{Code: cli.ExitNotDone, Err: fmt.Errorf("connect to the cloud: %w", err)}
	}
	return c, nil
}

// groupOfServer is the group a simulated server's tag names ("" when it
// carries none).
func groupOfServer(s sim.Server) string {
	for _, t := range s.Tags {
		if name, ok := strings.CutPrefix(t, controller.GroupTag("")); ok {
			return name
		}
	}
	return ""
}
