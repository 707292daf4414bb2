package p2p

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"strings"
	"testing"

	dsq "github.com/ipfs/go-datastore/query"
	pb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/libp2p/go-libp2p-kad-dht/records"
	recpb "github.com/libp2p/go-libp2p-record/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multihash"
	"google.golang.org/protobuf/proto"
)

// kadClient speaks the DHT's wire protocol to one server over one stream,
// as any stranger may: length-prefixed protobuf messages, handled in order.
type kadClient struct {
	t  *testing.T
	h  *Host
	s  network.Stream
	rd *bufio.Reader
}

func newKadClient(t *testing.T, h *Host, server *Host) *kadClient {
	t.Helper()
	ctx := context.Background()
	if err := h.h.Connect(ctx, addrInfo(t, server)); err != nil {
		t.Fatal(err)
	}
	s, err := h.h.NewStream(ctx, server.ID(), ProtocolPrefix+"/kad/1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Reset() })
	return &kadClient{t: t, h: h, s: s, rd: bufio.NewReader(s)}
}

func (c *kadClient) send(m *pb.Message) {
	c.t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.s.Write(append(binary.AppendUvarint(nil, uint64(len(b))), b...)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *kadClient) recv() *pb.Message {
	c.t.Helper()
	n, err := binary.ReadUvarint(c.rd)
	if err != nil {
		c.t.Fatal(err)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.rd, b); err != nil {
		c.t.Fatal(err)
	}
	var m pb.Message
	if err := proto.Unmarshal(b, &m); err != nil {
		c.t.Fatal(err)
	}
	return &m
}

// addProvider stores c's host as a provider of key on the server.
func (c *kadClient) addProvider(key []byte) {
	c.t.Helper()
	m := pb.NewMessage(pb.Message_ADD_PROVIDER, key, 0)
	m.ProviderPeers = pb.RawPeerInfosToPBPeers([]peer.AddrInfo{{ID: c.h.ID(), Addrs: c.h.h.Addrs()}})
	c.send(m)
}

// getProviders asks the server for key's providers; the answer also means
// every message sent before it has been handled.
func (c *kadClient) getProviders(key []byte) int {
	c.t.Helper()
	c.send(pb.NewMessage(pb.Message_GET_PROVIDERS, key, 0))
	return len(c.recv().ProviderPeers)
}

func randomKey(t *testing.T) []byte {
	t.Helper()
	var b [32]byte
	_, _ = rand.Read(b[:])
	mh, err := multihash.Sum(b[:], multihash.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return mh
}

// TestDHT_ProviderRecordsBounded: a DHT server stored every provider record
// any connected peer sent it, for any number of keys and providers, for 48
// hours, and every public-key record too: one stranger's stream of
// ADD_PROVIDER messages grew the node's memory without bound. The server
// now holds its cluster's rendezvous and a few other keys, a few providers
// each, and no value records; a provider added to a key whose providers
// were just read no longer bypasses the bound through the read cache.
func TestDHT_ProviderRecordsBounded(t *testing.T) {
	const maxKeys, perKey = 4, 3
	a, _ := newTestHost(t, "c", nil)
	ctx, cancel := context.WithCancel(context.Background())
	cfg := fastDiscovery(DiscoveryConfig{DHT: true})
	cfg.providerKeys, cfg.providersPerKey = maxKeys, perKey
	cfg.applyDefaults()
	d := &discovery{h: a, cfg: cfg, log: a.log, ctx: ctx, inflight: map[peer.ID]bool{}, joinWake: map[peer.ID]chan struct{}{}}
	stopDHT, err := d.startDHT()
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			d.wg.Wait()
			stopDHT()
		}
	}
	defer stop()

	own, err := multihash.Sum([]byte(rendezvousNamespace("c")), multihash.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	var clients []*kadClient
	for range 5 {
		x, _ := newTestHost(t, "x", nil)
		clients = append(clients, newKadClient(t, x, a))
	}
	// One reads the rendezvous's providers (itself, still buffered), then
	// every stranger provides it.
	clients[0].addProvider(own)
	clients[0].getProviders(own)
	for _, c := range clients[1:] {
		c.addProvider(own)
		c.getProviders(own)
	}
	// Enough records for other keys that the server's buffer of writes is
	// flushed to its store, and a public-key record.
	for range 600 {
		clients[0].addProvider(randomKey(t))
	}
	pub, err := crypto.MarshalPublicKey(clients[1].h.h.Peerstore().PubKey(clients[1].h.ID()))
	if err != nil {
		t.Fatal(err)
	}
	put := pb.NewMessage(pb.Message_PUT_VALUE, []byte("/pk/"+string(clients[1].h.ID())), 0)
	put.Record = &recpb.Record{Key: put.Key, Value: pub}
	clients[1].send(put)
	if n := clients[0].getProviders(own); n > perKey {
		t.Errorf("the rendezvous has %d providers after the flush, want at most %d", n, perKey)
	}

	stop() // flushes what the server still buffers
	res, err := d.providers.Query(context.Background(), dsq.Query{KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := res.Rest()
	if err != nil {
		t.Fatal(err)
	}
	perKeyHeld := map[string]int{}
	for _, e := range entries {
		key, ok := strings.CutPrefix(e.Key, records.ProvidersKeyPrefix)
		if !ok {
			t.Errorf("the server holds %s, not a provider record", e.Key)
			continue
		}
		k, _, _ := strings.Cut(key, "/")
		perKeyHeld[k]++
	}
	if len(entries) > (1+maxKeys)*perKey || len(perKeyHeld) > 1+maxKeys {
		t.Errorf("the server holds %d records for %d keys, want at most %d keys of %d", len(entries), len(perKeyHeld), 1+maxKeys, perKey)
	}
	for k, n := range perKeyHeld {
		if n > perKey {
			t.Errorf("key %s has %d providers, want at most %d", k, n, perKey)
		}
	}
	if n := perKeyHeld[strings.TrimPrefix(providerKeyPrefix(own), records.ProvidersKeyPrefix)]; n != perKey {
		t.Errorf("the rendezvous has %d providers, want %d (the first to come)", n, perKey)
	}
}
