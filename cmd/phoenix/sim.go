package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

type simFlags struct {
	listen    string
	cloudsOut string
	cloud     string
	image     string
	bootTime  time.Duration
	seed      int64
	quota     int
	appPort   int
	regions   []string
}

func newSimCommand(g *cli.Globals) *cobra.Command {
	f := &simFlags{}
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run the OpenStack API simulator standalone",
		Long: `sim serves simulated Keystone v3, Nova v2.1, Glance v2, Neutron and Octavia
APIs on
loopback until interrupted, and writes a clouds.yaml for them. Point phoenix
(or the openstack CLI) at it with OS_CLIENT_CONFIG_FILE and the cloud name.
Each simulated server answers health checks on its own 127.x.y.z address,
at the port sim prints: 8080 unless another program holds it. With --regions
one Keystone serves further regions, each a separate cloud seeded alike;
clouds.yaml names RegionOne, and OS_REGION_NAME chooses another.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSim(cmd.Context(), cmd.OutOrStdout(), f)
		},
	}
	cmd.Flags().StringVar(&f.listen, "listen", "127.0.0.1:0", "API listen address")
	cmd.Flags().StringVar(&f.cloudsOut, "clouds-out", "clouds.yaml", "where to write the clouds.yaml (mode 0600)")
	cmd.Flags().StringVar(&f.cloud, "cloud", demoCloud, "name of the cloud entry in clouds.yaml")
	cmd.Flags().StringVar(&f.image, "image", "demo-gold", "name of an image to publish at start (empty: none)")
	cmd.Flags().DurationVar(&f.bootTime, "boot-time", time.Second, "median server boot time")
	cmd.Flags().Int64Var(&f.seed, "seed", 1, "seed of boot times")
	cmd.Flags().IntVar(&f.quota, "quota-instances", -1, "instance quota of the project (-1: unlimited)")
	cmd.Flags().IntVar(&f.appPort, "health-port", 0, "port the servers' applications answer on (0: 8080 when it is free, else a free one)")
	cmd.Flags().StringSliceVar(&f.regions, "regions", nil, "further regions beside RegionOne, each a cloud of its own behind the one Keystone (e.g. RegionTwo,RegionThree)")
	return cmd
}

func runSim(ctx context.Context, out io.Writer, f *simFlags) error {
	opts := sim.Options{Addr: f.listen, Seed: f.seed, BootTime: sim.LogNormal(f.bootTime, 4*f.bootTime), Regions: f.regions}
	if f.appPort != 0 {
		opts.HealthPorts = []int{f.appPort}
	}
	s, err := sim.New(opts)
	if err != nil {
		return cli.UsageError(fmt.Errorf("start the simulator: %w", err))
	}
	defer s.Close()
	// Every region is seeded alike, so one configuration works in each.
	for _, name := range s.Regions() {
		r, in := s.Region(name), ""
		if len(opts.Regions) > 0 {
			in = " in " + name
		}
		r.SetQuota(sim.Quota{Instances: f.quota})
		if f.image != "" {
			img := r.AddImage(sim.Image{Name: f.image, Properties: map[string]string{"os_distro": "ubuntu"}})
			fmt.Fprintf(out, "published image %s (%s)%s\n", img.Name, img.ID, in)
		}
		lb, err := addDemoLoadBalancer(r)
		if err != nil {
			return fmt.Errorf("region %s: %w", name, err)
		}
		fmt.Fprintf(out, "load balancer %s, pool %s%s: requests to %s go to the pool's members\n", demoLB, demoPool, in, lb.URL)
	}
	if err := s.WriteCloudsYAML(f.cloudsOut, f.cloud); err != nil {
		return cli.UsageError(err)
	}
	abs, _ := filepath.Abs(f.cloudsOut)
	fmt.Fprintf(out, "OpenStack simulator listening at %s (identity %s)\n", s.Endpoint(), s.AuthURL())
	for _, name := range opts.Regions {
		fmt.Fprintf(out, "region %s at %s: choose it with OS_REGION_NAME=%s\n", name, s.Region(name).Endpoint(), name)
	}
	fmt.Fprintf(out, "clouds.yaml written to %s; use it with:\n  export OS_CLIENT_CONFIG_FILE=%s OS_CLOUD=%s\n", abs, abs, f.cloud)
	fmt.Fprintf(out, "servers' applications answer on port %d of their addresses: use it for health checks and protocol_port\n", s.HealthPort())
	fmt.Fprintln(out, "Interrupt (Ctrl-C) to stop.")
	<-ctx.Done()
	return nil
}
