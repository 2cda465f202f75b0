package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
)

// The chaos harness: for each seed a random fleet, a random schedule of
// cloud faults, SIGKILLs of a real `phoenix daemon` process and events,
// with a monitor that checks the invariants of the design at every sample
// of the simulator. See chaosseed.go for one seed and chaosmonitor.go for
// the invariants.

type chaosFlags struct {
	seeds    int
	from     uint64
	seed     int64
	parallel int
	bug      string
	expect   bool
	phoenix  string
	keepLogs string
	verbose  bool
	draw     []string
}

func newChaosCommand(g *cli.Globals) *cobra.Command {
	f := &chaosFlags{}
	cmd := &cobra.Command{
		Use:   "chaos [--seeds N]",
		Short: "Run Phoenix through random faults, kills and events, checking its invariants throughout",
		Long: `chaos runs, for each seed, a random fleet (groups, counts, surge and
unavailable budgets, load-balancer traffic, snapshots before delete,
rollout.on_failure halt or rollback) on the built-in simulator, converges it,
then publishes new images and sends events (image published, security patch,
compromised server, a second image in the middle of a rollout, an image that
cannot boot, an image whose servers pass their gate and fail after it) while
it injects cloud faults (5xx and 429 bursts, requests that never answer,
creates that happen but answer 500, boots to ERROR, boots stuck in BUILD,
slow deletes, applications slow to start, Octavia 409s and members in ERROR,
health flaps, windows of a full instance quota) and kills the daemon — a
real 'phoenix daemon' process — with SIGKILL and starts it again. It
steers some groups as an operator would: servers protected with 'phoenix
protect', a group held with 'phoenix hold' and released (an urgent
security patch or a compromise while held), a Prometheus blocker that its
own fake Prometheus makes fire, fail or not answer, and a maintenance
window that opens after the new image is published.

Unless --draw leaves them out, three more classes are drawn. A third of the
seeds run the fleet with two or three replicas of the daemon sharing the
groups through an etcd cluster of one or three members, run by the
harness itself; their schedule kills replicas (started again at once or
later) and stops etcd members, losing the quorum for a while in some
seeds. A fourth run two regions behind one Keystone, with a group placed
over both, and draw region outages (a region's API away, its compute
answering 503, its creates refused), some longer than failover_after;
the monitor holds a placed group to its bounds over the regions not down,
checks that nothing is deleted in a region the daemon shows down, and
that the group ends at its weights. A fifth add two stages: a staging
group that promotes its new image with a Glance tag, and a prod group
that requires the tag; the image may fail on staging, and Glance may
refuse the tag a few times.

A monitor samples the simulator every few milliseconds and checks:
  availability  healthy servers of a group never below count − max_unavailable
                (a server the chaos or its image made sick after it served
                counts as Phoenix's loss only once the group is whole again)
  bound         servers of a group never above count + max_surge
  no orphans    every server carries its group tag, from its create on
  replace first a healthy server is deleted only while the rest of its group
                still holds the floor
  health gate   no server is recorded ready, or takes the group's traffic,
                before the cloud saw it healthy
  fail fast     an image that cannot boot, or fails after its gate, halts its
                group, which keeps its old servers serving and removes the
                failed new ones — or, with on_failure rollback, the group
                ends on the image it ran before, every server healthy, and
                the rejected image is never booted again
  crash-safe    after the kills, every group converges: count servers, all
                healthy, on the newest image, none extra
  steering      while a group is held, blocked or outside its windows (after
                a grace for a round in flight), no voluntary replacement
                starts: no create, drain, delete or rebuild that no failed,
                sick or missing server, nor a replacement under way, calls
                for; an urgent patch or a compromise still goes through
  protected     a protected server is never deleted, drained or rebuilt,
                unless it is reported compromised
  stages        prod never creates a server of an image before staging has run
                it healthy, its whole count, for promote.after
  replicas      no two replicas act on one group at once: in arrival order,
                each group's changes in the cloud follow the terms of its
                key in etcd (fencing's own leeway aside)
and that neither the cloud password nor the webhook secret appears in any
log line, status or metrics output of the daemon.

Every failing seed is printed with the one command that replays it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("seed") {
				f.from, f.seeds = uint64(f.seed), 1
			}
			if cmd.Flags().Changed("draw") {
				clear(draws)
				for _, d := range f.draw {
					switch d {
					case drawReplicasClass, drawRegionsClass, drawStagesClass:
						draws[d] = true
					case drawNone:
					default:
						return cli.UsageError(fmt.Errorf("--draw %s: want replicas, regions, stages or none", d))
					}
				}
			}
			return runChaos(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), f)
		},
	}
	cmd.Flags().IntVar(&f.seeds, "seeds", 50, "how many seeds to run")
	cmd.Flags().Uint64Var(&f.from, "from", 1, "the first seed")
	cmd.Flags().Int64Var(&f.seed, "seed", 0, "run this one seed only (replay), with its schedule printed")
	cmd.Flags().IntVar(&f.parallel, "parallel", 3, "seeds run at the same time")
	cmd.Flags().StringVar(&f.bug, "bug", "", "inject a known policy bug into the daemon (a phoenix built with -tags chaosbugs only; so built when none is given)")
	cmd.Flags().BoolVar(&f.expect, "expect-violation", false, "with --bug: succeed once a seed reports a violation, fail if none does")
	cmd.Flags().StringVar(&f.phoenix, "phoenix", "", "the phoenix binary to run as the daemon (default: the phoenix beside this one, else one built from this checkout)")
	cmd.Flags().StringVar(&f.keepLogs, "keep-logs", "", "copy the daemon logs of failing seeds into this directory")
	cmd.Flags().BoolVarP(&f.verbose, "verbose", "v", false, "print every seed's schedule and outcome")
	cmd.Flags().StringSliceVar(&f.draw, "draw", drawClasses, "the seed classes drawn beside one-daemon, one-region fleets: replicas (2-3 daemons sharing the groups through etcd), regions (two-region fleets and region outages), stages (a staging group promoting its image to a prod group through a Glance tag), or none")
	return cmd
}

// chaosSummary is what a chaos run found.
type chaosSummary struct {
	Seeds, Converged, Halted, RolledBack, Violations int
	// Failed are the seeds with a violation or an unexpected end.
	Failed []seedResult
}

func runChaos(ctx context.Context, out, note io.Writer, f *chaosFlags) error {
	if f.seeds < 1 || f.parallel < 1 {
		return cli.UsageError(fmt.Errorf("--seeds and --parallel must be at least 1"))
	}
	if f.bug != "" && !slices.Contains(knownBugs, f.bug) {
		return cli.UsageError(fmt.Errorf("--bug %s: want one of %s", f.bug, strings.Join(knownBugs, ", ")))
	}
	if f.expect && f.bug == "" {
		return cli.UsageError(fmt.Errorf("--expect-violation needs --bug"))
	}
	bin, cleanup, err := findPhoenix(ctx, f.phoenix, f.bug != "", note)
	if err != nil {
		return err
	}
	defer cleanup()
	if f.bug != "" {
		if err := checkInjects(bin, f.bug); err != nil {
			return err
		}
	}
	start := time.Now()
	sum, err := chaosRun(ctx, out, bin, f)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nchaos: %d seeds (%d–%d) in %s: %d converged, %d halted and %d rolled back as their scenario expects, %d invariant violations, %d seeds failed\n",
		sum.Seeds, f.from, f.from+uint64(sum.Seeds)-1, time.Since(start).Round(time.Second), sum.Converged, sum.Halted, sum.RolledBack, sum.Violations, len(sum.Failed))
	for _, r := range sum.Failed {
		fmt.Fprintf(out, "  seed %d (%s): %s\n    replay: %s\n", r.Seed, r.Setup, r.summary(), replayCommand(r.Seed, f.bug))
	}
	switch {
	case f.expect && sum.Violations > 0:
		fmt.Fprintf(out, "the injected bug %s was caught\n", f.bug)
		return nil
	case f.expect:
		return &cli.ExitError{Code: cli.ExitNotDone, Err: fmt.Errorf("the injected bug %s went unnoticed in %d seeds", f.bug, sum.Seeds)}
	case len(sum.Failed) > 0:
		return &cli.ExitError{Code: cli.ExitNotDone, Err: fmt.Errorf("%d of %d seeds failed", len(sum.Failed), sum.Seeds)}
	}
	return nil
}

func replayCommand(seed uint64, bug string) string {
	var drawn []string
	for _, d := range drawClasses {
		if draws[d] {
			drawn = append(drawn, d)
		}
	}
	extra := ""
	switch {
	case len(drawn) == len(drawClasses):
	case len(drawn) == 0:
		extra = " --draw " + drawNone
	default:
		extra = " --draw " + strings.Join(drawn, ",")
	}
	if bug != "" {
		return fmt.Sprintf("go run ./cmd/phoenix-harness chaos%s --bug %s --seed %d", extra, bug, seed)
	}
	return fmt.Sprintf("go run ./cmd/phoenix-harness chaos%s --seed %d", extra, seed)
}

// The seed classes drawn beside one-daemon, one-region fleets (--draw).
const (
	drawReplicasClass = "replicas"
	drawRegionsClass  = "regions"
	drawStagesClass   = "stages"
	drawNone          = "none"
)

var drawClasses = []string{drawReplicasClass, drawRegionsClass, drawStagesClass}

// draws are the seed classes this run draws: all unless --draw says less.
var draws = map[string]bool{drawReplicasClass: true, drawRegionsClass: true, drawStagesClass: true}

// chaosRun runs the seeds, f.parallel at a time, and stops early when an
// expected violation was found. A seed that only waits for a maintenance
// window to open gives its place to the next one meanwhile: its wait
// costs no wall time.
func chaosRun(ctx context.Context, out io.Writer, bin string, f *chaosFlags) (chaosSummary, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu      sync.Mutex
		sum     chaosSummary
		results []seedResult
		wg      sync.WaitGroup
		slots   = make(chan struct{}, f.parallel)
	)
	idle := func(wait func()) {
		<-slots
		defer func() { slots <- struct{}{} }()
		wait()
	}
feed:
	for i := range uint64(f.seeds) {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			break feed
		}
		if ctx.Err() != nil {
			<-slots
			break
		}
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			r := runSeed(ctx, seedOptions{seed: seed, bin: bin, bug: f.bug, verbose: f.verbose || f.seeds == 1, keepLogs: f.keepLogs, out: out, idle: idle})
			<-slots
			mu.Lock()
			if ctx.Err() == nil || r.Outcome != outcomeCancelled {
				results = append(results, r)
			}
			if f.expect && len(r.Violations) > 0 {
				cancel()
			}
			done := len(results)
			mu.Unlock()
			if !f.verbose && f.seeds > 1 && done%25 == 0 {
				fmt.Fprintf(out, "  %d/%d seeds\n", done, f.seeds)
			}
		}(f.from + i)
	}
	wg.Wait()
	sort.Slice(results, func(i, j int) bool { return results[i].Seed < results[j].Seed })
	for _, r := range results {
		sum.Seeds++
		sum.Violations += len(r.Violations)
		switch {
		case r.failed():
			sum.Failed = append(sum.Failed, r)
		case r.Outcome == outcomeHalted:
			sum.Halted++
		case r.Outcome == outcomeRolledBack:
			sum.RolledBack++
		default:
			sum.Converged++
		}
	}
	if sum.Seeds == 0 {
		return sum, ctx.Err()
	}
	return sum, nil
}
