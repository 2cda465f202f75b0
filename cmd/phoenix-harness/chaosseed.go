package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/daemon"
	"github.com/phoenix-ops/phoenix/controller/trigger"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

const (
	outcomeConverged  = "converged"
	outcomeHalted     = "halted"
	outcomeRolledBack = "rolled back"
	outcomeFailed     = "failed"
	outcomeCancelled  = "cancelled"
)

// progressDeadline is every group's rollout.progress_deadline (longer
// under the race detector: see slowdown).
const progressDeadline = slowdown * 5 * time.Second

// The instance quota is full for a window of quotaWindowMin to
// quotaWindowMax, freed at its end (the chaos phase waits for it): up to
// three progress deadlines, which a full quota must outlast without a halt
// (it is a wait, not a stall). create_backoff_max keeps the first create
// after the window within a couple of seconds.
const (
	quotaWindowMin   = 500 * time.Millisecond
	quotaWindowMax   = 3 * progressDeadline / slowdown
	createBackoffMax = 2 * time.Second
)

// How a group's new image reaches the daemon.
const (
	byWatch       = "image watch"
	byImageEvent  = "image.published event"
	byPatchEvent  = "security.patch event"
	byCompromised = "instance.compromised event"
)

type seedOptions struct {
	seed     uint64
	bin, bug string
	verbose  bool
	keepLogs string
	out      io.Writer
	// idle, when set, runs a wait during which the seed has nothing to
	// do, with its place given to another seed.
	idle func(wait func())
}

// seedResult is how one seed ended.
type seedResult struct {
	Seed uint64
	// Setup says how the fleet was run: one daemon, or replicas.
	Setup   string
	Outcome string
	// Why says what went wrong when Outcome is failed.
	Why string
	// Violations are the first violation of each invariant and group;
	// ViolatingSamples how many samples found one.
	Violations       []string
	ViolatingSamples int
	Kills, Faults    int
	Took             time.Duration
	// Regions describes a two-region seed's draw, Stages a two-stage
	// seed's.
	Regions, Stages string
}

func (r seedResult) failed() bool { return r.Outcome == outcomeFailed || len(r.Violations) > 0 }

func (r seedResult) summary() string {
	var parts []string
	if r.Why != "" {
		parts = append(parts, r.Why)
	}
	parts = append(parts, r.Violations...)
	if r.Regions != "" {
		parts = append(parts, r.Regions)
	}
	if r.Stages != "" {
		parts = append(parts, r.Stages)
	}
	return strings.Join(parts, "; ")
}

// chaosGroup is one group of a seed's fleet and what happens to it.
type chaosGroup struct {
	name                      string
	count, surge, unavailable int
	traffic                   bool
	floatingIP                bool // a group of one behind a floating IP
	rebuild                   bool // strategy rebuild: Nova reimages in place
	stateful                  bool // a data volume per server, moved to each replacement
	keep                      int  // snapshots kept; 0: no snapshot before delete
	trigger                   string
	bad                       bool // its new image cannot boot: the rollout must fail
	// leaky is set when its new image passes its health gate and fails
	// this long after (sim.Image.FailsAfter): the rollout must fail too,
	// by the failures after the gate (rollout.watch).
	leaky time.Duration
	// rollback is rollout.on_failure: rollback (else halt): a group whose
	// new image fails must end on the image it ran before, every server
	// healthy, the failing image never chosen again.
	rollback bool
	second   bool // a second new image arrives mid-rollout

	// The operator's steering (chaossteer.go). protect servers are
	// protected once the first build is done; compromiseProtected makes
	// the compromised server one of them.
	protect             int
	compromiseProtected bool
	// hold: `phoenix hold` at holdAt (holdFirst: before the new image is
	// published), `phoenix release` holdFor later; urgentHeld sends an
	// urgent security.patch in between.
	hold, holdFirst, urgentHeld bool
	holdAt, holdFor             time.Duration
	// blocker: rollout.blockers.prometheus asks the seed's fake
	// Prometheus; window: windowLater or windowAlways.
	blocker bool
	window  string
	// placed: the group spreads over the seed's regions (chaosregions.go).
	placed *placement
	// stage: the group is one of a two-stage seed's (chaosstages.go).
	stage *stageRole
}

// fails says whether the group's new image fails its rollout.
func (g chaosGroup) fails() bool { return g.bad || g.leaky > 0 }

// rollsBack and halts say how a group whose new image fails must end.
func (g chaosGroup) rollsBack() bool { return g.fails() && g.rollback }
func (g chaosGroup) halts() bool     { return g.fails() && !g.rollback }

// maxFailures is the group's failure budget. An image failing after its
// gate spends a small one at its first servers, or within a few rounds of
// heal for a group of one; the others have room for the boots the chaos
// sends to ERROR or sticks in BUILD and the servers it makes sick, which
// must not halt a good image (nor fail a rollback: it starts after the
// chaos phase for an image failing after its gate — the failures count
// only once the health grace is over — and shares the phase with an image
// that cannot boot).
func (g chaosGroup) maxFailures() int {
	if g.leaky > 0 {
		return 2
	}
	return 8
}

// onFailure is the group's rollout.on_failure.
func (g chaosGroup) onFailure() string {
	if g.rollback {
		return "rollback"
	}
	return "halt"
}

// chaosStep is one thing the schedule does, at an offset from the start
// of the chaos.
type chaosStep struct {
	at   time.Duration
	what string
	do   func(ctx context.Context, r *seedRun) error
}

