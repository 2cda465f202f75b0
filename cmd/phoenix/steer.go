package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/controller"
)

type holdFlags struct {
	config string
	groups []string
	reason string
	by     string
}

func newHoldCommand(g *cli.Globals) *cobra.Command {
	f := &holdFlags{}
	cmd := &cobra.Command{
		Use:   "hold --config FILE --group NAME --reason TEXT [--by WHO]",
		Short: "Hold a group: no voluntary replacement starts until it is released",
		Long: `hold records on every server of the group who held it, when and why. Every
Phoenix that reconciles the group (a daemon, a replica, a rebuild) reads it
from there, across restarts. While a group is held no voluntary replacement
starts (image or spec drift, age, a security patch sent without urgency);
a replacement under way finishes. Heal, failed servers, compromised servers
and urgent patches go on. phoenix release lifts it; hold: true in the
group's configuration holds it from version control.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runHold(cmd.Context(), cmd.OutOrStdout(), g, f)
		},
	}
	cmd.Flags().StringVarP(&f.config, "config", "c", "", "Phoenix configuration file")
	cmd.Flags().StringSliceVarP(&f.groups, "group", "g", nil, "group to hold (repeatable)")
	cmd.Flags().StringVar(&f.reason, "reason", "", "why the group is held (recorded on its servers, shown in status)")
	cmd.Flags().StringVar(&f.by, "by", "", "who holds it (default: user@host)")
	return cmd
}

// steerDoc is the -o json document of hold and release (groups) and of
// protect and unprotect (servers).
type steerDoc struct {
	Groups  []steeredGroup  `json:"groups,omitempty"`
	Servers []steeredServer `json:"servers,omitempty"`
}

type steeredGroup struct {
	Group string `json:"group"`
	Held  bool   `json:"held"`
	By    string `json:"by,omitempty"`
	// Reason is why it is held; HeldByConfig is set when hold: true in
	// the configuration still holds a released group.
	Reason       string `json:"reason,omitempty"`
	HeldByConfig bool   `json:"held_by_config,omitempty"`
	// Servers counts the servers the hold was written on or removed from.
	Servers int `json:"servers"`
}

type steeredServer struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Group     string `json:"group"`
	Protected bool   `json:"protected"`
	Reason    string `json:"reason,omitempty"`
}

func runHold(ctx context.Context, out io.Writer, g *cli.Globals, f *holdFlags) (err error) {
	if err := cli.CheckOutput(g.Output); err != nil {
		return err
	}
	switch {
	case len(f.groups) == 0:
		return cli.UsageError(errors.New("--group is required: name the group to hold"))
	case strings.TrimSpace(f.reason) == "":
		return cli.UsageError(errors.New("--reason is required: say why the group is held (it is shown to everyone who looks)"))
	}
	by := f.by
	if by == "" {
		by = whoAmI()
	}
	groups, cloud, err := openGroups(ctx, g, f.config, f.groups)
	if err != nil {
		return err
	}
	now := time.Now()
	doc := steerDoc{Groups: []steeredGroup{}}
	out, done := jsonOutput(g, out, &doc, &err)
	defer done()
	for _, gr := range groups {
		n, err := controller.Hold(ctx, cloud, gr, by, f.reason, now)
		if err != nil {
			return &cli.ExitError{Code: cli.ExitNotDone, Err: fmt.Errorf("group %s: %w", gr.Name, err)}
		}
		doc.Groups = append(doc.Groups, steeredGroup{Group: gr.Name, Held: true, By: by, Reason: f.reason, Servers: n})
		fmt.Fprintf(out, "group %s: held by %s (recorded on %d servers): %s\n", gr.Name, by, n, f.reason)
	}
	return nil
}

func newReleaseCommand(g *cli.Globals) *cobra.Command {
	f := &holdFlags{}
	cmd := &cobra.Command{
		Use:   "release --config FILE --group NAME",
		Short: "Release a held group: voluntary replacements may start again",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if err := cli.CheckOutput(g.Output); err != nil {
				return err
			}
			if len(f.groups) == 0 {
				return cli.UsageError(errors.New("--group is required: name the group to release"))
			}
			groups, cloud, err := openGroups(cmd.Context(), g, f.config, f.groups)
			if err != nil {
				return err
			}
			doc := steerDoc{Groups: []steeredGroup{}}
			out, done := jsonOutput(g, cmd.OutOrStdout(), &doc, &err)
			defer done()
			for _, gr := range groups {
				n, err := controller.Release(cmd.Context(), cloud, gr)
				if err != nil {
					return &cli.ExitError{Code: cli.ExitNotDone, Err: fmt.Errorf("group %s: %w", gr.Name, err)}
				}
				doc.Groups = append(doc.Groups, steeredGroup{Group: gr.Name, Held: gr.Hold, HeldByConfig: gr.Hold, Servers: n})
				switch {
				case gr.Hold:
					fmt.Fprintf(out, "group %s: released on %d servers, but hold: true in %s still holds it\n", gr.Name, n, f.config)
				case n == 0:
					fmt.Fprintf(out, "group %s: was not held\n", gr.Name)
				default:
					fmt.Fprintf(out, "group %s: released (on %d servers); voluntary replacements may start\n", gr.Name, n)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&f.config, "config", "c", "", "Phoenix configuration file")
	cmd.Flags().StringSliceVarP(&f.groups, "group", "g", nil, "group to release (repeatable)")
	return cmd
}

type protectFlags struct {
	config  string
	servers []string
	reason  string
}

func newProtectCommand(g *cli.Globals, on bool) *cobra.Command {
	f := &protectFlags{}
	cmd := &cobra.Command{
		Use:   "protect --config FILE --server ID [--server ID ...] --reason TEXT",
		Short: "Protect servers: Phoenix never replaces or removes them unless compromised",
		Long: `protect sets phoenix:protected=true on each server (as
openstack server set --property phoenix:protected=true does) with the
reason. A protected server is never replaced or removed for drift, age, a
patch, heal or surplus; it counts toward the group's capacity while it
serves. An instance.compromised event still takes it out.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runProtect(cmd.Context(), cmd.OutOrStdout(), g, f, on)
		},
	}
	if !on {
		cmd.Use = "unprotect --config FILE --server ID [--server ID ...]"
		cmd.Short = "Lift the protection of servers"
		cmd.Long = ""
	}
	cmd.Flags().StringVarP(&f.config, "config", "c", "", "Phoenix configuration file")
	cmd.Flags().StringSliceVar(&f.servers, "server", nil, "server ID (repeatable)")
	if on {
		cmd.Flags().StringVar(&f.reason, "reason", "", "why the server is protected (shown in plan and status)")
	}
	return cmd
}

