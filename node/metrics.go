package node

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// collector exposes raft and cluster state at /metrics, read at scrape
// time from the node (no background updates, nothing to go stale).
type collector struct{ n *Node }

var (
	descRaftState = prometheus.NewDesc("hydra_raft_state",
		"Raft state of this node: 1 for the current state label, 0 for the others.", []string{"state"}, nil)
	descRaftTerm = prometheus.NewDesc("hydra_raft_term",
		"Current raft term.", nil, nil)
	descRaftCommit = prometheus.NewDesc("hydra_raft_commit_index",
		"Index of the last committed raft log entry.", nil, nil)
	descRaftApplied = prometheus.NewDesc("hydra_raft_applied_index",
		"Index of the last raft log entry applied to this node's state.", nil, nil)
	descRaftLastLog = prometheus.NewDesc("hydra_raft_last_log_index",
		"Index of the last raft log entry stored on this node.", nil, nil)
	descRaftPeers = prometheus.NewDesc("hydra_raft_peers",
		"Members of the raft configuration by suffrage.", []string{"suffrage"}, nil)
	descRaftLeader = prometheus.NewDesc("hydra_raft_has_leader",
		"1 if this node knows a leader, else 0.", nil, nil)
	descNodes = prometheus.NewDesc("hydra_cluster_nodes",
		"Nodes known to this node's replica, by whether they are online.", []string{"online"}, nil)
	descNodeState = prometheus.NewDesc("hydra_node_state",
		"What this node's compute is doing: 1 for the current state label (working, idle, throttled, paused), 0 for the others.", []string{"state"}, nil)
	descNodeReason = prometheus.NewDesc("hydra_node_state_reason",
		"Why this node's compute is throttled or paused: 1 for the owner rule that holds, as hydra status shows it (\"on battery\", \"owner active\", \"cpu 91 °C\"…); no series while it runs freely.", []string{"state", "reason"}, nil)
	descThrottle = prometheus.NewDesc("hydra_node_compute_share",
		"Share of its CPU allowance the owner policy lets compute use (1 full, 0 paused).", nil, nil)
	descBusy = prometheus.NewDesc("hydra_compute_busy_seconds_total",
		"Wall time this node had a chunk in its compute child.", nil, nil)
	descCPU = prometheus.NewDesc("hydra_compute_cpu_seconds_total",
		"CPU time the compute child used for the chunks it ran.", nil, nil)
	descChunks = prometheus.NewDesc("hydra_compute_chunks_total",
		"Chunks (or parts of chunks, after a stop) this node's compute child ran.", nil, nil)
	descAuditBusy = prometheus.NewDesc("hydra_audit_busy_seconds_total",
		"Wall time this node had an audit (of another node's chunk) in its compute child; not in hydra_compute_busy_seconds_total.", nil, nil)
	descAuditCPU = prometheus.NewDesc("hydra_audit_cpu_seconds_total",
		"CPU time the compute child used for the audits this node ran; not in hydra_compute_cpu_seconds_total.", nil, nil)
	descAuditsPassed = prometheus.NewDesc("hydra_audits_passed_total",
		"Audits passed by all nodes' results (replicated state).", nil, nil)
	descAuditsFailed = prometheus.NewDesc("hydra_audits_failed",
		"Audits failed by all nodes' results since their last trust reset (replicated state).", nil, nil)
	descNodesByStanding = prometheus.NewDesc("hydra_audit_nodes",
		"Nodes with an audit record by standing (new, trusted, quarantined).", []string{"state"}, nil)
	descRefused = prometheus.NewDesc("hydra_p2p_refused_connections_total",
		"Connections the gater refused: evicted or denied keys, and outsiders beyond the cap (docs/security.md).", nil, nil)
	descGossipDropped = prometheus.NewDesc("hydra_p2p_gossip_dropped_total",
		"Gossip messages dropped because their author or forwarder is not a member.", nil, nil)
	descInfo = prometheus.NewDesc("hydra_build_info",
		"Build of this node (always 1).", []string{"version", "commit"}, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRaftState, descRaftTerm, descRaftCommit, descRaftApplied,
		descRaftLastLog, descRaftPeers, descRaftLeader, descNodes, descNodeState, descNodeReason, descThrottle, descBusy, descCPU, descChunks, descAuditBusy, descAuditCPU, descInfo,
		descAuditsPassed, descAuditsFailed, descNodesByStanding, descRefused, descGossipDropped} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	var passed, failed float64
	standing := map[string]float64{"new": 0, "trusted": 0, "quarantined": 0}
	for _, a := range c.n.jobs.NodeAudits() {
		passed += float64(a.Passed)
		failed += float64(a.Failed)
		standing[string(a.State)]++
	}
	ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(c.n.host.RefusedConns()))
	ch <- prometheus.MustNewConstMetric(descGossipDropped, prometheus.CounterValue, float64(c.n.host.GossipDropped()))
	ch <- prometheus.MustNewConstMetric(descAuditsPassed, prometheus.CounterValue, passed)
	ch <- prometheus.MustNewConstMetric(descAuditsFailed, prometheus.GaugeValue, failed)
	for s, v := range standing {
		ch <- prometheus.MustNewConstMetric(descNodesByStanding, prometheus.GaugeValue, v, s)
	}
	stats := c.n.raft.Stats()
	num := func(k string) float64 {
		v, _ := strconv.ParseFloat(stats[k], 64)
		return v
	}
	for _, s := range []string{"Follower", "Candidate", "Leader", "Shutdown"} {
		v := 0.0
		if stats["state"] == s {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descRaftState, prometheus.GaugeValue, v, s)
	}
	ch <- prometheus.MustNewConstMetric(descRaftTerm, prometheus.GaugeValue, num("term"))
	ch <- prometheus.MustNewConstMetric(descRaftCommit, prometheus.GaugeValue, num("commit_index"))
	ch <- prometheus.MustNewConstMetric(descRaftApplied, prometheus.GaugeValue, num("applied_index"))
	ch <- prometheus.MustNewConstMetric(descRaftLastLog, prometheus.GaugeValue, num("last_log_index"))
	voters, nonvoters := 0.0, 0.0
	for _, s := range c.n.raft.Servers() {
		if s.Voter {
			voters++
		} else {
			nonvoters++
		}
	}
	ch <- prometheus.MustNewConstMetric(descRaftPeers, prometheus.GaugeValue, voters, "voter")
	ch <- prometheus.MustNewConstMetric(descRaftPeers, prometheus.GaugeValue, nonvoters, "nonvoter")
	has := 0.0
	if l, _ := c.n.raft.Leader(); l != "" {
		has = 1
	}
	ch <- prometheus.MustNewConstMetric(descRaftLeader, prometheus.GaugeValue, has)
	on, off := 0.0, 0.0
	for _, ns := range c.n.Status().Nodes {
		if ns.Online {
			on++
		} else {
			off++
		}
	}
	ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, on, "true")
	ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, off, "false")
	cur := c.n.workState()
	for _, s := range []string{"working", "idle", "throttled", "paused"} {
		v := 0.0
		if s == cur {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descNodeState, prometheus.GaugeValue, v, s)
	}
	d := c.n.owner.get() // one decision for its reason and its share
	if d.Reason != "" {
		ch <- prometheus.MustNewConstMetric(descNodeReason, prometheus.GaugeValue, 1, cur, d.Reason)
	}
	share := d.Throttle
	if c.n.paused() {
		share = 0
	}
	ch <- prometheus.MustNewConstMetric(descThrottle, prometheus.GaugeValue, share)
	if w := c.n.worker; w != nil {
		k := w.Counters()
		ch <- prometheus.MustNewConstMetric(descBusy, prometheus.CounterValue, k.BusySeconds)
		ch <- prometheus.MustNewConstMetric(descCPU, prometheus.CounterValue, k.CPUSeconds)
		ch <- prometheus.MustNewConstMetric(descChunks, prometheus.CounterValue, float64(k.Chunks))
		ch <- prometheus.MustNewConstMetric(descAuditBusy, prometheus.CounterValue, k.AuditBusySeconds)
		ch <- prometheus.MustNewConstMetric(descAuditCPU, prometheus.CounterValue, k.AuditCPUSeconds)
	}
	ch <- prometheus.MustNewConstMetric(descInfo, prometheus.GaugeValue, 1, Version, Commit)
}
