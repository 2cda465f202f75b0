package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
)

// numericFlags lists every duration and count flag of every verb.
func numericFlags(t *testing.T) map[string][]*pflag.Flag {
	t.Helper()
	out := map[string][]*pflag.Flag{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		verb := verbOf(c)
		for _, fs := range []*pflag.FlagSet{c.LocalFlags(), c.InheritedFlags()} {
			fs.VisitAll(func(f *pflag.Flag) {
				if cli.Numeric(f) {
					out[verb] = append(out[verb], f)
				}
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCommand())
	return out
}

// TestEveryNumericFlagHasABound keeps flagBounds complete: a duration or
// count flag added without saying what it takes fails here.
func TestEveryNumericFlagHasABound(t *testing.T) {
	flags := numericFlags(t)
	for verb, fs := range flags {
		for _, f := range fs {
			if _, ok := flagBounds[verb][f.Name]; !ok {
				t.Errorf("phoenix %s --%s has no entry in flagBounds", verb, f.Name)
			}
		}
	}
	for verb, bounds := range flagBounds {
		for name := range bounds {
			found := false
			for _, f := range flags[verb] {
				found = found || f.Name == name
			}
			if !found {
				t.Errorf("flagBounds names phoenix %s --%s, which is not a numeric flag", verb, name)
			}
		}
	}
	if len(flags["daemon"]) == 0 || len(flags["config check"]) == 0 {
		t.Fatalf("walked no daemon or config check flags: %v", flags)
	}
}

// TestFlagsBelowTheirBoundExitTwo runs every verb with each bounded flag
// just below what it takes, and the issue's own examples: each must be
// refused with exit 2, naming the flag and what was expected, before the
// verb does anything (no --config is given, which it would ask for next).
func TestFlagsBelowTheirBoundExitTwo(t *testing.T) {
	type tc struct {
		args []string
		want string
	}
	cases := []tc{
		{[]string{"daemon", "--poll", "-1s"}, "--poll -1s: expected a duration above zero"},
		{[]string{"daemon", "--stop-grace", "-5s"}, "--stop-grace -5s: expected a duration above zero"},
		{[]string{"rebuild", "--timeout", "0s"}, "--timeout 0s: expected a duration above zero"},
		{[]string{"sim", "--quota-instances", "-2"}, "--quota-instances -2: expected a whole number of at least -1"},
	}
	for verb, bounds := range flagBounds {
		for name, b := range bounds {
			if b.Free {
				continue
			}
			below := fmt.Sprint(b.Min - 1)
			for _, f := range numericFlags(t)[verb] {
				if f.Name == name && f.Value.Type() == "duration" {
					below = time.Duration(b.Min - 1).String()
				}
			}
			args := append(strings.Fields(verb), "--"+name, below)
			cases = append(cases, tc{args, fmt.Sprintf("--%s %s: expected %s", name, below, b.Expect)})
		}
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			out, code := run(t, c.args...)
			if code != cli.ExitUsage || !strings.Contains(out, c.want) {
				t.Fatalf("exit %d, want %d with %q:\n%s", code, cli.ExitUsage, c.want, out)
			}
		})
	}
}
