package event

import (
	"bytes"
	"embed"
	"fmt"
	"hash/maphash"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed schemas/*.json
var schemaFiles embed.FS

const schemaBase = "https://ordermesh.dev/schemas/"

// Schemas validates event data against the catalog's JSON Schemas.
type Schemas struct {
	byType map[string]*jsonschema.Schema
	valid  validCache
}

// LoadSchemas compiles the schema of every type in Types.
func LoadSchemas() (*Schemas, error) {
	c := jsonschema.NewCompiler()
	entries, err := schemaFiles.ReadDir("schemas")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		raw, err := schemaFiles.ReadFile("schemas/" + e.Name())
		if err != nil {
			return nil, err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("schema %s: %w", e.Name(), err)
		}
		if err := c.AddResource(schemaBase+e.Name(), doc); err != nil {
			return nil, fmt.Errorf("schema %s: %w", e.Name(), err)
		}
	}
	s := &Schemas{byType: map[string]*jsonschema.Schema{}}
	for _, t := range Types {
		sch, err := c.Compile(schemaBase + t + ".json")
		if err != nil {
			return nil, fmt.Errorf("compile schema of %s: %w", t, err)
		}
		s.byType[t] = sch
	}
	return s, nil
}

// Validate checks data against the schema of typ. An unknown type is an
// error: every emitted event must be in the catalog.
func (s *Schemas) Validate(typ string, data []byte) error {
	sch, ok := s.byType[typ]
	if !ok {
		return fmt.Errorf("event type %q is not in the catalog", typ)
	}
	if s.valid.has(typ, data) {
		return nil
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%s data is not JSON: %w", typ, err)
	}
	if err := sch.Validate(v); err != nil {
		return fmt.Errorf("%s data does not match its schema: %w", typ, err)
	}
	s.valid.add(typ, data)
	return nil
}

// validCache remembers the latest data found valid, so that an event
// delivered to several consumers of one process is checked once. An entry
// is the exact bytes, compared in full: the hash only finds it, so forged
// data can never pass as data seen before. It holds two generations of up
// to validCacheSize entries each; when the newer fills, the older is dropped.
type validCache struct {
	mu        sync.Mutex
	seed      maphash.Seed
	cur, prev map[uint64]validEntry
}

type validEntry struct {
	typ  string
	data string
}

const validCacheSize = 2048

func (c *validCache) key(typ string, data []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	h.WriteString(typ)
	h.WriteByte(0)
	h.Write(data)
	return h.Sum64()
}

func (c *validCache) has(typ string, data []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return false
	}
	k := c.key(typ, data)
	for _, m := range []map[uint64]validEntry{c.cur, c.prev} {
		if e, ok := m[k]; ok && e.typ == typ && e.data == string(data) {
			return true
		}
	}
	return false
}

func (c *validCache) add(typ string, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		c.seed = maphash.MakeSeed()
		c.cur = make(map[uint64]validEntry, validCacheSize)
	}
	if len(c.cur) >= validCacheSize {
		c.prev, c.cur = c.cur, make(map[uint64]validEntry, validCacheSize)
	}
	c.cur[c.key(typ, data)] = validEntry{typ: typ, data: string(data)}
}
