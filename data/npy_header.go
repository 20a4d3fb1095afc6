package data

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// parseNPYHeader reads the header dict. It is a small parser for the Python
// literals numpy writes (dict, tuple, list, str, int, True, False, None),
// tolerant of key order, spacing and trailing commas, the ways hand-written
// and foreign writers differ from numpy.
func parseNPYHeader(s string) (npyHeader, error) {
	var h npyHeader
	p := &pyParser{s: s}
	v, err := p.value(0)
	if err != nil {
		return h, err
	}
	p.space()
	if p.i != len(p.s) {
		return h, fmt.Errorf("unexpected %s after the dict", quote(strings.TrimSpace(p.s[p.i:])))
	}
	dict, ok := v.(pyDict)
	if !ok {
		return h, fmt.Errorf("not a dict")
	}
	seen := map[string]bool{}
	for _, kv := range dict {
		if seen[kv.key] {
			return h, fmt.Errorf("duplicate key %s", quote(kv.key))
		}
		seen[kv.key] = true
		switch kv.key {
		case "descr":
			switch d := kv.val.(type) {
			case string:
				h.descr = d
			case pyList:
				return h, fmt.Errorf("structured dtype not supported: want a plain float32 or float64 array")
			default:
				return h, fmt.Errorf("'descr' is not a string")
			}
		case "fortran_order":
			b, ok := kv.val.(bool)
			if !ok {
				return h, fmt.Errorf("'fortran_order' is not True or False")
			}
			h.fortran = b
		case "shape":
			var items []any
			switch t := kv.val.(type) {
			case pyTuple:
				items = t
			case pyList:
				items = t
			default:
				return h, fmt.Errorf("'shape' is not a tuple")
			}
			for _, it := range items {
				n, ok := it.(int64)
				if !ok {
					return h, fmt.Errorf("'shape' holds a non-integer")
				}
				h.shape = append(h.shape, n)
			}
		default:
			return h, fmt.Errorf("unexpected key %s (want 'descr', 'fortran_order' and 'shape')", quote(kv.key))
		}
	}
	for _, k := range []string{"descr", "fortran_order", "shape"} {
		if !seen[k] {
			return h, fmt.Errorf("missing key '%s'", k)
		}
	}
	return h, nil
}

type (
	pyTuple []any
	pyList  []any
	pyDict  []pyKV
	pyKV    struct {
		key string
		val any
	}
)

// maxPyDepth bounds nesting, so that "((((..." cannot recurse deeply.
const maxPyDepth = 8

var errPyInt = errors.New("integer out of range")

type pyParser struct {
	s string
	i int
}

func (p *pyParser) space() {
	for p.i < len(p.s) && strings.IndexByte(" \t\r\n\f\v", p.s[p.i]) >= 0 {
		p.i++
	}
}

func (p *pyParser) rest() string {
	const show = 20
	if len(p.s)-p.i > show {
		return p.s[p.i:p.i+show] + "..."
	}
	return p.s[p.i:]
}

func (p *pyParser) value(depth int) (any, error) {
	if depth > maxPyDepth {
		return nil, fmt.Errorf("nested too deeply")
	}
	p.space()
	if p.i >= len(p.s) {
		return nil, fmt.Errorf("unexpected end")
	}
	switch c := p.s[p.i]; c {
	case '{':
		p.i++
		var d pyDict
		for {
			p.space()
			if p.i < len(p.s) && p.s[p.i] == '}' {
				p.i++
				return d, nil
			}
			k, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			key, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("dict key is not a string")
			}
			p.space()
			if p.i >= len(p.s) || p.s[p.i] != ':' {
				return nil, fmt.Errorf("want ':' after key %s", quote(key))
			}
			p.i++
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			d = append(d, pyKV{key, v})
			if !p.sep('}') {
				return nil, fmt.Errorf("want ',' or '}' in dict, found %s", quote(p.rest()))
			}
		}
	case '(', '[':
		end := byte(')')
		if c == '[' {
			end = ']'
		}
		p.i++
		var items []any
		comma := false
		for {
			p.space()
			if p.i < len(p.s) && p.s[p.i] == end {
				p.i++
				break
			}
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			items = append(items, v)
			p.space()
			comma = p.i < len(p.s) && p.s[p.i] == ','
			if !p.sep(end) {
				return nil, fmt.Errorf("want ',' or '%c', found %s", end, quote(p.rest()))
			}
		}
		if c == '[' {
			return pyList(items), nil
		}
		if len(items) == 1 && !comma {
			return items[0], nil // "(3)" is 3 in Python, not a tuple.
		}
		return pyTuple(items), nil
	case '\'', '"':
		p.i++
		var b strings.Builder
		for p.i < len(p.s) && p.s[p.i] != c {
			if p.s[p.i] == '\\' && p.i+1 < len(p.s) {
				p.i++
			}
			b.WriteByte(p.s[p.i])
			p.i++
		}
		if p.i >= len(p.s) {
			return nil, fmt.Errorf("unterminated string")
		}
		p.i++
		return b.String(), nil
	}
	start := p.i
	for p.i < len(p.s) && isWordByte(p.s[p.i]) {
		p.i++
	}
	w := p.s[start:p.i]
	switch w {
	case "":
		return nil, fmt.Errorf("unexpected %s", quote(p.rest()))
	case "True":
		return true, nil
	case "False":
		return false, nil
	case "None":
		return nil, nil
	}
	// Python 2 wrote long integers with an L suffix.
	digits := strings.TrimSuffix(strings.TrimSuffix(w, "L"), "l")
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return nil, fmt.Errorf("%s: %w", quote(w), errPyInt)
		}
		return nil, fmt.Errorf("unexpected %s", quote(w))
	}
	return n, nil
}

// sep consumes a ',' or sees the closing byte (leaving it for the caller's
// loop), reporting false if neither follows.
func (p *pyParser) sep(end byte) bool {
	p.space()
	if p.i < len(p.s) && p.s[p.i] == ',' {
		p.i++
		return true
	}
	return p.i < len(p.s) && p.s[p.i] == end
}

func isWordByte(c byte) bool {
	return c == '_' || c == '+' || c == '-' || c == '.' ||
		'0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}
