package cli

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Bound is the least value a numeric flag takes, and how a refusal says
// what was expected. pflag accepts "--poll -1s" as readily as "--poll 2s";
// without a bound such a value would reach a ticker or a deadline and fail
// far from the flag, or not at all.
type Bound struct {
	// Min is the least value accepted: nanoseconds for a duration.
	Min int64
	// Expect ends the refusal: "--poll -1s: expected " + Expect.
	Expect string
	// Free marks a flag every value of which means something (a seed).
	Free bool
}

// Above0 is a duration that must be above zero; example shows one.
func Above0(example string) Bound {
	return Bound{Min: 1, Expect: "a duration above zero, such as " + example}
}

// AtLeast is a whole number of at least min; means says what the
// lowest values do ("-1 for unlimited").
func AtLeast(min int64, means string) Bound {
	expect := fmt.Sprintf("a whole number of at least %d", min)
	if means != "" {
		expect += " (" + means + ")"
	}
	return Bound{Min: min, Expect: expect}
}

// Unbounded is a number any value of which is meaningful.
var Unbounded = Bound{Free: true}

// Bounds are a command's numeric flags by name.
type Bounds map[string]Bound

// numericTypes are the pflag types a Bound applies to.
var numericTypes = map[string]bool{"duration": true, "int": true, "int32": true, "int64": true, "uint": true, "uint64": true}

// Numeric reports whether f holds a duration or a count.
func Numeric(f *pflag.Flag) bool { return numericTypes[f.Value.Type()] }

// Check refuses (exit 2) the first flag of fs that was set below its
// bound, naming the flag, the value given and what was expected. Only
// flags the command line set are judged: defaults are the program's own.
func (b Bounds) Check(fs *pflag.FlagSet) error {
	var err error
	fs.Visit(func(f *pflag.Flag) {
		bound, ok := b[f.Name]
		if err != nil || !ok || bound.Free || !Numeric(f) {
			return
		}
		if v, ok := flagValue(f); ok && v < bound.Min {
			err = UsageError(fmt.Errorf("--%s %s: expected %s", f.Name, f.Value.String(), bound.Expect))
		}
	})
	return err
}

// flagValue reads a numeric flag as an int64 (a duration in
// nanoseconds); an unsigned value past int64 is as large as it gets.
func flagValue(f *pflag.Flag) (int64, bool) {
	s := f.Value.String()
	if f.Value.Type() == "duration" {
		d, err := time.ParseDuration(s)
		return int64(d), err == nil
	}
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return v, true
	}
	if _, err := strconv.ParseUint(s, 10, 64); err == nil {
		return 1<<63 - 1, true
	}
	return 0, false
}

// CheckBeforeRun has root check, before any of its commands runs, the
// flags of that command against boundsOf(cmd). It keeps a
// PersistentPreRunE root already has, and runs it after the check.
func CheckBeforeRun(root *cobra.Command, boundsOf func(cmd *cobra.Command) Bounds) {
	next := root.PersistentPreRunE
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if err := boundsOf(cmd).Check(cmd.Flags()); err != nil {
			return err
		}
		if next != nil {
			return next(cmd, args)
		}
		return nil
	}
}
