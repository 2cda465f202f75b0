package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/daemon"
	"github.com/phoenix-ops/phoenix/controller/trigger"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// soakOptions shape a soak run.
type soakOptions struct {
	Rollouts int // rollouts after the initial build
	Groups   int
	Servers  int // per group
	Faults   bool
	Seed     int64
	// RolloutTimeout bounds one rollout's convergence.
	RolloutTimeout time.Duration
	Bounds         soakBounds
	Log            *zap.Logger
	// Sampled, when set, receives each sample as it is taken.
	Sampled func(soakSample)
}

// soakBounds are what the samples after the baseline are judged by.
//
// Goroutines: at rest between rollouts the process (daemon and simulator
// together) runs a fixed set — workers, the image watch, one health
// prober per server, the simulator's listeners per server — plus what is
// in flight at the instant of the sample: a probe, a keep-alive
// connection's reader and writer that have not been closed yet. That part
// moves by a few; GoroutineSlack 10 allows it. A leak of one goroutine
// per replaced server crosses it on the first or second rollout after the
// baseline; a leak of one per rollout crosses it after 10 rollouts, and
// the trend rule below catches it sooner.
//
// Heap (HeapAlloc after two GCs: live objects only): the live set at
// rest is the same servers, members and connections each time, plus the
// simulator's records of old images and deleted server IDs (under a
// hundred bytes each per rollout). Measured: about 1.5 MiB for the
// default fleet, moving by at most 0.2 MiB over 20 rollouts. HeapFactor
// 1.5 lets the part that scales with the live set (map buckets, pooled
// buffers) wobble; HeapSlackMiB 4 keeps a baseline that small from making
// the bound a few hundred KiB wide, where one more idle connection's
// buffers would fail it. A leak of 20 KiB per replaced server crosses it
// within 20 rollouts of 12 servers; the trend rule of judgeSoak catches
// 64 KiB per server within 8 rollouts of 9 (tried with a deliberate
// leak, as was a goroutine per server and one per rollout).
type soakBounds struct {
	GoroutineSlack int
	HeapFactor     float64
	HeapSlackMiB   float64
}

var defaultSoakBounds = soakBounds{GoroutineSlack: 10, HeapFactor: 1.5, HeapSlackMiB: 4}

// soakSample is the process after one rollout converged and two GCs.
type soakSample struct {
	Rollout      int     `json:"rollout"` // 0 is the initial build
	Seconds      float64 `json:"seconds"` // publish → every group converged
	Goroutines   int     `json:"goroutines"`
	HeapAllocMiB float64 `json:"heap_alloc_mib"`
	HeapInuseMiB float64 `json:"heap_inuse_mib"`
	// Faulted counts the requests an injected fault hit in the rollout.
	Faulted int `json:"faulted_requests"`
	// stacks counts goroutines by stack, kept for the baseline and the
	// last rollout only: what grew between them is what leaked.
	stacks map[string]int
}

// soakReport judges the samples of rollout 1 on against rollout 1's.
type soakReport struct {
	Baseline      soakSample `json:"baseline"`
	MaxGoroutines int        `json:"max_goroutines_over_baseline"`
	MaxHeapMiB    float64    `json:"max_heap_alloc_over_baseline_mib"`
	GoroutineMax  int        `json:"goroutine_bound"`
	HeapMaxMiB    float64    `json:"heap_alloc_bound_mib"`
	Pass          bool       `json:"pass"`
	Problems      []string   `json:"problems,omitempty"`
}

