package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/cmd/internal/version"
	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/examples"
	"github.com/phoenix-ops/phoenix/provisioner/openstack"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

type demoFlags struct {
	seed    int64
	timeout time.Duration
	// appPort is the port the simulated applications take when it is
	// free (0: the simulator's default, 8080); tests hold it elsewhere.
	appPort int
}

func newDemoCommand(g *cli.Globals) *cobra.Command {
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
			return runDemo(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), g, f)
		},
	}
	cmd.Flags().Int64Var(&f.seed, "seed", 1, "seed of the simulator's boot times")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 2*time.Minute, "give up after this long")
	return cmd
}

const demoCloud = "phoenix-sim"

// demoDoc is the demo's -o json document: the rebuild's, and what the
// users saw through the load balancer.
type demoDoc struct {
	rebuildDoc
	Replaced       int `json:"replaced"`
	RequestsSent   int `json:"requests_sent"`
	RequestsFailed int `json:"requests_failed"`
}

func runDemo(ctx context.Context, out, errOut io.Writer, g *cli.Globals, f *demoFlags) error {
	if err := cli.CheckOutput(g.Output); err != nil {
		return err
	}
	log, err := g.Logger()
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	// Under -o json the story goes to stderr; stdout gets the document.
	human := out
	if g.Output == "json" {
		human = errOut
	}
	say := func(format string, args ...any) { fmt.Fprintf(human, format, args...) }

	s, err := sim.New(sim.Options{
		Seed:        f.seed,
		BootTime:    sim.LogNormal(700*time.Millisecond, 3*time.Second),
		HealthDelay: sim.Fixed(200 * time.Millisecond),
		DeleteTime:  sim.Fixed(300 * time.Millisecond),
		// Another program may hold 8080: the simulator then picks a free
		// port, and the demo's checks and pool follow it below.
		PreferredHealthPort: f.appPort,
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
	onAppPort(cfg.Groups, s.HealthPort())
	log.Debug("simulated applications listen", zap.Int("port", s.HealthPort()))

	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	baseline := s.AddImage(sim.Image{Name: "demo-gold", Created: time.Now().Add(-30 * 24 * time.Hour),
		Properties: map[string]string{"os_distro": "ubuntu", "version": "2026.10"}})
	lb, err := addDemoLoadBalancer(s)
	if err != nil {
		return err
	}
	say("OpenStack simulator (Keystone, Nova, Glance, Neutron, Octavia) at %s\n", s.Endpoint())
	cloud, err := openstack.New(ctx, openstack.Options{Cloud: demoCloud, CloudsFile: cloudsFile, Logger: log, Version: version.Get().Version, Retry: openstack.RetryPolicy{
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
	initial := controller.Rebuild(ctx, cloud.Services(), cfg.Groups, nil, log, controller.Options{PollInterval: 200 * time.Millisecond})
	for _, r := range initial {
		if !r.Converged {
			return &cli.ExitError{Code: cli.ExitNotDone, Err: fmt.Errorf("building the initial fleet: group %s: %w", r.Group, r.Err)}
		}
	}

	patched := s.AddImage(sim.Image{Name: "demo-gold", Properties: map[string]string{"os_distro": "ubuntu", "version": "2026.11-patched"}})
	say("\nSecurity patch published: image demo-gold %s (%s). Rebuilding every group:\n\n", patched.Properties["version"], short(patched.ID))

	mon := s.Monitor(10*time.Millisecond, groupOfServer)
	poolMon := s.MonitorPool(lb.PoolID, 10*time.Millisecond)
	users := startUsers(lb.URL, 4)
	started := time.Now()
	opts := controller.Options{RolloutID: uuid.NewString(), PollInterval: 200 * time.Millisecond}
	results, doc := rebuild(ctx, out, errOut, g.Output, cloud.Services(), cfg.Groups, log, opts, 0)
	converged := time.Now()
	users.waitMore(40)
	answers := users.stop()
	extremes := mon.Stop()
	pool := poolMon.Stop()
	if err := exitFor(results, opts.RolloutID, f.timeout); err != nil {
		return err
	}
	if err := checkDemo(s, cfg.Groups, patched.ID); err != nil {
		return &cli.ExitError{Code: cli.ExitNotDone, Err: err}
	}
	say("\n%s", capacityReport(cfg.Groups, extremes))
	web := cfg.Groups[0]
	say("\n%s", trafficReport(answers, converged, serverSet(s), pool, web.Count-web.Rollout.MaxUnavailable.Resolve(web.Count, false)))
	if g.Output == "json" {
		if err := printJSON(out, demoDoc{rebuildDoc: doc, Replaced: countPairs(results), RequestsSent: len(answers), RequestsFailed: answers.failed()}); err != nil {
			return err
		}
	}
	if failed := answers.failed(); failed > 0 {
		return &cli.ExitError{Code: cli.ExitNotDone, Err: fmt.Errorf("%d requests through %s failed during the rebuild", failed, demoLB)}
	}
	say("\nEvery server now runs the patched image; %d servers replaced in %s.\n", countPairs(results), time.Since(started).Round(100*time.Millisecond))
	log.Info("demo finished", zap.String("rollout", opts.RolloutID))
	return nil
}

// onAppPort points every group's health check and pool members at the
// port the simulated applications listen on: examples/demo.yaml says
// 8080, which another program on the machine may hold.
func onAppPort(groups []config.Group, port int) {
	for i := range groups {
		h, tr := &groups[i].Health, groups[i].Traffic
		if h.HTTP != nil {
			h.HTTP.Port = port
		}
		if h.TCP != nil {
			h.TCP.Port = port
		}
		if tr.Octavia != nil {
			tr.Octavia.ProtocolPort = port
		}
	}
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

// The demo's load balancer: group web's pool, with an HTTP monitor like a
// production pool would have.
const (
	demoLB   = "demo-lb"
	demoPool = "web-pool"
)

func addDemoLoadBalancer(s *sim.Sim) (sim.LoadBalancerInfo, error) {
	lb, err := s.AddLoadBalancer(sim.LoadBalancerSpec{Name: demoLB, PoolName: demoPool, Monitor: true, MonitorPath: "/healthz"})
	if err != nil {
		return lb, fmt.Errorf("create the demo load balancer: %w", err)
	}
	return lb, nil
}

// users are the application's users: clients sending requests through the
// load balancer throughout the rebuild.
type users struct {
	mu      sync.Mutex
	answers []answer
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type answer struct {
	at     time.Time
	server string
	err    error
}

type answers []answer

func startUsers(url string, n int) *users {
	ctx, cancel := context.WithCancel(context.Background())
	u := &users{cancel: cancel}
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	for range n {
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			for ctx.Err() == nil {
				a := answer{at: time.Now()}
				resp, err := client.Get(url + "/?work=100ms")
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					a.server = resp.Header.Get("X-Sim-Server")
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("HTTP %d", resp.StatusCode)
					}
				}
				if ctx.Err() != nil {
					return
				}
				a.err = err
				u.mu.Lock()
				u.answers = append(u.answers, a)
				u.mu.Unlock()
			}
		}()
	}
	return u
}

// waitMore lets n more requests through (a bounded wait: the users stop
// after 5s whatever happens).
func (u *users) waitMore(n int) {
	u.mu.Lock()
	want := len(u.answers) + n
	u.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		u.mu.Lock()
		got := len(u.answers)
		u.mu.Unlock()
		if got >= want {
			return
		}
		time.Sleep(10 * time.Millisecond) // polling the users' progress
	}
}

func (u *users) stop() answers {
	u.cancel()
	u.wg.Wait()
	u.mu.Lock()
	defer u.mu.Unlock()
	return append(answers(nil), u.answers...)
}

func (a answers) failed() int {
	n := 0
	for _, x := range a {
		if x.err != nil {
			n++
		}
	}
	return n
}

func serverSet(s *sim.Sim) map[string]bool {
	out := map[string]bool{}
	for _, srv := range s.Servers() {
		out[srv.ID] = true
	}
	return out
}

// trafficReport says what the users of group web saw through the load
// balancer: how many requests, how many failed, and who answered them
// after the rebuild converged.
func trafficReport(a answers, converged time.Time, current map[string]bool, pool sim.PoolExtremes, floor int) string {
	servers := map[string]bool{}
	after, afterNew := 0, 0
	for _, x := range a {
		if x.err != nil {
			continue
		}
		servers[x.server] = true
		if x.at.After(converged) {
			after++
			if current[x.server] {
				afterNew++
			}
		}
	}
	return fmt.Sprintf("Users of web sent %d requests through %s during the rebuild: %d failed, answered by %d different servers;\n"+
		"after convergence %d of %d were answered by new servers. The pool never had fewer than %d serving members (floor %d).\n",
		len(a), demoLB, a.failed(), len(servers), afterNew, after, pool.MinServing, floor)
}
