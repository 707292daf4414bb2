package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/audit"
	"github.com/hydra-compute/hydra/consensus"
	"github.com/hydra-compute/hydra/internal/boltfile"
	"github.com/hydra-compute/hydra/internal/resultstore"
	"github.com/hydra-compute/hydra/node/child"
	"github.com/hydra-compute/hydra/node/owner"
	"github.com/hydra-compute/hydra/node/work"
	"github.com/hydra-compute/hydra/p2p"
	"github.com/hydra-compute/hydra/webui"
	"github.com/hydra-compute/hydra/wire"
)

// Node is one running Hydra node. New prepares it (and fails fast on a bad
// configuration); Run runs it until its context ends or it leaves the
// cluster.
type Node struct {
	cfg     Config
	p       parsed
	log     *slog.Logger
	started time.Time

	host    *p2p.Host
	raft    *consensus.Raft
	peers   *peerTable
	httpLn  net.Listener
	httpURL string
	metrics *prometheus.Registry

	tokenSeen string // the admin credential written to DATA/api-token

	leaveOnce sync.Once
	left      chan struct{} // closed when Leave has removed the node
	fatal     chan error    // a committed entry could not be applied here, or the disk fails: Run stops with it

	jobs          *compute.JobStore
	pngCache      *webui.PNGCache // finished jobs' rendered PNGs (DATA/png-cache)
	activity      activityBox
	clock         clusterClock // the cluster's clock as the leader's activity tells it (node/clock.go)
	skew          atomic.Int64 // a test's offset of this node's clock (wall), in nanoseconds; 0 outside tests
	activityTopic atomic.Pointer[p2p.Topic]
	coord         *work.Coordinator
	worker        *work.Worker                     // nil with --compute=false
	wakeCoord     atomic.Pointer[work.Coordinator] // n.coord once it exists, for jobsChanged
	wakeWorker    atomic.Pointer[work.Worker]      // n.worker once it exists, for jobsChanged
	ownerWake     chan struct{}                    // read the owner's sensors now (a chunk arrived)
	announceWake  chan struct{}                    // announce now if it changed (a chunk arrived, an owner decision)

	pubMu    sync.Mutex // guards the last activity published (publishActivity)
	lastPub  []byte     // without its time
	pubAt    time.Time
	runner   *child.Runner
	wasmVal  validator     // compiles uploaded modules (node/modules.go)
	modFetch moduleFetches // modules being fetched from other members (node/modfetch.go)
	// modIntact holds the modules (SHA-256 → true) whose stored bytes this run wrote or hashed
	// to their name (node/modules.go moduleIntact).
	modIntact sync.Map
	policy    *owner.Policy
	owner     ownerStatus

	// unlock releases the data directory's lock (lockDataDir), once Run is done with it.
	unlock func()
	// lifeMu guards ran and closed: Run and Close each release what New opened, never both
	// (Close does nothing once Run was called; Run refuses to start after Close). release holds
	// New's undo steps for Close.
	lifeMu  sync.Mutex
	ran     bool
	closed  bool
	release cleanups

	// crash makes Run stop like a SIGKILL would: connections dropped first,
	// no leadership hand-over. Tests use it to kill a node in-process.
	crash atomic.Bool
	// checkedHook, when set (tests only), runs in CancelJob and DeleteJob once their check on
	// this node's replica passed and before the command is proposed, with the job's ID: a test
	// makes the job go or finish there, deterministically losing the race at the leader.
	checkedHook atomic.Pointer[func(id string)]
	// readIndexes shares the leader's read index among this node's read barriers
	// (node/readbarrier.go).
	readIndexes readRounds
	// barrierHook, when set (tests only), runs in readBarrier once the leader's read index is
	// known and before the wait for this node's replica to apply it, with that index.
	barrierHook atomic.Pointer[func(index uint64)]
	// appliedHook, when set (tests only), runs in jobsChanged on the FSM goroutine once a job's
	// submit, cancel or delete is applied here: a test blocks in it to hold this replica's apply
	// back (the entries after it wait), making it lag the leader deterministically.
	appliedHook atomic.Pointer[func()]
}

