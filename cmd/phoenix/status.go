package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/controller/daemon"
	"github.com/phoenix-ops/phoenix/controller/plan"
)

type statusFlags struct {
	url string
}

func newStatusCommand(g *cli.Globals) *cobra.Command {
	f := &statusFlags{}
	cmd := &cobra.Command{
		Use:   "status [--url http://127.0.0.1:7355]",
		Short: "Show what a running daemon is doing, group by group",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStatus(cmd.Context(), cmd.OutOrStdout(), g, f)
		},
	}
	cmd.Flags().StringVar(&f.url, "url", "http://127.0.0.1:7355", "the daemon's address (controller.listen)")
	return cmd
}

func runStatus(ctx context.Context, out io.Writer, g *cli.Globals, f *statusFlags) error {
	if err := cli.CheckOutput(g.Output); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(f.url, "/")+"/v1/status", nil)
	if err != nil {
		return cli.UsageError(fmt.Errorf("--url: %w", err))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return &cli.ExitError{Code: cli.ExitNotDone, Err: fmt.Errorf("reach the daemon at %s: %w", f.url, err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return &cli.ExitError{Code: cli.ExitNotDone, Err: fmt.Errorf("the daemon at %s answered HTTP %d: %s", f.url, resp.StatusCode, strings.TrimSpace(string(body)))}
	}
	if g.Output == "json" {
		_, _ = out.Write(body)
		return nil
	}
	var st daemon.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return &cli.ExitError{Code: cli.ExitNotDone, Err: fmt.Errorf("the daemon's status: %w", err)}
	}
	if st.APIVersion != daemon.StatusAPIVersion {
		return &cli.ExitError{Code: cli.ExitNotDone, Err: fmt.Errorf("the daemon at %s answers status api_version %q; this phoenix reads %q: run the same version as the daemon (-o json prints what it answers)",
			f.url, st.APIVersion, daemon.StatusAPIVersion)}
	}
	printStatus(out, st)
	return nil
}

func printStatus(out io.Writer, st daemon.Status) {
	fmt.Fprintf(out, "config %s, loaded %s; ready: %s\n", st.Config.Path, st.Config.LoadedAt.Local().Format(time.RFC3339), st.Ready)
	if st.Config.Refused != "" {
		fmt.Fprintf(out, "LAST RELOAD REFUSED (the configuration above runs on):\n  %s\n", strings.ReplaceAll(st.Config.Refused, "\n", "\n  "))
	}
	if r := st.Replica; r != nil {
		fmt.Fprintf(out, "replica %s of %d alive; it reconciles %d group(s)\n", r.ID, r.Replicas, len(r.Owned))
		if r.Fenced != "" {
			fmt.Fprintf(out, "FENCED: this replica changes nothing in the cloud until etcd confirms what it owns: %s\n", r.Fenced)
		}
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tDESIRED IMAGE\tPROGRESS\tCURRENT\tOLD\tBOOTING\tDRAINING\tFAILED\tSTATE")
	for _, g := range st.Groups {
		state := "converged"
		switch {
		case st.Replica != nil && g.Owner != st.Replica.ID:
			state = "reconciled by another replica"
			if g.Owner == "" {
				state = "no replica holds it yet"
			}
		case g.Halted != "":
			state = "HALTED: " + g.Halted
		case g.Status.Paused:
			state = "PAUSED after the canary: phoenix resume --group " + g.Group
		case g.Status.HealBlocked:
			state = fmt.Sprintf("HEAL BLOCKED: %d unhealthy at once", g.Status.Unhealthy)
		case g.RolledBack != "" && g.InProgress:
			state = "ROLLING BACK: " + g.RolledBack
			if g.Status.Waiting != "" {
				state += "; WAITING: " + g.Status.Waiting
			}
		case g.RolledBack != "":
			state = "ROLLED BACK: " + g.RolledBack
		case g.LastError != "":
			state = "error: " + g.LastError
		case g.Status.Waiting != "":
			state = "WAITING: " + g.Status.Waiting
		case g.Status.Deferred > 0 && g.Status.Steering != "":
			state = fmt.Sprintf("DEFERRED (%d waiting): %s", g.Status.Deferred, g.Status.Steering)
		case g.Status.Handovers > 0:
			state = fmt.Sprintf("moving %d data volume(s) to replacements", g.Status.Handovers)
		case g.Status.Canary:
			state = "canary baking"
		case g.InProgress:
			state = "rolling out"
		case g.Status.Protected > 0:
			state = fmt.Sprintf("converged with %d protected servers left as they are", g.Status.Protected)
		}
		if g.Status.Steering != "" && !strings.HasPrefix(state, "DEFERRED") {
			state += "; " + g.Status.Steering
		}
		if a := g.Status.AvoidingText(time.Now()); a != "" {
			state += "; " + a
		}
		img := g.DesiredImage.Name
		if img == "" {
			img = "-"
		}
		fmt.Fprintf(tw, "%s\t%s (%s)\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", g.Group, img, short(g.DesiredImage.ID), g.Progress,
			g.Status.Current, g.Status.Old, g.Status.Booting, g.Status.Draining, g.Status.Failed, shortIDs(state))
	}
	_ = tw.Flush()
	for _, g := range st.Groups {
		if g.ImageStale != "" {
			fmt.Fprintf(out, "STALE GOLD IMAGE: %s\n", g.ImageStale)
		}
		for _, p := range g.Protected {
			fmt.Fprintf(out, "PROTECTED in group %s: %s\n", g.Group, p)
		}
		if p := g.Status.Promotion; p != nil {
			fmt.Fprintf(out, "group %s promotes with tag %s: %s\n", g.Group, p.Tag, promotionLine(p))
		}
		if g.Stage != "" {
			fmt.Fprintf(out, "group %s: %s\n", g.Group, g.Stage)
		}
		for _, l := range g.Locations {
			line := fmt.Sprintf("location %s of group %s: %s, share %d of weight %d, keeps %d, %d serving", l.Name, g.Group, l.State, l.Share, l.Weight, l.Count, l.Serving)
			if l.State != plan.LocationUp {
				line = strings.ToUpper(l.State) + ": " + line
			}
			if l.Reason != "" {
				line += " (" + l.Reason + ")"
			}
			fmt.Fprintln(out, line)
		}
	}
}

// promotionLine says where a stage's gate stands.
func promotionLine(p *plan.Promotion) string {
	line := fmt.Sprintf("image %s ", short(p.ImageID))
	switch {
	case p.Done:
		line += "carries the tag"
	case p.Waiting != "":
		line += "waits: " + p.Waiting
	default:
		line += "is promoted now"
	}
	if p.Untag != "" {
		line += fmt.Sprintf("; the tag comes off the rejected image %s", short(p.Untag))
	}
	return line
}