// chaosScenario draws a seed's fleet, simulator and schedule. The
// schedule replays exactly; the interleaving with the daemon's own timing
// does not, so a replay reproduces the scenario, usually the failure.
func chaosScenario(seed uint64) (sim.Options, []chaosGroup, []chaosStep, time.Duration, steerPlan, replicaPlan) {
	rng := rand.New(rand.NewPCG(seed, 0xc4a05))
	opts := sim.Options{
		Seed:        int64(seed),
		BootTime:    sim.LogNormal(60*time.Millisecond, 400*time.Millisecond),
		HealthDelay: sim.Fixed(20 * time.Millisecond),
		DeleteTime:  sim.Fixed(20 * time.Millisecond),
	}
	if rng.IntN(3) == 0 {
		opts.DeleteTime = sim.LogNormal(300*time.Millisecond, 1500*time.Millisecond) // slow deletes
	}
	if rng.IntN(2) == 0 {
		// Applications slow to start once their server is ACTIVE (within
		// the health grace): a server that is recorded ready, or put into
		// the traffic, before its check passed is seen doing so.
		opts.HealthDelay = capped(sim.LogNormal(200*time.Millisecond, 1200*time.Millisecond), 2*time.Second)
	}
	var groups []chaosGroup
	for i := range 1 + rng.IntN(3) {
		g := chaosGroup{name: fmt.Sprintf("g%d", i+1), count: 2 + rng.IntN(5), surge: rng.IntN(3), unavailable: rng.IntN(2)}
		if g.surge == 0 && g.unavailable == 0 {
			g.surge = 1
		}
		switch rng.IntN(6) {
		case 0, 1:
			g.traffic = true
		case 2:
			// Blue/green by one public address: a group of one.
			g.floatingIP, g.count, g.surge, g.unavailable = true, 1, 1, 0
		}
		if rng.IntN(3) == 0 {
			g.keep = 1 + rng.IntN(2)
		}
		g.trigger = []string{byWatch, byImageEvent, byPatchEvent, byCompromised}[rng.IntN(4)]
		if !g.floatingIP && !g.traffic && rng.IntN(5) == 0 {
			// Servers that hold data: each keeps one volume, handed over
			// to its replacement (it needs a server of surge and one of
			// unavailability to stop the old one).
			g.stateful, g.surge, g.unavailable = true, max(1, g.surge), 1
		}
		if g.unavailable > 0 && !g.floatingIP && !g.stateful && rng.IntN(4) == 0 {
			g.rebuild = true
			if g.trigger == byCompromised {
				// A twin rebuilt in place keeps its ID: the end check
				// (every twin gone) does not apply.
				g.trigger = byPatchEvent
			}
		}
		switch {
		case g.trigger != byCompromised && rng.IntN(8) == 0:
			g.bad = true
		case g.trigger != byCompromised && rng.IntN(4) == 0:
			// A few hundred ms to a couple of seconds after its
			// application starts; Phoenix counts the failures once the
			// health grace (3 s) is over.
			g.leaky = time.Duration(300+rng.IntN(1700)) * time.Millisecond
		case g.trigger != byCompromised && rng.IntN(4) == 0:
			g.second = true
		}
		g.rollback = rng.IntN(3) != 0
		groups = append(groups, g)
	}
	phase := time.Duration(1500+rng.IntN(1500)) * time.Millisecond
	at := func() time.Duration { return time.Duration(rng.Int64N(int64(phase))) }
	steer := drawSteering(seed, groups, phase)
	regions := drawRegions(seed, phase)
	groups, steer = regions.fleet(groups, steer)
	groups = drawStages(seed, regions).fleet(groups)
	opts.Regions = regions.simRegions()

	var steps []chaosStep
	for _, g := range groups {
		if g.hold && g.holdFirst {
			steps = append(steps, holdStep(g))
		}
		steps = append(steps, chaosStep{at: 0, what: fmt.Sprintf("group %s: %s", g.name, g.describe()), do: func(ctx context.Context, r *seedRun) error {
			return r.publish(ctx, g, true)
		}})
		if g.second {
			steps = append(steps, chaosStep{at: phase/4 + at()/2, what: fmt.Sprintf("group %s: a second new image", g.name), do: func(ctx context.Context, r *seedRun) error {
				return r.publish(ctx, g, false)
			}})
		}
	}
	faults := []func() chaosStep{
		func() chaosStep {
			svc := []string{"compute", "image", "network", "load-balancer", "identity"}[rng.IntN(5)]
			f := sim.Fault{Service: svc, Method: "GET", Action: sim.FailWith, Status: []int{500, 502, 503}[rng.IntN(3)], Times: 3 + rng.IntN(8)}
			return faultStep(fmt.Sprintf("%d× %d on %s GETs", f.Times, f.Status, svc), f)
		},
		func() chaosStep {
			f := sim.Fault{Service: "compute", Action: sim.FailWith, Status: 429, RetryAfter: rng.IntN(2), Times: 2 + rng.IntN(5)}
			return faultStep(fmt.Sprintf("%d× 429 from Nova", f.Times), f)
		},
		func() chaosStep {
			f := sim.Fault{Service: "compute", Method: "GET", Path: `^/servers/detail$`, Action: sim.Hang, Times: 1}
			return faultStep("a server list that never answers", f)
		},
		func() chaosStep {
			f := sim.Fault{Service: "compute", Method: "POST", Path: `^/servers$`, Action: sim.CommitThenFail, Status: 500, Times: 1 + rng.IntN(2)}
			return faultStep(fmt.Sprintf("%d creates that happen but answer 500", f.Times), f)
		},
		func() chaosStep {
			f := sim.Fault{Service: "compute", Method: "POST", Path: `^/servers$`, Action: sim.CommitThenHang, Times: 1}
			return faultStep("a create that happens but never answers", f)
		},
		func() chaosStep {
			f := sim.Fault{Service: "compute", Method: "DELETE", Action: sim.FailWith, Status: 500, Times: 1 + rng.IntN(3)}
			return faultStep(fmt.Sprintf("%d deletes answered 500", f.Times), f)
		},
		func() chaosStep {
			f := sim.Fault{Service: "load-balancer", Method: "PUT", Action: sim.FailWith, Status: 409, Times: 2 + rng.IntN(4)}
			return faultStep(fmt.Sprintf("%d Octavia 409s", f.Times), f)
		},
		func() chaosStep {
			n := 1 + rng.IntN(2)
			return chaosStep{what: fmt.Sprintf("%d boots to ERROR", n), do: func(_ context.Context, r *seedRun) error { r.sim.FailNextBoots(n); return nil }}
		},
		func() chaosStep {
			return chaosStep{what: "a boot stuck in BUILD", do: func(_ context.Context, r *seedRun) error { r.sim.StickNextBoots(1); return nil }}
		},
		func() chaosStep {
			return chaosStep{what: "a pool member in ERROR", do: func(_ context.Context, r *seedRun) error { r.sim.FailNextMembers(1); return nil }}
		},
		func() chaosStep {
			pick, hold := rng.Uint64(), time.Duration(100+rng.IntN(700))*time.Millisecond
			return chaosStep{what: fmt.Sprintf("a server's health flaps for %s", hold), do: func(ctx context.Context, r *seedRun) error { return r.flap(ctx, pick, hold) }}
		},
	}
	// Failed and stuck boots stay below the failure budget (max_failures
	// 8): more of them would halt a good image, rightly.
	const bootErrors, stuckBoot = 7, 8
	boots := 0
	for range rng.IntN(6) {
		i := rng.IntN(len(faults))
		if (i == bootErrors || i == stuckBoot) && boots >= 4 {
			i = 0
		}
		switch i {
		case bootErrors:
			boots += 2
		case stuckBoot:
			boots++
		}
		s := faults[i]()
		s.at = at()
		steps = append(steps, s)
	}
	if rng.IntN(3) == 0 {
		// Quota windows: the instance quota full (at what exists), then
		// freed; windows may overlap.
		for range 1 + rng.IntN(2) {
			hold := quotaWindowMin + time.Duration(rng.Int64N(int64(quotaWindowMax-quotaWindowMin)))
			steps = append(steps, chaosStep{at: at(), what: fmt.Sprintf("the instance quota is full for %s", hold.Round(time.Millisecond)),
				do: func(ctx context.Context, r *seedRun) error { return r.fullQuota(ctx, hold) }})
		}
	}
	var kills []time.Duration
	for range rng.IntN(4) {
		kills = append(kills, at())
	}
	replicas := drawReplicas(seed, phase, kills)
	if replicas.replicas == 0 {
		for _, t := range kills {
			steps = append(steps, chaosStep{at: t, what: "SIGKILL the daemon and start it again", do: func(ctx context.Context, r *seedRun) error { return r.killReplica(ctx, 0, true) }})
		}
	}
	steps = append(steps, replicas.steps()...)
	steps = append(steps, steerSteps(groups, steer)...)
	steps = append(steps, regions.steps()...)
	slices.SortStableFunc(steps, func(a, b chaosStep) int { return int(a.at - b.at) })
	return opts, groups, steps, phase, steer, replicas
}