// New validates cfg, prepares the data directory, binds the HTTP port and
// the libp2p listeners, and opens the raft state. Configuration problems
// (bad flags, unusable data directory, port in use) come back as
// *ConfigError. On a data directory with too little free space it first
// waits for space until ctx ends, answering on the HTTP port why
// (waitForDiskSpace).
func New(ctx context.Context, cfg Config) (_ *Node, err error) {
	p, err := cfg.parse()
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := prepareDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n := &Node{unlock: unlock, cfg: cfg, p: p, log: cfg.Logger, started: time.Now(), peers: newPeerTable(), left: make(chan struct{}),
		ownerWake: make(chan struct{}, 1), announceWake: make(chan struct{}, 1), fatal: make(chan error, 1)}
	// What is opened is closed again, newest first, if a later step fails.
	var undo cleanups
	defer func() {
		if err != nil {
			undo.unwind()
		}
	}()
	undo.push(unlock)

	// The HTTP address is bound before the wait for disk space, which answers on it why the
	// node is not up yet, and hands the same listener to the node's server.
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, configErr("--http %s: port already in use", cfg.HTTPAddr)
		}
		return nil, configErr("--http %s: %v", cfg.HTTPAddr, err)
	}
	undo.push(func() { ln.Close() })
	if err := waitForDiskSpace(ctx, cfg.DataDir, cfg.minFree(), ln, cfg.Logger); err != nil {
		return nil, err
	}
	n.httpLn = ln
	n.httpURL = localURL(ln.Addr())

	key, err := p2p.LoadOrCreateIdentity(filepath.Join(cfg.DataDir, "identity.key"))
	if err != nil {
		return nil, configErr("--data %s: identity: %v", cfg.DataDir, err)
	}
	h, err := p2p.New(ctx, p2p.Config{
		Key:          key,
		Listen:       p.listen,
		Cluster:      cfg.Cluster,
		AgentVersion: AgentVersion(),
		Topics:       []string{announceTopic, activityTopic},
		Logger:       cfg.Logger.With("component", "p2p"),
	})
	if err != nil {
		if errors.Is(err, p2p.ErrAddrInUse) || errors.Is(err, p2p.ErrBadListenAddr) {
			return nil, configErr("--listen: %v", err)
		}
		return nil, fmt.Errorf("start libp2p host: %w", err)
	}
	undo.push(func() { h.Close() })
	n.host = h

	results, err := resultstore.Open(filepath.Join(cfg.DataDir, "jobs.db"))
	if err != nil {
		return nil, configErr("--data %s: job state: %v", cfg.DataDir, err)
	}
	jobs := compute.NewJobStore(results)
	undo.push(func() { jobs.Close() })
	n.jobs = jobs
	if n.pngCache, err = webui.OpenPNGCache(filepath.Join(cfg.DataDir, "png-cache")); err != nil {
		return nil, configErr("--data %s: %v", cfg.DataDir, err)
	}
	n.removeUploadTemps()
	n.removeOldWasmCaches()
	n.pruneWasmCacheTemps()
	n.warnInterpretedWasm()

	nodeToken, err := loadNodeToken(cfg.DataDir)
	if err != nil {
		return nil, configErr("--data %s: %v", cfg.DataDir, err)
	}
	// Raft's replay below, and every apply after it, counts this node busy in procs (jobsChanged):
	// a node that fails to start or is closed without running must leave procs again (Run's
	// own stop does), else the process kept its every CPU and the node's memory for good.
	undo.push(func() { procs.forget(n) })
	var joinPeers []peer.ID
	for _, ai := range n.p.join {
		if ai.ID != h.ID() {
			joinPeers = append(joinPeers, ai.ID)
		}
	}
	r, err := consensus.New(consensus.Config{
		Admit:       cfg.Admit,
		JoinToken:   cfg.JoinToken,
		JoinPeers:   joinPeers,
		NodeToken:   nodeToken,
		OnRefuse:    h.Refuse,
		Host:        h.Host(),
		NoVote:      jobs.Quarantined, // a node quarantined by the audits loses its vote
		Now:         n.clusterNow,     // membership stamps and join-token expiry by the cluster's clock
		Dir:         filepath.Join(cfg.DataDir, "raft"),
		Cluster:     cfg.Cluster,
		Multiplier:  cfg.RaftMultiplier,
		VoterPref:   p.voter,
		Voters:      cfg.Voters,
		ChunkTarget: cfg.ChunkTarget,
		Settings:    cfg.settings(),
		Self: consensus.NodeMeta{
			ID:      h.ID().String(),
			Name:    cfg.Name,
			OS:      runtime.GOOS,
			Arch:    runtime.GOARCH,
			Version: Version,
			Cores:   runtime.NumCPU(),
			Level:   compute.Level,
		},
		App:      jobsApp{JobStore: jobs, changed: n.jobsChanged},
		AdminOps: adminOps,
		Refusals: compute.Refusals, // a cancel that lost a race answers 404 or 409, not 500
		// Forwarded chunk results are checked against their commitments before they are
		// proposed, as the coordinator checks its own: the replicas trust the log's.
		CheckForwarded: func(op consensus.Op, payload []byte) error {
			return compute.CheckProposed(byte(op), payload, func(id string) (compute.JobSpec, bool) {
				j, ok := jobs.Job(id)
				return j.Spec, ok
			})
		},
		// An op is proposed only once every member's build knows it (rolling upgrades).
		OpLevel:           func(op consensus.Op) int { return compute.OpLevel(byte(op)) },
		UnadvertisedLevel: compute.LevelUnadvertised,
		OnFatal: func(af *consensus.ApplyFailure) {
			select {
			case n.fatal <- af:
			default:
			}
		},
		OnDiskFailure: func(df *consensus.DiskFailure) {
			select {
			case n.fatal <- df:
			default:
			}
		},
		Protect:      h.Protect,
		Availability: n.owner.availability,
		Logger:       cfg.Logger, // each of consensus's loggers names its own component
	})
	if err != nil {
		var damaged *boltfile.DamagedError
		if errors.As(err, &damaged) { // an unusable data directory: restarting will not help
			return nil, configErr("--data %s: %v", cfg.DataDir, err)
		}
		if ue := upgradeError(err, nil); ue != nil { // the replay at start met a newer build's op
			return nil, ue
		}
		if de := failingDisk(cfg.DataDir, err); de != nil { // a log that fails reads
			return nil, de
		}
		return nil, fmt.Errorf("open raft state in %s: %w", cfg.DataDir, err)
	}
	undo.push(func() { r.Shutdown(false) })
	n.raft = r
	// A hydra recover killed before it removed its scratch result store left it there; none runs
	// now (the raft state is locked by this process).
	if err := os.Remove(filepath.Join(cfg.DataDir, recoverScratch)); err != nil && !errors.Is(err, os.ErrNotExist) {
		n.log.Warn("remove what an interrupted hydra recover left", "file", filepath.Join(cfg.DataDir, recoverScratch), "err", err)
	}
	h.SetAccess(r.Access)

	n.coord = work.NewCoordinator(work.CoordinatorConfig{
		Self:        h.ID(),
		Jobs:        jobs,
		Audits:      jobs,
		AuditPolicy: audit.Policy{TrustAfter: cfg.AuditTrustAfter, QuarantineAfter: cfg.AuditQuarantineAfter},
		Apply:       n.applyJob,
		ApplyGroup:  n.applyJobs,
		IsMember:    n.isMember,
		Publish:     n.publishActivity,
		Settings:    func() consensus.Settings { return r.State().EffectiveSettings() },
		CheckOp:     func(op byte) error { return r.CheckOp(consensus.Op(op)) },
		Logger:      cfg.Logger,
	})
	// The one leadership path: raft runs the coordinator after Barrier
	// and cancels it when leadership is lost (registered before the node
	// can lead, since raft may elect a lone voter before Run).
	n.wakeCoord.Store(n.coord)
	r.OnLeader(func(ctx context.Context) { n.coord.Lead(ctx, r.Term(), r.State().ChunkTarget) })
	if n.policy, err = owner.New(cfg.Owner); err != nil {
		return nil, configErr("owner policy: %v", err)
	}
	n.owner.set(owner.Decision{State: owner.StateRun, Throttle: 1})
	pc := n.policy.Config()
	n.owner.mu.Lock() // raft may already serve stats calls, which read it
	n.owner.fitness = owner.Fitness{PauseAfter: pc.PauseAfter, ResumeAfter: pc.ResumeAfter}
	n.owner.mu.Unlock()

	n.metrics = prometheus.NewRegistry()
	n.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), &collector{n: n})
	n.release = undo
	return n, nil
}

