package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Nova's power and rebuild actions. While a server is off or being
// rebuilt its application does not answer; once ACTIVE again it answers
// after the server's HealthDelay, as after its first boot.
//
// Each change of a server's power state bumps its generation, and every
// timer started by an earlier one gives up when it sees a newer one: a
// stop right after a boot cannot be undone by the boot's late timer.

// powerActions are the power state changes Nova takes as server actions:
// the vm_state a server must be in, the task state while the change is
// under way, and the state it ends in (the application down, except when
// it ends ACTIVE).
var powerActions = map[string]struct {
	from, task, name string
	status, vmState  string
	powerState       int
}{
	"os-stop":  {"active", "powering-off", "stop", "SHUTOFF", "stopped", 4},
	"os-start": {"stopped", "powering-on", "start", "ACTIVE", "active", 1},
	"pause":    {"active", "pausing", "pause", "PAUSED", "paused", 3},
	"unpause":  {"paused", "unpausing", "unpause", "ACTIVE", "active", 1},
	"suspend":  {"active", "suspending", "suspend", "SUSPENDED", "suspended", 4},
	"resume":   {"suspended", "resuming", "resume", "ACTIVE", "active", 1},
}

// powerAction answers os-stop, os-start, pause, unpause, suspend and
// resume. Call without s.mu.
func (s *Sim) powerAction(w http.ResponseWriter, id, action string) {
	a := powerActions[action]
	s.mu.Lock()
	srv, msg := s.lookup(id)
	status := http.StatusNotFound
	if srv != nil {
		status = http.StatusConflict
		switch {
		case srv.deleting:
			msg = invalidState(a.name, id, "task_state", "deleting")
		case srv.vmState != a.from:
			msg = invalidState(a.name, id, "vm_state", srv.vmState)
		case srv.taskState != "":
			msg = invalidState(a.name, id, "task_state", srv.taskState)
		default:
			srv.gen++
			gen := srv.gen
			srv.taskState, srv.updated = a.task, time.Now().UTC()
			s.after(s.draw(s.opts.PowerTime), func() {
				s.mu.Lock()
				if s.servers[srv.id] != srv || srv.gen != gen || srv.deleting {
					s.mu.Unlock()
					return
				}
				if a.status == "ACTIVE" {
					s.powerOn(srv)
				} else {
					s.powerOff(srv, a.status, a.vmState, a.powerState)
				}
				s.mu.Unlock()
				s.syncApp(srv)
			})
		}
	}
	s.mu.Unlock()
	if msg != "" {
		novaError(w, status, msg)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// powerOff ends a stop, a pause or a suspend: the server in that state,
// the application down. Call with s.mu held, then syncApp.
func (s *Sim) powerOff(srv *server, status, vmState string, powerState int) {
	srv.status, srv.vmState, srv.taskState, srv.powerState = status, vmState, "", powerState
	srv.appUp, srv.updated = false, time.Now().UTC()
}

// powerOn ends a start or a rebuild: ACTIVE, power state 1 (running),
// the application up after the server's HealthDelay. Call with s.mu held.
func (s *Sim) powerOn(srv *server) {
	now := time.Now().UTC()
	srv.status, srv.vmState, srv.taskState, srv.powerState = "ACTIVE", "active", "", 1
	srv.activeAt, srv.updated = now, now
	s.appAfter(srv, srv.gen)
}

// appAfter brings the server's application up after its HealthDelay,
// unless its power state changed meanwhile. Call with s.mu held.
func (s *Sim) appAfter(srv *server, gen uint64) {
	s.after(srv.healthDelay, func() {
		s.mu.Lock()
		if s.servers[srv.id] != srv || srv.gen != gen || srv.status != "ACTIVE" {
			s.mu.Unlock()
			return
		}
		srv.appUp, srv.leaking = true, false
		if img, ok := s.images[srv.imageID]; ok && img.FailsAfter > 0 {
			s.failAfter(srv, gen, img.FailsAfter)
		}
		s.mu.Unlock()
		s.syncApp(srv)
	})
}

// failAfter makes the server's application fail its checks after d,
// unless its power state changed meanwhile (Image.FailsAfter). Call with
// s.mu held.
func (s *Sim) failAfter(srv *server, gen uint64, d time.Duration) {
	s.after(d, func() {
		s.mu.Lock()
		if s.servers[srv.id] != srv || srv.gen != gen {
			s.mu.Unlock()
			return
		}
		srv.leaking = true
		s.mu.Unlock()
		s.syncApp(srv)
	})
}

// rebuild answers the rebuild action: the same server (ID, port,
// address, attached volumes) reimaged with imageRef. Status REBUILD (task
// rebuilding, then rebuild_spawning) for the rebuild time, then ACTIVE, or
// SHUTOFF for a server that was stopped (Nova keeps a stopped server
// stopped) — ERROR when the image cannot boot (Image.BootFails). Metadata in the request replaces the server's.
func (s *Sim) rebuild(w http.ResponseWriter, v microversion, id string, raw json.RawMessage) {
	var req struct {
		ImageRef *string         `json:"imageRef"`
		Name     *string         `json:"name"`
		Metadata json.RawMessage `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &req); err != nil || req.ImageRef == nil {
		novaError(w, http.StatusBadRequest, schemaError("rebuild", raw, "'imageRef' is a required property"))
		return
	}
	if !isUUID(*req.ImageRef) {
		novaError(w, http.StatusBadRequest, schemaError("imageRef", *req.ImageRef, fmt.Sprintf("'%s' is not a 'uuid'", *req.ImageRef)))
		return
	}
	var md map[string]string
	if req.Metadata != nil {
		var msg string
		if md, msg = parseMetadata("metadata", req.Metadata); msg != "" {
			novaError(w, http.StatusBadRequest, msg)
			return
		}
	}
	if req.Name != nil {
		if msg := validName("name", *req.Name); msg != "" {
			novaError(w, http.StatusBadRequest, msg)
			return
		}
	}
	s.mu.Lock()
	srv, msg := s.lookup(id)
	status := http.StatusNotFound
	var out *serverJSON
	if srv != nil {
		status = http.StatusConflict
		img, imgOK := s.images[*req.ImageRef]
		switch {
		case srv.deleting:
			msg = invalidState("rebuild", id, "task_state", "deleting")
		case srv.vmState != "active" && srv.vmState != "stopped" && srv.vmState != "error":
			msg = invalidState("rebuild", id, "vm_state", srv.vmState)
		case srv.taskState != "":
			msg = invalidState("rebuild", id, "task_state", srv.taskState)
		case !imgOK:
			status, msg = http.StatusBadRequest, "Can not find requested image"
		case img.Status != "active":
			status, msg = http.StatusBadRequest, fmt.Sprintf("Image %s is not active.", img.ID)
		case len(md) > maxMetadataItems:
			status, msg = http.StatusForbidden, metadataQuotaError()
		default:
			wasStopped := srv.vmState == "stopped"
			srv.gen++
			gen := srv.gen
			now := time.Now().UTC()
			srv.status, srv.taskState, srv.imageID, srv.updated = "REBUILD", "rebuilding", img.ID, now
			srv.appUp = false
			if md != nil {
				srv.metadata = md
			}
			if req.Name != nil {
				srv.name = *req.Name
			}
			s.after(s.draw(s.opts.RebuildTime), func() {
				s.mu.Lock()
				if s.servers[srv.id] != srv || srv.gen != gen || srv.deleting {
					s.mu.Unlock()
					return
				}
				if img.BootFails {
					// The new image does not boot: Nova leaves the
					// server in ERROR, as it would a fresh boot.
					s.finishBoot(srv, true)
					s.mu.Unlock()
					s.syncApp(srv)
					return
				}
				srv.launchedAt = time.Now().UTC()
				if wasStopped {
					s.powerOff(srv, "SHUTOFF", "stopped", 4)
				} else {
					s.powerOn(srv)
				}
				s.mu.Unlock()
				s.syncApp(srv)
			})
			out = s.serverJSON(srv, v, true)
		}
	}
	s.mu.Unlock()
	if msg != "" {
		novaError(w, status, msg)
		return
	}
	// The application stops answering at once: the guest is going down.
	s.syncApp(srv)
	writeJSON(w, http.StatusAccepted, map[string]any{"server": out})
}
