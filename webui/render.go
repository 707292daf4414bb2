package webui

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/internal/atomicfile"
)

// Rendering a Mandelbrot result (result.png, result.raw) is bounded: it reads the job's rows
// one stored chunk at a time (JobBackend.MandelChunk), so memory is one chunk and the
// encoder's row buffers whatever the image size, and the job state's lock is held only while a
// chunk is read from the store, never while encoding or writing to a client. Large renders
// take one of a few render slots; beyond them a request is answered 429 with Retry-After. A
// finished job's PNG never changes, so it is rendered once into the PNG cache (DATA/png-cache)
// and served from there, with Range support; concurrent requests for it share that render, and
// wait for it, the one that started it included.

// renderRetryAfter is the Retry-After (seconds) of a 429 for want of a render slot.
const renderRetryAfter = 2

// smallRawBytes bounds a raw row fetch that needs no render slot: the web UI fetches at most
// 4 MiB of rows at a time (MAX_FETCH_ROWS_BYTES in static/job.js).
const smallRawBytes = 4 << 20

// pngCacheVersion names the cache's layout and palette: a change of either bumps it, and
// files of other versions are removed. (v2: file names carry the job's finish, pngGeneration.)
const pngCacheVersion = "v2"

// stallTimeout is how long a result download (result.png, result.raw, result.bin), or any other
// answer (writeStalled: JSON, a chunk history), may go without the client taking any of its bytes. A client that stops reading would otherwise keep its
// handler, and what the handler holds (a render slot, a render other requests wait for, a view
// of the result store), for as long as it keeps the connection open: the server has no write
// timeout, since a big image to a slow client may take minutes in all.
var stallTimeout = 30 * time.Second

// stallLimited gives h a response writer that fails a write the client has not taken within
// stallTimeout (each write renews the deadline, so a slow but moving download goes on).
func stallLimited(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h(&stallWriter{ResponseWriter: w, rc: http.NewResponseController(w)}, r)
	}
}

// stallWriter is stallLimited's response writer.
type stallWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
}

