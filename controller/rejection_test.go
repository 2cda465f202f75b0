package controller

import (
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// Chaos seed 53, in CI: a stateful group's rollback was recorded on the
// servers that could take it, the halted round removed them (failed new
// servers), and the next list showed none carrying it: the reconciler
// took that for `phoenix resume`, went back to the rejected image and
// booted it 33 ms after rejecting it. Only a server still listed that
// carried the record and no longer does says it was lifted.
func TestRejectionLiftedOnlyByAServerThatCarriedIt(t *testing.T) {
	r := NewGroupReconciler(config.Group{Name: "web"}, provisioner.Cloud{}, nil, nil, Options{})
	defer r.Close()
	at := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	j := rejection{rejected: plan.Ref{ImageID: "bad", Revision: "rev"}, to: "good", at: at, reason: "failed"}
	carrying := func(id string) provisioner.Server {
		return provisioner.Server{ID: id, Metadata: rejectionMetadata(j)}
	}
	bare := func(id string) provisioner.Server { return provisioner.Server{ID: id, Metadata: map[string]string{}} }

	if got := r.knownRejection(j, []provisioner.Server{carrying("new-1"), bare("old-1")}); got.isZero() {
		t.Fatal("the rollback on record was not taken")
	}
	// The server that carried it is gone; the others never took it.
	if got := r.knownRejection(rejection{}, []provisioner.Server{bare("old-1"), bare("old-2")}); got.rejected != j.rejected {
		t.Fatalf("the rollback was dropped when the only server carrying it went: %+v", got)
	}
	// Seen again, on another server; then that server lists without it:
	// `phoenix resume` lifted it.
	r.knownRejection(j, []provisioner.Server{carrying("old-1"), bare("old-2")})
	if got := r.knownRejection(rejection{}, []provisioner.Server{bare("old-1"), bare("old-2")}); !got.isZero() {
		t.Errorf("a server that carried the rollback lists without it, yet it stands: %+v", got)
	}
}
