package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/trigger"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// The operator's steering (invariant 7), drawn into a seed: servers
// protected once the first build is done, a group held with `phoenix
// hold` and released with `phoenix release`, a Prometheus blocker the
// seed's own fake Prometheus makes fire or fail, and maintenance windows.
// The monitor (chaossteermon.go) judges the times the harness steered.

// How a group's maintenance window is drawn.
const (
	windowNone = ""
	// windowLater opens at the first whole minute at least
	// windowLead after the seed is set up: closed when the new image is
	// published, open a little later.
	windowLater = "opens later"
	// windowAlways is open all day: it must change nothing.
	windowAlways = "open all day"
)

// windowLead is how far ahead of its set-up a seed's window opens at the
// earliest: past the first build, so its new image is published while
// the window is closed.
const windowLead = 20 * time.Second

// What the seed's fake Prometheus answers to the blocker's query.
const (
	promQuiet  int32 = iota // no alert firing: nothing blocks
	promFiring              // one alert firing
	promError               // HTTP 500: the query cannot be answered
	promSilent              // no answer within the blocker's timeout
)

var promStates = map[int32]string{
	promQuiet:  "no alert fires",
	promFiring: "an alert fires",
	promError:  "it answers 500",
	promSilent: "it answers nothing within the blocker's timeout",
}

// promToggle is one change of what the fake Prometheus answers.
type promToggle struct {
	at    time.Duration
	state int32
}

// steerPlan is the seed-wide part of the steering draw: what the fake
// Prometheus answers at first (before any daemon starts) and its changes.
type steerPlan struct {
	promStart int32
	toggles   []promToggle
}

// drawSteering draws the steering from its own stream, so that the
// fleets, faults and kills of every seed stay what they were. Groups whose
// new image fails draw none: a halt or rollback is judged on its own.
func drawSteering(seed uint64, groups []chaosGroup, phase time.Duration) steerPlan {
	rng := rand.New(rand.NewPCG(seed, 0x57ee7))
	var p steerPlan
	for i := range groups {
		g := &groups[i]
		if g.fails() {
			continue
		}
		if !g.floatingIP && g.count >= 2 && rng.IntN(5) == 0 {
			g.protect = 1
			if g.count >= 4 && rng.IntN(3) == 0 {
				g.protect = 2
			}
			// Compromise overrides protection.
			g.compromiseProtected = g.trigger == byCompromised && rng.IntN(3) == 0
		}
		if rng.IntN(6) == 0 {
			g.hold = true
			// A compromise is reported at the start: held before it, or
			// the hold would find a rebuild that must go on under way.
			g.holdFirst = g.trigger == byCompromised || rng.IntN(2) == 0
			if !g.holdFirst {
				g.holdAt = time.Duration(rng.Int64N(int64(phase / 2)))
			}
			g.holdFor = 2*time.Second + time.Duration(rng.Int64N(int64(3*time.Second)))
			g.urgentHeld = g.trigger != byCompromised && rng.IntN(3) == 0
		}
	}
	// Steering a compromised group changes nothing: its rebuild is urgent.
	steerable := func(g chaosGroup) bool { return !g.fails() && !g.hold && g.trigger != byCompromised }
	if rng.IntN(5) == 0 {
		var picked []int
		for i, g := range groups {
			if steerable(g) && rng.IntN(2) == 0 {
				picked = append(picked, i)
			}
		}
		for i, g := range groups {
			if len(picked) == 0 && steerable(g) {
				picked = append(picked, i)
			}
		}
		for _, i := range picked {
			groups[i].blocker = true
		}
		if len(picked) > 0 {
			p = drawPromToggles(rng, phase)
		}
	}
	if rng.IntN(8) == 0 {
		var free []int
		for i, g := range groups {
			if steerable(g) && !g.blocker {
				free = append(free, i)
			}
		}
		if len(free) > 0 {
			g := &groups[free[rng.IntN(len(free))]]
			g.window = windowLater
			if rng.IntN(3) == 0 {
				g.window = windowAlways
			}
		}
	}
	return p
}

// drawPromToggles draws what the fake Prometheus answers: blocking from
// the start (before any daemon asks) or not, then one to three changes
// within the chaos and a little after, ending quiet so the groups
// converge.
func drawPromToggles(rng *rand.Rand, phase time.Duration) steerPlan {
	blocking := func() int32 {
		switch rng.IntN(8) {
		case 0, 1:
			return promError
		case 2:
			return promSilent
		}
		return promFiring
	}
	var p steerPlan
	if rng.IntN(3) != 0 {
		p.promStart = blocking()
	}
	state, at := p.promStart, time.Duration(0)
	for range 1 + rng.IntN(3) {
		at += 500*time.Millisecond + time.Duration(rng.Int64N(int64(phase)))
		switch {
		case state != promQuiet && rng.IntN(4) == 0:
			state = blocking() // blocking on, for another reason
		case state != promQuiet:
			state = promQuiet
		default:
			state = blocking()
		}
		p.toggles = append(p.toggles, promToggle{at: at, state: state})
	}
	if state != promQuiet {
		at += 500*time.Millisecond + time.Duration(rng.Int64N(int64(2*time.Second)))
		p.toggles = append(p.toggles, promToggle{at: at, state: promQuiet})
	}
	return p
}

