package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/provisioner"
)

type rollbackFlags struct {
	config string
	groups []string
	to     string
}

func newRollbackCommand(g *cli.Globals) *cobra.Command {
	f := &rollbackFlags{}
	cmd := &cobra.Command{
		Use:   "rollback --config FILE --group NAME [--to IMAGE]",
		Short: "Send a group back to the image it ran before, rejecting the one it runs",
		Long: `rollback records on the group's servers that its desired image is rejected
for the group's spec revision and which image the group goes back to: the
one it ran before (every server records what it replaced), or the image
named by --to (a name or an ID). The next reconcile (a daemon's, or the
next rebuild) replaces the servers with the same surge, health gate, drain
and budget as any rollout. The rejected image is skipped until a newer
image is published; phoenix resume lifts the rollback.

phoenix plan --rollback shows what the rollback would do, changing nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRollback(cmd.Context(), cmd.OutOrStdout(), g, f)
		},
	}
	cmd.Flags().StringVarP(&f.config, "config", "c", "", "Phoenix configuration file")
	cmd.Flags().StringSliceVarP(&f.groups, "group", "g", nil, "group to roll back (repeatable)")
	cmd.Flags().StringVar(&f.to, "to", "", "image to go back to, by name or ID (default: the one the group ran before)")
	return cmd
}

// rollbackDoc is rollback's -o json document.
type rollbackDoc struct {
	Groups []rolledBackGroup `json:"groups"`
}

type rolledBackGroup struct {
	Group    string            `json:"group"`
	Rejected provisioner.Image `json:"rejected_image"`
	To       provisioner.Image `json:"to_image"`
	// Servers counts the servers the rollback is recorded on.
	Servers int `json:"servers"`
}

func runRollback(ctx context.Context, out io.Writer, g *cli.Globals, f *rollbackFlags) (err error) {
	if err := cli.CheckOutput(g.Output); err != nil {
		return err
	}
	if len(f.groups) == 0 {
		return cli.UsageError(fmt.Errorf("--group is required: name the group to roll back"))
	}
	groups, cloud, err := openGroups(ctx, g, f.config, f.groups)
	if err != nil {
		return err
	}
	doc := rollbackDoc{Groups: []rolledBackGroup{}}
	out, done := jsonOutput(g, out, &doc, &err)
	defer done()
	for _, gr := range groups {
		res, err := controller.Rollback(ctx, cloud, gr, f.to)
		if err != nil {
			return &cli.ExitError{Code: cli.ExitNotDone, Err: fmt.Errorf("group %s: %w", gr.Name, err)}
		}
		doc.Groups = append(doc.Groups, rolledBackGroup{Group: gr.Name, Rejected: res.From, To: res.To, Servers: res.Servers})
		fmt.Fprintf(out, "group %s: image %s (%s) rejected, going back to %s (%s) (recorded on %d servers); the next reconcile replaces the servers\n",
			gr.Name, res.From.Name, res.From.ID, res.To.Name, res.To.ID, res.Servers)
	}
	return nil
}
