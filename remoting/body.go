package remoting

import (
	"encoding/json"

	"slices"
)

// TopicRouteData is the body of a 105 response (TopicRouteData.java).
type TopicRouteData struct {
	OrderTopicConf    string              `json:"orderTopicConf,omitempty"`
	QueueDatas        []QueueData         `json:"queueDatas"`
	BrokerDatas       []BrokerData        `json:"brokerDatas"`
	FilterServerTable map[string][]string `json:"filterServerTable,omitempty"`
}

// QueueData is one broker group's queues of a topic (QueueData.java).
type QueueData struct {
	BrokerName     string `json:"brokerName"`
	ReadQueueNums  int32  `json:"readQueueNums"`
	WriteQueueNums int32  `json:"writeQueueNums"`
	Perm           int32  `json:"perm"`
	TopicSysFlag   int32  `json:"topicSysFlag"`
}

// UnmarshalJSON accepts topicSynFlag, the spelling used up to RocketMQ 4.8, as well as topicSysFlag.
func (q *QueueData) UnmarshalJSON(b []byte) error {
	var aux struct {
		BrokerName     string `json:"brokerName"`
		ReadQueueNums  int32  `json:"readQueueNums"`
		WriteQueueNums int32  `json:"writeQueueNums"`
		Perm           int32  `json:"perm"`
		TopicSysFlag   *int32 `json:"topicSysFlag"`
		TopicSynFlag   *int32 `json:"topicSynFlag"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*q = QueueData{BrokerName: aux.BrokerName, ReadQueueNums: aux.ReadQueueNums, WriteQueueNums: aux.WriteQueueNums, Perm: aux.Perm}
	switch {
	case aux.TopicSysFlag != nil:
		q.TopicSysFlag = *aux.TopicSysFlag
	case aux.TopicSynFlag != nil:
		q.TopicSysFlag = *aux.TopicSynFlag
	}
	return nil
}

// BrokerData is one broker group: its addresses by broker id, 0 being the master (BrokerData.java).
type BrokerData struct {
	Cluster            string           `json:"cluster"`
	BrokerName         string           `json:"brokerName"`
	BrokerAddrs        map[int64]string `json:"brokerAddrs"`
	ZoneName           string           `json:"zoneName,omitempty"`
	EnableActingMaster bool             `json:"enableActingMaster"`
}

// ClusterInfo is the body of a 106 response (ClusterInfo.java).
type ClusterInfo struct {
	BrokerAddrTable  map[string]BrokerData `json:"brokerAddrTable"`
	ClusterAddrTable map[string][]string   `json:"clusterAddrTable"`
}

// TopicList is the body of 206 and 224 responses (TopicList.java).
type TopicList struct {
	TopicList  []string `json:"topicList"`
	BrokerAddr string   `json:"brokerAddr,omitempty"`
}

// KVTable is the body of a 219 response (KVTable.java).
type KVTable struct {
	Table map[string]string `json:"table"`
}

// decodeBody parses a NameServer body in either dialect into v.
func decodeBody(what string, body []byte, v any) error {
	if len(body) == 0 {
		return malformed("%s: empty body", what)
	}
	if err := json.Unmarshal(normalizeFastJSON(body), v); err != nil {
		return malformed("%s body: %v", what, err)
	}
	return nil
}

// DecodeTopicRouteData parses a 105 response body, legacy or standard.
func DecodeTopicRouteData(body []byte) (*TopicRouteData, error) {
	var t TopicRouteData
	if err := decodeBody("topic route", body, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// DecodeClusterInfo parses a 106 response body.
func DecodeClusterInfo(body []byte) (*ClusterInfo, error) {
	var c ClusterInfo
	if err := decodeBody("cluster info", body, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// DecodeTopicList parses a 206 or 224 response body.
func DecodeTopicList(body []byte) (*TopicList, error) {
	var t TopicList
	if err := decodeBody("topic list", body, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// DecodeKVTable parses a 219 response body.
func DecodeKVTable(body []byte) (*KVTable, error) {
	var t KVTable
	if err := decodeBody("kv table", body, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// Encode writes the route as the NameServer does: fields sorted by name, and in legacy fastjson (standard false)
// broker ids as bare numeric keys; in standard JSON (standard true) quoted keys and non-ASCII escaped.
func (t *TopicRouteData) Encode(standard bool) []byte {
	w := &jsonWriter{buf: make([]byte, 0, 256), standard: standard}
	w.raw(`{"brokerDatas":[`)
	for i := range t.BrokerDatas {
		w.comma(i == 0)
		w.brokerData(&t.BrokerDatas[i])
	}
	w.raw(`],"filterServerTable":{`)
	for i, k := range sortedMapKeys(t.FilterServerTable) {
		w.comma(i == 0)
		w.key(k)
		w.strings(t.FilterServerTable[k])
	}
	w.raw(`}`)
	if t.OrderTopicConf != "" {
		w.raw(`,"orderTopicConf":`)
		w.str(t.OrderTopicConf)
	}
	w.raw(`,"queueDatas":[`)
	for i, q := range t.QueueDatas {
		w.comma(i == 0)
		w.raw(`{"brokerName":`)
		w.str(q.BrokerName)
		w.raw(`,"perm":`)
		w.int(int64(q.Perm))
		w.raw(`,"readQueueNums":`)
		w.int(int64(q.ReadQueueNums))
		w.raw(`,"topicSysFlag":`)
		w.int(int64(q.TopicSysFlag))
		w.raw(`,"writeQueueNums":`)
		w.int(int64(q.WriteQueueNums))
		w.raw(`}`)
	}
	w.raw(`]}`)
	return w.buf
}

func (w *jsonWriter) brokerData(b *BrokerData) {
	w.raw(`{"brokerAddrs":{`)
	ids := make([]int64, 0, len(b.BrokerAddrs))
	for id := range b.BrokerAddrs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for i, id := range ids {
		w.comma(i == 0)
		w.numKey(id)
		w.str(b.BrokerAddrs[id])
	}
	w.raw(`},"brokerName":`)
	w.str(b.BrokerName)
	w.raw(`,"cluster":`)
	w.str(b.Cluster)
	w.raw(`,"enableActingMaster":`)
	w.bool(b.EnableActingMaster)
	if b.ZoneName != "" {
		w.raw(`,"zoneName":`)
		w.str(b.ZoneName)
	}
	w.raw(`}`)
}

func (w *jsonWriter) strings(list []string) {
	w.raw(`[`)
	for i, s := range list {
		w.comma(i == 0)
		w.str(s)
	}
	w.raw(`]`)
}

// Encode writes cluster info in legacy fastjson, as every NameServer version does for 106.
func (c *ClusterInfo) Encode() []byte {
	w := &jsonWriter{buf: make([]byte, 0, 256)}
	w.raw(`{"brokerAddrTable":{`)
	for i, name := range sortedMapKeys(c.BrokerAddrTable) {
		w.comma(i == 0)
		w.key(name)
		b := c.BrokerAddrTable[name]
		w.brokerData(&b)
	}
	w.raw(`},"clusterAddrTable":{`)
	for i, name := range sortedMapKeys(c.ClusterAddrTable) {
		w.comma(i == 0)
		w.key(name)
		w.strings(c.ClusterAddrTable[name])
	}
	w.raw(`}}`)
	return w.buf
}

// Encode writes the topic list as {"topicList":[...]}.
func (t *TopicList) Encode() []byte {
	w := &jsonWriter{buf: make([]byte, 0, 16+len(t.TopicList)*24)}
	if t.BrokerAddr != "" {
		w.raw(`{"brokerAddr":`)
		w.str(t.BrokerAddr)
		w.raw(`,"topicList":`)
	} else {
		w.raw(`{"topicList":`)
	}
	w.strings(t.TopicList)
	w.raw(`}`)
	return w.buf
}

// Encode writes the table as {"table":{...}}.
func (t *KVTable) Encode() []byte {
	w := &jsonWriter{buf: make([]byte, 0, 64)}
	w.raw(`{"table":{`)
	for i, k := range sortedMapKeys(t.Table) {
		w.comma(i == 0)
		w.key(k)
		w.str(t.Table[k])
	}
	w.raw(`}}`)
	return w.buf
}

func sortedMapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Perm bits of a topic's queues on one broker (PermName.java).
const (
	PermPriority int32 = 8
	PermRead     int32 = 4
	PermWrite    int32 = 2
	PermInherit  int32 = 1
)

// PermString renders perm bits the way mqadmin does, e.g. "RW-".
func PermString(perm int32) string {
	b := []byte("---")
	if perm&PermRead != 0 {
		b[0] = 'R'
	}
	if perm&PermWrite != 0 {
		b[1] = 'W'
	}
	if perm&PermInherit != 0 {
		b[2] = 'X'
	}
	return string(b)
}
