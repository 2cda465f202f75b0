package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"path"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// Stateful handover. A server that holds data keeps it on a Cinder
// volume, and its phoenix replacement must get that very volume: the new
// server boots without it and answers (ACTIVE, its check's port open);
// then the old server leaves the traffic and is stopped (os-stop, so the
// application flushes), the volume is snapshotted when backups are on,
// detached, attached to the new server, and the new server must pass its
// health check with it. If anything fails after the old server stopped,
// the volume goes back to it, it is started again, and the rollout halts.
//
// Where each volume is going is written on the volume itself (Cinder
// metadata), step by step, before each step is taken, and each step looks
// at what the cloud shows before it acts: a restart at any instant finds
// every handover and finishes it or rolls it back. A volume is attached
// only once it shows no attachment, so it is never on two servers.

// Handover steps, in order; rollback undoes one that failed.
const (
	stepStop     = "stop"
	stepSnapshot = "snapshot"
	stepDetach   = "detach"
	stepAttach   = "attach"
	stepGate     = "gate"
	stepRollback = "rollback"
)

// groupVolumes lists the group's data volumes. At first contact none
// carries the group's mark: the volumes that stateful.volumes selects
// among those attached to the group's servers or attached to none are
// marked, and a selector that selects none stops the group before
// anything is touched.
func (r *GroupReconciler) groupVolumes(ctx context.Context, servers []provisioner.Server) ([]provisioner.Volume, error) {
	vc := r.cloud.Volumes
	vols, err := vc.VolumesWith(ctx, map[string]string{PropGroup: r.group.Name})
	if err != nil {
		return nil, fmt.Errorf("list the data volumes of group %s: %w", r.group.Name, err)
	}
	if len(vols) > 0 {
		return vols, nil
	}
	mine := map[string]bool{}
	for _, s := range servers {
		mine[s.ID] = true
	}
	all, err := vc.VolumesWith(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("list volumes to find group %s's data volumes: %w", r.group.Name, err)
	}
	sel := r.group.Stateful.Volumes
	for _, v := range all {
		free := len(v.Attachments) == 0 && v.Status == provisioner.VolumeAvailable
		if !selects(sel, v) || v.Metadata[PropGroup] != "" || !free && !mine[attachedTo(v)] {
			continue
		}
		if err := vc.SetVolumeMetadata(ctx, v.ID, map[string]string{PropGroup: r.group.Name, PropSlot: v.ID}); err != nil {
			return nil, fmt.Errorf("mark volume %s as group %s's: %w", v.ID, r.group.Name, err)
		}
		v.Metadata = maps.Clone(v.Metadata)
		if v.Metadata == nil {
			v.Metadata = map[string]string{}
		}
		v.Metadata[PropGroup], v.Metadata[PropSlot] = r.group.Name, v.ID
		r.log.Info("data volume joins the group", zap.String("volume", v.ID), zap.String("name", v.Name), zap.String("server", attachedTo(v)))
		vols = append(vols, v)
	}
	if len(vols) == 0 {
		return nil, fmt.Errorf("%w: group %s: stateful.volumes (name %q, metadata %v) selects no volume that is free or attached to the group's servers; nothing was touched",
			ErrStuck, r.group.Name, sel.Name, sel.Metadata)
	}
	return vols, nil
}

// selects says whether a volume is one of the data volumes the selector
// designates.
func selects(sel config.VolumeSelector, v provisioner.Volume) bool {
	if sel.Name != "" {
		if ok, _ := path.Match(sel.Name, v.Name); !ok {
			return false
		}
	}
	for k, want := range sel.Metadata {
		if v.Metadata[k] != want {
			return false
		}
	}
	return true
}

// statefulView reads, from the group's volumes, which data volumes each
// server holds, which handovers are in flight, and which volumes are on
// no server and going nowhere (free: to be placed on a new server).
func statefulView(vols []provisioner.Volume) (held map[string][]string, inflight []plan.InFlight, free []string) {
	held = map[string][]string{}
	for _, v := range vols {
		for _, a := range v.Attachments {
			held[a.ServerID] = append(held[a.ServerID], v.ID)
		}
		step := v.Metadata[PropHandoverStep]
		if step != "" {
			inflight = append(inflight, plan.InFlight{Volume: v.ID, From: v.Metadata[PropHandoverFrom], To: v.Metadata[PropHandoverTo], Step: step})
		}
		if step == "" && len(v.Attachments) == 0 && v.Status == provisioner.VolumeAvailable {
			free = append(free, v.ID)
		}
	}
	for id := range held {
		slices.Sort(held[id])
	}
	return held, inflight, free
}