// capped draws from d, at most limit.
func capped(d sim.Dist, limit time.Duration) sim.Dist {
	return func(r *rand.Rand) time.Duration { return min(d(r), limit) }
}

func faultStep(what string, f sim.Fault) chaosStep {
	return chaosStep{what: what, do: func(_ context.Context, r *seedRun) error {
		r.faults++
		return r.sim.InjectFault(f)
	}}
}

func (g chaosGroup) describe() string {
	s := fmt.Sprintf("count %d, max_surge %d, max_unavailable %d", g.count, g.surge, g.unavailable)
	if g.traffic {
		s += ", behind a pool"
	}
	if g.floatingIP {
		s += ", behind a floating IP"
	}
	if g.rebuild {
		s += ", strategy rebuild"
	}
	if g.stateful {
		s += ", a data volume on each server"
	}
	if g.keep > 0 {
		s += fmt.Sprintf(", snapshot before delete keeping %d", g.keep)
	}
	switch {
	case g.trigger == byCompromised:
		s += "; one server reported compromised"
	case g.bad:
		s += "; a new image that cannot boot, by " + g.trigger
	case g.leaky > 0:
		s += fmt.Sprintf("; a new image whose servers fail %s after passing their gate, by %s", g.leaky, g.trigger)
	default:
		s += "; a new image, by " + g.trigger
	}
	if g.fails() {
		s += "; on_failure " + g.onFailure()
	}
	return s + g.describeSteering()
}

// seedRun is one seed being run: its simulator, its daemon process and
// what the schedule did.
type seedRun struct {
	opts   seedOptions
	sim    *sim.Sim
	groups []chaosGroup
	mon    *chaosMonitor
	rng    *rand.Rand

	dir, cfg, clouds string
	password         string
	secret           []byte

	// replicas is how the fleet is run; daemons are its daemon
	// processes, one per replica (one without replicas), nil while down.
	// etcd is the replicas' cluster, terms the history of its keys.
	replicas replicaPlan
	daemons  []*chaosDaemon
	etcd     *chaosEtcd
	terms    *termLog
	logs     []string // every daemon incarnation's log files
	// outputs are status and metrics bodies fetched during the run, for
	// the secret scan.
	outputs []string

	mu       sync.Mutex
	final    map[string]string   // group → the image it must end on
	old      map[string]string   // group → the image it started on
	failing  map[string]string   // group → its image that fails after its gate
	mustGo   map[string][]string // group → servers that must be gone (compromised twins)
	flapped  []string
	pools    map[string]string // group → pool ID
	fips     map[string]string // group → floating IP address
	fipIDs   map[string]string // group → floating IP ID
	faults   int
	kills    int
	eventSeq int
	// quotaHolds counts the quota windows open; quotaWindows waits for
	// them to close.
	quotaHolds   int
	quotaWindows sync.WaitGroup

	// Steering. prom is the seed's fake Prometheus (nil without a
	// blocker); windowOpens when a group's window opens; protected the
	// protected servers of each group; urgentBoots the boots an urgent
	// rebuild of a held group must take out before its release; spans
	// the span each group is steered by now (the schedule's goroutine
	// only).
	prom        *fakeProm
	windowOpens map[string]time.Time
	protected   map[string][]string
	urgentBoots map[string]map[string]bool
	spans       map[string]*steerSpan
	// watchers wait for the daemon to show steering; stopWatch ends them.
	watchers  sync.WaitGroup
	stopWatch chan struct{}

	// regions is a two-region seed's state (chaosregions.go); nil for one
	// region.
	regions *regionRun
	// stages and judge are a two-stage seed's draw and judge
	// (chaosstages.go); nil without.
	stages *stagePlan
	judge  *stageJudge
}

