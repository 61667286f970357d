// Interop peer for pyro_core's dskit codecs, written for pyro-core's tests (no dskit dependency).
// Owns: a Go-side ring.Desc / memberlist.KeyValuePair schema built at run time with descriptorpb +
// protodesc + dynamicpb, from the field numbers of dskit's ring/ring.proto and
// kv/memberlist/kv.proto, and a JSON <-> wire bridge that tests/ring/test_dskit_codec.py drives.
//
// Usage (reads stdin, writes stdout):
//
//	ringdesc encode           JSON ring  -> snappy block of the protobuf ring.Desc (dskit "ringDesc")
//	ringdesc encode-unpacked  same, with tokens written unpacked (one varint per field occurrence)
//	ringdesc decode           snappy block of a ring.Desc -> JSON ring
//	ringdesc kv-encode        JSON KeyValuePair -> protobuf memberlist.KeyValuePair
//	ringdesc kv-decode        protobuf memberlist.KeyValuePair -> JSON KeyValuePair
//
// JSON ring: {"ingesters": {"<key>": {"addr": "", "timestamp": 0, "state": 0, "tokens": [],
// "zone": "", "registered_timestamp": 0, "id": "", "read_only_updated_timestamp": 0,
// "read_only": false, "versions": {"<uint64>": <uint64>}}}}
//
// Build (GOPATH mode, Debian packages golang-go, golang-google-protobuf-dev,
// golang-github-golang-snappy-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off go build -o ringdesc ./tests/interop/ringdesc
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/golang/snappy"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

type instanceJSON struct {
	Addr                     string            `json:"addr"`
	Timestamp                int64             `json:"timestamp"`
	State                    int32             `json:"state"`
	Tokens                   []uint32          `json:"tokens"`
	Zone                     string            `json:"zone"`
	RegisteredTimestamp      int64             `json:"registered_timestamp"`
	ID                       string            `json:"id"`
	ReadOnlyUpdatedTimestamp int64             `json:"read_only_updated_timestamp"`
	ReadOnly                 bool              `json:"read_only"`
	Versions                 map[uint64]uint64 `json:"versions"`
}

type descJSON struct {
	Ingesters map[string]instanceJSON `json:"ingesters"`
}

type kvJSON struct {
	Key              string `json:"key"`
	Value            []byte `json:"value"` // base64 in JSON
	Codec            string `json:"codec"`
	Deleted          bool   `json:"deleted"`
	UpdateTimeMillis int64  `json:"update_time_millis"`
}

type fieldType = descriptorpb.FieldDescriptorProto_Type

const (
	tString  = descriptorpb.FieldDescriptorProto_TYPE_STRING
	tBytes   = descriptorpb.FieldDescriptorProto_TYPE_BYTES
	tInt64   = descriptorpb.FieldDescriptorProto_TYPE_INT64
	tUint32  = descriptorpb.FieldDescriptorProto_TYPE_UINT32
	tUint64  = descriptorpb.FieldDescriptorProto_TYPE_UINT64
	tBool    = descriptorpb.FieldDescriptorProto_TYPE_BOOL
	tEnum    = descriptorpb.FieldDescriptorProto_TYPE_ENUM
	tMessage = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
)

func field(name string, number int32, typ fieldType, repeated bool, typeName string) *descriptorpb.FieldDescriptorProto {
	label := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
	if repeated {
		label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
	}
	f := &descriptorpb.FieldDescriptorProto{
		Name:   proto.String(name),
		Number: proto.Int32(number),
		Type:   typ.Enum(),
		Label:  label.Enum(),
	}
	if typeName != "" {
		f.TypeName = proto.String(typeName)
	}
	return f
}

func mapEntry(name string, key, value fieldType, valueTypeName string) *descriptorpb.DescriptorProto {
	return &descriptorpb.DescriptorProto{
		Name:    proto.String(name),
		Field:   []*descriptorpb.FieldDescriptorProto{field("key", 1, key, false, ""), field("value", 2, value, false, valueTypeName)},
		Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
	}
}

func buildFile(fdp *descriptorpb.FileDescriptorProto) protoreflect.FileDescriptor {
	fd, err := protodesc.NewFile(fdp, new(protoregistry.Files))
	if err != nil {
		fail("building descriptor %s: %v", fdp.GetName(), err)
	}
	return fd
}