// startHandovers records each new handover on its volume; the round's
// advance takes its first step.
func (r *GroupReconciler) startHandovers(ctx context.Context, hs []plan.Handover, now time.Time) []plan.InFlight {
	var out []plan.InFlight
	for _, h := range hs {
		first := stepStop
		if h.From.ID == "" {
			first = stepAttach // a free volume: nothing to stop
		}
		md := map[string]string{PropHandoverFrom: h.From.ID, PropHandoverTo: h.To.ID, PropHandoverStep: first,
			PropHandoverAt: formatTime(now), PropHandoverWhy: "", PropHandoverRollout: rolloutOf(h.To)}
		if err := r.cloud.Volumes.SetVolumeMetadata(ctx, h.Volume, md); err != nil {
			r.log.Warn("could not record a handover; it is not started", zap.String("volume", h.Volume), zap.Error(err))
			continue
		}
		r.log.Info("moving a data volume to the replacement", zap.String("volume", h.Volume),
			zap.String("from", h.From.Name), zap.String("to", h.To.Name))
		msg := fmt.Sprintf("moving volume %s from %s to %s", h.Volume, h.From.Name, h.To.Name)
		if h.From.ID == "" {
			msg = fmt.Sprintf("placing free volume %s on %s", h.Volume, h.To.Name)
		}
		r.emit(Event{Type: EventHandover, Server: h.From.ID, Name: h.From.Name, ReplacedBy: h.To.Name, Message: msg})
		out = append(out, plan.InFlight{Volume: h.Volume, From: h.From.ID, To: h.To.ID, Step: first})
	}
	return out
}

// advanceHandovers takes the next step of each handover in flight, and
// returns why the rollout to image fails when one to a server of it was
// rolled back.
func (r *GroupReconciler) advanceHandovers(ctx context.Context, inflight []plan.InFlight, d plan.Decision, live []provisioner.Server, image string, now time.Time) (halt string, err error) {
	servers := map[string]plan.Classified{}
	for _, c := range d.Servers {
		servers[c.ID] = c
	}
	listed := map[string]provisioner.Server{}
	for _, s := range live {
		listed[s.ID] = s
	}
	r.forgetSteps(inflight)
	var errs []error
	for _, h := range inflight {
		why, err := r.advance(ctx, h, servers, listed, image, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("handover of volume %s: %w", h.Volume, err))
		}
		if why != "" {
			halt = why
		}
	}
	return halt, errors.Join(errs...)
}

