package wire

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"hash/crc32"
	"io"
	"sync"

	"google.golang.org/grpc/encoding"
	grpcgzip "google.golang.org/grpc/encoding/gzip" // registered first: kept for decompressing, its name taken over
)

// storeBelow is the size under which a part that is not shared is stored rather than compressed: a response's own
// fields (type, version, nonce) gain nothing from deflate, and a compressor's reset costs more than they weigh.
const storeBelow = 256

func init() {
	encoding.RegisterCompressor(&compressor{decompressor: encoding.GetCompressor(grpcgzip.Name)})
}

// compressor is "gzip" for grpc: compression as the package comment says, decompression by grpc's gzip.
type compressor struct {
	decompressor encoding.Compressor // grpc's gzip
}

func (c *compressor) Name() string { return grpcgzip.Name }

func (c *compressor) Decompress(r io.Reader) (io.Reader, error) { return c.decompressor.Decompress(r) }

func (c *compressor) Compress(w io.Writer) (io.WriteCloser, error) {
	if !enabled() {
		return c.decompressor.Compress(w) // grpc's gzip, whole
	}
	return &writer{w: w}, nil
}

// gzipHeader is a gzip member's header: deflate, no flags, no time, unknown OS.
var gzipHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}

// finalBlock is an empty stored block with BFINAL set: it ends the deflate stream at a byte boundary.
var finalBlock = []byte{0x01, 0x00, 0x00, 0xff, 0xff}

// writer writes one gzip member: each Write a byte-aligned part of its deflate stream.
type writer struct {
	w       io.Writer
	started bool
	crc     uint32
	size    uint32
	err     error
	prev    *segment // the last part, when it was a shared segment
}

func (z *writer) Write(b []byte) (int, error) {
	if z.err != nil {
		return 0, z.err
	}
	if !z.started {
		z.started = true
		z.write(gzipHeader)
	}
	z.crc = crc32.Update(z.crc, crc32.IEEETable, b)
	z.size += uint32(len(b))
	prev := z.prev
	seg := segmentAt(b)
	z.prev = seg
	switch {
	case seg != nil && prev != nil:
		z.write(prev.then(seg))
	case seg != nil:
		z.write(seg.deflated())
	case len(b) < storeBelow:
		z.write(stored(b))
	default:
		z.write(deflate(b))
	}
	return len(b), z.err
}

func (z *writer) Close() error {
	if !z.started {
		z.write(gzipHeader)
	}
	z.write(finalBlock)
	var trailer [8]byte
	binary.LittleEndian.PutUint32(trailer[:4], z.crc)
	binary.LittleEndian.PutUint32(trailer[4:], z.size)
	z.write(trailer[:])
	return z.err
}

func (z *writer) write(b []byte) {
	if z.err == nil {
		_, z.err = z.w.Write(b)
	}
}

// stored is b as non-final stored blocks (at most 65,535 bytes each), byte-aligned.
func stored(b []byte) []byte {
	out := make([]byte, 0, len(b)+5*(len(b)/0xffff+1))
	for {
		n := min(len(b), 0xffff)
		out = append(out, 0x00, byte(n), byte(n>>8), ^byte(n), ^byte(n>>8))
		out = append(out, b[:n]...)
		b = b[n:]
		if len(b) == 0 {
			return out
		}
	}
}

// level is the compression level of every deflate stream written here.
var level = flate.DefaultCompression

// flater is a pooled compressor writing to a destination that changes with each use: resetting a compressor clears
// its tables (about 25 µs at the default level), so it is reset once per use, when taken, and its destination
// dropped without a second reset when it is put back.
type flater struct {
	fw  *flate.Writer
	dst sink
}

type sink struct{ w io.Writer }

func (s *sink) Write(p []byte) (int, error) { return s.w.Write(p) }

var flaters = sync.Pool{New: func() any {
	f := &flater{}
	f.fw, _ = flate.NewWriter(&f.dst, level)
	return f
}}

// getFlater is a compressor at the start of a new stream, writing to w.
func getFlater(w io.Writer) *flater {
	f := flaters.Get().(*flater)
	f.dst.w = w
	f.fw.Reset(&f.dst)
	return f
}

// put returns f to the pool, keeping no reference to its last destination.
func (f *flater) put() {
	f.dst.w = nil
	flaters.Put(f)
}

// deflate is b compressed on its own, ending in a sync flush: non-final blocks, byte-aligned.
func deflate(b []byte) []byte {
	var buf bytes.Buffer
	f := getFlater(&buf)
	f.fw.Write(b)
	f.fw.Flush()
	f.put()
	return buf.Bytes()
}

// then is next's deflate blocks when they follow s's: next, a type URL, compressed with s's bytes as the history, so
// that what it repeats of s (the resource's Any names its type) is a reference back. Made once per resource (it
// has one type); any other follower gets its own blocks.
func (s *segment) then(next *segment) []byte {
	if !next.typeURL {
		return next.deflated()
	}
	s.thenOnce.Do(func() {
		var buf bytes.Buffer
		f := getFlater(&buf)
		f.fw.Write(s.field) // the history, in this compressor's window; its output is dropped
		f.fw.Flush()
		mark := buf.Len()
		f.fw.Write(next.field)
		f.fw.Flush()
		f.put()
		s.next, s.after = next, bytes.Clone(buf.Bytes()[mark:])
	})
	if s.next != next {
		return next.deflated()
	}
	return s.after
}

// deflated is the segment's deflate blocks, compressed the first time they are needed.
func (s *segment) deflated() []byte {
	s.once.Do(func() { s.flate = deflate(s.field) })
	return s.flate
}