func runSeed(ctx context.Context, o seedOptions) (res seedResult) {
	start := time.Now()
	res = seedResult{Seed: o.seed}
	simOpts, groups, steps, phase, steer, replicas := chaosScenario(o.seed)
	r := &seedRun{
		opts: o, groups: groups, rng: rand.New(rand.NewPCG(o.seed, 0x5eed)), replicas: replicas,
		daemons:  make([]*chaosDaemon, max(1, replicas.replicas)),
		password: "pw-" + uuid.NewString(), secret: []byte("wh-" + uuid.NewString()),
		final: map[string]string{}, old: map[string]string{}, failing: map[string]string{}, mustGo: map[string][]string{}, pools: map[string]string{}, fips: map[string]string{}, fipIDs: map[string]string{},
		windowOpens: map[string]time.Time{}, protected: map[string][]string{}, urgentBoots: map[string]map[string]bool{}, spans: map[string]*steerSpan{},
		stopWatch: make(chan struct{}),
	}
	res.Setup = replicas.describe()
	if rp := drawRegions(o.seed, phase); rp != nil {
		r.regions = &regionRun{plan: rp, holds: map[string]int{}}
		res.Regions = rp.describe()
	}
	r.stages = drawStages(o.seed, drawRegions(o.seed, phase))
	res.Stages = r.stages.describe()
	if o.verbose {
		fmt.Fprintf(o.out, "seed %d: %d groups, %s, chaos for %s\n", o.seed, len(groups), res.Setup, phase)
		for _, d := range []string{res.Regions, res.Stages} {
			if d != "" {
				fmt.Fprintf(o.out, "  %s\n", d)
			}
		}
		for _, s := range steps {
			fmt.Fprintf(o.out, "  %7s  %s\n", s.at.Round(time.Millisecond), s.what)
		}
	}
	defer func() {
		res.Kills, res.Faults, res.Took = r.kills, r.faults, time.Since(start)
		if r.mon != nil {
			res.Violations, res.ViolatingSamples = r.mon.violations()
			res.Regions += r.mon.regionsFound()
		}
		if r.judge != nil {
			res.Violations = append(res.Violations, r.judge.violations()...)
		}
		if leaks := r.scanSecrets(); len(leaks) > 0 {
			res.Violations = append(res.Violations, leaks...)
		}
		if ctx.Err() != nil && res.Outcome == outcomeFailed && len(res.Violations) == 0 {
			res.Outcome = outcomeCancelled
		}
		if res.failed() && o.keepLogs != "" {
			r.keepLogs(o.keepLogs)
		}
		r.close()
		if o.verbose {
			fmt.Fprintf(o.out, "seed %d (%s): %s in %s, %d kills, %d faults; %s\n", o.seed, res.Setup, res.Outcome, res.Took.Round(time.Millisecond), res.Kills, res.Faults, res.summary())
		}
	}()
	fail := func(format string, args ...any) seedResult {
		res.Outcome, res.Why = outcomeFailed, fmt.Sprintf(format, args...)
		return res
	}

	if err := r.setUp(simOpts, steer); err != nil {
		return fail("set up: %v", err)
	}
	for i := range r.daemons {
		if err := r.startDaemon(i); err != nil {
			return fail("%v", err)
		}
	}
	r.mon = newChaosMonitor(r.sim, ordinary(groups), r.pools, r.fips)
	if r.stages != nil {
		r.judge = newStageJudge(r.stages, r.old[r.stages.staging.name])
		r.mon.stages = r.judge
	}
	r.watchRegions()
	r.mon.start(2 * time.Millisecond)
	if err := r.waitFleet(ctx, slowdown*60*time.Second, false); err != nil {
		r.mon.finish()
		return fail("the first build: %v", err)
	}
	r.mon.arm()
	if err := r.protectServers(ctx); err != nil {
		r.mon.finish()
		return fail("protect: %v", err)
	}
	t0 := time.Now()
	r.mon.startJudging(t0)
	r.steerFromStart(t0)
	for _, s := range steps {
		if wait := time.Until(t0.Add(s.at)); wait > 0 {
			select {
			case <-time.After(wait): // the schedule's own clock
			case <-ctx.Done():
				return fail("cancelled")
			}
		}
		if err := s.do(ctx, r); err != nil {
			return fail("%s: %v", s.what, err)
		}
		if first, _ := r.mon.violations(); len(first) > 0 && o.bug != "" {
			break // caught: no need to play the rest
		}
	}
	if wait := time.Until(t0.Add(phase)); wait > 0 {
		time.Sleep(wait) // the rest of the chaos phase
	}
	r.calm()
	if err := r.refuseTags(); err != nil {
		r.mon.finish()
		return fail("%v", err)
	}
	if first, _ := r.mon.violations(); len(first) > 0 && o.bug != "" {
		res.Outcome = outcomeFailed
		r.mon.finish()
		return res
	}
	// A group waits for its window to open before it rolls out; until
	// then the seed has nothing to do but let the monitor sample.
	var opens time.Time
	for _, at := range r.windowOpens {
		if at.After(opens) {
			opens = at
		}
	}
	if time.Until(opens) > 0 && o.idle != nil {
		o.idle(func() {
			select {
			case <-time.After(time.Until(opens)): // the window's own clock
			case <-ctx.Done():
			}
		})
	}
	err := r.waitFleet(ctx, max(0, time.Until(opens))+slowdown*90*time.Second, true)
	r.mon.finish()
	r.collect()
	if err != nil {
		return fail("%v", err)
	}
	if err := r.sim.CheckExclusiveAttachments(); err != nil {
		res.Violations = append(res.Violations, fmt.Sprintf("data: %v", err))
	}
	if r.terms != nil {
		terms, err := r.terms.stop()
		r.terms = nil
		if err != nil {
			return fail("%v", err)
		}
		res.Violations = append(res.Violations, judgeReplicas(terms, changesByGroup(r.sim.Requests(), r.mon.knownServers(), r.pools, r.fipIDs))...)
		if o.verbose {
			fmt.Fprintf(o.out, "seed %d: %s\n", o.seed, describeTerms(terms))
		}
	}
	if r.judge != nil && o.verbose {
		fmt.Fprintf(o.out, "seed %d: %s\n", o.seed, r.judge.describe())
	}
	res.Outcome = outcomeConverged
	for _, g := range groups {
		switch {
		case g.rollsBack():
			res.Outcome = outcomeRolledBack
		case g.halts() && res.Outcome == outcomeConverged:
			res.Outcome = outcomeHalted
		}
	}
	return res
}