func (s *stallWriter) Write(p []byte) (int, error) {
	_ = s.rc.SetWriteDeadline(time.Now().Add(stallTimeout)) // unsupported: nothing to bound
	return s.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (s *stallWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// renderSlots caps concurrent large renders: half the cores, at least two.
func renderSlots() int { return max(2, runtime.NumCPU()/2) }

// renderer holds the render slots and the in-flight cache renders of one handler.
type renderer struct {
	slots chan struct{}
	cache *PNGCache

	mu      sync.Mutex
	flights map[string]*flight // job ID → its PNG being rendered into the cache
}

// flight is one render into the cache that other requests for the same PNG wait for.
type flight struct {
	done chan struct{}
	err  error
}

func newRenderer(slots int, cache *PNGCache) *renderer {
	return &renderer{slots: make(chan struct{}, slots), cache: cache, flights: map[string]*flight{}}
}

// tryAcquire takes a render slot if one is free.
func (r *renderer) tryAcquire() bool {
	select {
	case r.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (r *renderer) release() { <-r.slots }

// busy answers 429: every render slot is taken.
func busy(w http.ResponseWriter, slots int) {
	w.Header().Set("Retry-After", strconv.Itoa(renderRetryAfter))
	writeError(w, http.StatusTooManyRequests, fmt.Sprintf(
		"this node is already rendering %d large results (its limit); retry in %d s", slots, renderRetryAfter))
}

// chunkSource is what rendering needs of a JobBackend.
type chunkSource interface {
	MandelChunk(id string, row uint64) (compute.Range, []uint32, error)
}

// rowReader walks a Mandelbrot job's rows top to bottom, holding one stored chunk.
type rowReader struct {
	jobs   chunkSource
	id     string
	w      int
	cur    compute.Range
	counts []uint32 // cur's counts; nil when cur is not accepted (all zero)
	zero   []uint32 // one row of zeros
}

func newRowReader(jobs chunkSource, id string, width int) *rowReader {
	return &rowReader{jobs: jobs, id: id, w: width, zero: make([]uint32, width)}
}

// chunk moves to the stored chunk (or gap) holding row y.
func (r *rowReader) chunk(y uint64) error {
	if y >= r.cur.Start && y < r.cur.End {
		return nil
	}
	rg, counts, err := r.jobs.MandelChunk(r.id, y)
	if err != nil {
		return err
	}
	if rg.Start > y || rg.End <= y || (counts != nil && uint64(len(counts)) != rg.Len()*uint64(r.w)) {
		return fmt.Errorf("rows of job %s: the store answered %v (%d counts) for row %d", r.id, rg, len(counts), y)
	}
	r.cur, r.counts = rg, counts
	return nil
}

// row returns the counts of row y (width of them), valid until the next call.
func (r *rowReader) row(y uint64) ([]uint32, error) {
	if err := r.chunk(y); err != nil {
		return nil, err
	}
	if r.counts == nil {
		return r.zero, nil
	}
	off := (y - r.cur.Start) * uint64(r.w)
	return r.counts[off : off+uint64(r.w)], nil
}

// histogram counts every count of the image (counts above maxIter in maxIter's bin), one chunk
// at a time; rows not accepted count as 0.
func histogram(rr *rowReader, height uint64, maxIter int) ([]uint64, error) {
	hist := make([]uint64, maxIter+1)
	for y := uint64(0); y < height; {
		if err := rr.chunk(y); err != nil {
			return nil, err
		}
		end := min(rr.cur.End, height)
		if rr.counts == nil {
			hist[0] += (end - y) * uint64(rr.w)
		} else {
			for _, c := range rr.counts[(y-rr.cur.Start)*uint64(rr.w) : (end-rr.cur.Start)*uint64(rr.w)] {
				hist[min(c, uint32(maxIter))]++
			}
		}
		y = end
	}
	return hist, nil
}

// lazyImage colours rows as the PNG encoder asks for them (it asks top to bottom), fetching
// one stored chunk at a time: encoding costs one chunk, a palette of max_iter+1 colours and
// the encoder's row buffers, whatever the image size. At returns pointers into the palette:
// no allocation per pixel. A read error is kept in err (the encoder cannot take one); the
// writer then fails so that the encoder stops.
type lazyImage struct {
	rows   *rowReader
	w, h   int
	lut    []color.NRGBA
	opaque bool
	y      int
	cur    []uint32
	err    error
}

func (m *lazyImage) ColorModel() color.Model { return color.NRGBAModel }
func (m *lazyImage) Bounds() image.Rectangle { return image.Rect(0, 0, m.w, m.h) }
func (m *lazyImage) Opaque() bool            { return m.opaque }
func (m *lazyImage) At(x, y int) color.Color {
	if y != m.y || m.cur == nil {
		m.y, m.cur = y, m.rows.zero
		if m.err == nil {
			row, err := m.rows.row(uint64(y))
			if err != nil {
				m.err = err
			} else {
				m.cur = row
			}
		}
	}
	return &m.lut[min(int(m.cur[x]), len(m.lut)-1)]
}

// failingWriter passes writes on until the image reports a read error.
type failingWriter struct {
	w   io.Writer
	img *lazyImage
}

func (f failingWriter) Write(p []byte) (int, error) {
	if f.img.err != nil {
		return 0, f.img.err
	}
	return f.w.Write(p)
}

// renderPNG writes a Mandelbrot job's image as a PNG, reading its rows chunk by chunk.
func renderPNG(out io.Writer, jobs chunkSource, id string, m *compute.MandelParams) error {
	rr := newRowReader(jobs, id, m.Width)
	hist, err := histogram(rr, uint64(m.Height), m.MaxIter)
	if err != nil {
		return err
	}
	img := &lazyImage{rows: rr, w: m.Width, h: m.Height, lut: mandelPalette(hist, m.MaxIter), opaque: hist[0] == 0, y: -1}
	enc := png.Encoder{CompressionLevel: png.DefaultCompression}
	if m.Width*m.Height > 4<<20 {
		enc.CompressionLevel = png.BestSpeed // big images: seconds, not minutes
	}
	if err := enc.Encode(failingWriter{out, img}, img); err != nil {
		return err
	}
	return img.err
}

// PNGCache keeps the rendered PNGs of finished Mandelbrot jobs in a directory (DATA/png-cache):
// a finished job's image does not change while it stays finished, so it is rendered once. A
// finished job can run again, though (a node quarantined for failed audits has its rows that no
// audit cleared computed again, docs/audits.md), so a file is named for the job and its finish
// (pngGeneration): the image of a job finished again is rendered afresh, never the one with the
// rows that were thrown out. Files of jobs that are gone or finished since are removed by Sweep.
type PNGCache struct {
	dir string
}

// pngEnd is the last chunk of every PNG file (IEND: no data, then its CRC).
var pngEnd = []byte{0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82}

// wholePNG reports whether the file at path ends as a PNG file does: a cache file cut short by
// a power cut (renamed into place before all its data reached the disk) does not.
func wholePNG(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() < int64(len(pngEnd)) {
		return false
	}
	tail := make([]byte, len(pngEnd))
	if _, err := f.ReadAt(tail, st.Size()-int64(len(tail))); err != nil {
		return false
	}
	return bytes.Equal(tail, pngEnd)
}

// OpenPNGCache creates (or reuses) the cache directory and removes what an earlier run left
// half-written (temporary files, and cache files cut short by a power cut), and files of other
// cache versions.
func OpenPNGCache(dir string) (*PNGCache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("png cache %s: %w", dir, err)
	}
	c := &PNGCache{dir: dir}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("png cache %s: %w", dir, err)
	}
	for _, e := range ents {
		path := filepath.Join(dir, e.Name())
		if _, _, ok := c.jobOf(e.Name()); !ok || !e.Type().IsRegular() || !wholePNG(path) {
			_ = os.RemoveAll(path)
		}
	}
	return c, nil
}

// pngGeneration names one finish of a job: its time and how many units were computed again
// because an audit failed (a job finished again has run again, so both move on).
func pngGeneration(j compute.Job) string {
	return strconv.FormatInt(j.FinishedAt.UnixNano(), 10) + "_" + strconv.FormatUint(j.RedoneUnits, 10)
}

// path is the cache file of a finished job as it is now; ok is false for an ID that is not a
// safe file name (such a job is rendered every time).
func (c *PNGCache) path(j compute.Job) (string, bool) {
	if j.ID == "" || safeFileName(j.ID) != j.ID {
		return "", false
	}
	return filepath.Join(c.dir, pngCacheVersion+"-"+j.ID+"."+pngGeneration(j)+".png"), true
}

// jobOf returns the job ID and generation of a cache file name (safe IDs have no dot).
func (c *PNGCache) jobOf(name string) (id, gen string, ok bool) {
	rest, ok := strings.CutPrefix(name, pngCacheVersion+"-")
	if !ok {
		return "", "", false
	}
	rest, ok = strings.CutSuffix(rest, ".png")
	if !ok {
		return "", "", false
	}
	id, gen, ok = strings.Cut(rest, ".")
	return id, gen, ok && id != "" && gen != "" && safeFileName(id) == id
}

// Sweep removes the cached PNGs of jobs that are gone and of finishes that are past: current
// gives a job's generation (pngGeneration) while it is finished, ok false if it is not (deleted,
// evicted, or running again).
func (c *PNGCache) Sweep(current func(id string) (gen string, ok bool)) error {
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return fmt.Errorf("png cache %s: %w", c.dir, err)
	}
	var errs []error
	for _, e := range ents {
		id, gen, ok := c.jobOf(e.Name())
		if !ok {
			continue
		}
		if now, ok := current(id); ok && now == gen {
			continue
		}
		if err := os.Remove(filepath.Join(c.dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Dir is the cache's directory.
func (c *PNGCache) Dir() string { return c.dir }

// render writes job j's PNG into the cache: a temporary file renamed into place once complete.
// It writes to no client: the render runs at the node's pace, and a client that reads slowly
// cannot stretch it, nor the wait of the other requests for it (servePNGCached).
func (c *PNGCache) render(jobs chunkSource, j compute.Job) (string, error) {
	final, ok := c.path(j)
	if !ok {
		return "", fmt.Errorf("job %q cannot be cached", j.ID)
	}
	// A crash leaves no torn PNG under its name (atomicfile), and a temporary file left is
	// removed by the next OpenPNGCache, like every name that is not a cache file's.
	f, err := atomicfile.Create(final, 0o600, ".tmp-")
	if err != nil {
		return "", fmt.Errorf("png cache: %w", err)
	}
	defer f.Abort()
	err = renderPNG(f, jobs, j.ID, j.Spec.Mandel)
	if err == nil {
		err = f.Commit()
	}
	if err != nil {
		return "", fmt.Errorf("png cache: render job %s: %w", j.ID, err)
	}
	return final, nil
}

// servePNG answers GET/HEAD result.png of a Mandelbrot job (headers not yet written).
func (s *server) servePNG(w http.ResponseWriter, r *http.Request, j compute.Job, done uint64) {
	rd := s.render
	if rd.cache != nil && j.State.Finished() {
		if path, ok := rd.cache.path(j); ok {
			s.servePNGCached(w, r, j, done, path)
			return
		}
	}
	// An unfinished job's image changes as rows arrive: rendered for each request.
	if !rd.tryAcquire() {
		busy(w, cap(rd.slots))
		return
	}
	defer rd.release()
	s.imageHeaders(w, j, done, "image/png", ".png")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if err := renderPNG(w, s.cfg.Jobs, j.ID, j.Spec.Mandel); err != nil {
		s.cfg.Logger.Debug("png", "job", j.ID, "err", err) // usually the client went away
	}
}

// servePNGCached serves a finished job's PNG from the cache, rendering it first if no request is
// doing so already; requests that find it being rendered wait for that render. The render writes
// the file only, and every request, the one that rendered it included, is then served from the
// file: a render streamed to its client went at that client's pace, so one that read a few KB a
// second (never stalling for stallTimeout) held a render slot, and every other request for the
// PNG, for hours.
func (s *server) servePNGCached(w http.ResponseWriter, r *http.Request, j compute.Job, done uint64, path string) {
	rd := s.render
	for rendered := false; ; {
		f, err := os.Open(path)
		if err == nil {
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				writeError(w, http.StatusInternalServerError, "png cache: "+err.Error())
				return
			}
			s.imageHeaders(w, j, done, "image/png", ".png")
			w.Header().Del("Cache-Control") // a finished job's PNG never changes: a client may keep it
			serveContent(w, r, st.ModTime(), f)
			return
		}
		if rendered { // rendered here, and not there: not for want of a render
			s.cfg.Logger.Warn("png cache", "job", j.ID, "err", err)
			writeError(w, http.StatusInternalServerError, "png cache: "+err.Error())
			return
		}
		rd.mu.Lock()
		fl, ok := rd.flights[j.ID]
		if ok {
			rd.mu.Unlock()
			select {
			case <-fl.done:
			case <-r.Context().Done():
				return
			}
			if fl.err != nil {
				s.jobError(w, j.ID, "png", fl.err)
				return
			}
			continue // rendered: serve the file
		}
		if !rd.tryAcquire() {
			rd.mu.Unlock()
			busy(w, cap(rd.slots))
			return
		}
		fl = &flight{done: make(chan struct{})}
		rd.flights[j.ID] = fl
		rd.mu.Unlock()
		func() {
			defer rd.release()
			defer func() {
				rd.mu.Lock()
				delete(rd.flights, j.ID)
				rd.mu.Unlock()
				close(fl.done)
			}()
			_, fl.err = rd.cache.render(s.cfg.Jobs, j)
		}()
		if fl.err != nil {
			s.cfg.Logger.Warn("png cache", "job", j.ID, "err", fl.err)
			s.jobError(w, j.ID, "png", fl.err)
			return
		}
		rendered = true
	}
}

// sweepEvery is how often RunPNGCacheSweeper looks for cached PNGs of removed jobs.
const sweepEvery = time.Minute

// RunPNGCacheSweeper removes, every minute until ctx ends, the cached PNGs of jobs that jobs
// no longer has, once ready reports that the replica is rebuilt (after a restart the job
// state is empty until raft has restored it).
func RunPNGCacheSweeper(ctx context.Context, c *PNGCache, jobs JobBackend, ready func() bool, onErr func(error)) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !ready() {
			continue
		}
		if err := c.Sweep(jobGeneration(jobs)); err != nil && onErr != nil {
			onErr(err)
		}
	}
}

// jobGeneration is PNGCache.Sweep's view of jobs: a finished job's pngGeneration.
func jobGeneration(jobs JobBackend) func(id string) (string, bool) {
	return func(id string) (string, bool) {
		j, ok := jobs.Job(id)
		if !ok || !j.State.Finished() {
			return "", false
		}
		return pngGeneration(j), true
	}
}
