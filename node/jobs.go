package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/wasm"
	"github.com/hydra-compute/hydra/consensus"
	"github.com/hydra-compute/hydra/webui"
)

// SubmitJob commits a new job through raft (forwarded to the leader when
// this node follows) and returns its view. The spec must be valid.
func (n *Node) SubmitJob(ctx context.Context, spec compute.JobSpec) (compute.Job, error) {
	if err := spec.Validate(); err != nil {
		return compute.Job{}, err
	}
	if spec.Kind == compute.KindWasm {
		if err := n.ensureModule(ctx, spec.Wasm.Module, ""); err != nil {
			return compute.Job{}, fmt.Errorf("module %s: %w (upload it first: POST /api/v1/modules)", spec.Wasm.Module, err)
		}
		if err := n.checkParams(*spec.Wasm); err != nil {
			return compute.Job{}, err
		}
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return compute.Job{}, fmt.Errorf("job id: %w", err)
	}
	id := hex.EncodeToString(b[:])
	maxJobs := n.raft.State().EffectiveSettings().MaxJobs
	if held := n.jobs.Count(); held >= maxJobs { // the replicas check again when they apply it
		return compute.Job{}, fmt.Errorf("submit job: the cluster holds %d jobs (max-jobs %d): delete finished ones (hydra rm) or raise the cap (hydra config set max-jobs=N): %w",
			held, maxJobs, compute.ErrTooManyJobs)
	}
	return n.submit(ctx, compute.Submit{ID: id, Spec: spec, Submitter: n.cfg.Name, Time: n.clusterNow(), MaxJobs: maxJobs})
}

// checkParams refuses a job whose params its module cannot receive: params given, no hydra_init
// exported. Every chunk of it failed on every node (the compute child refuses to drop the params
// silently), and the job failed only once three nodes had tried it.
func (n *Node) checkParams(w compute.WasmParams) error {
	if w.Params == "" {
		return nil
	}
	code, err := os.ReadFile(filepath.Join(n.modulesDir(), w.Module))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("module %s: %w (deleted a moment ago?)", w.Module, webui.ErrNoSuchModule)
	}
	if err != nil {
		return fmt.Errorf("module %s: %w", w.Module, err)
	}
	hasInit, err := wasm.ExportsFunction(code, "hydra_init")
	if err != nil {
		return fmt.Errorf("module %s: %w", w.Module, err)
	}
	if !hasInit {
		return fmt.Errorf("%w: params given, but module %.12s exports no hydra_init to receive them (drop --params, or export hydra_init)", webui.ErrBadModule, w.Module)
	}
	return nil
}

// submit proposes sub and returns the job it made. Consensus proposes again a command whose
// answer was lost (forwarded to a leader that committed it, then stopped or was cut off before
// it answered), and the repeat of a submit meets the job its first attempt made, refused as
// existing: that answered 500, "job already exists", for a job the cluster had (found by the
// chaos harness). sub's ID is this request's own, 64 random bits, so a job of that ID with the
// same spec and submitter, once this replica holds it, is this one: the submit succeeded, and
// it answers as one.
func (n *Node) submit(ctx context.Context, sub compute.Submit) (compute.Job, error) {
	_, err := n.applyJob(ctx, sub)
	if err == nil {
		return appliedJob(ctx, sub, n.jobs.Job)
	}
	if errors.Is(err, compute.ErrJobExists) {
		if j, werr := appliedJob(ctx, sub, n.jobs.Job); werr == nil && j.Submitter == sub.Submitter && reflect.DeepEqual(j.Spec, sub.Spec) {
			return j, nil
		}
	}
	return compute.Job{}, unavailable(fmt.Errorf("submit job: %w", err))
}

// appliedJob waits until this node's replica holds the job of sub, whose submit the cluster
// committed, and returns its view. Apply waited a while for this replica already; one that lags
// more is waited for until ctx ends (the request's deadline). Then the error is a
// webui.NotAppliedError with the job as submitted (queued): the submit succeeded, and the API
// answers 202 with it, not 500 (a client that submitted the job again would add a second one).
func appliedJob(ctx context.Context, sub compute.Submit, lookup func(string) (compute.Job, bool)) (compute.Job, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if j, ok := lookup(sub.ID); ok {
			return j, nil
		}
		select {
		case <-ctx.Done():
			return compute.Job{}, &webui.NotAppliedError{Job: submittedJob(sub), Err: ctx.Err()}
		case <-tick.C:
		}
	}
}

// submittedJob is the view of the job sub commits, as a replica shows it once applied: queued,
// nothing done.
func submittedJob(sub compute.Submit) compute.Job {
	return compute.Job{
		ID: sub.ID, Name: sub.Spec.Name, Kind: sub.Spec.Kind, Spec: sub.Spec, Priority: sub.Spec.EffectivePriority(),
		State: compute.StateQueued, Submitter: sub.Submitter, SubmittedAt: sub.Time,
		TotalUnits: sub.Spec.TotalUnits(), Nodes: []compute.NodeContribution{},
	}
}

