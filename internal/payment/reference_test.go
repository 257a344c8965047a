package payment

import (
	"bytes"
	"encoding/json"
	"io"
	"slices"
)

// referenceSplitObject is the first, encoding/json.Decoder-based
// splitObject. It is slow (hundreds of allocations a record) but plainly
// right, so the fuzzer checks the hand-written scanner against it.
func referenceSplitObject(raw []byte) (map[string]json.RawMessage, json.RawMessage, error) {
	malformed := func(detail string) error {
		return &Error{Reason: ReasonMalformedJSON, Detail: detail}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, malformed("not a JSON value")
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, malformed("not a JSON object")
	}
	fields := make(map[string]json.RawMessage, len(knownFields))
	seen := make(map[string]bool, len(knownFields))
	var extra bytes.Buffer
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, malformed("broken object")
		}
		name, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, nil, malformed("broken value")
		}
		if seen[name] {
			return nil, nil, &Error{Reason: ReasonInvalidField, Field: name, Detail: "appears more than once"}
		}
		seen[name] = true
		if slices.Contains(knownFields, name) {
			fields[name] = value
			continue
		}
		if extra.Len() == 0 {
			extra.WriteByte('{')
		} else {
			extra.WriteByte(',')
		}
		key, _ := json.Marshal(name)
		extra.Write(key)
		extra.WriteByte(':')
		extra.Write(value)
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, malformed("broken object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, malformed("data after the object")
	}
	if extra.Len() == 0 {
		return fields, nil, nil
	}
	extra.WriteByte('}')
	return fields, json.RawMessage(extra.Bytes()), nil
}
