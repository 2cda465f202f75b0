package plan

import (
	"testing"
	"time"
)

func TestPlanRequeueAtMinReady(t *testing.T) {
	d := Plan(target(4, 1, 0), fleet("ooow"), t0)
	// w became healthy 5s before t0 and min_ready is 30s.
	if d.RequeueAfter != 25*time.Second {
		t.Fatalf("RequeueAfter = %v, want 25s", d.RequeueAfter)
	}
}
