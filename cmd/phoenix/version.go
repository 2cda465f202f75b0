package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/cmd/internal/version"
)

func newVersionCommand(g *cli.Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print Phoenix's version, commit, build date and Go version",
		Long: `version prints which Phoenix this is: the release it was stamped with at
build time, the commit and its date, and the Go toolchain. A build that was
not stamped (go build, go run) reports what Go recorded, or "devel" and
"unknown". With -o json it prints one object for scripts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runVersion(cmd.OutOrStdout(), g, version.Get())
		},
	}
}

func runVersion(out io.Writer, g *cli.Globals, info version.Info) error {
	if err := cli.CheckOutput(g.Output); err != nil {
		return err
	}
	if g.Output == "json" {
		return json.NewEncoder(out).Encode(info)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "version:\t%s\n", info.Version)
	commit := info.Commit
	if info.Modified {
		commit += " (with uncommitted changes)"
	}
	fmt.Fprintf(tw, "commit:\t%s\n", commit)
	fmt.Fprintf(tw, "build date:\t%s\n", info.BuildDate)
	fmt.Fprintf(tw, "go version:\t%s\n", info.GoVersion)
	fmt.Fprintf(tw, "platform:\t%s\n", info.Platform)
	return tw.Flush()
}