// judgeSoak holds the samples to the bounds. Rollout 1 is the baseline:
// by then every pool, connection and cache a rollout uses exists. Two
// rules: no sample above the bound, and — for a leak too slow to reach
// the bound in a short run — the goroutine count and the heap must each
// come back to within a quarter of their headroom above the baseline at
// least once in the last third of the run (a count that only climbs
// never does; one that wobbles does).
func judgeSoak(samples []soakSample, b soakBounds) soakReport {
	var r soakReport
	var after []soakSample
	for _, s := range samples {
		switch {
		case s.Rollout == 1:
			r.Baseline = s
		case s.Rollout > 1:
			after = append(after, s)
		}
	}
	if r.Baseline.Rollout != 1 {
		r.Problems = append(r.Problems, "no baseline: the first rollout did not complete")
		return r
	}
	r.GoroutineMax = r.Baseline.Goroutines + b.GoroutineSlack
	r.HeapMaxMiB = r.Baseline.HeapAllocMiB*b.HeapFactor + b.HeapSlackMiB
	for _, s := range after {
		r.MaxGoroutines = max(r.MaxGoroutines, s.Goroutines-r.Baseline.Goroutines)
		r.MaxHeapMiB = max(r.MaxHeapMiB, s.HeapAllocMiB-r.Baseline.HeapAllocMiB)
		if s.Goroutines > r.GoroutineMax {
			r.Problems = append(r.Problems, fmt.Sprintf("rollout %d: %d goroutines, bound %d", s.Rollout, s.Goroutines, r.GoroutineMax))
		}
		if s.HeapAllocMiB > r.HeapMaxMiB {
			r.Problems = append(r.Problems, fmt.Sprintf("rollout %d: heap %.1f MiB, bound %.1f MiB", s.Rollout, s.HeapAllocMiB, r.HeapMaxMiB))
		}
	}
	if len(after) >= 3 {
		// The trend: a slow leak raises the floor. The last third must
		// come back near the early level at least once — the median of
		// the baseline and the first third, so that one sample caught at
		// an idle moment (a keep-alive connection just closed) does not
		// set the level alone.
		first, tail := after[:len(after)/3], after[len(after)-len(after)/3:]
		early := append([]soakSample{r.Baseline}, first...)
		near := func(f func(soakSample) bool) bool { return slices.ContainsFunc(tail, f) }
		span := fmt.Sprintf("rollouts %d to %d", tail[0].Rollout, tail[len(tail)-1].Rollout)
		g := b.GoroutineSlack / 4
		level := median(early, func(s soakSample) float64 { return float64(s.Goroutines) })
		if !near(func(s soakSample) bool { return float64(s.Goroutines) <= level+float64(g) }) {
			r.Problems = append(r.Problems, fmt.Sprintf("goroutines never came back within %d of their early level %.0f in %s: a slow leak",
				g, level, span))
		}
		h := (r.HeapMaxMiB - r.Baseline.HeapAllocMiB) / 4
		heap := median(early, func(s soakSample) float64 { return s.HeapAllocMiB })
		if !near(func(s soakSample) bool { return s.HeapAllocMiB <= heap+h }) {
			r.Problems = append(r.Problems, fmt.Sprintf("heap never came back within %.1f MiB of its early level %.1f MiB in %s: a slow leak",
				h, heap, span))
		}
	}
	r.Pass = len(r.Problems) == 0
	return r
}

