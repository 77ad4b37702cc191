package message

// Magic codes of the stored layout (MessageDecoder). V2 differs from V1 only in the topic length, 2 bytes
// instead of 1; the store switches to it for topics longer than 127 bytes (retry topics may be 255).
const (
	MagicCodeV1    int32 = -626843481 // MESSAGE_MAGIC_CODE, 0xDAA320A7
	MagicCodeV2    int32 = -626843477 // MESSAGE_MAGIC_CODE_V2, 0xDAA320AB
	BlankMagicCode int32 = -875286124 // BLANK_MAGIC_CODE, 0xCBD43194: the end-of-file filler of a commit log file
)

// Bits of the system flag (MessageSysFlag).
const (
	CompressedFlag          int32 = 0x1      // COMPRESSED_FLAG: the stored body is compressed
	MultiTagsFlag           int32 = 0x1 << 1 // MULTI_TAGS_FLAG
	TransactionNotType      int32 = 0        // TRANSACTION_NOT_TYPE
	TransactionPreparedType int32 = 0x1 << 2 // TRANSACTION_PREPARED_TYPE
	TransactionCommitType   int32 = 0x2 << 2 // TRANSACTION_COMMIT_TYPE
	TransactionRollbackType int32 = 0x3 << 2 // TRANSACTION_ROLLBACK_TYPE, also the mask of the transaction bits
	BornHostV6Flag          int32 = 0x1 << 4 // BORNHOST_V6_FLAG: the born host is 16+4 bytes, not 4+4
	StoreHostV6Flag         int32 = 0x1 << 5 // STOREHOSTADDRESS_V6_FLAG: the store host is 16+4 bytes
	NeedUnwrapFlag          int32 = 0x1 << 6 // NEED_UNWRAP_FLAG
	InnerBatchFlag          int32 = 0x1 << 7 // INNER_BATCH_FLAG
	CompressionLZ4Type      int32 = 0x1 << 8 // COMPRESSION_LZ4_TYPE
	CompressionZSTDType     int32 = 0x2 << 8 // COMPRESSION_ZSTD_TYPE
	CompressionZLIBType     int32 = 0x3 << 8 // COMPRESSION_ZLIB_TYPE
	CompressionTypeMask     int32 = 0x7 << 8 // COMPRESSION_TYPE_COMPARATOR
)

// Separators of the properties string (MessageDecoder) and of the Pop text formats (MessageConst.KEY_SEPARATOR).
const (
	NameValueSeparator = '\x01' // NAME_VALUE_SEPARATOR
	PropertySeparator  = '\x02' // PROPERTY_SEPARATOR
	KeySeparator       = " "    // KEY_SEPARATOR: between the keys of KEYS, and between the fields of ExtraInfoUtil
)

