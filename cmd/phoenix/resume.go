package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/controller"
)

type resumeFlags struct {
	config string
	groups []string
}

func newResumeCommand(g *cli.Globals) *cobra.Command {
	f := &resumeFlags{}
	cmd := &cobra.Command{
		Use:   "resume --config FILE --group NAME [--group NAME ...]",
		Short: "Lift the halt of a group's rollout, or let a paused canary's rollout go on",
		Long: `resume removes the halt record from the group's servers. The next reconcile
(a daemon's, or the next rebuild) tries the same image and revision again,
with a fresh failure budget. A new image or a changed spec lifts a halt by
itself; resume is for a cause fixed elsewhere (the cloud, a dependency).
A group rolled back (rollout.on_failure rollback, or phoenix rollback) and
not halted has its rollback lifted instead: the rejected image is tried
again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runResume(cmd.Context(), cmd.OutOrStdout(), g, f)
		},
	}
	cmd.Flags().StringVarP(&f.config, "config", "c", "", "Phoenix configuration file")
	cmd.Flags().StringSliceVarP(&f.groups, "group", "g", nil, "group whose halt to lift (repeatable)")
	return cmd
}

// resumeDoc is resume's -o json document: what was lifted, group by
// group, on how many servers.
type resumeDoc struct {
	Groups []resumedGroup `json:"groups"`
}

type resumedGroup struct {
	Group string `json:"group"`
	// Result is halt_lifted, rollback_lifted, canary_promoted or
	// nothing_to_resume.
	Result          string `json:"result"`
	HaltsLifted     int    `json:"halts_lifted"`
	RollbacksLifted int    `json:"rollbacks_lifted"`
	Promoted        int    `json:"promoted"`
}

func runResume(ctx context.Context, out io.Writer, g *cli.Globals, f *resumeFlags) (err error) {
	if err := cli.CheckOutput(g.Output); err != nil {
		return err
	}
	if len(f.groups) == 0 {
		return cli.UsageError(fmt.Errorf("--group is required: name the group whose halt to lift"))
	}
	groups, cloud, err := openGroups(ctx, g, f.config, f.groups)
	if err != nil {
		return err
	}
	doc := resumeDoc{Groups: []resumedGroup{}}
	out, done := jsonOutput(g, out, &doc, &err)
	defer done()
	for _, gr := range groups {
		res, err := controller.Resume(ctx, cloud, gr)
		if err != nil {
			return &cli.ExitError{Code: cli.ExitNotDone, Err: fmt.Errorf("group %s: %w", gr.Name, err)}
		}
		rg := resumedGroup{Group: gr.Name, HaltsLifted: res.Halts, RollbacksLifted: res.Rejections, Promoted: res.Promoted}
		switch {
		case res.Halts > 0:
			rg.Result = "halt_lifted"
			fmt.Fprintf(out, "group %s: halt lifted (on %d servers); the next reconcile tries again\n", gr.Name, res.Halts)
		case res.Rejections > 0:
			rg.Result = "rollback_lifted"
			fmt.Fprintf(out, "group %s: rollback lifted (on %d servers); the next reconcile tries the rejected image again\n", gr.Name, res.Rejections)
		case res.Promoted > 0:
			rg.Result = "canary_promoted"
			fmt.Fprintf(out, "group %s: canary promoted; the rest of the rollout goes on\n", gr.Name)
		default:
			rg.Result = "nothing_to_resume"
			fmt.Fprintf(out, "group %s: nothing to resume (not halted, no canary waiting)\n", gr.Name)
		}
		doc.Groups = append(doc.Groups, rg)
	}
	return nil
}
