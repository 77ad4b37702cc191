package routing

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// RocketMQ's naming rules for topics and consumer groups, as org.apache.rocketmq.common.topic.TopicValidator and
// the client's Validators apply them. A name that breaks them cannot have been created on a broker; one that
// reaches the model anyway would flow into xDS resource names, metrics and logs with whatever bytes it holds.
const (
	// NamePattern is the characters a topic or group name may use, as RocketMQ writes it in its messages.
	NamePattern = `^[%|a-zA-Z0-9_-]+$`
	// TopicMaxLength is the longest topic name (TopicValidator.TOPIC_MAX_LENGTH).
	TopicMaxLength = 127
	// RetryTopicMaxLength is the longest retry or dead-letter topic name: RocketMQ 5's TopicValidator allows 255
	// for names under RetryTopicPrefix or DLQTopicPrefix, which embed a consumer group.
	RetryTopicMaxLength = 255
	// GroupMaxLength is the longest consumer group name (Validators.CHARACTER_MAX_LENGTH).
	GroupMaxLength = 255

	// RetryTopicPrefix starts a consumer group's retry topic (MixAll.RETRY_GROUP_TOPIC_PREFIX).
	RetryTopicPrefix = "%RETRY%"
	// DLQTopicPrefix starts a consumer group's dead-letter topic (MixAll.DLQ_GROUP_TOPIC_PREFIX).
	DLQTopicPrefix = "%DLQ%"
)

// ErrInvalidName is wrapped by every error of ValidTopic and ValidGroup.
var ErrInvalidName = errors.New("invalid RocketMQ name")

// ValidTopic returns nil when RocketMQ accepts name as a topic: one or more of the characters of NamePattern, at
// most TopicMaxLength of them (RetryTopicMaxLength for retry and dead-letter topics). The error says which rule
// the name breaks, quoting at most the first 48 bytes of it.
func ValidTopic(name string) error {
	limit := TopicMaxLength
	if strings.HasPrefix(name, RetryTopicPrefix) || strings.HasPrefix(name, DLQTopicPrefix) {
		limit = RetryTopicMaxLength
	}
	return validName("topic", name, limit)
}

// ValidGroup returns nil when RocketMQ accepts name as a consumer group: one or more of the characters of
// NamePattern, at most GroupMaxLength of them. The error says which rule the name breaks.
func ValidGroup(name string) error { return validName("consumer group", name, GroupMaxLength) }

func validName(kind, name string, limit int) error {
	if name == "" {
		return fmt.Errorf("%w: the %s name is empty", ErrInvalidName, kind)
	}
	// Characters first, as TopicValidator does: only ASCII is valid, so bytes and Java's chars count alike.
	for i := 0; i < len(name); i++ {
		if !validNameByte(name[i]) {
			return fmt.Errorf("%w: %s %s has %s at byte %d; RocketMQ allows only %s",
				ErrInvalidName, kind, quoteName(name), describeAt(name, i), i, NamePattern)
		}
	}
	if len(name) > limit {
		return fmt.Errorf("%w: %s %s is %d characters long; RocketMQ allows at most %d",
			ErrInvalidName, kind, quoteName(name), len(name), limit)
	}
	return nil
}

func validNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '%' || c == '|' || c == '_' || c == '-'
}

// quoteName quotes a name for a message, cut to 48 bytes: names come from the network and may be huge.
func quoteName(name string) string {
	const keep = 48
	if len(name) <= keep {
		return strconv.Quote(name)
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(name[:keep]), len(name))
}

// describeAt names the character at byte i: the rune when it is valid UTF-8, else the byte.
func describeAt(name string, i int) string {
	r, size := utf8.DecodeRuneInString(name[i:])
	if r == utf8.RuneError && size <= 1 {
		return fmt.Sprintf("byte 0x%02x", name[i])
	}
	return strconv.QuoteRune(r)
}
