package remoting

// Request codes (RequestCode.java) the project uses or refuses to send.
const (
	GetKVConfig                   int32 = 101
	GetRouteInfoByTopic           int32 = 105
	GetBrokerClusterInfo          int32 = 106
	GetAllTopicListFromNameServer int32 = 206
	GetKVListByNamespace          int32 = 219
	GetTopicsByCluster            int32 = 224

	// Write or side-effecting codes, listed so that tests can prove they are never sent.
	PutKVConfig           int32 = 100
	DeleteKVConfig        int32 = 102
	RegisterBroker        int32 = 103
	UnregisterBroker      int32 = 104
	WipeWritePermOfBroker int32 = 205
	DeleteTopicInNameSrv  int32 = 216
	UpdateNamesrvConfig   int32 = 318
	QueryDataVersion      int32 = 322
)

// Response codes (ResponseCode.java, RemotingSysResponseCode.java).
const (
	Success                 int32 = 0
	SystemError             int32 = 1
	SystemBusy              int32 = 2
	RequestCodeNotSupported int32 = 3
	TopicNotExist           int32 = 17
	QueryNotFound           int32 = 22
)

// Request versions. The NameServer answers 105 in standard JSON when the request version is at least
// VersionStandardJSON (MQVersion V4_9_4's ordinal) or the acceptStandardJsonOnly field is "true".
const (
	VersionStandardJSON int32 = 401
	// VersionClientGo is what rocketmq-client-go sends; it always receives the legacy fastjson form.
	VersionClientGo int32 = 317
)

// Flag bits of a command.
const (
	FlagResponse int32 = 1 << 0
	FlagOneway   int32 = 1 << 1
)