// steerSteps are the steps of the steering draw: a group's hold and
// release (and an urgent patch while held), and the fake Prometheus's
// changes. The hold of a group held before its new image is published is
// not among them: chaosScenario puts it before the publish.
func steerSteps(groups []chaosGroup, p steerPlan) []chaosStep {
	var steps []chaosStep
	for _, g := range groups {
		if !g.hold {
			continue
		}
		if !g.holdFirst {
			steps = append(steps, holdStep(g))
		}
		if g.urgentHeld {
			steps = append(steps, chaosStep{at: g.holdAt + g.holdFor/2, what: fmt.Sprintf("group %s: an urgent security.patch while held", g.name),
				do: func(ctx context.Context, r *seedRun) error { return r.urgentPatch(ctx, g) }})
		}
		steps = append(steps, chaosStep{at: g.holdAt + g.holdFor, what: fmt.Sprintf("group %s: phoenix release", g.name),
			do: func(ctx context.Context, r *seedRun) error { return r.release(ctx, g) }})
	}
	for _, t := range p.toggles {
		steps = append(steps, chaosStep{at: t.at, what: "Prometheus: " + promStates[t.state],
			do: func(_ context.Context, r *seedRun) error { r.promSet(t.state); return nil }})
	}
	return steps
}

func holdStep(g chaosGroup) chaosStep {
	return chaosStep{at: g.holdAt, what: fmt.Sprintf("group %s: phoenix hold", g.name),
		do: func(ctx context.Context, r *seedRun) error { return r.hold(ctx, g) }}
}

// describeSteering is the steering part of chaosGroup.describe.
func (g chaosGroup) describeSteering() string {
	var s string
	if g.protect > 0 {
		s += fmt.Sprintf("; %d of its servers protected once built", g.protect)
		if g.compromiseProtected {
			s += ", the compromised one among them"
		}
	}
	if g.hold {
		when := fmt.Sprintf("at %s", g.holdAt.Round(time.Millisecond))
		if g.holdFirst {
			when = "before its new image"
		}
		s += fmt.Sprintf("; held %s for %s", when, g.holdFor.Round(time.Millisecond))
		if g.urgentHeld {
			s += ", with an urgent security.patch while held"
		}
	}
	if g.blocker {
		s += "; a Prometheus blocker (the seed's fake Prometheus)"
	}
	switch g.window {
	case windowLater:
		s += fmt.Sprintf("; a maintenance window opening at the first whole minute %s after set-up", windowLead)
	case windowAlways:
		s += "; a maintenance window open all day"
	}
	return s
}

// rolloutSteering is what the group's rollout block gains for its
// blocker and window, in YAML flow style.
func (r *seedRun) rolloutSteering(g chaosGroup) string {
	var s string
	if g.blocker {
		s += fmt.Sprintf(", blockers: {prometheus: {url: %q, query: 'ALERTS{alertstate=\"firing\"}', timeout: 1s}}", r.prom.url)
	}
	switch g.window {
	case windowLater:
		opens := r.windowOpens[g.name]
		s += fmt.Sprintf(", windows: [\"daily %s-%s UTC\"]", opens.UTC().Format("15:04"), opens.Add(10*time.Minute).UTC().Format("15:04"))
	case windowAlways:
		s += `, windows: ["daily 00:00-24:00 UTC"]`
	}
	return s
}

// firstWhole is the first whole minute at least lead after now.
func firstWhole(now time.Time, lead time.Duration) time.Time {
	t := now.Add(lead)
	w := t.Truncate(time.Minute)
	if w.Before(t) {
		w = w.Add(time.Minute)
	}
	return w
}

// fakeProm answers the instant query API of Prometheus as the seed's
// steps set it.
type fakeProm struct {
	srv   *http.Server
	url   string
	state atomic.Int32
}

func startFakeProm(state int32) (*fakeProm, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fake Prometheus: %w", err)
	}
	p := &fakeProm{url: "http://" + ln.Addr().String()}
	p.state.Store(state)
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/query", p.query)
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func (p *fakeProm) query(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch p.state.Load() {
	case promFiring:
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[`+
			`{"metric":{"__name__":"ALERTS","alertname":"ChaosPage","alertstate":"firing"},"value":[%d,"1"]}]}}`, time.Now().Unix())
	case promError:
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"status":"error","errorType":"internal","error":"chaos: the query failed"}`)
	case promSilent:
		select {
		case <-req.Context().Done(): // the blocker gave up, as it must
		case <-time.After(10 * time.Second):
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	default:
		_, _ = io.WriteString(w, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
	}
}