// ClusterConfig is the cluster's settings as this node's replica knows them.
func (n *Node) ClusterConfig() webui.ClusterConfig {
	return clusterConfig(n.raft.State().EffectiveSettings())
}

// clusterConfig is the API view of the cluster's settings.
func clusterConfig(s consensus.Settings) webui.ClusterConfig {
	c := webui.NewClusterConfig(s.Retention, s.DiskCap, s.MaxJobs)
	c.ReadAuth = s.ReadAuth
	return c
}

// settingsAttempts bounds SetClusterConfig's retries when another change wins the race.
const settingsAttempts = 5

// settingsMoveOn waits until this replica's settings are no longer base (it has applied the
// change that won the race), at most settingsCatchUp: SetClusterConfig then tries again either way.
func (n *Node) settingsMoveOn(ctx context.Context, base consensus.Settings) error {
	ctx, cancel := context.WithTimeout(ctx, settingsCatchUp)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for n.raft.State().EffectiveSettings() == base {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				return ctx.Err()
			}
			return nil // not applied here yet: try again anyway
		case <-tick.C:
		}
	}
	return nil
}

// settingsCatchUp bounds settingsMoveOn's wait.
const settingsCatchUp = 2 * time.Second

// SetClusterConfig applies key=value assignments to the current settings and
// commits them through raft (hydra config set).
//
// The assignments are applied to this replica's settings and committed only if those are still
// the cluster's (consensus.ErrSettingsChanged otherwise): a change that won a race, or one this
// replica had not applied yet, is read and the assignments applied to it again, so that no
// change silently undoes another.
func (n *Node) SetClusterConfig(ctx context.Context, assignments []string) (webui.ClusterConfig, error) {
	var s consensus.Settings
	for attempt := 1; ; attempt++ {
		base := n.raft.State().EffectiveSettings()
		var err error
		if s, err = base.Set(assignments...); err != nil {
			return webui.ClusterConfig{}, fmt.Errorf("%w: %v", webui.ErrInvalidConfig, err)
		}
		err = n.raft.SetSettings(ctx, s, base, webui.Credential(ctx))
		if err == nil {
			break
		}
		// A refusal forwarded from the leader comes back at once: this replica may not have
		// applied the change that won yet, so wait (a little) until it has.
		if errors.Is(err, consensus.ErrSettingsChanged) && attempt == settingsAttempts { // lost every race: a retry may win
			return webui.ClusterConfig{}, fmt.Errorf("%w: set cluster settings: other changes won %d times: %w", webui.ErrUnavailable, attempt, err)
		}
		if !errors.Is(err, consensus.ErrSettingsChanged) { // refused by the leader: 403; no leader: 503
			return webui.ClusterConfig{}, apiErr(fmt.Errorf("set cluster settings: %w", err))
		}
		if err := n.settingsMoveOn(ctx, base); err != nil {
			return webui.ClusterConfig{}, unavailable(fmt.Errorf("set cluster settings: %w", err))
		}
	}
	n.log.Info("cluster settings changed", "retention", s.Retention, "disk_cap", s.DiskCap, "max_jobs", s.MaxJobs, "read_auth", s.ReadAuth)
	return clusterConfig(s), nil
}

// Jobs lists every job of this node's replica.
func (n *Node) Jobs() []compute.Job { return n.jobs.Jobs() }

// JobHeads lists every job's state and progress, without the rest of its view (webui.JobHeadSource).
func (n *Node) JobHeads() []compute.JobHead { return n.jobs.JobHeads() }

// NodeWork sums each node's contribution over every job of this node's replica (webui.NodeWorkSource).
func (n *Node) NodeWork() []compute.NodeContribution { return n.jobs.NodeWork() }

// Job returns one job from this node's replica.
func (n *Node) Job(id string) (compute.Job, bool) { return n.jobs.Job(id) }

// knownJob returns job id from this node's replica. One it does not hold may have been submitted
// through another node a moment ago, its submit committed but not applied here yet: before
// answering "no such job", the replica catches up with what the leader had committed
// (readBarrier), so that a cancel or a delete through any node right after a submit through
// another finds the job. Without a leader to ask, the error is the barrier's (503: retry).
func (n *Node) knownJob(ctx context.Context, id string) (compute.Job, error) {
	if j, err := n.replicaJob(id); err == nil {
		return j, nil
	}
	if err := n.readBarrier(ctx); err != nil {
		return compute.Job{}, fmt.Errorf("job %s: %w", id, err)
	}
	return n.replicaJob(id)
}

// replicaJob returns job id as this node's replica holds it, or compute.ErrNoSuchJob.
func (n *Node) replicaJob(id string) (compute.Job, error) {
	if j, ok := n.jobs.Job(id); ok {
		return j, nil
	}
	return compute.Job{}, fmt.Errorf("job %s: %w", id, compute.ErrNoSuchJob)
}

