package event

import (
	"bytes"
	"embed"
	"fmt"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed schemas/*.json
var schemaFiles embed.FS

const schemaBase = "https://ordermesh.dev/schemas/"

// Schemas validates event data against the catalog's JSON Schemas.
type Schemas struct {
	byType map[string]*jsonschema.Schema
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
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%s data is not JSON: %w", typ, err)
	}
	if err := sch.Validate(v); err != nil {
		return fmt.Errorf("%s data does not match its schema: %w", typ, err)
	}
	return nil
}
