package batch

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// csvRecord is one record as a reader returns it: its first line and its
// fields, or the reason it is not valid CSV.
type csvRecord struct {
	line   int
	fields []string
	err    string
}

// readEncodingCSV reads text with encoding/csv, the reference.
func readEncodingCSV(text string) []csvRecord {
	reader := csv.NewReader(strings.NewReader(text))
	reader.FieldsPerRecord = -1
	return collectRecords(func() ([]string, int, error) {
		fields, err := reader.Read()
		if err != nil {
			return nil, 0, err
		}
		line, _ := reader.FieldPos(0)
		return fields, line, nil
	})
}

// readFastCSV reads text with csvReader.read.
func readFastCSV(text string) []csvRecord {
	c := &csvReader{in: bufio.NewReaderSize(strings.NewReader(text), 16)} // small: long lines span reads
	return collectRecords(func() ([]string, int, error) {
		fields, line, err := c.read()
		var record []string
		for _, field := range fields {
			record = append(record, string(field))
		}
		return record, line, err
	})
}

// collectRecords calls read until io.EOF.
func collectRecords(read func() (fields []string, line int, err error)) []csvRecord {
	var records []csvRecord
	for {
		fields, line, err := read()
		if errors.Is(err, io.EOF) {
			return records
		}
		var parseErr *csv.ParseError
		if errors.As(err, &parseErr) {
			records = append(records, csvRecord{line: parseErr.StartLine, err: parseErr.Err.Error()})
			continue
		}
		if err != nil {
			return append(records, csvRecord{err: err.Error()})
		}
		records = append(records, csvRecord{line: line, fields: fields})
	}
}

var csvSeeds = []string{
	"a,b\n1,2\n",
	"a,b\r\n1,2\r\n\r\n3,4",
	"id,x\n\"r,1\",2\n\"say \"\"hi\"\"\",3\n",
	"id,x\n\"two\nlines\",1\n4,5\n",
	"id,x\n\"two\r\nlines\r\n\",1\r\n",
	"id,x\nab\"c,1\n\"d\",2\n",
	"id,x\n\"a\"b,\"c\nd\",e\n",
	"id,x\n\"never closed,1\n2,3\n",
	" \"a\",1\n",
	"\n\n\na\n\n",
	"a,b\n1,2\r",
	"\"a\"\"\",\"\"\n,\n",
	"x\n" + strings.Repeat("9", 40) + "\n",
	"\"a\",\"b\"\r\r\n1,2\n", // a CRLF file converted to CRLF again
	"\"a\",b\r\r\n",
	",\"x\"\r\r",
	"\"open\n1\n2\n3\n\"\",\"\"\nend\"\n4\n",
}

func TestCSVReaderReadsAsEncodingCSV(t *testing.T) {
	for i, text := range csvSeeds {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			require.Equal(t, readEncodingCSV(text), readFastCSV(text), "%q", text)
		})
	}
}

func FuzzCSVReader(f *testing.F) {
	for _, text := range csvSeeds {
		f.Add(text)
	}
	f.Fuzz(func(t *testing.T, text string) {
		require.Equal(t, readEncodingCSV(text), readFastCSV(text), "%q", text)
	})
}

func TestCSVRowsKeepTheirLinesAcrossQuotedLineBreaks(t *testing.T) {
	rows := readAll(t, "csv", "id,a,b\n\"x\ny\",1,2\n\"z\",1,\"2\"\nw,3,4\n", 2)
	require.Len(t, rows, 3)
	require.Equal(t, []int{2, 4, 5}, []int{rows[0].Line, rows[1].Line, rows[2].Line})
	require.JSONEq(t, `"x\ny"`, string(rows[0].ID))
	require.Equal(t, []float64{1, 2}, rows[1].Features)
	require.NoError(t, rows[2].Err)
}
