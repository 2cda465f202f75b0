package controller_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// A configuration this version accepts but cannot carry out stops its
// group before any server is touched, saying what it cannot do.
func TestNotYetSupportedTouchesNothing(t *testing.T) {
	for _, extra := range []string{
		"    stateful: {volumes: {name: data-*}}\n",
		"    backup: {volumes: snapshot}\n",
	} {
		env := simtest.Start(t, fastSim(1300), 0)
		env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
		yaml := strings.Replace(groupYAML("db", 2, "{max_surge: 1, max_unavailable: 1}"), "groups:\n", "groups:\n", 1) + extra
		cfg, err := config.Parse("p.yaml", []byte(yaml), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res := controller.Rebuild(ctx, env.Cloud, cfg.Groups, nil, logger(t), fastOptions())
		cancel()
		if res[0].Converged || !errors.Is(res[0].Err, controller.ErrStuck) || !strings.Contains(res[0].Err.Error(), "does not do yet") {
			t.Errorf("%s: result %+v, want stuck with what is not supported", strings.TrimSpace(extra), res[0])
		}
		if creates(env.Sim) != 0 || len(env.Sim.Servers()) != 0 {
			t.Errorf("%s: servers were created", strings.TrimSpace(extra))
		}
	}
}
