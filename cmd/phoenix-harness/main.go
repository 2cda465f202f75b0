// Command phoenix-harness holds the test harnesses that measure and break
// Phoenix: chaos drives real `phoenix daemon` processes through faults
// and kills; soak and bench run the controller in this process against
// the simulator. None of it belongs in the operator's binary.
package main

import (
	"github.com/spf13/cobra"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
)

func main() { cli.Main("phoenix-harness", newRootCommand()) }

func newRootCommand() *cobra.Command {
	g := &cli.Globals{}
	root := &cobra.Command{
		Use:   "phoenix-harness",
		Short: "Break and measure Phoenix: chaos, soak, bench",
		Long: `phoenix-harness tests Phoenix the hard way: random cloud faults and SIGKILLs
of real phoenix daemons (chaos), many rollouts watched for leaks (soak), and
measurements against their bounds (bench). It is for developers and CI; an
operator needs only phoenix.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	g.Register(root)
	root.AddCommand(newChaosCommand(g), newSoakCommand(g), newBenchCommand(g))
	return root
}
