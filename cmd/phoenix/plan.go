package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/provisioner"
)

type planFlags struct {
	config string
	groups []string
}

func newPlanCommand(g *globalFlags) *cobra.Command {
	f := &planFlags{}
	cmd := &cobra.Command{
		Use:   "plan --config FILE [--group NAME ...]",
		Short: "Show which servers would be replaced and why, changing nothing",
		Long: `plan reads the groups' servers and desired images and prints every server
that a rebuild would replace, with the reason. It only reads from the cloud.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPlan(cmd.Context(), cmd.OutOrStdout(), g, f)
		},
	}
	cmd.Flags().StringVarP(&f.config, "config", "c", "", "Phoenix configuration file")
	cmd.Flags().StringSliceVarP(&f.groups, "group", "g", nil, "group to look at (repeatable; default all)")
	return cmd
}

type groupPlan struct {
	Group    string            `json:"group"`
	Image    provisioner.Image `json:"image"`
	Revision string            `json:"revision"`
	Servers  []serverPlan      `json:"servers"`
	// Replace, Keep and Create count what a rebuild would do now.
	Replace int               `json:"replace"`
	Keep    int               `json:"keep"`
	Create  int               `json:"create"`
	Status  controller.Status `json:"status"`
}

type serverPlan struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Status string `json:"status"`
	Image  string `json:"image"`
	// Health is one probe's verdict now: healthy, unhealthy or unknown.
	Health      string `json:"health"`
	HealthError string `json:"health_error,omitempty"`
	// Action is replace, keep or deleting.
	Action string `json:"action"`
	Reason string `json:"reason,omitempty"`
}

func runPlan(ctx context.Context, out io.Writer, g *globalFlags, f *planFlags) error {
	if err := checkOutput(g.output); err != nil {
		return err
	}
	log, err := newLogger(g.logLevel)
	if err != nil {
		return err
	}
	cfg, groups, err := loadConfig(f.config, f.groups, false)
	if err != nil {
		return err
	}
	cloud, err := connect(ctx, cfg.Cloud, log)
	if err != nil {
		return err
	}
	plans, err := previewGroups(ctx, cloud, groups)
	if err != nil {
		return &exitError{code: exitNotDone, err: err}
	}
	if g.output == "json" {
		p := &progress{out: out}
		for _, gp := range plans {
			p.writeJSON(gp)
		}
		return nil
	}
	printPlans(out, plans)
	return nil
}

func previewGroups(ctx context.Context, cloud provisioner.Cloud, groups []config.Group) ([]groupPlan, error) {
	var plans []groupPlan
	for _, gr := range groups {
		img, d, err := controller.Preview(ctx, cloud, gr, controller.Options{})
		if err != nil {
			return nil, err
		}
		gp := groupPlan{Group: gr.Name, Image: img, Status: d.Status, Revision: controller.Revision(gr), Servers: []serverPlan{}}
		for _, c := range d.Servers {
			sp := serverPlan{ID: c.ID, Name: c.Name, Status: c.Status, Image: c.ImageID, Health: c.Health.String(),
				HealthError: c.HealthError, Reason: c.Reason}
			switch c.Kind {
			case controller.KindOld, controller.KindFailed:
				sp.Action = "replace"
				gp.Replace++
			case controller.KindCurrent:
				sp.Action = "keep"
				gp.Keep++
			default:
				sp.Action = "deleting"
			}
			gp.Servers = append(gp.Servers, sp)
		}
		gp.Create = max(0, gr.Count-gp.Keep-gp.Replace)
		plans = append(plans, gp)
	}
	return plans, nil
}

func printPlans(out io.Writer, plans []groupPlan) {
	for _, gp := range plans {
		fmt.Fprintf(out, "group %s: desired image %s (%s), revision %s\n", gp.Group, gp.Image.Name, gp.Image.ID, gp.Revision)
		if len(gp.Servers) > 0 {
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  SERVER\tID\tSTATUS\tIMAGE\tHEALTH\tACTION\tWHY")
			for _, s := range gp.Servers {
				why := s.Reason
				if s.HealthError != "" {
					why = strings.TrimSpace(why + "; health: " + s.HealthError)
					why = strings.TrimPrefix(why, "; ")
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.ID, s.Status, short(s.Image), s.Health, s.Action, why)
			}
			_ = tw.Flush()
		}
		switch {
		case gp.Replace == 0 && gp.Create == 0:
			fmt.Fprintf(out, "  nothing to do: %d servers are current\n\n", gp.Keep)
		default:
			fmt.Fprintf(out, "  %d to replace, %d to keep, %d to create (count %d)\n\n", gp.Replace, gp.Keep, gp.Create, gp.Status.Desired)
		}
	}
}
