package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
)

// flagBounds is every duration and count flag of every verb with the
// values it takes. A zero poll or timeout is refused rather than read as
// "the default" or "at once": neither is what an operator who typed it
// meant. TestEveryNumericFlagHasABound keeps the table complete.
var flagBounds = map[string]cli.Bounds{
	"daemon": {
		"poll":            cli.Above0("2s"),
		"stop-grace":      cli.Above0("30s"),
		"create-backoff":  cli.Above0("10s"),
		"request-timeout": cli.Above0("30s"),
		"retry-wait-min":  cli.Above0("1s"),
		"retry-wait-max":  cli.Above0("30s"),
	},
	"rebuild": {
		"timeout": cli.Above0("30m"),
		"poll":    cli.Above0("2s"),
	},
	"demo": {
		"seed":    cli.Unbounded,
		"timeout": cli.Above0("2m"),
	},
	"sim": {
		// A boot time of zero is a cloud whose servers boot at once.
		"boot-time":       {Min: 0, Expect: "a duration of zero or more, such as 1s"},
		"seed":            cli.Unbounded,
		"quota-instances": cli.AtLeast(-1, "-1 for unlimited"),
		"health-port":     cli.AtLeast(0, "0 picks one: 8080 when it is free"),
	},
	"config check": {
		"timeout": cli.Above0("1m"),
	},
}

// verbOf is a command's path without the binary's name: "config check".
func verbOf(cmd *cobra.Command) string {
	path := cmd.CommandPath()
	if root := cmd.Root(); root != nil {
		path = strings.TrimPrefix(strings.TrimPrefix(path, root.Name()), " ")
	}
	return path
}

func boundsOf(cmd *cobra.Command) cli.Bounds { return flagBounds[verbOf(cmd)] }