// Property names (MessageConst.PROPERTY_*); the Java constant is named after each.
const (
	PropertyKeys                      = "KEYS"                           // PROPERTY_KEYS
	PropertyTags                      = "TAGS"                           // PROPERTY_TAGS
	PropertyWaitStoreMsgOK            = "WAIT"                           // PROPERTY_WAIT_STORE_MSG_OK
	PropertyDelayTimeLevel            = "DELAY"                          // PROPERTY_DELAY_TIME_LEVEL
	PropertyRetryTopic                = "RETRY_TOPIC"                    // PROPERTY_RETRY_TOPIC
	PropertyRealTopic                 = "REAL_TOPIC"                     // PROPERTY_REAL_TOPIC
	PropertyRealQueueID               = "REAL_QID"                       // PROPERTY_REAL_QUEUE_ID
	PropertyTransactionPrepared       = "TRAN_MSG"                       // PROPERTY_TRANSACTION_PREPARED
	PropertyProducerGroup             = "PGROUP"                         // PROPERTY_PRODUCER_GROUP
	PropertyMinOffset                 = "MIN_OFFSET"                     // PROPERTY_MIN_OFFSET
	PropertyMaxOffset                 = "MAX_OFFSET"                     // PROPERTY_MAX_OFFSET
	PropertyOriginMessageID           = "ORIGIN_MESSAGE_ID"              // PROPERTY_ORIGIN_MESSAGE_ID
	PropertyReconsumeTime             = "RECONSUME_TIME"                 // PROPERTY_RECONSUME_TIME
	PropertyMsgRegion                 = "MSG_REGION"                     // PROPERTY_MSG_REGION
	PropertyTraceSwitch               = "TRACE_ON"                       // PROPERTY_TRACE_SWITCH
	PropertyUniqClientMessageIDKeyIdx = "UNIQ_KEY"                       // PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX
	PropertyMaxReconsumeTimes         = "MAX_RECONSUME_TIMES"            // PROPERTY_MAX_RECONSUME_TIMES
	PropertyConsumeStartTimestamp     = "CONSUME_START_TIME"             // PROPERTY_CONSUME_START_TIMESTAMP
	PropertyInnerNum                  = "INNER_NUM"                      // PROPERTY_INNER_NUM
	PropertyInnerBase                 = "INNER_BASE"                     // PROPERTY_INNER_BASE
	PropertyTransactionPreparedQueue  = "TRAN_PREPARED_QUEUE_OFFSET"     // PROPERTY_TRANSACTION_PREPARED_QUEUE_OFFSET
	PropertyTransactionID             = "__transactionId__"              // PROPERTY_TRANSACTION_ID
	PropertyTransactionCheckTimes     = "TRANSACTION_CHECK_TIMES"        // PROPERTY_TRANSACTION_CHECK_TIMES
	PropertyCheckImmunityTimeInSecs   = "CHECK_IMMUNITY_TIME_IN_SECONDS" // PROPERTY_CHECK_IMMUNITY_TIME_IN_SECONDS
	PropertyInstanceID                = "INSTANCE_ID"                    // PROPERTY_INSTANCE_ID
	PropertyCorrelationID             = "CORRELATION_ID"                 // PROPERTY_CORRELATION_ID
	PropertyMessageReplyToClient      = "REPLY_TO_CLIENT"                // PROPERTY_MESSAGE_REPLY_TO_CLIENT
	PropertyMessageTTL                = "TTL"                            // PROPERTY_MESSAGE_TTL
	PropertyReplyMessageArriveTime    = "ARRIVE_TIME"                    // PROPERTY_REPLY_MESSAGE_ARRIVE_TIME
	PropertyCluster                   = "CLUSTER"                        // PROPERTY_CLUSTER
	PropertyMessageType               = "MSG_TYPE"                       // PROPERTY_MESSAGE_TYPE
	PropertyPopCK                     = "POP_CK"                         // PROPERTY_POP_CK: the receipt handle, see ExtraInfo
	PropertyPopCKOffset               = "POP_CK_OFFSET"                  // PROPERTY_POP_CK_OFFSET
	PropertyFirstPopTime              = "1ST_POP_TIME"                   // PROPERTY_FIRST_POP_TIME
	PropertyShardingKey               = "__SHARDINGKEY"                  // PROPERTY_SHARDING_KEY
	PropertyForwardQueueID            = "PROPERTY_FORWARD_QUEUE_ID"      // PROPERTY_FORWARD_QUEUE_ID
	PropertyRedirect                  = "REDIRECT"                       // PROPERTY_REDIRECT
	PropertyInnerMultiDispatch        = "INNER_MULTI_DISPATCH"           // PROPERTY_INNER_MULTI_DISPATCH
	PropertyInnerMultiQueueOffset     = "INNER_MULTI_QUEUE_OFFSET"       // PROPERTY_INNER_MULTI_QUEUE_OFFSET
	PropertyTraceContext              = "TRACE_CONTEXT"                  // PROPERTY_TRACE_CONTEXT
	PropertyTimerDelaySec             = "TIMER_DELAY_SEC"                // PROPERTY_TIMER_DELAY_SEC
	PropertyTimerDeliverMs            = "TIMER_DELIVER_MS"               // PROPERTY_TIMER_DELIVER_MS
	PropertyTimerDelayMs              = "TIMER_DELAY_MS"                 // PROPERTY_TIMER_DELAY_MS
	PropertyTimerEnqueueMs            = "TIMER_ENQUEUE_MS"               // PROPERTY_TIMER_ENQUEUE_MS
	PropertyTimerDequeueMs            = "TIMER_DEQUEUE_MS"               // PROPERTY_TIMER_DEQUEUE_MS
	PropertyTimerRollTimes            = "TIMER_ROLL_TIMES"               // PROPERTY_TIMER_ROLL_TIMES
	PropertyTimerOutMs                = "TIMER_OUT_MS"                   // PROPERTY_TIMER_OUT_MS
	PropertyTimerDelUniqKey           = "TIMER_DEL_UNIQKEY"              // PROPERTY_TIMER_DEL_UNIQKEY
	PropertyTimerDelayLevel           = "TIMER_DELAY_LEVEL"              // PROPERTY_TIMER_DELAY_LEVEL
	PropertyBornHost                  = "__BORNHOST"                     // PROPERTY_BORN_HOST
	PropertyBornTimestamp             = "BORN_TIMESTAMP"                 // PROPERTY_BORN_TIMESTAMP
	PropertyCRC32                     = "__CRC32#"                       // PROPERTY_CRC32
	PropertyDLQOriginTopic            = "DLQ_ORIGIN_TOPIC"               // PROPERTY_DLQ_ORIGIN_TOPIC
	PropertyDLQOriginMessageID        = "DLQ_ORIGIN_MESSAGE_ID"          // PROPERTY_DLQ_ORIGIN_MESSAGE_ID
	DupInfo                           = "DUP_INFO"                       // DUP_INFO
	PropertyTransientPrefix           = "__RMQ.TRANSIENT."               // PROPERTY_TRANSIENT_PREFIX: never stored
)

// Topic prefixes (MixAll) and the revive queue id that marks an orderly Pop (KeyBuilder.POP_ORDER_REVIVE_QUEUE).
const (
	RetryGroupTopicPrefix = "%RETRY%" // MixAll.RETRY_GROUP_TOPIC_PREFIX
	DLQGroupTopicPrefix   = "%DLQ%"   // MixAll.DLQ_GROUP_TOPIC_PREFIX
	PopOrderReviveQueue   = 999       // KeyBuilder.POP_ORDER_REVIVE_QUEUE
)
