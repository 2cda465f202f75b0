package controller

import (
	"context"
	"fmt"
	"maps"
	"time"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// Rebuilding in place (rollout.strategy rebuild). Some servers cannot
// change address — registered in DNS, in firewalls, in licences — and
// Nova's rebuild reimages a server while it keeps its id, ports,
// addresses and volumes. The plan treats such a server like an old one
// whose removal costs a unit of the unavailability budget (it is out of
// service while Nova reimages it); once it serves on the new image it is
// a current one, and the budget frees.
//
// What is written on the server before the request makes a restart safe:
// the phase (so a lost request is sent again rather than forgotten), a
// new created-at (the server is a fresh boot: an age limit or a forced
// rebuild must not pick it again, and its health is probed anew), and the
// ready record and rebuild request cleared (until it serves again it is a
// boot that may fail, not a server that served).

// reimageServers records each rebuild, then asks Nova for it. Like a
// create, a rebuild records what the group ran before (previous), for a
// rollback: with strategy rebuild no server is ever created.
func (r *GroupReconciler) reimageServers(ctx context.Context, reimages []plan.Reimage, live []provisioner.Server, img provisioner.Image, previous plan.Ref, now time.Time) error {
	if len(reimages) == 0 {
		return nil
	}
	metadata := map[string]map[string]string{}
	for _, s := range live {
		metadata[s.ID] = s.Metadata
	}
	return parallel(reimages, r.opts.Parallelism, func(b plan.Reimage) error {
		// inRequest, when set, replaces the server's metadata with the
		// rebuild itself.
		var inRequest map[string]string
		// A resumed rebuild whose server is at rest (the request was lost,
		// or it landed and a newer reason — a second image, a security
		// patch — asks for another) is recorded anew: its created-at must
		// say it is a fresh boot, or a force that predates the record
		// picks the same server again, round after round.
		if !b.Resume || acceptsMetadata(b.Server.Status, b.Server.TaskState) || b.Server.Status == provisioner.StatusError {
			md := map[string]string{
				MetaPhase:     plan.PhaseRebuilding,
				MetaPhaseAt:   formatTime(now),
				MetaReason:    truncate(b.Reason, maxValue),
				MetaCreatedAt: formatTime(now),
				MetaImage:     img.ID,
				MetaRollout:   r.Rollout(),
				MetaReadyAt:   "",
				MetaRebuild:   "",
				MetaDrainThen: "",
			}
			if !previous.IsZero() {
				md[MetaPreviousImage], md[MetaPreviousRevision] = previous.ImageID, previous.Revision
			}
			if b.Server.Status == provisioner.StatusError {
				// Nova refuses a metadata change on a server in ERROR
				// (a rebuild that failed) but takes a rebuild, whose
				// metadata replaces the server's: the record goes with
				// the request. Lost with it, the next round finds the
				// server in ERROR still and sends both again.
				inRequest = maps.Clone(metadata[b.Server.ID])
				if inRequest == nil {
					inRequest = map[string]string{}
				}
				for k, v := range md {
					if v == "" {
						delete(inRequest, k)
					} else {
						inRequest[k] = v
					}
				}
			} else if err := r.cloud.Servers.SetServerMetadata(ctx, b.Server.ID, md); err != nil {
				return fmt.Errorf("record the rebuild of server %s (%s): %w", b.Server.Name, b.Server.ID, err)
			}
		}
		if err := r.cloud.ServerActions.RebuildServer(ctx, b.Server.ID, img.ID, inRequest); err != nil {
			return fmt.Errorf("rebuild server %s (%s) with image %s: %w", b.Server.Name, b.Server.ID, img.ID, err)
		}
		r.log.Info("rebuilding server in place", zap.String("server", b.Server.ID), zap.String("name", b.Server.Name),
			zap.String("image", img.ID), zap.String("reason", b.Reason), zap.Bool("resumed", b.Resume), zap.String("was", b.Server.Status))
		r.emit(Event{Type: EventReimage, Server: b.Server.ID, Name: b.Server.Name, Image: img.ID, Reason: b.Reason})
		return nil
	})
}
