package main

import (
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/plan"
)

// progress renders rollout events as they happen: aligned lines for
// people, or one JSON object a line for tools.
type progress struct {
	mu      sync.Mutex
	out     io.Writer
	json    bool
	width   int
	started time.Time
}

func newProgress(out io.Writer, output string, groups []config.Group) *progress {
	w := 5
	for _, g := range groups {
		w = max(w, len(g.Name))
	}
	return &progress{out: out, json: output == "json", width: w, started: time.Now()}
}

func (p *progress) start(rollout string, groups []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		p.writeJSON(map[string]any{"time": time.Now(), "type": "start", "rollout": rollout, "groups": groups})
		return
	}
	fmt.Fprintf(p.out, "rollout %s: groups %s\n", rollout, strings.Join(groups, ", "))
}

// Emit implements controller.EventSink.
func (p *progress) Emit(e controller.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		p.writeJSON(e)
		return
	}
	var what string
	switch e.Type {
	case controller.EventRollout:
		what = e.Message
	case controller.EventCreate:
		what = e.Name
		if e.Zone != "" {
			what += " in " + e.Zone
		}
		what += " from image " + short(e.Image)
	case controller.EventCreateErr:
		what = e.Name + ": " + e.Message
	case controller.EventReady:
		what = e.Name + " passed its health gate"
		if e.Replaces != "" {
			what += " → replaces " + e.Replaces
		}
	case controller.EventFailed:
		what = e.Name + ": " + e.Reason
	case controller.EventDelete:
		what = e.Name
		if e.ReplacedBy != "" {
			what += " → replaced by " + e.ReplacedBy
		}
		what += " (" + e.Reason + ")"
	case controller.EventTrafficAdd, controller.EventTrafficRemove:
		what = e.Name + " " + e.Message
	case controller.EventReimage:
		what = e.Name + " rebuilding in place on image " + short(e.Image) + " (" + e.Reason + ")"
	case controller.EventSnapshotDeleted:
		what = e.Name + " (" + e.Reason + ")"
	case controller.EventHalted, controller.EventRolledBack:
		what = e.Message
		if what == "" {
			what = e.Reason
		}
	case controller.EventDrain:
		what = e.Name
		if e.ReplacedBy != "" {
			what += " → replaced by " + e.ReplacedBy + ";"
		}
		what += " " + e.Message + " (" + e.Reason + ")"
	case controller.EventProgress, controller.EventConverged:
		what = describeStatus(e.Status)
	case controller.EventError:
		what = e.Message
	default:
		what = e.Message
	}
	fmt.Fprintf(p.out, "%7.1fs  %-*s  %-14s %s\n", time.Since(p.started).Seconds(), p.width, e.Group, e.Type, shortIDs(what))
}

func describeStatus(s *plan.Status) string {
	if s == nil {
		return ""
	}
	const bar = 10
	filled := 0
	if s.Desired > 0 {
		filled = min(bar, s.Available*bar/s.Desired)
	}
	parts := []string{fmt.Sprintf("[%s%s] %d/%d current and serving", strings.Repeat("#", filled), strings.Repeat(".", bar-filled), s.Available, s.Desired)}
	add := func(n int, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(s.Booting, "booting")
	add(s.Current-s.Available-s.Booting, "waiting to serve")
	add(s.Old, "old")
	add(s.Failed, "failed")
	add(s.Draining, "draining")
	add(s.Deleting, "deleting")
	add(s.Unhealthy, "unhealthy")
	for _, flag := range []struct {
		on   bool
		what string
	}{{s.Canary, "CANARY (the rest waits for its bake)"}, {s.Paused, "PAUSED after the canary: phoenix resume"},
		{s.Halted, "HALTED"}, {s.HealBlocked, "HEAL BLOCKED: too many unhealthy at once"}, {s.RollingBack && !s.Halted, "ROLLING BACK"},
		{s.Waiting != "", "WAITING: " + s.Waiting}} {
		if flag.on {
			parts = append(parts, flag.what)
		}
	}
	return strings.Join(parts, " · ")
}

// finish prints how each group ended and the old → new table.
func (p *progress) finish(results []controller.GroupResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		for _, r := range results {
			res := map[string]any{"time": time.Now(), "type": "result", "group": r.Group, "converged": r.Converged,
				"status": r.Status, "created": r.Created, "deleted": r.Deleted, "replacements": pairsJSON(r.Pairs)}
			if r.Err != nil {
				res["error"] = r.Err.Error()
			}
			p.writeJSON(res)
		}
		return
	}
	fmt.Fprintln(p.out)
	tw := tabwriter.NewWriter(p.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tOLD SERVER\t\tNEW SERVER\tOLD IMAGE\tNEW IMAGE\tNEW READY IN\tREPLACED AT")
	rows := 0
	for _, r := range results {
		for _, pr := range r.Pairs {
			newName, newImage, readyIn := pr.New, short(pr.NewImage), "-"
			if newName == "" {
				newName, newImage = "(none: removed)", "-"
			}
			if pr.NewReadyIn > 0 {
				readyIn = pr.NewReadyIn.Round(100 * time.Millisecond).String()
			}
			fmt.Fprintf(tw, "%s\t%s\t→\t%s\t%s\t%s\t%s\t+%s\n", r.Group, pr.Old, newName, short(pr.OldImage), newImage, readyIn, pr.At.Round(100*time.Millisecond))
			rows++
		}
	}
	if rows > 0 {
		_ = tw.Flush()
		fmt.Fprintln(p.out)
	}
	for _, r := range results {
		state := "converged"
		if !r.Converged {
			state = "NOT converged"
		}
		fmt.Fprintf(p.out, "%-*s  %s: %s; created %d, deleted %d\n", p.width, r.Group, state, describeStatus(&r.Status), r.Created, r.Deleted)
	}
}

func pairsJSON(pairs []controller.Pair) []map[string]any {
	out := make([]map[string]any, 0, len(pairs))
	for _, p := range pairs {
		out = append(out, map[string]any{"old": p.Old, "old_image": p.OldImage, "new": p.New, "new_image": p.NewImage,
			"new_ready_in_seconds": p.NewReadyIn.Seconds(), "at_seconds": p.At.Seconds()})
	}
	return out
}

func (p *progress) writeJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(fmt.Sprintf(`{"type":"error","message":%q}`, err.Error()))
	}
	_, _ = p.out.Write(append(b, '\n'))
}

var uuidPattern = regexp.MustCompile(`\b([0-9a-f]{8})-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b`)

// shortIDs abbreviates UUIDs in text meant for people, the way the
// openstack CLI's short columns do; JSON output keeps them whole.
func shortIDs(s string) string { return uuidPattern.ReplaceAllString(s, "$1") }

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
