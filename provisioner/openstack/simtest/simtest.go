// Package simtest starts the OpenStack API simulator and connects the real
// gophercloud provisioner to it over HTTP, for tests of every package that
// needs a cloud. Nothing outside tests imports it.
package simtest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/phoenix-ops/phoenix/provisioner/openstack"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// CloudName is the clouds.yaml entry Start writes.
const CloudName = "phoenix-sim"

// FastRetry keeps retries short so tests of failure paths stay quick; the
// rules (what is retried) are the production ones.
var FastRetry = openstack.RetryPolicy{
	RequestTimeout: 3 * time.Second,
	MaxRetries:     4,
	WaitMin:        20 * time.Millisecond,
	WaitMax:        200 * time.Millisecond,
	MaxRetryAfter:  5 * time.Second,
}

// FastLBWait polls a busy simulated load balancer often: its changes take
// milliseconds, not Octavia's seconds.
var FastLBWait = openstack.LBWait{First: 5 * time.Millisecond, Max: 50 * time.Millisecond, Timeout: 20 * time.Second}

// Env is a running simulator and a provisioner connected to it.
type Env struct {
	Sim        *sim.Sim
	Cloud      *openstack.Cloud
	CloudsFile string
}

// Start runs a simulator for the test's lifetime and connects to it with
// clouds.yaml auth, as an operator would. PageSize 0 keeps the cloud's
// default page size; tweak adjusts the provisioner's options.
func Start(t testing.TB, opts sim.Options, pageSize int, tweak ...func(*openstack.Options)) *Env {
	t.Helper()
	s, err := sim.New(opts)
	if err != nil {
		t.Fatalf("start simulator: %v", err)
	}
	t.Cleanup(s.Close)
	clouds := filepath.Join(t.TempDir(), "clouds.yaml")
	if err := s.WriteCloudsYAML(clouds, CloudName); err != nil {
		t.Fatalf("write clouds.yaml: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o := openstack.Options{
		Cloud:      CloudName,
		CloudsFile: clouds,
		Retry:      FastRetry,
		PageSize:   pageSize,
		LBWait:     FastLBWait,
		Logger:     zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)),
	}
	for _, f := range tweak {
		f(&o)
	}
	c, err := openstack.New(ctx, o)
	if err != nil {
		t.Fatalf("connect to simulator: %v", err)
	}
	return &Env{Sim: s, Cloud: c, CloudsFile: clouds}
}
