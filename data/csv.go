package data

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// plural is "1 field", "2 fields".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// maxCSVLine bounds one line, the unit the parser holds in memory: a file
// without newlines must not be read whole before it is rejected. 16 MiB is
// about a million columns.
const maxCSVLine = 16 << 20

// CSVOptions are the choices ReadCSVWith leaves open.
type CSVOptions struct {
	// Delimiter separates the fields (0: a comma). It may not be a double
	// quote, a line break or a character a number can hold.
	Delimiter rune
	// Header makes the first non-blank line a header, skipped whatever it
	// holds (a header of numbers, such as pandas' "0,1", cannot be told
	// from data otherwise).
	Header bool
}

func (o CSVOptions) delimiter() rune {
	if o.Delimiter == 0 {
		return ','
	}
	return o.Delimiter
}

func (o CSVOptions) check() error {
	switch d := o.delimiter(); {
	case d == '"' || d == '\r' || d == '\n' || d == '\ufeff' || d == utf8.RuneError:
		return fmt.Errorf("delimiter %q: want a character that is not a quote or a line break", d)
	case d >= '0' && d <= '9', strings.ContainsRune("+-.eEinfINFaAyY", d):
		return fmt.Errorf("delimiter %q: a number can hold it", d)
	}
	return nil
}

// CSVDelimiterError is a CSV read with one delimiter that seems written
// with another: a line of one field that holds Seen, which is not a number.
type CSVDelimiterError struct {
	Err  error
	Seen rune // the delimiter the line seems to use
}

func (e *CSVDelimiterError) Error() string { return e.Err.Error() }
func (e *CSVDelimiterError) Unwrap() error { return e.Err }

// LoadCSV reads a .csv file; see ReadCSV.
func LoadCSV(path string) (*Dataset, error) {
	return LoadCSVWith(path, CSVOptions{})
}

// LoadCSVWith reads a .csv file; see ReadCSVWith.
func LoadCSVWith(path string, o CSVOptions) (*Dataset, error) {
	if err := o.check(); err != nil {
		return nil, errorf(path, "%v", err)
	}
	f, _, err := openData(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadCSVWith(f, path, o)
}

// ReadCSV reads comma-separated numbers, one point per line, streaming: the
// memory held is the float32 data plus one line. Blank lines are skipped,
// whitespace and one pair of double quotes around a field are removed, a
// leading UTF-8 byte-order mark is ignored, and every row must have the
// same number of fields. The first non-blank line is a header, and skipped,
// if any of its fields is not a number; a header made only of numbers (such
// as pandas' default "0,1") cannot be told from data and is read as a point.
// Values are rounded to float32; NaN, infinities and values beyond the
// float32 range are rejected with their line and column (both from 1).
// name appears in every error.
func ReadCSV(r io.Reader, name string) (*Dataset, error) {
	return ReadCSVWith(r, name, CSVOptions{})
}

// ReadCSVWith is ReadCSV with another delimiter, or a header declared (see
// CSVOptions). A line of a single field that is not a number but holds a
// semicolon, a tab or a comma other than the delimiter is reported as a
// *CSVDelimiterError.
func ReadCSVWith(r io.Reader, name string, o CSVOptions) (*Dataset, error) {
	if err := o.check(); err != nil {
		return nil, errorf(name, "%v", err)
	}
	delim := string(o.delimiter())
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxCSVLine)
	var (
		x          []float32
		line       int
		cols       = -1 // fields per row, once known
		colsLine   int  // the line that fixed cols
		sawFirst   bool
		headerLine int
	)
	for sc.Scan() {
		line++
		s := sc.Text()
		if line == 1 {
			if strings.HasPrefix(s, "\xff\xfe") || strings.HasPrefix(s, "\xfe\xff") {
				return nil, errorf(name, "UTF-16 text (it begins with a UTF-16 byte-order mark): save it as UTF-8")
			}
			s = strings.TrimPrefix(s, "\ufeff")
		}
		s = strings.TrimRight(s, "\r") // CRLF, and Python's csv on Windows: CR CR LF
		if strings.TrimSpace(s) == "" {
			continue
		}
		if strings.Contains(s, "\r") {
			return nil, errorf(name, "line %d holds a carriage return (CR) inside it: lines ended by CR alone, as in old Mac files? end them with LF or CRLF", line)
		}
		fields := splitFields(s, delim)
		for i, f := range fields {
			fields[i] = csvField(f)
		}
		if !sawFirst {
			sawFirst = true
			if o.Header || isHeader(fields) && !otherDelimiterRow(fields, delim) {
				cols, colsLine, headerLine = len(fields), line, line
				continue
			}
		}
		if cols < 0 {
			cols, colsLine = len(fields), line
		} else if len(fields) != cols {
			where := "on line"
			if colsLine == headerLine {
				where = "in the header on line"
			}
			return nil, errorf(name, "line %d has %s, want %d as %s %d", line, plural(len(fields), "field"), cols, where, colsLine)
		}
		for j, f := range fields {
			v, err := strconv.ParseFloat(f, 64)
			switch {
			case f == "":
				return nil, errorf(name, "line %d, column %d: empty field", line, j+1)
			case errors.Is(err, strconv.ErrRange) && !math.IsInf(v, 0):
				v = 0 // underflow: ParseFloat already returned the nearest value, 0
			case errors.Is(err, strconv.ErrRange):
				return nil, errorf(name, "line %d, column %d: %s is outside the float32 range", line, j+1, quote(f))
			case err != nil && len(fields) == 1:
				for _, seen := range ";\t," {
					if string(seen) != delim && strings.ContainsRune(f, seen) {
						return nil, &CSVDelimiterError{Seen: seen, Err: errorf(name, "line %d, column 1: %s is not a number: the fields seem separated by %q, not %q", line, quote(f), seen, o.delimiter())}
					}
				}
				return nil, errorf(name, "line %d, column %d: %s is not a number", line, j+1, quote(f))
			case err != nil && decimalComma(f):
				return nil, errorf(name, "line %d, column %d: %s is not a number: fmgpu reads a decimal point, not a decimal comma", line, j+1, quote(f))
			case err != nil:
				return nil, errorf(name, "line %d, column %d: %s is not a number", line, j+1, quote(f))
			case math.IsNaN(v) || math.IsInf(v, 0):
				return nil, errorf(name, "line %d, column %d: %s is not allowed: data must be finite", line, j+1, quote(f))
			}
			f32 := float32(v)
			if math.IsInf(float64(f32), 0) {
				return nil, errorf(name, "line %d, column %d: %s is outside the float32 range", line, j+1, quote(f))
			}
			x = append(x, f32)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, errorf(name, "line %d is longer than %d bytes", line+1, maxCSVLine)
		}
		return nil, readErr(name, err)
	}
	if len(x) == 0 {
		return nil, errorf(name, "no data rows")
	}
	return &Dataset{Name: name, X: x, N: len(x) / cols, D: cols}, nil
}

