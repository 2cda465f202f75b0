package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner"
)

type planFlags struct {
	config string
	groups []string
	// rollback previews `phoenix rollback` (to the image named by to, or
	// the one the group ran before).
	rollback bool
	to       string
	// detailed makes "changes pending" an exit code of its own.
	detailed bool
}

// errChangesPending is plan --detailed-exitcode's answer when a rebuild
// would replace or create servers: exit 2, as terraform plan's.
var errChangesPending = &cli.ExitError{Code: 2}

// detailedExit keeps --detailed-exitcode's 2 for changes alone: any
// error, a refused flag or configuration too, is 1.
func detailedExit(err error) error {
	if err == nil || err == errChangesPending || cli.Code(err) == cli.ExitNotDone {
		return err
	}
	return cli.NotDone(err)
}

func newPlanCommand(g *cli.Globals) *cobra.Command {
	f := &planFlags{}
	cmd := &cobra.Command{
		Use:   "plan --config FILE [--group NAME ...]",
		Short: "Show which servers would be replaced and why, changing nothing",
		Long: `plan reads the groups' servers and desired images and prints every server
that a rebuild would replace, with the reason. It only reads from the cloud.

With -o json it prints one JSON document: {"changes_pending": ..., "groups": [...]}.

Exit status: 0 done; 1 the cloud could not be read; 2 bad flags or
configuration. With --detailed-exitcode: 0 nothing to do; 2 a rebuild
would replace or create servers now (replacements deferred by a hold, a
window or a blocker, and protected servers, do not count); 1 any error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := runPlan(cmd.Context(), cmd.OutOrStdout(), g, f)
			if f.detailed {
				return detailedExit(err)
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&f.config, "config", "c", "", "Phoenix configuration file")
	cmd.Flags().StringSliceVarP(&f.groups, "group", "g", nil, "group to look at (repeatable; default all)")
	cmd.Flags().BoolVar(&f.rollback, "rollback", false, "show what phoenix rollback would do")
	cmd.Flags().StringVar(&f.to, "to", "", "with --rollback: the image to go back to, by name or ID")
	cmd.Flags().BoolVar(&f.detailed, "detailed-exitcode", false, "exit 0 when there is nothing to do, 2 when a rebuild would replace or create servers, 1 on error")
	return cmd
}

// planDoc is plan's -o json document.
type planDoc struct {
	// ChangesPending is true when a rebuild would replace or create
	// servers now: what --detailed-exitcode answers with 2.
	ChangesPending bool        `json:"changes_pending"`
	Groups         []groupPlan `json:"groups"`
}

type groupPlan struct {
	Group    string            `json:"group"`
	Image    provisioner.Image `json:"image"`
	Revision string            `json:"revision"`
	Servers  []serverPlan      `json:"servers"`
	// Replace, Keep and Create count what a rebuild would do now;
	// Deferred the replacements that wait for steering, Protected the
	// protected servers left as they are.
	Replace   int         `json:"replace"`
	Keep      int         `json:"keep"`
	Create    int         `json:"create"`
	Deferred  int         `json:"deferred,omitempty"`
	Protected int         `json:"protected,omitempty"`
	Status    plan.Status `json:"status"`
	// ImageStale is the alert while the desired image is older than the
	// selector's image.max_age.
	ImageStale string `json:"image_stale,omitempty"`
	// RollbackFrom is the image a rollback (previewed) rejects; Image is
	// then the one the group goes back to.
	RollbackFrom *provisioner.Image `json:"rollback_from,omitempty"`
	// Stage says which newer image waits for a tag a stage before this
	// group promotes.
	Stage string `json:"stage,omitempty"`
}

type serverPlan struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Status string `json:"status"`
	Image  string `json:"image"`
	// Health is one probe's verdict now: healthy, unhealthy or unknown.
	Health      string `json:"health"`
	HealthError string `json:"health_error,omitempty"`
	// Action is replace, keep, draining, deleting, deferred or protected.
	Action string `json:"action"`
	Reason string `json:"reason,omitempty"`
	// Traffic is where the server stands with the group's pool or
	// floating IP (none, pending, serving, drained, broken), and Step the
	// traffic step a rebuild takes for it next; both empty for a group
	// without traffic.
	Traffic string `json:"traffic,omitempty"`
	Step    string `json:"step,omitempty"`
}

func runPlan(ctx context.Context, out io.Writer, g *cli.Globals, f *planFlags) error {
	if err := cli.CheckOutput(g.Output); err != nil {
		return err
	}
	groups, cloud, err := openGroups(ctx, g, f.config, f.groups)
	if err != nil {
		return err
	}
	if f.to != "" && !f.rollback {
		return cli.UsageError(fmt.Errorf("--to goes with --rollback"))
	}
	var rollback *string
	if f.rollback {
		rollback = &f.to
	}
	// Every group of the file: a stage before a selected group may not be
	// selected itself.
	all, _, err := loadConfig(f.config, nil, false)
	if err != nil {
		return err
	}
	plans, err := previewGroups(ctx, cloud, all.Groups, groups, rollback)
	if err != nil {
		return &cli.ExitError{Code: cli.ExitNotDone, Err: err}
	}
	doc := planDoc{Groups: plans}
	for _, gp := range plans {
		doc.ChangesPending = doc.ChangesPending || gp.Replace > 0 || gp.Create > 0
	}
	if g.Output == "json" {
		if err := printJSON(out, doc); err != nil {
			return err
		}
	} else {
		printPlans(out, plans)
	}
	if f.detailed && doc.ChangesPending {
		return errChangesPending
	}
	return nil
}

// previewGroups previews a reconcile of each group, or, when rollback is
// set, a reconcile after `phoenix rollback --to *rollback`.
func previewGroups(ctx context.Context, cloud provisioner.Cloud, all, groups []config.Group, rollback *string) ([]groupPlan, error) {
	plans := []groupPlan{}
	for _, gr := range groups {
		var (
			img  provisioner.Image
			d    plan.Decision
			from *provisioner.Image
			err  error
		)
		if rollback != nil {
			var rb controller.RolledBack
			rb, d, err = controller.PreviewRollback(ctx, cloud, gr, *rollback)
			img, from = rb.To, &rb.From
			err = wrapGroup(gr.Name, err)
		} else {
			img, d, err = controller.Preview(ctx, cloud, gr, controller.Options{})
		}
		if err != nil {
			return nil, err
		}
		gp := groupPlan{Group: gr.Name, Image: img, Status: d.Status, Revision: controller.Revision(gr), Servers: []serverPlan{}, RollbackFrom: from}
		_, gp.ImageStale = controller.ImageStaleness(gr, img, time.Now())
		for _, st := range controller.Stages(all, gr) {
			next, err := cloud.Images.ResolveImage(ctx, st.Without)
			if err == nil && next.ID != img.ID && next.Created.After(img.Created) {
				gp.Stage = fmt.Sprintf("image %s (%s) is waiting for tag %s, which group %s adds once it has run it healthy for %s",
					next.Name, next.ID, st.Tag, st.From.Name, plan.Span(st.From.Promote.After.D()))
				break
			}
		}
		steps := trafficSteps(gr, d)
		for _, c := range d.Servers {
			sp := serverPlan{ID: c.ID, Name: c.Name, Status: c.Status, Image: c.ImageID, Health: c.Health.String(),
				HealthError: c.HealthError, Reason: c.Reason}
			switch {
			case c.Kind == plan.KindOld && gr.Rollout.Strategy == config.StrategyRebuild && c.Revision == gp.Revision:
				sp.Action = "rebuild in place"
				gp.Replace++
			case c.Kind == plan.KindCurrent && c.Phase == plan.PhaseRebuilding && !c.Ready:
				sp.Action = "rebuilding in place"
				gp.Keep++
			case c.Kind == plan.KindOld && len(c.StatefulVolumes) > 0:
				sp.Action = "replace, moving volume " + strings.Join(c.StatefulVolumes, ", ") + " to the replacement"
				gp.Replace++
			case c.Kind == plan.KindOld || c.Kind == plan.KindFailed:
				sp.Action = "replace"
				gp.Replace++
			case c.Kind == plan.KindCurrent:
				sp.Action = "keep"
				gp.Keep++
			case c.Kind == plan.KindKept && strings.HasPrefix(c.Kept, "protected"):
				// What it would be replaced for, after why it is not.
				sp.Action, sp.Reason = "protected", strings.TrimSuffix(c.Kept+"; would be replaced: "+c.Reason, "; would be replaced: ")
				gp.Keep++
				gp.Protected++
			case c.Kind == plan.KindKept:
				sp.Action, sp.Reason = "deferred", c.Kept+"; would be replaced: "+c.Reason
				gp.Keep++
				gp.Deferred++
			case c.Kind == plan.KindDraining:
				sp.Action = "draining"
			default:
				sp.Action = "deleting"
			}
			if hasTraffic(gr) {
				sp.Traffic, sp.Step = c.Traffic.String(), steps[c.ID]
			}
			gp.Servers = append(gp.Servers, sp)
		}
		gp.Create = max(0, gr.Count-gp.Keep-gp.Replace)
		plans = append(plans, gp)
	}
	return plans, nil
}

func hasTraffic(g config.Group) bool {
	return g.Traffic.Octavia != nil || g.Traffic.FloatingIP != nil
}

// trafficSteps says, by server ID, which traffic step a rebuild takes for
// each server next, in the words of the progress output.
func trafficSteps(g config.Group, d plan.Decision) map[string]string {
	steps := map[string]string{}
	if !hasTraffic(g) {
		return steps
	}
	add, out := "add to pool "+poolName(g), "remove from pool "+poolName(g)
	if g.Traffic.FloatingIP != nil {
		add, out = "move the floating IP here", ""
	}
	var drain time.Duration
	if o := g.Traffic.Octavia; o != nil {
		drain = o.Drain.D()
	} else {
		drain = g.Traffic.FloatingIP.Drain.D()
	}
	for _, c := range d.Servers {
		switch {
		case c.Kind == plan.KindDraining:
			steps[c.ID] = "draining until " + c.DrainStart.Add(drain).UTC().Format(time.RFC3339)
		case c.Kind == plan.KindOld && c.Status == provisioner.StatusActive:
			steps[c.ID] = fmt.Sprintf("drain %s once a replacement serves, then delete", drain)
		}
	}
	for _, c := range d.AddTraffic {
		steps[c.ID] = add
	}
	for _, dr := range d.Drains {
		steps[dr.Server.ID] = "drain now, until " + dr.Until.UTC().Format(time.RFC3339)
	}
	for _, de := range d.Deletes {
		if de.Server.Traffic != plan.TrafficNone && out != "" {
			steps[de.Server.ID] = out + ", then delete"
		}
	}
	return steps
}

func poolName(g config.Group) string {
	if o := g.Traffic.Octavia; o != nil {
		return o.Pool
	}
	return ""
}

func printPlans(out io.Writer, plans []groupPlan) {
	for _, gp := range plans {
		fmt.Fprintf(out, "group %s: desired image %s (%s), revision %s\n", gp.Group, gp.Image.Name, gp.Image.ID, gp.Revision)
		if f := gp.RollbackFrom; f != nil {
			fmt.Fprintf(out, "  ROLLBACK (preview): image %s (%s) would be rejected and the group go back to this one\n", f.Name, f.ID)
		}
		traffic := false
		for _, s := range gp.Servers {
			traffic = traffic || s.Traffic != ""
		}
		if len(gp.Servers) > 0 {
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			if traffic {
				fmt.Fprintln(tw, "  SERVER\tID\tSTATUS\tIMAGE\tHEALTH\tTRAFFIC\tACTION\tNEXT TRAFFIC STEP\tWHY")
			} else {
				fmt.Fprintln(tw, "  SERVER\tID\tSTATUS\tIMAGE\tHEALTH\tACTION\tWHY")
			}
			for _, s := range gp.Servers {
				why := s.Reason
				if s.HealthError != "" {
					why = strings.TrimSpace(why + "; health: " + s.HealthError)
					why = strings.TrimPrefix(why, "; ")
				}
				if traffic {
					fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.ID, s.Status, short(s.Image), s.Health, s.Traffic, s.Action, orDash(s.Step), why)
					continue
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.ID, s.Status, short(s.Image), s.Health, s.Action, why)
			}
			_ = tw.Flush()
		}
		if gp.ImageStale != "" {
			fmt.Fprintf(out, "  STALE GOLD IMAGE: %s\n", gp.ImageStale)
		}
		switch {
		case gp.Status.Halted:
			fmt.Fprintf(out, "  HALTED: the rollout to this image and revision halted; it is not retried until a new image, a spec change or phoenix resume\n")
		case gp.Status.RollingBack && gp.RollbackFrom == nil:
			fmt.Fprintf(out, "  ROLLED BACK: a rejected image is skipped; the group runs this one until a newer image appears or phoenix resume\n")
		case gp.Status.Paused:
			fmt.Fprintf(out, "  PAUSED after the canary: run phoenix resume --group %s to go on\n", gp.Group)
		case gp.Status.HealBlocked:
			fmt.Fprintf(out, "  HEAL BLOCKED: %d servers fail their check at once (more than health.max_unhealthy); none is replaced\n", gp.Status.Unhealthy)
		}
		switch st := gp.Status.Steering; {
		case st != "" && gp.Deferred > 0:
			fmt.Fprintf(out, "  DEFERRED: %d replacements wait: %s\n", gp.Deferred, st)
		case st != "":
			fmt.Fprintf(out, "  STEERING: nothing waits now, but a new replacement would: %s\n", st)
		}
		if gp.Protected > 0 {
			fmt.Fprintf(out, "  PROTECTED: %d servers are left as they are (phoenix unprotect --server ID lets Phoenix replace them)\n", gp.Protected)
		}
		if a := gp.Status.AvoidingText(time.Now()); a != "" {
			fmt.Fprintf(out, "  ZONES: %s\n", a)
		}
		if p := gp.Status.Promotion; p != nil {
			fmt.Fprintf(out, "  PROMOTE with tag %s: %s\n", p.Tag, promotionLine(p))
		}
		if gp.Stage != "" {
			fmt.Fprintf(out, "  STAGE: %s\n", gp.Stage)
		}
		switch {
		case gp.Replace == 0 && gp.Create == 0:
			fmt.Fprintf(out, "  nothing to do: %d servers are current\n\n", gp.Keep)
		default:
			fmt.Fprintf(out, "  %d to replace, %d to keep, %d to create (count %d)\n\n", gp.Replace, gp.Keep, gp.Create, gp.Status.Desired)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func wrapGroup(group string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("group %s: %w", group, err)
}