// errClosed is Run's error on a node Close already released.
var errClosed = errors.New("node closed before it ran")

// Close releases what New opened and started — raft (which New already runs), the libp2p host,
// the job state, the HTTP listener and the lock on the data directory — for a node that is not
// going to Run: an embedding program that gives up between New and Run, or a test that needed
// New alone. Without it, such a node's raft and host run on until the process exits, and its
// data directory stays locked. Run releases all of it itself when it ends, so Close does
// nothing once Run was called; Run after Close fails. Close may be called more than once.
func (n *Node) Close() {
	n.lifeMu.Lock()
	defer n.lifeMu.Unlock()
	if n.ran || n.closed {
		return
	}
	n.closed = true
	n.release.unwind()
}

// cleanups is a stack of undo steps: New pushes one for each resource it
// opens and unwinds them, newest first, when a later step fails.
type cleanups []func()

func (c *cleanups) push(f func()) { *c = append(*c, f) }

func (c *cleanups) unwind() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
	*c = nil
}

// localURL is the address a client on this machine uses to reach the API:
// an unspecified bind address (0.0.0.0, ::) becomes loopback.
func localURL(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return "http://" + a.String()
	}
	ip := ta.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return "http://" + net.JoinHostPort(ip.String(), fmt.Sprint(ta.Port))
}