func csvField(f string) string {
	f = strings.TrimSpace(f)
	if len(f) >= 2 && f[0] == '"' && f[len(f)-1] == '"' {
		f = strings.TrimSpace(strings.ReplaceAll(f[1:len(f)-1], `""`, `"`))
	}
	return f
}

// splitFields splits a line at delim outside double quotes (RFC 4180): a
// quoted header name may hold the delimiter ("Height, cm"), as pandas and
// spreadsheets write it.
func splitFields(s, delim string) []string {
	if !strings.Contains(s, `"`) {
		return strings.Split(s, delim)
	}
	var fields []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '"':
			quoted = !quoted // a doubled quote toggles twice
		case !quoted && strings.HasPrefix(s[i:], delim):
			fields = append(fields, s[start:i])
			start = i + len(delim)
			i += len(delim) - 1
		}
	}
	return append(fields, s[start:])
}

// missingTokens are spellings of a missing value: in a first row they are
// no evidence of a header, so that a first data row with a gap is refused
// rather than silently skipped.
var missingTokens = map[string]bool{"na": true, "n/a": true, "#n/a": true, "null": true, "none": true, "nil": true,
	"-": true, "?": true, ".": true, "-nan": true, "+nan": true, "missing": true}

// isHeader reports whether a first row is a header: one non-empty field
// that is not a number is enough. Empty fields, "NaN" or "Inf" and the
// spellings of a missing value ("NA", "null", "-", missingTokens) do not
// count, so that a first data row with a missing or non-finite value is
// rejected rather than silently skipped as a header.
func isHeader(fields []string) bool {
	for _, f := range fields {
		if f == "" || missingTokens[strings.ToLower(f)] {
			continue
		}
		if _, err := strconv.ParseFloat(f, 64); err != nil && !errors.Is(err, strconv.ErrRange) {
			return true
		}
	}
	return false
}

// otherDelimiterRow reports a first row that is numbers separated by
// another delimiter than delim, or written with decimal commas: data read
// the wrong way, not a header, so that the error names its first line.
func otherDelimiterRow(fields []string, delim string) bool {
	allComma := true
	for _, f := range fields {
		allComma = allComma && decimalComma(f)
	}
	if allComma {
		return true
	}
	if len(fields) != 1 {
		return false
	}
	for _, seen := range []string{";", "\t", ","} {
		parts := strings.Split(fields[0], seen)
		if seen == delim || len(parts) < 2 {
			continue
		}
		numbers := true
		for _, p := range parts {
			_, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
			numbers = numbers && err == nil
		}
		if numbers {
			return true
		}
	}
	return false
}

// decimalComma reports a number written with a decimal comma ("-1,303").
func decimalComma(f string) bool {
	if strings.Count(f, ",") != 1 {
		return false
	}
	_, err := strconv.ParseFloat(strings.Replace(f, ",", ".", 1), 64)
	return err == nil
}

// WriteCSV writes x, rows x cols row-major, one row per line, each value in
// the shortest form that reads back as the same float32. header, if not
// empty, must have cols names; none may hold a comma, a double quote or a
// line break, and at least one must be a non-empty non-number, so that
// ReadCSV recognises the line as a header. Non-finite values are written as
// NaN, +Inf, -Inf (ReadCSV refuses them).
func WriteCSV(w io.Writer, x []float32, rows, cols int, header []string) error {
	if err := checkMatrix(len(x), rows, cols); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	bw := bufio.NewWriterSize(w, chunkBytes)
	if len(header) > 0 {
		if len(header) != cols {
			return fmt.Errorf("write csv: %d header names for %d columns", len(header), cols)
		}
		for _, h := range header {
			if strings.ContainsAny(h, ",\"\r\n") {
				return fmt.Errorf("write csv: header name %s holds a comma, quote or line break", quote(h))
			}
		}
		trimmed := make([]string, len(header))
		for i, h := range header {
			trimmed[i] = csvField(h)
		}
		if !isHeader(trimmed) {
			return fmt.Errorf("write csv: header %s has no name that is not a number: it would read back as data", quote(strings.Join(header, ",")))
		}
		bw.WriteString(strings.Join(header, ","))
		bw.WriteByte('\n')
	}
	var num []byte
	for i := range rows {
		for j := range cols {
			if j > 0 {
				bw.WriteByte(',')
			}
			num = strconv.AppendFloat(num[:0], float64(x[i*cols+j]), 'g', -1, 32)
			bw.Write(num)
		}
		bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}