// setUp starts the simulator with the fleet's images and load balancers
// and writes the daemon's files.
func (r *seedRun) setUp(opts sim.Options, steer steerPlan) error {
	dir, err := os.MkdirTemp("", fmt.Sprintf("phoenix-chaos-%d-", r.opts.seed))
	if err != nil {
		return err
	}
	r.dir = dir
	for _, g := range r.groups {
		if g.blocker && r.prom == nil {
			if r.prom, err = startFakeProm(steer.promStart); err != nil {
				return err
			}
		}
		if g.window == windowLater {
			r.windowOpens[g.name] = firstWhole(time.Now(), windowLead)
		}
	}
	opts.Password = r.password
	s, err := sim.New(opts)
	if err != nil {
		return fmt.Errorf("start the simulator: %w", err)
	}
	r.sim = s
	r.clouds = filepath.Join(dir, "clouds.yaml")
	if err := s.WriteCloudsYAML(r.clouds, "phoenix-sim"); err != nil {
		return err
	}
	secretFile := filepath.Join(dir, "webhook.key")
	if err := os.WriteFile(secretFile, r.secret, 0o600); err != nil {
		return err
	}
	var endpoints []string
	if r.replicas.replicas > 0 {
		if r.etcd, err = startEtcd(dir, r.replicas.members); err != nil {
			return err
		}
		cli, err := r.etcd.client()
		if err != nil {
			return err
		}
		r.terms = watchTerms(cli)
		endpoints = r.etcd.endpoints()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "cloud: phoenix-sim\ncontroller: {interval: 1s, listen: \"127.0.0.1:0\", webhook_secret_file: %s, parallel_groups: 4%s}\ngroups:\n",
		secretFile, r.replicas.coordinationYAML(endpoints))
	for _, g := range r.groups {
		if g.placed != nil {
			r.placedYAML(&b, g)
			continue
		}
		image, selector, watch := "", fmt.Sprintf("{name: gold-%s, newest: true}", g.name), "1m"
		if g.stage != nil {
			image, selector, watch = r.stageImage(), stageSelector(g), g.stage.after.String()
		} else {
			image = s.AddImage(sim.Image{Name: "gold-" + g.name, Created: time.Now().Add(-time.Hour)}).ID
		}
		r.old[g.name], r.final[g.name] = image, image
		fmt.Fprintf(&b, `  - name: %s
    count: %d
    image: %s
    flavor: m1.small
    networks: [private]
    rollout: {max_surge: %d, max_unavailable: %d, min_ready: 30ms, progress_deadline: %s, max_failures: %d, strategy: %s, on_failure: %s, watch: %s, create_backoff_max: %s%s}
    health:
      http: {port: %d, path: /healthz}
      interval: 100ms
      timeout: 100ms
      healthy_threshold: 2
      unhealthy_threshold: 3
      grace: 3s
`, g.name, g.count, selector, g.surge, g.unavailable, progressDeadline, g.maxFailures(), map[bool]string{false: "replace", true: "rebuild"}[g.rebuild], g.onFailure(), watch, createBackoffMax,
			r.rolloutSteering(g), s.HealthPort())
		if g.stage != nil && g.stage.follows == "" {
			fmt.Fprintf(&b, "    promote: {tag: %s, after: %s}\n", stageTag, g.stage.after)
		}
		if g.traffic {
			lb, err := s.AddLoadBalancer(sim.LoadBalancerSpec{Name: "lb-" + g.name, PoolName: "pool-" + g.name, Monitor: true, MonitorPath: "/healthz"})
			if err != nil {
				return err
			}
			r.pools[g.name] = lb.PoolID
			fmt.Fprintf(&b, "    traffic: {octavia: {load_balancer: lb-%s, pool: pool-%s, protocol_port: %d, drain: 100ms}}\n", g.name, g.name, s.HealthPort())
		}
		if g.floatingIP {
			fip, err := s.AddFloatingIP("chaos " + g.name)
			if err != nil {
				return err
			}
			r.fips[g.name], r.fipIDs[g.name] = fip.Address, fip.ID
			fmt.Fprintf(&b, "    traffic: {floating_ip: {address: %s, drain: 100ms}}\n", fip.Address)
		}
		if g.stateful {
			for i := range g.count {
				s.AddVolume(sim.VolumeSpec{Name: fmt.Sprintf("data-%s-%d", g.name, i)})
			}
			fmt.Fprintf(&b, "    stateful: {volumes: {name: data-%s-*}}\n", g.name)
			if g.keep == 0 {
				fmt.Fprintf(&b, "    backup: {volumes: snapshot, keep: 1}\n")
			} else {
				fmt.Fprintf(&b, "    backup: {volumes: snapshot, snapshot_before_delete: true, keep: %d}\n", g.keep)
			}
		}
		if g.keep > 0 && !g.stateful {
			fmt.Fprintf(&b, "    backup: {snapshot_before_delete: true, keep: %d}\n", g.keep)
		}
	}
	r.cfg = filepath.Join(dir, "phoenix.yaml")
	return os.WriteFile(r.cfg, []byte(b.String()), 0o600)
}

func (r *seedRun) close() {
	close(r.stopWatch)
	r.watchers.Wait()
	for _, d := range r.daemons {
		if d != nil {
			d.kill()
		}
	}
	if r.terms != nil {
		_, _ = r.terms.stop()
	}
	r.etcd.close()
	r.prom.close()
	if r.sim != nil {
		r.sim.Close()
	}
	if r.dir != "" {
		_ = os.RemoveAll(r.dir)
	}
}

// servingLine is what a daemon prints once it serves.
var servingLine = regexp.MustCompile(`serving on (https?://\S+)`)

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// chaosDaemon is one `phoenix daemon` process.
type chaosDaemon struct {
	id   string // its --replica-id; "" without replicas
	cmd  *exec.Cmd
	url  string
	done chan struct{}
}

func (d *chaosDaemon) kill() {
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

// startDaemon starts the daemon process of replica i (the daemon, without
// replicas) and waits for it to serve.
func (r *seedRun) startDaemon(i int) error {
	n := len(r.logs)
	id, name, who := "", "", "the daemon"
	args := []string{"daemon", "--config", r.cfg, "--poll", "50ms", "--stop-grace", "2s",
		"--request-timeout", "2s", "--retry-wait-min", "20ms", "--retry-wait-max", "200ms", "--create-backoff", "500ms", "--log-level", "debug"}
	if r.replicas.replicas > 0 {
		id = replicaID(i)
		name, who = "-"+id, "the daemon of replica "+id
		args = append(args, "--replica-id", id)
	}
	logPath := filepath.Join(r.dir, fmt.Sprintf("daemon-%d%s.log", n, name))
	outPath := filepath.Join(r.dir, fmt.Sprintf("daemon-%d%s.out", n, name))
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	outFile, err := os.Create(outPath)
	if err != nil {
		logFile.Close()
		return err
	}
	r.logs = append(r.logs, logPath, outPath)
	cmd := exec.Command(r.opts.bin, args...)
	cmd.Env = append(os.Environ(), "OS_CLIENT_CONFIG_FILE="+r.clouds, "OS_CLOUD=", "PHOENIX_CHAOS_BUG="+r.opts.bug)
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the daemon: %w", err)
	}
	d := &chaosDaemon{id: id, cmd: cmd, done: make(chan struct{})}
	found := make(chan string, 1)
	go func() {
		defer close(d.done)
		defer logFile.Close()
		defer outFile.Close()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			fmt.Fprintln(outFile, sc.Text())
			if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		_ = cmd.Wait()
	}()
	select {
	case d.url = <-found:
	case <-d.done:
		b, _ := os.ReadFile(logPath)
		return fmt.Errorf("%s exited at start:\n%s", who, tail(string(b), 20))
	case <-time.After(30 * time.Second):
		d.kill()
		return fmt.Errorf("%s never said where it serves", who)
	}
	r.mu.Lock()
	r.daemons[i] = d // also read by the steering watchers
	r.mu.Unlock()
	return nil
}

