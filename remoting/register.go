package remoting

import (
	"encoding/json"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// Request versions that change how a NameServer reads REGISTER_BROKER (MQVersion ordinals).
const (
	// VersionRegisterBrokerBody is MQVersion V3_0_11: a 103 request of an older version carries the topic config
	// wrapper itself as its body (no filterServerList), a newer one a RegisterBrokerBody.
	VersionRegisterBrokerBody int32 = 37
	// VersionRocketMQ5 is MQVersion V5_0_0, the version NewRegisterBrokerRequest sends.
	VersionRocketMQ5 int32 = 413
)

// ZoneNameField is the extension field that carries a broker's zone (MixAll.ZONE_NAME). It is not part of the
// request header class: Java brokers add it with DynamicalExtFieldRPCHook, and the NameServer reads it from the
// extension fields directly.
const ZoneNameField = "__ZONE_NAME"

// HeaderFieldError reports a custom-header field that a request lacks or whose value does not parse.
type HeaderFieldError struct {
	Field   string
	Value   string // the malformed value; "" when the field is missing
	Missing bool
}

func (e *HeaderFieldError) Error() string {
	if e.Missing {
		return "the custom field <" + e.Field + "> is null"
	}
	return fmt.Sprintf("the custom field <%s> has a malformed value %q", e.Field, e.Value)
}

// headerReader reads custom-header fields from extension fields the way RemotingCommand.decodeCommandCustomHeader
// parses them: Long.parseLong, Integer.parseInt, Boolean.parseBoolean. The first problem is kept.
type headerReader struct {
	ext map[string]string
	err error
}

func (r *headerReader) str(name string, required bool) string {
	v, ok := r.ext[name]
	if !ok && required && r.err == nil {
		r.err = &HeaderFieldError{Field: name, Missing: true}
	}
	return v
}

// num parses an integer field of bits width; ok is false when it is absent (and not required) or malformed.
func (r *headerReader) num(name string, bits int, required bool) (n int64, ok bool) {
	v, present := r.ext[name]
	if !present {
		if required && r.err == nil {
			r.err = &HeaderFieldError{Field: name, Missing: true}
		}
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, bits)
	if err != nil {
		if r.err == nil {
			r.err = &HeaderFieldError{Field: name, Value: v}
		}
		return 0, false
	}
	return n, true
}

// boolean is Boolean.parseBoolean: "true" in any case is true, anything else false; present says whether the
// field was sent at all.
func (r *headerReader) boolean(name string) (b, present bool) {
	v, present := r.ext[name]
	return strings.EqualFold(v, "true"), present
}

// RegisterBrokerHeader is the custom header of REGISTER_BROKER, 103 (RegisterBrokerRequestHeader.java), plus the
// zone the broker's RPC hook adds.
type RegisterBrokerHeader struct {
	BrokerName   string // required
	BrokerAddr   string // required
	ClusterName  string // required
	HAServerAddr string // required (field haServerAddr)
	BrokerID     int64  // required; 0 is the master
	// HeartbeatTimeoutMillis is how long the NameServer keeps the broker without a new registration; nil leaves
	// it out and the NameServer uses its default (120 s in Java).
	HeartbeatTimeoutMillis *int64
	// EnableActingMaster is nil for brokers older than 5.0, which do not send it.
	EnableActingMaster *bool
	// Compressed says the body uses RegisterBrokerBody's deflated form. Java brokers always send false.
	Compressed bool
	// BodyCRC32 is BodyCRC32 of the body; 0 asks the NameServer not to check it.
	BodyCRC32 int32
	// ZoneName travels as ZoneNameField when not empty.
	ZoneName string
}

// ExtFields returns the header as Java's makeCustomHeaderToNet writes it: every field that is not null, in
// its toString form.
func (h *RegisterBrokerHeader) ExtFields() map[string]string {
	ext := map[string]string{
		"brokerName":   h.BrokerName,
		"brokerAddr":   h.BrokerAddr,
		"clusterName":  h.ClusterName,
		"haServerAddr": h.HAServerAddr,
		"brokerId":     strconv.FormatInt(h.BrokerID, 10),
		"compressed":   strconv.FormatBool(h.Compressed),
		"bodyCrc32":    strconv.FormatInt(int64(h.BodyCRC32), 10),
	}
	if h.HeartbeatTimeoutMillis != nil {
		ext["heartbeatTimeoutMillis"] = strconv.FormatInt(*h.HeartbeatTimeoutMillis, 10)
	}
	if h.EnableActingMaster != nil {
		ext["enableActingMaster"] = strconv.FormatBool(*h.EnableActingMaster)
	}
	if h.ZoneName != "" {
		ext[ZoneNameField] = h.ZoneName
	}
	return ext
}

// ParseRegisterBrokerHeader reads the header of a 103 request. A missing required field or a number that does not
// parse is a *HeaderFieldError naming the first such field, in the order of the Java class.
func ParseRegisterBrokerHeader(cmd *Command) (*RegisterBrokerHeader, error) {
	r := headerReader{ext: cmd.ExtFields}
	h := &RegisterBrokerHeader{
		BrokerName:   r.str("brokerName", true),
		BrokerAddr:   r.str("brokerAddr", true),
		ClusterName:  r.str("clusterName", true),
		HAServerAddr: r.str("haServerAddr", true),
		ZoneName:     cmd.ExtFields[ZoneNameField],
	}
	h.BrokerID, _ = r.num("brokerId", 64, true)
	if n, ok := r.num("heartbeatTimeoutMillis", 64, false); ok {
		h.HeartbeatTimeoutMillis = &n
	}
	if b, ok := r.boolean("enableActingMaster"); ok {
		h.EnableActingMaster = &b
	}
	h.Compressed, _ = r.boolean("compressed")
	if n, ok := r.num("bodyCrc32", 32, false); ok {
		h.BodyCRC32 = int32(n)
	}
	if r.err != nil {
		return nil, r.err
	}
	return h, nil
}

// UnregisterBrokerHeader is the custom header of UNREGISTER_BROKER, 104 (UnRegisterBrokerRequestHeader.java).
// Every field is required.
type UnregisterBrokerHeader struct {
	BrokerName  string
	BrokerAddr  string
	ClusterName string
	BrokerID    int64
}

// ExtFields returns the header's extension fields.
func (h *UnregisterBrokerHeader) ExtFields() map[string]string {
	return map[string]string{
		"brokerName":  h.BrokerName,
		"brokerAddr":  h.BrokerAddr,
		"clusterName": h.ClusterName,
		"brokerId":    strconv.FormatInt(h.BrokerID, 10),
	}
}

// ParseUnregisterBrokerHeader reads the header of a 104 request; errors are as ParseRegisterBrokerHeader's.
func ParseUnregisterBrokerHeader(cmd *Command) (*UnregisterBrokerHeader, error) {
	r := headerReader{ext: cmd.ExtFields}
	h := &UnregisterBrokerHeader{
		BrokerName:  r.str("brokerName", true),
		BrokerAddr:  r.str("brokerAddr", true),
		ClusterName: r.str("clusterName", true),
	}
	h.BrokerID, _ = r.num("brokerId", 64, true)
	if r.err != nil {
		return nil, r.err
	}
	return h, nil
}

// RegisterBrokerResponseHeader is the custom header of a 103 response (RegisterBrokerResponseHeader.java): for a
// slave whose master is registered, the master's address and HA address; empty otherwise.
type RegisterBrokerResponseHeader struct {
	HAServerAddr string // field haServerAddr
	MasterAddr   string
}

// ExtFields returns the non-empty fields, or nil when both are empty (Java leaves null fields out).
func (h *RegisterBrokerResponseHeader) ExtFields() map[string]string {
	var ext map[string]string
	if h.HAServerAddr != "" {
		ext = map[string]string{"haServerAddr": h.HAServerAddr}
	}
	if h.MasterAddr != "" {
		if ext == nil {
			ext = map[string]string{}
		}
		ext["masterAddr"] = h.MasterAddr
	}
	return ext
}

// ParseRegisterBrokerResponseHeader reads the header of a 103 response; both fields are optional.
func ParseRegisterBrokerResponseHeader(cmd *Command) *RegisterBrokerResponseHeader {
	return &RegisterBrokerResponseHeader{HAServerAddr: cmd.ExtFields["haServerAddr"], MasterAddr: cmd.ExtFields["masterAddr"]}
}

// BodyCRC32 is UtilAll.crc32 of a body: the IEEE CRC-32 with the sign bit cleared, 0 for an empty body. The
// NameServer compares it with the header's bodyCrc32 unless that is 0.
func BodyCRC32(body []byte) int32 {
	return int32(crc32.ChecksumIEEE(body) & 0x7fffffff)
}

// Topic filter types (TopicFilterType.java).
const (
	TopicFilterSingleTag = "SINGLE_TAG"
	TopicFilterMultiTag  = "MULTI_TAG"
)

// TopicConfig is one topic as a broker registers it (TopicConfig.java).
type TopicConfig struct {
	TopicName       string
	ReadQueueNums   int32
	WriteQueueNums  int32
	Perm            int32
	TopicFilterType string
	TopicSysFlag    int32
	Order           bool
	Attributes      map[string]string
}

// NewTopicConfig returns a topic config with Java's defaults: 16 read and 16 write queues, perm RW, SINGLE_TAG,
// no attributes (an empty map).
func NewTopicConfig(name string) TopicConfig {
	return TopicConfig{TopicName: name, ReadQueueNums: 16, WriteQueueNums: 16, Perm: PermRead | PermWrite,
		TopicFilterType: TopicFilterSingleTag, Attributes: map[string]string{}}
}

// UnmarshalJSON reads a topic config as fastjson does into a new TopicConfig: absent fields keep Java's
// defaults (NewTopicConfig), unknown fields are ignored.
func (tc *TopicConfig) UnmarshalJSON(b []byte) error {
	aux := struct {
		TopicName       *string           `json:"topicName"`
		ReadQueueNums   *int32            `json:"readQueueNums"`
		WriteQueueNums  *int32            `json:"writeQueueNums"`
		Perm            *int32            `json:"perm"`
		TopicFilterType *string           `json:"topicFilterType"`
		TopicSysFlag    *int32            `json:"topicSysFlag"`
		Order           *bool             `json:"order"`
		Attributes      map[string]string `json:"attributes"`
	}{}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	out := NewTopicConfig("")
	set(&out.TopicName, aux.TopicName)
	set(&out.ReadQueueNums, aux.ReadQueueNums)
	set(&out.WriteQueueNums, aux.WriteQueueNums)
	set(&out.Perm, aux.Perm)
	set(&out.TopicFilterType, aux.TopicFilterType)
	set(&out.TopicSysFlag, aux.TopicSysFlag)
	set(&out.Order, aux.Order)
	if aux.Attributes != nil {
		out.Attributes = aux.Attributes
	}
	*tc = out
	return nil
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// DataVersion is a broker's topic-config version (DataVersion.java). The NameServer compares it for equality to
// decide whether a re-registration changed the topics.
type DataVersion struct {
	StateVersion int64 `json:"stateVersion"`
	Timestamp    int64 `json:"timestamp"`
	Counter      int64 `json:"counter"`
}

// RegisterBrokerBody is the body of a 103 request (RegisterBrokerBody.java). On the wire the topic configs and the
// data version are nested in topicConfigSerializeWrapper (a TopicConfigAndMappingSerializeWrapper); static-topic
// mappings are not simulated: they are written empty and ignored when read.
type RegisterBrokerBody struct {
	// TopicConfigTable maps topic names to their configs. The NameServer files queue data under the config's
	// TopicName, as Java does, not under the key.
	TopicConfigTable map[string]TopicConfig
	DataVersion      DataVersion
	// FilterServerList is the broker's filter servers; nil and empty both clear them on the NameServer.
	FilterServerList []string
}

// topicConfigWrapper is the JSON shape of TopicConfigSerializeWrapper, the part of the body read here.
type topicConfigWrapper struct {
	TopicConfigTable map[string]*TopicConfig `json:"topicConfigTable"`
	DataVersion      *DataVersion            `json:"dataVersion"`
}

func (w *topicConfigWrapper) into(b *RegisterBrokerBody) {
	if len(w.TopicConfigTable) > 0 {
		b.TopicConfigTable = make(map[string]TopicConfig, len(w.TopicConfigTable))
		for k, tc := range w.TopicConfigTable {
			if tc != nil { // a null entry would fail Java's registration with a NullPointerException; dropped here
				b.TopicConfigTable[k] = *tc
			}
		}
	}
	if w.DataVersion != nil {
		b.DataVersion = *w.DataVersion
	}
}

// DecodeRegisterBrokerBody reads the JSON form of a 103 body as Java's fastjson does: unknown fields are
// ignored, absent ones keep their defaults, fastjson's bare map keys are accepted. An absent dataVersion reads as
// the zero version (Java would take the current time). The deflated form (header compressed=true) is not read.
func DecodeRegisterBrokerBody(body []byte) (*RegisterBrokerBody, error) {
	var aux struct {
		Wrapper          *topicConfigWrapper `json:"topicConfigSerializeWrapper"`
		FilterServerList []string            `json:"filterServerList"`
	}
	if err := decodeBody("register broker", body, &aux); err != nil {
		return nil, err
	}
	b := &RegisterBrokerBody{FilterServerList: aux.FilterServerList}
	if aux.Wrapper != nil {
		aux.Wrapper.into(b)
	}
	return b, nil
}

// DecodeTopicConfigWrapper reads the body of a 103 request older than VersionRegisterBrokerBody: a bare
// TopicConfigSerializeWrapper. The result has no FilterServerList (nil), which leaves a broker's filter
// servers as they were.
func DecodeTopicConfigWrapper(body []byte) (*RegisterBrokerBody, error) {
	var w topicConfigWrapper
	if err := decodeBody("topic config wrapper", body, &w); err != nil {
		return nil, err
	}
	b := &RegisterBrokerBody{}
	w.into(b)
	return b, nil
}

// Encode writes the body as a Java broker's fastjson does (RegisterBrokerBody.encode(false)), with every key
// sorted so that the bytes are deterministic.
func (b *RegisterBrokerBody) Encode() []byte {
	w := &jsonWriter{buf: make([]byte, 0, 256+len(b.TopicConfigTable)*220)}
	w.raw(`{"filterServerList":`)
	w.strings(b.FilterServerList)
	w.raw(`,"topicConfigSerializeWrapper":`)
	w.topicConfigWrapper(b, true)
	w.raw(`}`)
	return w.buf
}

// EncodeWrapper writes the body as a broker older than VersionRegisterBrokerBody sends it: the topic config
// wrapper alone (TopicConfigSerializeWrapper), without the filter servers.
func (b *RegisterBrokerBody) EncodeWrapper() []byte {
	w := &jsonWriter{buf: make([]byte, 0, 64+len(b.TopicConfigTable)*220)}
	w.topicConfigWrapper(b, false)
	return w.buf
}

// topicConfigWrapper writes a TopicConfigSerializeWrapper, or with mapping a TopicConfigAndMappingSerializeWrapper
// whose mappings are empty.
func (w *jsonWriter) topicConfigWrapper(b *RegisterBrokerBody, mapping bool) {
	w.raw(`{"dataVersion":`)
	w.dataVersion(&b.DataVersion)
	if mapping {
		w.raw(`,"mappingDataVersion":`)
		w.dataVersion(&DataVersion{})
	}
	w.raw(`,"topicConfigTable":{`)
	for i, name := range sortedMapKeys(b.TopicConfigTable) {
		w.comma(i == 0)
		w.key(name)
		tc := b.TopicConfigTable[name]
		w.topicConfig(&tc)
	}
	w.raw(`}`)
	if mapping {
		w.raw(`,"topicQueueMappingDetailMap":{},"topicQueueMappingInfoMap":{}`)
	}
	w.raw(`}`)
}

func (w *jsonWriter) dataVersion(v *DataVersion) {
	w.raw(`{"counter":`)
	w.int(v.Counter)
	w.raw(`,"stateVersion":`)
	w.int(v.StateVersion)
	w.raw(`,"timestamp":`)
	w.int(v.Timestamp)
	w.raw(`}`)
}

func (w *jsonWriter) topicConfig(tc *TopicConfig) {
	w.raw(`{"attributes":{`)
	for i, k := range sortedMapKeys(tc.Attributes) {
		w.comma(i == 0)
		w.key(k)
		w.str(tc.Attributes[k])
	}
	w.raw(`},"order":`)
	w.bool(tc.Order)
	w.raw(`,"perm":`)
	w.int(int64(tc.Perm))
	w.raw(`,"readQueueNums":`)
	w.int(int64(tc.ReadQueueNums))
	w.raw(`,"topicFilterType":`)
	w.str(tc.TopicFilterType)
	w.raw(`,"topicName":`)
	w.str(tc.TopicName)
	w.raw(`,"topicSysFlag":`)
	w.int(int64(tc.TopicSysFlag))
	w.raw(`,"writeQueueNums":`)
	w.int(int64(tc.WriteQueueNums))
	w.raw(`}`)
}

// NewRegisterBrokerRequest builds a 103 request as BrokerOuterAPI.registerBrokerAll does: the body encoded, its
// CRC in bodyCrc32 (h.BodyCRC32 is overwritten), compressed false, version VersionRocketMQ5. The caller sets the
// opaque and may change the language and version.
func NewRegisterBrokerRequest(h RegisterBrokerHeader, body *RegisterBrokerBody) *Command {
	data := body.Encode()
	h.Compressed = false
	h.BodyCRC32 = BodyCRC32(data)
	cmd := NewRequest(RegisterBroker, h.ExtFields())
	cmd.Version = VersionRocketMQ5
	cmd.Body = data
	return cmd
}

// NewUnregisterBrokerRequest builds a 104 request as BrokerOuterAPI.unregisterBroker does.
func NewUnregisterBrokerRequest(h UnregisterBrokerHeader) *Command {
	cmd := NewRequest(UnregisterBroker, h.ExtFields())
	cmd.Version = VersionRocketMQ5
	return cmd
}
