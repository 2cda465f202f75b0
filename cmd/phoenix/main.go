// Command phoenix keeps OpenStack server groups on a fresh boot of their
// patched baseline image. This file only wires flags to the packages that
// do the work.
package main

import (
	"github.com/spf13/cobra"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/cmd/internal/version"
)

func main() { cli.Main("phoenix", newRootCommand()) }

func newRootCommand() *cobra.Command {
	g := &cli.Globals{}
	root := &cobra.Command{
		Use:   "phoenix",
		Short: "Keep OpenStack servers a fresh boot of their patched baseline image",
		Long: `Phoenix replaces the servers of a group with fresh boots of the desired image
and spec: surge-first, gated on health checks, never below the capacity you
asked for, and safe to stop and start again at any moment.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Get().Line(),
	}
	root.SetVersionTemplate("phoenix {{.Version}}\n")
	g.Register(root)
	cli.CheckBeforeRun(root, boundsOf)
	root.AddCommand(newRebuildCommand(g), newPlanCommand(g), newDaemonCommand(g), newStatusCommand(g), newEventCommand(g), newResumeCommand(g), newRollbackCommand(g), newHoldCommand(g), newReleaseCommand(g), newProtectCommand(g, true), newProtectCommand(g, false), newDemoCommand(g), newSimCommand(g))
	root.AddCommand(newConfigCommand(g), newVersionCommand(g))
	return root
}
