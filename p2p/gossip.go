package p2p

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
)

// MaxGossipMessage is the largest message a Hydra topic carries. Gossip is
// for small, lossy things (node stats, progress ticks: docs/design.md §6); a
// bigger payload belongs on a stream. Every node's topic validator rejects
// larger messages, so one misbehaving node cannot flood the mesh with them.
const MaxGossipMessage = 64 << 10

// ErrGossipTooLarge is returned by Publish for data over MaxGossipMessage.
var ErrGossipTooLarge = errors.New("gossip message too large")

// gossipHeartbeat is the gossipsub router's heartbeat (the library's default
// is 1 s): mesh upkeep (grafting peers that subscribed since, pruning
// the gone) and IHAVE gossip. A node publishes its own messages to every
// peer of the topic it knows (flood publishing, the default), so only the
// relaying of others' messages waits for the mesh; Hydra's topics carry a
// few small messages every few seconds, and every heartbeat wakes every
// node, busy or idle (docs/design.md §7 "Idle cost"). Lost subscriptions and
// dead outbound streams are mended by the gossip repair, not by heartbeats.
const gossipHeartbeat = 5 * time.Second

// Bounds of the topics a peer's subscriptions are kept for (topicFilter).
const (
	// maxTopicName is the longest topic name, hydra/<cluster>/ included,
	// that a subscription may name.
	maxTopicName = 256
	// maxPendingTopics bounds the names of this cluster's topics that this
	// node has not joined (or not yet) whose subscriptions are kept.
	maxPendingTopics = 16
)

// topicFilter is the router's subscription filter. gossipsub keeps every
// topic a connected peer says it subscribes to, as a key of its topic map,
// until that peer leaves: without a filter any peer that speaks gossipsub,
// a stranger too, could make this node keep as many names, as long, as it
// cares to send. Only the cluster's topics (hydra/<cluster>/, at most
// maxTopicName bytes) are kept: the ones this node joined, and at most
// maxPendingTopics others, so that a peer's subscription to a topic this
// node joins a moment later (it sends its subscriptions once) is not lost.
type topicFilter struct {
	prefix string

	mu     sync.Mutex
	joined map[string]bool // topics this node joined (Host.Topic)
	others map[string]bool // the cluster's other topics peers subscribed to, at most maxPendingTopics
}

var _ pubsub.SubscriptionFilter = (*topicFilter)(nil)

// newTopicFilter filters for cluster's topics; known (names as Host.Topic takes them) are kept
// as if joined already (Config.Topics).
func newTopicFilter(cluster string, known ...string) *topicFilter {
	f := &topicFilter{prefix: "hydra/" + cluster + "/", joined: map[string]bool{}, others: map[string]bool{}}
	for _, name := range known {
		f.joined[f.prefix+name] = true
	}
	return f
}

// CanSubscribe reports whether topic is a name of this cluster's topics.
func (f *topicFilter) CanSubscribe(topic string) bool {
	return strings.HasPrefix(topic, f.prefix) && len(topic) <= maxTopicName
}

// join records that this node joined topic: peers' subscriptions to it are
// always kept.
func (f *topicFilter) join(topic string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.joined[topic] = true
	delete(f.others, topic)
}

// keep reports whether a subscription to topic is kept.
func (f *topicFilter) keep(topic string) bool {
	if !f.CanSubscribe(topic) {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.joined[topic] || f.others[topic] {
		return true
	}
	if len(f.others) >= maxPendingTopics {
		return false
	}
	f.others[topic] = true
	return true
}

// FilterIncomingSubscriptions keeps the subscriptions of subs that keep
// accepts.
func (f *topicFilter) FilterIncomingSubscriptions(_ peer.ID, subs []*pb.RPC_SubOpts) ([]*pb.RPC_SubOpts, error) {
	return pubsub.FilterSubscriptions(subs, f.keep), nil
}

// Topic is a gossipsub topic of the node's cluster. Gossip is lossy:
// messages published before the mesh forms (the first second or so after
// peers connect) are dropped, and nothing is retransmitted.
type Topic struct {
	h    *Host
	name string // full name, hydra/<cluster>/<name>
	t    *pubsub.Topic
}

// pubsubLocked returns the host's gossipsub router, creating it on first
// use: a node that never gossips never runs one. h.mu must be held.
func (h *Host) pubsubLocked() (*pubsub.PubSub, error) {
	if h.ps != nil {
		return h.ps, nil
	}
	// h.ctx ends the router's goroutines when the Host closes.
	out := newOutboundTracer()
	params := pubsub.DefaultGossipSubParams()
	params.HeartbeatInterval = gossipHeartbeat
	ps, err := pubsub.NewGossipSub(h.ctx, h.h, pubsub.WithRawTracer(out), pubsub.WithGossipSubParams(params),
		pubsub.WithSubscriptionFilter(h.subFilter))
	if err != nil {
		return nil, fmt.Errorf("p2p: start gossipsub: %w", err)
	}
	h.ps = ps
	// Not goTracked: h.mu is held here (and the host is not closed).
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.repairGossip(out)
	}()
	return ps, nil
}

