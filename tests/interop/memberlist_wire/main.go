// Interop peer for pyro_core.memberlist.wire, written for pyro-core's tests.
// Owns: Go-side copies of memberlist's wire structs (same field names, types and codec tags as
// memberlist's net.go), encoded and decoded with github.com/hashicorp/go-msgpack/codec's
// MsgpackHandle exactly as memberlist's util.go encode()/decode() do, and re-enactments of
// memberlist's packet pipeline (compress → CRC → AES-GCM → label; and back) and stream framing
// (sendLocalState / rawSendMsgStream / readStream / readRemoteState), using memberlist's exported
// Keyring for key order, Go's compress/lzw, hash/crc32 and crypto/cipher. memberlist's encoders are
// unexported, so the structs are restated here; tests/memberlist/test_wire.py drives this program.
//
// Usage: memberlist_wire <mode>, one JSON request per stdin line, one JSON answer per stdout line.
//
//	structs       {"kind", "value", "py": hex}   -> {"go": hex (Go's encoding of value),
//	                                                 "decoded": value (Go's decoding of py), "err"}
//	pack          {"msgs": [{"type", "kind", "value"}], "label", "keys": [b64], "crc", "compress", "vsn"}
//	                                              -> {"packet": hex}
//	unpack        {"packet": hex, "label", "keys"} -> {"msgs": [{"type", "kind", "value"}], "err"}
//	stream-pack   {"msg": {"type", "kind", "value"}, "nodes": [...], "user": b64, "label", "keys",
//	               "compress", "vsn", "label_header"}  -> {"stream": hex}
//	stream-unpack {"stream": hex, "label", "keys", "label_header"}
//	                                              -> {"msg": {...}, "nodes": [...], "user": b64, "err"}
//
// Keys: the first is the primary (memberlist.NewKeyring(rest, first)). []byte values are base64
// in JSON (null = nil slice).
//
// Build (GOPATH mode, Debian packages golang-go and golang-github-hashicorp-memberlist-dev, which
// pulls in golang-github-hashicorp-go-msgpack-dev 0.5.5):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off go build -o memberlist_wire .
package main

import (
	"bufio"
	"bytes"
	"compress/lzw"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"

	"github.com/hashicorp/go-msgpack/codec"
	"github.com/hashicorp/memberlist"
)

// Message type bytes (memberlist net.go).
const (
	pingMsg         = 0
	indirectPingMsg = 1
	ackRespMsg      = 2
	suspectMsg      = 3
	aliveMsg        = 4
	deadMsg         = 5
	pushPullMsg     = 6
	compoundMsg     = 7
	userMsg         = 8
	compressMsg     = 9
	encryptMsg      = 10
	nackRespMsg     = 11
	hasCrcMsg       = 12
	errMsg          = 13
	hasLabelMsg     = 244
)

// The structs, restated field for field from memberlist's net.go.
type ping struct {
	SeqNo      uint32
	Node       string
	SourceAddr []byte `codec:",omitempty"`
	SourcePort uint16 `codec:",omitempty"`
	SourceNode string `codec:",omitempty"`
}

type indirectPingReq struct {
	SeqNo      uint32
	Target     []byte
	Port       uint16
	Node       string
	Nack       bool
	SourceAddr []byte `codec:",omitempty"`
	SourcePort uint16 `codec:",omitempty"`
	SourceNode string `codec:",omitempty"`
}

type ackResp struct {
	SeqNo   uint32
	Payload []byte
}

type nackResp struct {
	SeqNo uint32
}

type errResp struct {
	Error string
}

type suspect struct {
	Incarnation uint32
	Node        string
	From        string
}

type alive struct {
	Incarnation uint32
	Node        string
	Addr        []byte
	Port        uint16
	Meta        []byte
	Vsn         []uint8
}

type dead struct {
	Incarnation uint32
	Node        string
	From        string
}

type pushPullHeader struct {
	Nodes        int
	UserStateLen int
	Join         bool
}