func runProtect(ctx context.Context, out io.Writer, g *cli.Globals, f *protectFlags, on bool) (err error) {
	if err := cli.CheckOutput(g.Output); err != nil {
		return err
	}
	switch {
	case len(f.servers) == 0:
		return cli.UsageError(errors.New("--server is required: name the server by its ID"))
	case on && strings.TrimSpace(f.reason) == "":
		return cli.UsageError(errors.New("--reason is required: say why the server is protected"))
	}
	groups, cloud, err := openGroups(ctx, g, f.config, nil)
	if err != nil {
		return err
	}
	doc := steerDoc{Servers: []steeredServer{}}
	out, done := jsonOutput(g, out, &doc, &err)
	defer done()
	for _, id := range f.servers {
		s, gr, err := controller.FindServer(ctx, cloud, groups, id)
		if err != nil {
			return &cli.ExitError{Code: cli.ExitNotDone, Err: err}
		}
		if err := controller.Protect(ctx, cloud, s, f.reason, on); err != nil {
			return &cli.ExitError{Code: cli.ExitNotDone, Err: err}
		}
		doc.Servers = append(doc.Servers, steeredServer{ID: s.ID, Name: s.Name, Group: gr.Name, Protected: on, Reason: f.reason})
		if on {
			fmt.Fprintf(out, "server %s (%s) of group %s: protected: %s\n", s.Name, s.ID, gr.Name, f.reason)
		} else {
			fmt.Fprintf(out, "server %s (%s) of group %s: no longer protected\n", s.Name, s.ID, gr.Name)
		}
	}
	return nil
}

// whoAmI names the operator for a hold's record: user@host.
func whoAmI() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		name += "@" + h
	}
	return name
}