// FindJob returns job id for the API's reads of one job (webui.JobFinder): as knownJob, so that
// a read through any node right after a submit through another finds the job, except that a
// node that knows no leader answers from its replica at once, as it answers every read then,
// instead of waiting out the barrier's bound for a 503.
func (n *Node) FindJob(ctx context.Context, id string) (compute.Job, error) {
	if _, ok := n.raft.Leader(); ok {
		return n.knownJob(ctx, id)
	}
	return n.replicaJob(id)
}

// CancelJob stops a job; accepted results stay readable.
func (n *Node) CancelJob(ctx context.Context, id string) error {
	j, err := n.knownJob(ctx, id)
	if err != nil {
		return err
	}
	if j.State.Finished() {
		return fmt.Errorf("job %s is %s: %w", id, j.State, compute.ErrJobFinished)
	}
	n.checked(id)
	_, err = n.applyJob(ctx, compute.Cancel{Job: id, Time: n.clusterNow()})
	return apiErr(err) // the leader may refuse it (the job finished or went meanwhile)
}

// DeleteJob removes a job and its results (hydra rm).
func (n *Node) DeleteJob(ctx context.Context, id string) error {
	if _, err := n.knownJob(ctx, id); err != nil {
		return err
	}
	n.checked(id)
	_, err := n.applyJob(ctx, compute.Delete{Job: id})
	return apiErr(err)
}

// checked runs the test hook checkedHook, if one is set, for job id.
func (n *Node) checked(id string) {
	if h := n.checkedHook.Load(); h != nil {
		(*h)(id)
	}
}

// PiResult is a π job's result so far, from this node's replica.
func (n *Node) PiResult(id string) (compute.PiResult, error) { return n.jobs.PiResult(id) }

// MandelImage is a Mandelbrot job's counts so far (unfinished rows are 0).
func (n *Node) MandelImage(id string) ([]uint32, error) { return n.jobs.MandelImage(id) }

// MandelChunk reads the stored chunk of a Mandelbrot job that holds row (or
// the gap to the next one): the API renders images chunk by chunk with it.
func (n *Node) MandelChunk(id string, row uint64) (compute.Range, []uint32, error) {
	return n.jobs.MandelChunk(id, row)
}

// AcceptedRanges are the work units of a job committed so far.
func (n *Node) AcceptedRanges(id string) ([]compute.Range, error) { return n.jobs.Accepted(id) }

// Chunks serves a job's chunk history (for the UI's timeline and colours).
func (n *Node) Chunks(id string, from uint64, max int) (compute.ChunkPage, error) {
	return n.jobs.Chunks(id, from, max)
}

// unavailable marks errors that mean "no leader right now, retry" (none known, or the one known
// unreachable after every retry of the forward), or "not until every member is upgraded"
// (consensus.ErrOpUnsupported: the text names the member): the API answers them with 503
// instead of 500.
func unavailable(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, consensus.ErrNotLeader) || errors.Is(err, consensus.ErrShutdown) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, consensus.ErrLeaderUnreachable) || errors.Is(err, consensus.ErrOpUnsupported) {
		return fmt.Errorf("%w: %w", webui.ErrUnavailable, err)
	}
	return err
}

// applyJob proposes a job-state command through raft (forwarded to the
// leader from a follower) and returns its JSON result.
func (n *Node) applyJob(ctx context.Context, cmd any) (json.RawMessage, error) {
	op, payload, err := compute.EncodeCommand(cmd)
	if err != nil {
		return nil, err
	}
	c := consensus.Command{Op: consensus.Op(op), Payload: payload}
	if slices.Contains(adminOps, c.Op) { // the leader checks the admin credential too
		return n.raft.ApplyAs(ctx, c, webui.Credential(ctx))
	}
	return n.raft.Apply(ctx, c)
}

// applyJobs proposes job-state commands together (consensus.Raft.ApplyGroup:
// they share raft entries on the leader) and returns each one's JSON result or
// error. Admin commands are not grouped: they go through applyJob.
func (n *Node) applyJobs(ctx context.Context, cmds []any) ([]json.RawMessage, []error) {
	out, errs := make([]json.RawMessage, len(cmds)), make([]error, len(cmds))
	var group []consensus.Command
	var at []int
	for i, cmd := range cmds {
		op, payload, err := compute.EncodeCommand(cmd)
		switch {
		case err != nil:
			errs[i] = err
		case slices.Contains(adminOps, consensus.Op(op)):
			out[i], errs[i] = n.applyJob(ctx, cmd)
		default:
			group, at = append(group, consensus.Command{Op: consensus.Op(op), Payload: payload}), append(at, i)
		}
	}
	raws, gerrs := n.raft.ApplyGroup(ctx, group)
	for k, i := range at {
		out[i], errs[i] = raws[k], gerrs[k]
	}
	return out, errs
}

// adminOps are the job-state commands only an admin may propose
// (consensus.Config.AdminOps): the credential of the HTTP request goes with
// them to the leader.
var adminOps = []consensus.Op{consensus.Op(compute.OpCancel), consensus.Op(compute.OpDelete), consensus.Op(compute.OpTrustReset)}