type userMsgHeader struct {
	UserMsgLen int
}

type pushNodeState struct {
	Name        string
	Addr        []byte
	Port        uint16
	Meta        []byte
	Incarnation uint32
	State       memberlist.NodeStateType
	Vsn         []uint8
}

type compress struct {
	Algo uint8
	Buf  []byte
}

func newStruct(kind string) (interface{}, error) {
	switch kind {
	case "ping":
		return &ping{}, nil
	case "indirectPingReq":
		return &indirectPingReq{}, nil
	case "ackResp":
		return &ackResp{}, nil
	case "nackResp":
		return &nackResp{}, nil
	case "errResp":
		return &errResp{}, nil
	case "suspect":
		return &suspect{}, nil
	case "alive":
		return &alive{}, nil
	case "dead":
		return &dead{}, nil
	case "pushPullHeader":
		return &pushPullHeader{}, nil
	case "userMsgHeader":
		return &userMsgHeader{}, nil
	case "pushNodeState":
		return &pushNodeState{}, nil
	case "compress":
		return &compress{}, nil
	}
	return nil, fmt.Errorf("unknown kind %q", kind)
}

var kindOfType = map[byte]string{
	pingMsg: "ping", indirectPingMsg: "indirectPingReq", ackRespMsg: "ackResp", nackRespMsg: "nackResp",
	errMsg: "errResp", suspectMsg: "suspect", aliveMsg: "alive", deadMsg: "dead",
}

// encode and decode as memberlist's util.go does.
func encodeBody(in interface{}) ([]byte, error) {
	buf := bytes.NewBuffer(nil)
	hd := codec.MsgpackHandle{}
	err := codec.NewEncoder(buf, &hd).Encode(in)
	return buf.Bytes(), err
}

func encode(msgType byte, in interface{}) ([]byte, error) {
	body, err := encodeBody(in)
	return append([]byte{msgType}, body...), err
}

func decode(buf []byte, out interface{}) error {
	hd := codec.MsgpackHandle{}
	return codec.NewDecoder(bytes.NewReader(buf), &hd).Decode(out)
}

// -- JSON plumbing ------------------------------------------------------------------------------------

type jsonMsg struct {
	Type  int             `json:"type"`
	Kind  string          `json:"kind"`
	Value json.RawMessage `json:"value"`
}

type request struct {
	Kind        string          `json:"kind"`
	Value       json.RawMessage `json:"value"`
	Py          string          `json:"py"`
	Msgs        []jsonMsg       `json:"msgs"`
	Msg         *jsonMsg        `json:"msg"`
	Nodes       []pushNodeState `json:"nodes"`
	User        []byte          `json:"user"`
	Label       string          `json:"label"`
	Keys        [][]byte        `json:"keys"`
	Crc         bool            `json:"crc"`
	Compress    bool            `json:"compress"`
	Vsn         int             `json:"vsn"`
	Packet      string          `json:"packet"`
	Stream      string          `json:"stream"`
	LabelHeader bool            `json:"label_header"`
}

type outMsg struct {
	Type  int         `json:"type"`
	Kind  string      `json:"kind"`
	Value interface{} `json:"value"`
}

type answer struct {
	Go      string          `json:"go,omitempty"`
	Decoded interface{}     `json:"decoded,omitempty"`
	Packet  string          `json:"packet,omitempty"`
	Stream  string          `json:"stream,omitempty"`
	Msgs    []outMsg        `json:"msgs,omitempty"`
	Msg     *outMsg         `json:"msg,omitempty"`
	Nodes   []pushNodeState `json:"nodes,omitempty"`
	User    []byte          `json:"user,omitempty"`
	Err     string          `json:"err,omitempty"`
}

func keyring(keys [][]byte) (*memberlist.Keyring, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	return memberlist.NewKeyring(keys[1:], keys[0])
}

