package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/daemon"
	"github.com/phoenix-ops/phoenix/controller/trigger"
	"github.com/phoenix-ops/phoenix/healthcheck"
	"github.com/phoenix-ops/phoenix/provisioner"
	"github.com/phoenix-ops/phoenix/provisioner/openstack"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

type benchFlags struct {
	seed       int64
	groups     int
	perGroup   int
	steady     int
	reactions  int
	probeCount int
	only       []string
	poll       time.Duration
	probeEvery time.Duration
	riseEvery  time.Duration
	cpuProfile string
	// amqpURLFile holds the real cloud's RabbitMQ URL (--cloud).
	amqpURLFile string
	real        cloudBench
}

func newBenchCommand(g *cli.Globals) *cobra.Command {
	f := &benchFlags{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure Phoenix against the simulator: makespan vs its bound, steady-state cost, reaction, probing",
		Long: `bench runs four measurements against the in-process OpenStack simulator and
prints each figure with its ratio to the bound or goal it is judged by:

  makespan   1,000 servers in 10 groups, max_surge 10%, log-normal boot
             times (median 150ms, p99 3s): the time to replace them all,
             against the pipelined bound — the makespan of an ideal rollout
             that starts the next server the instant one passes, on the boot
             and health times the simulator drew — and against a batch
             strategy (start S, wait for all S) on the same durations.
  steady     10,000 servers in 100 groups, nothing drifted: API requests of
             one reconcile of every group against pages + selectors, CPU
             time, allocations, peak RSS.
  reaction   an accepted image.published event to the first server create,
             p50 and p99.
  probes     health probes per second sustained against 2,000 servers each
             offered a probe every 100ms, how many healthy servers were
             reported unhealthy, and the headroom over what they need at the
             default interval.

With --cloud, bench runs on that real cloud instead (clouds.yaml as for
every command): it publishes a tiny gold image, builds a group of
--cloud-servers, publishes a second image and times the rebuild against
the pipelined bound of the create→ACTIVE times the cloud showed. It
deletes its servers and images at the end. The defaults fit the
development cloud of examples/devcloud.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBench(cmd.Context(), cmd.OutOrStdout(), g, f)
		},
	}
	cmd.Flags().Int64Var(&f.seed, "seed", 1, "seed of the simulator's boot times")
	cmd.Flags().IntVar(&f.groups, "groups", 10, "makespan: groups")
	cmd.Flags().IntVar(&f.perGroup, "servers", 100, "makespan: servers per group")
	cmd.Flags().IntVar(&f.steady, "steady-servers", 10000, "steady: servers (in groups of 100)")
	cmd.Flags().IntVar(&f.reactions, "reactions", 30, "reaction: runs")
	cmd.Flags().IntVar(&f.probeCount, "probe-servers", 2000, "probes: servers")
	cmd.Flags().DurationVar(&f.poll, "poll", 10*time.Millisecond, "makespan: reconcile interval of a group in a rollout")
	cmd.Flags().DurationVar(&f.probeEvery, "probe-interval", 500*time.Millisecond, "makespan: health check interval")
	cmd.Flags().DurationVar(&f.riseEvery, "rise-interval", 10*time.Millisecond, "makespan: health check interval of a new server until it first passes")
	cmd.Flags().StringVar(&f.real.cloud, "cloud", "", "run on this cloud of clouds.yaml instead of the simulator")
	cmd.Flags().IntVar(&f.real.servers, "cloud-servers", 10, "--cloud: servers in the group")
	cmd.Flags().IntVar(&f.real.surge, "cloud-surge", 2, "--cloud: max_surge")
	cmd.Flags().StringVar(&f.real.flavor, "cloud-flavor", "m1.small", "--cloud: flavor")
	cmd.Flags().StringVar(&f.real.network, "cloud-network", "phoenix-net", "--cloud: network")
	cmd.Flags().IntVar(&f.real.healthPort, "cloud-health-port", 18080, "--cloud: port of the servers' HTTP health check (/healthz)")
	cmd.Flags().DurationVar(&f.real.poll, "cloud-poll", 2*time.Second, "--cloud: reconcile interval during the rollout (the daemon's default)")
	cmd.Flags().IntVar(&f.real.runs, "cloud-runs", 3, "--cloud: timed rollouts in each mode (with notifications, polling only)")
	cmd.Flags().StringVar(&f.amqpURLFile, "cloud-amqp-url-file", "", "--cloud: a file holding the cloud's RabbitMQ URL: rollouts alternate between listening to its notifications and polling only, and publishes are timed to the first create")
	cmd.Flags().IntVar(&f.real.publishes, "cloud-publishes", 20, "--cloud with --cloud-amqp-url-file: images published to time the first create after each")
	cmd.Flags().StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof reads it)")
	cmd.Flags().StringSliceVar(&f.only, "only", nil, "run only these: makespan, steady, reaction, probes")
	return cmd
}

func runBench(ctx context.Context, out io.Writer, g *cli.Globals, f *benchFlags) error {
	log, err := g.Logger()
	if err != nil {
		return err
	}
	want := func(name string) bool { return len(f.only) == 0 || slices.Contains(f.only, name) }
	fmt.Fprintf(out, "phoenix bench on %d CPUs (%s/%s), %s\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	if f.cpuProfile != "" {
		pf, err := os.Create(f.cpuProfile)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	if f.real.cloud != "" {
		cloud, err := connect(ctx, f.real.cloud, log)
		if err != nil {
			return err
		}
		if f.amqpURLFile != "" {
			if f.real.amqpURL, err = readURL(f.amqpURLFile); err != nil {
				return cli.UsageError(err)
			}
		}
		if err := benchRealCloud(ctx, out, cloud, f.real, log); err != nil {
			return &cli.ExitError{Code: cli.ExitNotDone, Err: fmt.Errorf("bench on %s: %w", f.real.cloud, err)}
		}
		fmt.Fprintf(out, "total %s\n", time.Since(start).Round(time.Second))
		return nil
	}
	steps := []struct {
		name string
		run  func(context.Context, io.Writer, *benchFlags, *zap.Logger) error
	}{
		{"makespan", benchMakespan}, {"steady", benchSteady}, {"reaction", benchReaction}, {"probes", benchProbes},
	}
	for _, s := range steps {
		if !want(s.name) {
			continue
		}
		if err := s.run(ctx, out, f, log); err != nil {
			return &cli.ExitError{Code: cli.ExitNotDone, Err: fmt.Errorf("bench %s: %w", s.name, err)}
		}
	}
	fmt.Fprintf(out, "total %s\n", time.Since(start).Round(time.Second))
	return nil
}

// benchCloud starts a simulator and connects the real provisioner to it.
func benchCloud(ctx context.Context, opts sim.Options, log *zap.Logger) (*sim.Sim, *openstack.Cloud, func(), error) {
	s, err := sim.New(opts)
	if err != nil {
		return nil, nil, nil, err
	}
	dir, err := os.MkdirTemp("", "phoenix-bench-")
	if err != nil {
		s.Close()
		return nil, nil, nil, err
	}
	cleanup := func() {
		s.Close()
		_ = os.RemoveAll(dir)
	}
	clouds := filepath.Join(dir, "clouds.yaml")
	if err := s.WriteCloudsYAML(clouds, simCloud); err != nil {
		cleanup()
		return nil, nil, nil, err
	}
	cloud, err := openstack.New(ctx, openstack.Options{Cloud: simCloud, CloudsFile: clouds, Logger: log,
		Retry:  openstack.RetryPolicy{RequestTimeout: 30 * time.Second, MaxRetries: 4, WaitMin: 20 * time.Millisecond, WaitMax: 200 * time.Millisecond, MaxRetryAfter: 5 * time.Second},
		LBWait: openstack.LBWait{First: 5 * time.Millisecond, Max: 50 * time.Millisecond, Timeout: 20 * time.Second}})
	if err != nil {
		cleanup()
		return nil, nil, nil, err
	}
	return s, cloud, cleanup, nil
}

func benchGroups(n, count int, rollout, health string) ([]config.Group, error) {
	var b strings.Builder
	b.WriteString("groups:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: g%03d\n    count: %d\n    image: {name: gold, newest: true}\n    flavor: m1.small\n    networks: [private]\n    rollout: %s\n%s",
			i, count, rollout, health)
	}
	cfg, err := config.Parse("bench.yaml", []byte(b.String()), ".")
	if err != nil {
		return nil, err
	}
	return cfg.Groups, nil
}

func converge(ctx context.Context, cloud provisioner.Cloud, groups []config.Group, log *zap.Logger, poll time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	opts := controller.Options{PollInterval: poll, Parallelism: 16, CreateBackoff: 100 * time.Millisecond}
	for _, r := range controller.Rebuild(ctx, cloud, groups, nil, log, opts) {
		if !r.Converged {
			return fmt.Errorf("group %s did not converge: %w", r.Group, r.Err)
		}
	}
	return nil
}

// listBound is the list-scheduling lower bound of running jobs on slots
// machines: no schedule beats the longest job, nor the total work spread
// evenly.
func listBound(jobs []time.Duration, slots int) time.Duration {
	var sum, longest time.Duration
	for _, d := range jobs {
		sum += d
		longest = max(longest, d)
	}
	return max(longest, sum/time.Duration(max(1, slots)))
}

// pipelinedBound is the makespan of an ideal pipelined rollout on the
// same durations: jobs start in creation order, each the moment one of
// slots frees, with no time lost between a server passing its check and
// the next create. No controller that creates in this order with this
// surge, and cannot know a boot time before it ends, does better.
func pipelinedBound(jobs []time.Duration, slots int) time.Duration {
	free := make([]time.Duration, max(1, slots)) // when each slot frees
	var end time.Duration
	for _, d := range jobs {
		i := slices.Index(free, slices.Min(free))
		free[i] += d
		end = max(end, free[i])
	}
	return end
}

// batchMakespan is the time a batch strategy needs: start slots jobs,
// wait for all of them, start the next slots.
func batchMakespan(jobs []time.Duration, slots int) time.Duration {
	var total time.Duration
	for i := 0; i < len(jobs); i += slots {
		total += slices.Max(jobs[i:min(len(jobs), i+slots)])
	}
	return total
}

func benchMakespan(ctx context.Context, out io.Writer, f *benchFlags, log *zap.Logger) error {
	s, cloud, cleanup, err := benchCloud(ctx, sim.Options{Seed: f.seed,
		BootTime:    sim.LogNormal(150*time.Millisecond, 3*time.Second),
		HealthDelay: sim.LogNormal(20*time.Millisecond, 60*time.Millisecond),
		DeleteTime:  sim.Fixed(5 * time.Millisecond)}, log)
	if err != nil {
		return err
	}
	defer cleanup()
	health := fmt.Sprintf("    health: {http: {port: %d, path: /healthz}, interval: %s, rise_interval: %s, timeout: %s, healthy_threshold: 1, grace: 1m}\n", s.HealthPort(), f.probeEvery, f.riseEvery, f.probeEvery)
	groups, err := benchGroups(f.groups, f.perGroup, "{max_surge: 10%, max_unavailable: 0}", health)
	if err != nil {
		return err
	}
	s.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	if err := converge(ctx, cloud.Services(), groups, log, f.poll); err != nil {
		return fmt.Errorf("initial fleet: %w", err)
	}
	patched := s.AddImage(sim.Image{Name: "gold"})
	s.ResetRequests()
	started, cpu0 := time.Now(), cpuTime()
	if err := converge(ctx, cloud.Services(), groups, log, f.poll); err != nil {
		return err
	}
	makespan, cpu := time.Since(started), cpuTime()-cpu0

	// The durations the simulator drew for the new servers, by group, in
	// creation order.
	var fresh []sim.Server
	for _, srv := range s.Servers() {
		if srv.ImageID == patched.ID {
			fresh = append(fresh, srv)
		}
	}
	slices.SortFunc(fresh, func(a, b sim.Server) int { return a.Created.Compare(b.Created) })
	byGroup := map[string][]time.Duration{}
	created, passed := map[string][]time.Time{}, map[string][]time.Time{}
	for _, srv := range fresh {
		g := groupOfServer(srv)
		byGroup[g] = append(byGroup[g], srv.BootTime+srv.HealthDelay)
		created[g] = append(created[g], srv.Created)
		passed[g] = append(passed[g], srv.Created.Add(srv.BootTime+srv.HealthDelay))
	}
	// The time lost per replacement: in a pipelined rollout the create
	// after the first slots follows the j-th server to pass at once.
	var lags []time.Duration
	for _, gr := range groups {
		slots := gr.Rollout.MaxSurge.Resolve(gr.Count, true)
		done := slices.SortedFunc(slices.Values(passed[gr.Name]), func(a, b time.Time) int { return a.Compare(b) })
		for j, c := range created[gr.Name] {
			if j >= slots && j-slots < len(done) {
				lags = append(lags, c.Sub(done[j-slots]))
			}
		}
	}
	slices.Sort(lags)
	var floor, bound, batch time.Duration
	for _, gr := range groups {
		slots := gr.Rollout.MaxSurge.Resolve(gr.Count, true)
		floor = max(floor, listBound(byGroup[gr.Name], slots))
		bound = max(bound, pipelinedBound(byGroup[gr.Name], slots))
		batch = max(batch, batchMakespan(byGroup[gr.Name], slots))
	}
	fmt.Fprintf(out, "makespan: %d servers in %d groups (surge 10%%): %s; pipelined bound %s; ratio %.3f (goal ≤ 1.10); "+
		"batch strategy %s; phoenix/batch %.3f (goal < 1); (longest job or work/slots: %s, ratio %.3f)\n",
		f.groups*f.perGroup, f.groups, makespan.Round(time.Millisecond), bound.Round(time.Millisecond),
		makespan.Seconds()/bound.Seconds(), batch.Round(time.Millisecond), makespan.Seconds()/batch.Seconds(),
		floor.Round(time.Millisecond), makespan.Seconds()/floor.Seconds())
	fmt.Fprintf(out, "makespan: %s CPU during the rollout (this process, simulator included): %.0f%% of one core\n", cpu.Round(time.Millisecond), 100*cpu.Seconds()/makespan.Seconds())
	if len(lags) > 0 {
		fmt.Fprintf(out, "makespan: from a server passing its check to the next create: p50 %s, p90 %s, p99 %s\n",
			lags[len(lags)/2].Round(100*time.Microsecond), lags[len(lags)*9/10].Round(100*time.Microsecond), lags[len(lags)*99/100].Round(100*time.Microsecond))
	}
	return nil
}

func benchSteady(ctx context.Context, out io.Writer, f *benchFlags, log *zap.Logger) error {
	s, cloud, cleanup, err := benchCloud(ctx, sim.Options{Seed: f.seed, BootTime: sim.Fixed(20 * time.Millisecond),
		HealthDelay: sim.Fixed(time.Millisecond), DeleteTime: sim.Fixed(time.Millisecond)}, log)
	if err != nil {
		return err
	}
	defer cleanup()
	n := max(1, f.steady/100)
	// No health check: what is measured is the cost to the cloud API and
	// to Phoenix of looking at a fleet at rest.
	groups, err := benchGroups(n, 100, "{max_surge: 100%}", "")
	if err != nil {
		return err
	}
	s.AddImage(sim.Image{Name: "gold"})
	if err := converge(ctx, cloud.Services(), groups, log, 50*time.Millisecond); err != nil {
		return fmt.Errorf("building %d servers: %w", n*100, err)
	}
	// One resolution of the one selector per round, shared by every
	// group, as the daemon's image watch does.
	var (
		mu       sync.Mutex
		resolved *provisioner.Image
	)
	resolve := func(ctx context.Context, sel provisioner.ImageSelector) (provisioner.Image, error) {
		mu.Lock()
		defer mu.Unlock()
		if resolved == nil {
			img, err := cloud.ResolveImage(ctx, sel)
			if err != nil {
				return img, err
			}
			resolved = &img
		}
		return *resolved, nil
	}
	recs := make([]*controller.GroupReconciler, len(groups))
	for i, gr := range groups {
		recs[i] = controller.NewGroupReconciler(gr, cloud.Services(), nil, log, controller.Options{ResolveImage: resolve})
		defer recs[i].Close()
	}
	round := func() error {
		mu.Lock()
		resolved = nil
		mu.Unlock()
		var wg sync.WaitGroup
		errs := make([]error, len(recs))
		sem := make(chan struct{}, 4)
		for i, r := range recs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				d, err := r.Reconcile(ctx)
				if err == nil && (!d.Status.Converged || len(d.Creates)+len(d.Deletes) > 0) {
					err = fmt.Errorf("group %d is not at rest", i)
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		return errorsJoin(errs)
	}
	if err := round(); err != nil { // warm up: connections, first decisions
		return err
	}
	const rounds = 5
	s.ResetRequests()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := cpuTime()
	t0 := time.Now()
	for range rounds {
		if err := round(); err != nil {
			return err
		}
	}
	wall := time.Since(t0) / rounds
	cpu := (cpuTime() - cpu0) / rounds
	runtime.ReadMemStats(&ms1)
	reqs := s.Requests()
	perRound := float64(len(reqs)) / rounds
	pages := n // 100 servers a group: one page each
	goal := float64(pages + 1)
	fmt.Fprintf(out, "steady: %d servers in %d groups at rest: %.0f requests per reconcile of all groups (goal ≤ %d pages + 1 selector = %.0f; ratio %.3f); %s wall, %s CPU (this process, simulator included), %d allocations, %.1f MB allocated per reconcile; peak RSS %d MB\n",
		n*100, n, perRound, pages, goal, perRound/goal, wall.Round(time.Millisecond), cpu.Round(time.Millisecond),
		(ms1.Mallocs-ms0.Mallocs)/rounds, float64(ms1.TotalAlloc-ms0.TotalAlloc)/rounds/1e6, peakRSS()/1024)
	return nil
}

func errorsJoin(errs []error) error {
	var msgs []string
	for _, e := range errs {
		if e != nil {
			msgs = append(msgs, e.Error())
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(msgs, "; "))
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSS is the process's peak resident set in KiB (Linux).
func peakRSS() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return int64(ru.Maxrss)
}

func benchReaction(ctx context.Context, out io.Writer, f *benchFlags, log *zap.Logger) error {
	s, cloud, cleanup, err := benchCloud(ctx, sim.Options{Seed: f.seed, BootTime: sim.Fixed(20 * time.Millisecond),
		HealthDelay: sim.Fixed(5 * time.Millisecond), DeleteTime: sim.Fixed(5 * time.Millisecond)}, log)
	if err != nil {
		return err
	}
	defer cleanup()
	s.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	cfg, err := config.Parse("bench.yaml", fmt.Appendf(nil, `controller: {interval: 1h}
groups:
  - name: web
    count: 2
    image: {name: gold, newest: true}
    flavor: m1.small
    networks: [private]
    health: {http: {port: %d, path: /healthz}, interval: 10ms, timeout: 10ms, healthy_threshold: 1, grace: 1m}
`, s.HealthPort()), ".")
	if err != nil {
		return err
	}
	d := daemon.New(cloud.Services(), cfg, daemon.Options{Log: log, PollInterval: 10 * time.Millisecond})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = d.Run(runCtx)
	}()
	defer func() {
		stop()
		<-done
	}()
	atRest := func() error {
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			st := d.Status()
			if len(st.Groups) == 1 && !st.Groups[0].InProgress {
				return nil
			}
			time.Sleep(5 * time.Millisecond) // polling the daemon between runs
		}
		return fmt.Errorf("the group did not converge")
	}
	var lat []time.Duration
	for i := range f.reactions {
		if err := atRest(); err != nil {
			return err
		}
		s.AddImage(sim.Image{Name: "gold"})
		s.ResetRequests()
		sent := time.Now()
		if err := d.Dispatch(ctx, trigger.Event{ID: fmt.Sprint("bench-", i), Type: trigger.TypeImagePublished}); err != nil {
			return err
		}
		first, err := firstCreate(s, sent)
		if err != nil {
			return err
		}
		lat = append(lat, first.Sub(sent))
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	fmt.Fprintf(out, "reaction: accepted image.published → first server create, %d runs: p50 %s, p99 %s (goal: well before the 1h interval; ratio p99/interval %.6f)\n",
		len(lat), q(0.5).Round(100*time.Microsecond), q(0.99).Round(100*time.Microsecond), q(0.99).Seconds()/3600)
	return nil
}

func firstCreate(s *sim.Sim, since time.Time) (time.Time, error) {
	for time.Since(since) < 30*time.Second {
		for _, r := range s.Requests() {
			if r.Service == "compute" && r.Method == "POST" && strings.HasSuffix(r.Path, "/servers") {
				return r.Time, nil
			}
		}
		time.Sleep(200 * time.Microsecond) // polling the request log
	}
	return time.Time{}, fmt.Errorf("no server create within 30s of the event")
}

func benchProbes(ctx context.Context, out io.Writer, f *benchFlags, log *zap.Logger) error {
	s, cloud, cleanup, err := benchCloud(ctx, sim.Options{Seed: f.seed, BootTime: sim.Fixed(10 * time.Millisecond),
		HealthDelay: sim.Fixed(time.Millisecond), DeleteTime: sim.Fixed(time.Millisecond)}, log)
	if err != nil {
		return err
	}
	defer cleanup()
	groups, err := benchGroups(max(1, f.probeCount/100), 100, "{max_surge: 100%}", "")
	if err != nil {
		return err
	}
	s.AddImage(sim.Image{Name: "gold"})
	if err := converge(ctx, cloud.Services(), groups, log, 50*time.Millisecond); err != nil {
		return err
	}
	var targets []healthcheck.Target
	for _, srv := range s.Servers() {
		targets = append(targets, healthcheck.Target{ID: srv.ID, Address: srv.Address,
			Prober: healthcheck.HTTPProbe{Port: s.HealthPort(), Path: "/healthz"},
			Policy: healthcheck.Policy{Interval: 100 * time.Millisecond, Timeout: config.DefaultHealthTimeout,
				HealthyThreshold: config.DefaultHealthyThreshold, UnhealthyThreshold: config.DefaultUnhealthyThreshold},
			Since: time.Now().Add(-time.Hour)})
	}
	c := healthcheck.NewChecker(log)
	defer c.Close()
	c.Watch(targets)
	time.Sleep(time.Second) // warm-up: let every target get its first probes
	st0 := c.Stats()
	const window = 5 * time.Second
	time.Sleep(window) // the measurement window
	st1 := c.Stats()
	unhealthy := 0
	for _, t := range targets {
		if o, ok := c.Observe(t.ID); ok && o.State == healthcheck.Unhealthy {
			unhealthy++
		}
	}
	rate := float64(st1.Probes-st0.Probes) / window.Seconds()
	offered := float64(len(targets)) / 0.1
	need := float64(len(targets)) / config.DefaultHealthInterval.Seconds()
	fmt.Fprintf(out, "probes: %d servers offered a probe every 100ms each (%.0f/s), timeout %s: %.0f probes/s sustained, %d failed probes, %d healthy servers reported unhealthy; "+
		"at the default %s interval they need %.0f/s: headroom %.1fx (goal ≥ 1)\n",
		len(targets), offered, config.DefaultHealthTimeout, rate, st1.Failures-st0.Failures, unhealthy,
		config.DefaultHealthInterval, need, rate/need)
	return nil
}