// median of f over samples.
func median(samples []soakSample, f func(soakSample) float64) float64 {
	v := make([]float64, len(samples))
	for i, s := range samples {
		v[i] = f(s)
	}
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

type soakFlags struct {
	opts   soakOptions
	faults string
}

func newSoakCommand(g *cli.Globals) *cobra.Command {
	f := &soakFlags{opts: soakOptions{Bounds: defaultSoakBounds}}
	cmd := &cobra.Command{
		Use:   "soak",
		Short: "Run the daemon against the simulator through many rollouts and check it leaks neither goroutines nor heap",
		Long: `soak runs the daemon and the OpenStack simulator in this process. It builds
--groups groups of --servers servers (every third behind an Octavia pool),
then publishes a new gold image per rollout, --rollouts times, with faults
injected in each (unless --faults off): 503 and 429 bursts on GETs, server
creates that happen but answer 500, a boot that fails, an Octavia update
refused, and one serving server's health check flapping.

After every group converged on the new image it collects garbage twice and
samples the goroutine count and the live heap. Rollout 1 is the baseline.
It exits 0 with PASS when every later sample is within the bounds
(goroutines ≤ baseline + 10; heap ≤ baseline × 1.5 + 4 MiB) and the
goroutine count came back near the baseline late in the run; otherwise it
prints FAIL and exits 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch f.faults {
			case "on":
				f.opts.Faults = true
			case "off":
				f.opts.Faults = false
			default:
				return cli.UsageError(fmt.Errorf("--faults must be on or off, not %q", f.faults))
			}
			return runSoak(cmd.Context(), cmd.OutOrStdout(), g, f)
		},
	}
	cmd.Flags().IntVar(&f.opts.Rollouts, "rollouts", 20, "rollouts after the initial build (at least 2: rollout 1 is the baseline)")
	cmd.Flags().IntVar(&f.opts.Groups, "groups", 3, "groups")
	cmd.Flags().IntVar(&f.opts.Servers, "servers", 4, "servers per group")
	cmd.Flags().StringVar(&f.faults, "faults", "on", "inject faults in every rollout: on or off")
	cmd.Flags().Int64Var(&f.opts.Seed, "seed", 1, "seed of the simulator and of the faults")
	cmd.Flags().DurationVar(&f.opts.RolloutTimeout, "rollout-timeout", time.Minute, "give up when one rollout takes longer")
	return cmd
}

func runSoak(ctx context.Context, out io.Writer, g *cli.Globals, f *soakFlags) error {
	if err := cli.CheckOutput(g.Output); err != nil {
		return err
	}
	o := f.opts
	if o.Rollouts < 2 || o.Groups < 1 || o.Servers < 1 {
		return cli.UsageError(errors.New("soak needs --rollouts ≥ 2, --groups ≥ 1 and --servers ≥ 1"))
	}
	log, err := g.Logger()
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	o.Log = log
	text := g.Output == "text"
	enc := json.NewEncoder(out)
	if text {
		faults := "off"
		if o.Faults {
			faults = "on"
		}
		fmt.Fprintf(out, "phoenix soak: %d groups of %d servers, %d rollouts, faults %s, on %d CPUs (%s)\n",
			o.Groups, o.Servers, o.Rollouts, faults, runtime.NumCPU(), runtime.Version())
		fmt.Fprintf(out, "%8s %8s %11s %10s %10s %8s\n", "ROLLOUT", "SECONDS", "GOROUTINES", "HEAP MiB", "INUSE MiB", "FAULTED")
	}
	o.Sampled = func(s soakSample) {
		if !text {
			_ = enc.Encode(map[string]any{"sample": s})
			return
		}
		name := fmt.Sprint(s.Rollout)
		if s.Rollout == 0 {
			name = "build"
		}
		fmt.Fprintf(out, "%8s %8.2f %11d %10.1f %10.1f %8d\n", name, s.Seconds, s.Goroutines, s.HeapAllocMiB, s.HeapInuseMiB, s.Faulted)
	}
	started := time.Now()
	samples, err := soak(ctx, o)
	if err != nil {
		return &cli.ExitError{Code: cli.ExitNotDone, Err: fmt.Errorf("soak: %w", err)}
	}
	r := judgeSoak(samples, o.Bounds)
	verdict := "PASS"
	if !r.Pass {
		verdict = "FAIL"
	}
	if text {
		fmt.Fprintf(out, "baseline (rollout 1): %d goroutines, heap %.1f MiB\n", r.Baseline.Goroutines, r.Baseline.HeapAllocMiB)
		fmt.Fprintf(out, "max over baseline: goroutines %+d (bound +%d), heap %+.1f MiB (bound %.1f MiB = %.1f × %.1f + %.0f)\n",
			r.MaxGoroutines, o.Bounds.GoroutineSlack, r.MaxHeapMiB, r.HeapMaxMiB, r.Baseline.HeapAllocMiB, o.Bounds.HeapFactor, o.Bounds.HeapSlackMiB)
		for _, p := range r.Problems {
			fmt.Fprintf(out, "  %s\n", p)
		}
		if !r.Pass {
			for _, g := range grownStacks(samples) {
				fmt.Fprintf(out, "  goroutines grown since the baseline: %s\n", g)
			}
		}
		fmt.Fprintf(out, "%s in %s\n", verdict, time.Since(started).Round(time.Second))
	} else {
		_ = enc.Encode(map[string]any{"report": r})
	}
	if !r.Pass {
		return &cli.ExitError{Code: cli.ExitNotDone, Err: fmt.Errorf("soak: %s", strings.Join(r.Problems, "; "))}
	}
	return nil
}

const soakImage = "soak-gold"

// soakGroupsYAML is the soak's configuration: three kinds of group in
// turn — surge-first behind an Octavia pool, surge by percentage, and in
// place — with fast health checks. The interval is an hour: every
// rollout starts from the image.published event the soak sends. The
// grace (300ms) is shorter than a rollout, so that the flapped server's
// failures count: it is seen unhealthy, not forgiven as a new boot. port
// is the simulated applications'.
func soakGroupsYAML(groups, servers, port int) string {
	var b strings.Builder
	b.WriteString("controller: {interval: 1h}\ngroups:\n")
	for i := range groups {
		fmt.Fprintf(&b, `  - name: soak%d
    count: %d
    image: {name: %s, newest: true}
    flavor: m1.small
    networks: [private]
    health: {http: {port: %d, path: /healthz}, interval: 50ms, rise_interval: 10ms, timeout: 50ms, healthy_threshold: 2, unhealthy_threshold: 3, grace: 300ms}
`, i, servers, soakImage, port)
		switch i % 3 {
		case 0:
			fmt.Fprintf(&b, "    rollout: {max_surge: 2, max_unavailable: 0}\n")
			fmt.Fprintf(&b, "    traffic: {octavia: {load_balancer: soak-lb%d, pool: soak-pool%d, protocol_port: %d, drain: 50ms}}\n", i, i, port)
		case 1:
			fmt.Fprintf(&b, "    rollout: {max_surge: 25%%, max_unavailable: 0}\n")
		case 2:
			fmt.Fprintf(&b, "    rollout: {max_surge: 0, max_unavailable: 1}\n")
		}
	}
	return b.String()
}

// soak runs the rollouts and returns a sample after each: the initial
// build (rollout 0), then rollouts 1 to o.Rollouts.
func soak(ctx context.Context, o soakOptions) ([]soakSample, error) {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.RolloutTimeout <= 0 {
		o.RolloutTimeout = time.Minute
	}
	s, cloud, cleanup, err := benchCloud(ctx, sim.Options{Seed: o.Seed,
		BootTime:    sim.LogNormal(40*time.Millisecond, 250*time.Millisecond),
		HealthDelay: sim.Fixed(10 * time.Millisecond),
		DeleteTime:  sim.Fixed(10 * time.Millisecond)}, o.Log)
	if err != nil {
		return nil, fmt.Errorf("start the simulator: %w", err)
	}
	defer cleanup()
	cfg, err := config.Parse("soak.yaml", []byte(soakGroupsYAML(o.Groups, o.Servers, s.HealthPort())), ".")
	if err != nil {
		return nil, fmt.Errorf("the soak configuration: %w", err)
	}
	pools := map[string]string{} // group → pool ID
	for i, gr := range cfg.Groups {
		if gr.Traffic.Octavia == nil {
			continue
		}
		lb, err := s.AddLoadBalancer(sim.LoadBalancerSpec{Name: fmt.Sprintf("soak-lb%d", i),
			PoolName: gr.Traffic.Octavia.Pool, Monitor: true, MonitorPath: "/healthz"})
		if err != nil {
			return nil, fmt.Errorf("load balancer of group %s: %w", gr.Name, err)
		}
		pools[gr.Name] = lb.PoolID
	}

	// Images a second apart: Glance's created_at has whole seconds, and
	// "newest" must be the one just published.
	created := time.Now().Add(-time.Hour).Truncate(time.Second)
	publish := func() sim.Image {
		created = created.Add(time.Second)
		if now := time.Now().Truncate(time.Second); now.After(created) {
			created = now
		}
		return s.AddImage(sim.Image{Name: soakImage, Created: created})
	}
	img := publish()

	// Every event the daemon emits is a reason to look again; the
	// simulator's own changes (a server gone, an application up) emit
	// none, so a ticker looks too.
	changed := make(chan struct{}, 1)
	reg := prometheus.NewRegistry()
	metrics := daemon.NewMetrics(reg)
	d := daemon.New(cloud.Services(), cfg, daemon.Options{
		Log: o.Log,
		Sink: controller.EventFunc(func(controller.Event) {
			select {
			case changed <- struct{}{}:
			default:
			}
		}),
		Metrics:      metrics,
		PollInterval: 20 * time.Millisecond,
		StopGrace:    10 * time.Second,
		Reconciler:   controller.Options{CreateBackoff: 100 * time.Millisecond},
	})
	metrics.Watch(d)
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- d.Run(runCtx) }()
	defer func() {
		stop()
		<-ran
	}()

	rng := rand.New(rand.NewPCG(uint64(o.Seed), 0x50a4))
	var samples []soakSample
	for r := 0; r <= o.Rollouts; r++ {
		started := time.Now()
		var flapped string
		if r > 0 {
			if o.Faults {
				if err := injectSoakFaults(s); err != nil {
					return samples, err
				}
				flapped = flapOne(s, rng)
			}
			img = publish()
			if err := d.Dispatch(ctx, trigger.Event{ID: fmt.Sprint("soak-", r), Type: trigger.TypeImagePublished}); err != nil {
				return samples, fmt.Errorf("rollout %d: %w", r, err)
			}
		}
		err := waitSoakConverged(ctx, s, d, cfg.Groups, pools, img.ID, o.RolloutTimeout, changed, func() {
			// The flapping server answers again after 200ms: long enough
			// for its checker to see it fail, and perhaps to replace it.
			if flapped != "" && time.Since(started) > 200*time.Millisecond {
				_ = s.SetHealth(flapped, sim.HealthUp) // it may be gone: replaced
				flapped = ""
			}
		})
		if err != nil {
			return samples, fmt.Errorf("rollout %d: %w", r, err)
		}
		seconds := time.Since(started).Seconds()
		s.ClearFaults()
		s.ClearBootFaults()
		faulted := 0
		for _, req := range s.Requests() {
			if req.Faulted {
				faulted++
			}
		}
		// The request log is the simulator's record for tests; it grows
		// with every request and is no part of Phoenix.
		s.ResetRequests()
		sample := sampleProcess()
		sample.Rollout, sample.Seconds, sample.Faulted = r, seconds, faulted
		if r == 1 || r == o.Rollouts {
			sample.stacks = goroutineStacks()
		}
		samples = append(samples, sample)
		if o.Sampled != nil {
			o.Sampled(sample)
		}
	}
	return samples, nil
}

// injectSoakFaults arms one rollout's faults. Each is bounded (Times) so
// a rollout always ends, and drawn at random (Fraction) so they land in
// different places each time.
func injectSoakFaults(s *sim.Sim) error {
	faults := []sim.Fault{
		// Bursts on reads: retried by the HTTP client.
		{Method: http.MethodGet, Action: sim.FailWith, Status: http.StatusServiceUnavailable, Fraction: 0.05, Times: 10},
		{Method: http.MethodGet, Action: sim.FailWith, Status: http.StatusTooManyRequests, RetryAfter: 0, Fraction: 0.03, Times: 5},
		// A create that happens but answers 500: the next reconcile
		// finds the server by its tag.
		{Service: "compute", Method: http.MethodPost, Path: `^/servers$`, Action: sim.CommitThenFail, Status: http.StatusInternalServerError, Fraction: 0.25, Times: 2},
		// Octavia refusing a member change now and then.
		{Service: "load-balancer", Method: http.MethodPut, Action: sim.FailWith, Status: http.StatusServiceUnavailable, Fraction: 0.2, Times: 2},
	}
	for _, f := range faults {
		if err := s.InjectFault(f); err != nil {
			return fmt.Errorf("inject fault: %w", err)
		}
	}
	s.FailNextBoots(1)
	return nil
}

// flapOne makes one healthy server's health check fail and returns its
// ID ("" when none is healthy).
func flapOne(s *sim.Sim, rng *rand.Rand) string {
	var healthy []string
	for _, srv := range s.Servers() {
		if srv.Healthy {
			healthy = append(healthy, srv.ID)
		}
	}
	if len(healthy) == 0 {
		return ""
	}
	id := healthy[rng.IntN(len(healthy))]
	if s.SetHealth(id, sim.HealthFailing) != nil {
		return ""
	}
	return id
}

// waitSoakConverged waits until the daemon reports every group converged
// and the simulator agrees: each group has exactly its count of servers,
// all on image, healthy and none being deleted, and each pool holds
// exactly the group's servers, ACTIVE and weighted. each runs at every
// look.
func waitSoakConverged(ctx context.Context, s *sim.Sim, d *daemon.Daemon, groups []config.Group, pools map[string]string,
	image string, timeout time.Duration, changed <-chan struct{}, each func()) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var why string
	for {
		each()
		var err error
		if why, err = soakState(s, d, groups, pools, image); err != nil {
			return err
		}
		if why == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not converged within %s: %s", timeout, why)
		case <-changed:
		case <-tick.C:
		}
	}
}

// soakState says why the fleet is not yet converged on image ("" when it
// is), or returns an error when a group halted: it would wait for a human.
func soakState(s *sim.Sim, d *daemon.Daemon, groups []config.Group, pools map[string]string, image string) (string, error) {
	st := d.Status()
	if len(st.Groups) != len(groups) {
		return "the workers have not started", nil
	}
	for _, g := range st.Groups {
		if g.Halted != "" {
			return "", fmt.Errorf("group %s halted: %s", g.Group, g.Halted)
		}
		if g.InProgress {
			return fmt.Sprintf("group %s in progress: %s", g.Group, g.Progress), nil
		}
	}
	count := map[string]int{}
	addresses := map[string]map[string]bool{}
	for _, srv := range s.Servers() {
		g := groupOfServer(srv)
		switch {
		case srv.Deleting:
			return fmt.Sprintf("server %s of group %s is being deleted", srv.Name, g), nil
		case srv.ImageID != image:
			return fmt.Sprintf("server %s of group %s runs image %s", srv.Name, g, srv.ImageID), nil
		case !srv.Healthy:
			return fmt.Sprintf("server %s of group %s is not healthy", srv.Name, g), nil
		}
		count[g]++
		if addresses[g] == nil {
			addresses[g] = map[string]bool{}
		}
		addresses[g][srv.Address] = true
	}
	for _, gr := range groups {
		if count[gr.Name] != gr.Count {
			return fmt.Sprintf("group %s has %d servers, want %d", gr.Name, count[gr.Name], gr.Count), nil
		}
		pool, ok := pools[gr.Name]
		if !ok {
			continue
		}
		members := s.Members(pool)
		if len(members) != gr.Count {
			return fmt.Sprintf("pool of group %s has %d members, want %d", gr.Name, len(members), gr.Count), nil
		}
		for _, m := range members {
			if !addresses[gr.Name][m.Address] || m.ProvisioningStatus != "ACTIVE" || m.Weight == 0 {
				return fmt.Sprintf("member %s of group %s's pool: %s, weight %d", m.Address, gr.Name, m.ProvisioningStatus, m.Weight), nil
			}
		}
	}
	return "", nil
}

// sampleProcess samples goroutines and heap. The goroutine count is the
// least of five looks 20ms apart: a leaked goroutine is in every look,
// while one that is only passing through (a probe in flight, a closing
// connection's reader, a timer's callback) is rarely in all five. Then it
// collects garbage twice — objects dropped from a sync.Pool survive the
// first in its victim cache — and reads the live heap.
func sampleProcess() soakSample {
	goroutines := runtime.NumGoroutine()
	tick := time.NewTicker(20 * time.Millisecond)
	for range 4 {
		<-tick.C
		goroutines = min(goroutines, runtime.NumGoroutine())
	}
	tick.Stop()
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	const mib = 1 << 20
	return soakSample{Goroutines: goroutines, HeapAllocMiB: float64(ms.HeapAlloc) / mib, HeapInuseMiB: float64(ms.HeapInuse) / mib}
}

// goroutineStacks counts the goroutines by stack: the function names of
// each goroutine profile record, without addresses or offsets.
func goroutineStacks() map[string]int {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
	out := map[string]int{}
	// "goroutine profile: total N", then records most goroutines first,
	// each "count @ addresses" and its frames, a blank line apart.
	_, records, _ := strings.Cut(buf.String(), "\n")
	for _, rec := range strings.Split(records, "\n\n") {
		lines := strings.Split(strings.TrimSpace(rec), "\n")
		var n int
		if _, err := fmt.Sscanf(lines[0], "%d @", &n); err != nil {
			continue
		}
		var frames []string
		for _, l := range lines[1:] {
			f := strings.Fields(l) // "#", address, function+offset, file:line
			if len(f) >= 3 {
				fn, _, _ := strings.Cut(f[2], "+")
				frames = append(frames, fn)
			}
		}
		out[strings.Join(frames, " ← ")] += n
	}
	return out
}

// grownStacks lists the stacks with more goroutines in the last sample
// than in the baseline, most grown first: where to look for a leak.
func grownStacks(samples []soakSample) []string {
	var base, last map[string]int
	for _, s := range samples {
		if s.stacks == nil {
			continue
		}
		if s.Rollout == 1 {
			base = s.stacks
		}
		last = s.stacks
	}
	type growth struct {
		stack string
		n     int
	}
	var grown []growth
	for st, n := range last {
		if n > base[st] {
			grown = append(grown, growth{st, n - base[st]})
		}
	}
	slices.SortFunc(grown, func(a, b growth) int { return b.n - a.n })
	var out []string
	for _, g := range grown[:min(5, len(grown))] {
		out = append(out, fmt.Sprintf("+%d %s", g.n, g.stack))
	}
	return out
}