// killReplica ends replica i's daemon (the daemon, without replicas) with
// SIGKILL and, with restart, starts it again at once. The daemon alone
// is started once what the dead one's requests did has happened (a real
// restart takes longer than that); a replica needs no such wait, as its
// groups wait for its lease to end before anyone acts on them again.
func (r *seedRun) killReplica(ctx context.Context, i int, restart bool) error {
	r.mu.Lock()
	d := r.daemons[i]
	r.daemons[i] = nil
	r.mu.Unlock()
	if d == nil {
		return fmt.Errorf("replica %s is down already", replicaID(i))
	}
	r.collectFrom(d)
	d.kill()
	r.kills++
	if !restart {
		return nil
	}
	deadline := time.Now().Add(15 * time.Second)
	for r.replicas.replicas == 0 && r.inFlight() > 0 {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the dead daemon's requests were still in flight after 15s")
		}
		time.Sleep(5 * time.Millisecond) // polling the simulator
	}
	return r.startDaemon(i)
}

// live are the daemons up now.
func (r *seedRun) live() []*chaosDaemon {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*chaosDaemon
	for _, d := range r.daemons {
		if d != nil {
			out = append(out, d)
		}
	}
	return out
}

// publish publishes a group's next image and tells the daemon as the
// group's trigger says. The first is the one that fails, for a group
// whose new image does: it is never the one the group must end on.
func (r *seedRun) publish(ctx context.Context, g chaosGroup, first bool) error {
	if g.trigger == byCompromised {
		return r.compromise(ctx, g)
	}
	if g.placed != nil {
		r.publishPlaced(g)
		return nil
	}
	if g.stage != nil && g.stage.follows != "" {
		return nil // prod's image comes from staging's promotion
	}
	if g.stage != nil {
		return r.publishStage(ctx, g)
	}
	spec := sim.Image{Name: "gold-" + g.name}
	if first {
		spec.BootFails, spec.FailsAfter = g.bad, g.leaky
	}
	img := r.sim.AddImage(spec)
	if spec.FailsAfter > 0 {
		// Told before any server of it can boot.
		r.mon.failsAfterGate(img.ID)
	}
	r.mu.Lock()
	switch {
	case spec.FailsAfter > 0:
		r.failing[g.name] = img.ID
	case !spec.BootFails:
		r.final[g.name] = img.ID
	}
	r.mu.Unlock()
	return r.announce(ctx, g, img.ID)
}

// announce tells the daemon of a group's new image as its trigger says;
// the image watch needs no word.
func (r *seedRun) announce(ctx context.Context, g chaosGroup, image string) error {
	switch g.trigger {
	case byImageEvent:
		return r.send(ctx, trigger.Event{Type: trigger.TypeImagePublished, Image: image})
	case byPatchEvent:
		return r.send(ctx, trigger.Event{Type: trigger.TypeSecurityPatch, Groups: []string{g.name}, Reason: "chaos"})
	}
	return nil
}

// compromise reports one healthy server of the group compromised — one
// of its protected servers, when the group draws that — : every server
// built like it must go, but the protected ones (the reported one goes,
// protected or not), held or not.
func (r *seedRun) compromise(ctx context.Context, g chaosGroup) error {
	r.mu.Lock()
	protected := slices.Clone(r.protected[g.name])
	r.mu.Unlock()
	var victims []sim.Server
	for _, s := range r.sim.Servers() {
		if groupOfServer(s) == g.name && s.Healthy && slices.Contains(protected, s.ID) == (g.compromiseProtected && len(protected) > 0) {
			victims = append(victims, s)
		}
	}
	if len(victims) == 0 {
		return fmt.Errorf("no healthy server in group %s to report", g.name)
	}
	v := victims[r.rng.IntN(len(victims))]
	var twins []string
	boots := map[string]bool{}
	for _, s := range twinsToGo(r.sim.Servers(), g.name, v, protected) {
		twins = append(twins, s.ID)
		key, _ := boot(s)
		boots[key] = true
	}
	r.mu.Lock()
	r.mustGo[g.name] = twins
	r.protected[g.name] = slices.DeleteFunc(r.protected[g.name], func(id string) bool { return id == v.ID })
	if g.hold {
		r.urgentBoots[g.name] = boots
	}
	r.mu.Unlock()
	r.mon.excuse(v.ID)
	r.mon.compromised(v.ID)
	r.mon.urgent(g.name, time.Now())
	return r.send(ctx, trigger.Event{Type: trigger.TypeInstanceCompromised, Server: v.ID, Reason: "chaos"})
}

// send delivers a signed event to every daemon up, at once, as the
// README asks of senders to replicas: each acts on the groups it owns and
// keeps the rest. A replica may refuse one that names nothing it can find
// (a compromised server its owner deleted already, before the event
// reached this one) while another accepts it.
func (r *seedRun) send(ctx context.Context, e trigger.Event) error {
	r.mu.Lock()
	r.eventSeq++
	e.ID = fmt.Sprintf("chaos-%d-%d", r.opts.seed, r.eventSeq)
	r.mu.Unlock()
	live := r.live()
	errs := make([]error, len(live))
	var wg sync.WaitGroup
	for i, d := range live {
		wg.Go(func() { errs[i] = r.sendTo(ctx, d, e) })
	}
	wg.Wait()
	accepted := slices.Contains(errs, nil)
	for _, err := range errs {
		if err != nil && (!errors.Is(err, errUnknownTarget) || !accepted) {
			return err
		}
	}
	return nil
}

// errUnknownTarget is wrapped by a daemon's 422: the event names nothing
// it knows.
var errUnknownTarget = errors.New("unknown target")

// sendTo delivers a signed event to one daemon, again while it answers
// that it cannot take it now (a 5xx while the cloud fails); a 409 says an
// earlier try got through.
func (r *seedRun) sendTo(ctx context.Context, d *chaosDaemon, e trigger.Event) error {
	c := retryablehttp.NewClient()
	c.Logger, c.RetryMax = nil, 0
	who := ""
	if d.id != "" {
		who = " by replica " + d.id
	}
	var last string
	for range 50 {
		status, body, err := trigger.Send(ctx, c, d.url+"/v1/events", r.secret, e, time.Now())
		switch {
		case err == nil && (status == http.StatusAccepted || status == http.StatusConflict):
			return nil
		case err == nil && status == http.StatusUnprocessableEntity:
			return fmt.Errorf("event %s refused%s: HTTP %d %s: %w", e.Type, who, status, body, errUnknownTarget)
		case err == nil && status < 500:
			return fmt.Errorf("event %s refused%s: HTTP %d %s", e.Type, who, status, body)
		case err != nil:
			last = err.Error()
		default:
			last = fmt.Sprintf("HTTP %d %s", status, body)
		}
		time.Sleep(100 * time.Millisecond) // the sender's back-off
	}
	return fmt.Errorf("event %s never accepted%s: %s", e.Type, who, last)
}