// advance takes one step of a handover; it acts only on what the cloud
// shows now, so taking it twice does no harm. A handover rolled back fails
// the rollout to image only when its new server runs image.
func (r *GroupReconciler) advance(ctx context.Context, h plan.InFlight, servers map[string]plan.Classified, listed map[string]provisioner.Server, image string, now time.Time) (halt string, err error) {
	vc := r.cloud.Volumes
	v, err := vc.Volume(ctx, h.Volume)
	if err != nil {
		return "", err
	}
	from, fromOK := servers[h.From]
	to, toOK := servers[h.To]
	at, _ := parseTime(v.Metadata[PropHandoverAt])
	at = r.handoverClock(h, at, now)
	late := r.group.Rollout.ProgressDeadline.D() > 0 && now.Sub(at) > r.group.Rollout.ProgressDeadline.D()
	record := func(step, why string) error {
		md := map[string]string{PropHandoverStep: step, PropHandoverAt: formatTime(now)}
		if why != "" {
			md[PropHandoverWhy] = truncate(why, maxValue)
		}
		return vc.SetVolumeMetadata(ctx, h.Volume, md)
	}
	on := attachedTo(v)
	switch h.Step {
	case stepSnapshot, stepDetach, stepAttach, stepGate:
		if !toOK {
			// The replacement vanished (deleted by hand, or failed and
			// removed): give the volume back to the old server at once
			// rather than move it toward nothing.
			return "", record(stepRollback, newServerGone)
		}
	}
	switch h.Step {
	case stepStop:
		if !fromOK {
			return "", record(stepRollback, "the old server is gone")
		}
		if !toOK && from.Status == provisioner.StatusShutoff {
			return "", record(stepRollback, newServerGone)
		}
		if !toOK || to.Status != provisioner.StatusActive || !r.answers(ctx, listed[h.To]) {
			if late || !toOK {
				// Nothing was stopped yet: the handover is simply dropped.
				return "", vc.SetVolumeMetadata(ctx, h.Volume, clearHandover())
			}
			return "", nil // the new server is not up yet
		}
		if r.traffic != nil && from.Traffic != plan.TrafficNone {
			if err := r.traffic.remove(ctx, from); err != nil {
				return "", err
			}
		}
		switch from.Status {
		case provisioner.StatusActive:
			if late {
				return "", record(stepRollback, "the old server did not stop in time")
			}
			return "", r.cloud.ServerActions.StopServer(ctx, from.ID)
		case provisioner.StatusShutoff:
			next := stepDetach
			if r.group.Backup.Volumes == config.VolumesSnapshot {
				next = stepSnapshot
			}
			return "", record(next, "")
		}
		return "", nil
	case stepSnapshot:
		ok, err := r.volumeSnapshotted(ctx, from, h.Volume, KindPreHandover, now)
		if err != nil {
			return "", record(stepRollback, "snapshot: "+err.Error())
		}
		if ok {
			if err := r.retainVolumes(ctx, now); err != nil {
				r.log.Warn("volume snapshot retention failed", zap.Error(err))
			}
			return "", record(stepDetach, "")
		}
		return "", nil
	case stepDetach:
		switch {
		case on == h.From && v.Status == provisioner.VolumeInUse:
			return "", vc.DetachVolume(ctx, h.From, h.Volume)
		case on == "" && v.Status == provisioner.VolumeAvailable:
			return "", record(stepAttach, "")
		}
		return "", nil // detaching
	case stepAttach:
		switch {
		case on == "" && v.Status == provisioner.VolumeAvailable:
			return "", vc.AttachVolume(ctx, h.To, h.Volume)
		case on == h.To && v.Status == provisioner.VolumeInUse:
			// Its check passed without the data; it must pass again with it.
			r.mu.Lock()
			r.gated[h.To] = now
			r.mu.Unlock()
			return "", record(stepGate, "")
		case late:
			return "", record(stepRollback, fmt.Sprintf("the volume did not attach to %s in time (%s)", to.Name, v.Status))
		}
		return "", nil
	case stepGate:
		switch {
		case toOK && to.Ready:
			if err := vc.SetVolumeMetadata(ctx, h.Volume, clearHandover()); err != nil {
				return "", err
			}
			r.handoverEnd(now)
			r.log.Info("data volume moved", zap.String("volume", h.Volume), zap.String("to", to.Name))
			r.emit(Event{Type: EventHandover, Server: to.ID, Name: to.Name, Message: "volume " + h.Volume + " moved; " + to.Name + " serves with it"})
			return "", nil
		case to.Status == provisioner.StatusError || late:
			why := fmt.Sprintf("the new server %s did not pass its health check with volume %s", to.Name, h.Volume)
			if to.HealthError != "" {
				why += ": " + to.HealthError
			}
			return "", record(stepRollback, why)
		}
		return "", nil
	case stepRollback:
		switch {
		case on == h.To && v.Status == provisioner.VolumeInUse:
			return "", vc.DetachVolume(ctx, h.To, h.Volume)
		case on == "" && v.Status == provisioner.VolumeAvailable && fromOK:
			return "", vc.AttachVolume(ctx, h.From, h.Volume)
		case on == h.From && fromOK && from.Status == provisioner.StatusShutoff:
			return "", r.cloud.ServerActions.StartServer(ctx, h.From)
		case on == h.From && fromOK && from.Status == provisioner.StatusActive, !fromOK && on == "":
			why := cmp.Or(v.Metadata[PropHandoverWhy], "a step failed")
			if err := vc.SetVolumeMetadata(ctx, h.Volume, clearHandover()); err != nil {
				return "", err
			}
			r.handoverEnd(now)
			r.log.Error("data volume handover rolled back", zap.String("volume", h.Volume), zap.String("why", why))
			r.emit(Event{Type: EventHandover, Server: h.From, Name: from.Name,
				Message: fmt.Sprintf("volume %s rolled back to %s, which runs again: %s", h.Volume, from.Name, why)})
			if why == newServerGone {
				// Nothing says the image or the data is at fault: the
				// rollout goes on with another replacement (a failed
				// boot was counted against max_failures already).
				return "", nil
			}
			rollout := v.Metadata[PropHandoverRollout]
			if toOK {
				rollout = rolloutOf(to)
			}
			if rollout != "" && rollout != image+"/"+r.revision {
				// The new server is (or was: the plan may have removed
				// it since) of a rollout given up meanwhile, a rollback
				// or a newer image: its failure is not the one to the
				// desired image, which goes on.
				return "", nil
			}
			return fmt.Sprintf("the handover of volume %s to %s was rolled back: %s", h.Volume, cmp.Or(to.Name, h.To), why), nil
		}
		return "", nil
	}
	return "", fmt.Errorf("unknown step %q recorded on volume %s", h.Step, h.Volume)
}

