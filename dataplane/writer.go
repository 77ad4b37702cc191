package dataplane

import (
	"net"
	"sync"
	"time"
)

// frameWriter writes frames to a connection, concurrent writers sharing system calls: a writer that finds a
// write under way leaves its frame in the buffer for the writer doing it, which writes everything buffered before
// it returns. A proxy's connections carry many small frames at once (16 requests in flight are 16 answers), and
// one write per frame was a large part of the proxy's cost.
type frameWriter struct {
	nc      net.Conn
	timeout time.Duration // a write that makes no progress for this long fails: a peer that stopped reading

	mu       sync.Mutex
	buf      []byte // frames waiting for the writer under way
	spare    []byte // the buffer last written, reused
	flushing bool
	err      error // the first write error: the connection is done
}

// maxSpare is the largest written buffer a writer keeps for reuse.
const maxSpare = 1 << 20

func newFrameWriter(nc net.Conn, timeout time.Duration) *frameWriter {
	return &frameWriter{nc: nc, timeout: timeout}
}

// hold queues a frame without writing it: the caller writes it with flush (or a later write) once the burst it
// belongs to has been read.
func (w *frameWriter) hold(frame []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	w.buf = append(w.buf, frame...)
	return nil
}

// flush writes what hold queued, unless another writer is writing it.
func (w *frameWriter) flush() error { return w.write(nil) }

// write queues a frame and, unless another writer is writing, writes everything queued. An error means the
// connection failed (now or before); a frame left to another writer reports that writer's error to it, not here.
func (w *frameWriter) write(frame []byte) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.buf = append(w.buf, frame...)
	if w.flushing {
		w.mu.Unlock()
		return nil
	}
	w.flushing = true
	var err error
	for len(w.buf) > 0 && err == nil {
		out := w.buf
		w.buf = w.spare[:0]
		w.mu.Unlock()
		_ = w.nc.SetWriteDeadline(time.Now().Add(w.timeout))
		_, err = w.nc.Write(out)
		w.mu.Lock()
		if cap(out) <= maxSpare { // a burst's large buffer is not kept for the connection's life
			w.spare = out
		}
	}
	if err != nil {
		w.err, w.buf = err, nil
	}
	w.flushing = false
	w.mu.Unlock()
	return err
}
