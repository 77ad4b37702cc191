package remoting

// Broker request codes (RequestCode.java): what clients send to brokers, and what brokers send to clients on the
// same connection.
const (
	SendMessage                int32 = 10
	PullMessage                int32 = 11
	QueryConsumerOffset        int32 = 14
	UpdateConsumerOffset       int32 = 15
	SearchOffsetByTimestamp    int32 = 29
	GetMaxOffset               int32 = 30
	GetMinOffset               int32 = 31
	HeartBeat                  int32 = 34
	UnregisterClient           int32 = 35
	ConsumerSendMsgBack        int32 = 36
	EndTransaction             int32 = 37
	GetConsumerListByGroup     int32 = 38
	CheckTransactionState      int32 = 39 // broker → client
	NotifyConsumerIdsChanged   int32 = 40 // broker → client
	LockBatchMQ                int32 = 41
	UnlockBatchMQ              int32 = 42
	GetConsumerRunningInfo     int32 = 307 // broker → client
	ConsumeMessageDirectly     int32 = 309 // broker → client
	SendMessageV2              int32 = 310
	SendBatchMessage           int32 = 320
	PopMessage                 int32 = 200050
	AckMessage                 int32 = 200051
	PeekMessage                int32 = 200052
	ChangeMessageInvisibleTime int32 = 200053
	Notification               int32 = 200054
	BatchAckMessage            int32 = 200151
)

// Broker response codes (ResponseCode.java).
const (
	MessageIllegal            int32 = 13
	ServiceNotAvailable       int32 = 14
	NoPermission              int32 = 16
	PullNotFound              int32 = 19
	PullRetryImmediately      int32 = 20
	PullOffsetMoved           int32 = 21
	SubscriptionParseFailed   int32 = 23
	SubscriptionNotExist      int32 = 24
	SubscriptionGroupNotExist int32 = 26
	InvalidParameter          int32 = 29
	PollingFull               int32 = 209
	PollingTimeout            int32 = 210
)
