package ginoauth

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"time"
)

// Session records are read on every authenticated request, so they are
// stored in a compact binary layout rather than JSON (decoding JSON was half
// the cost of a session check): a version byte, the fields below, each
// string a uvarint length and its bytes, times as uvarint Unix nanoseconds.
// Records written as JSON by earlier versions are still read.
const recordFormat = 1

// encodeRecord lays out rec.
func encodeRecord(rec *sessionRecord) []byte {
	b := make([]byte, 0, 192)
	b = append(b, recordFormat)
	for _, s := range []string{rec.Kind, rec.DID, rec.Handle, rec.OAuthSessionID, rec.Device, rec.IP, rec.Successor, rec.Previous} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, t := range []time.Time{rec.CreatedAt, rec.ExpiresAt, rec.GraceUntil} {
		b = binary.AppendUvarint(b, unixNanos(t))
	}
	for _, list := range [][]string{rec.Scopes, rec.Requested} {
		b = binary.AppendUvarint(b, uint64(len(list)))
		for _, s := range list {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
	}
	return b
}

func unixNanos(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(max(t.UnixNano(), 1)) //nolint:gosec // clamped to positive
}

func fromNanos(n uint64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(n)).UTC() //nolint:gosec // written from an int64
}

var errBadRecord = errors.New("ginoauth: unreadable session record")

// decodeRecord reads a record in either format. The strings share one copy
// of raw, so a decode costs a handful of allocations.
func decodeRecord(raw []byte, rec *sessionRecord) error {
	if len(raw) > 0 && raw[0] == '{' {
		return json.Unmarshal(raw, rec)
	}
	if len(raw) < 1 || raw[0] != recordFormat {
		return errBadRecord
	}
	s := string(raw[1:])
	pos := 0
	next := func() (uint64, bool) {
		var v uint64
		for shift := uint(0); pos < len(s) && shift < 64; shift += 7 {
			c := s[pos]
			pos++
			v |= uint64(c&0x7f) << shift
			if c < 0x80 {
				return v, true
			}
		}
		return 0, false
	}
	str := func() (string, bool) {
		l, ok := next()
		if !ok || l > uint64(len(s)-pos) { //nolint:gosec // G115: pos <= len(s), so the difference is never negative
			return "", false
		}
		v := s[pos : pos+int(l)] //nolint:gosec // l <= remaining length
		pos += int(l)            //nolint:gosec // as above
		return v, true
	}
	ok := true
	for _, f := range []*string{&rec.Kind, &rec.DID, &rec.Handle, &rec.OAuthSessionID, &rec.Device, &rec.IP, &rec.Successor, &rec.Previous} {
		var good bool
		*f, good = str()
		ok = ok && good
	}
	for _, f := range []*time.Time{&rec.CreatedAt, &rec.ExpiresAt, &rec.GraceUntil} {
		n, good := next()
		*f, ok = fromNanos(n), ok && good
	}
	for _, f := range []*[]string{&rec.Scopes, &rec.Requested} {
		n, good := next()
		if !good || n > uint64(len(s)) {
			return errBadRecord
		}
		if n == 0 {
			*f = nil
			continue
		}
		list := make([]string, n)
		for i := range list {
			var g bool
			list[i], g = str()
			ok = ok && g
		}
		*f = list
	}
	if !ok || pos != len(s) {
		return errBadRecord
	}
	return nil
}

// getRecord loads the session record under hash: ErrNotFound, a
// *StorageError, or the record (an unreadable one counts as not found).
func (m *Manager) getRecord(ctx context.Context, hash string, rec *sessionRecord) error {
	key := sessionKeyPrefix + hash
	ctx, cancel := m.op(ctx)
	defer cancel()
	raw, err := m.store.Get(ctx, key)
	if err != nil {
		return m.storageFailed("get", err)
	}
	if err := decodeRecord(raw, rec); err != nil {
		m.log.Warn("unreadable session record in storage; ignoring it", "err", err)
		return ErrNotFound
	}
	return nil
}

// putRecord stores rec under hash for ttl.
func (m *Manager) putRecord(ctx context.Context, hash string, rec *sessionRecord, ttl time.Duration) error {
	m.cache.drop(hash)
	ctx, cancel := m.op(ctx)
	defer cancel()
	return m.storageFailed("set", m.store.Set(ctx, sessionKeyPrefix+hash, encodeRecord(rec), ttl))
}
