package wire

// Size limits, each nesting inside the next: a chunk result inside a batch,
// a batch inside a job-state command, a command inside a raft log entry, a
// log entry inside a stream frame. Decoders enforce them on input; senders
// split their work so that they never produce more.
const (
	// MaxResultCounts bounds the Mandelbrot counts of one chunk result: the
	// compute child computes at most max(1, MaxResultCounts/width) rows of
	// a longer range and returns that prefix (the rest is leased again).
	MaxResultCounts = 1 << 19
	// MaxResult bounds one chunk result's payload (compute's encoded π hits
	// or deflated Mandelbrot counts): a count encodes to at most 3 bytes
	// before deflate (counts are at most compute.MaxMandelIter < 2^20), and
	// deflate adds at most its stored-block framing. It bounds what a worker
	// produces; decoders of the raft log and snapshots accept any payload
	// that fits a command, as earlier versions produced up to that.
	MaxResult = 3*MaxResultCounts + deflateSlack
	// ResultOverhead bounds what one chunk result adds to an encoded
	// Results command besides its payload (job and node IDs, range, time).
	ResultOverhead = 512
	// MaxBatch is where the coordinator cuts a batch of chunk results into
	// one raft log entry (payloads plus ResultOverhead each): one result
	// always fits, and a batch always fits a command.
	MaxBatch = 2 << 20
	// MaxCommand bounds one job-state command's payload (compute's binary
	// encoding): the log entry minus the version and op bytes.
	MaxCommand = MaxLogEntry - 2
	// MaxLogEntry bounds one raft log entry: consensus refuses longer ones.
	MaxLogEntry = 4 << 20
	// MaxStreamFrame is the largest frame a stream protocol accepts unless
	// it asks for another limit: it holds a log entry forwarded to the
	// leader as JSON (base64, 4/3 of its size) with its envelope.
	MaxStreamFrame = 8 << 20
	// MaxSyncFrame bounds a frame of the work protocol: a worker's sync
	// request carries at most MaxBatch of results (as JSON, base64) besides
	// its small fields.
	MaxSyncFrame = 16 << 20

	deflateSlack = 64 << 10 // deflate's stored blocks: 5 bytes per 64 KiB, and its end
	jsonSlack    = 1 << 20  // JSON field names, envelopes and the small fields of a message
)

// The nesting, checked at compile time: a negative constant does not
// convert to uint, so the build fails if a limit outgrows its container.
const (
	_ = uint(MaxBatch - (MaxResult + ResultOverhead))        // a batch of one result fits
	_ = uint(MaxCommand - (MaxBatch + 64))                   // a batch fits a command (its time and count)
	_ = uint(MaxStreamFrame - (MaxLogEntry*4/3 + jsonSlack)) // a forwarded log entry fits a stream frame
	_ = uint(MaxSyncFrame - (MaxBatch*4/3 + jsonSlack))      // a sync request's results fit its frame
)