func buildMessage(m jsonMsg) ([]byte, error) {
	if m.Type == userMsg {
		var payload []byte
		if err := json.Unmarshal(m.Value, &payload); err != nil {
			return nil, err
		}
		return append([]byte{userMsg}, payload...), nil
	}
	s, err := newStruct(m.Kind)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(m.Value, s); err != nil {
		return nil, err
	}
	return encode(byte(m.Type), s)
}

// -- encryption (memberlist security.go's envelope, restated) -----------------------------------------

func encryptedLength(vsn int, inp int) int {
	if vsn >= 1 {
		return 1 + 12 + inp + 16
	}
	return 1 + 12 + inp + (16 - inp%16) + 16
}

func encryptPayload(vsn int, key []byte, msg []byte, data []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, 12)
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return nil, err
	}
	src := msg
	if vsn == 0 {
		more := 16 - len(msg)%16
		src = append(append([]byte{}, msg...), bytes.Repeat([]byte{byte(more)}, more)...)
	}
	out := append([]byte{byte(vsn)}, nonce...)
	return append(out, gcm.Seal(nil, nonce, src, data)...), nil
}

func decryptPayload(keys [][]byte, msg []byte, data []byte) ([]byte, error) {
	if len(msg) == 0 {
		return nil, errors.New("cannot decrypt empty payload")
	}
	vsn := int(msg[0])
	if vsn > 1 {
		return nil, fmt.Errorf("unsupported encryption version %d", vsn)
	}
	if len(msg) < encryptedLength(vsn, 0) {
		return nil, fmt.Errorf("payload is too small to decrypt: %d", len(msg))
	}
	for _, key := range keys {
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		gcm, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		plain, err := gcm.Open(nil, msg[1:13], msg[13:], data)
		if err == nil {
			if vsn == 0 {
				plain = plain[:len(plain)-int(plain[len(plain)-1])]
			}
			return plain, nil
		}
	}
	return nil, errors.New("no installed keys could decrypt the message")
}

// -- compression (memberlist util.go) -----------------------------------------------------------------

func compressPayload(inp []byte) ([]byte, error) {
	var buf bytes.Buffer
	w := lzw.NewWriter(&buf, lzw.LSB, 8)
	if _, err := w.Write(inp); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return encode(compressMsg, &compress{Algo: 0, Buf: buf.Bytes()})
}