// flap makes one healthy server's application fail its health checks for
// a while.
func (r *seedRun) flap(ctx context.Context, pick uint64, hold time.Duration) error {
	var up []sim.Server
	for _, s := range r.sim.Servers() {
		if s.Healthy && groupOfServer(s) != "" && !r.placedServer(s) {
			up = append(up, s)
		}
	}
	if len(up) == 0 {
		return nil
	}
	v := up[pick%uint64(len(up))]
	r.mon.excuse(v.ID)
	if r.judge != nil {
		r.judge.flap(v.ID)
	}
	if err := r.sim.SetHealth(v.ID, sim.HealthFailing); err != nil {
		return nil // deleted meanwhile
	}
	r.mu.Lock()
	r.flapped = append(r.flapped, v.ID)
	r.mu.Unlock()
	go func() {
		select {
		case <-time.After(hold): // the flap's length
		case <-ctx.Done():
		}
		_ = r.sim.SetHealth(v.ID, sim.HealthUp)
	}()
	return nil
}

// fullQuota opens a quota window: the instance quota is set to what
// exists (unless a window is open already) and freed once the last open
// window ends.
func (r *seedRun) fullQuota(ctx context.Context, hold time.Duration) error {
	r.mu.Lock()
	if r.quotaHolds == 0 {
		r.sim.SetQuota(sim.Quota{Instances: len(r.sim.Servers())})
	}
	r.quotaHolds++
	r.quotaWindow(true)
	r.mu.Unlock()
	r.quotaWindows.Add(1)
	go func() {
		defer r.quotaWindows.Done()
		select {
		case <-time.After(hold): // how long the quota stays full
		case <-ctx.Done():
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.quotaHolds--; r.quotaHolds == 0 {
			r.sim.SetQuota(sim.Quota{Instances: -1})
		}
		r.quotaWindow(false)
	}()
	return nil
}

// calm ends the chaos: no more faults, every flapped server healthy again,
// and the quota windows closed (each lasts as long as it was drawn).
func (r *seedRun) calm() {
	r.regionsCalm()
	r.sim.ClearFaults()
	r.sim.ClearBootFaults()
	r.quotaWindows.Wait()
	r.mu.Lock()
	flapped := slices.Clone(r.flapped)
	r.mu.Unlock()
	for _, id := range flapped {
		_ = r.sim.SetHealth(id, sim.HealthUp)
	}
}

// waitFleet waits for every group to reach its end: count servers, all
// healthy, none deleting, on its final image — for a group whose new
// image fails and that rolls back, the image it ran before, the failing
// one rejected; for one that halts, halted on its old image with the
// failing image's servers that served — with the daemon saying the same.
func (r *seedRun) waitFleet(ctx context.Context, patience time.Duration, end bool) error {
	deadline := time.Now().Add(patience)
	var why string
	for {
		var hopeless bool
		why, hopeless = r.fleetWhyNot(end)
		switch {
		case why == "":
			return nil
		case hopeless:
			return fmt.Errorf("will not converge: %s", why)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("did not converge within %s: %s", patience, why)
		}
		if first, _ := r.mon.violations(); len(first) > 0 && r.opts.bug != "" {
			return fmt.Errorf("stopped waiting: the injected bug was caught")
		}
		time.Sleep(50 * time.Millisecond) // polling the simulator and the daemon
	}
}

// fleetWhyNot says why the fleet is not at its end (see waitFleet) yet, ""
// once it is. hopeless is set when a group will not get there by itself:
// it halted, or rolled back, on an image that does not fail — in the
// first build, or at the end, when every image is published and none
// will lift the halt.
func (r *seedRun) fleetWhyNot(end bool) (why string, hopeless bool) {
	byName, err := r.groupStatuses()
	if err != nil {
		return err.Error(), false
	}
	servers := r.sim.Servers()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range servers {
		if groupOfServer(s) == "" {
			return fmt.Sprintf("server %s has no group tag", s.Name), false
		}
	}
	for _, g := range r.groups {
		gs, ok := byName[g.name]
		if g.placed != nil {
			if why, hopeless := r.placedWhyNot(g, gs, ok); why != "" {
				return why, hopeless
			}
			continue
		}
		want := r.final[g.name]
		halt := end && g.halts()
		back := end && g.rollsBack()
		// leaked are the servers of the image failing after its gate that
		// a halt keeps: they served, it is not the halt's to remove them.
		leaked := halt && g.leaky > 0
		switch {
		case !ok && r.replicas.replicas > 0:
			return fmt.Sprintf("group %s: no replica up runs it", g.name), false
		case !ok:
			return fmt.Sprintf("group %s missing from the daemon's status", g.name), false
		case (!end || !g.fails()) && (gs.Halted != "" || gs.RolledBack != ""):
			return fmt.Sprintf("group %s, whose images do not fail, gave up: %s%s", g.name, gs.Halted, gs.RolledBack), true
		case halt && gs.Halted == "":
			return fmt.Sprintf("group %s: its new image fails, and it has not halted (%s)", g.name, gs.Progress), false
		case !halt && (gs.InProgress || gs.Halted != ""):
			return fmt.Sprintf("group %s: %s %s", g.name, gs.Progress, gs.Halted), false
		case back && gs.RolledBack == "":
			return fmt.Sprintf("group %s: its new image fails, and its status names no image rejected by a rollback", g.name), false
		case !halt && gs.DesiredImage.ID != want:
			return fmt.Sprintf("group %s: the daemon wants image %s, not %s", g.name, gs.DesiredImage.ID, want), false
		}
		var mine []sim.Server
		for _, s := range servers {
			if groupOfServer(s) == g.name {
				mine = append(mine, s)
			}
		}
		switch {
		case leaked && len(mine) > g.count+g.surge:
			return fmt.Sprintf("group %s, halted, has %d servers, above %d", g.name, len(mine), g.count+g.surge), false
		case halt && !leaked && (len(mine) < g.count-g.unavailable || len(mine) > g.count):
			// A halted group keeps what serves: an old server its budget
			// let go before the new image failed is not booted again.
			return fmt.Sprintf("group %s, halted, has %d servers, want %d to %d", g.name, len(mine), g.count-g.unavailable, g.count), false
		case !halt && len(mine) != g.count:
			return fmt.Sprintf("group %s has %d servers, want %d", g.name, len(mine), g.count), false
		}
		addresses := map[string]bool{}
		kept := map[string]bool{} // halted, strategy rebuild: in ERROR, may stay a (drained) member
		healthyOld := 0
		for _, s := range mine {
			if slices.Contains(r.protected[g.name], s.ID) && !halt {
				// Protected: left as it is, on the image it ran (the
				// monitor checks it was never touched).
				if !s.Healthy || s.Deleting {
					return fmt.Sprintf("group %s: protected server %s is not healthy (%s)", g.name, s.Name, s.Status), false
				}
				addresses[s.Address] = true
				continue
			}
			if halt {
				// Halted: what serves is the old image; strategy rebuild
				// keeps a server whose rebuild failed (in ERROR, not
				// serving), replace removes it.
				switch {
				case s.Healthy && !s.Deleting && s.ImageID == want:
					healthyOld++
					addresses[s.Address] = true
				case leaked && !s.Deleting && s.Status == "ACTIVE" && s.ImageID == r.failing[g.name] && s.Metadata[controller.MetaReadyAt] != "":
					kept[s.Address] = true
				case g.rebuild && s.Status == "ERROR":
					kept[s.Address] = true
				default:
					return fmt.Sprintf("group %s, halted: server %s is %s on image %s", g.name, s.Name, s.Status, s.ImageID), false
				}
				continue
			}
			switch {
			case !s.Healthy || s.Deleting:
				return fmt.Sprintf("group %s: server %s is not healthy (%s)", g.name, s.Name, s.Status), false
			case s.ImageID != want:
				return fmt.Sprintf("group %s: server %s runs image %s, want %s", g.name, s.Name, s.ImageID, want), false
			case slices.Contains(r.mustGo[g.name], s.ID):
				return fmt.Sprintf("group %s: server %s, built like the compromised one, is still there", g.name, s.Name), false
			}
			addresses[s.Address] = true
		}
		if g.stateful && !halt {
			held := map[string]int{}
			for _, v := range r.sim.Volumes() {
				if strings.HasPrefix(v.Name, "data-"+g.name+"-") && v.Status == "in-use" {
					held[v.ServerID]++
				}
			}
			for _, s := range mine {
				if held[s.ID] != 1 {
					return fmt.Sprintf("group %s: server %s holds %d data volumes, want 1", g.name, s.Name, held[s.ID]), false
				}
			}
		}
		if halt && !leaked && healthyOld < g.count-g.unavailable {
			return fmt.Sprintf("group %s, halted: %d servers serve the old image, below %d", g.name, healthyOld, g.count-g.unavailable), false
		}
		if pool := r.pools[g.name]; pool != "" {
			members := r.sim.Members(pool)
			serving := 0
			for _, m := range members {
				if !addresses[m.Address] && !kept[m.Address] {
					return fmt.Sprintf("group %s: pool member %s is none of its servers", g.name, m.Address), false
				}
				if addresses[m.Address] && m.Weight > 0 && m.AdminStateUp {
					serving++
				}
			}
			wantServing := len(mine)
			if halt {
				wantServing = healthyOld
			}
			if serving != wantServing && !leaked {
				return fmt.Sprintf("group %s: %d pool members serve, want %d", g.name, serving, wantServing), false
			}
		}
		if addr := r.fips[g.name]; addr != "" {
			for _, f := range r.sim.FloatingIPs() {
				if f.Address == addr && !addresses[f.FixedIP] && !(leaked && kept[f.FixedIP]) {
					return fmt.Sprintf("group %s: floating IP %s points at %q, none of its servers", g.name, addr, f.FixedIP), false
				}
			}
		}
	}
	return "", false
}

// groupStatuses is each group's status from the daemon that runs it:
// the daemon, or the replica up whose status lists it among those it owns
// (the others name only its owner). A group two replicas say they run —
// a handover between their answers — is left out for now.
func (r *seedRun) groupStatuses() (map[string]daemon.GroupStatus, error) {
	out := map[string]daemon.GroupStatus{}
	twice := map[string]bool{}
	for _, d := range r.live() {
		st, err := statusOf(d.url)
		if err != nil {
			return nil, err
		}
		for _, g := range st.Groups {
			if st.Replica != nil && !slices.Contains(st.Replica.Owned, g.Group) {
				continue
			}
			if _, ok := out[g.Group]; ok {
				twice[g.Group] = true
			}
			out[g.Group] = g
		}
	}
	for g := range twice {
		delete(out, g)
	}
	return out, nil
}

// statusOf is the status a daemon at url shows.
func statusOf(url string) (daemon.Status, error) {
	var st daemon.Status
	body, err := get(url, "/v1/status")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		return st, fmt.Errorf("status: %w", err)
	}
	return st, nil
}

