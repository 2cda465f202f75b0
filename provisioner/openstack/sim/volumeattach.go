package sim

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Nova's os-volume_attachments on a server, and the attachment history
// tests read to prove that no volume was ever on two servers at once.

// AttachmentRecord is one attachment of a volume to a server, from the
// request that reserved the volume to the moment it was free again.
type AttachmentRecord struct {
	VolumeID, ServerID, Device string
	// Requested is when Nova accepted the attach (the volume was reserved
	// for the server from then on); Attached when it became in-use (zero
	// if it never did).
	Requested, Attached time.Time
	// DetachRequested is when a detach was accepted (zero if none was);
	// Released is when the volume was free again: available after a
	// detach, or the server gone. Zero while the volume is still held.
	DetachRequested, Released time.Time
}

// Holds reports whether the attachment held its volume at t.
func (a AttachmentRecord) Holds(t time.Time) bool {
	return !t.Before(a.Requested) && (a.Released.IsZero() || t.Before(a.Released))
}

// RefusedAttachment is an attach the simulator refused.
type RefusedAttachment struct {
	Time               time.Time
	VolumeID, ServerID string
	// HeldBy is the server the volume was attached to at the time, if
	// any: a refusal with HeldBy set is an attempt to put a volume on a
	// second server.
	HeldBy  string
	Status  int
	Message string
}

// AttachmentHistory returns every attachment ever made, in the order they
// were requested, current ones included (Released zero).
func (s *Sim) AttachmentHistory() []AttachmentRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.cinder.attachments)
}

// RefusedAttachments returns every attach request the simulator refused.
func (s *Sim) RefusedAttachments() []RefusedAttachment {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.cinder.refused)
}

// CheckExclusiveAttachments returns an error naming every volume that two
// attachments held at overlapping times, and every attempt refused because
// the volume was on another server; nil when neither ever happened. The
// simulator refuses double attachments itself, so an error here means a
// client tried (refused attempts) or the simulator is wrong (overlaps).
func (s *Sim) CheckExclusiveAttachments() error {
	s.mu.Lock()
	hist := slices.Clone(s.cinder.attachments)
	refused := slices.Clone(s.cinder.refused)
	s.mu.Unlock()
	var problems []string
	for i, a := range hist {
		for _, b := range hist[i+1:] {
			if a.VolumeID == b.VolumeID && (a.Holds(b.Requested) || b.Holds(a.Requested)) {
				problems = append(problems, fmt.Sprintf("volume %s held by server %s and server %s at once", a.VolumeID, a.ServerID, b.ServerID))
			}
		}
	}
	for _, r := range refused {
		if r.HeldBy != "" && r.HeldBy != r.ServerID {
			problems = append(problems, fmt.Sprintf("attach of volume %s to server %s at %s while it was on server %s (refused %d)",
				r.VolumeID, r.ServerID, r.Time.Format(time.RFC3339Nano), r.HeldBy, r.Status))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("sim: %s", strings.Join(problems, "; "))
	}
	return nil
}

// AttachVolume attaches a volume to a server at once (in-use, no
// transition), as if it had been attached before the test: for setting up
// servers that hold data. The rules of the API apply: the volume must be
// available and the server ACTIVE or SHUTOFF.
func (s *Sim) AttachVolume(serverID, volumeID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	vol, _, status, msg := s.reserveVolume(serverID, volumeID)
	if msg != "" {
		return fmt.Errorf("sim: attach volume %s to server %s: %d %s", volumeID, serverID, status, msg)
	}
	s.finishAttach(vol)
	return nil
}

var (
	reVolumeAttachments = regexp.MustCompile(`^/servers/([^/]+)/os-volume_attachments$`)
	reVolumeAttachment  = regexp.MustCompile(`^/servers/([^/]+)/os-volume_attachments/([^/]+)$`)
)

func (s *Sim) attachmentJSON(srvID string, vol *volume) map[string]any {
	return map[string]any{"id": vol.id, "serverId": srvID, "volumeId": vol.id, "device": vol.device}
}

// listVolumeAttachments answers GET /servers/{id}/os-volume_attachments.
func (s *Sim) listVolumeAttachments(w http.ResponseWriter, id string) {
	s.mu.Lock()
	srv, msg := s.lookup(id)
	list := []any{}
	if srv != nil {
		for _, vid := range srv.volumes {
			if vol, ok := s.cinder.volumes[vid]; ok {
				list = append(list, s.attachmentJSON(srv.id, vol))
			}
		}
	}
	s.mu.Unlock()
	if srv == nil {
		novaError(w, http.StatusNotFound, msg)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"volumeAttachments": list})
}