func (p *fakeProm) close() {
	if p != nil {
		_ = p.srv.Close()
	}
}

// promSet changes what the fake Prometheus answers. A blocking span ends
// before the answer changes, and starts after: the monitor never judges a
// moment the blocker might have let pass.
func (r *seedRun) promSet(state int32) {
	was := r.prom.state.Load() != promQuiet
	now := state != promQuiet
	if was && !now {
		at := time.Now()
		for _, g := range r.groups {
			if g.blocker {
				r.mon.endSteer(r.spans[g.name], at)
			}
		}
	}
	r.prom.state.Store(state)
	if !was && now {
		at := time.Now()
		for _, g := range r.groups {
			if g.blocker {
				r.spans[g.name] = r.mon.steer(g.name, "blocked by Prometheus", at)
				r.judgeFrom(r.spans[g.name], g.name, "blocked", at, blockerGrace)
			}
		}
	}
}

// steerFromStart opens the spans steered since before the first daemon
// started: a blocker blocking from the start, a window closed until it
// opens. No round ever decided otherwise, so they are judged from t0 on,
// with no grace.
func (r *seedRun) steerFromStart(t0 time.Time) {
	for _, g := range r.groups {
		if g.blocker && r.prom.state.Load() != promQuiet {
			r.spans[g.name] = r.mon.steer(g.name, "blocked by Prometheus", t0)
			r.mon.judgeSpanFrom(r.spans[g.name], t0)
		}
		if opens := r.windowOpens[g.name]; g.window == windowLater && t0.Before(opens) {
			sp := r.mon.steer(g.name, "outside its maintenance window", t0)
			r.mon.judgeSpanFrom(sp, t0)
			r.mon.endSteer(sp, opens)
		}
	}
}

// judgeFrom has the monitor judge span from the end of the first round of
// group that ended after the span opened and reported steering starting
// with prefix in the daemon's status — or from grace after it opened,
// whichever comes first. A group's rounds never overlap, so every later
// round saw what that one did. A hold passes "": it is on the servers
// before the span opens, and any round that starts later reads it. A
// blocker reuses its verdict for 5 s, so its round must have reported
// "blocked": later rounds reuse that verdict or ask again.
func (r *seedRun) judgeFrom(span *steerSpan, group, prefix string, opened time.Time, grace time.Duration) {
	r.watchers.Add(1)
	go func() {
		defer r.watchers.Done()
		deadline := opened.Add(grace)
		for time.Now().Before(deadline) {
			if at, ok := r.steeredSince(group, prefix); ok && !at.Before(opened) {
				r.mon.judgeSpanFrom(span, at)
				return
			}
			select {
			case <-time.After(50 * time.Millisecond): // polling the status
			case <-r.stopWatch:
				return
			}
		}
		r.mon.judgeSpanFrom(span, deadline)
	}()
}

// steeredSince asks the daemon running group whether its last round of
// it reported steering starting with prefix (any, for ""), and when that
// round ended. (A group's rounds never overlap across replicas either:
// the next owner acts only once fencing stopped the last.)
func (r *seedRun) steeredSince(group, prefix string) (time.Time, bool) {
	byName, err := r.groupStatuses()
	if err != nil {
		return time.Time{}, false
	}
	if g, ok := byName[group]; ok && strings.HasPrefix(g.Status.Steering, prefix) {
		return g.LastReconcile, true
	}
	return time.Time{}, false
}

// cliAttempt bounds one run of a phoenix command: it takes well under a
// second, but waits a minute for a request the chaos never answers.
const cliAttempt = slowdown * 5 * time.Second