// Topic returns the topic name of this node's cluster, joining it on first
// use; the wire name is "hydra/<cluster>/<name>" (the announcement topic of
// docs/internals.md is Topic("announce/1")), so clusters sharing peers never
// mix their messages. A validator that rejects messages over
// MaxGossipMessage is installed with it. Asking twice for one name returns
// the same Topic.
func (h *Host) Topic(name string) (*Topic, error) {
	if name == "" || strings.HasPrefix(name, "/") {
		return nil, fmt.Errorf("p2p: bad topic name %q", name)
	}
	full := "hydra/" + h.cluster + "/" + name
	if !h.subFilter.CanSubscribe(full) {
		return nil, fmt.Errorf("p2p: topic name %q: longer than %d bytes with its prefix", name, maxTopicName)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errors.New("p2p: host closed")
	}
	if t := h.topics[full]; t != nil {
		return t, nil
	}
	ps, err := h.pubsubLocked()
	if err != nil {
		return nil, err
	}
	h.subFilter.join(full)
	if err := ps.RegisterTopicValidator(full, h.validateGossip); err != nil {
		return nil, fmt.Errorf("p2p: topic %s: validator: %w", full, err)
	}
	pt, err := ps.Join(full)
	if err != nil {
		_ = ps.UnregisterTopicValidator(full)
		return nil, fmt.Errorf("p2p: join topic %s: %w", full, err)
	}
	t := &Topic{h: h, name: full, t: pt}
	h.topics[full] = t
	return t, nil
}

// validateGossip is every Hydra topic's validator: messages over
// MaxGossipMessage are rejected, and so are messages whose author or
// forwarder is not a member once membership is known (SetAccess): a
// stranger on the LAN cannot announce itself or fake another node's load.
func (h *Host) validateGossip(_ context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	if len(msg.Data) > MaxGossipMessage {
		return pubsub.ValidationReject
	}
	if h.gate.fn.Load() != nil {
		self := h.h.ID()
		author := msg.GetFrom()
		if (from != self && !h.IsMember(from)) || (author != self && !h.IsMember(author)) {
			h.gate.gossipDropped.Add(1)
			return pubsub.ValidationIgnore
		}
	}
	return pubsub.ValidationAccept
}

// GossipDropped counts gossip messages dropped since the host started
// because their author or forwarder is not a member.
func (h *Host) GossipDropped() uint64 { return h.gate.gossipDropped.Load() }

// Name returns the topic's full wire name, hydra/<cluster>/<name>.
func (t *Topic) Name() string { return t.name }

// Publish sends data to the topic's subscribers (this node's own
// subscribers do not see it: see Subscribe). A nil error means the message
// left this node, not that anyone received it.
func (t *Topic) Publish(ctx context.Context, data []byte) error {
	if len(data) > MaxGossipMessage {
		return fmt.Errorf("p2p: publish to %s: %w: %d bytes, limit %d", t.name, ErrGossipTooLarge, len(data), MaxGossipMessage)
	}
	if err := t.t.Publish(ctx, data); err != nil {
		return fmt.Errorf("p2p: publish to %s: %w", t.name, err)
	}
	return nil
}

// Subscribe calls fn for every message other nodes publish on the topic
// until ctx is cancelled or the Host closes. Messages this node published
// itself are skipped, since a node already knows what it said. fn is called
// from one goroutine, one message at a time, so a slow fn delays this
// subscription's later messages (and gossipsub drops messages for a
// subscriber that falls far behind): keep it quick. data must not be
// modified.
func (t *Topic) Subscribe(ctx context.Context, fn func(from peer.ID, data []byte)) error {
	sub, err := t.t.Subscribe()
	if err != nil {
		return fmt.Errorf("p2p: subscribe to %s: %w", t.name, err)
	}
	self := t.h.ID()
	started := t.h.goTracked(func() {
		defer sub.Cancel()
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(t.h.ctx, cancel)
		defer stop()
		for {
			msg, err := sub.Next(sctx)
			if err != nil {
				return
			}
			if msg.ReceivedFrom == self || msg.GetFrom() == self {
				continue
			}
			fn(msg.GetFrom(), msg.Data)
		}
	})
	if !started {
		sub.Cancel()
		return errors.New("p2p: host closed")
	}
	return nil
}
