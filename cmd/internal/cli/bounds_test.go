package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestBoundsCheck(t *testing.T) {
	bounds := Bounds{
		"poll":  Above0("2s"),
		"quota": AtLeast(-1, "-1 for unlimited"),
		"seed":  Unbounded,
		"count": AtLeast(1, ""),
	}
	for _, tc := range []struct {
		args []string
		want string // "" accepted
	}{
		{nil, ""},
		{[]string{"--poll", "1ns"}, ""},
		{[]string{"--poll", "0s"}, "--poll 0s: expected a duration above zero, such as 2s"},
		{[]string{"--poll", "-1s"}, "--poll -1s: expected a duration above zero, such as 2s"},
		{[]string{"--quota", "-1"}, ""},
		{[]string{"--quota", "-2"}, "--quota -2: expected a whole number of at least -1 (-1 for unlimited)"},
		{[]string{"--seed", "-9"}, ""},
		{[]string{"--count", "0"}, "--count 0: expected a whole number of at least 1"},
		{[]string{"--count", "18446744073709551615"}, ""},
		{[]string{"--unbounded", "-3"}, ""},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			fs.Duration("poll", 2*time.Second, "")
			fs.Int("quota", -1, "")
			fs.Int64("seed", 1, "")
			fs.Uint64("count", 1, "")
			fs.Int("unbounded", 0, "")
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := bounds.Check(fs)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted, want %q", tc.want)
			case tc.want != "" && (err.Error() != tc.want || Code(err) != ExitUsage):
				t.Fatalf("got %q (exit %d), want %q (exit %d)", err, Code(err), tc.want, ExitUsage)
			}
		})
	}
}