func decompressBuffer(c *compress) ([]byte, error) {
	if c.Algo != 0 {
		return nil, fmt.Errorf("cannot decompress unknown algorithm %d", c.Algo)
	}
	r := lzw.NewReader(bytes.NewReader(c.Buf), lzw.LSB, 8)
	defer r.Close()
	var b bytes.Buffer
	if _, err := io.Copy(&b, r); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func labelHeader(label string) []byte {
	if label == "" {
		return nil
	}
	return append([]byte{hasLabelMsg, byte(len(label))}, label...)
}

// -- packets ------------------------------------------------------------------------------------------

func pack(req request) answer {
	var parts [][]byte
	for _, m := range req.Msgs {
		b, err := buildMessage(m)
		if err != nil {
			return answer{Err: err.Error()}
		}
		parts = append(parts, b)
	}
	var msg []byte
	if len(parts) == 1 {
		msg = parts[0]
	} else { // makeCompoundMessage
		buf := bytes.NewBuffer(nil)
		buf.WriteByte(compoundMsg)
		buf.WriteByte(uint8(len(parts)))
		for _, p := range parts {
			_ = binary.Write(buf, binary.BigEndian, uint16(len(p)))
		}
		for _, p := range parts {
			buf.Write(p)
		}
		msg = buf.Bytes()
	}
	// rawSendMsgPacket
	if req.Compress {
		c, err := compressPayload(msg)
		if err != nil {
			return answer{Err: err.Error()}
		}
		if len(c) < len(msg) {
			msg = c
		}
	}
	if req.Crc {
		header := make([]byte, 5, 5+len(msg))
		header[0] = hasCrcMsg
		binary.BigEndian.PutUint32(header[1:], crc32.ChecksumIEEE(msg))
		msg = append(header, msg...)
	}
	ring, err := keyring(req.Keys)
	if err != nil {
		return answer{Err: err.Error()}
	}
	if ring != nil {
		msg, err = encryptPayload(req.Vsn, ring.GetPrimaryKey(), msg, []byte(req.Label))
		if err != nil {
			return answer{Err: err.Error()}
		}
	}
	return answer{Packet: hex.EncodeToString(append(labelHeader(req.Label), msg...))}
}

// handleCommand, restated: collects messages instead of acting on them.
func handleCommand(buf []byte, out *[]outMsg) error {
	if len(buf) < 1 {
		return errors.New("missing message type byte")
	}
	msgType, buf := buf[0], buf[1:]
	switch msgType {
	case compoundMsg:
		if len(buf) < 1 {
			return errors.New("missing compound length byte")
		}
		n := int(buf[0])
		buf = buf[1:]
		if len(buf) < n*2 {
			return errors.New("truncated len slice")
		}
		lengths := make([]uint16, n)
		for i := 0; i < n; i++ {
			lengths[i] = binary.BigEndian.Uint16(buf[i*2 : i*2+2])
		}
		buf = buf[n*2:]
		for _, l := range lengths {
			if len(buf) < int(l) {
				break // truncated tail: keep what was complete
			}
			if err := handleCommand(buf[:l], out); err != nil {
				return err
			}
			buf = buf[l:]
		}
		return nil
	case compressMsg:
		var c compress
		if err := decode(buf, &c); err != nil {
			return err
		}
		payload, err := decompressBuffer(&c)
		if err != nil {
			return err
		}
		return handleCommand(payload, out)
	case userMsg:
		*out = append(*out, outMsg{Type: userMsg, Kind: "user", Value: buf})
		return nil
	}
	kind, ok := kindOfType[msgType]
	if !ok || msgType == errMsg {
		return fmt.Errorf("msg type (%d) not supported", msgType)
	}
	s, _ := newStruct(kind)
	if err := decode(buf, s); err != nil {
		return err
	}
	*out = append(*out, outMsg{Type: int(msgType), Kind: kind, Value: s})
	return nil
}

func removeLabel(buf []byte) ([]byte, string, error) {
	if len(buf) == 0 || buf[0] != hasLabelMsg {
		return buf, "", nil
	}
	if len(buf) < 2 {
		return nil, "", errors.New("cannot decode label; packet has been truncated")
	}
	size := int(buf[1])
	if size < 1 {
		return nil, "", errors.New("label header cannot be empty when present")
	}
	if len(buf) < 2+size {
		return nil, "", errors.New("cannot decode label; packet has been truncated")
	}
	return buf[2+size:], string(buf[2 : 2+size]), nil
}

func unpack(req request) answer {
	buf, err := hex.DecodeString(req.Packet)
	if err != nil {
		return answer{Err: err.Error()}
	}
	buf, label, err := removeLabel(buf)
	if err != nil {
		return answer{Err: err.Error()}
	}
	if label != req.Label {
		return answer{Err: fmt.Sprintf("unacceptable label %q", label)}
	}
	ring, err := keyring(req.Keys)
	if err != nil {
		return answer{Err: err.Error()}
	}
	if ring != nil {
		buf, err = decryptPayload(ring.GetKeys(), buf, []byte(label))
		if err != nil {
			return answer{Err: err.Error()}
		}
	}
	if len(buf) >= 5 && buf[0] == hasCrcMsg {
		if crc32.ChecksumIEEE(buf[5:]) != binary.BigEndian.Uint32(buf[1:5]) {
			return answer{Err: "invalid checksum"}
		}
		buf = buf[5:]
	}
	msgs := []outMsg{}
	if err := handleCommand(buf, &msgs); err != nil {
		return answer{Err: err.Error()}
	}
	return answer{Msgs: msgs}
}

// -- streams ------------------------------------------------------------------------------------------

func streamPack(req request) answer {
	var send []byte
	var err error
	if req.Msg.Type == pushPullMsg { // sendLocalState
		buf := bytes.NewBuffer(nil)
		hd := codec.MsgpackHandle{}
		enc := codec.NewEncoder(buf, &hd)
		buf.WriteByte(pushPullMsg)
		header := pushPullHeader{Nodes: len(req.Nodes), UserStateLen: len(req.User), Join: false}
		if req.Msg.Value != nil {
			if err := json.Unmarshal(req.Msg.Value, &header.Join); err != nil {
				return answer{Err: err.Error()}
			}
		}
		if err := enc.Encode(&header); err != nil {
			return answer{Err: err.Error()}
		}
		for i := range req.Nodes {
			if err := enc.Encode(&req.Nodes[i]); err != nil {
				return answer{Err: err.Error()}
			}
		}
		buf.Write(req.User)
		send = buf.Bytes()
	} else if req.Msg.Type == userMsg { // sendUserMsg
		buf := bytes.NewBuffer(nil)
		buf.WriteByte(userMsg)
		hd := codec.MsgpackHandle{}
		if err := codec.NewEncoder(buf, &hd).Encode(&userMsgHeader{UserMsgLen: len(req.User)}); err != nil {
			return answer{Err: err.Error()}
		}
		buf.Write(req.User)
		send = buf.Bytes()
	} else if send, err = buildMessage(*req.Msg); err != nil {
		return answer{Err: err.Error()}
	}
	// rawSendMsgStream
	if req.Compress {
		if send, err = compressPayload(send); err != nil {
			return answer{Err: err.Error()}
		}
	}
	ring, err := keyring(req.Keys)
	if err != nil {
		return answer{Err: err.Error()}
	}
	if ring != nil { // encryptLocalState
		prefix := make([]byte, 5)
		prefix[0] = encryptMsg
		binary.BigEndian.PutUint32(prefix[1:], uint32(encryptedLength(req.Vsn, len(send))))
		aad := append(append([]byte{}, prefix...), req.Label...)
		sealed, err := encryptPayload(req.Vsn, ring.GetPrimaryKey(), send, aad)
		if err != nil {
			return answer{Err: err.Error()}
		}
		send = append(prefix, sealed...)
	}
	if req.LabelHeader { // labelWrappedTransport.DialTimeout writes the header first
		send = append(labelHeader(req.Label), send...)
	}
	return answer{Stream: hex.EncodeToString(send)}
}

func streamUnpack(req request) answer {
	raw, err := hex.DecodeString(req.Stream)
	if err != nil {
		return answer{Err: err.Error()}
	}
	label := req.Label
	if req.LabelHeader { // RemoveLabelHeaderFromStream
		var got string
		raw, got, err = removeLabel(raw)
		if err != nil {
			return answer{Err: err.Error()}
		}
		if got != label {
			return answer{Err: fmt.Sprintf("unacceptable label %q", got)}
		}
	}
	ring, err := keyring(req.Keys)
	if err != nil {
		return answer{Err: err.Error()}
	}
	// readStream
	var bufConn io.Reader = bufio.NewReader(bytes.NewReader(raw))
	first := [1]byte{}
	if _, err := io.ReadFull(bufConn, first[:]); err != nil {
		return answer{Err: err.Error()}
	}
	msgType := first[0]
	if msgType == encryptMsg {
		if ring == nil {
			return answer{Err: "remote state is encrypted and encryption is not configured"}
		}
		cipherText := bytes.NewBuffer([]byte{encryptMsg})
		if _, err := io.CopyN(cipherText, bufConn, 4); err != nil {
			return answer{Err: err.Error()}
		}
		more := binary.BigEndian.Uint32(cipherText.Bytes()[1:5])
		if _, err := io.CopyN(cipherText, bufConn, int64(more)); err != nil {
			return answer{Err: err.Error()}
		}
		aad := append(append([]byte{}, cipherText.Bytes()[:5]...), label...)
		plain, err := decryptPayload(ring.GetKeys(), cipherText.Bytes()[5:], aad)
		if err != nil {
			return answer{Err: err.Error()}
		}
		msgType = plain[0]
		bufConn = bytes.NewReader(plain[1:])
	} else if ring != nil {
		return answer{Err: "encryption is configured but remote state is not encrypted"}
	}
	hd := codec.MsgpackHandle{}
	dec := codec.NewDecoder(bufConn, &hd)
	if msgType == compressMsg {
		var c compress
		if err := dec.Decode(&c); err != nil {
			return answer{Err: err.Error()}
		}
		decomp, err := decompressBuffer(&c)
		if err != nil {
			return answer{Err: err.Error()}
		}
		if len(decomp) == 0 {
			return answer{Err: "decompressed message is empty"}
		}
		msgType = decomp[0]
		bufConn = bytes.NewReader(decomp[1:])
		dec = codec.NewDecoder(bufConn, &hd)
	}
	switch msgType {
	case pushPullMsg: // readRemoteState
		var header pushPullHeader
		if err := dec.Decode(&header); err != nil {
			return answer{Err: err.Error()}
		}
		nodes := make([]pushNodeState, header.Nodes)
		for i := range nodes {
			if err := dec.Decode(&nodes[i]); err != nil {
				return answer{Err: err.Error()}
			}
		}
		user := make([]byte, header.UserStateLen)
		if header.UserStateLen > 0 {
			if _, err := io.ReadAtLeast(bufConn, user, header.UserStateLen); err != nil {
				return answer{Err: err.Error()}
			}
		}
		return answer{Msg: &outMsg{Type: pushPullMsg, Kind: "pushPullHeader", Value: header}, Nodes: nodes, User: user}
	case userMsg: // readUserMsg
		var header userMsgHeader
		if err := dec.Decode(&header); err != nil {
			return answer{Err: err.Error()}
		}
		user := make([]byte, header.UserMsgLen)
		if header.UserMsgLen > 0 {
			if _, err := io.ReadAtLeast(bufConn, user, header.UserMsgLen); err != nil {
				return answer{Err: err.Error()}
			}
		}
		return answer{Msg: &outMsg{Type: userMsg, Kind: "userMsgHeader", Value: header}, User: user}
	case pingMsg, ackRespMsg, errMsg:
		s, _ := newStruct(kindOfType[msgType])
		if err := dec.Decode(s); err != nil {
			return answer{Err: err.Error()}
		}
		return answer{Msg: &outMsg{Type: int(msgType), Kind: kindOfType[msgType], Value: s}}
	}
	return answer{Err: fmt.Sprintf("received invalid msgType (%d)", msgType)}
}

// -- structs ------------------------------------------------------------------------------------------

func structs(req request) answer {
	var ans answer
	s, err := newStruct(req.Kind)
	if err != nil {
		return answer{Err: err.Error()}
	}
	if err := json.Unmarshal(req.Value, s); err != nil {
		return answer{Err: err.Error()}
	}
	out, err := encodeBody(s)
	if err != nil {
		return answer{Err: err.Error()}
	}
	ans.Go = hex.EncodeToString(out)
	py, err := hex.DecodeString(req.Py)
	if err != nil {
		return answer{Err: err.Error()}
	}
	back, _ := newStruct(req.Kind)
	if err := decode(py, back); err != nil {
		ans.Err = err.Error()
	} else {
		ans.Decoded = back
	}
	return ans
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: memberlist_wire structs|pack|unpack|stream-pack|stream-unpack")
		os.Exit(2)
	}
	modes := map[string]func(request) answer{
		"structs": structs, "pack": pack, "unpack": unpack,
		"stream-pack": streamPack, "stream-unpack": streamUnpack,
	}
	run, ok := modes[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<28)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			fmt.Fprintln(os.Stderr, "bad request:", err)
			os.Exit(1)
		}
		if err := enc.Encode(run(req)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