// showVolumeAttachment answers GET /servers/{id}/os-volume_attachments/{vol}.
func (s *Sim) showVolumeAttachment(w http.ResponseWriter, id, volumeID string) {
	s.mu.Lock()
	srv, msg := s.lookup(id)
	var out map[string]any
	if srv != nil {
		if vol, ok := s.cinder.volumes[volumeID]; ok && slices.Contains(srv.volumes, volumeID) {
			out = s.attachmentJSON(srv.id, vol)
		} else {
			msg = fmt.Sprintf("Volume %s is not attached to %s", volumeID, id)
		}
	}
	s.mu.Unlock()
	if out == nil {
		novaError(w, http.StatusNotFound, msg)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"volumeAttachment": out})
}

// canAttach applies Nova's rule for attach and detach: vm_state active or
// stopped, no task in progress. Call with s.mu held.
func canAttach(srv *server, action string) string {
	if srv.vmState != "active" && srv.vmState != "stopped" {
		return invalidState(action, srv.id, "vm_state", srv.vmState)
	}
	if srv.taskState != "" {
		return invalidState(action, srv.id, "task_state", srv.taskState)
	}
	if srv.deleting {
		return invalidState(action, srv.id, "task_state", "deleting")
	}
	return ""
}

// reserveVolume checks an attach and, when it passes, reserves the volume
// for the server (status attaching, the attachment recorded on both
// sides). A refusal is recorded. Call with s.mu held.
func (s *Sim) reserveVolume(serverID, volumeID string) (*volume, *server, int, string) {
	refuse := func(holder string, status int, msg string) (*volume, *server, int, string) {
		s.cinder.refused = append(s.cinder.refused, RefusedAttachment{Time: time.Now(), VolumeID: volumeID,
			ServerID: serverID, HeldBy: holder, Status: status, Message: msg})
		return nil, nil, status, msg
	}
	srv, msg := s.lookup(serverID)
	if srv == nil {
		return refuse("", http.StatusNotFound, msg)
	}
	vol, ok := s.cinder.volumes[volumeID]
	if !ok {
		return refuse("", http.StatusNotFound, volumeNotFound(volumeID))
	}
	if msg := canAttach(srv, "attach_volume"); msg != "" {
		return refuse(vol.serverID, http.StatusConflict, msg)
	}
	if vol.serverID == serverID {
		return refuse(vol.serverID, http.StatusBadRequest, fmt.Sprintf("Invalid volume: volume %s already attached", volumeID))
	}
	if vol.serverID != "" {
		// Nova's own check, before it asks Cinder (the development
		// cloud's words).
		return refuse(vol.serverID, http.StatusBadRequest, fmt.Sprintf("Invalid volume: volume %s is already attached to instances: %s", volumeID, vol.serverID))
	}
	if vol.status != "available" {
		// Nova passes Cinder's refusal of the reservation on as 400.
		return refuse(vol.serverID, http.StatusBadRequest, fmt.Sprintf(
			"Invalid input received: Invalid volume: Volume %s status must be available or downloading to reserve, but the current status is %s. (HTTP 400)", volumeID, vol.status))
	}
	now := time.Now().UTC()
	vol.status, vol.serverID, vol.updated = "attaching", serverID, now
	vol.attachmentID = uuid.NewString()
	vol.device = nextDevice(s, srv)
	vol.history = len(s.cinder.attachments)
	s.cinder.attachments = append(s.cinder.attachments, AttachmentRecord{VolumeID: volumeID, ServerID: serverID,
		Device: vol.device, Requested: now})
	srv.volumes = append(slices.Clone(srv.volumes), volumeID)
	srv.updated = now
	return vol, srv, 0, ""
}

// nextDevice is the first of /dev/vdb, /dev/vdc, ... the server's volumes
// do not use. Call with s.mu held.
func nextDevice(s *Sim, srv *server) string {
	used := map[string]bool{}
	for _, vid := range srv.volumes {
		if vol, ok := s.cinder.volumes[vid]; ok {
			used[vol.device] = true
		}
	}
	for c := 'b'; c <= 'z'; c++ {
		if d := "/dev/vd" + string(c); !used[d] {
			return d
		}
	}
	return "/dev/vdzz"
}

// finishAttach makes a reserved volume in-use. Call with s.mu held.
func (s *Sim) finishAttach(vol *volume) {
	now := time.Now().UTC()
	vol.status, vol.attachedAt, vol.updated = "in-use", now, now
	if vol.history >= 0 {
		s.cinder.attachments[vol.history].Attached = now
	}
}

