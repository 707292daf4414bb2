package compute

import (
	"reflect"
	"time"
)

// The commands of a fixed shape (no lists, no formats: started, cancel, delete, fail, evict,
// trust reset, audit policy, audit waive) list their fields once, in a code
// method that both writes and reads them, so that their encoding and decoding cannot drift.

// fixedCommand is a pointer to a fixed-shape command; code writes or reads its fields (see
// fieldCoder) and returns its op.
type fixedCommand interface {
	code(f fieldCoder) byte
}

func (c *TrustReset) code(f fieldCoder) byte {
	f.str(&c.Node, MaxIDLen, "node id")
	return OpTrustReset
}
func (c *AuditWaive) code(f fieldCoder) byte {
	f.str(&c.Node, MaxIDLen, "node id")
	f.time(&c.Time)
	return OpAuditWaive
}
func (c *Started) code(f fieldCoder) byte {
	f.str(&c.Job, MaxIDLen, "job id")
	f.time(&c.Time)
	return OpStarted
}
func (c *Cancel) code(f fieldCoder) byte {
	f.str(&c.Job, MaxIDLen, "job id")
	f.time(&c.Time)
	return OpCancel
}
func (c *Delete) code(f fieldCoder) byte { f.str(&c.Job, MaxIDLen, "job id"); return OpDelete }
func (c *AuditPolicy) code(f fieldCoder) byte {
	f.uvarint(&c.Policy.TrustAfter)
	f.f64(&c.Policy.Floor)
	f.f64(&c.Policy.TrustedShare)
	f.uvarint(&c.Policy.QuarantineAfter)
	return OpAuditPolicy
}
func (c *Fail) code(f fieldCoder) byte {
	f.str(&c.Job, MaxIDLen, "job id")
	f.str(&c.Reason, MaxFailReason, "reason")
	f.time(&c.Time)
	return OpFail
}
func (c *Evict) code(f fieldCoder) byte {
	f.time(&c.Now)
	f.dur(&c.Retention)
	f.varint(&c.DiskCap)
	return OpEvict
}

// fixedCommands makes an empty fixed-shape command for its op, to decode into.
var fixedCommands = map[byte]func() fixedCommand{
	OpTrustReset:  func() fixedCommand { return new(TrustReset) },
	OpAuditPolicy: func() fixedCommand { return new(AuditPolicy) },
	OpAuditWaive:  func() fixedCommand { return new(AuditWaive) },
	OpStarted:     func() fixedCommand { return new(Started) },
	OpCancel:      func() fixedCommand { return new(Cancel) },
	OpDelete:      func() fixedCommand { return new(Delete) },
	OpFail:        func() fixedCommand { return new(Fail) },
	OpFault:       func() fixedCommand { return new(Fault) },
	OpEvict:       func() fixedCommand { return new(Evict) },
}

// fixedOf returns cmd (a command or a pointer to one) as a fixedCommand: a pointer to a copy of
// a value.
func fixedOf(cmd any) (fixedCommand, bool) {
	if f, ok := cmd.(fixedCommand); ok {
		return f, true
	}
	if cmd == nil {
		return nil, false
	}
	p := reflect.New(reflect.TypeOf(cmd))
	p.Elem().Set(reflect.ValueOf(cmd))
	f, ok := p.Interface().(fixedCommand)
	return f, ok
}

// fieldCoder writes the fields it is given to e, or reads them from d into the pointers (one
// of the two is set).
type fieldCoder struct {
	e *encoder
	d *decoder
}

func (f fieldCoder) str(p *string, limit int, what string) {
	if f.e != nil {
		f.e.str(*p)
	} else {
		*p = f.d.str(limit, what)
	}
}

func (f fieldCoder) time(p *time.Time) {
	if f.e != nil {
		f.e.time(*p)
	} else {
		*p = f.d.time()
	}
}

func (f fieldCoder) dur(p *time.Duration) {
	if f.e != nil {
		f.e.dur(*p)
	} else {
		*p = f.d.dur()
	}
}

func (f fieldCoder) uvarint(p *uint64) {
	if f.e != nil {
		f.e.uvarint(*p)
	} else {
		*p = f.d.uvarint()
	}
}

func (f fieldCoder) f64(p *float64) {
	if f.e != nil {
		f.e.f64(*p)
	} else {
		*p = f.d.f64()
	}
}

func (f fieldCoder) varint(p *int64) {
	if f.e != nil {
		f.e.varint(*p)
	} else {
		*p = f.d.varint()
	}
}
