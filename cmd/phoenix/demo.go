package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/examples"
	"github.com/phoenix-ops/phoenix/provisioner/openstack"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

type demoFlags struct {
	seed    int64
	timeout time.Duration
}

func newDemoCommand(g *globalFlags) *cobra.Command {
	f := &demoFlags{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Rebuild a small fleet on the built-in OpenStack simulator after a security patch",
		Long: `demo starts the OpenStack API simulator in this process, builds a fleet of
three groups of four servers on a baseline image, publishes a patched image,
and rebuilds every server with live progress — the same code path, over real
HTTP through gophercloud, that Phoenix uses against a real cloud.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), g, f)
		},
	}
	cmd.Flags().Int64Var(&f.seed, "seed", 1, "seed of the simulator's boot times")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 2*time.Minute, "give up after this long")
	return cmd
}

const demoCloud = "phoenix-sim"

func runDemo(ctx context.Context, out io.Writer, g *globalFlags, f *demoFlags) error {
	if err := checkOutput(g.output); err != nil {
		return err
	}
	log, err := newLogger(g.logLevel)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	text := g.output == "text"
	say := func(format string, args ...any) {
		if text {
			fmt.Fprintf(out, format, args...)
		}
	}

	s, err := sim.New(sim.Options{
		Seed:        f.seed,
		BootTime:    sim.LogNormal(700*time.Millisecond, 3*time.Second),
		HealthDelay: sim.Fixed(200 * time.Millisecond),
		DeleteTime:  sim.Fixed(300 * time.Millisecond),
	})
	if err != nil {
		return fmt.Errorf("start the simulator: %w", err)
	}
	defer s.Close()
	dir, err := os.MkdirTemp("", "phoenix-demo-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	cloudsFile := filepath.Join(dir, "clouds.yaml")
	if err := s.WriteCloudsYAML(cloudsFile, demoCloud); err != nil {
		return err
	}
	cfg, err := config.Parse("examples/demo.yaml", examples.Demo, dir)
	if err != nil {
		return fmt.Errorf("the embedded demo configuration: %w", err)
	}

	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	baseline := s.AddImage(sim.Image{Name: "demo-gold", Created: time.Now().Add(-30 * 24 * time.Hour),
		Properties: map[string]string{"os_distro": "ubuntu", "version": "2026.10"}})
	say("OpenStack simulator (Keystone, Nova, Glance, Neutron) at %s\n", s.Endpoint())
	cloud, err := openstack.New(ctx, openstack.Options{Cloud: demoCloud, CloudsFile: cloudsFile, Logger: log, Retry: openstack.RetryPolicy{
		RequestTimeout: 10 * time.Second, MaxRetries: 4, WaitMin: 50 * time.Millisecond, WaitMax: time.Second, MaxRetryAfter: 10 * time.Second,
	}})
	if err != nil {
		return err
	}

	var total int
	for _, gr := range cfg.Groups {
		total += gr.Count
	}
	say("Building the initial fleet: %d groups, %d servers, on image demo-gold %s (%s)…\n", len(cfg.Groups), total, baseline.Properties["version"], short(baseline.ID))
	initial := controller.Rebuild(ctx, cloud, cfg.Groups, nil, log, controller.Options{PollInterval: 200 * time.Millisecond})
	for _, r := range initial {
		if !r.Converged {
			return &exitError{code: exitNotDone, err: fmt.Errorf("building the initial fleet: group %s: %w", r.Group, r.Err)}
		}
	}

	patched := s.AddImage(sim.Image{Name: "demo-gold", Properties: map[string]string{"os_distro": "ubuntu", "version": "2026.11-patched"}})
	say("\nSecurity patch published: image demo-gold %s (%s). Rebuilding every group:\n\n", patched.Properties["version"], short(patched.ID))

	mon := s.Monitor(10*time.Millisecond, groupOfServer)
	started := time.Now()
	opts := controller.Options{RolloutID: uuid.NewString(), PollInterval: 200 * time.Millisecond}
	results := rebuild(ctx, out, g.output, cloud, cfg.Groups, log, opts, 0)
	extremes := mon.Stop()
	if err := exitFor(results, opts.RolloutID, f.timeout); err != nil {
		return err
	}
	if err := checkDemo(s, cfg.Groups, patched.ID); err != nil {
		return &exitError{code: exitNotDone, err: err}
	}
	say("\n%s", capacityReport(cfg.Groups, extremes))
	say("\nEvery server now runs the patched image; %d servers replaced in %s.\n", countPairs(results), time.Since(started).Round(100*time.Millisecond))
	log.Info("demo finished", zap.String("rollout", opts.RolloutID))
	return nil
}

func groupOfServer(s sim.Server) string {
	for _, t := range s.Tags {
		if name, ok := strings.CutPrefix(t, controller.GroupTag("")); ok {
			return name
		}
	}
	return ""
}

// checkDemo verifies the end state in the simulator itself, not in
// Phoenix's own view of it.
func checkDemo(s *sim.Sim, groups []config.Group, image string) error {
	counts := map[string]int{}
	var problems []string
	for _, srv := range s.Servers() {
		g := groupOfServer(srv)
		counts[g]++
		if srv.ImageID != image {
			problems = append(problems, fmt.Sprintf("server %s of group %q runs image %s", srv.Name, g, srv.ImageID))
		}
	}
	for _, gr := range groups {
		if counts[gr.Name] != gr.Count {
			problems = append(problems, fmt.Sprintf("group %s has %d servers, want %d", gr.Name, counts[gr.Name], gr.Count))
		}
	}
	if len(problems) > 0 {
		return errors.New("the demo fleet did not end as expected: " + strings.Join(problems, "; "))
	}
	return nil
}

func capacityReport(groups []config.Group, extremes map[string]sim.GroupExtremes) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tCOUNT\tFEWEST HEALTHY SEEN\tFLOOR (count-max_unavailable)\tMOST SERVERS SEEN\tCEILING (count+max_surge)")
	sorted := append([]config.Group(nil), groups...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, gr := range sorted {
		e := extremes[gr.Name]
		floor := gr.Count - gr.Rollout.MaxUnavailable.Resolve(gr.Count, false)
		ceiling := gr.Count + gr.Rollout.MaxSurge.Resolve(gr.Count, true)
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\n", gr.Name, gr.Count, e.MinHealthy, floor, e.MaxTotal, ceiling)
	}
	_ = tw.Flush()
	return b.String()
}

func countPairs(results []controller.GroupResult) int {
	n := 0
	for _, r := range results {
		n += len(r.Pairs)
	}
	return n
}
