package controller

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/phoenix-ops/phoenix/controller/config"
)

// Phoenix's record on each server. The tag makes the server the group's
// from the create call on; the metadata says which revision it is and,
// before every destructive step, which phase it is in and since when, so
// that a restarted controller resumes instead of starting over.
const (
	tagPrefix = "phoenix-group:"

	MetaGroup     = "phoenix:group"
	MetaRevision  = "phoenix:revision"
	MetaImage     = "phoenix:image"
	MetaRequestID = "phoenix:request-id"
	MetaRollout   = "phoenix:rollout"
	MetaCreatedAt = "phoenix:created-at"
	MetaPhase     = "phoenix:phase"
	MetaPhaseAt   = "phoenix:phase-at"
	MetaReason    = "phoenix:reason"
	// MetaRebuild records an event's request to replace the server (a
	// security patch, or a twin of a compromised server), so that a
	// restart still replaces it; MetaCompromised marks a server reported
	// compromised, taken out of the traffic and deleted at once.
	MetaRebuild     = "phoenix:rebuild"
	MetaCompromised = "phoenix:compromised"
	// MetaHalted records, on every server of a group, the image@revision
	// whose rollout halted, and MetaHaltReason why; MetaReadyAt when a
	// server first served, so that it is never taken for a boot that
	// missed its deadline.
	MetaHalted     = "phoenix:halted"
	MetaHaltReason = "phoenix:halt-reason"
	MetaReadyAt    = "phoenix:ready-at"
	// MetaCanaryPassed records `phoenix resume` promoting a paused canary
	// of image@revision.
	MetaCanaryPassed = "phoenix:canary-passed"
	// MetaDrainThen says what follows a drain: "rebuild" for a server
	// rebuilt in place (strategy rebuild), nothing for a delete.
	MetaDrainThen = "phoenix:drain-then"
)

// Phases recorded on a server. PhaseDraining is written, with its start,
// before a server's member goes to weight 0; PhaseDeleting before its
// delete is requested; PhaseRebuilding before Nova is asked to rebuild it
// in place (cleared once it serves again).
const (
	PhaseDraining   = "draining"
	PhaseDeleting   = "deleting"
	PhaseRebuilding = "rebuilding"
	// DrainThenRebuild is MetaDrainThen's value before a rebuild.
	DrainThenRebuild = "rebuild"
)

// GroupTag is the Nova tag that marks a server as a member of group.
func GroupTag(group string) string { return tagPrefix + group }

// Revision identifies everything in a group's spec that shapes a server
// except the image, which drifts on its own (a new image is not a new
// spec). Two specs with the same revision boot identical servers from the
// same image. Availability zones are left out: they say where servers go,
// not what they are.
func Revision(g config.Group) string {
	secGroups := append([]string(nil), g.SecurityGroups...)
	sort.Strings(secGroups)
	userData := sha256.Sum256(g.UserData)
	doc := struct {
		Flavor         string            `json:"flavor"`
		Networks       []string          `json:"networks"`
		KeyName        string            `json:"key_name"`
		SecurityGroups []string          `json:"security_groups"`
		ServerGroup    string            `json:"server_group"`
		UserData       string            `json:"user_data"`
		Metadata       map[string]string `json:"metadata"`
	}{g.Flavor, g.Networks, g.KeyName, secGroups, g.ServerGroup, hex.EncodeToString(userData[:]), g.Metadata}
	b, _ := json.Marshal(doc) // map keys are sorted by encoding/json
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:12]
}

// Drift says why a live server no longer matches the desired state, or ""
// when it does. Drift never looks at health: a drifted server is replaced
// surge-first however healthy it is.
func Drift(t Target, s Server) string {
	switch {
	case s.ImageID != t.ImageID:
		return fmt.Sprintf("image %s is not the desired %s", orNone(s.ImageID), t.ImageID)
	case s.Revision != t.Revision:
		return fmt.Sprintf("spec revision %s is not the desired %s", orNone(s.Revision), t.Revision)
	case s.RebuildMark != "":
		return "rebuild requested: " + s.RebuildMark
	case forced(t.Forces, s) != "":
		return forced(t.Forces, s)
	case !t.RebuildBefore.IsZero() && s.Created.Before(t.RebuildBefore):
		reason := t.RebuildReason
		if reason == "" {
			reason = "forced rebuild"
		}
		return fmt.Sprintf("created %s, before the rebuild requested at %s (%s)",
			s.Created.UTC().Format(time.RFC3339), t.RebuildBefore.UTC().Format(time.RFC3339), reason)
	}
	return ""
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// forced returns the reason of the first force that designates s.
func forced(forces []Force, s Server) string {
	for _, f := range forces {
		if !s.Created.Before(f.Before) {
			continue
		}
		if f.ImageID != "" && (s.ImageID != f.ImageID || s.Revision != f.Revision) {
			continue
		}
		return "rebuild requested: " + f.Reason
	}
	return ""
}