// ringFile: dskit ring/ring.proto, field numbers as in dskit (4, 5 and Desc's 2 are reserved).
func ringFile(packedTokens bool) protoreflect.FileDescriptor {
	tokens := field("tokens", 6, tUint32, true, "")
	if !packedTokens {
		tokens.Options = &descriptorpb.FieldOptions{Packed: proto.Bool(false)}
	}
	states := []string{"ACTIVE", "LEAVING", "PENDING", "JOINING", "LEFT"}
	enum := &descriptorpb.EnumDescriptorProto{Name: proto.String("InstanceState")}
	for i, name := range states {
		enum.Value = append(enum.Value, &descriptorpb.EnumValueDescriptorProto{Name: proto.String(name), Number: proto.Int32(int32(i))})
	}
	return buildFile(&descriptorpb.FileDescriptorProto{
		Name:    proto.String("ring.proto"),
		Package: proto.String("ring"),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{
				Name:       proto.String("Desc"),
				Field:      []*descriptorpb.FieldDescriptorProto{field("ingesters", 1, tMessage, true, ".ring.Desc.IngestersEntry")},
				NestedType: []*descriptorpb.DescriptorProto{mapEntry("IngestersEntry", tString, tMessage, ".ring.InstanceDesc")},
			},
			{
				Name: proto.String("InstanceDesc"),
				Field: []*descriptorpb.FieldDescriptorProto{
					field("addr", 1, tString, false, ""),
					field("timestamp", 2, tInt64, false, ""),
					field("state", 3, tEnum, false, ".ring.InstanceState"),
					tokens,
					field("zone", 7, tString, false, ""),
					field("registered_timestamp", 8, tInt64, false, ""),
					field("id", 9, tString, false, ""),
					field("read_only_updated_timestamp", 10, tInt64, false, ""),
					field("read_only", 11, tBool, false, ""),
					field("versions", 12, tMessage, true, ".ring.InstanceDesc.VersionsEntry"),
				},
				NestedType: []*descriptorpb.DescriptorProto{mapEntry("VersionsEntry", tUint64, tUint64, "")},
			},
		},
		EnumType: []*descriptorpb.EnumDescriptorProto{enum},
	})
}

func kvFile() protoreflect.FileDescriptor {
	return buildFile(&descriptorpb.FileDescriptorProto{
		Name:    proto.String("kv.proto"),
		Package: proto.String("memberlist"),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("KeyValuePair"),
			Field: []*descriptorpb.FieldDescriptorProto{
				field("key", 1, tString, false, ""),
				field("value", 2, tBytes, false, ""),
				field("codec", 3, tString, false, ""),
				field("deleted", 4, tBool, false, ""),
				field("update_time_millis", 5, tInt64, false, ""),
			},
		}},
	})
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "ringdesc: "+format+"\n", args...)
	os.Exit(1)
}

func readStdin() []byte {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	return data
}

func writeJSON(v interface{}) {
	out, err := json.Marshal(v)
	if err != nil {
		fail("json: %v", err)
	}
	os.Stdout.Write(out)
}

func encodeRing(packed bool) {
	var in descJSON
	if err := json.Unmarshal(readStdin(), &in); err != nil {
		fail("json input: %v", err)
	}
	fd := ringFile(packed)
	descMD := fd.Messages().ByName("Desc")
	instMD := fd.Messages().ByName("InstanceDesc")
	fs := instMD.Fields()
	msg := dynamicpb.NewMessage(descMD)
	ingesters := msg.Mutable(descMD.Fields().ByName("ingesters")).Map()
	for key, inst := range in.Ingesters {
		m := dynamicpb.NewMessage(instMD)
		m.Set(fs.ByName("addr"), protoreflect.ValueOfString(inst.Addr))
		m.Set(fs.ByName("timestamp"), protoreflect.ValueOfInt64(inst.Timestamp))
		m.Set(fs.ByName("state"), protoreflect.ValueOfEnum(protoreflect.EnumNumber(inst.State)))
		if len(inst.Tokens) > 0 {
			list := m.Mutable(fs.ByName("tokens")).List()
			for _, t := range inst.Tokens {
				list.Append(protoreflect.ValueOfUint32(t))
			}
		}
		m.Set(fs.ByName("zone"), protoreflect.ValueOfString(inst.Zone))
		m.Set(fs.ByName("registered_timestamp"), protoreflect.ValueOfInt64(inst.RegisteredTimestamp))
		m.Set(fs.ByName("id"), protoreflect.ValueOfString(inst.ID))
		m.Set(fs.ByName("read_only_updated_timestamp"), protoreflect.ValueOfInt64(inst.ReadOnlyUpdatedTimestamp))
		m.Set(fs.ByName("read_only"), protoreflect.ValueOfBool(inst.ReadOnly))
		if len(inst.Versions) > 0 {
			versions := m.Mutable(fs.ByName("versions")).Map()
			for k, v := range inst.Versions {
				versions.Set(protoreflect.ValueOfUint64(k).MapKey(), protoreflect.ValueOfUint64(v))
			}
		}
		ingesters.Set(protoreflect.ValueOfString(key).MapKey(), protoreflect.ValueOfMessage(m))
	}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		fail("marshal: %v", err)
	}
	os.Stdout.Write(snappy.Encode(nil, raw))
}