// phoenixCLI runs the operator's phoenix command on the seed's
// configuration and cloud, as an operator would: again, a few times, when
// it fails or hangs on a cloud the chaos makes fail.
func (r *seedRun) phoenixCLI(ctx context.Context, args ...string) error {
	args = append(args, "--config", r.cfg, "--log-level", "warn")
	var last string
	for range 10 {
		actx, cancel := context.WithTimeout(ctx, cliAttempt)
		cmd := exec.CommandContext(actx, r.opts.bin, args...)
		cmd.Env = append(os.Environ(), "OS_CLIENT_CONFIG_FILE="+r.clouds, "OS_CLOUD=")
		out, err := cmd.CombinedOutput()
		cancel()
		r.outputs = append(r.outputs, string(out)) // for the secret scan
		if err == nil {
			return nil
		}
		last = fmt.Sprintf("%v: %s", err, tail(strings.TrimSpace(string(out)), 5))
		select {
		case <-time.After(200 * time.Millisecond): // the operator's pause before trying again
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return fmt.Errorf("phoenix %s: %s", args[0], last)
}

// protectServers protects, once the first build is done, the servers each
// group draws: with `phoenix protect`, before any new image.
func (r *seedRun) protectServers(ctx context.Context) error {
	servers := r.sim.Servers()
	for _, g := range r.groups {
		if g.protect == 0 {
			continue
		}
		var ids []string
		for _, s := range servers {
			if groupOfServer(s) == g.name && s.Healthy {
				ids = append(ids, s.ID)
			}
		}
		slices.Sort(ids)
		r.rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		ids = ids[:min(g.protect, len(ids))]
		args := []string{"protect", "--reason", "chaos: a protected server"}
		for _, id := range ids {
			args = append(args, "--server", id)
		}
		if err := r.phoenixCLI(ctx, args...); err != nil {
			return err
		}
		for _, id := range ids {
			s, ok := r.sim.Server(id)
			if !ok {
				return fmt.Errorf("protected server %s is gone", id)
			}
			r.mon.protect(s)
		}
		r.mu.Lock()
		r.protected[g.name] = ids
		r.mu.Unlock()
	}
	return nil
}

// hold holds the group with `phoenix hold`: from when it returned no
// voluntary replacement may start.
func (r *seedRun) hold(ctx context.Context, g chaosGroup) error {
	if err := r.phoenixCLI(ctx, "hold", "--group", g.name, "--reason", "chaos: held", "--by", "phoenix-harness"); err != nil {
		return err
	}
	at := time.Now()
	r.spans[g.name] = r.mon.steer(g.name, "held", at)
	r.judgeFrom(r.spans[g.name], g.name, "", at, holdGrace)
	return nil
}

// release releases the group with `phoenix release` — once an urgent
// rebuild asked for while it was held went through: what an urgent patch
// or a compromise designates must go whatever holds.
func (r *seedRun) release(ctx context.Context, g chaosGroup) error {
	r.mu.Lock()
	boots := r.urgentBoots[g.name]
	r.mu.Unlock()
	if len(boots) > 0 {
		if err := r.waitGone(ctx, g, boots, slowdown*60*time.Second); err != nil {
			return fmt.Errorf("while held: %w", err)
		}
	}
	r.mon.endSteer(r.spans[g.name], time.Now())
	return r.phoenixCLI(ctx, "release", "--group", g.name)
}

// urgentPatch sends a security.patch with urgency for a held group: it
// must rebuild every server there was, hold or not.
func (r *seedRun) urgentPatch(ctx context.Context, g chaosGroup) error {
	r.mu.Lock()
	protected := r.protected[g.name]
	r.mu.Unlock()
	boots := map[string]bool{}
	for _, s := range r.sim.Servers() {
		if groupOfServer(s) == g.name && !s.Deleting && !slices.Contains(protected, s.ID) {
			key, _ := boot(s)
			boots[key] = true
		}
	}
	r.mu.Lock()
	r.urgentBoots[g.name] = boots
	r.mu.Unlock()
	r.mon.urgent(g.name, time.Now())
	return r.send(ctx, trigger.Event{Type: trigger.TypeSecurityPatch, Groups: []string{g.name}, Urgent: true, Reason: "chaos: urgent"})
}

// waitGone waits until none of the boots is left in the group (deleting
// counts as gone: it is on its way).
func (r *seedRun) waitGone(ctx context.Context, g chaosGroup, boots map[string]bool, patience time.Duration) error {
	deadline := time.Now().Add(patience)
	for {
		var left []string
		for _, s := range r.sim.Servers() {
			if key, _ := boot(s); groupOfServer(s) == g.name && !s.Deleting && boots[key] {
				left = append(left, s.Name)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the urgent rebuild of group %s did not go through within %s: %s still there", g.name, patience, strings.Join(left, ", "))
		}
		if first, _ := r.mon.violations(); len(first) > 0 && r.opts.bug != "" {
			return nil // caught: the seed ends
		}
		time.Sleep(50 * time.Millisecond) // polling the simulator
	}
}

// twinsToGo are the servers built like v that a compromise of v takes
// out: every one of them but the protected ones (v itself goes, protected
// or not).
func twinsToGo(servers []sim.Server, group string, v sim.Server, protected []string) []sim.Server {
	var out []sim.Server
	for _, s := range servers {
		if groupOfServer(s) == group && s.ImageID == v.ImageID && s.Metadata[controller.MetaRevision] == v.Metadata[controller.MetaRevision] &&
			(s.ID == v.ID || !slices.Contains(protected, s.ID)) {
			out = append(out, s)
		}
	}
	return out
}