// ID is the node's libp2p peer ID, which is also its raft server ID.
func (n *Node) ID() peer.ID { return n.host.ID() }

// Addrs are the node's libp2p addresses with /p2p/<id>, fit for --join.
func (n *Node) Addrs() []multiaddr.Multiaddr { return n.host.Addrs() }

// HTTPURL is the base URL of this node's API as reachable from this machine.
func (n *Node) HTTPURL() string { return n.httpURL }

// Raft exposes the consensus layer to tests.
func (n *Node) Raft() *consensus.Raft { return n.raft }

// Run starts discovery, consensus, announcements, the leader hook and the
// HTTP server, and blocks until ctx is cancelled (a graceful stop: leadership
// is handed over and the node stays a member) or the node has left the
// cluster. It returns nil on a clean stop. Whichever way it ends, a failed
// start-up step included, it releases what New opened (Close is for a node
// that will not run).
func (n *Node) Run(ctx context.Context) error {
	n.lifeMu.Lock()
	if n.closed {
		n.lifeMu.Unlock()
		return errClosed
	}
	n.ran = true
	n.lifeMu.Unlock()
	// runCtx outlives ctx: when ctx ends (SIGTERM), the worker hands in its
	// chunk first, while raft and the coordinator (which run on runCtx) still
	// work; cancel() then stops them.
	defer n.unlock() // last, whichever way Run ends: another node (a restart in this process) may use the directory then
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	defer procs.forget(n)

	srv := &http.Server{
		Handler:           webui.New(webui.Config{Backend: n, Jobs: n, Modules: n, Gatherer: n.metrics, Logger: n.log.With("component", "http"), PNGCache: n.pngCache}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// Event streams end with the node, or Shutdown would wait on them.
		BaseContext: func(net.Listener) context.Context { return runCtx },
	}
	// A start-up step that fails (the compute process, discovery, announcements) releases all
	// that New opened and Run started so far before Run returns its error: a program embedding
	// the node would keep raft, the host, the job state and the HTTP port otherwise. The data
	// directory's lock goes last, with the deferred unlock above.
	started, serving := false, false
	defer func() {
		if !started {
			n.abandon(srv, serving, cancel)
		}
	}()
	// The compute process and the worker exist before anything that reports
	// the worker's state (HTTP status, announcements) starts.
	if n.cfg.Compute {
		// The kernels are chosen by measurement once, here, and handed to every child.
		n.log.Info("compute kernels", "path", compute.KernelPath(), "chosen", compute.KernelReport())
		r, err := child.Start(runCtx, child.Config{CPUs: n.cfg.CPUs, CPULimit: n.cfg.CPULimit, Logger: n.log.With("component", "compute"),
			IdleExit: childIdleExit, Env: append(n.wasmEnv(), compute.KernelsEnv+"="+compute.KernelPath())})
		if err != nil {
			return fmt.Errorf("start compute process: %w", err)
		}
		n.runner = r
		n.worker = work.NewWorker(work.WorkerConfig{
			Self:    n.host.ID(),
			Leader:  n.raft.Leader,
			Local:   n.coord,
			Call:    n.callWork,
			Runner:  r,
			Owner:   n.owner.get,
			Crashed: n.crash.Load,
			Leased:  func() { poke(n.ownerWake); poke(n.announceWake) },
			Prepare: n.prepareChunk,
			Logger:  n.log,
		})
		n.wakeWorker.Store(n.worker)
	}

	httpDone := make(chan error, 1)
	serving = true
	go func() { httpDone <- srv.Serve(n.httpLn) }()
	if err := writeAPIURL(n.cfg.DataDir, n.httpURL); err != nil {
		n.log.Warn("cannot write api-url", "err", err)
	}

	if err := n.host.StartDiscovery(runCtx, p2p.DiscoveryConfig{
		MDNS: n.cfg.MDNS,
		Join: n.p.join,
		DHT:  n.cfg.DHT,
		OnPeer: func(ai peer.AddrInfo) {
			n.raft.PeerFound(ai.ID)
		},
	}); err != nil {
		return fmt.Errorf("start discovery: %w", err)
	}
	if err := n.announce(runCtx); err != nil {
		return err
	}
	if err := n.subscribeActivity(runCtx); err != nil {
		return fmt.Errorf("activity topic: %w", err)
	}
	p2p.ServeAllowed(n.host.Host(), work.Protocol, wire.MaxSyncFrame, 30*time.Second, n.log, n.host.IsMember, n.coord.Serve)
	n.serveModules()
	n.serveReadIndex()
	// A node whose connections all closed is gone: the coordinator
	// requeues its chunks at once.
	notifee := &network.NotifyBundle{DisconnectedF: func(_ network.Network, conn network.Conn) {
		p := conn.RemotePeer()
		if n.host.Host().Network().Connectedness(p) != network.Connected {
			n.coord.NodeGone(p)
		}
	}}
	n.host.Host().Network().Notify(notifee)
	defer n.host.Host().Network().StopNotify(notifee)

	// The worker stops first, while raft and the coordinator still run, so
	// it can hand in the finished prefix of its chunk (nothing computed is
	// thrown away by a graceful stop).
	workCtx, stopWork := context.WithCancel(runCtx)
	defer stopWork()
	workDone := make(chan struct{})
	if n.worker != nil {
		go func() { defer close(workDone); n.worker.Run(workCtx) }()
		go n.runOwnerPolicy(workCtx)
	} else {
		close(workDone)
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); n.raft.Run(runCtx) }()
	go func() { defer wg.Done(); n.watchToken(runCtx) }()
	go func() {
		defer wg.Done()
		// A cached PNG goes with its job (deleted or evicted), once the
		// replica has been rebuilt after a restart.
		webui.RunPNGCacheSweeper(runCtx, n.pngCache, n, func() bool { return n.jobs.LastIndex() > 0 },
			func(err error) { n.log.Warn("png cache sweep", "err", err) })
	}()

	started = true
	n.log.Info("node started", "id", n.host.ID(), "name", n.cfg.Name, "cluster", n.cfg.Cluster, "version", Version, "api", n.httpURL)
	for _, a := range n.host.Addrs() {
		n.log.Info("listening", "addr", a)
	}

	leftCluster := false
	var runErr error
	select {
	case <-ctx.Done():
	case <-n.left:
		leftCluster = true
	case err := <-httpDone:
		// Its listener failed (an accept error that is not temporary: ENOMEM, ENOBUFS, EPERM
		// from a firewall): a failure, not a clean stop, or a supervisor would not restart it.
		n.log.Error("http server stopped", "err", err)
		runErr = fmt.Errorf("http server on %s stopped: %w", n.httpURL, err)
	case err := <-n.fatal:
		// A committed entry could not be applied here (disk full? an op of
		// a newer build?), or the disk fails writes: stop rather than serve
		// a replica that differs from the others or stores nothing.
		runErr = n.fatalError(err)
	}
	if n.crash.Load() {
		_ = n.host.Close()
	} else if !leftCluster {
		// Leadership first, then the work: the compute child may take its whole stop timeout
		// to hand in its chunk (a WebAssembly call runs to its end), and a service manager
		// kills a node that outlasts its grace. The worker then hands its prefix in to the
		// new leader.
		hctx, hcancel := context.WithTimeout(runCtx, handOverWait)
		if err := n.raft.HandOver(hctx); err != nil {
			n.log.Debug("hand over leadership before the work stops", "err", err) // Shutdown tries again, and says so
		}
		hcancel()
	}
	stopWork()
	<-workDone
	if n.runner != nil {
		_ = n.runner.Close()
	}
	cancel()
	wg.Wait()
	if !leftCluster {
		if err := n.raft.Shutdown(!n.crash.Load()); err != nil {
			n.log.Warn("raft shutdown", "err", err)
		}
	}
	shutCtx, shutCancel := context.WithTimeout(context.Background(), 3*time.Second)
	if err := srv.Shutdown(shutCtx); err != nil {
		_ = srv.Close()
	}
	shutCancel()
	if err := n.host.Close(); err != nil {
		n.log.Debug("close host", "err", err)
	}
	if err := n.jobs.Close(); err != nil {
		n.log.Debug("close job state", "err", err)
	}
	n.log.Info("node stopped", "left_cluster", leftCluster)
	return runErr
}

// handOverWait bounds a stopping leader's hand-over before its work stops.
const handOverWait = 10 * time.Second

// abandon releases what a Run whose start failed had: the HTTP server if it served, the compute
// process, whatever runs on Run's context (cancel), then what New opened, as Close would (raft,
// the job state, the host, the HTTP listener, the data directory's lock). Nothing of the work
// loop had started yet.
func (n *Node) abandon(srv *http.Server, serving bool, cancel context.CancelFunc) {
	if serving {
		_ = srv.Close()
	}
	if n.runner != nil {
		_ = n.runner.Close()
	}
	cancel()
	n.release.unwind()
}
