package daemon

import (
	"slices"
	"testing"
)

// Every label value replacementReason gives is one the counters start at
// zero with.
func TestReplacementReasons(t *testing.T) {
	for _, tc := range []struct{ reason, want string }{
		{"image abc replaced by def", "image"},
		{"spec revision 3 replaced by 4", "spec"},
		{"rebuild requested: built like compromised server x", "compromised"},
		{"compromised (event e1)", "compromised"},
		{"rebuild requested: security patch CVE-1", "event"},
		{"created before the rebuild", "forced"},
		{"failed: server is in ERROR", "failed"},
		{"surplus: 4 servers for 3", "surplus"},
		{"age: 200h, max_age 168h", "age"},
		{"unhealthy for 3 checks", "heal"},
		{"something new", "other"},
	} {
		got := replacementReason(tc.reason)
		if got != tc.want {
			t.Errorf("replacementReason(%q) = %q, want %q", tc.reason, got, tc.want)
		}
		if !slices.Contains(replacementReasons, got) {
			t.Errorf("replacementReason(%q) = %q, which replacementReasons lacks", tc.reason, got)
		}
	}
}
