package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/plan"
)

// progress renders rollout events as they happen, in aligned lines for
// people. Under -o json those lines go to stderr, and the run becomes one
// JSON document for tools, printed once the run ends: a tool reading
// stdout gets exactly one document to parse.
type progress struct {
	mu   sync.Mutex
	out  io.Writer // the lines for people
	json bool
	// stream writes each event as one JSON line on out as it happens,
	// for the daemon, which never ends to print a document.
	stream  bool
	doc     rebuildDoc
	width   int
	started time.Time
}

// rebuildDoc is a rebuild's (and the demo's) -o json document.
type rebuildDoc struct {
	Rollout   string             `json:"rollout"`
	Groups    []string           `json:"groups"`
	Forced    *forcedDoc         `json:"forced,omitempty"`
	Converged bool               `json:"converged"`
	Results   []groupResultDoc   `json:"results"`
	Events    []controller.Event `json:"events"`
}

// forcedDoc is a forced rebuild: what --before resumes it with, and why.
type forcedDoc struct {
	Before time.Time `json:"before"`
	Reason string    `json:"reason"`
}

type groupResultDoc struct {
	Group        string      `json:"group"`
	Converged    bool        `json:"converged"`
	Status       plan.Status `json:"status"`
	Created      int         `json:"created"`
	Deleted      int         `json:"deleted"`
	Replacements []pairDoc   `json:"replacements"`
	Error        string      `json:"error,omitempty"`
}

type pairDoc struct {
	Old      string `json:"old"`
	OldImage string `json:"old_image"`
	// New is empty for a server removed without a replacement.
	New               string  `json:"new,omitempty"`
	NewImage          string  `json:"new_image,omitempty"`
	NewReadyInSeconds float64 `json:"new_ready_in_seconds,omitempty"`
	AtSeconds         float64 `json:"at_seconds"`
}

// newProgress writes its lines on stdout, or on stderr under -o json.
func newProgress(stdout, stderr io.Writer, output string, groups []config.Group) *progress {
	w := 5
	for _, g := range groups {
		w = max(w, len(g.Name))
	}
	p := &progress{out: stdout, width: w, started: time.Now()}
	if output == "json" {
		p.out, p.json = stderr, true
	}
	return p
}

// newEventStream is the daemon's: lines for people, or under -o json one
// JSON event a line, both on out.
func newEventStream(out io.Writer, output string, groups []config.Group) *progress {
	p := newProgress(out, out, output, groups)
	p.stream = p.json
	return p
}

func (p *progress) start(rollout string, groups []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.doc.Rollout, p.doc.Groups, p.doc.Events = rollout, groups, []controller.Event{}
	fmt.Fprintf(p.out, "rollout %s: groups %s\n", rollout, strings.Join(groups, ", "))
}

// Emit implements controller.EventSink.
func (p *progress) Emit(e controller.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.stream:
		b, err := json.Marshal(e)
		if err != nil {
			b = fmt.Appendf(nil, `{"type":"error","message":%q}`, err.Error())
		}
		_, _ = p.out.Write(append(b, '\n'))
		return
	case p.json:
		p.doc.Events = append(p.doc.Events, e)
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

// finish prints how each group ended and the old → new table, and
// completes the document.
func (p *progress) finish(results []controller.GroupResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.doc.Converged = true
	p.doc.Results = make([]groupResultDoc, 0, len(results))
	for _, r := range results {
		res := groupResultDoc{Group: r.Group, Converged: r.Converged, Status: r.Status, Created: r.Created, Deleted: r.Deleted,
			Replacements: pairsDoc(r.Pairs)}
		if r.Err != nil {
			res.Error = r.Err.Error()
		}
		p.doc.Converged = p.doc.Converged && r.Converged
		p.doc.Results = append(p.doc.Results, res)
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

func pairsDoc(pairs []controller.Pair) []pairDoc {
	out := make([]pairDoc, 0, len(pairs))
	for _, p := range pairs {
		out = append(out, pairDoc{Old: p.Old, OldImage: p.OldImage, New: p.New, NewImage: p.NewImage,
			NewReadyInSeconds: p.NewReadyIn.Seconds(), AtSeconds: p.At.Seconds()})
	}
	return out
}

// document is the run as -o json prints it.
func (p *progress) document() rebuildDoc {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.doc
}

// printJSON prints v as the one JSON document of a command's stdout.
func printJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return &cli.ExitError{Code: cli.ExitUnexpected, Err: fmt.Errorf("print the JSON output: %w", err)}
	}
	return nil
}

// jsonOutput has doc printed as the command's output under -o json, when
// the command returns (what was done before an error too), and the lines
// for people dropped. It returns where those lines go.
func jsonOutput(g *cli.Globals, out io.Writer, doc any, err *error) (io.Writer, func()) {
	if g.Output != "json" {
		return out, func() {}
	}
	return io.Discard, func() { *err = cmp.Or(*err, printJSON(out, doc)) }
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