func decodeRing() {
	raw, err := snappy.Decode(nil, readStdin())
	if err != nil {
		fail("snappy: %v", err)
	}
	fd := ringFile(true)
	descMD := fd.Messages().ByName("Desc")
	fs := fd.Messages().ByName("InstanceDesc").Fields()
	msg := dynamicpb.NewMessage(descMD)
	if err := proto.Unmarshal(raw, msg); err != nil {
		fail("unmarshal: %v", err)
	}
	out := descJSON{Ingesters: map[string]instanceJSON{}}
	msg.Get(descMD.Fields().ByName("ingesters")).Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
		m := v.Message()
		inst := instanceJSON{
			Addr:                     m.Get(fs.ByName("addr")).String(),
			Timestamp:                m.Get(fs.ByName("timestamp")).Int(),
			State:                    int32(m.Get(fs.ByName("state")).Enum()),
			Tokens:                   []uint32{},
			Zone:                     m.Get(fs.ByName("zone")).String(),
			RegisteredTimestamp:      m.Get(fs.ByName("registered_timestamp")).Int(),
			ID:                       m.Get(fs.ByName("id")).String(),
			ReadOnlyUpdatedTimestamp: m.Get(fs.ByName("read_only_updated_timestamp")).Int(),
			ReadOnly:                 m.Get(fs.ByName("read_only")).Bool(),
			Versions:                 map[uint64]uint64{},
		}
		tokens := m.Get(fs.ByName("tokens")).List()
		for i := 0; i < tokens.Len(); i++ {
			inst.Tokens = append(inst.Tokens, uint32(tokens.Get(i).Uint()))
		}
		m.Get(fs.ByName("versions")).Map().Range(func(vk protoreflect.MapKey, vv protoreflect.Value) bool {
			inst.Versions[vk.Uint()] = vv.Uint()
			return true
		})
		out.Ingesters[k.String()] = inst
		return true
	})
	writeJSON(out)
}

func encodeKV() {
	var in kvJSON
	if err := json.Unmarshal(readStdin(), &in); err != nil {
		fail("json input: %v", err)
	}
	md := kvFile().Messages().ByName("KeyValuePair")
	fs := md.Fields()
	m := dynamicpb.NewMessage(md)
	m.Set(fs.ByName("key"), protoreflect.ValueOfString(in.Key))
	m.Set(fs.ByName("value"), protoreflect.ValueOfBytes(in.Value))
	m.Set(fs.ByName("codec"), protoreflect.ValueOfString(in.Codec))
	m.Set(fs.ByName("deleted"), protoreflect.ValueOfBool(in.Deleted))
	m.Set(fs.ByName("update_time_millis"), protoreflect.ValueOfInt64(in.UpdateTimeMillis))
	raw, err := proto.Marshal(m)
	if err != nil {
		fail("marshal: %v", err)
	}
	os.Stdout.Write(raw)
}

func decodeKV() {
	md := kvFile().Messages().ByName("KeyValuePair")
	fs := md.Fields()
	m := dynamicpb.NewMessage(md)
	if err := proto.Unmarshal(readStdin(), m); err != nil {
		fail("unmarshal: %v", err)
	}
	value := m.Get(fs.ByName("value")).Bytes()
	if value == nil {
		value = []byte{}
	}
	writeJSON(kvJSON{
		Key:              m.Get(fs.ByName("key")).String(),
		Value:            value,
		Codec:            m.Get(fs.ByName("codec")).String(),
		Deleted:          m.Get(fs.ByName("deleted")).Bool(),
		UpdateTimeMillis: m.Get(fs.ByName("update_time_millis")).Int(),
	})
}

func main() {
	if len(os.Args) != 2 {
		fail("usage: ringdesc encode|encode-unpacked|decode|kv-encode|kv-decode")
	}
	switch os.Args[1] {
	case "encode":
		encodeRing(true)
	case "encode-unpacked":
		encodeRing(false)
	case "decode":
		decodeRing()
	case "kv-encode":
		encodeKV()
	case "kv-decode":
		decodeKV()
	default:
		fail("unknown mode %q", os.Args[1])
	}
}
