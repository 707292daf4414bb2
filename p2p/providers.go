package p2p

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p-kad-dht/records"
	"github.com/multiformats/go-base32"
	"github.com/multiformats/go-multihash"
)

// Bounds of the DHT's provider records (providerStore). A node in DHT
// server mode stores the provider records any connected peer sends it, and
// any peer may connect as an outsider: without a bound, a stranger could
// send records for any number of keys and grow the node's memory until the
// records expire.
const (
	// defaultProvidersPerKey caps the providers held for one key. A new
	// node needs one provider of its cluster's rendezvous to get in, and
	// the DHT spreads each key over its 20 closest nodes, so a cluster
	// larger than this still finds itself; providers already held keep
	// their place when they re-advertise.
	defaultProvidersPerKey = 256
	// defaultForeignKeys caps the keys held other than this cluster's own
	// rendezvous. The DHT is shared by every Hydra cluster reachable from
	// it, so the rendezvous of a few other clusters may land here; nothing
	// of Hydra uses any other key.
	defaultForeignKeys = 16
	// providerValidity is how long a provider record is kept after its
	// last write (kad-dht's default is 48 h). Nodes re-advertise every
	// readvertise (10 minutes), so an hour loses nothing, and records a
	// flood left behind are gone an hour after it stops.
	providerValidity = rendezvousTTL
	// providerCleanup is how often expired provider records are deleted,
	// which frees their places under the caps.
	providerCleanup = 10 * time.Minute
)

// providerStore is the datastore under the DHT's provider records (kad-dht
// v0.42 runs its own provider manager and takes only the datastore under
// it). It holds provider records only, for this cluster's rendezvous key and
// at most maxKeys other keys, at most perKey providers per key; a record
// beyond a bound is dropped (Put succeeds: the DHT's batch of writes then
// keeps the records it may hold). A record already held is always
// rewritten, so a flood cannot push out the providers known before it.
// Value records (public keys, IPNS), which Hydra never uses, are dropped
// too: the DHT runs with values disabled, this is the second fence.
type providerStore struct {
	ds.Datastore // in-memory map, safe for concurrent use

	own     string // key prefix of this cluster's rendezvous records
	maxKeys int
	perKey  int

	mu      sync.Mutex // serialises the check and the write of Put and Delete
	counts  map[string]int
	foreign int // keys in counts other than own
}

var _ ds.Batching = (*providerStore)(nil)

func newProviderStore(cluster string, maxKeys, perKey int) (*providerStore, error) {
	mh, err := multihash.Sum([]byte(rendezvousNamespace(cluster)), multihash.SHA2_256, -1)
	if err != nil {
		return nil, fmt.Errorf("p2p: rendezvous key: %w", err)
	}
	return &providerStore{
		Datastore: dssync.MutexWrap(ds.NewMapDatastore()),
		own:       providerKeyPrefix(mh),
		maxKeys:   maxKeys,
		perKey:    perKey,
		counts:    make(map[string]int),
	}, nil
}

// providerKeyPrefix is the datastore key prefix of a DHT key's provider
// records, as kad-dht's provider manager writes them:
// /providers/<base32 of the key>/<base32 of the provider's peer ID>.
func providerKeyPrefix(key []byte) string {
	return records.ProvidersKeyPrefix + base32.RawStdEncoding.EncodeToString(key)
}

// keyOf returns the key prefix of a provider record's datastore key, or
// false if k is not one.
func keyOf(k ds.Key) (string, bool) {
	rest, ok := strings.CutPrefix(k.String(), records.ProvidersKeyPrefix)
	if !ok {
		return "", false
	}
	key, prov, ok := strings.Cut(rest, "/")
	if !ok || key == "" || prov == "" || strings.Contains(prov, "/") {
		return "", false
	}
	return records.ProvidersKeyPrefix + key, true
}

// Put stores a provider record within the bounds and drops any other.
func (s *providerStore) Put(ctx context.Context, k ds.Key, v []byte) error {
	key, ok := keyOf(k)
	if !ok {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	held, err := s.Datastore.Has(ctx, k)
	if err != nil {
		return fmt.Errorf("p2p: provider record: %w", err)
	}
	n, known := s.counts[key]
	if !held && (n >= s.perKey || (!known && key != s.own && s.foreign >= s.maxKeys)) {
		return nil
	}
	if err := s.Datastore.Put(ctx, k, v); err != nil {
		return err
	}
	if !held {
		if !known && key != s.own {
			s.foreign++
		}
		s.counts[key]++
	}
	return nil
}

// Delete removes a record (expired ones, by the provider manager) and
// frees its place.
func (s *providerStore) Delete(ctx context.Context, k ds.Key) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	held, err := s.Datastore.Has(ctx, k)
	if err != nil {
		return fmt.Errorf("p2p: provider record: %w", err)
	}
	if err := s.Datastore.Delete(ctx, k); err != nil {
		return err
	}
	if key, ok := keyOf(k); ok && held {
		if s.counts[key]--; s.counts[key] <= 0 {
			delete(s.counts, key)
			if key != s.own {
				s.foreign--
			}
		}
	}
	return nil
}

// Batch applies its writes through Put and Delete, so they are bounded
// like single ones.
func (s *providerStore) Batch(context.Context) (ds.Batch, error) {
	return ds.NewBasicBatch(s), nil
}

// noProviderCache replaces the provider manager's read cache, which would
// otherwise bypass the store's bounds: a provider added to a key whose set
// is cached is added to that set in memory, held or dropped by the store,
// and the set of a key that is read often never leaves the cache. Reads
// then go to the in-memory store, which the bounds keep small. It has the
// method set of golang-lru's simplelru.LRUCache.
type noProviderCache struct{}

func (noProviderCache) Add(key, value any) bool                 { return false }
func (noProviderCache) Get(key any) (value any, ok bool)        { return nil, false }
func (noProviderCache) Contains(key any) bool                   { return false }
func (noProviderCache) Peek(key any) (value any, ok bool)       { return nil, false }
func (noProviderCache) Remove(key any) bool                     { return false }
func (noProviderCache) RemoveOldest() (key, value any, ok bool) { return nil, nil, false }
func (noProviderCache) GetOldest() (key, value any, ok bool)    { return nil, nil, false }
func (noProviderCache) Keys() []any                             { return nil }
func (noProviderCache) Len() int                                { return 0 }
func (noProviderCache) Purge()                                  {}
func (noProviderCache) Resize(int) int                          { return 0 }