// releaseVolume ends a volume's attachment: available, off its server.
// Call with s.mu held.
func (s *Sim) releaseVolume(vol *volume) {
	now := time.Now().UTC()
	if srv, ok := s.servers[vol.serverID]; ok {
		srv.volumes = slices.DeleteFunc(slices.Clone(srv.volumes), func(v string) bool { return v == vol.id })
		srv.updated = now
	}
	if vol.history >= 0 {
		s.cinder.attachments[vol.history].Released = now
	}
	vol.status, vol.serverID, vol.device, vol.attachmentID, vol.history = "available", "", "", "", -1
	vol.attachedAt, vol.updated = time.Time{}, now
}

// attachVolume answers POST /servers/{id}/os-volume_attachments.
func (s *Sim) attachVolume(w http.ResponseWriter, r *http.Request, id string) {
	var body struct {
		VolumeAttachment *struct {
			VolumeID string  `json:"volumeId"`
			Device   *string `json:"device"`
		} `json:"volumeAttachment"`
	}
	if err := decodeJSON(r, &body); err != nil || body.VolumeAttachment == nil || body.VolumeAttachment.VolumeID == "" {
		novaError(w, http.StatusBadRequest, "Invalid input for field/attribute volumeAttachment. 'volumeId' is a required property")
		return
	}
	volID := body.VolumeAttachment.VolumeID
	s.mu.Lock()
	vol, srv, status, msg := s.reserveVolume(id, volID)
	var out map[string]any
	if vol != nil {
		out = s.attachmentJSON(srv.id, vol)
		s.after(s.draw(s.opts.AttachTime), func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.cinder.volumes[vol.id] == vol && vol.status == "attaching" && vol.serverID == srv.id {
				s.finishAttach(vol)
			}
		})
	}
	s.mu.Unlock()
	if vol == nil {
		novaError(w, status, msg)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"volumeAttachment": out})
}

// detachVolume answers DELETE /servers/{id}/os-volume_attachments/{vol}.
func (s *Sim) detachVolume(w http.ResponseWriter, id, volumeID string) {
	s.mu.Lock()
	srv, msg := s.lookup(id)
	status := http.StatusNotFound
	if srv != nil {
		vol, ok := s.cinder.volumes[volumeID]
		switch {
		case !ok || !slices.Contains(srv.volumes, volumeID):
			msg = fmt.Sprintf("Volume %s is not attached to %s", volumeID, id)
		case canAttach(srv, "detach_volume") != "":
			status, msg = http.StatusConflict, canAttach(srv, "detach_volume")
		case vol.status != "in-use":
			status, msg = http.StatusBadRequest, invalidVolume(fmt.Sprintf("Volume %s must be in-use to be detached, but it is %s.", volumeID, vol.status))
		default:
			now := time.Now().UTC()
			vol.status, vol.updated = "detaching", now
			if vol.history >= 0 {
				s.cinder.attachments[vol.history].DetachRequested = now
			}
			s.after(s.draw(s.opts.AttachTime), func() {
				s.mu.Lock()
				defer s.mu.Unlock()
				if s.cinder.volumes[vol.id] == vol && vol.status == "detaching" {
					s.releaseVolume(vol)
				}
			})
			msg = ""
		}
	}
	s.mu.Unlock()
	if msg != "" {
		novaError(w, status, msg)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// serveVolumeAttachments routes /servers/{id}/os-volume_attachments[/vol];
// false when the path is not one of them.
func (s *Sim) serveVolumeAttachments(w http.ResponseWriter, r *http.Request, sub string) bool {
	if p := reVolumeAttachments.FindStringSubmatch(sub); p != nil {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			s.listVolumeAttachments(w, p[1])
		case http.MethodPost:
			s.attachVolume(w, r, p[1])
		default:
			novaError(w, http.StatusMethodNotAllowed, "The method specified is not allowed for this resource.")
		}
		return true
	}
	if p := reVolumeAttachment.FindStringSubmatch(sub); p != nil {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			s.showVolumeAttachment(w, p[1], p[2])
		case http.MethodDelete:
			s.detachVolume(w, p[1], p[2])
		default:
			novaError(w, http.StatusMethodNotAllowed, "The method specified is not allowed for this resource.")
		}
		return true
	}
	return false
}

// volumesAttached is a server's os-extended-volumes:volumes_attached.
// Call with s.mu held.
func (s *Sim) volumesAttached(srv *server, v microversion) []any {
	out := make([]any, 0, len(srv.volumes))
	for _, id := range srv.volumes {
		item := map[string]any{"id": id}
		if v.atLeast(3) {
			item["delete_on_termination"] = false
		}
		out = append(out, item)
	}
	return out
}

// serverGone frees the volumes of a server that no longer exists, as Nova
// detaches them when it deletes a server. Call with s.mu held.
func (s *Sim) serverGone(srv *server) {
	for _, id := range slices.Clone(srv.volumes) {
		if vol, ok := s.cinder.volumes[id]; ok && vol.serverID == srv.id {
			s.releaseVolume(vol)
		}
	}
}
