package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ordermesh/ordermesh/internal/apperr"
)

// CheckJSON walks a JSON document and refuses what encoding/json would
// silently accept but a client almost certainly did not mean: a key given
// twice in one object (the last would win), a null value (a field the
// request type does not make optional would read as its zero value, such
// as a price of 0), and NUL or other control characters in strings (kept
// out of names, addresses and descriptions). Errors are Invalid and name
// the field's path, such as items[0].sku.
func CheckJSON(raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := checkValue(dec, ""); err != nil {
		return err
	}
	return nil
}

// checkValue reads one value at path from dec and checks it.
func checkValue(dec *json.Decoder, path string) error {
	tok, err := dec.Token()
	if err != nil {
		return jsonSyntax(err)
	}
	switch t := tok.(type) {
	case nil:
		return apperr.Invalidf(path, "must not be null; leave the field out instead")
	case string:
		return checkString(path, t)
	case json.Delim:
		switch t {
		case '{':
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return jsonSyntax(err)
				}
				key, _ := k.(string)
				field := key
				if path != "" {
					field = path + "." + key
				}
				if err := checkString(field, key); err != nil {
					return err
				}
				if seen[key] {
					return apperr.Invalidf(field, "is given more than once")
				}
				seen[key] = true
				if err := checkValue(dec, field); err != nil {
					return err
				}
			}
		case '[':
			for i := 0; dec.More(); i++ {
				if err := checkValue(dec, fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return jsonSyntax(err)
		}
	}
	return nil
}

// checkString refuses control characters other than tab, newline and
// carriage return: NUL bytes in particular end strings early in C
// libraries, logs and terminals.
func checkString(path, s string) error {
	if i := strings.IndexFunc(s, func(r rune) bool { return r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0x7f }); i >= 0 {
		return apperr.Invalidf(path, "must not contain control characters (found U+%04X at byte %d)", s[i], i)
	}
	return nil
}

func jsonSyntax(err error) error {
	var syntax *json.SyntaxError
	switch {
	case errors.As(err, &syntax):
		return apperr.Invalidf("", "malformed JSON at byte %d", syntax.Offset)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return apperr.Invalidf("", "body is empty or truncated JSON")
	default:
		return apperr.Invalidf("", "cannot read body: %v", err)
	}
}