type stepSeen struct {
	step string
	at   time.Time
}

// handoverClock is when the deadline of h's step starts: when the step
// was recorded, or, when later, when this reconciler first saw it. A
// daemon that starts long after a step was recorded (it was down, or
// another replica's) gives the step its whole deadline from its first
// look — the attach it is about to send has not had any time yet — rather
// than rolling back what it has not watched.
func (r *GroupReconciler) handoverClock(h plan.InFlight, recorded, now time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen, ok := r.stepSeen[h.Volume]
	if !ok || seen.step != h.Step {
		seen = stepSeen{step: h.Step, at: now}
		r.stepSeen[h.Volume] = seen
	}
	if seen.at.After(recorded) {
		return seen.at
	}
	return recorded
}

// forgetSteps drops what handoverClock remembers of volumes no longer in
// a handover.
func (r *GroupReconciler) forgetSteps(inflight []plan.InFlight) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for vol := range r.stepSeen {
		if !slices.ContainsFunc(inflight, func(h plan.InFlight) bool { return h.Volume == vol }) {
			delete(r.stepSeen, vol)
		}
	}
}

// newServerGone is why a handover whose replacement vanished was rolled
// back; it alone does not halt the rollout.
const newServerGone = "the new server is gone"

func clearHandover() map[string]string {
	return map[string]string{PropHandoverFrom: "", PropHandoverTo: "", PropHandoverStep: "", PropHandoverAt: "", PropHandoverWhy: "", PropHandoverRollout: ""}
}

// rolloutOf names the rollout a server was built by: image/revision.
func rolloutOf(c plan.Classified) string {
	return c.ImageID + "/" + c.Revision
}

// attachedTo is the server a volume is attached to, "" for none.
func attachedTo(v provisioner.Volume) string {
	if len(v.Attachments) == 0 {
		return ""
	}
	return v.Attachments[0].ServerID
}

// answers is the check before a handover: the new server's health check
// port accepts a connection (its application may need the data to pass
// the full check). Without a check, ACTIVE is enough.
func (r *GroupReconciler) answers(ctx context.Context, s provisioner.Server) bool {
	h := r.group.Health
	port := 0
	switch {
	case h.HTTP != nil:
		port = h.HTTP.Port
	case h.TCP != nil:
		port = h.TCP.Port
	default:
		return true
	}
	addr := address(s, r.group.Networks)
	if addr == "" {
		return false
	}
	dctx, cancel := context.WithTimeout(ctx, h.Timeout.D())
	defer cancel()
	var dialer net.Dialer
	conn, err := dialer.DialContext(dctx, "tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = conn.Close()
	return true
}

// handoverEnd notes that a handover ended: the rollout's stall deadline
// runs again from now.
func (r *GroupReconciler) handoverEnd(now time.Time) {
	r.mu.Lock()
	r.handoverEnded = now
	r.mu.Unlock()
}
