// Package notifications hears Nova and Glance over RabbitMQ, so that
// Phoenix looks at a group as soon as the cloud says something changed,
// instead of at its next poll.
//
// Why it only wakes: OpenStack services publish notifications through
// oslo.messaging, at most once and in no guaranteed order; a consumer
// that is restarting, a broker that fails over or a full queue loses
// some. So a notification is never the record of what happened. It says
// "look now", and the reconciler re-reads the servers and images and
// decides from them (level-triggered). Polling stays as the safety net:
// a lost message costs one poll interval, never a wrong decision.
//
// Why its own queue: the well-known queues (notifications.info on the
// nova and glance exchanges) belong to their consumers, Ceilometer
// first; a second consumer on them would take every other message away
// from it. The listener declares a queue of its own, bound to the same
// routing keys, so the broker copies each message to it. The queue is
// durable, so messages published while the listener reconnects wait
// for it; it is bounded (x-max-length, dropping the oldest) and expires
// (x-expires) when nobody has consumed it for a while, so a replica gone
// for good leaves nothing growing on the broker.
//
// Two parts:
//   - Decode reads one message body, in any of the shapes Nova and
//     Glance publish (oslo.messaging's 2.0 envelope or the bare 1.0
//     message; Nova's versioned and legacy payloads; Glance's image
//     payload). It is pure and never panics on any input.
//   - Listener connects, declares, consumes, acknowledges every message
//     (a message it cannot use is counted and dropped, never requeued),
//     and reconnects with jittered back-off whenever the broker goes
//     away. Its Status says whether it is connected and what it heard.
//
// Invariants the package keeps:
//   - The broker URL's password never appears in a log line, an error or
//     a Status.
//   - Every delivered message is acknowledged exactly once, after the
//     handler returned; poison never loops.
//   - A successful Decode of an instance event has a ServerID, and of an
//     image event an ImageID.
package notifications