// get reads path of the daemon at base.
func get(base, path string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(base + path)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", path, err)
	}
	return string(b), nil
}

// collect keeps the daemons' status and metrics output for the secret
// scan.
func (r *seedRun) collect() {
	for _, d := range r.live() {
		r.collectFrom(d)
	}
}

func (r *seedRun) collectFrom(d *chaosDaemon) {
	for _, p := range []string{"/v1/status", "/metrics"} {
		if body, err := get(d.url, p); err == nil {
			r.outputs = append(r.outputs, body)
		}
	}
}

// scanSecrets looks for the cloud password and the webhook secret in
// every log line, status and metrics output of the run.
func (r *seedRun) scanSecrets() []string {
	var leaks []string
	secrets := map[string]string{"the cloud password": r.password, "the webhook secret": string(r.secret)}
	for what, secret := range secrets {
		if secret == "" {
			continue
		}
		for _, p := range r.logs {
			b, err := os.ReadFile(p)
			if err == nil && strings.Contains(string(b), secret) {
				leaks = append(leaks, fmt.Sprintf("secrets: %s appears in %s", what, filepath.Base(p)))
			}
		}
		for _, out := range r.outputs {
			if strings.Contains(out, secret) {
				leaks = append(leaks, fmt.Sprintf("secrets: %s appears in status or metrics output", what))
				break
			}
		}
	}
	return leaks
}

func (r *seedRun) keepLogs(dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	for _, p := range r.logs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%d-%s", r.opts.seed, filepath.Base(p))), b, 0o600)
	}
}
