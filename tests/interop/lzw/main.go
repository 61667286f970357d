// Interop peer for pyro_core's LZW, written for pyro-core's tests; Go standard library only.
// Owns: running Go's compress/lzw exactly as hashicorp/memberlist configures it (lzw.LSB, literal
// width 8; one Write then Close to compress, read to EOF to decompress) over a batch of inputs,
// so tests/memberlist/test_lzw.py can compare many cases per process start.
//
// Usage (reads stdin, writes stdout):
//
//	lzw compress      each input record -> a result record holding Go's compressed bytes
//	lzw decompress    each input record -> a result record holding the decompressed bytes, or
//	                  the reader's error text
//
// Input: records [u32 big-endian length][bytes] until end of input.
// Output: one record per input, in order: [status u8: 0 ok, 1 error][u32 big-endian length][bytes].
//
// Build (GOPATH mode, no module, no network):
//
//	GO111MODULE=off GOCACHE=$(mktemp -d) go build -o lzw ./tests/interop/lzw
package main

import (
	"bufio"
	"bytes"
	"compress/lzw"
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

func compress(in []byte) ([]byte, error) {
	var buf bytes.Buffer
	w := lzw.NewWriter(&buf, lzw.LSB, 8)
	if _, err := w.Write(in); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decompress(in []byte) ([]byte, error) {
	r := lzw.NewReader(bytes.NewReader(in), lzw.LSB, 8)
	defer r.Close()
	return io.ReadAll(r)
}

func main() {
	if len(os.Args) != 2 || (os.Args[1] != "compress" && os.Args[1] != "decompress") {
		fmt.Fprintln(os.Stderr, "usage: lzw compress|decompress < records > results")
		os.Exit(2)
	}
	op := compress
	if os.Args[1] == "decompress" {
		op = decompress
	}
	in := bufio.NewReader(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	var header [4]byte
	for {
		if _, err := io.ReadFull(in, header[:]); err == io.EOF {
			return
		} else if err != nil {
			fmt.Fprintln(os.Stderr, "reading a record length:", err)
			os.Exit(1)
		}
		record := make([]byte, binary.BigEndian.Uint32(header[:]))
		if _, err := io.ReadFull(in, record); err != nil {
			fmt.Fprintln(os.Stderr, "reading a record:", err)
			os.Exit(1)
		}
		result, err := op(record)
		status := byte(0)
		if err != nil {
			status, result = 1, []byte(err.Error())
		}
		binary.BigEndian.PutUint32(header[:], uint32(len(result)))
		out.WriteByte(status)
		out.Write(header[:])
		out.Write(result)
	}
}
